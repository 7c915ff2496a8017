use std::collections::HashSet;

use serde_json::{json, Value};
use signals::db::lists::{list_sql, Plan};
use signals::db::{self, search_index};
use signals::domain::key::Scope;
use signals::domain::query::{ListFilter, Sort, SEARCH_CANDIDATES};

use crate::helpers::{assert_problem, header, json_body, metric, signal, TestApp};

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
    pages_of(app, first).await.concat()
}

/// The items of each page from `first` to the end, as [`walk`] follows them.
async fn pages_of(app: &TestApp, first: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut path = first.to_owned();
    for _ in 0..100 {
        let mut res = app.get(&path).send().await.unwrap();
        let link = header(&res, "link");
        let page = json_body(&mut res).await;
        assert_eq!(res.status(), 200, "{page}");
        pages.push(page["items"].as_array().unwrap().clone());
        let Some(cursor) = page["next_cursor"].as_str() else {
            assert!(link.is_none());
            return pages;
        };
        let link = link.expect("a Link header when there is a next page");
        let url = link
            .strip_prefix('<')
            .unwrap()
            .split_once(">; rel=\"next\"")
            .unwrap()
            .0;
        // A full URL: without SIGNALS_PUBLIC_URL (nothing of the request's Host is trusted),
        // on the address the connection reached.
        let own = app.url("");
        assert!(url.starts_with(&format!("{own}/v1/signals?")), "{url}");
        assert!(url.contains(&format!("cursor={cursor}")), "{url}");
        path = url[own.len()..].to_owned();
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

/// A tag or category typed with its accents decomposed (`e` + U+0301, as some systems type
/// them) and one typed composed (`é`) are the same word: one filter finds both, a signal
/// carries it once, and the facets count it once.
#[actix_web::test]
async fn filters_match_however_accents_are_composed() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let decomposed = app
        .create(
            &key,
            &signal(json!({"title": "Decomposed", "category": "Cafe\u{301}s",
                           "tags": ["A\u{30a}ngstro\u{308}m", "\u{c5}NGSTR\u{d6}M"]})),
        )
        .await;
    assert_eq!(
        decomposed["tags"],
        json!(["A\u{30a}ngstro\u{308}m"]),
        "the same tag twice is kept once, as first spelled"
    );
    app.create(
        &key,
        &signal(json!({"title": "Composed", "category": "caf\u{e9}s",
                       "tags": ["\u{e5}ngstr\u{f6}m"]})),
    )
    .await;
    app.create(
        &key,
        &signal(json!({"title": "Unaccented", "category": "Cafes", "tags": ["angstrom"]})),
    )
    .await;
    let titles = |items: Vec<Value>| {
        let mut t: Vec<String> = items
            .iter()
            .map(|s| s["title"].as_str().unwrap().to_owned())
            .collect();
        t.sort();
        t
    };
    for query in [
        "category=caf%C3%A9s",
        "category=CAFE%CC%81S",
        "tag=%C3%85ngstr%C3%B6m",
        "tag=a%CC%8Angstro%CC%88m",
        "any_tag=%C3%A5ngstr%C3%B6m&any_tag=nothing",
    ] {
        let items = walk(&app, &format!("/v1/signals?{query}")).await;
        assert_eq!(titles(items), ["Composed", "Decomposed"], "{query}");
    }
    let mut res = app.get("/v1/categories").send().await.unwrap();
    let categories = json_body(&mut res).await;
    let counts: Vec<i64> = categories["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [2, 1], "{categories}");
    let mut res = app.get("/v1/tags?prefix=%C3%A5ng").send().await.unwrap();
    let tags = json_body(&mut res).await;
    assert_eq!(tags["items"].as_array().unwrap().len(), 1, "{tags}");
    assert_eq!(tags["items"][0]["count"], 2, "{tags}");
}

#[actix_web::test]
async fn pages_stay_exact_while_signals_are_inserted_concurrently() {
    let app = TestApp::spawn().await;
    let created = seed(&app).await;
    let key = app.key(Scope::Write).await;
    // A writer keeps inserting signals, newer and older than any page, while a reader walks.
    let client = app.client.clone();
    let url = app.url("/v1/signals");
    let writer = actix_web::rt::spawn(async move {
        for i in 0..30 {
            let year = if i % 2 == 0 { 2027 } else { 2025 };
            let body = json!({"title": format!("Late {i}"), "score": 5, "category": "AI",
                              "published_at": format!("{year}-01-{:02}T00:00:00Z", 1 + i % 28)});
            let res = client
                .post(&url)
                .insert_header(("Authorization", format!("Bearer {key}")))
                .send_json(&body)
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
        }
    });
    let mut seen = Vec::new();
    let mut path = "/v1/signals?limit=3&sort=published_at".to_owned();
    let mut sentinels = None;
    loop {
        let mut res = app.get(&path).send().await.unwrap();
        let page = json_body(&mut res).await;
        seen.extend(ids(page["items"].as_array().unwrap()));
        if sentinels.is_none() {
            // Written after the first page and before the second, one on each side of the
            // cursor: the one ahead must be seen, the one behind must not.
            let admin = app.key(Scope::Write).await;
            let ahead = app
                .create(
                    &admin,
                    &signal(json!({"title": "Ahead", "published_at": "2028-01-01T00:00:00Z"})),
                )
                .await;
            let behind = app
                .create(
                    &admin,
                    &signal(json!({"title": "Behind", "published_at": "2024-01-01T00:00:00Z"})),
                )
                .await;
            sentinels = Some((
                ahead["id"].as_str().unwrap().to_owned(),
                behind["id"].as_str().unwrap().to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/signals?limit=3&sort=published_at&cursor={c}"),
            None => break,
        }
        actix_web::rt::task::yield_now().await;
    }
    writer.await.unwrap();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no signal twice");
    for s in &created {
        assert!(
            unique.contains(&s["id"].as_str().unwrap().to_owned()),
            "every original signal once"
        );
    }
    // And in order: oldest first, ties by id.
    let mut res = app
        .get("/v1/signals?limit=100&sort=published_at")
        .send()
        .await
        .unwrap();
    let all = json_body(&mut res).await["items"]
        .as_array()
        .unwrap()
        .clone();
    let position: std::collections::HashMap<String, usize> = ids(&all)
        .into_iter()
        .enumerate()
        .map(|(i, id)| (id, i))
        .collect();
    let order: Vec<usize> = seen.iter().map(|id| position[id]).collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "pages are in keyset order"
    );
    let (ahead, behind) = sentinels.unwrap();
    assert!(
        seen.contains(&ahead),
        "a signal written ahead of the cursor is seen"
    );
    assert!(
        !seen.contains(&behind),
        "a signal written behind the cursor is not"
    );
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

/// Signals whose words are known, for the text-search tests.
async fn seed_texts(app: &TestApp) -> Vec<Value> {
    let key = app.key(Scope::Write).await;
    let texts = [
        (
            "DeepSeek raises funding",
            "Markets",
            "A summary.",
            "Plain body.",
            json!(["LLM"]),
        ),
        (
            "Chip export rules",
            "Policy",
            "DeepSeek is mentioned here.",
            "Body text.",
            json!(["Chips"]),
        ),
        (
            "Quantum error correction",
            "Research",
            "Nothing related.",
            "The deepseek name appears in the body.",
            json!([]),
        ),
        (
            "Robotics startup",
            "Industry",
            "Another one.",
            "Warehouse robots.",
            json!(["DeepSeek"]),
        ),
        (
            "Open weights release",
            "Research",
            "Weights out.",
            "Mixture of experts model weights.",
            json!(["MoE"]),
        ),
    ];
    let mut out = Vec::new();
    for (i, (title, category, summary, body, tags)) in texts.into_iter().enumerate() {
        let s = json!({"title": title, "score": 3 + i, "category": category, "summary": summary, "body": body,
                       "tags": tags, "published_at": format!("2026-03-0{}T10:00:00Z", i + 1),
                       "sections": [{"heading": "Context", "body": if i == 4 { "Sparse routing of experts." } else { "Other." }}]});
        out.push(app.create(&key, &s).await);
    }
    out
}

fn titles(items: &[Value]) -> Vec<&str> {
    items.iter().map(|s| s["title"].as_str().unwrap()).collect()
}

#[actix_web::test]
async fn text_search_ranks_title_and_tags_first_and_pages_by_relevance() {
    let app = TestApp::spawn().await;
    seed_texts(&app).await;
    let all = walk(&app, "/v1/signals?q=deepseek&limit=1").await;
    let t = titles(&all);
    assert_eq!(t.len(), 4, "{t:?}");
    // Title and tag matches weigh most; the body-only match comes last.
    let mut top = t[..2].to_vec();
    top.sort();
    assert_eq!(top, ["DeepSeek raises funding", "Robotics startup"]);
    assert_eq!(t[3], "Quantum error correction");

    let mut res = app
        .get("/v1/signals?q=deepseek%20-funding&sort=-score")
        .send()
        .await
        .unwrap();
    let page = json_body(&mut res).await;
    assert_eq!(
        titles(page["items"].as_array().unwrap()),
        [
            "Robotics startup",
            "Quantum error correction",
            "Chip export rules"
        ]
    );
    let mut res = app
        .get("/v1/signals?q=%22mixture%20of%20experts%22%20or%20robots")
        .send()
        .await
        .unwrap();
    let page = json_body(&mut res).await;
    let mut found = titles(page["items"].as_array().unwrap());
    found.sort();
    assert_eq!(found, ["Open weights release", "Robotics startup"]);
    // Section bodies and headings are searched too, and filters combine with the text.
    let mut res = app
        .get("/v1/signals?q=sparse%20routing&min_score=7&category=research")
        .send()
        .await
        .unwrap();
    assert_eq!(
        titles(json_body(&mut res).await["items"].as_array().unwrap()),
        ["Open weights release"]
    );
}

#[actix_web::test]
async fn bad_text_queries_are_400() {
    let app = TestApp::spawn().await;
    for bad in [
        format!("/v1/signals?q={}", "a".repeat(257)),
        "/v1/signals?q=".to_owned(),
    ] {
        let mut res = app.get(&bad).send().await.unwrap();
        assert_problem(&mut res, 400).await;
    }
    // API.md: `relevance` only with `q`.
    let mut res = app.get("/v1/signals?sort=relevance").send().await.unwrap();
    let problem = assert_problem(&mut res, 400).await;
    assert!(problem.to_string().contains("sort"), "{problem}");
    let res = app
        .get("/v1/signals?sort=relevance&q=chips")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[actix_web::test]
async fn fields_trim_items_and_include_total_counts_all_matches() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let mut res = app
        .get("/v1/signals?fields=title,score&min_score=5&limit=2&include_total=true")
        .send()
        .await
        .unwrap();
    let page = json_body(&mut res).await;
    assert_eq!(page["total"], 10, "{page}");
    let item = page["items"][0].as_object().unwrap();
    let mut keys: Vec<&str> = item.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["id", "score", "title"]);
    assert!(page["next_cursor"].is_string());
    let mut res = app.get("/v1/signals?limit=2").send().await.unwrap();
    assert!(json_body(&mut res).await.get("total").is_none());
    let mut res = app
        .get("/v1/signals?fields=title,colour")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(&mut res, 400).await;
    assert_eq!(problem["errors"][0]["field"], "fields");
}

type Matcher = dyn Fn(&Value) -> bool;

#[actix_web::test]
async fn any_tag_and_combined_filters_walk_to_the_exact_set() {
    let app = TestApp::spawn().await;
    let created = seed(&app).await;
    let cases: [(&str, &Matcher); 3] = [
        ("any_tag=funding&any_tag=nothing&max_score=6", &|s| {
            s["tags"].as_array().unwrap().len() == 2 && s["score"].as_i64().unwrap() <= 6
        }),
        (
            "category=Research&category=INDUSTRY&min_score=8&sort=-score",
            &|s| s["score"].as_i64().unwrap() >= 8,
        ),
        (
            "tag=llm&since=2026-01-05T00:00:00Z&sort=published_at",
            &|s| s["published_at"].as_str().unwrap() >= "2026-01-05",
        ),
    ];
    for (query, matches) in cases {
        let items = walk(&app, &format!("/v1/signals?{query}&limit=2")).await;
        let expected: HashSet<String> = created
            .iter()
            .filter(|s| matches(s))
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect();
        assert!(!expected.is_empty(), "{query}");
        assert_eq!(items.len(), expected.len(), "{query}");
        assert_eq!(
            ids(&items).into_iter().collect::<HashSet<_>>(),
            expected,
            "{query}"
        );
    }
}

#[actix_web::test]
async fn categories_and_tags_are_counted() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    seed(&app).await;
    // A second spelling of a category counts with the first.
    app.create(
        &key,
        &json!({"title": "x", "score": 9, "category": "industry", "tags": ["llm", "LLaMA"]}),
    )
    .await;
    let mut res = app.get("/v1/categories").send().await.unwrap();
    let etag = header(&res, "etag").unwrap();
    let cats = json_body(&mut res).await;
    assert_eq!(
        cats,
        json!({"items": [{"name": "Research", "count": 16}, {"name": "Industry", "count": 10}]})
    );
    let res = app
        .get("/v1/categories")
        .insert_header(("If-None-Match", etag))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    let mut res = app.get("/v1/categories?min_score=9").send().await.unwrap();
    assert_eq!(
        json_body(&mut res).await["items"][0],
        json!({"name": "Industry", "count": 2})
    );

    let mut res = app.get("/v1/tags").send().await.unwrap();
    assert_eq!(
        json_body(&mut res).await,
        json!({"items": [{"name": "LLM", "count": 26}, {"name": "Funding", "count": 13}, {"name": "LLaMA", "count": 1}]})
    );
    let mut res = app.get("/v1/tags?prefix=ll&limit=1").send().await.unwrap();
    assert_eq!(
        json_body(&mut res).await,
        json!({"items": [{"name": "LLM", "count": 26}]})
    );
    let mut res = app
        .get("/v1/tags?since=2026-01-13T00:00:00Z&until=2026-02-01T00:00:00Z")
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_body(&mut res).await,
        json!({"items": [{"name": "Funding", "count": 1}, {"name": "LLM", "count": 1}]}),
        "ties by name"
    );
    for bad in [
        "/v1/tags?limit=0",
        "/v1/tags?prefix=",
        "/v1/categories?prefix=a",
        "/v1/categories?since=x",
    ] {
        let mut res = app.get(bad).send().await.unwrap();
        assert_problem(&mut res, 400).await;
    }
}

#[actix_web::test]
async fn the_next_link_is_on_the_public_url_and_never_on_the_requests_host() {
    for public_url in [None, Some("https://signals.example.com")] {
        let app = TestApp::spawn_with(|serve, _| {
            serve.public_url = public_url.map(|u| u.parse().unwrap());
        })
        .await;
        seed(&app).await;
        let res = app
            .get("/v1/signals?limit=2")
            .insert_header(("Host", "evil.example"))
            .insert_header(("X-Forwarded-Proto", "gopher"))
            .insert_header(("X-Forwarded-Host", "evil.example"))
            .insert_header(("Forwarded", "host=evil.example;proto=gopher"))
            .send()
            .await
            .unwrap();
        let link = header(&res, "link").unwrap();
        assert!(!link.contains("evil") && !link.contains("gopher"), "{link}");
        // The request says it came through a proxy, which is not trusted: relative.
        let expected = format!("<{}/v1/signals?limit=2&cursor=", public_url.unwrap_or(""));
        assert!(link.starts_with(&expected), "{link}");
    }
}

#[actix_web::test]
async fn behind_a_trusted_proxy_links_are_on_the_scheme_and_host_it_forwarded() {
    let app = TestApp::spawn_with(|serve, _| {
        serve.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    seed(&app).await;
    let link = |headers: &'static [(&'static str, &'static str)]| {
        let mut req = app.get("/v1/signals?limit=2");
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200);
            header(&res, "link").unwrap()
        }
    };
    // Each answer is the first page, which the cache keeps: apart for each base.
    for (headers, base) in [
        (
            &[
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "signals.example.org"),
            ][..],
            "https://signals.example.org",
        ),
        (
            &[
                ("X-Forwarded-Proto", "HTTPS, http"),
                ("X-Forwarded-Host", "Other.Example:8443, inner.example"),
            ][..],
            "https://other.example:8443",
        ),
        (
            &[("Host", "reader.example:8080")][..],
            "http://reader.example:8080",
        ),
        (
            &[
                ("X-Forwarded-Proto", "gopher"),
                ("X-Forwarded-Host", "[::1]:9000"),
            ][..],
            "http://[::1]:9000",
        ),
        // A forwarded host that is more than a host: no base, the link is relative (the
        // address the connection reached is the proxy's).
        (
            &[
                ("X-Forwarded-Host", "evil.example/phish"),
                ("Host", "ok.example"),
            ][..],
            "",
        ),
        (&[("X-Forwarded-Host", "user@evil.example")][..], ""),
        (
            &[
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "signals.example.org"),
            ][..],
            "https://signals.example.org",
        ),
    ] {
        let link = link(headers).await;
        let expected = format!("<{base}/v1/signals?limit=2&cursor=");
        assert!(link.starts_with(&expected), "{headers:?}: {link}");
    }

    // SIGNALS_PUBLIC_URL, when set, is the base whatever a proxy forwards.
    let app = TestApp::spawn_with(|serve, _| {
        serve.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        serve.public_url = Some("https://signals.example.com".parse().unwrap());
    })
    .await;
    seed(&app).await;
    let res = app
        .get("/v1/signals?limit=2")
        .insert_header(("X-Forwarded-Host", "signals.example.org"))
        .send()
        .await
        .unwrap();
    let link = header(&res, "link").unwrap();
    assert!(
        link.starts_with("<https://signals.example.com/v1/signals?limit=2&cursor="),
        "{link}"
    );
}

