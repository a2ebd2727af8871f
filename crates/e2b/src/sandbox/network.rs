//! A sandbox's network: what it may reach and how its URLs are served. [`NetworkConfig`] is
//! given at create ([`SandboxBuilder::network`](super::SandboxBuilder::network)),
//! [`NetworkUpdate`] replaces the egress rules of a running sandbox
//! ([`Sandbox::update_network`](super::Sandbox::update_network)), and [`NetworkInfo`] is what
//! [`Sandbox::get_info`](super::Sandbox::get_info) reports.
//!
//! The semantics are E2B's, as the Python SDK 2.63 documents them (`SandboxNetworkOpts`):
//!
//! - `allow_out` takes CIDR blocks, IP addresses and domain names (`example.com`,
//!   `*.example.com`); `deny_out` takes CIDR blocks and IP addresses only. An allowed entry
//!   always wins over a denied one, so `deny_out([ALL_TRAFFIC])` with an `allow_out` list
//!   allows exactly that list. Without `allow_out` everything not denied is allowed.
//! - Domains are matched by name (HTTP `Host`, TLS SNI), not by address.
//! - `rules` change matching egress HTTP(S) requests (headers to set) on their way out, so a
//!   secret can be added without entering the sandbox. A rule does not allow its domain;
//!   `allow_out` does.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU16;

use e2b_api::types;

use crate::error::{Error, Result};

/// Every IPv4 address, as Python's `ctx.all_traffic`: `deny_out([ALL_TRAFFIC])` denies all
/// egress that `allow_out` does not allow.
///
/// ```
/// use e2b::{ALL_TRAFFIC, NetworkConfig};
///
/// let only_the_api = NetworkConfig::new()
///     .allow_out(["api.example.com"])
///     .deny_out([ALL_TRAFFIC]);
/// # let _ = only_the_api;
/// ```
pub const ALL_TRAFFIC: &str = "0.0.0.0/0";

/// The header that requests to a private sandbox's port URLs must carry, with
/// [`Sandbox::traffic_access_token`](super::Sandbox::traffic_access_token) as its value: a
/// sandbox created with [`NetworkConfig::allow_public_traffic`]`(false)` answers 403
/// without it.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use e2b::{NetworkConfig, Sandbox, TRAFFIC_ACCESS_TOKEN_HEADER};
///
/// let sandbox = Sandbox::builder()
///     .network(NetworkConfig::new().allow_public_traffic(false))
///     .create()
///     .await?;
/// let token = sandbox.traffic_access_token().unwrap_or_default();
/// let page = reqwest::Client::new()
///     .get(format!("https://{}/", sandbox.get_host(8080)))
///     .header(TRAFFIC_ACCESS_TOKEN_HEADER, token)
///     .send()
///     .await?;
/// # let _ = page;
/// # Ok(()) }
/// ```
pub const TRAFFIC_ACCESS_TOKEN_HEADER: &str = e2b_envd::headers::TRAFFIC_ACCESS_TOKEN;

/// A sandbox's network at create: [`SandboxBuilder::network`](super::SandboxBuilder::network).
///
/// Every field is optional; what is not set is left out of the request and the server's
/// default applies. A config with nothing set sends no `network` object at all.
///
/// ```
/// use e2b::{ALL_TRAFFIC, EgressProxy, NetworkConfig, NetworkRule};
///
/// let network = NetworkConfig::new()
///     .allow_out(["api.example.com", "*.pypi.org", "10.1.2.0/24"])
///     .deny_out([ALL_TRAFFIC])
///     .rules(
///         "api.example.com",
///         [NetworkRule::new().header("Authorization", "Bearer secret")],
///     )
///     .egress_proxy(EgressProxy::new("proxy.example.com:1080").username("me").password("pw"))
///     .allow_public_traffic(false)
///     .https_ports([8443]);
/// # let _ = network;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct NetworkConfig {
    egress: Egress,
    allow_public_traffic: Option<bool>,
    mask_request_host: Option<String>,
    https_ports: Vec<u16>,
}

