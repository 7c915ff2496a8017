//! Webhook subscriptions: what clients send to subscribe (parsed by the rules its schema is
//! made of), the events, and the Standard Webhooks signature.

use std::borrow::Cow;
use std::sync::LazyLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::input::{Parser, CATEGORY, SCORE_MAX, SCORE_MIN, TAG, TAGS_MAX};
use super::query::{case_key, ListFilter};
use super::signal::merge_patch;
use super::FieldError;

/// The events a subscription can ask for, in their canonical order.
pub const EVENTS: [&str; 3] = ["signal.created", "signal.updated", "signal.deleted"];
pub const URL_MAX: usize = 2_048;
pub const CATEGORIES_MAX: usize = 50;

/// An absolute https URL of a host: a name (the last label starts with a letter), an IPv4
/// address in dotted decimal or an IPv6 address in brackets; an optional port, and a path and
/// query of visible ASCII characters (no fragment: it is never sent). A name and an address
/// alike are checked at every connection (see `live::outbound`): a name for each address it
/// resolves to. `http` passes the parser too, and the API takes it only when the service
/// allows it (`SIGNALS_WEBHOOK_ALLOW_HTTP`), so the schema says https.
pub const URL_PATTERN: &str = concat!(
    r"^[Hh][Tt][Tt][Pp][Ss]://",
    url_host_and_port!(),
    r"([/?][!-\x22\x24-~]*)?$"
);

/// [`URL_PATTERN`] with `http` too: what the parser takes.
static URL_REGEX: LazyLock<regex::Regex> = LazyLock::new(|| {
    let either = URL_PATTERN.replacen(r"[Hh][Tt][Tt][Pp][Ss]://", r"[Hh][Tt][Tt][Pp][Ss]?://", 1);
    regex::Regex::new(&either).expect("a valid pattern")
});

/// The fields a client may send.
const FIELDS: [&str; 6] = [
    "url",
    "min_score",
    "categories",
    "tags",
    "events",
    "enabled",
];

/// A valid subscription: what POST creates and PATCH results in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookInput {
    pub url: String,
    pub min_score: Option<i16>,
    /// As given; matched case-insensitively.
    pub categories: Vec<String>,
    /// As given; a signal must have all of them (case-insensitively).
    pub tags: Vec<String>,
    /// A subset of [`EVENTS`], in their order.
    pub events: Vec<String>,
    pub enabled: bool,
}

impl WebhookInput {
    /// Parses a request body. Every problem is collected; `Err` is never empty.
    pub fn parse(value: &Value) -> Result<WebhookInput, Vec<FieldError>> {
        let Some(object) = value.as_object() else {
            return Err(vec![FieldError::new("", "the body must be a JSON object")]);
        };
        let mut p = Parser::new(object, unknown_fields(object));
        let url = url(&mut p);
        let min_score = p.score_field("min_score", false);
        let categories = p.words("categories", CATEGORY, CATEGORIES_MAX);
        let tags = p.words("tags", TAG, TAGS_MAX);
        let events = events(&mut p);
        let enabled = match p.get("enabled") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                p.error("enabled", "must be true or false");
                true
            }
        };
        if !p.errors.is_empty() {
            return Err(p.errors);
        }
        Ok(WebhookInput {
            url: url.unwrap_or_default(),
            min_score,
            categories,
            tags,
            events,
            enabled,
        })
    }

    /// The client fields as JSON (what a merge patch applies to).
    pub fn to_json(&self) -> Value {
        json!({
            "url": self.url,
            "min_score": self.min_score,
            "categories": self.categories,
            "tags": self.tags,
            "events": self.events,
            "enabled": self.enabled,
        })
    }

    /// The subscription's filters, as the list's (what the stream's subscribers use too).
    pub fn filter(&self) -> ListFilter {
        filter(self.min_score, &self.categories, &self.tags)
    }
}

/// A subscription's filters as the list's: categories match any, tags all, case-insensitively.
pub fn filter(min_score: Option<i16>, categories: &[String], tags: &[String]) -> ListFilter {
    ListFilter {
        min_score,
        categories: categories.iter().map(|c| case_key(c)).collect(),
        tags_all: tags.iter().map(|t| case_key(t)).collect(),
        ..ListFilter::default()
    }
}

fn unknown_fields(object: &Map<String, Value>) -> Vec<FieldError> {
    object
        .keys()
        .filter(|k| !FIELDS.contains(&k.as_str()))
        .map(|k| FieldError::new(k, "is not a field of a webhook subscription"))
        .collect()
}

