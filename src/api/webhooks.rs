//! `/v1/webhooks`: signed webhook subscriptions (admin keys only) and their delivery attempts.

use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{delete, get, patch, post, web, FromRequest, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use futures_util::future::{ready, Ready};
use serde::Serialize;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::Required;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::auth::Admin;
use super::conditions::NoParameters;
use super::problem::{responses, ApiError};
use super::read_json;
use crate::db;
use crate::db::webhooks::{self as stored, WebhookRow};
use crate::domain::query::{parameters, DeliveryQuery, DELIVERY_PARAMS};
use crate::domain::webhook::{self, WebhookInput, WebhookPatch};
use crate::domain::FieldError;
use crate::live::outbound;
use crate::live::webhooks::Webhooks;

const BODY_LIMIT: usize = 64 * 1024;
const JSON: &[&str] = &["application/json"];
const PATCH_TYPES: &[&str] = &["application/merge-patch+json", "application/json"];
/// How long the secret before a rotation goes on signing beside the new one.
const ROTATION_OVERLAP: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// A webhook subscription.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "01968a4e-1c40-7cc3-9a51-4b1f0e6e2d10",
    "url": "https://hooks.example.com/signals", "min_score": 7, "categories": ["Industry"],
    "tags": [], "events": ["signal.created"], "enabled": true, "disabled_reason": null,
    "previous_secret_until": null, "created_at": "2026-05-06T18:05:12.123456Z",
    "updated_at": "2026-05-06T18:05:12.123456Z"}))]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    /// Only signals scored at least this; null: any score.
    pub min_score: Option<i16>,
    /// Only signals in one of these categories (case-insensitive); empty: any.
    pub categories: Vec<String>,
    /// Only signals with all of these tags (case-insensitive).
    pub tags: Vec<String>,
    #[schema(example = json!(["signal.created", "signal.updated", "signal.deleted"]))]
    pub events: Vec<String>,
    /// Deliveries are made while true.
    pub enabled: bool,
    /// Why the service disabled it (a receiver's 410); null otherwise.
    pub disabled_reason: Option<String>,
    /// The signing secret (`whsec_` and base64): only in the answers of create and rotate,
    /// shown once. Deliveries are signed per Standard Webhooks with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// After a rotation, until when the secret before it signs too (the
    /// `webhook-signature` header then carries both signatures).
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Webhook {
    fn of(row: WebhookRow, secret: Option<String>) -> Webhook {
        Webhook {
            id: row.id,
            url: row.url,
            min_score: row.min_score,
            categories: row.categories,
            tags: row.tags,
            events: row.events,
            enabled: row.enabled,
            disabled_reason: row.disabled_reason,
            secret,
            previous_secret_until: row.previous_until.filter(|t| *t > Utc::now()),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Every subscription, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub items: Vec<Webhook>,
}

/// One attempt to deliver a change to a subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryAttempt {
    /// The attempt's own id (what `cursor` takes).
    pub id: Uuid,
    /// The delivery's `webhook-id` header: the same for every attempt of one change.
    #[schema(example = "msg_01968a4e1c407cc39a514b1f0e6e2d10")]
    pub message_id: String,
    /// `signal.created`, `signal.updated` or `signal.deleted`.
    pub event: String,
    /// The change's position in the change log (the stream's `id:`).
    pub position: i64,
    /// 1 for the first attempt.
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    /// The receiver's HTTP status; null when none came.
    pub status: Option<i16>,
    /// From sending to the end of the answer.
    pub latency_ms: i32,
    /// null on success; else `status` (not a 2xx), `timeout`, `connect`, `dns`, `tls`,
    /// `address` (a scheme or address deliveries may not use) or `other`. (A delivery put off
    /// because its receiver could not be reached a moment before is not listed: it was not
    /// attempted.)
    pub error: Option<String>,
    /// When it is tried again; null when it is not.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Where the delivery is now: `pending`, `delivered` or `failed`.
    pub state: String,
}

/// A page of attempts, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryAttempt>,
    /// Pass as `cursor` for the next (older) page; null on the last one.
    pub next_cursor: Option<Uuid>,
}

