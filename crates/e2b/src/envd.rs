//! The connection to one sandbox's envd: Connect clients, the HTTP client, headers, version
//! gates and the `/health` probe. Private; `files`, `commands` and `pty` use it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use e2b_envd::headers as h;
use e2b_envd::pb::filesystem::filesystem_client::FilesystemClient;
use e2b_envd::pb::process::process_client::ProcessClient;
use e2b_envd::{ConnectError, Request};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{ENVD_PORT, USER_AGENT};
use crate::error::{self, Context, Error, Result};

/// Seconds between keepalive events asked of envd on streams (the SDKs' value).
pub(crate) const KEEPALIVE_PING_INTERVAL_SECS: &str = "50";
/// How long the `/health` probe after a transport failure may take.
pub(crate) const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// An envd version as `(major, minor, patch)`.
pub(crate) type Version = (u32, u32, u32);

/// envd ≥ 0.4.0 uses its default user when none is given; older ones need `user`.
pub(crate) const ENVD_DEFAULT_USER: Version = (0, 4, 0);
/// envd ≥ 0.3.0 accepts `stdin: false`.
pub(crate) const ENVD_COMMANDS_STDIN: Version = (0, 3, 0);
/// envd ≥ 0.5.2 has `CloseStdin`.
pub(crate) const ENVD_CLOSE_STDIN: Version = (0, 5, 2);
/// envd ≥ 0.5.7 accepts octet-stream and gzip uploads.
pub(crate) const ENVD_OCTET_STREAM_UPLOAD: Version = (0, 5, 7);
/// envd ≥ 0.6.2 stores file metadata.
pub(crate) const ENVD_FILE_METADATA: Version = (0, 6, 2);
/// envd ≥ 0.1.4 watches recursively.
pub(crate) const ENVD_RECURSIVE_WATCH: Version = (0, 1, 4);
/// envd ≥ 0.6.3 attaches entries to watch events.
pub(crate) const ENVD_WATCH_ENTRY: Version = (0, 6, 3);
/// envd ≥ 0.6.4 watches network mounts.
pub(crate) const ENVD_WATCH_NETWORK_MOUNTS: Version = (0, 6, 4);

/// Parses `"0.6.13"`; anything unparsable counts as the newest version, so that features
/// are not refused because of an unusual version string.
pub(crate) fn parse_version(text: &str) -> Version {
    let mut parts = text
        .trim()
        .trim_start_matches('v')
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u32>());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => (a, b, c),
        _ => (u32::MAX, u32::MAX, u32::MAX),
    }
}

/// Everything needed to talk to one sandbox's envd. Shared (`Arc`) by the sandbox and its
/// `files`, `commands` and `pty` handles.
pub(crate) struct Envd {
    pub(crate) base_url: String,
    pub(crate) process: ProcessClient,
    pub(crate) filesystem: FilesystemClient,
    pub(crate) http: e2b_envd::http::Client,
    /// The reqwest client behind all of the above, with the sandbox headers set.
    pub(crate) raw: reqwest::Client,
    pub(crate) version_text: String,
    pub(crate) version: Version,
    pub(crate) access_token: Option<String>,
    pub(crate) request_timeout: Option<Duration>,
}

impl fmt::Debug for Envd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envd")
            .field("base_url", &self.base_url)
            .field("version", &self.version_text)
            .field("secure", &self.access_token.is_some())
            .finish_non_exhaustive()
    }
}

