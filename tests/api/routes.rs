//! One path template names a signal; every GET answers HEAD; `Allow` is the spec's methods.

use awc::http::Method;
use serde_json::{json, Value};
use signals::domain::key::Scope;

use crate::helpers::{assert_problem, header, json_body, signal, TestApp};

/// The served spec's paths, with the methods each has, and a concrete URL for each.
async fn documented_paths(app: &TestApp, slug: &str) -> Vec<(String, Vec<String>)> {
    let mut res = app.get("/openapi.json").send().await.unwrap();
    let spec = json_body(&mut res).await;
    spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "head", "post", "put", "patch", "delete"].contains(&k.as_str()))
                .map(|k| k.to_uppercase())
                .collect();
            (path.replace("{id_or_slug}", slug), methods)
        })
        .collect()
}

const ORDER: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

#[actix_web::test]
async fn allow_lists_exactly_the_documented_methods_of_every_path() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Admin).await;
    let created = app.create(&key, &signal(json!({}))).await;
    let paths = documented_paths(&app, created["slug"].as_str().unwrap()).await;
    assert!(paths.len() >= 9);
    for (path, methods) in paths {
        let expected: Vec<&str> = ORDER
            .iter()
            .copied()
            .filter(|m| methods.iter().any(|d| d == m))
            .collect();
        let expected = expected.join(", ");
        let res = app
            .request(Method::OPTIONS, &path, &key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204, "OPTIONS {path}");
        assert_eq!(
            header(&res, "allow").as_deref(),
            Some(expected.as_str()),
            "OPTIONS {path}"
        );
        for method in ORDER.iter().filter(|m| !methods.iter().any(|d| d == *m)) {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let mut res = app
                .request(method.clone(), &path, &key)
                .insert_header(("Content-Type", "application/json"))
                .send_body("{}")
                .await
                .unwrap();
            if method == Method::HEAD {
                assert_eq!(res.status(), 405, "HEAD {path}");
            } else {
                assert_problem(&mut res, 405).await;
            }
            assert_eq!(
                header(&res, "allow").as_deref(),
                Some(expected.as_str()),
                "{method} {path}"
            );
        }
    }
}

#[actix_web::test]
async fn the_batch_path_answers_every_other_method_with_405_allow_post() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Admin).await;
    for method in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
        let mut res = app
            .request(method.clone(), "/v1/signals/batch", &key)
            .insert_header(("Content-Type", "application/json"))
            .send_body("{}")
            .await
            .unwrap();
        let problem = assert_problem(&mut res, 405).await;
        assert_eq!(header(&res, "allow").as_deref(), Some("POST"), "{method}");
        assert!(problem["detail"]
            .as_str()
            .unwrap()
            .contains(method.as_str()));
    }
    let mut res = app
        .request(Method::POST, "/v1/signals", &key)
        .send_json(&signal(json!({"slug": "batch"})))
        .await
        .unwrap();
    let problem = assert_problem(&mut res, 422).await;
    assert_eq!(problem["errors"][0]["field"], "slug");
    let created = app.create(&key, &signal(json!({"title": "Batch"}))).await;
    assert_eq!(created["slug"], "batch-signal");
}

#[actix_web::test]
async fn every_get_route_answers_head_with_its_status_and_headers_and_no_body() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Admin).await;
    let created = app.create(&key, &signal(json!({}))).await;
    let slug = created["slug"].as_str().unwrap().to_owned();
    let mut gets: Vec<String> = documented_paths(&app, &slug)
        .await
        .into_iter()
        .filter(|(_, methods)| methods.iter().any(|m| m == "GET"))
        .map(|(path, methods)| {
            assert!(methods.iter().any(|m| m == "HEAD"), "{path} documents HEAD");
            path
        })
        .collect();
    gets.push("/v1/signals/no-such-signal".into());
    gets.push("/v1/signals?min_score=11".into());
    for path in gets {
        // The stream's body never ends: tests/api/stream.rs checks its HEAD.
        if path.starts_with("/v1/signals/stream") {
            continue;
        }
        let mut get = app.get(&path).send().await.unwrap();
        let get_body = get.body().limit(16 << 20).await.unwrap();
        let mut head = app.client.head(app.url(&path)).send().await.unwrap();
        let head_body = head.body().await.unwrap();
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert!(head_body.is_empty(), "HEAD {path} has no body");
        // The metrics count this very request, so their length moves between the two.
        let lengths = if path == "/metrics" { 3 } else { 4 };
        for name in &["content-type", "etag", "cache-control", "content-length"][..lengths] {
            let expected = match *name {
                "content-length" => Some(get_body.len().to_string()),
                _ => header(&get, name),
            };
            assert_eq!(header(&head, name), expected, "HEAD {path}: {name}");
        }
    }
    // A HEAD with a current ETag is 304, like the GET.
    let path = format!("/v1/signals/{slug}");
    let etag = header(&app.get(&path).send().await.unwrap(), "etag").unwrap();
    let res = app
        .client
        .head(app.url(&path))
        .insert_header(("If-None-Match", etag))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
}

#[actix_web::test]
async fn writes_name_a_signal_by_slug_as_well_as_by_id() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let created = app.create(&key, &signal(json!({"slug": "by-slug"}))).await;
    let mut res = app
        .request(Method::PUT, "/v1/signals/by-slug", &key)
        .send_json(&signal(json!({"score": 3})))
        .await
        .unwrap();
    let replaced: Value = json_body(&mut res).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        (replaced["id"].clone(), replaced["score"].clone()),
        (created["id"].clone(), json!(3))
    );
    let mut res = app
        .request(Method::PATCH, "/v1/signals/by-slug", &key)
        .insert_header(("If-Match", header_of(&app, "/v1/signals/by-slug").await))
        .send_json(&json!({"score": 4}))
        .await
        .unwrap();
    assert_eq!(json_body(&mut res).await["score"], 4);
    let mut res = app
        .request(Method::PATCH, "/v1/signals/by-slug", &key)
        .send_json(&json!(["not", "an", "object"]))
        .await
        .unwrap();
    assert_problem(&mut res, 422).await;
    let res = app
        .request(Method::DELETE, "/v1/signals/by-slug", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let id = created["id"].as_str().unwrap();
    let mut res = app.get(&format!("/v1/signals/{id}")).send().await.unwrap();
    assert_problem(&mut res, 404).await;
    let mut res = app
        .request(Method::DELETE, "/v1/signals/by-slug", &key)
        .send()
        .await
        .unwrap();
    assert_problem(&mut res, 404).await;
}

async fn header_of(app: &TestApp, path: &str) -> String {
    header(&app.get(path).send().await.unwrap(), "etag").unwrap()
}
