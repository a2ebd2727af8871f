//! Connection settings: API key, domain, URLs, debug mode and request timeout.
//!
//! [`ConnectionConfig::from_env`] is the only place the SDK reads environment variables.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::{Error, Result};

/// Environment variable holding the API key, sent as `X-API-Key`.
pub const E2B_API_KEY: &str = "E2B_API_KEY";
/// Environment variable holding the base domain (default [`DEFAULT_DOMAIN`]).
pub const E2B_DOMAIN: &str = "E2B_DOMAIN";
/// Environment variable overriding the control-plane URL (default `https://api.<domain>`).
pub const E2B_API_URL: &str = "E2B_API_URL";
/// Environment variable overriding every sandbox's envd URL.
pub const E2B_SANDBOX_URL: &str = "E2B_SANDBOX_URL";
/// Environment variable overriding the volume content API's URL (default
/// `https://api.<domain>`).
pub const E2B_VOLUME_API_URL: &str = "E2B_VOLUME_API_URL";
/// Environment variable turning on debug mode (`true`, case-insensitive).
pub const E2B_DEBUG: &str = "E2B_DEBUG";

/// The base domain unless configured: `e2b.app`.
pub const DEFAULT_DOMAIN: &str = "e2b.app";
/// The timeout of each REST call, unary RPC and buffered file transfer unless configured.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The `User-Agent` of every request: `e2b-rust-sdk/<version>`.
pub use e2b_api::DEFAULT_USER_AGENT as USER_AGENT;
/// The port envd listens on inside every sandbox.
pub use e2b_envd::ENVD_PORT;
/// The control-plane URL in debug mode.
pub const DEBUG_API_URL: &str = "http://localhost:3000";
/// The volume content API's URL in debug mode (the official SDKs').
pub const DEBUG_VOLUME_API_URL: &str = "http://localhost:8080";
/// The sandbox id used in debug mode, where no sandbox is created.
pub const DEBUG_SANDBOX_ID: &str = "debug_sandbox_id";
/// The envd version assumed in debug mode (as the official SDKs do).
pub const DEBUG_ENVD_VERSION: &str = "99.99.99";

/// E2B's own domains, whose envd traffic goes to the shared `sandbox.<domain>` host and is
/// routed by the `E2b-Sandbox-Id`/`E2b-Sandbox-Port` headers.
const STABLE_HOST_DOMAINS: &[&str] = &[
    "e2b.app",
    "e2b.dev",
    "e2b.pro",
    "e2b-staging.dev",
    "e2b-tango.dev",
    "e2b-juliett.dev",
    "foxtrot-2.e2b.dev",
];

/// Where and how to reach E2B: the API key, the domain, optional URL overrides, debug mode
/// and the request timeout.
///
/// Built from the environment by [`from_env`](Self::from_env), or from defaults by
/// [`new`](Self::new); every value can then be overridden with a `with_*` setter. The API key
/// is never shown by `Debug`.
///
/// The control-plane client (and so its connection pool) is built once per configuration, on
/// first use, and shared by the configuration's clones and every sandbox reached with them;
/// a `with_*` setter gives the configuration a client of its own. Pooled connections are
/// driven by the tokio runtime that opened them, so a configuration shared by several
/// runtimes that come and go (one per test, say) should be re-made, or changed by a setter,
/// in each.
///
/// ```
/// use std::time::Duration;
/// use e2b::ConnectionConfig;
///
/// let config = ConnectionConfig::new()
///     .with_api_key("e2b_0123")
///     .with_domain("example.com")
///     .with_request_timeout(Some(Duration::from_secs(10)));
/// assert_eq!(config.api_url(), "https://api.example.com");
/// assert!(!format!("{config:?}").contains("e2b_0123"));
/// ```
#[derive(Clone)]
#[must_use]
pub struct ConnectionConfig {
    api_key: Option<String>,
    domain: String,
    api_url: Option<String>,
    sandbox_url: Option<String>,
    volume_api_url: Option<String>,
    debug: bool,
    request_timeout: Option<Duration>,
    api_client: Arc<OnceLock<e2b_api::Client>>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnectionConfig {
    /// The defaults, ignoring the environment: no API key, domain [`DEFAULT_DOMAIN`], no URL
    /// overrides, debug off, request timeout [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn new() -> Self {
        Self {
            api_key: None,
            domain: DEFAULT_DOMAIN.to_owned(),
            api_url: None,
            sandbox_url: None,
            volume_api_url: None,
            debug: false,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            api_client: Arc::default(),
        }
    }

