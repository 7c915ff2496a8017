//! Faults survived, against the real binary and a PostgreSQL cluster of the test's own (made in
//! a temporary folder on a free port, so the test can stop and start it): the database gone
//! for five seconds under load, every backend killed, SIGTERM with requests in flight.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::rc::Rc;
use std::time::{Duration, Instant};

use signals::db::embedded::Cluster;

use crate::cli::BIN;
use crate::embedded::{free_port, wait_ready};

struct Own {
    dir: PathBuf,
    cluster: Cluster,
    service: Child,
    base: String,
    key: String,
    client: awc::Client,
}

impl Own {
    async fn get(&self, path: &str) -> crate::helpers::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }
}

impl Drop for Own {
    fn drop(&mut self) {
        let _ = self.service.kill();
        let _ = self.service.wait();
        if !std::thread::panicking() {
            let password = std::fs::read_to_string(self.dir.join("pg/signals.password")).unwrap();
            assert_no_secrets(
                &self.dir.join("service.log"),
                &[password.trim(), key_secret(&self.key)],
            );
        }
        self.cluster.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The secret part of an API key (`sig_<prefix>_<secret>`): what must never be logged.
pub fn key_secret(key: &str) -> &str {
    signals::domain::key::split(key).expect("a key").1
}

/// Fails if any of the secrets appears in the service's log.
pub fn assert_no_secrets(log: &std::path::Path, secrets: &[&str]) {
    let text = std::fs::read_to_string(log).unwrap();
    assert!(
        text.lines().count() > 0,
        "the service logged nothing: the check would be empty"
    );
    for secret in secrets {
        assert!(secret.len() >= 16, "not a secret: {secret:?}");
        assert!(
            !text.contains(secret),
            "a secret reached the log {}",
            log.display()
        );
    }
}

/// Runs a `signals` command on the database at `url` and returns what it printed.
pub fn signals(url: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `signals serve` on the database at `url` (limits off, two workers, then `settings`), its
/// logs in `log`, once it is ready; and its base URL.
pub async fn serve(url: &str, log: &std::path::Path, settings: &[(&str, &str)]) -> (Child, String) {
    let port = free_port();
    let key_file = log.with_extension("webhook.key");
    let log = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env("DATABASE_URL", url)
        .env("SIGNALS_BIND", format!("127.0.0.1:{port}"))
        .env("SIGNALS_RATE_LIMIT_READ", "0")
        .env("SIGNALS_RATE_LIMIT_WRITE", "0")
        .env("SIGNALS_WORKERS", "2")
        // A line for every request, for the secrets check.
        .env("RUST_LOG", "info")
        // Its webhook key (made on first use) beside its log, not in the working folder.
        .env("SIGNALS_WEBHOOK_KEY_FILE", key_file)
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    for (k, v) in settings {
        cmd.env(k, v);
    }
    let mut service = cmd.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&awc::Client::default(), &base, &mut service).await;
    (service, base)
}

/// A session of the test's own that holds an exclusive lock on `signals` until it commits.
async fn lock_signals(url: &str) -> tokio_postgres::Client {
    let client = session(url).await;
    client
        .batch_execute("BEGIN; LOCK TABLE signals IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    client
}

async fn session(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    actix_web::rt::spawn(conn);
    client
}

/// A cluster of the test's own, migrated, and the service binary on it.
async fn own(extra_env: &[(&str, &str)]) -> Own {
    own_with(extra_env, &[]).await
}

/// `own`, with these statements run on the cluster before the service starts.
async fn own_with(extra_env: &[(&str, &str)], prepare: &[&str]) -> Own {
    let dir =
        std::env::temp_dir().join(format!("signals-faults-{}", uuid::Uuid::now_v7().simple()));
    let cluster = Cluster::start(&dir.join("pg"), None)
        .await
        .expect("a cluster of the test's own");
    let url = cluster.url();
    signals(&url, &["migrate"]);
    let key = signals(
        &url,
        &["keys", "create", "--name", "faults", "--scope", "write"],
    );
    let admin = session(&url).await;
    for sql in prepare {
        admin.batch_execute(sql).await.unwrap();
    }
    drop(admin);
    let mut settings = vec![
        ("SIGNALS_DB_TIMEOUT_MS", "1000"),
        ("SIGNALS_STATEMENT_TIMEOUT_MS", "2000"),
    ];
    settings.extend_from_slice(extra_env);
    let (service, base) = serve(&url, &dir.join("service.log"), &settings).await;
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(15))
        .finish();
    Own {
        dir,
        cluster,
        service,
        base,
        key,
        client,
    }
}

#[derive(Debug, Clone)]
struct Answer {
    at: Instant,
    took: Duration,
    status: u16,
    problem: bool,
    retry_after: bool,
    /// The id of a created signal (an acknowledged write).
    created: Option<String>,
}

type Answers = Rc<RefCell<Vec<Answer>>>;

/// Readers and writers in a loop until `stop`; every answer is recorded.
fn load(
    own: &Own,
    answers: &Answers,
    stop: &Rc<RefCell<bool>>,
    readers: usize,
    writers: usize,
) -> Vec<actix_web::rt::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for i in 0..readers + writers {
        let (client, base, key) = (own.client.clone(), own.base.clone(), own.key.clone());
        let (answers, stop) = (answers.clone(), stop.clone());
        tasks.push(actix_web::rt::spawn(async move {
            let mut n = 0;
            while !*stop.borrow() {
                n += 1;
                let started = Instant::now();
                let res = if i < readers {
                    client
                        .get(format!("{base}/v1/signals?limit=5"))
                        .send()
                        .await
                } else {
                    let body = crate::helpers::signal(
                        serde_json::json!({"title": format!("Under load {i} {n}")}),
                    );
                    client
                        .post(format!("{base}/v1/signals"))
                        .insert_header(("Authorization", format!("Bearer {key}")))
                        .send_json(&body)
                        .await
                };
                let mut res = match res {
                    Ok(res) => res,
                    Err(e) => panic!("no answer: {e}"),
                };
                let content_type = res
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                let retry_after = res.headers().contains_key("retry-after");
                let status = res.status().as_u16();
                let body = res.body().limit(1 << 24).await.unwrap_or_default();
                let created = (status == 201).then(|| {
                    serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                });
                answers.borrow_mut().push(Answer {
                    at: started,
                    took: started.elapsed(),
                    status,
                    problem: content_type == "application/problem+json",
                    retry_after,
                    created,
                });
                actix_web::rt::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tasks
}

async fn stored_ids(own: &Own) -> std::collections::HashSet<String> {
    session(&own.cluster.url())
        .await
        .query("SELECT id::text FROM signals", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn assert_only_successes_or_503s(answers: &[Answer]) {
    for a in answers {
        match a.status {
            200 | 201 => {}
            503 => assert!(
                a.problem && a.retry_after,
                "a 503 is problem+json with Retry-After: {a:?}"
            ),
            other => panic!("status {other}: {a:?}"),
        }
    }
}

#[actix_web::test]
async fn postgres_stopped_for_five_seconds_under_load_gives_503s_then_recovers_losing_nothing() {
    let mut own = own(&[]).await;
    let pid = own.service.id();
    let answers: Answers = Rc::default();
    let stop = Rc::new(RefCell::new(false));
    let tasks = load(&own, &answers, &stop, 3, 2);
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;

    own.cluster.pause().unwrap();
    let stopped = Instant::now();
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let res = own.get("/readyz").await;
    assert_eq!(res.status(), 503, "not ready while the database is down");
    let res = own.get("/healthz").await;
    assert_eq!(res.status(), 200, "alive while the database is down");
    actix_web::rt::time::sleep(Duration::from_secs(5).saturating_sub(stopped.elapsed())).await;
    own.cluster.resume().unwrap();
    let resumed = Instant::now();
    actix_web::rt::time::sleep(Duration::from_secs(5)).await;
    *stop.borrow_mut() = true;
    for task in tasks {
        task.await.unwrap();
    }

    let answers = answers.borrow().clone();
    assert_only_successes_or_503s(&answers);
    let down: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.at > stopped + Duration::from_millis(200) && a.at + a.took < resumed)
        .collect();
    assert!(
        !down.is_empty() && down.iter().all(|a| a.status == 503),
        "every answer while down is 503"
    );
    // No request waited past the pool's timeout and its statement's.
    let longest = answers.iter().map(|a| a.took).max().unwrap();
    assert!(
        longest < Duration::from_millis(1000 + 2000 + 1500),
        "a request took {longest:?}"
    );
    let first_success = answers
        .iter()
        .filter(|a| a.at >= resumed && a.status < 300)
        .map(|a| a.at + a.took - resumed)
        .min()
        .expect("requests succeed again");
    println!("recovered {first_success:?} after PostgreSQL started again");
    assert!(first_success < Duration::from_secs(5));
    assert!(
        own.service.try_wait().unwrap().is_none() && own.service.id() == pid,
        "the service never restarted"
    );
    let stored = stored_ids(&own).await;
    let acknowledged: Vec<&String> = answers.iter().filter_map(|a| a.created.as_ref()).collect();
    assert!(acknowledged.len() > 10);
    for id in acknowledged {
        assert!(stored.contains(id), "the acknowledged write {id} was lost");
    }
}

#[actix_web::test]
async fn killing_every_backend_under_load_fails_at_most_the_requests_in_flight() {
    let own = own(&[]).await;
    let answers: Answers = Rc::default();
    let stop = Rc::new(RefCell::new(false));
    let tasks = load(&own, &answers, &stop, 3, 1);
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let client = session(&own.cluster.url()).await;
    let killed = Instant::now();
    let rows = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'signals' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(!rows.is_empty(), "the service had backends to kill");
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    *stop.borrow_mut() = true;
    for task in tasks {
        task.await.unwrap();
    }
    let answers = answers.borrow().clone();
    assert_only_successes_or_503s(&answers);
    // Failures only among the requests in flight at the kill (one per load task at most, and
    // one per connection the pools held); everything sent a moment later succeeds.
    let failed = answers.iter().filter(|a| a.status == 503).count();
    assert!(
        failed <= rows.len() + 4,
        "{failed} failed after killing {} backends",
        rows.len()
    );
    let later = answers
        .iter()
        .filter(|a| a.at > killed + Duration::from_millis(500));
    assert!(later.clone().count() > 5);
    assert!(
        later.clone().all(|a| a.status < 300),
        "the next requests succeed"
    );
}

#[actix_web::test]
async fn sigterm_under_load_completes_what_was_received_and_exits_0() {
    shutdown_under_load(libc::SIGTERM).await;
}

/// Ctrl-C is as graceful as SIGTERM (actix alone makes SIGINT a forced stop that drops the
/// requests in flight).
#[actix_web::test]
async fn sigint_under_load_completes_what_was_received_and_exits_0() {
    shutdown_under_load(libc::SIGINT).await;
}

async fn shutdown_under_load(signal: i32) {
    let mut own = own(&[("SIGNALS_SHUTDOWN_TIMEOUT_S", "10")]).await;
    // Requests that are in flight when SIGTERM arrives: each waits on a locked table.
    let locker = lock_signals(&own.cluster.url()).await;
    let mut in_flight = Vec::new();
    for i in 0..4 {
        let (client, base) = (own.client.clone(), own.base.clone());
        in_flight.push(actix_web::rt::spawn(async move {
            let res = client
                .get(format!("{base}/v1/signals?limit={}", i + 1))
                .send()
                .await
                .expect("an answer, not a dropped connection");
            res.status().as_u16()
        }));
    }
    // An open stream, which never ends by itself.
    let mut stream = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish()
        .get(format!("{}/v1/signals/stream", own.base))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(own.service.id() as i32, signal) };
    let ended = actix_web::rt::time::timeout(Duration::from_secs(3), async {
        use futures_util::StreamExt;
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the open stream ended at once (its client resumes elsewhere)"
    );
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    // New connections are refused while the received requests finish.
    let refused = std::net::TcpStream::connect(own.base.trim_start_matches("http://"));
    assert!(
        refused.is_err(),
        "a new connection was accepted after the signal"
    );
    let signalled = Instant::now();
    locker.batch_execute("COMMIT").await.unwrap();
    for request in in_flight {
        assert_eq!(
            request.await.unwrap(),
            200,
            "a received request got its normal answer"
        );
    }
    let status = own.service.wait().unwrap();
    assert!(status.success(), "exit code 0, got {status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "within SIGNALS_SHUTDOWN_TIMEOUT_S"
    );
}

#[actix_web::test]
async fn a_lock_held_on_signals_for_20_s_gives_503s_within_the_timeouts_and_spares_the_rest() {
    let own = own(&[]).await;
    let locker = lock_signals(&own.cluster.url()).await;
    let locked = Instant::now();
    // Statement timeout 2 s, pool timeout 1 s: every request needing the table answers 503
    // within their sum plus one second.
    let limit = Duration::from_millis(2000 + 1000 + 1000);
    let mut rounds = 0;
    while locked.elapsed() < Duration::from_secs(18) {
        for path in [
            "/v1/signals?limit=3",
            "/v1/categories",
            "/v1/signals/some-slug",
        ] {
            let started = Instant::now();
            let mut res = own.get(path).await;
            assert_eq!(res.status(), 503, "{path}");
            assert!(
                started.elapsed() < limit,
                "{path} took {:?}",
                started.elapsed()
            );
            let body: serde_json::Value =
                serde_json::from_slice(&res.body().await.unwrap()).unwrap();
            assert_eq!(body["status"], 503);
        }
        let started = Instant::now();
        let res = own.get("/healthz").await;
        assert_eq!(res.status(), 200);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "/healthz is unaffected"
        );
        rounds += 1;
    }
    assert!(rounds >= 2);
    actix_web::rt::time::sleep(Duration::from_secs(20).saturating_sub(locked.elapsed())).await;
    locker.batch_execute("COMMIT").await.unwrap();
    let res = own.get("/v1/signals?limit=3").await;
    assert_eq!(res.status(), 200, "served again once the lock is gone");
}

/// A German locale for PostgreSQL's messages: there when `locale -a` lists one, else made with
/// `localedef` when this process may (as root, as CI runs); `None` when neither works.
fn german_locale() -> Option<&'static str> {
    let listed = || {
        Command::new("locale")
            .arg("-a")
            .output()
            .ok()
            .is_some_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l == "de_DE.utf8")
            })
    };
    if listed() {
        return Some("de_DE.UTF-8");
    }
    let made = Command::new("localedef")
        .args(["-i", "de_DE", "-f", "UTF-8", "de_DE.UTF-8"])
        .status()
        .is_ok_and(|s| s.success());
    (made && listed()).then_some("de_DE.UTF-8")
}

#[actix_web::test]
async fn under_german_messages_errors_are_still_told_apart_by_their_codes() {
    let Some(locale) = german_locale() else {
        eprintln!("SKIPPED: no German locale here and none can be made (localedef, as root)");
        return;
    };
    let own = own_with(
        &[("SIGNALS_STATEMENT_TIMEOUT_MS", "1000")],
        &[
            &format!("ALTER SYSTEM SET lc_messages = '{locale}'"),
            "SELECT pg_reload_conf()",
        ],
    )
    .await;
    // The service's sessions really get German messages.
    let admin = session(&own.cluster.url()).await;
    let error = admin.query("SELECT 1/0", &[]).await.unwrap_err();
    let message = error.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("Division durch Null"), "{message}");

    // 23505: an explicit slug taken is 409.
    let post = |slug: &'static str| {
        own.client
            .post(format!("{}/v1/signals", own.base))
            .insert_header(("Authorization", format!("Bearer {}", own.key)))
            .send_json(&crate::helpers::signal(serde_json::json!({ "slug": slug })))
    };
    assert_eq!(post("taken").await.unwrap().status(), 201);
    let mut res = post("taken").await.unwrap();
    crate::helpers::assert_problem(&mut res, 409).await;

