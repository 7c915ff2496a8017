//! The stream benchmark's client (run by `bench/stream.sh`): opens many `GET /v1/signals/stream`
//! subscribers with mixed filters, posts signals one after another, and reports how long each
//! change took to reach each subscriber whose filters match it, and whether any subscriber
//! missed an event or got one twice.
//!
//!     SIGNALS_KEY=... cargo run --release --example stream_bench -- http://127.0.0.1:18092 1000 100
//!
//! A change commits somewhere between sending its POST and receiving the 201, so each latency
//! is given two ways: from the 201 (at most the time since commit) and from the send (at
//! least that time).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const CATEGORIES: [&str; 4] = ["Industry", "Research", "Policy", "Security"];
const TAGS: [&str; 6] = [
    "LLM",
    "Chips",
    "Robotics",
    "Funding",
    "Open Source",
    "Safety",
];

/// A subscriber's filters, as query parameters and as a rule.
#[derive(Clone)]
struct Filter {
    min_score: Option<i64>,
    category: Option<&'static str>,
    tag: Option<&'static str>,
}

impl Filter {
    fn of(i: usize) -> Filter {
        match i % 4 {
            0 => Filter {
                min_score: None,
                category: None,
                tag: None,
            },
            1 => Filter {
                min_score: Some((i % 9) as i64 + 1),
                category: None,
                tag: None,
            },
            2 => Filter {
                min_score: None,
                category: Some(CATEGORIES[i % 4 / 2 + (i / 4) % 3]),
                tag: None,
            },
            _ => Filter {
                min_score: Some(3),
                category: None,
                tag: Some(TAGS[(i / 4) % TAGS.len()]),
            },
        }
    }

    fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(m) = self.min_score {
            q.append_pair("min_score", &m.to_string());
        }
        if let Some(c) = self.category {
            q.append_pair("category", c);
        }
        if let Some(t) = self.tag {
            q.append_pair("tag", t);
        }
        q.finish()
    }

    fn matches(&self, posted: &Value) -> bool {
        self.min_score
            .is_none_or(|m| posted["score"].as_i64().unwrap() >= m)
            && self.category.is_none_or(|c| posted["category"] == c)
            && self
                .tag
                .is_none_or(|t| posted["tags"].as_array().unwrap().iter().any(|x| x == t))
    }
}

/// What the subscribers received: per subscriber, slug → when (and how often).
type Received = Rc<RefCell<Vec<HashMap<String, (Instant, u32)>>>>;

/// Reads a chunked `text/event-stream` response and records each event's slug.
async fn subscribe(
    address: String,
    path: String,
    index: usize,
    received: Received,
    opened: Rc<RefCell<usize>>,
) {
    let mut stream = TcpStream::connect(&address).await.expect("connect");
    stream.set_nodelay(true).ok();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    assert!(
        line.starts_with("HTTP/1.1 200"),
        "subscriber {index}: {line}"
    );
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
    }
    *opened.borrow_mut() += 1;
    // Chunked: a size line, the chunk, CRLF; the event's lines are inside the chunks.
    let mut pending = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let size = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
        if size == 0 {
            return;
        }
        let mut chunk = vec![0; size + 2];
        if reader.read_exact(&mut chunk).await.is_err() {
            return;
        }
        let now = Instant::now();
        pending.extend_from_slice(&chunk[..size]);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = pending.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&block);
            if let Some(data) = text.lines().find_map(|l| l.strip_prefix("data: ")) {
                let data: Value = serde_json::from_str(data).unwrap();
                let slug = data["slug"].as_str().unwrap().to_owned();
                let mut all = received.borrow_mut();
                let entry = all[index].entry(slug).or_insert((now, 0));
                entry.1 += 1;
            }
        }
    }
}

