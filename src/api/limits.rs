//! Rate limits (`../shared/API.md`, "Rate limits"): reads and writes apart, per API key, and per
//! client address for requests without one; fixed windows whose counts every instance on the
//! database shares.
//!
//! Each instance counts what it admits locally and adds it to the shared count in
//! `rate_limit_counts` in the background (every [`FLUSH_EVERY`]), reading back the total that
//! all instances admitted. A client's request is admitted while the total known plus what this
//! instance admitted since is under the quota; once an instance has admitted `burst` requests
//! of a client that the shared count does not know yet, it confirms them with the shared count
//! before admitting more. So in a window N instances admit at most `quota + N × burst`
//! requests of one client: at most one burst per instance over.
//!
//! A request with a key is counted against the key once the key has authenticated (the lookup
//! is the one the handler would make); a request whose key fails is counted against its client
//! address instead, and once that count is over the quota, requests with keys from that address
//! are refused before their key is looked up: a flood of made-up keys costs no lookup per
//! request, and naming another key's public prefix uses up nothing of that key's quota.
//! Addresses are counted by host for IPv4 and by /64 for IPv6 (what one client commonly holds).
//!
//! `GET /healthz` is not limited ([`UNLIMITED`]): a liveness probe must not wait for the shared
//! count's database nor be refused because its address also sends other requests, and its
//! answer costs no more than a 429 would.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, Error, ResponseError};

use super::auth;
use super::problem::ApiError;
use crate::config::{Cidr, Quota, RateLimit};
use crate::db::limits::{self as counts, Admitted};
use crate::db::PgPool;
use crate::domain::key;

/// Paths the limiter lets through uncounted (and whose answers carry no RateLimit fields).
pub const UNLIMITED: [&str; 1] = ["/healthz"];

pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// How often each instance adds its counts to the shared ones.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Most subjects an instance tracks at once; past it the oldest windows are forgotten first.
const MAX_SUBJECTS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Read,
    Write,
}

impl Class {
    fn of(method: &Method) -> Class {
        match *method {
            Method::GET | Method::HEAD | Method::OPTIONS => Class::Read,
            _ => Class::Write,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
        }
    }
}

/// Whom a count is of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    /// An API key, by its public prefix (checked later, by the handler).
    Key(String),
    /// A client address, for requests without a key.
    Address(IpAddr),
    /// A client address, for its requests whose key failed authentication.
    Failures(IpAddr),
}

