//! The `e2b-local` command line: `serve`, `sandbox list|kill`, `key`,
//! `template list|add|rm|gc`.
//!
//! `sandbox` subcommands talk to a running server over its REST API (the server owns the
//! sandboxes); `key` and `template` read and write the state database directly.

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};

use crate::server::{DEFAULT_LISTEN, Server, default_data_dir};
use crate::state::Store;

/// E2B sandboxes on one Linux machine.
#[derive(Debug, Parser)]
#[command(name = "e2b-local", version)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the control plane and envd routing (prints the variables to export).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = DEFAULT_LISTEN)]
        listen: String,
        /// Data directory (default /var/lib/e2b-local as root, else $XDG_DATA_HOME/e2b-local).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Sandbox domain reported to SDKs (default `localhost:<port>`).
        #[arg(long)]
        domain: Option<String>,
        /// Maximum sandbox lifetime in seconds.
        #[arg(long, default_value_t = 24 * 3600)]
        max_lifetime: u64,
        /// Cgroup parent of all sandboxes.
        #[arg(long, default_value = "e2b-local")]
        cgroup_parent: String,
        /// Most sandboxes alive at once; more creates get 429 (default from the host:
        /// the smaller of RLIMIT_NOFILE / 16 and pid_max / 32).
        #[arg(long)]
        max_sandboxes: Option<usize>,
        /// Most memory the sandboxes' limits may commit, in MiB; more creates get 429
        /// (default 8 × (MemTotal − an eighth of it, at least 512 MiB)).
        #[arg(long)]
        max_memory_mib: Option<u64>,
        /// Disk budget of every sandbox in MiB: a sparse ext4 image on a loop device; a write
        /// past it gets ENOSPC. 0: none (writes go to the data directory's filesystem,
        /// unbounded). At least 16.
        #[arg(long, default_value_t = crate::server::DEFAULT_DISK_MIB, value_parser = parse_disk_mib)]
        disk_mib: u64,
        /// Size of each new volume in MiB: a sparse ext4 image (with a journal) on a loop
        /// device; a write past it gets ENOSPC. At least 16.
        #[arg(long, default_value_t = crate::volumes::DEFAULT_VOLUME_MIB, value_parser = parse_volume_mib)]
        volume_mib: u64,
        /// Sandbox networking: `nat` (an address each, NAT out of the host, E2B's egress
        /// rules) or `none` (loopback only). Rootless mode's `nat` goes through pasta
        /// (package `passt`; needs a fixed --listen port and a usable /dev/net/tun).
        #[arg(long, value_enum, default_value_t = NetworkMode::Nat)]
        network: NetworkMode,
        /// Address pool of sandbox networks (a /30 each), checked against the host's routes.
        #[arg(long, default_value = crate::network::DEFAULT_POOL)]
        network_pool: ipnet::Ipv4Net,
        /// Resolver the sandboxes' DNS queries go to, `IP` or `IP:PORT`; repeat for more
        /// (default: the nameservers of the host's /etc/resolv.conf).
        #[arg(long = "dns-upstream", value_parser = parse_dns_upstream)]
        dns_upstreams: Vec<std::net::SocketAddr>,
        /// What the template `base` is: `host` (made at once from this host's /usr, default)
        /// or `debian` (Debian bookworm with what E2B's base image has, built with mmdebstrap
        /// from Debian's package archive on first use: a few minutes; creates meanwhile get
        /// 503). The `debian` template exists either way.
        #[arg(long, value_enum, default_value_t = BaseMode::Host)]
        base: BaseMode,
        /// Do not add the host's extra CAs (`/usr/local/share/ca-certificates/*.crt`) to every
        /// sandbox's CA bundle, nor point pip and npm at it (by default they are, so that
        /// behind a TLS-intercepting proxy `pip`, `npm` and `apt` work inside too).
        #[arg(long)]
        no_host_cas: bool,
    },
    /// Sandboxes of a running server.
    Sandbox {
        /// What to do.
        #[command(subcommand)]
        action: SandboxAction,
        /// Server URL.
        #[arg(
            long,
            global = true,
            default_value = "http://127.0.0.1:3000",
            env = "E2B_API_URL"
        )]
        api_url: String,
        /// Data directory holding the API key.
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Print the API key (created on first use).
    Key {
        /// Data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Templates.
    Template {
        /// What to do.
        #[command(subcommand)]
        action: TemplateAction,
        /// Data directory.
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
}

/// What rootless mode prints about `--network nat`: what user-mode networking cannot enforce.
pub const ROOTLESS_NETWORK: &str = "sandbox networking in rootless mode goes through pasta: \
     sandboxes' connections leave from sockets of the invoking user (the host's firewall sees \
     that user, not the sandbox); the host's own addresses are refused as they were at \
     start-up (an address the host gains later is reachable); ICMP leaves as pasta's ping \
     sockets only where net.ipv4.ping_group_range allows the user; sandboxes lose their \
     network if pasta dies";

/// What rootless mode prints when it cannot give sandboxes user-mode networking.
pub fn rootless_network_unavailable(reason: &str) -> String {
    format!("sandbox networking: sandboxes have loopback only: {reason}")
}

/// Rootless mode's user-mode networking for `serve --listen listen`, or why there is none.
fn user_mode_network(listen: &str) -> Result<crate::isolation::rootless::UserModeNetwork, String> {
    let addr = listen.parse().map_err(|_| {
        format!("user-mode networking forwards the API port from the host: --listen {listen:?} is not IP:PORT")
    })?;
    crate::isolation::rootless::UserModeNetwork::for_listen(addr).map_err(|e| e.to_string())
}

/// Rootless mode's network options: the host's addresses (through pasta, ordinary
/// destinations) are forbidden, and resolvers on the host's loopback are reached through
/// pasta's DNS forwarding.
fn user_mode_options(options: &mut crate::network::NetworkOptions) {
    use crate::isolation::rootless::{HOST_ADDRESSES_ENV, PASTA_DNS};
    let host = std::env::var(HOST_ADDRESSES_ENV).unwrap_or_default();
    options.unreachable.extend(
        host.split(',')
            .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
            .map(ipnet::Ipv4Net::from),
    );
    for upstream in &mut options.dns_upstreams {
        if upstream.ip().is_loopback() {
            upstream.set_ip(PASTA_DNS.into());
        }
    }
    options.dns_upstreams.dedup();
}

/// `serve --base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BaseMode {
    /// The host-derived template.
    Host,
    /// The `debian` template.
    Debian,
}

