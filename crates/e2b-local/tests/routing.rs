//! envd routing tests: by header, by Host (envd and any user port), pre-signed `/files` URLs
//! without headers, the proxy's 502/404/400 bodies, and streams cut on kill and pause.
//! Needs root: ignored unless run with `-- --ignored` as root.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest as _;
use support::{TestServer, err, not_found_502, start, start_process};

async fn sandbox(t: &TestServer) -> (String, String) {
    let sb = t.create(r#"{"templateID":"base","timeout":120}"#).await;
    (
        sb["sandboxID"].as_str().unwrap().to_owned(),
        sb["envdAccessToken"].as_str().unwrap().to_owned(),
    )
}

/// The v1 `/files` signature, computed independently of the server.
fn sign(path: &str, op: &str, user: &str, token: &str, exp: Option<i64>) -> String {
    let mut raw = format!("{path}:{op}:{user}:{token}");
    if let Some(e) = exp {
        raw.push_str(&format!(":{e}"));
    }
    let digest = sha2::Sha256::digest(raw.as_bytes());
    format!(
        "v1_{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn header_routing_reaches_envd_with_its_auth() {
    let t = start().await;
    let (id, token) = sandbox(&t).await;
    let r = t.envd(Method::GET, &id, "/health").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Upload and download with the token.
    let r = t
        .envd(Method::POST, &id, "/files?path=/home/user/h.txt")
        .header("X-Access-Token", &token)
        .header("content-type", "application/octet-stream")
        .body("via header")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!([{"path": "/home/user/h.txt", "name": "h.txt", "type": "file"}])
    );
    let r = t
        .envd(Method::GET, &id, "/files?path=/home/user/h.txt")
        .header("X-Access-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "via header");
    // envd enforces the token on RPCs (the proxy passes auth through untouched).
    let r = t
        .envd(Method::POST, &id, "/process.Process/List")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        err(
            401,
            "unauthorized access, please provide a valid access token or method signing if supported"
        )
    );
    // A one-shot command's output streams back.
    let mut resp = start_process(&t, &id, &token, "echo hi").await;
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        out.extend_from_slice(&c);
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains(r#"{"stdout":"aGkK"}"#), "{text}");
    assert!(text.contains(r#""exited":true"#), "{text}");

    // Internal envd routes are refused by the proxy.
    for path in ["/init", "/freeze", "/upgrade"] {
        let r = t.envd(Method::POST, &id, path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"message": "This endpoint is reserved for the E2B control plane and cannot be called through the proxy", "path": path, "code": 404})
        );
    }
    // Header errors.
    let r = t
        .http
        .get(format!("{}/health", t.url))
        .header("E2b-Sandbox-Id", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        err(400, "missing header E2b-Sandbox-Port")
    );
    let r = t
        .http
        .get(format!("{}/health", t.url))
        .header("E2b-Sandbox-Id", "BAD")
        .header("E2b-Sandbox-Port", "49983")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        err(400, "invalid sandbox ID \"BAD\"")
    );
    let r = t
        .http
        .get(format!("{}/health", t.url))
        .header("E2b-Sandbox-Id", &id)
        .header("E2b-Sandbox-Port", "99999")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        err(400, "invalid sandbox port \"99999\"")
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn host_routing_reaches_envd_and_any_user_port() {
    let t = start().await;
    let (id, token) = sandbox(&t).await;
    let domain = t.server().domain().to_owned();
    assert_eq!(
        domain,
        format!("localhost:{}", t.server().local_addr().port())
    );
    let r = t
        .http
        .get(format!("{}/health", t.url))
        .header("Host", format!("49983-{id}.{domain}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // A user's server on port 8000 inside the sandbox.
    let _server = start_process(
        &t,
        &id,
        &token,
        "mkdir -p /tmp/www && cd /tmp/www && echo hello-port > index.html && exec python3 -m http.server 8000 --bind 127.0.0.1",
    )
    .await;
    let start = Instant::now();
    let body = loop {
        let r = t
            .http
            .get(format!("{}/index.html", t.url))
            .header("Host", format!("8000-{id}.{domain}"))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            break r.text().await.unwrap();
        }
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "port 8000 never opened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body, "hello-port\n");
    // Old `<port>-<id>-<clientID>` hosts work too.
    let r = t
        .http
        .get(format!("{}/index.html", t.url))
        .header("Host", format!("8000-{id}-6532622b.{domain}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A closed port.
    let r = t
        .http
        .get(format!("{}/", t.url))
        .header("Host", format!("8001-{id}.{domain}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"sandboxId": id, "message": "The sandbox is running but port is not open", "port": 8001, "code": 502})
    );
    // Unknown sandbox by Host.
    let r = t
        .http
        .get(format!("{}/", t.url))
        .header("Host", format!("8000-inosuchsandbox000000.{domain}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        not_found_502("inosuchsandbox000000")
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn signed_urls_route_without_headers() {
    let t = start().await;
    // Two sandboxes: the signature alone must pick the right one.
    let (_other, _other_token) = sandbox(&t).await;
    let (id, token) = sandbox(&t).await;
    let path = "/home/user/signed file.txt";
    let sig = sign(path, "write", "user", &token, None);
    let url = format!(
        "{}/files?path={}&username=user&signature={}",
        t.url,
        enc(path),
        enc(&sig)
    );
    let r = t
        .http
        .post(&url)
        .header("content-type", "application/octet-stream")
        .body("signed upload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    let exp = chrono::Utc::now().timestamp() + 60;
    let sig = sign(path, "read", "", &token, Some(exp));
    let url = format!(
        "{}/files?path={}&signature={}&signature_expiration={exp}",
        t.url,
        enc(path),
        enc(&sig)
    );
    let r = t.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "signed upload");
    // Expired: routed to the right sandbox, whose envd refuses it.
    let exp = chrono::Utc::now().timestamp() - 10;
    let sig = sign(path, "read", "", &token, Some(exp));
    let url = format!(
        "{}/files?path={}&signature={}&signature_expiration={exp}",
        t.url,
        enc(path),
        enc(&sig)
    );
    let r = t.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        err(401, "signature is already expired")
    );
    // A signature of no live sandbox, and a read signature used for a write.
    let r = t
        .http
        .get(format!("{}/files?path=%2Fx&signature=v1_bogus", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        err(401, "invalid signature")
    );
    let sig = sign("/x", "read", "", &token, None);
    let r = t
        .http
        .post(format!("{}/files?path=%2Fx&signature={}", t.url, enc(&sig)))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // After kill the URL no longer routes.
    t.kill(&id).await;
    let sig = sign(path, "read", "", &token, None);
    let r = t
        .http
        .get(format!(
            "{}/files?path={}&signature={}",
            t.url,
            enc(path),
            enc(&sig)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    t.shutdown().await;
}

/// Reads until the stream ends; `Ok(bytes)` on a clean end, `Err` when it was cut.
async fn drain(resp: &mut reqwest::Response) -> Result<usize, reqwest::Error> {
    let mut n = 0;
    while let Some(c) = resp.chunk().await? {
        n += c.len();
    }
    Ok(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn kill_and_pause_cut_open_streams_and_health_answers_502() {
    let t = start().await;
    for action in ["kill", "pause"] {
        let (id, token) = sandbox(&t).await;
        let mut resp = start_process(
            &t,
            &id,
            &token,
            "while true; do echo tick; sleep 0.05; done",
        )
        .await;
        // Wait for output to flow.
        let first = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .unwrap()
            .unwrap();
        assert!(first.is_some());
        let reader = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(10), drain(&mut resp)).await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        if action == "kill" {
            t.kill(&id).await;
        } else {
            let r = t.post(&format!("/sandboxes/{id}/pause"), "").await;
            assert_eq!(r.status, StatusCode::NO_CONTENT);
        }
        let ended = reader.await.unwrap();
        let ended = ended.unwrap_or_else(|_| panic!("{action}: stream did not end"));
        assert!(ended.is_err(), "{action}: stream ended cleanly: {ended:?}");
        // The SDK then probes /health: 502 with the proxy's body.
        let r = t.envd(Method::GET, &id, "/health").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "{action}");
        assert_eq!(r.json::<Value>().await.unwrap(), not_found_502(&id));
        // New RPCs get the same 502.
        let r = t
            .envd(Method::POST, &id, "/process.Process/List")
            .header("X-Access-Token", &token)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    }
    t.shutdown().await;
}

const ECHO_UPGRADE_SERVER: &str = r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8002))
s.listen()
while True:
    c, _ = s.accept()
    data = b""
    while b"\r\n\r\n" not in data:
        data += c.recv(1024)
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
    while True:
        d = c.recv(1024)
        if not d:
            break
        c.sendall(d.upper())
    c.close()
"#;

/// Sends an upgrade request by Host and returns the stream and the response head.
async fn upgrade(t: &TestServer, host: &str) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(t.server().local_addr())
        .await
        .unwrap();
    let req =
        format!("GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "closed in the head");
        head.push(b[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn upgraded_connections_are_spliced_and_cut_on_kill() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = start().await;
    let (id, token) = sandbox(&t).await;
    let r = t
        .envd(Method::POST, &id, "/files?path=/tmp/echo.py")
        .header("X-Access-Token", &token)
        .header("content-type", "application/octet-stream")
        .body(ECHO_UPGRADE_SERVER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let _server = start_process(&t, &id, &token, "exec python3 /tmp/echo.py").await;
    let host = format!("8002-{id}.{}", t.server().domain());
    let start = Instant::now();
    let mut s = loop {
        let (s, head) = upgrade(&t, &host).await;
        if head.starts_with("HTTP/1.1 101") {
            assert!(
                head.to_ascii_lowercase().contains("upgrade: echo"),
                "{head}"
            );
            break s;
        }
        assert!(head.starts_with("HTTP/1.1 502"), "{head}");
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "port 8002 never opened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"PING");
    // Killing the sandbox cuts the spliced connection.
    t.kill(&id).await;
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("upgraded connection was not cut");
    assert!(n.is_err() || rest.is_empty(), "{rest:?}");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn a_reply_that_leaves_the_body_unread_closes_the_connection() {
    let t = start().await;
    let id = "iaaaaaaaaaaaaaaaaaaaa";
    // A body the proxy never reads (the sandbox does not exist): hyper closes the
    // connection after the reply, so the reply must say so or a client reusing it fails.
    let r = t
        .envd(Method::POST, id, "/process.Process/Start")
        .header("content-type", "application/connect+json")
        .body(vec![0u8; 300_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        r.headers().get("connection").map(|v| v.to_str().unwrap()),
        Some("close")
    );
    assert_eq!(r.json::<Value>().await.unwrap(), not_found_502(id));
    // Without a body the connection stays usable: no Connection header.
    let r = t.envd(Method::GET, id, "/health").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(r.headers().get("connection"), None);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn private_sandbox_urls_need_the_traffic_token_and_masked_hosts_reach_the_sandbox() {
    let t = start().await;
    let domain = t.server().domain().to_owned();
    let sb = t
        .create(
            r#"{"templateID":"base","network":{"allowPublicTraffic":false,"maskRequestHost":"${PORT}-masked.example"}}"#,
        )
        .await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    let token = sb["envdAccessToken"].as_str().unwrap().to_owned();
    let traffic = sb["trafficAccessToken"].as_str().unwrap().to_owned();
    assert_eq!(traffic.len(), 64);
    // A server that answers with the Host and the token header it received.
    let _server = start_process(
        &t,
        &id,
        &token,
        r#"exec python3 -c '
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("%s|%s" % (self.headers.get("Host"), self.headers.get("e2b-traffic-access-token"))).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", 8000), H).serve_forever()'"#,
    )
    .await;
    let get = |token: Option<&str>| {
        let mut r = t
            .http
            .get(format!("{}/", t.url))
            .header("Host", format!("8000-{id}.{domain}"));
        if let Some(token) = token {
            r = r.header("e2b-traffic-access-token", token);
        }
        r.send()
    };
    let start = Instant::now();
    let body = loop {
        let r = get(Some(&traffic)).await.unwrap();
        if r.status() == StatusCode::OK {
            break r.text().await.unwrap();
        }
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "port 8000 never opened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The mask replaces the Host; the token stays with the proxy.
    assert_eq!(body, "8000-masked.example|None");
    for (sent, problem) in [(None, "is missing"), (Some("0".repeat(64)), "is invalid")] {
        let r = get(sent.as_deref()).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({
                "sandboxId": id,
                "message": format!("Sandbox is secured with traffic access token. Token header 'e2b-traffic-access-token' {problem}"),
                "code": 403
            })
        );
    }
    // envd's port is the access token's business, not the traffic token's.
    let r = t
        .http
        .get(format!("{}/health", t.url))
        .header("Host", format!("49983-{id}.{domain}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // A public sandbox has no traffic token.
    let open = t.create(r#"{"templateID":"base"}"#).await;
    assert_eq!(open["trafficAccessToken"], Value::Null);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn https_ports_reach_a_tls_server_in_the_sandbox_without_verifying_it() {
    let t = start().await;
    let domain = t.server().domain().to_owned();
    let sb = t
        .create(r#"{"templateID":"base","network":{"httpsPorts":[8443]}}"#)
        .await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    let token = sb["envdAccessToken"].as_str().unwrap().to_owned();
    // A self-signed certificate, and the same TLS server on 8443 (listed) and 8444 (not).
    let cert = rcgen::generate_simple_self_signed(vec!["sandbox.invalid".to_owned()]).unwrap();
    let script = format!(
        r#"mkdir -p /tmp/tls && cd /tmp/tls && cat > cert.pem <<'PEM'
{cert}PEM
cat > key.pem <<'PEM'
{key}PEM
exec python3 -c '
import http.server, ssl, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"over tls"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain("cert.pem", "key.pem")
for port in (8443, 8444):
    s = http.server.HTTPServer(("127.0.0.1", port), H); s.socket = ctx.wrap_socket(s.socket, server_side=True)
    threading.Thread(target=s.serve_forever, daemon=True).start()
threading.Event().wait()'"#,
        cert = cert.cert.pem(),
        key = cert.signing_key.serialize_pem(),
    );
    let _server = start_process(&t, &id, &token, &script).await;
    let get = |port: u16| {
        t.http
            .get(format!("{}/", t.url))
            .header("Host", format!("{port}-{id}.{domain}"))
            .send()
    };
    let start = Instant::now();
    let body = loop {
        let r = get(8443).await.unwrap();
        if r.status() == StatusCode::OK {
            break r.text().await.unwrap();
        }
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "port 8443 never opened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body, "over tls");
    // A port not listed is spoken to in plain HTTP, which a TLS server does not answer.
    let r = get(8444).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    t.shutdown().await;
}
