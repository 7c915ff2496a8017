//! Database access: the connection pool, embedded migrations and the queries per resource.

pub mod changes;
pub mod embedded;
pub mod facets;
mod fixed_sql;
pub mod idempotency;
pub mod keys;
pub mod limits;
pub mod lists;
pub mod lookups;
pub mod replicas;
pub mod rows;
pub mod schema;
pub mod sealed;
pub mod search_index;
pub mod signal_json;
pub mod webhooks;
pub mod writes;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::AsyncPgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use crate::config::DatabaseSettings;
use crate::Fatal;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

pub type PgPool = Pool<AsyncPgConnection>;
pub type PgConn = Object<AsyncPgConnection>;

/// How PostgreSQL plans the statements of a pool's connections. Statements are prepared once per
/// connection and kept (diesel's statement cache), which spares parsing them on every request;
/// what remains to choose is whether a kept statement may also keep its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plans {
    /// PostgreSQL's default: after five executions a statement may settle on one generic plan.
    /// Right for lookups by key and for writes, whose best plan never depends on the values.
    Reused,
    /// Every execution is planned for its values (`plan_cache_mode = force_custom_plan`). For
    /// list queries, whose best plan depends on how common the values are: a rare tag wants the
    /// tag index, a common one a walk down the time index, and a generic plan settled on after
    /// a few rare tags takes seconds for a common one.
    PerExecution,
    /// One plan for every execution (`plan_cache_mode = force_generic_plan`): for list queries
    /// whose best plan is the same whatever the values (`ListFilter::one_plan_fits_all`), which
    /// then skip planning (about 15 % of PostgreSQL's work for the newest signals above a score:
    /// PostgreSQL's own choice, `auto`, keeps planning them, as a `LIMIT $n` makes the generic
    /// plan look costlier than it is).
    Generic,
}

/// Makes connection pools for one database: the URL is checked once, so making a pool (one per
/// HTTP worker) cannot fail afterwards.
#[derive(Clone)]
pub struct PoolFactory {
    config: tokio_postgres::Config,
    url: String,
    settings: DatabaseSettings,
}

impl PoolFactory {
    pub fn new(url: &str, settings: &DatabaseSettings) -> Result<Self, Fatal> {
        Ok(PoolFactory {
            config: connect_config(url, settings)?,
            url: url.to_owned(),
            settings: settings.clone(),
        })
    }

    /// A pool of at most `max_size` connections whose statements PostgreSQL plans as `plans`
    /// says. Nothing connects until the first checkout; a checkout waits at most `db_timeout`
    /// for a free or new connection, so a stuck database answers instead of hanging.
    pub fn pool(&self, max_size: usize, plans: Plans) -> PgPool {
        let mut config = self.config.clone();
        let mode = match plans {
            Plans::Reused => None,
            Plans::PerExecution => Some("force_custom_plan"),
            Plans::Generic => Some("force_generic_plan"),
        };
        if let Some(mode) = mode {
            let options = config.get_options().unwrap_or_default();
            config.options(format!("{options} -c plan_cache_mode={mode}"));
        }
        let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
        // Checking a connection with a query on every checkout would double the round trips of
        // a read; a broken connection is detected by the driver and dropped instead.
        manager_config.recycling_method = RecyclingMethod::Fast;
        manager_config.custom_setup = Box::new(move |_url| connect(config.clone()));
        let manager = AsyncDieselConnectionManager::new_with_config(&self.url, manager_config);
        let timeout = Some(self.settings.db_timeout());
        Pool::builder(manager)
            .max_size(max_size.max(1))
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a pool with a runtime for its timeouts always builds")
    }
}

/// One pool of `pool_size` connections (for the CLI, tests and tools).
pub fn pool(url: &str, settings: &DatabaseSettings) -> Result<PgPool, Fatal> {
    Ok(PoolFactory::new(url, settings)?.pool(settings.pool_size, Plans::Reused))
}

