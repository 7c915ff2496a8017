//! One integration-test binary: the real service over HTTP, each test on its own database.

mod abuse;
mod auth;
mod batch;
mod cache;
mod changes;
mod cli;
mod embedded;
mod errors;
mod exposure;
mod faults;
mod feeds;
mod helpers;
mod idempotency;
mod import;
mod limits;
mod listing;
mod migrations;
mod openapi;
mod pools;
mod reader;
mod replicas;
mod routes;
mod signals_crud;
mod stream;
mod webhooks;
