use serde_json::Value;

use crate::helpers::{json_body, TestApp};

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

#[test]
fn the_committed_spec_is_what_the_code_generates() {
    let generated = signals::api::openapi().to_pretty_json().unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, format!("{generated}\n")).unwrap();
    }
    // Read back (not the copy compiled in), so the comparison holds under UPDATE_OPENAPI too.
    let committed = std::fs::read_to_string(path).unwrap();
    assert!(
        committed.trim_end() == generated,
        "openapi/openapi.json is out of date: run `cargo run -- openapi > openapi/openapi.json` \
         (or UPDATE_OPENAPI=1 cargo test openapi) and commit it"
    );
}

#[test]
fn every_operation_is_documented_with_its_errors() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    assert_eq!(spec["openapi"].as_str().unwrap().get(..3), Some("3.1"));
    let mut seen = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            seen += 1;
            let at = format!("{method} {path}");
            assert!(op["operationId"].is_string(), "{at}: operationId");
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{at}: summary"
            );
            assert!(
                op["description"].as_str().is_some_and(|s| !s.is_empty()),
                "{at}: description"
            );
            let responses = op["responses"].as_object().unwrap();
            if path.starts_with("/v1/") {
                assert!(responses.contains_key("503"), "{at}: 503");
                for (status, response) in responses {
                    if method == "head" {
                        assert!(response.get("content").is_none(), "{at} {status}: no body");
                    } else if status.starts_with('4') || status.starts_with('5') {
                        let reference = response["$ref"].as_str().unwrap_or_default();
                        assert!(
                            reference.starts_with("#/components/responses/"),
                            "{at} {status}: problem response"
                        );
                    }
                }
                if method != "get" && method != "head" {
                    assert!(
                        responses.contains_key("401") && responses.contains_key("403"),
                        "{at}: auth errors"
                    );
                    assert_eq!(
                        op["security"][0]["bearer"],
                        serde_json::json!([]),
                        "{at}: bearer"
                    );
                }
            }
        }
    }
    assert!(seen >= 10);
    for (name, response) in spec["components"]["responses"].as_object().unwrap() {
        let content = &response["content"]["application/problem+json"];
        assert!(
            content["schema"]["$ref"] == "#/components/schemas/Problem",
            "{name}"
        );
        assert!(content["example"]["status"].is_u64(), "{name}: example");
    }
    let signal = &spec["components"]["schemas"]["Signal"];
    assert_eq!(signal["properties"]["score"]["maximum"], 10);
    assert!(signal["example"]["title"].is_string());
    let input = &spec["components"]["schemas"]["SignalInput"];
    assert_eq!(input["additionalProperties"], false);
    assert_eq!(input["properties"]["score"]["maximum"], 10);
}

#[actix_web::test]
async fn the_service_serves_the_same_document() {
    let app = TestApp::spawn().await;
    let mut res = app.get("/openapi.json").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let served = json_body(&mut res).await;
    assert_eq!(served, serde_json::from_str::<Value>(COMMITTED).unwrap());
}
