//! The HTTP surface from an attacker's side: real server, real sockets, exact statuses and
//! bodies. Malformed requests get `{code, message}`, slow clients are cut, connections per
//! peer are capped, env vars that envd could never use are refused at create, only the
//! configured domain routes by Host, and an early answer from a sandbox is passed through
//! while the upload is still being sent. Needs root: ignored unless run with `-- --ignored`.

mod support;

use std::time::{Duration, Instant};

use e2b_local::server::HttpLimits;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{CGROUP_PARENT, TestServer, err, start, start_process};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A server with these listener limits.
async fn start_with(limits: HttpLimits) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let server = e2b_local::Server::builder()
        .data_dir(dir.path())
        .listen("127.0.0.1:0")
        .helper_exe(env!("CARGO_BIN_EXE_e2b-local"))
        .cgroup_parent(CGROUP_PARENT)
        .http_limits(limits)
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting the server (needs root): {e}"));
    TestServer {
        url: server.api_url(),
        key: server.api_key().to_owned(),
        server: Some(server),
        http: support::http(),
        dir,
    }
}

async fn connect(t: &TestServer) -> TcpStream {
    TcpStream::connect(t.server().local_addr()).await.unwrap()
}

/// Sends `data` on a new connection and reads until the server closes it (10 s at most).
async fn exchange(t: &TestServer, data: &[u8]) -> String {
    let mut s = connect(t).await;
    s.write_all(data).await.unwrap();
    read_to_close(&mut s).await
}

