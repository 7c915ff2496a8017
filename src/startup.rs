//! Builds and runs the HTTP server; shared by `signals serve` and the tests.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::{RequestHead, Server};
use actix_web::http::{header, Method};
use actix_web::middleware::{from_fn, Compress};
use actix_web::{web, App, HttpResponse, HttpServer};
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::api::limits::{limit, Limiter, FLUSH_EVERY};
use crate::api::middleware::{bounded_head, head_as_get, observe, Metrics};
use crate::api::system::OpenApiJson;
use crate::api::Links;
use crate::api::{self, AppState, RouteTable};
use crate::config::{DatabaseSettings, ServeSettings};
use crate::db::{self, schema::server_secrets, Plans, PoolFactory, PoolRegistry};
use crate::Fatal;

/// A database that is reachable and migrated: what the server needs to start.
pub struct Database {
    pub url: String,
    /// The embedded cluster, when `DATABASE_URL` is unset; stops when dropped.
    pub cluster: Option<db::embedded::Cluster>,
}

impl Database {
    /// `DATABASE_URL` when set, else the embedded cluster; migrated either way.
    pub async fn open(settings: &DatabaseSettings) -> Result<Database, Fatal> {
        let (url, cluster) = match &settings.database_url {
            Some(url) => (url.clone(), None),
            None => {
                let cluster =
                    db::embedded::Cluster::start(&settings.data_dir, settings.pg_bin.as_deref())
                        .await?;
                (cluster.url(), Some(cluster))
            }
        };
        let applied = db::migrate(&url, settings).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "migrations applied");
        }
        Ok(Database { url, cluster })
    }
}

/// A signal asking the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Term,
    Int,
    Quit,
}

impl Stop {
    pub fn name(self) -> &'static str {
        match self {
            Stop::Term => "SIGTERM",
            Stop::Int => "SIGINT",
            Stop::Quit => "SIGQUIT",
        }
    }
}

/// SIGTERM, SIGINT and SIGQUIT, heard from the moment this is made until it is dropped (one
/// arriving while nobody waits is kept for the next wait): made once at the start, so no
/// signal falls between two waits, and no longer fatal, so whatever was started (the embedded
/// PostgreSQL above all) is stopped again.
pub struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Inside a Tokio runtime.
    pub fn listen() -> Result<StopSignals, Fatal> {
        use tokio::signal::unix::{signal, SignalKind};
        let hear =
            |kind| signal(kind).map_err(|e| Fatal(format!("cannot listen for signals: {e}")));
        Ok(StopSignals {
            term: hear(SignalKind::terminate())?,
            int: hear(SignalKind::interrupt())?,
            quit: hear(SignalKind::quit())?,
        })
    }

    /// The next stop signal.
    pub async fn next(&mut self) -> Stop {
        tokio::select! {
            _ = self.term.recv() => Stop::Term,
            _ = self.int.recv() => Stop::Int,
            _ = self.quit.recv() => Stop::Quit,
        }
    }

    /// `work`, unless a stop signal comes first: then `work` is dropped (with what it started)
    /// and the answer is an error naming the signal.
    pub async fn unless<T>(
        &mut self,
        work: impl std::future::Future<Output = Result<T, Fatal>>,
    ) -> Result<T, Fatal> {
        self.unless_then(work, |_| String::new()).await
    }

    /// As [`unless`](Self::unless), with `then(signal)` added to the error: what the stop
    /// left behind.
    pub async fn unless_then<T>(
        &mut self,
        work: impl std::future::Future<Output = Result<T, Fatal>>,
        then: impl FnOnce(Stop) -> String,
    ) -> Result<T, Fatal> {
        tokio::select! {
            done = work => done,
            stop = self.next() => Err(Fatal(format!("stopped by {}{}", stop.name(), then(stop)))),
        }
    }
}

