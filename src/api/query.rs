//! The query string of `GET /v1/signals` and its opaque, signed pagination cursor.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::problem::ApiError;
use crate::db::signals::{case_key, After, FacetFilter, ListFilter, Sort};
use crate::domain::signal::{check_length, parse_timestamp, ALL_FIELDS, SCORE_MAX};

pub const LIMIT_DEFAULT: i64 = 20;
pub const LIMIT_MAX: i64 = 100;
/// Bytes of the HMAC-SHA256 tag a cursor carries.
const TAG_LEN: usize = 16;

pub const Q_MAX: usize = 256;

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

/// The name-value pairs of a query string, refusing unknown names and repeated single values.
fn pairs(
    query_string: &str,
    scalars: &[&str],
    repeatable: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(query_string.as_bytes()) {
        if scalars.contains(&name.as_ref()) {
            if out.iter().any(|(n, _)| *n == name) {
                return Err(ApiError::bad_parameter(&name, "must be given at most once"));
            }
        } else if !repeatable.contains(&name.as_ref()) {
            let known: Vec<&str> = scalars.iter().chain(repeatable).copied().collect();
            return Err(ApiError::bad_parameter(
                &name,
                format!(
                    "is not a parameter of this endpoint (known: {})",
                    known.join(", ")
                ),
            ));
        }
        out.push((name.into_owned(), value.trim().to_owned()));
    }
    Ok(out)
}

impl ListQuery {
    /// Parses a query string; any unknown, repeated or malformed parameter is a 400.
    pub fn parse(query_string: &str) -> Result<ListQuery, ApiError> {
        const SCALARS: [&str; 10] = [
            "min_score",
            "max_score",
            "since",
            "until",
            "q",
            "sort",
            "limit",
            "cursor",
            "fields",
            "include_total",
        ];
        let mut q = ListQuery {
            filter: ListFilter::default(),
            sort: Sort::PublishedDesc,
            limit: LIMIT_DEFAULT,
            cursor: None,
            fields: None,
            include_total: false,
        };
        let mut sort_given = false;
        for (name, value) in pairs(query_string, &SCALARS, &["category", "tag", "any_tag"])? {
            let name = name.as_str();
            let value = value.as_str();
            match name {
                "min_score" => q.filter.min_score = Some(score(name, value)?),
                "max_score" => q.filter.max_score = Some(score(name, value)?),
                "since" => q.filter.since = Some(time(name, value)?),
                "until" => q.filter.until = Some(time(name, value)?),
                "limit" => q.limit = limit(name, value, LIMIT_MAX)?,
                "q" => {
                    check_length(value, 1, Q_MAX).map_err(|m| ApiError::bad_parameter(name, m))?;
                    q.filter.q = Some(value.to_owned());
                }
                "sort" => {
                    q.sort = sort(value)?;
                    sort_given = true;
                }
                "cursor" => q.cursor = Some(value.to_owned()),
                "fields" => q.fields = Some(fields(value)?),
                "include_total" => {
                    q.include_total = match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(ApiError::bad_parameter(name, "must be true or false")),
                    }
                }
                "category" => q.filter.categories.push(word(name, value)?),
                "tag" => q.filter.tags_all.push(word(name, value)?),
                _ => q.filter.tags_any.push(word(name, value)?),
            }
        }
        match (q.sort, q.filter.q.is_some()) {
            (Sort::Relevance, false) => {
                return Err(ApiError::bad_parameter(
                    "sort",
                    "relevance needs a text query q",
                ))
            }
            (_, true) if !sort_given => q.sort = Sort::Relevance,
            _ => {}
        }
        let f = &mut q.filter;
        if let (Some(min), Some(max)) = (f.min_score, f.max_score) {
            if min > max {
                return Err(ApiError::bad_parameter(
                    "min_score",
                    "must not be greater than max_score",
                ));
            }
        }
        check_window(f.since, f.until)?;
        // Sets, not lists: a canonical order makes equal filters produce equal cursors.
        for list in [&mut f.categories, &mut f.tags_all, &mut f.tags_any] {
            list.sort();
            list.dedup();
        }
        Ok(q)
    }

    /// The position the cursor points after, if it was made by this same query.
    pub fn after(&self, key: &[u8]) -> Result<Option<After>, ApiError> {
        let Some(token) = &self.cursor else {
            return Ok(None);
        };
        let bad = || ApiError::bad_parameter("cursor", "is not a cursor this service issued");
        let (payload, tag) = token.split_once('.').ok_or_else(bad)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| bad())?;
        if tag.len() != TAG_LEN {
            return Err(bad());
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| bad())?;
        mac.update(payload.as_bytes());
        mac.verify_truncated_left(&tag).map_err(|_| bad())?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad())?;
        let cursor: CursorPayload = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if cursor.q != self.fingerprint() {
            return Err(ApiError::bad_parameter(
                "cursor",
                "belongs to a query with other filters or sort; start again without a cursor",
            ));
        }
        let after = match (self.sort, cursor.k) {
            (Sort::PublishedDesc | Sort::PublishedAsc, Key::Published(t, id)) => {
                After::Published(t, id)
            }
            (Sort::ScoreDesc | Sort::ScoreAsc, Key::Score(s, t, id)) => After::Score(s, t, id),
            (Sort::Relevance, Key::Relevance(r, t, id)) => After::Relevance(r, t, id),
            _ => return Err(bad()),
        };
        Ok(Some(after))
    }

    /// A cursor for the page after `after`, signed and bound to this query's filters and sort.
    pub fn cursor_for(&self, after: &After, key: &[u8]) -> String {
        let k = match after {
            After::Published(t, id) => Key::Published(*t, *id),
            After::Score(s, t, id) => Key::Score(*s, *t, *id),
            After::Relevance(r, t, id) => Key::Relevance(*r, *t, *id),
        };
        let payload = CursorPayload {
            q: self.fingerprint(),
            k,
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap_or_default());
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(payload.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&tag[..TAG_LEN]))
    }

    /// Identifies the filters and sort (not the page size) a cursor was made for.
    fn fingerprint(&self) -> String {
        let digest = Sha256::digest(format!("{:?}|{:?}", self.filter, self.sort));
        URL_SAFE_NO_PAD.encode(&digest[..12])
    }
}