fn url(p: &mut Parser) -> Option<String> {
    match p.get("url") {
        None => p.error("url", "is required"),
        Some(Value::String(s)) if s.chars().count() > URL_MAX => {
            p.error("url", format!("must be at most {URL_MAX} characters"))
        }
        Some(Value::String(s)) if URL_REGEX.is_match(s) => return Some(s.clone()),
        Some(_) => p.error(
            "url",
            "must be an absolute https URL of a host name, an IPv4 address or an IPv6 \
             address in brackets, of visible ASCII characters, without credentials or a \
             fragment",
        ),
    }
    None
}

fn events(p: &mut Parser) -> Vec<String> {
    let Some(value) = p.get("events") else {
        return EVENTS.iter().map(|e| e.to_string()).collect();
    };
    let message = format!(
        "must be a non-empty array of {}, each at most once",
        EVENTS.join(", ")
    );
    let Value::Array(items) = value else {
        p.error("events", message);
        return Vec::new();
    };
    let repeated = items
        .iter()
        .enumerate()
        .any(|(i, e)| items[..i].contains(e));
    if items.is_empty() || repeated || items.iter().any(|i| !EVENTS.iter().any(|e| i == e)) {
        p.error("events", message);
        return Vec::new();
    }
    EVENTS
        .iter()
        .filter(|e| items.iter().any(|i| i == *e))
        .map(|e| e.to_string())
        .collect()
}

/// A JSON Merge Patch (RFC 7396) of a subscription's fields; the result is checked like a
/// create.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookPatch(Map<String, Value>);

impl WebhookPatch {
    /// The URL the patch sets, if it sets one.
    pub fn url(&self) -> Option<&str> {
        self.0.get("url").and_then(Value::as_str)
    }

    pub fn parse(patch: Value) -> Result<WebhookPatch, Vec<FieldError>> {
        let Value::Object(fields) = patch else {
            return Err(vec![FieldError::new(
                "",
                "a patch of a subscription must be a JSON object of the fields to change",
            )]);
        };
        let mut errors = unknown_fields(&fields);
        // Over a valid subscription, so every error found is one of the patch's fields (the
        // unknown ones are reported above: a null would hide them in the merge).
        let known: Map<String, Value> = fields
            .iter()
            .filter(|(k, _)| FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut probe = json!({"url": "https://example.com/"});
        merge_patch(&mut probe, &Value::Object(known));
        if let Err(invalid) = WebhookInput::parse(&probe) {
            errors.extend(invalid);
        }
        match errors.is_empty() {
            true => Ok(WebhookPatch(fields)),
            false => Err(errors),
        }
    }

    pub fn apply(&self, current: &WebhookInput) -> Result<WebhookInput, Vec<FieldError>> {
        let mut merged = current.to_json();
        merge_patch(&mut merged, &Value::Object(self.0.clone()));
        WebhookInput::parse(&merged)
    }
}

impl PartialSchema for WebhookInput {
    fn schema() -> RefOr<Schema> {
        let words = |rule: super::input::Text, max: usize, description: &str| {
            ArrayBuilder::new()
                .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
                .items(rule.schema(""))
                .max_items(Some(max))
                .description(Some(description))
        };
        ObjectBuilder::new()
            .description(Some(
                "A webhook subscription: where to POST the changes that match its filters. \
                 Unknown fields are rejected (422). `null` is the same as leaving a field out.",
            ))
            .property(
                "url",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(URL_MAX))
                    .pattern(Some(URL_PATTERN))
                    .description(Some(
                        "Where deliveries are POSTed: `https` with a host name or an IP address \
                         (`http` only when the service allows it: `SIGNALS_WEBHOOK_ALLOW_HTTP`, \
                         by default as `SIGNALS_WEBHOOK_ALLOW_PRIVATE`). Unless \
                         `SIGNALS_WEBHOOK_ALLOW_PRIVATE=true`, a URL that leads to a loopback, \
                         private, link-local or unique-local address (or an IPv6 form of one) is \
                         refused (422): an address written in it, or a name every address of \
                         which is such (`localhost`); a name that does not resolve yet is taken. \
                         The name is resolved again at every connection and such addresses are \
                         refused there too, the delivery failing with `error` `address`.",
                    )),
            )
            .required("url")
            .property(
                "min_score",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
                    .minimum(Some(SCORE_MIN))
                    .maximum(Some(SCORE_MAX))
                    .description(Some("Only signals scored at least this.")),
            )
            .property(
                "categories",
                words(
                    CATEGORY,
                    CATEGORIES_MAX,
                    "Only signals in one of these categories (case-insensitive); empty: any.",
                ),
            )
            .property(
                "tags",
                words(
                    TAG,
                    TAGS_MAX,
                    "Only signals with all of these tags (case-insensitive).",
                ),
            )
            .property(
                "events",
                ArrayBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
                    .items(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(EVENTS)),
                    )
                    .min_items(Some(1))
                    .unique_items(true)
                    .description(Some(
                        "Which changes are delivered; default all three. An update is \
                         delivered when the signal matches the filters before or after it.",
                    )),
            )
            .property(
                "enabled",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::Boolean, Type::Null]))
                    .description(Some(
                        "Deliveries are made while true (default). A receiver's 410 sets it \
                         false; setting it true again resumes the deliveries pending then. \
                         Changes made while it is false are not delivered to it.",
                    )),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .examples([
                json!({"url": "https://hooks.example.com/signals", "min_score": 7,
                "categories": ["Industry"], "events": ["signal.created"]}),
            ])
            .into()
    }
}

