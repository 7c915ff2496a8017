//! `Idempotency-Key`: scripts retry on any failure, so a write made with a key is done once, and
//! a retry gets the first response back. This is a wrapper any write runs inside: it stores and
//! replays the write's response without knowing what the write was.
//!
//! The write, the check and the stored response share one transaction, guarded by a
//! transaction-scoped advisory lock on (API key, idempotency key): a crash can never leave rows
//! without their record or a record without its rows, and a duplicate arriving while the first
//! is in flight finds the lock taken (409) instead of writing twice.

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::future::BoxFuture;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::problem::ApiError;
use crate::db::idempotency::{self as records, StoredResponse};
use crate::db::PgConn;
use crate::domain::FieldError;

pub const HEADER: HeaderName = HeaderName::from_static("idempotency-key");
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
pub const KEY_MAX: usize = 255;
/// What the header may hold: 1 to 255 visible ASCII characters and spaces, beginning and ending
/// with a visible one (HTTP drops white space around a header value). The OpenAPI document
/// gives it, and `from_request` checks it.
pub const KEY_PATTERN: &str = "^[!-~]([ -~]{0,253}[!-~])?$";

static KEY: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(KEY_PATTERN).expect("a valid pattern"));

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
            detail: format!(
                "Idempotency-Key must be 1 to {KEY_MAX} visible ASCII characters or inner spaces"
            ),
            errors: vec![FieldError::new("Idempotency-Key", "is malformed")],
        };
        let key = value.to_str().map_err(|_| bad())?;
        if !KEY.is_match(key) {
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

impl utoipa::IntoParams for Idempotency {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        vec![ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(utoipa::openapi::Required::False)
            .description(Some(
                "Makes retries safe: the write is done once per key and API key (24 hours). The \
                 same key with another body is 422; while the first request is in flight, 409. \
                 Only a write that was made is kept and replayed: a request that failed (4xx or \
                 5xx) wrote nothing, so its retry is a new attempt.",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(KEY_MAX))
                    .pattern(Some(KEY_PATTERN)),
            ))
            .example(Some(serde_json::json!("cron-2026-05-06T18:00-deepseek")))
            .build()]
    }
}

/// The response of a write, as it is sent and stored for replays.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub body: Vec<u8>,
}

/// A write that can run inside [`once`]: it writes on the connection (inside the transaction
/// `once` opened) and says what to answer.
pub trait Write: Sync {
    fn write<'c>(
        &'c self,
        conn: &'c mut AsyncPgConnection,
    ) -> BoxFuture<'c, Result<Reply, ApiError>>;
}

/// Runs `write` in a transaction, once per idempotency key of `key_id` when there is one:
/// a retry gets the stored response again, with `Idempotent-Replayed: true`.
pub async fn once(
    conn: &mut PgConn,
    key_id: Uuid,
    idempotency: Option<&Idempotency>,
    write: &impl Write,
) -> Result<HttpResponse, ApiError> {
    let (reply, replayed) = conn
        .transaction::<_, ApiError, _>(async |conn| {
            let Some(idem) = idempotency else {
                return Ok((write.write(conn).await?, false));
            };
            // A request done before is replayed without the lock, so retries that come
            // together after it get its answer, not the in-flight 409 of one another.
            if let Some(stored) = records::find(conn, key_id, &idem.key).await? {
                return replay(stored, idem);
            }
            if !records::try_lock(conn, key_id, &idem.key).await? {
                return Err(ApiError::Conflict {
                    detail: "a request with this Idempotency-Key is still in flight; retry later"
                        .into(),
                    errors: vec![FieldError::new(
                        "Idempotency-Key",
                        "is in use by a request in flight",
                    )],
                });
            }
            // Done by a request that held the lock until just now.
            if let Some(stored) = records::find(conn, key_id, &idem.key).await? {
                return replay(stored, idem);
            }
            let reply = write.write(conn).await?;
            records::store(conn, key_id, &idem.key, &to_stored(&reply, idem)).await?;
            Ok((reply, false))
        })
        .await?;
    Ok(response(reply, replayed))
}

/// The stored answer again, for a retry of the same request; 422 for another request that
/// reuses the key.
fn replay(stored: StoredResponse, idem: &Idempotency) -> Result<(Reply, bool), ApiError> {
    if stored.fingerprint != idem.fingerprint {
        return Err(ApiError::Validation(vec![FieldError::new(
            "Idempotency-Key",
            "was used for a request with another body; use a new key for a new request",
        )]));
    }
    Ok((from_stored(stored), true))
}

fn to_stored(reply: &Reply, idem: &Idempotency) -> StoredResponse {
    StoredResponse {
        fingerprint: idem.fingerprint.clone(),
        status: reply.status.as_u16() as i16,
        body: reply.body.clone(),
        location: reply.location.clone(),
        etag: reply.etag.clone(),
    }
}

fn from_stored(stored: StoredResponse) -> Reply {
    Reply {
        status: StatusCode::from_u16(stored.status as u16).unwrap_or(StatusCode::OK),
        location: stored.location,
        etag: stored.etag,
        body: stored.body,
    }
}

fn response(reply: Reply, replayed: bool) -> HttpResponse {
    let mut builder = HttpResponse::build(reply.status);
    builder.content_type("application/json");
    if let Some(location) = &reply.location {
        builder.insert_header((header::LOCATION, location.as_str()));
    }
    if let Some(etag) = &reply.etag {
        builder.insert_header((header::ETAG, etag.as_str()));
    }
    if replayed {
        builder.insert_header((REPLAYED, HeaderValue::from_static("true")));
    }
    builder.body(reply.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_pattern_is_what_the_header_takes() {
        let pattern = regex::Regex::new(KEY_PATTERN).unwrap();
        for (key, ok) in [
            ("cron-2026-05-06", true),
            ("a b", true),
            ("x", true),
            ("   ", false),
            ("", false),
            ("tab\there", false),
            ("é", false),
        ] {
            assert_eq!(pattern.is_match(key), ok, "{key:?}");
            let req = actix_web::test::TestRequest::post()
                .insert_header((HEADER, HeaderValue::from_bytes(key.as_bytes()).unwrap()))
                .to_http_request();
            assert_eq!(
                Idempotency::from_request(&req, &Value::Null).is_ok(),
                ok,
                "{key:?}"
            );
        }
        assert!(pattern.is_match(&"k".repeat(KEY_MAX)));
        assert!(!pattern.is_match(&"k".repeat(KEY_MAX + 1)));
    }
}
