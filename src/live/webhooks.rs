//! Webhook deliveries, made from the change log and sent by every instance.
//!
//! Two loops run in each instance:
//!
//! - **Fan-out**, woken by the change hub (and every second): one instance at a time (a row
//!   lock on `webhook_fanout`) reads the log after the position the fan-out reached and, in
//!   the same transaction, writes a message (the body, made once) for each change some enabled
//!   subscription wants and a delivery for each such subscription, then moves the position
//!   on. A crash anywhere leaves the position where the last commit put it: nothing is lost,
//!   nothing made twice.
//! - **Sending**: claims due deliveries (at most [`PER_WEBHOOK`] of one subscription at a
//!   time, none of a subscription this instance is already sending to), leased so that no
//!   other instance sends them meanwhile, and POSTs them in order, one subscription per task:
//!   a receiver that times out holds up only its own deliveries. 2xx: delivered. A 410: the
//!   subscription is disabled (its pending deliveries wait until it is enabled again; changes
//!   made while it is disabled are not delivered to it). Anything else: retried after the next wait of
//!   `SIGNALS_WEBHOOK_RETRIES`, and marked failed after the last. When a receiver cannot be
//!   reached, the rest of what was claimed for it waits for the same retry without counting
//!   an attempt.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use diesel_async::AsyncConnection;
use tokio::sync::Notify;
use uuid::Uuid;

use super::outbound::{Failure, Outbound};
use super::Hub;
use crate::db::sealed::Sealer;
use crate::db::webhooks::{self, Attempted, Claimed, Message};
use crate::db::{self, changes, DbError, PgPool};
use crate::domain::webhook;

/// Most deliveries of one subscription claimed at once (sent one after another).
pub const PER_WEBHOOK: i64 = 10;
/// Most subscriptions an instance sends to at once.
const MAX_SENDING: usize = 32;
/// Most changes read from the log per fan-out transaction.
const FANOUT_PAGE: i64 = 500;
/// Most deliveries one fan-out transaction makes: with many subscriptions it reads fewer
/// changes, so that its insert stays well within the statement timeout (500 changes for 3,000
/// catch-all subscriptions would be 1.5 million rows in one statement, failing, and retried
/// the same way for ever).
const FANOUT_DELIVERIES: i64 = 20_000;

/// The changes one fan-out reads for `subscriptions` enabled subscriptions.
fn fanout_page(subscriptions: usize) -> i64 {
    (FANOUT_DELIVERIES / (subscriptions as i64).max(1)).clamp(1, FANOUT_PAGE)
}
/// How often the loops look without being woken.
const TICK: Duration = Duration::from_secs(1);

pub struct Settings {
    pub allow_private: bool,
    pub allow_http: bool,
    /// Time limit of one attempt.
    pub timeout: Duration,
    /// The waits before each retry.
    pub retries: Vec<Duration>,
    pub sealer: Arc<Sealer>,
}

/// Deliveries by how their attempts ended, for `/metrics`.
#[derive(Default)]
pub struct Outcomes {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    pub gone: AtomicU64,
}

pub struct Webhooks {
    pool: PgPool,
    settings: Settings,
    /// Wakes the sending loop: new deliveries were made, or a subscription's task ended.
    wake: Notify,
    pub outcomes: Outcomes,
}

impl Webhooks {
    /// Starts both loops on the current (actix) thread.
    pub fn start(pool: PgPool, settings: Settings, hub: &Hub) -> Arc<Webhooks> {
        let webhooks = Arc::new(Webhooks {
            pool,
            settings,
            wake: Notify::new(),
            outcomes: Outcomes::default(),
        });
        actix_web::rt::spawn(webhooks.clone().fan_out_loop(hub.subscribe()));
        actix_web::rt::spawn(webhooks.clone().send_loop());
        webhooks
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn sealer(&self) -> &Sealer {
        &self.settings.sealer
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    async fn fan_out_loop(
        self: Arc<Self>,
        mut changes: tokio::sync::broadcast::Receiver<Arc<super::Event>>,
    ) {
        loop {
            loop {
                match self.fan_out().await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhooks: cannot fan out changes");
                        tokio::time::sleep(TICK).await;
                        break;
                    }
                }
            }
            // Any change the hub sends out (or a missed one) is a wake-up; the log is the truth.
            let _ = tokio::time::timeout(TICK, changes.recv()).await;
        }
    }

