#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

// The generated client stays private and is glob re-exported, so `e2b_api::Client`,
// `e2b_api::types`, `e2b_api::builder` and `e2b_api::prelude` are what users see. Its items
// are documented from the spec where the spec says something; the lints below cannot be met
// by generated code (builders, trait impls, conversion helpers).
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    rustdoc::bare_urls,
    rustdoc::broken_intra_doc_links
)]
mod generated;

pub use generated::*;

pub mod volume_content;

use std::fmt;
use std::time::{Duration, Instant};

use progenitor_client::{ClientHooks, OperationInfo};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tracing::Instrument as _;

/// The `User-Agent` sent unless [`ClientConfig::with_user_agent`] sets another.
pub const DEFAULT_USER_AGENT: &str = concat!("e2b-rust-sdk/", env!("CARGO_PKG_VERSION"));

/// The header carrying the API key on every control-plane request.
pub const API_KEY_HEADER: &str = "X-API-Key";

/// The per-request timeout unless [`ClientConfig::with_timeout`] sets another: 60 s, the
/// official SDKs' `request_timeout` default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything needed to build a [`Client`]: base URL, API key, user agent, timeout and any
/// extra headers.
///
/// The API key is sent as `X-API-Key`, marked sensitive so that it never shows up in
/// `Debug` output of requests or headers; this type's own `Debug` redacts it too.
///
/// ```no_run
/// use e2b_api::ClientConfig;
/// use e2b_api::prelude::*;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = ClientConfig::new("https://api.e2b.app", "e2b_0123abcd").build()?;
/// let page = client.get_sandboxes_v2().state("running,paused").limit(10).send().await?;
/// let next = page.headers().get("x-next-token").cloned();
/// for sandbox in page.into_inner() {
///     println!("{} {:?}", sandbox.sandbox_id, sandbox.state);
/// }
/// # let _ = next;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct ClientConfig {
    base_url: String,
    api_key: String,
    user_agent: String,
    timeout: Option<Duration>,
    headers: HeaderMap,
}

