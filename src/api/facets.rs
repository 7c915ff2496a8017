//! `/v1/categories` and `/v1/tags`: the names in use, with how many signals have each.

use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::auth::Reader;
use super::conditions::IfNoneMatch;
use super::problem::{responses, ApiError};
use super::{cacheable_json, etag_of, AppState};
use crate::db::{self, facets::FacetCount};
use crate::domain::query::{parameters, CategoryQuery, TagQuery, CATEGORY_PARAMS, TAG_PARAMS};
use utoipa::openapi::path::{Parameter, ParameterIn};

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

impl IntoParams for CategoryQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        parameters(CATEGORY_PARAMS)
    }
}

impl IntoParams for TagQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        parameters(TAG_PARAMS)
    }
}

fn page(held: &IfNoneMatch, items: Vec<FacetCount>, public: bool) -> HttpResponse {
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
    cacheable_json(held, etag_of(&body), public, || body)
}

/// List categories
///
/// Every category in use with its number of signals, most frequent first. Categories are matched
/// case-insensitively, so spellings that differ only in case are counted together.
#[utoipa::path(
    operation_id = "list_categories",
    tag = "signals",
    params(CategoryQuery, IfNoneMatch),
    responses(
        (status = 200, description = "Categories with counts", body = FacetPage, headers(("ETag" = String, description = "Strong validator of the list"), ("Cache-Control" = String))),
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
    held: IfNoneMatch,
) -> Result<HttpResponse, ApiError> {
    let CategoryQuery(query) =
        CategoryQuery::parse(req.query_string()).map_err(ApiError::parameter)?;
    let mut conn = db::conn(&state.list_pool).await?;
    let items = db::facets::categories(&mut conn, &query.filter).await?;
    Ok(page(&held, items, state.public_read))
}

/// List tags
///
/// Tags in use with their number of signals, most frequent first, at most `limit` (default 50).
/// With `prefix`, only tags starting with it (case-insensitive): for autocompletion.
#[utoipa::path(
    operation_id = "list_tags",
    tag = "signals",
    params(TagQuery, IfNoneMatch),
    responses(
        (status = 200, description = "Tags with counts", body = FacetPage, headers(("ETag" = String, description = "Strong validator of the list"), ("Cache-Control" = String))),
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
    held: IfNoneMatch,
) -> Result<HttpResponse, ApiError> {
    let TagQuery(query) = TagQuery::parse(req.query_string()).map_err(ApiError::parameter)?;
    let mut conn = db::conn(&state.list_pool).await?;
    let items = db::facets::tags(&mut conn, &query.filter, query.limit).await?;
    Ok(page(&held, items, state.public_read))
}
