//! The request's conditions and the signal it names, parsed before a handler runs: the
//! extractor types are the documented parameters (their `IntoParams` is the spec's), so the
//! document and the parsing cannot differ.

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderName};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::future::{ready, Ready};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Required;
use utoipa::IntoParams;

use super::problem::ApiError;
use crate::domain::signal::{SignalRef, SLUG_MAX};

/// The entity tags of a conditional header.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tags {
    Any,
    /// As sent, `W/` included.
    List(Vec<String>),
}

/// The tags of header `name`, from every line of it (a list may be split over several, as
/// HTTP allows); `None` when absent. Read leniently, as HTTP caches do: a value that is not a
/// list of entity tags names none, so it matches no version (`If-Match`: 412; `If-None-Match`:
/// the full answer). `*` is any version only as the whole value.
fn tags(req: &HttpRequest, name: &HeaderName) -> Option<Tags> {
    let lines: Vec<String> = req
        .headers()
        .get_all(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    if lines.is_empty() {
        return None;
    }
    if let [only] = lines.as_slice() {
        if only.trim() == "*" {
            return Some(Tags::Any);
        }
    }
    Some(Tags::List(
        lines
            .iter()
            .flat_map(|line| line.split(','))
            .map(|t| t.trim().to_owned())
            .collect(),
    ))
}

/// The entity tag of a content-coded representation: the identity one's with `.coding` added
/// inside the quotes (`"abc"` → `"abc.gzip"`, `W/"abc"` → `W/"abc.gzip"`). The service's own
/// tags never hold a `.` (base64url), so the coding can be read off again ([`unencoded`]).
pub fn encoded_tag(tag: &str, coding: &str) -> Option<String> {
    let inner = tag.strip_suffix('"')?;
    Some(format!("{inner}.{coding}\""))
}

/// A tag a client sent, without the coding [`encoded_tag`] added (one of [`CODINGS`]: a tag
/// with another is none the service gave).
fn unencoded(tag: &str) -> String {
    match tag
        .strip_suffix('"')
        .and_then(|inner| inner.rsplit_once('.'))
    {
        Some((inner, coding)) if CODINGS.iter().any(|c| c.as_str() == coding) => {
            format!("{inner}\"")
        }
        _ => tag.to_owned(),
    }
}

/// The content codings `Compress` applies besides identity (actix-web's `compress-gzip`
/// feature), in its order of preference: those `middleware::encoded_validators` chooses from
/// and [`encoded_tag`] marks.
pub const CODINGS: [header::ContentEncoding; 2] = [
    header::ContentEncoding::Gzip,
    header::ContentEncoding::Deflate,
];

/// The content coding an answer goes out in (`gzip`), when not identity: put in the request's
/// extensions by `middleware::encoded_validators`, which has `Compress` apply exactly it.
#[derive(Clone, Copy)]
pub struct AnswerCoding(pub &'static str);

/// Which of a client's tags name the current version.
#[derive(Clone, Copy)]
enum Naming {
    /// A read: the tag of the coding the answer goes out in (a strong tag names one sequence
    /// of bytes; a cache holding the gzip copy must not be told that the identity one is
    /// current).
    Coding(Option<&'static str>),
    /// A write: the tag of any coding, as what is changed is the version.
    AnyCoding,
}

impl Naming {
    fn of(req: &HttpRequest) -> Naming {
        Naming::Coding(req.extensions().get::<AnswerCoding>().map(|c| c.0))
    }

    /// Whether tag `sent` names the version whose identity tag is `etag` (strong comparison).
    fn names(self, sent: &str, etag: &str) -> bool {
        match self {
            Naming::AnyCoding => unencoded(sent) == etag,
            Naming::Coding(None) => sent == etag,
            Naming::Coding(Some(coding)) => {
                encoded_tag(etag, coding).is_some_and(|current| current == sent)
            }
        }
    }
}

fn header_param(name: &str, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

/// The preconditions of PUT, PATCH and DELETE, evaluated as RFC 9110 (13.2.2) orders them:
/// `If-Match` (the change happens only if the current ETag is one of these, strong comparison),
/// then `If-None-Match` (only if the current ETag is none of these, weak comparison; `*` never
/// holds, as the signal exists).
pub struct WriteConditions {
    if_match: Option<Tags>,
    if_none_match: IfNoneMatch,
}

impl WriteConditions {
    fn of(req: &HttpRequest) -> WriteConditions {
        WriteConditions {
            if_match: tags(req, &header::IF_MATCH),
            if_none_match: IfNoneMatch {
                tags: tags(req, &header::IF_NONE_MATCH),
                naming: Naming::AnyCoding,
            },
        }
    }

    /// 412 unless the conditions hold for the current `etag` (no header: they hold).
    pub fn check(&self, etag: &str) -> Result<(), ApiError> {
        let matched = match &self.if_match {
            None | Some(Tags::Any) => true,
            Some(Tags::List(tags)) => tags.iter().any(|t| Naming::AnyCoding.names(t, etag)),
        };
        if !matched || self.if_none_match.holds(etag) {
            return Err(ApiError::PreconditionFailed);
        }
        Ok(())
    }
}

impl FromRequest for WriteConditions {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(WriteConditions::of(req)))
    }
}

impl IntoParams for WriteConditions {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            header_param(
                "If-Match",
                "Entity tags (`\"...\"`, comma-separated) or `*`: the change happens only if \
                 the signal's current ETag is one of them (strong comparison), else 412. An ETag \
                 that no longer matches, or never did, is 412.",
            ),
            header_param(
                "If-None-Match",
                "Entity tags (comma-separated) or `*`: 412 when the signal's current ETag is one \
                 of them (weak comparison), or for `*` (the signal exists: these methods never \
                 create one); checked after `If-Match`.",
            ),
        ]
    }
}