    /// One page of the log, fanned out; `true` when more may follow at once.
    async fn fan_out(&self) -> Result<bool, DbError> {
        let mut conn = db::conn(&self.pool).await?;
        let (made, more) = conn
            .transaction::<_, DbError, _>(async |conn| {
                let Some(from) = webhooks::lock_fanout(conn).await? else {
                    return Ok((0, false));
                };
                let subscriptions: Vec<_> = webhooks::enabled(conn)
                    .await?
                    .into_iter()
                    .map(|w| {
                        let filter = w.input().filter();
                        (w, filter)
                    })
                    .collect();
                let size = fanout_page(subscriptions.len());
                let page = changes::after(conn, from, size).await?;
                let Some(last) = page.last().map(|c| c.position) else {
                    return Ok((0, false));
                };
                let full = page.len() as i64 == size;
                // Which subscriptions want each change; the changes no one wants are dropped.
                let mut deliveries = Vec::new();
                let mut wanted = Vec::new();
                for change in page {
                    let event_type = format!("signal.{}", change.kind);
                    let before = deliveries.len();
                    deliveries.extend(
                        subscriptions
                            .iter()
                            .filter(|(w, filter)| {
                                change.position > w.after_position
                                    && w.events.contains(&event_type)
                                    && super::concerns(filter, &change)
                            })
                            .map(|(w, _)| (w.id, change.position)),
                    );
                    if deliveries.len() > before {
                        wanted.push(change);
                    }
                }
                let data = super::data(conn, &wanted).await?;
                let messages: Vec<Message> = wanted
                    .iter()
                    .zip(data)
                    .map(|(change, data)| {
                        let event_type = format!("signal.{}", change.kind);
                        Message {
                            position: change.position,
                            payload: payload(&event_type, &change.committed_at, &data),
                            event_type,
                        }
                    })
                    .collect();
                webhooks::enqueue(conn, &messages, &deliveries).await?;
                webhooks::set_fanout(conn, last).await?;
                Ok((deliveries.len(), full))
            })
            .await?;
        if made > 0 {
            self.wake.notify_one();
        }
        Ok(more)
    }

