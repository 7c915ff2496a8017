//! On the open internet: slow clients cost a connection for the client timeout at most, and
//! never the service's answers to others.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

fn socket_address(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

#[actix_web::test]
async fn five_hundred_slow_loris_connections_do_not_stop_a_normal_client() {
    let app = TestApp::spawn_with(|serve, _| serve.client_timeout_ms = 1000).await;
    let address = socket_address(&app);
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        // A request head that never ends.
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    let started = Instant::now();
    for _ in 0..20 {
        let res = app.get("/v1/signals?limit=1").send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "normal requests waited {:?}",
        started.elapsed()
    );
    // And the slow ones are let go once the client timeout has passed.
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let mut closed = 0;
    for stream in &mut slow {
        let mut buf = [0u8; 512];
        match actix_web::rt::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await
        {
            // Closed, or answered 408 and then closed.
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            Ok(Ok(n)) if buf[..n].starts_with(b"HTTP/1.1 408") => closed += 1,
            _ => {}
        }
    }
    assert_eq!(
        closed,
        slow.len(),
        "every slow connection is closed after the timeout"
    );
}

#[actix_web::test]
async fn a_body_that_trickles_in_is_408_problem_json() {
    let app = TestApp::spawn_with(|serve, _| serve.client_timeout_ms = 500).await;
    let key = app.key(signals::domain::key::Scope::Write).await;
    let mut stream = TcpStream::connect(socket_address(&app)).await.unwrap();
    let head = format!(
        "POST /v1/signals HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"title\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") || !answer.ends_with(b"}") {
        let n = actix_web::rt::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer within the timeout")
            .unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("/problems/request-timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
