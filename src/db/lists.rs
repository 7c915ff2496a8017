//! Lists of signals: filtered, in keyset order, each signal read straight into its JSON.

use diesel::expression::{is_aggregate, BoxableExpression};
use diesel::pg::Pg;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, Bool, Float, Nullable, SmallInt, Text};
use diesel::{
    ExpressionMethods, PgArrayExpressionMethods, QueryDsl, QueryableByName, SelectableHelper,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::fixed_sql::{Bind, FixedQuery, FixedSql};
use super::rows::SignalRow;
use super::schema::signals;
use super::signal_json::{self, SearchRow, SearchRowTypes, SignalJson};
use super::sql_text;
use crate::domain::query::{After, ListFilter, Sort, Window, SEARCH_CANDIDATES};

// The full-text document is a table of its own (`signal_search`): rows of `signals` stay narrow.
const TSQUERY: &str = "websearch_to_tsquery('english'::regconfig, ";
const MATCHES: &str = "signals.id IN (SELECT id FROM signal_search WHERE search @@ ";
/// The search documents carry their signal's time, so a window of candidates is found in
/// `signal_search` alone (`migrations/..._search_newest_first`).
const MATCHES_SINCE: &str =
    "signals.id IN (SELECT id FROM signal_search WHERE (published_at, id) >= (";
const RANK: &str =
    "ts_rank_cd((SELECT search FROM signal_search WHERE signal_search.id = signals.id), \
                    websearch_to_tsquery('english'::regconfig, ";

type RankExpr =
    Box<dyn BoxableExpression<signals::table, Pg, (), is_aggregate::Never, SqlType = Float>>;

/// The text-search rank of a row for `q`; 0 without a query.
fn rank(q: Option<&str>) -> RankExpr {
    match q {
        Some(q) => Box::new(FixedSql::new(RANK).bind(Bind::Text(q.to_owned())).sql("))")),
        None => Box::new(FixedSql::<Float>::new("0::real")),
    }
}

/// Which of a text search's matches a query reads.
#[derive(Clone, Copy)]
enum Matches<'a> {
    /// Every match (from the window of candidates on, with one).
    All(Option<Window>),
    /// Only the page's: when the text search is the only filter that needs `signals`, the
    /// candidates are ranked in `signal_search` alone and the page is read from `signals`
    /// (ranking them after looking each up in `signals` cost 1,000 lookups a page).
    Page {
        window: Option<Window>,
        after: Option<&'a After>,
        limit: i64,
    },
}

/// How a list's statement is made: for the one plan PostgreSQL keeps for it (on a connection
/// with generic plans, when [`Shares::one_plan_fits`] says that plan is apt), or to be planned
/// for each request's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    Kept,
    PerValues,
}

