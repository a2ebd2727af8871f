//! A sandbox's egress rules: E2B's `network` request validated into [`EgressRules`], which the
//! firewall (CIDR sets) and the egress proxy ([`EgressRules::decide`],
//! [`EgressRules::transform_for`]) enforce.
//!
//! The semantics are E2B's, as its API and the official SDKs document them:
//! - `allowOut` takes IPv4 addresses, CIDRs, domain names and `*.` wildcard domains; `denyOut`
//!   takes addresses and CIDRs only. An allowed entry always wins over a denied one.
//! - `allow_internet_access: false` is `denyOut: ["0.0.0.0/0"]`.
//! - When `allowOut` holds a domain, the `dnsServers` (by default `8.8.8.8`, `[]` for none) are
//!   allowed too.
//! - `rules` maps a domain pattern to header transforms; an exact pattern beats the longest
//!   matching wildcard, and matching rule sets are not merged. A rule grants no access.
//!
//! What differs from E2B: IPv6 entries are refused (e2b-local gives sandboxes IPv4 only), and
//! header rules may not set the headers that route or frame a request (see
//! [`RESERVED_HEADERS`]), because the proxy has already decided on the request's `Host`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer, Serialize};

/// Most entries `allowOut` and `denyOut` may hold together.
pub const MAX_OUT_ENTRIES: usize = 1_000;
/// Most entries `dnsServers` may hold (E2B's limit).
pub const MAX_DNS_SERVERS: usize = 10;
/// Most domain patterns `rules` may hold.
pub const MAX_RULE_DOMAINS: usize = 100;
/// Most headers the rules of one domain pattern may set, over all its rules.
pub const MAX_HEADERS_PER_DOMAIN: usize = 50;
/// Longest header value a rule may set, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 16 * 1024;
/// Longest egress proxy username or password, in bytes (RFC 1929).
pub const MAX_PROXY_CREDENTIAL_BYTES: usize = 255;
/// Longest `egressProxy.tls.caCert`, in bytes (E2B's limit).
pub const MAX_PROXY_CA_CERT_BYTES: usize = 8192;
/// Longest `egressProxy.tls.serverName` (E2B's limit, a DNS name's).
pub const MAX_PROXY_SERVER_NAME_BYTES: usize = 253;
/// The DNS server allowed when `allowOut` holds a domain and `dnsServers` is left out.
pub const DEFAULT_DNS_SERVER: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);
/// envd's port, which E2B does not let `httpsPorts` list.
pub const ENVD_PORT: u16 = 49983;
/// Headers a rule may not set: they route (`host`) or frame (the rest) the request, and the proxy
/// has already decided on the request by its `Host`.
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// The `network` object of E2B's create request (`SandboxNetworkConfig`) and of
/// `PUT /sandboxes/{id}/network` (`SandboxNetworkUpdateConfig`), as sent on the wire.
///
/// Absent and `null` lists are empty. Deserialize it, then validate it with
/// [`EgressRules::from_request`].
///
/// ```
/// use e2b_local::network::rules::NetworkRequest;
///
/// let request: NetworkRequest = serde_json::from_str(
///     r#"{"allowOut": ["api.example.com"], "denyOut": ["0.0.0.0/0"], "dnsServers": []}"#,
/// )
/// .unwrap();
/// assert_eq!(request.allow_out, ["api.example.com"]);
/// assert_eq!(request.dns_servers, Some(vec![]));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRequest {
    /// `allowOut`: IPv4 addresses, CIDRs, domains and `*.` wildcard domains.
    #[serde(default, deserialize_with = "null_as_default")]
    pub allow_out: Vec<String>,
    /// `denyOut`: IPv4 addresses and CIDRs.
    #[serde(default, deserialize_with = "null_as_default")]
    pub deny_out: Vec<String>,
    /// `dnsServers`: `None` (left out) allows [`DEFAULT_DNS_SERVER`], `Some([])` allows none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_servers: Option<Vec<String>>,
    /// `rules`: domain pattern to its ordered header transform rules.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub rules: BTreeMap<String, Vec<NetworkRule>>,
    /// `egressProxy`: a SOCKS5 proxy the sandbox's allowed traffic is tunneled through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_proxy: Option<EgressProxyConfig>,
    /// `allowPublicTraffic`: whether sandbox URLs work without the traffic access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_public_traffic: Option<bool>,
    /// `maskRequestHost`: the `Host` requests to the sandbox's ports carry (`${PORT}` allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_request_host: Option<String>,
    /// `httpsPorts`: sandbox ports whose public URL reaches a TLS server in the sandbox.
    #[serde(default, deserialize_with = "null_as_default")]
    pub https_ports: Vec<u16>,
}

/// One entry of a domain's `rules` list (`SandboxNetworkRule`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRule {
    /// The transform applied to matching requests; a rule without one does nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<NetworkTransform>,
}

/// A rule's `transform` (`SandboxNetworkTransform`).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkTransform {
    /// Headers injected into matching requests, replacing any of the same name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub headers: BTreeMap<String, String>,
}

impl fmt::Debug for NetworkTransform {
    // Header values are usually secrets (the point of a rule): show the names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkTransform")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `egressProxy` (`SandboxEgressProxyConfig`): kept as sent, checked by
/// [`EgressRules::from_request`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressProxyConfig {
    /// `host:port` of the SOCKS5 proxy.
    pub address: String,
    /// RFC 1929 username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// RFC 1929 password; only with a username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// TLS to the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<EgressProxyTls>,
}

