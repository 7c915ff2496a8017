//! An abuse battery against the real binary: each request gets a 4xx problem+json (or a closed
//! connection where HTTP requires it), never a 5xx or a panic, and the service's memory stays
//! bounded throughout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::Duration;

use crate::faults::{serve, signals};
use crate::helpers::TestDb;

struct Service {
    child: Child,
    address: String,
    log: std::path::PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// Peak resident memory so far, in bytes (VmHWM).
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }

    /// Sends raw bytes and returns the status code of the answer (`None`: the connection was
    /// closed without one) and the answer's text.
    fn raw(&self, request: &[u8]) -> (Option<u16>, String) {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        // A server may answer (and close) before it has read all of an oversized request.
        let _ = stream.write_all(request);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok());
        (status, text)
    }
}

async fn service(db: &TestDb) -> (Service, String) {
    let key = signals(
        &db.url,
        &["keys", "create", "--name", "abuse", "--scope", "write"],
    );
    let log = std::env::temp_dir().join(format!(
        "signals-abuse-{}.log",
        uuid::Uuid::now_v7().simple()
    ));
    // Limits on, as by default, but never reached.
    let settings = [
        ("RUST_LOG", "info"),
        ("SIGNALS_RATE_LIMIT_READ", "1000000/60s"),
        ("SIGNALS_RATE_LIMIT_WRITE", "1000000/60s"),
    ];
    let (child, base) = serve(&db.url, &log, &settings).await;
    let address = base.trim_start_matches("http://").to_owned();
    (
        Service {
            child,
            address,
            log,
        },
        key,
    )
}

