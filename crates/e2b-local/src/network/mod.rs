//! Sandbox networks: a veth pair and a `/30` per sandbox, NAT out of the host, and E2B's
//! egress rules enforced by nftables (addresses) and the egress proxy (names).
//!
//! How a packet leaves a sandbox, and where each rule is enforced, is in
//! `docs/network.md`. This module owns the plumbing; [`rules`] validates E2B's rules,
//! [`firewall`] writes the nftables table, [`link`] talks netlink, [`pool`] hands out
//! addresses, [`dns`] forwards the sandboxes' DNS queries.

pub mod dns;
pub mod firewall;
pub mod link;
pub mod pool;
pub mod rules;

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::Mutex;

use ipnet::Ipv4Net;

use firewall::{Firewall, FirewallError, SandboxRules};
use link::{LinkError, Netlink};
use pool::{Pool, PoolError, Slot};

/// The default address pool: 16,384 sandboxes, in a block home and office networks, Docker
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
            dns_upstreams: nameservers(&text),
        })
    }
}

/// The `nameserver` lines of a `resolv.conf`, in order, on port 53 (IPv6 link-local
/// servers, which need a zone, are skipped).
pub fn nameservers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
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
}

/// The server's sandbox networks.
#[derive(Debug)]
pub struct Networks {
    pool: Pool,
    firewall: Firewall,
    netlink: Netlink,
    services: ServiceSockets,
}

/// The sockets the DNS forwarder and the egress proxy serve on: bound to all of the host's
/// addresses on ports the kernel picks, and reachable only from sandboxes (nftables drops
/// the rest, and sandboxes reach them only through the redirects).
#[derive(Debug)]
struct ServiceSockets {
    dns_udp: std::net::UdpSocket,
    dns_tcp: std::net::TcpListener,
    proxy: std::net::TcpListener,
}

impl ServiceSockets {
    fn bind() -> Result<Self, NetworkError> {
        let any = SocketAddr::from(([0, 0, 0, 0], 0));
        let proxy = std::net::TcpListener::bind(any)
            .map_err(|e| NetworkError::Bind("the egress proxy", e))?;
        // DNS needs one port for both UDP and TCP: take a free UDP port, then its TCP twin.
        let mut last = None;
        for _ in 0..16 {
            let dns_udp = std::net::UdpSocket::bind(any)
                .map_err(|e| NetworkError::Bind("the DNS forwarder (udp)", e))?;
            let port = dns_udp
                .local_addr()
                .map_err(|e| NetworkError::Bind("the DNS forwarder (udp)", e))?
                .port();
            match std::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))) {
                Ok(dns_tcp) => {
                    return Ok(ServiceSockets {
                        dns_udp,
                        dns_tcp,
                        proxy,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(NetworkError::Bind(
            "the DNS forwarder (tcp)",
            last.unwrap_or_else(|| std::io::Error::other("no port free for both udp and tcp")),
        ))
    }

    fn dns_port(&self) -> u16 {
        self.dns_udp.local_addr().map_or(0, |a| a.port())
    }

    fn proxy_port(&self) -> u16 {
        self.proxy.local_addr().map_or(0, |a| a.port())
    }
}

/// One sandbox's network, live while the sandbox is.
#[derive(Debug)]
pub struct SandboxNetwork {
    slot: Slot,
    ifname: String,
    rules: Mutex<SandboxRules>,
}

impl SandboxNetwork {
    /// The sandbox's address.
    pub fn address(&self) -> std::net::Ipv4Addr {
        self.slot.sandbox()
    }

    /// The host-side interface.
    pub fn host_interface(&self) -> &str {
        &self.ifname
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
        let services = ServiceSockets::bind()?;
        let dns_port = services.dns_port();
        let proxy_port = services.proxy_port();
        let pool = Pool::new(options.pool)?;
        let tag = tag_of(data_dir);
        let ifprefix = format!("e2b{tag}");
        let netlink = Netlink::open()?;
        for stale in netlink.names_with_prefix(&ifprefix).await? {
            netlink.delete(&stale).await?;
        }
        for route in netlink.routes_overlapping(pool.net()).await? {
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
        };
        firewall.install()?;
        Ok(Networks {
            pool,
            firewall,
            netlink,
            services,
        })
    }

    /// The nameserver of every sandbox's `/etc/resolv.conf`.
    pub fn dns_address(&self) -> std::net::Ipv4Addr {
        self.pool.dns_address()
    }

    /// Gives the sandbox behind `netns` an address and its rules. On failure everything
    /// made is removed.
    ///
    /// # Errors
    ///
    /// [`PoolError::Exhausted`], or the failing step.
    pub async fn attach(
        &self,
        netns: BorrowedFd<'_>,
        rules: SandboxRules,
    ) -> Result<SandboxNetwork, NetworkError> {
        let slot = self.pool.take()?;
        let ifname = format!("{}{}", self.firewall.ifprefix, slot.index());
        let net = SandboxNetwork {
            slot,
            ifname,
            rules: Mutex::new(SandboxRules::default()),
        };
        match self.connect(&net, netns, rules).await {
            Ok(()) => Ok(net),
            Err(e) => {
                self.detach(net).await;
                Err(e)
            }
        }
    }

    async fn connect(
        &self,
        net: &SandboxNetwork,
        netns: BorrowedFd<'_>,
        rules: SandboxRules,
    ) -> Result<(), NetworkError> {
        // Rules first: no packet leaves before they hold.
        self.update(net, rules).await?;
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
        rules: SandboxRules,
    ) -> Result<(), NetworkError> {
        let previous = net
            .rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let firewall = self.firewall.clone();
        let addr = net.slot.sandbox();
        let index = net.slot.index();
        let next = rules.clone();
        tokio::task::spawn_blocking(move || firewall.apply_sandbox(index, addr, &next, &previous))
            .await
            .map_err(|e| NetworkError::Host("running nft", std::io::Error::other(e)))??;
        *net.rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = rules;
        Ok(())
    }

    /// Removes the sandbox's interface, rules and connection tracking entries, and gives
    /// its address back. Best effort: every step runs even if one fails (logged).
    pub async fn detach(&self, net: SandboxNetwork) {
        if let Err(e) = self.netlink.delete(&net.ifname).await {
            tracing::warn!(interface = %net.ifname, error = %e, "removing a sandbox's veth");
        }
        if let Err(e) = self.update(&net, SandboxRules::default()).await {
            tracing::warn!(address = %net.address(), error = %e, "removing a sandbox's rules");
        }
        forget_connections(net.address()).await;
        self.pool.give_back(net.slot);
    }

    /// Removes the nftables table (at shutdown, after every sandbox was detached).
    pub fn shutdown(&self) {
        self.firewall.uninstall();
    }

    /// How many sandboxes have an address.
    pub fn in_use(&self) -> usize {
        self.pool.in_use()
    }
}

/// Deletes the connection tracking entries of a sandbox's address, so that NAT state of a
/// killed sandbox never applies to a later one.
async fn forget_connections(addr: std::net::Ipv4Addr) {
    let out = tokio::process::Command::new("conntrack")
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
