//! Lookups of one signal by id or slug, on a worker's shared, pipelined connection.

use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::signals;
use super::signal_json::{self, SignalJson};
use super::{sql_text, DbError, SharedConn};
use crate::domain::signal::SignalRef;

/// One signal as its JSON representation. Takes the connection by shared reference, so that
/// lookups can share one connection and have their statements pipelined on it
/// ([`super::SharedConn`]).
pub async fn find(
    conn: &AsyncPgConnection,
    r: &SignalRef,
) -> diesel::QueryResult<Option<SignalJson>> {
    // Two fixed query types rather than one boxed query: diesel finds their prepared statements
    // by type.
    let mut conn = conn;
    match r {
        SignalRef::Id(id) => find_by_id(*id).first(&mut conn).await.optional(),
        SignalRef::Slug(slug) => find_by_slug(slug).first(&mut conn).await.optional(),
    }
}

/// [`find`] on a worker's shared connection, within [`SharedConn::limit`] (else `Unavailable`).
/// When the connection turns out closed (a killed backend, a restarted database), it is let go
/// and the lookup is tried once more on a new one; the lookup only reads, so that is harmless.
/// Other errors, a statement timeout among them, are answered as they are, and the connection
/// is kept.
pub async fn lookup(shared: &SharedConn, r: &SignalRef) -> Result<Option<SignalJson>, DbError> {
    let used = std::cell::RefCell::new(None);
    let attempts = async {
        let mut retried = false;
        loop {
            let conn = shared.get().await?;
            *used.borrow_mut() = Some(conn.clone());
            match find(&conn, r).await {
                Ok(found) => return Ok(found),
                Err(e) if !retried && connection_lost(&e) => {
                    shared.discard(&conn);
                    // Back to the pool with it (it has room for one), once the other lookups
                    // on it are done too.
                    used.borrow_mut().take();
                    drop(conn);
                    tracing::warn!(error = %e, "the shared connection is lost; trying a new one");
                    retried = true;
                }
                Err(e) => {
                    if connection_lost(&e) {
                        shared.discard(&conn);
                    }
                    return Err(e.into());
                }
            }
        }
    };
    match tokio::time::timeout(shared.limit(), attempts).await {
        Ok(result) => result,
        Err(_) => {
            // Stuck behind a statement, or a connection that no longer answers: the next
            // lookups start on a new one.
            if let Some(conn) = used.borrow().as_ref() {
                shared.discard(conn);
            }
            Err(DbError::Unavailable(format!(
                "a lookup took longer than {} ms",
                shared.limit().as_millis()
            )))
        }
    }
}

/// Whether the shared connection may be broken by this failure: it is let go then (a new one is
/// cheap), also for the database's own conditions (a terminated backend among them).
fn connection_lost(e: &diesel::result::Error) -> bool {
    matches!(
        super::classify(e),
        super::Failure::ConnectionLost | super::Failure::Database
    )
}

/// The signals with these ids (those that exist, in no order), in one statement.
pub async fn find_many(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> diesel::QueryResult<Vec<SignalJson>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    signals::table
        .select(signal_json::COLUMNS)
        .filter(signals::id.eq_any(ids))
        .load(conn)
        .await
}

/// The SQL text `find` sends (with `$n` placeholders), as [`list_sql`] does for lists.
pub fn find_sql(r: &SignalRef) -> String {
    match r {
        SignalRef::Id(id) => sql_text(&find_by_id(*id).limit(1)),
        SignalRef::Slug(slug) => sql_text(&find_by_slug(slug).limit(1)),
    }
}

type FindBy<Column, Value> = diesel::dsl::Filter<
    diesel::dsl::Select<signals::table, signal_json::Columns>,
    diesel::dsl::Eq<Column, Value>,
>;

fn find_by_id(id: Uuid) -> FindBy<signals::id, Uuid> {
    signals::table
        .select(signal_json::COLUMNS)
        .filter(signals::id.eq(id))
}

fn find_by_slug(slug: &str) -> FindBy<signals::slug, &str> {
    signals::table
        .select(signal_json::COLUMNS)
        .filter(signals::slug.eq(slug))
}
