//! Every error the API returns: one enum, rendered as RFC 9457 `application/problem+json`.
//! Internal causes are logged (with the request id) and never sent to the client.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::writes::InsertError;
use crate::db::DbError;
use crate::domain::FieldError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "/problems/validation", "title": "Invalid request", "status": 422,
    "detail": "2 fields are invalid",
    "errors": [{"field": "score", "message": "must be between 0 and 10"},
               {"field": "tags[3]", "message": "must be at most 64 characters"}]
}))]
pub struct Problem {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type")]
    #[schema(example = "/problems/validation")]
    pub kind: &'static str,
    /// A short summary of the kind of problem.
    pub title: &'static str,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What went wrong in this case.
    pub detail: String,
    /// The invalid fields or parameters, when there are any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// Malformed syntax: bad JSON, bad path or query parameter, bad cursor.
    #[error("{detail}")]
    BadRequest {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// What was asked for is no longer kept.
    #[error("{0}")]
    Gone(String),
    #[error("{method} is not allowed here")]
    MethodNotAllowed { method: String, allow: String },
    #[error("{detail}")]
    Conflict {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("the signal has changed since the ETag in If-Match was read")]
    PreconditionFailed,
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the body did not arrive in time")]
    RequestTimeout,
    /// Too many header fields, or too many bytes of them.
    #[error("{0}")]
    HeadersTooLarge(String),
    /// Well-formed but invalid: every bad field.
    #[error("{} invalid", plural(.0.len(), "field is", "fields are"))]
    Validation(Vec<FieldError>),
    #[error("the database is unavailable")]
    Unavailable(String),
    /// The service is at a capacity it keeps on purpose (e.g. `SIGNALS_MAX_STREAMS`): why.
    #[error("{0}")]
    Busy(String),
    /// Over a rate limit: retry after this many seconds.
    #[error("too many {class} requests: the limit allows more in {retry_after} s")]
    RateLimited {
        class: &'static str,
        retry_after: u32,
    },
    #[error("internal error")]
    Internal(String),
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn bad_parameter(name: &str, message: impl Into<String>) -> Self {
        Self::parameter(FieldError::new(name, message))
    }

    /// A bad query parameter (or header) as the domain's parsers report it.
    pub fn parameter(error: FieldError) -> Self {
        let name = error.field.clone();
        ApiError::BadRequest {
            detail: format!("parameter {name} {}", error.message),
            errors: vec![error],
        }
    }

    /// (type, title) of each kind: the one table every error response is made from.
    fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            BadRequest { .. } => (
                StatusCode::BAD_REQUEST,
                "/problems/bad-request",
                "Malformed request",
            ),
            Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                "/problems/unauthorized",
                "Authentication required",
            ),
            Forbidden(_) => (StatusCode::FORBIDDEN, "/problems/forbidden", "Not allowed"),
            NotFound(_) => (StatusCode::NOT_FOUND, "/problems/not-found", "Not found"),
            Gone(_) => (StatusCode::GONE, "/problems/gone", "Gone"),
            MethodNotAllowed { .. } => (
                StatusCode::METHOD_NOT_ALLOWED,
                "/problems/method-not-allowed",
                "Method not allowed",
            ),
            Conflict { .. } => (StatusCode::CONFLICT, "/problems/conflict", "Conflict"),
            PreconditionFailed => (
                StatusCode::PRECONDITION_FAILED,
                "/problems/precondition-failed",
                "Precondition failed",
            ),
            PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "/problems/payload-too-large",
                "Request body too large",
            ),
            RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                "/problems/request-timeout",
                "Request timeout",
            ),
            HeadersTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "/problems/headers-too-large",
                "Request header fields too large",
            ),
            UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "/problems/unsupported-media-type",
                "Unsupported media type",
            ),
            Validation(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "/problems/validation",
                "Invalid request",
            ),
            RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "/problems/rate-limited",
                "Too many requests",
            ),
            Unavailable(_) | Busy(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "/problems/unavailable",
                "Service unavailable",
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "/problems/internal",
                "Internal server error",
            ),
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, kind, title) = self.kind();
        let errors = match self {
            ApiError::BadRequest { errors, .. } | ApiError::Conflict { errors, .. } => {
                errors.clone()
            }
            ApiError::Validation(errors) => errors.clone(),
            _ => Vec::new(),
        };
        Problem {
            kind,
            title,
            status: status.as_u16(),
            detail: self.to_string(),
            errors,
        }
    }
}

/// The problem document for a status that no handler produced (the framework's own errors).
pub fn problem_for_status(status: StatusCode) -> Problem {
    let kind = match status.as_u16() {
        400 => "/problems/bad-request",
        404 => "/problems/not-found",
        405 => "/problems/method-not-allowed",
        408 => "/problems/request-timeout",
        413 => "/problems/payload-too-large",
        431 => "/problems/headers-too-large",
        429 => "/problems/rate-limited",
        415 => "/problems/unsupported-media-type",
        s if s >= 500 => "/problems/internal",
        _ => "about:blank",
    };
    Problem {
        kind,
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail: status.canonical_reason().unwrap_or("Error").to_owned(),
        errors: Vec::new(),
    }
}

