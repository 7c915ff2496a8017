use signals::db;

use crate::helpers::{db_settings, TestDb};
use signals::config::DatabaseSettings;

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

/// Processes that start together on one new database (a `serve` beside `signals keys create`)
/// each migrate it: they take turns, so every one succeeds and each migration is applied once.
#[actix_web::test]
async fn processes_migrating_one_database_at_once_take_turns() {
    let test_db = TestDb::empty().await;
    let settings = db_settings(&test_db.url);
    let runs = (0..4).map(|_| db::migrate(&test_db.url, &settings));
    let mut applied: Vec<String> = Vec::new();
    for run in futures_util::future::join_all(runs).await {
        applied.extend(run.expect("every process migrates"));
    }
    let all = db::migrate(&test_db.url, &settings).await.unwrap();
    assert!(all.is_empty(), "nothing is left: {all:?}");
    let versions: i64 = test_db
        .sql()
        .await
        .query_one("SELECT count(*) FROM __diesel_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        applied.len() as i64,
        versions,
        "each applied once: {applied:?}"
    );
    applied.sort();
    applied.dedup();
    assert_eq!(applied.len() as i64, versions);
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

/// A new database migrated up to (not including) the migration of this version, and how many
/// migrations are left to run from there.
async fn migrated_to_before(version: &str) -> (TestDb, DatabaseSettings, usize) {
    let test_db = TestDb::empty().await;
    let settings = db_settings(&test_db.url);
    let all = db::migrate(&test_db.url, &settings).await.unwrap();
    let from_it = all.iter().filter(|m| m.as_str() >= version).count();
    db::revert_last(&test_db.url, &settings, from_it)
        .await
        .unwrap();
    (test_db, settings, from_it)
}

/// Migrations 12 and 13: a signal stored before them had its sections in TOAST; after them it is
/// whole in its row, unchanged, and so is every signal stored later.
#[actix_web::test]
async fn signals_are_kept_whole_in_their_rows() {
    let (test_db, settings, since_12) = migrated_to_before("20261203000012").await;
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

/// Migration 17: keys stored before it with decomposed accents are composed, as the service
/// makes them now, without an entry in the change log; a signal that had one tag in both forms
/// keeps the first, logged as an update.
#[actix_web::test]
async fn case_keys_stored_before_are_composed() {
    let (test_db, settings, since_17) = migrated_to_before("20261205000017").await;
    let sql = test_db.sql().await;
    sql.execute(
        "INSERT INTO signals (id, slug, title, score, category, category_key, tags, tag_keys, published_at)
         VALUES (gen_random_uuid(), 'accents', 'Accents', 7, 'Cafe\u{301}s', 'cafe\u{301}s',
                 ARRAY['A\u{30a}ngstro\u{308}m', 'plain'], ARRAY['a\u{30a}ngstro\u{308}m', 'plain'], now()),
                (gen_random_uuid(), 'composed', 'Composed', 7, 'Caf\u{e9}s', 'caf\u{e9}s',
                 ARRAY['plain'], ARRAY['plain'], now()),
                (gen_random_uuid(), 'twice', 'Twice', 7, 'Research', 'research',
                 ARRAY['Caf\u{e9}', 'x', 'CAFE\u{301}'], ARRAY['caf\u{e9}', 'x', 'cafe\u{301}'],
                 '2026-01-01T00:00:00Z')",
        &[],
    )
    .await
    .unwrap();
    let changes = "SELECT count(*) FROM signal_changes";
    let logged: i64 = sql.query_one(changes, &[]).await.unwrap().get(0);

    let applied = db::migrate(&test_db.url, &settings).await.unwrap();
    assert_eq!(applied.len(), since_17);
    let keys = sql
        .query(
            "SELECT category, category_key, tags, tag_keys FROM signals
             WHERE slug IN ('accents', 'composed') ORDER BY slug",
            &[],
        )
        .await
        .unwrap();
    let keys: Vec<(String, String, Vec<String>, Vec<String>)> = keys
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        keys,
        [
            (
                "Cafe\u{301}s".to_owned(),
                "caf\u{e9}s".to_owned(),
                owned(&["A\u{30a}ngstro\u{308}m", "plain"]),
                owned(&["\u{e5}ngstr\u{f6}m", "plain"]),
            ),
            (
                "Caf\u{e9}s".to_owned(),
                "caf\u{e9}s".to_owned(),
                owned(&["plain"]),
                owned(&["plain"]),
            ),
        ],
        "the keys composed, in their order; what clients see as given"
    );
    let twice = sql
        .query_one(
            "SELECT tags, tag_keys, updated_at > '2026-01-02',
                    s.search = signal_search_document(signals), s.search::text
             FROM signals JOIN signal_search s USING (id) WHERE slug = 'twice'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(twice.get::<_, Vec<String>>(0), owned(&["Caf\u{e9}", "x"]));
    assert_eq!(twice.get::<_, Vec<String>>(1), owned(&["caf\u{e9}", "x"]));
    assert!(twice.get::<_, bool>(2), "updated_at moved");
    let document: String = twice.get(4);
    assert!(
        twice.get::<_, bool>(3),
        "its search document made again: {document}"
    );
    let after: i64 = sql.query_one(changes, &[]).await.unwrap().get(0);
    assert_eq!(
        after,
        logged + 1,
        "one change logged: the tag dropped; the keys alone are not"
    );
    // The triggers are back: a change is logged.
    sql.execute("UPDATE signals SET score = 8 WHERE slug = 'composed'", &[])
        .await
        .unwrap();
    let later: i64 = sql.query_one(changes, &[]).await.unwrap().get(0);
    assert_eq!(later, after + 1);
}
