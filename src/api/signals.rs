//! `/v1/signals`: create, read, replace, patch, delete and list signal items.

use actix_web::http::header::{self, HeaderMap};
use actix_web::{delete, get, patch, post, put, web, HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use diesel_async::AsyncConnection;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::{Principal, Reader, Writer};
use super::idempotency::{self, Idempotency, Write};
use super::problem::{responses, ApiError};
use super::query::ListQuery;
use super::{cacheable_json, check_if_match, read_json, version_etag, AppState};
use crate::db::signals::{self as store, After, SignalJson, SignalRef, SignalRow};
use crate::db::{self, PgConn};
use crate::domain::signal::{Section, SignalDraft, ALL_FIELDS};
use crate::json;

/// Largest body of a single create, replace or patch.
pub const BODY_LIMIT: usize = 1024 * 1024;
const JSON: &[&str] = &["application/json"];
const PATCH_TYPES: &[&str] = &["application/merge-patch+json", "application/json"];

/// A signal item as clients read it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!(example_signal()))]
pub struct Signal {
    /// Server-assigned, time-ordered UUIDv7.
    pub id: Uuid,
    /// Unique; stays unless a request sets it.
    #[schema(pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", min_length = 1, max_length = 120)]
    pub slug: String,
    #[schema(min_length = 1, max_length = 300)]
    pub title: String,
    /// The analysis blurb shown in lists.
    #[schema(max_length = 2000)]
    pub summary: String,
    /// The lede paragraph(s).
    #[schema(max_length = 20000)]
    pub body: String,
    /// Out of 10.
    #[schema(minimum = 0, maximum = 10)]
    pub score: i16,
    #[schema(min_length = 1, max_length = 64)]
    pub category: String,
    /// In UTC.
    #[serde(serialize_with = "rfc3339")]
    pub published_at: DateTime<Utc>,
    #[schema(max_items = 20)]
    pub sections: Vec<Section>,
    #[schema(max_items = 20)]
    pub tags: Vec<String>,
    #[schema(max_length = 2048)]
    pub source_url: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

impl From<SignalRow> for Signal {
    fn from(row: SignalRow) -> Self {
        Signal {
            id: row.id,
            slug: row.slug,
            title: row.title,
            summary: row.summary,
            body: row.body,
            score: row.score,
            category: row.category,
            published_at: row.published_at,
            sections: row.sections.0,
            tags: row.tags,
            source_url: row.source_url,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

impl Signal {
    /// The client fields as a JSON object: what a merge patch applies to.
    fn client_fields(&self) -> Value {
        json!({
            "slug": self.slug, "title": self.title, "summary": self.summary, "body": self.body,
            "score": self.score, "category": self.category,
            "published_at": self.published_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            "sections": self.sections, "tags": self.tags, "source_url": self.source_url,
        })
    }

    fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The strong ETag of this version of the signal.
    pub fn etag(&self) -> String {
        signal_etag(self.id, self.updated_at)
    }
}

/// The strong ETag of a version of a signal: every change moves `updated_at` forward.
fn signal_etag(id: Uuid, updated_at: DateTime<Utc>) -> String {
    version_etag(&[(id, updated_at)], "")
}

/// The fields a client sends to create or replace a signal. Unknown fields are rejected.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!(example_input()))]
#[allow(dead_code)] // documents the body; bodies are parsed by `SignalDraft::parse`
pub struct SignalInput {
    /// Derived from the title when absent (a suffix keeps derived slugs unique). Not UUID-shaped.
    #[schema(pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", min_length = 1, max_length = 120)]
    slug: Option<String>,
    /// 1–300 characters after trimming.
    #[schema(min_length = 1, max_length = 300)]
    title: String,
    #[schema(max_length = 2000)]
    summary: Option<String>,
    #[schema(max_length = 20000)]
    body: Option<String>,
    #[schema(minimum = 0, maximum = 10)]
    score: i16,
    /// 1–64 characters after trimming; filters match it case-insensitively.
    #[schema(min_length = 1, max_length = 64)]
    category: String,
    /// RFC 3339 with an offset; stored in UTC. Default: now (create) or unchanged (replace).
    published_at: Option<DateTime<Utc>>,
    #[schema(max_items = 20)]
    sections: Option<Vec<Section>>,
    /// Each 1–64 characters after trimming; case-insensitive duplicates are dropped.
    #[schema(max_items = 20)]
    tags: Option<Vec<String>>,
    /// An absolute http(s) URL.
    #[schema(max_length = 2048)]
    source_url: Option<String>,
}

/// A page of signals in keyset order.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignalPage {
    pub items: Vec<Signal>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
    /// The number of all matching signals; only with `include_total=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

/// Documents the query parameters of `GET /v1/signals`; they are parsed by `ListQuery::parse`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParams {
    /// Only signals scored at least this (inclusive).
    #[param(minimum = 0, maximum = 10, example = 7)]
    min_score: Option<i16>,
    /// Only signals scored at most this (inclusive).
    #[param(minimum = 0, maximum = 10, example = 9)]
    max_score: Option<i16>,
    /// Repeatable; matches any of them, case-insensitively.
    #[param(style = Form, explode, max_length = 64, example = json!(["Industry"]))]
    category: Option<Vec<String>>,
    /// Repeatable; the signal has all of them (case-insensitive).
    #[param(style = Form, explode, max_length = 64, example = json!(["LLM"]))]
    tag: Option<Vec<String>>,
    /// Repeatable; the signal has at least one of them (case-insensitive).
    #[param(style = Form, explode, max_length = 64, example = json!(["DeepSeek", "OpenAI"]))]
    any_tag: Option<Vec<String>>,
    /// RFC 3339; `since <= published_at`.
    #[param(example = "2026-05-01T00:00:00Z")]
    since: Option<DateTime<Utc>>,
    /// RFC 3339; `published_at < until`. Must not be before `since`.
    #[param(example = "2026-06-01T00:00:00Z")]
    until: Option<DateTime<Utc>>,
    /// Full-text search in web-search syntax (words, "quoted phrases", -exclusions, `or`) over
    /// title, tags, summary, body and sections; title and tags weigh most.
    #[param(
        min_length = 1,
        max_length = 256,
        example = "deepseek \"valuation\" -rumor"
    )]
    q: Option<String>,
    /// Order; ties break by `published_at`, then `id`, in the same direction (`relevance`: newest
    /// first). Default `-published_at`, or `relevance` when `q` is given; `relevance` needs `q`.
    #[param(inline, example = "-published_at")]
    sort: Option<SortParam>,
    /// Page size.
    #[param(minimum = 1, maximum = 100, example = 20)]
    limit: Option<i64>,
    /// Opaque, from `next_cursor`; only valid with the filters and sort that made it.
    #[param(
        example = "eyJxIjoiMkV6cVFTb0NZR0Y0TWxvViIsImsiOnsicCI6WyIyMDI2LTAxLTEwVDEyOjAwOjAwWiIsIjAxYTIyMjY1LTI5Y2UtNzVkYi1iZDI2LThjYzQ2NTgzMGY1MyJdfX0.hijuC_AiOc-AL6Hqp9LNBg"
    )]
    cursor: Option<String>,
    /// Comma-separated top-level fields to return; `id` is always included.
    #[param(pattern = "^[a-z_]+(,[a-z_]+)*$", example = "title,score,published_at")]
    fields: Option<String>,
    /// `true` adds `total`, the count of all matching signals.
    #[param(example = false)]
    include_total: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
enum SortParam {
    #[serde(rename = "-published_at")]
    PublishedDesc,
    #[serde(rename = "published_at")]
    PublishedAsc,
    #[serde(rename = "-score")]
    ScoreDesc,
    #[serde(rename = "score")]
    ScoreAsc,
    #[serde(rename = "relevance")]
    Relevance,
}

/// Create a signal
///
/// Validates every field at once (422 lists each bad one), derives a unique slug from the title
/// when none is given, and remembers the key that created it: only that key or an admin key may
/// change it later. The body may be at most 1 MiB.
///
/// With `Idempotency-Key`, the signal is created once: a retry with the same body gets the first
/// response again (with `Idempotent-Replayed: true`) for 24 hours; the same key with another
/// body is 422, and while the first request is still in flight 409.
#[utoipa::path(
    operation_id = "create_signal",
    tag = "signals",
    params(
        ("Idempotency-Key" = Option<String>, Header, max_length = 255, example = "cron-2026-05-06T18:00-deepseek",
            description = "Makes retries safe: the signal is created once per key and API key (24 hours)"),
    ),
    request_body(content = SignalInput, content_type = "application/json", example = json!(example_input())),
    responses(
        (status = 201, description = "Created", body = Signal, headers(
            ("Location" = String, description = "The new signal's URL: /v1/signals/{id}"),
            ("ETag" = String, description = "Strong validator of the representation"),
            ("Idempotent-Replayed" = String, description = "`true` when this is the stored response of an earlier request with the same Idempotency-Key"),
        ), example = json!(example_signal())),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 403, response = responses::Forbidden),
        (status = 409, response = responses::Conflict),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, response = responses::UnsupportedMediaType),
        (status = 422, response = responses::Unprocessable),
        (status = 503, response = responses::Unavailable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/signals")]
pub async fn create_signal(
    req: HttpRequest,
    state: web::Data<AppState>,
    Writer(principal): Writer,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload, BODY_LIMIT, JSON).await?;
    let draft = SignalDraft::parse(&body).map_err(ApiError::Validation)?;
    let idempotency = Idempotency::from_request(&req, &body)?;
    let mut conn = db::conn(&state.pool).await?;
    idempotency::write(
        &mut conn,
        principal,
        idempotency.as_ref(),
        Write::Create(&draft),
    )
    .await
}

