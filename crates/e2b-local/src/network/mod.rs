//! Sandbox networks: a veth pair and a `/30` per sandbox, NAT out of the host, and E2B's
//! egress rules enforced by nftables (addresses) and the egress proxy (names).
//!
//! How a packet leaves a sandbox, and where each rule is enforced, is in
//! `docs/network.md`. This module owns the plumbing; [`rules`] validates E2B's rules,
//! [`firewall`] writes the nftables table, [`link`] talks netlink, [`pool`] hands out
//! addresses, [`dns`] forwards the sandboxes' DNS queries, [`proxy`] enforces names.

pub mod dns;
pub mod firewall;
pub mod link;
pub mod pool;
pub mod proxy;
pub mod rules;

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Arc;

use ipnet::Ipv4Net;

use dns::DnsForwarder;
use firewall::{Firewall, FirewallError, SandboxRules};
use link::{LinkError, Netlink};
use pool::{Pool, PoolError, Slot};
use proxy::{EgressProxy, InterceptCa, Policies, SandboxLogger};
use rules::EgressRules;

/// The default address pool: 16,383 sandboxes, in a block home and office networks, Docker
/// (172.17/16 and up) and Podman (10.88/16) rarely use. Checked against the host's routes.
pub const DEFAULT_POOL: &str = "10.219.0.0/16";

/// How `serve` sets up sandbox networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkOptions {
    /// The pool sandbox addresses come from (a `/30` each).
    pub pool: Ipv4Net,
    /// The resolvers the sandboxes' DNS queries are forwarded to (default: the host's
    /// `/etc/resolv.conf`).
    pub dns_upstreams: Vec<SocketAddr>,
    /// Certificate authorities the egress proxy trusts, besides the host's, when it
    /// connects to a destination for a header rule over HTTPS (e.g. a private CA), or to an
    /// `egressProxy` over TLS that brings no `caCert`.
    pub upstream_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Destinations no sandbox may reach, besides the fixed ones (loopback, link-local, the
    /// pool, the server's own addresses): in rootless mode the host's addresses, which
    /// pasta would otherwise connect to like any other.
    pub unreachable: Vec<Ipv4Net>,
}

impl NetworkOptions {
    /// The default pool and the host's resolvers.
    ///
    /// # Errors
    ///
    /// [`NetworkError::Host`] when `/etc/resolv.conf` cannot be read.
    pub fn from_host() -> Result<Self, NetworkError> {
        let text = std::fs::read_to_string("/etc/resolv.conf")
            .map_err(|e| NetworkError::Host("reading /etc/resolv.conf", e))?;
        Ok(NetworkOptions {
            pool: DEFAULT_POOL
                .parse()
                .unwrap_or_else(|_| unreachable!("the default pool parses")),
            dns_upstreams: dns::upstreams_from_resolv_conf(&text),
            upstream_roots: Vec::new(),
            unreachable: Vec::new(),
        })
    }
}

