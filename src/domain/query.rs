//! The words of queries: filters, sorts, where a page ends, what a batch does with taken slugs,
//! and the query parameters that carry them — each parameter defined once, in a table that
//! both the parser and the OpenAPI document are made from.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use unicode_normalization::{IsNormalized, UnicodeNormalization};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{RefOr, Required};
use uuid::Uuid;

use super::input::{parse_timestamp, Text, SCORE_MAX, SCORE_MIN, TAG, TAGS_MAX};
use super::signal::ALL_FIELDS;
use super::FieldError;

/// The key case-insensitive filters compare: the same lower-casing for stored values and for
/// filter values, done by the service rather than by the database so it does not depend on its
/// locale, then Unicode's composed form (NFC), so the same word typed on systems that
/// decompose accents (`e` + U+0301) and on those that do not (`é`) is one key.
pub fn case_key(s: &str) -> String {
    let lower = s.to_lowercase();
    let recomposed = match composed(&lower) {
        Cow::Owned(key) => Some(key),
        Cow::Borrowed(_) => None,
    };
    recomposed.unwrap_or(lower)
}

/// `s` in Unicode's composed form (NFC); most text already is, and is borrowed as it is.
fn composed(s: &str) -> Cow<'_, str> {
    match unicode_normalization::is_nfc_quick(s.chars()) {
        IsNormalized::Yes => Cow::Borrowed(s),
        _ => Cow::Owned(s.nfc().collect()),
    }
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

impl ListFilter {
    /// Whether one plan may serve a list with these filters whatever their values, so
    /// PostgreSQL may keep one plan for it: a score bound (not both), one tag, the sort and the
    /// cursor, when the statistics say enough signals pass (`Shares::one_plan_fits`). A text,
    /// category or time filter, several tags or `any_tag` may match a few signals or most of
    /// them in ways the statistics cannot tell apart, and want a plan made for their values.
    pub fn one_plan_fits_all(&self) -> bool {
        // Every field named, so a filter added later has to be placed on one side or the other.
        let ListFilter {
            min_score,
            max_score,
            categories,
            tags_all,
            tags_any,
            since,
            until,
            q,
        } = self;
        !(min_score.is_some() && max_score.is_some())
            && categories.is_empty()
            && tags_all.len() <= 1
            && tags_any.is_empty()
            && since.is_none()
            && until.is_none()
            && q.is_none()
    }

    pub fn score_bounded(&self) -> bool {
        self.min_score.is_some() || self.max_score.is_some()
    }

    /// Whether a signal with this score is inside the score bounds.
    pub fn score_within(&self, score: i64) -> bool {
        self.min_score.is_none_or(|m| score >= i64::from(m))
            && self.max_score.is_none_or(|m| score <= i64::from(m))
    }
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
    const ALL: [(Sort, &'static str); 5] = [
        (Sort::PublishedDesc, "-published_at"),
        (Sort::PublishedAsc, "published_at"),
        (Sort::ScoreDesc, "-score"),
        (Sort::ScoreAsc, "score"),
        (Sort::Relevance, "relevance"),
    ];

    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::ALL.iter().map(|(_, n)| *n)
    }

    pub fn from_name(s: &str) -> Option<Sort> {
        Self::ALL.iter().find(|(_, n)| *n == s).map(|(v, _)| *v)
    }

    pub fn descending(self) -> bool {
        !matches!(self, Sort::PublishedAsc | Sort::ScoreAsc)
    }

    pub fn by_score(self) -> bool {
        matches!(self, Sort::ScoreAsc | Sort::ScoreDesc)
    }
}

/// The oldest signal a text search ranks (its `published_at` and `id`): a search that matches
/// many signals ranks the newest [`SEARCH_CANDIDATES`] of them, and the pages after the first
/// go on among the same ones (and a match written meanwhile that ranks after the pages read),
/// then with the older matches by time.
pub type Window = (DateTime<Utc>, Uuid);

/// How many matches of a text search are ranked, newest first (see `q`).
pub const SEARCH_CANDIDATES: i64 = 100;

/// Where the previous page ended: the sort key of its last row.
#[derive(Debug, Clone, PartialEq)]
pub enum After {
    Published(DateTime<Utc>, Uuid),
    Score(i16, DateTime<Utc>, Uuid),
    /// The rank, time and id of the last row, and the window of ranked matches, if the search
    /// matched more than are ranked.
    Relevance(f32, DateTime<Utc>, Uuid, Option<Window>),
}

