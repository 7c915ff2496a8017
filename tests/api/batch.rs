use awc::http::Method;
use serde_json::{json, Value};
use signals::domain::key::Scope;

use crate::helpers::{assert_problem, json_body, signal, TestApp};

async fn post_batch(app: &TestApp, key: &str, body: &Value) -> crate::helpers::Response {
    app.request(Method::POST, "/v1/signals/batch", key)
        .send_json(body)
        .await
        .unwrap()
}

/// Posts a batch that must succeed and returns its answer.
async fn batch_ok(app: &TestApp, key: &str, body: &Value) -> Value {
    let mut res = post_batch(app, key, body).await;
    let answer = json_body(&mut res).await;
    assert_eq!(res.status(), 200, "{answer}");
    answer
}

async fn count(app: &TestApp) -> usize {
    let mut res = app.get("/v1/signals?limit=100").send().await.unwrap();
    json_body(&mut res).await["items"].as_array().unwrap().len()
}

#[actix_web::test]
async fn a_batch_creates_every_item_in_order() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let items: Vec<Value> = (0..3)
        .map(|i| signal(json!({"slug": format!("item-{i}"), "score": i})))
        .collect();
    let mut res = post_batch(&app, &key, &json!({"items": items})).await;
    let body = json_body(&mut res).await;
    assert_eq!(res.status(), 200, "{body}");
    let created = body["created"].as_array().unwrap();
    assert_eq!(created.len(), 3);
    assert_eq!(body["updated"], json!([]));
    assert_eq!(body["skipped"], json!([]));
    for (i, id) in created.iter().enumerate() {
        let mut res = app
            .get(&format!("/v1/signals/{}", id.as_str().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(json_body(&mut res).await["slug"], format!("item-{i}"));
    }
}

#[actix_web::test]
async fn one_invalid_item_rejects_the_whole_batch_with_its_index() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let items = json!([signal(json!({"slug": "fine"})), signal(json!({"score": 11})), {"title": "x"},
                       signal(json!({"slug": "Not Fine"}))]);
    let mut res = post_batch(&app, &key, &json!({"items": items})).await;
    let problem = assert_problem(&mut res, 422).await;
    let pairs: Vec<(u64, &str)> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [(1, "score"), (2, "score"), (2, "category"), (3, "slug")]
    );
    assert_eq!(count(&app).await, 0, "nothing was written");
}

#[actix_web::test]
async fn a_slug_repeated_in_a_batch_meets_the_signal_its_first_item_wrote() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let items = |score: i64| {
        json!([
            signal(json!({"slug": "twice", "score": 1})),
            signal(json!({"slug": "twice", "score": score}))
        ])
    };
    let mut res = post_batch(&app, &key, &json!({"items": items(2)})).await;
    let problem = assert_problem(&mut res, 409).await;
    assert_eq!(problem["errors"][0]["index"], 1);
    assert_eq!(count(&app).await, 0, "nothing was written");
    let mut res = post_batch(
        &app,
        &key,
        &json!({"items": items(2), "on_conflict": "skip"}),
    )
    .await;
    let skipped = json_body(&mut res).await;
    assert_eq!(skipped["created"].as_array().unwrap().len(), 1);
    assert_eq!(skipped["skipped"], skipped["created"]);
    let mut res = app.get("/v1/signals/twice").send().await.unwrap();
    assert_eq!(json_body(&mut res).await["score"], 1);
    app.request(Method::DELETE, "/v1/signals/twice", &key)
        .send()
        .await
        .unwrap();
    let mut res = post_batch(
        &app,
        &key,
        &json!({"items": items(3), "on_conflict": "update"}),
    )
    .await;
    let updated = json_body(&mut res).await;
    assert_eq!(updated["updated"], updated["created"]);
    let mut res = app.get("/v1/signals/twice").send().await.unwrap();
    assert_eq!(json_body(&mut res).await["score"], 3, "the later item wins");
    assert_eq!(count(&app).await, 1);
}