    /// The defaults overridden by [`E2B_API_KEY`], [`E2B_DOMAIN`], [`E2B_API_URL`],
    /// [`E2B_SANDBOX_URL`] and [`E2B_DEBUG`]. Empty variables count as unset.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the variable when `E2B_DEBUG` is not a boolean or a
    /// URL variable is not an `http://` or `https://` URL.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), reading variables through `lookup`.
    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = Self::new();
        config.api_key = get(E2B_API_KEY);
        if let Some(domain) = get(E2B_DOMAIN) {
            config.domain = domain.trim().to_owned();
        }
        if let Some(url) = get(E2B_API_URL) {
            config.api_url = Some(check_url(E2B_API_URL, &url)?);
        }
        if let Some(url) = get(E2B_SANDBOX_URL) {
            config.sandbox_url = Some(check_url(E2B_SANDBOX_URL, &url)?);
        }
        if let Some(url) = get(E2B_VOLUME_API_URL) {
            config.volume_api_url = Some(check_url(E2B_VOLUME_API_URL, &url)?);
        }
        if let Some(debug) = get(E2B_DEBUG) {
            config.debug = match debug.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                other => {
                    return Err(Error::invalid_argument(format!(
                        "{E2B_DEBUG} must be 'true' or 'false', got '{other}'"
                    )));
                }
            };
        }
        Ok(config)
    }

    /// Whether an API key or an API URL was configured (by the environment or a setter).
    pub fn has_api_key_or_url(&self) -> bool {
        self.api_key.is_some() || self.api_url.is_some()
    }

    /// Sets the API key.
    pub fn with_api_key(mut self, api_key: impl Into<String>) -> Self {
        self.api_client = Arc::default();
        self.api_key = Some(api_key.into());
        self
    }

    /// Sets the base domain, e.g. `e2b.app`.
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.api_client = Arc::default();
        self.domain = domain.into();
        self
    }

    /// Sets the control-plane URL, e.g. `http://127.0.0.1:3000`.
    pub fn with_api_url(mut self, api_url: impl Into<String>) -> Self {
        self.api_client = Arc::default();
        self.api_url = Some(api_url.into());
        self
    }

    /// Sets the envd URL used for every sandbox (RPCs, `/files`, signed URLs).
    pub fn with_sandbox_url(mut self, sandbox_url: impl Into<String>) -> Self {
        self.api_client = Arc::default();
        self.sandbox_url = Some(sandbox_url.into());
        self
    }

    /// Sets the volume content API's URL, e.g. `http://127.0.0.1:3000` for e2b-local.
    pub fn with_volume_api_url(mut self, url: impl Into<String>) -> Self {
        self.volume_api_url = Some(url.into());
        self
    }

    /// Turns debug mode on or off: no control-plane calls for create/connect/kill, and envd at
    /// `http://localhost:49983` (or the sandbox URL) as sandbox [`DEBUG_SANDBOX_ID`].
    pub fn with_debug(mut self, debug: bool) -> Self {
        self.api_client = Arc::default();
        self.debug = debug;
        self
    }

    /// Sets the timeout of each REST call, unary RPC and buffered file transfer; `None` (or
    /// zero) waits forever.
    pub fn with_request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.api_client = Arc::default();
        self.request_timeout = timeout.filter(|t| !t.is_zero());
        self
    }

    /// The API key, if one is configured.
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    /// The base domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether debug mode is on.
    pub fn debug(&self) -> bool {
        self.debug
    }

    /// The request timeout; `None` means none.
    pub fn request_timeout(&self) -> Option<Duration> {
        self.request_timeout
    }

    /// The envd URL override, if any.
    pub fn sandbox_url(&self) -> Option<&str> {
        self.sandbox_url.as_deref().map(|u| u.trim_end_matches('/'))
    }

    /// The control-plane URL: the override, else `http://localhost:3000` in debug mode, else
    /// `https://api.<domain>`.
    pub fn api_url(&self) -> String {
        match &self.api_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if self.debug => DEBUG_API_URL.to_owned(),
            None => format!("https://api.{}", self.domain),
        }
    }

    /// The volume content API's URL: the override ([`E2B_VOLUME_API_URL`]), else
    /// [`DEBUG_VOLUME_API_URL`] in debug mode, else `https://api.<domain>` (as the official
    /// SDKs: the control-plane URL override does not move it).
    pub fn volume_api_url(&self) -> String {
        match &self.volume_api_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None if self.debug => DEBUG_VOLUME_API_URL.to_owned(),
            None => format!("https://api.{}", self.domain),
        }
    }

    /// `host:port` of a port of a sandbox: `<port>-<id>.<domain>`, or `localhost:<port>` in
    /// debug mode.
    pub fn get_host(&self, sandbox_id: &str, sandbox_domain: Option<&str>, port: u16) -> String {
        if self.debug {
            return format!("localhost:{port}");
        }
        let domain = sandbox_domain.unwrap_or(&self.domain);
        format!("{port}-{sandbox_id}.{domain}")
    }

    /// The URL of a sandbox's envd for RPCs, `/files` and `/health`: the sandbox URL override;
    /// else `http://localhost:49983` in debug mode; else `https://sandbox.<domain>` for E2B's
    /// domains (routed by headers) and `https://49983-<id>.<domain>` for others.
    pub fn envd_url(&self, sandbox_id: &str, sandbox_domain: Option<&str>) -> String {
        if let Some(url) = self.sandbox_url() {
            return url.to_owned();
        }
        if self.debug {
            return format!(
                "http://{}",
                self.get_host(sandbox_id, sandbox_domain, ENVD_PORT)
            );
        }
        let domain = sandbox_domain.unwrap_or(&self.domain);
        if STABLE_HOST_DOMAINS.contains(&domain) {
            format!("https://sandbox.{domain}")
        } else {
            format!("https://{ENVD_PORT}-{sandbox_id}.{domain}")
        }
    }

    /// The URL signed `download_url`/`upload_url`s point at: the sandbox URL override, else
    /// `http://localhost:49983` in debug mode, else `https://49983-<id>.<domain>`.
    pub fn envd_direct_url(&self, sandbox_id: &str, sandbox_domain: Option<&str>) -> String {
        if let Some(url) = self.sandbox_url() {
            return url.to_owned();
        }
        if self.debug {
            return format!("http://localhost:{ENVD_PORT}");
        }
        let domain = sandbox_domain.unwrap_or(&self.domain);
        format!("https://{ENVD_PORT}-{sandbox_id}.{domain}")
    }

    /// This configuration with a control-plane client of its own, for a configuration handed
    /// to callers that may each run their own runtime.
    #[cfg(feature = "local")]
    pub(crate) fn with_own_api_client(mut self) -> Self {
        self.api_client = Arc::default();
        self
    }

    /// The control-plane client, built on first use and shared by this configuration's clones.
    pub(crate) fn api_client(&self) -> Result<&e2b_api::Client> {
        if let Some(client) = self.api_client.get() {
            return Ok(client);
        }
        let client = self.build_api_client()?;
        Ok(self.api_client.get_or_init(|| client))
    }

    fn build_api_client(&self) -> Result<e2b_api::Client> {
        let Some(api_key) = &self.api_key else {
            return Err(Error::Authentication(crate::error::Context::new(format!(
                "API key is required: set the {E2B_API_KEY} environment variable or call \
                 ConnectionConfig::with_api_key (get a key at https://e2b.dev/dashboard)"
            ))));
        };
        let url = self.api_url();
        check_url("the API URL", &url)?;
        // The TLS configuration is shared process-wide (building one costs milliseconds).
        let tls = e2b_envd::tls_config()
            .map_err(|e| Error::Sandbox(crate::error::Context::new(e.to_string())))?;
        let http = e2b_api::ClientConfig::new(&url, api_key.clone())
            .with_user_agent(USER_AGENT)
            .with_timeout(self.request_timeout)
            .reqwest_builder()
            .map_err(|e| Error::invalid_argument(e.to_string()))?
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| crate::error::from_reqwest("building the API client", e))?;
        Ok(e2b_api::Client::new_with_client(&url, http))
    }
}

impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("domain", &self.domain)
            .field("api_url", &self.api_url)
            .field("sandbox_url", &self.sandbox_url)
            .field("volume_api_url", &self.volume_api_url)
            .field("debug", &self.debug)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// Accepts `http://` and `https://` URLs, without a trailing slash.
fn check_url(what: &str, url: &str) -> Result<String> {
    let url = url.trim().trim_end_matches('/');
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {
            Ok(url.to_owned())
        }
        Ok(_) => Err(Error::invalid_argument(format!(
            "{what} must be an http:// or https:// URL, got '{url}'"
        ))),
        Err(e) => Err(Error::invalid_argument(format!(
            "{what} is not a valid URL ('{url}'): {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<ConnectionConfig> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ConnectionConfig::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults() {
        let c = from(&[]).unwrap();
        assert_eq!(c.api_key(), None);
        assert_eq!(c.domain(), "e2b.app");
        assert_eq!(c.api_url(), "https://api.e2b.app");
        assert_eq!(c.request_timeout(), Some(Duration::from_secs(60)));
        assert!(!c.debug());
        assert_eq!(c.envd_url("abc", None), "https://sandbox.e2b.app");
        assert_eq!(c.envd_direct_url("abc", None), "https://49983-abc.e2b.app");
        assert_eq!(c.get_host("abc", None, 8080), "8080-abc.e2b.app");
        assert_eq!(
            USER_AGENT,
            format!("e2b-rust-sdk/{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn environment_overrides() {
        let c = from(&[
            (E2B_API_KEY, "e2b_123"),
            (E2B_DOMAIN, "example.com"),
            (E2B_SANDBOX_URL, "http://127.0.0.1:5000/"),
            (E2B_DEBUG, "TRUE"),
        ])
        .unwrap();
        assert_eq!(c.api_key(), Some("e2b_123"));
        assert!(c.debug());
        assert_eq!(c.api_url(), "http://localhost:3000");
        assert_eq!(c.envd_url("x", None), "http://127.0.0.1:5000");
        assert_eq!(c.envd_direct_url("x", None), "http://127.0.0.1:5000");
        assert_eq!(c.get_host("x", None, 3000), "localhost:3000");

        assert_eq!(c.volume_api_url(), DEBUG_VOLUME_API_URL);

        let c = from(&[(E2B_API_URL, "http://127.0.0.1:3000")]).unwrap();
        assert_eq!(c.api_url(), "http://127.0.0.1:3000");
        assert!(c.has_api_key_or_url());
        // As the official SDKs: the API URL does not move the volume content API.
        assert_eq!(c.volume_api_url(), "https://api.e2b.app");
        let c = from(&[(E2B_VOLUME_API_URL, "http://127.0.0.1:3000/")]).unwrap();
        assert_eq!(c.volume_api_url(), "http://127.0.0.1:3000");
        assert!(from(&[(E2B_VOLUME_API_URL, "not a url")]).is_err());
    }

    #[test]
    fn other_domains_use_the_port_host() {
        let c = from(&[(E2B_DOMAIN, "example.com")]).unwrap();
        assert_eq!(c.envd_url("sbx1", None), "https://49983-sbx1.example.com");
        assert_eq!(
            c.envd_url("sbx1", Some("e2b.dev")),
            "https://sandbox.e2b.dev"
        );
        assert_eq!(c.api_url(), "https://api.example.com");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = from(&[(E2B_DEBUG, "maybe")]).unwrap_err();
        assert!(e.is_invalid_argument());
        assert_eq!(
            e.to_string(),
            "E2B_DEBUG must be 'true' or 'false', got 'maybe'"
        );
        let e = from(&[(E2B_API_URL, "ftp://x")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "E2B_API_URL must be an http:// or https:// URL, got 'ftp://x'"
        );
        let e = from(&[(E2B_SANDBOX_URL, "not a url")]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("E2B_SANDBOX_URL is not a valid URL")
        );
    }

    #[test]
    fn missing_api_key_is_an_authentication_error() {
        let e = ConnectionConfig::new().api_client().unwrap_err();
        assert!(e.is_authentication());
        assert!(e.to_string().contains("E2B_API_KEY"));
    }

    #[test]
    fn one_api_client_per_config_shared_by_clones() {
        let config = ConnectionConfig::new()
            .with_api_key("e2b_1")
            .with_api_url("http://127.0.0.1:1");
        let first: *const e2b_api::Client = config.api_client().unwrap();
        assert!(std::ptr::eq(first, config.api_client().unwrap()));
        assert!(std::ptr::eq(first, config.clone().api_client().unwrap()));
        let changed = config.clone().with_request_timeout(None);
        assert!(!std::ptr::eq(first, changed.api_client().unwrap()));
    }

    #[test]
    fn debug_output_hides_the_key() {
        let c = ConnectionConfig::new().with_api_key("e2b_secret");
        assert!(!format!("{c:?}").contains("e2b_secret"));
    }
}
