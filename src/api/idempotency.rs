//! `Idempotency-Key` on `POST /v1/signals` and `POST /v1/signals/batch`: scripts retry on any
//! failure, so a write made with a key is done once, and a retry gets the first response back.
//!
//! The write, the check and the stored response share one transaction, guarded by a
//! transaction-scoped advisory lock on (API key, idempotency key): a crash can never leave rows
//! without their record or a record without its rows, and a duplicate arriving while the first
//! is in flight finds the lock taken (409) instead of writing twice.

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use diesel_async::AsyncConnection;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::auth::Principal;
use super::batch::BatchResult;
use super::problem::ApiError;
use super::signals::Signal;
use crate::db::idempotency::{self as records, StoredResponse};
use crate::db::signals::{self as store, BatchError, BatchOutcome, OnConflict};
use crate::db::PgConn;
use crate::domain::signal::SignalDraft;
use crate::domain::FieldError;

pub const HEADER: HeaderName = HeaderName::from_static("idempotency-key");
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
pub const KEY_MAX: usize = 255;

/// The idempotency key of a request and the fingerprint of what it asks for.
pub struct Idempotency {
    key: String,
    fingerprint: Vec<u8>,
}

impl Idempotency {
    /// `None` without the header. The fingerprint covers the method, the path and the body as
    /// parsed (so whitespace and key order do not make a retry "different").
    pub fn from_request(req: &HttpRequest, body: &Value) -> Result<Option<Self>, ApiError> {
        let Some(value) = req.headers().get(HEADER) else {
            return Ok(None);
        };
        let bad = || ApiError::BadRequest {
            detail: format!("Idempotency-Key must be 1 to {KEY_MAX} visible ASCII characters"),
            errors: vec![FieldError::new("Idempotency-Key", "is malformed")],
        };
        let key = value.to_str().map_err(|_| bad())?.trim();
        if key.is_empty()
            || key.len() > KEY_MAX
            || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(bad());
        }
        let fingerprint = Sha256::new()
            .chain_update(req.method().as_str())
            .chain_update(b" ")
            .chain_update(req.path())
            .chain_update(b"\n")
            .chain_update(serde_json::to_vec(body).unwrap_or_default())
            .finalize()
            .to_vec();
        Ok(Some(Idempotency {
            key: key.to_owned(),
            fingerprint,
        }))
    }
}

/// The writes that can be made idempotent.
pub enum Write<'a> {
    Create(&'a SignalDraft),
    Batch(&'a [SignalDraft], OnConflict),
}

/// Does the write (once per idempotency key) and returns its response; a replay carries
/// `Idempotent-Replayed: true`.
pub async fn write(
    conn: &mut PgConn,
    principal: Principal,
    idempotency: Option<&Idempotency>,
    write: Write<'_>,
) -> Result<HttpResponse, ApiError> {
    let (stored, replayed) = conn
        .transaction::<_, ApiError, _>(async |conn| {
            if let Some(idem) = idempotency {
                if !records::try_lock(conn, principal.key_id, &idem.key).await? {
                    return Err(ApiError::Conflict {
                        detail: "a request with this Idempotency-Key is still in flight; retry later".into(),
                        errors: vec![FieldError::new("Idempotency-Key", "is in use by a request in flight")],
                    });
                }
                if let Some(stored) = records::find(conn, principal.key_id, &idem.key).await? {
                    if stored.fingerprint != idem.fingerprint {
                        return Err(ApiError::Validation(vec![FieldError::new(
                            "Idempotency-Key",
                            "was used for a request with another body; use a new key for a new request",
                        )]));
                    }
                    return Ok((stored, true));
                }
            }
            let mut stored = match write {
                Write::Create(draft) => {
                    let signal = Signal::from(store::insert(conn, draft, Some(principal.key_id)).await?);
                    StoredResponse {
                        fingerprint: Vec::new(),
                        status: 201,
                        location: Some(format!("/v1/signals/{}", signal.id)),
                        etag: Some(signal.etag()),
                        body: serde_json::to_vec(&signal).unwrap_or_default(),
                    }
                }
                Write::Batch(drafts, on_conflict) => {
                    let may_change = |created_by| principal.may_change(created_by).is_ok();
                    let outcomes = store::write_batch(conn, drafts, on_conflict, Some(principal.key_id), may_change)
                        .await
                        .map_err(batch_error)?;
                    StoredResponse {
                        fingerprint: Vec::new(),
                        status: 200,
                        location: None,
                        etag: None,
                        body: serde_json::to_vec(&batch_result(outcomes)).unwrap_or_default(),
                    }
                }
            };
            if let Some(idem) = idempotency {
                stored.fingerprint = idem.fingerprint.clone();
                records::store(conn, principal.key_id, &idem.key, &stored).await?;
            }
            Ok((stored, false))
        })
        .await?;
    Ok(response(&stored, replayed))
}

fn response(stored: &StoredResponse, replayed: bool) -> HttpResponse {
    let status = StatusCode::from_u16(stored.status as u16).unwrap_or(StatusCode::OK);
    let mut builder = HttpResponse::build(status);
    builder.content_type("application/json");
    if let Some(location) = &stored.location {
        builder.insert_header((header::LOCATION, location.as_str()));
    }
    if let Some(etag) = &stored.etag {
        builder.insert_header((header::ETAG, etag.as_str()));
    }
    if replayed {
        builder.insert_header((REPLAYED, HeaderValue::from_static("true")));
    }
    builder.body(stored.body.clone())
}

fn batch_result(outcomes: Vec<BatchOutcome>) -> BatchResult {
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

fn batch_error(e: BatchError) -> ApiError {
    match e {
        BatchError::Conflict(indexes) => ApiError::Conflict {
            detail: format!(
                "{} of the batch's slugs are taken; nothing was written",
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
