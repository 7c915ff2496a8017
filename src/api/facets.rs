//! `/v1/categories` and `/v1/tags`: the names in use, with how many signals have each.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::auth::Reader;
use super::problem::{responses, ApiError};
use super::query::FacetQuery;
use super::{cacheable_json, etag_of, AppState};
use crate::db::{self, signals::FacetCount};

/// A name and the number of signals that have it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Facet {
    /// As first spelled in sort order; spellings that differ only in case count as one.
    #[schema(example = "Industry")]
    pub name: String,
    #[schema(minimum = 1, example = 42)]
    pub count: i64,
}

/// Names with counts, most frequent first (ties by name).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"items": [{"name": "Industry", "count": 42}, {"name": "Research", "count": 17}]}))]
pub struct FacetPage {
    pub items: Vec<Facet>,
}

/// Documents the filters both facets accept.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct FacetParams {
    /// Count only signals scored at least this.
    #[param(minimum = 0, maximum = 10, example = 7)]
    min_score: Option<i16>,
    /// RFC 3339; count only signals with `since <= published_at`.
    #[param(example = "2026-05-01T00:00:00Z")]
    since: Option<String>,
    /// RFC 3339; count only signals with `published_at < until`.
    #[param(example = "2026-06-01T00:00:00Z")]
    until: Option<String>,
}

/// Documents the parameters only the tag facet accepts.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TagParams {
    /// Only tags starting with this, case-insensitively.
    #[param(min_length = 1, max_length = 64, example = "ll")]
    prefix: Option<String>,
    /// Most tags to return.
    #[param(minimum = 1, maximum = 100, example = 50)]
    limit: Option<i64>,
}

fn page(req: &HttpRequest, items: Vec<FacetCount>, public: bool) -> HttpResponse {
    let page = FacetPage {
        items: items
            .into_iter()
            .map(|f| Facet {
                name: f.name,
                count: f.count,
            })
            .collect(),
    };
    let body = serde_json::to_vec(&page).unwrap_or_default();
    cacheable_json(req, etag_of(&body), public, || body)
}

/// List categories
///
/// Every category in use with its number of signals, most frequent first. Categories are matched
/// case-insensitively, so spellings that differ only in case are counted together.
#[utoipa::path(
    operation_id = "list_categories",
    tag = "signals",
    params(FacetParams),
    responses(
        (status = 200, description = "Categories with counts", body = FacetPage, headers(("ETag" = String))),
        (status = 304, description = "Not modified: the ETag in If-None-Match is current"),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 503, response = responses::Unavailable),
    ),
    security((), ("bearer" = []))
)]
#[get("/v1/categories")]
pub async fn list_categories(
    req: HttpRequest,
    state: web::Data<AppState>,
    _reader: Reader,
) -> Result<HttpResponse, ApiError> {
    let query = FacetQuery::parse(req.query_string(), false)?;
    let mut conn = db::conn(&state.list_pool).await?;
    let items = db::signals::categories(&mut conn, &query.filter).await?;
    Ok(page(&req, items, state.public_read))
}

/// List tags
///
/// Tags in use with their number of signals, most frequent first, at most `limit` (default 50).
/// With `prefix`, only tags starting with it (case-insensitive): for autocompletion.
#[utoipa::path(
    operation_id = "list_tags",
    tag = "signals",
    params(FacetParams, TagParams),
    responses(
        (status = 200, description = "Tags with counts", body = FacetPage, headers(("ETag" = String))),
        (status = 304, description = "Not modified: the ETag in If-None-Match is current"),
        (status = 400, response = responses::BadRequest),
        (status = 401, response = responses::Unauthorized),
        (status = 503, response = responses::Unavailable),
    ),
    security((), ("bearer" = []))
)]
#[get("/v1/tags")]
pub async fn list_tags(
    req: HttpRequest,
    state: web::Data<AppState>,
    _reader: Reader,
) -> Result<HttpResponse, ApiError> {
    let query = FacetQuery::parse(req.query_string(), true)?;
    let mut conn = db::conn(&state.list_pool).await?;
    let items = db::signals::tags(&mut conn, &query.filter, query.limit).await?;
    Ok(page(&req, items, state.public_read))
}
