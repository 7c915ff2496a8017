//! The reader's pages over HTTP (the browser tests in .ci/browser drive them in Chromium):
//! server-rendered, escaped, cacheable, with their own error pages.

use awc::http::Method;
use serde_json::json;
use signals::domain::key::Scope;

use crate::helpers::{header, signal, TestApp};

async fn page(app: &TestApp, path: &str) -> (u16, awc::ClientResponse, String) {
    let mut res = app.get(path).send().await.unwrap();
    let body = String::from_utf8(res.body().limit(1 << 22).await.unwrap().to_vec()).unwrap();
    (res.status().as_u16(), res, body)
}

#[actix_web::test]
async fn the_feed_page_lists_signals_as_the_seed_shows_them_with_everything_escaped() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let seed = app.create(&key, &signal(json!({"slug": "seed"}))).await;
    app.create(
        &key,
        &signal(
            json!({"slug": "markup", "title": "<script>alert(1)</script>", "category": "R&D",
            "published_at": "2026-05-07T09:30:00Z"}),
        ),
    )
    .await;
    let (status, res, body) = page(&app, "/").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&res, "content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    let csp = header(&res, "content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert!(body.contains("<span class=\"score\">7/10</span> · <span class=\"category\">Industry</span> · <time datetime=\"2026-05-06T18:02:00Z\">6 May 2026, 18:02 UTC</time>"));
    assert!(body.contains(&format!(
        "<a href=\"/s/seed\">{}</a>",
        seed["title"].as_str().unwrap()
    )));
    assert!(
        !body.contains("<script>alert"),
        "a title is text, never markup"
    );
    assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(body.contains("R&amp;D (1)"), "categories with counts");
    // Every asset the page links is the service's own, with a validator.
    for asset in ["/assets/reader.css?v=", "/assets/reader.js?v="] {
        let at = body.find(asset).unwrap_or_else(|| panic!("{asset} linked"));
        let href = &body[at..at + body[at..].find('"').unwrap()];
        let (status, res, _) = page(&app, href).await;
        assert_eq!(status, 200, "{href}");
        let etag = header(&res, "etag").unwrap();
        assert!(header(&res, "cache-control").unwrap().contains("immutable"));
        let res = app
            .get(href)
            .insert_header(("If-None-Match", etag))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 304);
    }
    let etag = header(&res, "etag").unwrap();
    let res = app
        .get("/")
        .insert_header(("If-None-Match", etag))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
}

#[actix_web::test]
async fn filters_and_the_more_link_page_through_the_list() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let items: Vec<_> = (0..25)
        .map(|i| signal(json!({"slug": format!("s{i}"), "score": i % 10, "category": if i % 2 == 0 { "Even" } else { "Odd" }})))
        .collect();
    let res = app
        .request(Method::POST, "/v1/signals/batch", &key)
        .send_json(&json!({ "items": items }))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, _, first) = page(&app, "/").await;
    assert_eq!(first.matches("<li data-id=").count(), 20);
    let link = "id=\"more\" rel=\"next\" href=\"";
    let at = first.find(link).unwrap() + link.len();
    let more = first[at..at + first[at..].find('"').unwrap()].replace("&amp;", "&");
    assert!(more.starts_with("/?cursor="), "{more}");
    let (_, _, second) = page(&app, &more).await;
    assert_eq!(second.matches("<li data-id=").count(), 5);
    assert!(!second.contains("id=\"more\""));
    // The feeds offered beside a later page have the filters, not the cursor (which they do
    // not take).
    assert!(
        second.contains("href=\"/v1/feed.atom\"") && second.contains("href=\"/v1/feed.json\""),
        "{second}"
    );
    // The filter form as sent without JavaScript: every field, the empty ones meaning "any".
    let (status, _, unfiltered) = page(&app, "/?min_score=&category=&tag=&q=").await;
    assert_eq!(status, 200, "{unfiltered}");
    assert_eq!(unfiltered.matches("<li data-id=").count(), 20);
    assert!(unfiltered.contains("data-stream=\"/v1/signals/stream\""));
    let (status, _, odd) = page(&app, "/?min_score=5&category=odd&tag=&q=").await;
    assert_eq!(status, 200, "{odd}");
    assert_eq!(odd.matches("<li data-id=").count(), 6);
    assert!(
        odd.contains("href=\"/v1/feed.atom?min_score=5&amp;category=odd\""),
        "{odd}"
    );
    let (_, _, odd) = page(&app, "/?category=odd&min_score=5").await;
    assert_eq!(odd.matches("<li data-id=").count(), 6);
    // A shared link's names the page does not know are ignored, and left out of its links.
    let (status, _, shared) =
        page(&app, "/?utm_source=news&category=odd&fbclid=x&min_score=5").await;
    assert_eq!(status, 200, "{shared}");
    assert_eq!(shared.matches("<li data-id=").count(), 6);
    assert!(shared.contains("data-stream=\"/v1/signals/stream?category=odd&amp;min_score=5\""));
    assert!(
        !shared.contains("utm_source") && !shared.contains("fbclid"),
        "{shared}"
    );
    let (status, _, more) = page(&app, "/?utm_source=news&min_score=").await;
    assert_eq!(status, 200, "{more}");
    assert!(
        more.contains("id=\"more\" rel=\"next\" href=\"/?min_score=&amp;cursor="),
        "{more}"
    );
    assert!(!more.contains("utm_source"), "{more}");
    assert!(odd.contains("<option value=\"Odd\" selected>"), "{odd}");
    assert!(odd.contains("data-stream=\"/v1/signals/stream?category=odd&amp;min_score=5\""));
    // The stream has no time filters: the page's times go along for the script to apply.
    let (_, _, timed) = page(&app, "/?min_score=5&since=2026-01-01T00:00:00Z").await;
    assert!(
        timed.contains(
            "data-stream=\"/v1/signals/stream?min_score=5\" data-since=\"2026-01-01T00:00:00+00:00\""
        ),
        "{timed}"
    );
    let (_, _, searched) = page(&app, "/?q=deepseek").await;
    assert!(
        !searched.contains("data-stream"),
        "no live updates for a text search"
    );
}

#[actix_web::test]
async fn a_signal_page_reads_without_script_and_mistakes_get_pages_of_their_own() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let seed = app.create(&key, &signal(json!({"slug": "seed"}))).await;
    for path in [
        "/s/seed",
        &format!("/s/{}", seed["id"].as_str().unwrap()),
        "/s/seed?utm_source=news",
    ] {
        let (status, _, body) = page(&app, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains("Back to feed"));
        assert!(body.contains(&format!(
            "<title>{} · Signals</title>",
            seed["title"].as_str().unwrap()
        )));
        assert!(body.contains("<h2>Why It Matters</h2>"));
        assert!(body.contains("<a href=\"/?tag=Venture+Capital\">Venture Capital</a>"));
        assert!(body.contains("<meta name=\"description\" content=\"DeepSeek&#39;s $45B"));
    }
    for (path, status) in [
        ("/s/no-such-signal", 404),
        ("/s/Not%20A%20Slug", 404),
        ("/?min_score=11", 400),
        ("/?min_score=11&utm_source=x", 400),
    ] {
        let (got, res, body) = page(&app, path).await;
        assert_eq!(got, status, "{path}");
        assert_eq!(
            header(&res, "content-type").as_deref(),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert!(body.contains("Back to feed"), "{path}");
    }
    let (status, _, _) = page(&app, "/assets/nope.css").await;
    assert_eq!(status, 404);
}
