//! `/v1/categories` and `/v1/tags`: the names in use, with how many signals have each.

use actix_web::{get, web, HttpRequest, HttpResponse};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Reader;
use super::cache::{Cached, Lookup};
use super::conditions::{IfNoneMatch, ReadAfter};
use super::problem::{responses, ApiError};
use super::{etag_of, AppState};
use crate::db::{self, facets::FacetCount};
use crate::domain::query::{
    parameters, CategoryQuery, TagQuery, CATEGORY_PARAMS, FACET_LIMIT_DEFAULT, TAG_PARAMS,
};
use actix_web::web::Bytes;
use utoipa::openapi::path::{Parameter, ParameterIn};

/// A name and the number of signals that have it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Facet {
    /// As first spelled in sort order; spellings that differ only in case count as one.
    #[schema(example = "Industry")]
    pub name: String,
    #[schema(minimum = 1, example = 42)]
    pub count: i64,
}

/// Names with counts, most frequent first (ties by name).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
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

/// The answer of a facet request: from the cache, or counted (by `count`) and kept.
async fn page<F>(
    req: &HttpRequest,
    state: &AppState,
    held: &IfNoneMatch,
    read_after: &ReadAfter,
    kind: &str,
    count: F,
) -> Result<HttpResponse, ApiError>
where
    F: AsyncFn(&mut db::PgConn) -> Result<Vec<FacetCount>, ApiError>,
{
    let answer = counted(state, read_after.needed(), kind, req.query_string(), count).await?;
    Ok(answer.respond(held, state.public_read))
}

/// A facet's JSON (a `FacetPage`) for this query string: from the cache, or counted and kept.
async fn counted<F>(
    state: &AppState,
    needed: u64,
    kind: &str,
    query_string: &str,
    count: F,
) -> Result<Arc<Cached>, ApiError>
where
    F: AsyncFn(&mut db::PgConn) -> Result<Vec<FacetCount>, ApiError>,
{
    let key = format!("{kind}:{query_string}");
    let fill = match state.cache.lookup(key, needed).await {
        Lookup::Hit(hit) => return Ok(hit),
        Lookup::Miss(fill) => fill,
    };
    let (items, replayed) = state
        .read(fill.needs(needed), async |route| {
            let mut conn = db::conn(route.list_pool).await?;
            count(&mut conn).await
        })
        .await?;
    let page = FacetPage {
        items: items
            .into_iter()
            .map(|f| Facet {
                name: f.name,
                count: f.count,
            })
            .collect(),
    };
    let body = Bytes::from(serde_json::to_vec(&page).unwrap_or_default());
    let answer = Cached::json(body.clone(), etag_of(&body), None);
    fill.keep(answer.clone(), replayed);
    Ok(Arc::new(answer))
}

/// Every category and the 50 most used tags, with no filter: what `/v1/categories` and
/// `/v1/tags` answer without parameters, from the same cache entries.
pub async fn unfiltered(state: &AppState, needed: u64) -> Result<(FacetPage, FacetPage), ApiError> {
    let categories = counted(state, needed, "c", "", async |conn: &mut db::PgConn| {
        Ok(db::facets::categories(conn, &Default::default()).await?)
    });
    let tags = counted(state, needed, "t", "", async |conn: &mut db::PgConn| {
        Ok(db::facets::tags(conn, &Default::default(), FACET_LIMIT_DEFAULT).await?)
    });
    let (categories, tags) = tokio::try_join!(categories, tags)?;
    let parse =
        |c: &Cached| serde_json::from_slice(&c.body).map_err(|e| ApiError::Internal(e.to_string()));
    Ok((parse(&categories)?, parse(&tags)?))
}

/// List categories
///
/// Every category in use with its number of signals, most frequent first. Categories are matched
/// case-insensitively, so spellings that differ only in case are counted together.
#[utoipa::path(
    operation_id = "list_categories",
    tag = "signals",
    params(CategoryQuery, IfNoneMatch, ReadAfter),
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
    read_after: ReadAfter,
) -> Result<HttpResponse, ApiError> {
    let CategoryQuery(query) =
        CategoryQuery::parse(req.query_string()).map_err(ApiError::parameter)?;
    page(
        &req,
        &state,
        &held,
        &read_after,
        "c",
        async |conn: &mut db::PgConn| Ok(db::facets::categories(conn, &query.filter).await?),
    )
    .await
}

/// List tags
///
/// Tags in use with their number of signals, most frequent first, at most `limit` (default 50).
/// With `prefix`, only tags starting with it (case-insensitive): for autocompletion.
#[utoipa::path(
    operation_id = "list_tags",
    tag = "signals",
    params(TagQuery, IfNoneMatch, ReadAfter),
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
    read_after: ReadAfter,
) -> Result<HttpResponse, ApiError> {
    let TagQuery(query) = TagQuery::parse(req.query_string()).map_err(ApiError::parameter)?;
    page(
        &req,
        &state,
        &held,
        &read_after,
        "t",
        async |conn: &mut db::PgConn| Ok(db::facets::tags(conn, &query.filter, query.limit).await?),
    )
    .await
}
