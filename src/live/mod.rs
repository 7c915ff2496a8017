//! Changes as they happen: one LISTEN connection per instance feeds every subscriber.
//!
//! The hub listens on `signal_changes` (the trigger's NOTIFY) with a connection of its own and,
//! on every wake-up, reads the change log after the last position it has sent out, so a lost
//! notification or a lost connection loses nothing: after a reconnect it catches up from the
//! log. Each change is fanned out once to every subscriber of the instance through a bounded
//! broadcast channel; a subscriber too slow to keep up is cut off (it reconnects with
//! `Last-Event-ID` and resumes from the log) instead of being buffered for without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use diesel_async::AsyncPgConnection;
use futures_util::StreamExt;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::config::DatabaseSettings;
use crate::db::signal_json::SignalJson;
use crate::db::{self, changes, changes::Change, lookups, PgPool};
use crate::domain::query::ListFilter;
use crate::json;

pub mod outbound;
pub mod webhooks;

/// How many changes a subscriber may fall behind before it is cut off.
pub const BACKLOG: usize = 1024;

/// How long after its last question the listener asks its connection again whether it is
/// alive, while no notification comes (a connection can go dead without a word: a dropped
/// network path, a frozen server). Each answer confirms the cache for [`TRUSTED_FOR_MS`] from
/// when its question was asked, so the next question does not wait for the previous answer:
/// under a load that takes every core, answers took up to 613 ms (`docs/benchmark.md`,
/// fifteenth run), and with one question at a time the cache lapsed whenever two slow answers
/// followed each other.
const QUIET: Duration = Duration::from_millis(100);
/// How many of those questions may wait for their answers at once.
const ASKED_AT_ONCE: usize = 8;
/// How long (ms) the cache trusts a confirmation that every change committed before it has
/// been sent out: a change on another instance reaches this one's readers within this, plus
/// the catch-up's own time, even when the listener has lost its connection unawares.
pub const TRUSTED_FOR_MS: u64 = 800;
/// Without a notification for this long, the log is read anyway.
const READ_ANYWAY: Duration = Duration::from_secs(60);

/// One change, as every subscriber sends it.
#[derive(Debug)]
pub struct Event {
    pub change: Change,
    /// The event in `text/event-stream` form, made once for every subscriber: `id:` the
    /// position, `event:` the kind, `data:` the signal as `GET /v1/signals/{id_or_slug}`
    /// returns it, or `{"id", "slug"}` for a deletion (and for a signal deleted since).
    pub sse: Bytes,
}

/// What each change of a page carries to subscribers and webhooks, in order: the signal as
/// `GET /v1/signals/{id_or_slug}` returns it when the changes are read (one statement for the
/// page), or `{"id", "slug"}` for a deletion (and for a signal deleted since).
pub async fn data(
    conn: &mut AsyncPgConnection,
    changes: &[Change],
) -> diesel::QueryResult<Vec<Vec<u8>>> {
    let ids: Vec<Uuid> = changes
        .iter()
        .filter(|c| c.kind != "deleted")
        .map(|c| c.signal_id)
        .collect();
    let found: HashMap<Uuid, SignalJson> = lookups::find_many(conn, &ids)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    Ok(changes
        .iter()
        .map(|change| {
            let current = match change.kind.as_str() {
                "deleted" => None,
                // The same signal twice in a page: each change carries its current state.
                _ => found.get(&change.signal_id).cloned(),
            };
            match current {
                Some(signal) => signal.into_bytes(),
                None => {
                    let mut out = b"{\"id\":".to_vec();
                    json::write_uuid(&mut out, &change.signal_id);
                    out.extend_from_slice(b",\"slug\":");
                    json::write_str(&mut out, &change.slug);
                    out.push(b'}');
                    out
                }
            }
        })
        .collect())
}

/// Whether a change concerns a subscriber with this filter: a creation that matches, a
/// deletion of one that matched, an update that matches before or after.
pub fn concerns(filter: &ListFilter, change: &Change) -> bool {
    let matches =
        |state: &Option<serde_json::Value>| state.as_ref().is_some_and(|s| filter.matches_state(s));
    matches(&change.before) || matches(&change.after)
}

/// The events of a page of changes, in order.
pub async fn events(
    conn: &mut AsyncPgConnection,
    changes: Vec<Change>,
) -> diesel::QueryResult<Vec<Event>> {
    let data = data(conn, &changes).await?;
    Ok(changes
        .into_iter()
        .zip(data)
        .map(|(change, data)| {
            let mut sse = Vec::with_capacity(data.len() + 64);
            sse.extend_from_slice(b"id: ");
            sse.extend_from_slice(change.position.to_string().as_bytes());
            sse.extend_from_slice(b"\nevent: signal.");
            sse.extend_from_slice(change.kind.as_bytes());
            sse.extend_from_slice(b"\ndata: ");
            sse.extend_from_slice(&data);
            sse.extend_from_slice(b"\n\n");
            Event {
                change,
                sse: Bytes::from(sse),
            }
        })
        .collect())
}

