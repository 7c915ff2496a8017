//! The service's connections: statements kept prepared, list statements planned per request,
//! and lookups sharing one pipelined connection per worker.

use chrono::{TimeZone, Utc};
use diesel::sql_types::{BigInt, Integer, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use serde_json::{json, Value};
use signals::db::lists as store;
use signals::db::{self, PgConn, Plans, PoolFactory};
use signals::domain::key::Scope;
use signals::domain::query::{After, ListFilter, Sort};

use crate::helpers::{assert_problem, db_settings, json_body, signal, TestApp, TestDb};

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
    let mut one_plan = pools.pool(1, Plans::Generic).get().await.unwrap();
    let mut other = pools.pool(1, Plans::Reused).get().await.unwrap();
    assert_eq!(
        setting(&mut list, "plan_cache_mode").await,
        "force_custom_plan"
    );
    assert_eq!(
        setting(&mut one_plan, "plan_cache_mode").await,
        "force_generic_plan"
    );
    assert_eq!(setting(&mut other, "plan_cache_mode").await, "auto");
    // The pool's own options are kept beside it.
    assert_eq!(setting(&mut list, "statement_timeout").await, "10s");
    // No connection compiles its statements (a generic plan is costed for a tenth of the table
    // and would pass `jit_above_cost` on a large one).
    for conn in [&mut list, &mut one_plan, &mut other] {
        assert_eq!(setting(conn, "jit").await, "off");
    }
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
        None,
    );
    let horizon = store::Horizon::new(0);
    let before = prepared_statements(&mut conn).await;
    let last = After::Published(Utc::now(), uuid::Uuid::nil());
    for _ in 0..3 {
        store::list(
            &mut conn,
            &search,
            Sort::Relevance,
            Some(&after),
            20,
            &horizon,
            store::Plan::PerValues,
        )
        .await
        .unwrap();
        store::list(
            &mut conn,
            &plain,
            Sort::PublishedDesc,
            Some(&last),
            20,
            &horizon,
            store::Plan::PerValues,
        )
        .await
        .unwrap();
        store::count(&mut conn, &search).await.unwrap();
    }
    // Three statements, each prepared on first use and reused after (a statement diesel may not
    // cache would be parsed anew every time and leave nothing behind).
    assert_eq!(prepared_statements(&mut conn).await - before, 3);
}

