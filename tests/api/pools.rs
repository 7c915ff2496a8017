//! The service's connections: statements kept prepared, and list statements planned per request.

use chrono::{TimeZone, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use signals::db::signals::{self as store, After, ListFilter, Sort};
use signals::db::{PgConn, Plans, PoolFactory};

use crate::helpers::{db_settings, TestDb};

async fn setting(conn: &mut PgConn, name: &str) -> String {
    diesel::select(
        diesel::dsl::sql::<Text>("current_setting(")
            .bind::<Text, _>(name)
            .sql(")"),
    )
    .get_result(conn)
    .await
    .unwrap()
}

async fn prepared_statements(conn: &mut PgConn) -> i64 {
    diesel::select(diesel::dsl::sql::<BigInt>(
        "(SELECT count(*) FROM pg_prepared_statements)",
    ))
    .get_result(conn)
    .await
    .unwrap()
}

#[actix_web::test]
async fn list_connections_plan_every_execution_and_the_others_keep_plans() {
    let db = TestDb::new().await;
    let pools = PoolFactory::new(&db.url, &db_settings(&db.url)).unwrap();
    let mut list = pools.pool(1, Plans::PerExecution).get().await.unwrap();
    let mut other = pools.pool(1, Plans::Reused).get().await.unwrap();
    assert_eq!(
        setting(&mut list, "plan_cache_mode").await,
        "force_custom_plan"
    );
    assert_eq!(setting(&mut other, "plan_cache_mode").await, "auto");
    // The pool's own options are kept beside it.
    assert_eq!(setting(&mut list, "statement_timeout").await, "10s");
}

#[actix_web::test]
async fn list_statements_are_prepared_once_per_connection_and_kept() {
    let db = TestDb::new().await;
    let pools = PoolFactory::new(&db.url, &db_settings(&db.url)).unwrap();
    let mut conn = pools.pool(1, Plans::PerExecution).get().await.unwrap();
    let search = ListFilter {
        min_score: Some(7),
        tags_all: vec!["llm".into()],
        q: Some("chips".into()),
        ..ListFilter::default()
    };
    let plain = ListFilter {
        min_score: Some(7),
        ..ListFilter::default()
    };
    let after = After::Relevance(
        0.5,
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        uuid::Uuid::nil(),
    );
    let before = prepared_statements(&mut conn).await;
    let last = After::Published(Utc::now(), uuid::Uuid::nil());
    for _ in 0..3 {
        store::list(&mut conn, &search, Sort::Relevance, Some(&after), 20)
            .await
            .unwrap();
        store::list(&mut conn, &plain, Sort::PublishedDesc, Some(&last), 20)
            .await
            .unwrap();
        store::count(&mut conn, &search).await.unwrap();
    }
    // Three statements, each prepared on first use and reused after (a statement diesel may not
    // cache would be parsed anew every time and leave nothing behind).
    assert_eq!(prepared_statements(&mut conn).await - before, 3);
}
