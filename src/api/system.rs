//! Operational endpoints: liveness, readiness, metrics, the OpenAPI document.

use actix_web::{get, web, HttpResponse};
use std::sync::Arc;

use super::conditions::NoParameters;
use super::middleware::Metrics;
use super::problem::{responses, ApiError};
use super::AppState;
use crate::db::{self, PoolRegistry};

/// The generated OpenAPI document, serialised once at start-up.
pub struct OpenApiJson(pub Arc<String>);

/// Liveness
///
/// 200 while the process runs; never touches the database, and is not rate-limited.
#[utoipa::path(
    operation_id = "healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The process is running", content_type = "text/plain", body = String, example = "ok"),
        (status = 400, response = responses::BadRequest),
    ),
    security(())
)]
#[get("/healthz")]
pub async fn healthz(_: NoParameters) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Readiness
///
/// 200 when the database (the primary) answers a query within the database timeout, else 503.
/// The body names the state of each streaming replica too (whether it serves reads, and how far
/// behind it is); replicas do not decide readiness.
#[utoipa::path(
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The database answers", content_type = "text/plain", body = String, example = "ready"),
        (status = 400, response = responses::BadRequest),
        (status = 503, response = responses::Unavailable),
    ),
    security(())
)]
#[get("/readyz")]
pub async fn readyz(_: NoParameters, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if db::ping(&state.pool, state.db_timeout).await {
        // Replicas are helpers: the instance is ready while the primary answers.
        let mut body = "ready\nprimary: answers\n".to_owned();
        for replica in &state.replicas.list {
            let line = match replica.healthy() {
                true => format!("serving reads, {} ms behind", replica.lag_ms()),
                false if replica.lag_ms() < 0 => "not answering".to_owned(),
                false => format!("not serving reads, {} ms behind", replica.lag_ms()),
            };
            body.push_str(&format!("replica {}: {line}\n", replica.name));
        }
        Ok(HttpResponse::Ok().content_type("text/plain").body(body))
    } else {
        Err(ApiError::Unavailable(
            "readiness check: the database did not answer".into(),
        ))
    }
}

