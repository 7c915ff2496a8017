//! The GIN index of the newest search documents: a partial index over `signal_search` of the
//! documents from a time on (`signal_search_recent_<unix seconds>`), which the service builds
//! and moves forward itself as signals arrive.
//!
//! A text search sorted by relevance first looks for its newest matches among the newest
//! documents ([`super::lists::Horizon`]), with `published_at >= <the horizon's time>`. The
//! GIN index of every document answers that by reading the words' whole posting lists (for a
//! million signals, most of such a search's time: "The floor" in `docs/queries.md`); this
//! index holds only the newest documents' entries, so PostgreSQL reads a fraction of them.
//! PostgreSQL itself keeps the index in step with every write, and plans with it only where
//! its condition is implied by the statement's (the horizon's time is a value of each
//! execution, `plan_cache_mode = force_custom_plan`), so no answer depends on it: without it, or
//! with one that no longer covers the horizon, the same statement reads the index of every
//! document.
//!
//! [`keep`] builds a new index when there is none that covers the horizon's documents, or when
//! the one there holds far more documents than the horizon (its time is set to hold
//! [`SPARE`] × the horizon, and it is built anew once it holds [`MOST`] ×), then drops the
//! others. Builds are `CONCURRENTLY`: writes go on meanwhile (on a million signals about 10 s).
//! Every instance calls it at start and then every minute, on a connection of its own that is
//! closed after (a session-scoped advisory lock lets one build at a time, so this needs a
//! direct or session-mode connection, as `DATABASE_URL` already does).
//!
//! What it costs: while there is one, each new document's words go into two GIN indexes; and
//! instances of one database should share `SIGNALS_SEARCH_HORIZON`, or each would build the
//! index anew for its own.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

use super::lists::Horizon;

/// The start of every such index's name; the rest is the Unix time its documents start at.
const PREFIX: &str = "signal_search_recent_";

/// A new index holds this many times the horizon's documents.
const SPARE: i64 = 2;
/// An index that holds more than this many times the horizon's documents is built anew.
const MOST: i64 = 3;

/// The advisory lock key under which one instance at a time builds ("signals" "recent").
pub const LOCK: i64 = 0x5349_474e_5245_4345;

/// What [`keep`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// No index is needed: the horizon is smaller than the candidates a search ranks (so no
    /// first look is made), or the table holds no more than [`SPARE`] × the horizon. Any there
    /// were dropped.
    NotNeeded,
    /// The index there covers the horizon and is not too large.
    Current,
    /// A new index was built (from this Unix time on); any earlier one was dropped.
    Built(i64),
    /// Another session is building one.
    Busy,
}

#[derive(QueryableByName)]
struct Time {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    at: Option<DateTime<Utc>>,
}

/// The time of the `n`th newest search document, when there are that many.
pub async fn nth_newest(
    conn: &mut AsyncPgConnection,
    n: i64,
) -> diesel::QueryResult<Option<DateTime<Utc>>> {
    let row: Time = diesel::sql_query(
        "SELECT (SELECT published_at FROM signal_search \
                 ORDER BY published_at DESC, id DESC OFFSET $1 LIMIT 1) AS at",
    )
    .bind::<BigInt, _>(n.max(1) - 1)
    .get_result(conn)
    .await?;
    Ok(row.at)
}

#[derive(QueryableByName)]
struct Index {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Bool)]
    valid: bool,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// The Unix time an index of this name starts at, if it is one of these indexes.
fn start_of(name: &str) -> Option<i64> {
    name.strip_prefix(PREFIX)?.parse().ok()
}

/// Builds a new index of the newest documents for a horizon of `horizon` documents when the
/// one there does not cover it or has grown too large, and drops the others (see the module's
/// documentation); drops them all when none is needed. Meant for a connection of its own (a
/// session lock is taken, and the build runs without a statement timeout); the connection's
/// `statement_timeout` is reset afterwards.
pub async fn keep(conn: &mut AsyncPgConnection, horizon: i64) -> diesel::QueryResult<Kept> {
    let locked: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
        .bind::<BigInt, _>(LOCK)
        .get_result(conn)
        .await?;
    if !locked.locked {
        return Ok(Kept::Busy);
    }
    let kept = keep_locked(conn, horizon).await;
    let unlocked = conn
        .batch_execute(&format!("SELECT pg_advisory_unlock({LOCK})"))
        .await;
    let kept = kept?;
    unlocked?;
    Ok(kept)
}

