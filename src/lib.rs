//! Signals: a REST service that stores and serves scored signal items on PostgreSQL.

pub mod api;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod import;
pub mod json;
pub mod live;
pub mod openapi;
pub mod startup;
pub mod telemetry;
pub mod web;

/// An error meant for the operator: printed as it is, and the process exits non-zero.
#[derive(Debug)]
pub struct Fatal(pub String);

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fatal {}
