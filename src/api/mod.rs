//! The HTTP API: routes, handlers, request parsing and the OpenAPI document they generate.

pub mod auth;
pub mod batch;
pub mod bounded_json;
pub mod cache;
pub mod conditions;
pub mod facets;
pub mod feeds;
pub mod idempotency;
pub mod limits;
pub mod list;
pub mod middleware;
pub mod problem;
pub mod signals;
pub mod stream;
pub mod system;
pub mod webhooks;

use std::time::Duration;

use actix_web::dev::ResourceDef;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::openapi::path::Operation;
use utoipa::openapi::{OpenApi, RefOr, ResponseBuilder};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::db::{PgPool, SharedConn};
use conditions::IfNoneMatch;
use problem::ApiError;

/// How long a client may take to send a body (`SIGNALS_CLIENT_TIMEOUT_MS`).
pub struct BodyTimeout(pub Duration);

/// The base of one response's absolute URLs (see [`Links`]); `None` (a request that reached
/// the service by no TCP connection, as in-process tests): its links are relative.
pub struct PublicBase(pub Option<String>);

impl PublicBase {
    /// The base as text, empty for relative links: what tells apart the cached answers and
    /// the versions of documents whose links differ.
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }

    /// `path_and_query` (starting with `/`) as the service writes it in a link.
    pub fn link(&self, path_and_query: &str) -> String {
        match &self.0 {
            Some(base) => format!("{base}{path_and_query}"),
            None => path_and_query.to_owned(),
        }
    }
}

/// The address a connection reached on this service (its local socket address).
#[derive(Clone, Copy)]
pub struct LocalAddr(pub std::net::SocketAddr);

/// Where the service's links point: on `SIGNALS_PUBLIC_URL` when it is set; else, for a
/// request a trusted proxy (`SIGNALS_TRUSTED_PROXIES`) passed on, on the scheme and host it
/// forwarded (`X-Forwarded-Proto`, `X-Forwarded-Host` or `Host`); else, for a request that
/// came straight from its client, on the address the connection reached
/// (`http://127.0.0.1:8080`), so a link is a full URL (API.md) that leads back to this
/// service; else (a proxy not trusted, or a trusted one's unusable host) relative. A client's
/// own `Host` and `X-Forwarded-*` are never believed.
pub struct Links {
    pub public: Option<String>,
    pub proxies: Vec<crate::config::Cidr>,
}

impl Links {
    /// The base of the links of a response to `req`.
    pub fn base(&self, req: &HttpRequest) -> PublicBase {
        if let Some(public) = &self.public {
            return PublicBase(Some(public.clone()));
        }
        let trusted = req
            .peer_addr()
            .is_some_and(|peer| crate::config::Cidr::trusts(&self.proxies, peer.ip()));
        if !trusted {
            // A request a proxy passed on (it says so in a header) reached an address of the
            // proxy's, not one its client can use: relative links then, which resolve against
            // the URL the client asked for.
            let proxied = req.headers().keys().any(|name| {
                let name = name.as_str();
                name.starts_with("x-forwarded-")
                    || matches!(name, "forwarded" | "via" | "x-real-ip")
            });
            if proxied {
                warn_untrusted_proxy();
                return PublicBase(None);
            }
            let reached = req
                .conn_data::<LocalAddr>()
                .map(|local| local.0.to_string());
            return PublicBase(reached.and_then(|local| origin("http", &local)));
        }
        // The first value: what the proxy nearest the client was asked for.
        let first = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let scheme = match first("x-forwarded-proto") {
            Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
            _ => "http",
        };
        let host = first("x-forwarded-host").or_else(|| first("host"));
        PublicBase(host.and_then(|host| origin(scheme, host)))
    }

    /// The base of links for `req`: [`Links::base`], or none when the service has no [`Links`].
    pub fn of(req: &HttpRequest) -> PublicBase {
        req.app_data::<web::Data<Links>>()
            .map_or(PublicBase(None), |links| links.base(req))
    }
}

/// Says once that requests come through a proxy the service does not trust, whose links are
/// then relative.
fn warn_untrusted_proxy() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::warn!(
            "a request came through a proxy (X-Forwarded-*, X-Real-IP, Forwarded or Via) from an \
             address not in SIGNALS_TRUSTED_PROXIES: its links are relative; set \
             SIGNALS_PUBLIC_URL (or trust the proxy) for full URLs"
        )
    });
}