/// Adds every filter of `f` to a query, whatever it selects; a text search matches as
/// `matches` says. For a kept plan one tag is matched as `$1 = ANY(tag_keys)`, which the GIN
/// index cannot serve: the kept plan then walks the time or score index and skips the signals
/// without the tag, the plan PostgreSQL makes for a common tag's own values (a generic plan
/// would take every tag for a rare one and read all of a common tag's signals through the GIN
/// index to sort them).
fn filtered<'a, ST: 'a>(
    mut query: signals::BoxedQuery<'a, Pg, ST>,
    f: &'a ListFilter,
    matches: Matches<'_>,
    plan: Plan,
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
    match (plan, f.tags_all.as_slice()) {
        (_, []) => {}
        (Plan::Kept, [tag]) => {
            query = query.filter(
                FixedSql::<Bool>::new("")
                    .bind(Bind::Text(tag.clone()))
                    .sql(" = ANY(\"signals\".\"tag_keys\")"),
            )
        }
        _ => query = query.filter(signals::tag_keys.contains(&f.tags_all)),
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
    match (&f.q, matches) {
        (
            Some(q),
            Matches::Page {
                window,
                after,
                limit,
            },
        ) => query = query.filter(page_of_matches(q, f, window, after, limit)),
        (Some(q), Matches::All(window)) => {
            let matches = match window {
                // The window is a condition on the documents' own times: PostgreSQL combines it
                // with the GIN index (a BitmapAnd) instead of looking up every match's time.
                Some((t, id)) => FixedSql::<Bool>::new(MATCHES_SINCE)
                    .bind(Bind::Time(t))
                    .sql(", ")
                    .bind(Bind::Uuid(id))
                    .sql(") AND search @@ "),
                None => FixedSql::<Bool>::new(MATCHES),
            };
            query = query.filter(matches.sql(TSQUERY).bind(Bind::Text(q.clone())).sql("))"));
        }
        (
            None,
            Matches::All(Some((t, id)))
            | Matches::Page {
                window: Some((t, id)),
                ..
            },
        ) => {
            query = query.filter(
                FixedSql::<Bool>::new("(published_at, id) >= (")
                    .bind(Bind::Time(t))
                    .sql(", ")
                    .bind(Bind::Uuid(id))
                    .sql(")"),
            );
        }
        (None, _) => {}
    }
    query
}

/// `signals.id IN` the ids of one page of a search ranked in `signal_search` alone (a search
/// whose other filters are times: [`text_alone`]), in the page's order.
fn page_of_matches(
    q: &str,
    f: &ListFilter,
    window: Option<Window>,
    after: Option<&After>,
    limit: i64,
) -> FixedSql<Bool> {
    let mut sql =
        FixedSql::<Bool>::new("signals.id IN (SELECT id FROM signal_search WHERE search @@ ")
            .sql(TSQUERY)
            .bind(Bind::Text(q.to_owned()))
            .sql(")");
    if let Some((t, id)) = window {
        sql = sql
            .sql(" AND (published_at, id) >= (")
            .bind(Bind::Time(t))
            .sql(", ")
            .bind(Bind::Uuid(id))
            .sql(")");
    }
    if let Some(since) = f.since {
        sql = sql.sql(" AND published_at >= ").bind(Bind::Time(since));
    }
    if let Some(until) = f.until {
        sql = sql.sql(" AND published_at < ").bind(Bind::Time(until));
    }
    if let Some(After::Relevance(r, t, id, _)) = after {
        sql = sql
            .sql(" AND (ts_rank_cd(search, ")
            .sql(TSQUERY)
            .bind(Bind::Text(q.to_owned()))
            .sql(")), published_at, id) < (")
            .bind(Bind::Float(*r))
            .sql(", ")
            .bind(Bind::Time(*t))
            .sql(", ")
            .bind(Bind::Uuid(*id))
            .sql(")");
    }
    sql.sql(" ORDER BY ts_rank_cd(search, ")
        .sql(TSQUERY)
        .bind(Bind::Text(q.to_owned()))
        .sql(")) DESC, published_at DESC, id DESC LIMIT ")
        .bind(Bind::BigInt(limit + 1))
        .sql(")")
}

/// Whether the text search is the only filter that needs `signals` (the times are in the
/// search documents too).
fn text_alone(f: &ListFilter) -> bool {
    // Every field named, so a filter added later has to be placed on one side or the other.
    let ListFilter {
        min_score,
        max_score,
        categories,
        tags_all,
        tags_any,
        since: _,
        until: _,
        q: _,
    } = f;
    min_score.is_none()
        && max_score.is_none()
        && categories.is_empty()
        && tags_all.is_empty()
        && tags_any.is_empty()
}

/// A page of signals in keyset order, and where the next one starts.
pub struct Page {
    /// Each signal as its JSON representation, with its text-search rank (0 unless sorting by
    /// relevance).
    pub rows: Vec<SignalJson>,
    /// After the last row, when more follow.
    pub next: Option<After>,
}

/// One page in keyset order (`limit + 1` rows are read to know whether more follow). Sorted by
/// relevance, a text search ranks at most [`SEARCH_CANDIDATES`] matches: the newest ones, as
/// the first page finds them (its window goes on in the cursor); the older ones follow by time.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &ListFilter,
    sort: Sort,
    after: Option<&After>,
    limit: i64,
    horizon: &Horizon,
    plan: Plan,
) -> diesel::QueryResult<Page> {
    if let Some(from) = past_window(sort, after) {
        let (rows, next) = older_matches(conn, filter, from, limit, plan).await?;
        return Ok(Page { rows, next });
    }
    let (window, rows) = match searched_in_one_statement(filter, sort, after) {
        Some(q) => first_search_page(conn, q, filter, limit, horizon).await?,
        None => {
            let window = match (after, sort, &filter.q) {
                (Some(After::Relevance(_, _, _, window)), _, _) => *window,
                (None, Sort::Relevance, Some(_)) => candidate_window(conn, filter).await?,
                _ => None,
            };
            let rows: Vec<SignalJson> = list_query(filter, sort, after, window, limit, plan)
                .load(conn)
                .await?;
            (window, rows)
        }
    };
    let (mut rows, more) = page_of(rows, limit);
    let next = more
        .then(|| rows.last())
        .flatten()
        .map(|r| After::of(sort, r.id, r.score, r.published_at, r.rank, window));
    // The ranked window used up, the page goes on with the older matches.
    if let (Sort::Relevance, Some(oldest), None) = (sort, window, &next) {
        let room = limit - rows.len() as i64;
        let (older, next) = older_matches(conn, filter, oldest, room, plan).await?;
        rows.extend(older);
        return Ok(Page { rows, next });
    }
    Ok(Page { rows, next })
}

