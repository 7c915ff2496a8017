//! The service's words, parsed once: a signal's fields (defined once), what clients send, the
//! filters, sorts and cursors of queries. No HTTP, no SQL: handlers and the database layer
//! only ever see these.

/// The host and optional port of the absolute URLs a client gives (a signal's `source_url`, a
/// webhook's `url`), as a regular expression: a name (labels of letters, digits and inner
/// hyphens, the last starting with a letter), an IPv4 address in dotted decimal or an IPv6
/// address in brackets; then a port of 0 to 65535. A macro, so the patterns that use it stay
/// literals the spec shows whole.
macro_rules! url_host_and_port {
    () => {
        concat!(
            r"(",
            r"([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?",
            r"|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])",
            r"|\[(",
            r"([0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}",
            r"|([0-9A-Fa-f]{1,4}:){1,7}:",
            r"|([0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}",
            r"|([0-9A-Fa-f]{1,4}:){1,5}(:[0-9A-Fa-f]{1,4}){1,2}",
            r"|([0-9A-Fa-f]{1,4}:){1,4}(:[0-9A-Fa-f]{1,4}){1,3}",
            r"|([0-9A-Fa-f]{1,4}:){1,3}(:[0-9A-Fa-f]{1,4}){1,4}",
            r"|([0-9A-Fa-f]{1,4}:){1,2}(:[0-9A-Fa-f]{1,4}){1,5}",
            r"|[0-9A-Fa-f]{1,4}:(:[0-9A-Fa-f]{1,4}){1,6}",
            r"|:((:[0-9A-Fa-f]{1,4}){1,7}|:)",
            r")\])",
            r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?"
        )
    };
}

pub mod cursor;
pub mod examples;
pub mod input;
pub mod key;
pub mod query;
pub mod signal;
pub mod webhook;

use serde::Serialize;
use utoipa::ToSchema;

/// One invalid field of a request: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"field": "score", "message": "must be between 0 and 10"}))]
pub struct FieldError {
    /// A path into the request body (`score`, `tags[2]`, `sections[0].heading`) or the name of a
    /// query parameter or header; empty for the body as a whole.
    pub field: String,
    pub message: String,
    /// The position of the item in a batch request, when the error is about one item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_owned(),
            message: message.into(),
            index: None,
        }
    }
}