/// `scheme://host[:port]` when `host` is a host and an optional port and nothing else (no
/// user, path or space a forwarded header could carry), with the host as URLs write it.
fn origin(scheme: &str, host: &str) -> Option<String> {
    let url = url::Url::parse(&format!("{scheme}://{host}/")).ok()?;
    let bare = url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    bare.then(|| url[..url::Position::AfterPort].to_owned())
}

/// This worker's connections to one replica.
pub struct ReadConns {
    pub list_pool: PgPool,
    pub one_plan_pool: PgPool,
    pub lookups: SharedConn,
}

/// Where one read goes: the primary's connections or a replica's.
pub struct Route<'a> {
    pub list_pool: &'a PgPool,
    /// For list queries whose one plan fits every value (`ListFilter::one_plan_fits_all`).
    pub one_plan_pool: &'a PgPool,
    pub lookups: &'a SharedConn,
    /// On a replica: the WAL position it had replayed when it was chosen.
    pub replayed: Option<u64>,
}

impl Route<'_> {
    /// A connection for a list query, and how its statement is to be made: one that keeps one
    /// plan when that plan fits the filters and sort (`Shares::one_plan_fits`), else one that
    /// plans each execution for its values. A request that also counts (`counts`:
    /// `include_total`) gets the latter, as the count runs on the same connection and wants a
    /// plan for its values.
    pub async fn list_conn(
        &self,
        filter: &crate::domain::query::ListFilter,
        sort: crate::domain::query::Sort,
        counts: bool,
        shares: &crate::db::lists::Shares,
    ) -> Result<(crate::db::PgConn, crate::db::lists::Plan), ApiError> {
        if !counts && filter.one_plan_fits_all() {
            let mut conn = crate::db::conn(self.one_plan_pool).await?;
            if shares.one_plan_fits(&mut conn, filter, sort).await? {
                return Ok((conn, crate::db::lists::Plan::Kept));
            }
        }
        Ok((
            crate::db::conn(self.list_pool).await?,
            crate::db::lists::Plan::PerValues,
        ))
    }
}

/// What every handler shares.
pub struct AppState {
    /// For writes, API keys and readiness.
    pub pool: PgPool,
    /// For lookups of signals by id or slug: one connection, shared and pipelined.
    pub lookups: SharedConn,
    /// For list queries: their statements are planned for the values of each request.
    pub list_pool: PgPool,
    /// For list queries whose best plan is the same whatever the values: PostgreSQL keeps one.
    pub one_plan_pool: PgPool,
    pub public_read: bool,
    /// Signs pagination cursors; shared by every instance on one database.
    pub cursor_key: std::sync::Arc<Vec<u8>>,
    pub db_timeout: Duration,
    /// Hot reads, emptied by every change (`SIGNALS_CACHE_MB`).
    pub cache: std::sync::Arc<cache::Cache>,
    /// Where text searches look first for their newest matches (`SIGNALS_SEARCH_HORIZON`).
    pub horizon: std::sync::Arc<crate::db::lists::Horizon>,
    /// How common each score and tag is: whether one kept plan fits a list.
    pub shares: std::sync::Arc<crate::db::lists::Shares>,
    /// The streaming replicas (`SIGNALS_READ_DATABASE_URL`) and what this instance knows of them.
    pub replicas: std::sync::Arc<crate::db::replicas::Replicas>,
    /// This worker's connections to each replica, in the order of `replicas.list`.
    pub replica_reads: Vec<ReadConns>,
}