/// `serve --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkMode {
    /// A network per sandbox with NAT and egress rules.
    Nat,
    /// Loopback only.
    None,
}

fn parse_disk_mib(s: &str) -> Result<u64, String> {
    let mib: u64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of MiB"))?;
    if mib != 0 && mib < crate::server::MIN_DISK_MIB {
        return Err(format!(
            "{mib} MiB is too small for a disk: give at least {} MiB, or 0 for none",
            crate::server::MIN_DISK_MIB
        ));
    }
    Ok(mib)
}

fn parse_volume_mib(s: &str) -> Result<u64, String> {
    let mib: u64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of MiB"))?;
    if mib < crate::volumes::MIN_VOLUME_MIB {
        return Err(format!(
            "{mib} MiB is too small for a volume: give at least {} MiB",
            crate::volumes::MIN_VOLUME_MIB
        ));
    }
    Ok(mib)
}

fn parse_dns_upstream(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse::<std::net::SocketAddr>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
        .map_err(|_| format!("{s:?} is not an IP address or IP:PORT"))
}

/// `sandbox` subcommands.
#[derive(Debug, Subcommand)]
pub enum SandboxAction {
    /// List running and paused sandboxes.
    List,
    /// Kill a sandbox.
    Kill {
        /// Sandbox ID.
        id: String,
    },
}