impl After {
    /// The position after a row with these keys, in `sort`'s order.
    pub fn of(
        sort: Sort,
        id: Uuid,
        score: i16,
        published_at: DateTime<Utc>,
        rank: f32,
        window: Option<Window>,
    ) -> After {
        match sort {
            Sort::PublishedDesc | Sort::PublishedAsc => After::Published(published_at, id),
            Sort::ScoreDesc | Sort::ScoreAsc => After::Score(score, published_at, id),
            Sort::Relevance => After::Relevance(rank, published_at, id, window),
        }
    }
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

impl OnConflict {
    pub const NAMES: [&'static str; 3] = ["error", "skip", "update"];

    pub fn from_name(s: &str) -> Option<OnConflict> {
        match s {
            "error" => Some(OnConflict::Error),
            "skip" => Some(OnConflict::Skip),
            "update" => Some(OnConflict::Update),
            _ => None,
        }
    }
}

pub const LIMIT_DEFAULT: i64 = 20;
pub const LIMIT_MAX: i64 = 100;
pub const FACET_LIMIT_DEFAULT: i64 = 50;
pub const FEED_LIMIT_DEFAULT: i64 = 50;
/// A text query: web-search syntax, at most 256 characters.
pub const Q: Text = Text {
    min: 1,
    max: 256,
    trim: true,
};
/// A cursor: base64url JSON, a dot, and a base64url tag of 16 bytes.
pub const CURSOR_PATTERN: &str = "^[A-Za-z0-9_-]{1,2048}\\.[A-Za-z0-9_-]{22}$";

/// What a query parameter holds, and so how it is parsed and documented.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// An integer from 0 to 10.
    Score,
    /// An RFC 3339 date-time.
    Time,
    /// A category, tag or prefix: compared by its [`case_key`].
    Word,
    /// The text query.
    Query,
    /// An integer from 1 to the maximum, with a default.
    Limit {
        max: i64,
        default: i64,
    },
    Sort,
    Cursor,
    Fields,
    Bool,
    /// A position in the change log.
    Position,
    /// An id: where a page of deliveries ended.
    Id,
}

/// One query parameter of an operation: the parser and the document both read it.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    /// How often it may be given (more than once: its values form a set).
    pub max_values: usize,
    pub description: &'static str,
}

const fn param(name: &'static str, kind: Kind, description: &'static str) -> Param {
    Param {
        name,
        kind,
        max_values: 1,
        description,
    }
}

/// A category or tag filter given once per value, at most `max_values` times.
const fn repeated(name: &'static str, max_values: usize, description: &'static str) -> Param {
    Param {
        name,
        kind: Kind::Word,
        max_values,
        description,
    }
}

/// The parameters of `GET /v1/signals`.
pub const LIST_PARAMS: &[Param] = &[
    param(
        "min_score",
        Kind::Score,
        "Only signals scored at least this (inclusive).",
    ),
    param(
        "max_score",
        Kind::Score,
        "Only signals scored at most this (inclusive). Below `min_score`, nothing matches.",
    ),
    repeated(
        "category",
        50,
        "Repeatable (up to 50); matches any of them, case-insensitively.",
    ),
    repeated(
        "tag",
        TAGS_MAX,
        "Repeatable (up to 20, the most a signal has); the signal has all of them \
         (case-insensitive).",
    ),
    repeated(
        "any_tag",
        50,
        "Repeatable (up to 50); the signal has at least one of them (case-insensitive).",
    ),
    param("since", Kind::Time, "RFC 3339; `since <= published_at`."),
    param(
        "until",
        Kind::Time,
        "RFC 3339; `published_at < until`. Not after `since`, nothing matches.",
    ),
    param(
        "q",
        Kind::Query,
        "Full-text search in web-search syntax (words, \"quoted phrases\", -exclusions, `or`) \
         over title, tags, summary, body and sections (the first 120,000 characters of their \
         bodies); title and tags weigh most. Sorted by \
         relevance, a search ranks its newest 100 matches (with the other filters; all of \
         them when there are fewer): relevance order is exact among those, and the pages after \
         the first go on among the same ones (a match written meanwhile is listed if it ranks \
         after the pages already read). The older matches follow them, newest first, so the \
         pages list every match once, whatever the sort. The trade-off: a search ranks a bounded \
         number of matches however many it has, which keeps its first page fast, so an older \
         match that would rank higher is listed by time, after the ranked ones.",
    ),
    param(
        "sort",
        Kind::Sort,
        "Order; ties break by `published_at`, then `id`, in the same direction (`relevance`: \
         newest first). Default `-published_at`, or `relevance` when `q` is given. `relevance` \
         only with `q` (else 400: without a text search there is nothing to rank by).",
    ),
    param(
        "limit",
        Kind::Limit {
            max: LIMIT_MAX,
            default: LIMIT_DEFAULT,
        },
        "Page size.",
    ),
    param(
        "cursor",
        Kind::Cursor,
        "Opaque, from `next_cursor` of the previous page; only valid with the filters and sort \
         that made it (else 400). Cursors are signed: one the service did not issue is 400.",
    ),
    param(
        "fields",
        Kind::Fields,
        "Comma-separated top-level fields to return; `id` is always included.",
    ),
    param(
        "include_total",
        Kind::Bool,
        "`true` adds `total`, the count of all matching signals.",
    ),
];

