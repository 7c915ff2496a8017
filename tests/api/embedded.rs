//! The embedded default: with DATABASE_URL unset, `signals serve` runs its own PostgreSQL.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::BIN;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn command(data_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("DATABASE_URL")
        .env("SIGNALS_DATA_DIR", data_dir)
        .env_remove("RUST_LOG");
    cmd
}

fn start(data_dir: &Path, port: u16) -> Child {
    // Every log line the service writes, at the most talkative level, for the secrets check.
    std::fs::create_dir_all(data_dir.parent().unwrap()).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.with_extension("log"))
        .unwrap();
    command(data_dir)
        .env("SIGNALS_BIND", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "trace")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// A new write key, made by `signals keys create` on the embedded cluster of `data_dir`.
fn write_key(data_dir: &Path, name: &str) -> String {
    let out = command(data_dir)
        .args(["keys", "create", "--name", name, "--scope", "write"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub async fn wait_ready(client: &awc::Client, base: &str, child: &mut Child) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(90) {
        if let Ok(res) = client.get(format!("{base}/readyz")).send().await {
            if res.status() == 200 {
                return;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "signals serve exited early"
        );
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("signals serve did not become ready");
}

pub fn terminate(child: &mut Child) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

/// `signals migrate` with `cmd`'s settings: whether it succeeded, and what it wrote to stderr.
fn migrate(cmd: &mut Command) -> (bool, String) {
    let out = cmd.arg("migrate").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.success(), stderr)
}

struct TempDir(PathBuf);

impl TempDir {
    /// A folder of its own under the system's temporary folder (so the unprivileged postgres
    /// user can reach it when tests run as root), removed when dropped.
    fn new(prefix: &str) -> TempDir {
        TempDir(std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::now_v7().simple())))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[actix_web::test]
async fn serve_without_database_url_runs_stops_and_restarts_its_own_postgres() {
    let dir = TempDir::new("signals-embedded");
    let data_dir = dir.0.join("pg");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();

    let mut serve = start(&data_dir, port);
    wait_ready(&client, &base, &mut serve).await;
    assert!(
        data_dir.join("PG_VERSION").exists(),
        "the cluster was created in the data folder"
    );

    // The CLI reaches the same database while the service runs.
    let key = write_key(&data_dir, "embedded");
    let wrong = format!("{}x", &key[..key.len() - 1]);
    let res = client
        .get(format!("{base}/v1/signals"))
        .insert_header(("Authorization", format!("Bearer {wrong}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let mut res = client
        .post(format!("{base}/v1/signals"))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&crate::helpers::signal(
            serde_json::json!({"slug": "kept-across-restarts"}),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{:?}", res.body().await);

    terminate(&mut serve);
    assert!(
        !data_dir.join("postmaster.pid").exists(),
        "PostgreSQL stopped with the service"
    );

    // A second start reuses the data.
    let mut serve = start(&data_dir, port);
    wait_ready(&client, &base, &mut serve).await;
    let mut res = client
        .get(format!("{base}/v1/signals/kept-across-restarts"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
    assert_eq!(body["slug"], "kept-across-restarts");
    terminate(&mut serve);
    assert!(!data_dir.join("postmaster.pid").exists());

    // The password file was private from the start, and no secret reached a log line.
    use std::os::unix::fs::PermissionsExt;
    let password_file = data_dir.join("signals.password");
    let mode = std::fs::metadata(&password_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let password = std::fs::read_to_string(&password_file).unwrap();
    let log = std::fs::read_to_string(data_dir.with_extension("log")).unwrap();
    assert!(log.lines().count() > 10, "the service logged");
    for (what, value) in [
        ("password", password.trim()),
        ("key secret", crate::faults::key_secret(&key)),
        ("wrong key", crate::faults::key_secret(&wrong)),
    ] {
        assert!(!log.contains(value), "the {what} is in the log");
    }
}

#[test]
fn without_server_programs_one_clear_message_and_a_failing_exit() {
    let dir = std::env::temp_dir().join("signals-no-programs");
    let (migrated, stderr) =
        migrate(command(&dir.join("pg")).env("SIGNALS_PG_BIN", "/nonexistent/bin"));
    assert!(!migrated);
    assert!(
        stderr.contains("PostgreSQL server programs were not found"),
        "{stderr}"
    );
    assert!(
        stderr.contains("apt-get install postgresql") && stderr.contains("DATABASE_URL"),
        "{stderr}"
    );
    assert!(!dir.join("pg").exists(), "nothing was created");
}

#[actix_web::test]
async fn after_a_sigkill_the_next_start_adopts_the_orphaned_postgres_and_stops_it_at_the_end() {
    let dir = TempDir::new("signals-orphan");
    let data_dir = dir.0.join("pg");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let mut serve = start(&data_dir, port);
    wait_ready(&client, &base, &mut serve).await;
    let key = write_key(&data_dir, "orphan");
    let res = client
        .post(format!("{base}/v1/signals"))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&crate::helpers::signal(
            serde_json::json!({"slug": "survives-a-kill"}),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(serve.id() as i32, libc::SIGKILL) };
    serve.wait().unwrap();
    assert!(
        data_dir.join("postmaster.pid").exists(),
        "the killed service could not stop its PostgreSQL"
    );

    // A new start finds it running, with no live owner: it adopts it, no manual step.
    let mut serve = start(&data_dir, port);
    wait_ready(&client, &base, &mut serve).await;
    let res = client
        .get(format!("{base}/v1/signals/survives-a-kill"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "no data lost");
    terminate(&mut serve);
    assert!(
        !data_dir.join("postmaster.pid").exists(),
        "the adopted PostgreSQL is stopped with the service that adopted it"
    );
}

/// Several `signals` processes on one data folder (`signals import` beside `signals serve`):
/// the first to finish leaves the server to the others; the last one stops it.
#[actix_web::test]
async fn the_last_process_done_with_the_embedded_postgres_stops_it() {
    use signals::db::embedded::Cluster;
    let dir = TempDir::new("signals-shared");
    let data_dir = dir.0.join("pg");
    let mut first = Cluster::start(&data_dir, None).await.expect("a cluster");
    let mut second = Cluster::start(&data_dir, None)
        .await
        .expect("the same cluster, running");
    assert_eq!(first.url(), second.url());
    // The one that started it is done first.
    first.stop();
    let (client, connection) = tokio_postgres::connect(&second.url(), tokio_postgres::NoTls)
        .await
        .expect("still running for the other process");
    actix_web::rt::spawn(connection);
    client.simple_query("SELECT 1").await.unwrap();
    drop(client);
    second.stop();
    assert!(
        !data_dir.join("postmaster.pid").exists(),
        "stopped by the last one done with it"
    );
}

/// A server that will not start gives its message, and leaves the folder's locks free (the
/// start used to wait for ever on its own lock).
#[actix_web::test]
async fn a_cluster_that_cannot_start_is_an_error_not_a_hang() {
    use signals::db::embedded::Cluster;
    let dir = TempDir::new("signals-broken");
    let data_dir = dir.0.join("pg");
    let mut made = Cluster::start(&data_dir, None).await.expect("a cluster");
    made.stop();
    drop(made);
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(data_dir.join("postgresql.conf"))
        .unwrap();
    std::io::Write::write_all(&mut conf, b"\nshared_buffers = 'a great many'\n").unwrap();
    for _ in 0..2 {
        // On a thread of its own: a hang (a blocking lock) fails the test instead of holding it.
        let (sent, answer) = std::sync::mpsc::channel();
        let folder = data_dir.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let started = runtime.block_on(Cluster::start(&folder, None));
            let _ = sent.send(started.map(|_| ()).map_err(|e| e.0));
        });
        let started = answer
            .recv_timeout(Duration::from_secs(90))
            .expect("an answer, not a hang");
        let e = started.expect_err("a server with a broken configuration does not start");
        assert!(e.contains("did not start"), "{e}");
    }
}

/// A cluster made and stopped in `data_dir`, by the server programs the service finds itself.
async fn made_cluster(data_dir: &Path) {
    use signals::db::embedded::Cluster;
    let mut made = Cluster::start(data_dir, None).await.expect("a cluster");
    made.stop();
}

/// A data folder made by a PostgreSQL the machine does not have is named as such, with what to
/// do, and nothing is started.
#[actix_web::test]
async fn a_data_folder_of_another_postgresql_is_refused_with_what_to_do() {
    let dir = TempDir::new("signals-other-version");
    let data_dir = dir.0.join("pg");
    made_cluster(&data_dir).await;
    std::fs::write(data_dir.join("PG_VERSION"), "9.4\n").unwrap();
    let (migrated, stderr) = migrate(&mut command(&data_dir));
    assert!(!migrated);
    assert!(
        stderr.contains("made by PostgreSQL 9.4, but the server programs found are PostgreSQL"),
        "{stderr}"
    );
    assert!(
        stderr.contains("pg_upgrade") && stderr.contains("SIGNALS_PG_BIN"),
        "{stderr}"
    );
    assert!(!data_dir.join("postmaster.pid").exists(), "nothing started");
}

/// Server programs of another major version first on PATH (as after installing a newer
/// PostgreSQL) are passed over for a folder made by the one further on, and still taken for a
/// new folder.
#[actix_web::test]
async fn a_folder_keeps_the_postgresql_that_made_it() {
    let dir = TempDir::new("signals-newer-on-path");
    let newer = dir.0.join("newer");
    std::fs::create_dir_all(&newer).unwrap();
    for program in ["initdb", "pg_ctl"] {
        let path = newer.join(program);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\ncase \"$1\" in --version) echo \"{program} (PostgreSQL) 99.1\";; *) exit 1;; esac\n"
            ),
        )
        .unwrap();
        let mut permissions = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&path, permissions).unwrap();
    }
    let installed = signals::db::embedded::find_server_programs(None, None).unwrap();
    let path = std::env::join_paths(
        [newer.clone(), installed]
            .into_iter()
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let data_dir = dir.0.join("pg");
    made_cluster(&data_dir).await;
    let with_newer_first = |data_dir: &Path| {
        let mut cmd = command(data_dir);
        cmd.env("PATH", &path).env_remove("SIGNALS_PG_BIN");
        migrate(&mut cmd)
    };
    let (migrated, stderr) = with_newer_first(&data_dir);
    assert!(migrated, "{stderr}");
    assert!(!data_dir.join("postmaster.pid").exists(), "stopped again");
    let (migrated, _) = with_newer_first(&dir.0.join("new"));
    assert!(
        !migrated,
        "a new folder is made by the first programs on PATH, here the failing ones"
    );
}

/// The embedded cluster running in `data_dir`, reached as a client only (not as one more
/// `signals` process using it): its port from `postmaster.pid`, its password from the folder.
async fn running_cluster(data_dir: &Path) -> Option<tokio_postgres::Client> {
    let pid = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let port = pid.lines().nth(3)?.trim();
    let password = std::fs::read_to_string(data_dir.join("signals.password")).ok()?;
    let url = format!(
        "postgres://postgres:{}@127.0.0.1:{port}/signals",
        password.trim()
    );
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .ok()?;
    actix_web::rt::spawn(connection);
    Some(client)
}

/// SIGTERM or SIGINT while a command runs (`signals import -`, the signals read so far written)
/// or while it starts stops the command and the embedded PostgreSQL it started, saying so,
/// with a failing exit; what was committed stays.
#[actix_web::test]
async fn a_stopped_command_stops_the_embedded_postgres_it_started() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = TempDir::new("signals-stopped");
    let data_dir = dir.0.join("pg");
    let cases = [
        (libc::SIGTERM, "SIGTERM", true),
        (libc::SIGINT, "SIGINT", true),
        (libc::SIGTERM, "SIGTERM", false),
    ];
    for (round, (signal, name, importing)) in cases.into_iter().enumerate() {
        let mut import = command(&data_dir)
            .args(["import", "--batch-size", "1", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = import.stdin.take().unwrap();
        let slug = format!("before-{round}");
        let line = crate::helpers::signal(serde_json::json!({ "slug": slug }));
        writeln!(stdin, "{line}").unwrap();
        let started = Instant::now();
        loop {
            assert!(started.elapsed() < Duration::from_secs(90), "no start");
            assert!(
                import.try_wait().unwrap().is_none(),
                "the import ended early"
            );
            if !importing && data_dir.join("postmaster.pid").exists() {
                break; // still starting, or migrating: stopped as early as can be seen
            }
            if let Some(sql) = running_cluster(&data_dir).await {
                let written = sql
                    .query_opt("SELECT 1 FROM signals WHERE slug = $1", &[&slug])
                    .await;
                if matches!(written, Ok(Some(_))) {
                    break; // the first line is in; the import waits for more
                }
            }
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(import.id() as i32, signal) };
        let stopped = Instant::now();
        let status = loop {
            if let Some(status) = import.try_wait().unwrap() {
                break status;
            }
            assert!(stopped.elapsed() < Duration::from_secs(60), "not stopped");
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        };
        drop(stdin);
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut import.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("stopped by {name}")), "{stderr}");
        if importing {
            assert!(stderr.contains("--on-conflict skip"), "{stderr}");
        }
        assert!(
            !data_dir.join("postmaster.pid").exists(),
            "round {round}: the embedded PostgreSQL is stopped with the command"
        );
    }
    // What the stopped imports committed is there.
    let mut cluster = signals::db::embedded::Cluster::start(&data_dir, None)
        .await
        .expect("starts again");
    let (sql, connection) = tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    actix_web::rt::spawn(connection);
    let kept: i64 = sql
        .query_one(
            "SELECT count(*) FROM signals WHERE slug IN ('before-0', 'before-1')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 2);
    drop(sql);
    cluster.stop();
}
