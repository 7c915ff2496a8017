//! The outermost layer every request passes: a request id, one log line, metrics, and the
//! guarantee that every error response is problem+json (even those the framework made itself).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use actix_web::{web, Error, ResponseError};
use tracing::Instrument;
use uuid::Uuid;

use super::conditions::CODINGS;
use super::problem::{problem_for_status, problem_response, ApiError, PROBLEM_JSON};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What `encoded_validators` negotiates among: identity and [`CODINGS`], made once.
const SUPPORTED: [header::Encoding; 3] = [
    header::Encoding::identity(),
    header::Encoding::Known(CODINGS[0]),
    header::Encoding::Known(CODINGS[1]),
];

/// Wraps `Compress` so that its encoded answers keep HTTP's validators right (RFC 9110, 8.8.3.3
/// and 15.4.5). The coding is chosen here, once, and `Compress` is made to apply exactly it
/// (the request's `Accept-Encoding` is replaced by that coding alone, or removed); the
/// conditions read it from the request's extensions ([`AnswerCoding`]). A gzip body is another
/// representation, so its ETag is the identity one's with the coding added (`"tag.gzip"`,
/// [`encoded_tag`]), on a 304 too; every answer says it varies by `Accept-Encoding` (`Compress`
/// says so only when it encodes, never on a 304); and a request that accepts no coding at all
/// (`identity;q=0`) gets identity, as RFC 9110 (12.5.3) advises, not `Compress`'s plain-text
/// 406. (A body `Compress` leaves as it is, an image or an empty one, keeps its plain tag; the
/// service gives neither a tag.)
///
/// [`AnswerCoding`]: super::conditions::AnswerCoding
/// [`encoded_tag`]: super::conditions::encoded_tag
pub async fn encoded_validators(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let chosen = req
        .get_header::<header::AcceptEncoding>()
        .and_then(|accepted| accepted.negotiate(SUPPORTED.iter()))
        .and_then(|chosen| {
            CODINGS
                .into_iter()
                .find(|c| chosen == header::Encoding::Known(*c))
        })
        .map(|c| c.as_str());
    match chosen {
        Some(coding) => {
            req.headers_mut()
                .insert(header::ACCEPT_ENCODING, HeaderValue::from_static(coding));
            req.extensions_mut()
                .insert(super::conditions::AnswerCoding(coding));
        }
        None => {
            req.headers_mut().remove(header::ACCEPT_ENCODING);
        }
    }
    let mut res = next.call(req).await?;
    let not_modified = res.status() == actix_web::http::StatusCode::NOT_MODIFIED;
    let headers = res.headers_mut();
    let coding = match headers.get(header::CONTENT_ENCODING) {
        Some(coding) => CODINGS
            .into_iter()
            .find(|c| coding.as_bytes() == c.as_str().as_bytes())
            .map(|c| c.as_str()),
        None if not_modified => chosen,
        None => None,
    };
    if let Some(coding) = coding {
        let tag = headers.get(header::ETAG).and_then(|t| t.to_str().ok());
        if let Some(encoded) = tag.and_then(|t| super::conditions::encoded_tag(t, coding)) {
            if let Ok(value) = HeaderValue::from_str(&encoded) {
                headers.insert(header::ETAG, value);
            }
        }
    }
    let varies = headers
        .get_all(header::VARY)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|name| {
            let name = name.trim();
            name == "*" || name.eq_ignore_ascii_case("accept-encoding")
        });
    if !varies {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    Ok(res)
}

/// Marks a request that came as HEAD and is routed as GET.
#[derive(Clone, Copy)]
struct Head;

/// Every GET route answers HEAD: the request is routed and handled as the GET it asks about,
/// and the server sends the response's status and headers without its body (actix's HTTP
/// layer drops the body of an answer to HEAD, keeping its `Content-Length`).
pub async fn head_as_get(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
        req.extensions_mut().insert(Head);
    }
    next.call(req).await
}

