//! Rate limits: 429 with Retry-After and the RateLimit fields, per key and per address, one
//! limit for several instances, and made-up keys refused before they are looked up.

use awc::http::Method;
use signals::config::RateLimit;
use signals::domain::key::{self, Scope};

use crate::helpers::{assert_problem, header, TestApp};

fn limit(s: &str) -> RateLimit {
    s.parse().unwrap()
}

#[actix_web::test]
async fn reads_over_the_limit_get_429_with_retry_after_and_the_ratelimit_fields() {
    let app = TestApp::spawn_with(|serve, _| serve.rate_limit_read = limit("5/60s:2")).await;
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let res = app.get("/v1/signals").send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            header(&res, "ratelimit-policy").as_deref(),
            Some("\"read\";q=5;w=60")
        );
        let fields = header(&res, "ratelimit").unwrap();
        let r: u32 = fields
            .split(';')
            .find_map(|p| p.strip_prefix("r="))
            .unwrap()
            .parse()
            .unwrap();
        remaining.push(r);
    }
    assert_eq!(remaining, [4, 3, 2, 1, 0]);
    let mut res = app.get("/v1/signals").send().await.unwrap();
    let problem = assert_problem(&mut res, 429).await;
    assert_eq!(problem["type"], "/problems/rate-limited");
    let retry: u32 = header(&res, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert!(header(&res, "ratelimit")
        .unwrap()
        .starts_with("\"read\";r=0;t="));
    // Writes have their own limit (off here): no fields on them.
    let key = app.key(Scope::Write).await;
    let res = app
        .request(Method::POST, "/v1/signals", &key)
        .send_json(&crate::helpers::signal(serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert!(header(&res, "ratelimit").is_none());
}

#[actix_web::test]
async fn the_liveness_probe_is_not_limited() {
    let app = TestApp::spawn_with(|serve, _| serve.rate_limit_read = limit("2/60s:1")).await;
    for _ in 0..2 {
        assert_eq!(app.get("/openapi.json").send().await.unwrap().status(), 200);
    }
    let mut res = app.get("/openapi.json").send().await.unwrap();
    assert_problem(&mut res, 429).await;
    // The address is over its limit; /healthz answers all the same, uncounted.
    for _ in 0..5 {
        let res = app.get("/healthz").send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(header(&res, "ratelimit").is_none());
        assert!(header(&res, "ratelimit-policy").is_none());
    }
}

#[actix_web::test]
async fn a_key_has_a_limit_of_its_own_apart_from_its_address() {
    let app = TestApp::spawn_with(|serve, _| serve.rate_limit_read = limit("3/60s:1")).await;
    for _ in 0..3 {
        assert_eq!(app.get("/openapi.json").send().await.unwrap().status(), 200);
    }
    assert_eq!(app.get("/openapi.json").send().await.unwrap().status(), 429);
    let (a, b) = (app.key(Scope::Read).await, app.key(Scope::Read).await);
    for key in [&a, &b] {
        for _ in 0..3 {
            let res = app
                .request(Method::GET, "/v1/signals", key)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
        let mut res = app
            .request(Method::GET, "/v1/signals", key)
            .send()
            .await
            .unwrap();
        assert_problem(&mut res, 429).await;
    }
}

#[actix_web::test]
async fn two_instances_on_one_database_enforce_one_limit() {
    let (quota, burst) = (20, 2);
    let setting = format!("{quota}/60s:{burst}");
    let app = TestApp::spawn_with(|serve, _| serve.rate_limit_read = limit(&setting)).await;
    let other = app
        .another_instance(|serve, _| serve.rate_limit_read = limit(&setting))
        .await;
    let mut admitted = 0;
    for i in 0..60 {
        let url = if i % 2 == 0 {
            app.url("/openapi.json")
        } else {
            other.url("/openapi.json")
        };
        let res = app.client.get(url).send().await.unwrap();
        match res.status().as_u16() {
            200 => admitted += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    // One limit, at most one burst over per instance; never each instance's quota.
    assert!(admitted >= quota, "admitted {admitted}");
    assert!(admitted <= quota + 2 * burst, "admitted {admitted}");
}

#[actix_web::test]
async fn made_up_keys_are_refused_by_address_before_they_are_looked_up() {
    let app = TestApp::spawn_with(|serve, _| serve.rate_limit_read = limit("5/60s:1")).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let made_up = key::generate().token;
        let res = app
            .request(Method::GET, "/v1/signals", &made_up)
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    // Each key is new, so no key's own limit is reached: the address's failures are.
    assert_eq!(&statuses[..5], [401; 5]);
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // A real key from the same address is refused too while the address is over (it is not
    // looked up either); and a key that failed was no key: the address's quota for requests
    // without one is used up as well (it would otherwise be a second quota on routes that
    // take no key).
    let real = app.key(Scope::Read).await;
    let res = app
        .request(Method::GET, "/v1/signals", &real)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(app.get("/v1/signals").send().await.unwrap().status(), 429);
    assert_eq!(app.get("/readyz").send().await.unwrap().status(), 429);
}

#[actix_web::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let count_as_one =
        TestApp::spawn_with(|serve, _| serve.rate_limit_read = limit("2/60s:1")).await;
    let trusting = TestApp::spawn_with(|serve, _| {
        serve.rate_limit_read = limit("2/60s:1");
        serve.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let statuses = |app: &TestApp| {
        let app_client = app.client.clone();
        let url = app.url("/openapi.json");
        async move {
            let mut out = Vec::new();
            for i in 0..4 {
                let res = app_client
                    .get(&url)
                    .insert_header(("X-Forwarded-For", format!("203.0.113.{}", i % 2 + 1)))
                    .send()
                    .await
                    .unwrap();
                out.push(res.status().as_u16());
            }
            out
        }
    };
    // Untrusted: every request is the peer's, whatever it claims.
    assert_eq!(statuses(&count_as_one).await, [200, 200, 429, 429]);
    // Trusted: two clients behind the proxy, two requests each.
    assert_eq!(statuses(&trusting).await, [200, 200, 200, 200]);
}

#[actix_web::test]
async fn a_made_up_secret_under_a_real_keys_prefix_uses_up_nothing_of_that_keys_quota() {
    // Behind a trusted proxy, so that the attacker and the key's owner have addresses of their
    // own.
    let app = TestApp::spawn_with(|serve, _| {
        serve.rate_limit_read = limit("3/60s:1");
        serve.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let real = app.key(Scope::Read).await;
    let (prefix, _) = key::split(&real).unwrap();
    let forged = format!("sig_{prefix}_not-the-secret");
    assert!(real.starts_with("sig_"), "{real}");
    let from = |ip: &'static str, token: &str| {
        app.request(Method::GET, "/v1/signals", token)
            .insert_header(("X-Forwarded-For", ip))
    };
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            from("203.0.113.66", &forged)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    // Charged to the attacker's address: 401 while it has failures left, then 429.
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    // The key's own quota is whole.
    for _ in 0..3 {
        assert_eq!(
            from("198.51.100.7", &real).send().await.unwrap().status(),
            200
        );
    }
    assert_eq!(
        from("198.51.100.7", &real).send().await.unwrap().status(),
        429
    );
}

#[actix_web::test]
async fn a_forwarded_header_is_not_believed_even_from_a_trusted_proxy() {
    let app = TestApp::spawn_with(|serve, _| {
        serve.rate_limit_read = limit("2/60s:1");
        serve.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        let res = app
            .get("/openapi.json")
            .insert_header(("X-Forwarded-For", "203.0.113.5"))
            .insert_header(("Forwarded", format!("for=192.0.2.{i}")))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    // One client (the X-Forwarded-For address), however its Forwarded header varies.
    assert_eq!(statuses, [200, 200, 429, 429]);
}

#[actix_web::test]
async fn instances_adding_the_same_counts_in_opposite_orders_take_turns_instead_of_deadlocking() {
    use diesel_async::{AsyncConnection, AsyncPgConnection};
    use signals::db::limits::{add, Admitted};
    let db = crate::helpers::TestDb::new().await;
    // Two instances' flushes of the same subjects, gathered in opposite orders (each instance
    // walks its own hash map).
    let counts = |reversed: bool| {
        let mut rows: Vec<Admitted> = (0..200)
            .map(|i| Admitted {
                policy: "read".to_owned(),
                subject: format!("address:192.0.2.{i}"),
                window_start: 60,
                count: 1,
            })
            .collect();
        if reversed {
            rows.reverse();
        }
        rows
    };
    let flushes = |reversed: bool| {
        let url = db.url.clone();
        let rows = counts(reversed);
        async move {
            let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
            for _ in 0..25 {
                add(&mut conn, &rows).await?;
            }
            Ok::<_, diesel::result::Error>(())
        }
    };
    let (a, b) = futures_util::future::join(flushes(false), flushes(true)).await;
    a.unwrap();
    b.unwrap();
    let totals = db
        .sql()
        .await
        .query("SELECT DISTINCT count FROM rate_limit_counts", &[])
        .await
        .unwrap();
    assert_eq!(totals.len(), 1);
    assert_eq!(totals[0].get::<_, i64>(0), 50);
}