/// Starts serving on `listener`; the returned server runs until `stops` hears a signal (one
/// heard while starting is an error: nothing is left running).
///
/// Each HTTP worker gets pools of its own (`pool_size` split between the workers): a
/// connection's I/O then runs on the thread that uses it, sparing a cross-thread wake-up on every
/// query. There are three, each of `pool_size` connections in all: one for list queries, whose
/// statements are planned for their values on every execution, one for lists whose one plan
/// fits (`Shares::one_plan_fits`), which keep a generic plan, and one for everything else,
/// whose statements keep PostgreSQL's default (see [`Plans`]).
pub async fn run(
    listener: TcpListener,
    database_url: &str,
    db_settings: &DatabaseSettings,
    settings: &ServeSettings,
    mut stops: StopSignals,
) -> Result<Server, Fatal> {
    let (server, closing) = stops
        .unless(build(listener, database_url, db_settings, settings))
        .await?;
    // On SIGTERM or SIGINT: open streams end at once (they would otherwise hold the shutdown up
    // for its whole timeout), then the server stops accepting and lets the requests in flight
    // finish (up to the shutdown timeout). SIGQUIT stops at once, as actix would (the embedded
    // PostgreSQL is still stopped).
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        let stop = stops.next().await;
        let graceful = stop != Stop::Quit;
        match graceful {
            true => tracing::info!("{}: shutting down gracefully", stop.name()),
            false => tracing::info!("{}: shutting down at once", stop.name()),
        }
        closing.close_streams();
        handle.stop(graceful).await;
    });
    Ok(server)
}