/// New egress rules for a running sandbox: [`Sandbox::update_network`](super::Sandbox::update_network).
///
/// The update **replaces** the sandbox's whole egress configuration; it does not merge into
/// it. Every field left out is cleared: an update without
/// [`egress_proxy`](Self::egress_proxy) stops tunneling, one without
/// [`dns_servers`](Self::dns_servers) resets them to the default `8.8.8.8`, and
/// `NetworkUpdate::new()` alone removes every rule. Repeat what should stay in every update.
/// Ingress settings (`allow_public_traffic`, `mask_request_host`, `https_ports`) cannot be
/// changed after create.
///
/// ```
/// use e2b::{ALL_TRAFFIC, NetworkUpdate};
///
/// // Cut the sandbox off, except for one API.
/// let update = NetworkUpdate::new()
///     .allow_out(["api.example.com"])
///     .deny_out([ALL_TRAFFIC]);
/// # let _ = update;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct NetworkUpdate {
    egress: Egress,
    allow_internet_access: Option<bool>,
}

/// The egress part that [`NetworkConfig`] and [`NetworkUpdate`] share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Egress {
    allow_out: Vec<String>,
    deny_out: Vec<String>,
    dns_servers: Option<Vec<String>>,
    egress_proxy: Option<EgressProxy>,
    rules: BTreeMap<String, Vec<NetworkRule>>,
}

/// The egress setters of both builders, written once.
macro_rules! egress_setters {
    ($ty:ident) => {
        impl $ty {
            /// Nothing set.
            pub fn new() -> Self {
                Self::default()
            }

            /// Destinations the sandbox may reach: CIDR blocks, IP addresses and domain names
            /// (`example.com`, `*.example.com`). Allowed entries win over denied ones. Replaces
            /// the list set before.
            ///
            /// ```
            #[doc = concat!("let n = e2b::", stringify!($ty), "::new().allow_out([\"1.1.1.1\", \"8.8.8.0/24\", \"example.com\"]);")]
            /// # let _ = n;
            /// ```
            pub fn allow_out<I, S>(mut self, destinations: I) -> Self
            where
                I: IntoIterator<Item = S>,
                S: Into<String>,
            {
                self.egress.allow_out = destinations.into_iter().map(Into::into).collect();
                self
            }

            /// Destinations the sandbox may not reach: CIDR blocks and IP addresses (no
            /// domains); [`ALL_TRAFFIC`] for everything not allowed. Replaces the list set
            /// before.
            ///
            /// ```
            #[doc = concat!("let n = e2b::", stringify!($ty), "::new().deny_out([e2b::ALL_TRAFFIC]);")]
            /// # let _ = n;
            /// ```
            pub fn deny_out<I, S>(mut self, destinations: I) -> Self
            where
                I: IntoIterator<Item = S>,
                S: Into<String>,
            {
                self.egress.deny_out = destinations.into_iter().map(Into::into).collect();
                self
            }

            /// IPv4 addresses of the DNS servers the sandbox may reach when `allow_out` holds
            /// a domain (at most 10). Unset means the default, `8.8.8.8`; an empty list allows
            /// none (domains still work, since they are matched by name). This only opens the
            /// firewall: the sandbox's `/etc/resolv.conf` is not changed.
            ///
            /// ```
            #[doc = concat!("let n = e2b::", stringify!($ty), "::new().allow_out([\"example.com\"]).dns_servers([\"1.1.1.1\"]);")]
            /// # let _ = n;
            /// ```
            pub fn dns_servers<I, S>(mut self, servers: I) -> Self
            where
                I: IntoIterator<Item = S>,
                S: Into<String>,
            {
                self.egress.dns_servers = Some(servers.into_iter().map(Into::into).collect());
                self
            }

            /// Tunnels the sandbox's allowed egress TCP through a SOCKS5 proxy, after the
            /// allow/deny filtering; the sandbox does not see it. Egress fails closed: when
            /// the proxy cannot be reached, connections fail rather than go out directly.
            ///
            /// ```
            /// use e2b::EgressProxy;
            ///
            #[doc = concat!("let n = e2b::", stringify!($ty), "::new().egress_proxy(EgressProxy::new(\"proxy.example.com:1080\"));")]
            /// # let _ = n;
            /// ```
            pub fn egress_proxy(mut self, proxy: EgressProxy) -> Self {
                self.egress.egress_proxy = Some(proxy);
                self
            }

            /// The ordered rules for egress HTTP(S) requests to `domain` (`api.example.com`
            /// or `*.example.com`), replacing those set before for it. A rule does not allow
            /// its domain: list it in `allow_out` too.
            ///
            /// ```
            /// use e2b::NetworkRule;
            ///
            #[doc = concat!("let n = e2b::", stringify!($ty), "::new()")]
            ///     .allow_out(["api.example.com"])
            ///     .rules("api.example.com", [NetworkRule::new().header("X-Api-Key", "k")]);
            /// # let _ = n;
            /// ```
            pub fn rules(
                mut self,
                domain: impl Into<String>,
                rules: impl IntoIterator<Item = NetworkRule>,
            ) -> Self {
                self.egress
                    .rules
                    .insert(domain.into(), rules.into_iter().collect());
                self
            }
        }
    };
}