/// The parameters of `GET /v1/signals/stream`: the list's filters that a change can be told by,
/// and where to resume.
pub const STREAM_PARAMS: &[Param] = &[
    LIST_PARAMS[0],
    LIST_PARAMS[1],
    LIST_PARAMS[2],
    LIST_PARAMS[3],
    LIST_PARAMS[4],
    param(
        "last_event_id",
        Kind::Position,
        "Resume after this position (as the `Last-Event-ID` header does, which wins when both \
         are sent): every matching change after it is sent first, none twice, then live ones.",
    ),
];

/// The parameters of `GET /v1/feed.json` and `GET /v1/feed.atom`: the list's filters and a
/// page size (the feeds are always newest first).
pub const FEED_PARAMS: &[Param] = &[
    LIST_PARAMS[0],
    LIST_PARAMS[1],
    LIST_PARAMS[2],
    LIST_PARAMS[3],
    LIST_PARAMS[4],
    LIST_PARAMS[5],
    LIST_PARAMS[6],
    LIST_PARAMS[7],
    param(
        "limit",
        Kind::Limit {
            max: LIMIT_MAX,
            default: FEED_LIMIT_DEFAULT,
        },
        "How many of the newest matching signals the feed holds.",
    ),
];

/// The parameters of the reader's feed page (`GET /`): the list's filters and where the page
/// starts (a page is 20 signals, newest first, or best match first with `q`).
pub const PAGE_PARAMS: &[Param] = &[
    LIST_PARAMS[0],
    LIST_PARAMS[1],
    LIST_PARAMS[2],
    LIST_PARAMS[3],
    LIST_PARAMS[4],
    LIST_PARAMS[5],
    LIST_PARAMS[6],
    LIST_PARAMS[7],
    LIST_PARAMS[10],
];

/// The parameters of `GET /v1/webhooks/{id}/deliveries`.
pub const DELIVERY_PARAMS: &[Param] = &[
    param(
        "limit",
        Kind::Limit {
            max: LIMIT_MAX,
            default: LIMIT_DEFAULT,
        },
        "Page size.",
    ),
    param(
        "cursor",
        Kind::Id,
        "From `next_cursor` of the previous page: the attempts older than it.",
    ),
];

const FACET_SCORE: Param = param(
    "min_score",
    Kind::Score,
    "Count only signals scored at least this.",
);
const FACET_SINCE: Param = param(
    "since",
    Kind::Time,
    "RFC 3339; count only signals with `since <= published_at`.",
);
const FACET_UNTIL: Param = param(
    "until",
    Kind::Time,
    "RFC 3339; count only signals with `published_at < until`.",
);

/// The parameters of `GET /v1/categories`.
pub const CATEGORY_PARAMS: &[Param] = &[FACET_SCORE, FACET_SINCE, FACET_UNTIL];

/// The parameters of `GET /v1/tags`.
pub const TAG_PARAMS: &[Param] = &[
    FACET_SCORE,
    FACET_SINCE,
    FACET_UNTIL,
    param(
        "prefix",
        Kind::Word,
        "Only tags starting with this, case-insensitively.",
    ),
    param(
        "limit",
        Kind::Limit {
            max: LIMIT_MAX,
            default: FACET_LIMIT_DEFAULT,
        },
        "Most tags to return.",
    ),
];

/// A parsed value of a parameter.
enum Parsed {
    Score(i16),
    Time(DateTime<Utc>),
    Text(String),
    Int(i64),
    Sort(Sort),
    Fields(Vec<String>),
    Bool(bool),
    Id(Uuid),
}

impl Param {
    fn error(&self, message: impl Into<String>) -> FieldError {
        FieldError::new(self.name, message)
    }