impl ToSchema for WebhookInput {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("WebhookInput")
    }
}

impl PartialSchema for WebhookPatch {
    fn schema() -> RefOr<Schema> {
        let mut schema = WebhookInput::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.required.clear();
            object.description = Some(
                "A JSON Merge Patch (RFC 7396) of the subscription: the fields to change \
                 (`null` resets one to its default). The result is checked like a create."
                    .into(),
            );
            object.examples = vec![json!({"enabled": true, "min_score": 8})];
        }
        schema
    }
}

impl ToSchema for WebhookPatch {}

/// A new signing secret: `whsec_` and the base64 of 32 random bytes, and those bytes.
pub fn new_secret() -> (String, Vec<u8>) {
    let mut bytes = vec![0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    (format!("whsec_{}", STANDARD.encode(&bytes)), bytes)
}

/// The key bytes of a `whsec_` secret.
pub fn secret_bytes(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix("whsec_")?).ok()
}

/// The Standard Webhooks signature of a delivery with one key: `v1,` and the base64 of the
/// HMAC-SHA256 of `{id}.{timestamp}.{body}`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_standard_webhooks_test_vector() {
        // From the Standard Webhooks specification's reference libraries.
        let key = secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_subscription_parses_with_defaults_and_reports_every_bad_field() {
        let w = WebhookInput::parse(&json!({"url": "https://hooks.example.com/x?a=1",
            "categories": ["Industry", "industry"], "events": ["signal.deleted", "signal.created"]}))
        .unwrap();
        assert_eq!(w.categories, ["Industry"]);
        assert_eq!(w.events, ["signal.created", "signal.deleted"]);
        assert!(w.enabled && w.min_score.is_none());
        assert!(WebhookInput::parse(&json!({"url": "https://a.example.com",
            "events": ["signal.created", "signal.created"]}))
        .is_err());
        let errors = WebhookInput::parse(&json!({"url": "ftp://x", "min_score": 11,
            "events": [], "colour": 1, "tags": [""]}))
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for field in ["url", "min_score", "events", "colour", "tags[0]"] {
            assert!(fields.contains(&field), "{field} in {fields:?}");
        }
        for url in [
            "https://localhost:8080/hook",
            "http://localhost/",
            "https://a.example.com",
            "https://[::1]/",
            "https://127.0.0.1/",
            "http://127.0.0.1:9000/hook",
            "https://203.0.113.5/x?y=1",
            "https://[2001:db8::8:800:200c:417a]:8443/",
            "https://[fe80::1]/",
        ] {
            assert!(WebhookInput::parse(&json!({ "url": url })).is_ok(), "{url}");
        }
        for url in [
            "https://a.example.com/#frag",
            "https://user:pw@a.example.com/",
            "https://2130706433/",
            "https://127.0.0.256/",
            "https://1.2.3/",
            "https://[::1/",
            "https://[1:2:3:4:5:6:7:8:9]/",
            "https://[::ffff:127.0.0.1]/",
            "https://::1/",
            "https:///x",
        ] {
            assert!(
                WebhookInput::parse(&json!({ "url": url })).is_err(),
                "{url}"
            );
        }
    }

    #[test]
    fn a_patch_is_checked_field_by_field_and_applied() {
        let current = WebhookInput::parse(&json!({"url": "https://a.example.com/"})).unwrap();
        let patch = WebhookPatch::parse(json!({"min_score": 7, "enabled": false})).unwrap();
        let patched = patch.apply(&current).unwrap();
        assert_eq!((patched.min_score, patched.enabled), (Some(7), false));
        assert!(WebhookPatch::parse(json!({"url": null})).is_err());
        assert!(WebhookPatch::parse(json!({"min_score": 12})).is_err());
        assert!(WebhookPatch::parse(json!([1])).is_err());
    }
}