egress_setters!(NetworkConfig);
egress_setters!(NetworkUpdate);

impl NetworkConfig {
    /// Whether the sandbox's port URLs answer without the traffic access token (the
    /// server's default: true). With `false`, requests must carry
    /// [`TRAFFIC_ACCESS_TOKEN_HEADER`] with
    /// [`Sandbox::traffic_access_token`](super::Sandbox::traffic_access_token).
    ///
    /// ```
    /// let private = e2b::NetworkConfig::new().allow_public_traffic(false);
    /// # let _ = private;
    /// ```
    pub fn allow_public_traffic(mut self, allow: bool) -> Self {
        self.allow_public_traffic = Some(allow);
        self
    }

    /// The `Host` the sandbox's services see for requests to its port URLs, with `${PORT}`
    /// replaced by the port (by default the URL's own host, `<port>-<id>.<domain>`).
    ///
    /// ```
    /// let masked = e2b::NetworkConfig::new().mask_request_host("${PORT}-myapp.example.com");
    /// # let _ = masked;
    /// ```
    pub fn mask_request_host(mut self, mask: impl Into<String>) -> Self {
        self.mask_request_host = Some(mask.into());
        self
    }

    /// Ports whose service in the sandbox speaks TLS itself: the proxy reaches them over
    /// HTTPS without verifying their certificate (self-signed ones work). Their URLs stay the
    /// same. Replaces the list set before; ports are 1 to 65535.
    ///
    /// ```
    /// let tls = e2b::NetworkConfig::new().https_ports([3000, 8443]);
    /// # let _ = tls;
    /// ```
    pub fn https_ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.https_ports = ports.into_iter().collect();
        self
    }

    /// The request's `network` object, `None` when nothing is set (then Python 2.63 sends
    /// no `network` either).
    pub(super) fn to_api(&self) -> Result<Option<types::SandboxNetworkConfig>> {
        if *self == Self::default() {
            return Ok(None);
        }
        let egress = self.egress.to_api()?;
        let https_ports = self
            .https_ports
            .iter()
            .map(|&port| {
                NonZeroU16::new(port).ok_or_else(|| {
                    Error::invalid_argument("network https_ports: 0 is not a port (1 to 65535)")
                })
            })
            .collect::<Result<_>>()?;
        Ok(Some(types::SandboxNetworkConfig {
            allow_out: egress.allow_out,
            allow_public_traffic: self.allow_public_traffic,
            deny_out: egress.deny_out,
            dns_servers: egress.dns_servers,
            egress_proxy: egress.egress_proxy,
            https_ports,
            mask_request_host: self.mask_request_host.clone(),
            rules: egress.rules,
        }))
    }
}

