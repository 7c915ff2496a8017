//! Reads on a streaming replica, for real: a primary and a replica of the test's own (initdb,
//! `pg_basebackup -R`, free ports), two service binaries on them, and a round-robin of the
//! test's own in front of both.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::Child;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use signals::db::embedded::Cluster;

use crate::faults::{serve, signals as cli};
use crate::helpers::{json_body, signal};

struct Pair {
    dir: PathBuf,
    primary: Cluster,
    replica: Cluster,
    services: Vec<Child>,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for service in &mut self.services {
            let _ = service.kill();
            let _ = service.wait();
        }
        self.replica.stop();
        self.primary.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A migrated primary and its streaming replica.
async fn pair() -> Pair {
    let dir = std::env::temp_dir().join(format!(
        "signals-replicas-{}",
        uuid::Uuid::now_v7().simple()
    ));
    let primary = Cluster::start(&dir.join("primary"), None)
        .await
        .expect("a primary of the test's own");
    cli(&primary.url(), &["migrate"]);
    let replica = primary
        .replica(&dir.join("replica"))
        .await
        .expect("a streaming replica of it");
    Pair {
        dir,
        primary,
        replica,
        services: Vec::new(),
    }
}

impl Pair {
    /// `signals serve` on the primary with reads on the replica.
    async fn service(&mut self, name: &str, extra: &[(&str, &str)]) -> String {
        let replica = self.replica.url();
        let mut settings = vec![
            ("SIGNALS_READ_DATABASE_URL", replica.as_str()),
            ("SIGNALS_WEBHOOK_KEY", crate::helpers::TEST_WEBHOOK_KEY),
        ];
        settings.extend_from_slice(extra);
        let (child, base) = serve(
            &self.primary.url(),
            &self.dir.join(format!("{name}.log")),
            &settings,
        )
        .await;
        self.services.push(child);
        base
    }
}

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(15))
        .finish()
}

