//! The cache of hot reads is never seen to be stale: a writer reads its write at once, other
//! instances within a second, and an instance that lost its change listener serves nothing
//! from the cache until it has caught up again. Reads of one answer that come together ask the
//! database once.

use std::time::{Duration, Instant};

use awc::http::Method;
use serde_json::{json, Value};
use signals::domain::key::Scope;

use crate::helpers::{json_body, metric, metrics_at, signal, TestApp};

async fn get(client: &awc::Client, url: String) -> Value {
    let mut res = client.get(url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    json_body(&mut res).await
}

/// Lets the change listeners send out what was just written (which empties the caches).
async fn settle() {
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
}

/// (hits, listening) from an instance's /metrics.
async fn cache_metrics(client: &awc::Client, url: String) -> (u64, bool) {
    let text = metrics_at(client, url).await;
    (
        metric(&text, "signals_cache_lookups_total{outcome=\"hit\"}") as u64,
        metric(&text, "signals_changes_listening") == 1.0,
    )
}

/// Writes the signal `one` (score 5) through `app` and reads it on `other` until `other`
/// answers it from its cache.
async fn cached_on(app: &TestApp, other: &crate::helpers::Instance, key: &str) {
    app.create(key, &signal(json!({"slug": "one", "score": 5})))
        .await;
    settle().await;
    for _ in 0..2 {
        assert_eq!(
            get(&app.client, other.url("/v1/signals/one")).await["score"],
            5
        );
    }
    let (hits, listening) = cache_metrics(&app.client, other.url("/metrics")).await;
    assert!(
        listening && hits >= 1,
        "the other instance answers from its cache"
    );
}

#[actix_web::test]
async fn a_writer_reads_its_write_at_once_through_the_cache() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    app.create(&key, &signal(json!({"slug": "one", "score": 5})))
        .await;
    settle().await;
    for _ in 0..2 {
        assert_eq!(
            get(&app.client, app.url("/v1/signals/one")).await["score"],
            5
        );
        assert_eq!(
            get(&app.client, app.url("/v1/signals")).await["items"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
    let (hits, _) = cache_metrics(&app.client, app.url("/metrics")).await;
    assert!(hits >= 2, "the second reads came from the cache");
    let res = app
        .request(Method::PATCH, "/v1/signals/one", &key)
        .send_json(&json!({"score": 6}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Read at once after the PATCH alone (no other write in between to empty the cache).
    assert_eq!(
        get(&app.client, app.url("/v1/signals/one")).await["score"],
        6
    );
    assert_eq!(
        get(&app.client, app.url("/v1/signals")).await["items"][0]["score"],
        6
    );
    app.create(&key, &signal(json!({"slug": "two"}))).await;
    let listed = get(&app.client, app.url("/v1/signals")).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    let categories = get(&app.client, app.url("/v1/categories")).await;
    assert_eq!(categories["items"][0]["count"], 2);
}

#[actix_web::test]
async fn another_instance_sees_a_write_within_a_second() {
    let app = TestApp::spawn().await;
    let other = app.another_instance(|_, _| {}).await;
    let key = app.key(Scope::Write).await;
    cached_on(&app, &other, &key).await;
    let res = app
        .request(Method::PATCH, "/v1/signals/one", &key)
        .send_json(&json!({"score": 9}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let written = Instant::now();
    loop {
        if get(&app.client, other.url("/v1/signals/one")).await["score"] == 9 {
            break;
        }
        assert!(
            written.elapsed() < Duration::from_secs(1),
            "stale after a second"
        );
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "the other instance saw the write after {:?}",
        written.elapsed()
    );
}

#[actix_web::test]
async fn without_its_change_listener_an_instance_serves_nothing_from_the_cache() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    app.create(&key, &signal(json!({"slug": "one"}))).await;
    settle().await;
    let metrics = app.url("/metrics");
    for _ in 0..2 {
        get(&app.client, app.url("/v1/signals/one")).await;
    }
    let (hits, listening) = cache_metrics(&app.client, metrics.clone()).await;
    assert!(listening && hits >= 1);
    let admin = app.db.sql().await;
    // The log locked, the listener cannot catch up once it has lost its connection.
    let locker = app.db.sql().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE signal_changes IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    admin
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'signals listener'",
        )
        .await
        .unwrap();
    let started = Instant::now();
    while cache_metrics(&app.client, metrics.clone()).await.1 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the loss was noticed"
        );
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
    // Not caught up: reads go to the database, none is answered from the cache.
    let bypassed = || async {
        let text = metrics_at(&app.client, metrics.clone()).await;
        metric(&text, "signals_cache_lookups_total{outcome=\"bypassed\"}") as u64
    };
    let before = bypassed().await;
    for _ in 0..3 {
        get(&app.client, app.url("/v1/signals/one")).await;
    }
    let (after, listening) = cache_metrics(&app.client, metrics.clone()).await;
    assert!(!listening);
    assert_eq!(after, hits, "no answer from the cache while not caught up");
    assert_eq!(
        bypassed().await - before,
        3,
        "the three reads went past the cache"
    );
    // Caught up again: the cache serves again.
    locker.batch_execute("COMMIT").await.unwrap();
    let started = Instant::now();
    while !cache_metrics(&app.client, metrics.clone()).await.1 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the listener is back"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..2 {
        get(&app.client, app.url("/v1/signals/one")).await;
    }
    assert!(cache_metrics(&app.client, metrics).await.0 > hits);
}

/// `app`, and another instance whose path to PostgreSQL goes through a [`Freezer`], which has
/// the signal `one` (score 5) in its cache; and a write key.
///
/// [`Freezer`]: crate::helpers::Freezer
async fn cached_behind_a_freezer() -> (
    TestApp,
    crate::helpers::Freezer,
    crate::helpers::Instance,
    String,
) {
    let app = TestApp::spawn().await;
    let path = crate::helpers::Freezer::to(&app.db.url).await;
    let other = app.another_instance_at(&path.url, |_, _| {}).await;
    let key = app.key(Scope::Write).await;
    cached_on(&app, &other, &key).await;
    (app, path, other, key)
}

/// A listener whose connection goes silent (no error, no end: a dropped network path) is
/// found out by its heartbeat: within a second of another instance's write the cache no longer
/// answers with what the write changed, and once the path is back the instance catches up.
#[actix_web::test]
async fn an_instance_whose_listener_went_silent_stops_trusting_its_cache_within_a_second() {
    let (app, path, other, key) = cached_behind_a_freezer().await;

    path.freeze(true);
    let res = app
        .request(Method::PATCH, "/v1/signals/one", &key)
        .send_json(&json!({"score": 9}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    actix_web::rt::time::sleep(Duration::from_secs(1)).await;
    // The database out of reach, the answer can only be 503; never the old score from the cache.
    let mut res = app
        .client
        .get(other.url("/v1/signals/one"))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body = json_body(&mut res).await;
    assert!(
        status == 503 || body["score"] == 9,
        "a second after the write: {status} {body}"
    );

    path.freeze(false);
    let started = Instant::now();
    loop {
        let mut res = app
            .client
            .get(other.url("/v1/signals/one"))
            .send()
            .await
            .unwrap();
        if res.status() == 200 && json_body(&mut res).await["score"] == 9 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "caught up again"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    while !cache_metrics(&app.client, other.url("/metrics")).await.1 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "listening again"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A listener whose connection answers late (PostgreSQL on cores another load has taken) is not
/// a lost one: the cache is not trusted while the answer is due, and once it comes the instance
/// serves what it kept. Before, a heartbeat unanswered for 500 ms made a new connection and
/// emptied the cache (under the benchmark's load of 100,000 requests/s, now and then).
#[actix_web::test]
async fn a_listener_that_answers_late_keeps_what_the_cache_holds() {
    let (app, path, other, _) = cached_behind_a_freezer().await;
    let misses = |text: &str| metric(text, "signals_cache_lookups_total{outcome=\"miss\"}");
    let before = misses(&metrics_at(&app.client, other.url("/metrics")).await);

    // Longer than the old heartbeat's 500 ms, shorter than the tests' SIGNALS_DB_TIMEOUT_MS (2 s).
    path.freeze(true);
    actix_web::rt::time::sleep(Duration::from_millis(1200)).await;
    path.freeze(false);

    let (hits, _) = cache_metrics(&app.client, other.url("/metrics")).await;
    let started = Instant::now();
    loop {
        assert_eq!(
            get(&app.client, other.url("/v1/signals/one")).await["score"],
            5
        );
        if cache_metrics(&app.client, other.url("/metrics")).await.0 > hits {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the cache is trusted again"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let after = misses(&metrics_at(&app.client, other.url("/metrics")).await);
    assert_eq!(
        after, before,
        "the cache kept the signal through the late answer"
    );
}

/// The cache lookups an instance counts in its `/metrics` at `url` so far: (answered from the
/// cache, bypassed).
async fn hits_and_bypasses(client: &awc::Client, url: String) -> (u64, u64) {
    let text = metrics_at(client, url).await;
    let n = |o: &str| {
        metric(
            &text,
            &format!("signals_cache_lookups_total{{outcome=\"{o}\"}}"),
        ) as u64
    };
    (n("hit"), n("bypassed"))
}

/// Answers that come steadily late (PostgreSQL's backend waiting for a core) keep the cache
/// trusted while each is younger than the trust (800 ms from its question): the listener asks
/// every 100 ms without waiting for the previous answer, and each answer confirms its own
/// question. One question at a time, half a second there and back confirmed a moment half a
/// second old every half second, and the cache lapsed for 200 ms of every 500. Answers a second
/// late are older than the trust, and the cache is bypassed.
#[actix_web::test]
async fn late_answers_keep_the_cache_trusted_only_while_they_are_younger_than_its_trust() {
    let (app, path, other, _) = cached_behind_a_freezer().await;
    let read = || async {
        assert_eq!(
            get(&app.client, other.url("/v1/signals/one")).await["score"],
            5
        );
    };

    // Half a second there and back. (Reads answered from the cache are fast; a read that
    // bypasses it takes a round trip or more.)
    path.delay(Duration::from_millis(250));
    let (hits, bypassed) = hits_and_bypasses(&app.client, other.url("/metrics")).await;
    let started = Instant::now();
    let mut reads = 0;
    while started.elapsed() < Duration::from_secs(3) {
        read().await;
        reads += 1;
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    let (hits_after, bypassed_after) = hits_and_bypasses(&app.client, other.url("/metrics")).await;
    assert_eq!(
        bypassed_after - bypassed,
        0,
        "reads that bypassed the cache in 3 s of late answers ({reads} reads)"
    );
    assert_eq!(
        hits_after - hits,
        reads,
        "every read answered from the cache"
    );

    // A second there and back: no answer is young enough.
    path.delay(Duration::from_millis(500));
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    let (_, bypassed) = hits_and_bypasses(&app.client, other.url("/metrics")).await;
    for _ in 0..3 {
        read().await;
    }
    let (_, bypassed_after) = hits_and_bypasses(&app.client, other.url("/metrics")).await;
    assert_eq!(
        bypassed_after - bypassed,
        3,
        "answers a second late are not trusted"
    );

    path.delay(Duration::ZERO);
    let started = Instant::now();
    while !cache_metrics(&app.client, other.url("/metrics")).await.1 {
        assert!(started.elapsed() < Duration::from_secs(5), "trusted again");
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A commit is in the WAL a moment before it is visible, so the listener does not take the WAL
/// position as caught up while a writer holds the change log's lock (from its first change to
/// the moment its commit is visible): a read that asks for that position is not answered from
/// the cache until the writer is done.
#[actix_web::test]
async fn the_listener_claims_no_position_while_a_writer_is_committing() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    app.create(&key, &signal(json!({"slug": "one", "score": 5})))
        .await;
    settle().await;
    let metrics = app.url("/metrics");
    let counts = || hits_and_bypasses(&app.client, metrics.clone());
    let read = |token: String| async {
        let mut res = app
            .client
            .get(app.url("/v1/signals/one"))
            .insert_header(("Signals-Read-After", token))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        json_body(&mut res).await["score"].clone()
    };
    get(&app.client, app.url("/v1/signals/one")).await;

    let writer = app.db.sql().await;
    writer
        .batch_execute("BEGIN; UPDATE signals SET score = 7 WHERE slug = 'one'")
        .await
        .unwrap();
    let admin = app.db.sql().await;
    // The primary's WAL position now: a `Signals-Read-After` naming what is being written. An
    // uncommitted write's WAL may still be in PostgreSQL's buffers, behind the position
    // `pg_current_wal_lsn` reports (what is written out), which can then be one the listener
    // has already passed; a commit of the test's own writes the WAL out to the end first.
    admin
        .batch_execute("CREATE TABLE wal_nudge (n int)")
        .await
        .unwrap();
    let position = async || -> String {
        admin
            .batch_execute("INSERT INTO wal_nudge VALUES (1)")
            .await
            .unwrap();
        admin
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .unwrap()
            .get(0)
    };
    let token = position().await;
    // A wake-up while the writer holds the lock: the listener reads the log, finds nothing new,
    // and must not count the position as reached.
    admin.batch_execute("NOTIFY signal_changes").await.unwrap();
    settle().await;
    let (hits, bypassed) = counts().await;
    assert_eq!(read(token.clone()).await, 5);
    assert_eq!(
        counts().await,
        (hits, bypassed + 1),
        "not answered from the cache while the writer commits"
    );

    writer.batch_execute("COMMIT").await.unwrap();
    settle().await;
    assert_eq!(read(token.clone()).await, 7);
    assert_eq!(read(token).await, 7);
    assert!(
        counts().await.0 > hits,
        "the cache answers once the writer is done"
    );

    // A writer that rolls back sends no notification: the listener reads again on its own
    // until the position settles, rather than at its next minute.
    writer
        .batch_execute("BEGIN; UPDATE signals SET score = 8 WHERE slug = 'one'")
        .await
        .unwrap();
    let token = position().await;
    admin.batch_execute("NOTIFY signal_changes").await.unwrap();
    settle().await;
    writer.batch_execute("ROLLBACK").await.unwrap();
    settle().await;
    let (hits, _) = counts().await;
    assert_eq!(read(token.clone()).await, 7);
    assert_eq!(read(token).await, 7);
    assert!(
        counts().await.0 > hits,
        "the cache answers soon after the writer rolled back"
    );
}

/// The reader's category and tag choices are the unfiltered `/v1/categories` and `/v1/tags`,
/// kept in the same cache entries (they count every signal: at a million signals, the two
/// counts cost far more than the page), and a write empties them like any other.
#[actix_web::test]
async fn the_readers_facets_share_the_cache_with_the_facet_endpoints() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    app.create(&key, &signal(json!({"slug": "one", "category": "Alpha"})))
        .await;
    settle().await;
    let metrics = app.url("/metrics");
    let page = async || {
        let mut res = app.get("/").send().await.unwrap();
        assert_eq!(res.status(), 200);
        String::from_utf8(res.body().limit(1 << 22).await.unwrap().to_vec()).unwrap()
    };
    assert!(page().await.contains(">Alpha (1)</option>"));
    let (before, _) = cache_metrics(&app.client, metrics.clone()).await;
    get(&app.client, app.url("/v1/categories")).await;
    get(&app.client, app.url("/v1/tags")).await;
    let (after, _) = cache_metrics(&app.client, metrics.clone()).await;
    assert_eq!(after - before, 2, "the page's counts answer the endpoints");
    page().await;
    let (again, _) = cache_metrics(&app.client, metrics.clone()).await;
    assert_eq!(again - after, 2, "a second view counts nothing");

    app.create(&key, &signal(json!({"slug": "two", "category": "Alpha"})))
        .await;
    settle().await;
    let shown = page().await;
    assert!(
        shown.contains(">Alpha (2)</option>"),
        "the write emptied the cache: {shown}"
    );
}

#[actix_web::test]
async fn reads_of_one_answer_that_come_together_ask_the_database_once() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    app.create(&key, &signal(json!({"slug": "one"}))).await;
    settle().await;
    // The first read of the page waits on the lock, so the others come while it is under way.
    let locker = app.lock_signals().await;
    let reads: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url("/v1/signals?limit=5"));
            actix_web::rt::spawn(async move { get(&client, url).await })
        })
        .collect();
    let watcher = app.db.sql().await;
    // The service's statements that wait on the lock.
    const WAITING: &str = "FROM pg_stat_activity WHERE datname = current_database() \
                           AND application_name = 'signals' AND wait_event_type = 'Lock'";
    let waiting_on_the_lock = async || -> i64 {
        watcher
            .query_one(&format!("SELECT count(*) {WAITING}"), &[])
            .await
            .unwrap()
            .get(0)
    };
    let started = Instant::now();
    while waiting_on_the_lock().await == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "no read came");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    // Time for the other seven to reach the service (and the database, if they were to ask).
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    let asking = waiting_on_the_lock().await;
    locker.batch_execute("COMMIT").await.unwrap();
    let mut pages = Vec::new();
    for read in reads {
        pages.push(read.await.unwrap());
    }
    assert_eq!(asking, 1, "one read asked the database, the others waited");
    assert!(pages.iter().all(|p| p == &pages[0]), "{pages:?}");
    assert_eq!(pages[0]["items"][0]["slug"], "one");
    let text = app.metrics().await;
    let taken = |outcome: &str| {
        metric(
            &text,
            &format!("signals_cache_lookups_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(taken("shared"), 7.0, "{text}");

    // A first read that fails keeps nothing: the read that waited for it asks itself.
    let locker = app.lock_signals().await;
    let read = |client: awc::Client, url: String| async move {
        let mut res = client.get(url).send().await.unwrap();
        (res.status().as_u16(), json_body(&mut res).await)
    };
    let first = actix_web::rt::spawn(read(app.client.clone(), app.url("/v1/signals?limit=6")));
    while waiting_on_the_lock().await == 0 {
        assert!(!first.is_finished(), "the first read did not wait");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let second = actix_web::rt::spawn(read(app.client.clone(), app.url("/v1/signals?limit=6")));
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    // Its statement is cancelled (57014: 503).
    let cancelled = watcher
        .query(&format!("SELECT pg_cancel_backend(pid) {WAITING}"), &[])
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 1, "only the first read was asking");
    let (status, _) = first.await.unwrap();
    assert_eq!(status, 503);
    // The second read is asking now, and waits on the lock in turn.
    while waiting_on_the_lock().await == 0 {
        if second.is_finished() {
            panic!("the second read did not wait: {:?}", second.await);
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    locker.batch_execute("COMMIT").await.unwrap();
    let (status, page) = second.await.unwrap();
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["slug"], "one");
}