pub fn problem_response(status: StatusCode, problem: &Problem) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(PROBLEM_JSON)
        .json(problem)
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind().0
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(cause) => tracing::error!(%cause, "internal error"),
            ApiError::Unavailable(cause) => tracing::warn!(%cause, "database unavailable"),
            _ => {}
        }
        let mut response = problem_response(self.status_code(), &self.problem());
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, v);
                }
            }
            ApiError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Busy(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::RateLimited { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(cause) => ApiError::Unavailable(cause),
            DbError::Query(e) => e.into(),
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        use crate::db::Failure;
        match crate::db::classify(&e) {
            Failure::Unique(Some("signals_slug_key")) => slug_taken(),
            Failure::Retryable | Failure::ConnectionLost | Failure::Database => {
                ApiError::Unavailable(e.to_string())
            }
            Failure::Unique(_) | Failure::Other => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<InsertError> for ApiError {
    fn from(e: InsertError) -> Self {
        match e {
            InsertError::SlugTaken(_) => slug_taken(),
            InsertError::Query(e) => e.into(),
        }
    }
}

fn slug_taken() -> ApiError {
    ApiError::Conflict {
        detail: "another signal already has this slug".into(),
        errors: vec![FieldError::new("slug", "is already taken")],
    }
}

/// Reusable OpenAPI responses, one per kind of problem.
pub mod responses {
    use super::Problem;
    use utoipa::ToResponse;

    macro_rules! problem_response {
        ($name:ident, $description:literal, $status:literal, $kind:literal, $title:literal, $detail:literal $(, headers($($headers:tt)*))?) => {
            #[derive(ToResponse)]
            #[response(
                description = $description,
                content_type = "application/problem+json",
                $(headers($($headers)*),)?
                example = json!({"type": $kind, "title": $title, "status": $status, "detail": $detail})
            )]
            pub struct $name(#[allow(dead_code)] Problem);
        };
    }

    problem_response!(
        BadRequest,
        "Malformed request: bad JSON, path or query parameter, or cursor",
        400,
        "/problems/bad-request",
        "Malformed request",
        "query parameter min_score must be an integer between 0 and 10"
    );
    problem_response!(
        Unauthorized,
        "No valid API key: missing, unknown or revoked (`WWW-Authenticate: Bearer`)",
        401,
        "/problems/unauthorized",
        "Authentication required",
        "this request needs an API key: Authorization: Bearer <key>",
        headers(("WWW-Authenticate" = String, description = "`Bearer`"))
    );
    problem_response!(
        Forbidden,
        "The key lacks the scope, or the signal belongs to another key",
        403,
        "/problems/forbidden",
        "Not allowed",
        "this key has the read scope; write is needed"
    );
    problem_response!(
        NotFound,
        "No such signal or route",
        404,
        "/problems/not-found",
        "Not found",
        "no signal with this id or slug"
    );
    problem_response!(
        Gone,
        "The position is older than the change log keeps (`SIGNALS_EVENTS_RETENTION`)",
        410,
        "/problems/gone",
        "Gone",
        "the change log keeps positions from 1234 on; start again without Last-Event-ID"
    );
    problem_response!(
        Conflict,
        "The slug is taken by another signal",
        409,
        "/problems/conflict",
        "Conflict",
        "another signal already has this slug"
    );
    problem_response!(
        PreconditionFailed,
        "`If-Match` does not match the signal's current ETag",
        412,
        "/problems/precondition-failed",
        "Precondition failed",
        "the signal has changed since the ETag in If-Match was read"
    );
    problem_response!(
        PayloadTooLarge,
        "The body is over the limit: 1 MiB for one signal, 16 MiB for a batch",
        413,
        "/problems/payload-too-large",
        "Request body too large",
        "the body is larger than 1048576 bytes"
    );
    problem_response!(
        UnsupportedMediaType,
        "The body is not JSON (`Content-Type: application/json`)",
        415,
        "/problems/unsupported-media-type",
        "Unsupported media type",
        "expected Content-Type: application/json"
    );
    problem_response!(
        RequestTimeout,
        "The body did not arrive within the client timeout",
        408,
        "/problems/request-timeout",
        "Request timeout",
        "the body did not arrive in time"
    );
    problem_response!(
        HeadersTooLarge,
        "More than 64 header fields, or more than 16 KiB of them",
        431,
        "/problems/headers-too-large",
        "Request header fields too large",
        "the request has 80 header fields; at most 64 are read"
    );
    problem_response!(
        TooManyRequests,
        "Over the rate limit of this key or client address (`Retry-After`, and the RateLimit fields)",
        429,
        "/problems/rate-limited",
        "Too many requests",
        "too many read requests: the limit allows more in 17 s",
        headers(("Retry-After" = u32, description = "Seconds until the limit's window ends"))
    );
    problem_response!(
        Unavailable,
        "The database did not answer in time (`Retry-After`)",
        503,
        "/problems/unavailable",
        "Service unavailable",
        "the database is unavailable",
        headers((
            "Retry-After" = u32,
            description = "Seconds to wait before trying again"
        ))
    );

    problem_response!(
        StreamsBusy,
        "Every stream slot of this instance is taken (`SIGNALS_MAX_STREAMS`), or the database \
         did not answer in time (`Retry-After`)",
        503,
        "/problems/unavailable",
        "Service unavailable",
        "every stream slot of this instance is taken; retry later",
        headers((
            "Retry-After" = u32,
            description = "Seconds to wait before trying again"
        ))
    );

    /// Well-formed but invalid: every bad field at once.
    #[derive(ToResponse)]
    #[response(
        description = "Well-formed but invalid: every bad field is listed",
        content_type = "application/problem+json",
        example = json!({"type": "/problems/validation", "title": "Invalid request", "status": 422,
            "detail": "2 fields are invalid",
            "errors": [{"field": "score", "message": "must be between 0 and 10"},
                       {"field": "colour", "message": "is not a field of a signal"}]})
    )]
    pub struct Unprocessable(#[allow(dead_code)] Problem);
}