async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the server did not close the connection")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A whole `Connection: close` JSON answer as the listener writes it.
fn json_answer(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn malformed_requests_get_e2b_error_bodies() {
    let t = start().await;
    let bad = r#"{"code":400,"message":"malformed HTTP request: the request line or a header could not be parsed"}"#;
    assert_eq!(
        exchange(&t, b"GE\x01T / HTTP/1.1\r\nHost: x\r\n\r\n").await,
        json_answer("400 Bad Request", bad)
    );
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000));
    assert_eq!(
        exchange(&t, long_uri.as_bytes()).await,
        json_answer(
            "414 URI Too Long",
            r#"{"code":414,"message":"request URI is too long"}"#
        )
    );
    // More header fields than hyper parses (100). (A head larger than hyper's buffer is the
    // same error, but whether hyper sees it depends on how the bytes arrive.)
    let fields: String = (0..200).map(|i| format!("X-{i}: 1\r\n")).collect();
    let many_fields = format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
    assert_eq!(
        exchange(&t, many_fields.as_bytes()).await,
        json_answer(
            "431 Request Header Fields Too Large",
            r#"{"code":431,"message":"request header fields are too large"}"#
        )
    );
    // After a good request on the same connection: the first answer is untouched.
    let out = exchange(
        &t,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nBAD\x01 / HTTP/1.1\r\n\r\n",
    )
    .await;
    let (first, second) = out.split_once("\r\n\r\n").unwrap();
    assert!(
        first.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n"),
        "{out}"
    );
    assert_eq!(second, json_answer("400 Bad Request", bad));

    // axum's extractor rejections: a path segment that is not UTF-8.
    let r = t.get("/sandboxes/%ff%fe").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json(), err(400, "Invalid URL: Invalid UTF-8 in `id`"));
    let r = t.get("/sandboxes/%ff%fe/logs").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["code"], 400);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn slow_and_idle_clients_are_cut_and_shutdown_still_completes() {
    assert_eq!(
        HttpLimits::default(),
        HttpLimits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_connections_per_peer: 512,
        }
    );
    let t = start_with(HttpLimits {
        header_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        ..HttpLimits::default()
    })
    .await;
    // Nothing sent (cut by the idle timeout), half a head (the header timeout), and a
    // keep-alive connection after one request: each is closed with no answer.
    let started = Instant::now();
    let mut silent = connect(&t).await;
    let mut half = connect(&t).await;
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut kept = connect(&t).await;
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 17];
    kept.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200 OK\r\n");
    let mut rest = Vec::new();
    for s in [&mut silent, &mut half] {
        rest.push(read_to_close(s).await);
    }
    assert_eq!(rest, ["", ""]);
    let kept_rest = read_to_close(&mut kept).await;
    assert!(kept_rest.ends_with("\r\n\r\n"), "{kept_rest:?}");
    assert!(!kept_rest.contains("HTTP/1.1"), "{kept_rest:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    // A long request in flight is not idle: a 3 s command (longer than both timeouts).
    let sb = t.create(r#"{"templateID":"base","timeout":60}"#).await;
    let (id, token) = (
        sb["sandboxID"].as_str().unwrap(),
        sb["envdAccessToken"].as_str().unwrap(),
    );
    let mut resp = start_process(&t, id, token, "sleep 3; echo done").await;
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        out.extend_from_slice(&c);
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains(r#"{"stdout":"ZG9uZQo="}"#), "{out}");

    // Shutdown with an open idle connection still completes promptly.
    let mut open = connect(&t).await;
    open.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    open.read_exact(&mut head).await.unwrap();
    let started = Instant::now();
    t.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn connections_per_peer_are_capped_with_429() {
    let t = start_with(HttpLimits {
        max_connections_per_peer: 4,
        ..HttpLimits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect(&t).await);
    }
    let over = exchange(&t, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(
        over,
        json_answer(
            "429 Too Many Requests",
            r#"{"code":429,"message":"too many connections from 127.0.0.1: at most 4 at a time"}"#
        )
    );
    // A closed connection frees its place.
    drop(held.pop());
    let started = Instant::now();
    loop {
        let out = exchange(
            &t,
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        if out.starts_with("HTTP/1.1 200 OK\r\n") {
            break;
        }
        assert!(out.starts_with("HTTP/1.1 429"), "{out}");
        assert!(started.elapsed() < Duration::from_secs(5), "never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn env_vars_envd_cannot_use_are_refused_at_create() {
    let t = start().await;
    let cases = [
        (
            json!({"A": "x\u{0}y"}),
            r#"envVars: variable "A" has a NUL byte in its value"#,
        ),
        (
            json!({"A\u{0}B": "x"}),
            r#"envVars: variable "A\0B" has a NUL byte in its name"#,
        ),
        (
            json!({"A=B": "x"}),
            r#"envVars: variable "A=B" has '=' in its name"#,
        ),
        (json!({"": "x"}), "envVars has an empty key"),
    ];
    for (path, extra) in [("/sandboxes", json!({})), ("/v2/sandboxes", json!({}))] {
        for (env, message) in &cases {
            let mut body = json!({"templateID": "base", "envVars": env});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let r = t.post(path, &body.to_string()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path} {env}");
            assert_eq!(r.json(), err(400, message), "{path} {env}");
        }
    }
    // Nothing was created; a clean create still works and its variables reach commands.
    let r = t.get("/v2/sandboxes").await;
    assert_eq!(r.json(), json!([]));
    let sb = t
        .create(r#"{"templateID":"base","envVars":{"GREETING":"a=b c"}}"#)
        .await;
    let (id, token) = (
        sb["sandboxID"].as_str().unwrap(),
        sb["envdAccessToken"].as_str().unwrap(),
    );
    let mut resp = start_process(&t, id, token, "printf %s \"$GREETING\"").await;
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        out.extend_from_slice(&c);
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains(r#"{"stdout":"YT1iIGM="}"#), "{out}");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn only_the_configured_domain_routes_by_host() {
    let t = start().await;
    let sb = t.create(r#"{"templateID":"base"}"#).await;
    let id = sb["sandboxID"].as_str().unwrap();
    let domain = t.server().domain().to_owned();
    let port = t.server().local_addr().port();
    let files = |host: String| {
        t.http
            .get(format!("{}/files?path=/etc/hostname", t.url))
            .header("Host", host)
            .send()
    };
    for host in [
        format!("49983-{id}.evil.com"),
        format!("49983-{id}.evil.com:{port}"),
        format!("49983-{id}.{domain}.evil.com"),
        format!("49983-{id}.evil.{domain}"),
        format!("49983-{id}.localhost:{}", port.wrapping_add(1)),
        format!("49983-{id}.localhost"),
    ] {
        let r = files(host.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{host}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            err(404, "no such endpoint: GET /files"),
            "{host}"
        );
    }
    // The configured domain, in any case, reaches envd (which wants its token).
    for host in [
        format!("49983-{id}.{domain}"),
        format!("49983-{id}.{}", domain.to_uppercase()),
    ] {
        let r = files(host.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{host}");
    }
    t.shutdown().await;
}

/// Answers every request 400 as soon as its head is read, then closes without reading the
/// body (the kernel then resets the connection under the proxy's writes).
const EARLY_400_SERVER: &str = r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8004))
s.listen(64)
while True:
    c, _ = s.accept()
    data = b""
    while b"\r\n\r\n" not in data:
        d = c.recv(65536)
        if not d:
            break
        data += d
    body = b'{"rejected":true}'
    c.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
    c.close()
"#;

/// A multipart body of one 6 MB file.
fn multipart_6mb() -> (String, Vec<u8>) {
    let boundary = "e2b-local-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend(std::iter::repeat_n(b'x', 6 << 20));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn early_answers_pass_through_while_the_upload_is_sent() {
    let t = start().await;
    let sb = t.create(r#"{"templateID":"base","timeout":300}"#).await;
    let (id, token) = (
        sb["sandboxID"].as_str().unwrap(),
        sb["envdAccessToken"].as_str().unwrap(),
    );
    let (content_type, body) = multipart_6mb();
    // envd refuses an upload onto a directory after the first part's head.
    for i in 0..20 {
        let r = t
            .envd(Method::POST, id, "/files?path=/home/user")
            .header("X-Access-Token", token)
            .header("content-type", &content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "try {i}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            err(400, "path is a directory: /home/user"),
            "try {i}"
        );
    }
    // A server that answers before reading any of the body and closes at once.
    let r = t
        .envd(Method::POST, id, "/files?path=/tmp/early.py")
        .header("X-Access-Token", token)
        .header("content-type", "application/octet-stream")
        .body(EARLY_400_SERVER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let _server = start_process(&t, id, token, "exec python3 /tmp/early.py").await;
    let host = format!("8004-{id}.{}", t.server().domain());
    let started = Instant::now();
    let mut answered = 0;
    while answered < 20 {
        let r = t
            .http
            .post(format!("{}/upload", t.url))
            .header("Host", &host)
            .header("content-type", &content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        if answered == 0 && status == StatusCode::BAD_GATEWAY && text.contains("port is not open") {
            // The server is still starting.
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "port 8004 never opened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        assert_eq!(status, StatusCode::BAD_REQUEST, "try {answered}: {text}");
        assert_eq!(text, r#"{"rejected":true}"#, "try {answered}");
        answered += 1;
    }
    t.shutdown().await;
}
