//! A signal's client-settable fields, parsed from untyped JSON into values that cannot be invalid.
//!
//! Parsing walks the JSON object by hand instead of through `serde::Deserialize` so that every bad
//! field is reported in one answer (serde stops at the first) and unknown fields are named.

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::FieldError;

pub const TITLE_MAX: usize = 300;
pub const SUMMARY_MAX: usize = 2_000;
pub const BODY_MAX: usize = 20_000;
pub const CATEGORY_MAX: usize = 64;
pub const SLUG_MAX: usize = 120;
pub const SECTIONS_MAX: usize = 20;
pub const HEADING_MAX: usize = 200;
pub const SECTION_BODY_MAX: usize = 20_000;
pub const TAGS_MAX: usize = 20;
pub const TAG_MAX: usize = 64;
pub const SOURCE_URL_MAX: usize = 2_048;
pub const SCORE_MAX: i16 = 10;

/// The fields a client may send, in the order they are documented.
pub const CLIENT_FIELDS: [&str; 10] = [
    "slug",
    "title",
    "summary",
    "body",
    "score",
    "category",
    "published_at",
    "sections",
    "tags",
    "source_url",
];
/// Fields the server sets; sending one is an error, not silently ignored.
pub const SERVER_FIELDS: [&str; 3] = ["id", "created_at", "updated_at"];
/// Every top-level field of a signal as returned (what `fields` may name).
pub const ALL_FIELDS: [&str; 13] = [
    "id",
    "slug",
    "title",
    "summary",
    "body",
    "score",
    "category",
    "published_at",
    "sections",
    "tags",
    "source_url",
    "created_at",
    "updated_at",
];

/// One titled section of a signal's body, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"heading": "Why It Matters", "body": "From an engineering perspective, ..."}))]
pub struct Section {
    /// 1–200 characters after trimming.
    #[schema(min_length = 1, max_length = 200)]
    pub heading: String,
    /// 1–20,000 characters.
    #[schema(min_length = 1, max_length = 20000)]
    pub body: String,
}

/// A valid set of client fields: what POST creates and PUT writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalDraft {
    /// `None`: derive one from the title (create) or keep the current one (replace).
    pub slug: Option<String>,
    pub title: String,
    pub summary: String,
    pub body: String,
    pub score: i16,
    pub category: String,
    /// `None`: now (create) or keep the current time (replace).
    pub published_at: Option<DateTime<Utc>>,
    pub sections: Vec<Section>,
    pub tags: Vec<String>,
    pub source_url: Option<String>,
}

impl SignalDraft {
    /// Parses a request body. Every problem is collected; `Err` is never empty.
    pub fn parse(value: &Value) -> Result<SignalDraft, Vec<FieldError>> {
        let Some(object) = value.as_object() else {
            return Err(vec![FieldError::new("", "the body must be a JSON object")]);
        };
        let mut p = Parser {
            object,
            errors: Vec::new(),
        };
        for key in object.keys() {
            if SERVER_FIELDS.contains(&key.as_str()) {
                p.error(key, "is set by the server and cannot be sent");
            } else if !CLIENT_FIELDS.contains(&key.as_str()) {
                p.error(key, "is not a field of a signal");
            }
        }
        let slug = p.slug();
        let title = p.text("title", true, TITLE_MAX, true);
        let summary = p.text("summary", false, SUMMARY_MAX, false);
        let body = p.text("body", false, BODY_MAX, false);
        let score = p.score();
        let category = p.text("category", true, CATEGORY_MAX, true);
        let published_at = p.published_at();
        let sections = p.sections();
        let tags = p.tags();
        let source_url = p.source_url();
        if !p.errors.is_empty() {
            return Err(p.errors);
        }
        // Every required value is Some when no error was recorded.
        Ok(SignalDraft {
            slug,
            title: title.unwrap_or_default(),
            summary: summary.unwrap_or_default(),
            body: body.unwrap_or_default(),
            score: score.unwrap_or_default(),
            category: category.unwrap_or_default(),
            published_at,
            sections,
            tags,
            source_url,
        })
    }
}