impl Subject {
    fn text(&self) -> String {
        match self {
            Subject::Key(prefix) => format!("key:{prefix}"),
            Subject::Address(ip) => format!("addr:{ip}"),
            Subject::Failures(ip) => format!("fail:{ip}"),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Count {
    /// The window (its start, in seconds since the epoch) the counts are of.
    window: i64,
    /// The shared total as last read (what every instance had added by then).
    shared: u32,
    /// Admitted here and not yet added to the shared count.
    pending: u32,
    /// Admitted here and counted in `shared` already, but not yet in the database (its flush
    /// failed): sent with the next flush, so a database outage loses no count.
    unsent: u32,
}

/// What a decision does with its subject's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counting {
    /// Only looks.
    No,
    /// Counts the request if it is admitted, unless the admissions the shared count does not
    /// know of reached the burst: then it asks to confirm with the shared count first.
    Yes,
    /// Counts the request if it is admitted: the shared count was just asked. Other requests
    /// may have reached the burst again meanwhile; this one is counted all the same (it would
    /// otherwise be admitted without being counted).
    Confirmed,
}

impl Count {
    /// Whether one more request is admitted under `quota`, counted as `counting` says, and
    /// whether the shared count must be asked first (nothing was counted then); with the
    /// requests used before this one.
    fn admit(&mut self, quota: Quota, counting: Counting) -> (bool, bool, u32) {
        let used = self.shared + self.pending;
        let allowed = used < quota.quota;
        // Past a burst that the shared count does not know of, confirm with it first.
        let confirm = allowed && counting == Counting::Yes && self.pending >= quota.burst;
        if allowed && counting != Counting::No && !confirm {
            self.pending += 1;
        }
        (allowed, confirm, used)
    }

    /// Counts what is pending as known here, to be sent later: what an instance does when the
    /// shared counts cannot be reached.
    fn keep_unsent(&mut self, admitted: u32) {
        self.shared += admitted;
        self.unsent += admitted;
    }
}

/// What a check decided, with what the RateLimit fields say.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    pub class: Class,
    pub quota: Quota,
    pub allowed: bool,
    pub remaining: u32,
    /// Seconds until the window ends.
    pub reset: u32,
}

pub struct Limiter {
    read: Option<Quota>,
    write: Option<Quota>,
    proxies: Vec<Cidr>,
    counts: Mutex<HashMap<(Class, Subject), Count>>,
    pool: PgPool,
}

/// The count of `subject` in `window`, started anew when the window is new; at most
/// [`MAX_SUBJECTS`] are kept (those of past windows go first).
fn current<'m>(
    counts: &'m mut HashMap<(Class, Subject), Count>,
    class: Class,
    subject: &Subject,
    window: i64,
) -> &'m mut Count {
    let key = (class, subject.clone());
    if !counts.contains_key(&key) && counts.len() >= MAX_SUBJECTS {
        counts.retain(|_, c| c.window >= window);
        if counts.len() >= MAX_SUBJECTS {
            // All of this window (a flood from many addresses): the half that used least is
            // forgotten, not everyone's count (those with counts the database has not had
            // yet are kept first). A forgotten client's flushed requests are read back from the
            // shared count with the next flush; only its unflushed ones (fewer than a burst)
            // are lost. Once per MAX_SUBJECTS / 2 new subjects at most.
            let keep = MAX_SUBJECTS / 2;
            let mut ranked: Vec<((Class, Subject), (bool, u32))> = counts
                .iter()
                .map(|(k, c)| (k.clone(), (c.unsent > 0, c.shared + c.pending)))
                .collect();
            ranked.select_nth_unstable_by(keep, |a, b| b.1.cmp(&a.1));
            for (gone, _) in ranked.drain(keep..) {
                counts.remove(&gone);
            }
        }
    }
    let c = counts.entry(key).or_default();
    if c.window != window {
        *c = Count {
            window,
            ..Count::default()
        };
    }
    c
}