impl AppState {
    /// Where a read goes that needs the WAL replayed up to `needed` (a client's
    /// `Signals-Read-After`; 0 when it sent none): a healthy replica that has replayed it, taking
    /// turns, else the primary.
    pub fn route(&self, needed: u64) -> Route<'_> {
        match self.replicas.pick(needed) {
            Some(i) => Route {
                list_pool: &self.replica_reads[i].list_pool,
                one_plan_pool: &self.replica_reads[i].one_plan_pool,
                lookups: &self.replica_reads[i].lookups,
                replayed: Some(self.replicas.list[i].replayed()),
            },
            None => self.primary(),
        }
    }

    fn primary(&self) -> Route<'_> {
        Route {
            list_pool: &self.list_pool,
            one_plan_pool: &self.one_plan_pool,
            lookups: &self.lookups,
            replayed: None,
        }
    }

    /// Runs a read where [`AppState::route`] sends it; when that was a replica and it could not
    /// answer (stopped, lost, too slow), once more on the primary, so a replica going away
    /// costs clients no error. Returns the answer and the replica's replayed position (`None`:
    /// the primary answered), for the cache.
    pub async fn read<T, F>(&self, needed: u64, mut read: F) -> Result<(T, Option<u64>), ApiError>
    where
        F: AsyncFnMut(&Route<'_>) -> Result<T, ApiError>,
    {
        let route = self.route(needed);
        match read(&route).await {
            Err(ApiError::Unavailable(cause)) if route.replayed.is_some() => {
                tracing::warn!(%cause, "a replica could not answer a read; the primary answers it");
                read(&self.primary()).await.map(|answer| (answer, None))
            }
            answer => answer.map(|answer| (answer, route.replayed)),
        }
    }
}

/// Registers every documented operation. Used for the running app and for `signals openapi`,
/// so the document and the routes cannot drift apart.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(signals::create_signal)
        .service(batch::batch_signals)
        .service(list::list_signals)
        .service(stream::stream_signals)
        .service(signals::get_signal)
        .service(signals::replace_signal)
        .service(signals::patch_signal)
        .service(signals::delete_signal)
        .service(facets::list_categories)
        .service(facets::list_tags)
        .service(feeds::json_feed)
        .service(feeds::atom_feed)
        .service(webhooks::create_webhook)
        .service(webhooks::list_webhooks)
        .service(webhooks::get_webhook)
        .service(webhooks::patch_webhook)
        .service(webhooks::delete_webhook)
        .service(webhooks::rotate_webhook_secret)
        .service(webhooks::list_webhook_deliveries)
        .service(crate::web::reader_feed)
        .service(crate::web::reader_signal)
        .service(crate::web::reader_asset)
        .service(system::healthz)
        .service(system::readyz)
        .service(system::metrics)
        .service(system::openapi_json);
}

/// The OpenAPI document of the API, generated from the handlers.
pub fn openapi() -> OpenApi {
    use utoipa_actix_web::AppExt;
    let (_, mut api) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(crate::openapi::frame())
        .configure(configure)
        .split_for_parts();
    add_links(&mut api);
    add_rate_limits(&mut api);
    add_read_tokens(&mut api);
    add_body_timeouts(&mut api);
    add_validators_of_not_modified(&mut api);
    add_head_operations(&mut api);
    api
}

/// A 304 carries the headers its 200 would have of the validators and caching (RFC 9110,
/// 15.4.5), and every answer with a validator varies by `Accept-Encoding`
/// (`middleware::encoded_validators`).
fn add_validators_of_not_modified(api: &mut OpenApi) {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    const KEPT: [&str; 4] = [
        "ETag",
        "Cache-Control",
        "Last-Modified",
        "Content-Security-Policy",
    ];
    let vary = HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(
            "`Accept-Encoding` (a gzip body's ETag is the identity one's with `.gzip` added \
             inside the quotes; `If-None-Match` of a read matches the tag of the coding the \
             answer goes out in, `If-Match` a tag of any coding), and `Origin` with CORS",
        ))
        .build();
    for item in api.paths.paths.values_mut() {
        let Some(get) = item.get.as_mut() else {
            continue;
        };
        let responses = &mut get.responses.responses;
        let Some(RefOr::T(ok)) = responses.get_mut("200") else {
            continue;
        };
        if !ok.headers.contains_key("ETag") {
            continue;
        }
        ok.headers.insert("Vary".to_owned(), RefOr::T(vary.clone()));
        let kept: Vec<_> = ok
            .headers
            .iter()
            .filter(|(name, _)| KEPT.contains(&name.as_str()) || *name == "Vary")
            .map(|(name, header)| (name.clone(), header.clone()))
            .collect();
        if let Some(RefOr::T(not_modified)) = responses.get_mut("304") {
            not_modified.headers.extend(kept);
        }
    }
}

