//! A signal: its fields, defined once, and the rules about slugs and merge patches.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// Every field of a signal as clients read it, in the order of its JSON representation: the one
/// definition of a signal's fields. It hands the list to the macro `$then`, which generates what
/// it needs from it: [`Signal`] and [`ALL_FIELDS`] here, and the stored row, its columns and the
/// fast JSON path in `db::rows` and `db::signal_json`. Each entry is the field's documentation,
/// its name and Rust type, and after `=>` how the fast path writes its column (see
/// `db::signal_json::write`). Adding a field is one edit here (and a migration); an entry's
/// key and value cannot come apart, because everything is generated from the same entry.
#[macro_export]
macro_rules! signal_fields {
    ($then:path) => {
        $then! {
            /// Server-assigned, time-ordered UUIDv7.
            id: ::uuid::Uuid => uuid,
            /// Unique, never UUID-shaped; stays unless a request sets it.
            slug: String => text,
            title: String => text,
            /// The analysis blurb shown in lists.
            summary: String => text,
            /// The lede paragraph(s).
            body: String => text,
            /// Out of 10.
            #[schema(minimum = 0, maximum = 10)]
            score: i16 => int,
            category: String => text,
            /// In UTC.
            #[serde(serialize_with = "rfc3339")]
            published_at: ::chrono::DateTime<::chrono::Utc> => time,
            /// In the order given.
            sections: Vec<$crate::domain::signal::Section> => sections,
            tags: Vec<String> => text_array,
            /// An absolute http(s) URL, or null (always present).
            #[schema(required = true)]
            source_url: Option<String> => nullable_text,
            /// When the service stored it, in UTC.
            #[serde(serialize_with = "rfc3339")]
            created_at: ::chrono::DateTime<::chrono::Utc> => time,
            /// When it last changed, in UTC; every change moves it forward.
            #[serde(serialize_with = "rfc3339")]
            updated_at: ::chrono::DateTime<::chrono::Utc> => time,
        }
    };
}