    fn parse(&self, value: &str) -> Result<Parsed, FieldError> {
        Ok(match self.kind {
            Kind::Score => Parsed::Score(
                value
                    .parse::<i16>()
                    .ok()
                    .filter(|s| (SCORE_MIN..=SCORE_MAX).contains(s))
                    .ok_or_else(|| {
                        self.error(format!(
                            "must be an integer between {SCORE_MIN} and {SCORE_MAX}"
                        ))
                    })?,
            ),
            Kind::Time => Parsed::Time(parse_timestamp(value).map_err(|m| self.error(m))?),
            Kind::Word => Parsed::Text(case_key(TAG.check(value).map_err(|m| self.error(m))?)),
            Kind::Query => Parsed::Text(Q.check(value).map_err(|m| self.error(m))?.to_owned()),
            Kind::Limit { max, .. } => Parsed::Int(
                value
                    .parse()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| self.error(format!("must be an integer from 1 to {max}")))?,
            ),
            Kind::Sort => Parsed::Sort(Sort::from_name(value).ok_or_else(|| {
                self.error(format!(
                    "must be one of {}",
                    Sort::names().collect::<Vec<_>>().join(", ")
                ))
            })?),
            Kind::Cursor => {
                if !has_cursor_shape(value) {
                    return Err(self.error("is not a cursor this service issued"));
                }
                Parsed::Text(value.to_owned())
            }
            Kind::Fields => Parsed::Fields(fields(value).map_err(|m| self.error(m))?),
            Kind::Position => Parsed::Int(
                value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| self.error("must be a position: an integer of 0 or more"))?,
            ),
            Kind::Id => Parsed::Id(
                Uuid::try_parse(value).map_err(|_| self.error("must be an id from next_cursor"))?,
            ),
            Kind::Bool => Parsed::Bool(match value {
                "true" => true,
                "false" => false,
                _ => return Err(self.error("must be true or false")),
            }),
        })
    }

    fn schema(&self) -> RefOr<Schema> {
        let one: Schema = match self.kind {
            Kind::Score => ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(SCORE_MIN))
                .maximum(Some(SCORE_MAX))
                .into(),
            Kind::Time => ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .into(),
            Kind::Word => TAG.schema("").description(None::<String>).into(),
            Kind::Query => Q.schema("").description(None::<String>).into(),
            Kind::Limit { max, default } => ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(1))
                .maximum(Some(max))
                .default(Some(json!(default)))
                .into(),
            Kind::Sort => ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(Sort::names()))
                .into(),
            Kind::Cursor => ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(CURSOR_PATTERN))
                .into(),
            Kind::Fields => {
                let name = format!("({})", ALL_FIELDS.join("|"));
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(format!("^{name}(,{name})*$")))
                    .into()
            }
            Kind::Position => ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(0))
                .into(),
            Kind::Id => ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                .into(),
            Kind::Bool => ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .default(Some(json!(false)))
                .into(),
        };
        match self.max_values {
            1 => one.into(),
            max => ArrayBuilder::new()
                .items(RefOr::T(one))
                .max_items(Some(max))
                .into(),
        }
    }

    fn example(&self) -> Option<Value> {
        Some(match (self.name, self.kind) {
            (_, Kind::Score) if self.name == "max_score" => json!(9),
            (_, Kind::Score) => json!(7),
            ("since", _) => json!("2026-05-01T00:00:00Z"),
            ("until", _) => json!("2026-06-01T00:00:00Z"),
            ("category", _) => json!(["Industry"]),
            ("tag", _) => json!(["LLM"]),
            ("any_tag", _) => json!(["DeepSeek", "OpenAI"]),
            ("prefix", _) => json!("ll"),
            (_, Kind::Query) => json!("deepseek \"valuation\" -rumor"),
            (_, Kind::Limit { default, .. }) => json!(default),
            (_, Kind::Sort) => json!("-published_at"),
            (_, Kind::Fields) => json!("title,score,published_at"),
            (_, Kind::Bool) => json!(false),
            _ => return None,
        })
    }

    /// The OpenAPI parameter.
    pub fn parameter(&self) -> Parameter {
        let mut p = ParameterBuilder::new()
            .name(self.name)
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(self.description))
            .schema(Some(self.schema()))
            .example(self.example());
        if self.max_values > 1 {
            p = p.style(Some(ParameterStyle::Form)).explode(Some(true));
        }
        p.build()
    }
}

/// The OpenAPI parameters of a table.
pub fn parameters(table: &[Param]) -> Vec<Parameter> {
    table.iter().map(Param::parameter).collect()
}

/// Whether `value` has the shape [`CURSOR_PATTERN`] documents (checked by hand: the pattern is
/// simple, and the signature check that follows is what really decides).
fn has_cursor_shape(value: &str) -> bool {
    let b64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    match value.split_once('.') {
        Some((payload, tag)) => {
            (1..=2048).contains(&payload.len()) && b64(payload) && tag.len() == 22 && b64(tag)
        }
        None => false,
    }
}

/// The `fields` list: names of [`ALL_FIELDS`] separated by commas, `id` always first.
fn fields(value: &str) -> Result<Vec<String>, String> {
    let mut out = vec!["id".to_owned()];
    for field in value.split(',') {
        if !ALL_FIELDS.contains(&field) {
            return Err(format!(
                "names an unknown field {field:?} (known: {})",
                ALL_FIELDS.join(", ")
            ));
        }
        if !out.iter().any(|f| f == field) {
            out.push(field.to_owned());
        }
    }
    Ok(out)
}

