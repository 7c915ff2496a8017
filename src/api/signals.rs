//! `/v1/signals` and `/v1/signals/{id_or_slug}`: create, read, replace, patch and delete one
//! signal item.

use actix_web::guard::GuardContext;
use actix_web::http::StatusCode;
use actix_web::{delete, get, patch, post, put, web, HttpRequest, HttpResponse};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::future::BoxFuture;

use super::auth::{Principal, Reader, Writer};
use super::cache::{Cached, Lookup};
use super::conditions::{
    not_found, IfNoneMatch, NoParameters, ReadAfter, SignalPath, WriteConditions,
};
use super::idempotency::{self, Idempotency, Reply, Write};
use super::problem::{responses, ApiError};
use super::{read_json, signal_etag, AppState};
use crate::db::rows::SignalRow;
use crate::db::{self, lookups, writes, PgConn};
use crate::domain::examples;
use crate::domain::input::{SignalInput, SignalPatch};
use crate::domain::signal::{Signal, SignalRef, RESERVED_SLUGS};

/// Largest body of a single create, replace or patch.
pub const BODY_LIMIT: usize = 1024 * 1024;
const JSON: &[&str] = &["application/json"];
const PATCH_TYPES: &[&str] = &["application/merge-patch+json", "application/json"];

/// Routes `/v1/signals/{id_or_slug}` only for names a signal can have: the other resources
/// under `/v1/signals/` (`batch`, `stream`) keep their own paths and methods, also when their
/// name is percent-encoded (`%62atch`), as routing decodes it.
pub fn names_a_signal(ctx: &GuardContext<'_>) -> bool {
    let path = ctx.head().uri.path();
    let last = path.rsplit('/').next().unwrap_or_default();
    let last = percent_encoding::percent_decode_str(last).decode_utf8_lossy();
    !RESERVED_SLUGS.contains(&last.as_ref())
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
    params(Idempotency),
    request_body(content = SignalInput, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = Signal, headers(
            ("Location" = String, description = "The new signal's path: /v1/signals/{id}"),
            ("ETag" = String, description = "Strong validator of the representation"),
            ("Idempotent-Replayed" = String, description = "`true` when this is the stored response of an earlier request with the same Idempotency-Key"),
        ), example = json!(examples::signal())),
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
    _none: NoParameters,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload, BODY_LIMIT, JSON).await?;
    let input = SignalInput::parse(&body).map_err(ApiError::Validation)?;
    let idempotency = Idempotency::from_request(&req, &body)?;
    let mut conn = db::conn(&state.pool).await?;
    let create = Create {
        input: &input,
        principal,
    };
    idempotency::once(&mut conn, principal.key_id, idempotency.as_ref(), &create).await
}

struct Create<'a> {
    input: &'a SignalInput,
    principal: Principal,
}

impl Write for Create<'_> {
    fn write<'c>(
        &'c self,
        conn: &'c mut AsyncPgConnection,
    ) -> BoxFuture<'c, Result<Reply, ApiError>> {
        Box::pin(async move {
            let row = writes::insert(conn, self.input, Some(self.principal.key_id)).await?;
            let signal = Signal::from(row);
            Ok(Reply {
                status: StatusCode::CREATED,
                location: Some(format!("/v1/signals/{}", signal.id)),
                etag: Some(signal_etag(signal.id, signal.updated_at)),
                body: signal.to_json(),
            })
        })
    }
}

/// Get one signal
///
/// By id or by slug. Answers 304 when `If-None-Match` holds the current ETag.
#[utoipa::path(
    operation_id = "get_signal",
    tag = "signals",
    params(SignalPath, IfNoneMatch, ReadAfter),
    responses(
        (status = 200, description = "The signal", body = Signal, headers(
            ("ETag" = String, description = "Strong validator of the representation"),
            ("Cache-Control" = String),
        ), example = json!(examples::signal())),
        (status = 304, description = "Not modified: the ETag in If-None-Match is current"),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 404, response = responses::NotFound),
        (status = 503, response = responses::Unavailable),
    ),
    security((), ("bearer" = []))
)]
#[get("/v1/signals/{id_or_slug}", guard = "names_a_signal")]
pub async fn get_signal(
    state: web::Data<AppState>,
    _reader: Reader,
    SignalPath(signal_ref): SignalPath,
    _none: NoParameters,
    held: IfNoneMatch,
    read_after: ReadAfter,
) -> Result<HttpResponse, ApiError> {
    let key = match &signal_ref {
        SignalRef::Id(id) => format!("i:{id}"),
        SignalRef::Slug(slug) => format!("s:{slug}"),
    };
    let fill = match state.cache.lookup(key, read_after.needed()).await {
        Lookup::Hit(hit) => return Ok(hit.respond(&held, state.public_read)),
        Lookup::Miss(fill) => fill,
    };
    let (found, replayed) = state
        .read(fill.needs(read_after.needed()), async |route| {
            Ok(lookups::lookup(route.lookups, &signal_ref).await?)
        })
        .await?;
    let signal = found.ok_or_else(not_found)?;
    let etag = signal_etag(signal.id, signal.updated_at);
    let answer = Cached::json(signal.into_bytes().into(), etag, None);
    fill.keep(answer.clone(), replayed);
    Ok(answer.respond(&held, state.public_read))
}

