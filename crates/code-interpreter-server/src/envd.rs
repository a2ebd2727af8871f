//! The sandbox's global env vars, read from envd's `GET /envs` as E2B's server does.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The header carrying envd's access token.
const ACCESS_TOKEN_HEADER: &str = "X-Access-Token";

/// `GET {envd_url}/envs` with the caller's access token.
pub(crate) async fn global_env_vars(
    envd_url: &str,
    token: Option<&str>,
) -> Result<BTreeMap<String, String>, String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = http::Request::get(format!("{}/envs", envd_url.trim_end_matches('/')));
    if let Some(token) = token {
        request = request.header(ACCESS_TOKEN_HEADER, token);
    }
    let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(std::time::Duration::from_secs(5), client.request(request))
        .await
        .map_err(|_| "no answer within 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    serde_json::from_slice(&body)
        .map_err(|e| format!("the answer is not a JSON object of strings: {e}"))
}