/// Get one signal
///
/// By id or by slug. Answers 304 when `If-None-Match` holds the current ETag.
#[utoipa::path(
    operation_id = "get_signal",
    tag = "signals",
    params(
        ("id_or_slug" = String, Path, description = "The signal's id (UUID) or slug", max_length = 120,
            example = "deepseek-targets-45b-valuation"),
        ("If-None-Match" = Option<String>, Header, description = "ETag(s) the client holds"),
    ),
    responses(
        (status = 200, description = "The signal", body = Signal, headers(
            ("ETag" = String, description = "Strong validator of the representation"),
            ("Cache-Control" = String),
        ), example = json!(example_signal())),
        (status = 304, description = "Not modified: the ETag in If-None-Match is current"),
        (status = 401, response = responses::Unauthorized),
        (status = 404, response = responses::NotFound),
        (status = 503, response = responses::Unavailable),
    ),
    security((), ("bearer" = []))
)]
#[get("/v1/signals/{id_or_slug}")]
pub async fn get_signal(
    req: HttpRequest,
    state: web::Data<AppState>,
    _reader: Reader,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let signal_ref = SignalRef::parse(&path).ok_or_else(not_found)?;
    let signal = store::lookup(&state.lookups, &signal_ref)
        .await?
        .ok_or_else(not_found)?;
    Ok(cacheable_json(
        &req,
        signal_etag(signal.id, signal.updated_at),
        state.public_read,
        || signal.into_bytes(),
    ))
}

