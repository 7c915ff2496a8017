//! Queries on the `signals` table.

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::{is_aggregate, BoxableExpression};
use diesel::pg::{Pg, PgValue};
use diesel::sql_types::{BigInt, Bool, Float, Jsonb, Nullable, SmallInt, Text, Timestamptz};
use diesel::{
    ExpressionMethods, OptionalExtension, PgArrayExpressionMethods, QueryDsl, Queryable,
    QueryableByName, Selectable, SelectableHelper,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::fixed_sql::{Bind, FixedSql};
use super::schema::signals;
use super::signal_json;
pub use super::signal_json::SignalJson;
use super::{DbError, SharedConn};
use crate::domain::signal::{check_slug, slug_from_title, Section, SignalDraft};

/// A signal as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = signals, check_for_backend(Pg))]
pub struct SignalRow {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub body: String,
    pub score: i16,
    pub category: String,
    pub published_at: DateTime<Utc>,
    pub sections: Sections,
    pub tags: Vec<String>,
    pub source_url: Option<String>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The `sections` column, decoded straight from jsonb into sections (no intermediate
/// `serde_json::Value`: this runs for every row of every page).
#[derive(Debug, Clone, Default, FromSqlRow)]
pub struct Sections(pub Vec<Section>);

impl FromSql<Jsonb, Pg> for Sections {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        // jsonb's binary format: a version byte (1), then the JSON text.
        match value.as_bytes().split_first() {
            Some((1, json)) => Ok(Sections(serde_json::from_slice(json)?)),
            _ => Err("unsupported jsonb format".into()),
        }
    }
}

/// How `/v1/signals/{id_or_slug}` names a signal.
#[derive(Debug, Clone)]
pub enum SignalRef {
    Id(Uuid),
    Slug(String),
}

impl SignalRef {
    /// Slugs can never be UUID-shaped, so the text decides which one it is; `None` when it is
    /// neither an id nor a well-formed slug (so nothing can exist under it).
    pub fn parse(s: &str) -> Option<SignalRef> {
        match Uuid::try_parse(s) {
            Ok(id) => Some(SignalRef::Id(id)),
            Err(_) => check_slug(s).ok().map(|()| SignalRef::Slug(s.to_owned())),
        }
    }
}

/// One signal as its JSON representation. Takes the connection by shared reference, so that
/// lookups can share one connection and have their statements pipelined on it
/// ([`super::SharedConn`]).
pub async fn find(
    conn: &AsyncPgConnection,
    r: &SignalRef,
) -> diesel::QueryResult<Option<SignalJson>> {
    // Two fixed query types rather than one boxed query: diesel finds their prepared statements
    // by type.
    let mut conn = conn;
    match r {
        SignalRef::Id(id) => find_by_id(*id).first(&mut conn).await.optional(),
        SignalRef::Slug(slug) => find_by_slug(slug).first(&mut conn).await.optional(),
    }
}

/// [`find`] on a worker's shared connection, within [`SharedConn::limit`] (else `Unavailable`).
/// When the connection turns out closed (a killed backend, a restarted database), it is let go
/// and the lookup is tried once more on a new one; the lookup only reads, so that is harmless.
/// Other errors, a statement timeout among them, are answered as they are, and the connection
/// is kept.
pub async fn lookup(shared: &SharedConn, r: &SignalRef) -> Result<Option<SignalJson>, DbError> {
    let used = std::cell::RefCell::new(None);
    let attempts = async {
        let mut retried = false;
        loop {
            let conn = shared.get().await?;
            *used.borrow_mut() = Some(conn.clone());
            match find(&conn, r).await {
                Ok(found) => return Ok(found),
                Err(e) if !retried && connection_lost(&e) => {
                    shared.discard(&conn);
                    // Back to the pool with it (it has room for one), once the other lookups
                    // on it are done too.
                    used.borrow_mut().take();
                    drop(conn);
                    tracing::warn!(error = %e, "the shared connection is lost; trying a new one");
                    retried = true;
                }
                Err(e) => {
                    if connection_lost(&e) {
                        shared.discard(&conn);
                    }
                    return Err(e.into());
                }
            }
        }
    };
    match tokio::time::timeout(shared.limit(), attempts).await {
        Ok(result) => result,
        Err(_) => {
            // Stuck behind a statement, or a connection that no longer answers: the next
            // lookups start on a new one.
            if let Some(conn) = used.borrow().as_ref() {
                shared.discard(conn);
            }
            Err(DbError::Unavailable(format!(
                "a lookup took longer than {} ms",
                shared.limit().as_millis()
            )))
        }
    }
}

/// Whether a statement failed because its connection closed, rather than because of itself.
/// diesel-async reports every error without an SQLSTATE as `UnableToSendCommand`; a backend
/// terminated under a statement answers it with an SQLSTATE, recognized by its (English) message.
fn connection_lost(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => true,
        Error::DatabaseError(_, info) => info.message().starts_with("terminating connection"),
        _ => false,
    }
}

/// The SQL text `find` sends (with `$n` placeholders), as [`list_sql`] does for lists.
pub fn find_sql(r: &SignalRef) -> String {
    match r {
        SignalRef::Id(id) => sql_text(&find_by_id(*id).limit(1)),
        SignalRef::Slug(slug) => sql_text(&find_by_slug(slug).limit(1)),
    }
}

type FindBy<Column, Value> = diesel::dsl::Filter<
    diesel::dsl::Select<signals::table, signal_json::Columns>,
    diesel::dsl::Eq<Column, Value>,
>;

fn find_by_id(id: Uuid) -> FindBy<signals::id, Uuid> {
    signals::table
        .select(signal_json::COLUMNS)
        .filter(signals::id.eq(id))
}

fn find_by_slug(slug: &str) -> FindBy<signals::slug, &str> {
    signals::table
        .select(signal_json::COLUMNS)
        .filter(signals::slug.eq(slug))
}

fn sql_text<T: diesel::query_builder::QueryFragment<Pg>>(query: &T) -> String {
    let text = diesel::debug_query::<Pg, _>(query).to_string();
    text.split(" -- binds: ")
        .next()
        .unwrap_or_default()
        .to_owned()
}

async fn find_slug_for_update(
    conn: &mut AsyncPgConnection,
    slug: &str,
) -> diesel::QueryResult<Option<SignalRow>> {
    signals::table
        .select(SignalRow::as_select())
        .filter(signals::slug.eq(slug))
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The row, locked until the end of the caller's transaction.
pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> diesel::QueryResult<Option<SignalRow>> {
    signals::table
        .select(SignalRow::as_select())
        .filter(signals::id.eq(id))
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Why an insert did not happen.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    #[error("the slug {0:?} is taken")]
    SlugTaken(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// Inserts a signal. An explicit slug that is taken is an error; a slug derived from the title
/// gets a suffix until it is unique.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    draft: &SignalDraft,
    created_by: Option<Uuid>,
) -> Result<SignalRow, InsertError> {
    insert_avoiding(conn, draft, created_by, &[]).await
}

/// `insert`, with derived slugs also kept clear of `reserved` (the explicit slugs of the rest of
/// a batch, so an item's derived slug never takes a later item's slug).
async fn insert_avoiding(
    conn: &mut AsyncPgConnection,
    draft: &SignalDraft,
    created_by: Option<Uuid>,
    reserved: &[&str],
) -> Result<SignalRow, InsertError> {
    let now = Utc::now();
    let base = draft
        .slug
        .clone()
        .unwrap_or_else(|| slug_from_title(&draft.title));
    for attempt in 0.. {
        let slug = match attempt {
            0 => base.clone(),
            _ if draft.slug.is_some() => return Err(InsertError::SlugTaken(base)),
            1..=3 => format!("{base}-{}", attempt + 1),
            _ => format!("{base}-{}", &Uuid::now_v7().simple().to_string()[20..]),
        };
        if draft.slug.is_none() && reserved.contains(&slug.as_str()) {
            continue;
        }
        let inserted = diesel::insert_into(signals::table)
            .values((
                signals::id.eq(Uuid::now_v7()),
                signals::slug.eq(&slug),
                fields(draft, now),
                signals::created_by.eq(created_by),
                signals::created_at.eq(now),
                signals::updated_at.eq(now),
            ))
            .on_conflict(signals::slug)
            .do_nothing()
            .returning(SignalRow::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        if let Some(row) = inserted {
            return Ok(row);
        }
    }
    unreachable!("the attempt loop only ends by returning")
}

/// Replaces the client fields of a signal; a missing slug or publication time keeps the current one.
pub async fn replace(
    conn: &mut AsyncPgConnection,
    current: &SignalRow,
    draft: &SignalDraft,
) -> diesel::QueryResult<SignalRow> {
    let slug = draft.slug.as_deref().unwrap_or(&current.slug);
    let published_at = draft.published_at.unwrap_or(current.published_at);
    diesel::update(signals::table.filter(signals::id.eq(current.id)))
        .set((
            signals::slug.eq(slug),
            fields(draft, published_at),
            // Strictly later than the current version: ETags are derived from it.
            signals::updated_at
                .eq(Utc::now().max(current.updated_at + chrono::Duration::microseconds(1))),
        ))
        .returning(SignalRow::as_returning())
        .get_result(conn)
        .await
}

type Fields<'a> = (
    diesel::dsl::Eq<signals::category_key, String>,
    diesel::dsl::Eq<signals::tag_keys, Vec<String>>,
    diesel::dsl::Eq<signals::title, &'a str>,
    diesel::dsl::Eq<signals::summary, &'a str>,
    diesel::dsl::Eq<signals::body, &'a str>,
    diesel::dsl::Eq<signals::score, i16>,
    diesel::dsl::Eq<signals::category, &'a str>,
    diesel::dsl::Eq<signals::published_at, DateTime<Utc>>,
    diesel::dsl::Eq<signals::sections, serde_json::Value>,
    diesel::dsl::Eq<signals::tags, &'a [String]>,
    diesel::dsl::Eq<signals::source_url, Option<&'a str>>,
);

/// The client-set columns of a draft; `default_published_at` when the draft has no time.
fn fields(draft: &SignalDraft, default_published_at: DateTime<Utc>) -> Fields<'_> {
    (
        signals::category_key.eq(case_key(&draft.category)),
        signals::tag_keys.eq(draft.tags.iter().map(|t| case_key(t)).collect::<Vec<_>>()),
        signals::title.eq(draft.title.as_str()),
        signals::summary.eq(draft.summary.as_str()),
        signals::body.eq(draft.body.as_str()),
        signals::score.eq(draft.score),
        signals::category.eq(draft.category.as_str()),
        signals::published_at.eq(draft.published_at.unwrap_or(default_published_at)),
        signals::sections.eq(serde_json::to_value(&draft.sections).unwrap_or_default()),
        signals::tags.eq(draft.tags.as_slice()),
        signals::source_url.eq(draft.source_url.as_deref()),
    )
}

pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> diesel::QueryResult<bool> {
    let n = diesel::delete(signals::table.filter(signals::id.eq(id)))
        .execute(conn)
        .await?;
    Ok(n > 0)
}

/// The key case-insensitive filters compare: the same lower-casing for stored values and for
/// filter values, done here rather than by the database so it does not depend on its locale.
pub fn case_key(s: &str) -> String {
    s.to_lowercase()
}

/// The filters of a list request. Category and tag values are already [`case_key`]s.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    pub min_score: Option<i16>,
    pub max_score: Option<i16>,
    pub categories: Vec<String>,
    pub tags_all: Vec<String>,
    pub tags_any: Vec<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Web-search syntax: words, "phrases", -exclusions, or.
    pub q: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    PublishedDesc,
    PublishedAsc,
    ScoreDesc,
    ScoreAsc,
    /// Best text match first (needs `q`); ties newest first.
    Relevance,
}

impl Sort {
    fn descending(self) -> bool {
        !matches!(self, Sort::PublishedAsc | Sort::ScoreAsc)
    }
}

/// Where the previous page ended: the sort key of its last row.
#[derive(Debug, Clone, PartialEq)]
pub enum After {
    Published(DateTime<Utc>, Uuid),
    Score(i16, DateTime<Utc>, Uuid),
    Relevance(f32, DateTime<Utc>, Uuid),
}

impl After {
    pub fn of(sort: Sort, row: &SignalJson) -> After {
        match sort {
            Sort::PublishedDesc | Sort::PublishedAsc => After::Published(row.published_at, row.id),
            Sort::ScoreDesc | Sort::ScoreAsc => After::Score(row.score, row.published_at, row.id),
            Sort::Relevance => After::Relevance(row.rank, row.published_at, row.id),
        }
    }
}

const TSQUERY: &str = "websearch_to_tsquery('english'::regconfig, ";
const RANK: &str = "ts_rank_cd(search, websearch_to_tsquery('english'::regconfig, ";

type RankExpr =
    Box<dyn BoxableExpression<signals::table, Pg, (), is_aggregate::Never, SqlType = Float>>;

/// The text-search rank of a row for `q`; 0 without a query.
fn rank(q: Option<&str>) -> RankExpr {
    match q {
        Some(q) => Box::new(FixedSql::new(RANK).bind(Bind::Text(q.to_owned())).sql("))")),
        None => Box::new(FixedSql::<Float>::new("0::real")),
    }
}

/// Adds every filter of `f` to a query, whatever it selects.
fn filtered<'a, ST: 'a>(
    mut query: signals::BoxedQuery<'a, Pg, ST>,
    f: &'a ListFilter,
) -> signals::BoxedQuery<'a, Pg, ST> {
    if let Some(min) = f.min_score {
        query = query.filter(signals::score.ge(min));
    }
    if let Some(max) = f.max_score {
        query = query.filter(signals::score.le(max));
    }
    // The keys were lower-cased by `case_key` when written and the filter values when parsed.
    if !f.categories.is_empty() {
        query = query.filter(signals::category_key.eq_any(&f.categories));
    }
    if !f.tags_all.is_empty() {
        query = query.filter(signals::tag_keys.contains(&f.tags_all));
    }
    if !f.tags_any.is_empty() {
        query = query.filter(signals::tag_keys.overlaps_with(&f.tags_any));
    }
    if let Some(since) = f.since {
        query = query.filter(signals::published_at.ge(since));
    }
    if let Some(until) = f.until {
        query = query.filter(signals::published_at.lt(until));
    }
    if let Some(q) = &f.q {
        query = query.filter(
            FixedSql::<Bool>::new("search @@ ")
                .sql(TSQUERY)
                .bind(Bind::Text(q.clone()))
                .sql(")"),
        );
    }
    query
}

