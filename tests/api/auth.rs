use awc::http::Method;
use serde_json::json;
use signals::domain::key::Scope;

use crate::helpers::{assert_problem, header, signal, TestApp};

#[actix_web::test]
async fn writes_without_a_valid_key_are_401_with_www_authenticate() {
    let app = TestApp::spawn().await;
    let body = signal(json!({}));
    let mut res = app
        .client
        .post(app.url("/v1/signals"))
        .send_json(&body)
        .await
        .unwrap();
    assert_problem(&mut res, 401).await;
    assert!(header(&res, "www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    for bad in ["sig_000000000000_nope", "garbage"] {
        let mut res = app
            .request(Method::POST, "/v1/signals", bad)
            .send_json(&body)
            .await
            .unwrap();
        assert_problem(&mut res, 401).await;
    }
    // A real prefix with a wrong secret.
    let key = app.key(Scope::Write).await;
    let forged = format!("{}x", &key[..key.len() - 1]);
    let mut res = app
        .request(Method::POST, "/v1/signals", &forged)
        .send_json(&body)
        .await
        .unwrap();
    assert_problem(&mut res, 401).await;
}

#[actix_web::test]
async fn a_read_key_cannot_write() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Read).await;
    let mut res = app
        .request(Method::POST, "/v1/signals", &key)
        .send_json(&signal(json!({})))
        .await
        .unwrap();
    assert_problem(&mut res, 403).await;
}

#[actix_web::test]
async fn a_write_key_changes_only_its_own_signals_and_admin_any() {
    let app = TestApp::spawn().await;
    let owner = app.key(Scope::Write).await;
    let other = app.key(Scope::Write).await;
    let admin = app.key(Scope::Admin).await;
    let created = app.create(&owner, &signal(json!({}))).await;
    let path = format!("/v1/signals/{}", created["id"].as_str().unwrap());
    let mut res = app
        .request(Method::PATCH, &path, &other)
        .send_json(&json!({"score": 1}))
        .await
        .unwrap();
    assert_problem(&mut res, 403).await;
    let mut res = app
        .request(Method::DELETE, &path, &other)
        .send()
        .await
        .unwrap();
    assert_problem(&mut res, 403).await;
    let res = app
        .request(Method::PATCH, &path, &owner)
        .send_json(&json!({"score": 2}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .request(Method::PUT, &path, &admin)
        .send_json(&signal(json!({"score": 3})))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .request(Method::DELETE, &path, &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}

#[actix_web::test]
async fn a_revoked_key_stops_working_at_once() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    app.create(&key, &signal(json!({}))).await;
    let mut conn = signals::db::conn(&app.pool).await.unwrap();
    let prefix = signals::domain::key::split(&key).unwrap().0.to_owned();
    let row = signals::db::keys::find_active(&mut conn, &prefix)
        .await
        .unwrap()
        .unwrap();
    assert!(row.last_used_at.is_some(), "use is recorded");
    assert!(signals::db::keys::revoke(&mut conn, row.id).await.unwrap());
    let mut res = app
        .request(Method::POST, "/v1/signals", &key)
        .send_json(&signal(json!({"slug": "again"})))
        .await
        .unwrap();
    assert_problem(&mut res, 401).await;
}

#[actix_web::test]
async fn private_reads_need_a_read_key() {
    let app = TestApp::spawn_with(|serve, _| serve.public_read = false).await;
    let mut res = app.get("/v1/signals").send().await.unwrap();
    assert_problem(&mut res, 401).await;
    let key = app.key(Scope::Read).await;
    let res = app
        .request(Method::GET, "/v1/signals", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(header(&res, "cache-control")
        .unwrap()
        .starts_with("private"));
    // Public reads still check a key that is sent.
    let public = TestApp::spawn().await;
    let mut res = public
        .request(Method::GET, "/v1/signals", "sig_000000000000_nope")
        .send()
        .await
        .unwrap();
    assert_problem(&mut res, 401).await;
}