impl fmt::Debug for EgressProxyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EgressProxyConfig")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// `egressProxy.tls` (`SandboxEgressProxyTLSConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressProxyTls {
    /// Connect to the proxy over TLS; when false no other field may be set.
    pub enabled: bool,
    /// Name to verify the proxy's certificate against and send as SNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// PEM CA certificates replacing the system trust store for the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Why a [`NetworkRequest`] was refused; each message names the field and the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// An `allowOut`/`denyOut` entry that is no address, CIDR or domain name.
    #[error("{field} entry \"{entry}\" is not an IPv4 address, CIDR or domain name")]
    NotAnEntry {
        /// `allowOut` or `denyOut`.
        field: &'static str,
        /// The entry as sent.
        entry: String,
    },
    /// A CIDR whose address or prefix length is wrong.
    #[error("{field} entry \"{entry}\" is not a valid IPv4 CIDR: {reason}")]
    BadCidr {
        /// `allowOut` or `denyOut`.
        field: &'static str,
        /// The entry as sent.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A domain name (or `rules` key) that breaks DNS syntax.
    #[error("{field} entry \"{entry}\" is not a valid domain name: {reason}")]
    BadDomain {
        /// `allowOut` or `rules`.
        field: &'static str,
        /// The entry as sent.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A domain name in `denyOut`.
    #[error(
        "denyOut entry \"{entry}\" is a domain name: domain names are not supported for deny rules"
    )]
    DomainInDenyOut {
        /// The entry as sent.
        entry: String,
    },
    /// An IPv6 address or CIDR.
    #[error("{field} entry \"{entry}\" is IPv6: IPv6 is not supported by e2b-local")]
    Ipv6 {
        /// `allowOut`, `denyOut` or `dnsServers`.
        field: &'static str,
        /// The entry as sent.
        entry: String,
    },
    /// A `dnsServers` entry that is no IPv4 address.
    #[error("dnsServers entry \"{entry}\" is not an IPv4 address")]
    BadDnsServer {
        /// The entry as sent.
        entry: String,
    },
    /// A list or map beyond its documented limit.
    #[error("too many entries in {what}: {count}, the limit is {max}")]
    TooMany {
        /// Where the entries are.
        what: String,
        /// How many there are.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A rule header name that is no HTTP header name.
    #[error("rules entry \"{domain}\": header name \"{name}\" is not a valid HTTP header name")]
    BadHeaderName {
        /// The rule's domain pattern.
        domain: String,
        /// The header name as sent.
        name: String,
    },
    /// A rule header the proxy will not set ([`RESERVED_HEADERS`]).
    #[error(
        "rules entry \"{domain}\": header \"{name}\" routes or frames the request and cannot be set by a rule"
    )]
    ReservedHeader {
        /// The rule's domain pattern.
        domain: String,
        /// The header name as sent.
        name: String,
    },
    /// A rule header value that is no HTTP header value (the value is not repeated: it may be a
    /// secret).
    #[error(
        "rules entry \"{domain}\": the value of header \"{name}\" is not a valid HTTP header value (control characters or line breaks)"
    )]
    BadHeaderValue {
        /// The rule's domain pattern.
        domain: String,
        /// The header name.
        name: String,
    },
    /// A rule header value longer than [`MAX_HEADER_VALUE_BYTES`].
    #[error(
        "rules entry \"{domain}\": the value of header \"{name}\" is {len} bytes, more than the limit of {max}"
    )]
    HeaderValueTooLong {
        /// The rule's domain pattern.
        domain: String,
        /// The header name.
        name: String,
        /// The value's length in bytes.
        len: usize,
        /// [`MAX_HEADER_VALUE_BYTES`].
        max: usize,
    },
    /// An invalid `egressProxy`.
    #[error("egressProxy: {0}")]
    EgressProxy(String),
    /// An `httpsPorts` entry that cannot be listed.
    #[error("httpsPorts entry {port} is invalid: {reason}")]
    HttpsPort {
        /// The port as sent.
        port: u16,
        /// Why it cannot be listed.
        reason: &'static str,
    },
}

/// A validated, lowercase domain pattern: `example.com` (that name only) or `*.example.com` (its
/// subdomains at any depth, not `example.com` itself).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DomainPattern(String);

impl DomainPattern {
    /// The pattern as text (`*.example.com` for a wildcard).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The suffix (with its leading dot) a wildcard matches, `None` for an exact name.
    fn wildcard_suffix(&self) -> Option<&str> {
        self.0.strip_prefix('*')
    }

    /// Whether `name` (already lowercase, no trailing dot) matches.
    fn matches(&self, name: &str) -> bool {
        match self.wildcard_suffix() {
            Some(suffix) => name.len() > suffix.len() && name.ends_with(suffix),
            None => self.0 == name,
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The headers one domain pattern's rules set, in the order they are applied; names lowercase.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderTransform {
    headers: BTreeMap<String, String>,
}

impl HeaderTransform {
    /// `(name, value)` pairs to set on a matching request, replacing headers of the same name.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

impl fmt::Debug for HeaderTransform {
    // Values are usually secrets: names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderTransform")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The proxy's decision on one connection or request, with the reason (logged, and shown in a
/// `403` body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Allow(String),
    /// Refuse it.
    Deny(String),
}

impl Verdict {
    /// Whether this is [`Verdict::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow(_))
    }

    /// Why.
    pub fn reason(&self) -> &str {
        match self {
            Self::Allow(reason) | Self::Deny(reason) => reason,
        }
    }
}

/// A sandbox's validated egress rules. Immutable; stored as JSON and restored with serde.
///
/// ```
/// use std::net::Ipv4Addr;
/// use e2b_local::network::rules::{EgressRules, NetworkRequest};
///
/// let request = NetworkRequest {
///     allow_out: vec!["*.example.com".into()],
///     ..NetworkRequest::default()
/// };
/// // allow_internet_access = false is denyOut ["0.0.0.0/0"].
/// let rules = EgressRules::from_request(Some(false), &request).unwrap();
/// let ip = Ipv4Addr::new(203, 0, 113, 10);
/// assert!(rules.decide(ip, Some("api.example.com")).is_allowed());
/// assert!(!rules.decide(ip, Some("example.com")).is_allowed());
/// assert!(rules.needs_proxy());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressRules {
    allowed_cidrs: Vec<Ipv4Net>,
    denied_cidrs: Vec<Ipv4Net>,
    allowed_domains: Vec<DomainPattern>,
    header_rules: BTreeMap<DomainPattern, HeaderTransform>,
    egress_proxy: Option<EgressProxyConfig>,
}

const ALL_IPV4: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 0);