async fn keep_locked(conn: &mut AsyncPgConnection, horizon: i64) -> diesel::QueryResult<Kept> {
    let indexes: Vec<Index> = diesel::sql_query(
        "SELECT c.relname::text AS name, i.indisvalid AS valid \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = 'signal_search'::regclass AND starts_with(c.relname::text, $1)",
    )
    .bind::<Text, _>(PREFIX)
    .load(conn)
    .await?;
    // Needed when searches look first among the newest documents ([`Horizon::looks_first`])
    // and the table holds more than SPARE × the horizon: with fewer, the index would hold
    // nearly every document, saving no reading and costing every write a second GIN entry.
    let needed =
        Horizon::looks_first(horizon) && nth_newest(conn, SPARE * horizon + 1).await?.is_some();
    let times = if needed {
        (
            nth_newest(conn, horizon).await?,
            nth_newest(conn, SPARE * horizon).await?,
        )
    } else {
        (None, None)
    };
    let (Some(since), Some(from)) = times else {
        for index in &indexes {
            drop_index(conn, &index.name).await?;
        }
        return Ok(Kept::NotNeeded);
    };
    // A new index would start at the SPARE × horizon-th newest document's time, in whole
    // seconds rounded down (it holds at least those documents).
    let start = from.timestamp();
    // The latest-starting valid index that covers the horizon's documents is kept unless it
    // holds more than MOST × the horizon and a new one would start later (when many
    // documents share one second, a new one would be no smaller).
    let covering = indexes
        .iter()
        .filter(|index| index.valid)
        .filter_map(|index| start_of(&index.name))
        .filter(|s| *s <= since.timestamp())
        .max();
    let current = match covering {
        Some(s) if s >= start => Some(s),
        Some(s) => {
            let held: Count = diesel::sql_query(
                "SELECT count(*) AS n FROM (SELECT FROM signal_search \
                 WHERE published_at >= to_timestamp($1) LIMIT $2) d",
            )
            .bind::<BigInt, _>(s)
            .bind::<BigInt, _>(MOST * horizon + 1)
            .get_result(conn)
            .await?;
            (held.n <= MOST * horizon).then_some(s)
        }
        None => None,
    };
    let (kept, outcome) = match current {
        Some(s) => (s, Kept::Current),
        None => {
            // Indexes left invalid by a build that failed go first (PostgreSQL keeps them up to
            // date on every write); a valid earlier one serves until the new one is built.
            for index in indexes.iter().filter(|index| !index.valid) {
                drop_index(conn, &index.name).await?;
            }
            build(conn, start).await?;
            (start, Kept::Built(start))
        }
    };
    for index in &indexes {
        if start_of(&index.name) != Some(kept) {
            drop_index(conn, &index.name).await?;
        }
    }
    Ok(outcome)
}

/// `CREATE INDEX CONCURRENTLY` of the documents from `start` (Unix seconds) on, with no
/// statement timeout: on a million signals it took about 10 s (longer while writes go on).
async fn build(conn: &mut AsyncPgConnection, start: i64) -> diesel::QueryResult<()> {
    // The time as a literal: an index's condition cannot take a parameter. It is an integer.
    // Each statement on its own: a string of several is one transaction, which CONCURRENTLY
    // refuses.
    conn.batch_execute("SET statement_timeout = 0").await?;
    let sql = format!(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS \"{PREFIX}{start}\" ON signal_search USING gin (search) \
         WHERE published_at >= '{}'::timestamptz",
        DateTime::<Utc>::from_timestamp(start, 0)
            .expect("a time read from the database")
            .to_rfc3339()
    );
    let built = conn.batch_execute(&sql).await;
    let reset = conn.batch_execute("RESET statement_timeout").await;
    built?;
    reset
}

async fn drop_index(conn: &mut AsyncPgConnection, name: &str) -> diesel::QueryResult<()> {
    // The names are ours (PREFIX and an integer), quoted for a negative one.
    conn.batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS \"{name}\""))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_its_own_names_have_a_start() {
        assert_eq!(
            start_of("signal_search_recent_1767225600"),
            Some(1767225600)
        );
        assert_eq!(start_of("signal_search_recent_-5"), Some(-5));
        assert_eq!(start_of("signal_search_idx"), None);
        assert_eq!(start_of("signal_search_recent_x"), None);
    }
}
