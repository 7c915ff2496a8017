//! Streaming replicas that serve reads (`SIGNALS_READ_DATABASE_URL`).
//!
//! Every instance watches every replica (a connection of its own each, every
//! [`CHECK_EVERY`]): whether it answers, whether it is still a standby, how far it has replayed
//! the primary's WAL, and so how far behind it is. A replica is used for a read only while it is
//! healthy (answers, in recovery, at most `SIGNALS_REPLICA_MAX_LAG_MS` behind) and has replayed
//! at least what the read needs: the position a client's `Signals-Read-After` names (its own
//! write), and, for an answer the cache may keep, the primary's position when the change
//! listener last saw a change. Otherwise the primary answers.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::sql_types::{Bool, Double, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::AsyncPgConnection;
// The atomics below are read as `AtomicX::load(&..)`: this trait's blanket `load` would be picked
// for `.load(..)` on them.
use diesel_async::RunQueryDsl;

use super::PgPool;
use crate::config::DatabaseSettings;

/// How often each replica is checked.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// A WAL position (`pg_lsn`) as a number: `X/Y` is `X << 32 | Y`.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= u32::MAX as u64 && lo <= u32::MAX as u64).then_some(hi << 32 | lo)
}

/// A WAL position as PostgreSQL writes it.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// What an instance knows of one replica.
pub struct Replica {
    /// Host, port and database (no password): how `/metrics` and the logs name it.
    pub name: String,
    url: String,
    healthy: AtomicBool,
    /// The WAL position it has replayed, as of its last check.
    replayed: AtomicU64,
    /// How far behind it was at its last check, in milliseconds (-1: unknown).
    lag_ms: AtomicI64,
}

impl Replica {
    pub fn healthy(&self) -> bool {
        AtomicBool::load(&self.healthy, Ordering::Relaxed)
    }

    pub fn replayed(&self) -> u64 {
        AtomicU64::load(&self.replayed, Ordering::Relaxed)
    }

    pub fn lag_ms(&self) -> i64 {
        AtomicI64::load(&self.lag_ms, Ordering::Relaxed)
    }
}

/// The replicas of an instance and the routing of its reads.
pub struct Replicas {
    pub list: Vec<Replica>,
    max_lag: Duration,
    next: AtomicUsize,
}

#[derive(QueryableByName)]
struct Lsn {
    #[diesel(sql_type = Text)]
    lsn: String,
}

#[derive(QueryableByName)]
struct Standby {
    #[diesel(sql_type = Bool)]
    recovering: bool,
    #[diesel(sql_type = Nullable<Text>)]
    replayed: Option<String>,
    /// How long ago the last transaction it replayed was committed on the primary, in ms.
    #[diesel(sql_type = Nullable<Double>)]
    replay_age_ms: Option<f64>,
}

#[derive(QueryableByName)]
struct SettledLsn {
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    lsn: Option<String>,
}

/// The primary's current WAL position if no transaction that writes the change log is between
/// its commit and the moment the commit becomes visible, else `None`: every change committed
/// at or before the position is then visible to a read that starts afterwards. Those
/// transactions hold the log's lock from their first change until their commit is visible
/// (the trigger's `pg_advisory_xact_lock`); a commit is in the WAL before it is visible, so the
/// bare position can be past a change no read can see yet. Never waits.
pub async fn settled_lsn(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Option<u64>> {
    let row: SettledLsn = RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT CASE WHEN pg_try_advisory_xact_lock('signal_changes'::regclass::oid::bigint) \
             THEN pg_current_wal_lsn()::text END AS lsn",
        ),
        conn,
    )
    .await?;
    match row.lsn {
        None => Ok(None),
        Some(text) => parse_lsn(&text)
            .map(Some)
            .ok_or_else(|| diesel::result::Error::DeserializationError("a pg_lsn".into())),
    }
}

/// The primary's current WAL position.
pub async fn primary_lsn(conn: &mut AsyncPgConnection) -> diesel::QueryResult<u64> {
    let row: Lsn = RunQueryDsl::get_result(
        diesel::sql_query("SELECT pg_current_wal_lsn()::text AS lsn"),
        conn,
    )
    .await?;
    parse_lsn(&row.lsn)
        .ok_or_else(|| diesel::result::Error::DeserializationError("a pg_lsn".into()))
}

