//! The reader: the feed (`GET /`) and one signal (`GET /s/{slug}`) as web pages for people,
//! rendered by the service (readable without JavaScript) from the same queries as the API, with
//! one stylesheet and one small script of its own (`/assets/...`); nothing is loaded from
//! anywhere else (the pages' Content-Security-Policy says so to the browser too).

pub mod html;

use std::fmt::Write;
use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{get, web, HttpRequest, HttpResponse, ResponseError};
use sha2::{Digest, Sha256};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{AnyOfBuilder, ArrayItems, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::openapi::Required;
use utoipa::IntoParams;

use crate::api::auth::Reader;
use crate::api::conditions::{IfNoneMatch, ReadAfter};
use crate::api::problem::{responses, ApiError};
use crate::api::{cache_control, etag_of, AppState};
use crate::db::{self, lists, lookups};
use crate::domain::query::{
    case_key, known_pairs, pairs_where, parameters, ListQuery, PAGE_PARAMS,
};
use crate::domain::signal::{Signal, SignalRef};
use html::{escape, escape_into};

/// What the reader's pages may load: their own origin's styles, script and fetches only.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; form-action 'self'; base-uri 'none'; \
                   frame-ancestors 'none'";

/// A file the pages load, with its version (part of its URL, so it can be kept for a year).
pub struct Asset {
    pub name: &'static str,
    content_type: &'static str,
    body: &'static str,
    pub version: String,
}

fn asset(name: &'static str, content_type: &'static str, body: &'static str) -> Asset {
    let digest = Sha256::digest(body.as_bytes());
    let version = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Asset {
        name,
        content_type,
        body,
        version,
    }
}

static ASSETS: LazyLock<[Asset; 2]> = LazyLock::new(|| {
    [
        asset(
            "reader.css",
            "text/css; charset=utf-8",
            include_str!("assets/reader.css"),
        ),
        asset(
            "reader.js",
            "text/javascript; charset=utf-8",
            include_str!("assets/reader.js"),
        ),
    ]
});

fn asset_url(name: &str) -> String {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .expect("a known asset");
    format!("/assets/{}?v={}", asset.name, asset.version)
}

/// A whole page: the frame every page shares around `main`.
fn page(title: &str, description: &str, head_extra: &str, main: &str) -> String {
    let mut out = String::with_capacity(main.len() + 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><meta name=\"description\" content=\"{}\">\
         <link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"{}\">\
         <script src=\"{}\" defer></script>{head_extra}</head>\
         <body><a class=\"skip\" href=\"#main\">Skip to the signals</a>\
         <header class=\"site\"><a class=\"brand\" href=\"/\">Signals</a></header>\
         <main id=\"main\">{main}</main></body></html>\n",
        escape(title),
        escape(description),
        asset_url("reader.css"),
        asset_url("reader.js"),
    );
    out
}

/// An HTML response with a strong ETag (304 when the client holds it) and the reader's CSP.
fn html_page(held: &IfNoneMatch, status: StatusCode, body: String, public: bool) -> HttpResponse {
    let etag = etag_of(body.as_bytes());
    let fresh = status == StatusCode::OK && held.holds(&etag);
    let mut response = match fresh {
        true => HttpResponse::NotModified(),
        false => HttpResponse::build(status),
    };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, cache_control(public)))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header(("x-content-type-options", "nosniff"));
    if fresh {
        return response.finish();
    }
    response.content_type("text/html; charset=utf-8").body(body)
}

/// An error of a page, shown as a page (with the problem's status and headers).
#[derive(Debug)]
pub struct PageError(ApiError);

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<db::DbError> for PageError {
    fn from(e: db::DbError) -> Self {
        PageError(e.into())
    }
}

impl From<diesel::result::Error> for PageError {
    fn from(e: diesel::result::Error) -> Self {
        PageError(e.into())
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let problem = self.0.problem();
        let api = self.0.error_response();
        let main = format!(
            "<h1>{}</h1><p>{}</p><p><a class=\"back\" href=\"/\">Back to feed</a></p>",
            escape(problem.title),
            escape(&problem.detail)
        );
        let mut response = HttpResponse::build(self.status_code())
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
            .body(page(problem.title, &problem.detail, "", &main));
        for (name, value) in api.headers() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                response.headers_mut().insert(name.clone(), value.clone());
            }
        }
        response
    }
}

