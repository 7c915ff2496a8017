//! `POST /v1/signals/batch`: create or upsert up to 1,000 signals in one transaction.

use actix_web::http::StatusCode;
use actix_web::{post, web, HttpRequest, HttpResponse};
use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{Principal, Writer};
use super::conditions::NoParameters;
use super::idempotency::{self, Idempotency, Reply, Write};
use super::problem::{responses, ApiError};
use super::{read_json, AppState};
use crate::db;
use crate::db::writes::{self, BatchError, BatchOutcome};
use crate::domain::input::BatchInput;
use crate::domain::FieldError;

pub const BATCH_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The ids of the batch's signals by what happened to them, each list in input order.
#[derive(Debug, Default, Serialize, ToSchema)]
#[schema(example = json!({"created": ["01968a4e-1c40-7cc3-9a51-4b1f0e6e2d10"], "updated": [], "skipped": []}))]
pub struct BatchResult {
    pub created: Vec<Uuid>,
    pub updated: Vec<Uuid>,
    pub skipped: Vec<Uuid>,
}

impl From<Vec<BatchOutcome>> for BatchResult {
    fn from(outcomes: Vec<BatchOutcome>) -> Self {
        let mut result = BatchResult::default();
        for outcome in outcomes {
            match outcome {
                BatchOutcome::Created(id) => result.created.push(id),
                BatchOutcome::Updated(id) => result.updated.push(id),
                BatchOutcome::Skipped(id) => result.skipped.push(id),
            }
        }
        result
    }
}

/// Create or upsert signals in one transaction
///
/// Up to 1,000 signals, all or nothing: any invalid item rejects the whole batch with 422 and
/// the errors of every item (`errors[].index` is the item's position). `on_conflict` decides what
/// an explicit slug that already exists does (`error`: 409 naming the items; `skip`; `update`).
/// An explicit slug may repeat: the later item meets the signal the earlier one wrote, and with
/// `update` the signal is written once, as the last item leaves it.
/// Items without a slug get one derived from the title, made unique. The answer lists the ids
/// of created, updated and skipped signals, each in input order. The body may be at most 16 MiB.
///
/// With `Idempotency-Key`, the batch is written once: a retry with the same body gets the first
/// response again (with `Idempotent-Replayed: true`) for 24 hours; the same key with another
/// body is 422, and while the first request is still in flight 409.
#[utoipa::path(
    operation_id = "batch_signals",
    tag = "signals",
    params(Idempotency),
    request_body(content = BatchInput, content_type = "application/json"),
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
    _none: NoParameters,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload, BATCH_BODY_LIMIT, &["application/json"]).await?;
    let batch = BatchInput::parse(&body).map_err(ApiError::Validation)?;
    let idempotency = Idempotency::from_request(&req, &body)?;
    let mut conn = db::conn(&state.pool).await?;
    let write = Batch {
        batch: &batch,
        principal,
    };
    idempotency::once(&mut conn, principal.key_id, idempotency.as_ref(), &write).await
}

struct Batch<'a> {
    batch: &'a BatchInput,
    principal: Principal,
}

impl Write for Batch<'_> {
    fn write<'c>(
        &'c self,
        conn: &'c mut AsyncPgConnection,
    ) -> BoxFuture<'c, Result<Reply, ApiError>> {
        Box::pin(async move {
            let principal = self.principal;
            let may_change = |created_by| principal.may_change(created_by).is_ok();
            let outcomes = writes::write_batch(
                conn,
                &self.batch.items,
                self.batch.on_conflict,
                Some(principal.key_id),
                may_change,
            )
            .await
            .map_err(batch_error)?;
            Ok(Reply {
                status: StatusCode::OK,
                location: None,
                etag: None,
                body: serde_json::to_vec(&BatchResult::from(outcomes)).unwrap_or_default(),
            })
        })
    }
}

fn batch_error(e: BatchError) -> ApiError {
    match e {
        BatchError::Conflict(indexes) => ApiError::Conflict {
            detail: format!(
                "{} of the batch's slugs are taken (by a signal, or by an earlier item of the \
                 batch); nothing was written",
                indexes.len()
            ),
            errors: indexes
                .into_iter()
                .map(|index| FieldError {
                    index: Some(index),
                    ..FieldError::new("slug", "is already taken")
                })
                .collect(),
        },
        BatchError::Forbidden(indexes) => ApiError::Forbidden(format!(
            "items {indexes:?} would update signals created by another key; nothing was written"
        )),
        BatchError::Query(e) => e.into(),
    }
}
