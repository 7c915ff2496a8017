use signals::db;

use crate::helpers::{db_settings, TestDb};

async fn tables(url: &str) -> Vec<String> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[actix_web::test]
async fn migrations_run_up_down_and_up_again() {
    let test_db = TestDb::empty().await;
    let settings = db_settings(&test_db.url);
    let applied = db::migrate(&test_db.url, &settings).await.unwrap();
    assert!(!applied.is_empty());
    assert_eq!(
        tables(&test_db.url).await,
        [
            "__diesel_schema_migrations",
            "api_keys",
            "idempotency_records",
            "rate_limit_counts",
            "server_secrets",
            "signal_changes",
            "signal_search",
            "signals",
            "webhook_attempts",
            "webhook_deliveries",
            "webhook_fanout",
            "webhook_messages",
            "webhooks"
        ]
    );
    let reverted = db::revert_all(&test_db.url, &settings).await.unwrap();
    assert_eq!(reverted, applied.len());
    assert_eq!(tables(&test_db.url).await, ["__diesel_schema_migrations"]);
    assert_eq!(db::migrate(&test_db.url, &settings).await.unwrap(), applied);
    // Running again applies nothing.
    assert!(db::migrate(&test_db.url, &settings)
        .await
        .unwrap()
        .is_empty());
}