impl EgressRules {
    /// Validates a sandbox's `network` request and its `allow_internet_access`.
    ///
    /// # Errors
    /// A [`RuleError`] naming the first entry that is invalid or the limit exceeded.
    pub fn from_request(
        allow_internet_access: Option<bool>,
        request: &NetworkRequest,
    ) -> Result<Self, RuleError> {
        let out_entries = request.allow_out.len() + request.deny_out.len();
        if out_entries > MAX_OUT_ENTRIES {
            return Err(RuleError::TooMany {
                what: "allowOut and denyOut together".into(),
                count: out_entries,
                max: MAX_OUT_ENTRIES,
            });
        }
        let mut allowed_cidrs = Vec::new();
        let mut allowed_domains = Vec::new();
        for entry in &request.allow_out {
            match parse_out_entry("allowOut", entry)? {
                OutEntry::Cidr(net) => push_unique(&mut allowed_cidrs, net),
                OutEntry::Domain(pattern) => push_unique(&mut allowed_domains, pattern),
            }
        }
        let mut denied_cidrs = Vec::new();
        for entry in &request.deny_out {
            match parse_out_entry("denyOut", entry)? {
                OutEntry::Cidr(net) => push_unique(&mut denied_cidrs, net),
                OutEntry::Domain(_) => {
                    return Err(RuleError::DomainInDenyOut {
                        entry: entry.clone(),
                    });
                }
            }
        }
        if allow_internet_access == Some(false) {
            push_unique(&mut denied_cidrs, ALL_IPV4);
        }
        let dns_servers = parse_dns_servers(request.dns_servers.as_deref())?;
        if !allowed_domains.is_empty() {
            for server in dns_servers {
                push_unique(&mut allowed_cidrs, Ipv4Net::from(server));
            }
        }
        let header_rules = parse_rules(&request.rules)?;
        if let Some(proxy) = &request.egress_proxy {
            check_egress_proxy(proxy)?;
        }
        for &port in &request.https_ports {
            let reason = match port {
                0 => "port 0 is not a port",
                ENVD_PORT => "it is envd's port",
                _ => continue,
            };
            return Err(RuleError::HttpsPort { port, reason });
        }
        Ok(Self {
            allowed_cidrs,
            denied_cidrs,
            allowed_domains,
            header_rules,
            egress_proxy: request.egress_proxy.clone(),
        })
    }

    /// CIDRs the firewall lets through whatever [`Self::denied_cidrs`] says (allowOut's
    /// addresses and CIDRs, plus the DNS servers when allowOut holds a domain).
    pub fn allowed_cidrs(&self) -> &[Ipv4Net] {
        &self.allowed_cidrs
    }

    /// CIDRs the firewall refuses unless allowed (denyOut, plus `0.0.0.0/0` without internet
    /// access).
    pub fn denied_cidrs(&self) -> &[Ipv4Net] {
        &self.denied_cidrs
    }

    /// allowOut's domain patterns, in request order.
    pub fn allowed_domains(&self) -> &[DomainPattern] {
        &self.allowed_domains
    }

    /// The validated `egressProxy`, if any.
    pub fn egress_proxy(&self) -> Option<&EgressProxyConfig> {
        self.egress_proxy.as_ref()
    }

    /// Whether the sandbox's HTTP/TLS traffic must pass the egress proxy: allowOut names a
    /// domain, or a header rule exists.
    pub fn needs_proxy(&self) -> bool {
        !self.allowed_domains.is_empty() || !self.header_rules.is_empty()
    }

    /// Whether any header rule exists.
    pub fn has_header_rules(&self) -> bool {
        !self.header_rules.is_empty()
    }

    /// Decides a connection to `dst` whose HTTP `Host` or TLS SNI is `name` (`None` when the
    /// proxy could not read one): a name matching an allowed domain is allowed; else an address
    /// in an allowed CIDR is allowed; else one in a denied CIDR is denied; else it is allowed.
    pub fn decide(&self, dst: Ipv4Addr, name: Option<&str>) -> Verdict {
        if let Some(name) = name
            && let Some(pattern) = self.allowing_domain(name)
        {
            let name = normalize_name(name);
            return Verdict::Allow(format!("{name} matches allowOut entry {pattern}"));
        }
        if let Some(net) = self.allowed_cidrs.iter().find(|n| n.contains(&dst)) {
            return Verdict::Allow(format!("{dst} is in allowOut entry {net}"));
        }
        if let Some(net) = self.denied_cidrs.iter().find(|n| n.contains(&dst)) {
            let name = match name {
                Some(name) => format!("{} matches no allowOut domain and ", normalize_name(name)),
                None => String::new(),
            };
            return Verdict::Deny(format!("{name}{dst} is in denyOut entry {net}"));
        }
        Verdict::Allow(format!("{dst} is in no denyOut entry"))
    }

    /// The allowOut domain pattern `name` (a Host or SNI) matches, if any: such a name is
    /// allowed whatever its address.
    pub fn allowing_domain(&self, name: &str) -> Option<&DomainPattern> {
        let name = normalize_name(name);
        self.allowed_domains.iter().find(|p| p.matches(&name))
    }

    /// The header transform for requests to `name`: the exact pattern's, else the longest
    /// matching wildcard's (never merged).
    pub fn transform_for(&self, name: &str) -> Option<&HeaderTransform> {
        let name = normalize_name(name);
        if let Some(transform) = self.header_rules.get(&DomainPattern(name.to_string())) {
            return Some(transform);
        }
        self.header_rules
            .iter()
            .filter(|(pattern, _)| pattern.wildcard_suffix().is_some() && pattern.matches(&name))
            .max_by_key(|(pattern, _)| pattern.0.len())
            .map(|(_, transform)| transform)
    }
}

fn push_unique<T: PartialEq>(list: &mut Vec<T>, item: T) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// Lowercase, without one trailing dot: how names from Host/SNI are compared.
fn normalize_name(name: &str) -> std::borrow::Cow<'_, str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        name.to_ascii_lowercase().into()
    } else {
        name.into()
    }
}

enum OutEntry {
    Cidr(Ipv4Net),
    Domain(DomainPattern),
}

