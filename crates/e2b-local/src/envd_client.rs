//! The control plane's client of envd's plain HTTP endpoints (`/init`, `/metrics`).
//!
//! envd listens on [`ENVD_PORT`] inside the sandbox's network namespace, which the host
//! cannot route to: every request opens a fresh connection through
//! [`SandboxHandle::connect`] (a std stream) and speaks HTTP/1 over it with hyper. The
//! bodies are the generated `e2b_envd::http::types`, so envd's wire facts stay in
//! `e2b-envd`; the generated progenitor client is not used because it owns its (reqwest)
//! transport.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use e2b_envd::ENVD_PORT;
use e2b_envd::headers;
use e2b_envd::http::types::{InitRequest, Metrics};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::isolation::SandboxHandle;

/// How long [`init`] waits for envd to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`disk_usage`] waits for envd's `/metrics`.
const METRICS_TIMEOUT: Duration = Duration::from_secs(1);
/// The user envd runs commands as when a request names none, as in E2B's sandboxes.
const DEFAULT_USER: &str = "user";

/// Why a request to envd failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnvdError {
    /// Opening the connection into the sandbox failed.
    #[error("connecting to envd: {0}")]
    Connect(#[source] std::io::Error),
    /// envd's process is gone, so it will never listen.
    #[error("envd exited (see the sandbox logs)")]
    Exited,
    /// envd did not listen within [`READY_TIMEOUT`].
    #[error("envd did not listen on port {ENVD_PORT} within {READY_TIMEOUT:?}")]
    NotListening,
    /// The blocking connect task panicked or was cancelled.
    #[error("{0}")]
    Task(#[from] tokio::task::JoinError),
    /// Handing the connected stream to tokio failed.
    #[error("{0}")]
    Stream(#[source] std::io::Error),
    /// The HTTP/1 handshake failed.
    #[error("envd handshake: {0}")]
    Handshake(#[source] hyper::Error),
    /// Sending the request or reading the response head failed.
    #[error("envd request: {0}")]
    Request(#[source] hyper::Error),
    /// Reading the response body failed.
    #[error("envd response: {0}")]
    Response(#[source] hyper::Error),
    /// Building the request failed (a header value envd cannot take).
    #[error("{0}")]
    Build(#[from] http::Error),
    /// Encoding the `/init` body failed.
    #[error("encoding the /init body: {0}")]
    Encode(#[from] serde_json::Error),
    /// `/init` answered something other than 204.
    #[error("envd /init answered {status}: {body}")]
    InitRejected {
        /// The status envd answered.
        status: StatusCode,
        /// envd's body, lossily decoded.
        body: String,
    },
}

/// Opens a connection to envd inside the sandbox (the connect blocks: it enters the
/// sandbox's network namespace).
async fn connect(
    handle: &Arc<SandboxHandle>,
) -> Result<std::io::Result<std::net::TcpStream>, EnvdError> {
    let h = handle.clone();
    Ok(tokio::task::spawn_blocking(move || h.connect(ENVD_PORT)).await?)
}

/// Sends `req` on `stream` and reads the whole response.
async fn send_on(
    stream: std::net::TcpStream,
    req: Request<Full<Bytes>>,
) -> Result<(http::response::Parts, Bytes), EnvdError> {
    stream.set_nonblocking(true).map_err(EnvdError::Stream)?;
    let stream = tokio::net::TcpStream::from_std(stream).map_err(EnvdError::Stream)?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(EnvdError::Handshake)?;
    let conn = tokio::spawn(conn);
    let resp = send.send_request(req).await.map_err(EnvdError::Request)?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(EnvdError::Response)?
        .to_bytes();
    conn.abort();
    Ok((parts, body))
}

/// Waits until envd listens inside the sandbox, then `POST /init` with the access token, the
/// env vars, default user `user` and the host's time. Returns envd's version
/// (`X-Envd-Version`, this build's envd when absent).
pub(crate) async fn init(
    handle: &Arc<SandboxHandle>,
    token: Option<&str>,
    env_vars: &BTreeMap<String, String>,
    defaults: Option<(&str, &str)>,
) -> Result<String, EnvdError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut pause = Duration::from_micros(500);
    let stream = loop {
        match connect(handle).await? {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                if !handle.is_running() {
                    return Err(EnvdError::Exited);
                }
                if Instant::now() > deadline {
                    return Err(EnvdError::NotListening);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            Err(e) => return Err(EnvdError::Connect(e)),
        }
    };
    let body = serde_json::to_vec(&init_request(token, env_vars, defaults, Utc::now()))?;
    let req = Request::post("/init")
        .header(http::header::HOST, format!("127.0.0.1:{ENVD_PORT}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let (parts, resp_body) = send_on(stream, req).await?;
    if parts.status != StatusCode::NO_CONTENT {
        return Err(EnvdError::InitRejected {
            status: parts.status,
            body: String::from_utf8_lossy(&resp_body).into_owned(),
        });
    }
    Ok(parts
        .headers
        .get(headers::ENVD_VERSION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(envd::ENVD_VERSION)
        .to_owned())
}

/// The `/init` body: the access token (none clears it), the env vars, default user `user`
/// and the host's time `now`.
fn init_request(
    token: Option<&str>,
    env_vars: &BTreeMap<String, String>,
    defaults: Option<(&str, &str)>,
    now: DateTime<Utc>,
) -> InitRequest {
    let (user, workdir) = defaults.map_or((DEFAULT_USER, None), |(u, w)| (u, Some(w)));
    InitRequest {
        access_token: token.map(str::to_owned),
        default_user: Some(user.to_owned()),
        default_workdir: workdir.map(str::to_owned),
        env_vars: Some(env_vars.clone().into()),
        timestamp: Some(now),
        ..InitRequest::default()
    }
}

/// `(disk_used, disk_total)` in bytes from envd's `/metrics`; `None` when envd does not
/// answer within a second or answers without them.
pub(crate) async fn disk_usage(
    handle: &Arc<SandboxHandle>,
    token: Option<&str>,
) -> Option<(u64, u64)> {
    let mut req = Request::get("/metrics").header(http::header::HOST, "127.0.0.1");
    if let Some(t) = token {
        req = req.header(headers::ACCESS_TOKEN, t);
    }
    let req = req.body(Full::new(Bytes::new())).ok()?;
    let exchange = async {
        let stream = connect(handle).await?.map_err(EnvdError::Connect)?;
        send_on(stream, req).await
    };
    let (parts, body) = tokio::time::timeout(METRICS_TIMEOUT, exchange)
        .await
        .ok()?
        .ok()?;
    if !parts.status.is_success() {
        return None;
    }
    let metrics: Metrics = serde_json::from_slice(&body).ok()?;
    Some((
        u64::try_from(metrics.disk_used?).ok()?,
        u64::try_from(metrics.disk_total?).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_body_carries_token_env_user_and_time() {
        let env = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        let now = DateTime::parse_from_rfc3339("2026-11-30T05:00:00.5Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            serde_json::to_value(init_request(Some("tok"), &env, None, now)).unwrap(),
            serde_json::json!({
                "accessToken": "tok",
                "defaultUser": "user",
                "envVars": {"A": "1"},
                "timestamp": "2026-11-30T05:00:00.500Z",
            })
        );
        let body = serde_json::to_value(init_request(None, &BTreeMap::new(), None, now)).unwrap();
        assert!(body.get("accessToken").is_none(), "{body}");
    }
}
