//! The embedded default database: a PostgreSQL cluster of the service's own in a data folder,
//! made with the server programs installed on the machine, used when `DATABASE_URL` is unset.
//!
//! PostgreSQL refuses to run as root, so when the service runs as root the server programs run
//! as the `postgres` system user and the data folder belongs to that user.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Fatal;

const DATABASE: &str = "signals";
const SUPERUSER: &str = "postgres";
const PASSWORD_FILE: &str = "signals.password";

/// A running embedded cluster, shared by every `signals` process on its data folder: the last
/// of them to be done with it stops the server (on drop).
///
/// Two lock files beside the data folder, locked with `flock` (the kernel releases a dead
/// process's locks, however it died): every process using the cluster holds `<data>.users`
/// shared for as long as it does, and starting or stopping the server is decided under
/// `<data>.owner` held exclusively, one process at a time. A process done with the cluster
/// stops it only when it can lock `users` exclusively: no other process uses it.
pub struct Cluster {
    data_dir: PathBuf,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
    port: u16,
    password: String,
    /// This process's shared lock of `<data>.users`; `None` once it is done with the cluster.
    user: Option<fs::File>,
}

/// Without the password.
impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("data_dir", &self.data_dir)
            .field("port", &self.port)
            .field("in_use", &self.user.is_some())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Creates the cluster on first use, then starts it unless it is already running (another
    /// `signals` process may be using it, or a killed one left it running), and makes sure the
    /// service's database exists.
    pub async fn start(data_dir: &Path, pg_bin: Option<&Path>) -> Result<Cluster, Fatal> {
        let data_dir = absolute(data_dir)?;
        let bin = find_server_programs(pg_bin, made_by(&data_dir).as_deref())?;
        let run_as = unprivileged_user()?;
        if let Some(parent) = data_dir.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| Fatal(format!("cannot create {}: {e}", parent.display())))?;
        }
        // One process at a time from here until the server runs: two first starts do not both
        // run initdb, and a start does not meet a stop half-way.
        let gate = lock(&data_dir.with_extension("owner"), libc::LOCK_EX)?;
        if !data_dir.join("PG_VERSION").exists() {
            init(&bin, &data_dir, run_as)?;
        }
        let password = fs::read_to_string(data_dir.join(PASSWORD_FILE))
            .map_err(|e| {
                Fatal(format!(
                    "cannot read {}: {e}",
                    data_dir.join(PASSWORD_FILE).display()
                ))
            })?
            .trim()
            .to_owned();
        let user = lock(&data_dir.with_extension("users"), libc::LOCK_SH)?;
        let mut cluster = Cluster {
            data_dir,
            bin,
            run_as,
            port: 0,
            password,
            user: Some(user),
        };
        match cluster.running_port() {
            // Another signals process uses it, or a killed one left it running: used, and
            // stopped by whichever process is the last to be done with it.
            Some(port) => {
                tracing::info!(port, "using the embedded PostgreSQL that is running");
                cluster.port = port;
            }
            None => {
                if let Err(e) = cluster.launch() {
                    // Not running, so nothing to stop: let go of the cluster here, as its
                    // drop would wait for the gate this start still holds.
                    cluster.user = None;
                    return Err(e);
                }
            }
        }
        drop(gate);
        cluster.ensure_database().await?;
        Ok(cluster)
    }

    /// The URL of the service's database in this cluster.
    pub fn url(&self) -> String {
        self.url_of(DATABASE)
    }

    pub fn url_of(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// Done with the cluster: stops the server when no other `signals` process uses it.
    pub fn stop(&mut self) {
        use std::os::fd::AsRawFd;
        let Some(user) = self.user.take() else {
            return;
        };
        let gate = match lock(&self.data_dir.with_extension("owner"), libc::LOCK_EX) {
            Ok(gate) => gate,
            Err(e) => {
                tracing::warn!(error = %e.0, "leaving the embedded PostgreSQL running");
                return;
            }
        };
        // SAFETY: flock on a file descriptor this process owns.
        let last = unsafe { libc::flock(user.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !last {
            tracing::info!(
                "leaving the embedded PostgreSQL running: another signals process uses it"
            );
            return;
        }
        tracing::info!(data_dir = %self.data_dir.display(), "stopping the embedded PostgreSQL");
        let status = self
            .command("pg_ctl")
            .args(["stop", "-w", "-m", "fast", "-D"])
            .arg(&self.data_dir)
            .stdout(Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            tracing::warn!("pg_ctl stop did not succeed: {status:?}");
        }
        drop(gate);
    }

    /// Stops the server for a while (fault tests stop a cluster of their own); [`resume`]
    /// starts it again on the same port.
    ///
    /// [`resume`]: Cluster::resume
    pub fn pause(&mut self) -> Result<(), Fatal> {
        let status = self
            .command("pg_ctl")
            .args(["stop", "-w", "-m", "fast", "-D"])
            .arg(&self.data_dir)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| Fatal(format!("cannot run pg_ctl: {e}")))?;
        match status.success() {
            true => Ok(()),
            false => Err(Fatal(format!("pg_ctl stop failed: {status}"))),
        }
    }

    /// A streaming replica of this cluster in `data_dir` (a base backup with the standby
    /// settings, `pg_basebackup -R`), started on a free port: for the replica tests, and the way
    /// to make one by hand (see docs/deploying.md).
    pub async fn replica(&self, data_dir: &Path) -> Result<Cluster, Fatal> {
        let data_dir = absolute(data_dir)?;
        make_private_dir(&data_dir, self.run_as)?;
        // Beside initdb, or beside what a link named initdb points to (a PATH folder may hold
        // links to initdb and pg_ctl alone).
        let program = [self.bin.clone()]
            .into_iter()
            .chain(
                fs::canonicalize(self.bin.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf)),
            )
            .map(|dir| dir.join("pg_basebackup"))
            .find(|p| p.is_file())
            .ok_or_else(|| Fatal("no pg_basebackup beside initdb".into()))?;
        let output = server_program(&program, self.run_as)
            .arg("-D")
            .arg(&data_dir)
            .args([
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "-h",
                "127.0.0.1",
                "-U",
                SUPERUSER,
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .env("PGPASSWORD", &self.password)
            .output()
            .map_err(|e| Fatal(format!("cannot run pg_basebackup: {e}")))?;
        if !output.status.success() {
            return Err(Fatal(format!(
                "pg_basebackup failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Cluster::start(&data_dir, Some(&self.bin)).await
    }

    /// Makes a standby a primary (`pg_ctl promote`): the last step of a failover.
    pub fn promote(&self) -> Result<(), Fatal> {
        let status = self
            .command("pg_ctl")
            .args(["promote", "-w", "-D"])
            .arg(&self.data_dir)
            .stdout(Stdio::null())
            .status()
            .map_err(|e| Fatal(format!("cannot run pg_ctl: {e}")))?;
        match status.success() {
            true => Ok(()),
            false => Err(Fatal(format!("pg_ctl promote failed: {status}"))),
        }
    }

    /// Starts a paused server again, on the port it had.
    pub fn resume(&mut self) -> Result<(), Fatal> {
        let port = self.port;
        self.launch_on(port)
    }

    /// The port of a server already running on this data folder, if there is one.
    fn running_port(&self) -> Option<u16> {
        let status = self
            .command("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(&self.data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
        // postmaster.pid: pid, data dir, start time, port, ...
        let pid_file = fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    fn launch(&mut self) -> Result<(), Fatal> {
        let port = free_port()?;
        self.launch_on(port)
    }

    fn launch_on(&mut self, port: u16) -> Result<(), Fatal> {
        tracing::info!(data_dir = %self.data_dir.display(), port, "starting the embedded PostgreSQL");
        let output = self
            .command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.data_dir.join("server.log"))
            .arg("-o")
            .arg(format!("-p {port}"))
            .stdout(Stdio::null())
            .output()
            .map_err(|e| Fatal(format!("cannot run pg_ctl: {e}")))?;
        if output.status.success() {
            self.port = port;
            return Ok(());
        }
        Err(Fatal(format!(
            "the embedded PostgreSQL in {} did not start: {}; see {}",
            self.data_dir.display(),
            String::from_utf8_lossy(&output.stderr).trim(),
            self.data_dir.join("server.log").display()
        )))
    }

    async fn ensure_database(&self) -> Result<(), Fatal> {
        let (client, connection) =
            tokio_postgres::connect(&self.url_of("postgres"), tokio_postgres::NoTls)
                .await
                .map_err(|e| Fatal(format!("cannot connect to the embedded PostgreSQL: {e}")))?;
        let driver = tokio::spawn(connection);
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DATABASE])
            .await
            .map_err(|e| Fatal(format!("embedded PostgreSQL: {e}")))?
            .is_some();
        if !exists {
            if let Err(e) = client
                .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
                .await
            {
                // A concurrent first start may have created it in between (PostgreSQL says so
                // with 42P04, or with 23505 when both ran CREATE DATABASE at once).
                let raced = [
                    &tokio_postgres::error::SqlState::DUPLICATE_DATABASE,
                    &tokio_postgres::error::SqlState::UNIQUE_VIOLATION,
                ];
                if !e.code().is_some_and(|code| raced.contains(&code)) {
                    return Err(Fatal(format!("cannot create the database: {e}")));
                }
            }
        }
        drop(client);
        let _ = driver.await;
        Ok(())
    }

    fn command(&self, program: &str) -> Command {
        server_program(&self.bin.join(program), self.run_as)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `path` (made when missing) locked with `flock` as `how` (`LOCK_SH` or `LOCK_EX`), waiting
/// for it; held until the file is dropped.
fn lock(path: &Path, how: i32) -> Result<fs::File, Fatal> {
    use std::os::fd::AsRawFd;
    let open = |write: bool| {
        fs::OpenOptions::new()
            .read(true)
            .write(write)
            .create(write)
            .truncate(false)
            .open(path)
    };
    // Read-only when it exists but is another user's (made by a run as root): flock needs no
    // more.
    let file = open(true)
        .or_else(|_| open(false))
        .map_err(|e| Fatal(format!("cannot open {}: {e}", path.display())))?;
    loop {
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), how) } == 0 {
            return Ok(file);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(Fatal(format!("cannot lock {}: {e}", path.display())));
        }
    }
}

/// One of PostgreSQL's programs, run as `run_as` and in a process group of its own: Ctrl-C in
/// a terminal signals the whole foreground group, and would kill `pg_ctl` half-way through a
/// start (the server it launched going on alone) or `initdb` half-way through; the service
/// hears the signal and stops the cluster itself.
fn server_program(program: &Path, run_as: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
    }
    // The unprivileged user may not be able to enter the caller's working directory.
    cmd.current_dir("/").process_group(0);
    cmd
}

/// Runs initdb into a scratch folder beside the data folder and renames it into place, so an
/// interrupted first run never leaves a half-made cluster behind.
fn init(bin: &Path, data_dir: &Path, run_as: Option<(u32, u32)>) -> Result<(), Fatal> {
    let parent = data_dir
        .parent()
        .ok_or_else(|| Fatal(format!("{} has no parent folder", data_dir.display())))?;
    fs::create_dir_all(parent)
        .map_err(|e| Fatal(format!("cannot create {}: {e}", parent.display())))?;
    let scratch = parent.join(format!(
        ".{}.init-{}",
        data_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("pg"),
        std::process::id()
    ));
    let password = random_hex(24);
    let pwfile = scratch.with_extension("pw");
    write_private_file(&pwfile, &password, run_as)?;

    tracing::info!(data_dir = %data_dir.display(), "creating the embedded PostgreSQL cluster");
    // C.UTF-8 sorts like C but lower() knows all of Unicode (filters match case-insensitively);
    // plain C is the fallback where that locale is missing.
    let mut outcome = Err(Fatal("initdb did not run".into()));
    for locale in ["C.UTF-8", "C"] {
        let _ = fs::remove_dir_all(&scratch);
        make_private_dir(&scratch, run_as)?;
        let output = server_program(&bin.join("initdb"), run_as)
            .arg("-D")
            .arg(&scratch)
            .args(["-U", SUPERUSER, "-A", "scram-sha-256", "-E", "UTF8"])
            .arg(format!("--locale={locale}"))
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .map_err(|e| Fatal(format!("cannot run initdb: {e}")));
        outcome = match output {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => {
                let stderr = String::from_utf8_lossy(&o.stderr);
                // Run as the postgres user (the service was started as root), initdb must be
                // able to reach the folder: a home folder such as /root usually is closed to it.
                let hint = match run_as.is_some() && stderr.contains("Permission denied") {
                    true => format!(
                        " (initdb runs as the postgres user, which must be able to enter {} \
                         and every folder above it: set SIGNALS_DATA_DIR to a lasting folder \
                         it can reach, such as /var/lib/signals)",
                        parent.display()
                    ),
                    false => String::new(),
                };
                Err(Fatal(format!(
                    "initdb failed for {}: {}{hint}",
                    data_dir.display(),
                    stderr.trim()
                )))
            }
            Err(e) => Err(e),
        };
        if outcome.is_ok() {
            break;
        }
    }
    let _ = fs::remove_file(&pwfile);
    if let Err(e) = outcome {
        let _ = fs::remove_dir_all(&scratch);
        return Err(e);
    }
    // Only TCP on the loopback address; no socket file to place or clean up.
    let mut conf = fs::OpenOptions::new()
        .append(true)
        .open(scratch.join("postgresql.conf"))
        .map_err(|e| Fatal(format!("cannot configure the cluster: {e}")))?;
    writeln!(
        conf,
        "\n# added by signals\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
    )
    .map_err(|e| Fatal(format!("cannot configure the cluster: {e}")))?;
    write_private_file(&scratch.join(PASSWORD_FILE), &password, run_as)?;
    fs::rename(&scratch, data_dir).map_err(|e| {
        Fatal(format!(
            "cannot move the new cluster to {}: {e}",
            data_dir.display()
        ))
    })
}

/// The folder holding initdb and pg_ctl: the configured one, else PATH, else the newest
/// `/usr/lib/postgresql/*/bin`. For a data folder made earlier (`made_by`, the major version in
/// its `PG_VERSION`), the first of them whose programs are of that version: a server of another
/// major version cannot start it, so a machine that gained a newer PostgreSQL beside the one
/// that made the folder keeps using that one, and one that has only another says so.
pub fn find_server_programs(
    configured: Option<&Path>,
    made_by: Option<&str>,
) -> Result<PathBuf, Fatal> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = configured {
        if !has_both(dir) {
            return Err(missing_programs(&format!(
                "SIGNALS_PG_BIN={} has no initdb and pg_ctl",
                dir.display()
            )));
        }
        return match made_by.map(|made| (made, major_version(dir))) {
            Some((made, Some(found))) if made != found => Err(other_version(made, &found, dir)),
            _ => Ok(dir.to_owned()),
        };
    }
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).filter(|d| has_both(d)).collect())
        .unwrap_or_default();
    let mut installed: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    installed.sort();
    let none_found =
        || missing_programs("no initdb and pg_ctl on PATH or under /usr/lib/postgresql/*/bin");
    let Some(made) = made_by else {
        return on_path
            .into_iter()
            .next()
            .or_else(|| installed.pop().map(|(_, bin)| bin))
            .ok_or_else(none_found);
    };
    let (mut other, mut unknown) = (None, None);
    for dir in on_path
        .into_iter()
        .chain(installed.into_iter().rev().map(|(_, bin)| bin))
    {
        match major_version(&dir) {
            Some(version) if version == made => return Ok(dir),
            Some(version) => other = other.or(Some((version, dir))),
            // Programs that do not tell their version are tried as before.
            None => unknown = unknown.or(Some(dir)),
        }
    }
    match (unknown, other) {
        (Some(dir), _) => Ok(dir),
        (None, Some((version, dir))) => Err(other_version(made, &version, &dir)),
        (None, None) => Err(none_found()),
    }
}

