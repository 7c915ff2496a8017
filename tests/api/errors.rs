use std::time::{Duration, Instant};

use awc::http::Method;
use serde_json::json;
use signals::domain::key::Scope;

use crate::helpers::{assert_problem, header, json_body, signal, TestApp};

#[actix_web::test]
async fn every_bad_field_is_reported_at_once_with_422() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let mut res = app
        .request(Method::POST, "/v1/signals", &key)
        .send_json(&json!({
            "title": "   ", "score": 11, "category": "x".repeat(65), "slug": "Not A Slug",
            "published_at": "2026-05-06 18:02", "tags": ["ok", ""], "sections": [{"heading": "h"}],
            "source_url": "javascript:alert(1)", "id": "mine", "colour": "red"
        }))
        .await
        .unwrap();
    let problem = assert_problem(&mut res, 422).await;
    assert_eq!(problem["type"], "/problems/validation");
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "category",
            "colour",
            "id",
            "published_at",
            "score",
            "sections[0].body",
            "slug",
            "source_url",
            "tags[1]",
            "title"
        ]
    );
    assert_eq!(problem["detail"], "10 fields are invalid");
    // Nothing was written.
    let mut res = app.get("/v1/signals").send().await.unwrap();
    assert_eq!(json_body(&mut res).await["items"], json!([]));
}

#[actix_web::test]
async fn malformed_json_is_400() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let mut res = app
        .request(Method::POST, "/v1/signals", &key)
        .content_type("application/json")
        .send_body(r#"{"title": "x", "score": 7,"#)
        .await
        .unwrap();
    let problem = assert_problem(&mut res, 400).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
}

#[actix_web::test]
async fn a_body_that_is_not_json_is_415() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let mut res = app
        .request(Method::POST, "/v1/signals", &key)
        .content_type("text/plain")
        .send_body("title=x")
        .await
        .unwrap();
    assert_problem(&mut res, 415).await;
    let mut res = app
        .request(Method::POST, "/v1/signals", &key)
        .send_body("{}")
        .await
        .unwrap();
    assert_problem(&mut res, 415).await;
    // A compressed body is not decoded: said so, not reported as bad JSON.
    let mut res = app
        .request(Method::POST, "/v1/signals", &key)
        .content_type("application/json")
        .insert_header(("Content-Encoding", "gzip"))
        .send_body(&b"\x1f\x8b\x08\x00"[..])
        .await
        .unwrap();
    let problem = assert_problem(&mut res, 415).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Content-Encoding"),
        "{problem}"
    );
}

#[actix_web::test]
async fn a_body_over_1_mib_is_413() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let huge = signal(json!({"body": "x".repeat(1024 * 1024 + 1)}));
    let mut res = app
        .request(Method::POST, "/v1/signals", &key)
        .send_json(&huge)
        .await
        .unwrap();
    assert_problem(&mut res, 413).await;
}

#[actix_web::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let app = TestApp::spawn().await;
    let mut res = app.get("/v2/nothing").send().await.unwrap();
    assert_problem(&mut res, 404).await;
    let key = app.key(Scope::Write).await;
    let mut res = app
        .request(Method::DELETE, "/v1/signals", &key)
        .send()
        .await
        .unwrap();
    assert_problem(&mut res, 405).await;
    assert_eq!(header(&res, "allow").as_deref(), Some("GET, HEAD, POST"));
    let mut res = app
        .request(Method::POST, "/v1/signals/some-slug", &key)
        .send()
        .await
        .unwrap();
    assert_problem(&mut res, 405).await;
    assert_eq!(
        header(&res, "allow").as_deref(),
        Some("GET, HEAD, PUT, PATCH, DELETE")
    );
    let res = app
        .request(Method::OPTIONS, "/v1/signals", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "allow").as_deref(), Some("GET, HEAD, POST"));
    // Spelled with an escape, a resource's name is still that resource's.
    let mut res = app
        .request(Method::PUT, "/v1/signals/%62atch", &key)
        .send()
        .await
        .unwrap();
    assert_problem(&mut res, 405).await;
    assert_eq!(header(&res, "allow").as_deref(), Some("POST"));
    // The docs' pages, outside the document, answer the same way.
    for path in ["/docs", "/docs/", "/docs/index.html"] {
        let mut res = app.request(Method::POST, path, &key).send().await.unwrap();
        assert_problem(&mut res, 405).await;
        assert_eq!(
            header(&res, "allow").as_deref(),
            Some("GET, HEAD"),
            "{path}"
        );
        let res = app
            .request(Method::OPTIONS, path, &key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204, "{path}");
    }
}