/// Setting up networking failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The pool is unusable or used up.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The pool overlaps a route the host already has.
    #[error(
        "network pool {pool} collides with the host's route to {route} on {interface}: \
         choose another pool with --network-pool"
    )]
    PoolCollision {
        /// The pool.
        pool: Ipv4Net,
        /// The host's route.
        route: Ipv4Net,
        /// Its interface.
        interface: String,
    },
    /// A netlink step failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// nftables refused.
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    /// A host setting (`ip_forward`) could not be made.
    #[error("{0}: {1}")]
    Host(&'static str, #[source] std::io::Error),
    /// Binding the DNS forwarder's or the proxy's socket.
    #[error("binding {0}: {1}")]
    Bind(&'static str, #[source] std::io::Error),
    /// The egress proxy's certificate authority (for header rules over HTTPS).
    #[error("the egress proxy's certificate authority ({0}): {1}")]
    Ca(String, String),
}

/// The server's sandbox networks.
#[derive(Debug)]
pub struct Networks {
    pool: Pool,
    firewall: Firewall,
    netlink: Netlink,
    /// The DNS forwarder's task (aborted at shutdown).
    dns: tokio::task::JoinHandle<()>,
    /// The egress proxy's task (aborted at shutdown).
    proxy: tokio::task::JoinHandle<()>,
    /// Each sandbox's rules, for the egress proxy.
    policies: Arc<Policies>,
    /// The certificate every sandbox trusts, so that header rules work over HTTPS.
    ca_pem: String,
}

/// One sandbox's network, live while the sandbox is.
#[derive(Debug)]
pub struct SandboxNetwork {
    slot: Slot,
    ifname: String,
    state: tokio::sync::Mutex<NetState>,
}

/// What nftables holds for a sandbox, and whether it was detached.
#[derive(Debug, Default)]
struct NetState {
    rules: SandboxRules,
    detached: bool,
}

impl SandboxNetwork {
    /// The sandbox's address.
    pub fn address(&self) -> std::net::Ipv4Addr {
        self.slot.sandbox()
    }
}

impl Networks {
    /// Checks the pool against the host's routes, removes what a crashed run of the same
    /// data directory left, enables forwarding and installs the nftables table.
    ///
    /// # Errors
    ///
    /// [`NetworkError`] naming the step; a pool collision names both networks.
    pub async fn start(options: &NetworkOptions, data_dir: &Path) -> Result<Self, NetworkError> {
        // Both on every host address, on ports the kernel picks: nftables lets only
        // sandboxes reach them, and only through its redirects.
        let any = SocketAddr::from(([0, 0, 0, 0], 0));
        let dns = DnsForwarder::bind(any, options.dns_upstreams.clone())
            .await
            .map_err(|e| NetworkError::Bind("the DNS forwarder", e))?;
        let dns_port = dns
            .local_addr()
            .map_err(|e| NetworkError::Bind("the DNS forwarder", e))?
            .port();
        let proxy = tokio::net::TcpListener::bind(any)
            .await
            .map_err(|e| NetworkError::Bind("the egress proxy", e))?;
        let proxy_port = proxy
            .local_addr()
            .map_err(|e| NetworkError::Bind("the egress proxy", e))?
            .port();
        let pool = Pool::new(options.pool)?;
        let tag = tag_of(data_dir);
        let ifprefix = format!("e2b{tag}");
        let netlink = Netlink::open()?;
        for stale in netlink.names_with_prefix(&ifprefix).await? {
            netlink.delete(&stale).await?;
        }
        if let Some(route) = netlink.routes_overlapping(pool.net()).await?.first() {
            let interface = match route.interface {
                Some(i) => netlink.name_of(i).await?,
                None => "no interface".to_owned(),
            };
            return Err(NetworkError::PoolCollision {
                pool: pool.net(),
                route: route.destination,
                interface,
            });
        }
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(|e| NetworkError::Host("enabling net.ipv4.ip_forward", e))?;
        let firewall = Firewall {
            table: format!("e2b_local_{tag}"),
            ifprefix,
            pool: pool.net(),
            dns_address: pool.dns_address(),
            dns_port,
            proxy_port,
            unreachable: options.unreachable.clone(),
        };
        firewall.install()?;
        let ca = load_or_make_ca(&data_dir.join(CA_KEY_FILE))?;
        let upstream = upstream_tls(options.upstream_roots.clone())?;
        let policies = Arc::new(Policies::new());
        let forbidden = firewall.forbidden();
        let proxy = tokio::spawn(
            EgressProxy::new()
                .intercept_https(&ca, &upstream)
                .tunnel_tls(&upstream)
                .serve(
                    proxy,
                    policies.clone(),
                    proxy::so_original_dst,
                    move |dst| forbidden.iter().any(|net| net.contains(&dst)),
                ),
        );
        Ok(Networks {
            pool,
            firewall,
            netlink,
            dns: tokio::spawn(dns.serve()),
            proxy,
            policies,
            ca_pem: ca.cert_pem().to_owned(),
        })
    }

    /// The egress proxy's CA certificate (PEM), added to every sandbox's trust store.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The nameserver of every sandbox's `/etc/resolv.conf`.
    pub fn dns_address(&self) -> std::net::Ipv4Addr {
        self.pool.dns_address()
    }

    /// Gives the sandbox behind `netns` an address and its rules; what its owner should know
    /// about its network (an `egressProxy` failing) goes to `log`. On failure everything
    /// made is removed.
    ///
    /// # Errors
    ///
    /// [`PoolError::Exhausted`], or the failing step.
    pub async fn attach(
        &self,
        netns: BorrowedFd<'_>,
        rules: &EgressRules,
        log: SandboxLogger,
    ) -> Result<SandboxNetwork, NetworkError> {
        let slot = self.pool.take()?;
        let ifname = format!("{}{}", self.firewall.ifprefix, slot.index());
        let net = SandboxNetwork {
            slot,
            ifname,
            state: tokio::sync::Mutex::new(NetState::default()),
        };
        match self.connect(&net, netns, rules, log).await {
            Ok(()) => Ok(net),
            Err(e) => {
                self.detach(&net).await;
                Err(e)
            }
        }
    }

    async fn connect(
        &self,
        net: &SandboxNetwork,
        netns: BorrowedFd<'_>,
        rules: &EgressRules,
        log: SandboxLogger,
    ) -> Result<(), NetworkError> {
        // Rules first: no packet leaves before they hold.
        self.update(net, rules).await?;
        self.policies.set_logger(net.address(), log);
        self.netlink.add_veth(&net.ifname, netns, net.slot).await?;
        Netlink::open_in(netns)?.address_sandbox(net.slot).await?;
        Ok(())
    }

    /// Replaces the sandbox's rules in one nftables transaction.
    ///
    /// # Errors
    ///
    /// nft's refusal; the old rules then still hold.
    pub async fn update(
        &self,
        net: &SandboxNetwork,
        rules: &EgressRules,
    ) -> Result<(), NetworkError> {
        let mut state = net.state.lock().await;
        if state.detached {
            return Ok(());
        }
        self.apply(net.slot, &mut state, firewall_rules(rules))
            .await?;
        // Also cuts the proxied connections the new rules deny.
        self.policies.set(net.address(), Arc::new(rules.clone()));
        Ok(())
    }

    /// Applies `rules` in place of `state.rules`; the caller holds the sandbox's lock, so
    /// updates and the detach are applied one at a time.
    async fn apply(
        &self,
        slot: Slot,
        state: &mut NetState,
        rules: SandboxRules,
    ) -> Result<(), NetworkError> {
        let previous = state.rules.clone();
        let firewall = self.firewall.clone();
        let next = rules.clone();
        tokio::task::spawn_blocking(move || {
            firewall.apply_sandbox(slot.index(), slot.sandbox(), &next, &previous)
        })
        .await
        .map_err(|e| NetworkError::Host("running nft", std::io::Error::other(e)))??;
        state.rules = rules;
        Ok(())
    }

    /// Removes the sandbox's interface, rules and connection tracking entries, and gives
    /// its address back; later updates do nothing. Best effort: every step runs even if one
    /// fails (logged).
    pub async fn detach(&self, net: &SandboxNetwork) {
        let mut state = net.state.lock().await;
        if state.detached {
            return;
        }
        state.detached = true;
        self.policies.remove(net.address());
        if let Err(e) = self.netlink.delete(&net.ifname).await {
            tracing::warn!(interface = %net.ifname, error = %e, "removing a sandbox's veth");
        }
        if let Err(e) = self
            .apply(net.slot, &mut state, SandboxRules::default())
            .await
        {
            tracing::warn!(address = %net.address(), error = %e, "removing a sandbox's rules");
        }
        forget_connections(net.address()).await;
        self.pool.give_back(net.slot);
    }

    /// Stops the DNS forwarder and removes the nftables table (at shutdown, after every
    /// sandbox was detached).
    pub fn shutdown(&self) {
        self.dns.abort();
        self.proxy.abort();
        self.firewall.uninstall();
    }
}

/// Where the egress proxy's CA key is kept, in the data directory: the same CA across
/// restarts, so restored sandboxes keep trusting it.
const CA_KEY_FILE: &str = "egress-ca.key";

fn load_or_make_ca(path: &Path) -> Result<InterceptCa, NetworkError> {
    let fail =
        |e: &dyn std::fmt::Display| NetworkError::Ca(path.display().to_string(), e.to_string());
    match std::fs::read_to_string(path) {
        Ok(pem) => InterceptCa::from_key_pem(&pem).map_err(|e| fail(&e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let ca = InterceptCa::generate().map_err(|e| fail(&e))?;
            // A secret: readable by the server only, written before anyone could open it.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| fail(&e))?;
            f.write_all(ca.key_pem().as_bytes()).map_err(|e| fail(&e))?;
            Ok(ca)
        }
        Err(e) => Err(fail(&e)),
    }
}

/// How the egress proxy verifies destinations it terminates TLS for: the host's roots and
/// `extra`.
fn upstream_tls(
    extra: Vec<rustls::pki_types::CertificateDer<'static>>,
) -> Result<rustls::ClientConfig, NetworkError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let fail = |e: rustls::Error| NetworkError::Ca("the host's roots".into(), e.to_string());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(fail)?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(fail)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// What nftables enforces of `rules`: addresses (names are the proxy's).
fn firewall_rules(rules: &EgressRules) -> SandboxRules {
    SandboxRules {
        allowed: rules.allowed_cidrs().to_vec(),
        denied: rules.denied_cidrs().to_vec(),
        proxied: rules.needs_proxy(),
        tunneled: rules.egress_proxy().is_some(),
    }
}

/// Deletes the connection tracking entries of a sandbox's address, so that NAT state of a
/// killed sandbox never applies to a later one.
async fn forget_connections(addr: std::net::Ipv4Addr) {
    let out = tokio::process::Command::new(firewall::tool("conntrack"))
        .args(["--delete", "--orig-src", &addr.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .await;
    match out {
        // Exit 1 with "0 flow entries have been deleted": nothing to forget.
        Ok(out) if out.status.success() || out.status.code() == Some(1) => {}
        Ok(out) => tracing::warn!(
            address = %addr,
            stderr = %String::from_utf8_lossy(&out.stderr).trim(),
            "conntrack --delete failed"
        ),
        Err(e) => {
            tracing::warn!(address = %addr, error = %e, "running conntrack (install the conntrack package)")
        }
    }
}

/// Four hex digits naming this server's interfaces and table: the same data directory
/// gives the same tag (so a restart finds what a crash left), another one another tag.
fn tag_of(data_dir: &Path) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..2])
}
