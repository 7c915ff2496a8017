//! The webhook benchmark's receiver (run by `bench/webhooks.sh`): answers every POST with 204
//! and counts them; `GET /count` tells how many came, and when the first and the last did.
//!
//!     cargo run --release --example webhook_receiver -- 127.0.0.1:18094

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpResponse, HttpServer};

#[derive(Default)]
struct Count {
    requests: AtomicU64,
    first_ms: AtomicU64,
    last_ms: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18094".into());
    let count = Arc::new(Count::default());
    HttpServer::new(move || {
        let count = count.clone();
        App::new()
            .app_data(web::Data::from(count))
            .route(
                "/count",
                web::get().to(|c: web::Data<Count>| async move {
                    HttpResponse::Ok().body(format!(
                        "{} {} {}\n",
                        c.requests.load(Ordering::Relaxed),
                        c.first_ms.load(Ordering::Relaxed),
                        c.last_ms.load(Ordering::Relaxed)
                    ))
                }),
            )
            .default_service(web::to(
                |c: web::Data<Count>, _body: web::Bytes| async move {
                    let now = now_ms();
                    let _ =
                        c.first_ms
                            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
                    c.last_ms.store(now, Ordering::Relaxed);
                    c.requests.fetch_add(1, Ordering::Relaxed);
                    HttpResponse::NoContent().finish()
                },
            ))
    })
    .workers(1)
    .bind(bind)?
    .run()
    .await
}