/// The major version of PostgreSQL that made a data folder (its `PG_VERSION`: `15`, or `9.6`
/// before version 10), if it was made.
fn made_by(data_dir: &Path) -> Option<String> {
    let version = fs::read_to_string(data_dir.join("PG_VERSION")).ok()?;
    Some(version.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The major version of the server programs in `bin`, as `PG_VERSION` writes it, from
/// `pg_ctl --version` (`pg_ctl (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)`).
fn major_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin.join("pg_ctl"))
        .arg("--version")
        .current_dir("/")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    major_of(
        text.split("(PostgreSQL)")
            .nth(1)?
            .split_whitespace()
            .next()?,
    )
}

/// `15.19` → `15`, `17beta1` → `17`, `9.6.24` → `9.6` (before version 10 the major version
/// had two parts).
fn major_of(full: &str) -> Option<String> {
    let number = |part: Option<&str>| -> Option<u32> {
        let part = part?;
        let digits = part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len());
        part[..digits].parse().ok()
    };
    let mut parts = full.split('.');
    match number(parts.next())? {
        first @ 10.. => Some(first.to_string()),
        first => Some(format!("{first}.{}", number(parts.next())?)),
    }
}

fn other_version(made: &str, found: &str, dir: &Path) -> Fatal {
    Fatal(format!(
        "the embedded database was made by PostgreSQL {made}, but the server programs found are \
         PostgreSQL {found} ({}), which cannot start it. Install PostgreSQL {made}'s server \
         programs (Debian/Ubuntu: `apt-get install postgresql-{made}`) or point SIGNALS_PG_BIN at \
         them; or upgrade the data folder with pg_upgrade; or set SIGNALS_DATA_DIR to a new folder \
         to start afresh.",
        dir.display()
    ))
}