/// The subscription `{id}` names; 404 for anything that is not an id.
pub struct WebhookPath(Uuid);

impl FromRequest for WebhookPath {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = req.match_info().get("id").unwrap_or_default();
        ready(
            Uuid::try_parse(id)
                .map(WebhookPath)
                .map_err(|_| gone_astray()),
        )
    }
}

fn gone_astray() -> ApiError {
    ApiError::NotFound("no webhook subscription with this id".into())
}

impl IntoParams for WebhookPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("id")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("The subscription's id."))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            ))
            .build()]
    }
}

impl IntoParams for DeliveryQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        parameters(DELIVERY_PARAMS)
    }
}

/// 422 unless this service may deliver to the URL: its scheme, and where it leads now (an
/// address written in it, or every address its name resolves to, of the service's own network
/// is refused unless `SIGNALS_WEBHOOK_ALLOW_PRIVATE=true`). The address is checked again at
/// every connection, as what a name resolves to can change (a refused one fails the delivery
/// with `address`).
async fn check_deliverable(hooks: &Webhooks, url: &str) -> Result<(), ApiError> {
    let settings = hooks.settings();
    let refused = |message: &str| ApiError::Validation(vec![FieldError::new("url", message)]);
    outbound::check_scheme(url, settings.allow_http)
        .map_err(|_| refused("must be https (http needs SIGNALS_WEBHOOK_ALLOW_HTTP=true)"))?;
    outbound::check_destination(url, settings.allow_private, settings.allow_http)
        .await
        .map_err(|_| {
            refused(
                "leads to a loopback, private, link-local or otherwise local address \
                 (allowed only with SIGNALS_WEBHOOK_ALLOW_PRIVATE=true)",
            )
        })
}

/// Create a webhook subscription
///
/// Every change of a signal that matches the filters, from now on, is POSTed to `url` as
/// `{"type", "timestamp", "data"}` (`data`: the signal as `GET /v1/signals/{id_or_slug}`
/// returns it; `{"id", "slug"}` for a deletion), signed per Standard Webhooks: `webhook-id`
/// (the same for every retry of one change), `webhook-timestamp`, and `webhook-signature`
/// (`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` with the secret). A 2xx answer
/// is a delivery; anything else, a time-out (10 s) or no connection is retried after 5 s,
/// 5 min, 30 min, 2 h, 5 h and then every 10 h, for about three days; a 410 disables the
/// subscription. Redirects are not followed. The answer shows the secret, once.
#[utoipa::path(
    operation_id = "create_webhook",
    tag = "webhooks",
    request_body(content = WebhookInput, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; `secret` is shown only now", body = Webhook,
            headers(("Location" = String, description = "/v1/webhooks/{id}"))),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 403, response = responses::Forbidden),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, response = responses::UnsupportedMediaType),
        (status = 422, response = responses::Unprocessable),
        (status = 503, response = responses::Unavailable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/webhooks")]
pub async fn create_webhook(
    req: HttpRequest,
    hooks: web::Data<Arc<Webhooks>>,
    _admin: Admin,
    _: NoParameters,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload, BODY_LIMIT, JSON).await?;
    let input = WebhookInput::parse(&body).map_err(ApiError::Validation)?;
    check_deliverable(&hooks, &input.url).await?;
    let id = Uuid::now_v7();
    let (secret, key) = webhook::new_secret();
    let mut conn = db::conn(hooks.pool()).await?;
    let row = stored::create(&mut conn, id, &input, hooks.sealer().seal(&id, &key)).await?;
    Ok(HttpResponse::build(StatusCode::CREATED)
        .insert_header(("Location", format!("/v1/webhooks/{id}")))
        .json(Webhook::of(row, Some(secret))))
}