/// `If-None-Match` of GET: 304 when the client holds the current version (weak comparison),
/// in the coding of this answer.
pub struct IfNoneMatch {
    tags: Option<Tags>,
    naming: Naming,
}

impl IfNoneMatch {
    /// Whether the request sent the header at all.
    pub fn sent(&self) -> bool {
        self.tags.is_some()
    }

    /// Whether a tag the client holds names the version whose identity tag is `etag`.
    pub fn holds(&self, etag: &str) -> bool {
        match &self.tags {
            None => false,
            Some(Tags::Any) => true,
            Some(Tags::List(tags)) => tags
                .iter()
                .any(|t| self.naming.names(t.trim_start_matches("W/"), etag)),
        }
    }
}

impl FromRequest for IfNoneMatch {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(IfNoneMatch {
            tags: tags(req, &header::IF_NONE_MATCH),
            naming: Naming::of(req),
        }))
    }
}

impl IntoParams for IfNoneMatch {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![header_param(
            "If-None-Match",
            "Entity tags the client holds (comma-separated) or `*`: 304 when one is current \
             (weak comparison); anything else gets the full answer.",
        )]
    }
}

/// `If-Modified-Since` of GET: 304 when nothing changed after this time (read only without
/// `If-None-Match`); a value that is not an HTTP date is ignored, as RFC 9110 says.
pub struct IfModifiedSince(pub Option<chrono::DateTime<chrono::Utc>>);

impl FromRequest for IfModifiedSince {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(IfModifiedSince(if_modified_since(req.headers()))))
    }
}

/// The date of `If-Modified-Since`: any of HTTP's three date forms (RFC 9110, 5.6.7); none
/// when the field is absent, not a date, or sent more than once (13.1.3).
fn if_modified_since(headers: &header::HeaderMap) -> Option<chrono::DateTime<chrono::Utc>> {
    let mut lines = headers.get_all(header::IF_MODIFIED_SINCE);
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return None;
    };
    let date: header::HttpDate = line.to_str().ok()?.trim().parse().ok()?;
    Some(std::time::SystemTime::from(date).into())
}