/// `template` subcommands.
#[derive(Debug, Subcommand)]
pub enum TemplateAction {
    /// List templates.
    List,
    /// Register a root filesystem directory as a template.
    Add {
        /// Template name (`[a-z0-9._-]+`).
        name: String,
        /// Root filesystem directory (e.g. made with debootstrap).
        #[arg(long)]
        rootfs: PathBuf,
    },
    /// Delete a template (through the running server: its builds, and the layers nothing
    /// else uses).
    Rm {
        /// Template name or id.
        name: String,
        /// Server URL.
        #[arg(long, default_value = "http://127.0.0.1:3000", env = "E2B_API_URL")]
        api_url: String,
    },
    /// Remove the build layers no template uses (the server removes them itself when a
    /// template is deleted and at start-up; this is for a stopped server's data directory).
    Gc,
}

fn fail(phase: &str, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("e2b-local: {phase} failed: {e}");
    ExitCode::FAILURE
}

/// Runs the parsed command line. Call it before any thread is started: as a normal user,
/// `serve` first re-runs itself in a user namespace (rootless mode, see
/// [`rootless`](crate::isolation::rootless)).
pub fn run(cli: Cli) -> ExitCode {
    if matches!(cli.command, Command::Serve { .. })
        && crate::isolation::rootless::needs_user_namespace()
    {
        // Without it the server says why at start-up (`rootless_network_unavailable`).
        let network = match &cli.command {
            Command::Serve {
                network: NetworkMode::Nat,
                listen,
                ..
            } => user_mode_network(listen).ok(),
            _ => None,
        };
        return match crate::isolation::rootless::enter_user_namespace(network.as_ref()) {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(e) => fail("serve", &e),
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail("runtime", &e),
    };
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            domain,
            max_lifetime,
            cgroup_parent,
            max_sandboxes,
            max_memory_mib,
            disk_mib,
            volume_mib,
            network,
            network_pool,
            dns_upstreams,
            base,
            no_host_cas,
        } => {
            let _ = tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .try_init();
            runtime.block_on(async move {
                // Before the server listens: a SIGTERM that comes while start-up is still
                // printing must stop it cleanly, not kill it (the default action).
                let stop = match crate::server::stop_signals() {
                    Ok(stop) => stop,
                    Err(e) => return fail("serve", &e),
                };
                let mut b = Server::builder()
                    .listen(listen.clone())
                    .cgroup_parent(cgroup_parent)
                    .disk_mib(disk_mib)
                    .volume_mib(volume_mib)
                    .debian_base(base == BaseMode::Debian)
                    .trust_host_cas(!no_host_cas)
                    .max_lifetime(std::time::Duration::from_secs(max_lifetime));
                if let Some(d) = data_dir {
                    b = b.data_dir(d);
                }
                if max_sandboxes.is_some() || max_memory_mib.is_some() {
                    let host = crate::lifecycle::Capacity::from_host();
                    b = b.capacity(crate::lifecycle::Capacity {
                        max_sandboxes: max_sandboxes.unwrap_or(host.max_sandboxes),
                        max_memory_bytes: max_memory_mib
                            .map_or(host.max_memory_bytes, |m| m.saturating_mul(1 << 20)),
                    });
                }
                if let Some(d) = domain {
                    b = b.domain(d);
                }
                let rootless = crate::isolation::rootless::in_user_namespace();
                // The bootstrap made the server's network namespace and attached pasta.
                let user_mode = rootless
                    && std::env::var_os(crate::isolation::rootless::HOST_ADDRESSES_ENV).is_some();
                if network == NetworkMode::Nat && (!rootless || user_mode) {
                    let mut options = match crate::network::NetworkOptions::from_host() {
                        Ok(o) => o,
                        Err(e) => return fail("serve", &e),
                    };
                    options.pool = network_pool;
                    if !dns_upstreams.is_empty() {
                        options.dns_upstreams = dns_upstreams;
                    }
                    if user_mode {
                        user_mode_options(&mut options);
                    }
                    b = b.network(options);
                }
                let server = match b.start().await {
                    Ok(s) => s,
                    Err(e) => return fail("serve", &e),
                };
                // What this host cannot do goes to stderr before anything else, so it is
                // never silently skipped.
                if crate::isolation::rootless::in_user_namespace() {
                    eprintln!(
                        "e2b-local: rootless mode: user namespace ids {}",
                        crate::isolation::rootless::describe_uid_map()
                    );
                }
                for u in server.unavailable() {
                    eprintln!("e2b-local: unavailable: {u}");
                }
                if let Some(n) = server.manager().config().capacity.inotify_notice() {
                    tracing::warn!("capacity: {n}");
                }
                if network == NetworkMode::Nat && user_mode {
                    eprintln!("e2b-local: limited: {ROOTLESS_NETWORK}");
                } else if network == NetworkMode::Nat && rootless {
                    let reason = user_mode_network(&listen).err().unwrap_or_else(|| {
                        "the server was not started by e2b-local's rootless bootstrap".into()
                    });
                    eprintln!(
                        "e2b-local: unavailable: {}",
                        rootless_network_unavailable(&reason)
                    );
                }
                let lacks = crate::template::base_lacks(std::path::Path::new("/"));
                let cas = crate::template::trust::host_ca_count();
                if !no_host_cas && cas > 0 {
                    eprintln!(
                        "e2b-local: every sandbox trusts the host's {cas} extra CAs of {} (pip and npm pointed at them); --no-host-cas to stop",
                        crate::template::trust::HOST_CA_DIR
                    );
                }
                if base == BaseMode::Debian {
                    eprintln!(
                        "e2b-local: template base is debian ({})",
                        crate::template::debian::SUITE
                    );
                } else if !lacks.is_empty() {
                    eprintln!(
                        "e2b-local: template base lacks {} (it is made from this host's /usr; E2B's base image has them): serve --base debian has them, see docs/templates.md",
                        lacks.join(", ")
                    );
                }
                // Shell syntax: `eval "$(e2b-local serve ...)"`-friendly output. A reader
                // that stops reading (`| head -3`) must not take the server down: write
                // errors are ignored (println! would panic).
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "# e2b-local serving on {}", server.api_url());
                let _ = writeln!(out, "# data directory: {}", server.data_dir().display());
                let _ = writeln!(out, "# the E2B SDKs need:");
                for (k, v) in server.env_vars() {
                    let _ = writeln!(out, "export {k}={v}");
                }
                let _ = out.flush();
                drop(out);
                stop.await;
                server.shutdown().await;
                ExitCode::SUCCESS
            })
        }
        Command::Key { data_dir } => {
            let dir = data_dir.unwrap_or_else(default_data_dir);
            match open_store(&dir).and_then(|s| s.api_key().map_err(|e| e.to_string())) {
                Ok(k) => {
                    println!("{k}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail("key", &e),
            }
        }
        Command::Template { action, data_dir } => {
            let dir = data_dir.unwrap_or_else(default_data_dir);
            let store = match open_store(&dir) {
                Ok(s) => s,
                Err(e) => return fail("template", &e),
            };
            match action {
                TemplateAction::List => match list_templates(&store, &dir) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail("template list", &e),
                },
                TemplateAction::Gc => {
                    match crate::lifecycle::collect_layers_offline(&store, &dir) {
                        Ok(n) => {
                            println!("removed {n} unused layers");
                            ExitCode::SUCCESS
                        }
                        Err(e) => fail("template gc", &e),
                    }
                }
                TemplateAction::Rm { name, api_url } => {
                    let key = match store.api_key() {
                        Ok(k) => k,
                        Err(e) => return fail("template rm", &e),
                    };
                    let url = format!("{}/templates/{name}", api_url.trim_end_matches('/'));
                    runtime.block_on(async move {
                        match call(http::Method::DELETE, &url, &key).await {
                            Ok((204, _)) => {
                                println!("deleted {name}");
                                ExitCode::SUCCESS
                            }
                            Ok((s, body)) => fail(
                                "template rm",
                                &format!("{s}: {}", String::from_utf8_lossy(&body)),
                            ),
                            Err(e) => fail("template rm", &e),
                        }
                    })
                }
                TemplateAction::Add { name, rootfs } => {
                    if name == crate::template::BASE {
                        return fail("template add", &"the name base is reserved");
                    }
                    let rootfs = std::fs::canonicalize(&rootfs).unwrap_or(rootfs);
                    if let Err(e) = crate::template::Template::from_rootfs(&name, &rootfs) {
                        return fail("template add", &e);
                    }
                    match store.put_template(&name, &rootfs) {
                        Ok(()) => {
                            println!("template {name} -> {}", rootfs.display());
                            ExitCode::SUCCESS
                        }
                        Err(e) => fail("template add", &e),
                    }
                }
            }
        }
        Command::Sandbox {
            action,
            api_url,
            data_dir,
        } => {
            let dir = data_dir.unwrap_or_else(default_data_dir);
            let key = match open_store(&dir).and_then(|s| s.api_key().map_err(|e| e.to_string())) {
                Ok(k) => k,
                Err(e) => return fail("sandbox", &e),
            };
            runtime.block_on(async move {
                match action {
                    SandboxAction::List => {
                        let url = format!("{}/v2/sandboxes", api_url.trim_end_matches('/'));
                        match call(http::Method::GET, &url, &key).await {
                            Ok((200, body)) => {
                                print_list(&body);
                                ExitCode::SUCCESS
                            }
                            Ok((s, body)) => fail(
                                "sandbox list",
                                &format!("{s}: {}", String::from_utf8_lossy(&body)),
                            ),
                            Err(e) => fail("sandbox list", &e),
                        }
                    }
                    SandboxAction::Kill { id } => {
                        let url = format!("{}/sandboxes/{id}", api_url.trim_end_matches('/'));
                        match call(http::Method::DELETE, &url, &key).await {
                            Ok((204, _)) => {
                                println!("killed {id}");
                                ExitCode::SUCCESS
                            }
                            Ok((s, body)) => fail(
                                "sandbox kill",
                                &format!("{s}: {}", String::from_utf8_lossy(&body)),
                            ),
                            Err(e) => fail("sandbox kill", &e),
                        }
                    }
                }
            })
        }
    }
}

