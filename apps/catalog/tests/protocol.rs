//! The HTTP layer under hostile input, over raw sockets: requests hyper
//! cannot parse are answered in problem+json, client request ids are
//! validated before they are echoed or logged, and metrics labels stay in a
//! closed set whatever methods clients invent.

mod common;

use std::time::Duration;

use catalog::CacheMode;
use common::{TestApp, TestDb, config};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn app() -> TestApp {
    TestApp::start(
        &TestDb::sqlite(),
        &config(CacheMode::Hybrid, None, "catalog:"),
    )
    .await
}

/// A response read off a raw socket.
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    /// Asserts a problem+json answer of `status` and returns the problem.
    fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.head);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{}",
            self.head
        );
        let problem: Value = serde_json::from_slice(&self.body).expect("a JSON body");
        assert_eq!(problem["status"], status);
        assert!(problem["detail"].is_string(), "{problem}");
        problem
    }
}

/// Sends `request` as it is and reads until the server closes.
async fn raw(app: &TestApp, request: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    // The server may answer and close before it has read everything.
    let _ = stream.write_all(request).await;
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("the server closes the connection")
        .expect("read");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, _) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head[9..12].parse().expect("a status");
    let body = bytes[head.len() + 4..].to_vec();
    Raw {
        status,
        head: head.to_owned(),
        body,
    }
}

#[tokio::test]
async fn unparsable_requests_get_problem_bodies() {
    let app = app().await;
    let cases: Vec<(Vec<u8>, u16)> =
        vec![
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (b"GET /products HTTP/1.1 extra\r\n\r\n".to_vec(), 400),
        (b"GET /products HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n".to_vec(), 400),
        (
            b"POST /products HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".to_vec(),
            400,
        ),
        (
            b"POST /products HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100 * 1024)).into_bytes(),
            431,
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(20_000))
                .into_bytes(),
            431,
        ),
    ];
    for (request, status) in cases {
        let response = raw(&app, &request).await;
        let shown = String::from_utf8_lossy(&request[..request.len().min(60)]).into_owned();
        assert_eq!(response.status, status, "{shown}");
        response.problem(status);
        assert_eq!(response.header("connection"), Some("close"), "{shown}");
    }
    // The service still answers.
    assert_eq!(app.get("/health/live").await.status(), 200);
}

#[tokio::test]
async fn a_bad_request_after_a_good_one_on_the_same_connection_gets_a_problem() {
    let app = app().await;
    let response = raw(
        &app,
        b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 200);
    let rest = String::from_utf8_lossy(&response.body).into_owned();
    let at = rest.find("HTTP/1.1 ").expect("a second response");
    let second = &rest[at..];
    assert!(second.starts_with("HTTP/1.1 400 "), "{second}");
    let (head, body) = second.split_once("\r\n\r\n").expect("a head");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    let problem: Value = serde_json::from_str(body).expect("a problem");
    assert_eq!(problem["status"], 400);
}

#[tokio::test]
async fn invalid_request_ids_are_replaced_not_echoed() {
    let app = app().await;
    let long = "a".repeat(8 * 1024);
    for bad in [long.as_str(), "has space", "quote\"", "a;b", "ü"] {
        let request = format!(
            "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: {bad}\r\n\r\n"
        );
        let response = raw(&app, request.as_bytes()).await;
        let problem = response.problem(404);
        let echoed = response.header("x-request-id").expect("an id");
        assert_ne!(echoed, bad);
        assert!(uuid::Uuid::parse_str(echoed).is_ok(), "{echoed}");
        assert_eq!(problem["request_id"], echoed);
    }
    for good in ["test-id-42", "0123456789abcdef0123456789abcdef", "a.b_c:d"] {
        let response = app
            .http
            .get(app.url("/health/live"))
            .header("x-request-id", good)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-request-id"], good);
    }
    let max = "x".repeat(catalog::app::MAX_REQUEST_ID_LEN);
    let response = app
        .http
        .get(app.url("/health/live"))
        .header("x-request-id", &max)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], max.as_str());
}

#[tokio::test]
async fn metrics_labels_stay_in_a_closed_set_under_random_methods() {
    let app = app().await;
    app.list().await;
    let before = app.get("/metrics").await.text().await.unwrap();
    let mut tokens = Vec::new();
    for i in 0..2_000 {
        let token = format!("M{}", uuid::Uuid::now_v7().simple()).to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(token.as_bytes()).unwrap();
        let path = if i % 2 == 0 { "/products" } else { "/nope" };
        let response = app
            .http
            .request(method, app.url(path))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
        tokens.push(token);
    }
    let after = app.get("/metrics").await.text().await.unwrap();
    for token in tokens.iter().step_by(97) {
        let line = after.lines().find(|l| l.contains(token.as_str()));
        assert!(line.is_none(), "{token} became a label: {line:?}");
    }
    assert!(
        after.contains(r#"method="other""#),
        "unknown methods are counted as other"
    );
    // 2,000 distinct methods used to add 2,000 series of ~20 lines each.
    assert!(
        after.len() < before.len() + 16 * 1024,
        "/metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
}