impl Envd {
    pub(crate) fn new(
        base_url: &str,
        sandbox_id: &str,
        version_text: &str,
        access_token: Option<String>,
        request_timeout: Option<Duration>,
    ) -> Result<Arc<Self>> {
        let mut headers = HeaderMap::new();
        let value = |v: &str, what: &str| {
            HeaderValue::from_str(v).map_err(|_| {
                Error::invalid_argument(format!("{what} '{v}' is not a valid header value"))
            })
        };
        headers.insert(
            HeaderName::from_static(h::SANDBOX_ID),
            value(sandbox_id, "the sandbox id")?,
        );
        headers.insert(
            HeaderName::from_static(h::SANDBOX_PORT),
            HeaderValue::from(ENVD_PORT),
        );
        if let Some(token) = &access_token {
            let mut token = HeaderValue::from_str(token).map_err(|_| {
                Error::invalid_argument("the envd access token is not a valid header value")
            })?;
            token.set_sensitive(true);
            headers.insert(HeaderName::from_static(h::ACCESS_TOKEN), token);
        }
        let raw = e2b_envd::http_client_builder()
            .map_err(|e| Error::Sandbox(error::Context::new(e.to_string())))?
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .build()
            .map_err(|e| error::from_reqwest("building the envd HTTP client", e))?;
        let connect = e2b_envd::Client::builder(base_url)
            .http_client(raw.clone())
            .build()
            .map_err(|e| {
                Error::invalid_argument(format!("envd URL '{base_url}': {}", e.message()))
            })?;
        Ok(Arc::new(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            process: ProcessClient::new(connect.clone()),
            filesystem: FilesystemClient::new(connect),
            http: e2b_envd::http::Client::new_with_client(
                base_url.trim_end_matches('/'),
                raw.clone(),
            ),
            raw,
            version_text: version_text.to_owned(),
            version: parse_version(version_text),
            access_token,
            request_timeout,
        }))
    }

    /// Whether envd is at least `version`.
    pub(crate) fn at_least(&self, version: Version) -> bool {
        self.version >= version
    }

    /// The user to send: the given one, or `user` for envd < 0.4.0, else none.
    pub(crate) fn effective_user<'a>(&self, user: Option<&'a str>) -> Option<&'a str> {
        match user {
            Some(user) => Some(user),
            None if !self.at_least(ENVD_DEFAULT_USER) => Some("user"),
            None => None,
        }
    }

    /// A request with the per-call user header and a timeout (`None` = the request timeout,
    /// zero = none).
    pub(crate) fn request<T>(
        &self,
        message: T,
        user: Option<&str>,
        timeout: Option<Duration>,
    ) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(timeout) = timeout.or(self.request_timeout) {
            request = request.with_timeout(timeout);
        }
        if let Some(user) = self.effective_user(user) {
            request = request.with_header("authorization", &basic_auth(user));
        }
        request
    }

    /// A streaming request: user header, keepalive interval, and the stream's timeout
    /// (`None` or zero = no deadline).
    pub(crate) fn stream_request<T>(
        &self,
        message: T,
        user: Option<&str>,
        timeout: Option<Duration>,
    ) -> Request<T> {
        let mut request = Request::new(message)
            .with_header(h::KEEPALIVE_PING_INTERVAL, KEEPALIVE_PING_INTERVAL_SECS);
        if let Some(timeout) = timeout {
            request = request.with_timeout(timeout);
        }
        if let Some(user) = self.effective_user(user) {
            request = request.with_header("authorization", &basic_auth(user));
        }
        request
    }

    /// Maps an RPC error; a transport failure first asks `/health` whether the sandbox is
    /// still there (`docs/envd.md`).
    pub(crate) async fn rpc_error(&self, err: ConnectError) -> Error {
        if err.is_transport() && self.sandbox_gone().await {
            return Error::Timeout(
                Context::new(format!("{}: {}", err.message(), error::SANDBOX_GONE))
                    .code(err.code()),
            );
        }
        error::from_connect(&err)
    }

    /// Maps a reqwest failure of `/files`, probing `/health` first when the connection broke.
    pub(crate) async fn http_error(&self, what: &str, err: reqwest::Error) -> Error {
        if !err.is_timeout() && !err.is_builder() && self.sandbox_gone().await {
            return Error::Timeout(Context::new(format!(
                "{what} failed: {}: {}",
                e2b_envd::error_chain(&err),
                error::SANDBOX_GONE
            )));
        }
        error::from_reqwest(what, err)
    }

    /// `GET /health` with a 5 s limit: true only when it answers 502.
    async fn sandbox_gone(&self) -> bool {
        matches!(self.health(HEALTH_CHECK_TIMEOUT).await, Ok(Some(502)))
    }

    /// The status `/health` answers (`None` when no answer came in time).
    pub(crate) async fn health(&self, timeout: Duration) -> Result<Option<u16>> {
        use e2b_envd::http::prelude::*;
        let call = self.http.get_health().send();
        let result = match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => return Ok(None),
        };
        match result {
            Ok(response) => Ok(Some(response.status().as_u16())),
            Err(e2b_envd::http::Error::UnexpectedResponse(response)) => {
                Ok(Some(response.status().as_u16()))
            }
            Err(e2b_envd::http::Error::CommunicationError(e)) => {
                Err(error::from_reqwest("GET /health", e))
            }
            Err(other) => Err(Error::sandbox(format!("GET /health failed: {other}"))),
        }
    }
}

/// `Basic base64("<user>:")`, how envd takes the user of an RPC.
pub(crate) fn basic_auth(user: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_compare() {
        assert_eq!(parse_version("0.6.13"), (0, 6, 13));
        assert!(parse_version("0.6.13") >= ENVD_FILE_METADATA);
        assert!(parse_version("0.3.9") < ENVD_DEFAULT_USER);
        assert_eq!(parse_version("garbage"), (u32::MAX, u32::MAX, u32::MAX));
    }

    #[test]
    fn basic_auth_has_an_empty_password() {
        assert_eq!(basic_auth("user"), "Basic dXNlcjo=");
    }
}
