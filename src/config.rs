//! Settings, read from flags or the environment (every flag has an environment variable).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The database settings every command shares, so `keys`, `migrate` and `import` always reach the
/// same database as `serve`.
#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// PostgreSQL connection URL. When unset, an embedded cluster in --data-dir is used.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Data folder of the embedded PostgreSQL cluster (used when DATABASE_URL is unset).
    #[arg(
        long,
        env = "SIGNALS_DATA_DIR",
        default_value = ".signals/pg",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Folder holding PostgreSQL's server programs (initdb, pg_ctl); searched on PATH and under
    /// /usr/lib/postgresql/*/bin when unset.
    #[arg(long, env = "SIGNALS_PG_BIN", global = true)]
    pub pg_bin: Option<PathBuf>,

    /// Most database connections of each of the service's two pools (list queries; everything
    /// else), split between the HTTP workers; each worker also keeps one connection for lookups
    /// by id or slug, so the service holds at most twice this many plus one a worker. Default:
    /// twice the CPU cores (at least 4). Few connections serve best when the database is CPU
    /// bound: on 2 cores, 4 gave more throughput than 8, and 8 more than 16 or 32.
    #[arg(long, env = "SIGNALS_DB_POOL_SIZE", default_value_t = default_pool_size(), global = true)]
    pub pool_size: usize,

    /// How long a request waits for a free connection (and for a new one to open) before it is
    /// answered with 503, in milliseconds.
    #[arg(
        long,
        env = "SIGNALS_DB_TIMEOUT_MS",
        default_value_t = 3000,
        global = true
    )]
    pub db_timeout_ms: u64,

    /// Longest a single SQL statement may run, in milliseconds.
    #[arg(
        long,
        env = "SIGNALS_STATEMENT_TIMEOUT_MS",
        default_value_t = 10000,
        global = true
    )]
    pub statement_timeout_ms: u64,
}

impl DatabaseSettings {
    pub fn db_timeout(&self) -> Duration {
        Duration::from_millis(self.db_timeout_ms)
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    /// Address and port to listen on.
    #[arg(long, env = "SIGNALS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Whether reads need no API key. With false, reads need a key with the read scope.
    #[arg(long, env = "SIGNALS_PUBLIC_READ", default_value_t = true, action = clap::ArgAction::Set)]
    pub public_read: bool,

    /// Comma-separated origins allowed to write from a browser (reads are allowed from any origin).
    #[arg(
        long,
        env = "SIGNALS_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub cors_origins: Vec<String>,

    /// HTTP worker threads; 0 means one per CPU.
    #[arg(long, env = "SIGNALS_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Seconds in-flight requests get to finish after SIGTERM or SIGINT.
    #[arg(long, env = "SIGNALS_SHUTDOWN_TIMEOUT_S", default_value_t = 30)]
    pub shutdown_timeout_s: u64,
}

impl ServeSettings {
    pub fn cors_origins(&self) -> Vec<String> {
        self.cors_origins
            .iter()
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect()
    }
}

/// Twice the CPU cores, at least 4 (the rule of thumb of PostgreSQL's wiki for a database on
/// cores like these: more connections than that only queue inside the database).
fn default_pool_size() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (2 * cores).max(4)
}
