//! `GET /v1/signals/stream`: matching changes live, resumed with Last-Event-ID, 410 past the
//! log, across instances, never compressed.

use std::time::Duration;

use awc::http::Method;
use futures_util::StreamExt;
use serde_json::{json, Value};
use signals::domain::key::Scope;

use crate::helpers::{header, signal, TestApp};

/// An open stream, read event by event.
struct Events {
    res: crate::helpers::Response,
    buffer: String,
}

#[derive(Debug, Clone, PartialEq)]
struct Sse {
    id: i64,
    event: String,
    data: Value,
}

impl Events {
    /// The next event (comments skipped), or `None` when none comes within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut sse = Sse {
                    id: -1,
                    event: String::new(),
                    data: Value::Null,
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        sse.id = v.parse().unwrap();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        sse.event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        sse.data = serde_json::from_str(v).unwrap();
                    }
                }
                if sse.id >= 0 {
                    return Some(sse);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.next())
                .await
                .ok()??;
            self.buffer
                .push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        }
    }
}

async fn open(client: &awc::Client, url: String, last_event_id: Option<i64>) -> Events {
    let mut req = client.get(url).insert_header(("Accept-Encoding", "gzip"));
    if let Some(id) = last_event_id {
        req = req.insert_header(("Last-Event-ID", id.to_string()));
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "content-type").as_deref(),
        Some("text/event-stream")
    );
    assert_eq!(header(&res, "x-accel-buffering").as_deref(), Some("no"));
    assert_ne!(
        header(&res, "content-encoding").as_deref(),
        Some("gzip"),
        "never compressed"
    );
    Events {
        res,
        buffer: String::new(),
    }
}

fn streaming_client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish()
}

const WAIT: Duration = Duration::from_secs(5);

#[actix_web::test]
async fn a_subscriber_gets_the_changes_its_filters_match_then_resumes_where_it_left() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let client = streaming_client();
    let mut events = open(&client, app.url("/v1/signals/stream?min_score=7"), None).await;
    let high = app
        .create(&key, &signal(json!({"slug": "high", "score": 8})))
        .await;
    app.create(&key, &signal(json!({"slug": "low", "score": 3})))
        .await;
    let patched = app
        .request(Method::PATCH, "/v1/signals/high", &key)
        .send_json(&json!({"score": 9}))
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let created = events.next(WAIT).await.expect("signal.created");
    assert_eq!(created.event, "signal.created");
    let updated = events.next(WAIT).await.expect("signal.updated");
    assert_eq!(
        (updated.event.as_str(), updated.data["score"].clone()),
        ("signal.updated", json!(9))
    );
    assert_eq!(updated.data["id"], high["id"]);
    let gone = app
        .request(Method::DELETE, "/v1/signals/high", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    let deleted = events.next(WAIT).await.expect("signal.deleted");
    assert_eq!(deleted.event, "signal.deleted");
    assert_eq!(deleted.data, json!({"id": high["id"], "slug": "high"}));
    assert!(created.id < updated.id && updated.id < deleted.id);
    assert!(
        events.next(Duration::from_millis(500)).await.is_none(),
        "the low one is not sent"
    );

    // A reconnect after the first event gets the two that followed, none twice, then live.
    // (The data is the signal as it is when read: the updated one is gone by now.)
    let mut resumed = open(
        &client,
        app.url("/v1/signals/stream?min_score=7"),
        Some(created.id),
    )
    .await;
    let replayed = resumed.next(WAIT).await.unwrap();
    assert_eq!(
        (replayed.id, replayed.event.as_str()),
        (updated.id, "signal.updated")
    );
    assert_eq!(resumed.next(WAIT).await.unwrap(), deleted);
    app.create(&key, &signal(json!({"slug": "later", "score": 10})))
        .await;
    let later = resumed.next(WAIT).await.unwrap();
    assert_eq!(
        (later.event.as_str(), later.data["slug"].clone()),
        ("signal.created", json!("later"))
    );
    assert!(app.metrics().await.contains("signals_streams_open 2"));
}

