//! An in-process cache of hot reads (one signal, the first page of a list, the facets, the
//! feeds): answers without a database round trip, kept consistent with every write.
//!
//! - **Any change empties it.** A write on this instance empties it when its response is ready
//!   (after its commit), so the writer's next read sees the write; a change committed on any
//!   other instance reaches this one's change listener (`live::Hub`), which empties it before it
//!   sends the change out, within the listener's latency (milliseconds; the stream benchmark
//!   measures it). A read that names its writer's write (`Signals-Read-After`) is answered from
//!   the cache only once the listener has got that far.
//! - **No stale fill.** A read remembers the cache's generation before it asks the database and
//!   stores its answer only if no change emptied the cache meanwhile: an answer read before a
//!   commit can never be kept after it.
//! - **Never older than a change seen.** An answer read from a replica is kept only if the
//!   replica had replayed the primary's WAL up to where the change listener last saw a change.
//! - **Only while listening.** When the instance's change listener is not connected and caught
//!   up, nothing is served from the cache or stored in it (the listener empties it once it has
//!   caught up again).
//! - **One read per answer.** Reads of an answer the cache lacks while another read of it is
//!   asking the database wait for that one and take what it kept, instead of each asking too
//!   (every change empties the cache, and then every client of a hot page missed at once). What
//!   a waiting read takes passes the same checks as any answer found in the cache; when the
//!   first read kept nothing (a change came meanwhile, or it failed) the waiting ones ask
//!   themselves.
//!
//! Bounded by `SIGNALS_CACHE_MB` (oldest entries go first); `0` turns it off.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::cacheable_json;
use super::conditions::IfNoneMatch;

use crate::live::Hub;

/// When a read began, for [`Cache::put`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    generation: u64,
    /// The primary's WAL position when the change listener last saw a change.
    seen: u64,
}

/// One cached answer: what the handler would have made.
#[derive(Debug, Clone)]
pub struct Cached {
    pub body: Bytes,
    pub etag: String,
    /// A list's `Link` to the next page.
    pub link: Option<String>,
    /// A feed's newest change.
    pub updated: Option<DateTime<Utc>>,
}

impl Cached {
    /// A JSON answer (one signal, a list page, a facet page), with a list's `Link`.
    pub fn json(body: Bytes, etag: String, link: Option<String>) -> Cached {
        Cached {
            body,
            etag,
            link,
            updated: None,
        }
    }

    /// The response a JSON answer makes, from the cache or fresh: 304 when the client holds
    /// it, and the list's `Link` either way.
    pub fn respond(&self, held: &IfNoneMatch, public: bool) -> HttpResponse {
        let body = self.body.clone();
        let mut response = cacheable_json(held, self.etag.clone(), public, || body);
        if let Some(link) = self
            .link
            .as_deref()
            .and_then(|l| HeaderValue::from_str(l).ok())
        {
            response.headers_mut().insert(header::LINK, link);
        }
        response
    }

    /// What keeping it under `key` takes: its bytes (kept at their exact size, see
    /// [`Cache::put`]), the key twice (the map's and the order's) and the bookkeeping.
    fn size(&self, key: &str) -> usize {
        self.body.len()
            + self.etag.len()
            + self.link.as_ref().map_or(0, |l| l.len())
            + 2 * key.len()
            + 96
    }
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, Arc<Cached>>,
    /// Keys, oldest first.
    order: VecDeque<String>,
    bytes: usize,
}

pub struct Cache {
    capacity: usize,
    entries: Mutex<Entries>,
    /// Moves on every emptying: a fill started before one is not kept.
    generation: AtomicU64,
    hub: Arc<Hub>,
    /// The keys some read is asking the database for, and how its waiters are woken.
    filling: Mutex<HashMap<String, Arc<Notify>>>,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Reads answered by what another read of the same key had just kept.
    pub shared: AtomicU64,
    /// Reads that could not be answered from the cache because the listener had not sent out
    /// every change they need (not connected and caught up, or behind the client's position).
    pub bypassed: AtomicU64,
}

/// What [`Cache::lookup`] found.
pub enum Lookup<'a> {
    Hit(Arc<Cached>),
    /// Not there: read the database, then [`Fill::keep`] the answer.
    Miss(Fill<'a>),
}

/// A read of one key that the cache could not answer. Reads of the same key that come while it
/// is under way wait for it (at most [`WAIT_AT_MOST`]), until it is kept or dropped.
pub struct Fill<'a> {
    cache: &'a Cache,
    key: String,
    ticket: Ticket,
    /// Set when this is the read the others wait for.
    leading: Option<Arc<Notify>>,
}

/// How long a read waits for another read of the same key before it asks the database itself.
const WAIT_AT_MOST: Duration = Duration::from_secs(2);
/// How many reads of the same key one read waits for in turn (the first may keep nothing when a
/// change comes meanwhile; then one of its waiters asks and the others wait for that one).
const WAITS: u32 = 3;

impl Fill<'_> {
    /// Keeps the answer (as [`Cache::put`] does with this read's ticket) and wakes the reads
    /// that waited for it.
    pub fn keep(self, value: Cached, replayed: Option<u64>) {
        self.cache
            .put(self.key.clone(), value, self.ticket, replayed);
    }

    /// The WAL position the read should be routed for: the client's `needed` and, when its
    /// answer may be kept, the position the listener had seen when the read began (a replica
    /// behind it gives an answer that [`Cache::put`] throws away).
    pub fn needs(&self, needed: u64) -> u64 {
        if self.cache.capacity > 0 && self.cache.usable() {
            needed.max(self.ticket.seen)
        } else {
            needed
        }
    }
}

