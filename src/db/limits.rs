//! The shared counts of rate limits: each instance adds what it admitted and reads the total.

use diesel::sql_types::{Array, BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// What one instance admitted for a subject in a window, not yet added to the shared count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub policy: String,
    pub subject: String,
    pub window_start: i64,
    pub count: i64,
}

/// A shared total after adding.
#[derive(Debug, Clone, QueryableByName)]
pub struct Total {
    #[diesel(sql_type = Text)]
    pub policy: String,
    #[diesel(sql_type = Text)]
    pub subject: String,
    #[diesel(sql_type = BigInt)]
    pub window_start: i64,
    #[diesel(sql_type = BigInt)]
    pub count: i64,
}

/// Adds the counts (one statement for all of them) and returns the new totals. The rows are
/// locked in one order (policy, subject, window) on every instance, so two instances' flushes
/// wait for each other instead of deadlocking.
pub async fn add(
    conn: &mut AsyncPgConnection,
    admitted: &[Admitted],
) -> diesel::QueryResult<Vec<Total>> {
    let mut admitted: Vec<&Admitted> = admitted.iter().collect();
    admitted.sort_by(|a, b| {
        (&a.policy, &a.subject, a.window_start).cmp(&(&b.policy, &b.subject, b.window_start))
    });
    let column = |f: fn(&Admitted) -> String| admitted.iter().map(|a| f(a)).collect::<Vec<_>>();
    diesel::sql_query(
        "INSERT INTO rate_limit_counts AS c (policy, subject, window_start, count) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) \
         ON CONFLICT (policy, subject, window_start) DO UPDATE SET count = c.count + EXCLUDED.count \
         RETURNING c.policy, c.subject, c.window_start, c.count",
    )
    .bind::<Array<Text>, _>(column(|a| a.policy.clone()))
    .bind::<Array<Text>, _>(column(|a| a.subject.clone()))
    .bind::<Array<BigInt>, _>(admitted.iter().map(|a| a.window_start).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(admitted.iter().map(|a| a.count).collect::<Vec<_>>())
    .load(conn)
    .await
}

/// Deletes the counts of windows that ended before `before` (seconds since the epoch).
pub async fn delete_before(
    conn: &mut AsyncPgConnection,
    before: i64,
) -> diesel::QueryResult<usize> {
    diesel::sql_query("DELETE FROM rate_limit_counts WHERE window_start < $1")
        .bind::<BigInt, _>(before)
        .execute(conn)
        .await
}
