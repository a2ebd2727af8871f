//! The envd role: the server's own executable re-run inside a sandbox as its envd.
//!
//! The control plane spawns every sandbox with [`InitProgram::self_exe`] and the environment
//! variable [`ROLE_ENV`]`=`[`ENVD_ROLE`]; the process then serves envd's library on
//! [`envd::DEFAULT_PORT`] inside the sandbox's network namespace. `main` (and, in embedding
//! programs, the `embed` feature's pre-main hook) calls [`run_role_if_requested`] first.
//!
//! [`InitProgram::self_exe`]: crate::isolation::InitProgram::self_exe

use std::process::ExitCode;

/// Environment variable selecting a hidden role of the executable.
pub const ROLE_ENV: &str = "E2B_LOCAL_ROLE";
/// Value of [`ROLE_ENV`] that runs envd.
pub const ENVD_ROLE: &str = "envd";
/// Environment variable carrying the sandbox id into the envd role.
pub const SANDBOX_ID_ENV: &str = "E2B_SANDBOX_ID";
/// Environment variable carrying the template id into the envd role.
pub const TEMPLATE_ID_ENV: &str = "E2B_TEMPLATE_ID";

/// Runs the runtime's helper roles (argv\[1\]), or the envd or code-interpreter role
/// ([`ROLE_ENV`]) when requested and returns their exit code; `None` for a normal start. Call
/// it first thing in `main`, before any thread is started.
pub fn run_role_if_requested() -> Option<ExitCode> {
    if let Some(code) = crate::isolation::run_helper_if_requested() {
        return Some(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    }
    let role = std::env::var_os(ROLE_ENV)?;
    if role == ENVD_ROLE {
        return Some(run_envd());
    }
    if role == crate::code_interpreter_role::CODE_INTERPRETER_ROLE {
        return Some(crate::code_interpreter_role::run_code_interpreter());
    }
    None
}

/// Serves envd until the process is killed. Logs go to stderr (the sandbox's log file, read
/// back by the logs endpoints) without colours, one line per event.
pub fn run_envd() -> ExitCode {
    let fail = |phase: &str, e: &dyn std::fmt::Display| -> ExitCode {
        eprintln!("envd: {phase} failed: {e}");
        ExitCode::FAILURE
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .try_init();
    // One thread: an idle sandbox should cost as little host memory as possible; blocking
    // work still goes to tokio's blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail("runtime", &e),
    };
    let config = envd::Config {
        sandbox_id: std::env::var(SANDBOX_ID_ENV).ok(),
        template_id: std::env::var(TEMPLATE_ID_ENV).ok(),
        ..envd::Config::default()
    };
    runtime.block_on(async move {
        // Before envd listens: a create returns once envd answers.
        crate::code_interpreter_role::start_if_marked().await;
        let addr = std::net::SocketAddr::new(config.listen, config.port);
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => return fail("bind", &format!("{addr}: {e}")),
        };
        tracing::info!(%addr, version = envd::ENVD_VERSION, "envd started");
        // Normally inherited from the helper already; logged once when the host denies it.
        envd::process::protect_from_oom();
        // TCP_NODELAY: streamed process events are small writes that would otherwise wait
        // for the proxy's delayed ACK.
        use axum::serve::ListenerExt as _;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = envd::Envd::new(&config).router();
        match axum::serve(listener, app).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("serve", &e),
        }
    })
}

/// The pre-main hook of the `embed` feature: in a program that embeds the server (e.g. through
/// the SDK's `local` feature), the runtime re-executes *that* program as its helper and as
/// envd, whose `main` is not ours. This runs before `main` and takes over the process when a
/// role is requested.
#[cfg(feature = "embed")]
#[ctor::ctor]
fn embed_role_hook() {
    if let Some(code) = crate::isolation::run_helper_if_requested() {
        std::process::exit(code);
    }
    if std::env::var_os(ROLE_ENV).is_some() {
        std::process::exit(match run_role_if_requested() {
            Some(ExitCode::SUCCESS) => 0,
            Some(_) => 1,
            None => return,
        });
    }
}
