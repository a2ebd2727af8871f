//! What e2b-local's benchmarks share: a raw hyper client of the REST API and the envd proxy
//! (so the measured latency is the server's, not an SDK's), percentiles, and readings of
//! this host and process. Included by each benchmark binary with `#[path]`.

use std::time::Duration;

use bytes::Bytes;
use e2b_envd::headers;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

/// A live sandbox as the API returned it.
pub struct Created {
    /// `sandboxID`.
    pub id: String,
    /// `envdAccessToken`.
    pub token: String,
}

/// The REST API and envd proxy of one server.
pub struct Api {
    http: Client<HttpConnector, Full<Bytes>>,
    /// Base URL of the server.
    pub url: String,
    /// `X-API-Key`.
    pub key: String,
}

impl Api {
    /// A client of the server at `url`.
    pub fn new(url: String, key: String) -> Self {
        // Without TCP_NODELAY, a request whose body is written after its headers waits
        // for the delayed ACK (~40 ms): a client artefact, not server latency.
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        Api {
            http: Client::builder(hyper_util::rt::TokioExecutor::new()).build(conn),
            url,
            key,
        }
    }

    /// The same connection pool, another server.
    pub fn with_server(&self, url: String, key: String) -> Self {
        Api {
            http: self.http.clone(),
            url,
            key,
        }
    }

    /// One REST call; returns the status and the whole body.
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: &str,
    ) -> Result<(u16, Bytes), String> {
        let (status, _, body) = self.call_with_headers(method, path, body).await?;
        Ok((status, body))
    }

    /// [`Api::call`], with the response's headers.
    pub async fn call_with_headers(
        &self,
        method: http::Method,
        path: &str,
        body: &str,
    ) -> Result<(u16, http::HeaderMap, Bytes), String> {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header("x-api-key", &self.key)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .map_err(|e| e.to_string())?;
        let resp = self.http.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, headers, body))
    }

    /// `POST /sandboxes` (template `base`) until 201.
    pub async fn create(&self) -> Result<Created, String> {
        self.create_from("base").await
    }

    /// `POST /sandboxes` of `template` until 201.
    pub async fn create_from(&self, template: &str) -> Result<Created, String> {
        let body = serde_json::json!({"templateID": template, "timeout": 3600}).to_string();
        let (s, body) = self.call(http::Method::POST, "/sandboxes", &body).await?;
        if s != 201 {
            return Err(format!("create: {s}: {}", String::from_utf8_lossy(&body)));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok(Created {
            id: v["sandboxID"].as_str().unwrap_or_default().to_owned(),
            token: v["envdAccessToken"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// `DELETE /sandboxes/{id}` until 204.
    pub async fn kill(&self, id: &str) -> Result<(), String> {
        let (s, body) = self
            .call(http::Method::DELETE, &format!("/sandboxes/{id}"), "")
            .await?;
        if s != 204 {
            return Err(format!("kill: {s}: {}", String::from_utf8_lossy(&body)));
        }
        Ok(())
    }

    /// Runs `bash -l -c script` as the default user through envd's `process.Process/Start`
    /// (as the SDKs' `commands.run` does) and returns the whole response stream once the
    /// process has ended (JSON envelopes; output is base64 in them).
    pub async fn run(&self, sb: &Created, script: &str) -> Result<String, String> {
        self.run_as(sb, None, script).await
    }

    /// [`Api::run`] as `user` (`Authorization: Basic base64(user:)`, as the SDKs send it);
    /// `None` is the sandbox's default user.
    pub async fn run_as(
        &self,
        sb: &Created,
        user: Option<&str>,
        script: &str,
    ) -> Result<String, String> {
        let msg = serde_json::json!({
            "process": {"cmd": "/bin/bash", "args": ["-l", "-c", script]}
        })
        .to_string();
        let mut body = vec![0u8];
        body.extend_from_slice(&u32::try_from(msg.len()).unwrap_or(0).to_be_bytes());
        body.extend_from_slice(msg.as_bytes());
        let mut req = http::Request::post(format!("{}/process.Process/Start", self.url));
        if let Some(user) = user {
            use base64::Engine as _;
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:"));
            req = req.header(http::header::AUTHORIZATION, format!("Basic {basic}"));
        }
        let req = req
            .header(headers::SANDBOX_ID, &sb.id)
            .header(headers::SANDBOX_PORT, e2b_envd::ENVD_PORT)
            .header(headers::ACCESS_TOKEN, &sb.token)
            .header("content-type", "application/connect+json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = self.http.request(req).await.map_err(|e| e.to_string())?;
        let out = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// One request to port `port` of sandbox `sb` through the router (`E2b-Sandbox-Id`,
    /// `E2b-Sandbox-Port`, the access token); returns the status and the whole body.
    pub async fn port_call(
        &self,
        sb: &Created,
        port: u16,
        method: http::Method,
        path: &str,
        body: &str,
    ) -> Result<(u16, Bytes), String> {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url))
            .header(headers::SANDBOX_ID, &sb.id)
            .header(headers::SANDBOX_PORT, port)
            .header(headers::ACCESS_TOKEN, &sb.token)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .map_err(|e| e.to_string())?;
        let resp = self.http.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }

    /// [`Api::run`], failing unless the stream contains `stdout_b64` (the expected output,
    /// base64-encoded as envd sends it).
    pub async fn run_expecting(
        &self,
        sb: &Created,
        script: &str,
        stdout_b64: &str,
    ) -> Result<(), String> {
        let out = self.run(sb, script).await?;
        if !out.contains(stdout_b64) {
            return Err(format!("{script}: {out}"));
        }
        Ok(())
    }
}

/// The `p` quantile (0..=1) of `v` (sorted in place).
pub fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or_default()
}

/// Prints one line: `name n= p50= p99=`.
pub fn report(name: &str, v: &mut [Duration]) {
    let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
    println!(
        "{name:<44} n={:<4} p50={:>8.2} ms  p99={:>8.2} ms",
        v.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
}

/// Memory charged to sandbox `id`'s cgroup under the cgroup parent `parent` (v1
/// `memory.usage_in_bytes`, v2 `memory.current`).
pub fn cgroup_memory(parent: &str, id: &str) -> Option<u64> {
    for (root, file) in [
        (
            format!("/sys/fs/cgroup/memory/{parent}"),
            "memory.usage_in_bytes",
        ),
        (format!("/sys/fs/cgroup/{parent}"), "memory.current"),
    ] {
        let Ok(dir) = std::fs::read_dir(&root) else {
            continue;
        };
        for entry in dir.flatten() {
            if entry.file_name().to_string_lossy().contains(id) {
                let text = std::fs::read_to_string(entry.path().join(file)).ok()?;
                return text.trim().parse().ok();
            }
        }
    }
    None
}

/// The host's `MemAvailable`, in bytes.
pub fn mem_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// This process (the in-process server and its client): resident memory in bytes, open
/// descriptors and threads.
pub fn self_usage() -> (u64, usize, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    (field("VmRSS:") * 1024, fds, field("Threads:"))
}

/// The host's 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// The `n`th command-line argument as a number, `default` when it is missing or not one.
pub fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The `main` of a benchmark that runs an in-process server: serves the helper and envd
/// roles the runtime re-executes this binary for, then runs `bench()` on a multi-threaded
/// runtime, printing `name: error` and failing if it fails.
pub fn run_main<F>(name: &str, bench: impl FnOnce() -> F) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<(), String>>,
{
    use std::process::ExitCode;
    if let Some(code) = e2b_local::envd_role::run_role_if_requested() {
        return code;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(bench()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