/// One page in keyset order, each signal as its JSON representation with its text-search rank
/// (0 unless sorting by relevance): `limit + 1` rows are read so the caller knows whether more
/// follow.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &ListFilter,
    sort: Sort,
    after: Option<&After>,
    limit: i64,
) -> diesel::QueryResult<Vec<SignalJson>> {
    list_query(filter, sort, after, limit).load(conn).await
}

/// The SQL text `list` sends for these arguments, with `$n` placeholders (for benchmarks and
/// `EXPLAIN`: the statement as PostgreSQL sees it).
pub fn list_sql(filter: &ListFilter, sort: Sort, after: Option<&After>, limit: i64) -> String {
    sql_text(&list_query(filter, sort, after, limit))
}

type ListQuery<'a> = signals::BoxedQuery<
    'a,
    Pg,
    diesel::dsl::SqlTypeOf<(
        signals::id,
        signals::slug,
        signals::title,
        signals::summary,
        signals::body,
        signals::score,
        signals::category,
        signals::published_at,
        signals::sections,
        signals::tags,
        signals::source_url,
        signals::created_at,
        signals::updated_at,
        RankExpr,
    )>,
>;

fn list_query<'a>(
    filter: &'a ListFilter,
    sort: Sort,
    after: Option<&After>,
    limit: i64,
) -> ListQuery<'a> {
    let q = filter.q.as_deref();
    let mut query = filtered(
        signals::table
            .select({
                let (
                    id,
                    slug,
                    title,
                    summary,
                    body,
                    score,
                    category,
                    published_at,
                    sections,
                    tags,
                    source_url,
                    created_at,
                    updated_at,
                ) = signal_json::COLUMNS;
                (
                    id,
                    slug,
                    title,
                    summary,
                    body,
                    score,
                    category,
                    published_at,
                    sections,
                    tags,
                    source_url,
                    created_at,
                    updated_at,
                    rank(q),
                )
            })
            .into_boxed::<Pg>(),
        filter,
    );
    let cmp = if sort.descending() { "<" } else { ">" };
    if let Some(after) = after {
        // Row comparisons, so a composite index serves the keyset condition directly.
        query = match after {
            After::Published(t, id) => query.filter(
                FixedSql::<Bool>::new("(published_at, id) ")
                    .sql(cmp)
                    .sql(" (")
                    .bind(Bind::Time(*t))
                    .sql(", ")
                    .bind(Bind::Uuid(*id))
                    .sql(")"),
            ),
            After::Score(s, t, id) => query.filter(
                FixedSql::<Bool>::new("(score, published_at, id) ")
                    .sql(cmp)
                    .sql(" (")
                    .bind(Bind::SmallInt(*s))
                    .sql(", ")
                    .bind(Bind::Time(*t))
                    .sql(", ")
                    .bind(Bind::Uuid(*id))
                    .sql(")"),
            ),
            After::Relevance(r, t, id) => query.filter(
                FixedSql::<Bool>::new("(")
                    .sql(RANK)
                    .bind(Bind::Text(q.unwrap_or_default().to_owned()))
                    .sql(")), published_at, id) < (")
                    .bind(Bind::Float(*r))
                    .sql(", ")
                    .bind(Bind::Time(*t))
                    .sql(", ")
                    .bind(Bind::Uuid(*id))
                    .sql(")"),
            ),
        };
    }
    query = match sort {
        Sort::PublishedDesc => query.order((signals::published_at.desc(), signals::id.desc())),
        Sort::PublishedAsc => query.order((signals::published_at.asc(), signals::id.asc())),
        Sort::ScoreDesc => query.order((
            signals::score.desc(),
            signals::published_at.desc(),
            signals::id.desc(),
        )),
        Sort::ScoreAsc => query.order((
            signals::score.asc(),
            signals::published_at.asc(),
            signals::id.asc(),
        )),
        Sort::Relevance => query.order((
            rank(q).desc(),
            signals::published_at.desc(),
            signals::id.desc(),
        )),
    };
    query.limit(limit + 1)
}