fn parse_out_entry(field: &'static str, entry: &str) -> Result<OutEntry, RuleError> {
    if let Some((addr, prefix)) = entry.split_once('/') {
        if addr.parse::<std::net::Ipv6Addr>().is_ok() {
            return Err(RuleError::Ipv6 {
                field,
                entry: entry.into(),
            });
        }
        let bad = |reason| RuleError::BadCidr {
            field,
            entry: entry.into(),
            reason,
        };
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad("the address is not an IPv4 address"))?;
        // Digits only: `u8::from_str` would also take a leading `+`.
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the prefix length is not a number from 0 to 32"));
        }
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("the prefix length is not a number from 0 to 32"))?;
        let net =
            Ipv4Net::new(addr, prefix).map_err(|_| bad("the prefix length is more than 32"))?;
        // Host bits are ignored, as a firewall set would: 10.1.2.3/8 is 10.0.0.0/8.
        return Ok(OutEntry::Cidr(net.trunc()));
    }
    match entry.parse::<IpAddr>() {
        Ok(IpAddr::V4(addr)) => return Ok(OutEntry::Cidr(Ipv4Net::from(addr))),
        Ok(IpAddr::V6(_)) => {
            return Err(RuleError::Ipv6 {
                field,
                entry: entry.into(),
            });
        }
        Err(_) => {}
    }
    if entry.contains(':') || entry.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(RuleError::NotAnEntry {
            field,
            entry: entry.into(),
        });
    }
    parse_domain_pattern(field, entry).map(OutEntry::Domain)
}

/// Validates an exact or `*.` wildcard domain name and normalizes it (lowercase, no trailing
/// dot).
fn parse_domain_pattern(field: &'static str, entry: &str) -> Result<DomainPattern, RuleError> {
    let bad = |reason: &str| RuleError::BadDomain {
        field,
        entry: entry.into(),
        reason: reason.into(),
    };
    let lower = entry.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if lower == "*." {
        return Err(bad("nothing follows \"*.\""));
    }
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name == "*" {
        return Err(bad("a bare \"*\" matches everything; use 0.0.0.0/0"));
    }
    let (wildcard, base) = match name.strip_prefix("*.") {
        Some(base) => (true, base),
        None => (false, name),
    };
    if wildcard && base.is_empty() {
        return Err(bad("nothing follows \"*.\""));
    }
    if name.len() > 253 {
        return Err(bad("it is longer than 253 characters"));
    }
    let labels: Vec<&str> = base.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(bad("it has an empty label"));
        }
        if label.len() > 63 {
            return Err(bad("a label is longer than 63 characters"));
        }
        if label.contains('*') {
            return Err(bad(
                "\"*\" is only allowed as the whole first label, as in *.example.com",
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(bad(&format!(
                "{c:?} is not a letter, digit or hyphen (internationalized names go in their xn-- form)"
            )));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label starts or ends with a hyphen"));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad("the last label is all digits"));
    }
    Ok(DomainPattern(name.to_string()))
}

fn parse_dns_servers(servers: Option<&[String]>) -> Result<Vec<Ipv4Addr>, RuleError> {
    let Some(servers) = servers else {
        return Ok(vec![DEFAULT_DNS_SERVER]);
    };
    if servers.len() > MAX_DNS_SERVERS {
        return Err(RuleError::TooMany {
            what: "dnsServers".into(),
            count: servers.len(),
            max: MAX_DNS_SERVERS,
        });
    }
    servers
        .iter()
        .map(|entry| match entry.parse::<IpAddr>() {
            Ok(IpAddr::V4(addr)) => Ok(addr),
            Ok(IpAddr::V6(_)) => Err(RuleError::Ipv6 {
                field: "dnsServers",
                entry: entry.clone(),
            }),
            Err(_) => Err(RuleError::BadDnsServer {
                entry: entry.clone(),
            }),
        })
        .collect()
}

fn parse_rules(
    rules: &BTreeMap<String, Vec<NetworkRule>>,
) -> Result<BTreeMap<DomainPattern, HeaderTransform>, RuleError> {
    if rules.len() > MAX_RULE_DOMAINS {
        return Err(RuleError::TooMany {
            what: "rules".into(),
            count: rules.len(),
            max: MAX_RULE_DOMAINS,
        });
    }
    let mut parsed: BTreeMap<DomainPattern, HeaderTransform> = BTreeMap::new();
    for (domain, list) in rules {
        let pattern = parse_domain_pattern("rules", domain)?;
        // Keys differing only in case or a trailing dot are one pattern: their rules apply in
        // the map's order, as a list would.
        let transform = parsed.entry(pattern).or_default();
        for header in list.iter().filter_map(|r| r.transform.as_ref()) {
            for (name, value) in &header.headers {
                let lower = check_header(domain, name, value)?;
                transform.headers.insert(lower, value.clone());
            }
        }
        if transform.headers.len() > MAX_HEADERS_PER_DOMAIN {
            return Err(RuleError::TooMany {
                what: format!("the headers of rules entry \"{domain}\""),
                count: transform.headers.len(),
                max: MAX_HEADERS_PER_DOMAIN,
            });
        }
    }
    // A pattern whose rules set no header transforms nothing: it needs no proxy.
    parsed.retain(|_, transform| !transform.headers.is_empty());
    Ok(parsed)
}

/// Checks one rule header; returns its lowercase name.
fn check_header(domain: &str, name: &str, value: &str) -> Result<String, RuleError> {
    let header =
        http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| RuleError::BadHeaderName {
            domain: domain.into(),
            name: name.into(),
        })?;
    if RESERVED_HEADERS.contains(&header.as_str()) {
        return Err(RuleError::ReservedHeader {
            domain: domain.into(),
            name: name.into(),
        });
    }
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return Err(RuleError::HeaderValueTooLong {
            domain: domain.into(),
            name: name.into(),
            len: value.len(),
            max: MAX_HEADER_VALUE_BYTES,
        });
    }
    http::HeaderValue::from_str(value).map_err(|_| RuleError::BadHeaderValue {
        domain: domain.into(),
        name: name.into(),
    })?;
    Ok(header.as_str().to_string())
}