/// The page of rows read with one more than `limit` (to know whether more follow), and whether
/// more do.
fn page_of(mut rows: Vec<SignalJson>, limit: i64) -> (Vec<SignalJson>, bool) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    (rows, more)
}

/// Where a page of a search sorted by relevance reads on among the matches older than its
/// ranked window: its cursor is a position in time ([`older_matches`]). The ranked matches are
/// those at or after the window's oldest, `(published_at, id) >= window`; the older ones those
/// before it, `(published_at, id) < window` (`After::Published`): no match is in both or
/// neither.
fn past_window(sort: Sort, after: Option<&After>) -> Option<Window> {
    match (sort, after) {
        (Sort::Relevance, Some(&After::Published(t, id))) => Some((t, id)),
        _ => None,
    }
}

/// Up to `room` matches of a search sorted by relevance that are older than its window of
/// ranked matches, newest first, from below `from` (the window's oldest, or the last of them a
/// page listed), and where they go on. So paging a search lists every match once: the newest
/// [`SEARCH_CANDIDATES`] by relevance, then the rest by time.
async fn older_matches(
    conn: &mut AsyncPgConnection,
    filter: &ListFilter,
    from: Window,
    room: i64,
    plan: Plan,
) -> diesel::QueryResult<(Vec<SignalJson>, Option<After>)> {
    let after = After::Published(from.0, from.1);
    let rows = list_query(filter, Sort::PublishedDesc, Some(&after), None, room, plan)
        .load(conn)
        .await?;
    let (rows, more) = page_of(rows, room);
    let next = more.then(|| {
        rows.last()
            .map_or(after, |r| After::Published(r.published_at, r.id))
    });
    Ok((rows, next))
}

/// The text query of a page that [`first_search_page`] finds: the first page of a text search
/// sorted by relevance whose other filters are times ([`text_alone`]).
fn searched_in_one_statement<'a>(
    filter: &'a ListFilter,
    sort: Sort,
    after: Option<&After>,
) -> Option<&'a str> {
    match (after, sort, &filter.q) {
        (None, Sort::Relevance, Some(q)) if text_alone(filter) => Some(q),
        _ => None,
    }
}

/// The first page of a text search sorted by relevance whose other filters are times, and its
/// window: one statement finds the newest matches and ranks them (the GIN index read once, not
/// once for the window and again for the page).
async fn first_search_page(
    conn: &mut AsyncPgConnection,
    q: &str,
    filter: &ListFilter,
    limit: i64,
    horizon: &Horizon,
) -> diesel::QueryResult<(Option<Window>, Vec<SignalJson>)> {
    // The newest matches among the newest documents are the newest of all, when there are
    // enough of them there; else the search looks again among every document.
    if let Some(from) = horizon.bound(conn, filter).await? {
        let page = window_and_page(
            first_page_query(q, filter, Some(from), limit)
                .load(conn)
                .await?,
        );
        let outcome = match page.0 {
            Some(_) => &horizon.found,
            None => &horizon.wasted,
        };
        outcome.fetch_add(1, Ordering::Relaxed);
        if page.0.is_some() {
            return Ok(page);
        }
    }
    Ok(window_and_page(
        first_page_query(q, filter, None, limit).load(conn).await?,
    ))
}