/// Replace a signal
///
/// Sets every client field: absent optional fields return to their defaults, except `slug` and
/// `published_at`, which keep their current values (links must not break). A write key may
/// replace only the signals it created; an admin key any. With `If-Match`, the change happens
/// only if the signal's ETag still matches (else 412).
#[utoipa::path(
    operation_id = "replace_signal",
    tag = "signals",
    params(
        ("id" = Uuid, Path, description = "The signal's id"),
        ("If-Match" = Option<String>, Header, description = "Change only if the ETag still matches"),
    ),
    request_body(content = SignalInput, content_type = "application/json", example = json!(example_input())),
    responses(
        (status = 200, description = "Replaced", body = Signal, headers(("ETag" = String)), example = json!(example_signal())),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 403, response = responses::Forbidden),
        (status = 404, response = responses::NotFound),
        (status = 409, response = responses::Conflict),
        (status = 412, response = responses::PreconditionFailed),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, response = responses::UnsupportedMediaType),
        (status = 422, response = responses::Unprocessable),
        (status = 503, response = responses::Unavailable),
    ),
    security(("bearer" = []))
)]
#[put("/v1/signals/{id}")]
pub async fn replace_signal(
    req: HttpRequest,
    state: web::Data<AppState>,
    Writer(principal): Writer,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let body = read_json(&req, payload, BODY_LIMIT, JSON).await?;
    let draft = SignalDraft::parse(&body).map_err(ApiError::Validation)?;
    let mut conn = db::conn(&state.pool).await?;
    let updated = change(&mut conn, req.headers(), principal, id, move |_| Ok(draft)).await?;
    Ok(json_with_etag(&Signal::from(updated)))
}

