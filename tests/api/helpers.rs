//! Test harness: a real PostgreSQL, a fresh database per test (cloned from a migrated
//! template, dropped afterwards) and the real app listening on a free port.
//!
//! PostgreSQL is found as the service finds it: `TEST_DATABASE_URL` or `DATABASE_URL`, else the
//! local server on 127.0.0.1:5432, else an embedded cluster made with the installed programs.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use serde_json::Value;
use sha2::{Digest, Sha256};
use signals::config::{DatabaseSettings, ServeSettings};
use signals::db::{self, embedded::Cluster, PgPool};
use signals::domain::key::{self, Scope};

/// Where tests make their databases: a URL for maintenance work and a way to name databases.
struct Server {
    /// URL of a database to run CREATE/DROP DATABASE from.
    admin_url: String,
    template: String,
}

static SERVER: OnceLock<Server> = OnceLock::new();
/// Keeps an embedded cluster (when one was needed) alive for the whole test run.
static CLUSTER: Mutex<Option<Cluster>> = Mutex::new(None);

/// Replaces the database name in a `postgres://` URL.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

pub fn db_settings(url: &str) -> DatabaseSettings {
    DatabaseSettings {
        database_url: Some(url.to_owned()),
        data_dir: PathBuf::from(".signals/pg"),
        pg_bin: None,
        pool_size: 4,
        db_timeout_ms: 2000,
        statement_timeout_ms: 10_000,
    }
}

fn run_blocking<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(f)
    })
    .join()
    .expect("set-up thread panicked")
}

async fn can_connect(url: &str) -> bool {
    let Ok(mut config) = url.parse::<tokio_postgres::Config>() else {
        return false;
    };
    config.connect_timeout(Duration::from_secs(3));
    config.connect(tokio_postgres::NoTls).await.is_ok()
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// Finds PostgreSQL and makes the migrated template database, once per test process.
fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        run_blocking(async {
            let configured = std::env::var("TEST_DATABASE_URL")
                .or_else(|_| std::env::var("DATABASE_URL"))
                .ok();
            let local = "postgres://postgres@127.0.0.1:5432/postgres".to_owned();
            let admin_url = match configured {
                Some(url) => url,
                None if can_connect(&local).await => local,
                None => {
                    let dir = std::env::temp_dir().join("signals-test-pg");
                    let cluster = Cluster::start(&dir, None)
                        .await
                        .unwrap_or_else(|e| panic!("no PostgreSQL for the tests: {e}"));
                    let url = cluster.url_of("postgres");
                    *CLUSTER.lock().unwrap() = Some(cluster);
                    url
                }
            };
            let template = make_template(&admin_url).await;
            Server {
                admin_url,
                template,
            }
        })
    })
}

/// A template named after the migrations' contents, so a changed migration gets a new one.
/// Built under another name and renamed when complete, under an advisory lock, so concurrent
/// test processes never clone a half-migrated template.
async fn make_template(admin_url: &str) -> String {
    let mut hasher = Sha256::new();
    let mut entries: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for dir in entries {
        for file in ["up.sql", "down.sql"] {
            hasher.update(std::fs::read(dir.join(file)).unwrap_or_default());
        }
    }
    let hash: String = hasher.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let template = format!("signals_tpl_{hash}");
    let client = admin(admin_url).await;
    client
        .execute("SELECT pg_advisory_lock(727272)", &[])
        .await
        .unwrap();
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
        .await
        .unwrap()
        .is_some();
    if !exists {
        let building = format!("{template}_building");
        for sql in [
            format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"),
            format!("CREATE DATABASE {building}"),
        ] {
            client.batch_execute(&sql).await.unwrap();
        }
        let url = with_database(admin_url, &building);
        db::migrate(&url, &db_settings(&url))
            .await
            .expect("migrations run on the template");
        client
            .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}"))
            .await
            .unwrap();
    }
    client
        .execute("SELECT pg_advisory_unlock(727272)", &[])
        .await
        .unwrap();
    template
}

/// A fresh, migrated database of this test's own; dropped when this value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        Self::create(true).await
    }

    /// An empty database (no migrations), for the migration tests.
    pub async fn empty() -> TestDb {
        Self::create(false).await
    }

    async fn create(migrated: bool) -> TestDb {
        let server = server();
        let name = format!("signals_test_{}", uuid::Uuid::now_v7().simple());
        let sql = if migrated {
            format!("CREATE DATABASE {name} TEMPLATE {}", server.template)
        } else {
            format!("CREATE DATABASE {name}")
        };
        admin(&server.admin_url)
            .await
            .batch_execute(&sql)
            .await
            .unwrap();
        TestDb {
            url: with_database(&server.admin_url, &name),
            name,
        }
    }

    /// A session of its own on this database, to look at or hold what the app cannot show.
    pub async fn sql(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        actix_web::rt::spawn(conn);
        client
    }

    /// Drops the database now, terminating its connections (to simulate a lost database).
    pub async fn drop_now(&self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        admin(&server().admin_url)
            .await
            .batch_execute(&sql)
            .await
            .unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let admin_url = server().admin_url.clone();
        run_blocking(async move {
            let _ = admin(&admin_url).await.batch_execute(&sql).await;
        });
    }
}

