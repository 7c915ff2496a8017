//! `GET /v1/signals/stream`: Server-Sent Events of every change that matches the list's filters,
//! resumable with `Last-Event-ID`.
//!
//! A plain streaming body (no SSE helper crate): the format is four lines, and the stream needs
//! what a helper does not give — a replay from the change log before going live, a cut-off for
//! a subscriber that falls behind, and a slot count. It is sent with `Content-Encoding: identity`
//! so the compression middleware, which buffers, leaves it alone.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{get, web, HttpRequest, HttpResponse};
use tokio::sync::broadcast::error::RecvError;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Required;
use utoipa::IntoParams;

use super::auth::Reader;
use super::conditions::ReadAfter;
use super::problem::{responses, ApiError};
use super::AppState;
use crate::db::{self, changes};
use crate::domain::query::{
    header_position, parameters, ListFilter, StreamQuery, POSITION_PATTERN, STREAM_PARAMS,
};
use crate::domain::FieldError;
use crate::live::{self, Event, Hub, StreamSlot};

/// A comment line this long after the last thing sent keeps idle connections (and proxies)
/// from closing: well inside the 15 s the contract promises, as the line is written a moment
/// after it is due.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

impl IntoParams for StreamQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut params = parameters(STREAM_PARAMS);
        params.push(
            ParameterBuilder::new()
                .name("Last-Event-ID")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "The `id:` of the last event received: the stream resumes after it (what \
                     browsers' EventSource sends when it reconnects).",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(POSITION_PATTERN)),
                ))
                .build(),
        );
        params
    }
}

/// Stream changes
///
/// `text/event-stream` of every change of a signal that matches the filters (as for the list:
/// `min_score`, `max_score`, `category`, `tag`, `any_tag`): `id:` the change's position in the
/// change log, `event:` `signal.created`, `signal.updated` (when the signal matches before or
/// after) or `signal.deleted`, `data:` the signal as `GET /v1/signals/{id_or_slug}` returns it
/// (`{"id", "slug"}` for a deletion). With `Last-Event-ID` (or `last_event_id`) every matching
/// change after that position comes first, none twice, then live ones; a position the log no
/// longer keeps (`SIGNALS_EVENTS_RETENTION`) is 410, and one past the newest change resumes from
/// the newest (what comes next is sent). A comment line comes at least every 15 s (10 s after the last thing sent).
/// A subscriber that falls more than 1,024 changes behind is cut off: it reconnects with
/// `Last-Event-ID` and resumes. Changes committed on any instance reach every instance.
#[utoipa::path(
    operation_id = "stream_signals",
    tag = "signals",
    params(StreamQuery, ReadAfter),
    responses(
        (status = 200, description = "Changes as they happen (the response does not end)",
            content_type = "text/event-stream", body = String,
            headers(("X-Accel-Buffering" = String, description = "`no`: proxies must not buffer the stream")),
            example = "id: 42\nevent: signal.created\ndata: {\"id\":\"01968a4e-1c40-7cc3-9a51-4b1f0e6e2d10\",\"slug\":\"deepseek-targets-45b-valuation\",...}\n\n: keep-alive\n\n"),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 410, response = responses::Gone),
        (status = 503, response = responses::StreamsBusy),
    ),
    security((), ("bearer" = []))
)]
#[get("/v1/signals/stream")]
pub async fn stream_signals(
    req: HttpRequest,
    hub: web::Data<Arc<Hub>>,
    state: web::Data<AppState>,
    _reader: Reader,
    read_after: ReadAfter,
) -> Result<HttpResponse, ApiError> {
    let query = StreamQuery::parse(req.query_string()).map_err(ApiError::parameter)?;
    let resume = match req.headers().get("last-event-id") {
        Some(v) => Some(v.to_str().ok().and_then(header_position).ok_or_else(|| {
            ApiError::parameter(FieldError::new(
                "Last-Event-ID",
                "must be a position: 1 to 18 decimal digits",
            ))
        })?),
        None => query.last_event_id,
    };
    let slot = hub.open_stream().ok_or_else(|| {
        ApiError::Busy("every stream slot of this instance is taken; retry later".into())
    })?;
    // Subscribed before the log is read, so nothing falls between the replay and live.
    let rx = hub.subscribe();
    // The replay may come from a replica that has every change sent out before the
    // subscription (and the client's own write).
    let replay = state
        .route(read_after.needed().max(hub.seen_lsn()))
        .list_pool
        .clone();
    let resume = match resume {
        Some(after) => {
            // On the service's own pool: a thousand clients resuming at once (another instance
            // went away) must not take the change listener's connections.
            let mut conn = db::conn(&state.pool).await?;
            let (oldest, newest) = changes::bounds(&mut conn).await?;
            if oldest.is_some_and(|oldest| after.saturating_add(1) < oldest) {
                return Err(ApiError::Gone(format!(
                    "the change log keeps positions from {} on; start again without Last-Event-ID",
                    oldest.unwrap_or_default()
                )));
            }
            // A position past the newest change (never given out, or the log was emptied since)
            // resumes from the newest: the stream sends what comes next, not nothing forever.
            Some(after.min(newest.unwrap_or(-1)))
        }
        None => None,
    };
    let feed = Feed {
        filter: query.filter,
        rx,
        ready: VecDeque::new(),
        last: resume.unwrap_or(-1),
        told: resume.unwrap_or(-1),
        written: tokio::time::Instant::now(),
        replaying: resume.is_some(),
        replay,
        closing: hub.closing(),
        hub: hub.get_ref().clone(),
        _slot: slot,
    };
    let mut response = HttpResponse::Ok();
    response
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity"),
        ))
        .insert_header(("x-accel-buffering", "no"));
    // A HEAD gets the headers alone, those of a stream (chunked, no length), from a stream
    // that ends at once: the HTTP layer would otherwise go on polling a body that never ends,
    // and hold the connection.
    if super::middleware::original_method(&req) == actix_web::http::Method::HEAD {
        let ended = futures_util::stream::empty::<Result<Bytes, actix_web::Error>>();
        return Ok(response.streaming(ended));
    }
    let body = futures_util::stream::unfold(feed, |mut feed| async move {
        feed.next()
            .await
            .map(|chunk| (Ok::<_, actix_web::Error>(chunk), feed))
    });
    Ok(response.streaming(body))
}