    async fn send_loop(self: Arc<Self>) {
        // awc's client stays on this thread; so do the tasks that share it.
        let outbound = Rc::new(Outbound::new(
            self.settings.allow_private,
            self.settings.allow_http,
            self.settings.timeout,
        ));
        let sending: Rc<RefCell<HashSet<Uuid>>> = Rc::default();
        // A group's sends one after another, then a margin: the lease outlasts them.
        let lease = self.settings.timeout * PER_WEBHOOK as u32 + Duration::from_secs(5);
        loop {
            let free = MAX_SENDING.saturating_sub(sending.borrow().len());
            let mut claimed_any = false;
            if free > 0 {
                let busy: Vec<Uuid> = sending.borrow().iter().copied().collect();
                match self.claim(&busy, free as i64 * PER_WEBHOOK, lease).await {
                    Ok(mut claimed) => {
                        claimed_any = !claimed.is_empty();
                        // `UPDATE ... RETURNING` returns rows in no promised order.
                        claimed.sort_by_key(|c| c.position);
                        let mut groups: HashMap<Uuid, Vec<Claimed>> = HashMap::new();
                        for c in claimed {
                            groups.entry(c.webhook_id).or_default().push(c);
                        }
                        for (webhook_id, group) in groups {
                            sending.borrow_mut().insert(webhook_id);
                            let (this, outbound, sending) =
                                (self.clone(), outbound.clone(), sending.clone());
                            actix_web::rt::spawn(async move {
                                this.send_group(&outbound, webhook_id, group).await;
                                sending.borrow_mut().remove(&webhook_id);
                                this.wake.notify_one();
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "webhooks: cannot claim deliveries"),
                }
            }
            if !claimed_any {
                let _ = tokio::time::timeout(TICK, self.wake.notified()).await;
            }
        }
    }

    async fn claim(
        &self,
        busy: &[Uuid],
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<Claimed>, DbError> {
        let mut conn = db::conn(&self.pool).await?;
        Ok(webhooks::claim(
            &mut conn,
            busy,
            PER_WEBHOOK,
            limit,
            lease.as_millis() as i64,
        )
        .await?)
    }

    /// Sends one subscription's claimed deliveries in order and records how each went.
    async fn send_group(&self, outbound: &Outbound, webhook_id: Uuid, group: Vec<Claimed>) {
        let subscription = match db::conn(&self.pool).await {
            Ok(mut conn) => webhooks::get(&mut conn, webhook_id).await.ok().flatten(),
            Err(_) => None,
        };
        // Deleted meanwhile (its deliveries went with it), or the database is away: the
        // leases end and the deliveries are claimed again.
        let Some(subscription) = subscription else {
            return;
        };
        let keys = self.signing_keys(&subscription);
        if keys.is_empty() {
            // Sealed with another SIGNALS_WEBHOOK_KEY (logged): nothing is sent and no attempt
            // is counted (a claim counts none; only a recorded attempt does), so the deliveries
            // are not used up by an instance that cannot sign them; the leases end and an
            // instance with the right key sends them.
            return;
        }
        let mut done = Vec::with_capacity(group.len());
        let mut postponed: Option<DateTime<Utc>> = None;
        for delivery in group {
            if let Some(next) = postponed {
                // The receiver could not be reached a moment ago (or said it is gone): these
                // wait, unattempted, with the one that tried.
                done.push(self.outcome(
                    &delivery,
                    Utc::now(),
                    0,
                    Err(Failure::Connect),
                    Some(next),
                ));
                continue;
            }
            let msg_id = format!("msg_{}", delivery.id.simple());
            let timestamp = Utc::now();
            let signature = keys
                .iter()
                .map(|k| webhook::sign(k, &msg_id, timestamp.timestamp(), &delivery.payload))
                .collect::<Vec<_>>()
                .join(" ");
            let headers = [
                ("webhook-id", msg_id),
                ("webhook-timestamp", timestamp.timestamp().to_string()),
                ("webhook-signature", signature),
            ];
            let started = Instant::now();
            let result = outbound
                .post(
                    &subscription.url,
                    &headers,
                    Bytes::from(delivery.payload.clone()),
                )
                .await;
            let latency_ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
            let unreachable = matches!(
                result,
                Err(Failure::Connect | Failure::Timeout | Failure::Dns | Failure::Address)
            );
            let gone = matches!(result, Err(Failure::Status(410)));
            let outcome = self.outcome(&delivery, timestamp, latency_ms, result, None);
            if unreachable {
                postponed = outcome.next_attempt_at;
            }
            if gone {
                // The subscription is disabled: the rest stay pending for when it is enabled.
                postponed = Some(Utc::now());
            }
            done.push(outcome);
        }
        let mut recorded = false;
        for _ in 0..3 {
            if let Ok(mut conn) = db::conn(&self.pool).await {
                if webhooks::record(&mut conn, &done).await.is_ok() {
                    recorded = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if !recorded {
            // The leases end and the deliveries are sent again: at least once, never lost.
            tracing::warn!(%webhook_id, "webhooks: cannot record attempts; they will be retried");
        }
    }

    /// The keys that sign: the current one, and the one before a rotation while it lasts.
    fn signing_keys(&self, w: &webhooks::WebhookRow) -> Vec<Vec<u8>> {
        let sealer = &self.settings.sealer;
        let mut keys = Vec::new();
        match sealer.open(&w.id, &w.secret) {
            Some(key) => keys.push(key),
            None => {
                tracing::error!(webhook_id = %w.id, "webhooks: the signing key cannot be opened with this SIGNALS_WEBHOOK_KEY");
                return keys;
            }
        }
        if let (Some(previous), Some(until)) = (&w.previous_secret, w.previous_until) {
            if until > Utc::now() {
                keys.extend(sealer.open(&w.id, previous));
            }
        }
        keys
    }

    /// How long a delivery is retried in all: the sum of `SIGNALS_WEBHOOK_RETRIES`.
    fn retry_span(&self) -> chrono::Duration {
        let total: Duration = self.settings.retries.iter().sum();
        chrono::Duration::from_std(total).unwrap_or(chrono::Duration::MAX)
    }

    /// What an attempt's result means for its delivery.
    fn outcome(
        &self,
        delivery: &Claimed,
        attempted_at: DateTime<Utc>,
        latency_ms: i32,
        result: Result<u16, Failure>,
        postponed_to: Option<DateTime<Utc>>,
    ) -> Attempted {
        let mut a = Attempted {
            delivery_id: delivery.id,
            webhook_id: delivery.webhook_id,
            attempt: delivery.attempts,
            lease_until: delivery.lease_until,
            attempted_at,
            status: None,
            latency_ms,
            error: None,
            state: "delivered",
            next_attempt_at: None,
            gone: false,
            attempted: postponed_to.is_none(),
        };
        let outcomes = &self.outcomes;
        match result {
            Ok(status) => {
                a.status = Some(status as i16);
                outcomes.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(failure) => {
                a.status = failure.status().map(|s| s as i16);
                a.error = Some(failure.class().to_owned());
                if failure == Failure::Status(410) {
                    // The subscription is disabled; this delivery waits with the rest for it to
                    // be enabled again (listed as attempted, with the 410).
                    a.state = "pending";
                    a.next_attempt_at = Some(attempted_at);
                    a.gone = true;
                    outcomes.gone.fetch_add(1, Ordering::Relaxed);
                } else if postponed_to.is_none()
                    && attempted_at - delivery.created_at > self.retry_span()
                {
                    // Tried and failed when its change is older than the retries last in all
                    // (about three days): given up, whatever retries it has left (it waited
                    // behind an unreachable receiver, or for its subscription to be enabled
                    // again). A receiver away for good does not keep its backlog pending one
                    // delivery's schedule after another; each gets one attempt, listed.
                    a.state = "failed";
                    outcomes.failed.fetch_add(1, Ordering::Relaxed);
                } else if let Some(next) = postponed_to {
                    // Not attempted: it keeps its attempt count and waits.
                    a.state = "pending";
                    a.next_attempt_at = Some(next);
                } else {
                    match self.settings.retries.get(delivery.attempts as usize - 1) {
                        Some(wait) => {
                            a.state = "pending";
                            a.next_attempt_at = Some(
                                attempted_at
                                    + chrono::Duration::from_std(*wait)
                                        .unwrap_or(chrono::Duration::hours(10)),
                            );
                            outcomes.retried.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            a.state = "failed";
                            outcomes.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        a
    }
}

/// The body of a delivery: `{"type", "timestamp", "data"}`, `data` being the JSON as made.
fn payload(event_type: &str, at: &DateTime<Utc>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 96);
    out.extend_from_slice(b"{\"type\":");
    crate::json::write_str(&mut out, event_type);
    out.extend_from_slice(b",\"timestamp\":");
    crate::json::write_str(&mut out, &at.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data);
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fan_out_makes_a_bounded_number_of_deliveries() {
        assert_eq!(fanout_page(0), FANOUT_PAGE);
        assert_eq!(fanout_page(1), FANOUT_PAGE);
        assert_eq!(fanout_page(3_000), 6);
        assert_eq!(fanout_page(1_000_000), 1);
        for n in [1, 40, 41, 999, 3_000, 25_000] {
            assert!(fanout_page(n) * n as i64 <= FANOUT_DELIVERIES.max(n as i64));
        }
    }
}