impl IntoParams for ReaderQuery {
    /// The list's parameters, each also empty (see [`ListQuery::parse_page`]).
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        parameters(PAGE_PARAMS)
            .into_iter()
            .map(|mut p| {
                let or_empty = |schema: RefOr<Schema>| {
                    let empty = ObjectBuilder::new()
                        .schema_type(Type::String)
                        .max_length(Some(0));
                    RefOr::T(Schema::AnyOf(
                        AnyOfBuilder::new().item(schema).item(empty).build(),
                    ))
                };
                // A repeatable one: each of its values may be empty.
                p.schema = p.schema.map(|schema| match schema {
                    RefOr::T(Schema::Array(mut array)) => {
                        if let ArrayItems::RefOrSchema(items) = array.items {
                            array.items = ArrayItems::RefOrSchema(Box::new(or_empty(*items)));
                        }
                        RefOr::T(Schema::Array(array))
                    }
                    other => or_empty(other),
                });
                p.description = p.description.map(|d| {
                    format!("{d} Empty (as the filter form sends it for \"any\"): not given.")
                });
                p
            })
            .collect()
    }
}

/// The feed page's parameters (documentation only: they are parsed as [`ListQuery`]).
pub struct ReaderQuery;

const PAGE_SIZE: i64 = 20;

/// One signal in the feed, as the seed shows it.
fn card(out: &mut String, s: &Signal) {
    let _ = write!(
        out,
        "<li data-id=\"{}\"><article><p class=\"meta\">{}</p><h2><a href=\"/s/{}\">",
        s.id,
        html::meta_line(s),
        escape(&s.slug)
    );
    escape_into(out, &s.title);
    out.push_str("</a></h2>");
    if !s.summary.trim().is_empty() {
        out.push_str("<p class=\"summary\">");
        escape_into(out, &s.summary);
        out.push_str("</p>");
    }
    out.push_str("</article></li>");
}

/// A select of the feed's filter form.
fn select(out: &mut String, name: &str, label: &str, options: &[(String, String)], chosen: &str) {
    let _ = write!(out, "<label>{label}<select name=\"{name}\">");
    for (value, text) in options {
        let selected = if value == chosen { " selected" } else { "" };
        let _ = write!(
            out,
            "<option value=\"{}\"{selected}>{}</option>",
            escape(value),
            escape(text)
        );
    }
    out.push_str("</select></label>");
}