pub struct Hub {
    tx: broadcast::Sender<Arc<Event>>,
    /// The last position sent out.
    last: AtomicI64,
    listening: AtomicBool,
    /// When ([`Hub::millis`]) the listener last confirmed that every change committed before
    /// then has been sent out; 0: never.
    confirmed: AtomicU64,
    started: Instant,
    open: AtomicUsize,
    /// Streams cut off for falling more than [`BACKLOG`] changes behind (for `/metrics`).
    pub cut_off: AtomicU64,
    max_streams: usize,
    pool: PgPool,
    /// The primary's WAL position when a change was last read from the log (before it was sent
    /// out): a replica that has replayed it has every change sent out so far.
    seen_lsn: AtomicU64,
    /// A WAL position every change up to which has been sent out (and seen by `on_change`).
    processed_lsn: AtomicU64,
    /// Called, in order, before the changes of a catch-up are sent out (the cache empties).
    on_change: std::sync::Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
    /// True once the service is shutting down: open streams end (their clients reconnect,
    /// to another instance, and resume), so they do not hold the shutdown up.
    closing: tokio::sync::watch::Sender<bool>,
}

/// Counts an open stream while it lives.
pub struct StreamSlot(Arc<Hub>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Hub {
    /// The hub, and its listener running in the background.
    pub async fn start(
        url: String,
        settings: DatabaseSettings,
        pool: PgPool,
        max_streams: usize,
    ) -> Result<Arc<Hub>, crate::Fatal> {
        // Every change committed from now on is sent out: the position to go on from is read
        // before the service serves (else a change committed before the listener's first
        // wake-up would be taken for an old one).
        // What a replica must have replayed to be as new as every change before that position
        // is read after it: a change committed before this instance started must not be read
        // (and cached) from a replica that has not replayed it.
        let (newest, lsn) = match db::conn(&pool).await {
            Ok(mut conn) => {
                let newest = changes::bounds(&mut conn)
                    .await
                    .map_err(|e| crate::Fatal(format!("cannot read the change log: {e}")))?
                    .1;
                let lsn = db::replicas::primary_lsn(&mut conn)
                    .await
                    .map_err(|e| crate::Fatal(format!("cannot read the WAL position: {e}")))?;
                (newest, lsn)
            }
            Err(e) => return Err(crate::Fatal(format!("cannot read the change log: {e}"))),
        };
        let (tx, _) = broadcast::channel(BACKLOG);
        let hub = Arc::new(Hub {
            tx,
            last: AtomicI64::new(newest.unwrap_or(0)),
            listening: AtomicBool::new(false),
            confirmed: AtomicU64::new(0),
            started: Instant::now(),
            open: AtomicUsize::new(0),
            cut_off: AtomicU64::new(0),
            max_streams,
            pool,
            closing: tokio::sync::watch::channel(false).0,
            seen_lsn: AtomicU64::new(lsn),
            processed_lsn: AtomicU64::new(0),
            on_change: std::sync::Mutex::new(Vec::new()),
        });
        actix_web::rt::spawn(hub.clone().listen(url, settings));
        Ok(hub)
    }

    /// See the field: what a read from a replica must have replayed to be as new as the changes
    /// sent out.
    pub fn seen_lsn(&self) -> u64 {
        self.seen_lsn.load(Ordering::Acquire)
    }

    /// Raises [`Hub::seen_lsn`] to a position the primary's WAL has reached (a write made here).
    pub fn saw(&self, lsn: u64) {
        self.seen_lsn.fetch_max(lsn, Ordering::AcqRel);
    }

    /// A WAL position every change up to which has been sent out: a client's write at or before
    /// it is known here.
    pub fn processed_lsn(&self) -> u64 {
        self.processed_lsn.load(Ordering::Acquire)
    }

    /// Calls `f` whenever changes are about to be sent out (before they are).
    pub fn on_change(&self, f: impl Fn() + Send + Sync + 'static) {
        self.on_change
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(f));
    }

    /// Ends every open stream (at shutdown).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Changes to true when the streams are to end.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A slot for one more open stream, unless `SIGNALS_MAX_STREAMS` are open.
    pub fn open_stream(self: &Arc<Self>) -> Option<StreamSlot> {
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        let slot = StreamSlot(self.clone());
        (before < self.max_streams).then_some(slot)
    }

    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Whether the listener is connected and caught up with the change log as of its last
    /// wake-up (it may since have lost its connection without knowing; see `caught_up`).
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Whether every change committed more than [`TRUSTED_FOR_MS`] ago has been sent out (and the
    /// cache emptied of what it changed): what the cache needs to be trusted. The listener
    /// asks every [`QUIET`] (without waiting for earlier answers) and confirms it with each
    /// answer, as of its question, while its connection answers and its catch-ups succeed; a
    /// connection that went dead silently, or a catch-up that hangs, stops the confirmations,
    /// and the cache is bypassed once the last one is older than that.
    pub fn caught_up(&self) -> bool {
        let confirmed = self.confirmed.load(Ordering::Acquire);
        self.listening() && confirmed != 0 && self.millis() < confirmed + TRUSTED_FOR_MS
    }

    /// Milliseconds since the hub started, plus one (0 stands for never).
    fn millis(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - TRUSTED_FOR_MS) + 1
    }

    async fn listen(self: Arc<Self>, url: String, settings: DatabaseSettings) {
        loop {
            match Listener::open(&url, &settings).await {
                Ok(listener) => {
                    // While it was away, changes may have come and gone from the log (pruned
                    // after SIGNALS_EVENTS_RETENTION): the cache starts again empty.
                    self.tell_listeners();
                    self.keep_listening(&listener, settings.db_timeout()).await;
                }
                Err(e) => tracing::warn!(error = %e, "live: cannot listen"),
            }
            self.listening.store(false, Ordering::Release);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Catches up whenever a notification comes; meanwhile asks the listening connection every
    /// [`QUIET`] whether it is alive, without waiting for the previous answer (up to
    /// [`ASKED_AT_ONCE`] questions in flight). Returns once it is not: it failed, or its oldest
    /// question got no answer within `lost_after` (`SIGNALS_DB_TIMEOUT_MS`). A late answer is
    /// not a lost connection: under a load that takes every core PostgreSQL answered `SELECT 1`
    /// in 150–650 ms now and then (`docs/benchmark.md`, fifteenth run), and giving up then
    /// emptied the cache and bypassed it until the listener was back. The cache's trust does
    /// not wait for this: it lapses [`TRUSTED_FOR_MS`] after the last confirmation. Each answer
    /// confirms the moment its own question was asked, so answers that come late but together
    /// (the connection's backend waited for a core) confirm up to the last question, where one
    /// question at a time confirmed only the first.
    async fn keep_listening(&self, listener: &Listener, lost_after: Duration) {
        let heard = &listener.heard;
        // Every change committed after LISTEN took effect is notified; the ones before are in
        // the log the first catch-up reads.
        let mut since = self.millis();
        loop {
            // The notifications counted before the catch-up begins are read with it.
            let known = heard.count.load(Ordering::Acquire);
            let Some(settled) = self.catch_up().await else {
                return;
            };
            let read_at = Instant::now();
            // Every change committed before `since` has been sent out now.
            self.confirmed.fetch_max(since, Ordering::AcqRel);
            // The questions waiting for their answers, in the order asked, and when each was.
            let mut answers = futures_util::stream::FuturesOrdered::new();
            let mut waiting: std::collections::VecDeque<Instant> = Default::default();
            let mut next = read_at + QUIET;
            loop {
                if heard.ended.load(Ordering::Acquire) {
                    return;
                }
                if heard.count.load(Ordering::Acquire) != known {
                    break;
                }
                let lost = waiting.front().map(|asked| *asked + lost_after);
                tokio::select! {
                    () = heard.wake.notified() => {}
                    Some((at, answer)) = answers.next(), if !answers.is_empty() => {
                        waiting.pop_front();
                        if let Err(e) = answer {
                            // When the connection ended, the task that drove it said why.
                            if !heard.ended.load(Ordering::Acquire) {
                                tracing::warn!(error = %e, "live: the listening connection failed");
                            }
                            return;
                        }
                        // PostgreSQL sends the notifications of changes committed before a
                        // question ahead of its answer, and they are counted before the answer
                        // is handed on: with none since the catch-up began, nothing committed
                        // before `at` is left to send out.
                        if heard.count.load(Ordering::Acquire) != known {
                            break;
                        }
                        // A writer was committing at the last read and may have rolled back
                        // (no notification comes then): read again until the position settles.
                        // And a notification can be lost (the queue of notifications full): the
                        // log is read anyway now and then.
                        if !settled || read_at.elapsed() >= READ_ANYWAY {
                            break;
                        }
                        self.confirmed.fetch_max(at, Ordering::AcqRel);
                    }
                    () = tokio::time::sleep_until(next.into()), if answers.len() < ASKED_AT_ONCE => {
                        let at = self.millis();
                        waiting.push_back(Instant::now());
                        let client = &listener.client;
                        answers.push_back(async move { (at, client.batch_execute("SELECT 1").await) });
                        next = Instant::now() + QUIET;
                    }
                    () = tokio::time::sleep_until(lost.unwrap_or(next).into()), if lost.is_some() => {
                        tracing::warn!("live: the listening connection does not answer");
                        return;
                    }
                }
            }
            since = self.millis();
        }
    }

    /// Calls the `on_change` callbacks (the cache empties).
    fn tell_listeners(&self) {
        for f in self
            .on_change
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            f();
        }
    }

    /// Sends out every change after the last one sent, in order; `None` when the log could not
    /// be read to its end (the listener is then not counted as caught up), else whether the WAL
    /// position it reached was settled ([`db::replicas::settled_lsn`]: no writer was
    /// committing), so that `processed_lsn` moved up to it.
    async fn catch_up(&self) -> Option<bool> {
        let caught_up = self.send_new_changes().await;
        self.listening.store(caught_up.is_some(), Ordering::Release);
        caught_up
    }

    async fn send_new_changes(&self) -> Option<bool> {
        let Ok(mut conn) = db::conn(&self.pool).await else {
            return None;
        };
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            // Every change committed at or before this position is in the pages read from here
            // (none while a writer is committing: its notification wakes the listener again).
            let settled = match db::replicas::settled_lsn(&mut conn).await {
                Ok(lsn) => lsn,
                Err(e) => {
                    tracing::warn!(error = %e, "live: cannot read the WAL position");
                    return None;
                }
            };
            let page = match changes::after(&mut conn, last, 500).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "live: cannot read the change log");
                    return None;
                }
            };
            let before = settled.unwrap_or(0);
            if page.is_empty() {
                self.processed_lsn.fetch_max(before, Ordering::AcqRel);
                return Some(settled.is_some());
            }
            // At or after every change of the page: what a replica must have replayed to be as
            // new as them. Taken, and the listeners told, before the changes go out.
            match db::replicas::primary_lsn(&mut conn).await {
                Ok(lsn) => self.saw(lsn),
                Err(e) => {
                    tracing::warn!(error = %e, "live: cannot read the WAL position");
                    return None;
                }
            }
            self.tell_listeners();
            let full = page.len() == 500;
            let events = match events(&mut conn, page).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "live: cannot read the changed signals");
                    return None;
                }
            };
            for event in events {
                last = event.change.position;
                // No subscriber is no error.
                let _ = self.tx.send(Arc::new(event));
                self.last.store(last, Ordering::Relaxed);
            }
            if !full {
                self.processed_lsn.fetch_max(before, Ordering::AcqRel);
            }
        }
    }
}

