//! Settings, read from flags or the environment (every flag has an environment variable).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// The default `SIGNALS_SEARCH_HORIZON`.
pub const DEFAULT_SEARCH_HORIZON: u32 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The database settings every command shares, so `keys`, `migrate` and `import` always reach the
/// same database as `serve`. Its `Debug` leaves out the URL's password.
#[derive(Clone, Args)]
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

    /// Most database connections of each of the service's three pools (list queries planned for
    /// their values; list queries one plan fits; everything else), split between the HTTP
    /// workers; each worker also keeps one connection for lookups by id or slug, so the service
    /// holds at most three times this many plus one a worker (a pool connects when used). Default:
    /// twice the CPU cores (at least 4). Few connections serve best when the database is CPU
    /// bound: on 2 cores, 4 gave more throughput than 8, and 8 more than 16 or 32.
    #[arg(
        long = "db-pool-size",
        visible_alias = "pool-size",
        env = "SIGNALS_DB_POOL_SIZE",
        default_value_t = default_pool_size(),
        global = true
    )]
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

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self
            .database_url
            .as_deref()
            .map(|u| match url::Url::parse(u) {
                Ok(mut parsed) if parsed.password().is_some() => {
                    let _ = parsed.set_password(Some("redacted"));
                    parsed.to_string()
                }
                Ok(_) => u.to_owned(),
                Err(_) => "(not a URL)".to_owned(),
            });
        f.debug_struct("DatabaseSettings")
            .field("database_url", &url)
            .field("data_dir", &self.data_dir)
            .field("pg_bin", &self.pg_bin)
            .field("pool_size", &self.pool_size)
            .field("db_timeout_ms", &self.db_timeout_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .finish()
    }
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

    /// How long the change log keeps a change (`7d`, `12h`, `30m`, `90s`); the service
    /// deletes older ones hourly.
    #[arg(long, env = "SIGNALS_EVENTS_RETENTION", default_value = "7d")]
    pub events_retention: Span,

    /// Most `GET /v1/signals/stream` connections open at once; past it, 503.
    #[arg(long, env = "SIGNALS_MAX_STREAMS", default_value_t = 1000)]
    pub max_streams: usize,

    /// How long a client has to send a request's head, and then its body, in milliseconds;
    /// slower requests are answered 408 (a head) or closed.
    #[arg(long, env = "SIGNALS_CLIENT_TIMEOUT_MS", default_value_t = 5000)]
    pub client_timeout_ms: u64,

    /// Most client connections the instance holds open at once (split between the workers);
    /// past it, new connections wait in the listen queue.
    #[arg(long, env = "SIGNALS_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Limit of reads (GET, HEAD, OPTIONS) per API key, or per client address without a key:
    /// QUOTA/WINDOW with an optional :BURST, e.g. 600/60s or 600/60s:60 (s, m or h); 0 turns it
    /// off. BURST (default a tenth of QUOTA) is how many requests of one client an instance
    /// admits before it confirms them with the count all instances share.
    #[arg(long, env = "SIGNALS_RATE_LIMIT_READ", default_value = "600/60s")]
    pub rate_limit_read: RateLimit,

    /// Limit of writes (every other method), as for reads.
    #[arg(long, env = "SIGNALS_RATE_LIMIT_WRITE", default_value = "120/60s")]
    pub rate_limit_write: RateLimit,

    /// The base of every absolute URL the service writes (e.g. https://signals.example.com);
    /// unset, a trusted proxy's X-Forwarded-Proto and X-Forwarded-Host (or Host) are the base
    /// of the links of the requests it passes on; a request straight from its client has links
    /// on the address its connection reached (http://127.0.0.1:8080), one through a proxy not
    /// trusted relative ones.
    #[arg(long, env = "SIGNALS_PUBLIC_URL")]
    pub public_url: Option<PublicUrl>,

    /// Comma-separated addresses or CIDR ranges of proxies whose X-Forwarded-* headers are
    /// believed (X-Forwarded-For for the client address of rate limits; X-Forwarded-Proto and
    /// X-Forwarded-Host or Host for links, without SIGNALS_PUBLIC_URL); empty believes none.
    #[arg(long, env = "SIGNALS_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<Cidr>,

    /// Comma-separated URLs of streaming replicas of DATABASE_URL that serve reads (lists,
    /// facets, feeds, lookups, the stream's catch-up); writes, keys, idempotency, the change
    /// listener and webhooks stay on DATABASE_URL. Unset: every read goes to DATABASE_URL.
    #[arg(
        long,
        env = "SIGNALS_READ_DATABASE_URL",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub read_database_url: Vec<SecretText>,

    /// A replica more than this many milliseconds behind the primary serves no reads until it
    /// has caught up.
    #[arg(long, env = "SIGNALS_REPLICA_MAX_LAG_MS", default_value_t = 1000)]
    pub replica_max_lag_ms: u64,

    /// Megabytes of hot reads (single signals, first pages of lists, facets, feeds) the
    /// instance keeps in memory, emptied by every change; 0 turns the cache off.
    #[arg(long, env = "SIGNALS_CACHE_MB", default_value_t = 32)]
    pub cache_mb: usize,

    /// How many of the newest signals a text search sorted by relevance (with no filter but
    /// `since`) looks among first for the newest matches it ranks, through the GIN index of
    /// the newest documents that the service keeps covering them (the answer is the same, found
    /// faster); under 100 (the matches a search ranks; 0) looks among every signal at once and
    /// keeps no such index. Instances of one database should share it.
    #[arg(long, env = "SIGNALS_SEARCH_HORIZON", default_value_t = DEFAULT_SEARCH_HORIZON)]
    pub search_horizon: u32,

    /// Whether webhook URLs may be http (not only https); unset, as
    /// SIGNALS_WEBHOOK_ALLOW_PRIVATE (a receiver on the service's own network, as in a test,
    /// is usually plain http).
    #[arg(long, env = "SIGNALS_WEBHOOK_ALLOW_HTTP", action = clap::ArgAction::Set)]
    pub webhook_allow_http: Option<bool>,

    /// Whether deliveries may go to loopback, private, link-local and unique-local addresses
    /// (refused by default, whatever a name resolves to).
    #[arg(long, env = "SIGNALS_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,

    /// Time limit of one delivery attempt (connecting, sending, the answer), in milliseconds.
    #[arg(long, env = "SIGNALS_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,

    /// The waits before each retry of a failed delivery, comma-separated; after the last the
    /// delivery is marked failed (the default makes about three days).
    #[arg(
        long,
        env = "SIGNALS_WEBHOOK_RETRIES",
        value_delimiter = ',',
        default_value = "5s,5m,30m,2h,5h,10h,10h,10h,10h,10h,10h"
    )]
    pub webhook_retries: Vec<Span>,

    /// The key (64 hex digits) that seals webhook secrets in the database. Unset: read from
    /// --webhook-key-file, made there on first use. Instances on one database need the same key.
    #[arg(long, env = "SIGNALS_WEBHOOK_KEY", hide_env_values = true)]
    pub webhook_key: Option<SecretText>,

    /// Where the webhook key is kept when SIGNALS_WEBHOOK_KEY is unset; default `webhook.key`
    /// in the folder that holds the data folder (`.signals/webhook.key`).
    #[arg(long, env = "SIGNALS_WEBHOOK_KEY_FILE")]
    pub webhook_key_file: Option<PathBuf>,
}