pub(crate) fn connect_config(
    url: &str,
    settings: &DatabaseSettings,
) -> Result<tokio_postgres::Config, Fatal> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| Fatal(format!("DATABASE_URL is not a valid PostgreSQL URL: {e}")))?;
    config.connect_timeout(settings.db_timeout());
    config.application_name("signals");
    // No JIT: the service's statements read a page, a signal or a count, where compiling costs
    // milliseconds and gains nothing. PostgreSQL compiles when a plan's estimated cost passes
    // `jit_above_cost`, and a generic plan (`Plans::Generic`) is costed for a tenth of the
    // table: once the rows of `signals` were kept whole (migration 12) the heap was 2.6 times
    // larger, Q1's generic plan passed the threshold, and every execution spent 8 ms compiling
    // (315 statements/s instead of 4,000).
    config.options(format!(
        "-c statement_timeout={} -c idle_in_transaction_session_timeout=60000 -c jit=off",
        settings.statement_timeout_ms
    ));
    Ok(config)
}

fn connect(
    config: tokio_postgres::Config,
) -> BoxFuture<'static, diesel::ConnectionResult<AsyncPgConnection>> {
    async move {
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
        AsyncPgConnection::try_from_client_and_connection(client, connection).await
    }
    .boxed()
}

/// Opens one connection outside the pool (for the CLI and set-up work).
pub async fn connect_once(
    url: &str,
    settings: &DatabaseSettings,
) -> Result<AsyncPgConnection, Fatal> {
    connect(connect_config(url, settings)?)
        .await
        .map_err(|e| Fatal(format!("cannot connect to the database: {e}")))
}

/// A connection for migrations: no statement timeout, since a migration of a large table may
/// rightly take long.
async fn migration_connection(
    url: &str,
    settings: &DatabaseSettings,
) -> Result<AsyncPgConnection, Fatal> {
    use diesel_async::SimpleAsyncConnection;
    let mut conn = connect_once(url, settings).await?;
    conn.batch_execute("SET statement_timeout = 0")
        .await
        .map_err(|e| Fatal(format!("cannot prepare the migration connection: {e}")))?;
    Ok(conn)
}

/// Runs `work` with diesel's migration harness. The harness is synchronous, so it runs on a
/// blocking thread through the async connection wrapper (diesel-async's async harness panics on
/// actix's runtime).
async fn with_harness<T: Send + 'static>(
    url: &str,
    settings: &DatabaseSettings,
    work: impl FnOnce(&mut AsyncConnectionWrapper<AsyncPgConnection>) -> diesel::migration::Result<T>
        + Send
        + 'static,
) -> Result<T, Fatal> {
    let conn = migration_connection(url, settings).await?;
    tokio::task::spawn_blocking(move || {
        let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> =
            AsyncConnectionWrapper::from(conn);
        work(&mut wrapper).map_err(|e| Fatal(format!("migration failed: {e}")))
    })
    .await
    .map_err(|e| Fatal(format!("migration task failed: {e}")))?
}

/// The advisory lock that makes processes migrating one database at once take turns (diesel's
/// harness takes none: two would both apply a migration, and one fail).
const MIGRATION_LOCK: i64 = 0x5349_474e_414c_5301;

/// Runs pending migrations; returns the versions applied. Processes starting together on one
/// database (a `serve` beside `signals keys create`, two instances upgraded at once) take turns:
/// the first applies what is pending, the others find nothing left.
pub async fn migrate(url: &str, settings: &DatabaseSettings) -> Result<Vec<String>, Fatal> {
    with_harness(url, settings, |conn| {
        // Held by the session until the connection closes, after the migrations. (A migration
        // run outside a transaction that builds an index CONCURRENTLY would wait for the
        // snapshot of a process waiting here: take this lock with pg_try_advisory_lock in a
        // loop before adding one.)
        diesel::RunQueryDsl::execute(
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")),
            conn,
        )?;
        let versions = conn.run_pending_migrations(MIGRATIONS)?;
        Ok(versions.iter().map(|v| v.to_string()).collect())
    })
    .await
}

/// Reverts every applied migration (used by the migrations round-trip test).
pub async fn revert_all(url: &str, settings: &DatabaseSettings) -> Result<usize, Fatal> {
    with_harness(url, settings, |conn| {
        Ok(conn.revert_all_migrations(MIGRATIONS)?.len())
    })
    .await
}

