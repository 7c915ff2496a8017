//! The frame of the OpenAPI document: info, security scheme, tags, shared responses.
//! Operations and schemas are collected from the handlers by utoipa-actix-web.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::problem::{responses, Problem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Signals",
        description = "Stores and serves signal items: short, scored intelligence articles with a \
            title, a score out of 10, a category, a publication time, a summary, ordered titled \
            sections and tags.\n\nReads are public unless the service runs with \
            `SIGNALS_PUBLIC_READ=false`; writes need an API key with the `write` scope \
            (`Authorization: Bearer <key>`). Every error is an RFC 9457 problem document \
            (`application/problem+json`). Every response carries `X-Request-Id`.",
        license(name = "MIT", identifier = "MIT"),
        contact(name = "Signals maintainers"),
    ),
    tags(
        (name = "signals", description = "Signal items"),
        (name = "feeds", description = "The newest signals as JSON Feed and Atom, for feed readers"),
        (name = "webhooks", description = "Signed webhook subscriptions (admin keys)"),
        (name = "reader", description = "The reader: the feed and each signal as web pages for people"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    ),
    servers((url = "/", description = "The service that serves this document")),
    components(
        schemas(Problem, crate::domain::signal::Signal, crate::api::list::SignalFields),
        responses(
            responses::BadRequest,
            responses::Unauthorized,
            responses::Forbidden,
            responses::NotFound,
            responses::Gone,
            responses::Conflict,
            responses::PreconditionFailed,
            responses::PayloadTooLarge,
            responses::UnsupportedMediaType,
            responses::Unprocessable,
            responses::RequestTimeout,
            responses::HeadersTooLarge,
            responses::TooManyRequests,
            responses::Unavailable,
            responses::StreamsBusy,
        )
    ),
    modifiers(&BearerScheme)
)]
struct Frame;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key made with `signals keys create`; scopes read < write < admin",
                    ))
                    .build(),
            ),
        );
    }
}

pub fn frame() -> utoipa::openapi::OpenApi {
    let mut api = Frame::openapi();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api
}
