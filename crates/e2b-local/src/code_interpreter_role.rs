//! The code-interpreter role: the server's own executable re-run inside a code-interpreter
//! sandbox as E2B's code-interpreter server on port [`code_interpreter_server::DEFAULT_PORT`]
//! (49999), with [`ROLE_ENV`]`=`[`CODE_INTERPRETER_ROLE`].
//!
//! envd starts it, before envd itself listens, when the sandbox's root has [`MARKER`],
//! which the `code-interpreter-v1` template (and so every template built from it) carries,
//! and waits until it listens (tens of milliseconds), so a create never returns a sandbox
//! whose 49999 is closed. The server starts the default Python context's kernel at once, in
//! the background: the kernel's start-up is off the create path and the first `/execute`
//! finds it warm or waits only for the rest of it. Kernels run as `user`, in `/home/user`;
//! the sandbox's env vars come from envd's `/envs` as in E2B.

use std::process::ExitCode;
use std::time::Duration;

use crate::envd_role::ROLE_ENV;

/// Value of [`ROLE_ENV`] that runs the code-interpreter server.
pub const CODE_INTERPRETER_ROLE: &str = "code-interpreter";
/// The file that makes envd start the code-interpreter server in a sandbox.
pub const MARKER: &str = "/usr/local/share/e2b/code-interpreter";
/// The account kernels run as.
const KERNEL_USER: &str = "user";

/// The server's settings inside a sandbox.
fn config() -> code_interpreter_server::Config {
    let mut config = code_interpreter_server::Config {
        envd_url: Some(format!("http://127.0.0.1:{}", envd::DEFAULT_PORT)),
        ..code_interpreter_server::Config::default()
    };
    match envd::AccountFiles::default().lookup(KERNEL_USER) {
        Ok(user) => {
            config.default_cwd = user.home.clone();
            config.kernel_user = Some(code_interpreter_server::KernelUser {
                name: user.name,
                uid: user.uid,
                gid: user.gid,
                home: user.home,
            });
        }
        Err(e) => tracing::warn!("kernels run as root: {e}"),
    }
    config.kernel_env.push(("SHELL".into(), "/bin/bash".into()));
    config
}

/// Serves the code-interpreter API until the process is killed. Logs go to stderr (the
/// sandbox's log).
pub fn run_code_interpreter() -> ExitCode {
    let fail = |phase: &str, e: &dyn std::fmt::Display| -> ExitCode {
        eprintln!("code-interpreter: {phase} failed: {e}");
        ExitCode::FAILURE
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .try_init();
    // One thread, as envd: an idle sandbox should cost little host memory.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail("runtime", &e),
    };
    runtime.block_on(async {
        let server = code_interpreter_server::Server::new(config());
        let addr =
            std::net::SocketAddr::from(([0, 0, 0, 0], code_interpreter_server::DEFAULT_PORT));
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => return fail("bind", &format!("{addr}: {e}")),
        };
        tracing::info!(%addr, "code-interpreter server started");
        server.warm_default_context();
        // TCP_NODELAY: events are small writes that would otherwise wait for the proxy's
        // delayed ACK.
        use axum::serve::ListenerExt as _;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        match axum::serve(listener, server.router()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail("serve", &e),
        }
    })
}

/// How long envd waits for the code-interpreter server to listen before serving anyway.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// Called by envd before it listens: when the sandbox is a code-interpreter one
/// ([`MARKER`]), runs this executable as the code-interpreter role (again, a second after
/// it should exit) and waits until port 49999 accepts, so that a create, which returns once
/// envd answers, never hands out a sandbox whose 49999 is not open yet. The kernel's own
/// start-up is not waited for.
pub(crate) async fn start_if_marked() {
    if !std::path::Path::new(MARKER).is_file() {
        return;
    }
    tokio::spawn(async {
        loop {
            // Our executable, outside the sandbox's root: by `/proc/self/exe`, or through
            // the host's loader as envd itself was started.
            let (program, args) =
                crate::isolation::host_runtime::self_invocation("e2b-code-interpreter");
            let child = tokio::process::Command::new(program)
                .args(args)
                .env_clear()
                .env(ROLE_ENV, CODE_INTERPRETER_ROLE)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn();
            match child {
                Ok(mut child) => match child.wait().await {
                    Ok(status) => tracing::warn!("the code-interpreter server exited ({status})"),
                    Err(e) => tracing::warn!("waiting for the code-interpreter server: {e}"),
                },
                Err(e) => tracing::error!("starting the code-interpreter server: {e}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
    let addr = ("127.0.0.1", code_interpreter_server::DEFAULT_PORT);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if tokio::time::Instant::now() > deadline {
            tracing::warn!("the code-interpreter server is not listening after {LISTEN_WAIT:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