/// The filter values of a query string as given (for the form and the links), by name.
fn given(req: &HttpRequest, name: &str) -> String {
    form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The signals feed
///
/// The reader's front page: the newest signals as the seed shows them (score as `7/10`,
/// category, time, title linking to the signal's page, summary), 20 at a time, with a score
/// threshold, categories with their counts, a tag and a search box; the filters are the
/// list's query parameters, so a link shares the view. The "More signals" link carries the
/// list's cursor. With JavaScript, choosing a filter applies it, more signals load at the end
/// of the page and new ones are announced live from the stream. Query parameters the page does
/// not know (a shared link's `utm_source`) are ignored; a known one with a bad value is 400.
#[utoipa::path(
    operation_id = "reader_feed",
    tag = "reader",
    params(ReaderQuery, IfNoneMatch, ReadAfter),
    responses(
        (status = 200, description = "The feed page", content_type = "text/html", body = String,
            headers(("ETag" = String), ("Cache-Control" = String), ("Content-Security-Policy" = String))),
        (status = 304, description = "Not modified: the ETag in If-None-Match is current"),
        (status = 400, description = "A filter is not valid (an HTML page says which)", content_type = "text/html", body = String),
        (status = 401, description = "Reads need a key here (`SIGNALS_PUBLIC_READ=false`)", content_type = "text/html", body = String, headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 503, description = "The database did not answer in time", content_type = "text/html", body = String),
    ),
    security(())
)]
#[get("/")]
pub async fn reader_feed(
    req: HttpRequest,
    state: web::Data<AppState>,
    reader: Result<Reader, ApiError>,
    held: IfNoneMatch,
    read_after: ReadAfter,
) -> Result<HttpResponse, PageError> {
    reader?;
    let needed = read_after.needed();
    // A page ignores the names it does not know (a shared link's `utm_source`).
    let known = known_pairs(req.query_string(), PAGE_PARAMS);
    let query = ListQuery::parse_page(&known).map_err(ApiError::parameter)?;
    // The filters given, for the links to the stream and the feeds.
    let filters = filters_given(&known);
    let after = query
        .after(&state.cursor_key)
        .map_err(ApiError::parameter)?;
    let (listed, _) = state
        .read(needed, async |route| {
            let (mut conn, plan) = route
                .list_conn(&query.filter, query.sort, false, &state.shares)
                .await?;
            let listed = lists::list(
                &mut conn,
                &query.filter,
                query.sort,
                after.as_ref(),
                PAGE_SIZE,
                &state.horizon,
                plan,
            )
            .await?;
            Ok(listed)
        })
        .await?;
    // Counted over every signal: kept in the cache with `/v1/categories` and `/v1/tags`.
    let (categories, tags) = crate::api::facets::unfiltered(&state, needed).await?;
    let (categories, tags) = (categories.items, tags.items);
    let rows = listed.rows;
    let more = listed
        .next
        .map(|after| query.cursor_for(&after, &state.cursor_key));
    let signals: Vec<Signal> = rows
        .iter()
        .filter_map(|row| serde_json::from_slice(row.as_bytes()).ok())
        .collect();

    let mut main = String::with_capacity(signals.len() * 1024 + 4096);
    main.push_str(
        "<form class=\"filters\" action=\"/\" method=\"get\" role=\"search\" \
         aria-label=\"Filter signals\">",
    );
    let mut scores = vec![(String::new(), "any".to_owned())];
    scores.extend((1..=10).map(|s| (s.to_string(), format!("{s}/10 and up"))));
    select(
        &mut main,
        "min_score",
        "Score",
        &scores,
        &given(&req, "min_score"),
    );
    let mut choices = vec![(String::new(), "All categories".to_owned())];
    choices.extend(
        categories
            .iter()
            .map(|c| (c.name.clone(), format!("{} ({})", c.name, c.count))),
    );
    let category = given(&req, "category");
    // A category chosen by a link that differs in case is still shown as chosen.
    let chosen = categories
        .iter()
        .find(|c| case_key(&c.name) == case_key(&category))
        .map_or(category.clone(), |c| c.name.clone());
    select(&mut main, "category", "Category", &choices, &chosen);
    let _ = write!(
        main,
        "<label>Tag<input name=\"tag\" list=\"tags\" value=\"{}\" autocomplete=\"off\"></label>\
         <datalist id=\"tags\">",
        escape(&given(&req, "tag"))
    );
    for tag in &tags {
        let _ = write!(main, "<option value=\"{}\">", escape(&tag.name));
    }
    let _ = write!(
        main,
        "</datalist><label class=\"grow\">Search<input type=\"search\" name=\"q\" value=\"{}\">\
         </label><button type=\"submit\">Filter</button></form>",
        escape(&given(&req, "q"))
    );
    main.push_str(
        "<p class=\"live\" id=\"live\" role=\"status\" aria-live=\"polite\" hidden>\
         <button type=\"button\">New signals</button></p>",
    );
    // Live updates with the page's filters (the stream has no text search).
    let stream = match query.filter.q {
        Some(_) => String::new(),
        None => {
            let mut params = form_urlencoded::Serializer::new(String::new());
            for (name, value) in form_urlencoded::parse(filters.as_bytes()) {
                if ["min_score", "max_score", "category", "tag", "any_tag"].contains(&&*name) {
                    params.append_pair(&name, &value);
                }
            }
            let params = params.finish();
            let params = if params.is_empty() {
                String::new()
            } else {
                format!("?{params}")
            };
            // The stream has no time filters: the page counts only new signals in its times.
            let mut attributes = format!(" data-stream=\"/v1/signals/stream{}\"", escape(&params));
            for (name, time) in [("since", query.filter.since), ("until", query.filter.until)] {
                if let Some(time) = time {
                    let _ = write!(attributes, " data-{name}=\"{}\"", time.to_rfc3339());
                }
            }
            attributes
        }
    };
    let _ = write!(main, "<ol class=\"feed\" id=\"feed\"{stream}>");
    for signal in &signals {
        card(&mut main, signal);
    }
    main.push_str("</ol>");
    if signals.is_empty() {
        main.push_str("<p class=\"empty\">No signals match these filters.</p>");
    }
    if let Some(cursor) = more {
        let next = crate::api::list::next_query_of(&crate::api::route_path(&req), &known, &cursor);
        let _ = write!(
            main,
            "<nav class=\"more\" aria-label=\"More\"><a id=\"more\" rel=\"next\" href=\"{}\">\
             More signals</a></nav>",
            escape(&next)
        );
    }
    let feeds_query = match filters.as_str() {
        "" => String::new(),
        q => format!("?{}", escape(q)),
    };
    let head = format!(
        "<link rel=\"alternate\" type=\"application/atom+xml\" title=\"Signals (Atom)\" \
         href=\"/v1/feed.atom{feeds_query}\"><link rel=\"alternate\" \
         type=\"application/feed+json\" title=\"Signals (JSON Feed)\" \
         href=\"/v1/feed.json{feeds_query}\">"
    );
    let body = page(
        "Signals",
        "Scored intelligence signals, newest first",
        &head,
        &main,
    );
    Ok(html_page(&held, StatusCode::OK, body, state.public_read))
}

