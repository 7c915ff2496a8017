//! Queries on `idempotency_records`. All of them run inside the transaction of the write they
//! belong to.

use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Bool};
use diesel::upsert::excluded;
use diesel::{
    ExpressionMethods, OptionalExtension, QueryDsl, Queryable, QueryableByName, Selectable,
    SelectableHelper,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::idempotency_records as records;

/// How long a stored response is replayed.
pub const RETENTION_HOURS: i64 = 24;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = records, check_for_backend(Pg))]
pub struct StoredResponse {
    pub fingerprint: Vec<u8>,
    pub status: i16,
    pub body: Vec<u8>,
    pub location: Option<String>,
    pub etag: Option<String>,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Takes the transaction-scoped lock of (key, idempotency key); false when another transaction
/// holds it, i.e. the same request is still in flight.
pub async fn try_lock(
    conn: &mut AsyncPgConnection,
    key_id: Uuid,
    idempotency_key: &str,
) -> diesel::QueryResult<bool> {
    let row: Locked = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
        .bind::<BigInt, _>(lock_id(key_id, idempotency_key))
        .get_result(conn)
        .await?;
    Ok(row.locked)
}

fn lock_id(key_id: Uuid, idempotency_key: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(key_id.as_bytes())
        .chain_update(idempotency_key.as_bytes())
        .finalize();
    i64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The time records made before have expired, by the database's clock (one clock for every
/// instance: the app servers' clocks may differ, and a record must not expire early on one).
fn expired_before() -> diesel::expression::SqlLiteral<diesel::sql_types::Timestamptz> {
    diesel::dsl::sql(&format!("now() - interval '{RETENTION_HOURS} hours'"))
}

/// The unexpired stored response for (key, idempotency key).
pub async fn find(
    conn: &mut AsyncPgConnection,
    key_id: Uuid,
    idempotency_key: &str,
) -> diesel::QueryResult<Option<StoredResponse>> {
    records::table
        .select(StoredResponse::as_select())
        .filter(records::key_id.eq(key_id))
        .filter(records::idempotency_key.eq(idempotency_key))
        .filter(records::created_at.gt(expired_before()))
        .first(conn)
        .await
        .optional()
}

/// Stores a response (replacing an expired record of the same key).
pub async fn store(
    conn: &mut AsyncPgConnection,
    key_id: Uuid,
    idempotency_key: &str,
    response: &StoredResponse,
) -> diesel::QueryResult<()> {
    diesel::insert_into(records::table)
        .values((
            records::key_id.eq(key_id),
            records::idempotency_key.eq(idempotency_key),
            records::fingerprint.eq(&response.fingerprint),
            records::status.eq(response.status),
            records::body.eq(&response.body),
            records::location.eq(&response.location),
            records::etag.eq(&response.etag),
            records::created_at.eq(diesel::dsl::now),
        ))
        .on_conflict((records::key_id, records::idempotency_key))
        .do_update()
        .set((
            records::fingerprint.eq(excluded(records::fingerprint)),
            records::status.eq(excluded(records::status)),
            records::body.eq(excluded(records::body)),
            records::location.eq(excluded(records::location)),
            records::etag.eq(excluded(records::etag)),
            records::created_at.eq(excluded(records::created_at)),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Deletes expired records; returns how many.
pub async fn delete_expired(conn: &mut AsyncPgConnection) -> diesel::QueryResult<usize> {
    diesel::delete(records::table.filter(records::created_at.le(expired_before())))
        .execute(conn)
        .await
}
