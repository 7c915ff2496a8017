//! What the service writes for people rather than programs: HTML.

pub mod html;