#[actix_web::test]
async fn bad_path_and_query_parameters_are_400() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    // A name that is neither an id nor a possible slug names no signal.
    let mut res = app
        .request(Method::PUT, "/v1/signals/Not_A_Slug", &key)
        .send_json(&signal(json!({})))
        .await
        .unwrap();
    assert_problem(&mut res, 404).await;
    for query in [
        "since=2026-02-01",
        "fields=title,%20score",
        "cursor=not-a-cursor",
        "category=a%00b",
        "min_score=eleven",
        "min_score=11",
        "limit=0",
        "limit=1000",
        "sort=best",
        "since=yesterday",
        "min_score=1&min_score=2",
        "colour=red",
    ] {
        let mut res = app
            .get(&format!("/v1/signals?{query}"))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(&mut res, 400).await;
        assert!(!problem["errors"].as_array().unwrap().is_empty(), "{query}");
    }
    // Endpoints without query parameters report one that is sent, as the lists do.
    let mut res = app
        .request(Method::POST, "/v1/signals", &key)
        .send_json(&signal(json!({"slug": "made"})))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    json_body(&mut res).await;
    for (method, path) in [
        (Method::GET, "/v1/signals/made?fields=title"),
        (Method::POST, "/v1/signals?dry_run=true"),
        (Method::PUT, "/v1/signals/made?x=1"),
        (Method::PATCH, "/v1/signals/made?x=1"),
        (Method::DELETE, "/v1/signals/made?x=1"),
        (Method::POST, "/v1/signals/batch?on_conflict=skip"),
    ] {
        let mut res = app
            .request(method.clone(), path, &key)
            .send_json(&signal(json!({"slug": "other"})))
            .await
            .unwrap();
        let problem = assert_problem(&mut res, 400).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("not a parameter"),
            "{method} {path}: {problem}"
        );
    }
    // Nothing was changed by them.
    let res = app.get("/v1/signals/made").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = app.get("/v1/signals/other").send().await.unwrap();
    assert_eq!(res.status(), 404);
}

#[actix_web::test]
async fn the_request_id_is_echoed_or_made() {
    let app = TestApp::spawn().await;
    let res = app
        .get("/healthz")
        .insert_header(("X-Request-Id", "abc-123"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&res, "x-request-id").as_deref(), Some("abc-123"));
    let res = app.get("/healthz").send().await.unwrap();
    assert!(header(&res, "x-request-id").is_some_and(|id| id.len() == 36));
}

#[actix_web::test]
async fn a_lost_database_gives_503_not_a_hang() {
    let app = TestApp::spawn_with(|_, db| db.db_timeout_ms = 500).await;
    let res = app.get("/readyz").send().await.unwrap();
    assert_eq!(res.status(), 200);
    app.db.drop_now().await;
    let started = Instant::now();
    let mut res = app.get("/v1/signals").send().await.unwrap();
    assert_problem(&mut res, 503).await;
    assert!(header(&res, "retry-after").is_some());
    let mut res = app.get("/readyz").send().await.unwrap();
    assert_problem(&mut res, 503).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let res = app.get("/healthz").send().await.unwrap();
    assert_eq!(
        res.status(),
        200,
        "liveness does not depend on the database"
    );
}

#[actix_web::test]
async fn a_stuck_database_gives_503_after_the_wait_timeout() {
    let app = TestApp::spawn_with(|_, db| {
        db.pool_size = 1;
        db.db_timeout_ms = 300;
    })
    .await;
    // Hold a lock that makes the app's one connection wait inside a query.
    let client = app.lock_signals().await;
    let stuck = actix_web::rt::spawn(app.get("/v1/signals").send());
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let mut res = app.get("/v1/signals?min_score=1").send().await.unwrap();
    assert_problem(&mut res, 503).await;
    assert!(started.elapsed() < Duration::from_secs(5));

    // Once the database moves again, so does the first request.
    client.batch_execute("COMMIT").await.unwrap();
    let res = stuck.await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
}