#[actix_web::test]
async fn a_position_the_log_no_longer_keeps_is_410() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    for slug in ["one", "two", "three"] {
        app.create(&key, &signal(json!({ "slug": slug }))).await;
    }
    let mut conn = signals::db::conn(&app.pool).await.unwrap();
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("DELETE FROM signal_changes WHERE slug <> 'three'"),
        &mut conn,
    )
    .await
    .unwrap();
    let mut res = app
        .get("/v1/signals/stream")
        .insert_header(("Last-Event-ID", "0"))
        .send()
        .await
        .unwrap();
    crate::helpers::assert_problem(&mut res, 410).await;
    // A position past the end of the log (even the largest) is no gap: nothing to replay...
    for resume in ["Last-Event-ID", "last_event_id"] {
        let max = match resume {
            "Last-Event-ID" => "999999999999999999".to_owned(),
            _ => i64::MAX.to_string(),
        };
        let req = match resume {
            "Last-Event-ID" => app
                .client
                .head(app.url("/v1/signals/stream"))
                .insert_header((resume, max)),
            _ => app
                .client
                .head(app.url(&format!("/v1/signals/stream?{resume}={max}"))),
        };
        assert_eq!(req.send().await.unwrap().status(), 200, "{resume}");
    }
    // ... and such a stream gets what comes next.
    let client = streaming_client();
    let mut ahead = open(
        &client,
        app.url("/v1/signals/stream"),
        Some(999_999_999_999_999_999),
    )
    .await;
    let created = app.create(&key, &signal(json!({ "slug": "next" }))).await;
    let event = ahead.next(WAIT).await.expect("the next change is sent");
    assert_eq!(event.data, created);
    let mut res = app
        .get("/v1/signals/stream?last_event_id=x")
        .send()
        .await
        .unwrap();
    crate::helpers::assert_problem(&mut res, 400).await;
    // The header is digits only, as the spec's pattern says (schemathesis sent "+3").
    for bad in ["+3", "-1", "1e3", "9223372036854775807"] {
        let mut res = app
            .get("/v1/signals/stream")
            .insert_header(("Last-Event-ID", bad))
            .send()
            .await
            .unwrap();
        crate::helpers::assert_problem(&mut res, 400).await;
    }
}

#[actix_web::test]
async fn a_change_made_on_one_instance_reaches_the_subscribers_of_another() {
    let app = TestApp::spawn().await;
    let other = app.another_instance(|_, _| {}).await;
    let key = app.key(Scope::Write).await;
    let client = streaming_client();
    let mut on_other = open(&client, other.url("/v1/signals/stream"), None).await;
    let started = std::time::Instant::now();
    let created = app.create(&key, &signal(json!({"slug": "across"}))).await;
    let event = on_other
        .next(WAIT)
        .await
        .expect("the change reaches the other instance");
    println!("delivered across instances in {:?}", started.elapsed());
    assert_eq!(event.data, created);
    // Stopped and started again (a new instance), it resumes with exactly what came meanwhile.
    drop(on_other);
    drop(other);
    for slug in ["meanwhile-1", "meanwhile-2"] {
        app.create(&key, &signal(json!({ "slug": slug }))).await;
    }
    let again = app.another_instance(|_, _| {}).await;
    let mut resumed = open(&client, again.url("/v1/signals/stream"), Some(event.id)).await;
    let slugs = [
        resumed.next(WAIT).await.unwrap().data["slug"].clone(),
        resumed.next(WAIT).await.unwrap().data["slug"].clone(),
    ];
    assert_eq!(slugs, [json!("meanwhile-1"), json!("meanwhile-2")]);
    assert!(
        resumed.next(Duration::from_millis(500)).await.is_none(),
        "nothing twice"
    );
}