#[derive(Serialize, Deserialize)]
struct CursorPayload {
    q: String,
    k: Key,
}

#[derive(Serialize, Deserialize)]
enum Key {
    #[serde(rename = "p")]
    Published(DateTime<Utc>, Uuid),
    #[serde(rename = "s")]
    Score(i16, DateTime<Utc>, Uuid),
    #[serde(rename = "r")]
    Relevance(f32, DateTime<Utc>, Uuid),
}

/// A parsed `GET /v1/categories` or `GET /v1/tags` request.
#[derive(Debug, Clone, PartialEq)]
pub struct FacetQuery {
    pub filter: FacetFilter,
    pub limit: i64,
}

pub const FACET_LIMIT_DEFAULT: i64 = 50;

impl FacetQuery {
    /// `tags` also accepts `prefix` and `limit`.
    pub fn parse(query_string: &str, tags: bool) -> Result<FacetQuery, ApiError> {
        let scalars: &[&str] = if tags {
            &["min_score", "since", "until", "prefix", "limit"]
        } else {
            &["min_score", "since", "until"]
        };
        let mut q = FacetQuery {
            filter: FacetFilter::default(),
            limit: FACET_LIMIT_DEFAULT,
        };
        for (name, value) in pairs(query_string, scalars, &[])? {
            let (name, value) = (name.as_str(), value.as_str());
            match name {
                "min_score" => q.filter.min_score = Some(score(name, value)?),
                "since" => q.filter.since = Some(time(name, value)?),
                "until" => q.filter.until = Some(time(name, value)?),
                "limit" => q.limit = limit(name, value, LIMIT_MAX)?,
                _ => q.filter.prefix = Some(word(name, value)?),
            }
        }
        check_window(q.filter.since, q.filter.until)?;
        Ok(q)
    }
}

fn check_window(
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<(), ApiError> {
    match (since, until) {
        (Some(since), Some(until)) if since > until => {
            Err(ApiError::bad_parameter("since", "must not be after until"))
        }
        _ => Ok(()),
    }
}

fn limit(name: &str, value: &str, max: i64) -> Result<i64, ApiError> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| ApiError::bad_parameter(name, format!("must be an integer from 1 to {max}")))
}

