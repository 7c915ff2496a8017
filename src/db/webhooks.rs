//! Webhook subscriptions, the messages made from the change log, their deliveries and every
//! attempt (see the migration `webhooks` for how fan-out and claims keep each exactly once).

use chrono::{DateTime, Utc};
use diesel::sql_types::{
    Array, BigInt, Bool, Bytea, Integer, Nullable, SmallInt, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::domain::webhook::WebhookInput;

/// A subscription as stored (its keys sealed).
#[derive(Debug, Clone, QueryableByName)]
pub struct WebhookRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub url: String,
    #[diesel(sql_type = Nullable<SmallInt>)]
    pub min_score: Option<i16>,
    #[diesel(sql_type = Array<Text>)]
    pub categories: Vec<String>,
    #[diesel(sql_type = Array<Text>)]
    pub tags: Vec<String>,
    #[diesel(sql_type = Array<Text>)]
    pub events: Vec<String>,
    #[diesel(sql_type = Bool)]
    pub enabled: bool,
    #[diesel(sql_type = Nullable<Text>)]
    pub disabled_reason: Option<String>,
    #[diesel(sql_type = Bytea)]
    pub secret: Vec<u8>,
    #[diesel(sql_type = Nullable<Bytea>)]
    pub previous_secret: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub previous_until: Option<DateTime<Utc>>,
    #[diesel(sql_type = BigInt)]
    pub after_position: i64,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub updated_at: DateTime<Utc>,
}

impl WebhookRow {
    /// The client fields.
    pub fn input(&self) -> WebhookInput {
        WebhookInput {
            url: self.url.clone(),
            min_score: self.min_score,
            categories: self.categories.clone(),
            tags: self.tags.clone(),
            events: self.events.clone(),
            enabled: self.enabled,
        }
    }
}

const COLUMNS: &str = "id, url, min_score, categories, tags, events, enabled, disabled_reason, \
     secret, previous_secret, previous_until, after_position, created_at, updated_at";

/// Adds a subscription: changes after the newest one in the log are delivered to it.
pub async fn create(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    input: &WebhookInput,
    sealed_secret: Vec<u8>,
) -> diesel::QueryResult<WebhookRow> {
    diesel::sql_query(format!(
        "INSERT INTO webhooks (id, url, min_score, categories, tags, events, enabled, secret, \
         after_position, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
         COALESCE((SELECT max(position) FROM signal_changes), 0), now(), now()) \
         RETURNING {COLUMNS}"
    ))
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(&input.url)
    .bind::<Nullable<SmallInt>, _>(input.min_score)
    .bind::<Array<Text>, _>(&input.categories)
    .bind::<Array<Text>, _>(&input.tags)
    .bind::<Array<Text>, _>(&input.events)
    .bind::<Bool, _>(input.enabled)
    .bind::<Bytea, _>(sealed_secret)
    .get_result(conn)
    .await
}

/// Every subscription, oldest first.
pub async fn list(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<WebhookRow>> {
    diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM webhooks ORDER BY created_at, id"
    ))
    .load(conn)
    .await
}

/// The enabled subscriptions (what a change is fanned out to).
pub async fn enabled(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<WebhookRow>> {
    diesel::sql_query(format!("SELECT {COLUMNS} FROM webhooks WHERE enabled"))
        .load(conn)
        .await
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> diesel::QueryResult<Option<WebhookRow>> {
    one(conn, id, "").await
}

/// The subscription, its row locked until the transaction ends.
pub async fn get_for_update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> diesel::QueryResult<Option<WebhookRow>> {
    one(conn, id, " FOR UPDATE").await
}

async fn one(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    lock: &'static str,
) -> diesel::QueryResult<Option<WebhookRow>> {
    diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM webhooks WHERE id = $1{lock}"
    ))
    .bind::<SqlUuid, _>(id)
    .get_result(conn)
    .await
    .optional()
}