#[actix_web::test]
async fn a_head_of_the_stream_answers_its_headers_and_ends() {
    let app = TestApp::spawn().await;
    for resume in [None, Some("0")] {
        let mut req = app.client.head(app.url("/v1/signals/stream?min_score=7"));
        if let Some(id) = resume {
            req = req.insert_header(("Last-Event-ID", id));
        }
        let res = tokio::time::timeout(Duration::from_secs(5), req.send())
            .await
            .expect("HEAD ends")
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            header(&res, "content-type").as_deref(),
            Some("text/event-stream")
        );
        // The same headers as GET's (whose body does not end): no length, chunked.
        assert_eq!(header(&res, "content-length"), None);
        assert_eq!(
            header(&res, "transfer-encoding").as_deref(),
            Some("chunked")
        );
    }
    // The connection serves the next request.
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
}

#[actix_web::test]
async fn when_the_listening_connection_is_lost_the_hub_reconnects_and_misses_nothing() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let client = streaming_client();
    let mut events = open(&client, app.url("/v1/signals/stream"), None).await;
    app.create(&key, &signal(json!({"slug": "before-the-loss"})))
        .await;
    assert_eq!(
        events.next(WAIT).await.unwrap().data["slug"],
        "before-the-loss"
    );
    // Kill the hub's LISTEN backend, then write at once, while it is away.
    let admin = app.db.sql().await;
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'signals listener'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1, "one listening connection per instance");
    for slug in ["while-away-1", "while-away-2"] {
        app.create(&key, &signal(json!({ "slug": slug }))).await;
    }
    let got = [
        events
            .next(WAIT)
            .await
            .expect("caught up from the log")
            .data["slug"]
            .clone(),
        events
            .next(WAIT)
            .await
            .expect("caught up from the log")
            .data["slug"]
            .clone(),
    ];
    assert_eq!(got, [json!("while-away-1"), json!("while-away-2")]);
}

/// The events (id, kind) in a raw HTTP/1.1 response's bytes (chunk framing is skipped: each
/// event's lines are whole inside one chunk, as the service writes one event a chunk).
fn raw_events(raw: &[u8]) -> Vec<i64> {
    String::from_utf8_lossy(raw)
        .lines()
        .filter_map(|l| l.strip_prefix("id: ").map(|id| id.parse().unwrap()))
        .collect()
}

#[actix_web::test]
async fn a_subscriber_that_stops_reading_is_cut_off_and_resumes_without_a_gap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    // A client that reads nothing, with a small receive window: the server's socket fills and
    // the subscriber falls behind the hub.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = app.address.trim_start_matches("http://").parse().unwrap();
    let mut stalled = socket.connect(address).await.unwrap();
    stalled
        .write_all(b"GET /v1/signals/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // Big enough (15 KB each) to fill the socket buffers on the way after a few hundred, and
    // then more than the hub keeps for a subscriber (1,024 changes).
    let body = "x".repeat(15_000);
    let mut written = 0;
    for batch in 0..5 {
        let items: Vec<Value> = (0..400)
            .map(|i| signal(json!({"slug": format!("big-{batch}-{i}"), "body": body})))
            .collect();
        let res = app
            .request(Method::POST, "/v1/signals/batch", &key)
            .send_json(&json!({ "items": items }))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        written += 400;
    }
    // Now it reads: what was on the way, then the end of the stream (no endless buffering).
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stalled.read_to_end(&mut raw))
        .await
        .expect("the stream of a subscriber that fell behind ends")
        .unwrap();
    let got = raw_events(&raw);
    assert!(
        !got.is_empty() && got.len() < written,
        "cut off part way: {} of {written}",
        got.len()
    );
    // Counted where an operator sees it.
    let mut res = app.get("/metrics").send().await.unwrap();
    let metrics = String::from_utf8(res.body().limit(1 << 24).await.unwrap().to_vec()).unwrap();
    assert!(
        metrics.contains("\nsignals_streams_cut_off_total 1\n"),
        "{metrics}"
    );
    // It resumes after the last event it got: every other change, none twice.
    let mut resumed = open(
        &streaming_client(),
        app.url("/v1/signals/stream"),
        got.last().copied(),
    )
    .await;
    let mut ids = got.clone();
    while ids.len() < written {
        let event = resumed.next(WAIT).await.expect("the rest, after resuming");
        ids.push(event.id);
    }
    assert!(resumed.next(Duration::from_millis(300)).await.is_none());
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "in order, none twice");
}

