use std::process::{Command, Output};

use awc::http::Method;
use serde_json::json;

use crate::helpers::{assert_problem, signal, TestApp};

pub const BIN: &str = env!("CARGO_BIN_EXE_signals");

fn signals(db_url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", db_url)
        .env_remove("RUST_LOG")
        .output()
        .expect("the signals binary runs")
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[actix_web::test]
async fn keys_are_created_listed_and_revoked_from_the_command_line() {
    let app = TestApp::spawn().await;
    let out = stdout(&signals(
        &app.db.url,
        &["keys", "create", "--name", "cron job", "--scope", "write"],
    ));
    assert_eq!(out.lines().count(), 1, "the key alone on standard output");
    let key = out.trim().to_owned();
    assert!(key.starts_with("sig_"));

    // The key works against the service on the same database.
    let created = app.create(&key, &signal(json!({}))).await;
    assert_eq!(created["score"], 7);

    let list = stdout(&signals(&app.db.url, &["keys", "list"]));
    let line = list
        .lines()
        .find(|l| l.contains("cron job"))
        .expect("the key is listed");
    let fields: Vec<&str> = line.split('\t').collect();
    let id = fields[0];
    assert!(uuid::Uuid::parse_str(id).is_ok(), "ID first: {line}");
    assert_eq!(&fields[1..3], ["cron job", "write"]);
    assert_ne!(fields[4], "never", "last used is recorded");
    // `sig_<prefix>_<secret>`: the secret is base64url and may itself hold `_`.
    let secret = key.splitn(3, '_').nth(2).unwrap();
    assert!(secret.len() > 20, "{key}");
    assert!(!list.contains(secret), "the secret is never listed");

    stdout(&signals(&app.db.url, &["keys", "revoke", id]));
    let mut res = app
        .request(Method::POST, "/v1/signals", &key)
        .send_json(&signal(json!({"slug": "x"})))
        .await
        .unwrap();
    assert_problem(&mut res, 401).await;
    assert!(stdout(&signals(&app.db.url, &["keys", "list"])).contains("revoked"));
    // Revoking an unknown key fails with a message.
    let unknown = signals(
        &app.db.url,
        &["keys", "revoke", "01968a4e-1c40-7cc3-9a51-4b1f0e6e2d10"],
    );
    assert!(!unknown.status.success());
}

#[actix_web::test]
async fn a_bad_scope_or_name_is_refused() {
    let app = TestApp::spawn().await;
    let out = signals(
        &app.db.url,
        &["keys", "create", "--name", "x", "--scope", "root"],
    );
    assert!(!out.status.success());
    let out = signals(
        &app.db.url,
        &["keys", "create", "--name", " ", "--scope", "read"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--name"));
}

#[test]
fn openapi_prints_the_committed_document() {
    let out = Command::new(BIN)
        .arg("openapi")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out).trim_end(),
        include_str!("../../openapi/openapi.json").trim_end()
    );
}

#[actix_web::test]
async fn migrate_brings_an_empty_database_up_to_date() {
    let db = crate::helpers::TestDb::empty().await;
    let out = signals(&db.url, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = signals(&db.url, &["keys", "list"]);
    assert!(out.status.success());
}

#[actix_web::test]
async fn json_logs_carry_the_request_id_of_each_request() {
    let db = crate::helpers::TestDb::new().await;
    let port = crate::embedded::free_port();
    let log = std::env::temp_dir().join(format!(
        "signals-log-{}.json",
        uuid::Uuid::now_v7().simple()
    ));
    let mut serve = Command::new(BIN)
        .env("DATABASE_URL", &db.url)
        .env("SIGNALS_BIND", format!("127.0.0.1:{port}"))
        .env("SIGNALS_LOG_FORMAT", "json")
        .env(
            "SIGNALS_WEBHOOK_KEY_FILE",
            log.with_extension("webhook.key"),
        )
        .env_remove("RUST_LOG")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = awc::Client::default();
    crate::embedded::wait_ready(&client, &base, &mut serve).await;
    let res = client
        .get(format!("{base}/v1/signals?min_score=3"))
        .insert_header(("X-Request-Id", "log-check-7"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers().get("x-request-id").unwrap(), "log-check-7");
    crate::embedded::terminate(&mut serve);
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let line = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["span"]["request_id"] == "log-check-7")
        .unwrap_or_else(|| panic!("no JSON log line with the request id in:\n{text}"));
    assert_eq!(line["fields"]["path"], "/v1/signals");
    assert_eq!(line["fields"]["status"], 200);
}