/// The real app on a free port, over its own database.
pub struct TestApp {
    pub address: String,
    /// A pool of the test's own on the app's database (the app's pools are its workers').
    pub pool: PgPool,
    pub client: awc::Client,
    handle: ServerHandle,
    // Dropped last: the server stops before its database goes.
    pub db: TestDb,
}

/// The signals an app in the tests stops on, as the binary's.
fn stop_signals() -> signals::startup::StopSignals {
    signals::startup::StopSignals::listen().expect("signals can be listened for")
}

pub fn serve_settings() -> ServeSettings {
    ServeSettings {
        bind: "127.0.0.1:0".into(),
        public_read: true,
        cors_origins: vec!["https://admin.example".into()],
        workers: 1,
        shutdown_timeout_s: 1,
        // Off, as the tests make many requests from one address; tests/api/limits.rs turns
        // them on.
        rate_limit_read: signals::config::RateLimit(None),
        rate_limit_write: signals::config::RateLimit(None),
        public_url: None,
        trusted_proxies: Vec::new(),
        client_timeout_ms: 5000,
        max_streams: 1000,
        events_retention: signals::config::Span(Duration::from_secs(7 * 86_400)),
        max_connections: 4096,
        cache_mb: 32,
        // The default: the tests' tables are smaller, so searches look among every signal at
        // once; tests/api/listing.rs sets a horizon the tables reach.
        search_horizon: signals::config::DEFAULT_SEARCH_HORIZON,
        read_database_url: Vec::new(),
        replica_max_lag_ms: 1000,
        // Receivers in the tests listen on 127.0.0.1 over plain HTTP; tests of the refusals
        // turn these off.
        webhook_allow_http: None,
        webhook_allow_private: true,
        webhook_timeout_ms: 2000,
        webhook_retries: vec![signals::config::Span(Duration::from_secs(1)); 3],
        // One key for every instance of a test, as a deployment would share it.
        webhook_key: Some(signals::config::SecretText(TEST_WEBHOOK_KEY.into())),
        webhook_key_file: None,
    }
}

/// The text of the `GET /metrics` at `url`.
pub async fn metrics_at(client: &awc::Client, url: String) -> String {
    let body = client.get(url).send().await.unwrap().body().await.unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

/// The value of one series (its name with any labels, as printed) in a `/metrics` text.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

pub const TEST_WEBHOOK_KEY: &str =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_, _| {}).await
    }

    pub async fn spawn_with(
        configure: impl FnOnce(&mut ServeSettings, &mut DatabaseSettings),
    ) -> TestApp {
        if std::env::var_os("TEST_LOG").is_some() {
            signals::telemetry::init(signals::config::LogFormat::Text);
        }
        let db = TestDb::new().await;
        let mut serve = serve_settings();
        let mut database = db_settings(&db.url);
        configure(&mut serve, &mut database);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        // The test's own connections, beside the app's (which live in its workers).
        let pool = db::pool(&db.url, &db_settings(&db.url)).unwrap();
        let server = signals::startup::run(listener, &db.url, &database, &serve, stop_signals())
            .await
            .expect("the app starts");
        let handle = server.handle();
        actix_web::rt::spawn(server);
        TestApp {
            address,
            pool,
            client: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .disable_redirects()
                .finish(),
            handle,
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Another instance of the service on this app's database (stopped when dropped), with
    /// the settings `configure` makes of the tests' defaults.
    pub async fn another_instance(
        &self,
        configure: impl FnOnce(&mut ServeSettings, &mut DatabaseSettings),
    ) -> Instance {
        self.another_instance_at(&self.db.url, configure).await
    }

    /// [`TestApp::another_instance`] reaching this app's database at `url` (through a proxy).
    pub async fn another_instance_at(
        &self,
        url: &str,
        configure: impl FnOnce(&mut ServeSettings, &mut DatabaseSettings),
    ) -> Instance {
        let mut serve = serve_settings();
        let mut database = db_settings(url);
        configure(&mut serve, &mut database);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let server = signals::startup::run(listener, url, &database, &serve, stop_signals())
            .await
            .expect("the second instance starts");
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Instance { address, handle }
    }

    /// A new API key of this scope, as `signals keys create` would make it.
    pub async fn key(&self, scope: Scope) -> String {
        let generated = key::generate();
        let mut conn = db::conn(&self.pool).await.unwrap();
        db::keys::create(&mut conn, "test", scope, &generated)
            .await
            .unwrap();
        generated.token
    }

    pub fn get(&self, path: &str) -> awc::ClientRequest {
        self.client.get(self.url(path))
    }

    pub fn request(&self, method: awc::http::Method, path: &str, key: &str) -> awc::ClientRequest {
        self.client
            .request(method, self.url(path))
            .insert_header(("Authorization", format!("Bearer {key}")))
    }

    /// Makes the app's statements on `signals` wait: the returned session holds an exclusive
    /// lock on the table until it sends `COMMIT`.
    pub async fn lock_signals(&self) -> tokio_postgres::Client {
        let client = self.db.sql().await;
        client
            .batch_execute("BEGIN; LOCK TABLE signals IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        client
    }

    /// The text of this instance's `GET /metrics`.
    pub async fn metrics(&self) -> String {
        metrics_at(&self.client, self.url("/metrics")).await
    }

    /// GETs a path that must answer 200 and returns its JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let mut res = self.get(path).send().await.unwrap();
        let body = json_body(&mut res).await;
        assert_eq!(res.status(), 200, "GET {path}: {body}");
        body
    }

    /// POSTs a signal with this key and returns the created signal.
    pub async fn create(&self, key: &str, signal: &Value) -> Value {
        let mut res = self
            .request(awc::http::Method::POST, "/v1/signals", key)
            .send_json(signal)
            .await
            .unwrap();
        let body = json_body(&mut res).await;
        assert_eq!(res.status(), 201, "{body}");
        body
    }
}

/// A second service instance on a test's database.
pub struct Instance {
    pub address: String,
    handle: ServerHandle,
}

impl Instance {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop accepting at once; the database is dropped (forcefully) right after.
        // The stop command is sent at once; the returned future only waits for completion.
        drop(self.handle.stop(false));
    }
}