/// The signals of a search's first page, and its window: the oldest of the newest
/// [`SEARCH_CANDIDATES`] matches, when the search has that many.
fn window_and_page(rows: Vec<SearchRow>) -> (Option<Window>, Vec<SignalJson>) {
    let window = rows
        .as_slice()
        .first()
        .filter(|r| r.candidates >= SEARCH_CANDIDATES)
        .and_then(|r| r.oldest);
    (window, rows.into_iter().map(|r| r.signal).collect())
}

/// The statement of [`first_search_page`]: the newest [`SEARCH_CANDIDATES`] search documents
/// that match `q` in the filter's times (and from `from` on, with one), the page ranked among
/// them and read from `signals`, and on each row how many they were and the oldest of them.
fn first_page_query(
    q: &str,
    f: &ListFilter,
    from: Option<DateTime<Utc>>,
    limit: i64,
) -> FixedQuery<SearchRowTypes> {
    let mut sql = FixedSql::new(
        "WITH m AS MATERIALIZED (SELECT id, published_at, search FROM signal_search \
         WHERE search @@ ",
    )
    .sql(TSQUERY)
    .bind(Bind::Text(q.to_owned()))
    .sql(")");
    for since in [from, f.since].into_iter().flatten() {
        sql = sql.sql(" AND published_at >= ").bind(Bind::Time(since));
    }
    if let Some(until) = f.until {
        sql = sql.sql(" AND published_at < ").bind(Bind::Time(until));
    }
    sql.sql(" ORDER BY published_at DESC, id DESC LIMIT ")
        .bind(Bind::BigInt(SEARCH_CANDIDATES))
        .sql("), p AS (SELECT id, published_at, ts_rank_cd(search, ")
        .sql(TSQUERY)
        .bind(Bind::Text(q.to_owned()))
        .sql(")) AS rank FROM m ORDER BY rank DESC, published_at DESC, id DESC LIMIT ")
        .bind(Bind::BigInt(limit + 1))
        .sql(") SELECT ")
        .sql(signal_columns())
        .sql(
            ", p.rank, (SELECT count(*) FROM m), o.published_at, o.id \
             FROM p JOIN signals ON signals.id = p.id \
             LEFT JOIN (SELECT published_at, id FROM m ORDER BY published_at, id LIMIT 1) o ON true \
             ORDER BY p.rank DESC, p.published_at DESC, p.id DESC",
        )
        .query()
}

/// The columns of a signal's representation, as SQL (`"signals"."id", ...`).
fn signal_columns() -> &'static str {
    static TEXT: LazyLock<&'static str> = LazyLock::new(|| sql_text(&signal_json::COLUMNS).leak());
    &TEXT
}

/// The oldest of the newest [`SEARCH_CANDIDATES`] matches of a search with other filters than
/// times, when there are that many.
async fn candidate_window(
    conn: &mut AsyncPgConnection,
    filter: &ListFilter,
) -> diesel::QueryResult<Option<Window>> {
    Ok(filtered(
        signals::table
            .select((signals::published_at, signals::id))
            .into_boxed::<Pg>(),
        filter,
        Matches::All(None),
        Plan::PerValues,
    )
    .order((signals::published_at.desc(), signals::id.desc()))
    .offset(SEARCH_CANDIDATES - 1)
    .limit(1)
    .load(conn)
    .await?
    .into_iter()
    .next())
}

/// Where a text search looks first for its newest matches: among the newest `size` search
/// documents (`SIGNALS_SEARCH_HORIZON`). The time of the oldest of them is a bound that lets
/// PostgreSQL read the GIN index of the newest documents alone ([`super::search_index`], which
/// the service keeps covering this horizon), not the words' whole posting lists in the index of
/// every document: for a million signals that reading is most of a search's time. The answer
/// is the same either way: if at least [`SEARCH_CANDIDATES`] matches are that new, they are the
/// newest; if not, the search looks again among every document. The bound is kept for
/// [`KEPT_FOR`]: an older one only makes the first look cover more documents.
pub struct Horizon {
    size: i64,
    seen: Kept<Option<DateTime<Utc>>>,
    /// First looks that found the window (`GET /metrics`).
    pub found: AtomicU64,
    /// First looks that found too few matches, so the search looked again among every document.
    pub wasted: AtomicU64,
}