/// Prometheus metrics
///
/// Request counts and latency histograms by route, method and status; connection pool gauges.
#[utoipa::path(
    operation_id = "metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = "text/plain; version=0.0.4", body = String,
            example = "signals_http_requests_total{method=\"GET\",route=\"/v1/signals\",status=\"200\"} 42\n"),
        (status = 400, response = responses::BadRequest),
    ),
    security(())
)]
#[get("/metrics")]
pub async fn metrics(
    _: NoParameters,
    pools: web::Data<PoolRegistry>,
    metrics: web::Data<Metrics>,
    hub: web::Data<std::sync::Arc<crate::live::Hub>>,
    webhooks: web::Data<std::sync::Arc<crate::live::webhooks::Webhooks>>,
    state: web::Data<super::AppState>,
) -> HttpResponse {
    let (max_size, size, available, waiting) = pools.totals();
    let (cache_entries, cache_bytes) = state.cache.size();
    let mut text = metrics.render();
    let gauges = [
        (
            "signals_db_pool_max_size",
            "Most connections the pools hold (list queries, lookups and the rest together)",
            max_size,
        ),
        ("signals_db_pool_size", "Connections open now", size),
        (
            "signals_db_pool_available",
            "Open connections not in use",
            available,
        ),
        (
            "signals_db_pool_waiting",
            "Requests waiting for a connection",
            waiting,
        ),
        (
            "signals_streams_open",
            "Open GET /v1/signals/stream connections",
            hub.open_streams(),
        ),
        (
            "signals_changes_listening",
            "1 while the change listener is connected and caught up with the change log",
            usize::from(hub.caught_up()),
        ),
        (
            "signals_cache_entries",
            "Answers held by the cache of hot reads",
            cache_entries,
        ),
        (
            "signals_cache_bytes",
            "Bytes held by the cache",
            cache_bytes,
        ),
    ];
    for (name, help, value) in gauges {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    }
    text.push_str(
        "# HELP signals_cache_lookups_total Reads looked up in the cache, by whether they were \
         there (shared: taken from another read of the same answer it waited for; bypassed: \
         not looked up, as the change listener had not sent out every change the read needs)\n\
         # TYPE signals_cache_lookups_total counter\n",
    );
    let cache = &state.cache;
    for (outcome, n) in [
        ("hit", &cache.hits),
        ("miss", &cache.misses),
        ("shared", &cache.shared),
        ("bypassed", &cache.bypassed),
    ] {
        text.push_str(&format!(
            "signals_cache_lookups_total{{outcome=\"{outcome}\"}} {}\n",
            n.load(std::sync::atomic::Ordering::Relaxed)
        ));
    }
    text.push_str(&format!(
        "# HELP signals_streams_cut_off_total Streams cut off for falling more than 1,024 \
         changes behind (their clients resume from their last id)\n\
         # TYPE signals_streams_cut_off_total counter\nsignals_streams_cut_off_total {}\n",
        hub.cut_off.load(std::sync::atomic::Ordering::Relaxed)
    ));
    text.push_str(
        "# HELP signals_search_first_looks_total Relevance searches that looked for their newest \
         matches among the newest signals first (SIGNALS_SEARCH_HORIZON), by whether enough were \
         there\n# TYPE signals_search_first_looks_total counter\n",
    );
    for (outcome, n) in [
        ("found", &state.horizon.found),
        ("wasted", &state.horizon.wasted),
    ] {
        text.push_str(&format!(
            "signals_search_first_looks_total{{outcome=\"{outcome}\"}} {}\n",
            n.load(std::sync::atomic::Ordering::Relaxed)
        ));
    }
    text.push_str(
        "# HELP signals_replica_serving 1 while a streaming replica serves reads (answers, is a \
         standby, is within SIGNALS_REPLICA_MAX_LAG_MS)\n# TYPE signals_replica_serving gauge\n\
         # HELP signals_replica_lag_ms How far behind the primary a replica was at its last \
         check (-1: not answering)\n# TYPE signals_replica_lag_ms gauge\n",
    );
    for replica in &state.replicas.list {
        let name = replica.name.replace('\\', "\\\\").replace('"', "\\\"");
        text.push_str(&format!(
            "signals_replica_serving{{replica=\"{name}\"}} {}\nsignals_replica_lag_ms{{replica=\"{name}\"}} {}\n",
            u8::from(replica.healthy()),
            replica.lag_ms()
        ));
    }
    let outcomes = &webhooks.outcomes;
    text.push_str(
        "# HELP signals_webhook_deliveries_total Delivery attempts by outcome: delivered (2xx), \
         retried (to be tried again), failed (no retries left), gone (410: subscription \
         disabled)\n# TYPE signals_webhook_deliveries_total counter\n",
    );
    for (outcome, n) in [
        ("delivered", &outcomes.delivered),
        ("retried", &outcomes.retried),
        ("failed", &outcomes.failed),
        ("gone", &outcomes.gone),
    ] {
        text.push_str(&format!(
            "signals_webhook_deliveries_total{{outcome=\"{outcome}\"}} {}\n",
            n.load(std::sync::atomic::Ordering::Relaxed)
        ));
    }
    // The database's view (every instance's deliveries): -1 when it cannot be read now.
    let oldest = match crate::db::conn(webhooks.pool()).await {
        Ok(mut conn) => crate::db::webhooks::oldest_pending_age(&mut conn)
            .await
            .unwrap_or(-1.0),
        Err(_) => -1.0,
    };
    text.push_str(&format!(
        "# HELP signals_webhook_oldest_pending_seconds How long the oldest pending delivery \
         has waited (0: none; -1: the database did not answer)\n\
         # TYPE signals_webhook_oldest_pending_seconds gauge\n\
         signals_webhook_oldest_pending_seconds {oldest:.3}\n"
    ));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}

/// OpenAPI document
///
/// This document: OpenAPI 3.1, generated from the service's code.
#[utoipa::path(
    operation_id = "openapi",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object),
        (status = 400, response = responses::BadRequest),
    ),
    security(())
)]
#[get("/openapi.json")]
pub async fn openapi_json(_: NoParameters, doc: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.0.as_ref().clone())
}