fn post(path: &str, key: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn get(target: &[u8]) -> Vec<u8> {
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    request
}

#[actix_web::test]
async fn every_abusive_request_gets_a_4xx_problem_or_a_closed_connection_and_memory_stays_bounded()
{
    let db = TestDb::new().await;
    let (mut service, key) = service(&db).await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let million = format!("[{}0]", "0,".repeat(1_000_000));
    // Under the batch's 16 MiB: eight million values, had they all been parsed.
    let eight_million = format!(r#"{{"items": [{}0]}}"#, "0,".repeat(8_000_000));
    let huge = "x".repeat(16 << 20);
    let everywhere = format!(
        r#"{{"items": [{{"title": "{huge}", "summary": "{huge}", "score": 1, "category": "c"}}]}}"#
    );
    let patch_target = {
        let body = br#"{"title": "target", "score": 5, "category": "c", "slug": "target"}"#;
        let (status, text) = service.raw(&post("/v1/signals", &key, "application/json", body));
        assert_eq!(status, Some(201), "{text}");
        "/v1/signals/target"
    };
    let patch = |body: &[u8]| {
        let mut request = format!(
            "PATCH {patch_target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/merge-patch+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        request
    };
    let many_params = format!(
        "/v1/signals?{}",
        (0..10_000)
            .map(|i| format!("tag=t{i}"))
            .collect::<Vec<_>>()
            .join("&")
    );
    let some_params = format!(
        "/v1/signals?{}",
        (0..2_000)
            .map(|i| format!("tag=t{i}"))
            .collect::<Vec<_>>()
            .join("&")
    );
    let cursor_16k = format!(
        "/v1/signals?cursor={}.{}",
        "A".repeat(16 << 10),
        "B".repeat(22)
    );
    let long_cursor = format!(
        "/v1/signals?cursor={}.{}",
        "A".repeat(64 << 10),
        "B".repeat(22)
    );
    let mut header_flood = b"GET /v1/signals HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..10_000 {
        header_flood.extend_from_slice(format!("X-Flood-{i}: {}\r\n", "v".repeat(20)).as_bytes());
    }
    header_flood.extend_from_slice(b"\r\n");
    // Heads past the service's own bounds, under the HTTP layer's: 431 problem+json.
    let head_with = |fields: usize, value: usize| {
        let mut request = b"GET /v1/signals HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..fields {
            request.extend_from_slice(format!("X-Many-{i}: {}\r\n", "v".repeat(value)).as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        request
    };
    // 65 fields, two of them Accept-Encoding (which the service replaces with the one coding it
    // chose): counted as sent.
    let mut two_encodings = head_with(62, 1);
    two_encodings.truncate(two_encodings.len() - 2);
    two_encodings.extend_from_slice(b"Accept-Encoding: gzip\r\nAccept-Encoding: gzip\r\n\r\n");
    let bounded: Vec<(&str, Vec<u8>, u16)> = vec![
        ("80 header fields", head_with(80, 10), 431),
        ("20 KiB of header fields", head_with(10, 2048), 431),
        (
            "65 header fields, two of them Accept-Encoding",
            two_encodings,
            431,
        ),
    ];
    for (what, request, expected) in &bounded {
        let (status, text) = service.raw(request);
        assert_eq!(
            status,
            Some(*expected),
            "{what}\n{}",
            &text[..text.len().min(500)]
        );
        assert!(text.contains("application/problem+json"), "{what}: {text}");
        // Refused before the limits count it (or look up a key in it), as the spec says.
        assert!(
            !text.to_ascii_lowercase().contains("\r\nratelimit"),
            "{what}: {text}"
        );
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "JSON nested 100,000 deep",
            post("/v1/signals", &key, "application/json", deep.as_bytes()),
        ),
        (
            "an array of a million numbers",
            post(
                "/v1/signals/batch",
                &key,
                "application/json",
                million.as_bytes(),
            ),
        ),
        (
            "eight million numbers in a batch's items",
            post(
                "/v1/signals/batch",
                &key,
                "application/json",
                eight_million.as_bytes(),
            ),
        ),
        (
            "16 MiB strings in the fields of a batch",
            post(
                "/v1/signals/batch",
                &key,
                "application/json",
                everywhere.as_bytes(),
            ),
        ),
        (
            "a 16 MiB string in a single create",
            post(
                "/v1/signals",
                &key,
                "application/json",
                format!(r#"{{"title":"{huge}"}}"#).as_bytes(),
            ),
        ),
        (
            "invalid UTF-8 in a body",
            post(
                "/v1/signals",
                &key,
                "application/json",
                b"{\"title\": \"\xff\xfe\", \"score\": 1, \"category\": \"c\"}",
            ),
        ),
        (
            "a NUL in a body",
            post(
                "/v1/signals",
                &key,
                "application/json",
                b"{\"title\": \"a\\u0000b\", \"score\": 1, \"category\": \"c\"}",
            ),
        ),
        (
            "a percent-encoded invalid UTF-8 path",
            get(b"/v1/signals/%ff%fe"),
        ),
        (
            "a percent-encoded invalid UTF-8 query",
            get(b"/v1/signals?category=%ff%fe"),
        ),
        ("a NUL in a query", get(b"/v1/signals?q=a%00b")),
        ("2,000 query parameters", get(some_params.as_bytes())),
        ("a 16 KiB cursor", get(cursor_16k.as_bytes())),
    ];
    // Not HTTP at all: the HTTP layer answers these before any application code runs, with a
    // bare 4xx and a closed connection (RFC 9112 asks for 400 and closing), or closes at once.
    let unframed: Vec<(&str, Vec<u8>)> = vec![
        ("raw invalid UTF-8 in a path", get(b"/v1/signals/\xff\xfe")),
        ("10,000 query parameters (a 90 KB request line)", get(many_params.as_bytes())),
        ("a 64 KiB cursor", get(long_cursor.as_bytes())),
        ("raw invalid UTF-8 in a query", get(b"/v1/signals?q=\xff\xfe")),
        ("10,000 headers", header_flood),
        (
            "Content-Length and Transfer-Encoding at once",
            format!(
                "POST /v1/signals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n\
                 Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            )
            .into_bytes(),
        ),
        (
            "two different Content-Lengths",
            format!(
                "POST /v1/signals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n\
                 Content-Length: 2\r\nContent-Length: 40\r\n\r\n{{}}"
            )
            .into_bytes(),
        ),
    ];
    let application: Vec<(&str, Vec<u8>)> = vec![
        ("a PATCH body that is an array", patch(b"[1, 2, 3]")),
        ("a PATCH body that is a string", patch(b"\"score\"")),
        ("a PATCH body that is null", patch(b"null")),
    ];
    for (what, request) in cases.iter().chain(&application) {
        let (status, text) = service.raw(request);
        let status = status.unwrap_or_else(|| panic!("{what}: no answer"));
        let head = &text[..text.len().min(500)];
        assert!((400..500).contains(&status), "{what}: {status}\n{head}");
        assert!(
            text.contains("application/problem+json"),
            "{what}: {status} is not problem+json\n{head}"
        );
        println!("{what}: {status}, peak RSS {} MB", service.peak_rss() >> 20);
    }
    for (what, request) in &unframed {
        let (status, text) = service.raw(request);
        if let Some(status) = status {
            assert!(
                (400..500).contains(&status),
                "{what}: {status}\n{}",
                &text[..text.len().min(500)]
            );
        }
        println!(
            "{what}: {status:?} (from the HTTP layer), peak RSS {} MB",
            service.peak_rss() >> 20
        );
    }
    // Pipelined requests on one connection are all answered, in order.
    let mut pipelined = Vec::new();
    for _ in 0..20 {
        pipelined.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    pipelined.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (_, text) = service.raw(&pipelined);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 21);

    assert!(
        service.child.try_wait().unwrap().is_none(),
        "the service is still running"
    );
    let log = std::fs::read_to_string(&service.log).unwrap();
    assert!(!log.contains("panicked"), "a panic in the log");
    crate::faults::assert_no_secrets(&service.log, &[crate::faults::key_secret(&key)]);
    let peak = service.peak_rss();
    println!("peak RSS {} MB", peak >> 20);
    assert!(peak < 64 << 20, "peak RSS {} MB", peak >> 20);
}