impl NetworkUpdate {
    /// Whether the sandbox may reach the internet; `false` is the same as
    /// `deny_out([ALL_TRAFFIC])`. Left out of the update unless set.
    ///
    /// ```
    /// let offline = e2b::NetworkUpdate::new().allow_internet_access(false);
    /// # let _ = offline;
    /// ```
    pub fn allow_internet_access(mut self, allow: bool) -> Self {
        self.allow_internet_access = Some(allow);
        self
    }

    /// The body of `PUT /sandboxes/{id}/network`.
    pub(super) fn to_api(&self) -> Result<types::SandboxNetworkUpdateConfig> {
        let egress = self.egress.to_api()?;
        Ok(types::SandboxNetworkUpdateConfig {
            allow_internet_access: self.allow_internet_access,
            allow_out: egress.allow_out,
            deny_out: egress.deny_out,
            dns_servers: egress.dns_servers,
            egress_proxy: egress.egress_proxy,
            rules: egress.rules,
        })
    }
}

/// [`Egress`] in the generated types.
struct EgressApi {
    allow_out: Vec<String>,
    deny_out: Vec<String>,
    dns_servers: Option<Vec<String>>,
    egress_proxy: Option<types::SandboxEgressProxyConfig>,
    rules: Option<types::SandboxNetworkRules>,
}

impl Egress {
    fn to_api(&self) -> Result<EgressApi> {
        let rules = (!self.rules.is_empty()).then(|| {
            types::SandboxNetworkRules(
                self.rules
                    .iter()
                    .map(|(domain, rules)| {
                        (
                            domain.clone(),
                            rules.iter().map(NetworkRule::to_api).collect(),
                        )
                    })
                    .collect(),
            )
        });
        Ok(EgressApi {
            allow_out: self.allow_out.clone(),
            deny_out: self.deny_out.clone(),
            dns_servers: self.dns_servers.clone(),
            egress_proxy: self
                .egress_proxy
                .as_ref()
                .map(EgressProxy::to_api)
                .transpose()?,
            rules,
        })
    }
}

/// One rule for egress requests to a domain: [`NetworkConfig::rules`].
///
/// ```
/// use e2b::NetworkRule;
///
/// let rule = NetworkRule::new()
///     .header("Authorization", "Bearer secret")
///     .header("X-Team", "infra");
/// let headers = &rule.transform.as_ref().unwrap().headers;
/// assert_eq!(headers["X-Team"], "infra");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct NetworkRule {
    /// What the rule changes in a matching request (`None`: nothing).
    pub transform: Option<NetworkTransform>,
}

impl NetworkRule {
    /// A rule that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets header `name` to `value` on matching requests, replacing a header of that name
    /// the request already has.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.transform
            .get_or_insert_with(NetworkTransform::default)
            .headers
            .insert(name.into(), value.into());
        self
    }

    fn to_api(&self) -> types::SandboxNetworkRule {
        types::SandboxNetworkRule {
            transform: self
                .transform
                .as_ref()
                .map(|t| types::SandboxNetworkTransform {
                    headers: t.headers.clone(),
                }),
        }
    }

    fn from_api(rule: types::SandboxNetworkRule) -> Self {
        Self {
            transform: rule
                .transform
                .map(|t| NetworkTransform { headers: t.headers }),
        }
    }
}

/// The changes a [`NetworkRule`] makes to a matching request.
///
/// `Debug` shows the header names only: their values are usually secrets.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkTransform {
    /// Headers set on the request, replacing any of the same name.
    pub headers: BTreeMap<String, String>,
}