/// The backends of the app's database whose last statement was a lookup of one signal by id
/// (the form a lookup alone sends; lookups that go together send `= ANY($1)`, as the change
/// listener's reads do on a connection of their own).
async fn lookup_backends(app: &TestApp) -> Vec<i32> {
    #[derive(QueryableByName)]
    struct Backend {
        #[diesel(sql_type = Integer)]
        pid: i32,
    }
    let mut conn = db::conn(&app.pool).await.unwrap();
    diesel::sql_query(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND strpos(query, $1) > 0",
    )
    .bind::<Text, _>(r#"WHERE ("signals"."id" = $1)"#)
    .load::<Backend>(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .map(|b| b.pid)
    .collect()
}

async fn get_ok(app: &TestApp, id: &str) -> Value {
    let mut res = app.get(&format!("/v1/signals/{id}")).send().await.unwrap();
    let body = json_body(&mut res).await;
    assert_eq!(res.status(), 200, "{body}");
    body
}

/// A write key and the id of a signal it created.
async fn one_signal(app: &TestApp) -> (String, String) {
    let key = app.key(Scope::Write).await;
    let created = app.create(&key, &signal(json!({}))).await;
    (key, created["id"].as_str().unwrap().to_owned())
}

#[actix_web::test]
async fn concurrent_lookups_share_one_connection_and_each_gets_its_own_signal() {
    let app = uncached().await;
    let key = app.key(Scope::Write).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let created = app
            .create(
                &key,
                &signal(json!({ "title": format!("Lookup number {i}") })),
            )
            .await;
        ids.push((created["id"].as_str().unwrap().to_owned(), i));
    }
    // Lookups that arrive together go in one statement; each gets its own signal, or 404.
    let missing: Vec<String> = (0..8).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let lookups = (0..48).map(|n| {
        let (id, i) = &ids[n % ids.len()];
        let missing = &missing[n % missing.len()];
        let app = &app;
        async move {
            let body = get_ok(app, id).await;
            assert_eq!(body["id"], id.as_str());
            assert_eq!(body["title"], format!("Lookup number {i}"));
            let mut res = app
                .get(&format!("/v1/signals/{missing}"))
                .send()
                .await
                .unwrap();
            assert_problem(&mut res, 404).await;
        }
    });
    futures_util::future::join_all(lookups).await;
    // One more, alone, so that the lookup connection's last statement is the single form.
    get_ok(&app, &ids[0].0).await;
    // The one worker sent all of them over one connection (its pool would have opened up to four).
    assert_eq!(lookup_backends(&app).await.len(), 1);
}

#[actix_web::test]
async fn a_lookup_survives_the_loss_of_the_shared_connection() {
    let app = uncached().await;
    let (_, id) = one_signal(&app).await;
    get_ok(&app, &id).await;
    let killed = lookup_backends(&app).await;
    assert_eq!(killed.len(), 1);
    let mut conn = db::conn(&app.pool).await.unwrap();
    diesel::sql_query("SELECT pg_terminate_backend($1)")
        .bind::<Integer, _>(killed[0])
        .execute(&mut conn)
        .await
        .unwrap();
    for _ in 0..100 {
        if lookup_backends(&app).await.is_empty() {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(lookup_backends(&app).await.is_empty());
    // The next lookup finds its connection closed and is answered on a new one.
    assert_eq!(get_ok(&app, &id).await["id"], id.as_str());
    let now = lookup_backends(&app).await;
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], killed[0]);
}

#[actix_web::test]
async fn the_lookup_connection_leaves_the_pool_to_writes_keys_and_readiness() {
    // One connection a pool per worker: the lookups' connection must not be one of them.
    let app = TestApp::spawn_with(|serve, db| {
        serve.cache_mb = 0;
        db.pool_size = 1;
        db.db_timeout_ms = 500;
    })
    .await;
    let (key, id) = one_signal(&app).await;
    get_ok(&app, &id).await;
    app.create(&key, &signal(json!({ "title": "A second one" })))
        .await;
    let res = app.get("/readyz").send().await.unwrap();
    assert_eq!(res.status(), 200);
    get_ok(&app, &id).await;
}

#[actix_web::test]
async fn lookups_queued_behind_a_stuck_statement_give_up_within_their_limit() {
    // A lookup may take db_timeout + statement_timeout (1.2 s here) in all, waiting for the
    // lookups before it on the shared connection included. The cache is off: a lookup it
    // answered would never reach the stuck connection.
    let app = TestApp::spawn_with(|serve, db| {
        serve.cache_mb = 0;
        db.db_timeout_ms = 200;
        db.statement_timeout_ms = 1000;
    })
    .await;
    let (_, id) = one_signal(&app).await;
    get_ok(&app, &id).await;
    let client = app.lock_signals().await;
    let started = std::time::Instant::now();
    let path = format!("/v1/signals/{id}");
    let stuck = (0..6).map(|_| async {
        let mut res = app.get(&path).send().await.unwrap();
        assert_problem(&mut res, 503).await;
    });
    futures_util::future::join_all(stuck).await;
    // One after the other, each waiting out its statement timeout, they would take 6 s.
    assert!(
        started.elapsed() < std::time::Duration::from_millis(3500),
        "{:?}",
        started.elapsed()
    );
    client.batch_execute("COMMIT").await.unwrap();
    get_ok(&app, &id).await;
}

/// The app without its cache of hot reads: these tests watch the database connections that
/// reads use.
async fn uncached() -> TestApp {
    TestApp::spawn_with(|serve, _| serve.cache_mb = 0).await
}