#[actix_web::test]
async fn health_metrics_and_docs_are_served() {
    let app = TestApp::spawn().await;
    app.get("/v1/signals?min_score=7").send().await.unwrap();
    app.get("/nowhere").send().await.unwrap();
    let mut res = app.get("/metrics").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    assert!(
        text.contains(
            r#"signals_http_requests_total{method="GET",route="/v1/signals",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"route="unmatched",status="404""#), "{text}");
    assert!(
        text.contains("signals_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    // Three pools (list queries planned for their values; those one plan fits; the rest) of 4
    // connections each, and the lookups' one.
    assert!(text.contains("signals_db_pool_max_size 13"), "{text}");
    // The list with a score bound asked the pool that keeps one plan first; a new table has no
    // statistics of its scores yet, so it was planned for its values on a connection of the
    // other list pool.
    assert!(text.contains("signals_db_pool_size 2"), "{text}");

    // The page at /docs itself (no redirect), its files under /docs/.
    let mut res = app.get("/docs").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let page = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    assert!(
        page.contains("<base href=\"/docs/\">") && page.contains("./swagger-ui-bundle.js"),
        "{page}"
    );
    let mut res = app.get("/docs/").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let page = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "the docs page loads nothing from elsewhere"
    );
    let mut res = app
        .get("/docs/swagger-initializer.js")
        .send()
        .await
        .unwrap();
    let init = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    assert!(
        init.contains("/openapi.json") && init.contains("validatorUrl"),
        "{init}"
    );
    let res = app.get("/docs/swagger-ui-bundle.js").send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[actix_web::test]
async fn cors_allows_reads_anywhere_and_writes_from_configured_origins() {
    let app = TestApp::spawn().await;
    let preflight = |origin: &'static str, method: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/v1/signals"))
            .insert_header(("Origin", origin))
            .insert_header(("Access-Control-Request-Method", method))
            .send()
    };
    let res = preflight("https://any.example", "GET").await.unwrap();
    assert_eq!(
        header(&res, "access-control-allow-origin").as_deref(),
        Some("https://any.example")
    );
    let res = preflight("https://admin.example", "POST").await.unwrap();
    assert_eq!(
        header(&res, "access-control-allow-origin").as_deref(),
        Some("https://admin.example")
    );
    let res = preflight("https://any.example", "POST").await.unwrap();
    assert!(header(&res, "access-control-allow-origin").is_none());
    // Every request header a read documents may be sent from any origin.
    for name in [
        "if-none-match",
        "if-modified-since",
        "last-event-id",
        "signals-read-after",
    ] {
        let res = app
            .client
            .request(Method::OPTIONS, app.url("/v1/feed.json"))
            .insert_header(("Origin", "https://any.example"))
            .insert_header(("Access-Control-Request-Method", "GET"))
            .insert_header(("Access-Control-Request-Headers", name))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{name}: {}", res.status());
        assert_eq!(
            header(&res, "access-control-allow-origin").as_deref(),
            Some("https://any.example"),
            "{name}"
        );
    }
    // A write's answer tells a browser app where its next read must be (read your writes).
    let res = app
        .get("/v1/signals")
        .insert_header(("Origin", "https://admin.example"))
        .send()
        .await
        .unwrap();
    let exposed = header(&res, "access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    // And the headers the contract gives a 401 and a 405, which a browser app can read only
    // when they are exposed.
    for name in ["signals-read-after", "www-authenticate", "allow"] {
        assert!(
            exposed.split(',').any(|n| n.trim() == name),
            "{name}: {exposed}"
        );
    }
}

#[actix_web::test]
async fn invented_methods_do_not_grow_the_metrics() {
    let app = TestApp::spawn().await;
    let size = |app: &TestApp| {
        let client = app.client.clone();
        let url = app.url("/metrics");
        async move {
            let mut res = client.get(url).send().await.unwrap();
            res.body().limit(1 << 24).await.unwrap().len()
        }
    };
    let mut before = 0;
    for i in 0..200 {
        if i == 3 {
            // Twice, so that the series of GET /metrics itself exists before measuring.
            size(&app).await;
            before = size(&app).await;
        }
        let method = Method::from_bytes(format!("INVENT{i}").as_bytes()).unwrap();
        app.client
            .request(method, app.url(&format!("/nowhere/{i}")))
            .send()
            .await
            .unwrap();
    }
    let after = size(&app).await;
    // Only the counts change (a few digits), not the number of series.
    assert!(
        after < before + 200,
        "metrics grew from {before} to {after} bytes"
    );
}