struct Parser<'a> {
    object: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Parser<'a> {
    fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// The value of a field, treating JSON `null` as absent.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.object.get(field).filter(|v| !v.is_null())
    }

    /// A string field: `Some` (possibly defaulted to "") unless it is missing-and-required or bad.
    fn text(&mut self, field: &str, required: bool, max: usize, trim: bool) -> Option<String> {
        match self.get(field) {
            None if required => {
                self.error(field, "is required");
                None
            }
            None => Some(String::new()),
            Some(Value::String(s)) => {
                let s = if trim { s.trim() } else { s.as_str() };
                match check_length(s, if required { 1 } else { 0 }, max) {
                    Ok(()) => Some(s.to_owned()),
                    Err(m) => {
                        self.error(field, m);
                        None
                    }
                }
            }
            Some(_) => {
                self.error(field, "must be a string");
                None
            }
        }
    }

    fn slug(&mut self) -> Option<String> {
        match self.get("slug")? {
            Value::String(s) => match check_slug(s) {
                Ok(()) => Some(s.clone()),
                Err(m) => {
                    self.error("slug", m);
                    None
                }
            },
            _ => {
                self.error("slug", "must be a string");
                None
            }
        }
    }

    fn score(&mut self) -> Option<i16> {
        match self.get("score") {
            None => self.error("score", "is required"),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(s) if (0..=i64::from(SCORE_MAX)).contains(&s) => return Some(s as i16),
                Some(_) => self.error("score", "must be between 0 and 10"),
                None => self.error("score", "must be an integer between 0 and 10"),
            },
            Some(_) => self.error("score", "must be an integer between 0 and 10"),
        }
        None
    }

    fn published_at(&mut self) -> Option<DateTime<Utc>> {
        match self.get("published_at")? {
            Value::String(s) => match parse_timestamp(s) {
                Ok(t) => Some(t),
                Err(m) => {
                    self.error("published_at", m);
                    None
                }
            },
            _ => {
                self.error("published_at", "must be an RFC 3339 string");
                None
            }
        }
    }

    fn sections(&mut self) -> Vec<Section> {
        let Some(value) = self.get("sections") else {
            return Vec::new();
        };
        let Value::Array(items) = value else {
            self.error("sections", "must be an array of {heading, body} objects");
            return Vec::new();
        };
        if items.len() > SECTIONS_MAX {
            self.error(
                "sections",
                format!("must have at most {SECTIONS_MAX} items"),
            );
            return Vec::new();
        }
        let mut sections = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Some(obj) = item.as_object() else {
                self.error(
                    &format!("sections[{i}]"),
                    "must be an object with heading and body",
                );
                continue;
            };
            for key in obj.keys() {
                if key != "heading" && key != "body" {
                    self.error(
                        &format!("sections[{i}].{key}"),
                        "is not a field of a section",
                    );
                }
            }
            let heading = self.section_text(obj, i, "heading", HEADING_MAX, true);
            let body = self.section_text(obj, i, "body", SECTION_BODY_MAX, false);
            if let (Some(heading), Some(body)) = (heading, body) {
                sections.push(Section { heading, body });
            }
        }
        sections
    }

    fn section_text(
        &mut self,
        obj: &Map<String, Value>,
        i: usize,
        key: &str,
        max: usize,
        trim: bool,
    ) -> Option<String> {
        let field = format!("sections[{i}].{key}");
        match obj.get(key) {
            Some(Value::String(s)) => {
                let s = if trim { s.trim() } else { s.as_str() };
                match check_length(s, 1, max) {
                    Ok(()) => Some(s.to_owned()),
                    Err(m) => {
                        self.error(&field, m);
                        None
                    }
                }
            }
            None | Some(Value::Null) => {
                self.error(&field, "is required");
                None
            }
            Some(_) => {
                self.error(&field, "must be a string");
                None
            }
        }
    }

    fn tags(&mut self) -> Vec<String> {
        let Some(value) = self.get("tags") else {
            return Vec::new();
        };
        let Value::Array(items) = value else {
            self.error("tags", "must be an array of strings");
            return Vec::new();
        };
        if items.len() > TAGS_MAX {
            self.error("tags", format!("must have at most {TAGS_MAX} items"));
            return Vec::new();
        }
        let mut tags: Vec<String> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let field = format!("tags[{i}]");
            let Value::String(s) = item else {
                self.error(&field, "must be a string");
                continue;
            };
            let tag = s.trim();
            if let Err(m) = check_length(tag, 1, TAG_MAX) {
                self.error(&field, m);
                continue;
            }
            // Case-insensitive duplicates are dropped; the first spelling is kept.
            let key = tag.to_lowercase();
            if !tags.iter().any(|t| t.to_lowercase() == key) {
                tags.push(tag.to_owned());
            }
        }
        tags
    }

    fn source_url(&mut self) -> Option<String> {
        match self.get("source_url")? {
            Value::String(s) => match check_url(s.trim()) {
                Ok(()) => Some(s.trim().to_owned()),
                Err(m) => {
                    self.error("source_url", m);
                    None
                }
            },
            _ => {
                self.error("source_url", "must be a string or null");
                None
            }
        }
    }
}