fn check_egress_proxy(proxy: &EgressProxyConfig) -> Result<(), RuleError> {
    let bad = |reason: String| Err(RuleError::EgressProxy(reason));
    let Some((host, port)) = proxy.address.rsplit_once(':') else {
        return bad(format!(
            "address \"{}\" is not in host:port form",
            proxy.address
        ));
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if !matches!(port.parse::<u16>(), Ok(p) if p != 0) {
        return bad(format!(
            "address \"{}\" has no valid port (1 to 65535)",
            proxy.address
        ));
    }
    if host.parse::<IpAddr>().is_err() && parse_domain_pattern("egressProxy", host).is_err()
        || host.starts_with('*')
    {
        return bad(format!(
            "address \"{}\" does not start with an IP address or host name",
            proxy.address
        ));
    }
    for (what, value) in [("username", &proxy.username), ("password", &proxy.password)] {
        if let Some(value) = value
            && value.len() > MAX_PROXY_CREDENTIAL_BYTES
        {
            return bad(format!(
                "{what} is {} bytes, more than the limit of {MAX_PROXY_CREDENTIAL_BYTES}",
                value.len()
            ));
        }
    }
    if proxy.password.is_some() && proxy.username.is_none() {
        return bad("a password is only valid together with a username".into());
    }
    // RFC 1929 sends both, each 1 to 255 bytes: a username alone cannot be sent.
    match (&proxy.username, &proxy.password) {
        (Some(u), _) if u.is_empty() => return bad("username is empty".into()),
        (_, Some(p)) if p.is_empty() => return bad("password is empty".into()),
        (Some(_), None) => {
            return bad("a username needs a password (RFC 1929 sends both)".into());
        }
        _ => {}
    }
    let Some(tls) = &proxy.tls else {
        return Ok(());
    };
    if !tls.enabled && (tls.server_name.is_some() || tls.ca_cert.is_some()) {
        return bad("tls.enabled is false, so no other tls field may be set".into());
    }
    if let Some(name) = &tls.server_name
        && (name.len() > MAX_PROXY_SERVER_NAME_BYTES
            || rustls::pki_types::ServerName::try_from(name.as_str()).is_err())
    {
        return bad(format!(
            "tls.serverName {name:?} is not a host name or IP address of at most \
             {MAX_PROXY_SERVER_NAME_BYTES} bytes"
        ));
    }
    if let Some(pem) = &tls.ca_cert {
        if pem.len() > MAX_PROXY_CA_CERT_BYTES {
            return bad(format!(
                "tls.caCert is {} bytes, more than the limit of {MAX_PROXY_CA_CERT_BYTES}",
                pem.len()
            ));
        }
        proxy_roots(pem).map_err(RuleError::EgressProxy)?;
    }
    Ok(())
}

/// The trust store of `egressProxy.tls.caCert`: every PEM certificate in it (at least one).
///
/// # Errors
/// Why `pem` is not a usable CA list, for a 400.
pub fn proxy_roots(pem: &str) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("tls.caCert is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("tls.caCert holds an unusable certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("tls.caCert holds no PEM certificate".into());
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(allow: &[&str], deny: &[&str]) -> NetworkRequest {
        NetworkRequest {
            allow_out: allow.iter().map(|s| s.to_string()).collect(),
            deny_out: deny.iter().map(|s| s.to_string()).collect(),
            ..NetworkRequest::default()
        }
    }

    fn rules(allow: &[&str], deny: &[&str]) -> EgressRules {
        EgressRules::from_request(None, &request(allow, deny)).unwrap()
    }

    fn error(allow: &[&str], deny: &[&str]) -> String {
        EgressRules::from_request(None, &request(allow, deny))
            .unwrap_err()
            .to_string()
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    const IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

    #[test]
    fn deserializes_e2b_json_names_and_nulls() {
        let request: NetworkRequest = serde_json::from_str(
            r#"{"allowOut": ["a.test"], "denyOut": null, "dnsServers": ["1.1.1.1"],
                "rules": {"a.test": [{"transform": {"headers": {"X-Key": "v"}}}]},
                "egressProxy": {"address": "127.0.0.1:1080", "username": "u", "password": "p",
                                "tls": {"enabled": true, "serverName": "proxy.test"}},
                "allowPublicTraffic": false, "maskRequestHost": "${PORT}-x.test",
                "httpsPorts": [3000]}"#,
        )
        .unwrap();
        assert_eq!(request.allow_out, ["a.test"]);
        assert!(request.deny_out.is_empty());
        assert_eq!(request.dns_servers, Some(vec!["1.1.1.1".to_string()]));
        assert_eq!(request.allow_public_traffic, Some(false));
        assert_eq!(request.mask_request_host.as_deref(), Some("${PORT}-x.test"));
        assert_eq!(request.https_ports, [3000]);
        let proxy = request.egress_proxy.as_ref().unwrap();
        assert_eq!(
            proxy.tls.as_ref().unwrap().server_name.as_deref(),
            Some("proxy.test")
        );
        assert!(!format!("{proxy:?}").contains("\"p\""));
        let rules = EgressRules::from_request(None, &request).unwrap();
        let transform = rules.transform_for("a.test").unwrap();
        assert_eq!(transform.headers().collect::<Vec<_>>(), [("x-key", "v")]);
        assert!(!format!("{rules:?}").contains("\"v\""));
    }

    #[test]
    fn addresses_and_cidrs() {
        let r = rules(&["1.2.3.4", "10.1.2.3/8"], &["192.0.2.0/24"]);
        assert_eq!(r.allowed_cidrs(), [net("1.2.3.4/32"), net("10.0.0.0/8")]);
        assert_eq!(r.denied_cidrs(), [net("192.0.2.0/24")]);
        assert!(!r.needs_proxy());
        assert_eq!(
            r.decide(Ipv4Addr::new(192, 0, 2, 7), None),
            Verdict::Deny("192.0.2.7 is in denyOut entry 192.0.2.0/24".into())
        );
        assert_eq!(
            r.decide(Ipv4Addr::new(10, 9, 9, 9), None),
            Verdict::Allow("10.9.9.9 is in allowOut entry 10.0.0.0/8".into())
        );
        assert_eq!(
            r.decide(IP, None),
            Verdict::Allow("203.0.113.10 is in no denyOut entry".into())
        );
    }

    #[test]
    fn allow_beats_deny() {
        let r = rules(&["203.0.113.0/24"], &["0.0.0.0/0", "203.0.113.10"]);
        assert!(r.decide(IP, None).is_allowed());
        assert!(!r.decide(Ipv4Addr::new(198, 51, 100, 1), None).is_allowed());
    }

    #[test]
    fn no_internet_access_is_deny_all() {
        let r = EgressRules::from_request(Some(false), &NetworkRequest::default()).unwrap();
        assert_eq!(r.denied_cidrs(), [net("0.0.0.0/0")]);
        assert!(r.allowed_cidrs().is_empty());
        let r = EgressRules::from_request(Some(false), &request(&[], &["0.0.0.0/0"])).unwrap();
        assert_eq!(r.denied_cidrs(), [net("0.0.0.0/0")]);
        let r = EgressRules::from_request(Some(true), &NetworkRequest::default()).unwrap();
        assert!(r.denied_cidrs().is_empty());
    }

    #[test]
    fn domains_exact_and_wildcard() {
        let r = rules(&["A.Test.", "*.b.test"], &["0.0.0.0/0"]);
        assert_eq!(
            r.allowed_domains()
                .iter()
                .map(DomainPattern::as_str)
                .collect::<Vec<_>>(),
            ["a.test", "*.b.test"]
        );
        assert!(r.needs_proxy());
        assert_eq!(
            r.decide(IP, Some("A.TEST.")),
            Verdict::Allow("a.test matches allowOut entry a.test".into())
        );
        assert!(r.decide(IP, Some("x.b.test")).is_allowed());
        assert!(r.decide(IP, Some("deep.x.b.test")).is_allowed());
        // A wildcard does not match its apex, nor a name that merely ends alike.
        assert!(!r.decide(IP, Some("b.test")).is_allowed());
        assert!(!r.decide(IP, Some("xb.test")).is_allowed());
        assert!(!r.decide(IP, Some("sub.a.test")).is_allowed());
        assert_eq!(
            r.decide(IP, Some("c.test")),
            Verdict::Deny(
                "c.test matches no allowOut domain and 203.0.113.10 is in denyOut entry 0.0.0.0/0"
                    .into()
            )
        );
        assert!(!r.decide(IP, None).is_allowed());
    }

    #[test]
    fn unmatched_name_is_allowed_without_deny() {
        let r = rules(&["a.test"], &[]);
        assert!(r.decide(IP, Some("b.test")).is_allowed());
    }

    #[test]
    fn allowed_cidr_lets_any_name_through() {
        let r = rules(&["a.test", "203.0.113.0/24"], &["0.0.0.0/0"]);
        assert!(r.decide(IP, Some("b.test")).is_allowed());
    }

    #[test]
    fn dns_servers_are_allowed_only_with_a_domain() {
        let r = rules(&["a.test"], &["0.0.0.0/0"]);
        assert_eq!(r.allowed_cidrs(), [net("8.8.8.8/32")]);
        let r = rules(&["1.2.3.4"], &["0.0.0.0/0"]);
        assert_eq!(r.allowed_cidrs(), [net("1.2.3.4/32")]);
        let mut req = request(&["a.test"], &["0.0.0.0/0"]);
        req.dns_servers = Some(vec![]);
        let r = EgressRules::from_request(None, &req).unwrap();
        assert!(r.allowed_cidrs().is_empty());
        req.dns_servers = Some(vec!["1.1.1.1".into(), "9.9.9.9".into()]);
        let r = EgressRules::from_request(None, &req).unwrap();
        assert_eq!(r.allowed_cidrs(), [net("1.1.1.1/32"), net("9.9.9.9/32")]);
    }

    fn header_rules(keys: &[(&str, &str, &str)]) -> NetworkRequest {
        let mut req = NetworkRequest::default();
        for (domain, name, value) in keys {
            req.rules
                .entry(domain.to_string())
                .or_default()
                .push(NetworkRule {
                    transform: Some(NetworkTransform {
                        headers: [(name.to_string(), value.to_string())].into(),
                    }),
                });
        }
        req
    }

    fn header_of(r: &EgressRules, name: &str) -> Option<Vec<(String, String)>> {
        r.transform_for(name).map(|t| {
            t.headers()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        })
    }

    #[test]
    fn header_rules_exact_beats_longest_wildcard_and_do_not_merge() {
        let req = header_rules(&[
            ("*.test", "X-A", "short"),
            ("*.api.test", "X-A", "long"),
            ("*.api.test", "X-B", "b"),
            ("v1.api.test", "X-C", "exact"),
        ]);
        let r = EgressRules::from_request(None, &req).unwrap();
        assert!(r.needs_proxy());
        assert!(r.has_header_rules());
        let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
        assert_eq!(
            header_of(&r, "v1.api.test"),
            Some(vec![pair("x-c", "exact")])
        );
        assert_eq!(
            header_of(&r, "V2.API.TEST."),
            Some(vec![pair("x-a", "long"), pair("x-b", "b")])
        );
        assert_eq!(header_of(&r, "api.test"), Some(vec![pair("x-a", "short")]));
        assert_eq!(header_of(&r, "test"), None);
        assert_eq!(header_of(&r, "other.example"), None);
        // A rule grants no access.
        assert!(r.allowed_domains().is_empty());
    }

    #[test]
    fn later_rules_of_a_domain_replace_earlier_headers() {
        let req = header_rules(&[("a.test", "X-A", "1"), ("a.test", "x-a", "2")]);
        let r = EgressRules::from_request(None, &req).unwrap();
        assert_eq!(
            header_of(&r, "a.test"),
            Some(vec![("x-a".to_string(), "2".to_string())])
        );
    }

    #[test]
    fn rules_without_headers_need_no_proxy() {
        let mut req = NetworkRequest::default();
        req.rules
            .insert("a.test".into(), vec![NetworkRule { transform: None }]);
        let r = EgressRules::from_request(None, &req).unwrap();
        assert!(!r.needs_proxy());
        assert!(r.transform_for("a.test").is_none());
    }

    #[test]
    fn bad_addresses_and_cidrs() {
        assert_eq!(
            error(&["300.1.1.1"], &[]),
            "allowOut entry \"300.1.1.1\" is not an IPv4 address, CIDR or domain name"
        );
        assert_eq!(
            error(&[], &["1.2.3"]),
            "denyOut entry \"1.2.3\" is not an IPv4 address, CIDR or domain name"
        );
        assert_eq!(
            error(&["1.2.3.4/33"], &[]),
            "allowOut entry \"1.2.3.4/33\" is not a valid IPv4 CIDR: the prefix length is more than 32"
        );
        assert_eq!(
            error(&[], &["1.2.3.4/+8"]),
            "denyOut entry \"1.2.3.4/+8\" is not a valid IPv4 CIDR: the prefix length is not a number from 0 to 32"
        );
        assert_eq!(
            error(&[], &["1.2.3.256/8"]),
            "denyOut entry \"1.2.3.256/8\" is not a valid IPv4 CIDR: the address is not an IPv4 address"
        );
        assert_eq!(
            error(&[""], &[]),
            "allowOut entry \"\" is not an IPv4 address, CIDR or domain name"
        );
        assert_eq!(
            error(&["a:b"], &[]),
            "allowOut entry \"a:b\" is not an IPv4 address, CIDR or domain name"
        );
    }

    #[test]
    fn ipv6_is_refused() {
        assert_eq!(
            error(&["::1"], &[]),
            "allowOut entry \"::1\" is IPv6: IPv6 is not supported by e2b-local"
        );
        assert_eq!(
            error(&[], &["2001:db8::/32"]),
            "denyOut entry \"2001:db8::/32\" is IPv6: IPv6 is not supported by e2b-local"
        );
        let mut req = request(&["a.test"], &[]);
        req.dns_servers = Some(vec!["::1".into()]);
        assert_eq!(
            EgressRules::from_request(None, &req)
                .unwrap_err()
                .to_string(),
            "dnsServers entry \"::1\" is IPv6: IPv6 is not supported by e2b-local"
        );
    }

    #[test]
    fn bad_domains() {
        let cases = [
            ("*.", "nothing follows \"*.\""),
            ("*", "a bare \"*\" matches everything; use 0.0.0.0/0"),
            ("a..b", "it has an empty label"),
            ("-a.com", "a label starts or ends with a hyphen"),
            ("a-.com", "a label starts or ends with a hyphen"),
            (
                "*.*.com",
                "\"*\" is only allowed as the whole first label, as in *.example.com",
            ),
            (
                "a*.com",
                "\"*\" is only allowed as the whole first label, as in *.example.com",
            ),
            (
                "a_b.com",
                "'_' is not a letter, digit or hyphen (internationalized names go in their xn-- form)",
            ),
            (
                "bücher.de",
                "'ü' is not a letter, digit or hyphen (internationalized names go in their xn-- form)",
            ),
            ("a.123", "the last label is all digits"),
        ];
        for (entry, reason) in cases {
            assert_eq!(
                error(&[entry], &[]),
                format!("allowOut entry \"{entry}\" is not a valid domain name: {reason}"),
                "{entry}"
            );
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(error(&[&long_label], &[]).ends_with("a label is longer than 63 characters"));
        let ok_label = format!("{}.com", "a".repeat(63));
        rules(&[&ok_label], &[]);
        let long_name = vec!["a".repeat(50); 5].join(".") + ".com";
        assert!(error(&[&long_name], &[]).ends_with("it is longer than 253 characters"));
    }

    #[test]
    fn domain_in_deny_out() {
        assert_eq!(
            error(&[], &["example.com"]),
            "denyOut entry \"example.com\" is a domain name: domain names are not supported for deny rules"
        );
    }

    #[test]
    fn bad_dns_servers() {
        let mut req = request(&[], &[]);
        req.dns_servers = Some(vec!["dns.google".into()]);
        assert_eq!(
            EgressRules::from_request(None, &req)
                .unwrap_err()
                .to_string(),
            "dnsServers entry \"dns.google\" is not an IPv4 address"
        );
        req.dns_servers = Some(vec!["1.1.1.1".into(); MAX_DNS_SERVERS + 1]);
        assert_eq!(
            EgressRules::from_request(None, &req)
                .unwrap_err()
                .to_string(),
            "too many entries in dnsServers: 11, the limit is 10"
        );
    }

    #[test]
    fn size_limits() {
        let allow: Vec<String> = (0..600)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect();
        let deny: Vec<String> = (0..401)
            .map(|i| format!("11.0.{}.{}", i / 256, i % 256))
            .collect();
        let req = NetworkRequest {
            allow_out: allow.clone(),
            deny_out: deny[..400].to_vec(),
            ..NetworkRequest::default()
        };
        assert_eq!(
            EgressRules::from_request(None, &req)
                .unwrap()
                .allowed_cidrs()
                .len(),
            600
        );
        let req = NetworkRequest {
            allow_out: allow,
            deny_out: deny,
            ..NetworkRequest::default()
        };
        assert_eq!(
            EgressRules::from_request(None, &req)
                .unwrap_err()
                .to_string(),
            "too many entries in allowOut and denyOut together: 1001, the limit is 1000"
        );

        let mut req = NetworkRequest::default();
        for i in 0..=MAX_RULE_DOMAINS {
            req.rules.insert(format!("d{i}.test"), vec![]);
        }
        assert_eq!(
            EgressRules::from_request(None, &req)
                .unwrap_err()
                .to_string(),
            "too many entries in rules: 101, the limit is 100"
        );

        let mut req = NetworkRequest::default();
        let headers = (0..=MAX_HEADERS_PER_DOMAIN)
            .map(|i| (format!("x-h{i}"), "v".to_string()))
            .collect();
        req.rules.insert(
            "a.test".into(),
            vec![NetworkRule {
                transform: Some(NetworkTransform { headers }),
            }],
        );
        assert_eq!(
            EgressRules::from_request(None, &req)
                .unwrap_err()
                .to_string(),
            "too many entries in the headers of rules entry \"a.test\": 51, the limit is 50"
        );

        let long = "v".repeat(MAX_HEADER_VALUE_BYTES + 1);
        let req = header_rules(&[("a.test", "X-Big", &long)]);
        assert_eq!(
            EgressRules::from_request(None, &req)
                .unwrap_err()
                .to_string(),
            "rules entry \"a.test\": the value of header \"X-Big\" is 16385 bytes, more than the limit of 16384"
        );
    }

    #[test]
    fn bad_rules() {
        let err = |req: NetworkRequest| {
            EgressRules::from_request(None, &req)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(header_rules(&[("*", "X-A", "v")])),
            "rules entry \"*\" is not a valid domain name: a bare \"*\" matches everything; use 0.0.0.0/0"
        );
        assert_eq!(
            err(header_rules(&[("a.test", "X A", "v")])),
            "rules entry \"a.test\": header name \"X A\" is not a valid HTTP header name"
        );
        assert_eq!(
            err(header_rules(&[("a.test", "Host", "v")])),
            "rules entry \"a.test\": header \"Host\" routes or frames the request and cannot be set by a rule"
        );
        assert_eq!(
            err(header_rules(&[("a.test", "X-A", "secret\r\nX-Evil: 1")])),
            "rules entry \"a.test\": the value of header \"X-A\" is not a valid HTTP header value (control characters or line breaks)"
        );
    }

    #[test]
    fn bad_egress_proxy_and_https_ports() {
        let proxy = |address: &str, username: Option<&str>, password: Option<&str>| {
            let req = NetworkRequest {
                egress_proxy: Some(EgressProxyConfig {
                    address: address.into(),
                    username: username.map(Into::into),
                    password: password.map(Into::into),
                    tls: None,
                }),
                ..NetworkRequest::default()
            };
            EgressRules::from_request(None, &req).map(|r| r.egress_proxy().cloned())
        };
        assert!(
            proxy("proxy.test:1080", Some("u"), Some("p"))
                .unwrap()
                .is_some()
        );
        assert!(proxy("[::1]:1080", None, None).is_ok());
        assert_eq!(
            proxy("proxy.test", None, None).unwrap_err().to_string(),
            "egressProxy: address \"proxy.test\" is not in host:port form"
        );
        assert_eq!(
            proxy("proxy.test:0", None, None).unwrap_err().to_string(),
            "egressProxy: address \"proxy.test:0\" has no valid port (1 to 65535)"
        );
        assert_eq!(
            proxy("a..b:1080", None, None).unwrap_err().to_string(),
            "egressProxy: address \"a..b:1080\" does not start with an IP address or host name"
        );
        assert_eq!(
            proxy("p.test:1", None, Some("p")).unwrap_err().to_string(),
            "egressProxy: a password is only valid together with a username"
        );
        assert_eq!(
            proxy("p.test:1", Some(&"u".repeat(256)), None)
                .unwrap_err()
                .to_string(),
            "egressProxy: username is 256 bytes, more than the limit of 255"
        );
        assert_eq!(
            proxy("p.test:1", Some("u"), None).unwrap_err().to_string(),
            "egressProxy: a username needs a password (RFC 1929 sends both)"
        );
        assert_eq!(
            proxy("p.test:1", Some(""), Some("p"))
                .unwrap_err()
                .to_string(),
            "egressProxy: username is empty"
        );
        let tls = |tls: EgressProxyTls| {
            let req = NetworkRequest {
                egress_proxy: Some(EgressProxyConfig {
                    address: "p.test:1".into(),
                    username: None,
                    password: None,
                    tls: Some(tls),
                }),
                ..NetworkRequest::default()
            };
            EgressRules::from_request(None, &req).map(|_| ())
        };
        let ca = rcgen::CertificateParams::default()
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap()
            .pem();
        assert_eq!(
            tls(EgressProxyTls {
                enabled: true,
                server_name: Some("proxy.test".into()),
                ca_cert: Some(ca),
            }),
            Ok(())
        );
        assert_eq!(
            tls(EgressProxyTls {
                enabled: true,
                server_name: None,
                ca_cert: Some("not a certificate".into()),
            })
            .unwrap_err()
            .to_string(),
            "egressProxy: tls.caCert holds no PEM certificate"
        );
        assert_eq!(
            tls(EgressProxyTls {
                enabled: true,
                server_name: Some("bad name!".into()),
                ca_cert: None,
            })
            .unwrap_err()
            .to_string(),
            "egressProxy: tls.serverName \"bad name!\" is not a host name or IP address of at most 253 bytes"
        );
        assert_eq!(
            tls(EgressProxyTls {
                enabled: true,
                server_name: None,
                ca_cert: Some("x".repeat(8193)),
            })
            .unwrap_err()
            .to_string(),
            "egressProxy: tls.caCert is 8193 bytes, more than the limit of 8192"
        );
        let req = NetworkRequest {
            https_ports: vec![3000, ENVD_PORT],
            ..NetworkRequest::default()
        };
        assert_eq!(
            EgressRules::from_request(None, &req)
                .unwrap_err()
                .to_string(),
            "httpsPorts entry 49983 is invalid: it is envd's port"
        );
    }

    #[test]
    fn errors_are_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<RuleError>();
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(
            allow in proptest::collection::vec(".{0,40}", 0..8),
            deny in proptest::collection::vec("[0-9./:a-z*]{0,20}", 0..8),
            dns in proptest::option::of(proptest::collection::vec(".{0,20}", 0..12)),
            rule_keys in proptest::collection::vec("[a-zA-Z0-9.*-]{0,20}", 0..4),
            header in ".{0,20}",
            value in ".{0,40}",
            name in proptest::option::of(".{0,40}"),
            dst in any::<u32>(),
            internet in proptest::option::of(any::<bool>()),
        ) {
            let mut req = NetworkRequest {
                allow_out: allow,
                deny_out: deny,
                dns_servers: dns,
                ..NetworkRequest::default()
            };
            for key in rule_keys {
                req.rules.insert(key, vec![NetworkRule {
                    transform: Some(NetworkTransform {
                        headers: [(header.clone(), value.clone())].into(),
                    }),
                }]);
            }
            if let Ok(rules) = EgressRules::from_request(internet, &req) {
                let verdict = rules.decide(Ipv4Addr::from(dst), name.as_deref());
                prop_assert!(!verdict.reason().is_empty());
                let _ = rules.transform_for(name.as_deref().unwrap_or(""));
            }
        }

        #[test]
        fn arbitrary_json_never_panics(json in ".{0,200}") {
            if let Ok(req) = serde_json::from_str::<NetworkRequest>(&json) {
                let _ = EgressRules::from_request(None, &req);
            }
        }

        #[test]
        fn valid_rules_round_trip_through_serde(
            octets in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..10),
            labels in proptest::collection::vec("[a-z][a-z0-9-]{0,10}[a-z0-9]", 1..6),
            wildcard in any::<bool>(),
            header_value in "[ -~]{0,30}",
            internet in proptest::option::of(any::<bool>()),
        ) {
            let cidrs: Vec<String> = octets
                .iter()
                .map(|(addr, prefix)| format!("{}/{prefix}", Ipv4Addr::from(*addr)))
                .collect();
            let domain = format!("{}{}.test", if wildcard { "*." } else { "" }, labels.join("."));
            let mut req = header_rules(&[(&domain, "X-Token", &header_value)]);
            req.allow_out = cidrs.clone();
            req.allow_out.push(domain.clone());
            req.deny_out = cidrs;
            let rules = EgressRules::from_request(internet, &req).unwrap();
            let json = serde_json::to_string(&rules).unwrap();
            let back: EgressRules = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &rules);
            let req_json = serde_json::to_string(&req).unwrap();
            prop_assert_eq!(serde_json::from_str::<NetworkRequest>(&req_json).unwrap(), req);
        }
    }
}