/// Writes the client fields; enabling clears why the service disabled it.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    input: &WebhookInput,
) -> diesel::QueryResult<Option<WebhookRow>> {
    diesel::sql_query(format!(
        "UPDATE webhooks SET url = $2, min_score = $3, categories = $4, tags = $5, events = $6, \
         enabled = $7, disabled_reason = CASE WHEN $7 THEN NULL ELSE disabled_reason END, \
         updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(&input.url)
    .bind::<Nullable<SmallInt>, _>(input.min_score)
    .bind::<Array<Text>, _>(&input.categories)
    .bind::<Array<Text>, _>(&input.tags)
    .bind::<Array<Text>, _>(&input.events)
    .bind::<Bool, _>(input.enabled)
    .get_result(conn)
    .await
    .optional()
}

pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> diesel::QueryResult<bool> {
    let n = diesel::sql_query("DELETE FROM webhooks WHERE id = $1")
        .bind::<SqlUuid, _>(id)
        .execute(conn)
        .await?;
    Ok(n > 0)
}

/// A new key: the current one goes on signing beside it until `previous_until`.
pub async fn rotate(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    sealed_secret: Vec<u8>,
    previous_until: DateTime<Utc>,
) -> diesel::QueryResult<Option<WebhookRow>> {
    diesel::sql_query(format!(
        "UPDATE webhooks SET previous_secret = secret, previous_until = $3, secret = $2, \
         updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind::<SqlUuid, _>(id)
    .bind::<Bytea, _>(sealed_secret)
    .bind::<Timestamptz, _>(previous_until)
    .get_result(conn)
    .await
    .optional()
}

#[derive(QueryableByName)]
struct Position {
    #[diesel(sql_type = BigInt)]
    position: i64,
}

/// Takes the fan-out's turn (inside a transaction): the position it reached, or `None` while
/// another instance has the turn.
pub async fn lock_fanout(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Option<i64>> {
    let p: Option<Position> = diesel::sql_query(
        "SELECT position FROM webhook_fanout WHERE id = 1 FOR UPDATE SKIP LOCKED",
    )
    .get_result(conn)
    .await
    .optional()?;
    Ok(p.map(|p| p.position))
}

pub async fn set_fanout(conn: &mut AsyncPgConnection, position: i64) -> diesel::QueryResult<()> {
    diesel::sql_query("UPDATE webhook_fanout SET position = $1 WHERE id = 1")
        .bind::<BigInt, _>(position)
        .execute(conn)
        .await?;
    Ok(())
}

/// One change as subscriptions receive it.
pub struct Message {
    pub position: i64,
    pub event_type: String,
    pub payload: Vec<u8>,
}

/// Writes messages and their deliveries (due now), in two statements.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    messages: &[Message],
    deliveries: &[(Uuid, i64)],
) -> diesel::QueryResult<()> {
    if messages.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO webhook_messages (position, event_type, payload) \
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[]) ON CONFLICT DO NOTHING",
    )
    .bind::<Array<BigInt>, _>(messages.iter().map(|m| m.position).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(
        messages
            .iter()
            .map(|m| m.event_type.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Bytea>, _>(
        messages
            .iter()
            .map(|m| m.payload.as_slice())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    diesel::sql_query(
        "INSERT INTO webhook_deliveries (id, webhook_id, position, next_attempt_at) \
         SELECT *, now() FROM unnest($1::uuid[], $2::uuid[], $3::bigint[]) \
         ON CONFLICT (webhook_id, position) DO NOTHING",
    )
    .bind::<Array<SqlUuid>, _>(
        deliveries
            .iter()
            .map(|_| Uuid::now_v7())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<SqlUuid>, _>(deliveries.iter().map(|d| d.0).collect::<Vec<_>>())
    .bind::<Array<BigInt>, _>(deliveries.iter().map(|d| d.1).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// A delivery claimed for one attempt, with what it sends.
#[derive(Debug, Clone, QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub webhook_id: Uuid,
    #[diesel(sql_type = BigInt)]
    pub position: i64,
    /// This attempt's number, from 1.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    pub lease_until: DateTime<Utc>,
    /// When the change was fanned out to this subscription.
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    #[diesel(sql_type = Bytea)]
    pub payload: Vec<u8>,
}

/// Claims due deliveries of enabled subscriptions not in `busy`: at most `per_webhook` of
/// each, `limit` in all, oldest due first, each leased for `lease_ms`. A delivery whose lease
/// has not ended is not claimed again (its claimer may still be sending it); the lease is
/// checked again under the row lock, so two claimers never both take it. A claim counts no
/// attempt ([`record`] does, for an attempt made): a claimer that cannot send (another
/// instance's webhook key, the database gone, a crash) uses up none of the retries.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    busy: &[Uuid],
    per_webhook: i64,
    limit: i64,
    lease_ms: i64,
) -> diesel::QueryResult<Vec<Claimed>> {
    diesel::sql_query(
        "WITH due AS ( \
             SELECT d.id, d.webhook_id, d.next_attempt_at FROM webhook_deliveries d \
             JOIN webhooks w ON w.id = d.webhook_id AND w.enabled \
             WHERE d.state = 'pending' AND d.next_attempt_at <= now() \
               AND (d.lease_until IS NULL OR d.lease_until < now()) \
               AND d.webhook_id <> ALL($1) \
             ORDER BY d.next_attempt_at LIMIT 1000), \
         fair AS ( \
             SELECT id, row_number() OVER (PARTITION BY webhook_id ORDER BY next_attempt_at, id) \
             AS n FROM due), \
         locked AS ( \
             SELECT d.id FROM webhook_deliveries d \
             WHERE d.id IN (SELECT id FROM fair WHERE n <= $2) AND d.state = 'pending' \
               AND (d.lease_until IS NULL OR d.lease_until < now()) \
             ORDER BY d.next_attempt_at, d.id LIMIT $3 \
             FOR UPDATE OF d SKIP LOCKED) \
         UPDATE webhook_deliveries d \
         SET lease_until = now() + $4 * interval '1 millisecond' \
         FROM locked, webhook_messages m \
         WHERE d.id = locked.id AND m.position = d.position \
         RETURNING d.id, d.webhook_id, d.position, d.attempts + 1 AS attempts, d.lease_until, \
         d.created_at, m.event_type, \
         m.payload",
    )
    .bind::<Array<SqlUuid>, _>(busy)
    .bind::<BigInt, _>(per_webhook)
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(lease_ms)
    .load(conn)
    .await
}

/// How one attempt ended.
#[derive(Debug, Clone)]
pub struct Attempted {
    pub delivery_id: Uuid,
    pub webhook_id: Uuid,
    pub attempt: i32,
    pub lease_until: DateTime<Utc>,
    pub attempted_at: DateTime<Utc>,
    pub status: Option<i16>,
    pub latency_ms: i32,
    /// The class of failure; `None` when delivered.
    pub error: Option<String>,
    /// `delivered`, `pending` (to be retried at `next_attempt_at`) or `failed`.
    pub state: &'static str,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The receiver answered 410: the subscription is disabled.
    pub gone: bool,
    /// False when it was not sent (put off with one that failed to reach the receiver): no
    /// attempt is counted or listed.
    pub attempted: bool,
}

/// Records attempts, in one transaction: each delivery's new state (only while the attempt's
/// lease is still its own), every attempt, and subscriptions a receiver said are gone (a
/// delivery answered 410 is pending again only together with its subscription's disabling,
/// else it could be claimed, and sent, between).
pub async fn record(conn: &mut AsyncPgConnection, done: &[Attempted]) -> diesel::QueryResult<()> {
    if done.is_empty() {
        return Ok(());
    }
    conn.transaction(async |conn| record_in(conn, done).await)
        .await
}

async fn record_in(conn: &mut AsyncPgConnection, done: &[Attempted]) -> diesel::QueryResult<()> {
    let column = |f: fn(&Attempted) -> Uuid| done.iter().map(f).collect::<Vec<_>>();
    diesel::sql_query(
        "UPDATE webhook_deliveries d SET state = r.state, next_attempt_at = r.next, \
         lease_until = NULL, attempts = d.attempts + CASE WHEN r.attempted THEN 1 ELSE 0 END \
         FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::timestamptz[], $5::bool[]) \
         AS r(id, lease, state, next, attempted) WHERE d.id = r.id AND d.lease_until = r.lease",
    )
    .bind::<Array<SqlUuid>, _>(column(|a| a.delivery_id))
    .bind::<Array<Timestamptz>, _>(done.iter().map(|a| a.lease_until).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(done.iter().map(|a| a.state).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(
        done.iter().map(|a| a.next_attempt_at).collect::<Vec<_>>(),
    )
    .bind::<Array<Bool>, _>(done.iter().map(|a| a.attempted).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    let done: Vec<&Attempted> = done.iter().filter(|a| a.attempted).collect();
    let column = |f: fn(&Attempted) -> Uuid| done.iter().map(|a| f(a)).collect::<Vec<_>>();
    diesel::sql_query(
        "INSERT INTO webhook_attempts (id, delivery_id, webhook_id, attempt, attempted_at, \
         status, latency_ms, error, next_attempt_at) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], $5::timestamptz[], \
         $6::smallint[], $7::int[], $8::text[], $9::timestamptz[])",
    )
    .bind::<Array<SqlUuid>, _>(done.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(column(|a| a.delivery_id))
    .bind::<Array<SqlUuid>, _>(column(|a| a.webhook_id))
    .bind::<Array<Integer>, _>(done.iter().map(|a| a.attempt).collect::<Vec<_>>())
    .bind::<Array<Timestamptz>, _>(done.iter().map(|a| a.attempted_at).collect::<Vec<_>>())
    .bind::<Array<Nullable<SmallInt>>, _>(done.iter().map(|a| a.status).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(done.iter().map(|a| a.latency_ms).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(done.iter().map(|a| a.error.clone()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(
        done.iter().map(|a| a.next_attempt_at).collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    let gone: Vec<Uuid> = done
        .iter()
        .filter(|a| a.gone)
        .map(|a| a.webhook_id)
        .collect();
    if !gone.is_empty() {
        diesel::sql_query(
            "UPDATE webhooks SET enabled = false, updated_at = now(), \
             disabled_reason = 'the receiver answered 410 Gone' WHERE id = ANY($1)",
        )
        .bind::<Array<SqlUuid>, _>(gone)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// One attempt as `GET /v1/webhooks/{id}/deliveries` lists it.
#[derive(Debug, Clone, QueryableByName)]
pub struct AttemptRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub delivery_id: Uuid,
    #[diesel(sql_type = BigInt)]
    pub position: i64,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    #[diesel(sql_type = Integer)]
    pub attempt: i32,
    #[diesel(sql_type = Timestamptz)]
    pub attempted_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<SmallInt>)]
    pub status: Option<i16>,
    #[diesel(sql_type = Integer)]
    pub latency_ms: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub error: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Text)]
    pub state: String,
}

/// A subscription's attempts, newest first, after `before` (an attempt id) when given.
pub async fn attempts(
    conn: &mut AsyncPgConnection,
    webhook_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> diesel::QueryResult<Vec<AttemptRow>> {
    diesel::sql_query(
        "SELECT a.id, a.delivery_id, d.position, m.event_type, a.attempt, a.attempted_at, \
         a.status, a.latency_ms, a.error, a.next_attempt_at, d.state \
         FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id \
         JOIN webhook_messages m ON m.position = d.position \
         WHERE a.webhook_id = $1 AND ($2::uuid IS NULL OR a.id < $2) \
         ORDER BY a.id DESC LIMIT $3",
    )
    .bind::<SqlUuid, _>(webhook_id)
    .bind::<Nullable<SqlUuid>, _>(before)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

#[derive(QueryableByName)]
struct Oldest {
    #[diesel(sql_type = Nullable<diesel::sql_types::Double>)]
    age_s: Option<f64>,
}

/// How long the oldest pending delivery of an enabled subscription has waited, in seconds (0
/// when none waits; a disabled subscription's wait for it to be enabled again).
pub async fn oldest_pending_age(conn: &mut AsyncPgConnection) -> diesel::QueryResult<f64> {
    let o: Oldest = diesel::sql_query(
        "SELECT extract(epoch FROM now() - min(d.created_at))::float8 AS age_s \
         FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id AND w.enabled \
         WHERE d.state = 'pending'",
    )
    .get_result(conn)
    .await?;
    Ok(o.age_s.unwrap_or(0.0))
}

/// Deletes finished deliveries (and their attempts) made before `before`, and the messages no
/// delivery refers to any more.
pub async fn delete_finished_before(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
) -> diesel::QueryResult<usize> {
    let n = diesel::sql_query(
        "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND created_at < $1",
    )
    .bind::<Timestamptz, _>(before)
    .execute(conn)
    .await?;
    diesel::sql_query(
        "DELETE FROM webhook_messages m WHERE created_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.position = m.position)",
    )
    .bind::<Timestamptz, _>(before)
    .execute(conn)
    .await?;
    Ok(n)
}