pub type Response = awc::ClientResponse;

pub async fn json_body(res: &mut Response) -> Value {
    let bytes = res.body().limit(16 * 1024 * 1024).await.unwrap();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

pub fn header(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// Asserts that a response is a problem document with this status and returns it.
pub async fn assert_problem(res: &mut Response, status: u16) -> Value {
    let body = json_body(res).await;
    assert_eq!(res.status().as_u16(), status, "{body}");
    assert_eq!(
        header(res, "content-type").as_deref(),
        Some("application/problem+json"),
        "{body}"
    );
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["type"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    assert!(header(res, "x-request-id").is_some());
    body
}

/// A valid signal with these fields changed.
pub fn signal(overrides: Value) -> Value {
    let mut base = signals::domain::examples::input();
    for (k, v) in overrides.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

/// A TCP proxy in front of PostgreSQL that can go silent: while frozen it forwards nothing in
/// either direction and closes nothing, as a dropped network path does. It can also be slow:
/// with a delay set, each chunk is passed on that long after it came, in order, without holding
/// up the chunks behind it (a server whose answers come late, as under a load that takes every
/// core).
pub struct Freezer {
    pub url: String,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Freezer {
    /// A proxy to the database of `url`; its own `url` names the same database through it.
    pub async fn to(url: &str) -> Freezer {
        use std::sync::atomic::{AtomicBool, AtomicU64};
        use std::sync::Arc;
        let parsed = url::Url::parse(url).unwrap();
        let backend = format!(
            "{}:{}",
            parsed.host_str().unwrap(),
            parsed.port().unwrap_or(5432)
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut through = parsed.clone();
        through
            .set_port(Some(listener.local_addr().unwrap().port()))
            .unwrap();
        through.set_host(Some("127.0.0.1")).unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (flag, delay) = (frozen.clone(), delay_ms.clone());
        actix_web::rt::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(&backend).await else {
                    continue;
                };
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                pump(in_read, out_write, flag.clone(), delay.clone());
                pump(out_read, in_write, flag.clone(), delay.clone());
            }
        });
        Freezer {
            url: through.to_string(),
            frozen,
            delay_ms,
        }
    }

    pub fn freeze(&self, frozen: bool) {
        self.frozen
            .store(frozen, std::sync::atomic::Ordering::SeqCst);
    }

    /// Passes each chunk on `delay` after it came, in each direction.
    pub fn delay(&self, delay: Duration) {
        self.delay_ms.store(
            delay.as_millis() as u64,
            std::sync::atomic::Ordering::SeqCst,
        );
    }
}

/// Forwards what `from` sends to `to`, each chunk the delay after it came, holding it while
/// `frozen`: one task reads, another writes.
fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin + 'static,
    mut to: impl tokio::io::AsyncWrite + Unpin + 'static,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    actix_web::rt::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let due = Instant::now() + Duration::from_millis(delay_ms.load(SeqCst));
            if tx.send((due, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    });
    actix_web::rt::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            actix_web::rt::time::sleep_until(due.into()).await;
            while frozen.load(SeqCst) {
                actix_web::rt::time::sleep(Duration::from_millis(10)).await;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
}