#[actix_web::test]
async fn an_idle_stream_gets_a_comment_line_within_15_seconds() {
    let app = TestApp::spawn().await;
    let res = streaming_client()
        .get(app.url("/v1/signals/stream"))
        .send()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut res = res;
    let chunk = tokio::time::timeout(Duration::from_secs(15), res.next())
        .await
        .expect("a keep-alive comment within 15 s")
        .unwrap()
        .unwrap();
    assert!(chunk.starts_with(b":"), "{chunk:?}");
    // Not sooner than it is due (10 s after the last thing sent): idle streams stay cheap.
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
}

#[actix_web::test]
async fn a_subscriber_whose_filters_match_nothing_gets_keep_alives_carrying_the_position_passed() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let client = streaming_client();
    let mut all = open(&client, app.url("/v1/signals/stream"), None).await;
    let mut rare = open(&client, app.url("/v1/signals/stream?category=rare"), None).await;
    let started = std::time::Instant::now();
    // Changes every 2 s for 6 s, none of them this subscriber's: they must not keep its
    // connection quiet past 15 s (the keep-alive, due 10 s after it opened, tells the last).
    let writer = async {
        for i in 0..4 {
            if i > 0 {
                actix_web::rt::time::sleep(Duration::from_secs(2)).await;
            }
            let res = app
                .request(Method::POST, "/v1/signals", &key)
                .send_json(&signal(json!({"category": "Common"})))
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
        }
    };
    let reader = async {
        let mut text = String::new();
        while !text.contains("\n\n") {
            let chunk = tokio::time::timeout(Duration::from_secs(15), rare.res.next())
                .await
                .expect("a keep-alive within 15 s of the last thing sent")
                .unwrap()
                .unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        (started.elapsed(), text)
    };
    let ((), (elapsed, text)) = tokio::join!(writer, reader);
    assert!(text.starts_with(':'), "a comment, no event: {text:?}");
    assert!(elapsed < Duration::from_secs(15), "after {elapsed:?}");
    let mut positions = Vec::new();
    while let Some(event) = all.next(Duration::from_secs(2)).await {
        positions.push(event.id);
    }
    assert_eq!(positions.len(), 4);
    // It tells the position passed (the newest change), so a reconnect resumes after it.
    let told: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("the position passed")
        .parse()
        .unwrap();
    assert_eq!(told, *positions.iter().max().unwrap(), "{text:?}");
}

#[actix_web::test]
async fn a_stream_past_the_instances_slots_is_503_saying_so_and_a_freed_slot_is_taken_again() {
    let app = TestApp::spawn_with(|serve, _| serve.max_streams = 1).await;
    let client = streaming_client();
    let first = open(&client, app.url("/v1/signals/stream"), None).await;
    let mut refused = client
        .get(app.url("/v1/signals/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("5"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["status"], 503);
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("stream slot"), "{detail}");
    assert!(!detail.contains("database"), "{detail}");
    // Closing the first frees its slot, once the service finds the connection gone: a write
    // into a closed connection fails only after the first one drew the peer's reset, so at the
    // second keep-alive (20 s).
    drop(first);
    let mut reopened = None;
    for _ in 0..300 {
        let res = client
            .get(app.url("/v1/signals/stream"))
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            reopened = Some(res);
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "the slot was never freed");
}
