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
//!
//! Bounded by `SIGNALS_CACHE_MB` (oldest entries go first); `0` turns it off.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use chrono::{DateTime, Utc};

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

    fn size(&self, key: &str) -> usize {
        self.body.len()
            + self.etag.len()
            + self.link.as_ref().map_or(0, |l| l.len())
            + key.len()
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
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl Cache {
    /// A cache of at most `megabytes`, emptied by every change the hub sends out.
    pub fn start(megabytes: usize, hub: Arc<Hub>) -> Arc<Cache> {
        let cache = Arc::new(Cache {
            capacity: megabytes * 1024 * 1024,
            entries: Mutex::default(),
            generation: AtomicU64::new(0),
            hub: hub.clone(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
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

    /// What [`Cache::put`] needs to know of the moment a read began: take it before reading
    /// the database.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            generation: self.generation.load(Ordering::Acquire),
            seen: self.hub.seen_lsn(),
        }
    }

    /// The answer kept for `key`, if any, for a read that needs the changes up to the WAL
    /// position `needed` (a client's `Signals-Read-After`; 0: none): only once this instance's
    /// listener has sent those out (and so emptied the cache of what they changed).
    pub fn get(&self, key: &str, needed: u64) -> Option<Arc<Cached>> {
        if !self.usable() || self.hub.processed_lsn() < needed {
            return None;
        }
        let found = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .get(key)
            .cloned();
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps an answer read with `ticket`, unless a change came since, or it was read from a
    /// replica (`replayed`: how far it had replayed) that had not replayed every change the
    /// listener had seen when the read began.
    pub fn put(&self, key: String, value: Cached, ticket: Ticket, replayed: Option<u64>) {
        if !self.usable() || replayed.is_some_and(|r| r < ticket.seen) {
            return;
        }
        let generation = ticket.generation;
        let size = value.size(&key);
        if size > self.capacity / 4 {
            return;
        }
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

    /// Entries and bytes held (for `/metrics`).
    pub fn size(&self) -> (usize, usize) {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        (entries.map.len(), entries.bytes)
    }
}