/// The pairs of `query_string` whose names are in `table`, as sent: what a web page reads of a
/// link that may carry names it does not know (`utm_source`, `fbclid`), which it ignores.
pub fn known_pairs(query_string: &str, table: &[Param]) -> String {
    pairs_where(query_string, |name, _| table.iter().any(|p| p.name == name))
}

/// The pairs of `query_string` that `keep` keeps, as sent. `keep` is given each pair's name as
/// [`decoded_pairs`] decodes it (a name that is not UTF-8 is kept by none) and its value as
/// sent.
pub fn pairs_where(query_string: &str, keep: impl Fn(&str, &str) -> bool) -> String {
    query_string
        .split('&')
        .filter(|pair| {
            let (name, value) = split_pair(pair);
            decode_component(name).is_ok_and(|name| keep(&name, value))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A pair of a query string as its name and value, both still encoded (no `=`: no value).
fn split_pair(pair: &str) -> (&str, &str) {
    pair.split_once('=').unwrap_or((pair, ""))
}

/// A name or value of a query string decoded (`+` is a space), refused unless it is UTF-8 once
/// decoded (a lenient decoder would turn it into other text).
fn decode_component(s: &str) -> Result<String, std::str::Utf8Error> {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
}

/// The name-value pairs of a query string (`application/x-www-form-urlencoded`), refusing any
/// that is not UTF-8 once decoded ([`decode_component`]).
fn decoded_pairs(query_string: &str) -> Result<Vec<(String, String)>, FieldError> {
    let mut pairs = Vec::new();
    for pair in query_string.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = split_pair(pair);
        let name = decode_component(name).map_err(|_| {
            FieldError::new("", "a query parameter's name is not UTF-8 once decoded")
        })?;
        let value = decode_component(value)
            .map_err(|_| FieldError::new(&name, "is not UTF-8 once decoded"))?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// The parsed parameters of a query string, by the table: unknown names and repeated single
/// values are refused.
fn parse_pairs(query_string: &str, table: &[Param]) -> Result<Vec<(Param, Parsed)>, FieldError> {
    parse_pairs_of(query_string, table, Empty::Parsed)
}

/// What an empty value is: parsed like any other (an error for most parameters), or as if the
/// parameter were not given (the reader's form, whose empty fields mean "any").
#[derive(Clone, Copy, PartialEq, Eq)]
enum Empty {
    Parsed,
    Absent,
}

fn parse_pairs_of(
    query_string: &str,
    table: &[Param],
    empty: Empty,
) -> Result<Vec<(Param, Parsed)>, FieldError> {
    let mut out: Vec<(Param, Parsed)> = Vec::new();
    // Every value given, an empty one too, counts against a parameter's most.
    let mut given: Vec<&'static str> = Vec::new();
    for (name, value) in decoded_pairs(query_string)? {
        let Some(param) = table.iter().find(|p| p.name == name) else {
            let known: Vec<&str> = table.iter().map(|p| p.name).collect();
            return Err(FieldError::new(
                &name,
                format!(
                    "is not a parameter of this endpoint (known: {})",
                    known.join(", ")
                ),
            ));
        };
        if given.iter().filter(|n| **n == param.name).count() >= param.max_values {
            return Err(param.error(match param.max_values {
                1 => "must be given at most once".to_owned(),
                max => format!("may be given at most {max} times"),
            }));
        }
        given.push(param.name);
        if empty == Empty::Absent && value.is_empty() {
            continue;
        }
        out.push((*param, param.parse(&value)?));
    }
    Ok(out)
}

/// A parsed list request.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub filter: ListFilter,
    pub sort: Sort,
    pub limit: i64,
    /// The raw cursor; checked against the filter with [`ListQuery::after`].
    pub cursor: Option<String>,
    /// Only these top-level fields (always with `id`).
    pub fields: Option<Vec<String>>,
    pub include_total: bool,
}

impl ListQuery {
    /// Parses a query string of [`LIST_PARAMS`]; any unknown, repeated or malformed parameter
    /// is an error.
    pub fn parse(query_string: &str) -> Result<ListQuery, FieldError> {
        Self::parse_of(query_string, LIST_PARAMS, Empty::Parsed)
    }

    /// Parses the query string of the reader's feed page ([`PAGE_PARAMS`]), where an empty
    /// value is as if the parameter were not given: the filter form, sent without JavaScript,
    /// has every field, `min_score=` for "any".
    pub fn parse_page(query_string: &str) -> Result<ListQuery, FieldError> {
        Self::parse_of(query_string, PAGE_PARAMS, Empty::Absent)
    }

    fn parse_of(
        query_string: &str,
        table: &[Param],
        empty: Empty,
    ) -> Result<ListQuery, FieldError> {
        let mut q = ListQuery {
            filter: ListFilter::default(),
            sort: Sort::PublishedDesc,
            limit: LIMIT_DEFAULT,
            cursor: None,
            fields: None,
            include_total: false,
        };
        let mut sort_given = false;
        for (param, value) in parse_pairs_of(query_string, table, empty)? {
            match (param.name, value) {
                ("sort", Parsed::Sort(s)) => {
                    q.sort = s;
                    sort_given = true;
                }
                ("limit", Parsed::Int(n)) => q.limit = n,
                ("cursor", Parsed::Text(c)) => q.cursor = Some(c),
                ("fields", Parsed::Fields(list)) => q.fields = Some(list),
                ("include_total", Parsed::Bool(b)) => q.include_total = b,
                (name, value) => q.filter.set(name, value),
            }
        }
        if q.filter.q.is_some() && !sort_given {
            q.sort = Sort::Relevance;
        }
        // API.md: `relevance` only with `q`; without one there is nothing to rank by.
        if q.sort == Sort::Relevance && q.filter.q.is_none() {
            return Err(FieldError::new(
                "sort",
                "`relevance` needs a text search (`q`) to rank by",
            ));
        }
        Ok(q)
    }
}

/// A parsed `GET /v1/categories` or `GET /v1/tags` request.
#[derive(Debug, Clone, PartialEq)]
pub struct FacetQuery {
    pub filter: FacetFilter,
    pub limit: i64,
}

impl FacetQuery {
    /// Parses a query string of `table` ([`CATEGORY_PARAMS`] or [`TAG_PARAMS`]).
    pub fn parse(query_string: &str, table: &[Param]) -> Result<FacetQuery, FieldError> {
        let mut q = FacetQuery {
            filter: FacetFilter::default(),
            limit: FACET_LIMIT_DEFAULT,
        };
        for (param, value) in parse_pairs(query_string, table)? {
            match (param.name, value) {
                ("min_score", Parsed::Score(s)) => q.filter.min_score = Some(s),
                ("since", Parsed::Time(t)) => q.filter.since = Some(t),
                ("until", Parsed::Time(t)) => q.filter.until = Some(t),
                ("prefix", Parsed::Text(p)) => q.filter.prefix = Some(p),
                ("limit", Parsed::Int(n)) => q.limit = n,
                _ => unreachable!("every facet parameter is matched by its kind"),
            }
        }
        Ok(q)
    }
}

/// A change-log position as the `Last-Event-ID` header carries it: decimal digits only (no
/// sign, no spaces), at most 18 of them, so that every such text is a position.
pub const POSITION_PATTERN: &str = "^[0-9]{1,18}$";

/// The position in `text` when it matches [`POSITION_PATTERN`].
pub fn header_position(text: &str) -> Option<i64> {
    let digits = (1..=18).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse().ok()).flatten()
}

/// A parsed `GET /v1/signals/stream` request.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamQuery {
    pub filter: ListFilter,
    pub last_event_id: Option<i64>,
}

impl StreamQuery {
    pub fn parse(query_string: &str) -> Result<StreamQuery, FieldError> {
        let mut q = StreamQuery {
            filter: ListFilter::default(),
            last_event_id: None,
        };
        for (param, value) in parse_pairs(query_string, STREAM_PARAMS)? {
            match (param.name, value) {
                ("last_event_id", Parsed::Int(n)) => q.last_event_id = Some(n),
                (name, value) => q.filter.set(name, value),
            }
        }
        Ok(q)
    }
}

/// A parsed `GET /v1/webhooks/{id}/deliveries` request: newest first, `limit` attempts older
/// than `before`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryQuery {
    pub limit: i64,
    pub before: Option<Uuid>,
}