/// Patch a signal
///
/// Applies a JSON Merge Patch (RFC 7396) to the signal's client fields: a field set to `null`
/// returns to its default. The result is validated like a create. Ownership and `If-Match` as
/// for replace.
#[utoipa::path(
    operation_id = "patch_signal",
    tag = "signals",
    params(
        ("id" = Uuid, Path, description = "The signal's id"),
        ("If-Match" = Option<String>, Header, description = "Change only if the ETag still matches"),
    ),
    request_body(
        content(
            (Object = "application/merge-patch+json", example = json!({"score": 8, "tags": ["DeepSeek", "Funding"]})),
            (Object = "application/json"),
        ),
        description = "Fields to change; null resets a field to its default"
    ),
    responses(
        (status = 200, description = "Patched", body = Signal, headers(("ETag" = String)), example = json!(example_signal())),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 403, response = responses::Forbidden),
        (status = 404, response = responses::NotFound),
        (status = 409, response = responses::Conflict),
        (status = 412, response = responses::PreconditionFailed),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, response = responses::UnsupportedMediaType),
        (status = 422, response = responses::Unprocessable),
        (status = 503, response = responses::Unavailable),
    ),
    security(("bearer" = []))
)]
#[patch("/v1/signals/{id}")]
pub async fn patch_signal(
    req: HttpRequest,
    state: web::Data<AppState>,
    Writer(principal): Writer,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let patch = read_json(&req, payload, BODY_LIMIT, PATCH_TYPES).await?;
    let mut conn = db::conn(&state.pool).await?;
    let updated = change(&mut conn, req.headers(), principal, id, move |current| {
        let mut merged = current.client_fields();
        merge_patch(&mut merged, &patch);
        SignalDraft::parse(&merged).map_err(ApiError::Validation)
    })
    .await?;
    Ok(json_with_etag(&Signal::from(updated)))
}

