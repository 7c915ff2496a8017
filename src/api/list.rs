//! `GET /v1/signals`: list and query signals, a page at a time in keyset order.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, Ref, Schema};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::auth::Reader;
use super::cache::{Cached, Lookup};
use super::conditions::{IfNoneMatch, ReadAfter};
use super::problem::{responses, ApiError};
use super::{version_etag, AppState, Links};
use crate::db::{lists, signal_json::SignalJson};
use crate::domain::examples;
use crate::domain::query::{parameters, ListQuery, LIST_PARAMS};
use crate::domain::signal::{Signal, ALL_FIELDS};
use crate::json;

/// A page of signals in keyset order.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignalPage {
    /// The signals; with `fields`, each has only those fields (and `id`).
    #[schema(schema_with = page_items)]
    pub items: Vec<Signal>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,2048}\\.[A-Za-z0-9_-]{22}$")]
    pub next_cursor: Option<String>,
    /// The number of all matching signals; only with `include_total=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

/// A signal with only some of its fields, as `fields=` asks: `id` and those named.
pub struct SignalFields;

impl PartialSchema for SignalFields {
    fn schema() -> RefOr<Schema> {
        let mut schema = Signal::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.required = vec!["id".into()];
            object.description =
                Some("A signal with only the fields `fields` names, and `id` (always).".into());
            object.example = None;
        }
        schema
    }
}

impl ToSchema for SignalFields {}

fn page_items() -> ArrayBuilder {
    ArrayBuilder::new().items(
        AnyOfBuilder::new()
            .item(Ref::from_schema_name("Signal"))
            .item(Ref::from_schema_name("SignalFields")),
    )
}

impl IntoParams for ListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        parameters(LIST_PARAMS)
    }
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
    params(ListQuery, IfNoneMatch, ReadAfter),
    responses(
        (status = 200, description = "A page of signals", body = SignalPage, headers(
            ("Link" = String, description = "`<next page URL>; rel=\"next\"` when there is a next page: on `SIGNALS_PUBLIC_URL`, or else on the scheme and host a trusted proxy forwarded (`X-Forwarded-Proto`, `X-Forwarded-Host` or `Host`), or else, for a request straight from its client, on the address its connection reached (`http://127.0.0.1:8080`); relative through a proxy not trusted (one that sends `X-Forwarded-*`, `X-Real-IP`, `Forwarded` or `Via`)"),
            ("ETag" = String, description = "Strong validator of the page"),
            ("Cache-Control" = String),
        ), example = json!({"items": [examples::signal()], "next_cursor": null})),
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
    held: IfNoneMatch,
    read_after: ReadAfter,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(req.query_string()).map_err(ApiError::parameter)?;
    let after = query
        .after(&state.cursor_key)
        .map_err(ApiError::parameter)?;
    let base = Links::of(&req);
    // First pages are what most clients ask for, again and again: they are cached, apart for
    // each base of their links.
    let key = format!("l:{}|{}", base.as_str(), req.query_string());
    let fill = match after.is_none() {
        true => match state.cache.lookup(key, read_after.needed()).await {
            Lookup::Hit(hit) => return Ok(hit.respond(&held, state.public_read)),
            Lookup::Miss(fill) => Some(fill),
        },
        false => None,
    };
    let needed = fill
        .as_ref()
        .map_or(read_after.needed(), |f| f.needs(read_after.needed()));
    let ((page, total), replayed) = state
        .read(needed, async |route| {
            let (mut conn, plan) = route
                .list_conn(
                    &query.filter,
                    query.sort,
                    query.include_total,
                    &state.shares,
                )
                .await?;
            let page = lists::list(
                &mut conn,
                &query.filter,
                query.sort,
                after.as_ref(),
                query.limit,
                &state.horizon,
                plan,
            )
            .await?;
            let total = match query.include_total {
                true => Some(lists::count(&mut conn, &query.filter).await?),
                false => None,
            };
            Ok((page, total))
        })
        .await?;
    let rows = page.rows;
    let next_cursor = page
        .next
        .map(|after| query.cursor_for(&after, &state.cursor_key));
    let versions: Vec<_> = rows.iter().map(|r| (r.id, r.updated_at)).collect();
    let etag = version_etag(
        &versions,
        &format!("{:?}|{next_cursor:?}|{total:?}", query.fields),
    );
    let link = next_cursor
        .as_ref()
        .map(|cursor| format!("<{}>; rel=\"next\"", base.link(&next_query(&req, cursor))));
    let body = actix_web::web::Bytes::from(page_json(
        &rows,
        query.fields.as_deref(),
        next_cursor.as_deref(),
        total,
    ));
    let answer = Cached::json(body, etag, link);
    if let Some(fill) = fill {
        fill.keep(answer.clone(), replayed);
    }
    Ok(answer.respond(&held, state.public_read))
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

/// The path and query of the next page: the same query with the new cursor.
pub fn next_query(req: &HttpRequest, cursor: &str) -> String {
    next_query_of(&super::route_path(req), req.query_string(), cursor)
}

/// [`next_query`] of `path` with `query_string` (the parameters a page read).
pub fn next_query_of(path: &str, query_string: &str, cursor: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query_string.as_bytes()) {
        if k != "cursor" {
            query.append_pair(&k, &v);
        }
    }
    query.append_pair("cursor", cursor);
    format!("{path}?{}", query.finish())
}
