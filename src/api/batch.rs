//! `POST /v1/signals/batch`: create or upsert up to 1,000 signals in one transaction.

use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Writer;
use super::idempotency::{self, Idempotency, Write};
use super::problem::{responses, ApiError};
use super::read_json;
use super::signals::{example_input, SignalInput};
use super::AppState;
use crate::db::{self, signals::OnConflict};
use crate::domain::signal::SignalDraft;
use crate::domain::FieldError;

pub const BATCH_BODY_LIMIT: usize = 16 * 1024 * 1024;
pub const BATCH_MAX_ITEMS: usize = 1000;

/// A batch of signals. Unknown fields are rejected.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"items": [example_input()], "on_conflict": "skip"}))]
#[allow(dead_code)] // documents the body; bodies are parsed by `parse_batch`
pub struct BatchRequest {
    /// 1 to 1,000 signals, each validated like a single create.
    #[schema(min_items = 1, max_items = 1000)]
    items: Vec<SignalInput>,
    /// What an item whose slug another signal already has does: `error` (default) rejects the
    /// whole batch with 409 naming the items; `skip` leaves the existing signal; `update`
    /// replaces its fields (only a signal this key created, or any with an admin key).
    #[schema(inline)]
    on_conflict: Option<OnConflictParam>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum OnConflictParam {
    Error,
    Skip,
    Update,
}

/// The ids of the batch's signals by what happened to them, each list in input order.
#[derive(Debug, Default, Serialize, ToSchema)]
#[schema(example = json!({"created": ["01968a4e-1c40-7cc3-9a51-4b1f0e6e2d10"], "updated": [], "skipped": []}))]
pub struct BatchResult {
    pub created: Vec<Uuid>,
    pub updated: Vec<Uuid>,
    pub skipped: Vec<Uuid>,
}

/// Parses one item of a batch (or one line of `signals import`), validated like a single create;
/// `earlier` are the batch's items before it, whose slugs it must not repeat.
pub fn parse_item(item: &Value, earlier: &[SignalDraft]) -> Result<SignalDraft, Vec<FieldError>> {
    let draft = SignalDraft::parse(item)?;
    if let Some(slug) = &draft.slug {
        if earlier.iter().any(|d| d.slug.as_ref() == Some(slug)) {
            return Err(vec![FieldError::new(
                "slug",
                "is used by an earlier item of this batch",
            )]);
        }
    }
    Ok(draft)
}

/// Parses the batch body; every problem of every item is reported, with the item's index.
fn parse_batch(body: &Value) -> Result<(Vec<SignalDraft>, OnConflict), ApiError> {
    let invalid =
        |field: &str, message: &str| ApiError::Validation(vec![FieldError::new(field, message)]);
    let object = body
        .as_object()
        .ok_or_else(|| invalid("", "the body must be a JSON object with items"))?;
    if let Some(unknown) = object.keys().find(|k| *k != "items" && *k != "on_conflict") {
        return Err(invalid(unknown, "is not a field of a batch"));
    }
    let on_conflict = match object.get("on_conflict") {
        None | Some(Value::Null) => OnConflict::Error,
        Some(Value::String(s)) if s == "error" => OnConflict::Error,
        Some(Value::String(s)) if s == "skip" => OnConflict::Skip,
        Some(Value::String(s)) if s == "update" => OnConflict::Update,
        Some(_) => return Err(invalid("on_conflict", "must be one of error, skip, update")),
    };
    let items = match object.get("items") {
        Some(Value::Array(items)) => items,
        _ => return Err(invalid("items", "is required: an array of signals")),
    };
    if items.is_empty() || items.len() > BATCH_MAX_ITEMS {
        return Err(invalid("items", "must hold 1 to 1000 signals"));
    }
    let mut drafts = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match parse_item(item, &drafts) {
            Ok(draft) => drafts.push(draft),
            Err(item_errors) => errors.extend(item_errors.into_iter().map(|e| FieldError {
                index: Some(index),
                ..e
            })),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok((drafts, on_conflict))
}

/// Create or upsert signals in one transaction
///
/// Up to 1,000 signals, all or nothing: any invalid item rejects the whole batch with 422 and
/// the errors of every item (`errors[].index` is the item's position). `on_conflict` decides what
/// an explicit slug that already exists does (`error`: 409 naming the items; `skip`; `update`).
/// Items without a slug get one derived from the title, made unique. The answer lists the ids
/// of created, updated and skipped signals, each in input order. The body may be at most 16 MiB.
///
/// With `Idempotency-Key`, the batch is written once: a retry with the same body gets the first
/// response again (with `Idempotent-Replayed: true`) for 24 hours; the same key with another
/// body is 422, and while the first request is still in flight 409.
#[utoipa::path(
    operation_id = "batch_signals",
    tag = "signals",
    params(
        ("Idempotency-Key" = Option<String>, Header, max_length = 255, example = "import-2026-05-06-part-3",
            description = "Makes retries safe: the batch is written once per key and API key (24 hours)"),
    ),
    request_body(content = BatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Every item written (or skipped)", body = BatchResult, headers(
            ("Idempotent-Replayed" = String, description = "`true` when this is the stored response of an earlier request with the same Idempotency-Key"),
        )),
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
#[post("/v1/signals/batch")]
pub async fn batch_signals(
    req: HttpRequest,
    state: web::Data<AppState>,
    Writer(principal): Writer,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload, BATCH_BODY_LIMIT, &["application/json"]).await?;
    let (drafts, on_conflict) = parse_batch(&body)?;
    let idempotency = Idempotency::from_request(&req, &body)?;
    let mut conn = db::conn(&state.pool).await?;
    idempotency::write(
        &mut conn,
        principal,
        idempotency.as_ref(),
        Write::Batch(&drafts, on_conflict),
    )
    .await
}