/// Length in characters, and no NUL (PostgreSQL text cannot hold it).
pub fn check_length(s: &str, min: usize, max: usize) -> Result<(), String> {
    if s.contains('\0') {
        return Err("must not contain NUL characters".into());
    }
    let n = s.chars().count();
    if n < min {
        Err("must not be empty".into())
    } else if n > max {
        Err(format!("must be at most {max} characters"))
    } else {
        Ok(())
    }
}

/// `^[a-z0-9]+(-[a-z0-9]+)*$`, 1–120 characters, and not shaped like a UUID
/// (so `/v1/signals/{id_or_slug}` can never be ambiguous).
pub fn check_slug(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > SLUG_MAX {
        return Err(format!("must be 1 to {SLUG_MAX} characters"));
    }
    let well_formed = s.split('-').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if !well_formed {
        return Err(
            "must be lowercase letters and digits in words joined by single hyphens".into(),
        );
    }
    if uuid::Uuid::try_parse(s).is_ok() {
        return Err("must not be a UUID".into());
    }
    Ok(())
}

/// A slug derived from a title: ASCII letters and digits in lower case, every other run of
/// characters one hyphen, at most 100 characters so a uniqueness suffix still fits.
pub fn slug_from_title(title: &str) -> String {
    const DERIVED_MAX: usize = 100;
    let mut slug = String::with_capacity(title.len().min(DERIVED_MAX));
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= DERIVED_MAX {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() || uuid::Uuid::try_parse(slug).is_ok() {
        "signal".to_owned()
    } else {
        slug.to_owned()
    }
}

fn check_url(s: &str) -> Result<(), String> {
    if s.chars().count() > SOURCE_URL_MAX {
        return Err(format!("must be at most {SOURCE_URL_MAX} characters"));
    }
    // The URL parser would quietly drop or encode these; what is stored is the text as sent.
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    match url::Url::parse(s) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => Ok(()),
        _ => Err("must be an absolute http or https URL".into()),
    }
}