impl fmt::Debug for NetworkTransform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkTransform")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A SOCKS5 proxy for the sandbox's egress: [`NetworkConfig::egress_proxy`].
///
/// `Debug` never shows the password.
///
/// ```
/// use e2b::{EgressProxy, EgressProxyTls};
///
/// let proxy = EgressProxy::new("proxy.example.com:1080")
///     .username("proxy-user")
///     .password("proxy-password")
///     .tls(EgressProxyTls::new().server_name("socks.internal"));
/// assert!(!format!("{proxy:?}").contains("proxy-password"));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[must_use]
pub struct EgressProxy {
    address: String,
    username: Option<String>,
    password: Option<String>,
    tls: Option<EgressProxyTls>,
}

impl EgressProxy {
    /// The proxy at `address`, `host:port` (e.g. `proxy.example.com:1080`), without
    /// credentials or TLS.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            username: None,
            password: None,
            tls: None,
        }
    }

    /// The SOCKS5 user name (RFC 1929), at most 255 characters.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The SOCKS5 password, at most 255 characters; only together with a user name.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Reaches the proxy over TLS (certificate always verified, TLS 1.2 or newer); the
    /// credentials and the tunneled bytes run inside it.
    pub fn tls(mut self, tls: EgressProxyTls) -> Self {
        self.tls = Some(tls);
        self
    }

    fn to_api(&self) -> Result<types::SandboxEgressProxyConfig> {
        fn limited<T>(what: &str, value: Option<&String>) -> Result<Option<T>>
        where
            T: TryFrom<String, Error = types::error::ConversionError>,
        {
            value
                .map(|v| T::try_from(v.clone()))
                .transpose()
                .map_err(|e| Error::invalid_argument(format!("network egress proxy {what}: {e}")))
        }
        Ok(types::SandboxEgressProxyConfig(Some(
            types::SandboxEgressProxyConfigInner {
                address: self.address.clone(),
                username: limited("username", self.username.as_ref())?,
                password: limited("password", self.password.as_ref())?,
                tls: self.tls.as_ref().map(|tls| {
                    types::SandboxEgressProxyTlsConfig(Some(
                        types::SandboxEgressProxyTlsConfigInner {
                            ca_cert: tls.ca_cert.clone(),
                            enabled: true,
                            server_name: tls.server_name.clone(),
                        },
                    ))
                }),
            },
        )))
    }
}

impl fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressProxy")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// TLS to the egress proxy: [`EgressProxy::tls`]. `EgressProxyTls::new()` verifies the proxy
/// against the system trust store under the host name of its address.
///
/// ```
/// let tls = e2b::EgressProxyTls::new()
///     .server_name("socks.internal")
///     .ca_cert("-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n");
/// # let _ = tls;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct EgressProxyTls {
    server_name: Option<String>,
    ca_cert: Option<String>,
}

impl EgressProxyTls {
    /// TLS with the system trust store and the address's host as the name.
    pub fn new() -> Self {
        Self::default()
    }

    /// The name the certificate is checked against and sent as SNI (at most 253
    /// characters), when it is not the host of the proxy's address.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// PEM CA certificates to verify the proxy with (at most 8192 bytes), instead of the
    /// system trust store.
    pub fn ca_cert(mut self, pem: impl Into<String>) -> Self {
        self.ca_cert = Some(pem.into());
        self
    }
}

/// A sandbox's network as [`Sandbox::get_info`](super::Sandbox::get_info) reports it
/// ([`SandboxInfo::network`](super::SandboxInfo::network)). Lists the server left out are
/// empty.
///
/// ```no_run
/// # async fn demo(sandbox: e2b::Sandbox) -> e2b::Result<()> {
/// if let Some(network) = sandbox.get_info().await?.network {
///     println!("allowed: {:?}, denied: {:?}", network.allow_out, network.deny_out);
///     if let Some(proxy) = network.egress_proxy {
///         println!("tunneled through {}", proxy.address);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkInfo {
    /// Allowed egress destinations.
    pub allow_out: Vec<String>,
    /// Denied egress destinations.
    pub deny_out: Vec<String>,
    /// Request rules by domain.
    pub rules: BTreeMap<String, Vec<NetworkRule>>,
    /// The SOCKS5 proxy egress is tunneled through (`None`: egress goes out directly).
    pub egress_proxy: Option<EgressProxyInfo>,
    /// The DNS servers reachable when `allow_out` holds a domain (`None`: the default,
    /// `8.8.8.8`).
    pub dns_servers: Option<Vec<String>>,
    /// Whether the port URLs answer without the traffic access token (`None`: not reported).
    pub allow_public_traffic: Option<bool>,
    /// The `Host` mask for requests to the port URLs.
    pub mask_request_host: Option<String>,
    /// Ports reached over HTTPS inside the sandbox.
    pub https_ports: Vec<u16>,
}

