use std::collections::HashSet;

use awc::http::Method;
use serde_json::{json, Value};
use signals::domain::key::Scope;

use crate::helpers::{assert_problem, header, json_body, signal, TestApp};

async fn post(
    app: &TestApp,
    path: &str,
    key: &str,
    idem: &str,
    body: &Value,
) -> crate::helpers::Response {
    app.request(Method::POST, path, key)
        .insert_header(("Idempotency-Key", idem))
        .send_json(body)
        .await
        .unwrap()
}

async fn signal_count(app: &TestApp) -> usize {
    let mut res = app.get("/v1/signals?limit=100").send().await.unwrap();
    json_body(&mut res).await["items"].as_array().unwrap().len()
}

#[actix_web::test]
async fn a_retry_with_the_same_key_replays_the_first_response() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let body = signal(json!({}));
    let mut first = post(&app, "/v1/signals", &key, "cron-1", &body).await;
    assert_eq!(first.status(), 201);
    assert!(header(&first, "idempotent-replayed").is_none());
    let first_body = first.body().await.unwrap();
    // The same body, spelled differently (whitespace, key order), is the same request.
    let mut pairs: Vec<(String, Value)> = body.as_object().unwrap().clone().into_iter().collect();
    pairs.reverse();
    let respelled = format!(
        "{{\n  {}\n}}",
        pairs
            .iter()
            .map(|(k, v)| format!("{k:?} :  {v}"))
            .collect::<Vec<_>>()
            .join(",\n  ")
    );
    assert_ne!(respelled.as_bytes(), serde_json::to_vec(&body).unwrap());
    let mut again = app
        .request(Method::POST, "/v1/signals", &key)
        .insert_header(("Idempotency-Key", "cron-1"))
        .content_type("application/json")
        .send_body(respelled)
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(
        header(&again, "idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(header(&again, "location"), header(&first, "location"));
    assert_eq!(header(&again, "etag"), header(&first, "etag"));
    assert_eq!(again.body().await.unwrap(), first_body);
    assert_eq!(signal_count(&app).await, 1);

    // Another body under the same key is refused; another API key has its own keys.
    let mut res = post(
        &app,
        "/v1/signals",
        &key,
        "cron-1",
        &signal(json!({"score": 3})),
    )
    .await;
    assert_problem(&mut res, 422).await;
    let other = app.key(Scope::Write).await;
    let res = post(&app, "/v1/signals", &other, "cron-1", &body).await;
    assert_eq!(res.status(), 201);
    assert!(header(&res, "idempotent-replayed").is_none());
    assert_eq!(signal_count(&app).await, 2);
}

#[actix_web::test]
async fn many_concurrent_requests_with_one_key_create_exactly_one_signal() {
    let app = TestApp::spawn_with(|_, db| db.pool_size = 8).await;
    let key = app.key(Scope::Write).await;
    let body = signal(json!({}));
    let requests = (0..24).map(|_| {
        app.request(Method::POST, "/v1/signals", &key)
            .insert_header(("Idempotency-Key", "same-for-all"))
            .send_json(&body)
    });
    let responses = futures_util::future::join_all(requests).await;
    let mut bodies = HashSet::new();
    let mut created = 0;
    for res in responses {
        let mut res = res.unwrap();
        match res.status().as_u16() {
            201 => {
                if header(&res, "idempotent-replayed").is_none() {
                    created += 1;
                }
                bodies.insert(res.body().await.unwrap());
            }
            409 => {
                assert_problem(&mut res, 409).await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created, 1, "exactly one request did the write");
    assert_eq!(bodies.len(), 1, "every replay is the first response");
    assert_eq!(signal_count(&app).await, 1);
    // Once the first is done, a retry is a replay, and so is every one of many that come
    // together (none is told another is in flight: a replay takes no lock).
    let res = post(&app, "/v1/signals", &key, "same-for-all", &body).await;
    assert_eq!(header(&res, "idempotent-replayed").as_deref(), Some("true"));
    let retries = (0..24).map(|_| {
        app.request(Method::POST, "/v1/signals", &key)
            .insert_header(("Idempotency-Key", "same-for-all"))
            .send_json(&body)
    });
    for res in futures_util::future::join_all(retries).await {
        let mut res = res.unwrap();
        assert_eq!(res.status(), 201, "{:?}", res.body().await);
        assert_eq!(header(&res, "idempotent-replayed").as_deref(), Some("true"));
        assert!(bodies.contains(&res.body().await.unwrap()));
    }
    assert_eq!(signal_count(&app).await, 1);
}

#[actix_web::test]
async fn a_duplicate_while_the_first_is_in_flight_is_409_and_writes_nothing() {
    let app = TestApp::spawn_with(|_, db| db.pool_size = 4).await;
    let key = app.key(Scope::Write).await;
    let body = signal(json!({}));
    // The first request takes the key's lock, then waits on the locked table: it is in flight.
    let lock = app.lock_signals().await;
    let first = app
        .request(Method::POST, "/v1/signals", &key)
        .insert_header(("Idempotency-Key", "slow-one"))
        .send_json(&body);
    let first = actix_web::rt::spawn(first);
    let mut conn = signals::db::conn(&app.pool).await.unwrap();
    let started = std::time::Instant::now();
    loop {
        #[derive(diesel::QueryableByName)]
        struct Held {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        // In this database, and not the lock of the service's minutely check of its search
        // index (a 64-bit key shows as classid, its high half, and objid, its low half).
        let held: Held = diesel_async::RunQueryDsl::get_result(
            diesel::sql_query(
                "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND (classid::int8 << 32) + objid::int8 <> $1",
            )
            .bind::<diesel::sql_types::BigInt, _>(signals::db::search_index::LOCK),
            &mut conn,
        )
        .await
        .unwrap();
        if held.n > 0 {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 10,
            "the first request never took its lock"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut second = post(&app, "/v1/signals", &key, "slow-one", &body).await;
    let problem = assert_problem(&mut second, 409).await;
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    lock.batch_execute("COMMIT").await.unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), 201);
    assert_eq!(signal_count(&app).await, 1, "the 409 wrote nothing");
}

#[actix_web::test]
async fn batches_are_idempotent_too() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let body = json!({"items": [signal(json!({"slug": "a"})), signal(json!({"slug": "b"}))]});
    let mut first = post(&app, "/v1/signals/batch", &key, "import-7", &body).await;
    assert_eq!(first.status(), 200);
    let first_body = json_body(&mut first).await;
    let mut again = post(&app, "/v1/signals/batch", &key, "import-7", &body).await;
    assert_eq!(
        header(&again, "idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(json_body(&mut again).await, first_body);
    assert_eq!(signal_count(&app).await, 2);
}

#[actix_web::test]
async fn a_failed_write_is_not_recorded_and_bad_keys_are_400() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    app.create(&key, &signal(json!({"slug": "taken"}))).await;
    let mut res = post(
        &app,
        "/v1/signals",
        &key,
        "k-1",
        &signal(json!({"slug": "taken"})),
    )
    .await;
    assert_problem(&mut res, 409).await;
    // The conflict was not stored: the same key works for the corrected request... with the
    // same body it is tried again (and fails again), not replayed.
    let mut res = post(
        &app,
        "/v1/signals",
        &key,
        "k-1",
        &signal(json!({"slug": "taken"})),
    )
    .await;
    assert_problem(&mut res, 409).await;
    assert!(header(&res, "idempotent-replayed").is_none());
    let long = "x".repeat(256);
    let mut res = post(&app, "/v1/signals", &key, &long, &signal(json!({}))).await;
    assert_problem(&mut res, 400).await;
}

/// The server is killed (SIGKILL) while batches with idempotency keys are in flight; after a
/// restart every batch is retried with its key: each signal exists once, and batches answered
/// before the kill are replayed with the very same body.
#[actix_web::test]
async fn batches_retried_after_the_server_is_killed_are_written_exactly_once() {
    use std::process::{Command, Stdio};
    let app = TestApp::spawn().await; // for its database and a key
    let key = app.key(Scope::Write).await;
    let start = |port: u16| {
        Command::new(crate::cli::BIN)
            .env("DATABASE_URL", &app.db.url)
            .env("SIGNALS_BIND", format!("127.0.0.1:{port}"))
            .env("SIGNALS_WEBHOOK_KEY", crate::helpers::TEST_WEBHOOK_KEY)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let port = crate::embedded::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .finish();
    // Items without slugs: a second write of an item would add a row with a derived slug.
    let batches: Vec<Value> = (0..20)
        .map(|b| json!({"items": (0..50).map(|i| json!({"title": format!("Batch {b} item {i}"), "score": 5, "category": "Crash"})).collect::<Vec<_>>()}))
        .collect();
    let send = |b: usize| {
        client
            .post(format!("{base}/v1/signals/batch"))
            .insert_header(("Authorization", format!("Bearer {key}")))
            .insert_header(("Idempotency-Key", format!("crash-{b}")))
            .send_json(&batches[b])
    };

    let mut server = start(port);
    crate::embedded::wait_ready(&client, &base, &mut server).await;
    let mut answered: Vec<Option<actix_web::web::Bytes>> = vec![None; batches.len()];
    for (b, answer) in answered.iter_mut().enumerate().take(8) {
        let mut res = send(b).await.unwrap();
        assert_eq!(res.status(), 200);
        *answer = Some(res.body().await.unwrap());
    }
    // More batches in flight, then the kill.
    let in_flight: Vec<_> = (8..20).map(|b| actix_web::rt::spawn(send(b))).collect();
    actix_web::rt::time::sleep(std::time::Duration::from_millis(30)).await;
    server.kill().unwrap();
    server.wait().unwrap();
    for task in in_flight {
        let _ = task.await; // answered, failed or cut off: all are retried below
    }

    let mut server = start(port);
    crate::embedded::wait_ready(&client, &base, &mut server).await;
    for (b, answer) in answered.iter().enumerate() {
        let mut res = send(b).await.unwrap();
        assert_eq!(res.status(), 200, "batch {b}");
        let body = res.body().await.unwrap();
        if let Some(first) = answer {
            assert_eq!(
                res.headers().get("idempotent-replayed").unwrap(),
                "true",
                "batch {b}"
            );
            assert_eq!(&body, first, "batch {b}: the replay is the first response");
        }
    }
    crate::embedded::terminate(&mut server);
    let client_db = app.db.sql().await;
    let rows: i64 = client_db
        .query_one("SELECT count(*) FROM signals", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1000, "exactly one copy of every item");
}

/// A record is kept 24 hours by the database's clock (one clock for every instance): at 23
/// hours a retry is still replayed, at 25 it is a new request, and the janitor deletes it.
#[actix_web::test]
async fn a_record_expires_after_24_hours_by_the_databases_clock() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let res = post(&app, "/v1/signals", &key, "daily", &signal(json!({}))).await;
    assert_eq!(res.status(), 201);
    let sql = app.db.sql().await;
    let age = |hours: i32| {
        format!("UPDATE idempotency_records SET created_at = now() - interval '{hours} hours'")
    };
    sql.batch_execute(&age(23)).await.unwrap();
    let other = signal(json!({"title": "another"}));
    let mut res = post(&app, "/v1/signals", &key, "daily", &other).await;
    assert_problem(&mut res, 422).await;
    sql.batch_execute(&age(25)).await.unwrap();
    let res = post(&app, "/v1/signals", &key, "daily", &other).await;
    assert_eq!(res.status(), 201, "an expired key is a new request");
    assert_eq!(signal_count(&app).await, 2);
    sql.batch_execute(&age(25)).await.unwrap();
    let mut conn = signals::db::conn(&app.pool).await.unwrap();
    assert_eq!(
        signals::db::idempotency::delete_expired(&mut conn)
            .await
            .unwrap(),
        1
    );
}
