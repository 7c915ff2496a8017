//! The change log (`signal_changes`, written by a trigger in the same transaction as every
//! change of a signal): what the stream, the feeds' caches and the webhook deliveries read.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// One change of a signal.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Change {
    /// Increasing, in commit order.
    #[diesel(sql_type = BigInt)]
    pub position: i64,
    /// `created`, `updated` or `deleted`.
    #[diesel(sql_type = Text)]
    pub kind: String,
    #[diesel(sql_type = SqlUuid)]
    pub signal_id: Uuid,
    #[diesel(sql_type = Text)]
    pub slug: String,
    /// What filters need of the signal before the change (`None` for a creation).
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub before: Option<serde_json::Value>,
    /// ... and after it (`None` for a deletion).
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub after: Option<serde_json::Value>,
    #[diesel(sql_type = Timestamptz)]
    pub committed_at: DateTime<Utc>,
}

/// The changes after `position`, oldest first, at most `limit`. Positions commit in order, so
/// a reader that goes on from the last position it read never skips one.
pub async fn after(
    conn: &mut AsyncPgConnection,
    position: i64,
    limit: i64,
) -> diesel::QueryResult<Vec<Change>> {
    diesel::sql_query(
        "SELECT position, kind, signal_id, slug, before, after, committed_at FROM signal_changes \
         WHERE position > $1 ORDER BY position LIMIT $2",
    )
    .bind::<BigInt, _>(position)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

#[derive(QueryableByName)]
struct Bounds {
    #[diesel(sql_type = Nullable<BigInt>)]
    oldest: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    newest: Option<i64>,
}

/// The oldest and the newest position the log still keeps (`None` when it is empty).
pub async fn bounds(
    conn: &mut AsyncPgConnection,
) -> diesel::QueryResult<(Option<i64>, Option<i64>)> {
    let b: Bounds = diesel::sql_query(
        "SELECT min(position) AS oldest, max(position) AS newest FROM signal_changes",
    )
    .get_result(conn)
    .await?;
    Ok((b.oldest, b.newest))
}

#[derive(QueryableByName)]
struct Newest {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    committed_at: Option<DateTime<Utc>>,
}

/// When the newest change the log keeps was made (`None` when it is empty).
pub async fn newest_time(
    conn: &mut AsyncPgConnection,
) -> diesel::QueryResult<Option<DateTime<Utc>>> {
    let n: Newest = diesel::sql_query(
        "SELECT (SELECT committed_at FROM signal_changes ORDER BY position DESC LIMIT 1) \
         AS committed_at",
    )
    .get_result(conn)
    .await?;
    Ok(n.committed_at)
}

/// Deletes the changes committed before `before` (`SIGNALS_EVENTS_RETENTION` ago) that the
/// webhooks' fan-out has passed: one it has yet to read stays however old (a fan-out held up,
/// or changes an import wrote while no instance ran, are delivered late, never lost). The
/// newest change always stays: the log never empties once it has had a change, so a stream
/// resumed from a position before it is told 410 (an empty log could not tell an old position
/// from a current one), and the feeds' `Last-Modified` keeps the time of the last change.
pub async fn delete_before(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
) -> diesel::QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM signal_changes WHERE committed_at < $1 \
         AND position <= (SELECT position FROM webhook_fanout WHERE id = 1) \
         AND position < (SELECT max(position) FROM signal_changes)",
    )
    .bind::<Timestamptz, _>(before)
    .execute(conn)
    .await
}
