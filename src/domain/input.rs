//! What clients send to create or replace a signal, parsed from untyped JSON into values that
//! cannot be invalid — and the JSON Schema of it, made from the same rules, so the OpenAPI
//! document says exactly what the parser accepts.
//!
//! Parsing walks the JSON object by hand instead of through `serde::Deserialize` so that every bad
//! field is reported in one answer (serde stops at the first) and unknown fields are named.

use std::borrow::Cow;
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, SubsecRound, Utc};
use serde_json::{json, Map, Value};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::signal::{
    check_slug, is_client_field, merge_patch, Section, Signal, SERVER_FIELDS, SLUG_MAX,
};
use super::FieldError;

/// The characters `str::trim` removes (Unicode `White_Space`), as a regular-expression class
/// body; a unit test checks it against `char::is_whitespace` for every character.
pub const WHITESPACE_CLASS: &str =
    r"\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// A text field's rule: what the parser checks and what the schema says, from one value.
#[derive(Debug, Clone, Copy)]
pub struct Text {
    /// Least characters; 1 also means "not only white space" when `trim` is set.
    pub min: usize,
    /// Most characters, after trimming when `trim` is set.
    pub max: usize,
    /// Leading and trailing white space is removed before storing.
    pub trim: bool,
}

pub const TITLE: Text = Text {
    min: 1,
    max: 300,
    trim: true,
};
pub const SUMMARY: Text = Text {
    min: 0,
    max: 2_000,
    trim: false,
};
pub const BODY: Text = Text {
    min: 0,
    max: 20_000,
    trim: false,
};
pub const CATEGORY: Text = Text {
    min: 1,
    max: 64,
    trim: true,
};
pub const HEADING: Text = Text {
    min: 1,
    max: 200,
    trim: true,
};
pub const SECTION_BODY: Text = Text {
    min: 1,
    max: 20_000,
    trim: false,
};
/// A tag, and every category, tag or prefix a filter names.
pub const TAG: Text = Text {
    min: 1,
    max: 64,
    trim: true,
};
pub const SECTIONS_MAX: usize = 20;
pub const TAGS_MAX: usize = 20;
pub const SOURCE_URL_MAX: usize = 2_048;
pub const SCORE_MIN: i16 = 0;
pub const SCORE_MAX: i16 = 10;

/// An absolute http(s) URL of a host name, an IPv4 address or an IPv6 address in brackets, an
/// optional port and a path, query and fragment of visible ASCII characters.
pub const SOURCE_URL_PATTERN: &str = concat!(
    r"^[Hh][Tt][Tt][Pp][Ss]?://",
    url_host_and_port!(),
    r"([/?#][!-~]*)?$"
);
/// What `check_slug` accepts: words of lowercase letters and digits joined by single hyphens,
/// neither an id (`path_id`: a UUID with hyphens) nor the name of another resource under
/// `/v1/signals/`.
pub const SLUG_PATTERN: &str = concat!(
    r"^(?!(batch|stream)$)",
    r"(?![0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$)",
    r"[a-z0-9]+(-[a-z0-9]+)*$"
);

static SOURCE_URL_REGEX: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(SOURCE_URL_PATTERN).expect("a valid pattern"));