/// List webhook subscriptions
///
/// Every subscription, oldest first (without secrets).
#[utoipa::path(
    operation_id = "list_webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "The subscriptions", body = WebhookList),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 403, response = responses::Forbidden),
        (status = 503, response = responses::Unavailable),
    ),
    security(("bearer" = []))
)]
#[get("/v1/webhooks")]
pub async fn list_webhooks(
    hooks: web::Data<Arc<Webhooks>>,
    _admin: Admin,
    _: NoParameters,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::conn(hooks.pool()).await?;
    let items = stored::list(&mut conn)
        .await?
        .into_iter()
        .map(|row| Webhook::of(row, None))
        .collect();
    Ok(HttpResponse::Ok().json(WebhookList { items }))
}

/// Get a webhook subscription
///
/// Its URL, filters, events and state (without the secret).
#[utoipa::path(
    operation_id = "get_webhook",
    tag = "webhooks",
    params(WebhookPath),
    responses(
        (status = 200, description = "The subscription", body = Webhook),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 403, response = responses::Forbidden),
        (status = 404, response = responses::NotFound),
        (status = 503, response = responses::Unavailable),
    ),
    security(("bearer" = []))
)]
#[get("/v1/webhooks/{id}")]
pub async fn get_webhook(
    hooks: web::Data<Arc<Webhooks>>,
    _admin: Admin,
    WebhookPath(id): WebhookPath,
    _: NoParameters,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::conn(hooks.pool()).await?;
    let row = stored::get(&mut conn, id).await?.ok_or_else(gone_astray)?;
    Ok(HttpResponse::Ok().json(Webhook::of(row, None)))
}

/// Change a webhook subscription
///
/// A JSON Merge Patch (RFC 7396) of `url`, the filters, `events` and `enabled`; the result is
/// checked like a create. Enabling a subscription the service disabled resumes its pending
/// deliveries.
#[utoipa::path(
    operation_id = "patch_webhook",
    tag = "webhooks",
    params(WebhookPath),
    request_body(
        content(
            (WebhookPatch = "application/merge-patch+json"),
            (WebhookPatch = "application/json"),
        ),
        description = "Fields to change; null resets a field to its default"
    ),
    responses(
        (status = 200, description = "Changed", body = Webhook),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 403, response = responses::Forbidden),
        (status = 404, response = responses::NotFound),
        (status = 413, response = responses::PayloadTooLarge),
        (status = 415, response = responses::UnsupportedMediaType),
        (status = 422, response = responses::Unprocessable),
        (status = 503, response = responses::Unavailable),
    ),
    security(("bearer" = []))
)]
#[patch("/v1/webhooks/{id}")]
pub async fn patch_webhook(
    req: HttpRequest,
    hooks: web::Data<Arc<Webhooks>>,
    _admin: Admin,
    WebhookPath(id): WebhookPath,
    _: NoParameters,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload, BODY_LIMIT, PATCH_TYPES).await?;
    let patch = WebhookPatch::parse(body).map_err(ApiError::Validation)?;
    // A new URL is checked before the row is locked (it may be resolved, up to 2 s); a patch
    // that leaves the URL alone is not refused for it.
    if let Some(url) = patch.url() {
        check_deliverable(&hooks, url).await?;
    }
    let mut conn = db::conn(hooks.pool()).await?;
    // The row locked from read to write: a 410 that disables the subscription meanwhile is
    // either seen by the merge or applied after it, never overwritten with the old `enabled`.
    let row = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let current = stored::get_for_update(conn, id)
                .await?
                .ok_or_else(gone_astray)?;
            let input = patch
                .apply(&current.input())
                .map_err(ApiError::Validation)?;
            stored::update(conn, id, &input)
                .await?
                .ok_or_else(gone_astray)
        })
        .await?;
    Ok(HttpResponse::Ok().json(Webhook::of(row, None)))
}