/// One subscriber's stream: the replay from the log, then live changes.
struct Feed {
    filter: ListFilter,
    rx: tokio::sync::broadcast::Receiver<Arc<Event>>,
    ready: VecDeque<Bytes>,
    /// The last position passed (sent, or not of this subscriber's filters), or resumed after.
    last: i64,
    /// The last position the client was told (as an event's `id:`, or a keep-alive's).
    told: i64,
    /// When something was last sent: the next keep-alive is due [`KEEP_ALIVE`] after it.
    written: tokio::time::Instant,
    replaying: bool,
    /// Where the replay is read: the primary, or a replica new enough.
    replay: crate::db::PgPool,
    closing: tokio::sync::watch::Receiver<bool>,
    hub: Arc<Hub>,
    _slot: StreamSlot,
}

impl Feed {
    /// The next chunk to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        let chunk = self.produce().await?;
        self.written = tokio::time::Instant::now();
        Some(chunk)
    }

    async fn produce(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.ready.pop_front() {
                return Some(chunk);
            }
            if self.replaying {
                if !self.replay_page().await {
                    return None;
                }
                continue;
            }
            if *self.closing.borrow() {
                return None;
            }
            // Due since the last chunk sent, not since the last change: changes this subscriber
            // does not want do not keep its connection quiet for longer.
            let next = tokio::select! {
                _ = self.closing.changed() => return None,
                next = tokio::time::timeout_at(self.written + KEEP_ALIVE, self.rx.recv()) => next,
            };
            match next {
                // The keep-alive carries the position passed, when it moved past the last one
                // told (changes of other filters): a reconnect resumes from there, so a rarely
                // matching subscriber's position does not age out of the log.
                Err(_) if self.last > self.told => {
                    self.told = self.last;
                    return Some(Bytes::from(format!(": keep-alive\nid: {}\n\n", self.last)));
                }
                Err(_) => return Some(Bytes::from_static(b": keep-alive\n\n")),
                // Too slow: cut off, to reconnect and resume from the log.
                Ok(Err(RecvError::Lagged(behind))) => {
                    self.hub
                        .cut_off
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(behind, last = self.last, "stream: a subscriber too slow to keep up was cut off (it resumes from its last id)");
                    return None;
                }
                Ok(Err(RecvError::Closed)) => return None,
                Ok(Ok(event)) => {
                    if event.change.position <= self.last {
                        continue;
                    }
                    self.last = event.change.position;
                    if live::concerns(&self.filter, &event.change) {
                        self.told = self.last;
                        return Some(event.sse.clone());
                    }
                }
            }
        }
    }

    /// Reads the next page of the log after `last` into `ready`; false when the database
    /// fails (the stream ends; the client resumes).
    async fn replay_page(&mut self) -> bool {
        let Ok(mut conn) = db::conn(&self.replay).await else {
            return false;
        };
        let Ok(page) = changes::after(&mut conn, self.last, 200).await else {
            return false;
        };
        if page.is_empty() {
            self.replaying = false;
            return true;
        }
        let last = page.last().map_or(self.last, |c| c.position);
        let wanted: Vec<_> = page
            .into_iter()
            .filter(|change| live::concerns(&self.filter, change))
            .collect();
        match live::events(&mut conn, wanted).await {
            Ok(events) => {
                if let Some(sent) = events.last() {
                    self.told = sent.change.position;
                }
                self.ready.extend(events.into_iter().map(|e| e.sse));
            }
            Err(_) => return false,
        }
        self.last = last;
        true
    }
}