impl Text {
    /// The value to store, or what is wrong with it.
    pub fn check<'s>(&self, s: &'s str) -> Result<&'s str, String> {
        if s.contains('\0') {
            return Err("must not contain NUL characters".into());
        }
        let kept = if self.trim { s.trim() } else { s };
        if kept.chars().count() > self.max {
            return Err(match self.trim {
                true => format!(
                    "must be at most {} characters without leading and trailing white space",
                    self.max
                ),
                false => format!("must be at most {} characters", self.max),
            });
        }
        if kept.chars().count() < self.min {
            return Err(match self.trim {
                true => "must not be empty or only white space".into(),
                false => "must not be empty".into(),
            });
        }
        Ok(kept)
    }

    /// The pattern the schema gives: no NUL, and when trimmed, between `min` (0 or 1) and `max`
    /// characters between the white space around them (which the lengths of a JSON schema
    /// cannot say: they count it).
    pub fn pattern(&self) -> String {
        if !self.trim {
            return "^[^\\u0000]*$".to_owned();
        }
        let edge = format!("[^\\u0000{WHITESPACE_CLASS}]");
        let kept = match self.max {
            0 => String::new(),
            1 => edge.clone(),
            max => format!("{edge}([^\\u0000]{{0,{}}}{edge})?", max - 2),
        };
        let kept = match self.min {
            0 if !kept.is_empty() => format!("({kept})?"),
            _ => kept,
        };
        format!("^[{WHITESPACE_CLASS}]*{kept}[{WHITESPACE_CLASS}]*$")
    }

    pub fn schema(&self, description: &str) -> ObjectBuilder {
        let trimmed = match self.trim {
            true => " Leading and trailing white space is removed; the lengths count what is left.",
            false => "",
        };
        let builder = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(self.min))
            .pattern(Some(self.pattern()))
            .description(Some(format!("{description}{trimmed}").trim().to_owned()));
        match self.trim {
            // The pattern bounds what is left once trimmed; any white space may surround it.
            true => builder,
            false => builder.max_length(Some(self.max)),
        }
    }
}

/// A valid set of client fields: what POST creates and PUT writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalInput {
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