fn missing_programs(what: &str) -> Fatal {
    Fatal(format!(
        "DATABASE_URL is not set, so signals runs its own PostgreSQL, but the PostgreSQL server \
         programs were not found ({what}). Install them (Debian/Ubuntu: `apt-get install postgresql`), \
         point SIGNALS_PG_BIN at the folder holding initdb and pg_ctl, or set DATABASE_URL to an \
         existing PostgreSQL database."
    ))
}

/// The (uid, gid) to run the server programs as: none unless this process is root.
fn unprivileged_user() -> Result<Option<(u32, u32)>, Fatal> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() > 3 && f[0] == SUPERUSER).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
        .map(Some)
        .ok_or_else(|| {
            Fatal(
                "signals runs as root and PostgreSQL refuses to, but there is no `postgres` user to \
                 run it as: create one (installing PostgreSQL does), run signals as another user, \
                 or set DATABASE_URL"
                    .into(),
            )
        })
}

fn make_private_dir(dir: &Path, run_as: Option<(u32, u32)>) -> Result<(), Fatal> {
    let fail = |e: std::io::Error| Fatal(format!("cannot prepare {}: {e}", dir.display()));
    fs::create_dir_all(dir).map_err(fail)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(fail)?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(fail)?;
    }
    Ok(())
}

fn write_private_file(
    path: &Path,
    contents: &str,
    run_as: Option<(u32, u32)>,
) -> Result<(), Fatal> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |e: std::io::Error| Fatal(format!("cannot write {}: {e}", path.display()));
    // Private from the moment it exists (a file left from before is made private first).
    if path.exists() {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(fail)?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(fail)?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(fail)?;
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, Fatal> {
    std::path::absolute(path).map_err(|e| Fatal(format!("bad data folder {}: {e}", path.display())))
}

fn free_port() -> Result<u16, Fatal> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Fatal(format!("cannot find a free port for PostgreSQL: {e}")))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions_as_pg_version_writes_them() {
        assert_eq!(major_of("15.19").as_deref(), Some("15"));
        assert_eq!(major_of("17beta1").as_deref(), Some("17"));
        assert_eq!(major_of("16").as_deref(), Some("16"));
        assert_eq!(major_of("9.6.24").as_deref(), Some("9.6"));
        assert_eq!(major_of("9").as_deref(), None);
        assert_eq!(major_of("x").as_deref(), None);
    }
}