/// Delete a signal
///
/// Ownership and `If-Match` as for replace.
#[utoipa::path(
    operation_id = "delete_signal",
    tag = "signals",
    params(
        ("id" = Uuid, Path, description = "The signal's id"),
        ("If-Match" = Option<String>, Header, description = "Delete only if the ETag still matches"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 403, response = responses::Forbidden),
        (status = 404, response = responses::NotFound),
        (status = 412, response = responses::PreconditionFailed),
        (status = 503, response = responses::Unavailable),
    ),
    security(("bearer" = []))
)]
#[delete("/v1/signals/{id}")]
pub async fn delete_signal(
    req: HttpRequest,
    state: web::Data<AppState>,
    Writer(principal): Writer,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let headers = req.headers();
    let mut conn = db::conn(&state.pool).await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let current = store::find_for_update(conn, id)
            .await?
            .ok_or_else(not_found)?;
        principal.may_change(current.created_by)?;
        check_if_match(headers, &Signal::from(current).etag())?;
        store::delete(conn, id).await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// List signals
///
/// Newest first by default. Filters combine with AND. Pagination is keyset: follow
/// `next_cursor` (or the `Link: rel="next"` header) and every matching signal is seen exactly
/// once, in order, even while signals are added meanwhile; a later page costs what the first one
/// does. Unknown or repeated single-valued parameters are rejected with 400.
#[utoipa::path(
    operation_id = "list_signals",
    tag = "signals",
    params(ListParams),
    responses(
        (status = 200, description = "A page of signals", body = SignalPage, headers(
            ("Link" = String, description = "`<next page URL>; rel=\"next\"` when there is a next page"),
            ("ETag" = String),
        ), example = json!({"items": [example_signal()], "next_cursor": "eyJxIjoi...Ifp2eQ"})),
        (status = 304, description = "Not modified: the ETag in If-None-Match is current"),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 503, response = responses::Unavailable),
    ),
    security((), ("bearer" = []))
)]
#[get("/v1/signals")]
pub async fn list_signals(
    req: HttpRequest,
    state: web::Data<AppState>,
    _reader: Reader,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(req.query_string())?;
    let after = query.after(&state.cursor_key)?;
    let mut conn = db::conn(&state.list_pool).await?;
    let mut rows = store::list(
        &mut conn,
        &query.filter,
        query.sort,
        after.as_ref(),
        query.limit,
    )
    .await?;
    let next_cursor = if rows.len() as i64 > query.limit {
        rows.truncate(query.limit as usize);
        rows.last()
            .map(|last| query.cursor_for(&After::of(query.sort, last), &state.cursor_key))
    } else {
        None
    };
    let total = match query.include_total {
        true => Some(store::count(&mut conn, &query.filter).await?),
        false => None,
    };
    let versions: Vec<_> = rows.iter().map(|r| (r.id, r.updated_at)).collect();
    let etag = version_etag(
        &versions,
        &format!("{:?}|{next_cursor:?}|{total:?}", query.fields),
    );
    let make_body = || {
        page_json(
            &rows,
            query.fields.as_deref(),
            next_cursor.as_deref(),
            total,
        )
    };
    let mut response = cacheable_json(&req, etag, state.public_read, make_body);
    if let Some(cursor) = &next_cursor {
        if let Ok(link) =
            header::HeaderValue::from_str(&format!("<{}>; rel=\"next\"", next_url(&req, cursor)))
        {
            response.headers_mut().insert(header::LINK, link);
        }
    }
    Ok(response)
}

/// The JSON of a page (what serializing a [`SignalPage`] gives), its signals with only the
/// named top-level fields when `fields` is given.
fn page_json(
    rows: &[SignalJson],
    fields: Option<&[String]>,
    next_cursor: Option<&str>,
    total: Option<i64>,
) -> Vec<u8> {
    let size: usize = rows.iter().map(|r| r.as_bytes().len() + 1).sum();
    let mut out = Vec::with_capacity(size + 256);
    out.extend_from_slice(b"{\"items\":[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match fields {
            None => out.extend_from_slice(row.as_bytes()),
            Some(fields) => {
                row.write_fields(&mut out, |k| fields.iter().any(|f| f == ALL_FIELDS[k]))
            }
        }
    }
    out.extend_from_slice(b"],\"next_cursor\":");
    match next_cursor {
        Some(cursor) => json::write_str(&mut out, cursor),
        None => out.extend_from_slice(b"null"),
    }
    if let Some(total) = total {
        out.extend_from_slice(b",\"total\":");
        json::write_int(&mut out, total);
    }
    out.push(b'}');
    out
}

/// The absolute URL of the next page: the same query with the new cursor.
fn next_url(req: &HttpRequest, cursor: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if k != "cursor" {
            query.append_pair(&k, &v);
        }
    }
    query.append_pair("cursor", cursor);
    let info = req.connection_info();
    format!(
        "{}://{}{}?{}",
        info.scheme(),
        info.host(),
        req.path(),
        query.finish()
    )
}