impl IntoParams for IfModifiedSince {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![header_param(
            "If-Modified-Since",
            "An HTTP date (as `Last-Modified` gave it): 304 when nothing changed since. \
             Ignored when `If-None-Match` is sent, or when it is not an HTTP date.",
        )]
    }
}

/// The header a write answers with and a read may send back: the WAL position of the write.
pub const READ_AFTER: &str = "signals-read-after";
/// The cookie that carries it for browsers.
pub const READ_AFTER_COOKIE: &str = "signals_read_after";
/// What a position looks like (`pg_lsn`).
pub const LSN_PATTERN: &str = "^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$";

/// `Signals-Read-After` of a read (or its cookie): the WAL position of the client's last
/// write, so a replica serves the read only once it has replayed that far (read your writes).
pub struct ReadAfter(pub Option<u64>);

impl ReadAfter {
    /// The position the read needs (0: any).
    pub fn needed(&self) -> u64 {
        self.0.unwrap_or(0)
    }
}

impl FromRequest for ReadAfter {
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Self, Self::Error>>;

    /// Read leniently, like `If-Modified-Since`: a value that is not a position is a hint the
    /// service cannot use, so the read is served as if none was sent (a browser's cookie carries
    /// back whatever it was given; a proxy may mangle a header).
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        use crate::db::replicas::parse_lsn;
        let header = req
            .headers()
            .get(READ_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_lsn);
        let cookie = || {
            req.headers()
                .get_all(header::COOKIE)
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(name, _)| *name == READ_AFTER_COOKIE)
                .and_then(|(_, value)| parse_lsn(value))
        };
        ready(Ok(ReadAfter(header.or_else(cookie))))
    }
}

impl IntoParams for ReadAfter {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("Signals-Read-After")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "The `Signals-Read-After` of a write's answer: read your own write. With streaming \
                 replicas, a replica answers only once it has replayed that far, else the primary \
                 does. (Browsers get it as the cookie `signals_read_after`.) A value that is not such a \
                 position is ignored: the read is served as without it.",
            ))
            // No `pattern`: every value is accepted (one that is not a position is ignored), so
            // the schema says what the service does.
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .example(Some(serde_json::json!("0/16B3740")))
            .build()]
    }
}

/// An endpoint without query parameters: one that is sent is 400, as on every other endpoint
/// (a typo is reported, not ignored).
pub struct NoParameters;

impl FromRequest for NoParameters {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let first = form_urlencoded::parse(req.query_string().as_bytes()).next();
        ready(match first {
            None => Ok(NoParameters),
            Some((name, _)) => Err(ApiError::bad_parameter(
                &name,
                "is not a parameter of this endpoint (it takes none)",
            )),
        })
    }
}

/// The signal `{id_or_slug}` names; 404 for a name no signal can have.
pub struct SignalPath(pub SignalRef);

impl FromRequest for SignalPath {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let name = req.match_info().get("id_or_slug").unwrap_or_default();
        ready(SignalRef::parse(name).map(SignalPath).ok_or_else(not_found))
    }
}

pub fn not_found() -> ApiError {
    ApiError::NotFound("no signal with this id or slug".into())
}

