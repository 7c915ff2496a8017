//! Facets: the categories and tags in use, with how many signals have each.

use diesel::sql_types::{BigInt, Nullable, SmallInt, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::query::FacetFilter;

/// One name of a facet and how many signals have it.
#[derive(Debug, Clone, QueryableByName)]
pub struct FacetCount {
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = BigInt)]
    pub count: i64,
}

const FACET_WHERE: &str = "($1::smallint IS NULL OR score >= $1) \
    AND ($2::timestamptz IS NULL OR published_at >= $2) \
    AND ($3::timestamptz IS NULL OR published_at < $3)";

/// Categories with counts, most frequent first. Spellings that differ only in case are one
/// category, named by its first spelling in sort order.
pub async fn categories(
    conn: &mut AsyncPgConnection,
    f: &FacetFilter,
) -> diesel::QueryResult<Vec<FacetCount>> {
    diesel::sql_query(format!(
        "SELECT min(category) AS name, count(*) AS count FROM signals WHERE {FACET_WHERE} \
         GROUP BY category_key ORDER BY count(*) DESC, category_key"
    ))
    .bind::<Nullable<SmallInt>, _>(f.min_score)
    .bind::<Nullable<Timestamptz>, _>(f.since)
    .bind::<Nullable<Timestamptz>, _>(f.until)
    .load(conn)
    .await
}

/// Tags with counts, most frequent first, optionally only those starting with a prefix.
pub async fn tags(
    conn: &mut AsyncPgConnection,
    f: &FacetFilter,
    limit: i64,
) -> diesel::QueryResult<Vec<FacetCount>> {
    let pattern = f.prefix.as_ref().map(|p| {
        let escaped = p
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("{escaped}%")
    });
    diesel::sql_query(format!(
        "SELECT min(t.tag) AS name, count(*) AS count \
         FROM signals CROSS JOIN LATERAL unnest(tags, tag_keys) AS t(tag, key) WHERE {FACET_WHERE} \
         AND ($4::text IS NULL OR t.key LIKE $4) \
         GROUP BY t.key ORDER BY count(*) DESC, t.key LIMIT $5"
    ))
    .bind::<Nullable<SmallInt>, _>(f.min_score)
    .bind::<Nullable<Timestamptz>, _>(f.since)
    .bind::<Nullable<Timestamptz>, _>(f.until)
    .bind::<Nullable<Text>, _>(pattern)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}