/// Most header fields a request may have, and most bytes of them (names and values): past
/// them the answer is 431 problem+json. actix-http's parser has harder limits of its own (96
/// fields, a 32 KiB head) and answers past them with a bare 431 or 400 and a closed
/// connection, before any of this code runs.
pub const MAX_HEADER_FIELDS: usize = 64;
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Refuses a request with more header fields, or bytes of them, than the service reads.
pub async fn bounded_head(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let fields = req.headers().len();
    let bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let refused = if fields > MAX_HEADER_FIELDS {
        Some(format!(
            "the request has {fields} header fields; at most {MAX_HEADER_FIELDS} are read"
        ))
    } else if bytes > MAX_HEADER_BYTES {
        Some(format!(
            "the request's header fields have {bytes} bytes; at most {MAX_HEADER_BYTES} are read"
        ))
    } else {
        None
    };
    match refused {
        Some(detail) => Ok(req.into_response(ApiError::HeadersTooLarge(detail).error_response())),
        None => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

/// After a successful write: the cache of this instance is emptied (the writer's next read
/// sees the write), and the answer carries the WAL position of the write (`Signals-Read-After`,
/// also as a cookie for browsers) for the client's next read to send back.
pub async fn after_writes(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let state = req.app_data::<web::Data<super::AppState>>().cloned();
    let mut res = next.call(req).await?;
    let (true, Some(state)) = (write, state) else {
        return Ok(res);
    };
    if !res.status().is_success() {
        return Ok(res);
    }
    // Read after the commit: at or after the write's own position.
    let position = match crate::db::conn(&state.pool).await {
        Ok(mut conn) => crate::db::replicas::primary_lsn(&mut conn).await.ok(),
        Err(_) => None,
    };
    state.cache.written(position);
    if let Some(lsn) = position.map(crate::db::replicas::format_lsn) {
        let headers = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&lsn) {
            headers.insert(HeaderName::from_static(super::conditions::READ_AFTER), v);
        }
        let cookie = format!(
            "{}={lsn}; Path=/; Max-Age=60; SameSite=Lax; HttpOnly",
            super::conditions::READ_AFTER_COOKIE
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    Ok(res)
}

/// The method the client sent (HEAD for a HEAD routed as GET).
pub fn original_method(req: &actix_web::HttpRequest) -> Method {
    match req.extensions().get::<Head>() {
        Some(_) => Method::HEAD,
        None => req.method().clone(),
    }
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let span = tracing::info_span!("request", request_id = %request_id);

    // Handlers and extractors turn their errors into responses; an Err here comes from a
    // middleware and is rendered by actix itself. (The request must not be cloned before
    // routing, so no response can be built for it here.)
    let res = next.call(req).instrument(span.clone()).await?;
    let mut res = as_problem(res.map_into_boxed_body());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }

    let status = res.status().as_u16();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            path = %res.request().path(),
            status,
            ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        )
    });
    if let Some(metrics) = metrics {
        metrics.observe(&method, &route, status, elapsed.as_secs_f64());
    }
    Ok(res)
}

/// Replaces the body of an error response that is not problem+json already.
fn as_problem(res: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = res.status();
    // The service's own answers: problem documents, and the reader's error pages.
    let own = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()) || v.as_bytes().starts_with(b"text/html")
    });
    if !(status.is_client_error() || status.is_server_error()) || own {
        return res;
    }
    let (req, old) = res.into_parts();
    let mut new = problem_response(status, &problem_for_status(status));
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            new.headers_mut().append(name.clone(), value.clone());
        }
    }
    ServiceResponse::new(req, new)
}

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Request counts and latency histograms by method, route pattern and status.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        // Label values a client cannot multiply: methods outside the standard ones are one
        // label, and so are paths no route matched ("unmatched", set by the caller).
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
            _ => "OTHER",
        };
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = series
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        s.count += 1;
        s.sum += seconds;
        for (bucket, le) in s.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= le {
                *bucket += 1;
            }
        }
    }

    pub fn render(&self) -> String {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        out.push_str("# HELP signals_http_requests_total HTTP requests answered\n");
        out.push_str("# TYPE signals_http_requests_total counter\n");
        for ((method, route, status), s) in series.iter() {
            let _ = writeln!(
                out,
                "signals_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {}",
                escape(route),
                s.count
            );
        }
        out.push_str("# HELP signals_http_request_duration_seconds Time to answer HTTP requests\n");
        out.push_str("# TYPE signals_http_request_duration_seconds histogram\n");
        for ((method, route, status), s) in series.iter() {
            let labels = format!(
                "method=\"{method}\",route=\"{}\",status=\"{status}\"",
                escape(route)
            );
            for (count, le) in s.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "signals_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "signals_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "signals_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "signals_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}