/// The page's filters as written: its query string without the cursor (the stream and the
/// feeds have no pages) and without the fields the filter form left empty (which
/// [`ListQuery::parse_page`] reads as not given).
fn filters_given(query_string: &str) -> String {
    pairs_where(query_string, |name, value| {
        name != "cursor" && !value.is_empty()
    })
}

/// The slug of `/s/{slug}`.
pub struct SlugPath;

impl IntoParams for SlugPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("slug")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("The signal's slug (or its id)."))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1)),
            ))
            .example(Some(serde_json::json!("deepseek-targets-45b-valuation")))
            .build()]
    }
}

/// A signal's page
///
/// One signal as the seed shows it, rendered by the server (readable without JavaScript):
/// "Back to feed", the meta line, the title, the summary, the lede, each section under its
/// heading, and the tags, each linking to the feed filtered by it. 404 (a page) for a slug no
/// signal has.
#[utoipa::path(
    operation_id = "reader_signal",
    tag = "reader",
    params(SlugPath, IfNoneMatch, ReadAfter),
    responses(
        (status = 200, description = "The signal's page", content_type = "text/html", body = String,
            headers(("ETag" = String), ("Cache-Control" = String), ("Content-Security-Policy" = String))),
        (status = 304, description = "Not modified: the ETag in If-None-Match is current"),
        (status = 401, description = "Reads need a key here (`SIGNALS_PUBLIC_READ=false`)", content_type = "text/html", body = String, headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "No signal has this slug (a page says so)", content_type = "text/html", body = String),
        (status = 503, description = "The database did not answer in time", content_type = "text/html", body = String),
    ),
    security(())
)]
#[get("/s/{slug}")]
pub async fn reader_signal(
    req: HttpRequest,
    state: web::Data<AppState>,
    reader: Result<Reader, ApiError>,
    held: IfNoneMatch,
    read_after: ReadAfter,
) -> Result<HttpResponse, PageError> {
    reader?;
    let needed = read_after.needed();
    let not_found = || ApiError::NotFound("There is no signal at this address.".into());
    let slug = req.match_info().get("slug").unwrap_or_default();
    let signal_ref = SignalRef::parse(slug).ok_or_else(not_found)?;
    let (found, _) = state
        .read(needed, async |route| {
            Ok(lookups::lookup(route.lookups, &signal_ref).await?)
        })
        .await?;
    let found = found.ok_or_else(not_found)?;
    let signal: Signal = serde_json::from_slice(found.as_bytes())
        .map_err(|e| ApiError::Internal(format!("a stored signal does not read back: {e}")))?;
    let mut main = String::with_capacity(signal.body.len() * 2 + 4096);
    let _ = write!(
        main,
        "<nav><a class=\"back\" href=\"/\">← Back to feed</a></nav>\
         <article class=\"signal\"><p class=\"meta\">{}</p><h1>",
        html::meta_line(&signal)
    );
    escape_into(&mut main, &signal.title);
    main.push_str("</h1>");
    main.push_str(&html::article_body(&signal, 2));
    if !signal.tags.is_empty() {
        main.push_str("<ul class=\"tags\" aria-label=\"Tags\">");
        for tag in &signal.tags {
            let link = form_urlencoded::Serializer::new(String::new())
                .append_pair("tag", tag)
                .finish();
            let _ = write!(main, "<li><a href=\"/?{}\">", escape(&link));
            escape_into(&mut main, tag);
            main.push_str("</a></li>");
        }
        main.push_str("</ul>");
    }
    if let Some(source) = &signal.source_url {
        let _ = write!(
            main,
            "<p class=\"source\"><a href=\"{}\" rel=\"noopener noreferrer nofollow\">Source</a></p>",
            escape(source)
        );
    }
    main.push_str("</article>");
    let description = match signal.summary.trim() {
        "" => signal.title.clone(),
        summary => summary.chars().take(300).collect(),
    };
    let body = page(
        &format!("{} · Signals", signal.title),
        &description,
        "",
        &main,
    );
    Ok(html_page(&held, StatusCode::OK, body, state.public_read))
}