async fn build(
    listener: TcpListener,
    database_url: &str,
    db_settings: &DatabaseSettings,
    settings: &ServeSettings,
) -> Result<(Server, Arc<crate::live::Hub>), Fatal> {
    let pools = PoolFactory::new(database_url, db_settings)?;
    let cursor_key = {
        let mut conn = db::connect_once(database_url, db_settings).await?;
        server_secrets::table
            .filter(server_secrets::name.eq("cursor_hmac"))
            .select(server_secrets::value)
            .first::<Vec<u8>>(&mut conn)
            .await
            .map_err(|e| Fatal(format!("cannot read the cursor key: {e}")))?
    };
    let workers = match settings.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let per_worker = db_settings.pool_size.div_ceil(workers);
    let registry = web::Data::new(PoolRegistry::default());
    let cursor_key = Arc::new(cursor_key);
    let (public_read, db_timeout) = (settings.public_read, db_settings.db_timeout());
    // A lookup may take as long as before it shared a connection: a wait for the connection,
    // then its statement.
    let lookup_limit = db_timeout + Duration::from_millis(db_settings.statement_timeout_ms);
    let openapi = api::openapi();
    let routes = web::Data::new(
        RouteTable::from_openapi(&openapi)
            .with_page("/docs")
            .with_page("/docs/{_:.*}"),
    );
    let openapi_json =
        web::Data::new(OpenApiJson(Arc::new(openapi.to_pretty_json().map_err(
            |e| Fatal(format!("cannot render the OpenAPI document: {e}")),
        )?)));
    let metrics = web::Data::new(Metrics::default());
    let write_origins = Arc::new(settings.cors_origins());
    let limiter = web::Data::new(Arc::new(Limiter::new(
        settings.rate_limit_read,
        settings.rate_limit_write,
        settings.trusted_proxies.clone(),
        pools.pool(2, Plans::Reused),
    )));
    if limiter.enabled() {
        // What this instance admitted goes to the shared counts; old windows are deleted.
        let limiter = limiter.clone();
        actix_web::rt::spawn(async move {
            let mut every = actix_web::rt::time::interval(FLUSH_EVERY);
            let mut ticks = 0u64;
            loop {
                every.tick().await;
                if let Err(e) = limiter.flush().await {
                    tracing::warn!(error = %e, "rate limits: cannot add to the shared counts");
                }
                ticks += 1;
                if ticks % 240 == 0 {
                    if let Err(e) = limiter.prune().await {
                        tracing::warn!(error = %e, "rate limits: cannot delete old counts");
                    }
                }
            }
        });
    }
    let hub = web::Data::new(
        crate::live::Hub::start(
            database_url.to_owned(),
            db_settings.clone(),
            pools.pool(2, Plans::Reused),
            settings.max_streams,
        )
        .await?,
    );
    let key_file = settings.webhook_key_file.clone().unwrap_or_else(|| {
        let beside = db_settings
            .data_dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty());
        beside
            .unwrap_or(std::path::Path::new("."))
            .join("webhook.key")
    });
    let sealer = crate::db::sealed::Sealer::load(
        settings.webhook_key.as_ref().map(|k| k.0.as_str()),
        &key_file,
    )?;
    let webhooks = web::Data::new(crate::live::webhooks::Webhooks::start(
        pools.pool(2, Plans::Reused),
        crate::live::webhooks::Settings {
            allow_private: settings.webhook_allow_private,
            allow_http: settings
                .webhook_allow_http
                .unwrap_or(settings.webhook_allow_private),
            timeout: Duration::from_millis(settings.webhook_timeout_ms),
            retries: settings.webhook_retries.iter().map(|s| s.0).collect(),
            sealer: Arc::new(sealer),
        },
        &hub,
    ));
    let cache = crate::api::cache::Cache::start(settings.cache_mb, hub.get_ref().clone());
    let horizon = Arc::new(db::lists::Horizon::new(settings.search_horizon));
    let shares = Arc::new(db::lists::Shares::default());
    let replica_urls: Vec<String> = settings
        .read_database_url
        .iter()
        .map(|u| u.0.clone())
        .filter(|u| !u.trim().is_empty())
        .collect();
    let replicas = crate::db::replicas::Replicas::start(
        &replica_urls,
        db_settings,
        pools.pool(1, Plans::Reused),
        Duration::from_millis(settings.replica_max_lag_ms),
    );
    let replica_pools = replica_urls
        .iter()
        .map(|url| PoolFactory::new(url, db_settings))
        .collect::<Result<Vec<_>, _>>()?;
    let client_timeout = Duration::from_millis(settings.client_timeout_ms);
    let body_timeout = web::Data::new(crate::api::BodyTimeout(client_timeout));
    let links = web::Data::new(Links {
        public: settings.public_url.as_ref().map(|u| u.0.clone()),
        proxies: settings.trusted_proxies.clone(),
    });

    // Expired idempotency records are deleted by the service itself, at start and then hourly.
    let janitor = pools.pool(1, Plans::Reused);
    let retention = settings.events_retention.0;
    actix_web::rt::spawn(async move {
        let mut every = actix_web::rt::time::interval(std::time::Duration::from_secs(3600));
        loop {
            every.tick().await;
            let Ok(mut conn) = db::conn(&janitor).await else {
                continue;
            };
            match db::idempotency::delete_expired(&mut conn).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "expired idempotency records deleted"),
                Err(e) => tracing::warn!(error = %e, "cannot delete expired idempotency records"),
            }
            let before = chrono::Utc::now()
                - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
            match db::changes::delete_before(&mut conn, before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "changes past the retention deleted"),
                Err(e) => tracing::warn!(error = %e, "cannot delete old changes"),
            }
            // Finished deliveries are kept as long as the changes they were made from.
            match db::webhooks::delete_finished_before(&mut conn, before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "finished webhook deliveries deleted"),
                Err(e) => tracing::warn!(error = %e, "cannot delete finished deliveries"),
            }
        }
    });
    // The GIN index of the newest search documents follows the search horizon: checked at start
    // and every minute on a connection of its own (a session lock, no statement timeout for the
    // build), built anew when it no longer covers it (db::search_index).
    let newest = horizon.size();
    let (index_url, index_settings) = (database_url.to_owned(), db_settings.clone());
    actix_web::rt::spawn(async move {
        let mut every = actix_web::rt::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            let Ok(mut conn) = db::connect_once(&index_url, &index_settings).await else {
                continue;
            };
            match db::search_index::keep(&mut conn, newest).await {
                Ok(db::search_index::Kept::Built(from)) => {
                    tracing::info!(from, "index of the newest search documents built")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot keep the index of the newest search documents")
                }
            }
        }
    });
    let closing = hub.get_ref().clone();
    let docs_page = docs_page();
    let server = HttpServer::new(move || {
        let pool = pools.pool(per_worker, Plans::Reused);
        let list_pool = pools.pool(per_worker, Plans::PerExecution);
        let one_plan_pool = pools.pool(per_worker, Plans::Generic);
        let lookup_pool = pools.pool(1, Plans::Reused);
        // The same connections to every replica: lists and lookups.
        let replica_reads: Vec<crate::api::ReadConns> = replica_pools
            .iter()
            .map(|replica| {
                let list_pool = replica.pool(per_worker, Plans::PerExecution);
                let one_plan_pool = replica.pool(per_worker, Plans::Generic);
                let lookup_pool = replica.pool(1, Plans::Reused);
                registry.add(list_pool.clone());
                registry.add(one_plan_pool.clone());
                registry.add(lookup_pool.clone());
                crate::api::ReadConns {
                    list_pool,
                    one_plan_pool,
                    lookups: db::SharedConn::new(lookup_pool, lookup_limit),
                }
            })
            .collect();
        registry.add(pool.clone());
        registry.add(list_pool.clone());
        registry.add(one_plan_pool.clone());
        registry.add(lookup_pool.clone());
        App::new()
            .app_data(web::Data::new(AppState {
                lookups: db::SharedConn::new(lookup_pool, lookup_limit),
                pool,
                list_pool,
                one_plan_pool,
                public_read,
                cursor_key: cursor_key.clone(),
                db_timeout,
                cache: cache.clone(),
                horizon: horizon.clone(),
                shares: shares.clone(),
                replicas: replicas.clone(),
                replica_reads,
            }))
            .app_data(registry.clone())
            .app_data(routes.clone())
            .app_data(openapi_json.clone())
            .app_data(metrics.clone())
            .app_data(limiter.clone())
            .app_data(links.clone())
            .app_data(body_timeout.clone())
            .app_data(hub.clone())
            .app_data(webhooks.clone())
            .wrap(from_fn(head_as_get))
            .wrap(from_fn(crate::api::middleware::after_writes))
            .wrap(Compress::default())
            .wrap(from_fn(limit))
            .wrap(from_fn(crate::api::middleware::encoded_validators))
            .wrap(from_fn(bounded_head))
            .wrap(cors(write_origins.clone()))
            .wrap(from_fn(observe))
            .into_utoipa_app()
            .configure(api::configure)
            .into_app()
            .service(
                SwaggerUi::new("/docs/{_:.*}").config(
                    Config::from("/openapi.json")
                        .validator_url("none")
                        .try_it_out_enabled(true)
                        .persist_authorization(true),
                ),
            )
            .service({
                let page = docs_page.clone();
                web::resource("/docs")
                    .get(move || {
                        let page = page.clone();
                        async move {
                            match page {
                                Some(page) => HttpResponse::Ok()
                                    .content_type("text/html; charset=utf-8")
                                    .body(page),
                                None => HttpResponse::PermanentRedirect()
                                    .insert_header((header::LOCATION, "/docs/"))
                                    .finish(),
                            }
                        }
                    })
                    .default_service(web::to(api::no_route))
            })
            .default_service(web::to(api::no_route))
    })
    // Responses go out whole at once; Nagle's algorithm would only hold back their last segment.
    .tcp_nodelay(true)
    // The address each connection reached: the base of links when nothing else names one.
    .on_connect(|conn, data| {
        if let Some(Ok(local)) = conn
            .downcast_ref::<actix_web::rt::net::TcpStream>()
            .map(|s| s.local_addr())
        {
            data.insert(api::LocalAddr(local));
        }
    })
    .client_request_timeout(client_timeout)
    .max_connections(settings.max_connections.div_ceil(workers).max(1))
    .shutdown_timeout(settings.shutdown_timeout_s)
    .workers(workers)
    // The service hears the signals itself: actix makes SIGINT a forced stop.
    .disable_signals();
    let server = server
        .listen(listener)
        .map_err(|e| Fatal(format!("cannot listen: {e}")))?
        .run();
    Ok((server, closing))
}