/// The address a client's requests are counted under: an IPv4 address (also when written as
/// an IPv4-mapped IPv6 one) as it is, an IPv6 address by its /64, which one client (a home or a
/// host of a provider) commonly holds whole.
fn counted_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// The quota's window now (its start, in seconds since the epoch) and the seconds until it
/// ends.
fn window_now(quota: Quota) -> (i64, u32) {
    let now = now_s();
    let window = now - now.rem_euclid(i64::from(quota.window_s));
    (
        window,
        (window + i64::from(quota.window_s) - now).max(0) as u32,
    )
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Limiter {
    pub fn new(read: RateLimit, write: RateLimit, proxies: Vec<Cidr>, pool: PgPool) -> Self {
        Limiter {
            read: read.0,
            write: write.0,
            proxies,
            counts: Mutex::new(HashMap::new()),
            pool,
        }
    }

    fn quota(&self, class: Class) -> Option<Quota> {
        match class {
            Class::Read => self.read,
            Class::Write => self.write,
        }
    }

    pub fn enabled(&self) -> bool {
        self.read.is_some() || self.write.is_some()
    }

    /// Counts one request of `subject` if it is under the limit (as `counting` says), or only
    /// looks.
    fn decide(
        &self,
        class: Class,
        quota: Quota,
        subject: &Subject,
        counting: Counting,
    ) -> (Decision, bool) {
        let (window, reset) = window_now(quota);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (allowed, confirm, used) =
            current(&mut counts, class, subject, window).admit(quota, counting);
        let count = counting != Counting::No && !confirm;
        let decision = Decision {
            class,
            quota,
            allowed,
            remaining: quota
                .quota
                .saturating_sub(used + u32::from(allowed && count)),
            reset,
        };
        (decision, confirm)
    }

    /// The refusal of `subject` when it is known here to be over its quota in this window; no
    /// count is made for a subject not known yet (a made-up key's prefix).
    fn spent(&self, class: Class, quota: Quota, subject: &Subject) -> Option<Decision> {
        let (window, reset) = window_now(quota);
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let c = counts
            .get(&(class, subject.clone()))
            .filter(|c| c.window == window)?;
        (c.shared + c.pending >= quota.quota).then_some(Decision {
            class,
            quota,
            allowed: false,
            remaining: 0,
            reset,
        })
    }

    /// Admits one request of `subject` or not.
    async fn check(&self, class: Class, quota: Quota, subject: &Subject) -> Decision {
        let (decision, confirm) = self.decide(class, quota, subject, Counting::Yes);
        if !confirm {
            return decision;
        }
        // Unconfirmed admissions reached the burst: add them to the shared count now. If the
        // database does not answer, this instance goes on with what it knows.
        if let Err(e) = self.flush().await {
            tracing::warn!(error = %e, "rate limits: cannot reach the shared counts");
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = counts.get_mut(&(class, subject.clone())) {
                let admitted = std::mem::take(&mut c.pending);
                c.keep_unsent(admitted);
            }
        }
        self.decide(class, quota, subject, Counting::Confirmed).0
    }

    /// Adds every pending count to the shared counts and reads back the totals. When the
    /// database cannot be reached, the counts are kept to be sent with the next flush.
    pub async fn flush(&self) -> Result<(), String> {
        // (key, window, how many to add)
        let pending: Vec<((Class, Subject), i64, u32)> = {
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            counts
                .iter_mut()
                .filter(|(_, c)| c.pending + c.unsent > 0)
                .map(|(k, c)| {
                    let taken = c.pending + c.unsent;
                    c.shared += c.pending;
                    c.pending = 0;
                    c.unsent = 0;
                    (k.clone(), c.window, taken)
                })
                .collect()
        };
        if pending.is_empty() {
            return Ok(());
        }
        let admitted: Vec<Admitted> = pending
            .iter()
            .map(|((class, subject), window, taken)| Admitted {
                policy: class.name().to_owned(),
                subject: subject.text(),
                window_start: *window,
                count: i64::from(*taken),
            })
            .collect();
        let sent = async {
            let mut conn = crate::db::conn(&self.pool)
                .await
                .map_err(|e| e.to_string())?;
            counts::add(&mut conn, &admitted)
                .await
                .map_err(|e| e.to_string())
        };
        let totals = match sent.await {
            Ok(totals) => totals,
            Err(e) => {
                let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
                for (key, window, taken) in pending {
                    // Counted in `shared` already; only the database does not know yet.
                    if let Some(c) = counts.get_mut(&key).filter(|c| c.window == window) {
                        c.unsent += taken;
                    }
                }
                return Err(e);
            }
        };
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for ((class, subject), window, _) in pending {
            let total = totals.iter().find(|t| {
                t.policy == class.name() && t.window_start == window && t.subject == subject.text()
            });
            if let (Some(total), Some(now)) = (total, counts.get_mut(&(class, subject))) {
                if now.window == window {
                    // The total includes what this instance added; `pending` is what came since.
                    now.shared = now
                        .shared
                        .max(total.count.clamp(0, i64::from(u32::MAX)) as u32);
                }
            }
        }
        Ok(())
    }

    /// Deletes the shared counts of windows long over.
    pub async fn prune(&self) -> Result<usize, String> {
        let longest = [self.read, self.write]
            .iter()
            .flatten()
            .map(|q| i64::from(q.window_s))
            .max()
            .unwrap_or(0);
        let mut conn = crate::db::conn(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        counts::delete_before(&mut conn, now_s() - 2 * longest)
            .await
            .map_err(|e| e.to_string())
    }

    /// The client's address: the peer, or, when the peer is a trusted proxy, the last address
    /// before the trusted ones in `X-Forwarded-For`.
    pub fn client_address(&self, req: &ServiceRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        client_address(peer, req.headers(), &self.proxies)
    }
}

/// See [`Limiter::client_address`].
pub fn client_address(
    peer: IpAddr,
    headers: &header::HeaderMap,
    proxies: &[Cidr],
) -> Option<IpAddr> {
    let trusted = |ip: IpAddr| Cidr::trusts(proxies, ip);
    if !trusted(peer) {
        return Some(peer);
    }
    // Only X-Forwarded-For, which proxies append to: a `Forwarded` header the client sent
    // would pass a proxy that sets only X-Forwarded-For untouched, and be believed. It is read
    // from the nearest hop back: the first address not trusted is the client. An entry that is
    // not an address (or a line that is not text) ends the walk there, at the nearest address
    // known: what lies before it cannot be told apart from what a client wrote.
    let mut nearest = peer;
    let lines: Vec<&HeaderValue> = headers
        .get_all(HeaderName::from_static("x-forwarded-for"))
        .collect();
    for line in lines.into_iter().rev() {
        let Ok(line) = line.to_str() else {
            return Some(nearest);
        };
        for entry in line.rsplit(',') {
            let Some(ip) = hop_address(entry.trim()) else {
                return Some(nearest);
            };
            if !trusted(ip) {
                return Some(ip);
            }
            nearest = ip;
        }
    }
    Some(nearest)
}

/// One entry of X-Forwarded-For: an address, as some proxies write it with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`) or in brackets (`[2001:db8::1]`).
fn hop_address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<std::net::Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })
}