/// Replace a signal
///
/// By id or by slug. Sets every client field: absent optional fields return to their defaults,
/// except `slug` and `published_at`, which keep their current values (links must not break). A
/// write key may replace only the signals it created; an admin key any. With `If-Match`, the
/// change happens only if the signal's ETag still matches (else 412); with `If-None-Match`,
/// only if it is none of those named (`*` names any: 412).
#[utoipa::path(
    operation_id = "replace_signal",
    tag = "signals",
    params(SignalPath, WriteConditions),
    request_body(content = SignalInput, content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced", body = Signal, headers(("ETag" = String, description = "Strong validator of the new representation")), example = json!(examples::signal())),
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
#[put("/v1/signals/{id_or_slug}", guard = "names_a_signal")]
pub async fn replace_signal(
    req: HttpRequest,
    state: web::Data<AppState>,
    Writer(principal): Writer,
    SignalPath(signal_ref): SignalPath,
    _none: NoParameters,
    conditions: WriteConditions,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload, BODY_LIMIT, JSON).await?;
    let input = SignalInput::parse(&body).map_err(ApiError::Validation)?;
    let mut conn = db::conn(&state.pool).await?;
    let updated = change(&mut conn, &conditions, principal, &signal_ref, move |_| {
        Ok(input)
    })
    .await?;
    Ok(json_with_etag(&Signal::from(updated)))
}

/// Patch a signal
///
/// By id or by slug. Applies a JSON Merge Patch (RFC 7396) to the signal's client fields: a
/// field set to `null` returns to its default. The result is validated like a create. Ownership
/// and `If-Match` as for replace.
#[utoipa::path(
    operation_id = "patch_signal",
    tag = "signals",
    params(SignalPath, WriteConditions),
    request_body(
        content(
            (SignalPatch = "application/merge-patch+json"),
            (SignalPatch = "application/json"),
        ),
        description = "Fields to change; null resets a field to its default"
    ),
    responses(
        (status = 200, description = "Patched", body = Signal, headers(("ETag" = String, description = "Strong validator of the new representation")), example = json!(examples::signal())),
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
#[patch("/v1/signals/{id_or_slug}", guard = "names_a_signal")]
pub async fn patch_signal(
    req: HttpRequest,
    state: web::Data<AppState>,
    Writer(principal): Writer,
    SignalPath(signal_ref): SignalPath,
    _none: NoParameters,
    conditions: WriteConditions,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload, BODY_LIMIT, PATCH_TYPES).await?;
    let patch = SignalPatch::parse(body).map_err(ApiError::Validation)?;
    let mut conn = db::conn(&state.pool).await?;
    let updated = change(
        &mut conn,
        &conditions,
        principal,
        &signal_ref,
        move |current| patch.apply(current).map_err(ApiError::Validation),
    )
    .await?;
    Ok(json_with_etag(&Signal::from(updated)))
}

/// Delete a signal
///
/// By id or by slug. Ownership and `If-Match` as for replace.
#[utoipa::path(
    operation_id = "delete_signal",
    tag = "signals",
    params(SignalPath, WriteConditions),
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
#[delete("/v1/signals/{id_or_slug}", guard = "names_a_signal")]
pub async fn delete_signal(
    state: web::Data<AppState>,
    Writer(principal): Writer,
    SignalPath(signal_ref): SignalPath,
    _none: NoParameters,
    conditions: WriteConditions,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::conn(&state.pool).await?;
    conn.transaction::<_, ApiError, _>(async |conn| {
        let current = writes::find_for_update(conn, &signal_ref)
            .await?
            .ok_or_else(not_found)?;
        principal.may_change(current.created_by)?;
        conditions.check(&signal_etag(current.id, current.updated_at))?;
        writes::delete(conn, current.id).await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The shared path of PUT and PATCH: lock the row, check owner and `If-Match`, compute the new
/// fields from the current signal, write them, all in one transaction.
async fn change(
    conn: &mut PgConn,
    conditions: &WriteConditions,
    principal: Principal,
    signal_ref: &SignalRef,
    input: impl FnOnce(&Signal) -> Result<SignalInput, ApiError> + Send,
) -> Result<SignalRow, ApiError> {
    conn.transaction::<_, ApiError, _>(async |conn| {
        let current = writes::find_for_update(conn, signal_ref)
            .await?
            .ok_or_else(not_found)?;
        principal.may_change(current.created_by)?;
        conditions.check(&signal_etag(current.id, current.updated_at))?;
        let input = input(&Signal::from(current.clone()))?;
        Ok(writes::replace(conn, &current, &input).await?)
    })
    .await
}

fn json_with_etag(signal: &Signal) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::ETAG,
            signal_etag(signal.id, signal.updated_at),
        ))
        .content_type("application/json")
        .body(signal.to_json())
}