/// The shared path of PUT and PATCH: lock the row, check owner and `If-Match`, compute the new
/// fields from the current signal, write them, all in one transaction.
async fn change(
    conn: &mut PgConn,
    headers: &HeaderMap,
    principal: Principal,
    id: Uuid,
    draft: impl FnOnce(&Signal) -> Result<SignalDraft, ApiError> + Send,
) -> Result<SignalRow, ApiError> {
    conn.transaction::<_, ApiError, _>(async |conn| {
        let current = store::find_for_update(conn, id)
            .await?
            .ok_or_else(not_found)?;
        principal.may_change(current.created_by)?;
        let signal = Signal::from(current.clone());
        check_if_match(headers, &signal.etag())?;
        let draft = draft(&signal)?;
        Ok(store::replace(conn, &current, &draft).await?)
    })
    .await
}

fn json_with_etag(signal: &Signal) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, signal.etag()))
        .content_type("application/json")
        .body(signal.to_json())
}

/// RFC 7396 JSON Merge Patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn parse_id(s: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(s).map_err(|_| ApiError::BadRequest {
        detail: "the path must name a signal by its id (a UUID)".into(),
        errors: vec![crate::domain::FieldError::new("id", "must be a UUID")],
    })
}

fn not_found() -> ApiError {
    ApiError::NotFound("no signal with this id or slug".into())
}

/// The seed signal, as the spec's example of what a client sends.
pub fn example_input() -> Value {
    json!({
        "title": "DeepSeek targets $45B valuation in its first funding round following highly efficient LLM releases",
        "summary": "DeepSeek's $45B valuation validates algorithmic efficiency over brute-force compute scaling.",
        "body": "DeepSeek, the Chinese AI research lab that disrupted the generative AI landscape in early 2025, is reportedly targeting a $45 billion valuation in its inaugural funding round.",
        "score": 7,
        "category": "Industry",
        "published_at": "2026-05-06T18:02:00Z",
        "sections": [
            {"heading": "Technical Context", "body": "DeepSeek's meteoric rise is driven by heavily optimized model architectures, most notably Multi-head Latent Attention (MLA) and DeepSeekMoE."},
            {"heading": "Why It Matters", "body": "Rigorous systems engineering, custom CUDA kernels, and architectural innovation can bridge the compute gap."},
            {"heading": "What to Watch Next", "body": "Keep an eye on how US-based labs pivot their research pipelines."}
        ],
        "tags": ["DeepSeek", "LLM", "Algorithmic Efficiency", "Venture Capital", "AI Architecture"],
        "source_url": "https://example.com/original-story"
    })
}

/// The seed signal as the service returns it.
pub fn example_signal() -> Value {
    let mut v = example_input();
    let o = v.as_object_mut().expect("an object");
    o.insert("id".into(), json!("01968a4e-1c40-7cc3-9a51-4b1f0e6e2d10"));
    o.insert("slug".into(), json!("deepseek-targets-45b-valuation"));
    o.insert("created_at".into(), json!("2026-05-06T18:05:12.123456Z"));
    o.insert("updated_at".into(), json!("2026-05-06T18:05:12.123456Z"));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "tags": ["x"]});
        merge_patch(
            &mut target,
            &json!({"a": "z", "c": {"f": null}, "tags": ["y", "z"]}),
        );
        assert_eq!(
            target,
            json!({"a": "z", "c": {"d": "e"}, "tags": ["y", "z"]})
        );
    }

    #[test]
    fn the_example_input_is_a_valid_signal() {
        let draft = SignalDraft::parse(&example_input()).unwrap();
        assert_eq!(draft.tags.len(), 5);
        // The documented input type accepts it too, so the two cannot drift apart.
        let _: SignalInput = serde_json::from_value(example_input()).unwrap();
    }
}