/// Every successful write answers with the WAL position of the write (`middleware::after_writes`).
fn add_read_tokens(api: &mut OpenApi) {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let token = HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(conditions::LSN_PATTERN)),
        ))
        .description(Some(
            "The WAL position of this write: sent back as `Signals-Read-After` on a read, it \
             is answered only by a database that has it (read your writes). Also set as the \
             cookie `signals_read_after` for 60 s.",
        ))
        .build();
    for item in api.paths.paths.values_mut() {
        for op in [
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            for (status, response) in op.responses.responses.iter_mut() {
                if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
                    response
                        .headers
                        .insert("Signals-Read-After".to_owned(), RefOr::T(token.clone()));
                }
            }
        }
    }
}

/// An operation with a body answers 408 when the body comes too slowly.
fn add_body_timeouts(api: &mut OpenApi) {
    use utoipa::openapi::Ref;
    for item in api.paths.paths.values_mut() {
        for op in [&mut item.post, &mut item.put, &mut item.patch]
            .into_iter()
            .flatten()
            .filter(|op| op.request_body.is_some())
        {
            op.responses.responses.insert(
                "408".to_owned(),
                RefOr::Ref(Ref::from_response_name("RequestTimeout")),
            );
        }
    }
}

/// Every operation but those of [`limits::UNLIMITED`] is rate-limited: each may answer 429,
/// and every response carries the RateLimit fields while a limit is configured.
fn add_rate_limits(api: &mut OpenApi) {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::Ref;
    let fields = [
        (
            "RateLimit-Policy",
            "The limit this request counts against (draft-ietf-httpapi-ratelimit-headers), \
             e.g. `\"read\";q=600;w=60`: 600 reads per 60 s window; when limits are on",
        ),
        (
            "RateLimit",
            "What is left of it, e.g. `\"read\";r=42;t=17`: 42 more in the 17 s until the \
             window ends; when limits are on",
        ),
    ];
    let add_fields =
        |headers: &mut std::collections::BTreeMap<String, RefOr<utoipa::openapi::Header>>| {
            for (name, description) in fields {
                headers.insert(
                    name.to_owned(),
                    RefOr::T(
                        HeaderBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                            .description(Some(description))
                            .build(),
                    ),
                );
            }
        };
    if let Some(components) = api.components.as_mut() {
        for (name, response) in components.responses.iter_mut() {
            if let RefOr::T(response) = response {
                // A head over the bounds is refused before it is counted (and before a key in
                // it is looked up): no RateLimit fields.
                if name != "HeadersTooLarge" {
                    add_fields(&mut response.headers);
                }
                // A wait is whole seconds, at least one (`u32` would allow 0).
                if let Some(RefOr::T(retry_after)) = response.headers.get_mut("Retry-After") {
                    retry_after.schema = Some(RefOr::T(utoipa::openapi::Schema::Object(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(1))
                            .build(),
                    )));
                }
            }
        }
    }
    for (path, item) in api.paths.paths.iter_mut() {
        let limited = !limits::UNLIMITED.contains(&path.as_str());
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let mut statuses = vec![
                // Every request's head is bounded (`middleware::bounded_head`).
                ("431", "HeadersTooLarge"),
            ];
            if limited {
                for response in op.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        add_fields(&mut response.headers);
                    }
                }
                statuses.push(("429", "TooManyRequests"));
            }
            for (status, name) in statuses {
                op.responses
                    .responses
                    .insert(status.to_owned(), RefOr::Ref(Ref::from_response_name(name)));
            }
        }
    }
}

/// Links from a created signal to the operations on it (so clients and the stateful checks
/// of outside test suites can follow them).
fn add_links(api: &mut OpenApi) {
    use utoipa::openapi::link::LinkBuilder;
    let Some(create) = api
        .paths
        .paths
        .get_mut("/v1/signals")
        .and_then(|item| item.post.as_mut())
    else {
        return;
    };
    let Some(RefOr::T(created)) = create.responses.responses.get_mut("201") else {
        return;
    };
    for (name, operation) in [
        ("GetSignal", "get_signal"),
        ("ReplaceSignal", "replace_signal"),
        ("PatchSignal", "patch_signal"),
        ("DeleteSignal", "delete_signal"),
    ] {
        let link = LinkBuilder::new()
            .operation_id(operation)
            .parameter("id_or_slug", "$response.body#/id")
            .description(format!("`{operation}` of the created signal, by its id"))
            .build();
        created.links.insert(name.to_owned(), RefOr::T(link));
    }
}