impl ClientConfig {
    /// A configuration for the API at `base_url` (e.g. `https://api.e2b.app`) authenticated
    /// by `api_key`, with [`DEFAULT_USER_AGENT`] and [`DEFAULT_TIMEOUT`].
    pub fn new(base_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: api_key.into(),
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            timeout: Some(DEFAULT_TIMEOUT),
            headers: HeaderMap::new(),
        }
    }

    /// Sends `user_agent` as the `User-Agent` header instead of [`DEFAULT_USER_AGENT`].
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Sets the timeout of each whole request; `None` waits forever.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds a header sent with every request (the official SDKs' `api_headers`). A header of
    /// the same name set earlier is replaced; `X-API-Key` and `User-Agent` cannot be
    /// overridden this way.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// The base URL requests are sent to, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }

    /// A `reqwest` client builder with the API key, user agent, extra headers and timeout set,
    /// for callers that need to add settings of their own (a proxy, say) before
    /// [`Client::new_with_client`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidApiKey`] or [`ConfigError::InvalidUserAgent`] when they are not
    /// valid header values.
    pub fn reqwest_builder(&self) -> Result<reqwest::ClientBuilder, ConfigError> {
        let mut api_key =
            HeaderValue::from_str(&self.api_key).map_err(|_| ConfigError::InvalidApiKey)?;
        api_key.set_sensitive(true);
        let user_agent =
            HeaderValue::from_str(&self.user_agent).map_err(|_| ConfigError::InvalidUserAgent {
                user_agent: self.user_agent.clone(),
            })?;

        let mut headers = self.headers.clone();
        headers.insert(HeaderName::from_static("x-api-key"), api_key);
        headers.insert(reqwest::header::USER_AGENT, user_agent);

        let mut builder = reqwest::Client::builder().default_headers(headers);
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout);
        }
        Ok(builder)
    }

    /// Builds the [`Client`].
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidBaseUrl`] when the base URL does not parse,
    /// [`ConfigError::InvalidApiKey`] or [`ConfigError::InvalidUserAgent`] when they are not
    /// valid header values, and [`ConfigError::Http`] when the HTTP client cannot be built.
    pub fn build(&self) -> Result<Client, ConfigError> {
        let base_url = self.base_url();
        if let Err(error) = reqwest::Url::parse(base_url) {
            return Err(ConfigError::InvalidBaseUrl {
                url: base_url.to_owned(),
                reason: error.to_string(),
            });
        }
        install_crypto_provider();
        let http = self.reqwest_builder()?.build().map_err(ConfigError::Http)?;
        Ok(Client::new_with_client(base_url, http))
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("user_agent", &self.user_agent)
            .field("timeout", &self.timeout)
            .field("headers", &self.headers)
            .finish()
    }
}

impl Client {
    /// Builds a client from `config`; the same as [`ClientConfig::build`].
    ///
    /// # Errors
    ///
    /// As [`ClientConfig::build`].
    pub fn new_with_config(config: &ClientConfig) -> Result<Self, ConfigError> {
        config.build()
    }
}

/// Makes rustls' `ring` provider the process default, unless a default is already installed.
///
/// The workspace builds reqwest with `rustls-no-provider` (aws-lc-rs costs minutes of C
/// compilation), so some provider must be installed before the first TLS client is built.
fn install_crypto_provider() {
    // An error only means another provider was installed first, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why a [`ClientConfig`] could not become a [`Client`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The base URL is not an absolute URL.
    #[error("invalid E2B API base URL '{url}': {reason}")]
    InvalidBaseUrl {
        /// The rejected URL.
        url: String,
        /// Why it did not parse.
        reason: String,
    },
    /// The API key contains characters a header value cannot carry. The key itself is
    /// deliberately not part of the message.
    #[error("invalid E2B API key: it contains characters not allowed in the X-API-Key header")]
    InvalidApiKey,
    /// The user agent contains characters a header value cannot carry.
    #[error("invalid User-Agent '{user_agent}': not a valid header value")]
    InvalidUserAgent {
        /// The rejected user agent.
        user_agent: String,
    },
    /// reqwest could not build its client (e.g. the TLS backend failed to initialise).
    #[error("building the HTTP client failed: {0}")]
    Http(#[source] reqwest::Error),
}

/// The most of an error body that is read; the rest is dropped.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Makes every 4xx and 5xx body the documented `{"code", "message"}` JSON.
///
/// E2B answers errors with that body, but what sits in front of it may not: Go's plain
/// `404 page not found`, an empty 500, a load balancer's HTML 502. For a status the spec
/// documents, progenitor would then fail to decode the body and drop the status
/// (`Error::InvalidResponsePayload`). Rewriting such a body to `{"code": <status>,
/// "message": <its text>}` keeps both, the way the official SDKs fall back to
/// `"<status>: <raw body>"`. Bodies that already parse are passed on unchanged; success
/// responses are not touched (nor buffered).
async fn normalize_error_body(response: reqwest::Response) -> reqwest::Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let url = response.url().clone();
    let version = response.version();
    let mut headers = response.headers().clone();

    let body = match read_capped(response, MAX_ERROR_BODY).await {
        Ok(body) if serde_json::from_slice::<types::Error>(&body).is_ok() => body,
        read => {
            let message = match read {
                Ok(body) => error_message(&body),
                Err(error) => format!("reading the error body failed: {error}"),
            };
            let message = if message.is_empty() {
                status.canonical_reason().unwrap_or_default().to_owned()
            } else {
                message
            };
            headers.remove(reqwest::header::CONTENT_LENGTH);
            headers.remove(reqwest::header::CONTENT_ENCODING);
            headers.insert(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let body = serde_json::json!({ "code": status.as_u16(), "message": message });
            body.to_string().into_bytes()
        }
    };

    let mut rebuilt = http_response(status, version, url, body);
    *rebuilt.headers_mut() = headers;
    rebuilt
}

/// The message of a non-conforming error body: its `message` string if it is a JSON object
/// with one, else its text.
fn error_message(body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(body)
        && let Some(serde_json::Value::String(message)) = object.get("message")
    {
        return message.clone();
    }
    String::from_utf8_lossy(body).trim().to_owned()
}

/// Reads at most `limit` bytes of `response`'s body.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> reqwest::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == limit {
            break;
        }
    }
    Ok(body)
}

