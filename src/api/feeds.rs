//! `GET /v1/feed.json` and `GET /v1/feed.atom`: the newest signals that match the list's
//! filters, as JSON Feed 1.1 and as Atom (RFC 4287), for feed readers.
//!
//! Both are made from the same rows and the same article HTML (`web::html`, everything from a
//! signal escaped). Item ids are `urn:uuid:<id>` and never change; an item's modification time
//! is the signal's `updated_at`, which moves only when a write changes the signal. Links are on
//! the base [`Links`] gives; the self link is the URL that was asked for.
//! Validators: a strong `ETag` from the items' versions, and `Last-Modified` from the change
//! log, whose newest time moves forward with every change (a deletion included), so neither
//! answers 304 for a feed that changed. While the newest change is under two seconds old,
//! `Last-Modified` names the second before it (an HTTP date cannot tell it from a later change
//! in the same second).

use std::fmt::Write;
use std::sync::Arc;

use actix_web::http::header::{self, HttpDate};
use actix_web::{get, web, HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::IntoParams;
use uuid::Uuid;

use super::auth::Reader;
use super::cache::{Cached, Lookup};
use super::conditions::{IfModifiedSince, IfNoneMatch, ReadAfter};
use super::problem::{responses, ApiError};
use super::{cache_control, version_etag, AppState, Links, PublicBase};
use crate::db::{self, changes, lists};
use crate::domain::query::{parameters, FeedQuery, FEED_PARAMS};
use crate::domain::signal::Signal;
use crate::web::html;

impl IntoParams for FeedQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        parameters(FEED_PARAMS)
    }
}

/// The feed's name, as readers show it.
const TITLE: &str = "Signals";
const DESCRIPTION: &str = "Scored intelligence signals, newest first";

/// How old the newest change must be before `Last-Modified` names its second (before, the
/// second before it).
const LAST_MODIFIED_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(2);

pub const JSON_FEED: &str = "application/feed+json";
pub const ATOM: &str = "application/atom+xml";

#[derive(Clone, Copy)]
enum Format {
    Json,
    Atom,
}

/// What both formats are written from.
struct Feed<'a> {
    signals: Vec<Signal>,
    /// The newest change, or the newest item when the log keeps none.
    updated: DateTime<Utc>,
    /// The URL asked for (on the public URL).
    self_link: String,
    base: &'a PublicBase,
    /// A permanent id of the feed: made from the path and query, not from the host.
    id: Uuid,
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn item_link(base: &PublicBase, signal: &Signal) -> String {
    base.link(&format!("/s/{}", signal.slug))
}

/// The content of an item: the meta line, then the article.
fn content_html(signal: &Signal) -> String {
    let mut out = format!("<p>{}</p>", html::meta_line(signal));
    out.push_str(&html::article_body(signal, 2));
    out
}

impl Feed<'_> {
    fn json(&self) -> Vec<u8> {
        let items: Vec<_> = self
            .signals
            .iter()
            .map(|s| {
                let mut item = json!({
                    "id": s.id.urn().to_string(),
                    "url": item_link(self.base, s),
                    "title": s.title,
                    "summary": s.summary,
                    "content_html": content_html(s),
                    "date_published": rfc3339(&s.published_at),
                    "date_modified": rfc3339(&s.updated_at),
                    "tags": s.tags,
                    "_signals": {"score": s.score, "category": s.category, "slug": s.slug},
                });
                if let Some(source) = &s.source_url {
                    item["external_url"] = json!(source);
                }
                item
            })
            .collect();
        let feed = json!({
            "version": "https://jsonfeed.org/version/1.1",
            "title": TITLE,
            "description": DESCRIPTION,
            "home_page_url": self.base.link("/"),
            "feed_url": self.self_link,
            "language": "en",
            "authors": [{"name": TITLE, "url": self.base.link("/")}],
            "items": items,
        });
        serde_json::to_vec(&feed).unwrap_or_default()
    }

    fn atom(&self) -> Vec<u8> {
        let e = html::escape_xml;
        let mut out = String::with_capacity(4096 + self.signals.len() * 4096);
        out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        out.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"en\">");
        let _ = write!(
            out,
            "<id>{}</id><title type=\"text\">{TITLE}</title>\
             <subtitle type=\"text\">{DESCRIPTION}</subtitle><updated>{}</updated>\
             <author><name>{TITLE}</name><uri>{}</uri></author>\
             <link rel=\"self\" type=\"{ATOM}\" href=\"{}\"/>\
             <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>\
             <generator>Signals</generator>",
            self.id.urn(),
            rfc3339(&self.updated),
            e(&self.base.link("/")),
            e(&self.self_link),
            e(&self.base.link("/")),
        );
        for s in &self.signals {
            let _ = write!(
                out,
                "<entry><id>{}</id><title type=\"text\">{}</title>\
                 <link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>",
                s.id.urn(),
                e(&s.title),
                e(&item_link(self.base, s)),
            );
            if let Some(source) = &s.source_url {
                let _ = write!(out, "<link rel=\"related\" href=\"{}\"/>", e(source));
            }
            let _ = write!(
                out,
                "<published>{}</published><updated>{}</updated>",
                rfc3339(&s.published_at),
                rfc3339(&s.updated_at)
            );
            if !s.summary.trim().is_empty() {
                let _ = write!(out, "<summary type=\"text\">{}</summary>", e(&s.summary));
            }
            let _ = write!(
                out,
                "<content type=\"html\">{}</content>\
                 <category term=\"{}\" scheme=\"urn:signals:category\"/>",
                e(&content_html(s)),
                e(&s.category)
            );
            for tag in &s.tags {
                let _ = write!(
                    out,
                    "<category term=\"{}\" scheme=\"urn:signals:tag\"/>",
                    e(tag)
                );
            }
            out.push_str("</entry>");
        }
        out.push_str("</feed>\n");
        out.into_bytes()
    }
}

