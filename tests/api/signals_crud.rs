use awc::http::Method;
use serde_json::json;
use signals::domain::key::Scope;

use crate::helpers::{assert_problem, header, json_body, signal, TestApp};

#[actix_web::test]
async fn creating_the_seed_signal_returns_it_with_location_and_etag() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let mut res = app
        .request(Method::POST, "/v1/signals", &key)
        .send_json(&signal(
            json!({"tags": ["DeepSeek", "LLM", "llm", " Venture Capital "]}),
        ))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let etag = header(&res, "etag").expect("an ETag");
    let location = header(&res, "location").expect("a Location");
    let created = json_body(&mut res).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(location, format!("/v1/signals/{id}"));
    assert_eq!(created["slug"], "deepseek-targets-45b-valuation-in-its-first-funding-round-following-highly-efficient-llm-releases");
    assert_eq!(created["score"], 7);
    assert_eq!(created["published_at"], "2026-05-06T18:02:00Z");
    assert_eq!(
        created["tags"],
        json!(["DeepSeek", "LLM", "Venture Capital"])
    );
    assert_eq!(created["sections"][1]["heading"], "Why It Matters");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    // The same signal by id and by slug, with the same ETag.
    for path in [
        location.clone(),
        format!("/v1/signals/{}", created["slug"].as_str().unwrap()),
    ] {
        let mut res = app.get(&path).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "etag").as_deref(), Some(etag.as_str()));
        assert_eq!(json_body(&mut res).await, created);
    }
}