/// The name of `/assets/{name}`, and its version.
pub struct AssetPath;

impl IntoParams for AssetPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("name")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("The file: `reader.css` or `reader.js`."))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(["reader.css", "reader.js"])),
                ))
                .build(),
            ParameterBuilder::new()
                .name("v")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(
                    "The file's version, as the pages link it: with the current one the file \
                     may be kept for a year.",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^[0-9a-f]{16}$")),
                ))
                .build(),
        ]
    }
}

/// The reader's files
///
/// The stylesheet and the script of the reader's pages, served by the service itself.
#[utoipa::path(
    operation_id = "reader_asset",
    tag = "reader",
    params(AssetPath, IfNoneMatch),
    responses(
        (status = 200, description = "The file", content(("text/css"), ("text/javascript")),
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Not modified: the ETag in If-None-Match is current"),
        (status = 400, response = responses::BadRequest),
        (status = 404, response = responses::NotFound),
    ),
    security(())
)]
#[get("/assets/{name}")]
pub async fn reader_asset(req: HttpRequest, held: IfNoneMatch) -> Result<HttpResponse, ApiError> {
    let name = req.match_info().get("name").unwrap_or_default();
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("there is no file {name:?}")))?;
    let mut current = false;
    for (key, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        match &*key {
            "v" if value.len() == 16
                && value
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
            {
                current = value == asset.version
            }
            "v" => {
                return Err(ApiError::bad_parameter(
                    "v",
                    "must be 16 hexadecimal digits",
                ))
            }
            other => {
                return Err(ApiError::bad_parameter(
                    other,
                    "is not a parameter of this endpoint (known: v)",
                ))
            }
        }
    }
    let etag = format!("\"{}\"", asset.version);
    let cache = match current {
        true => "public, max-age=31536000, immutable",
        false => "public, max-age=0, must-revalidate",
    };
    let fresh = held.holds(&etag);
    let mut response = match fresh {
        true => HttpResponse::NotModified(),
        false => HttpResponse::Ok(),
    };
    response
        .insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static(cache)))
        .insert_header(("x-content-type-options", "nosniff"));
    if fresh {
        return Ok(response.finish());
    }
    Ok(response.content_type(asset.content_type).body(asset.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_given_leave_out_the_cursor_however_its_name_is_spelled() {
        assert_eq!(
            filters_given("min_score=7&cursor=abc&q=&%63ursor=def&tag=LLM"),
            "min_score=7&tag=LLM"
        );
        assert_eq!(filters_given("c%75rsor=x&q=a%20b"), "q=a%20b");
    }
}
