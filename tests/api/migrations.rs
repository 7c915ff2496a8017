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

/// How many chunks the TOAST table of `signals` holds.
async fn toast_chunks(sql: &tokio_postgres::Client) -> i64 {
    let toast: String = sql
        .query_one(
            "SELECT reltoastrelid::regclass::text FROM pg_class WHERE relname = 'signals'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    sql.query_one(&format!("SELECT count(*) FROM {toast}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// Stores a signal of about 2.5 KB: three sections of 640 random hexadecimal characters each,
/// which pglz cannot shrink, so with PostgreSQL's defaults they would go to TOAST.
async fn insert_wide_signal(sql: &tokio_postgres::Client, slug: &str) {
    sql.execute(
        "INSERT INTO signals (id, slug, title, score, category, category_key, published_at, sections)
         SELECT gen_random_uuid(), $1, 'A wide signal', 7, 'Research', 'research', now(),
                jsonb_agg(jsonb_build_object('heading', 'Part ' || i, 'body',
                    (SELECT string_agg(md5(random()::text || i || j), '') FROM generate_series(1, 20) j)))
         FROM generate_series(1, 3) i",
        &[&slug],
    )
    .await
    .unwrap();
}

/// Migrations 12 and 13: a signal stored before them had its sections in TOAST; after them it is
/// whole in its row, unchanged, and so is every signal stored later.
#[actix_web::test]
async fn signals_are_kept_whole_in_their_rows() {
    let test_db = TestDb::empty().await;
    let settings = db_settings(&test_db.url);
    let all = db::migrate(&test_db.url, &settings).await.unwrap();
    // Back to before migration 12 (and the ones after it).
    let since_12 = all
        .iter()
        .filter(|m| m.as_str() >= "20261203000012")
        .count();
    db::revert_last(&test_db.url, &settings, since_12)
        .await
        .unwrap();
    let sql = test_db.sql().await;
    insert_wide_signal(&sql, "before").await;
    assert!(toast_chunks(&sql).await > 0, "the sections went to TOAST");
    let sections = "SELECT sections::text FROM signals WHERE slug = 'before'";
    let stored: String = sql.query_one(sections, &[]).await.unwrap().get(0);

    let applied = db::migrate(&test_db.url, &settings).await.unwrap();
    assert_eq!(applied.len(), since_12);
    assert_eq!(toast_chunks(&sql).await, 0);
    let kept: String = sql.query_one(sections, &[]).await.unwrap().get(0);
    assert_eq!(kept, stored);
    insert_wide_signal(&sql, "after").await;
    assert_eq!(toast_chunks(&sql).await, 0);
}