impl SignalInput {
    /// Parses a request body. Every problem is collected; `Err` is never empty.
    pub fn parse(value: &Value) -> Result<SignalInput, Vec<FieldError>> {
        let Some(object) = value.as_object() else {
            return Err(vec![FieldError::new("", "the body must be a JSON object")]);
        };
        let mut p = Parser {
            object,
            errors: unknown_fields(object),
        };
        let slug = p.slug();
        let title = p.text("title", TITLE, true);
        let summary = p.text("summary", SUMMARY, false);
        let body = p.text("body", BODY, false);
        let score = p.score();
        let category = p.text("category", CATEGORY, true);
        let published_at = p.published_at();
        let sections = p.sections();
        let tags = p.tags();
        let source_url = p.source_url();
        if !p.errors.is_empty() {
            return Err(p.errors);
        }
        // Every required value is Some when no error was recorded.
        Ok(SignalInput {
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

    /// The names of the fields the schema (and so the parser) knows, in schema order.
    pub fn field_names() -> Vec<String> {
        match Self::schema() {
            RefOr::T(Schema::Object(o)) => o.properties.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

/// A JSON Merge Patch (RFC 7396) of a signal's client fields, checked before it is applied:
/// an object whose fields each pass the rules on their own (so a bad field is 422 before the
/// signal is looked up); the merged result is validated like a create.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalPatch(Map<String, Value>);

impl SignalPatch {
    pub fn parse(patch: Value) -> Result<SignalPatch, Vec<FieldError>> {
        let Value::Object(fields) = patch else {
            return Err(vec![FieldError::new(
                "",
                "a patch of a signal must be a JSON object of the fields to change",
            )]);
        };
        // A null removes a field, so merging would hide an unknown one: they are named here.
        let mut errors = unknown_fields(&fields);
        // Applied to any valid signal, a patch of valid fields gives a valid signal, except
        // where it resets a required field (which it may not do to any signal either).
        let known: Map<String, Value> = fields
            .iter()
            .filter(|(k, _)| is_client_field(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut probe = json!({"title": "t", "score": 0, "category": "c"});
        merge_patch(&mut probe, &Value::Object(known));
        if let Err(invalid) = SignalInput::parse(&probe) {
            errors.extend(invalid);
        }
        match errors.is_empty() {
            true => Ok(SignalPatch(fields)),
            false => Err(errors),
        }
    }

    /// The client fields of `current` with the patch applied.
    pub fn apply(&self, current: &Signal) -> Result<SignalInput, Vec<FieldError>> {
        let mut merged = current.client_fields();
        merge_patch(&mut merged, &Value::Object(self.0.clone()));
        SignalInput::parse(&merged)
    }
}

/// The schema of a patch: [`SignalInput`]'s, with nothing required.
impl PartialSchema for SignalPatch {
    fn schema() -> RefOr<Schema> {
        let mut schema = SignalInput::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.required.clear();
            object.description = Some(
                "A JSON Merge Patch (RFC 7396) of the client fields: the fields to change, \
                 `null` to reset one to its default. The result is validated like a create."
                    .into(),
            );
            object.examples = vec![json!({"score": 8, "tags": ["DeepSeek", "Funding"]})];
        }
        schema
    }
}

impl ToSchema for SignalPatch {}

/// The schema of the body of a create or replace, from the rules the parser applies.
impl PartialSchema for SignalInput {
    fn schema() -> RefOr<Schema> {
        let section = ObjectBuilder::new()
            .property("heading", HEADING.schema("The section's title."))
            .required("heading")
            .property("body", SECTION_BODY.schema("The section's text."))
            .required("body")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        ObjectBuilder::new()
            .description(Some(
                "The fields a client sends to create or replace a signal. Unknown fields are \
                 rejected (422), and so are the fields the server sets (`id`, `created_at`, \
                 `updated_at`). `null` is the same as leaving a field out.",
            ))
            .property(
                "slug",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .min_length(Some(1))
                    .max_length(Some(SLUG_MAX))
                    .pattern(Some(SLUG_PATTERN))
                    .description(Some(
                        "Unique. Derived from the title when absent (a suffix keeps derived \
                         slugs unique); on replace, absent keeps the current one.",
                    )),
            )
            .property("title", TITLE.schema(""))
            .required("title")
            .property(
                "summary",
                nullable(SUMMARY.schema("The analysis blurb; default \"\".")),
            )
            .property(
                "body",
                nullable(BODY.schema("The lede paragraph(s); default \"\".")),
            )
            .property(
                "score",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(SCORE_MIN))
                    .maximum(Some(SCORE_MAX))
                    .description(Some("Out of 10.")),
            )
            .required("score")
            .property(
                "category",
                CATEGORY.schema(
                    "Filters match it case-insensitively, however its accents are composed \
                     (compared in Unicode's NFC).",
                ),
            )
            .required("category")
            .property(
                "published_at",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                    .description(Some(
                        "RFC 3339 with an offset, years 1 to 9999 in UTC; stored in UTC at \
                         microsecond precision. Default: now (create) or unchanged (replace).",
                    )),
            )
            .property(
                "sections",
                ArrayBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
                    .items(section)
                    .max_items(Some(SECTIONS_MAX))
                    .description(Some("Titled sections, in order.")),
            )
            .property(
                "tags",
                ArrayBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
                    .items(TAG.schema(""))
                    .max_items(Some(TAGS_MAX))
                    .description(Some(
                        "Duplicates that differ only in case or in how accents are composed \
                         (Unicode NFC) are dropped; the first spelling is kept. Filters match \
                         tags the same way.",
                    )),
            )
            .property(
                "source_url",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .max_length(Some(SOURCE_URL_MAX))
                    .pattern(Some(SOURCE_URL_PATTERN))
                    .description(Some("An absolute http or https URL.")),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .examples([crate::domain::examples::input()])
            .into()
    }
}

impl ToSchema for SignalInput {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SignalInput")
    }
}

fn nullable(text: ObjectBuilder) -> ObjectBuilder {
    text.schema_type(SchemaType::from_iter([Type::String, Type::Null]))
}

/// An error for each key of a body that is not a client field of a signal.
fn unknown_fields(object: &Map<String, Value>) -> Vec<FieldError> {
    object
        .keys()
        .filter(|k| !is_client_field(k))
        .map(|k| match SERVER_FIELDS.contains(&k.as_str()) {
            true => FieldError::new(k, "is set by the server and cannot be sent"),
            false => FieldError::new(k, "is not a field of a signal"),
        })
        .collect()
}

/// Reads the fields of a request body, collecting every problem (shared by the bodies of
/// signals and of webhook subscriptions).
pub(crate) struct Parser<'a> {
    object: &'a Map<String, Value>,
    pub errors: Vec<FieldError>,
}

impl<'a> Parser<'a> {
    /// A parser of `object`, starting with the errors already found (unknown fields).
    pub fn new(object: &'a Map<String, Value>, errors: Vec<FieldError>) -> Self {
        Parser { object, errors }
    }

    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// The value of a field, treating JSON `null` as absent.
    pub fn get(&self, field: &str) -> Option<&'a Value> {
        self.object.get(field).filter(|v| !v.is_null())
    }

    /// A string field: `Some` (possibly defaulted to "") unless it is missing-and-required or bad.
    pub fn text(&mut self, field: &str, rule: Text, required: bool) -> Option<String> {
        match self.get(field) {
            None if required => {
                self.error(field, "is required");
                None
            }
            None => Some(String::new()),
            Some(Value::String(s)) => match rule.check(s) {
                Ok(kept) => Some(kept.to_owned()),
                Err(m) => {
                    self.error(field, m);
                    None
                }
            },
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
        self.score_field("score", true)
    }

    /// A score (0 to 10) in `field`; `None` when absent (an error if `required`) or bad.
    pub fn score_field(&mut self, field: &str, required: bool) -> Option<i16> {
        let range = format!("must be an integer between {SCORE_MIN} and {SCORE_MAX}");
        match self.get(field) {
            None if required => self.error(field, "is required"),
            None => {}
            // JSON does not tell 7 from 7.0; JSON Schema calls both integers.
            Some(Value::Number(n)) => match n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                    .map(|f| f as i64)
            }) {
                Some(s) if (i64::from(SCORE_MIN)..=i64::from(SCORE_MAX)).contains(&s) => {
                    return Some(s as i16)
                }
                _ => self.error(field, range),
            },
            Some(_) => self.error(field, range),
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
            let heading = self.section_text(obj, i, "heading", HEADING);
            let body = self.section_text(obj, i, "body", SECTION_BODY);
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
        rule: Text,
    ) -> Option<String> {
        let field = format!("sections[{i}].{key}");
        match obj.get(key) {
            Some(Value::String(s)) => match rule.check(s) {
                Ok(kept) => Some(kept.to_owned()),
                Err(m) => {
                    self.error(&field, m);
                    None
                }
            },
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
        self.words("tags", TAG, TAGS_MAX)
    }

    /// An array of at most `max` texts of `rule` in `field` (absent: empty); duplicates that
    /// differ only in case are dropped, the first spelling kept.
    pub fn words(&mut self, field: &str, rule: Text, max: usize) -> Vec<String> {
        let Some(value) = self.get(field) else {
            return Vec::new();
        };
        let Value::Array(items) = value else {
            self.error(field, "must be an array of strings");
            return Vec::new();
        };
        if items.len() > max {
            self.error(field, format!("must have at most {max} items"));
            return Vec::new();
        }
        let mut words: Vec<String> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = format!("{field}[{i}]");
            let Value::String(s) = item else {
                self.error(&at, "must be a string");
                continue;
            };
            let word = match rule.check(s) {
                Ok(word) => word,
                Err(m) => {
                    self.error(&at, m);
                    continue;
                }
            };
            let key = super::query::case_key(word);
            if !words.iter().any(|w| super::query::case_key(w) == key) {
                words.push(word.to_owned());
            }
        }
        words
    }

    fn source_url(&mut self) -> Option<String> {
        match self.get("source_url")? {
            Value::String(s) => match check_url(s) {
                Ok(()) => Some(s.clone()),
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

fn check_url(s: &str) -> Result<(), String> {
    if s.chars().count() > SOURCE_URL_MAX {
        return Err(format!("must be at most {SOURCE_URL_MAX} characters"));
    }
    if !SOURCE_URL_REGEX.is_match(s) {
        return Err(
            "must be an absolute http or https URL of a host name, an IPv4 address or an IPv6 \
             address in brackets, of visible ASCII characters"
                .into(),
        );
    }
    Ok(())
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

/// A batch's parsed body: the items and what to do with slugs that are taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInput {
    pub items: Vec<SignalInput>,
    pub on_conflict: super::query::OnConflict,
}

pub const BATCH_MAX_ITEMS: usize = 1000;

impl BatchInput {
    /// Parses a batch body (or, with `parse_item`, lines of `signals import`); every problem of
    /// every item is reported, with the item's index.
    pub fn parse(body: &Value) -> Result<BatchInput, Vec<FieldError>> {
        use super::query::OnConflict;
        let invalid = |field: &str, message: &str| vec![FieldError::new(field, message)];
        let object = body
            .as_object()
            .ok_or_else(|| invalid("", "the body must be a JSON object with items"))?;
        if let Some(unknown) = object.keys().find(|k| *k != "items" && *k != "on_conflict") {
            return Err(invalid(unknown, "is not a field of a batch"));
        }
        let on_conflict = match object.get("on_conflict") {
            None | Some(Value::Null) => OnConflict::Error,
            Some(Value::String(s)) => OnConflict::from_name(s).ok_or_else(|| {
                invalid(
                    "on_conflict",
                    &format!("must be one of {}", OnConflict::NAMES.join(", ")),
                )
            })?,
            Some(_) => {
                return Err(invalid(
                    "on_conflict",
                    &format!("must be one of {}", OnConflict::NAMES.join(", ")),
                ))
            }
        };
        let items = match object.get("items") {
            Some(Value::Array(items)) => items,
            _ => return Err(invalid("items", "is required: an array of signals")),
        };
        if items.is_empty() || items.len() > BATCH_MAX_ITEMS {
            return Err(invalid(
                "items",
                &format!("must hold 1 to {BATCH_MAX_ITEMS} signals"),
            ));
        }
        let mut parsed = Vec::with_capacity(items.len());
        let mut errors = Vec::new();
        for (index, item) in items.iter().enumerate() {
            match parse_item(item) {
                Ok(input) => parsed.push(input),
                Err(item_errors) => errors.extend(item_errors.into_iter().map(|e| FieldError {
                    index: Some(index),
                    ..e
                })),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(BatchInput {
            items: parsed,
            on_conflict,
        })
    }
}

/// Parses one item of a batch (or one line of `signals import`), validated like a single
/// create. An explicit slug may repeat in a batch: the later item meets the signal the earlier
/// one wrote, as it would meet any existing signal (`on_conflict` decides).
pub fn parse_item(item: &Value) -> Result<SignalInput, Vec<FieldError>> {
    SignalInput::parse(item)
}

impl PartialSchema for BatchInput {
    fn schema() -> RefOr<Schema> {
        use super::query::OnConflict;
        ObjectBuilder::new()
            .description(Some("A batch of signals. Unknown fields are rejected."))
            .property(
                "items",
                ArrayBuilder::new()
                    .items(SignalInput::schema())
                    .min_items(Some(1))
                    .max_items(Some(BATCH_MAX_ITEMS))
                    .description(Some(
                        "The signals, each validated like a single create. An explicit slug \
                         may repeat: a later item meets the signal an earlier one wrote, as it \
                         would meet any existing signal (`on_conflict` decides).",
                    )),
            )
            .required("items")
            .property(
                "on_conflict",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .enum_values(Some(
                        OnConflict::NAMES
                            .iter()
                            .copied()
                            .map(Value::from)
                            .chain([Value::Null]),
                    ))
                    .default(Some(json!("error")))
                    .description(Some(
                        "What an item whose slug another signal already has does: `error` \
                         (default) rejects the whole batch with 409 naming the items; `skip` \
                         leaves the existing signal; `update` replaces its fields (only a signal \
                         this key created, or any with an admin key).",
                    )),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .examples([json!({"items": [crate::domain::examples::input()], "on_conflict": "skip"})])
            .into()
    }
}

impl ToSchema for BatchInput {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("BatchRequest")
    }
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
        let d = SignalInput::parse(&minimal()).unwrap();
        assert_eq!(d.title, "A title");
        assert_eq!(d.category, "Industry");
        assert_eq!(d.summary, "");
        assert_eq!(d.slug, None);
        assert_eq!(d.published_at, None);
        assert!(d.sections.is_empty() && d.tags.is_empty());
    }

    #[test]
    fn the_schema_names_exactly_the_client_fields() {
        let mut names = SignalInput::field_names();
        names.sort();
        let mut client: Vec<String> = crate::domain::signal::ALL_FIELDS
            .iter()
            .filter(|f| is_client_field(f))
            .map(|f| f.to_string())
            .collect();
        client.sort();
        assert_eq!(names, client);
    }

    #[test]
    fn the_schema_pattern_accepts_what_the_parser_accepts() {
        let long = "x".repeat(300);
        let samples = [
            String::new(),
            "   ".into(),
            "x".into(),
            " x ".into(),
            "a b".into(),
            "a\0b".into(),
            long.clone(),
            format!("  {long}\u{3000}"),
            format!("{long}y"),
            format!(" {}y ", "x".repeat(62)),
            format!(" {}yz ", "x".repeat(62)),
        ];
        for text in [TITLE, CATEGORY, HEADING, TAG, SUMMARY, BODY] {
            let pattern = regex::Regex::new(&text.pattern()).unwrap();
            for sample in &samples {
                let by_length = text.trim || sample.chars().count() <= text.max;
                assert_eq!(
                    pattern.is_match(sample) && by_length && sample.chars().count() >= text.min,
                    text.check(sample).is_ok(),
                    "{text:?} {:?}",
                    sample.chars().take(12).collect::<String>()
                );
            }
        }
    }

    #[test]
    fn the_whitespace_class_is_what_trim_removes() {
        let class = regex::Regex::new(&format!("^[{WHITESPACE_CLASS}]$")).unwrap();
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            assert_eq!(
                class.is_match(c.encode_utf8(&mut [0; 4])),
                c.is_whitespace(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let errors = SignalInput::parse(&json!({
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
                fields(&SignalInput::parse(&v).unwrap_err()),
                ["score"],
                "{bad}"
            );
        }
        for good in [json!(0), json!(10), json!(7.0)] {
            let mut v = minimal();
            v["score"] = good.clone();
            assert_eq!(
                i64::from(SignalInput::parse(&v).unwrap().score),
                good.as_f64().unwrap() as i64
            );
        }
    }

    #[test]
    fn tags_are_trimmed_and_deduplicated_case_insensitively() {
        let mut v = minimal();
        v["tags"] = json!([" LLM ", "llm", "DeepSeek", "deepseek", "AI"]);
        assert_eq!(
            SignalInput::parse(&v).unwrap().tags,
            ["LLM", "DeepSeek", "AI"]
        );
        v["tags"] = json!(["ok", " ", "x".repeat(65), 5]);
        assert_eq!(
            fields(&SignalInput::parse(&v).unwrap_err()),
            ["tags[1]", "tags[2]", "tags[3]"]
        );
        v["tags"] = json!(vec!["t"; 21]);
        assert_eq!(fields(&SignalInput::parse(&v).unwrap_err()), ["tags"]);
    }

    #[test]
    fn sections_keep_order_and_name_each_bad_part() {
        let mut v = minimal();
        v["sections"] = json!([{"heading": "B", "body": "2"}, {"heading": "A", "body": "1"}]);
        let d = SignalInput::parse(&v).unwrap();
        assert_eq!(d.sections[0].heading, "B");
        v["sections"] = json!([{"heading": " ", "body": "x", "extra": 1}, "no", {"heading": "h"}]);
        assert_eq!(
            fields(&SignalInput::parse(&v).unwrap_err()),
            [
                "sections[0].extra",
                "sections[0].heading",
                "sections[1]",
                "sections[2].body"
            ]
        );
    }

    #[test]
    fn nul_characters_are_refused_everywhere() {
        let mut v = minimal();
        v["title"] = json!("a\0b");
        v["tags"] = json!(["x\0"]);
        v["sections"] = json!([{"heading": "h", "body": "\0"}]);
        assert_eq!(
            fields(&SignalInput::parse(&v).unwrap_err()),
            ["title", "sections[0].body", "tags[0]"]
        );
    }

    #[test]
    fn lengths_are_counted_in_characters_after_trimming() {
        let mut v = minimal();
        v["title"] = json!("é".repeat(300));
        assert!(SignalInput::parse(&v).is_ok());
        v["title"] = json!("é".repeat(301));
        assert_eq!(fields(&SignalInput::parse(&v).unwrap_err()), ["title"]);
        // "1–300 chars after trimming" (API.md): the white space around is not counted.
        v["title"] = json!(format!("  {}\u{3000}", "é".repeat(300)));
        assert_eq!(SignalInput::parse(&v).unwrap().title.chars().count(), 300);
        v["title"] = json!(format!(" {} ", "é".repeat(301)));
        assert_eq!(fields(&SignalInput::parse(&v).unwrap_err()), ["title"]);
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
    fn source_url_must_be_absolute_http() {
        let mut v = minimal();
        for good in [
            "https://example.com/story",
            "HTTP://Example.COM:8080/a?b=c#d",
            "http://localhost",
            "http://203.0.113.7/story",
            "https://[2001:db8::1]:8443/x",
        ] {
            v["source_url"] = json!(good);
            assert_eq!(
                SignalInput::parse(&v).unwrap().source_url.as_deref(),
                Some(good)
            );
        }
        v["source_url"] = json!(null);
        assert_eq!(SignalInput::parse(&v).unwrap().source_url, None);
        for bad in [
            "",
            "/relative",
            "mailto:x@y.z",
            "https://",
            "not a url",
            "https://exa mple.com",
            "https://example.com/a b",
            "https://1.2.3.4.5",
            "https://1.2.3.256/",
            "https://[1:2:3:4:5:6:7:8:9]/",
            "https://::1/",
            "https://example.com:99999",
            " https://example.com",
            "https://example.com/\u{7}",
        ] {
            v["source_url"] = json!(bad);
            assert_eq!(
                fields(&SignalInput::parse(&v).unwrap_err()),
                ["source_url"],
                "{bad}"
            );
        }
        v["source_url"] = json!(format!("https://e.com/{}", "a".repeat(2048)));
        assert!(SignalInput::parse(&v).is_err());
    }

    #[test]
    fn every_accepted_source_url_is_a_url() {
        for s in [
            "http://a",
            "https://a-b.c-d.example:0/",
            "http://x.y/%zz?<>\\",
            "http://255.255.255.255:65535/",
            "http://[::]/",
            "https://[fe80::1:2]/#x",
        ] {
            assert!(check_url(s).is_ok(), "{s}");
            let u = url::Url::parse(s).unwrap();
            assert!(u.host().is_some());
        }
    }

    #[test]
    fn a_patch_names_only_client_fields_each_valid_on_its_own() {
        assert!(SignalPatch::parse(json!({"score": 8, "slug": null})).is_ok());
        for bad in [
            json!({"": null}),
            json!({"colour": null}),
            json!({"id": null}),
            json!({"score": 11}),
            json!({"title": null}),
            json!([1]),
        ] {
            assert!(SignalPatch::parse(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn batches_report_every_item_with_its_index() {
        let ok = json!({"title": "t", "score": 1, "category": "c", "slug": "s"});
        let errors =
            BatchInput::parse(&json!({"items": [ok, {"score": 99}, {"slug": "Bad"}]})).unwrap_err();
        let indexed: Vec<(Option<usize>, &str)> =
            errors.iter().map(|e| (e.index, e.field.as_str())).collect();
        assert_eq!(
            indexed,
            [
                (Some(1), "title"),
                (Some(1), "score"),
                (Some(1), "category"),
                (Some(2), "slug"),
                (Some(2), "title"),
                (Some(2), "score"),
                (Some(2), "category")
            ]
        );
        assert!(BatchInput::parse(&json!({"items": []})).is_err());
        assert!(BatchInput::parse(&json!({"items": [ok], "on_conflict": "merge"})).is_err());
    }
}