impl DeliveryQuery {
    pub fn parse(query_string: &str) -> Result<DeliveryQuery, FieldError> {
        let mut q = DeliveryQuery {
            limit: LIMIT_DEFAULT,
            before: None,
        };
        for (param, value) in parse_pairs(query_string, DELIVERY_PARAMS)? {
            match (param.name, value) {
                ("limit", Parsed::Int(n)) => q.limit = n,
                ("cursor", Parsed::Id(id)) => q.before = Some(id),
                _ => unreachable!("every parameter of DELIVERY_PARAMS is matched by its kind"),
            }
        }
        Ok(q)
    }
}

/// A parsed feed request: the newest `limit` signals that match `filter`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedQuery {
    pub filter: ListFilter,
    pub limit: i64,
}

impl FeedQuery {
    pub fn parse(query_string: &str) -> Result<FeedQuery, FieldError> {
        let mut q = FeedQuery {
            filter: ListFilter::default(),
            limit: FEED_LIMIT_DEFAULT,
        };
        for (param, value) in parse_pairs(query_string, FEED_PARAMS)? {
            match (param.name, value) {
                ("limit", Parsed::Int(n)) => q.limit = n,
                (name, value) => q.filter.set(name, value),
            }
        }
        Ok(q)
    }
}

impl ListFilter {
    /// Sets the filter that a parsed parameter of [`LIST_PARAMS`] names. Categories and tags
    /// are sets, not lists: kept in a canonical order, so equal filters make equal cursors.
    fn set(&mut self, name: &str, value: Parsed) {
        let add = |set: &mut Vec<String>, word: String| {
            if let Err(at) = set.binary_search(&word) {
                set.insert(at, word);
            }
        };
        match (name, value) {
            ("min_score", Parsed::Score(s)) => self.min_score = Some(s),
            ("max_score", Parsed::Score(s)) => self.max_score = Some(s),
            ("since", Parsed::Time(t)) => self.since = Some(t),
            ("until", Parsed::Time(t)) => self.until = Some(t),
            ("category", Parsed::Text(w)) => add(&mut self.categories, w),
            ("tag", Parsed::Text(w)) => add(&mut self.tags_all, w),
            ("any_tag", Parsed::Text(w)) => add(&mut self.tags_any, w),
            ("q", Parsed::Text(text)) => self.q = Some(text),
            _ => unreachable!("only filter parameters are set on a filter, each by its kind"),
        }
    }

