use std::collections::HashSet;

use serde_json::{json, Value};
use signals::domain::key::Scope;

use crate::helpers::{assert_problem, header, json_body, TestApp};

/// 25 signals: scores 0..=9 repeating, one a day from 2026-01-01, some sharing a time.
async fn seed(app: &TestApp) -> Vec<Value> {
    let key = app.key(Scope::Write).await;
    let mut created = Vec::new();
    for i in 0..25 {
        let day = 1 + i / 2; // pairs share a publication time: ties break by id
        let s = json!({
            "title": format!("Signal {i}"),
            "score": i % 10,
            "category": if i % 3 == 0 { "Industry" } else { "Research" },
            "published_at": format!("2026-01-{day:02}T12:00:00Z"),
            "tags": if i % 2 == 0 { json!(["LLM", "Funding"]) } else { json!(["LLM"]) },
        });
        created.push(app.create(&key, &s).await);
    }
    created
}

/// Follows `next_cursor` from `first` to the end, checking the Link header on the way.
async fn walk(app: &TestApp, first: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut path = first.to_owned();
    for _ in 0..100 {
        let mut res = app.get(&path).send().await.unwrap();
        let link = header(&res, "link");
        let page = json_body(&mut res).await;
        assert_eq!(res.status(), 200, "{page}");
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        let Some(cursor) = page["next_cursor"].as_str() else {
            assert!(link.is_none());
            return items;
        };
        let link = link.expect("a Link header when there is a next page");
        let url = link
            .strip_prefix('<')
            .unwrap()
            .split_once(">; rel=\"next\"")
            .unwrap()
            .0;
        assert!(url.starts_with(&app.address), "{url}");
        assert!(url.contains(&format!("cursor={cursor}")), "{url}");
        path = url[app.address.len()..].to_owned();
    }
    panic!("pagination did not end");
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn the_default_list_is_newest_first_and_pages_cover_everything_once() {
    let app = TestApp::spawn().await;
    let created = seed(&app).await;
    let items = walk(&app, "/v1/signals?limit=7").await;
    let mut expected = created.clone();
    expected.sort_by(|a, b| {
        (b["published_at"].as_str(), b["id"].as_str())
            .cmp(&(a["published_at"].as_str(), a["id"].as_str()))
    });
    assert_eq!(ids(&items), ids(&expected));
    // The default page size is 20.
    let mut res = app.get("/v1/signals").send().await.unwrap();
    assert_eq!(
        json_body(&mut res).await["items"].as_array().unwrap().len(),
        20
    );
}

#[actix_web::test]
async fn score_bounds_are_inclusive() {
    let app = TestApp::spawn().await;
    let created = seed(&app).await;
    let items = walk(&app, "/v1/signals?min_score=3&max_score=5&limit=4").await;
    let expected: HashSet<String> = created
        .iter()
        .filter(|s| (3..=5).contains(&s["score"].as_i64().unwrap()))
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(items.len(), expected.len());
    assert_eq!(ids(&items).into_iter().collect::<HashSet<_>>(), expected);
}

#[actix_web::test]
async fn sorting_by_score_breaks_ties_by_time_then_id() {
    let app = TestApp::spawn().await;
    let created = seed(&app).await;
    let items = walk(&app, "/v1/signals?sort=-score&limit=6").await;
    let mut expected = created.clone();
    let key = |s: &Value| {
        (
            s["score"].as_i64().unwrap(),
            s["published_at"].as_str().unwrap().to_owned(),
            s["id"].as_str().unwrap().to_owned(),
        )
    };
    expected.sort_by_key(|s| std::cmp::Reverse(key(s)));
    assert_eq!(ids(&items), ids(&expected));
    let ascending = walk(&app, "/v1/signals?sort=score&limit=6").await;
    expected.reverse();
    assert_eq!(ids(&ascending), ids(&expected));
}

#[actix_web::test]
async fn category_and_tag_filters_match_case_insensitively() {
    let app = TestApp::spawn().await;
    let created = seed(&app).await;
    let items = walk(&app, "/v1/signals?category=industry&tag=funding&tag=LLM").await;
    let expected = created
        .iter()
        .filter(|s| s["category"] == "Industry" && s["tags"].as_array().unwrap().len() == 2)
        .count();
    assert!(expected > 0);
    assert_eq!(items.len(), expected);
    let window = walk(
        &app,
        "/v1/signals?since=2026-01-02T12:00:00Z&until=2026-01-04T12:00:00Z",
    )
    .await;
    assert_eq!(window.len(), 4, "since is inclusive, until exclusive");
}

#[actix_web::test]
async fn pages_stay_exact_while_signals_are_inserted() {
    let app = TestApp::spawn().await;
    let created = seed(&app).await;
    let key = app.key(Scope::Write).await;
    let mut res = app.get("/v1/signals?limit=10").send().await.unwrap();
    let page = json_body(&mut res).await;
    let mut seen = ids(page["items"].as_array().unwrap());
    // New signals, newer and older than the cursor, arrive between pages.
    for published_at in ["2027-01-01T00:00:00Z", "2025-01-01T00:00:00Z"] {
        app.create(
            &key,
            &json!({"title": "Late", "score": 5, "category": "AI", "published_at": published_at}),
        )
        .await;
    }
    let rest = walk(
        &app,
        &format!(
            "/v1/signals?limit=10&cursor={}",
            page["next_cursor"].as_str().unwrap()
        ),
    )
    .await;
    seen.extend(ids(&rest));
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no signal twice");
    // Every original signal was seen; the older newcomer is after the cursor, so it shows too.
    for s in &created {
        assert!(unique.contains(&s["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(seen.len(), created.len() + 1);
}

#[actix_web::test]
async fn a_cursor_only_works_with_the_query_that_made_it() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let mut res = app
        .get("/v1/signals?min_score=2&limit=3")
        .send()
        .await
        .unwrap();
    let cursor = json_body(&mut res).await["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let ok = app
        .get(&format!("/v1/signals?min_score=2&limit=5&cursor={cursor}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "the page size may change");
    for bad in [
        format!("/v1/signals?min_score=3&cursor={cursor}"),
        format!("/v1/signals?min_score=2&sort=-score&cursor={cursor}"),
        format!("/v1/signals?cursor={cursor}"),
        "/v1/signals?cursor=garbage".to_owned(),
        format!(
            "/v1/signals?min_score=2&cursor={}x",
            &cursor[..cursor.len() - 1]
        ),
    ] {
        let mut res = app.get(&bad).send().await.unwrap();
        let problem = assert_problem(&mut res, 400).await;
        assert_eq!(problem["errors"][0]["field"], "cursor", "{bad}");
    }
}

#[actix_web::test]
async fn lists_have_etags_and_answer_304() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let res = app.get("/v1/signals?min_score=5").send().await.unwrap();
    let etag = header(&res, "etag").unwrap();
    let res = app
        .get("/v1/signals?min_score=5")
        .insert_header(("If-None-Match", etag))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
}