/// Waits until the service's readiness says its replica serves reads.
async fn replica_serving(base: &str) {
    let started = Instant::now();
    loop {
        let mut res = client().get(format!("{base}/readyz")).send().await.unwrap();
        let body = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
        if body.contains(": serving reads") {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{body}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A session of the test's own on the replica.
async fn on_replica(replica: &Cluster) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&replica.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    actix_web::rt::spawn(conn);
    client
}

/// The service's sessions on the replica whose last statement read `signals`.
async fn replica_reads(replica: &Cluster) -> i64 {
    on_replica(replica)
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'signals' \
             AND query ILIKE '%FROM \"signals\"%'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[actix_web::test]
async fn reads_go_to_the_replica_and_a_write_is_read_back_through_another_instance() {
    let mut pair = pair().await;
    let key = cli(
        &pair.primary.url(),
        &["keys", "create", "--name", "r", "--scope", "write"],
    );
    // No cache: every read below goes to a database.
    let a = pair.service("a", &[("SIGNALS_CACHE_MB", "0")]).await;
    let b = pair.service("b", &[("SIGNALS_CACHE_MB", "0")]).await;
    replica_serving(&a).await;
    replica_serving(&b).await;
    assert_eq!(replica_reads(&pair.replica).await, 0);
    for _ in 0..20 {
        let res = client()
            .get(format!("{b}/v1/signals"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    assert!(
        replica_reads(&pair.replica).await > 0,
        "the lists were read on the replica (pg_stat_activity)"
    );
    // Read your writes: written through A, read through B at once with the token.
    for i in 0..20 {
        let mut res = client()
            .post(format!("{a}/v1/signals"))
            .insert_header(("Authorization", format!("Bearer {key}")))
            .send_json(&signal(json!({ "slug": format!("mine-{i}") })))
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let token = res
            .headers()
            .get("signals-read-after")
            .expect("a write answers with its position")
            .to_str()
            .unwrap()
            .to_owned();
        let created = json_body(&mut res).await;
        let mut res = client()
            .get(format!("{b}/v1/signals/mine-{i}"))
            .insert_header(("Signals-Read-After", token))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "the write is read back at once");
        assert_eq!(json_body(&mut res).await, created);
    }
    // A value that is not a position is a hint the service cannot use: served as without it.
    for junk in ["not a position", "0", ""] {
        let res = client()
            .get(format!("{b}/v1/signals"))
            .insert_header(("Signals-Read-After", junk))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{junk:?}");
    }
}

#[actix_web::test]
async fn an_instance_started_after_a_write_reads_it_though_its_replica_has_not_replayed_it() {
    let mut pair = pair().await;
    let key = cli(
        &pair.primary.url(),
        &["keys", "create", "--name", "r", "--scope", "write"],
    );
    // A lag this long keeps the stalled replica in use: only the positions decide.
    let settings = [("SIGNALS_REPLICA_MAX_LAG_MS", "60000")];
    let a = pair.service("a", &settings).await;
    replica_serving(&a).await;
    let replica_sql = on_replica(&pair.replica).await;
    replica_sql
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    let res = client()
        .post(format!("{a}/v1/signals"))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&signal(json!({ "slug": "before-b" })))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    // B starts after the write, its cache on: the write was made before its listener could
    // see it, yet no read of B may come from (or be cached from) the stalled replica.
    let b = pair.service("b", &settings).await;
    replica_serving(&b).await;
    for _ in 0..3 {
        let res = client()
            .get(format!("{b}/v1/signals/before-b"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            200,
            "B read the signal written before it started"
        );
        let mut res = client()
            .get(format!("{b}/v1/signals"))
            .send()
            .await
            .unwrap();
        let page = json_body(&mut res).await;
        assert_eq!(page["items"][0]["slug"], "before-b", "{page}");
    }
    replica_sql
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
}

#[actix_web::test]
async fn stopping_the_replica_under_load_costs_clients_nothing_and_a_promoted_one_takes_over() {
    let mut pair = pair().await;
    let key = cli(
        &pair.primary.url(),
        &["keys", "create", "--name", "r", "--scope", "write"],
    );
    let base = pair
        .service(
            "a",
            &[
                ("SIGNALS_CACHE_MB", "0"),
                ("SIGNALS_STATEMENT_TIMEOUT_MS", "2000"),
            ],
        )
        .await;
    replica_serving(&base).await;
    let res = client()
        .post(format!("{base}/v1/signals"))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&signal(json!({"slug": "kept"})))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let answers: Rc<RefCell<Vec<u16>>> = Rc::default();
    let stop = Rc::new(RefCell::new(false));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (answers, stop, base) = (answers.clone(), stop.clone(), base.clone());
        tasks.push(actix_web::rt::spawn(async move {
            let client = client();
            while !*stop.borrow() {
                let path = match i % 2 {
                    0 => "/v1/signals?limit=5",
                    _ => "/v1/signals/kept",
                };
                let res = client.get(format!("{base}{path}")).send().await.unwrap();
                answers.borrow_mut().push(res.status().as_u16());
                actix_web::rt::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    actix_web::rt::time::sleep(Duration::from_millis(700)).await;
    pair.replica.pause().unwrap();
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    *stop.borrow_mut() = true;
    for task in tasks {
        task.await.unwrap();
    }
    let answers = answers.borrow().clone();
    assert!(answers.len() > 50);
    assert!(
        answers.iter().all(|s| *s == 200),
        "every read answered while the replica stopped: {:?}",
        answers.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    let mut res = client().get(format!("{base}/readyz")).send().await.unwrap();
    let ready = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    assert!(ready.contains("not answering"), "{ready}");

    // Failover: the primary stops, the replica is promoted, the service is started on it.
    pair.replica.resume().unwrap();
    pair.primary.pause().unwrap();
    pair.replica.promote().unwrap();
    for mut service in pair.services.drain(..) {
        let _ = service.kill();
        let _ = service.wait();
    }
    let (child, base) = serve(
        &pair.replica.url(),
        &pair.dir.join("after-failover.log"),
        &[("SIGNALS_WEBHOOK_KEY", crate::helpers::TEST_WEBHOOK_KEY)],
    )
    .await;
    pair.services.push(child);
    let mut res = client()
        .get(format!("{base}/v1/signals/kept"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "nothing written before the failover is lost"
    );
    assert_eq!(json_body(&mut res).await["slug"], "kept");
    let res = client()
        .post(format!("{base}/v1/signals"))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&signal(json!({"slug": "after"})))
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "the promoted replica takes writes");
}

/// A round-robin of the test's own: each connection goes to the next backend in turn.
async fn round_robin(backends: Vec<String>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    actix_web::rt::spawn(async move {
        let mut next = 0;
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let backend = backends[next % backends.len()]
                .trim_start_matches("http://")
                .to_owned();
            next += 1;
            actix_web::rt::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    format!("http://{address}")
}

/// A request on a connection of its own (so the round-robin alternates), sending back the
/// position of the client's last write when there is one.
async fn fresh(
    method: &str,
    url: String,
    key: &str,
    body: Option<&Value>,
    read_after: Option<&str>,
) -> (u16, Value, awc::http::header::HeaderMap) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(15))
        .finish();
    let mut req = client
        .request(method.parse().unwrap(), url)
        .insert_header(("Connection", "close"))
        .insert_header(("Authorization", format!("Bearer {key}")));
    if let Some(token) = read_after {
        req = req.insert_header(("Signals-Read-After", token));
    }
    let mut res = match body {
        Some(body) => req.send_json(body).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let headers = res.headers().clone();
    let bytes = res.body().limit(1 << 22).await.unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (res.status().as_u16(), value, headers)
}

#[actix_web::test]
async fn two_instances_behind_a_round_robin_behave_as_one_service() {
    let mut pair = pair().await;
    let key = cli(
        &pair.primary.url(),
        &["keys", "create", "--name", "r", "--scope", "write"],
    );
    let limits = [
        ("SIGNALS_RATE_LIMIT_WRITE", "30/3600s:2"),
        ("SIGNALS_CACHE_MB", "0"),
    ];
    let a = pair.service("a", &limits).await;
    let b = pair.service("b", &limits).await;
    let front = round_robin(vec![a, b]).await;
    // One idempotency record: the retry through the other instance is a replay.
    let items: Vec<Value> = (0..25)
        .map(|i| signal(json!({ "slug": format!("rr-{i}") })))
        .collect();
    let batch = json!({ "items": items });
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(15))
        .finish();
    let mut first = None;
    let mut token = String::new();
    for _ in 0..2 {
        let mut res = client
            .post(format!("{front}/v1/signals/batch"))
            .insert_header(("Connection", "close"))
            .insert_header(("Authorization", format!("Bearer {key}")))
            .insert_header(("Idempotency-Key", "rr-batch"))
            .send_json(&batch)
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        if let Some(t) = res.headers().get("signals-read-after") {
            token = t.to_str().unwrap().to_owned();
        }
        let replayed = res.headers().get("idempotent-replayed").is_some();
        let body = json_body(&mut res).await;
        match &first {
            None => first = Some(body),
            Some(f) => {
                assert!(replayed, "the other instance replays the first answer");
                assert_eq!(&body, f);
            }
        }
    }
    // One cursor key: a walk that alternates instances sees every signal once (each page names
    // the batch's write, so a replica that trails a little does not answer it).
    let mut seen = Vec::new();
    let mut path = "/v1/signals?limit=4".to_owned();
    loop {
        let (status, page, _) =
            fresh("GET", format!("{front}{path}"), &key, None, Some(&token)).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["slug"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/signals?limit=4&cursor={cursor}"),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (25, 25), "{seen:?}");
    // One limit: 30 writes an hour for this key, counted together (at most one burst of 2 over
    // per instance).
    let mut admitted = 1; // the batch above
    for i in 0..40 {
        let (status, _, _) = fresh(
            "POST",
            format!("{front}/v1/signals"),
            &key,
            Some(&signal(json!({ "slug": format!("limited-{i}") }))),
            None,
        )
        .await;
        match status {
            201 => admitted += 1,
            429 => {}
            other => panic!("status {other}"),
        }
    }
    // Never more than the quota and one burst per instance; never far below the quota.
    assert!(
        (26..=34).contains(&admitted),
        "{admitted} writes admitted by two instances sharing a limit of 30"
    );
    // One log: a stream on either instance resumes from the same positions.
    let mut res = client
        .get(format!("{front}/v1/signals/stream"))
        .insert_header(("Last-Event-ID", "0"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while text.matches("event: signal.created").count() < 25 && Instant::now() < deadline {
        use futures_util::StreamExt;
        if let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(Duration::from_millis(500), res.next()).await
        {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(text.matches("event: signal.created").count() >= 25);
}

/// PgBouncer's program: installed, or installed now from Debian's packages when this process
/// may (as root, as CI runs); `None` when neither works.
fn pgbouncer() -> Option<PathBuf> {
    let found = || {
        ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    };
    if let Some(program) = found() {
        return Some(program);
    }
    let install = || {
        std::process::Command::new("apt-get")
            .args(["install", "-y", "-q", "pgbouncer"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = std::process::Command::new("apt-get")
            .args(["update", "-q"])
            .stdout(std::process::Stdio::null())
            .status();
        install();
    }
    found()
}

/// `id`'s answer as a number: `id_of(&["-u"])` is this process's user.
fn id_of(args: &[&str]) -> Option<u32> {
    let out = std::process::Command::new("id").args(args).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[actix_web::test]
async fn through_pgbouncer_in_session_mode_the_service_works_as_on_a_direct_connection() {
    let Some(program) = pgbouncer() else {
        eprintln!("SKIPPED: no PgBouncer here and none can be installed (apt-get, as root)");
        return;
    };
    let dir = std::env::temp_dir().join(format!(
        "signals-pgbouncer-{}",
        uuid::Uuid::now_v7().simple()
    ));
    let mut database = Cluster::start(&dir.join("pg"), None)
        .await
        .expect("a PostgreSQL of the test's own");
    cli(&database.url(), &["migrate"]);
    // The server's address and password, from the cluster's URL.
    let url = url::Url::parse(&database.url()).unwrap();
    let (port, password) = (url.port().unwrap(), url.password().unwrap().to_owned());

    // Debian's PgBouncer (1.18) in session mode, as docs/deploying.md sets it up; it refuses to
    // run as root, so it runs as the postgres user, with its files readable by it.
    let conf = dir.join("pgbouncer");
    std::fs::create_dir_all(&conf).unwrap();
    let listen = crate::embedded::free_port();
    std::fs::write(conf.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
    std::fs::write(
        conf.join("pgbouncer.ini"),
        format!(
            "[databases]\n\
             signals = host=127.0.0.1 port={port} dbname=signals user=postgres password={password}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {listen}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             admin_users = postgres\n\
             pool_mode = session\n\
             max_client_conn = 200\n\
             default_pool_size = 40\n\
             ignore_startup_parameters = options,extra_float_digits\n",
            users = conf.join("users.txt").display(),
        ),
    )
    .unwrap();
    let _ = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&dir)
        .status();
    let log = std::fs::File::create(dir.join("pgbouncer.log")).unwrap();
    let mut command = std::process::Command::new(&program);
    if id_of(&["-u"]) == Some(0) {
        use std::os::unix::process::CommandExt;
        command
            .uid(id_of(&["-u", "postgres"]).expect("a postgres user"))
            .gid(id_of(&["-g", "postgres"]).expect("a postgres group"));
    }
    let mut bouncer = command
        .arg(conf.join("pgbouncer.ini"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pooled = format!("postgres://postgres@127.0.0.1:{listen}/signals");
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", listen))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "PgBouncer did not listen: {}",
            std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }

    // Everything through the pool: the CLI, writes, lists (their `options` dropped by PgBouncer),
    // lookups, and the stream, whose LISTEN holds a server connection of its own.
    let key = cli(
        &pooled,
        &["keys", "create", "--name", "b", "--scope", "write"],
    );
    let (mut service, base) = serve(
        &pooled,
        &dir.join("service.log"),
        &[
            ("SIGNALS_CACHE_MB", "0"),
            ("SIGNALS_WEBHOOK_KEY", crate::helpers::TEST_WEBHOOK_KEY),
        ],
    )
    .await;
    let mut stream = client()
        .get(format!("{base}/v1/signals/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let (status, created, _) = fresh(
        "POST",
        format!("{base}/v1/signals"),
        &key,
        Some(&signal(json!({ "slug": "through-the-pool" }))),
        None,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (status, page, _) = fresh(
        "GET",
        format!("{base}/v1/signals?min_score=0"),
        &key,
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["slug"], "through-the-pool");
    let (status, one, _) = fresh(
        "GET",
        format!("{base}/v1/signals/through-the-pool"),
        &key,
        None,
        None,
    )
    .await;
    assert_eq!((status, &one["id"]), (200, &created["id"]));
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !text.contains("through-the-pool") && Instant::now() < deadline {
        use futures_util::StreamExt;
        if let Ok(Some(Ok(chunk))) =
            tokio::time::timeout(Duration::from_millis(500), stream.next()).await
        {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(
        text.contains("event: signal.created") && text.contains("through-the-pool"),
        "the stream, listening through the pool, tells of the write: {text}"
    );

    // The service's connections really are PgBouncer's clients (its admin console).
    let (admin, conn) = tokio_postgres::connect(
        &format!("postgres://postgres@127.0.0.1:{listen}/pgbouncer"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    actix_web::rt::spawn(conn);
    let clients = admin
        .simple_query("SHOW CLIENTS")
        .await
        .unwrap()
        .into_iter()
        .filter(|m| {
            matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get("database") == Some("signals"))
        })
        .count();
    assert!(
        clients >= 2,
        "{clients} service connections through PgBouncer"
    );

    let _ = service.kill();
    let _ = service.wait();
    let _ = bouncer.kill();
    let _ = bouncer.wait();
    database.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