#[actix_web::test]
async fn batch_limits_are_422_for_items_and_413_for_size() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let small = json!({"title": "t", "score": 1, "category": "c"});
    let mut res = post_batch(&app, &key, &json!({"items": vec![small.clone(); 1001]})).await;
    assert_problem(&mut res, 422).await;
    for bad in [
        json!({"items": []}),
        json!({"items": [small.clone()], "on_conflict": "merge"}),
        json!({"items": [small.clone()], "extra": 1}),
        json!([small.clone()]),
    ] {
        let mut res = post_batch(&app, &key, &bad).await;
        assert_problem(&mut res, 422).await;
    }
    let big = json!({"items": vec![signal(json!({"body": "x".repeat(19_000)})); 900]});
    let mut res = post_batch(&app, &key, &big).await;
    assert_problem(&mut res, 413).await;
    // 1,000 items are fine.
    let mut res = post_batch(&app, &key, &json!({"items": vec![small; 1000]})).await;
    let body = json_body(&mut res).await;
    assert_eq!(res.status(), 200);
    assert_eq!(body["created"].as_array().unwrap().len(), 1000);
}

#[actix_web::test]
async fn on_conflict_error_skip_and_update() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let existing = app
        .create(&key, &signal(json!({"slug": "taken", "score": 1})))
        .await;
    let items = json!([
        signal(json!({"slug": "new-one"})),
        signal(json!({"slug": "taken", "score": 9}))
    ]);

    let mut res = post_batch(&app, &key, &json!({"items": items, "on_conflict": "error"})).await;
    let problem = assert_problem(&mut res, 409).await;
    assert_eq!(problem["errors"][0]["index"], 1);
    assert_eq!(count(&app).await, 1, "nothing was written");

    let mut res = post_batch(&app, &key, &json!({"items": items, "on_conflict": "skip"})).await;
    let body = json_body(&mut res).await;
    assert_eq!(body["skipped"], json!([existing["id"]]));
    assert_eq!(body["created"].as_array().unwrap().len(), 1);

    let items = json!([signal(json!({"slug": "taken", "score": 9}))]);
    let mut res = post_batch(
        &app,
        &key,
        &json!({"items": items, "on_conflict": "update"}),
    )
    .await;
    let body = json_body(&mut res).await;
    assert_eq!(body["updated"], json!([existing["id"]]));
    let mut res = app.get("/v1/signals/taken").send().await.unwrap();
    assert_eq!(json_body(&mut res).await["score"], 9);

    // Another write key may not update this key's signal; nothing of its batch is written.
    let other = app.key(Scope::Write).await;
    let items = json!([
        signal(json!({"slug": "by-other"})),
        signal(json!({"slug": "taken", "score": 2}))
    ]);
    let mut res = post_batch(
        &app,
        &other,
        &json!({"items": items, "on_conflict": "update"}),
    )
    .await;
    assert_problem(&mut res, 403).await;
    let mut res = app.get("/v1/signals/by-other").send().await.unwrap();
    assert_problem(&mut res, 404).await;
}

#[actix_web::test]
async fn a_batch_needs_a_write_key() {
    let app = TestApp::spawn().await;
    let body = json!({"items": [signal(json!({}))]});
    let mut res = app
        .client
        .post(app.url("/v1/signals/batch"))
        .send_json(&body)
        .await
        .unwrap();
    assert_problem(&mut res, 401).await;
    let key = app.key(Scope::Read).await;
    let mut res = post_batch(&app, &key, &body).await;
    assert_problem(&mut res, 403).await;
}

#[actix_web::test]
async fn a_derived_slug_never_takes_a_later_items_slug() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let items = json!([{"title": "Foo Bar", "score": 1, "category": "c"},
                       {"title": "Other", "slug": "foo-bar", "score": 1, "category": "c"}]);
    let mut res = post_batch(&app, &key, &json!({"items": items})).await;
    let body = json_body(&mut res).await;
    assert_eq!(res.status(), 200, "{body}");
    let mut res = app.get("/v1/signals/foo-bar").send().await.unwrap();
    assert_eq!(json_body(&mut res).await["title"], "Other");
    let mut res = app.get("/v1/signals/foo-bar-2").send().await.unwrap();
    assert_eq!(json_body(&mut res).await["title"], "Foo Bar");
}