/// `template list`: the built-in templates, the built ones with their tags and last build,
/// and the layer store's size.
fn list_templates(store: &Store, dir: &std::path::Path) -> Result<(), String> {
    let rootfs = store.templates().map_err(|e| e.to_string())?;
    let built = store.built_templates().map_err(|e| e.to_string())?;
    let builds = store.builds().map_err(|e| e.to_string())?;
    println!("{:<24} {:<22} {:<10} SOURCE", "NAME", "ID", "STATUS");
    println!(
        "{:<24} {:<22} {:<10} host /usr, /bin, /lib*; filtered /etc",
        "base", "base", "ready"
    );
    for t in rootfs {
        println!(
            "{:<24} {:<22} {:<10} {}",
            t.name,
            t.name,
            "ready",
            t.rootfs.display()
        );
    }
    for t in built {
        let last = builds.iter().rev().find(|b| b.template_id == t.id);
        let status = last.map_or("none".to_owned(), |b| {
            serde_json::to_value(b.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        });
        let tags: Vec<&str> = t.tags.keys().map(String::as_str).collect();
        println!(
            "{:<24} {:<22} {:<10} tags: {}",
            t.name,
            t.id,
            status,
            tags.join(", ")
        );
    }
    let layers = crate::template::layers::Layers::open(dir).map_err(|e| e.to_string())?;
    println!(
        "layers: {} MiB in {}",
        layers.disk_usage() >> 20,
        dir.join("layers").display()
    );
    Ok(())
}

fn open_store(dir: &std::path::Path) -> Result<Store, String> {
    Store::open(dir).map_err(|e| e.to_string())
}

async fn call(method: http::Method, url: &str, key: &str) -> Result<(u16, Bytes), String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("x-api-key", key)
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("{url}: {e}"))?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("{url}: {e} (is `e2b-local serve` running?)"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    Ok((status, body))
}

fn print_list(body: &[u8]) {
    let list: Vec<e2b_api::types::ListedSandbox> = serde_json::from_slice(body).unwrap_or_default();
    println!(
        "{:<22} {:<12} {:<8} {:<26} END",
        "ID", "TEMPLATE", "STATE", "STARTED"
    );
    for s in list {
        println!(
            "{:<22} {:<12} {:<8} {:<26} {}",
            s.sandbox_id,
            s.template_id,
            s.state.to_string(),
            s.started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            s.end_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
}