impl IntoParams for SignalPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("id_or_slug")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(
                "The signal's id (a UUID, as the service writes it) or its slug; 32 hex digits without hyphens are a slug, not an id. Anything else names no signal (404).",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(SLUG_MAX.max(36))),
            ))
            .example(Some(serde_json::json!("deepseek-targets-45b-valuation")))
            .build()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn if_match(value: &str) -> WriteConditions {
        let req = TestRequest::default()
            .insert_header((header::IF_MATCH, value))
            .to_http_request();
        WriteConditions::of(&req)
    }

    #[test]
    fn entity_tags_are_compared_strongly_for_if_match() {
        assert!(if_match("\"a\"").check("\"a\"").is_ok());
        assert!(if_match("\"b\", \"a\"").check("\"a\"").is_ok());
        assert!(if_match("*").check("\"a\"").is_ok());
        // Strong comparison: a weak tag never matches; nor does anything malformed.
        for stale in ["W/\"a\"", "\"b\"", "", "a", "null"] {
            assert!(if_match(stale).check("\"a\"").is_err(), "{stale:?}");
        }
    }

    #[test]
    fn if_none_match_of_a_write_holds_only_when_no_tag_is_current() {
        let conditions = |headers: &[(header::HeaderName, &str)]| {
            let mut req = TestRequest::default();
            for (name, value) in headers {
                req = req.append_header((name.clone(), *value));
            }
            WriteConditions::of(&req.to_http_request())
        };
        let none_match = |value| conditions(&[(header::IF_NONE_MATCH, value)]);
        assert!(none_match("*").check("\"a\"").is_err());
        assert!(none_match("\"a\"").check("\"a\"").is_err());
        assert!(none_match("W/\"a\", \"b\"").check("\"a\"").is_err());
        assert!(none_match("\"b\"").check("\"a\"").is_ok());
        // Both: If-Match must hold and If-None-Match must not name the current version.
        let both = |m, n| conditions(&[(header::IF_MATCH, m), (header::IF_NONE_MATCH, n)]);
        assert!(both("\"a\"", "\"b\"").check("\"a\"").is_ok());
        assert!(both("\"a\"", "\"a\"").check("\"a\"").is_err());
        assert!(both("\"b\"", "\"c\"").check("\"a\"").is_err());
        // A tag of a coding the service applies names the version; one of another, none.
        assert!(if_match("\"a.gzip\"").check("\"a\"").is_ok());
        assert!(if_match("\"a.deflate\"").check("\"a\"").is_ok());
        for made_up in ["\"a.br\"", "\"a.x\""] {
            assert!(if_match(made_up).check("\"a\"").is_err(), "{made_up}");
            assert!(none_match(made_up).check("\"a\"").is_ok(), "{made_up}");
        }
        // Weak: never for If-Match, always for If-None-Match.
        assert!(if_match("W/\"a.gzip\"").check("\"a\"").is_err());
        assert!(none_match("W/\"a.gzip\"").check("\"a\"").is_err());
    }

    #[test]
    fn a_list_split_over_several_header_lines_is_read_whole() {
        let lines = |values: &[&str]| {
            let mut req = TestRequest::default();
            for v in values {
                req = req.append_header((header::IF_MATCH, *v));
            }
            WriteConditions::of(&req.to_http_request())
        };
        assert!(lines(&["\"old\"", "\"a\""]).check("\"a\"").is_ok());
        assert!(lines(&["\"old\", \"b\"", "\"a\""]).check("\"a\"").is_ok());
        assert!(lines(&["\"old\"", "\"b\""]).check("\"a\"").is_err());
        // `*` is a whole value, not one tag of a list.
        assert!(lines(&["\"old\"", "*"]).check("\"a\"").is_err());
    }

    #[test]
    fn if_modified_since_takes_the_three_http_date_forms_and_only_one_line() {
        let since = |values: &[&str]| {
            let mut headers = header::HeaderMap::new();
            for v in values {
                headers.append(header::IF_MODIFIED_SINCE, v.parse().unwrap());
            }
            if_modified_since(&headers).map(|t| t.to_rfc3339())
        };
        let expected = Some("1994-11-06T08:49:37+00:00".to_owned());
        assert_eq!(since(&["Sun, 06 Nov 1994 08:49:37 GMT"]), expected);
        assert_eq!(since(&["Sunday, 06-Nov-94 08:49:37 GMT"]), expected);
        assert_eq!(since(&["Sun Nov  6 08:49:37 1994"]), expected);
        assert_eq!(since(&["yesterday"]), None);
        assert_eq!(since(&[]), None);
        let line = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(since(&[line, line]), None);
    }
}
