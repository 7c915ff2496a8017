//! The service's words, parsed once: a signal's fields (defined once), what clients send, the
//! filters, sorts and cursors of queries. No HTTP, no SQL: handlers and the database layer
//! only ever see these.

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
