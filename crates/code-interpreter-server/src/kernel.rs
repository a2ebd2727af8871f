//! One context: its kernel process, the ZeroMQ sockets to it (shell and IOPub), and the task
//! that runs the context's executions one at a time.
//!
//! The kernel is started from its kernelspec with a connection file of five Unix sockets in
//! a directory of its own and a fresh HMAC key, in its own process group (so an interrupt or a kill reaches what it
//! started, as `jupyter_client` does), as the configured user, in the context's directory.
//! A kernel that exits is noticed through its process, never through a timeout: the running
//! execution gets an error event and the kernel is started again, as Jupyter's server does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use zeromq::{DealerSocket, Socket as _, SocketRecv as _, SocketSend as _, SubSocket};

use crate::Config;
use crate::env_vars;
use crate::events::{Event, ResultData};
use crate::kernelspec::KernelSpec;
use crate::wire::{Incoming, Signer};

/// An execution queued on a context.
pub(crate) struct Job {
    pub(crate) code: String,
    pub(crate) env_vars: BTreeMap<String, String>,
    /// The caller's envd access token, for reading the sandbox's global env vars.
    pub(crate) access_token: Option<String>,
    /// Where the events go; dropping the receiver (the client left) interrupts the kernel.
    pub(crate) events: mpsc::Sender<Event>,
}

/// What a context is asked outside of executions; served even while one runs.
pub(crate) enum Control {
    Restart(oneshot::Sender<Result<(), String>>),
    Shutdown(oneshot::Sender<()>),
}

/// The way to a context's task.
#[derive(Clone)]
pub(crate) struct ContextHandle {
    pub(crate) jobs: mpsc::Sender<Job>,
    pub(crate) control: mpsc::Sender<Control>,
}

/// A running kernel and our sockets to it.
struct Kernel {
    child: Child,
    pid: i32,
    shell: DealerSocket,
    iopub: SubSocket,
    signer: Signer,
    session: String,
    /// Its sockets and connection file.
    dir: PathBuf,
}

/// The kernel's five channels (shell, iopub, stdin, control, heartbeat) are Unix sockets
/// `<dir>/kernel-<n>`: no port to race other kernels for, and faster than loopback TCP.
const CHANNELS: [u16; 5] = [1, 2, 3, 4, 5];

/// Numbers each kernel's runtime directory (short: a Unix socket path has 108 bytes).
static LAUNCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// "exited with code 1" / "was killed by signal 9 (SIGKILL)".
fn describe_exit(status: std::io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(sig)) => {
                let name = nix::sys::signal::Signal::try_from(sig)
                    .map(|s| s.as_str().to_owned())
                    .unwrap_or_else(|_| "unknown".to_owned());
                format!("was killed by signal {sig} ({name})")
            }
            _ => "exited".to_owned(),
        },
        Err(e) => format!("could not be waited for: {e}"),
    }
}

/// The kernel's own directory (its sockets and connection file), owned by the kernel's user.
fn make_runtime_dir(dir: &Path, config: &Config) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::create_dir_all(&config.runtime_dir)?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    if let Some(user) = &config.kernel_user {
        std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))?;
    }
    Ok(())
}

fn write_connection_file(path: &Path, content: &Value, config: &Config) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content.to_string().as_bytes())?;
    if let Some(user) = &config.kernel_user {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))?;
    }
    Ok(())
}