/// The listening connection: a tokio-postgres client, and a task of its own that drives the
/// connection and counts the notifications it brings (each only says "read the log"). Its
/// questions are sent without waiting for earlier answers, which diesel-async's connection
/// allows only through a shared borrow, while its notifications need an exclusive one.
struct Listener {
    client: tokio_postgres::Client,
    heard: Arc<Heard>,
    driver: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Heard {
    /// Notifications received so far.
    count: AtomicU64,
    /// The connection failed or closed.
    ended: AtomicBool,
    /// Woken by each notification and by the end.
    wake: tokio::sync::Notify,
}

impl Listener {
    async fn open(url: &str, settings: &DatabaseSettings) -> Result<Listener, String> {
        let mut config = db::connect_config(url, settings).map_err(|e| e.0)?;
        // Named, so operators (and the tests) can tell it in pg_stat_activity.
        config.application_name("signals listener");
        let (client, mut connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let heard = Arc::new(Heard::default());
        let driver = actix_web::rt::spawn({
            let heard = heard.clone();
            async move {
                // The connection's messages are read in order, so a notification is counted
                // before any answer that came after it is handed on.
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                            heard.count.fetch_add(1, Ordering::AcqRel);
                            heard.wake.notify_one();
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "live: the listening connection failed");
                            break;
                        }
                        None => break,
                    }
                }
                heard.ended.store(true, Ordering::Release);
                heard.wake.notify_one();
            }
        });
        let listener = Listener {
            client,
            heard,
            driver,
        };
        let listen = listener.client.batch_execute("LISTEN signal_changes");
        match tokio::time::timeout(settings.db_timeout(), listen).await {
            Ok(Ok(())) => Ok(listener),
            Ok(Err(e)) => Err(format!("cannot LISTEN: {e}")),
            Err(_) => Err("LISTEN got no answer".into()),
        }
    }
}

impl Drop for Listener {
    /// A connection that went silent may never end by itself: its task is stopped.
    fn drop(&mut self) {
        self.driver.abort();
    }
}