async fn feed(
    req: HttpRequest,
    state: web::Data<AppState>,
    held: IfNoneMatch,
    since: IfModifiedSince,
    read_after: ReadAfter,
    format: Format,
) -> Result<HttpResponse, ApiError> {
    let query = FeedQuery::parse(req.query_string()).map_err(ApiError::parameter)?;
    let (kind, content_type) = match format {
        Format::Json => ("json", JSON_FEED),
        Format::Atom => ("atom", ATOM),
    };
    let base = Links::of(&req);
    let key = format!("f:{kind}:{}|{}", base.as_str(), req.query_string());
    let made = match state.cache.lookup(key, read_after.needed()).await {
        Lookup::Hit(hit) => hit,
        Lookup::Miss(fill) => {
            let (made, replayed) = state
                .read(fill.needs(read_after.needed()), async |route| {
                    make(&req, &base, route.list_pool, &query, format, kind).await
                })
                .await?;
            fill.keep(made.clone(), replayed);
            Arc::new(made)
        }
    };
    let updated = made.updated.unwrap_or(DateTime::UNIX_EPOCH);
    // HTTP dates count whole seconds: a date given out while its second (and a margin for a
    // transaction still committing) is not over could stand for a later change in the same
    // second too. So until the newest change is that old, `Last-Modified` names the second
    // before it (a date that is never taken for this version: it only costs a full answer),
    // and a client's `If-Modified-Since` is always a date that no later change can share.
    let settled = Utc::now() - updated >= LAST_MODIFIED_MARGIN;
    // If-None-Match, when sent, decides alone (RFC 9110, 13.2.2).
    let fresh = match held.sent() {
        true => held.holds(&made.etag),
        false => {
            settled
                && since
                    .0
                    .is_some_and(|t| updated.timestamp() <= t.timestamp())
        }
    };
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, made.etag.clone()))
        .insert_header((header::CACHE_CONTROL, cache_control(state.public_read)));
    let named = match settled {
        true => updated,
        false => updated - chrono::TimeDelta::seconds(1),
    };
    // Never later than the answer's own date (the database's clock may run ahead of this one).
    let named = named.min(Utc::now());
    let last_modified = HttpDate::from(std::time::SystemTime::from(named));
    response.insert_header((header::LAST_MODIFIED, last_modified));
    if fresh {
        return Ok(response.finish());
    }
    Ok(response.content_type(content_type).body(made.body.clone()))
}

/// A feed's document, its ETag and its newest change.
async fn make(
    req: &HttpRequest,
    base: &PublicBase,
    pool: &crate::db::PgPool,
    query: &FeedQuery,
    format: Format,
    kind: &str,
) -> Result<Cached, ApiError> {
    let mut conn = db::conn(pool).await?;
    let rows = lists::newest(&mut conn, &query.filter, query.limit).await?;
    let newest_change = changes::newest_time(&mut conn).await?;
    drop(conn);
    let signals: Vec<Signal> = rows.into_iter().map(Signal::from).collect();
    let updated = signals
        .iter()
        .map(|s| s.updated_at)
        .chain(newest_change)
        .max()
        .unwrap_or(DateTime::UNIX_EPOCH);
    let path = super::route_path(req);
    let asked = match req.query_string() {
        "" => path,
        q => format!("{path}?{q}"),
    };
    let versions: Vec<_> = signals.iter().map(|s| (s.id, s.updated_at)).collect();
    // The links are part of the representation: a new public URL is a new version. So is the
    // Atom feed's `<updated>` (which any change moves, also one outside the filters); the JSON
    // Feed has no such field.
    let updated_in_body = match format {
        Format::Atom => updated.timestamp_micros(),
        Format::Json => 0,
    };
    let etag = version_etag(
        &versions,
        &format!("{kind}|{}|{asked}|{updated_in_body}", base.as_str()),
    );
    let feed = Feed {
        signals,
        updated,
        self_link: base.link(&asked),
        base,
        id: uuid::Builder::from_custom_bytes(
            Sha256::digest(asked.as_bytes())[..16]
                .try_into()
                .unwrap_or_default(),
        )
        .into_uuid(),
    };
    let body = match format {
        Format::Json => feed.json(),
        Format::Atom => feed.atom(),
    };
    Ok(Cached {
        body: body.into(),
        etag,
        link: None,
        updated: Some(updated),
    })
}