/// Every GET operation also answers HEAD (the same status and headers, no body): the document
/// says so with a HEAD operation beside each GET, its responses without content.
fn add_head_operations(api: &mut OpenApi) {
    let components = api.components.clone().unwrap_or_default();
    for item in api.paths.paths.values_mut() {
        let Some(get) = &item.get else { continue };
        let mut head: Operation = get.clone();
        head.operation_id = get.operation_id.as_ref().map(|id| format!("head_{id}"));
        head.summary = get.summary.as_ref().map(|s| format!("{s} (headers only)"));
        head.description = Some("The same status and headers as the GET, without a body.".into());
        for response in head.responses.responses.values_mut() {
            let (description, headers) = match &*response {
                RefOr::T(r) => (r.description.clone(), r.headers.clone()),
                RefOr::Ref(r) => {
                    let name = r.ref_location.rsplit('/').next().unwrap_or_default();
                    match components.responses.get(name) {
                        Some(RefOr::T(r)) => (r.description.clone(), r.headers.clone()),
                        _ => (String::new(), Default::default()),
                    }
                }
            };
            let mut bare = ResponseBuilder::new().description(description);
            for (name, header) in headers {
                if let RefOr::T(header) = header {
                    bare = bare.header(name, header);
                }
            }
            *response = RefOr::T(bare.build());
        }
        item.head = Some(head);
    }
}

/// For each documented path, the methods it allows: answers 405 with `Allow` for the others.
pub struct RouteTable(Vec<(ResourceDef, Vec<&'static str>)>);

const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

impl RouteTable {
    pub fn from_openapi(api: &OpenApi) -> Self {
        let routes = api
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let present = [
                    &item.get,
                    &item.head,
                    &item.post,
                    &item.put,
                    &item.patch,
                    &item.delete,
                ];
                let methods = METHODS
                    .iter()
                    .zip(present)
                    .filter(|(_, op)| op.is_some())
                    .map(|(m, _)| *m)
                    .collect();
                (ResourceDef::new(path.as_str()), methods)
            })
            .collect();
        RouteTable(routes)
    }

    /// Adds a path served outside the document (the docs' pages), answering GET and HEAD.
    pub fn with_page(mut self, path: &str) -> Self {
        self.0.push((ResourceDef::new(path), vec!["GET", "HEAD"]));
        self
    }

    /// The `Allow` value for a path: the methods of the documented path that names it. When
    /// several templates match (`/v1/signals/batch` and `/v1/signals/{id_or_slug}`), the one
    /// with fewer variables is that path, as routing decides.
    fn allowed(&self, path: &str) -> Option<String> {
        let (_, methods) = self
            .0
            .iter()
            .filter(|(def, _)| def.is_match(path))
            .min_by_key(|(def, _)| def.pattern().map_or(0, |p| p.matches('{').count()))?;
        Some(methods.join(", "))
    }
}

/// Every request no route took: 405 when the path exists with other methods (OPTIONS: 204 with
/// `Allow`), else 404.
pub async fn no_route(
    req: HttpRequest,
    table: web::Data<RouteTable>,
) -> Result<HttpResponse, ApiError> {
    let method = middleware::original_method(&req);
    // The path as routing read it (escapes of unreserved characters decoded).
    match table.allowed(req.match_info().get_ref().path()) {
        // A plain OPTIONS (CORS preflights are answered before routing) lists the methods.
        Some(allow) if method == actix_web::http::Method::OPTIONS => Ok(HttpResponse::NoContent()
            .insert_header((header::ALLOW, allow))
            .finish()),
        Some(allow) => Err(ApiError::MethodNotAllowed {
            method: method.to_string(),
            allow,
        }),
        None => Err(ApiError::NotFound(format!(
            "there is no route {}",
            req.path()
        ))),
    }
}