    /// Whether a signal in this state (the change log's `before`/`after`: `score`,
    /// `category_key`, `tag_keys`) passes the filter's score, category and tag conditions.
    /// States logged before keys were composed (migration 17) may hold decomposed keys: they
    /// are composed here.
    pub fn matches_state(&self, state: &serde_json::Value) -> bool {
        let score = state["score"].as_i64().unwrap_or(-1);
        let category = composed(state["category_key"].as_str().unwrap_or_default());
        let tags: Vec<Cow<'_, str>> = state["tag_keys"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str()).map(composed).collect())
            .unwrap_or_default();
        let has = |t: &String| tags.iter().any(|k| k == t);
        self.score_within(score)
            && (self.categories.is_empty() || self.categories.iter().any(|c| *c == category))
            && self.tags_all.iter().all(has)
            && (self.tags_any.is_empty() || self.tags_any.iter().any(has))
    }
}

/// A parsed `GET /v1/categories` request.
pub struct CategoryQuery(pub FacetQuery);

impl CategoryQuery {
    pub fn parse(query_string: &str) -> Result<Self, FieldError> {
        FacetQuery::parse(query_string, CATEGORY_PARAMS).map(CategoryQuery)
    }
}

/// A parsed `GET /v1/tags` request.
pub struct TagQuery(pub FacetQuery);