fn fields(value: &str) -> Result<Vec<String>, ApiError> {
    let mut out = vec!["id".to_owned()];
    for field in value.split(',').map(str::trim) {
        if !ALL_FIELDS.contains(&field) {
            return Err(ApiError::bad_parameter(
                "fields",
                format!(
                    "names an unknown field {field:?} (known: {})",
                    ALL_FIELDS.join(", ")
                ),
            ));
        }
        if !out.iter().any(|f| f == field) {
            out.push(field.to_owned());
        }
    }
    Ok(out)
}

fn score(name: &str, value: &str) -> Result<i16, ApiError> {
    value
        .parse::<i16>()
        .ok()
        .filter(|s| (0..=SCORE_MAX).contains(s))
        .ok_or_else(|| ApiError::bad_parameter(name, "must be an integer between 0 and 10"))
}

fn time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    parse_timestamp(value).map_err(|m| ApiError::bad_parameter(name, m))
}

/// A category, tag or prefix, as the key it is compared by.
fn word(name: &str, value: &str) -> Result<String, ApiError> {
    check_length(value, 1, 64).map_err(|m| ApiError::bad_parameter(name, m))?;
    Ok(case_key(value))
}

fn sort(value: &str) -> Result<Sort, ApiError> {
    match value {
        "-published_at" => Ok(Sort::PublishedDesc),
        "published_at" => Ok(Sort::PublishedAsc),
        "-score" => Ok(Sort::ScoreDesc),
        "score" => Ok(Sort::ScoreAsc),
        "relevance" => Ok(Sort::Relevance),
        _ => Err(ApiError::bad_parameter(
            "sort",
            "must be one of -published_at, published_at, -score, score, relevance",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test key";

    fn after() -> After {
        After::Published(Utc::now(), Uuid::now_v7())
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
            "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            "min_score=8&max_score=7",
            "colour=red",
            "tag=",
            "category=a%00b",
            "sort=relevance",
            "q=",
            "fields=id,colour",
            "include_total=yes",
            "q=a&q=b",
        ] {
            assert!(ListQuery::parse(bad).is_err(), "{bad}");
        }
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
        let t = FacetQuery::parse("prefix=LL&limit=5&min_score=3", true).unwrap();
        assert_eq!(t.filter.prefix.as_deref(), Some("ll"));
        assert_eq!(t.limit, 5);
        assert!(FacetQuery::parse("prefix=LL", false).is_err());
        assert!(FacetQuery::parse("limit=101", true).is_err());
    }

    #[test]
    fn a_cursor_round_trips_only_for_its_own_query() {
        let q = ListQuery::parse("min_score=7").unwrap();
        let a = after();
        let cursor = q.cursor_for(&a, KEY);
        let mut next = ListQuery::parse(&format!("min_score=7&limit=50&cursor={cursor}")).unwrap();
        assert_eq!(next.after(KEY).unwrap(), Some(a));
        next.filter.min_score = Some(6);
        assert!(next.after(KEY).is_err());
        let sorted = ListQuery::parse(&format!("min_score=7&sort=-score&cursor={cursor}")).unwrap();
        assert!(sorted.after(KEY).is_err());
    }

    #[test]
    fn tampered_or_garbage_cursors_are_rejected() {
        let q = ListQuery::parse("").unwrap();
        let cursor = q.cursor_for(&after(), KEY);
        let (payload, tag) = cursor.split_once('.').unwrap();
        let mut flipped = payload.as_bytes().to_vec();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{}.{tag}", String::from_utf8(flipped).unwrap());
        for bad in [
            tampered.as_str(),
            "garbage",
            "a.b",
            "",
            &cursor[..cursor.len() - 2],
        ] {
            let q = ListQuery {
                cursor: Some(bad.to_owned()),
                ..q.clone()
            };
            assert!(q.after(KEY).is_err(), "{bad}");
        }
        let other_key = ListQuery {
            cursor: Some(cursor),
            ..q
        };
        assert!(other_key.after(b"another key").is_err());
    }
}