#[actix_web::test]
async fn a_search_that_matches_many_ranks_the_newest_hundred_then_lists_the_older_ones_by_time() {
    let looks = ranks_the_newest_hundred(0, 0).await;
    assert_eq!(looks, (0, 0), "no first look among the newest signals");
}

#[actix_web::test]
async fn a_first_look_among_the_newest_signals_finds_the_same_hundred() {
    // The newest 150 signals hold 150 matches: the first look finds the window.
    let (found, wasted) = ranks_the_newest_hundred(150, 0).await;
    assert!(found >= 1 && wasted == 0, "found {found}, wasted {wasted}");
}

#[actix_web::test]
async fn a_first_look_that_finds_too_few_looks_again_among_every_signal() {
    // 100 newer signals without the word: the newest 150 hold 50 matches, too few.
    let (found, wasted) = ranks_the_newest_hundred(150, 100).await;
    assert!(found == 0 && wasted >= 1, "found {found}, wasted {wasted}");
}

/// The index of the newest search documents covers the horizon: built once the table holds
/// more than twice the horizon's documents, kept while it covers them and is not too large,
/// then built anew from a later time (the earlier one dropped), dropped when no longer needed;
/// a first look is planned with it and finds the same hundred.
#[actix_web::test]
async fn the_index_of_the_newest_documents_follows_the_horizon() {
    let app = TestApp::spawn_with(|s, _| s.search_horizon = 100).await;
    let key = app.key(Scope::Write).await;
    // n{i} is at minute i of 2026-02-01.
    let at = |i: usize| {
        chrono::DateTime::parse_from_rfc3339("2026-02-01T00:00:00Z").unwrap()
            + chrono::Duration::minutes(i as i64)
    };
    let post = |range: std::ops::Range<usize>| {
        let items: Vec<Value> = range
            .map(|i| {
                signal(
                    json!({"slug": format!("n{i}"), "title": format!("Story {i}"),
                    "summary": "about chips", "published_at": at(i).to_rfc3339()}),
                )
            })
            .collect();
        let req = app.request(awc::http::Method::POST, "/v1/signals/batch", &key);
        async move {
            let res = req.send_json(&json!({ "items": items })).await.unwrap();
            assert_eq!(res.status(), 200);
        }
    };
    // As the service's own minutely check may be running too, a busy lock is waited out and
    // what is checked is the index there.
    let pool = &app.pool;
    let keep = |horizon: i64| async move {
        let mut conn = db::conn(pool).await.unwrap();
        loop {
            match search_index::keep(&mut conn, horizon).await.unwrap() {
                search_index::Kept::Busy => {
                    actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await
                }
                kept => return kept,
            }
        }
    };
    let sql = app.db.sql().await;
    let indexes = || async {
        sql.query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'signal_search' \
             AND indexname LIKE 'signal_search_recent_%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
    };
    // No more than twice the horizon: no index (it would hold every document).
    post(0..200).await;
    assert_eq!(keep(100).await, search_index::Kept::NotNeeded);
    assert!(indexes().await.is_empty());
    // 250: the horizon's time is n150's, the index holds the newest 200, from n50.
    post(200..250).await;
    let first = at(50).timestamp();
    assert!(matches!(
        keep(100).await,
        search_index::Kept::Built(_) | search_index::Kept::Current
    ));
    assert_eq!(indexes().await, [format!("signal_search_recent_{first}")]);
    assert_eq!(keep(100).await, search_index::Kept::Current);
    // The first look's statement, planned for its values as the service's connections do
    // (the horizon's time a parameter), reads this index.
    let filter = ListFilter {
        q: Some("chips".to_owned()),
        ..ListFilter::default()
    };
    let statement = list_sql(
        &filter,
        Sort::Relevance,
        None,
        None,
        20,
        Plan::PerValues,
        Some(chrono::Utc::now()),
    );
    sql.batch_execute(&format!(
        "SET plan_cache_mode = force_custom_plan; SET enable_seqscan = off; \
         SET enable_indexscan = off; PREPARE look AS {statement}"
    ))
    .await
    .unwrap();
    let plan: Vec<String> = sql
        .query(
            &format!(
                "EXPLAIN EXECUTE look('chips', '{}', 100, 'chips', 21)",
                at(150).to_rfc3339()
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains(&format!("signal_search_recent_{first}")),
        "{plan}"
    );
    // Through the API the first look finds the newest 100 matches, ranked (all equal here, so
    // newest first), and the older ones follow.
    let slugs: Vec<String> = walk(&app, "/v1/signals?q=chips&limit=100")
        .await
        .iter()
        .map(|s| s["slug"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        slugs,
        (0..250).rev().map(|i| format!("n{i}")).collect::<Vec<_>>()
    );
    let metrics = app.metrics().await;
    assert!(
        metric(
            &metrics,
            "signals_search_first_looks_total{outcome=\"found\"}"
        ) >= 1.0
    );
    // 110 newer: the index (from n50) would hold 310, more than 3 × 100, so it is built anew
    // from the 200th newest, n160, and the earlier one dropped.
    post(250..360).await;
    let second = at(160).timestamp();
    assert!(matches!(
        keep(100).await,
        search_index::Kept::Built(_) | search_index::Kept::Current
    ));
    assert_eq!(indexes().await, [format!("signal_search_recent_{second}")]);
    // A horizon too small for a first look needs no index: it is dropped.
    assert_eq!(keep(99).await, search_index::Kept::NotNeeded);
    assert!(indexes().await.is_empty());
}

/// Searches 200 matches (and `others` newer signals that do not match) with
/// `SIGNALS_SEARCH_HORIZON` = `horizon`: whether and where the search looks first, the answers
/// are the same. Returns the first looks that found the window and those that did not.
async fn ranks_the_newest_hundred(horizon: u32, others: usize) -> (u64, u64) {
    assert_eq!(
        SEARCH_CANDIDATES, 100,
        "the figures below are for 100 candidates"
    );
    let app = TestApp::spawn_with(|s, _| s.search_horizon = horizon).await;
    let key = app.key(Scope::Write).await;
    // 200 matches, oldest first; every tenth has the word in its title (ranks higher).
    let item = |i: usize| {
        let title = match i % 10 {
            0 => format!("Chips story {i}"),
            _ => format!("Story {i}"),
        };
        signal(
            json!({"slug": format!("m{i}"), "title": title, "summary": "about chips",
            "published_at": format!("2026-01-01T{:02}:{:02}:00Z", i / 60, i % 60)}),
        )
    };
    let items: Vec<Value> = (0..200).map(item).collect();
    let res = app
        .request(awc::http::Method::POST, "/v1/signals/batch", &key)
        .send_json(&json!({ "items": items }))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let newer: Vec<Value> = (0..others)
        .map(|i| {
            signal(json!({"slug": format!("o{i}"), "title": format!("Other {i}"),
                "summary": "about boats", "published_at": format!("2026-01-05T00:{:02}:{:02}Z", i / 60, i % 60)}))
        })
        .collect();
    if !newer.is_empty() {
        let res = app
            .request(awc::http::Method::POST, "/v1/signals/batch", &key)
            .send_json(&json!({ "items": newer }))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let ranked = walk(&app, "/v1/signals?q=chips&limit=100").await;
    let slugs: Vec<usize> = ranked
        .iter()
        .map(|s| s["slug"].as_str().unwrap()[1..].parse().unwrap())
        .collect();
    assert_eq!(slugs.len(), 200, "every match is listed");
    assert_eq!(
        slugs.iter().collect::<HashSet<_>>().len(),
        200,
        "none twice"
    );
    // The newest 100 matches are ranked; the oldest 100 follow them, newest first.
    assert!(
        slugs[..100].iter().all(|i| *i >= 100),
        "the oldest 100 are not ranked"
    );
    assert_eq!(slugs[100..], (0..100).rev().collect::<Vec<_>>());
    // Best first: the 10 with the word in their title, newest first among equals.
    assert_eq!(
        slugs[..10],
        (100..200).rev().filter(|i| i % 10 == 0).collect::<Vec<_>>()
    );
    assert!(slugs[10..100].iter().all(|i| i % 10 != 0));
    // The page where the ranked ones end goes on with the older ones, and `total` counts
    // exactly what the pages list.
    let mut res = app
        .get("/v1/signals?q=chips&limit=30&include_total=true")
        .send()
        .await
        .unwrap();
    assert_eq!(json_body(&mut res).await["total"], 200);
    let pages = pages_of(&app, "/v1/signals?q=chips&limit=30").await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [vec![30; 6], vec![20]].concat());
    let listed: Vec<Value> = pages.concat();
    assert_eq!(listed, ranked);
    // The same with a filter on the signals themselves (the window is found before the page).
    assert_eq!(
        walk(&app, "/v1/signals?q=chips&min_score=1&limit=100").await,
        ranked
    );
    // By time, a search lists every match.
    let by_time = walk(&app, "/v1/signals?q=chips&sort=-published_at&limit=100").await;
    assert_eq!(by_time.len(), 200);
    // The candidates are chosen by the search documents' copy of the time: a signal moved to
    // the newest (text unchanged) is ranked, and the oldest of the hundred is not any more.
    let res = app
        .request(awc::http::Method::PATCH, "/v1/signals/m5", &key)
        .send_json(&json!({"published_at": "2026-01-02T00:00:00Z"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let ranked = walk(&app, "/v1/signals?q=chips&limit=100").await;
    let slugs: HashSet<&str> = ranked[..100]
        .iter()
        .map(|s| s["slug"].as_str().unwrap())
        .collect();
    assert_eq!((slugs.len(), ranked.len()), (100, 200));
    assert!(slugs.contains("m5") && !slugs.contains("m100"));
    assert_eq!(ranked[100]["slug"], "m100");
    // With a time range the window is the newest 100 matches within it (m{i} is at minute i).
    let number = |s: &Value| s["slug"].as_str().unwrap()[1..].parse::<usize>().unwrap();
    let since = walk(
        &app,
        "/v1/signals?q=chips&since=2026-01-01T00:40:00Z&limit=100",
    )
    .await;
    assert_eq!(since.len(), 161);
    assert!(since[..100]
        .iter()
        .all(|s| number(s) == 5 || number(s) >= 101));
    let older: Vec<usize> = since[100..].iter().map(number).collect();
    assert_eq!(older, (40..=100).rev().collect::<Vec<_>>());
    let until = walk(
        &app,
        "/v1/signals?q=chips&until=2026-01-01T02:00:00Z&limit=100",
    )
    .await;
    assert_eq!(until.len(), 119);
    assert!(until[..100].iter().all(|s| (20..120).contains(&number(s))));
    let older: Vec<usize> = until[100..].iter().map(number).collect();
    assert_eq!(older, (0..20).rev().filter(|i| *i != 5).collect::<Vec<_>>());
    let metrics = app.metrics().await;
    let looks = |outcome: &str| {
        let series = format!("signals_search_first_looks_total{{outcome=\"{outcome}\"}}");
        metric(&metrics, &series) as u64
    };
    (looks("found"), looks("wasted"))
}

/// A tag the statistics list as common gets the one plan PostgreSQL keeps: its statement
/// matches the tag with `= ANY(tag_keys)` and walks the time or the score index. Its pages list
/// what a plan made for the values lists: every signal that passes, in order, once.
#[actix_web::test]
async fn a_common_tag_keeps_one_plan_and_lists_every_signal_that_passes() {
    let app = TestApp::spawn().await;
    let created = seed(&app).await;
    let sql = app.db.sql().await;
    // Statistics, as autovacuum keeps them.
    sql.batch_execute("ANALYZE signals").await.unwrap();
    let newest_first = |a: &Value, b: &Value| {
        (b["published_at"].as_str(), b["id"].as_str())
            .cmp(&(a["published_at"].as_str(), a["id"].as_str()))
    };
    let funding = |s: &&Value| s["tags"].as_array().unwrap().iter().any(|t| t == "Funding");
    let mut expected: Vec<Value> = created
        .iter()
        .filter(funding)
        .filter(|s| s["score"].as_i64().unwrap() >= 4)
        .cloned()
        .collect();
    expected.sort_by(newest_first);
    assert!(expected.len() > 4);
    let listed = walk(&app, "/v1/signals?tag=funding&min_score=4&limit=3").await;
    assert_eq!(ids(&listed), ids(&expected));
    expected.reverse();
    let listed = walk(
        &app,
        "/v1/signals?tag=FUNDING&min_score=4&sort=published_at&limit=4",
    )
    .await;
    assert_eq!(ids(&listed), ids(&expected));
    let mut by_score: Vec<Value> = created.iter().filter(funding).cloned().collect();
    by_score.sort_by(|a, b| {
        (b["score"].as_i64().cmp(&a["score"].as_i64())).then_with(|| newest_first(a, b))
    });
    let listed = walk(&app, "/v1/signals?tag=funding&sort=-score&limit=4").await;
    assert_eq!(ids(&listed), ids(&by_score));

    // The statement of the kept plan was sent, and no other form of a tag filter; a tag the
    // statistics do not list is planned for its values.
    let last_sent = async |text: &str| -> i64 {
        sql.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND strpos(query, $1) > 0",
            &[&text],
        )
        .await
        .unwrap()
        .get(0)
    };
    let planned_for_values = r#""signals"."tag_keys" @> $"#;
    assert!(last_sent(r#"= ANY("signals"."tag_keys")"#).await >= 1);
    assert_eq!(last_sent(planned_for_values).await, 0);
    assert!(walk(&app, "/v1/signals?tag=nowhere&limit=3")
        .await
        .is_empty());
    assert!(last_sent(planned_for_values).await >= 1);
    // Two tags, planned for their values, list the same signals as the one they imply.
    let both = walk(&app, "/v1/signals?tag=funding&tag=llm&min_score=4&limit=3").await;
    expected.reverse();
    assert_eq!(ids(&both), ids(&expected));
}