    // 57014: a statement timeout (a search that waits on a lock) is 503 with Retry-After.
    let locker = lock_signals(&own.cluster.url()).await;
    let mut res = own.get("/v1/signals?q=deepseek").await;
    assert!(res.headers().contains_key("retry-after"));
    crate::helpers::assert_problem(&mut res, 503).await;

    // 57P01: a backend terminated under a request is 503 too.
    let (client, base) = (own.client.clone(), own.base.clone());
    let waiting = actix_web::rt::spawn(async move {
        let mut res = client
            .get(format!("{base}/v1/signals?limit=2"))
            .send()
            .await
            .unwrap();
        let retry = res.headers().contains_key("retry-after");
        (crate::helpers::assert_problem(&mut res, 503).await, retry)
    });
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'signals' AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap();
    assert!(!killed.is_empty(), "a backend of the service was waiting");
    let (_, retry) = waiting.await.unwrap();
    assert!(retry);
    locker.batch_execute("COMMIT").await.unwrap();
    let log = std::fs::read_to_string(own.dir.join("service.log")).unwrap();
    assert!(!log.contains("panicked"), "{log}");
}

#[actix_web::test]
async fn rate_limit_counts_made_while_postgres_is_down_reach_it_when_it_is_back() {
    let mut own = own(&[("SIGNALS_RATE_LIMIT_READ", "1000/3600s:5")]).await;
    let url = own.cluster.url();
    let counted = || async {
        session(&url)
            .await
            .query_one(
                "SELECT coalesce(sum(count), 0)::bigint FROM rate_limit_counts \
                 WHERE policy = 'read'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    // What start-up's readiness checks counted, flushed.
    actix_web::rt::time::sleep(Duration::from_millis(600)).await;
    let before = counted().await;
    own.cluster.pause().unwrap();
    for _ in 0..20 {
        // /openapi.json needs no database, and counts as a read.
        assert_eq!(own.get("/openapi.json").await.status(), 200);
    }
    own.cluster.resume().unwrap();
    let started = Instant::now();
    while counted().await < before + 20 && started.elapsed() < Duration::from_secs(10) {
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        counted().await,
        before + 20,
        "every read admitted while down is counted once"
    );
}