/// A thousand items with one title (what schemathesis sends at the edge of `maxItems`), sent
/// twice: every one is created, with slugs that are all different, the first few as the title's
/// own and its `-2`... suffixes, never the batch's explicit slug.
#[actix_web::test]
async fn a_thousand_items_with_one_title_each_get_their_own_slug() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let mut items = vec![json!({"title": "One Title", "score": 1, "category": "c"}); 999];
    items.push(json!({"title": "Explicit", "slug": "one-title-3", "score": 1, "category": "c"}));
    let body = batch_ok(&app, &key, &json!({"items": items})).await;
    assert_eq!(body["created"].as_array().unwrap().len(), 1000);
    items.pop();
    let body = batch_ok(&app, &key, &json!({"items": items})).await;
    assert_eq!(body["created"].as_array().unwrap().len(), 999);

    let client = app.db.sql().await;
    let rows = client
        .query("SELECT slug, title FROM signals ORDER BY id", &[])
        .await
        .unwrap();
    let slugs: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(slugs.len(), 1999);
    let distinct: std::collections::HashSet<&str> = slugs.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(distinct.len(), 1999, "slugs are unique");
    let title_of = |slug: &str| {
        slugs
            .iter()
            .find(|(s, _)| s == slug)
            .map(|(_, t)| t.as_str())
    };
    assert_eq!(title_of("one-title-3"), Some("Explicit"));
    for slug in ["one-title", "one-title-2", "one-title-4"] {
        assert_eq!(title_of(slug), Some("One Title"), "{slug}");
    }
    let suffixed = slugs
        .iter()
        .filter(|(s, t)| t == "One Title" && s.len() == "one-title-".len() + 12)
        .count();
    assert_eq!(suffixed, 1998 - 3, "the rest have a random suffix");
}

/// Items of one batch that name the same slug end as writing them in turn would: with `skip` the
/// first is created and the rest skipped; with `update` the last wins, a publication time given
/// earlier stays unless a later item gives one, and the signal changes once.
#[actix_web::test]
async fn items_that_share_a_slug_end_as_if_written_in_turn() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let dup = |title: &str, published_at: Value| {
        signal(json!({"slug": "dup", "title": title, "published_at": published_at}))
    };
    let items = json!([
        dup("First", json!("2026-01-02T03:04:05Z")),
        signal(json!({"slug": "between"})),
        dup("Second", json!(null)),
        dup("Third", json!(null)),
    ]);
    let body = batch_ok(&app, &key, &json!({"items": items, "on_conflict": "skip"})).await;
    let id = body["created"][0].clone();
    assert_eq!(body["created"].as_array().unwrap().len(), 2);
    assert_eq!(body["skipped"], json!([id, id]));
    assert_eq!(app.get_json("/v1/signals/dup").await["title"], "First");

    // Again with `update`: the signal exists, every item updates it, the last one wins.
    let body = batch_ok(
        &app,
        &key,
        &json!({"items": items, "on_conflict": "update"}),
    )
    .await;
    let updated = body["updated"].as_array().unwrap();
    assert_eq!(updated.len(), 4, "{body}");
    assert_eq!([&updated[0], &updated[2], &updated[3]], [&id, &id, &id]);
    assert_eq!(body["skipped"].as_array().unwrap().len(), 0);
    let got = app.get_json("/v1/signals/dup").await;
    assert_eq!(got["title"], "Third");
    assert_eq!(got["published_at"], "2026-01-02T03:04:05Z");

    // New slug with `update`: the first item creates it, the others update it.
    let items = json!([
        signal(json!({"slug": "fresh", "title": "A", "published_at": "2026-03-01T00:00:00Z"})),
        signal(json!({"slug": "fresh", "title": "B", "published_at": "2026-04-01T00:00:00Z"})),
        signal(json!({"slug": "fresh", "title": "C", "published_at": null})),
    ]);
    let body = batch_ok(
        &app,
        &key,
        &json!({"items": items, "on_conflict": "update"}),
    )
    .await;
    let id = body["created"][0].clone();
    assert_eq!(body["created"], json!([id]));
    assert_eq!(body["updated"], json!([id, id]));
    let got = app.get_json("/v1/signals/fresh").await;
    assert_eq!(got["title"], "C");
    assert_eq!(got["published_at"], "2026-04-01T00:00:00Z");

    let client = app.db.sql().await;
    let changes: i64 = client
        .query_one(
            "SELECT count(*) FROM signal_changes WHERE slug = 'fresh'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(changes, 1, "one change for the three items");
}