impl TagQuery {
    pub fn parse(query_string: &str) -> Result<Self, FieldError> {
        FacetQuery::parse(query_string, TAG_PARAMS).map(TagQuery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_logged_with_decomposed_keys_meet_composed_filters() {
        let state = json!({"score": 7, "category_key": "cafe\u{301}s",
                           "tag_keys": ["a\u{30a}ngstro\u{308}m", "llm"]});
        let filter = |query: &str| ListQuery::parse(query).unwrap().filter;
        assert!(filter("category=Caf%C3%A9s&tag=%C3%85ngstr%C3%B6m").matches_state(&state));
        assert!(filter("any_tag=%C3%A5ngstr%C3%B6m&any_tag=x").matches_state(&state));
        assert!(filter("tag=LLM&min_score=7").matches_state(&state));
        assert!(!filter("category=cafes").matches_state(&state));
        assert!(!filter("tag=angstrom").matches_state(&state));
    }

    #[test]
    fn keys_ignore_case_and_how_accents_are_composed() {
        let composed = "Caf\u{e9} \u{c5}ngstr\u{f6}m";
        let decomposed = "CAFE\u{301} A\u{30a}NGSTRO\u{308}M";
        assert_ne!(composed.to_lowercase(), decomposed.to_lowercase());
        assert_eq!(case_key(composed), case_key(decomposed));
        assert_eq!(case_key(decomposed), "caf\u{e9} \u{e5}ngstr\u{f6}m");
        assert_ne!(case_key("cafe"), case_key("caf\u{e9}"));
    }

    #[test]
    fn only_score_bounds_one_tag_sorts_and_cursors_keep_one_plan() {
        let one = |query: &str| ListQuery::parse(query).unwrap().filter.one_plan_fits_all();
        for query in [
            "",
            "min_score=7",
            "max_score=2&sort=-score",
            "sort=published_at&limit=5",
            "tag=LLM",
            "tag=LLM&min_score=7&sort=-score",
        ] {
            assert!(one(query), "{query}");
        }
        for query in [
            "min_score=7&max_score=9",
            "category=AI",
            "tag=LLM&tag=RAG",
            "any_tag=LLM",
            "since=2026-01-01T00:00:00Z",
            "until=2026-01-01T00:00:00Z",
            "q=chips",
        ] {
            assert!(!one(query), "{query}");
        }
    }

    #[test]
    fn parameters_parse_and_lists_become_sets() {
        let q = ListQuery::parse(
            "min_score=7&category=AI&category=Industry&category=ai&tag=LLM&limit=5",
        )
        .unwrap();
        assert_eq!(q.filter.min_score, Some(7));
        assert_eq!(q.filter.categories, ["ai", "industry"]);
        assert_eq!(q.filter.tags_all, ["llm"]);
        assert_eq!(q.limit, 5);
        assert_eq!(q.sort, Sort::PublishedDesc);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        for bad in [
            "min_score=11",
            "min_score=x",
            "min_score=1&min_score=2",
            "limit=0",
            "limit=101",
            "sort=newest",
            "since=yesterday",
            "colour=red",
            "tag=",
            "tag=%20",
            "category=a%00b",
            "q=",
            "fields=id,colour",
            "fields=title,%20score",
            "fields=",
            "include_total=yes",
            "q=a&q=b",
            "cursor=garbage",
            "category=%ff%fe",
            "%ff=1",
        ] {
            assert!(ListQuery::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounds_that_exclude_everything_are_not_errors() {
        // Every value is well-formed; together they match nothing: an empty page, not a 400.
        assert!(ListQuery::parse("min_score=8&max_score=7").is_ok());
        assert!(ListQuery::parse("since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z").is_ok());
        assert!(FacetQuery::parse(
            "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            TAG_PARAMS
        )
        .is_ok());
        // The reader's page takes empty values as not given, counted all the same.
        let page = ListQuery::parse_page("min_score=&category=&category=Odd&q=&cursor=").unwrap();
        assert_eq!(page, ListQuery::parse_page("category=Odd").unwrap());
        assert_eq!(
            ListQuery::parse_page("min_score=&min_score=5")
                .unwrap_err()
                .field,
            "min_score"
        );
        assert_eq!(
            ListQuery::parse("min_score=").unwrap_err().field,
            "min_score"
        );
        // API.md: `relevance` only with `q`.
        assert_eq!(
            ListQuery::parse("sort=relevance").unwrap_err().field,
            "sort"
        );
        assert_eq!(
            ListQuery::parse("sort=relevance&q=deepseek").unwrap().sort,
            Sort::Relevance
        );
    }

    #[test]
    fn a_text_query_defaults_to_relevance_and_is_bounded() {
        let q = ListQuery::parse("q=deepseek%20-funding&fields=title,score,title").unwrap();
        assert_eq!(q.sort, Sort::Relevance);
        assert_eq!(q.filter.q.as_deref(), Some("deepseek -funding"));
        assert_eq!(q.fields.unwrap(), ["id", "title", "score"]);
        assert_eq!(
            ListQuery::parse("q=x&sort=-score").unwrap().sort,
            Sort::ScoreDesc
        );
        assert!(ListQuery::parse(&format!("q={}", "a".repeat(256))).is_ok());
        assert!(ListQuery::parse(&format!("q={}", "a".repeat(257))).is_err());
    }

    #[test]
    fn facet_parameters_depend_on_the_facet() {
        let t = FacetQuery::parse("prefix=LL&limit=5&min_score=3", TAG_PARAMS).unwrap();
        assert_eq!(t.filter.prefix.as_deref(), Some("ll"));
        assert_eq!(t.limit, 5);
        assert!(FacetQuery::parse("prefix=LL", CATEGORY_PARAMS).is_err());
        assert!(FacetQuery::parse("limit=101", TAG_PARAMS).is_err());
    }

    #[test]
    fn every_parameter_is_documented_with_a_schema_and_an_example_it_takes() {
        for table in [
            LIST_PARAMS,
            PAGE_PARAMS,
            STREAM_PARAMS,
            FEED_PARAMS,
            CATEGORY_PARAMS,
            TAG_PARAMS,
        ] {
            for param in table {
                let name = param.name;
                assert!(!param.description.trim().is_empty(), "{name}");
                let documented = serde_json::to_value(param.parameter()).unwrap();
                let schema = &documented["schema"];
                // Repeatable: a list of at most as many as the parser takes; else one value.
                match param.max_values {
                    1 => assert_ne!(schema["type"], "array", "{name}: {schema}"),
                    max => {
                        assert_eq!(schema["type"], "array", "{name}: {schema}");
                        assert_eq!(schema["maxItems"], max, "{name}: {schema}");
                    }
                }
                // The example the spec shows is one the parser takes, each value of a list.
                let Some(example) = param.example() else {
                    continue;
                };
                let values = match example {
                    Value::Array(items) => items,
                    one => vec![one],
                };
                assert!(values.len() <= param.max_values, "{name}");
                for value in values {
                    let text = match value {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    assert!(param.parse(&text).is_ok(), "{name}={text}");
                }
            }
        }
    }
}