impl Drop for Fill<'_> {
    fn drop(&mut self) {
        if let Some(notify) = &self.leading {
            let mut filling = self.cache.filling.lock().unwrap_or_else(|e| e.into_inner());
            if filling
                .get(&self.key)
                .is_some_and(|n| Arc::ptr_eq(n, notify))
            {
                filling.remove(&self.key);
            }
            // Under the lock, so a waiter that found this read has its `notified` in place.
            notify.notify_waiters();
        }
    }
}

impl Cache {
    /// A cache of at most `megabytes`, emptied by every change the hub sends out.
    pub fn start(megabytes: usize, hub: Arc<Hub>) -> Arc<Cache> {
        let cache = Arc::new(Cache {
            capacity: megabytes.saturating_mul(1024 * 1024),
            entries: Mutex::default(),
            generation: AtomicU64::new(0),
            hub: hub.clone(),
            filling: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            shared: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
        });
        if cache.capacity > 0 {
            // The listener reads committed changes from the log and empties the cache before it
            // sends them out.
            let emptied = Arc::downgrade(&cache);
            hub.on_change(move || {
                if let Some(cache) = emptied.upgrade() {
                    cache.empty();
                }
            });
        }
        cache
    }

    fn usable(&self) -> bool {
        self.capacity > 0 && self.hub.caught_up()
    }

    /// What [`Cache::put`] needs to know of the moment a read began: taken before reading the
    /// database.
    fn ticket(&self) -> Ticket {
        Ticket {
            generation: self.generation.load(Ordering::Acquire),
            seen: self.hub.seen_lsn(),
        }
    }

    /// The answer kept for `key`, for a read that needs the changes up to the WAL position
    /// `needed` (a client's `Signals-Read-After`; 0: none), or the read to make. An answer is
    /// taken only once this instance's listener has sent out the changes up to `needed` (and so
    /// emptied the cache of what they changed). When another read of `key` is asking the
    /// database, this one waits for it and takes what it kept.
    pub async fn lookup(&self, key: String, needed: u64) -> Lookup<'_> {
        let mut waits = 0;
        loop {
            if !self.usable() || self.hub.processed_lsn() < needed {
                if self.capacity > 0 {
                    self.bypassed.fetch_add(1, Ordering::Relaxed);
                }
                return Lookup::Miss(self.fill(key, None));
            }
            let found = (self.entries.lock().unwrap_or_else(|e| e.into_inner()))
                .map
                .get(&key)
                .cloned();
            if let Some(hit) = found {
                let counter = if waits > 0 { &self.shared } else { &self.hits };
                counter.fetch_add(1, Ordering::Relaxed);
                return Lookup::Hit(hit);
            }
            let notify: Arc<Notify>;
            let notified;
            {
                let mut filling = self.filling.lock().unwrap_or_else(|e| e.into_inner());
                let first = filling.get(&key).cloned();
                notify = match first {
                    Some(first) if waits < WAITS => first,
                    Some(_) => {
                        self.misses.fetch_add(1, Ordering::Relaxed);
                        return Lookup::Miss(self.fill(key, None));
                    }
                    None => {
                        let leading = Arc::new(Notify::new());
                        filling.insert(key.clone(), leading.clone());
                        self.misses.fetch_add(1, Ordering::Relaxed);
                        return Lookup::Miss(self.fill(key, Some(leading)));
                    }
                };
                // Made under the lock the first read wakes its waiters under, so it is woken.
                notified = notify.notified();
            }
            let _ = tokio::time::timeout(WAIT_AT_MOST, notified).await;
            waits += 1;
        }
    }

    fn fill(&self, key: String, leading: Option<Arc<Notify>>) -> Fill<'_> {
        Fill {
            cache: self,
            key,
            ticket: self.ticket(),
            leading,
        }
    }

    /// Keeps an answer read with `ticket`, unless a change came since, or it was read from a
    /// replica (`replayed`: how far it had replayed) that had not replayed every change the
    /// listener had seen when the read began.
    fn put(&self, key: String, value: Cached, ticket: Ticket, replayed: Option<u64>) {
        if !self.usable() || replayed.is_some_and(|r| r < ticket.seen) {
            return;
        }
        let generation = ticket.generation;
        let size = value.size(&key);
        if size > self.capacity / 4 {
            return;
        }
        // A body may hold spare capacity (a Vec grown while writing it), which the size does not
        // count: what is kept is copied to its exact size.
        let value = Cached {
            body: Bytes::copy_from_slice(&value.body),
            ..value
        };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock that emptying takes too: no fill slips in after an emptying.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if let Some(old) = entries.map.insert(key.clone(), Arc::new(value)) {
            entries.bytes -= old.size(&key);
        } else {
            entries.order.push_back(key);
        }
        entries.bytes += size;
        while entries.bytes > self.capacity {
            let Some(oldest) = entries.order.pop_front() else {
                break;
            };
            if let Some(gone) = entries.map.remove(&oldest) {
                entries.bytes -= gone.size(&oldest);
            }
        }
    }

    /// Forgets everything (a change was made).
    pub fn empty(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        if !entries.map.is_empty() {
            *entries = Entries::default();
        }
    }

    /// Forgets everything after a write on this instance that the primary's WAL holds up to
    /// `position` (when it could be read): a read from a replica that began after this is kept
    /// only if the replica had replayed the write.
    pub fn written(&self, position: Option<u64>) {
        if let Some(lsn) = position {
            self.hub.saw(lsn);
        }
        self.empty();
    }

    /// Entries and bytes held (for `/metrics`).
    pub fn size(&self) -> (usize, usize) {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        (entries.map.len(), entries.bytes)
    }
}