impl Kernel {
    /// Starts the kernel and waits until it answers `kernel_info_request` on shell and
    /// publishes on IOPub (so no output of the first execution is missed by the subscriber).
    async fn launch(spec: &KernelSpec, cwd: &Path, config: &Config) -> Result<Self, String> {
        let dir = config.runtime_dir.join(format!(
            "k{}",
            LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        make_runtime_dir(&dir, config).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let socket = |n: u16| dir.join(format!("kernel-{n}"));
        let key = uuid::Uuid::new_v4().to_string();
        let connection = json!({
            "shell_port": CHANNELS[0], "iopub_port": CHANNELS[1], "stdin_port": CHANNELS[2],
            "control_port": CHANNELS[3], "hb_port": CHANNELS[4], "ip": dir.join("kernel"), "key": key,
            "transport": "ipc", "signature_scheme": "hmac-sha256", "kernel_name": spec.name,
        });
        let connection_file = dir.join("connection.json");
        write_connection_file(&connection_file, &connection, config)
            .map_err(|e| format!("writing {}: {e}", connection_file.display()))?;

        let argv = spec.command(&connection_file);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .envs(config.kernel_env.iter().map(|(k, v)| (k, v)))
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            // ipykernel exits when this process goes away.
            .env("JPY_PARENT_PID", std::process::id().to_string())
            .current_dir(cwd)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(user) = &config.kernel_user {
            cmd.uid(user.uid)
                .gid(user.gid)
                .env("HOME", &user.home)
                .env("USER", &user.name)
                .env("LOGNAME", &user.name);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting the {} kernel ({}): {e}", spec.name, argv[0]))?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        let mut kernel_guard = KillOnError {
            pid,
            dir: dir.clone(),
            armed: true,
        };

        let deadline = Instant::now() + config.kernel_start_timeout;
        let timed_out = || {
            format!(
                "the {} kernel did not start within {:?}",
                spec.name, config.kernel_start_timeout
            )
        };
        // zmq.rs backs off for seconds when a connect is refused: wait for the kernel's
        // sockets ourselves first.
        for channel in [CHANNELS[0], CHANNELS[1]] {
            loop {
                if tokio::net::UnixStream::connect(socket(channel))
                    .await
                    .is_ok()
                {
                    break;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "the {} kernel {} while starting",
                        spec.name,
                        describe_exit(Ok(status))
                    ));
                }
                if Instant::now() > deadline {
                    return Err(timed_out());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let endpoint = |channel: u16| format!("ipc://{}", socket(channel).display());
        let mut shell = DealerSocket::new();
        let mut iopub = SubSocket::new();
        let connect = async {
            shell.connect(&endpoint(CHANNELS[0])).await?;
            iopub.subscribe("").await?;
            iopub.connect(&endpoint(CHANNELS[1])).await
        };
        match tokio::time::timeout_at(deadline, connect).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("connecting to the {} kernel: {e}", spec.name)),
            Err(_) => return Err(timed_out()),
        }

        let signer = Signer::new(&key);
        let session = uuid::Uuid::new_v4().to_string();
        let (mut replied, mut published) = (false, false);
        let send_info_request = async |shell: &mut DealerSocket| {
            let (_, request) = signer.request(&session, "kernel_info_request", &json!({}));
            shell
                .send(request)
                .await
                .map_err(|e| format!("sending to the {} kernel: {e}", spec.name))
        };
        send_info_request(&mut shell).await?;
        let mut nudge = tokio::time::interval_at(
            Instant::now() + Duration::from_millis(100),
            Duration::from_millis(100),
        );
        while !(replied && published) {
            tokio::select! {
                m = shell.recv() => {
                    if let Ok(m) = m.map_err(|e| e.to_string()).and_then(|m| signer.decode(m).map_err(|e| e.to_string()))
                        && m.header.msg_type == "kernel_info_reply"
                    {
                        replied = true;
                    }
                }
                m = iopub.recv() => published |= m.is_ok(),
                // Until IOPub has delivered something the subscription may not be in
                // place yet: each request makes the kernel publish a status again.
                _ = nudge.tick(), if !published => send_info_request(&mut shell).await?,
                status = child.wait() => {
                    return Err(format!("the {} kernel {} while starting", spec.name, describe_exit(status)));
                }
                _ = tokio::time::sleep_until(deadline) => return Err(timed_out()),
            }
        }
        kernel_guard.armed = false;
        Ok(Kernel {
            child,
            pid,
            shell,
            iopub,
            signer,
            session,
            dir,
        })
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        if self.pid > 0 {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pid), signal);
        }
    }

    /// Stops the kernel and everything it started, and waits for it.
    async fn kill(mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills a half-started kernel's process group and removes its directory when its launch
/// fails part-way.
struct KillOnError {
    pid: i32,
    dir: PathBuf,
    armed: bool,
}

impl Drop for KillOnError {
    fn drop(&mut self) {
        if self.armed {
            if self.pid > 0 {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(self.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// How one request to the kernel ended.
enum Outcome {
    /// Idle again with its reply read.
    Done,
    /// The kernel process exited (how).
    Died(String),
    /// A restart was asked for meanwhile.
    Restart(oneshot::Sender<Result<(), String>>),
    /// The context is being removed (or the server is going away).
    Shutdown(Option<oneshot::Sender<()>>),
}

/// The task owning one context's kernel.
struct Actor {
    id: String,
    language: String,
    spec: KernelSpec,
    cwd: PathBuf,
    config: Arc<Config>,
    kernel: Option<Kernel>,
    /// The sandbox's global env vars (from envd, read once).
    globals: Option<BTreeMap<String, String>>,
    /// Whether the current kernel has the globals set.
    globals_applied: bool,
}

/// Starts a context's kernel and its task; returns once the kernel answers.
pub(crate) async fn start(
    id: String,
    language: String,
    spec: KernelSpec,
    cwd: PathBuf,
    config: Arc<Config>,
) -> Result<ContextHandle, String> {
    let mut actor = Actor {
        id,
        language,
        spec,
        cwd,
        config,
        kernel: None,
        globals: None,
        globals_applied: false,
    };
    actor.launch().await?;
    // Queued executions wait here; the HTTP side sends keepalives meanwhile.
    let (jobs_tx, jobs) = mpsc::channel(64);
    let (control_tx, control) = mpsc::channel(8);
    tokio::spawn(actor.run(jobs, control));
    Ok(ContextHandle {
        jobs: jobs_tx,
        control: control_tx,
    })
}

impl Actor {
    async fn launch(&mut self) -> Result<(), String> {
        self.kernel = Some(Kernel::launch(&self.spec, &self.cwd, &self.config).await?);
        self.globals_applied = false;
        Ok(())
    }

    async fn stop(&mut self) {
        if let Some(k) = self.kernel.take() {
            k.kill().await;
        }
    }

    async fn restart(&mut self) -> Result<(), String> {
        self.stop().await;
        self.launch().await
    }

    /// After the kernel died: start another, logging when that fails too (the next
    /// execution tries again and reports it).
    async fn relaunch_after(&mut self, how: &str) {
        tracing::warn!(context = %self.id, "the kernel {how}; starting it again");
        self.stop().await;
        if let Err(e) = self.launch().await {
            tracing::error!(context = %self.id, "restarting the kernel: {e}");
        }
    }

    async fn run(mut self, mut jobs: mpsc::Receiver<Job>, mut control: mpsc::Receiver<Control>) {
        loop {
            let died = async {
                match self.kernel.as_mut() {
                    Some(k) => k.child.wait().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                c = control.recv() => match c {
                    Some(Control::Restart(done)) => {
                        let _ = done.send(self.restart().await);
                    }
                    Some(Control::Shutdown(done)) => {
                        self.stop().await;
                        let _ = done.send(());
                        return;
                    }
                    None => return self.stop().await,
                },
                job = jobs.recv() => match job {
                    Some(job) => {
                        if !self.execute(job, &mut control).await {
                            return;
                        }
                    }
                    None => return self.stop().await,
                },
                status = died => {
                    let how = describe_exit(status);
                    self.relaunch_after(&how).await;
                }
            }
        }
    }

    /// Runs one job; `false` when the context was shut down meanwhile.
    async fn execute(&mut self, job: Job, control: &mut mpsc::Receiver<Control>) -> bool {
        if job.events.is_closed() {
            return true;
        }
        if self.kernel.is_none()
            && let Err(e) = self.launch().await
        {
            let _ = job
                .events
                .send(Event::server_error(
                    "KernelStartError",
                    format!("the context's kernel could not be started: {e}"),
                ))
                .await;
            return true;
        }
        if !self.globals_applied {
            if self.globals.is_none() {
                self.globals = Some(self.read_globals(job.access_token.as_deref()).await);
            }
            let code = env_vars::set_code(
                &self.language,
                self.globals.as_ref().unwrap_or(&BTreeMap::new()),
            );
            if !code.is_empty() {
                self.run_silent(&code).await;
            }
            self.globals_applied = true;
        }
        if !job.env_vars.is_empty() {
            self.run_silent(&env_vars::set_code(&self.language, &job.env_vars))
                .await;
        }
        let outcome = self
            .run_code(&job.code, false, Some(&job.events), Some(control))
            .await;
        let events = job.events;
        match outcome {
            Outcome::Done => {
                drop(events);
                if !job.env_vars.is_empty() {
                    let globals = self.globals.clone().unwrap_or_default();
                    self.run_silent(&env_vars::reset_code(
                        &self.language,
                        &job.env_vars,
                        &globals,
                    ))
                    .await;
                }
                true
            }
            Outcome::Died(how) => {
                let _ = events
                    .send(Event::server_error(
                        "ContextRestarting",
                        format!("the context's kernel {how} during the execution; it is restarted and its state is lost"),
                    ))
                    .await;
                drop(events);
                self.relaunch_after(&how).await;
                true
            }
            Outcome::Restart(done) => {
                let _ = events
                    .send(Event::server_error(
                        "ContextRestarting",
                        "Context was restarted",
                    ))
                    .await;
                drop(events);
                let _ = done.send(self.restart().await);
                true
            }
            Outcome::Shutdown(done) => {
                let _ = events
                    .send(Event::server_error(
                        "UnexpectedEndOfExecution",
                        "Connection to the execution was closed before the execution was finished",
                    ))
                    .await;
                drop(events);
                self.stop().await;
                if let Some(done) = done {
                    let _ = done.send(());
                }
                false
            }
        }
    }

    /// Runs code for its side effects (env vars); what it prints is dropped, an error is
    /// logged.
    async fn run_silent(&mut self, code: &str) {
        match self.run_code(code, true, None, None).await {
            Outcome::Done => {}
            Outcome::Died(how) => self.relaunch_after(&how).await,
            Outcome::Restart(_) | Outcome::Shutdown(_) => {}
        }
    }

    /// The sandbox's env vars from envd's `/envs` (E2B's server reads them the same way);
    /// none when there is no envd or it does not answer.
    async fn read_globals(&self, token: Option<&str>) -> BTreeMap<String, String> {
        let Some(url) = &self.config.envd_url else {
            return BTreeMap::new();
        };
        match crate::envd::global_env_vars(url, token).await {
            Ok(vars) => vars,
            Err(e) => {
                tracing::warn!(context = %self.id, "reading the sandbox's env vars from envd: {e}");
                BTreeMap::new()
            }
        }
    }

    /// Sends one `execute_request` and follows it until the kernel is idle and has replied,
    /// streaming events to `events`.
    async fn run_code(
        &mut self,
        code: &str,
        silent: bool,
        events: Option<&mpsc::Sender<Event>>,
        mut control: Option<&mut mpsc::Receiver<Control>>,
    ) -> Outcome {
        let Some(kernel) = self.kernel.as_mut() else {
            return Outcome::Died("is not running".to_owned());
        };
        let content = json!({
            "code": code, "silent": silent, "store_history": !silent,
            "user_expressions": {}, "allow_stdin": false, "stop_on_error": true,
        });
        let (msg_id, request) = kernel
            .signer
            .request(&kernel.session, "execute_request", &content);
        if let Err(e) = kernel.shell.send(request).await {
            // The kernel's process is what tells whether it is alive; a send failing means
            // it is going away.
            let status = tokio::time::timeout(Duration::from_secs(2), kernel.child.wait()).await;
            return Outcome::Died(match status {
                Ok(s) => describe_exit(s),
                Err(_) => format!("stopped answering ({e})"),
            });
        }
        let mut state = Progress::default();
        while !(state.idle && state.replied) {
            let client_gone = async {
                match events {
                    Some(tx) if !state.interrupted => tx.closed().await,
                    _ => std::future::pending().await,
                }
            };
            let asked = async {
                match control.as_mut() {
                    Some(c) => c.recv().await,
                    None => std::future::pending().await,
                }
            };
            let mut out = Vec::new();
            tokio::select! {
                m = kernel.iopub.recv() => {
                    if let Ok(m) = m {
                        match kernel.signer.decode(m) {
                            Ok(m) if m.parent_msg_id.as_deref() == Some(msg_id.as_str()) => state.iopub(m, &mut out),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(context = %self.id, "dropped an IOPub message: {e}"),
                        }
                    }
                }
                m = kernel.shell.recv() => {
                    if let Ok(m) = m {
                        match kernel.signer.decode(m) {
                            Ok(m) if m.parent_msg_id.as_deref() == Some(msg_id.as_str()) => state.shell(m, &mut out),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(context = %self.id, "dropped a shell message: {e}"),
                        }
                    }
                }
                () = client_gone => {
                    // The client left (or timed out): stop the code so the context is free.
                    kernel.signal(nix::sys::signal::Signal::SIGINT);
                    state.interrupted = true;
                }
                status = kernel.child.wait() => return Outcome::Died(describe_exit(status)),
                c = asked => return match c {
                    Some(Control::Restart(done)) => Outcome::Restart(done),
                    Some(Control::Shutdown(done)) => Outcome::Shutdown(Some(done)),
                    None => Outcome::Shutdown(None),
                },
            }
            if let Some(tx) = events {
                for event in out {
                    if tx.send(event).await.is_err() && !state.interrupted {
                        kernel.signal(nix::sys::signal::Signal::SIGINT);
                        state.interrupted = true;
                    }
                }
            }
        }
        Outcome::Done
    }
}

/// Where one execution is, from the messages parented to its request.
#[derive(Default)]
struct Progress {
    idle: bool,
    replied: bool,
    errored: bool,
    interrupted: bool,
}

impl Progress {
    fn iopub(&mut self, m: Incoming, out: &mut Vec<Event>) {
        let mut content = m.content;
        let text = |c: &mut Value, key: &str| match c.get_mut(key).map(Value::take) {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        match m.header.msg_type.as_str() {
            "stream" => {
                let timestamp = m.header.date;
                let body = text(&mut content, "text");
                match content.get("name").and_then(Value::as_str) {
                    Some("stdout") => out.push(Event::Stdout {
                        text: body,
                        timestamp,
                    }),
                    Some("stderr") => out.push(Event::Stderr {
                        text: body,
                        timestamp,
                    }),
                    _ => {}
                }
            }
            "display_data" => out.push(Event::Result(Box::new(ResultData::from_bundle(
                content.get_mut("data").map(Value::take).unwrap_or_default(),
                false,
            )))),
            "execute_result" => out.push(Event::Result(Box::new(ResultData::from_bundle(
                content.get_mut("data").map(Value::take).unwrap_or_default(),
                true,
            )))),
            "error" => self.error(&mut content, out),
            "execute_input" => {
                if let Some(n) = content.get("execution_count").and_then(Value::as_u64) {
                    out.push(Event::NumberOfExecutions { execution_count: n });
                }
            }
            "status" if content.get("execution_state").and_then(Value::as_str) == Some("idle") => {
                self.idle = true;
            }
            _ => {}
        }
    }

    fn shell(&mut self, m: Incoming, out: &mut Vec<Event>) {
        if m.header.msg_type != "execute_reply" {
            return;
        }
        self.replied = true;
        let mut content = m.content;
        match content.get("status").and_then(Value::as_str) {
            Some("error") => self.error(&mut content, out),
            Some("abort" | "aborted") => {
                out.push(Event::server_error(
                    "ExecutionAborted",
                    "Execution was aborted",
                ));
            }
            _ => {}
        }
    }

    /// The first error of an execution (IOPub's `error` and the reply carry the same one).
    fn error(&mut self, content: &mut Value, out: &mut Vec<Event>) {
        if self.errored {
            return;
        }
        self.errored = true;
        let field = |c: &Value, key: &str| {
            c.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let traceback = content
            .get("traceback")
            .and_then(Value::as_array)
            .map(|lines| lines.iter().filter_map(Value::as_str).collect::<String>())
            .unwrap_or_default();
        out.push(Event::Error {
            name: field(content, "ename"),
            value: field(content, "evalue"),
            traceback,
        });
    }
}