/// `GET /docs`: the reference's own page (a client that does not follow redirects gets it as
/// well as one asking for `/docs/`), its files resolved under `/docs/` by a `<base>`; `None`
/// (a redirect to `/docs/`) if the bundled page is not as expected.
fn docs_page() -> Option<web::Bytes> {
    let config = std::sync::Arc::new(Config::from("/openapi.json"));
    let file = utoipa_swagger_ui::serve("index.html", config).ok()??;
    if file.gzpipped {
        return None;
    }
    let html = std::str::from_utf8(&file.bytes).ok()?;
    html.contains("<head>").then(|| {
        html.replacen("<head>", "<head><base href=\"/docs/\">", 1)
            .into()
    })
}

/// Reads are allowed from any origin; writes only from the configured ones.
fn cors(write_origins: Arc<Vec<String>>) -> Cors {
    Cors::default()
        .allowed_origin_fn(move |origin, head: &RequestHead| {
            let method = if head.method == Method::OPTIONS {
                head.headers
                    .get(header::ACCESS_CONTROL_REQUEST_METHOD)
                    .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
                    .unwrap_or(Method::OPTIONS)
            } else {
                head.method.clone()
            };
            matches!(method, Method::GET | Method::HEAD)
                || origin
                    .to_str()
                    .is_ok_and(|o| write_origins.iter().any(|allowed| allowed == o))
        })
        .allowed_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::HeaderName::from_static("idempotency-key"),
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("last-event-id"),
            header::HeaderName::from_static(crate::api::conditions::READ_AFTER),
        ])
        .expose_headers([
            header::ETAG,
            header::LINK,
            header::LOCATION,
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            header::ALLOW,
            crate::api::limits::RATELIMIT,
            crate::api::limits::RATELIMIT_POLICY,
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("idempotent-replayed"),
            header::HeaderName::from_static(crate::api::conditions::READ_AFTER),
        ])
        .max_age(3600)
}
