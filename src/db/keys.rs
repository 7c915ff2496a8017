//! Queries on the `api_keys` table.

use chrono::{DateTime, Duration, Utc};
use diesel::pg::Pg;
use diesel::{
    ExpressionMethods, OptionalExtension, QueryDsl, Queryable, Selectable, SelectableHelper,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::api_keys;
use crate::domain::key::{GeneratedKey, Scope};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(Pg))]
pub struct KeyRow {
    pub id: Uuid,
    pub name: String,
    pub scope: String,
    pub prefix: String,
    pub secret_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl KeyRow {
    pub fn scope(&self) -> Scope {
        // The column's CHECK constraint admits only the three names.
        self.scope.parse().unwrap_or(Scope::Read)
    }
}

pub async fn create(
    conn: &mut AsyncPgConnection,
    name: &str,
    scope: Scope,
    key: &GeneratedKey,
) -> diesel::QueryResult<KeyRow> {
    diesel::insert_into(api_keys::table)
        .values((
            api_keys::id.eq(Uuid::now_v7()),
            api_keys::name.eq(name),
            api_keys::scope.eq(scope.as_str()),
            api_keys::prefix.eq(&key.prefix),
            api_keys::secret_hash.eq(&key.secret_hash),
        ))
        .returning(KeyRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn list(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<KeyRow>> {
    api_keys::table
        .select(KeyRow::as_select())
        .order(api_keys::created_at.asc())
        .load(conn)
        .await
}

/// The active (not revoked) key with this prefix.
pub async fn find_active(
    conn: &mut AsyncPgConnection,
    prefix: &str,
) -> diesel::QueryResult<Option<KeyRow>> {
    api_keys::table
        .select(KeyRow::as_select())
        .filter(api_keys::prefix.eq(prefix))
        .filter(api_keys::revoked_at.is_null())
        .first(conn)
        .await
        .optional()
}

/// Records a use, at most once a minute per key so reads do not turn into writes.
pub async fn touch(conn: &mut AsyncPgConnection, key: &KeyRow) -> diesel::QueryResult<()> {
    let now = Utc::now();
    if key
        .last_used_at
        .is_some_and(|t| now - t < Duration::minutes(1))
    {
        return Ok(());
    }
    diesel::update(api_keys::table.filter(api_keys::id.eq(key.id)))
        .set(api_keys::last_used_at.eq(now))
        .execute(conn)
        .await
        .map(drop)
}

/// Revokes a key; false when there is no such key or it was already revoked.
pub async fn revoke(conn: &mut AsyncPgConnection, id: Uuid) -> diesel::QueryResult<bool> {
    let n = diesel::update(
        api_keys::table
            .filter(api_keys::id.eq(id))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(Utc::now()))
    .execute(conn)
    .await?;
    Ok(n > 0)
}