/// Reads a JSON body of at most `limit` bytes whose media type is one of `types`.
pub async fn read_json(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    types: &[&str],
) -> Result<Value, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if !content_type.as_deref().is_some_and(|t| types.contains(&t)) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "expected Content-Type: {}",
            types.join(" or ")
        )));
    }
    // Bodies are read as sent: a compressed one would only fail as JSON (RFC 9110: 415 for a
    // content coding the server does not take).
    if let Some(coding) = req.headers().get(header::CONTENT_ENCODING) {
        if !coding.as_bytes().eq_ignore_ascii_case(b"identity") {
            return Err(ApiError::UnsupportedMediaType(
                "request bodies are taken without Content-Encoding (send the JSON uncompressed)"
                    .into(),
            ));
        }
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let timeout = req
        .app_data::<web::Data<BodyTimeout>>()
        .map_or(Duration::from_secs(5), |t| t.0);
    let read = actix_web::rt::time::timeout(timeout, payload.to_bytes_limited(limit));
    let bytes = match read.await.map_err(|_| ApiError::RequestTimeout)? {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            return Err(ApiError::bad_request(format!(
                "the body could not be read: {e}"
            )))
        }
        Err(_) => return Err(ApiError::PayloadTooLarge { limit }),
    };
    bounded_json::parse(&bytes, bounded_json::MAX_VALUES).map_err(|e| match e {
        bounded_json::Refused::Invalid(e) => {
            ApiError::bad_request(format!("the body is not valid JSON: {e}"))
        }
        bounded_json::Refused::TooManyValues => ApiError::bad_request(format!(
            "the body holds more than {} JSON values",
            bounded_json::MAX_VALUES
        )),
    })
}

/// The path of the route that answers `req`, as the service writes it: a static route's own
/// pattern, whatever spelling the request used (`/v1/fe%65d.atom` reaches the Atom feed too).
/// Links and documents made for one request are kept for others (the cache), so they are
/// written from this, never from the request's own spelling.
pub fn route_path(req: &HttpRequest) -> String {
    req.match_pattern().unwrap_or_else(|| req.path().to_owned())
}

/// A strong ETag of a response body.
pub fn etag_of(body: &[u8]) -> String {
    etag_from(Sha256::digest(body).as_slice())
}

/// The strong ETag of a version of a signal: every change moves `updated_at` forward.
pub fn signal_etag(id: uuid::Uuid, updated_at: chrono::DateTime<chrono::Utc>) -> String {
    version_etag(&[(id, updated_at)], "")
}

/// Bumped whenever the JSON shape of a signal changes, so old ETags stop matching.
const REPRESENTATION: &[u8] = b"signal-v1";

/// A strong ETag for a representation made only of these signal versions (and `extra`: the
/// page's cursor, total, field list). Every change to a signal moves its `updated_at` forward,
/// so this changes exactly when the representation does, without hashing the body.
pub fn version_etag(
    versions: &[(uuid::Uuid, chrono::DateTime<chrono::Utc>)],
    extra: &str,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(REPRESENTATION);
    for (id, updated_at) in versions {
        hasher.update(id.as_bytes());
        hasher.update(updated_at.timestamp_micros().to_le_bytes());
    }
    hasher.update(extra.as_bytes());
    etag_from(hasher.finalize().as_slice())
}

fn etag_from(digest: &[u8]) -> String {
    format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest[..16]))
}

/// A JSON response with a strong ETag, or 304 (without making the body) when the client
/// already has it.
pub fn cacheable_json<B: actix_web::body::MessageBody + 'static>(
    held: &IfNoneMatch,
    etag: String,
    public: bool,
    body: impl FnOnce() -> B,
) -> HttpResponse {
    let cache = cache_control(public);
    if held.holds(&etag) {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .insert_header((header::CACHE_CONTROL, cache))
            .finish();
    }
    HttpResponse::Ok()
        .content_type(mime_json())
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, cache))
        .body(body())
}

/// `Cache-Control` of every readable representation: caches may keep it, and must revalidate
/// (cheap with the ETag) before each use, so a write is seen at once; `private` when reads need
/// a key.
pub fn cache_control(public: bool) -> &'static str {
    if public {
        "public, max-age=0, must-revalidate"
    } else {
        "private, max-age=0, must-revalidate"
    }
}

fn mime_json() -> &'static str {
    "application/json"
}
