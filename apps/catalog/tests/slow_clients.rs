//! Slow and greedy clients against the real binary, over real sockets: the
//! service runs as a subprocess (on an embedded SQLite file, port 0), with
//! short limits set through its environment, exactly as an operator would.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A running `catalog` process, killed on drop.
struct Service {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Starts the binary with `env` on top of an SQLite database and port 0,
    /// and waits for its "listening" log line to learn the port.
    async fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = format!("sqlite://{}", dir.path().join("catalog.db").display());
        let mut child = Command::new(env!("CARGO_BIN_EXE_catalog"))
            .env_clear()
            .env("PORT", "0")
            .env("DATABASE_URL", database)
            .env("SEED", "false")
            .env("LOG", "warn,catalog::app=info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn catalog");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read the log") {
                if let Some(at) = line.find("address=") {
                    let address = line[at + 8..].split_whitespace().next().unwrap_or("");
                    let port = address.rsplit(':').next().unwrap_or("");
                    return port.parse::<u16>().expect("a port");
                }
            }
            panic!("the service exited before listening");
        })
        .await
        .expect("the service listens within 30 s");
        // Keep draining the log so that the service never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect")
    }

    /// One request on a fresh connection; the status and body.
    async fn request(&self, request: &str) -> (u16, String, String) {
        let mut stream = self.connect().await;
        stream.write_all(request.as_bytes()).await.expect("write");
        read_response(&mut stream).await
    }

    async fn live(&self) -> u16 {
        let request = "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        self.request(request).await.0
    }
}

/// Reads a response until the server closes: status, head, body.
async fn read_response(stream: &mut TcpStream) -> (u16, String, String) {
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("the server answers and closes within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// Waits until the server closes `stream` and returns how long that took.
async fn closed_after(mut stream: TcpStream, bound: Duration) -> Duration {
    let start = Instant::now();
    let mut sink = Vec::new();
    tokio::time::timeout(bound, stream.read_to_end(&mut sink))
        .await
        .expect("the server closes the connection in time")
        .ok();
    start.elapsed()
}

#[tokio::test]
async fn slow_headers_and_bodies_are_cut_off_and_the_service_stays_live() {
    let service =
        Service::start(&[("HEADER_TIMEOUT_MS", "1000"), ("BODY_TIMEOUT_MS", "1000")]).await;

    // 300 clients that never finish their request head.
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut stream = service.connect().await;
        stream
            .write_all(b"GET /products HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        slow.push(stream);
    }
    // One that never finishes its body.
    let mut body = service.connect().await;
    body.write_all(
        b"POST /products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":",
    )
    .await
    .expect("write");

    // The service answers everyone else meanwhile.
    let start = Instant::now();
    assert_eq!(service.live().await, 200);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    // The slow body gets a 408 problem, then the connection closes.
    let (status, head, problem) = read_response(&mut body).await;
    assert_eq!(status, 408, "{head}");
    assert!(head.contains("application/problem+json"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert!(problem.contains("\"status\":408"), "{problem}");

    // Every slow head is closed after the header timeout.
    for stream in slow {
        closed_after(stream, Duration::from_secs(10)).await;
    }
    assert_eq!(service.live().await, 200);
}

#[tokio::test]
async fn connections_beyond_the_bound_get_a_503_problem() {
    let service = Service::start(&[("MAX_CONNECTIONS", "8"), ("HEADER_TIMEOUT_MS", "30000")]).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(service.connect().await);
    }
    // The eighth connection is accepted when the server has seen it: poll.
    let mut refused = None;
    for _ in 0..200 {
        let answer = service
            .request("GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        if answer.0 == 503 {
            refused = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, head, problem) = refused.expect("a 503 once the bound is reached");
    assert!(head.contains("application/problem+json"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    assert!(problem.contains("\"status\":503"), "{problem}");

    // Freed slots serve again.
    drop(held);
    let mut live = false;
    for _ in 0..200 {
        if service.live().await == 200 {
            live = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(live, "the service serves again once connections close");
}

#[tokio::test]
async fn sigterm_completes_within_the_deadline_despite_a_slow_client() {
    let mut service = Service::start(&[
        ("HEADER_TIMEOUT_MS", "60000"),
        ("SHUTDOWN_TIMEOUT_MS", "1000"),
    ])
    .await;
    let mut slow = service.connect().await;
    slow.write_all(b"GET /products HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    assert_eq!(service.live().await, 200);

    let pid = service.child.id().expect("a pid").to_string();
    let start = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), service.child.wait())
        .await
        .expect("the service exits within 10 s")
        .expect("wait");
    assert!(status.success(), "{status}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "waited for the deadline: {took:?}"
    );
    // The slow client's connection was closed, not left behind.
    closed_after(slow, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected() {
    let service = Service::start(&[
        ("SEED", "true"),
        ("MAX_CONNECTIONS", "1"),
        ("BODY_TIMEOUT_MS", "1000"),
        ("HEADER_TIMEOUT_MS", "30000"),
    ])
    .await;
    // 100 pipelined requests for the 300 KB list, never read: about 30 MB of
    // answers, far more than the socket buffers hold.
    let mut greedy = service.connect().await;
    let request = "GET /products HTTP/1.1\r\nHost: x\r\n\r\n".repeat(100);
    greedy.write_all(request.as_bytes()).await.expect("write");

    // It holds the only slot until its blocked write times out.
    let start = Instant::now();
    let mut refused = 0;
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the stalled connection was never closed"
        );
        match service.live().await {
            200 => break,
            503 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused > 0, "the greedy client held the slot at first");
    drop(greedy);
}