impl NetworkInfo {
    pub(super) fn from_api(network: types::SandboxNetworkConfig) -> Self {
        Self {
            allow_out: network.allow_out,
            deny_out: network.deny_out,
            rules: network
                .rules
                .map(|rules| {
                    rules
                        .0
                        .into_iter()
                        .map(|(domain, rules)| {
                            (
                                domain,
                                rules.into_iter().map(NetworkRule::from_api).collect(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            egress_proxy: network
                .egress_proxy
                .and_then(|proxy| proxy.0)
                .map(EgressProxyInfo::from_api),
            dns_servers: network.dns_servers,
            allow_public_traffic: network.allow_public_traffic,
            mask_request_host: network.mask_request_host,
            https_ports: network.https_ports.iter().map(|p| p.get()).collect(),
        }
    }
}

/// The egress proxy as the API reports it: never with its password or CA certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EgressProxyInfo {
    /// `host:port`.
    pub address: String,
    /// The SOCKS5 user name, if any.
    pub username: Option<String>,
    /// Set when the proxy is reached over TLS.
    pub tls: Option<EgressProxyTlsInfo>,
}

/// TLS to the egress proxy as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EgressProxyTlsInfo {
    /// The name the certificate is checked against, when it is not the address's host.
    pub server_name: Option<String>,
}

impl EgressProxyInfo {
    fn from_api(proxy: types::SandboxEgressProxyConfigInner) -> Self {
        Self {
            address: proxy.address,
            username: proxy.username.map(String::from),
            // `enabled: false` is plain TCP, as no TLS object at all.
            tls: proxy
                .tls
                .and_then(|tls| tls.0)
                .filter(|tls| tls.enabled)
                .map(|tls| EgressProxyTlsInfo {
                    server_name: tls.server_name,
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_empty_config_sends_no_network_object() {
        assert_eq!(NetworkConfig::new().to_api().unwrap(), None);
    }

    #[test]
    fn bad_ports_and_credentials_are_invalid_arguments() {
        let e = NetworkConfig::new()
            .https_ports([443, 0])
            .to_api()
            .unwrap_err();
        assert!(e.is_invalid_argument());
        assert_eq!(
            e.to_string(),
            "network https_ports: 0 is not a port (1 to 65535)"
        );
        let long = "u".repeat(256);
        let e = NetworkUpdate::new()
            .egress_proxy(EgressProxy::new("h:1").username(long))
            .to_api()
            .unwrap_err();
        assert!(e.is_invalid_argument());
        assert_eq!(
            e.to_string(),
            "network egress proxy username: longer than 255 characters"
        );
    }

    #[test]
    fn rules_serialize_as_the_wire_has_them() {
        let update = NetworkUpdate::new()
            .rules(
                "a.example.com",
                [NetworkRule::new(), NetworkRule::new().header("K", "v")],
            )
            .to_api()
            .unwrap();
        assert_eq!(
            serde_json::to_value(update).unwrap(),
            json!({"rules": {"a.example.com": [{}, {"transform": {"headers": {"K": "v"}}}]}})
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let config = NetworkConfig::new()
            .rules(
                "a.example.com",
                [NetworkRule::new().header("Authorization", "Bearer s3cret")],
            )
            .egress_proxy(EgressProxy::new("h:1").username("u").password("pa55"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("pa55"), "{shown}");
        assert!(shown.contains("Authorization"), "{shown}");
    }
}