/// Reverts the last `count` applied migrations (for tests of what a migration does to data
/// stored before it).
pub async fn revert_last(
    url: &str,
    settings: &DatabaseSettings,
    count: usize,
) -> Result<(), Fatal> {
    with_harness(url, settings, move |conn| {
        for _ in 0..count {
            conn.revert_last_migration(MIGRATIONS)?;
        }
        Ok(())
    })
    .await
}

/// Why a database call failed, as far as a handler needs to know.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had in time, or the database stopped answering.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// What a failed statement means for the request, decided in this one place from the error's
/// kind, never from its (localized) message text.
///
/// diesel-async 0.9 keeps the SQLSTATE of eight codes as kinds (23505 unique violation, 40001
/// serialization failure among them) and reports every error without one (a closed connection)
/// as `UnableToSendCommand`; every other SQLSTATE reaches the service as `Unknown`. The service
/// checks every value before it reaches the database, so an `Unknown` database error is a
/// condition of the database — a statement timeout (57014), a deadlock (40P01), a terminated
/// backend (57P01) or a lost connection (08xxx), exhaustion — and is answered 503 with
/// `Retry-After`, its message logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 23505 on this constraint.
    Unique(Option<&'static str>),
    /// 40001: lost a race with another transaction; the same request succeeds when retried.
    Retryable,
    /// The connection closed or failed under the statement (or before it was sent).
    ConnectionLost,
    /// Any other condition of the database (see above).
    Database,
    /// Not the database's: a value diesel could not encode or decode, a missing row.
    Other,
}

/// The constraints whose violation the service answers as such (409 and the like).
const KNOWN_CONSTRAINTS: [&str; 1] = ["signals_slug_key"];

pub fn classify(e: &diesel::result::Error) -> Failure {
    use diesel::result::{DatabaseErrorKind as Kind, Error};
    match e {
        Error::DatabaseError(Kind::UniqueViolation, info) => Failure::Unique(
            KNOWN_CONSTRAINTS
                .iter()
                .copied()
                .find(|c| info.constraint_name() == Some(c)),
        ),
        Error::DatabaseError(Kind::SerializationFailure, _) => Failure::Retryable,
        Error::DatabaseError(Kind::ClosedConnection | Kind::UnableToSendCommand, _) => {
            Failure::ConnectionLost
        }
        Error::DatabaseError(_, _) => Failure::Database,
        _ => Failure::Other,
    }
}

impl From<PoolError> for DbError {
    fn from(e: PoolError) -> Self {
        DbError::Unavailable(e.to_string())
    }
}

/// The pools of every HTTP worker, for the pool gauges of `/metrics`.
#[derive(Default)]
pub struct PoolRegistry(std::sync::Mutex<Vec<PgPool>>);

impl PoolRegistry {
    pub fn add(&self, pool: PgPool) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(pool);
    }

    /// (max size, open, idle, waiting) summed over all pools.
    pub fn totals(&self) -> (usize, usize, usize, usize) {
        let pools = self.0.lock().unwrap_or_else(|e| e.into_inner());
        pools.iter().map(|p| p.status()).fold((0, 0, 0, 0), |t, s| {
            (
                t.0 + s.max_size,
                t.1 + s.size,
                t.2 + s.available,
                t.3 + s.waiting,
            )
        })
    }
}

/// Checks out a connection, turning a timeout or refused connection into `Unavailable`.
pub async fn conn(pool: &PgPool) -> Result<PgConn, DbError> {
    Ok(pool.get().await?)
}

/// The connection shared by the lookups of one HTTP worker, from a pool of one of its own.
/// Their statements are pipelined on it: tokio-postgres writes whatever is queued in one go and
/// PostgreSQL reads it in one go, so under load a lookup no longer wakes a PostgreSQL backend of
/// its own. Only for short statements outside transactions, since a statement waits for those
/// sent before it; [`SharedConn::limit`] bounds that wait.
pub struct SharedConn {
    pool: PgPool,
    limit: Duration,
    current: RefCell<Option<Rc<PgConn>>>,
    /// Held while checking out, so that concurrent lookups wait for that one checkout instead
    /// of queueing in the pool for a connection that stays taken.
    checkout: futures_util::lock::Mutex<()>,
    /// Lookups by id waiting for the next statement on it ([`lookups::lookup`]).
    pub(crate) by_id: lookups::IdQueue,
}