impl Replicas {
    /// Watches the replicas at `urls` (none: every read goes to the primary), comparing them with
    /// the primary reached through `primary`.
    pub fn start(
        urls: &[String],
        settings: &DatabaseSettings,
        primary: PgPool,
        max_lag: Duration,
    ) -> Arc<Replicas> {
        let replicas = Arc::new(Replicas {
            list: urls
                .iter()
                .map(|url| Replica {
                    name: display_name(url),
                    url: url.clone(),
                    healthy: AtomicBool::new(false),
                    replayed: AtomicU64::new(0),
                    lag_ms: AtomicI64::new(-1),
                })
                .collect(),
            max_lag,
            next: AtomicUsize::new(0),
        });
        for index in 0..replicas.list.len() {
            let (replicas, settings, primary) =
                (replicas.clone(), settings.clone(), primary.clone());
            actix_web::rt::spawn(async move { replicas.watch(index, settings, primary).await });
        }
        replicas
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// A healthy replica that has replayed at least `needed`, taking turns; `None`: the primary.
    pub fn pick(&self, needed: u64) -> Option<usize> {
        let n = self.list.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| self.list[i].healthy() && self.list[i].replayed() >= needed)
    }

    async fn watch(&self, index: usize, settings: DatabaseSettings, primary: PgPool) {
        let replica = &self.list[index];
        let mut conn: Option<AsyncPgConnection> = None;
        let mut primary_at = Samples::default();
        let mut every = tokio::time::interval(CHECK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // The primary's position first: a replica that has replayed it is caught up now.
            // Timed before it is asked: the position is the primary's at that moment or later,
            // so a lag measured from it is never too small.
            let target = match super::conn(&primary).await {
                Ok(mut p) => {
                    let asked = Instant::now();
                    primary_lsn(&mut p).await.ok().map(|lsn| (asked, lsn))
                }
                Err(_) => None,
            };
            if let Some((asked, lsn)) = target {
                primary_at.push(asked, lsn);
            }
            if conn.is_none() {
                conn = super::connect_once(&replica.url, &settings).await.ok();
            }
            let state = match conn.as_mut() {
                Some(c) => RunQueryDsl::get_result::<Standby>(
                    diesel::sql_query(
                        "SELECT pg_is_in_recovery() AS recovering, \
                         pg_last_wal_replay_lsn()::text AS replayed, \
                         (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)\
                         ::float8 AS replay_age_ms",
                    ),
                    c,
                )
                .await
                .ok(),
                None => None,
            };
            let Some(state) = state else {
                conn = None;
                if replica.healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(replica = %replica.name, "replica: not answering; reads go elsewhere");
                }
                replica.lag_ms.store(-1, Ordering::Relaxed);
                continue;
            };
            let replayed = state.replayed.as_deref().and_then(parse_lsn).unwrap_or(0);
            replica.replayed.store(replayed, Ordering::Relaxed);
            let (lag, known) = primary_at.lag(replayed, Instant::now());
            // Behind every position seen since this instance started: then its lag is at most
            // the age of the last transaction it replayed (what the primary committed after
            // that, it has not replayed), unknown without one.
            let (lag, known) = match (known, state.replay_age_ms) {
                (false, Some(age)) if age.is_finite() => {
                    (lag.max(Duration::from_millis(age.max(0.0) as u64)), true)
                }
                other => (lag, other.0),
            };
            replica.lag_ms.store(
                lag.as_millis().min(i64::MAX as u128) as i64,
                Ordering::Relaxed,
            );
            // Promoted (no longer a standby): its data may have gone another way than the
            // primary's; it serves no reads until it is a standby again. Nor does one whose lag
            // is not known (behind everything seen, and nothing replayed since it started).
            let healthy = state.recovering && known && lag <= self.max_lag;
            if replica.healthy.swap(healthy, Ordering::Relaxed) != healthy {
                match healthy {
                    true => tracing::info!(replica = %replica.name, "replica: serving reads"),
                    false => tracing::warn!(
                        replica = %replica.name,
                        lag_ms = lag.as_millis() as u64,
                        standby = state.recovering,
                        "replica: behind or not a standby; reads go elsewhere"
                    ),
                }
            }
        }
    }
}