/// How many signals match the filters (for `include_total`).
pub async fn count(conn: &mut AsyncPgConnection, filter: &ListFilter) -> diesel::QueryResult<i64> {
    filtered(
        signals::table
            .select(diesel::dsl::count_star())
            .into_boxed::<Pg>(),
        filter,
    )
    .get_result(conn)
    .await
}

/// One name of a facet and how many signals have it.
#[derive(Debug, Clone, QueryableByName)]
pub struct FacetCount {
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = BigInt)]
    pub count: i64,
}

/// The filters the facet endpoints accept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FacetFilter {
    pub min_score: Option<i16>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Tags only; a [`case_key`].
    pub prefix: Option<String>,
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

/// What a batch does with an item whose explicit slug another signal already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnConflict {
    /// Reject the whole batch.
    Error,
    /// Leave the existing signal as it is.
    Skip,
    /// Replace the existing signal's fields.
    Update,
}

/// What happened to one item of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    Created(Uuid),
    Updated(Uuid),
    Skipped(Uuid),
}

/// Why a batch was rejected as a whole.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Items (by index) whose slug is taken, with `on_conflict = error`.
    #[error("slugs taken")]
    Conflict(Vec<usize>),
    /// Items (by index) that would update a signal this key may not change.
    #[error("not allowed")]
    Forbidden(Vec<usize>),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// Writes a batch, item by item in input order, inside the caller's transaction: any error
