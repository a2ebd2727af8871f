//! `envd`: the in-sandbox daemon binary. All logic lives in the library.

#[cfg(target_os = "linux")]
fn main() {
    use std::io::Write as _;
    use std::net::SocketAddr;

    use clap::Parser;

    /// E2B-compatible in-sandbox daemon.
    #[derive(Debug, Parser)]
    #[command(name = "envd", disable_version_flag = true)]
    struct Args {
        /// Port to listen on; 0 picks a free port.
        #[arg(long, default_value_t = envd::DEFAULT_PORT)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        listen: std::net::IpAddr,
        /// Default user until /init sets one.
        #[arg(long)]
        default_user: Option<String>,
        /// Default working directory until /init sets one.
        #[arg(long)]
        workdir: Option<std::path::PathBuf>,
        /// Value of E2B_SANDBOX_ID for processes.
        #[arg(long, env = "E2B_SANDBOX_ID")]
        sandbox_id: Option<String>,
        /// Value of E2B_TEMPLATE_ID for processes.
        #[arg(long, env = "E2B_TEMPLATE_ID")]
        template_id: Option<String>,
        /// Print the envd version and exit.
        #[arg(long)]
        version: bool,
    }

    let args = Args::parse();
    if args.version {
        println!("{}", envd::ENVD_VERSION);
        return;
    }

    // Phase: logging (stderr, RUST_LOG or info).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let fail = |phase: &str, e: &dyn std::fmt::Display| -> ! {
        eprintln!("envd: {phase} failed: {e}");
        std::process::exit(1);
    };

    // Phase: runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("runtime", &e));

    let config = envd::Config {
        listen: args.listen,
        port: args.port,
        default_user: args.default_user,
        workdir: args.workdir,
        sandbox_id: args.sandbox_id,
        template_id: args.template_id,
        ..envd::Config::default()
    };

    runtime.block_on(async move {
        // Phase: bind.
        let addr = SocketAddr::new(config.listen, config.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| fail("bind", &format!("{addr}: {e}")));
        let local = listener.local_addr().unwrap_or_else(|e| fail("bind", &e));
        println!("envd listening on {local}");
        let _ = std::io::stdout().flush();
        tracing::info!(%local, version = envd::ENVD_VERSION, "envd started");

        // Phase: OOM protection (best effort, logged when denied).
        envd::process::protect_from_oom();

        // Phase: serve.
        if let Err(e) = envd::serve(listener, config).await {
            fail("serve", &e);
        }
    });
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("envd: only Linux is supported");
    std::process::exit(1);
}