/// Derived slugs go to items in input order, also when the title's own slug is taken: the first
/// item gets the lowest free number, as writing them in turn would give it.
#[actix_web::test]
async fn derived_slugs_are_numbered_in_input_order_past_the_taken_ones() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    app.create(&key, &signal(json!({"title": "Foo", "slug": "foo"})))
        .await;
    app.create(&key, &signal(json!({"title": "Foo", "slug": "foo-3"})))
        .await;
    let item = |n: i64| json!({"title": "Foo", "score": n, "category": "c"});
    let body = batch_ok(&app, &key, &json!({"items": [item(1), item(2), item(3)]})).await;
    let created = body["created"].as_array().unwrap();
    for (id, slug) in created.iter().zip(["foo-2", "foo-4"]) {
        assert_eq!(
            app.get_json(&format!("/v1/signals/{}", id.as_str().unwrap()))
                .await["slug"],
            slug
        );
    }
    let third = app
        .get_json(&format!("/v1/signals/{}", created[2].as_str().unwrap()))
        .await["slug"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        third.starts_with("foo-") && third.len() == "foo-".len() + 12,
        "{third}"
    );
}

/// A slug named twice: with `error` the second item is the conflict and nothing is written; with
/// `skip` over an existing signal every item is skipped.
#[actix_web::test]
async fn a_slug_named_twice_conflicts_or_is_skipped_each_time() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let items = json!([
        signal(json!({"slug": "twice"})),
        signal(json!({"slug": "twice"}))
    ]);
    let mut res = post_batch(&app, &key, &json!({"items": items, "on_conflict": "error"})).await;
    let problem = assert_problem(&mut res, 409).await;
    assert_eq!(problem["errors"][0]["index"], 1, "{problem}");
    assert_eq!(count(&app).await, 0, "nothing was written");
    // Every conflicting item is named at once: a slug taken, and each repeat of one.
    app.create(&key, &signal(json!({"slug": "taken"}))).await;
    let many = json!([
        signal(json!({"slug": "fine"})),
        signal(json!({"slug": "twice"})),
        signal(json!({"slug": "twice"})),
        signal(json!({"slug": "taken"})),
        signal(json!({"slug": "twice"}))
    ]);
    let mut res = post_batch(&app, &key, &json!({"items": many, "on_conflict": "error"})).await;
    let problem = assert_problem(&mut res, 409).await;
    let indexes: Vec<_> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].clone())
        .collect();
    assert_eq!(indexes, [json!(2), json!(3), json!(4)], "{problem}");
    assert_eq!(count(&app).await, 1, "nothing more was written");
    app.request(Method::DELETE, "/v1/signals/taken", &key)
        .send()
        .await
        .unwrap();

    let existing = app.create(&key, &signal(json!({"slug": "twice"}))).await;
    let body = batch_ok(&app, &key, &json!({"items": items, "on_conflict": "skip"})).await;
    assert_eq!(body["skipped"], json!([existing["id"], existing["id"]]));
    assert_eq!(count(&app).await, 1);
}

/// A signal within every limit of the API is written, however its text is made: twenty sections
/// of 20,000 characters of distinct long words in a three-byte script are more than the 1 MB a
/// PostgreSQL search document may hold (this was a 503 that no retry could cure); the document
/// takes the sections' first 120,000 characters, and the signal is found by a word of them.
#[actix_web::test]
async fn a_signal_at_the_limits_with_a_text_too_large_to_index_whole_is_written() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let word = |i: u32| -> String {
        (0..682u32)
            .map(|j| char::from_u32(0x4E00 + (i * 7919 + j * 104_729) % 20_000).unwrap())
            .collect()
    };
    let sections: Vec<Value> = (0..20u32)
        .map(|s| {
            let words: Vec<String> = (0..29).map(|w| word(s * 29 + w)).collect();
            let mut body = words.join(" ");
            if s == 0 {
                body = format!("zebrafinch {body}");
            }
            body = body.chars().take(20_000).collect();
            json!({"heading": format!("Part {s}"), "body": body})
        })
        .collect();
    let item = signal(json!({"slug": "huge", "sections": sections}));
    let mut res = post_batch(&app, &key, &json!({"items": [item]})).await;
    let body = json_body(&mut res).await;
    assert_eq!(res.status(), 200, "{body}");
    assert_eq!(body["created"].as_array().unwrap().len(), 1);
    let mut res = app.get("/v1/signals?q=zebrafinch").send().await.unwrap();
    let found = json_body(&mut res).await;
    assert_eq!(found["items"][0]["slug"], "huge", "{found}");
}