/// A span of time written as a number and a unit (`d`, `h`, `m`, `s`), like `7d` or `90s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

/// A secret given as text (a key): its `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(redacted)")
    }
}

impl std::str::FromStr for SecretText {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(SecretText(s.to_owned()))
    }
}

impl std::str::FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("{s:?} is not a number and a unit (d, h, m or s), like 7d");
        let (number, unit) = s.split_at(s.len().saturating_sub(1));
        let scale = match unit {
            "d" => 86_400,
            "h" => 3_600,
            "m" => 60,
            "s" => 1,
            _ => return Err(bad()),
        };
        let n: u64 = number.parse().map_err(|_| bad())?;
        // At most a century: the service adds spans to, and takes them from, dates.
        const MOST: u64 = 36_500 * 86_400;
        match n.checked_mul(scale) {
            Some(0) => Err(bad()),
            Some(seconds) if seconds <= MOST => Ok(Span(Duration::from_secs(seconds))),
            _ => Err(format!("{s:?} is longer than a century (36500d)")),
        }
    }
}

/// A rate limit: `quota` requests per `window`, checked with the shared count every `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit(pub Option<Quota>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub quota: u32,
    pub window_s: u32,
    pub burst: u32,
}

impl std::str::FromStr for RateLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "0" || s.is_empty() {
            return Ok(RateLimit(None));
        }
        let bad = || format!("{s:?} is not QUOTA/WINDOW[:BURST], like 600/60s or 600/60s:60, or 0");
        let (limit, burst) = match s.split_once(':') {
            Some((limit, burst)) => (limit, Some(burst.parse::<u32>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let (quota, window) = limit.split_once('/').ok_or_else(bad)?;
        let quota: u32 = quota.trim().parse().map_err(|_| bad())?;
        let window = window.trim();
        let (number, unit) = window.split_at(window.len().saturating_sub(1));
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => return Err(bad()),
        };
        let window_s = number
            .parse::<u32>()
            .map_err(|_| bad())?
            .checked_mul(scale)
            .ok_or_else(bad)?;
        if quota == 0 || window_s == 0 {
            return Err(bad());
        }
        let burst = burst.unwrap_or(quota.div_ceil(10)).clamp(1, quota);
        Ok(RateLimit(Some(Quota {
            quota,
            window_s,
            burst,
        })))
    }
}

/// The public base URL, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(pub String);

impl std::str::FromStr for PublicUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let url = url::Url::parse(s.trim()).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(format!("{s:?} must be an absolute http or https URL"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{s:?} must not have a query or fragment"));
        }
        Ok(PublicUrl(url.as_str().trim_end_matches('/').to_owned()))
    }
}

/// An address range, like 10.0.0.0/8 or ::1 (a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Whether `ip` is one of the trusted proxies (`SIGNALS_TRUSTED_PROXIES`), whose
    /// `X-Forwarded-*` headers are believed: for client addresses and for links alike.
    pub fn trusts(proxies: &[Cidr], ip: std::net::IpAddr) -> bool {
        proxies.iter().any(|c| c.contains(ip))
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || format!("{s:?} is not an IP address or CIDR range");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_a_number_and_a_unit_of_at_most_a_century() {
        assert_eq!(
            "7d".parse::<Span>().unwrap().0,
            Duration::from_secs(7 * 86_400)
        );
        assert!("36500d".parse::<Span>().is_ok());
        for bad in [
            "0d",
            "36501d",
            "100000000d",
            "18446744073709551615s",
            "7",
            "d",
            "7w",
        ] {
            assert!(bad.parse::<Span>().is_err(), "{bad}");
        }
    }
}