impl SharedConn {
    /// `pool` should hold one connection: this one. `limit` is the longest a statement on it
    /// may take, waiting for the ones before it included.
    pub fn new(pool: PgPool, limit: Duration) -> Self {
        SharedConn {
            pool,
            limit,
            current: RefCell::new(None),
            checkout: futures_util::lock::Mutex::new(()),
            by_id: lookups::IdQueue::default(),
        }
    }

    /// The longest a lookup may take, its wait for a connection included.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// The shared connection, checked out of the pool when there is none yet.
    pub async fn get(&self) -> Result<Rc<PgConn>, DbError> {
        if let Some(conn) = self.current.borrow().as_ref() {
            return Ok(conn.clone());
        }
        let _checking_out = self.checkout.lock().await;
        if let Some(conn) = self.current.borrow().as_ref() {
            return Ok(conn.clone());
        }
        let conn = Rc::new(conn(&self.pool).await?);
        *self.current.borrow_mut() = Some(conn.clone());
        Ok(conn)
    }

    /// Lets go of `conn` once it has failed: the next lookup checks out another, as soon as the
    /// lookups still using this one are done with it (the pool drops it if it is broken).
    pub fn discard(&self, conn: &Rc<PgConn>) {
        let mut current = self.current.borrow_mut();
        if current.as_ref().is_some_and(|c| Rc::ptr_eq(c, conn)) {
            *current = None;
        }
    }
}

/// Whether the database answers a trivial query within `timeout`.
pub async fn ping(pool: &PgPool, timeout: Duration) -> bool {
    use diesel_async::SimpleAsyncConnection;
    let check = async {
        let mut c = conn(pool).await.ok()?;
        c.batch_execute("SELECT 1").await.ok()
    };
    matches!(tokio::time::timeout(timeout, check).await, Ok(Some(())))
}

/// The SQL text of a query with `$n` placeholders, as PostgreSQL receives it (for benchmarks
/// and `EXPLAIN`).
pub fn sql_text<T: diesel::query_builder::QueryFragment<diesel::pg::Pg>>(query: &T) -> String {
    let text = diesel::debug_query::<diesel::pg::Pg, _>(query).to_string();
    text.split(" -- binds: ")
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind as Kind, Error};

    fn database(kind: Kind, message: &str) -> Error {
        Error::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn retentions_parse_with_their_unit() {
        use crate::config::Span;
        assert_eq!("7d".parse::<Span>().unwrap().0.as_secs(), 7 * 86_400);
        assert_eq!("90s".parse::<Span>().unwrap().0.as_secs(), 90);
        for bad in ["7", "0d", "d", "7w", "-1h"] {
            assert!(bad.parse::<Span>().is_err(), "{bad}");
        }
    }

    #[test]
    fn failures_are_classified_by_kind_whatever_the_message_says() {
        // Messages of a German-speaking server, and an English one that says something else.
        for message in [
            "Storniere Anfrage wegen Zeitüberschreitung der Anweisung",
            "Verklemmung (Deadlock) entdeckt",
            "breche Verbindung ab aufgrund von Anweisung des Administrators",
            "terminating connection due to administrator command",
        ] {
            assert_eq!(
                classify(&database(Kind::Unknown, message)),
                Failure::Database
            );
        }
        assert_eq!(
            classify(&database(
                Kind::SerializationFailure,
                "konnte Zugriff nicht serialisieren"
            )),
            Failure::Retryable
        );
        assert_eq!(
            classify(&database(
                Kind::UnableToSendCommand,
                "Verbindung geschlossen"
            )),
            Failure::ConnectionLost
        );
        assert_eq!(classify(&Error::NotFound), Failure::Other);
    }
}
