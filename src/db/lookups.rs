//! Lookups of one signal by id or slug, on a worker's shared, pipelined connection.

use std::cell::{Cell, RefCell};

use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::oneshot;
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
///
/// Lookups by id that arrive while one is running wait for it and then go together, in one
/// statement (`WHERE id = ANY($1)`): PostgreSQL spends about half as much a lookup then, and the
/// worker sends and receives one statement instead of many. One of the waiting lookups leads:
/// it sends the statement for every lookup queued at that moment and hands each its row; when it
/// is done, the first lookup still waiting leads the next. A lookup alone is sent as before, by
/// itself (`WHERE id = $1`).
pub async fn lookup(shared: &SharedConn, r: &SignalRef) -> Result<Option<SignalJson>, DbError> {
    // One limit for the whole lookup, its wait for a turn included.
    let deadline = tokio::time::Instant::now() + shared.limit();
    let id = match r {
        SignalRef::Id(id) => *id,
        SignalRef::Slug(_) => return one(on_shared(shared, Read::One(r), deadline).await),
    };
    let queue = &shared.by_id;
    if queue.leaders.get() == 0 {
        return lead(shared, id, deadline).await;
    }
    let (tx, rx) = oneshot::channel();
    queue.waiting.borrow_mut().push((id, tx));
    let mut waiting = Waiting { queue, rx };
    match tokio::time::timeout_at(deadline, &mut waiting.rx).await {
        Ok(Ok(Turn::Found(found))) => found,
        // Its turn to lead, or the leader that took it went away (its request was dropped).
        Ok(Ok(Turn::Lead) | Err(_)) => lead(shared, id, deadline).await,
        Err(_) => Err(too_long(shared)),
    }
}

fn too_long(shared: &SharedConn) -> DbError {
    DbError::Unavailable(format!(
        "a lookup took longer than {} ms",
        shared.limit().as_millis()
    ))
}

/// Lookups by id waiting for a statement on a worker's shared connection.
#[derive(Default)]
pub struct IdQueue {
    waiting: RefCell<Vec<(Uuid, oneshot::Sender<Turn>)>>,
    leaders: Cell<usize>,
}

enum Turn {
    Found(Result<Option<SignalJson>, DbError>),
    Lead,
}

/// At most this many ids in one statement.
const MOST_IDS: usize = 64;

/// Looks up `id` with every lookup waiting now, and hands each its answer.
async fn lead(
    shared: &SharedConn,
    id: Uuid,
    deadline: tokio::time::Instant,
) -> Result<Option<SignalJson>, DbError> {
    let queue = &shared.by_id;
    let _leading = Leading::start(queue);
    let others: Vec<(Uuid, oneshot::Sender<Turn>)> = {
        let mut waiting = queue.waiting.borrow_mut();
        let n = waiting.len().min(MOST_IDS - 1);
        waiting.drain(..n).collect()
    };
    if others.is_empty() {
        return one(on_shared(shared, Read::One(&SignalRef::Id(id)), deadline).await);
    }
    let mut ids: Vec<Uuid> = others.iter().map(|(id, _)| *id).collect();
    ids.push(id);
    let rows = on_shared(shared, Read::Ids(&ids), deadline).await;
    let row = |rows: &[SignalJson], id: Uuid| rows.iter().find(|r| r.id == id).cloned();
    for (other, tx) in others {
        let answer = match &rows {
            Ok(rows) => Ok(row(rows, other)),
            Err(e) => Err(DbError::Unavailable(e.to_string())),
        };
        // A lookup that gave up waiting is gone: nothing to hand it.
        let _ = tx.send(Turn::Found(answer));
    }
    rows.map(|rows| row(&rows, id))
}

/// Counts a leader while it leads; when it stops (done, failed or dropped with its request),
/// the first lookup still waiting leads next.
struct Leading<'a>(&'a IdQueue);

impl<'a> Leading<'a> {
    fn start(queue: &'a IdQueue) -> Self {
        queue.leaders.set(queue.leaders.get() + 1);
        Leading(queue)
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.leaders.set(self.0.leaders.get() - 1);
        hand_over(self.0);
    }
}

/// A lookup waiting for its answer. Dropped with its request after it was told to lead but
/// before it could, it passes the turn on, so the lookups behind it are not left waiting.
struct Waiting<'a> {
    queue: &'a IdQueue,
    rx: oneshot::Receiver<Turn>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(Turn::Lead) = self.rx.try_recv() {
            hand_over(self.queue);
        }
    }
}

/// Tells the first lookup still waiting to lead.
fn hand_over(queue: &IdQueue) {
    let mut waiting = queue.waiting.borrow_mut();
    while !waiting.is_empty() {
        let (_, tx) = waiting.remove(0);
        if tx.send(Turn::Lead).is_ok() {
            break;
        }
    }
}

/// What a lookup reads.
enum Read<'a> {
    One(&'a SignalRef),
    /// In one statement.
    Ids(&'a [Uuid]),
}

impl Read<'_> {
    async fn run(&self, conn: &AsyncPgConnection) -> diesel::QueryResult<Vec<SignalJson>> {
        match self {
            Read::One(r) => Ok(find(conn, r).await?.into_iter().collect()),
            Read::Ids(ids) => {
                let mut conn = conn;
                find_by_ids(ids).load(&mut conn).await
            }
        }
    }
}

fn one(rows: Result<Vec<SignalJson>, DbError>) -> Result<Option<SignalJson>, DbError> {
    rows.map(|rows| rows.into_iter().next())
}

/// Runs a read on a worker's shared connection by `deadline`. When the
/// connection turns out closed (a killed backend, a restarted database), it is let go and the
/// read is tried once more on a new one; it only reads, so that is harmless. Other errors, a
/// statement timeout among them, are answered as they are, and the connection is kept.
async fn on_shared(
    shared: &SharedConn,
    read: Read<'_>,
    deadline: tokio::time::Instant,
) -> Result<Vec<SignalJson>, DbError> {
    let used = RefCell::new(None);
    let attempts = async {
        let mut retried = false;
        loop {
            let conn = shared.get().await?;
            *used.borrow_mut() = Some(conn.clone());
            match read.run(&conn).await {
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
    match tokio::time::timeout_at(deadline, attempts).await {
        Ok(result) => result,
        Err(_) => {
            // Stuck behind a statement, or a connection that no longer answers: the next
            // lookups start on a new one.
            if let Some(conn) = used.borrow().as_ref() {
                shared.discard(conn);
            }
            Err(too_long(shared))
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
    find_by_ids(ids).load(conn).await
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

type FindByIds<'a> = diesel::dsl::Filter<
    diesel::dsl::Select<signals::table, signal_json::Columns>,
    diesel::dsl::EqAny<signals::id, &'a [Uuid]>,
>;

fn find_by_ids(ids: &[Uuid]) -> FindByIds<'_> {
    signals::table
        .select(signal_json::COLUMNS)
        .filter(signals::id.eq_any(ids))
}

fn find_by_slug(slug: &str) -> FindBy<signals::slug, &str> {
    signals::table
        .select(signal_json::COLUMNS)
        .filter(signals::slug.eq(slug))
}