/// RFC 3339 with an explicit offset, normalised to UTC at PostgreSQL's microsecond precision.
/// Years 1 to 9999 in UTC: what RFC 3339 can write back (an offset can push a valid input out).
pub fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc).trunc_subsecs(6))
        .map_err(|_| "must be an RFC 3339 date-time with an offset, like 2026-05-06T18:02:00Z")?;
    if !(1..=9999).contains(&t.year()) {
        return Err("must be between the years 1 and 9999 in UTC".into());
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn minimal() -> Value {
        json!({"title": "  A title  ", "score": 7, "category": " Industry "})
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_minimal_signal_is_trimmed_and_defaulted() {
        let d = SignalDraft::parse(&minimal()).unwrap();
        assert_eq!(d.title, "A title");
        assert_eq!(d.category, "Industry");
        assert_eq!(d.summary, "");
        assert_eq!(d.slug, None);
        assert_eq!(d.published_at, None);
        assert!(d.sections.is_empty() && d.tags.is_empty());
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let errors = SignalDraft::parse(&json!({
            "title": "", "score": 11, "category": 3, "slug": "Bad Slug",
            "published_at": "yesterday", "source_url": "ftp://x", "colour": "red", "id": "x"
        }))
        .unwrap_err();
        let mut f = fields(&errors);
        f.sort();
        assert_eq!(
            f,
            [
                "category",
                "colour",
                "id",
                "published_at",
                "score",
                "slug",
                "source_url",
                "title"
            ]
        );
    }

    #[test]
    fn score_must_be_an_integer_in_range() {
        for bad in [json!(-1), json!(11), json!(7.5), json!("7"), json!(true)] {
            let mut v = minimal();
            v["score"] = bad.clone();
            assert_eq!(
                fields(&SignalDraft::parse(&v).unwrap_err()),
                ["score"],
                "{bad}"
            );
        }
        for good in [0, 10] {
            let mut v = minimal();
            v["score"] = json!(good);
            assert_eq!(SignalDraft::parse(&v).unwrap().score, good);
        }
    }

    #[test]
    fn tags_are_trimmed_and_deduplicated_case_insensitively() {
        let mut v = minimal();
        v["tags"] = json!([" LLM ", "llm", "DeepSeek", "deepseek", "AI"]);
        assert_eq!(
            SignalDraft::parse(&v).unwrap().tags,
            ["LLM", "DeepSeek", "AI"]
        );
        v["tags"] = json!(["ok", " ", "x".repeat(65), 5]);
        assert_eq!(
            fields(&SignalDraft::parse(&v).unwrap_err()),
            ["tags[1]", "tags[2]", "tags[3]"]
        );
        v["tags"] = json!(vec!["t"; 21]);
        assert_eq!(fields(&SignalDraft::parse(&v).unwrap_err()), ["tags"]);
    }

    #[test]
    fn sections_keep_order_and_name_each_bad_part() {
        let mut v = minimal();
        v["sections"] = json!([{"heading": "B", "body": "2"}, {"heading": "A", "body": "1"}]);
        let d = SignalDraft::parse(&v).unwrap();
        assert_eq!(d.sections[0].heading, "B");
        v["sections"] = json!([{"heading": " ", "body": "x", "extra": 1}, "no", {"heading": "h"}]);
        assert_eq!(
            fields(&SignalDraft::parse(&v).unwrap_err()),
            [
                "sections[0].extra",
                "sections[0].heading",
                "sections[1]",
                "sections[2].body"
            ]
        );
    }

    #[test]
    fn all_fields_are_the_client_and_server_fields() {
        let mut all: Vec<&str> = ALL_FIELDS.to_vec();
        let mut parts: Vec<&str> = CLIENT_FIELDS
            .iter()
            .chain(&SERVER_FIELDS)
            .copied()
            .collect();
        all.sort();
        parts.sort();
        assert_eq!(all, parts);
    }

    #[test]
    fn nul_characters_are_refused_everywhere() {
        let mut v = minimal();
        v["title"] = json!("a\0b");
        v["tags"] = json!(["x\0"]);
        v["sections"] = json!([{"heading": "h", "body": "\0"}]);
        assert_eq!(
            fields(&SignalDraft::parse(&v).unwrap_err()),
            ["title", "sections[0].body", "tags[0]"]
        );
    }

    #[test]
    fn lengths_are_counted_in_characters() {
        let mut v = minimal();
        v["title"] = json!("é".repeat(300));
        assert!(SignalDraft::parse(&v).is_ok());
        v["title"] = json!("é".repeat(301));
        assert_eq!(fields(&SignalDraft::parse(&v).unwrap_err()), ["title"]);
    }

    #[test]
    fn timestamps_need_an_offset_and_become_utc() {
        let t = parse_timestamp("2026-05-06T20:02:00.1234567+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-05-06T18:02:00.123456+00:00");
        assert!(parse_timestamp("2026-05-06T18:02:00").is_err());
        assert!(parse_timestamp("2026-05-06").is_err());
        assert!(parse_timestamp("9999-12-31T23:00:00-05:00").is_err());
        assert!(parse_timestamp("0000-01-01T00:30:00+01:00").is_err());
    }

    #[test]
    fn slugs_follow_the_pattern_and_are_never_uuids() {
        assert!(check_slug("deepseek-targets-45b").is_ok());
        for bad in [
            "",
            "-a",
            "a-",
            "a--b",
            "A",
            "a_b",
            "01968a4e-1c40-7cc3-9a51-4b1f0e6e2d10",
        ] {
            assert!(check_slug(bad).is_err(), "{bad}");
        }
        assert!(check_slug(&"a".repeat(121)).is_err());
    }

    #[test]
    fn slugs_derive_from_titles() {
        assert_eq!(
            slug_from_title("DeepSeek targets $45B valuation!"),
            "deepseek-targets-45b-valuation"
        );
        assert_eq!(slug_from_title("¿Qué?"), "qu");
        assert_eq!(slug_from_title("!!!"), "signal");
        let long = slug_from_title(&"word ".repeat(100));
        assert!(long.len() <= 100 && check_slug(&long).is_ok());
    }

    #[test]
    fn source_url_must_be_absolute_http() {
        let mut v = minimal();
        v["source_url"] = json!("https://example.com/story");
        assert!(SignalDraft::parse(&v).is_ok());
        v["source_url"] = json!(null);
        assert_eq!(SignalDraft::parse(&v).unwrap().source_url, None);
        for bad in [
            "/relative",
            "mailto:x@y.z",
            "https://",
            "not a url",
            "https://e.com/a\0",
            "https://exa\nmple.com",
        ] {
            v["source_url"] = json!(bad);
            assert_eq!(
                fields(&SignalDraft::parse(&v).unwrap_err()),
                ["source_url"],
                "{bad}"
            );
        }
    }
}