/// The middleware: limits every request but those of [`UNLIMITED`], and counts a failed
/// authentication against its address.
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let class = Class::of(req.method());
    let limited = req
        .app_data::<web::Data<Arc<Limiter>>>()
        .filter(|_| !UNLIMITED.contains(&req.path()))
        .and_then(|limiter| Some((limiter.clone(), limiter.quota(class)?)));
    let Some((limiter, quota)) = limited else {
        return next.call(req).await.map(|r| r.map_into_boxed_body());
    };
    let address = limiter.client_address(&req).map(counted_as);
    let decision = match (req.headers().get(header::AUTHORIZATION), address) {
        (Some(authorization), address) => {
            let prefix = bearer_prefix(authorization.as_bytes());
            // Keys from an address that keeps failing to authenticate are not looked up.
            let failing = address.map(|ip| {
                limiter
                    .decide(class, quota, &Subject::Failures(ip), Counting::No)
                    .0
            });
            // A key over its quota is refused before it is looked up too: only that key (its
            // real secret) can have used the quota up.
            let spent = prefix
                .as_ref()
                .and_then(|prefix| limiter.spent(class, quota, &Subject::Key(prefix.clone())));
            match (failing, spent) {
                (Some(d), _) | (_, Some(d)) if !d.allowed => d,
                // The key is looked up here (once: the handler uses what was found), and only
                // a key that authenticates is charged: a request naming a key's public prefix
                // with a made-up secret must not use up that key's quota. A failure is charged
                // to the client's address.
                _ => match (auth::authenticate(req.request()).await, prefix, address) {
                    (Ok(Some(_)), Some(prefix), _) => {
                        limiter.check(class, quota, &Subject::Key(prefix)).await
                    }
                    // And to its quota as a request without a key: a key that fails is
                    // no key (routes that take none, such as `/readyz`, answer anyway).
                    (Err(ApiError::Unauthorized(_)), _, Some(ip)) => {
                        let failures = limiter.check(class, quota, &Subject::Failures(ip)).await;
                        let anonymous = limiter.check(class, quota, &Subject::Address(ip)).await;
                        match (failures.allowed, anonymous.allowed) {
                            (false, _) => failures,
                            (_, false) => anonymous,
                            _ if anonymous.remaining < failures.remaining => anonymous,
                            _ => failures,
                        }
                    }
                    // The key could not be checked (the database is unavailable): the handler
                    // will say so; counted as the address's.
                    (_, _, Some(ip)) => limiter.check(class, quota, &Subject::Address(ip)).await,
                    (_, _, None) => {
                        limiter
                            .decide(class, quota, &Subject::Key(String::new()), Counting::Yes)
                            .0
                    }
                },
            }
        }
        (None, Some(ip)) => limiter.check(class, quota, &Subject::Address(ip)).await,
        (None, None) => return next.call(req).await.map(|r| r.map_into_boxed_body()),
    };
    if !decision.allowed {
        let (http, _) = req.into_parts();
        let mut res = ApiError::RateLimited {
            class: decision.class.name(),
            retry_after: decision.reset.max(1),
        }
        .error_response();
        add_fields(res.headers_mut(), &decision);
        return Ok(ServiceResponse::new(http, res));
    }
    let mut res = next.call(req).await?.map_into_boxed_body();
    add_fields(res.headers_mut(), &decision);
    Ok(res)
}