/// Delete a webhook subscription
///
/// With its pending deliveries and their history.
#[utoipa::path(
    operation_id = "delete_webhook",
    tag = "webhooks",
    params(WebhookPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 403, response = responses::Forbidden),
        (status = 404, response = responses::NotFound),
        (status = 503, response = responses::Unavailable),
    ),
    security(("bearer" = []))
)]
#[delete("/v1/webhooks/{id}")]
pub async fn delete_webhook(
    hooks: web::Data<Arc<Webhooks>>,
    _admin: Admin,
    WebhookPath(id): WebhookPath,
    _: NoParameters,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db::conn(hooks.pool()).await?;
    match stored::delete(&mut conn, id).await? {
        true => Ok(HttpResponse::NoContent().finish()),
        false => Err(gone_astray()),
    }
}

/// Rotate a webhook subscription's secret
///
/// A new secret, shown once in the answer. For 24 hours the secret before it signs too: each
/// delivery's `webhook-signature` carries both signatures (space-separated), so a receiver can
/// switch to the new secret at any moment of that day. One old secret at a time: rotating again
/// within the day replaces it with the secret being rotated out.
#[utoipa::path(
    operation_id = "rotate_webhook_secret",
    tag = "webhooks",
    params(WebhookPath),
    responses(
        (status = 200, description = "Rotated; `secret` is the new one, shown only now", body = Webhook),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 403, response = responses::Forbidden),
        (status = 404, response = responses::NotFound),
        (status = 503, response = responses::Unavailable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/webhooks/{id}/rotate-secret")]
pub async fn rotate_webhook_secret(
    hooks: web::Data<Arc<Webhooks>>,
    _admin: Admin,
    WebhookPath(id): WebhookPath,
    _: NoParameters,
) -> Result<HttpResponse, ApiError> {
    let (secret, key) = webhook::new_secret();
    let mut conn = db::conn(hooks.pool()).await?;
    let row = stored::rotate(
        &mut conn,
        id,
        hooks.sealer().seal(&id, &key),
        Utc::now() + ROTATION_OVERLAP,
    )
    .await?
    .ok_or_else(gone_astray)?;
    Ok(HttpResponse::Ok().json(Webhook::of(row, Some(secret))))
}

/// List a subscription's delivery attempts
///
/// Newest first, a page at a time: the change each was for, when, the receiver's status, the
/// latency, what went wrong and when it is tried again.
#[utoipa::path(
    operation_id = "list_webhook_deliveries",
    tag = "webhooks",
    params(WebhookPath, DeliveryQuery),
    responses(
        (status = 200, description = "A page of attempts", body = DeliveryPage),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 403, response = responses::Forbidden),
        (status = 404, response = responses::NotFound),
        (status = 503, response = responses::Unavailable),
    ),
    security(("bearer" = []))
)]
#[get("/v1/webhooks/{id}/deliveries")]
pub async fn list_webhook_deliveries(
    req: HttpRequest,
    hooks: web::Data<Arc<Webhooks>>,
    _admin: Admin,
    WebhookPath(id): WebhookPath,
) -> Result<HttpResponse, ApiError> {
    let query = DeliveryQuery::parse(req.query_string()).map_err(ApiError::parameter)?;
    let mut conn = db::conn(hooks.pool()).await?;
    stored::get(&mut conn, id).await?.ok_or_else(gone_astray)?;
    let mut rows = stored::attempts(&mut conn, id, query.before, query.limit + 1).await?;
    let next_cursor = match rows.len() as i64 > query.limit {
        true => {
            rows.truncate(query.limit as usize);
            rows.last().map(|r| r.id)
        }
        false => None,
    };
    let items = rows
        .into_iter()
        .map(|r| DeliveryAttempt {
            id: r.id,
            message_id: format!("msg_{}", r.delivery_id.simple()),
            event: r.event_type,
            position: r.position,
            attempt: r.attempt,
            attempted_at: r.attempted_at,
            status: r.status,
            latency_ms: r.latency_ms,
            error: r.error,
            next_attempt_at: r.next_attempt_at,
            state: r.state,
        })
        .collect();
    Ok(HttpResponse::Ok().json(DeliveryPage { items, next_cursor }))
}