/// The primary's WAL positions at this instance's recent checks, oldest first: a replica's lag
/// is how long ago the newest of them it has replayed was the primary's. (Asking only whether
/// it has replayed the position of the check just made says "behind" at every check while
/// writes go on, however close it follows.)
#[derive(Default)]
struct Samples(std::collections::VecDeque<(Instant, u64)>);

impl Samples {
    /// Enough for far more than any lag a replica may serve with (at a check every 250 ms).
    const KEPT: usize = 4096;

    fn push(&mut self, at: Instant, lsn: u64) {
        if self.0.len() == Self::KEPT {
            self.0.pop_front();
        }
        self.0.push_back((at, lsn));
    }

    /// The lag of a replica that has replayed `replayed`, and whether it is known: not when the
    /// replica is behind every position kept (then the lag is at least the one returned, the
    /// age of the oldest), or when none is kept yet (then zero).
    fn lag(&mut self, replayed: u64, now: Instant) -> (Duration, bool) {
        match self.0.iter().rposition(|&(_, lsn)| lsn <= replayed) {
            Some(newest) => {
                // The older ones can never be the newest replayed again.
                self.0.drain(..newest);
                (now.duration_since(self.0[0].0), true)
            }
            None => (
                self.0
                    .front()
                    .map_or(Duration::ZERO, |&(at, _)| now.duration_since(at)),
                false,
            ),
        }
    }
}

/// `host:port/database` of a URL, without user or password.
fn display_name(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}{}",
            u.host_str().unwrap_or("?"),
            u.port().unwrap_or(5432),
            u.path()
        ),
        Err(_) => "(not a URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replicas_lag_is_the_age_of_the_newest_primary_position_it_has_replayed() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut samples = Samples::default();
        // Not known before a position of the primary's was seen.
        assert_eq!(samples.lag(10, at(0)), (Duration::ZERO, false));
        // Writes go on: the primary moves at every check, the replica a little behind.
        for (i, lsn) in [100, 200, 300, 400].into_iter().enumerate() {
            samples.push(at(250 * i as u64), lsn);
        }
        // It has replayed the position of 250 ms ago, not the latest: 250 ms behind, not
        // "behind since it last replayed a latest position".
        assert_eq!(
            samples.lag(350, at(750)),
            (Duration::from_millis(250), true)
        );
        assert_eq!(samples.lag(400, at(800)), (Duration::from_millis(50), true));
        // A replica stalled before this instance's first check: its lag is not known, and at
        // least the age of the oldest position kept.
        let mut fresh = Samples::default();
        fresh.push(at(0), 1000);
        assert_eq!(fresh.lag(10, at(5)), (Duration::from_millis(5), false));
        // One that stalls later: known, and growing.
        let mut later = Samples::default();
        later.push(at(0), 100);
        later.push(at(250), 200);
        later.push(at(500), 300);
        assert_eq!(
            later.lag(100, at(1500)),
            (Duration::from_millis(1500), true)
        );
    }

    #[test]
    fn wal_positions_read_and_write_as_postgres_does() {
        assert_eq!(parse_lsn("0/16B3740"), Some(0x16B3740));
        assert_eq!(parse_lsn("1A/0"), Some(0x1A << 32));
        assert_eq!(format_lsn(0x1A_0000_0010), "1A/10");
        assert_eq!(parse_lsn(&format_lsn(0x5_0000_ABCD)), Some(0x5_0000_ABCD));
        for bad in ["", "0", "x/1", "1/", "100000000/0"] {
            assert_eq!(parse_lsn(bad), None, "{bad}");
        }
    }

    #[test]
    fn replicas_are_named_without_their_passwords() {
        assert_eq!(
            display_name("postgres://u:secret@db.example:6432/signals"),
            "db.example:6432/signals"
        );
    }
}