macro_rules! representation {
    ($( $(#[$meta:meta])* $name:ident : $ty:ty => $kind:ident, )*) => {
        /// A signal item as clients read it.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
        #[schema(example = json!(crate::domain::examples::signal()))]
        pub struct Signal {
            $( $(#[$meta])* pub $name: $ty, )*
        }

        /// Every top-level field of a signal as returned, in order (what `fields` may name).
        pub const ALL_FIELDS: &[&str] = &[$(stringify!($name)),*];
    };
}

signal_fields!(representation);

/// The position of a field in [`ALL_FIELDS`] (and so in the row and the representation);
/// a name that is not a field fails at compile time where used in a constant.
pub const fn field_index(name: &str) -> usize {
    let mut i = 0;
    while i < ALL_FIELDS.len() {
        if const_eq(ALL_FIELDS[i].as_bytes(), name.as_bytes()) {
            return i;
        }
        i += 1;
    }
    panic!("not a field of a signal")
}

const fn const_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Fields the server sets; sending one is an error, not silently ignored.
pub const SERVER_FIELDS: [&str; 3] = ["id", "created_at", "updated_at"];

/// Whether a client may send this field.
pub fn is_client_field(name: &str) -> bool {
    ALL_FIELDS.contains(&name) && !SERVER_FIELDS.contains(&name)
}

fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// One titled section of a signal's body, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"heading": "Why It Matters", "body": "From an engineering perspective, ..."}))]
pub struct Section {
    pub heading: String,
    pub body: String,
}

impl Signal {
    /// The client fields as a JSON object: what a merge patch applies to.
    pub fn client_fields(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Value::Object(fields) = &mut value {
            fields.retain(|k, _| is_client_field(k));
        }
        value
    }

    /// The JSON representation.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// How `/v1/signals/{id_or_slug}` names a signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalRef {
    Id(Uuid),
    Slug(String),
}

impl SignalRef {
    /// Slugs can never be ids ([`path_id`]), so the text decides which one it is; `None` when
    /// it is neither an id nor a well-formed slug (so nothing can exist under it).
    pub fn parse(s: &str) -> Option<SignalRef> {
        match path_id(s) {
            Some(id) => Some(SignalRef::Id(id)),
            None => check_slug(s).ok().map(|()| SignalRef::Slug(s.to_owned())),
        }
    }
}

/// The id a path names: a UUID as the service writes ids (`8-4-4-4-12` hex digits), or in
/// braces or as `urn:uuid:` (which no slug can be), in either case. 32 hex digits in a row are
/// not an id: they are a slug like any other (an MD5 digest, say), so a slug never shadows an
/// id and an id never shadows a slug.
pub fn path_id(s: &str) -> Option<Uuid> {
    const DIGITS_ALONE: usize = 32;
    (s.len() != DIGITS_ALONE)
        .then(|| Uuid::try_parse(s).ok())
        .flatten()
}

/// RFC 7396 JSON Merge Patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

pub const SLUG_MAX: usize = 120;

/// The names of the resources under `/v1/signals/` that are not signals: no slug may take them,
/// so `/v1/signals/{id_or_slug}` never shadows them (and they never shadow a signal).
pub const RESERVED_SLUGS: [&str; 2] = ["batch", "stream"];

/// `^[a-z0-9]+(-[a-z0-9]+)*$`, 1–120 characters, not an id ([`path_id`]) and not reserved
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
    if path_id(s).is_some() {
        return Err("must not be a UUID (it would name an id)".into());
    }
    if RESERVED_SLUGS.contains(&s) {
        return Err(format!(
            "must not be one of {} (they name other resources)",
            RESERVED_SLUGS.join(", ")
        ));
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
    if slug.is_empty() || path_id(slug).is_some() {
        "signal".to_owned()
    } else if RESERVED_SLUGS.contains(&slug) {
        format!("{slug}-signal")
    } else {
        slug.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}, "tags": ["x"]});
        merge_patch(
            &mut target,
            &json!({"a": "z", "c": {"f": null}, "tags": ["y", "z"]}),
        );
        assert_eq!(
            target,
            json!({"a": "z", "c": {"d": "e"}, "tags": ["y", "z"]})
        );
    }

    #[test]
    fn field_positions_follow_the_table() {
        assert_eq!(ALL_FIELDS[0], "id");
        assert_eq!(ALL_FIELDS[field_index("score")], "score");
        assert_eq!(ALL_FIELDS.len(), 13);
        for f in SERVER_FIELDS {
            assert!(ALL_FIELDS.contains(&f) && !is_client_field(f));
        }
    }

    #[test]
    fn slugs_follow_the_pattern_and_are_never_uuids_or_reserved() {
        assert!(check_slug("deepseek-targets-45b").is_ok());
        for bad in [
            "",
            "-a",
            "a-",
            "a--b",
            "A",
            "a_b",
            "01968a4e-1c40-7cc3-9a51-4b1f0e6e2d10",
            "01968A4E-1C40-7CC3-9A51-4B1F0E6E2D10",
            "batch",
            "stream",
        ] {
            assert!(check_slug(bad).is_err(), "{bad}");
        }
        assert!(check_slug(&"a".repeat(121)).is_err());
        // 32 hex digits are not an id in a path: an MD5 digest is a slug; other spellings are ids.
        let digest = "9e107d9d372bb6826bd81d3542a419d6";
        assert!(check_slug(digest).is_ok());
        assert_eq!(
            SignalRef::parse(digest),
            Some(SignalRef::Slug(digest.into()))
        );
        let id = "01968a4e-1c40-7cc3-9a51-4b1f0e6e2d10";
        for spelling in [
            id.to_owned(),
            id.to_uppercase(),
            format!("{{{id}}}"),
            format!("urn:uuid:{id}"),
        ] {
            assert_eq!(
                SignalRef::parse(&spelling),
                Some(SignalRef::Id(id.parse().unwrap())),
                "{spelling}"
            );
        }
    }

    #[test]
    fn slugs_derive_from_titles() {
        assert_eq!(
            slug_from_title("DeepSeek targets $45B valuation!"),
            "deepseek-targets-45b-valuation"
        );
        assert_eq!(slug_from_title("¿Qué?"), "qu");
        assert_eq!(slug_from_title("!!!"), "signal");
        assert_eq!(slug_from_title("Batch"), "batch-signal");
        let long = slug_from_title(&"word ".repeat(100));
        assert!(long.len() <= 100 && check_slug(&long).is_ok());
    }
}