/// leaves nothing written. `may_change` says whether the caller may update a signal created by
/// the given key.
pub async fn write_batch(
    conn: &mut AsyncPgConnection,
    drafts: &[SignalDraft],
    on_conflict: OnConflict,
    created_by: Option<Uuid>,
    may_change: impl Fn(Option<Uuid>) -> bool,
) -> Result<Vec<BatchOutcome>, BatchError> {
    let slugs: Vec<&str> = drafts.iter().filter_map(|d| d.slug.as_deref()).collect();
    // Locked, so a concurrent batch cannot change them between this check and the writes.
    let existing: Vec<SignalRow> = signals::table
        .select(SignalRow::as_select())
        .filter(signals::slug.eq_any(&slugs))
        .for_update()
        .load(conn)
        .await?;
    let existing_for = |d: &SignalDraft| {
        d.slug
            .as_deref()
            .and_then(|slug| existing.iter().find(|row| row.slug == slug))
    };
    let taken: Vec<usize> = (0..drafts.len())
        .filter(|&i| existing_for(&drafts[i]).is_some())
        .collect();
    match on_conflict {
        OnConflict::Error if !taken.is_empty() => return Err(BatchError::Conflict(taken)),
        OnConflict::Update => {
            let forbidden: Vec<usize> = taken
                .iter()
                .copied()
                .filter(|&i| {
                    existing_for(&drafts[i]).is_some_and(|row| !may_change(row.created_by))
                })
                .collect();
            if !forbidden.is_empty() {
                return Err(BatchError::Forbidden(forbidden));
            }
        }
        _ => {}
    }
    let mut outcomes = Vec::with_capacity(drafts.len());
    for (index, draft) in drafts.iter().enumerate() {
        let outcome = match (existing_for(draft), on_conflict) {
            (Some(row), OnConflict::Skip) => BatchOutcome::Skipped(row.id),
            (Some(row), _) => BatchOutcome::Updated(replace(conn, row, draft).await?.id),
            (None, _) => match insert_avoiding(conn, draft, created_by, &slugs).await {
                Ok(row) => BatchOutcome::Created(row.id),
                // Taken by a signal another transaction committed after the check above.
                Err(InsertError::SlugTaken(slug)) => {
                    let row = match on_conflict {
                        OnConflict::Error => None,
                        _ => find_slug_for_update(conn, &slug).await?,
                    };
                    match (row, on_conflict) {
                        (Some(row), OnConflict::Skip) => BatchOutcome::Skipped(row.id),
                        (Some(row), OnConflict::Update) if may_change(row.created_by) => {
                            BatchOutcome::Updated(replace(conn, &row, draft).await?.id)
                        }
                        (Some(_), OnConflict::Update) => {
                            return Err(BatchError::Forbidden(vec![index]))
                        }
                        _ => return Err(BatchError::Conflict(vec![index])),
                    }
                }
                Err(InsertError::Query(e)) => return Err(e.into()),
            },
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}