#[actix_web::test]
async fn a_slug_of_32_hex_digits_is_a_slug_and_only_a_hyphenated_uuid_is_an_id() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    // What a script that names its signals by an MD5 digest sends.
    let digest = "9e107d9d372bb6826bd81d3542a419d6";
    let created = app.create(&key, &signal(json!({"slug": digest}))).await;
    assert_eq!(created["slug"], digest);
    let mut res = app
        .get(&format!("/v1/signals/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(json_body(&mut res).await["id"], created["id"]);
    // The id as the service writes it (or in capitals, or as a URN) names the signal.
    let id = created["id"].as_str().unwrap();
    for path in [id.to_owned(), id.to_uppercase(), format!("urn:uuid:{id}")] {
        let res = app
            .get(&format!("/v1/signals/{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
    // A hyphenated UUID cannot be a slug: the path would name an id.
    let mut res = app
        .request(Method::POST, "/v1/signals", &key)
        .send_json(&signal(
            json!({"slug": "01968a4e-1c40-7cc3-9a51-4b1f0e6e2d10"}),
        ))
        .await
        .unwrap();
    let problem = assert_problem(&mut res, 422).await;
    assert_eq!(problem["errors"][0]["field"], "slug");
}

#[actix_web::test]
async fn a_fresh_etag_in_if_none_match_gives_304() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let created = app.create(&key, &signal(json!({}))).await;
    let path = format!("/v1/signals/{}", created["id"].as_str().unwrap());
    let res = app.get(&path).send().await.unwrap();
    let etag = header(&res, "etag").unwrap();
    let res = app
        .get(&path)
        .insert_header(("If-None-Match", etag.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(header(&res, "etag"), Some(etag));
    let res = app
        .get(&path)
        .insert_header(("If-None-Match", "\"other\""))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[actix_web::test]
async fn derived_slugs_stay_unique_and_an_explicit_duplicate_is_409() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let one = json!({"title": "Same title", "score": 5, "category": "AI"});
    let a = app.create(&key, &one).await;
    let b = app.create(&key, &one).await;
    assert_eq!(a["slug"], "same-title");
    assert_eq!(b["slug"], "same-title-2");
    let mut res = app
        .request(Method::POST, "/v1/signals", &key)
        .send_json(&json!({"title": "Other", "score": 5, "category": "AI", "slug": "same-title"}))
        .await
        .unwrap();
    let problem = assert_problem(&mut res, 409).await;
    assert_eq!(problem["errors"][0]["field"], "slug");
}

#[actix_web::test]
async fn an_unknown_signal_is_404() {
    let app = TestApp::spawn().await;
    for path in [
        "/v1/signals/no-such-slug",
        "/v1/signals/01968a4e-1c40-7cc3-9a51-4b1f0e6e2d10",
        "/v1/signals/Bad%00Slug",
    ] {
        let mut res = app.get(path).send().await.unwrap();
        assert_problem(&mut res, 404).await;
    }
}

#[actix_web::test]
async fn put_replaces_every_field_but_keeps_slug_and_time_when_absent() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let created = app.create(&key, &signal(json!({"slug": "kept"}))).await;
    let path = format!("/v1/signals/{}", created["id"].as_str().unwrap());
    let mut res = app
        .request(Method::PUT, &path, &key)
        .send_json(&json!({"title": "New title", "score": 9, "category": "Research"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(header(&res, "etag").is_some());
    let replaced = json_body(&mut res).await;
    assert_eq!(replaced["slug"], "kept");
    assert_eq!(replaced["title"], "New title");
    assert_eq!(replaced["summary"], "");
    assert_eq!(replaced["tags"], json!([]));
    assert_eq!(replaced["source_url"], json!(null));
    assert_eq!(replaced["published_at"], created["published_at"]);
    assert_eq!(replaced["created_at"], created["created_at"]);
    assert_ne!(replaced["updated_at"], created["updated_at"]);
    let mut res = app.get(&path).send().await.unwrap();
    assert_eq!(json_body(&mut res).await, replaced);
}

#[actix_web::test]
async fn changing_a_slug_to_a_taken_one_is_409() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    app.create(&key, &signal(json!({"slug": "first"}))).await;
    let second = app.create(&key, &signal(json!({"slug": "second"}))).await;
    let mut res = app
        .request(
            Method::PATCH,
            &format!("/v1/signals/{}", second["id"].as_str().unwrap()),
            &key,
        )
        .content_type("application/merge-patch+json")
        .send_body(r#"{"slug": "first"}"#)
        .await
        .unwrap();
    assert_problem(&mut res, 409).await;
}

#[actix_web::test]
async fn if_match_guards_put_patch_and_delete() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let created = app.create(&key, &signal(json!({}))).await;
    let path = format!("/v1/signals/{}", created["id"].as_str().unwrap());
    let etag = header(&app.get(&path).send().await.unwrap(), "etag").unwrap();

    let stale = "\"stale\"";
    let mut res = app
        .request(Method::PUT, &path, &key)
        .insert_header(("If-Match", stale))
        .send_json(&signal(json!({"score": 1})))
        .await
        .unwrap();
    assert_problem(&mut res, 412).await;
    let mut res = app
        .request(Method::PATCH, &path, &key)
        .insert_header(("If-Match", stale))
        .send_json(&json!({"score": 1}))
        .await
        .unwrap();
    assert_problem(&mut res, 412).await;
    let mut res = app
        .request(Method::DELETE, &path, &key)
        .insert_header(("If-Match", stale))
        .send()
        .await
        .unwrap();
    assert_problem(&mut res, 412).await;

    // The current ETag lets the change through and yields a new one.
    let res = app
        .request(Method::PATCH, &path, &key)
        .insert_header(("If-Match", etag.clone()))
        .send_json(&json!({"score": 2}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let new_etag = header(&res, "etag").unwrap();
    assert_ne!(new_etag, etag);
    // The old one no longer does.
    let mut res = app
        .request(Method::DELETE, &path, &key)
        .insert_header(("If-Match", etag))
        .send()
        .await
        .unwrap();
    assert_problem(&mut res, 412).await;
    // If-None-Match: `*` (any version: the signal exists) and the current tag are 412, with
    // or without If-Match; another tag lets the change through.
    let weakly = format!("\"other\", W/{new_etag}");
    for (if_match, if_none_match) in [
        (None, "*"),
        (None, new_etag.as_str()),
        (Some(new_etag.as_str()), weakly.as_str()),
    ] {
        for method in [Method::PUT, Method::PATCH, Method::DELETE] {
            let mut req = app
                .request(method.clone(), &path, &key)
                .insert_header(("If-None-Match", if_none_match));
            if let Some(tag) = if_match {
                req = req.insert_header(("If-Match", tag));
            }
            let mut res = req.send_json(&signal(json!({"score": 3}))).await.unwrap();
            assert_problem(&mut res, 412).await;
        }
    }
    let res = app
        .request(Method::PATCH, &path, &key)
        .insert_header(("If-None-Match", "\"other\""))
        .send_json(&json!({"score": 3}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let new_etag = header(&res, "etag").unwrap();
    let res = app
        .request(Method::DELETE, &path, &key)
        .insert_header(("If-Match", new_etag))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}

#[actix_web::test]
async fn patch_merges_and_null_resets_a_field() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let created = app.create(&key, &signal(json!({}))).await;
    let path = format!("/v1/signals/{}", created["id"].as_str().unwrap());
    let mut res = app
        .request(Method::PATCH, &path, &key)
        .content_type("application/merge-patch+json")
        .send_body(r#"{"score": 9, "summary": null, "tags": ["Funding", "funding", "AI"]}"#)
        .await
        .unwrap();
    let patched = json_body(&mut res).await;
    assert_eq!(res.status(), 200, "{patched}");
    assert_eq!(patched["score"], 9);
    assert_eq!(patched["summary"], "");
    assert_eq!(patched["tags"], json!(["Funding", "AI"]));
    assert_eq!(patched["title"], created["title"]);
    assert_eq!(patched["sections"], created["sections"]);

    // The merged result is validated like a create.
    let mut res = app
        .request(Method::PATCH, &path, &key)
        .send_json(&json!({"score": 11, "title": null, "colour": "red"}))
        .await
        .unwrap();
    let problem = assert_problem(&mut res, 422).await;
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, ["colour", "score", "title"]);
}

#[actix_web::test]
async fn delete_removes_the_signal() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let created = app.create(&key, &signal(json!({}))).await;
    let path = format!("/v1/signals/{}", created["id"].as_str().unwrap());
    let res = app
        .request(Method::DELETE, &path, &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let mut res = app.get(&path).send().await.unwrap();
    assert_problem(&mut res, 404).await;
    let mut res = app
        .request(Method::DELETE, &path, &key)
        .send()
        .await
        .unwrap();
    assert_problem(&mut res, 404).await;
}

/// Reads write each signal straight from the row's bytes; writes serialize it with serde. Both
/// must give the very same bytes, for text that needs escaping, odd times and empty lists too.
#[actix_web::test]
async fn reads_return_byte_for_byte_what_writes_return() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let bodies = [
        signal(json!({})),
        signal(json!({
            "title": "Quotes \" and \\ backslashes, naïve 日本語 🚀",
            "summary": "tab\tnewline\ncarriage\rform\u{c}back\u{8}bell\u{7}unit\u{1f} del\u{7f}",
            "body": "",
            "published_at": "2026-05-06T18:02:00.5+02:00",
            "sections": [
                {"heading": "H \"1\"", "body": "b\\1\n</script>"},
                {"heading": "ctl \u{1}\u{8}\u{b}\u{1f}\u{7f}", "body": "日本語 🚀\t\r\u{c} and more than eight bytes"},
            ],
            "tags": ["Ünïcode", "x\"y"],
            "source_url": null,
        })),
        signal(json!({
            "published_at": "0001-01-01T00:00:00.123456Z",
            "sections": [],
            "tags": [],
        })),
    ];
    let mut written = Vec::new();
    for body in &bodies {
        let mut res = app
            .request(Method::POST, "/v1/signals", &key)
            .send_json(body)
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let bytes = res.body().await.unwrap();
        let id = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut res = app.get(&format!("/v1/signals/{id}")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let read = res.body().await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&read),
            String::from_utf8_lossy(&bytes)
        );
        written.push(bytes);
    }
    // A list page is the same objects, newest first.
    written.sort_by_key(|bytes| {
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        std::cmp::Reverse(v["published_at"].as_str().unwrap().to_owned())
    });
    let items: Vec<String> = written
        .iter()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .collect();
    let mut res = app.get("/v1/signals").send().await.unwrap();
    let page = res.body().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&page),
        format!("{{\"items\":[{}],\"next_cursor\":null}}", items.join(","))
    );
}

#[actix_web::test]
async fn a_gzip_answer_has_a_tag_of_its_own_that_the_conditions_read_as_the_same_version() {
    let app = TestApp::spawn().await;
    let key = app.key(Scope::Write).await;
    let created = app.create(&key, &signal(json!({}))).await;
    let path = format!("/v1/signals/{}", created["id"].as_str().unwrap());
    let varies = |res: &awc::ClientResponse<_>| {
        res.headers()
            .get_all("vary")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|n| n.trim().eq_ignore_ascii_case("accept-encoding"))
    };
    let plain = app.get(&path).send().await.unwrap();
    let identity_tag = header(&plain, "etag").unwrap();
    assert_eq!(header(&plain, "content-encoding"), None);
    assert!(
        varies(&plain),
        "an identity answer says it varies by Accept-Encoding"
    );

    let gzip = app
        .get(&path)
        .insert_header(("Accept-Encoding", "gzip"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&gzip, "content-encoding").as_deref(), Some("gzip"));
    let gzip_tag = header(&gzip, "etag").unwrap();
    assert_eq!(
        gzip_tag,
        format!("{}.gzip\"", identity_tag.trim_end_matches('"')),
        "a strong tag names one sequence of bytes"
    );
    assert!(varies(&gzip));

    // Revalidating: 304 only for the tag of the coding the answer goes out in (with that tag,
    // and the Vary a 200 would carry); a client holding the other coding's bytes gets them
    // anew (a cache must not be told its gzip copy is the identity one).
    for (accept, held, status) in [
        (Some("gzip"), &gzip_tag, 304),
        (None, &identity_tag, 304),
        (None, &gzip_tag, 200),
        (Some("gzip"), &identity_tag, 200),
        (Some("gzip;q=0.5, identity;q=0.1"), &gzip_tag, 304),
    ] {
        let mut req = app
            .get(&path)
            .insert_header(("If-None-Match", held.clone()));
        if let Some(accept) = accept {
            req = req.insert_header(("Accept-Encoding", accept));
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), status, "{accept:?} {held}");
        let sent = match accept {
            Some(_) => &gzip_tag,
            None => &identity_tag,
        };
        assert_eq!(
            header(&res, "etag").as_ref(),
            Some(sent),
            "{accept:?} {held}"
        );
        assert!(varies(&res), "{accept:?} {held}");
    }

    // A write guarded by the gzip tag goes through (it names the current version).
    let res = app
        .request(Method::PATCH, &path, &key)
        .insert_header(("If-Match", gzip_tag.clone()))
        .send_json(&json!({"score": 4}))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut res = app
        .request(Method::PATCH, &path, &key)
        .insert_header(("If-Match", gzip_tag))
        .send_json(&json!({"score": 5}))
        .await
        .unwrap();
    assert_problem(&mut res, 412).await;

    // A client that accepts no coding at all gets the identity answer, not a 406.
    let res = app
        .get(&path)
        .insert_header(("Accept-Encoding", "identity;q=0, *;q=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-encoding"), None);
}