/// The RateLimit fields of a decision (draft-ietf-httpapi-ratelimit-headers): the policy
/// (the same for every request of a class) and what is left of it.
fn add_fields(headers: &mut header::HeaderMap, d: &Decision) {
    let name = d.class.name();
    let policy = format!("\"{name}\";q={};w={}", d.quota.quota, d.quota.window_s);
    let left = format!("\"{name}\";r={};t={}", d.remaining, d.reset);
    for (header, value) in [(RATELIMIT_POLICY, policy), (RATELIMIT, left)] {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(header, value);
        }
    }
}

/// The public prefix of a bearer key; `None` when the header holds no well-formed key.
fn bearer_prefix(value: &[u8]) -> Option<String> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    key::split(token.trim()).map(|(prefix, _)| prefix.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admission_after_asking_the_shared_count_is_counted_even_past_the_burst_again() {
        let quota = Quota {
            quota: 5,
            window_s: 60,
            burst: 1,
        };
        let mut c = Count::default();
        assert_eq!(c.admit(quota, Counting::Yes), (true, false, 0));
        // The burst is reached: this request asks the shared count first, uncounted.
        assert_eq!(c.admit(quota, Counting::Yes), (true, true, 1));
        assert_eq!(c.pending, 1);
        // Meanwhile (the flush moved `pending` to `shared`) another request was counted...
        c.shared += std::mem::take(&mut c.pending);
        assert_eq!(c.admit(quota, Counting::Yes), (true, false, 1));
        // ...so the burst is reached again when the first comes back: it is counted anyway.
        assert_eq!(c.admit(quota, Counting::Confirmed), (true, false, 2));
        assert_eq!((c.shared, c.pending), (1, 2));
        // Looking counts nothing; over the quota nothing is admitted or counted.
        assert_eq!(c.admit(quota, Counting::No), (true, false, 3));
        c.pending = 4;
        assert_eq!(c.admit(quota, Counting::Confirmed), (false, false, 5));
        assert_eq!(c.pending, 4);
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let mut headers = header::HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-forwarded-for"),
            HeaderValue::from_static("6.6.6.6, 203.0.113.9, 10.0.0.2"),
        );
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(client_address(peer, &headers, &[]), Some(peer));
        assert_eq!(
            client_address(peer, &headers, &cidrs(&["10.0.0.0/8"])),
            Some("203.0.113.9".parse().unwrap())
        );
        // A Forwarded header (which a proxy setting X-Forwarded-For passes on) is not believed.
        headers.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https"),
        );
        assert_eq!(
            client_address(peer, &headers, &cidrs(&["10.0.0.0/8"])),
            Some("203.0.113.9".parse().unwrap())
        );
        let outsider: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(
            client_address(outsider, &headers, &cidrs(&["10.0.0.0/8"])),
            Some(outsider)
        );
    }

    #[test]
    fn a_forwarded_entry_that_is_not_an_address_ends_the_walk_at_the_nearest_known_hop() {
        let proxies = cidrs(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let address = |lines: &[&[u8]]| {
            let mut headers = header::HeaderMap::new();
            for line in lines {
                headers.append(
                    HeaderName::from_static("x-forwarded-for"),
                    HeaderValue::from_bytes(line).unwrap(),
                );
            }
            client_address(peer, &headers, &proxies).map(|ip| ip.to_string())
        };
        // Proxies that write a port, or brackets: the address is read.
        assert_eq!(
            address(&[b"6.6.6.6, 203.0.113.9:50312"]).unwrap(),
            "203.0.113.9"
        );
        assert_eq!(
            address(&[b"6.6.6.6, [2001:db8::1]:443"]).unwrap(),
            "2001:db8::1"
        );
        assert_eq!(
            address(&[b"6.6.6.6, [2001:db8::2]"]).unwrap(),
            "2001:db8::2"
        );
        // Junk between the client's part and the trusted hops is not skipped over.
        assert_eq!(
            address(&[b"6.6.6.6, unknown, 10.0.0.2"]).unwrap(),
            "10.0.0.2"
        );
        assert_eq!(address(&[b"6.6.6.6, unknown"]).unwrap(), "10.0.0.1");
        // Lines are one list, in order; a line that is not text ends it too.
        assert_eq!(
            address(&[b"6.6.6.6", b"203.0.113.7"]).unwrap(),
            "203.0.113.7"
        );
        assert_eq!(
            address(&[b"6.6.6.6", b"\xff", b"10.0.0.3"]).unwrap(),
            "10.0.0.3"
        );
        // Every hop trusted: the farthest of them is the client.
        assert_eq!(address(&[b"10.0.0.9, 10.0.0.2"]).unwrap(), "10.0.0.9");
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let a = counted_as("2001:db8:1:2:aaaa::1".parse().unwrap());
        assert_eq!(a, counted_as("2001:db8:1:2:ffff:1:2:3".parse().unwrap()));
        assert_eq!(a, "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(a, counted_as("2001:db8:1:3::1".parse().unwrap()));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(counted_as(v4), v4);
        assert_eq!(counted_as("::ffff:192.0.2.7".parse().unwrap()), v4);
    }

    #[test]
    fn a_flood_of_new_subjects_forgets_the_lightest_not_everyone() {
        let mut counts = HashMap::new();
        let heavy = Subject::Address("192.0.2.1".parse().unwrap());
        current(&mut counts, Class::Read, &heavy, 60).pending = 50;
        for i in 0..MAX_SUBJECTS as u32 {
            let ip = IpAddr::V6((0x2001_0db8_u128 << 96 | u128::from(i) << 64).into());
            current(&mut counts, Class::Read, &Subject::Address(ip), 60).pending = 1;
        }
        assert!(counts.len() <= MAX_SUBJECTS);
        // Half are kept, the heaviest among them: not everyone's count forgotten.
        assert!(counts.len() >= MAX_SUBJECTS / 2, "{}", counts.len());
        assert_eq!(counts[&(Class::Read, heavy)].pending, 50);
    }

    #[test]
    fn cidr_ranges_match_their_addresses() {
        let net: Cidr = "192.168.0.0/16".parse().unwrap();
        assert!(net.contains("192.168.4.5".parse().unwrap()));
        assert!(net.contains("::ffff:192.168.4.5".parse().unwrap()));
        assert!(!net.contains("192.169.0.1".parse().unwrap()));
        let one: Cidr = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    }

    #[test]
    fn limits_parse_with_a_burst() {
        let q = "600/60s".parse::<RateLimit>().unwrap().0.unwrap();
        assert_eq!((q.quota, q.window_s, q.burst), (600, 60, 60));
        let q = "10/1m:2".parse::<RateLimit>().unwrap().0.unwrap();
        assert_eq!((q.quota, q.window_s, q.burst), (10, 60, 2));
        assert_eq!("0".parse::<RateLimit>().unwrap(), RateLimit(None));
        for bad in ["600", "600/60", "x/60s", "600/0s", "0/60s", "600/60s:x"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }
}
