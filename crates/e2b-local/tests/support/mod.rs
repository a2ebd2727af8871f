//! Shared setup of the REST and routing tests: an in-process server (the real runtime, the
//! `e2b-local` binary as helper and envd) with its own data directory, and a reqwest client.
//! Needs root: ignored unless run with `-- --ignored` as root.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use e2b_local::{RunningServer, Server};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;

/// Cgroup parent of the sandboxes these tests create.
pub const CGROUP_PARENT: &str = "e2b-local-api-tests";

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub http: reqwest::Client,
    pub url: String,
    pub key: String,
    pub dir: tempfile::TempDir,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }
}

pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub async fn start_in(dir: tempfile::TempDir, max_lifetime: Duration) -> TestServer {
    start_with(dir, |b| b.max_lifetime(max_lifetime)).await
}

/// A server on `dir` with the tests' settings, then `configure`'s.
pub async fn start_with(
    dir: tempfile::TempDir,
    configure: impl FnOnce(e2b_local::ServerBuilder) -> e2b_local::ServerBuilder,
) -> TestServer {
    let builder = Server::builder()
        .data_dir(dir.path())
        .listen("127.0.0.1:0")
        .max_lifetime(Duration::from_secs(3600))
        .helper_exe(env!("CARGO_BIN_EXE_e2b-local"))
        .cgroup_parent(CGROUP_PARENT);
    let server = configure(builder)
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting the server (needs root): {e}"));
    TestServer {
        url: server.api_url(),
        key: server.api_key().to_owned(),
        server: Some(server),
        http: http(),
        dir,
    }
}

pub async fn start() -> TestServer {
    start_in(tempfile::tempdir().unwrap(), Duration::from_secs(3600)).await
}

impl TestServer {
    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&str>) -> Resp {
        self.call_with(method, path, body, &[("x-api-key", self.key.as_str())])
            .await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().await.unwrap();
        Resp {
            status: resp.status(),
            headers: resp.headers().clone(),
            text: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Creates a sandbox (v1) and returns the 201 body.
    pub async fn create(&self, body: &str) -> Value {
        let r = self.post("/sandboxes", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json()
    }

    pub async fn kill(&self, id: &str) {
        let r = self
            .call(Method::DELETE, &format!("/sandboxes/{id}"), None)
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    }

    /// An envd request through the proxy, routed by header.
    pub fn envd(&self, method: Method, id: &str, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .header("E2b-Sandbox-Id", id)
            .header("E2b-Sandbox-Port", "49983")
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// `{"code": c, "message": m}`.
pub fn err(code: u16, message: &str) -> Value {
    serde_json::json!({"code": code, "message": message})
}

/// The proxy's 502 for a sandbox that is not running.
pub fn not_found_502(id: &str) -> Value {
    serde_json::json!({"sandboxId": id, "message": "The sandbox was not found", "code": 502})
}

/// A Connect streaming request body (one JSON envelope).
pub fn envelope(msg: &Value) -> Vec<u8> {
    let b = serde_json::to_vec(msg).unwrap();
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(b.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&b);
    out
}

/// Starts `bash -c cmd` through envd's Start RPC and returns the streaming response.
pub async fn start_process(t: &TestServer, id: &str, token: &str, cmd: &str) -> reqwest::Response {
    start_process_as(t, id, token, cmd, None).await
}

/// [`start_process`] as `user` (envd's Basic authorization), the default user when `None`.
pub async fn start_process_as(
    t: &TestServer,
    id: &str,
    token: &str,
    cmd: &str,
    user: Option<&str>,
) -> reqwest::Response {
    use base64::Engine as _;
    let body = envelope(&serde_json::json!({
        "process": {"cmd": "/bin/bash", "args": ["-c", cmd]}
    }));
    let mut req = t
        .envd(Method::POST, id, "/process.Process/Start")
        .header("X-Access-Token", token)
        .header("content-type", "application/connect+json");
    if let Some(user) = user {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:"));
        req = req.header("Authorization", format!("Basic {basic}"));
    }
    let resp = req.body(body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp
}

/// Runs `bash -c cmd` in sandbox `id` through envd's Start RPC and returns its whole stdout.
pub async fn stdout_of(t: &TestServer, id: &str, token: &str, cmd: &str) -> String {
    stdout_as(t, id, token, cmd, None).await
}

/// [`stdout_of`] as `user` (the default user when `None`).
pub async fn stdout_as(
    t: &TestServer,
    id: &str,
    token: &str,
    cmd: &str,
    user: Option<&str>,
) -> String {
    use base64::Engine as _;
    let mut resp = start_process_as(t, id, token, cmd, user).await;
    let mut raw = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        raw.extend_from_slice(&c);
    }
    let mut out = Vec::new();
    let mut rest = &raw[..];
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let msg: Value = serde_json::from_slice(&rest[5..5 + len]).unwrap();
        if let Some(s) = msg["event"]["data"]["stdout"].as_str() {
            out.extend(base64::engine::general_purpose::STANDARD.decode(s).unwrap());
        }
        rest = &rest[5 + len..];
    }
    String::from_utf8(out).unwrap()
}