/// A value read from the database that every request of an instance uses for
/// [`KEPT_FOR`] before it is read again. Only for values that steer how a query is made,
/// never what it answers: one that is out of date makes a choice less apt, no answer wrong.
struct Kept<T> {
    value: Mutex<Option<(Instant, T)>>,
}

/// How long a [`Kept`] value is used (the horizon's time: an index-only scan of its size, a
/// few milliseconds; the shares of the scores and tags: two rows of `pg_stats`).
const KEPT_FOR: Duration = Duration::from_secs(60);

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept {
            value: Mutex::new(None),
        }
    }
}

impl<T: Clone> Kept<T> {
    /// The value, or `None` when the caller should read it anew: when there is none yet, and
    /// to one caller once it is older than [`KEPT_FOR`] (the others go on with it meanwhile,
    /// rather than all reading it again at once).
    fn fresh(&self) -> Option<T> {
        match &mut *self.value.lock().expect("never poisoned") {
            Some((at, value)) if at.elapsed() < KEPT_FOR => Some(value.clone()),
            Some((at, _)) => {
                *at = Instant::now();
                None
            }
            None => None,
        }
    }

    fn keep(&self, value: T) {
        *self.value.lock().expect("never poisoned") = Some((Instant::now(), value));
    }
}

impl Horizon {
    /// A horizon of the newest `size` documents; one smaller than [`SEARCH_CANDIDATES`] (0)
    /// never looks there first.
    pub fn new(size: u32) -> Self {
        Horizon {
            size: i64::from(size),
            seen: Kept::default(),
            found: AtomicU64::new(0),
            wasted: AtomicU64::new(0),
        }
    }

    /// How many of the newest documents the first look covers.
    pub fn size(&self) -> i64 {
        self.size
    }

    /// Whether searches look first among the newest `size` documents: a horizon smaller than
    /// the candidates a search ranks could never hold enough of them.
    pub fn looks_first(size: i64) -> bool {
        size >= SEARCH_CANDIDATES
    }

    /// The time of the `size`th newest document; `None` when there are fewer.
    async fn seen(
        &self,
        conn: &mut AsyncPgConnection,
    ) -> diesel::QueryResult<Option<DateTime<Utc>>> {
        if let Some(seen) = self.seen.fresh() {
            return Ok(seen);
        }
        let seen = super::search_index::nth_newest(conn, self.size).await?;
        self.seen.keep(seen);
        Ok(seen)
    }

    /// The time from which the newest matches of `q` under `filter`'s times are looked for
    /// first, if they are: not with `until` (the newest documents may all be past it), nor
    /// with a `since` no older than the horizon (it bounds the search as much already).
    async fn bound(
        &self,
        conn: &mut AsyncPgConnection,
        filter: &ListFilter,
    ) -> diesel::QueryResult<Option<DateTime<Utc>>> {
        if !Self::looks_first(self.size) || filter.until.is_some() {
            return Ok(None);
        }
        let Some(seen) = self.seen(conn).await? else {
            // Fewer documents than the horizon holds.
            return Ok(None);
        };
        Ok(filter
            .since
            .is_none_or(|since| since < seen)
            .then_some(seen))
    }
}

/// The SQL text `list` sends for these arguments, with `$n` placeholders (for benchmarks and
/// `EXPLAIN`: the statement as PostgreSQL sees it).
/// `from` is the first look's bound of a search's first page ([`Horizon`]; any time: it is a
/// placeholder like every value).
pub fn list_sql(
    filter: &ListFilter,
    sort: Sort,
    after: Option<&After>,
    window: Option<Window>,
    limit: i64,
    plan: Plan,
    from: Option<DateTime<Utc>>,
) -> String {
    let sort = match past_window(sort, after) {
        Some(_) => Sort::PublishedDesc,
        None => sort,
    };
    match searched_in_one_statement(filter, sort, after) {
        Some(q) => sql_text(&first_page_query(q, filter, from, limit)),
        None => sql_text(&list_query(filter, sort, after, window, limit, plan)),
    }
}