async fn post(address: &str, key: &str, body: &Value) -> u16 {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.set_nodelay(true).ok();
    let body = body.to_string();
    let request = format!(
        "POST /v1/signals HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).await.unwrap();
    status
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let base = args
        .first()
        .expect("the service's URL")
        .trim_start_matches("http://")
        .to_owned();
    let subscribers: usize = args.get(1).map_or(1000, |s| s.parse().unwrap());
    let posts: usize = args.get(2).map_or(100, |s| s.parse().unwrap());
    let key = std::env::var("SIGNALS_KEY").expect("SIGNALS_KEY: a write key");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let received: Received = Rc::new(RefCell::new(vec![HashMap::new(); subscribers]));
        let opened = Rc::new(RefCell::new(0usize));
        let filters: Vec<Filter> = (0..subscribers).map(Filter::of).collect();
        let started = Instant::now();
        for (i, filter) in filters.iter().enumerate() {
            let path = format!("/v1/signals/stream?{}", filter.query());
            tokio::task::spawn_local(subscribe(
                base.clone(),
                path,
                i,
                received.clone(),
                opened.clone(),
            ));
            if i % 50 == 49 {
                tokio::task::yield_now().await;
            }
        }
        while *opened.borrow() < subscribers {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "only {} subscribers opened",
                opened.borrow()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "{subscribers} subscribers open after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;

        let run = std::process::id();
        let mut sent = Vec::with_capacity(posts);
        for i in 0..posts {
            let body = json!({
                "slug": format!("stream-bench-{run}-{i}"),
                "title": format!("Stream benchmark signal {i}"),
                "summary": "A signal posted by the stream benchmark.",
                "score": (i * 7) % 11,
                "category": CATEGORIES[i % CATEGORIES.len()],
                "tags": [TAGS[i % TAGS.len()], TAGS[(i / 2) % TAGS.len()]],
            });
            let before = Instant::now();
            let status = post(&base, &key, &body).await;
            let acknowledged = Instant::now();
            assert_eq!(status, 201, "posting signal {i}");
            sent.push((body, before, acknowledged));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Every expected delivery, or up to 30 s.
        let expected: usize = sent
            .iter()
            .map(|(body, _, _)| filters.iter().filter(|f| f.matches(body)).count())
            .sum();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got: usize = received.borrow().iter().map(|m| m.len()).sum();
            if got >= expected || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let all = received.borrow();
        let (mut since_ack, mut since_send) = (Vec::new(), Vec::new());
        let (mut missing, mut twice, mut unexpected) = (0, 0, 0);
        for (body, before, acknowledged) in &sent {
            let slug = body["slug"].as_str().unwrap();
            for (i, filter) in filters.iter().enumerate() {
                match (filter.matches(body), all[i].get(slug)) {
                    (true, Some((at, n))) => {
                        since_ack
                            .push(at.saturating_duration_since(*acknowledged).as_secs_f64() * 1e3);
                        since_send.push(at.saturating_duration_since(*before).as_secs_f64() * 1e3);
                        if *n > 1 {
                            twice += 1;
                        }
                    }
                    (true, None) => missing += 1,
                    (false, Some(_)) => unexpected += 1,
                    (false, None) => {}
                }
            }
        }
        since_ack.sort_by(f64::total_cmp);
        since_send.sort_by(f64::total_cmp);
        println!(
            "{posts} signals posted, {expected} deliveries expected, {} received",
            since_ack.len()
        );
        println!(
            "latency from the 201 (<= since commit): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&since_ack, 0.5),
            percentile(&since_ack, 0.99),
            since_ack.last().copied().unwrap_or(f64::NAN)
        );
        println!(
            "latency from the send (>= since commit): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&since_send, 0.5),
            percentile(&since_send, 0.99),
            since_send.last().copied().unwrap_or(f64::NAN)
        );
        println!("missing {missing}, twice {twice}, not matching but sent {unexpected}");
        if missing + twice + unexpected > 0 {
            std::process::exit(1);
        }
    });
}
