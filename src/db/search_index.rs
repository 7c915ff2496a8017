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
//! others. Builds are `CONCURRENTLY`: writes go on meanwhile. Every instance calls it at start
//! and then every minute; an advisory lock lets one build at a time.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// The start of every such index's name; the rest is the Unix time its documents start at.
const PREFIX: &str = "signal_search_recent_";

/// A new index holds this many times the horizon's documents.
const SPARE: i64 = 2;
/// An index that holds more than this many times the horizon's documents is built anew.
const MOST: i64 = 3;

/// The advisory lock key under which one instance at a time builds ("signals" "recent").
const LOCK: i64 = 0x5349_474e_5245_4345;

/// What [`keep`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// The table holds no more documents than the horizon (or the horizon is 0): the first look
    /// is not made, so no index is needed.
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
/// documentation). The connection is left as it was found (its `statement_timeout` included).
pub async fn keep(conn: &mut AsyncPgConnection, horizon: i64) -> diesel::QueryResult<Kept> {
    if horizon <= 0 {
        return Ok(Kept::NotNeeded);
    }
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
    let Some(since) = nth_newest(conn, horizon).await? else {
        return Ok(Kept::NotNeeded);
    };
    let indexes: Vec<Index> = diesel::sql_query(
        "SELECT c.relname::text AS name, i.indisvalid AS valid \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = 'signal_search'::regclass AND starts_with(c.relname::text, $1)",
    )
    .bind::<Text, _>(PREFIX)
    .load(conn)
    .await?;
    let mut current = None;
    for index in &indexes {
        let Some(start) = start_of(&index.name).filter(|_| index.valid) else {
            continue;
        };
        if start > since.timestamp() || current.is_some() {
            continue;
        }
        let held: Count = diesel::sql_query(
            "SELECT count(*) AS n FROM (SELECT FROM signal_search \
             WHERE published_at >= to_timestamp($1) LIMIT $2) d",
        )
        .bind::<BigInt, _>(start)
        .bind::<BigInt, _>(MOST * horizon + 1)
        .get_result(conn)
        .await?;
        if held.n <= MOST * horizon {
            current = Some(start);
        }
    }
    let outcome = match current {
        Some(_) => Kept::Current,
        None => {
            // From the time of the SPARE × horizon-th newest document, or of the oldest one.
            let from = match nth_newest(conn, SPARE * horizon).await? {
                Some(t) => t,
                None => oldest(conn).await?.unwrap_or(since),
            };
            // Whole seconds, rounded down: the index holds at least those documents.
            let start = from.timestamp();
            drop_index(conn, &format!("{PREFIX}{start}")).await?;
            build(conn, start).await?;
            current = Some(start);
            Kept::Built(start)
        }
    };
    for index in indexes {
        if start_of(&index.name) != current {
            drop_index(conn, &index.name).await?;
        }
    }
    Ok(outcome)
}

async fn oldest(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Option<DateTime<Utc>>> {
    let row: Time = diesel::sql_query("SELECT min(published_at) AS at FROM signal_search")
        .get_result(conn)
        .await?;
    Ok(row.at)
}

/// `CREATE INDEX CONCURRENTLY` of the documents from `start` (Unix seconds) on, with no
/// statement timeout: on a million signals it takes a minute or so.
async fn build(conn: &mut AsyncPgConnection, start: i64) -> diesel::QueryResult<()> {
    // The time as a literal: an index's condition cannot take a parameter. It is an integer.
    // Each statement on its own: a string of several is one transaction, which CONCURRENTLY
    // refuses.
    conn.batch_execute("SET statement_timeout = 0").await?;
    let sql = format!(
        "CREATE INDEX CONCURRENTLY \"{PREFIX}{start}\" ON signal_search USING gin (search) \
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