type ListQuery<'a> =
    signals::BoxedQuery<'a, Pg, diesel::dsl::SqlTypeOf<signal_json::RankedColumns<RankExpr>>>;

fn list_query<'a>(
    filter: &'a ListFilter,
    sort: Sort,
    after: Option<&After>,
    window: Option<Window>,
    limit: i64,
    plan: Plan,
) -> ListQuery<'a> {
    let q = filter.q.as_deref();
    // Ranked only when sorted by rank (a page by time or score leaves it 0).
    let ranked = q.filter(|_| sort == Sort::Relevance);
    let window = window.filter(|_| sort == Sort::Relevance);
    let matches = match sort == Sort::Relevance && text_alone(filter) {
        true => Matches::Page {
            window,
            after,
            limit,
        },
        false => Matches::All(window),
    };
    let mut query = filtered(
        signals::table
            .select(signal_json::ranked_columns(rank(ranked)))
            .into_boxed::<Pg>(),
        filter,
        matches,
        plan,
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
            After::Relevance(r, t, id, _) => query.filter(
                match q {
                    Some(q) => FixedSql::<Bool>::new("(")
                        .sql(RANK)
                        .bind(Bind::Text(q.to_owned()))
                        .sql(")), published_at, id) < ("),
                    // Every row ranks 0 without a text query.
                    None => FixedSql::<Bool>::new("(0::real, published_at, id) < ("),
                }
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

/// The newest `limit` signals that match the filters, as rows (what the feeds are made of).
pub async fn newest(
    conn: &mut AsyncPgConnection,
    filter: &ListFilter,
    limit: i64,
) -> diesel::QueryResult<Vec<SignalRow>> {
    filtered(
        signals::table
            .select(SignalRow::as_select())
            .into_boxed::<Pg>(),
        filter,
        Matches::All(None),
        Plan::PerValues,
    )
    .order((signals::published_at.desc(), signals::id.desc()))
    .limit(limit)
    .load(conn)
    .await
}

/// How many signals match the filters (for `include_total`).
pub async fn count(conn: &mut AsyncPgConnection, filter: &ListFilter) -> diesel::QueryResult<i64> {
    filtered(
        signals::table
            .select(diesel::dsl::count_star())
            .into_boxed::<Pg>(),
        filter,
        Matches::All(None),
        Plan::PerValues,
    )
    .get_result(conn)
    .await
}

/// How common each score and each tag is, from the table's statistics: whether the one plan
/// PostgreSQL keeps fits a list (`ListFilter::one_plan_fits_all`). That plan walks an index in
/// the list's order (`signals_published_idx`, or `signals_score_published_idx` sorted by score)
/// and skips the signals outside its filters: a tag ([`Plan::Kept`]) and, sorted by time, a
/// score bound. Fine while at least [`COMMON_SHARE`] of the signals pass (at most about 2,000
/// rows read for a page of 21), ruinous for filters that pass none (every signal read). A list
/// whose filters are rarer, or whose table has no statistics yet, is planned for its values.
#[derive(Default)]
pub struct Shares {
    stats: Kept<Arc<Stats>>,
}

/// The least share of the signals that must pass a list's filters for its one plan.
const COMMON_SHARE: f64 = 0.01;

/// The shares of the signals with each score and with each tag (its key) the statistics list.
#[derive(Debug, Default)]
struct Stats {
    scores: Vec<(i16, f64)>,
    tags: HashMap<String, f64>,
}

#[derive(QueryableByName)]
struct StatsRow {
    #[diesel(sql_type = Nullable<Array<SmallInt>>)]
    scores: Option<Vec<i16>>,
    #[diesel(sql_type = Nullable<Array<Float>>)]
    score_shares: Option<Vec<f32>>,
    #[diesel(sql_type = Nullable<Array<Text>>)]
    tags: Option<Vec<String>>,
    /// One per tag, then two or three more (the least and the greatest of them, and the share
    /// of null elements), which the tags' end leaves out.
    #[diesel(sql_type = Nullable<Array<Float>>)]
    tag_shares: Option<Vec<f32>>,
}

impl Shares {
    /// Whether one kept plan fits a list with these filters and sort.
    pub async fn one_plan_fits(
        &self,
        conn: &mut AsyncPgConnection,
        filter: &ListFilter,
        sort: Sort,
    ) -> diesel::QueryResult<bool> {
        if !filter.one_plan_fits_all() {
            return Ok(false);
        }
        // Without a tag, sorted by score or unbounded, the plan reads only signals that pass.
        if filter.tags_all.is_empty() && (sort.by_score() || !filter.score_bounded()) {
            return Ok(true);
        }
        let stats = match self.stats.fresh() {
            Some(stats) => stats,
            None => {
                let row: StatsRow = diesel::sql_query(
                    "SELECT s.most_common_vals::text::smallint[] AS scores, \
                            s.most_common_freqs AS score_shares, \
                            t.most_common_elems::text::text[] AS tags, \
                            t.most_common_elem_freqs AS tag_shares \
                     FROM (SELECT) AS one \
                     LEFT JOIN pg_stats s ON s.schemaname = current_schema() \
                       AND s.tablename = 'signals' AND s.attname = 'score' \
                     LEFT JOIN pg_stats t ON t.schemaname = current_schema() \
                       AND t.tablename = 'signals' AND t.attname = 'tag_keys'",
                )
                .get_result(conn)
                .await?;
                fn zip<T>(
                    values: Option<Vec<T>>,
                    shares: Option<Vec<f32>>,
                ) -> impl Iterator<Item = (T, f64)> {
                    (values.unwrap_or_default().into_iter())
                        .zip(shares.unwrap_or_default().into_iter().map(f64::from))
                }
                let stats = Arc::new(Stats {
                    scores: zip(row.scores, row.score_shares).collect(),
                    tags: zip(row.tags, row.tag_shares).collect(),
                });
                self.stats.keep(stats.clone());
                stats
            }
        };
        Ok(stats.passing(filter, sort) >= COMMON_SHARE)
    }
}

impl Stats {
    /// The share of the signals a kept plan's walk finds passing `filter`: its tag's, times
    /// its score bound's when sorted by time (taken as independent). What the statistics do
    /// not list counts as none.
    fn passing(&self, filter: &ListFilter, sort: Sort) -> f64 {
        let tag = match filter.tags_all.as_slice() {
            [] => 1.0,
            [tag] => self.tags.get(tag).copied().unwrap_or(0.0),
            _ => 0.0,
        };
        let bound = match sort.by_score() || !filter.score_bounded() {
            true => 1.0,
            false => self
                .scores
                .iter()
                .filter(|(score, _)| filter.score_within(i64::from(*score)))
                .map(|(_, share)| share)
                .sum(),
        };
        tag * bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::query::After;

    #[test]
    fn one_plan_is_kept_only_when_enough_signals_pass_its_tag_and_score_bound() {
        let stats = Stats {
            scores: vec![(5, 0.5), (7, 0.2), (9, 0.011), (10, 0.002)],
            tags: [("chips".to_owned(), 0.3), ("rare".to_owned(), 0.02)].into(),
        };
        let list = |min_score, max_score, tag: Option<&str>| ListFilter {
            min_score,
            max_score,
            tags_all: tag.into_iter().map(str::to_owned).collect(),
            ..ListFilter::default()
        };
        let fits = |filter: &ListFilter, sort| stats.passing(filter, sort) >= COMMON_SHARE;
        let by_time = Sort::PublishedDesc;
        assert!(fits(&list(Some(7), None, None), by_time));
        assert!(fits(&list(Some(9), None, None), by_time));
        assert!(!fits(&list(Some(10), None, None), by_time));
        assert!(
            !fits(&list(None, Some(4), None), by_time),
            "no score below 5 listed"
        );
        assert!(fits(&list(None, Some(5), None), by_time));
        // A tag: its share, times the bound's when the walk is in time order.
        assert!(fits(&list(None, None, Some("chips")), by_time));
        assert!(fits(&list(Some(7), None, Some("chips")), by_time));
        assert!(fits(&list(None, None, Some("rare")), by_time));
        assert!(
            !fits(&list(Some(7), None, Some("rare")), by_time),
            "0.02 x 0.2 < 0.01"
        );
        assert!(
            fits(&list(Some(7), None, Some("rare")), Sort::ScoreDesc),
            "sorted by score, the bound is a range of the walk"
        );
        assert!(!fits(&list(None, None, Some("unlisted")), Sort::ScoreDesc));
        assert!(!fits(&list(None, None, Some("unlisted")), by_time));
    }

    /// The tag of a kept plan is matched so that the GIN index cannot serve it, and a plan for
    /// the values uses the index's operator.
    #[test]
    fn a_kept_plan_matches_its_tag_without_the_gin_index() {
        let filter = ListFilter {
            min_score: Some(7),
            tags_all: vec!["chips".to_owned()],
            ..ListFilter::default()
        };
        let sql = |plan| list_sql(&filter, Sort::PublishedDesc, None, None, 20, plan, None);
        assert!(sql(Plan::Kept).contains("= ANY(\"signals\".\"tag_keys\")"));
        assert!(!sql(Plan::Kept).contains("@>"));
        assert!(sql(Plan::PerValues).contains("\"tag_keys\" @> $"));
    }
    use chrono::Utc;
    use std::collections::HashSet;
    use uuid::Uuid;

    /// Every filter a list request can have, present or not (values are binds, so only
    /// presence shapes the statement).
    fn every_filter() -> Vec<ListFilter> {
        (0..1u32 << 8)
            .map(|bits| {
                let on = |i: u32| bits & (1 << i) != 0;
                let word = |i: u32| if on(i) { vec!["x".to_owned()] } else { vec![] };
                ListFilter {
                    min_score: on(0).then_some(1),
                    max_score: on(1).then_some(9),
                    categories: word(2),
                    tags_all: word(3),
                    tags_any: word(4),
                    since: on(5).then(Utc::now),
                    until: on(6).then(Utc::now),
                    q: on(7).then(|| "x".to_owned()),
                }
            })
            .collect()
    }

    /// Statements stay prepared on each connection (diesel caches them without a size limit),
    /// so the number of different statements a list can send bounds each connection's cache.
    #[test]
    fn the_statements_lists_send_are_a_fixed_few_thousand() {
        let (t, id) = (Utc::now(), Uuid::nil());
        let mut texts = HashSet::new();
        let mut first_looks = 0;
        for filter in every_filter() {
            for sort in Sort::names().map(|n| Sort::from_name(n).unwrap()) {
                for window in [None, Some((t, id))] {
                    for after in [None, Some(After::of(sort, id, 5, t, 0.5, window))] {
                        for plan in [Plan::PerValues, Plan::Kept] {
                            if plan == Plan::Kept && !filter.one_plan_fits_all() {
                                continue;
                            }
                            let after = after.as_ref();
                            texts.insert(list_sql(&filter, sort, after, window, 20, plan, None));
                            texts.insert(list_sql(&filter, sort, after, window, 100, plan, None));
                        }
                    }
                }
            }
            // A first page of a text search alone may look among the newest documents first.
            if let (Some(q), true) = (&filter.q, text_alone(&filter)) {
                texts.insert(sql_text(&first_page_query(q, &filter, Some(t), 20)));
                first_looks += 1;
            }
        }
        // 2^8 filter shapes × 5 sorts × (first page, later page); for relevance the later
        // pages with a window or without, and so the first pages of a search with other
        // filters, whose window is found before; the limit is a bind. The first pages of a
        // text search alone (4 shapes: with since, until, both, neither) find their window in
        // the same statement (4 fewer), and the first look's bound is one more
        // `published_at >=`: the same text as a `since` without it, so 2 more. A kept plan's
        // tag is its own text: 3 more filter shapes (one tag, with no score bound, a least or
        // a greatest score).
        assert_eq!(first_looks, 4);
        assert_eq!(texts.len(), 256 * 6 * 2 - 4 + 2 + 3 * 6 * 2);
    }
}