/// JSON Feed
///
/// The newest signals that match the filters (as for the list; newest first, `limit` of them),
/// as a [JSON Feed 1.1](https://jsonfeed.org/version/1.1) for feed readers. Each item's `id` is
/// `urn:uuid:<signal id>` and never changes; `url` is the signal's page on
/// `SIGNALS_PUBLIC_URL` (without it, on the scheme and host a trusted proxy forwarded, or
/// on the address a request straight from its client reached, or relative); `content_html` is the meta line, the summary, the lede and the titled
/// sections as escaped HTML; `tags` are the signal's tags; `date_modified` changes only when
/// the signal does. `_signals` carries the score, category and slug. The `feed_url` is the URL
/// asked for. `ETag` and `Last-Modified` answer `If-None-Match` and `If-Modified-Since` with 304.
#[utoipa::path(
    operation_id = "json_feed",
    tag = "feeds",
    params(FeedQuery, IfNoneMatch, IfModifiedSince, ReadAfter),
    responses(
        (status = 200, description = "A JSON Feed 1.1 document", content_type = "application/feed+json",
            body = Object,
            headers(
                ("ETag" = String, description = "Strong validator of the feed"),
                ("Last-Modified" = String, description = "When the newest change was made (whole seconds); while that is under 2 s ago, the second before it, which `If-Modified-Since` never takes for this version"),
                ("Cache-Control" = String),
            ),
            example = json!({"version": "https://jsonfeed.org/version/1.1", "title": "Signals",
                "home_page_url": "https://signals.example.com/",
                "feed_url": "https://signals.example.com/v1/feed.json?min_score=7",
                "items": [{"id": "urn:uuid:01968a4e-1c40-7cc3-9a51-4b1f0e6e2d10",
                    "url": "https://signals.example.com/s/deepseek-targets-45b-valuation",
                    "title": "DeepSeek targets $45B valuation in its first funding round",
                    "content_html": "<p>7/10 · Industry · 6 May 2026, 18:02 UTC</p>...",
                    "date_published": "2026-05-06T18:02:00Z",
                    "date_modified": "2026-05-06T18:05:12.123456Z",
                    "tags": ["DeepSeek", "LLM"]}]})),
        (status = 304, description = "Not modified: the client's copy is current"),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 503, response = responses::Unavailable),
    ),
    security((), ("bearer" = []))
)]
#[get("/v1/feed.json")]
pub async fn json_feed(
    req: HttpRequest,
    state: web::Data<AppState>,
    _reader: Reader,
    held: IfNoneMatch,
    since: IfModifiedSince,
    read_after: ReadAfter,
) -> Result<HttpResponse, ApiError> {
    feed(req, state, held, since, read_after, Format::Json).await
}

/// Atom feed
///
/// The same feed as `GET /v1/feed.json`, as Atom (RFC 4287): `<id>urn:uuid:<signal id></id>`,
/// `<updated>` changing only when the signal does, `<content type="html">` with the meta line,
/// summary, lede and titled sections, the signal's tags as `<category scheme="urn:signals:tag">`
/// and its category as `<category scheme="urn:signals:category">`. Characters XML 1.0 forbids
/// are left out. `ETag` and `Last-Modified` answer `If-None-Match` and `If-Modified-Since`
/// with 304.
#[utoipa::path(
    operation_id = "atom_feed",
    tag = "feeds",
    params(FeedQuery, IfNoneMatch, IfModifiedSince, ReadAfter),
    responses(
        (status = 200, description = "An Atom feed document", content_type = "application/atom+xml",
            body = String,
            headers(
                ("ETag" = String, description = "Strong validator of the feed"),
                ("Last-Modified" = String, description = "When the newest change was made (whole seconds); while that is under 2 s ago, the second before it, which `If-Modified-Since` never takes for this version"),
                ("Cache-Control" = String),
            ),
            example = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"en\"><id>urn:uuid:...</id><title type=\"text\">Signals</title>...<entry><id>urn:uuid:01968a4e-1c40-7cc3-9a51-4b1f0e6e2d10</id>...</entry></feed>"),
        (status = 304, description = "Not modified: the client's copy is current"),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 503, response = responses::Unavailable),
    ),
    security((), ("bearer" = []))
)]
#[get("/v1/feed.atom")]
pub async fn atom_feed(
    req: HttpRequest,
    state: web::Data<AppState>,
    _reader: Reader,
    held: IfNoneMatch,
    since: IfModifiedSince,
    read_after: ReadAfter,
) -> Result<HttpResponse, ApiError> {
    feed(req, state, held, since, read_after, Format::Atom).await
}