/// A `reqwest::Response` with the given parts, remembering the URL it came from.
fn http_response(
    status: reqwest::StatusCode,
    version: reqwest::Version,
    url: reqwest::Url,
    body: Vec<u8>,
) -> reqwest::Response {
    use reqwest::ResponseBuilderExt as _;
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    *response.version_mut() = version;
    // reqwest keeps the URL in a private extension that only its builder extension sets. A
    // builder given nothing but that extension cannot fail.
    if let Ok(carrier) = http::Response::builder().url(url).body(()) {
        *response.extensions_mut() = carrier.into_parts().0.extensions;
    }
    reqwest::Response::from(response)
}

/// One `tracing` span per operation, named after its `operationId`, with the method, path,
/// status and duration; also drops progenitor's `api-version` header and normalises error
/// bodies. Lives here rather than in generated code (oxide.rs does the same).
impl ClientHooks<()> for Client {
    async fn exec(
        &self,
        mut request: reqwest::Request,
        info: &OperationInfo,
    ) -> reqwest::Result<reqwest::Response> {
        // progenitor stamps the spec's `info.version` on every request as `api-version`; E2B
        // has no such header and the official SDKs do not send it, so neither do we.
        request.headers_mut().remove("api-version");
        let span = tracing::debug_span!(
            "e2b_api",
            operation = info.operation_id,
            method = %request.method(),
            path = request.url().path(),
        );
        async move {
            let started = Instant::now();
            let result = match self.client.execute(request).await {
                Ok(response) => Ok(normalize_error_body(response).await),
                Err(error) => Err(error),
            };
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            match &result {
                Ok(response) => {
                    tracing::debug!(status = response.status().as_u16(), elapsed_ms, "response");
                }
                Err(error) => tracing::debug!(%error, elapsed_ms, "request failed"),
            }
            result
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_send_sync_static() {
        fn assert<T: Send + Sync + 'static>() {}
        assert::<ConfigError>();
        assert::<Error<types::Error>>();
    }

    #[test]
    fn debug_redacts_the_api_key() {
        let config = ClientConfig::new("http://127.0.0.1:1", "e2b_secret_key_123");
        let debug = format!("{config:?}");
        assert!(!debug.contains("e2b_secret_key_123"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn client_debug_does_not_show_the_api_key() {
        let client = ClientConfig::new("http://127.0.0.1:1", "e2b_secret_key_123")
            .build()
            .unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("e2b_secret_key_123"), "{debug}");
    }

    #[test]
    fn default_user_agent_names_the_crate_version() {
        assert_eq!(
            DEFAULT_USER_AGENT,
            format!("e2b-rust-sdk/{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn bad_settings_are_named_errors() {
        let err = ClientConfig::new("not a url", "k").build().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid E2B API base URL 'not a url': "),
            "{err}"
        );

        let err = ClientConfig::new("http://127.0.0.1:1", "bad\nkey")
            .build()
            .unwrap_err();
        assert!(matches!(err, ConfigError::InvalidApiKey), "{err:?}");
        assert!(!err.to_string().contains("bad\nkey"));

        let err = ClientConfig::new("http://127.0.0.1:1", "k")
            .with_user_agent("agent\u{7f}")
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid User-Agent 'agent\u{7f}': not a valid header value"
        );
    }

    #[test]
    fn trailing_slash_is_dropped_from_the_base_url() {
        let client = ClientConfig::new("http://127.0.0.1:3000/", "k")
            .build()
            .unwrap();
        assert_eq!(client.baseurl(), "http://127.0.0.1:3000");
    }
}
