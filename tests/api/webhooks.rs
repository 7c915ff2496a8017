//! Webhook subscriptions and deliveries, against real receivers (HTTP servers of the test's
//! own): signatures checked with the Standard Webhooks reference crate, retries, 410, rotation,
//! the refusals of SSRF, a failing receiver beside a healthy one, and two instances sending.

use std::collections::{HashMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use awc::http::Method;
use serde_json::{json, Value};
use signals::domain::key::Scope;

use crate::helpers::{assert_problem, json_body, signal, TestApp};

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers[name].to_str().unwrap().to_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
pub struct Behaviour {
    /// Statuses to answer, in turn; 200 once they are used up.
    pub statuses: VecDeque<u16>,
    /// How long to wait before answering.
    pub delay: Duration,
    /// Answer the status at once, then the body a byte a second for a minute.
    pub trickle: bool,
    /// Requests being answered now, by webhook-id, and the most seen at once for each.
    in_flight: HashMap<String, usize>,
    pub most_at_once: HashMap<String, usize>,
}

/// A real HTTP server that records what it is sent.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    pub behaviour: Arc<Mutex<Behaviour>>,
    handle: ServerHandle,
}

impl Receiver {
    pub fn start() -> Receiver {
        Self::on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    pub fn on(listener: TcpListener) -> Receiver {
        let url = format!(
            "http://localhost:{}/hook",
            listener.local_addr().unwrap().port()
        );
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let behaviour: Arc<Mutex<Behaviour>> = Arc::default();
        let (g, b) = (got.clone(), behaviour.clone());
        let server = HttpServer::new(move || {
            let (got, behaviour) = (g.clone(), b.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (got, behaviour) = (got.clone(), behaviour.clone());
                async move { answer(req, body, got, behaviour).await }
            }))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Receiver {
            url,
            got,
            behaviour,
            handle,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests arrived (or `within` passed) and returns them.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let started = Instant::now();
        while self.got.lock().unwrap().len() < n && started.elapsed() < within {
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
        self.received()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

async fn answer(
    req: HttpRequest,
    body: web::Bytes,
    got: Arc<Mutex<Vec<Received>>>,
    behaviour: Arc<Mutex<Behaviour>>,
) -> HttpResponse {
    let mut headers = http::HeaderMap::new();
    for (name, value) in req.headers() {
        headers.insert(
            http::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    let id = headers
        .get("webhook-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let (status, delay, trickle) = {
        let mut b = behaviour.lock().unwrap();
        let now = {
            let n = b.in_flight.entry(id.clone()).or_default();
            *n += 1;
            *n
        };
        let most = b.most_at_once.entry(id.clone()).or_default();
        *most = (*most).max(now);
        (b.statuses.pop_front().unwrap_or(200), b.delay, b.trickle)
    };
    got.lock().unwrap().push(Received {
        headers,
        body: body.to_vec(),
        at: Instant::now(),
    });
    if !delay.is_zero() {
        actix_web::rt::time::sleep(delay).await;
    }
    *behaviour.lock().unwrap().in_flight.entry(id).or_default() -= 1;
    if trickle {
        let bytes = futures_util::stream::unfold(0, |n| async move {
            if n > 0 {
                actix_web::rt::time::sleep(Duration::from_secs(1)).await;
            }
            (n < 60).then(|| {
                (
                    Ok::<_, std::io::Error>(web::Bytes::from_static(b" ")),
                    n + 1,
                )
            })
        });
        return HttpResponse::build(awc::http::StatusCode::from_u16(status).unwrap())
            .streaming(bytes);
    }
    HttpResponse::build(awc::http::StatusCode::from_u16(status).unwrap())
        .insert_header(("Location", "http://127.0.0.1:9/elsewhere"))
        .finish()
}

/// Checks a delivery as a receiver would, with the reference implementation.
pub fn verify(secret: &str, delivery: &Received) {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&delivery.body, &delivery.headers)
        .unwrap_or_else(|e| panic!("the signature does not verify: {e:?}"));
}

async fn subscribe(app: &TestApp, admin: &str, body: Value) -> Value {
    let mut res = app
        .request(Method::POST, "/v1/webhooks", admin)
        .send_json(&body)
        .await
        .unwrap();
    let created = json_body(&mut res).await;
    assert_eq!(res.status(), 201, "{created}");
    created
}

async fn attempts(app: &TestApp, admin: &str, id: &str, query: &str) -> Value {
    let mut res = app
        .request(
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries{query}"),
            admin,
        )
        .send()
        .await
        .unwrap();
    let page = json_body(&mut res).await;
    assert_eq!(res.status(), 200, "{page}");
    page
}

const WAIT: Duration = Duration::from_secs(10);

#[actix_web::test]
async fn subscriptions_are_managed_by_admin_keys_and_the_secret_is_shown_once() {
    let app = TestApp::spawn().await;
    let (writer, admin) = (app.key(Scope::Write).await, app.key(Scope::Admin).await);
    let body = json!({"url": "https://hooks.example.com/x", "min_score": 7});
    let mut res = app
        .client
        .post(app.url("/v1/webhooks"))
        .send_json(&body)
        .await
        .unwrap();
    assert_problem(&mut res, 401).await;
    let mut res = app
        .request(Method::POST, "/v1/webhooks", &writer)
        .send_json(&body)
        .await
        .unwrap();
    assert_problem(&mut res, 403).await;
    let created = subscribe(&app, &admin, body).await;
    let secret = created["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );
    assert_eq!(
        created["events"],
        json!(["signal.created", "signal.updated", "signal.deleted"])
    );
    let id = created["id"].as_str().unwrap();

    // Not in the database in the clear.
    let client = app.db.sql().await;
    let stored: Vec<u8> = client
        .query_one("SELECT secret FROM webhooks", &[])
        .await
        .unwrap()
        .get(0);
    let key = signals::domain::webhook::secret_bytes(secret).unwrap();
    assert!(!stored.windows(key.len()).any(|w| w == key.as_slice()));
    assert!(!String::from_utf8_lossy(&stored).contains(&secret[6..]));

    let mut res = app
        .request(Method::GET, &format!("/v1/webhooks/{id}"), &admin)
        .send()
        .await
        .unwrap();
    let got = json_body(&mut res).await;
    assert_eq!(res.status(), 200);
    assert!(got.get("secret").is_none(), "shown once: {got}");
    let mut res = app
        .request(Method::PATCH, &format!("/v1/webhooks/{id}"), &admin)
        .send_json(
            &json!({"min_score": null, "categories": ["Industry"], "events": ["signal.deleted"]}),
        )
        .await
        .unwrap();
    let patched = json_body(&mut res).await;
    assert_eq!(res.status(), 200, "{patched}");
    assert_eq!(
        (
            patched["min_score"].clone(),
            patched["categories"].clone(),
            patched["events"].clone()
        ),
        (Value::Null, json!(["Industry"]), json!(["signal.deleted"]))
    );
    let mut res = app
        .request(Method::GET, "/v1/webhooks", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_body(&mut res).await["items"].as_array().unwrap().len(),
        1
    );
    for (body, field) in [
        (json!({"url": "ftp://x.example.com/"}), "url"),
        (
            json!({"url": "https://x.example.com/", "events": ["signal.eaten"]}),
            "events",
        ),
        (
            json!({"url": "https://x.example.com/", "colour": 1}),
            "colour",
        ),
        (
            json!({"url": "https://x.example.com/", "min_score": 11}),
            "min_score",
        ),
    ] {
        let mut res = app
            .request(Method::POST, "/v1/webhooks", &admin)
            .send_json(&body)
            .await
            .unwrap();
        let problem = assert_problem(&mut res, 422).await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let res = app
        .request(Method::DELETE, &format!("/v1/webhooks/{id}"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let mut res = app
        .request(Method::GET, &format!("/v1/webhooks/{id}"), &admin)
        .send()
        .await
        .unwrap();
    assert_problem(&mut res, 404).await;
    let mut res = app
        .request(Method::GET, "/v1/webhooks/not-an-id", &admin)
        .send()
        .await
        .unwrap();
    assert_problem(&mut res, 404).await;
}

#[actix_web::test]
async fn matching_changes_are_posted_signed_and_listed_as_attempts() {
    let app = TestApp::spawn().await;
    let (writer, admin) = (app.key(Scope::Write).await, app.key(Scope::Admin).await);
    let receiver = Receiver::start();
    let created = subscribe(
        &app,
        &admin,
        json!({"url": receiver.url, "min_score": 7, "events": ["signal.created", "signal.updated"]}),
    )
    .await;
    let (id, secret) = (
        created["id"].as_str().unwrap(),
        created["secret"].as_str().unwrap(),
    );
    let high = app
        .create(&writer, &signal(json!({"slug": "high", "score": 8})))
        .await;
    app.create(&writer, &signal(json!({"slug": "low", "score": 3})))
        .await;
    let res = app
        .request(Method::PATCH, "/v1/signals/high", &writer)
        .send_json(&json!({"score": 9}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .request(Method::DELETE, "/v1/signals/high", &writer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let got = receiver.wait_for(2, WAIT).await;
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let got_later = receiver.received();
    assert_eq!(
        got_later.len(),
        2,
        "the low signal and the deletion are not wanted"
    );
    for delivery in &got {
        verify(secret, delivery);
        assert_eq!(delivery.header("content-type"), "application/json");
        assert!(delivery.header("webhook-id").starts_with("msg_"));
    }
    let first = got[0].json();
    assert_eq!(first["type"], "signal.created");
    assert_eq!(first["data"]["id"], high["id"]);
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
    let second = got[1].json();
    assert_eq!(second["type"], "signal.updated");
    assert_ne!(got[0].header("webhook-id"), got[1].header("webhook-id"));

    let page = attempts(&app, &admin, id, "?limit=1").await;
    let newest = &page["items"][0];
    assert_eq!(newest["event"], "signal.updated");
    assert_eq!(newest["status"], 200);
    assert_eq!(newest["state"], "delivered");
    assert_eq!(newest["message_id"], json!(got[1].header("webhook-id")));
    assert!(newest["latency_ms"].as_i64().unwrap() >= 0);
    let cursor = page["next_cursor"].as_str().unwrap();
    let older = attempts(&app, &admin, id, &format!("?limit=1&cursor={cursor}")).await;
    assert_eq!(older["items"][0]["event"], "signal.created");
    assert_eq!(older["next_cursor"], Value::Null);
    let mut res = app
        .request(
            Method::GET,
            &format!("/v1/webhooks/{id}/deliveries?cursor=x"),
            &admin,
        )
        .send()
        .await
        .unwrap();
    assert_problem(&mut res, 400).await;

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("signals_webhook_deliveries_total{outcome=\"delivered\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("signals_webhook_oldest_pending_seconds 0.000"),
        "{metrics}"
    );
}

#[actix_web::test]
async fn failures_are_retried_with_one_webhook_id_redirects_are_not_followed_and_410_disables() {
    let app = TestApp::spawn().await;
    let (writer, admin) = (app.key(Scope::Write).await, app.key(Scope::Admin).await);
    let receiver = Receiver::start();
    receiver.behaviour.lock().unwrap().statuses = VecDeque::from([500, 302, 200]);
    let created = subscribe(&app, &admin, json!({"url": receiver.url})).await;
    let id = created["id"].as_str().unwrap();
    app.create(&writer, &signal(json!({"slug": "retried"})))
        .await;
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3, "two failures, then the delivery");
    let ids: Vec<String> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "one webhook-id across retries: {ids:?}"
    );
    assert!(
        got[1].at - got[0].at >= Duration::from_millis(900),
        "a retry waits its turn"
    );
    // The receiver has answered the third time; the sender records it just after.
    let started = std::time::Instant::now();
    let mut page = attempts(&app, &admin, id, "").await;
    while page["items"].as_array().unwrap().len() < 3 && started.elapsed() < WAIT {
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        page = attempts(&app, &admin, id, "").await;
    }
    let items = page["items"].as_array().unwrap();
    let statuses: Vec<_> = items
        .iter()
        .map(|a| (a["status"].clone(), a["error"].clone()))
        .collect();
    assert_eq!(
        statuses,
        [
            (json!(200), Value::Null),
            (json!(302), json!("status")),
            (json!(500), json!("status"))
        ]
    );
    assert!(items[1]["next_attempt_at"].is_string());

    // 410: the subscription is disabled; what was pending waits until it is enabled again (the
    // change the receiver answered 410 to as well), and changes made meanwhile are not
    // delivered to it.
    receiver.behaviour.lock().unwrap().statuses = VecDeque::from([410]);
    let items = [
        signal(json!({"slug": "gone"})),
        signal(json!({"slug": "pending"})),
    ];
    let res = app
        .request(Method::POST, "/v1/signals/batch", &writer)
        .send_json(&json!({ "items": items }))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    receiver.wait_for(4, WAIT).await;
    let mut res = app
        .request(Method::GET, &format!("/v1/webhooks/{id}"), &admin)
        .send()
        .await
        .unwrap();
    let disabled = json_body(&mut res).await;
    assert_eq!(disabled["enabled"], false);
    assert!(disabled["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("410"));
    app.create(&writer, &signal(json!({"slug": "while-disabled"})))
        .await;
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received().len(), 4);
    let res = app
        .request(Method::PATCH, &format!("/v1/webhooks/{id}"), &admin)
        .send_json(&json!({"enabled": true}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got = receiver.wait_for(6, WAIT).await;
    assert_eq!(got[3].json()["data"]["slug"], "gone");
    assert_eq!(got[4].json()["data"]["slug"], "gone", "not lost to the 410");
    assert_eq!(got[5].json()["data"]["slug"], "pending");
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.received().len(), 6, "nothing made while disabled");
    let metrics = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .body()
        .await
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("signals_webhook_deliveries_total{outcome=\"gone\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("signals_webhook_deliveries_total{outcome=\"retried\"} 2"),
        "{metrics}"
    );
}

#[actix_web::test]
async fn after_a_rotation_both_secrets_sign_for_a_day() {
    let app = TestApp::spawn().await;
    let (writer, admin) = (app.key(Scope::Write).await, app.key(Scope::Admin).await);
    let receiver = Receiver::start();
    let created = subscribe(&app, &admin, json!({"url": receiver.url})).await;
    let id = created["id"].as_str().unwrap();
    let old = created["secret"].as_str().unwrap().to_owned();
    let mut res = app
        .request(
            Method::POST,
            &format!("/v1/webhooks/{id}/rotate-secret"),
            &admin,
        )
        .send()
        .await
        .unwrap();
    let rotated = json_body(&mut res).await;
    assert_eq!(res.status(), 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap();
    assert_ne!(new, old);
    let until: chrono::DateTime<chrono::Utc> = rotated["previous_secret_until"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(until > chrono::Utc::now() + chrono::Duration::hours(23));
    app.create(&writer, &signal(json!({}))).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("webhook-signature").split(' ').count(), 2);
    verify(new, &got[0]);
    verify(&old, &got[0]);
}

#[actix_web::test]
async fn deliveries_never_reach_the_services_own_network_unless_allowed() {
    // SIGNALS_WEBHOOK_ALLOW_HTTP unset: as SIGNALS_WEBHOOK_ALLOW_PRIVATE, here false.
    let app = TestApp::spawn_with(|serve, _| serve.webhook_allow_private = false).await;
    let (writer, admin) = (app.key(Scope::Write).await, app.key(Scope::Admin).await);
    let mut res = app
        .request(Method::POST, "/v1/webhooks", &admin)
        .send_json(&json!({ "url": "http://hooks.example.com/" }))
        .await
        .unwrap();
    let problem = assert_problem(&mut res, 422).await;
    assert_eq!(problem["errors"][0]["field"], "url");
    let receiver = Receiver::start();
    let port = receiver
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let local = [
        format!("https://127.0.0.1:{port}/hook"),
        "https://169.254.169.254/latest/meta-data".to_owned(),
        "https://10.0.0.8/hook".to_owned(),
        format!("https://[::1]:{port}/hook"),
        format!("https://localhost:{port}/hook"),
    ];
    // Refused when subscribed to (an address written in the URL, or a name that resolves only
    // to such addresses: localhost), and when a subscription is changed to lead there.
    let public = subscribe(&app, &admin, json!({ "url": "https://8.8.8.8/hook" })).await;
    let public_id = public["id"].as_str().unwrap();
    for url in &local {
        let mut res = app
            .request(Method::POST, "/v1/webhooks", &admin)
            .send_json(&json!({ "url": url }))
            .await
            .unwrap();
        let problem = assert_problem(&mut res, 422).await;
        assert_eq!(problem["errors"][0]["field"], "url", "{url}");
        let message = problem["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("SIGNALS_WEBHOOK_ALLOW_PRIVATE"),
            "{message}"
        );
        let mut res = app
            .request(Method::PATCH, &format!("/v1/webhooks/{public_id}"), &admin)
            .send_json(&json!({ "url": url }))
            .await
            .unwrap();
        assert_problem(&mut res, 422).await;
    }
    let mut res = app
        .request(Method::DELETE, &format!("/v1/webhooks/{public_id}"), &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204, "{:?}", res.body().await);
    // Checked again at every connection: a subscription whose name comes to lead there (DNS
    // rebinding; here its stored URL changed under it) fails each delivery with `address`.
    let mut ids = Vec::new();
    let mut conn = signals::db::conn(&app.pool).await.unwrap();
    for (i, url) in local.iter().enumerate() {
        let name = format!("https://hook-{i}.signals.invalid/hook");
        let created = subscribe(&app, &admin, json!({ "url": name })).await;
        let id = created["id"].as_str().unwrap().to_owned();
        let moved = diesel_async::RunQueryDsl::execute(
            diesel::sql_query("UPDATE webhooks SET url = $1 WHERE id = $2::uuid")
                .bind::<diesel::sql_types::Text, _>(url)
                .bind::<diesel::sql_types::Text, _>(&id),
            &mut conn,
        )
        .await
        .unwrap();
        assert_eq!(moved, 1);
        ids.push((url, id));
    }
    app.create(&writer, &signal(json!({}))).await;
    for (url, id) in &ids {
        let started = Instant::now();
        let mut error = Value::Null;
        while started.elapsed() < WAIT {
            let page = attempts(&app, &admin, id, "").await;
            error = page["items"][0]["error"].clone();
            if !error.is_null() {
                break;
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(error, "address", "{url}");
    }
    assert!(
        receiver.received().is_empty(),
        "nothing reached the receiver"
    );
}

#[actix_web::test]
async fn with_private_addresses_allowed_a_receiver_at_a_plain_http_address_gets_deliveries() {
    // SIGNALS_WEBHOOK_ALLOW_PRIVATE=true and SIGNALS_WEBHOOK_ALLOW_HTTP unset: http is allowed.
    let app = TestApp::spawn().await;
    let (writer, admin) = (app.key(Scope::Write).await, app.key(Scope::Admin).await);
    let receiver = Receiver::start();
    let url = receiver.url.replace("localhost", "127.0.0.1");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    subscribe(&app, &admin, json!({ "url": url })).await;
    let created = app
        .create(&writer, &signal(json!({"slug": "to-an-address"})))
        .await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1, "one delivery to {url}");
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["type"], "signal.created");
    assert_eq!(body["data"]["id"], created["id"]);
}

#[actix_web::test]
async fn a_receiver_that_times_out_does_not_hold_up_the_others() {
    let app = TestApp::spawn().await;
    let (writer, admin) = (app.key(Scope::Write).await, app.key(Scope::Admin).await);
    let (slow, fast) = (Receiver::start(), Receiver::start());
    slow.behaviour.lock().unwrap().delay = Duration::from_secs(5);
    let slow_hook = subscribe(&app, &admin, json!({"url": slow.url})).await;
    subscribe(&app, &admin, json!({"url": fast.url})).await;
    let started = Instant::now();
    for i in 0..5 {
        app.create(&writer, &signal(json!({ "slug": format!("s{i}") })))
            .await;
    }
    let got = fast.wait_for(5, WAIT).await;
    assert_eq!(got.len(), 5);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the fast receiver got everything in {:?}",
        started.elapsed()
    );
    // The slow one's first attempt timed out (2 s); the others waited with it, unattempted.
    actix_web::rt::time::sleep(Duration::from_millis(2500)).await;
    let page = attempts(&app, &admin, slow_hook["id"].as_str().unwrap(), "").await;
    let errors: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["error"].clone())
        .collect();
    assert!(errors.contains(&json!("timeout")), "{errors:?}");
}

/// A receiver that answers its status and then trickles its body does not hold the sending up:
/// the body is read by the delivery's deadline (2 s in the tests), and the next change goes out.
#[actix_web::test]
async fn a_receiver_that_trickles_its_answer_does_not_hold_up_its_deliveries() {
    let app = TestApp::spawn().await;
    let (writer, admin) = (app.key(Scope::Write).await, app.key(Scope::Admin).await);
    let receiver = Receiver::start();
    receiver.behaviour.lock().unwrap().trickle = true;
    let hook = subscribe(&app, &admin, json!({"url": receiver.url})).await;
    let started = Instant::now();
    app.create(&writer, &signal(json!({"slug": "first"}))).await;
    assert_eq!(receiver.wait_for(1, WAIT).await.len(), 1);
    app.create(&writer, &signal(json!({"slug": "second"})))
        .await;
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "the second change went out");
    assert_eq!(got[1].json()["data"]["slug"], "second");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    // The first was delivered: its status was 200, whatever the body did after it.
    let page = attempts(&app, &admin, hook["id"].as_str().unwrap(), "").await;
    let statuses: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert!(statuses.contains(&json!(200)), "{page}");
}

/// An instance that cannot open a subscription's secret (it was sealed with another
/// SIGNALS_WEBHOOK_KEY) sends nothing and counts no attempt: the deliveries are left for an
/// instance that can sign them, not used up by retries that can never succeed.
#[actix_web::test]
async fn an_instance_that_cannot_open_the_secret_leaves_the_deliveries_alone() {
    let app = TestApp::spawn().await;
    let (writer, admin) = (app.key(Scope::Write).await, app.key(Scope::Admin).await);
    let receiver = Receiver::start();
    let hook = subscribe(&app, &admin, json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap();
    // What another key's seal looks like to this instance: bytes it cannot open.
    let admin_sql = app.db.sql().await;
    admin_sql
        .batch_execute("UPDATE webhooks SET secret = '\\x00'::bytea || secret")
        .await
        .unwrap();
    app.create(&writer, &signal(json!({"slug": "one"}))).await;
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    assert!(receiver.received().is_empty(), "nothing unsigned went out");
    let page = attempts(&app, &admin, id, "").await;
    assert_eq!(page["items"], json!([]), "no attempt counted");
    let pending: i64 = admin_sql
        .query_one(
            "SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 1, "the delivery waits");
    // Claimed again and again as the leases end, it has used up none of its retries.
    let attempts: i32 = admin_sql
        .query_one("SELECT attempts FROM webhook_deliveries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 0, "a claim counts no attempt");
}

/// A PATCH and a 410 that disables the subscription while the PATCH runs: the PATCH waits for
/// the row and merges into what it finds, so the subscription stays disabled (before, the PATCH
/// wrote back the `enabled` it had read and undid the disabling).
#[actix_web::test]
async fn a_patch_does_not_undo_a_disabling_made_while_it_ran() {
    let app = TestApp::spawn().await;
    let admin = app.key(Scope::Admin).await;
    let receiver = Receiver::start();
    let hook = subscribe(&app, &admin, json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let sql = app.db.sql().await;
    sql.batch_execute("BEGIN; SELECT 1 FROM webhooks FOR UPDATE")
        .await
        .unwrap();
    let patch = app
        .request(Method::PATCH, &format!("/v1/webhooks/{id}"), &admin)
        .send_json(&json!({"min_score": 5}));
    let patched = actix_web::rt::spawn(async move {
        let mut res = patch.await.unwrap();
        (res.status().as_u16(), json_body(&mut res).await)
    });
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    sql.batch_execute(
        "UPDATE webhooks SET enabled = false, disabled_reason = 'the receiver answered 410 Gone'; \
         COMMIT",
    )
    .await
    .unwrap();
    let (status, body) = patched.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["min_score"], 5);
    assert_eq!(body["enabled"], false, "{body}");
}

#[actix_web::test]
async fn two_instances_deliver_each_change_once_and_never_the_same_attempt_at_once() {
    let app = TestApp::spawn().await;
    let _other = app.another_instance(|_, _| {}).await;
    let (writer, admin) = (app.key(Scope::Write).await, app.key(Scope::Admin).await);
    let receiver = Receiver::start();
    receiver.behaviour.lock().unwrap().delay = Duration::from_millis(20);
    for _ in 0..3 {
        subscribe(&app, &admin, json!({"url": receiver.url})).await;
    }
    let items: Vec<Value> = (0..40)
        .map(|i| signal(json!({ "slug": format!("b{i}") })))
        .collect();
    let res = app
        .request(Method::POST, "/v1/signals/batch", &writer)
        .send_json(&json!({ "items": items }))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got = receiver.wait_for(120, Duration::from_secs(30)).await;
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let got_later = receiver.received();
    assert_eq!(got.len(), 120);
    assert_eq!(got_later.len(), 120, "nothing twice");
    let mut ids: Vec<String> = got.iter().map(|r| r.header("webhook-id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 120, "one webhook-id per change and subscription");
    let most = receiver
        .behaviour
        .lock()
        .unwrap()
        .most_at_once
        .values()
        .copied()
        .max();
    assert_eq!(most, Some(1), "no attempt was sent twice at once");
}

#[actix_web::test]
async fn killed_while_the_receiver_is_down_the_service_delivers_every_change_after_a_restart() {
    use crate::faults::{assert_no_secrets, key_secret, serve, signals as cli};
    let db = crate::helpers::TestDb::new().await;
    let admin = cli(
        &db.url,
        &["keys", "create", "--name", "a", "--scope", "admin"],
    );
    let writer = cli(
        &db.url,
        &["keys", "create", "--name", "w", "--scope", "write"],
    );
    // A port nobody listens on yet: the receiver is down.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = [
        ("SIGNALS_WEBHOOK_ALLOW_HTTP", "true"),
        ("SIGNALS_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("SIGNALS_WEBHOOK_TIMEOUT_MS", "1000"),
        (
            "SIGNALS_WEBHOOK_RETRIES",
            "1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s",
        ),
        ("SIGNALS_WEBHOOK_KEY", crate::helpers::TEST_WEBHOOK_KEY),
    ];
    let dir = std::env::temp_dir().join(format!("signals-webhooks-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut first, base) = serve(&db.url, &dir.join("first.log"), &settings).await;
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let mut res = client
        .post(format!("{base}/v1/webhooks"))
        .insert_header(("Authorization", format!("Bearer {admin}")))
        .send_json(&json!({"url": format!("http://localhost:{port}/hook")}))
        .await
        .unwrap();
    let created = json_body(&mut res).await;
    assert_eq!(res.status(), 201, "{created}");
    let slugs: Vec<String> = (0..5).map(|i| format!("kept-{i}")).collect();
    for slug in &slugs {
        let res = client
            .post(format!("{base}/v1/signals"))
            .insert_header(("Authorization", format!("Bearer {writer}")))
            .send_json(&signal(json!({ "slug": slug })))
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    // Attempts were made (and refused) before the kill.
    let hook = created["id"].as_str().unwrap();
    let started = Instant::now();
    loop {
        let mut res = client
            .get(format!("{base}/v1/webhooks/{hook}/deliveries"))
            .insert_header(("Authorization", format!("Bearer {admin}")))
            .send()
            .await
            .unwrap();
        let page = json_body(&mut res).await;
        if page["items"][0]["error"] == "connect" {
            break;
        }
        assert!(started.elapsed() < WAIT, "no attempt failed yet: {page}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    first.kill().unwrap();
    first.wait().unwrap();

    let (mut second, _) = serve(&db.url, &dir.join("second.log"), &settings).await;
    let receiver = Receiver::on(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut ids_by_slug: HashMap<String, Vec<String>> = HashMap::new();
    while ids_by_slug.len() < slugs.len() && Instant::now() < deadline {
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        ids_by_slug.clear();
        for delivery in receiver.received() {
            verify(created["secret"].as_str().unwrap(), &delivery);
            let slug = delivery.json()["data"]["slug"].as_str().unwrap().to_owned();
            ids_by_slug
                .entry(slug)
                .or_default()
                .push(delivery.header("webhook-id"));
        }
    }
    let mut got: Vec<&String> = ids_by_slug.keys().collect();
    got.sort();
    assert_eq!(
        got,
        slugs.iter().collect::<Vec<_>>(),
        "every change arrived"
    );
    for (slug, ids) in &ids_by_slug {
        assert!(
            ids.iter().all(|i| *i == ids[0]),
            "{slug}: one webhook-id, got {ids:?}"
        );
    }
    second.kill().unwrap();
    second.wait().unwrap();
    let secrets = [
        key_secret(&admin),
        key_secret(&writer),
        created["secret"].as_str().unwrap(),
    ];
    for log in ["first.log", "second.log"] {
        assert_no_secrets(&dir.join(log), &secrets);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A delivery whose attempt fails when its change is older than the retries last in all
/// (`SIGNALS_WEBHOOK_RETRIES`, 3 s here; about three days by default) is given up, whatever
/// retries it has left: one that waited (behind an unreachable receiver, or for its
/// subscription to be enabled again) gets one attempt more, not a whole schedule of its own.
#[actix_web::test]
async fn a_delivery_older_than_the_retries_is_given_up_at_its_next_failed_attempt() {
    let app = TestApp::spawn().await;
    let (writer, admin) = (app.key(Scope::Write).await, app.key(Scope::Admin).await);
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hook = subscribe(
        &app,
        &admin,
        json!({ "url": format!("http://127.0.0.1:{port}/hook") }),
    )
    .await;
    let id = hook["id"].as_str().unwrap();
    app.create(&writer, &signal(json!({}))).await;
    let sql = app.db.sql().await;
    // The delivery's state and attempts (none yet until the change is fanned out).
    let state = || async {
        let rows = sql
            .query("SELECT state, attempts FROM webhook_deliveries", &[])
            .await
            .unwrap();
        rows.first().map_or(("none".to_owned(), 0), |row| {
            (row.get::<_, String>(0), row.get::<_, i32>(1))
        })
    };
    // Its first attempt fails (retried in 1 s, with two retries more after that) ...
    let started = Instant::now();
    while state().await.1 < 1 {
        assert!(started.elapsed() < WAIT, "never attempted");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state().await, ("pending".to_owned(), 1));
    // ... and its change is made an hour old, as if it had waited that long.
    sql.batch_execute("UPDATE webhook_deliveries SET created_at = now() - interval '1 hour'")
        .await
        .unwrap();
    let started = Instant::now();
    while state().await.0 == "pending" && started.elapsed() < WAIT {
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    // The next attempt fails and is the last (before, two more followed, three seconds on).
    assert_eq!(state().await, ("failed".to_owned(), 2));
    let page = attempts(&app, &admin, id, "").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page["items"][0]["error"], "connect", "{page}");
}
