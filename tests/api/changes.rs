//! The change log: one row per change, in the same transaction, in commit order, kept for the
//! retention.

use std::collections::HashSet;

use awc::http::Method;
use serde_json::json;
use signals::db::{self, changes};
use signals::domain::key::Scope;

use crate::helpers::{json_body, signal, TestApp};

async fn all_changes(app: &TestApp) -> Vec<changes::Change> {
    let mut conn = db::conn(&app.pool).await.unwrap();
    changes::after(&mut conn, 0, 100_000).await.unwrap()
}

#[actix_web::test]
async fn every_create_update_and_delete_is_logged_with_the_state_filters_need() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let created = app
        .create(&key, &signal(json!({"slug": "logged", "score": 3})))
        .await;
    let res = app
        .request(Method::PATCH, "/v1/signals/logged", &key)
        .send_json(&json!({"score": 8, "tags": ["LLM"]}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut res = app
        .request(Method::POST, "/v1/signals/batch", &key)
        .send_json(&json!({"items": [signal(json!({"slug": "in-a-batch"})), signal(json!({"slug": "logged", "score": 9}))], "on_conflict": "update"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", json_body(&mut res).await);
    let res = app
        .request(Method::DELETE, "/v1/signals/logged", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    // A write that fails leaves no change behind.
    let res = app
        .request(Method::POST, "/v1/signals", &key)
        .send_json(&signal(json!({"slug": "in-a-batch"})))
        .await
        .unwrap();
    assert_eq!(res.status(), 409);

    let log = all_changes(&app).await;
    let kinds: Vec<(&str, &str)> = log
        .iter()
        .map(|c| (c.kind.as_str(), c.slug.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("created", "logged"),
            ("updated", "logged"),
            ("created", "in-a-batch"),
            ("updated", "logged"),
            ("deleted", "logged")
        ]
    );
    assert!(log.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(
        log[0].signal_id.to_string(),
        created["id"].as_str().unwrap()
    );
    assert_eq!(log[0].before, None);
    assert_eq!(log[1].before.as_ref().unwrap()["score"], 3);
    assert_eq!(log[1].after.as_ref().unwrap()["score"], 8);
    assert_eq!(log[1].after.as_ref().unwrap()["tag_keys"], json!(["llm"]));
    assert_eq!(log[4].after, None);
    assert_eq!(log[4].before.as_ref().unwrap()["score"], 9);
}

#[actix_web::test]
async fn concurrent_writers_never_make_a_reader_skip_a_change() {
    let app = TestApp::spawn_with(|_, db| db.pool_size = 8).await;
    let key = app.key(Scope::Write).await;
    let writers: Vec<_> = (0..6)
        .map(|w| {
            let (client, url, key) = (
                app.client.clone(),
                app.url("/v1/signals/batch"),
                key.clone(),
            );
            actix_web::rt::spawn(async move {
                for i in 0..10 {
                    // Batches of a few rows: transactions that overlap and hold their positions
                    // for a while before they commit.
                    let items: Vec<_> = (0..3)
                        .map(|j| signal(json!({"title": format!("Writer {w} batch {i} item {j}")})))
                        .collect();
                    let res = client
                        .post(&url)
                        .insert_header(("Authorization", format!("Bearer {key}")))
                        .send_json(&json!({"items": items}))
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 200);
                }
            })
        })
        .collect();
    // A reader that goes on from the last position it saw, as a subscriber does.
    let mut conn = db::conn(&app.pool).await.unwrap();
    let (mut last, mut seen) = (0, Vec::new());
    let mut writing = true;
    while writing {
        writing = !writers.iter().all(|w| w.is_finished());
        for change in changes::after(&mut conn, last, 1000).await.unwrap() {
            last = change.position;
            seen.push(change.position);
        }
        actix_web::rt::task::yield_now().await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    for change in changes::after(&mut conn, last, 1000).await.unwrap() {
        seen.push(change.position);
    }
    let all: Vec<i64> = all_changes(&app).await.iter().map(|c| c.position).collect();
    assert_eq!(all.len(), 6 * 10 * 3);
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no change twice");
    assert_eq!(seen, all, "every change, in order, none skipped");
}

#[actix_web::test]
async fn changes_past_the_retention_are_deleted() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    app.create(&key, &signal(json!({"slug": "old"}))).await;
    app.create(&key, &signal(json!({"slug": "new"}))).await;
    let mut conn = db::conn(&app.pool).await.unwrap();
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "UPDATE signal_changes SET committed_at = now() - interval '8 days' WHERE slug = 'old'",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    fanned_out(&app).await;
    let week_ago = chrono::Utc::now() - chrono::Duration::days(7);
    assert_eq!(
        changes::delete_before(&mut conn, week_ago).await.unwrap(),
        1
    );
    let (oldest, newest) = changes::bounds(&mut conn).await.unwrap();
    assert_eq!(oldest, newest);
    assert_eq!(all_changes(&app).await[0].slug, "new");
    // Past the retention too, the newest change stays: the log does not empty, so a resume from
    // an older position is still told it is gone (410), not given nothing.
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE signal_changes SET committed_at = now() - interval '8 days'"),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(
        changes::delete_before(&mut conn, week_ago).await.unwrap(),
        0
    );
    assert_eq!(changes::bounds(&mut conn).await.unwrap(), (newest, newest));
    let mut res = app
        .get("/v1/signals/stream")
        .insert_header(("Last-Event-ID", (newest.unwrap() - 2).to_string()))
        .send()
        .await
        .unwrap();
    crate::helpers::assert_problem(&mut res, 410).await;
}

/// Waits until the webhooks' fan-out has read every change in the log.
async fn fanned_out(app: &TestApp) {
    let sql = app.db.sql().await;
    let started = std::time::Instant::now();
    loop {
        let done: bool = sql
            .query_one(
                "SELECT (SELECT position FROM webhook_fanout WHERE id = 1) >= \
                 coalesce((SELECT max(position) FROM signal_changes), 0)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if done {
            return;
        }
        assert!(started.elapsed().as_secs() < 10, "the fan-out moves on");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A change the webhooks' fan-out has not read yet stays however old it is, and goes once the
/// fan-out has passed it: deliveries are late then, never lost.
#[actix_web::test]
async fn a_change_the_fan_out_has_not_read_outlives_the_retention() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let holder = app.db.sql().await;
    holder
        .batch_execute("BEGIN; SELECT 1 FROM webhook_fanout FOR UPDATE")
        .await
        .unwrap();
    app.create(&key, &signal(json!({"slug": "held"}))).await;
    // (The newest change always stays: this one is what can go.)
    app.create(&key, &signal(json!({"slug": "newest"}))).await;
    let mut conn = db::conn(&app.pool).await.unwrap();
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE signal_changes SET committed_at = now() - interval '8 days'"),
        &mut conn,
    )
    .await
    .unwrap();
    let week_ago = chrono::Utc::now() - chrono::Duration::days(7);
    assert_eq!(
        changes::delete_before(&mut conn, week_ago).await.unwrap(),
        0,
        "not read by the fan-out yet"
    );
    holder.batch_execute("COMMIT").await.unwrap();
    fanned_out(&app).await;
    assert_eq!(
        changes::delete_before(&mut conn, week_ago).await.unwrap(),
        1
    );
}

/// A statement that changes no row (as a create's INSERT ... ON CONFLICT DO NOTHING on a taken
/// derived slug) takes no lock of the log: two creates trying each other's slugs could otherwise
/// wait for each other (a deadlock PostgreSQL breaks by failing one).
#[actix_web::test]
async fn a_statement_that_changes_no_row_holds_up_no_writer() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let other = app.db.sql().await;
    other
        .batch_execute("BEGIN; UPDATE signals SET title = title WHERE false")
        .await
        .unwrap();
    let res = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        app.request(Method::POST, "/v1/signals", &key)
            .send_json(&signal(json!({"slug": "not-held"}))),
    )
    .await
    .expect("not held up by a transaction that changed nothing")
    .unwrap();
    assert_eq!(res.status(), 201);
    other.batch_execute("COMMIT").await.unwrap();
}
