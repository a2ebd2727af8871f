//! The process supervisor: spawning as a user (with or without a PTY), output fan-out with
//! back-pressure, signals, stdin, exit retention.
//!
//! Each process has one reader task per output (stdout and stderr, or the PTY master). A
//! reader sends every chunk to every current subscriber and waits for each to take it, so a
//! slow subscriber slows the process (its pipe fills) instead of losing output; with no
//! subscriber the chunk is dropped, never buffered. After every reader has finished the
//! process is reaped and its end is sent to the subscribers and kept for 30 s.

mod pty;
mod spawn;
mod sys;

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use e2b_envd::ConnectError;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::state::lock;
use crate::users::User;

pub use pty::PtySize;

/// Largest data event for pipes.
pub const STD_CHUNK: usize = 32 * 1024;
/// Largest data event for a PTY.
pub const PTY_CHUNK: usize = 16 * 1024;
/// How long an exit stays available to `Connect`.
pub const EXIT_RETENTION: Duration = Duration::from_secs(30);
/// Events a subscriber may have queued before the readers wait for it.
const SUBSCRIBER_QUEUE: usize = 16;
/// The `oom_score_adj` every process envd starts (commands and PTYs) gets, as upstream's
/// children do: raising a score needs no privilege, so at the memory limit the OOM killer
/// picks a user process before envd (0, or [`ENVD_OOM_SCORE_ADJ`]) and the sandbox's init.
pub const USER_OOM_SCORE_ADJ: &str = "100";
/// The `oom_score_adj` envd asks for itself ([`protect_from_oom`]), upstream's
/// `OOMScoreAdjust=-1000`: never the OOM killer's choice.
pub const ENVD_OOM_SCORE_ADJ: &str = "-1000";

/// Lowers envd's own `oom_score_adj` to [`ENVD_OOM_SCORE_ADJ`]. That needs
/// `CAP_SYS_RESOURCE` (or a parent that set it with the capability); without it the score
/// stays where it was and this logs one warning, while the processes envd starts still get
/// [`USER_OOM_SCORE_ADJ`] and so are chosen first. Call it once at start-up.
pub fn protect_from_oom() {
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", ENVD_OOM_SCORE_ADJ) {
        tracing::warn!(
            "could not lower envd's oom_score_adj to {ENVD_OOM_SCORE_ADJ} ({e}; needs \
             CAP_SYS_RESOURCE): envd keeps its score, the processes it starts get \
             {USER_OOM_SCORE_ADJ} and are killed first at the memory limit"
        );
    }
}

/// How a process ended (`EndEvent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndInfo {
    /// Exit code; -1 when killed by a signal.
    pub exit_code: i32,
    /// Whether it exited (rather than being killed by a signal).
    pub exited: bool,
    /// Go's `ProcessState.String()`, e.g. `exit status 1`, `signal: killed`.
    pub status: String,
    /// Set (to the status text) when the process did not exit with 0.
    pub error: Option<String>,
}

/// Go's names for signals (`syscall.Signal.String()` on Linux).
fn signal_name(sig: i32) -> String {
    let s = match sig {
        1 => "hangup",
        2 => "interrupt",
        3 => "quit",
        4 => "illegal instruction",
        5 => "trace/breakpoint trap",
        6 => "aborted",
        7 => "bus error",
        8 => "floating point exception",
        9 => "killed",
        10 => "user defined signal 1",
        11 => "segmentation fault",
        12 => "user defined signal 2",
        13 => "broken pipe",
        14 => "alarm clock",
        15 => "terminated",
        16 => "stack fault",
        17 => "child exited",
        18 => "continued",
        19 => "stopped (signal)",
        20 => "stopped",
        21 => "stopped (tty input)",
        22 => "stopped (tty output)",
        23 => "urgent I/O condition",
        24 => "CPU time limit exceeded",
        25 => "file size limit exceeded",
        26 => "virtual timer expired",
        27 => "profiling timer expired",
        28 => "window changed",
        29 => "I/O possible",
        30 => "power failure",
        31 => "bad system call",
        n => return format!("signal {n}"),
    };
    s.to_owned()
}

impl EndInfo {
    /// Maps a wait status the way Go's `os.ProcessState` renders it.
    pub fn from_status(st: std::process::ExitStatus) -> Self {
        if let Some(code) = st.code() {
            let status = format!("exit status {code}");
            Self {
                exit_code: code,
                exited: true,
                error: (code != 0).then(|| status.clone()),
                status,
            }
        } else {
            let sig = st.signal().unwrap_or(0);
            let mut status = format!("signal: {}", signal_name(sig));
            if st.core_dumped() {
                status.push_str(" (core dumped)");
            }
            Self {
                exit_code: -1,
                exited: false,
                error: Some(status.clone()),
                status,
            }
        }
    }
}

/// An event of a process's stream (keepalives are added by the RPC layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The process started.
    Start {
        /// Its pid.
        pid: u32,
    },
    /// Bytes from stdout.
    Stdout(Bytes),
    /// Bytes from stderr.
    Stderr(Bytes),
    /// Bytes from the PTY.
    Pty(Bytes),
    /// The process ended; always the last event.
    End(EndInfo),
}

/// The process as requested (`ProcessConfig`), reported by `List`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcConfig {
    /// Program.
    pub cmd: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Request environment.
    pub envs: HashMap<String, String>,
    /// Requested working directory.
    pub cwd: Option<String>,
}

/// Everything `Start` needs.
#[derive(Debug, Clone, Default)]
pub struct StartSpec {
    /// The process.
    pub config: ProcConfig,
    /// Resolved working directory.
    pub cwd: PathBuf,
    /// PTY size, for a terminal process.
    pub pty: Option<PtySize>,
    /// Optional tag for `Connect`/selectors.
    pub tag: Option<String>,
    /// `stdin` flag: unset or true gives a pipe.
    pub stdin: Option<bool>,
    /// When to SIGKILL the process (the Start RPC's deadline).
    pub deadline: Option<Instant>,
}

/// Which process an RPC addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// By pid.
    Pid(u32),
    /// By tag.
    Tag(String),
}

impl Selector {
    fn not_found(&self) -> ConnectError {
        match self {
            Selector::Pid(p) => ConnectError::not_found(format!("process with pid {p} not found")),
            Selector::Tag(t) => ConnectError::not_found(format!("process with tag {t} not found")),
        }
    }
}

/// Input for a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Bytes for the stdin pipe.
    Stdin(Bytes),
    /// Bytes for the PTY.
    Pty(Bytes),
}

#[derive(Default)]
struct Subs {
    senders: Vec<mpsc::Sender<Event>>,
    end: Option<EndInfo>,
}

/// One supervised process.
pub struct Proc {
    /// Its pid.
    pub pid: u32,
    /// As requested.
    pub config: ProcConfig,
    /// Its tag.
    pub tag: Option<String>,
    stdin: tokio::sync::Mutex<Option<pipe::Sender>>,
    pty: Option<pty::Master>,
    subs: Mutex<Subs>,
    /// Set to true to make the readers stop (SendSignal, deadline).
    out_cancel: watch::Sender<bool>,
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proc")
            .field("pid", &self.pid)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

/// A subscriber's view of a process: `start`, data, then `end`.
#[derive(Debug)]
pub struct Subscription {
    first: Option<Event>,
    last: Option<Event>,
    rx: Option<mpsc::Receiver<Event>>,
}

impl Subscription {
    /// The next event; `None` after `end`.
    pub async fn next(&mut self) -> Option<Event> {
        if let Some(e) = self.first.take() {
            return Some(e);
        }
        if let Some(rx) = &mut self.rx {
            match rx.recv().await {
                Some(e) => {
                    if matches!(e, Event::End(_)) {
                        self.rx = None;
                    }
                    return Some(e);
                }
                None => self.rx = None,
            }
        }
        self.last.take()
    }
}

impl Proc {
    fn subscribe(&self) -> Subscription {
        let mut s = lock(&self.subs);
        if let Some(end) = &s.end {
            return Subscription {
                first: Some(Event::Start { pid: self.pid }),
                last: Some(Event::End(end.clone())),
                rx: None,
            };
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        s.senders.push(tx);
        Subscription {
            first: Some(Event::Start { pid: self.pid }),
            last: None,
            rx: Some(rx),
        }
    }

    async fn fanout(&self, ev: Event) {
        let senders = {
            let s = lock(&self.subs);
            if s.senders.is_empty() {
                return;
            }
            s.senders.clone()
        };
        let mut gone = false;
        for tx in &senders {
            gone |= tx.send(ev.clone()).await.is_err();
        }
        if gone {
            lock(&self.subs).senders.retain(|s| !s.is_closed());
        }
    }

    /// Sends SIGTERM or SIGKILL to the process itself (not its group), after telling the
    /// readers to stop so the end is reported even if children keep the pipes open.
    ///
    /// # Errors
    /// `internal` when `kill(2)` fails.
    pub fn signal(&self, sig: nix::sys::signal::Signal) -> Result<(), ConnectError> {
        self.out_cancel.send_replace(true);
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid).unwrap_or(i32::MAX));
        nix::sys::signal::kill(pid, sig)
            .map_err(|e| ConnectError::internal(format!("error sending signal: {e}")))
    }

    /// Writes input.
    ///
    /// # Errors
    /// `internal` when the process has no such input (or it was closed) or the write fails.
    pub async fn write(&self, input: Input) -> Result<(), ConnectError> {
        match input {
            Input::Stdin(b) => {
                if self.pty.is_some() {
                    return Err(ConnectError::internal(
                        "error writing to stdin: stdin not enabled or closed",
                    ));
                }
                let mut guard = self.stdin.lock().await;
                let Some(stdin) = guard.as_mut() else {
                    return Err(ConnectError::internal(
                        "error writing to stdin: stdin not enabled or closed",
                    ));
                };
                stdin
                    .write_all(&b)
                    .await
                    .map_err(|e| ConnectError::internal(format!("error writing to stdin: {e}")))
            }
            Input::Pty(b) => match &self.pty {
                Some(p) => p
                    .write_all(&b)
                    .await
                    .map_err(|e| ConnectError::internal(format!("error writing to tty: {e}"))),
                None => Err(ConnectError::internal(
                    "error writing to tty: tty not assigned to process",
                )),
            },
        }
    }

    /// Closes the stdin pipe (EOF for the process); a no-op without stdin.
    ///
    /// # Errors
    /// `unknown` for a PTY process.
    pub async fn close_stdin(&self) -> Result<(), ConnectError> {
        if self.pty.is_some() {
            return Err(ConnectError::unknown(
                "cannot close stdin for PTY process — send Ctrl+D (0x04) instead",
            ));
        }
        self.stdin.lock().await.take();
        Ok(())
    }

    /// Resizes the PTY.
    ///
    /// # Errors
    /// `internal` without a PTY or when the ioctl fails.
    pub fn resize(&self, size: PtySize) -> Result<(), ConnectError> {
        match &self.pty {
            Some(p) => p
                .resize(size)
                .map_err(|e| ConnectError::internal(format!("error resizing tty: {e}"))),
            None => Err(ConnectError::internal(
                "error resizing tty: tty not assigned to process",
            )),
        }
    }
}

struct Retained {
    pid: u32,
    tag: Option<String>,
    end: EndInfo,
    at: Instant,
}

#[derive(Default)]
struct Table {
    live: HashMap<u32, Arc<Proc>>,
    ended: Vec<Retained>,
}

impl Table {
    fn purge(&mut self) {
        let now = Instant::now();
        self.ended
            .retain(|r| now.duration_since(r.at) < EXIT_RETENTION);
    }
}

/// The process table.
#[derive(Default)]
pub struct Processes {
    table: Mutex<Table>,
}

impl std::fmt::Debug for Processes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processes")
            .field("live", &lock(&self.table).live.len())
            .finish()
    }
}

/// What `Connect` found.
#[derive(Debug)]
pub enum Found {
    /// A live process.
    Live(Arc<Proc>),
    /// A process that ended less than 30 s ago.
    Ended {
        /// Its pid.
        pid: u32,
        /// Its end.
        end: EndInfo,
    },
}

impl Processes {
    /// Live processes (for `List`).
    pub fn list(&self) -> Vec<Arc<Proc>> {
        let mut v: Vec<_> = lock(&self.table).live.values().cloned().collect();
        v.sort_by_key(|p| p.pid);
        v
    }

    /// Finds a live process by pid or tag (every process is searched for a tag).
    ///
    /// # Errors
    /// `not_found` "process with pid N not found" / "process with tag T not found".
    pub fn get(&self, sel: &Selector) -> Result<Arc<Proc>, ConnectError> {
        let t = lock(&self.table);
        let found = match sel {
            Selector::Pid(pid) => t.live.get(pid).cloned(),
            Selector::Tag(tag) => t
                .live
                .values()
                .find(|p| p.tag.as_deref() == Some(tag.as_str()))
                .cloned(),
        };
        found.ok_or_else(|| sel.not_found())
    }

    /// Finds a live or recently ended process.
    ///
    /// # Errors
    /// `not_found` as [`Processes::get`].
    pub fn find(&self, sel: &Selector) -> Result<Found, ConnectError> {
        if let Ok(p) = self.get(sel) {
            return Ok(Found::Live(p));
        }
        let mut t = lock(&self.table);
        t.purge();
        let r = t.ended.iter().rev().find(|r| match sel {
            Selector::Pid(pid) => r.pid == *pid,
            Selector::Tag(tag) => r.tag.as_deref() == Some(tag.as_str()),
        });
        match r {
            Some(r) => Ok(Found::Ended {
                pid: r.pid,
                end: r.end.clone(),
            }),
            None => Err(sel.not_found()),
        }
    }

    /// Subscribes to a live or recently ended process (`Connect`).
    ///
    /// # Errors
    /// `not_found`.
    pub fn connect(&self, sel: &Selector) -> Result<Subscription, ConnectError> {
        match self.find(sel)? {
            Found::Live(p) => Ok(p.subscribe()),
            Found::Ended { pid, end } => Ok(Subscription {
                first: Some(Event::Start { pid }),
                last: Some(Event::End(end)),
                rx: None,
            }),
        }
    }

    fn retire(&self, proc_: &Arc<Proc>, end: EndInfo) {
        let mut t = lock(&self.table);
        if t.live
            .get(&proc_.pid)
            .is_some_and(|p| Arc::ptr_eq(p, proc_))
        {
            t.live.remove(&proc_.pid);
        }
        t.purge();
        t.ended.push(Retained {
            pid: proc_.pid,
            tag: proc_.tag.clone(),
            end,
            at: Instant::now(),
        });
    }

    /// Starts a process as `user` with `env` (already in envd's order) and returns the
    /// caller's subscription, registered before any output can be produced.
    ///
    /// # Errors
    /// `invalid_argument` when the cwd is missing or the spawn fails, `internal` for pipe or
    /// PTY allocation failures.
    pub fn start(
        self: &Arc<Self>,
        spec: StartSpec,
        user: &User,
        env: Vec<(String, String)>,
        switch_user: bool,
    ) -> Result<Subscription, ConnectError> {
        let cwd = checked_cwd(&spec.cwd)?;
        let creds = switch_user.then(|| creds_of(user));
        let stdio = Stdio::open(spec.pty, spec.stdin.unwrap_or(true))?;
        let child = spawn_child(&spec.config, &env, &cwd, creds, &stdio)?;
        let ParentEnds {
            pty,
            stdin,
            stdout,
            stderr,
        } = stdio.into_parent_ends();
        let pid = child.id();
        tracing::debug!(pid, cmd = %spec.config.cmd, user = %user.name, pty = spec.pty.is_some(), "process started");
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let proc_ = Arc::new(Proc {
            pid,
            config: spec.config,
            tag: spec.tag,
            stdin: tokio::sync::Mutex::new(stdin),
            pty,
            subs: Mutex::new(Subs::default()),
            out_cancel: cancel_tx,
        });
        let sub = proc_.subscribe();
        self.register(&proc_);
        if let Some(deadline) = spec.deadline {
            kill_at_deadline(&proc_, deadline);
        }
        self.supervise(proc_, child, stdout, stderr, cancel_rx);
        Ok(sub)
    }

    /// Makes `proc_` live, replacing any retained end with its pid or its tag.
    fn register(&self, proc_: &Arc<Proc>) {
        let mut t = lock(&self.table);
        t.ended
            .retain(|r| r.pid != proc_.pid && (proc_.tag.is_none() || r.tag != proc_.tag));
        t.live.insert(proc_.pid, proc_.clone());
    }

    /// Spawns the task that forwards the output of `proc_`, then reaps `child` and sends its
    /// end to the subscribers.
    fn supervise(
        self: &Arc<Self>,
        proc_: Arc<Proc>,
        child: spawn::Child,
        stdout: Option<pipe::Receiver>,
        stderr: Option<pipe::Receiver>,
        cancel_rx: watch::Receiver<bool>,
    ) {
        let procs = self.clone();
        tokio::spawn(async move {
            // The readers share this task: when the process exits, the end follows its
            // output without a hop to another task.
            let pty_output = async {
                if proc_.pty.is_some() {
                    pump_pty(proc_.clone(), cancel_rx.clone()).await;
                }
            };
            let stdout = async {
                if let Some(out) = stdout {
                    pump(proc_.clone(), out, Event::Stdout, cancel_rx.clone()).await;
                }
            };
            let stderr = async {
                if let Some(err) = stderr {
                    pump(proc_.clone(), err, Event::Stderr, cancel_rx.clone()).await;
                }
            };
            tokio::join!(pty_output, stdout, stderr);
            let end = match child.wait().await {
                Ok(st) => EndInfo::from_status(st),
                Err(e) => {
                    let status = format!("error waiting for process: {e}");
                    EndInfo {
                        exit_code: -1,
                        exited: false,
                        error: Some(status.clone()),
                        status,
                    }
                }
            };
            tracing::debug!(pid = proc_.pid, status = %end.status, "process ended");
            // Record the end first so a Connect racing with us gets it from the cache.
            let senders = {
                let mut s = lock(&proc_.subs);
                s.end = Some(end.clone());
                std::mem::take(&mut s.senders)
            };
            procs.retire(&proc_, end.clone());
            for tx in senders {
                let _ = tx.send(Event::End(end.clone())).await;
            }
        });
    }
}

/// `cwd` as the C string the spawn needs, once it is known to be a directory.
fn checked_cwd(cwd: &Path) -> Result<CString, ConnectError> {
    if !cwd.is_dir() {
        return Err(ConnectError::invalid_argument(format!(
            "cwd '{}' does not exist",
            cwd.display()
        )));
    }
    CString::new(cwd.as_os_str().as_encoded_bytes()).map_err(|_| {
        ConnectError::invalid_argument(format!("cwd '{}' contains a NUL byte", cwd.display()))
    })
}

/// The credentials a process runs with as `user`: its uid, its primary group first, then
/// its other groups.
fn creds_of(user: &User) -> spawn::Creds {
    let mut groups = vec![user.gid];
    groups.extend(user.groups.iter().copied().filter(|g| *g != user.gid));
    spawn::Creds {
        uid: user.uid,
        gid: user.gid,
        groups,
    }
}

/// The standard streams of a new process, both ends, until it has been spawned.
enum Stdio {
    /// A terminal: the slave is the child's stdin, stdout and stderr.
    Pty {
        master: pty::Master,
        slave: pty::Slave,
    },
    /// Pipes, except a stdin the request turned off (`/dev/null`). Our ends are tokio pipes
    /// already, so that nothing can fail between starting the process and supervising it.
    Pipes {
        stdin: Option<pipe::Sender>,
        stdout: pipe::Receiver,
        stderr: pipe::Receiver,
        child: [OwnedFd; 3],
    },
}

/// Our ends of a spawned process's streams.
struct ParentEnds {
    pty: Option<pty::Master>,
    stdin: Option<pipe::Sender>,
    stdout: Option<pipe::Receiver>,
    stderr: Option<pipe::Receiver>,
}

impl Stdio {
    /// A PTY of `pty`'s size, or pipes (with a stdin pipe when `stdin`).
    fn open(pty: Option<PtySize>, stdin: bool) -> Result<Self, ConnectError> {
        if let Some(size) = pty {
            let (master, slave) = pty::open(size)
                .map_err(|e| ConnectError::invalid_argument(format!("error starting pty: {e}")))?;
            return Ok(Stdio::Pty { master, slave });
        }
        let (child_in, stdin) = if stdin {
            let (r, w) = cloexec_pipe()?;
            let sender = pipe::Sender::from_owned_fd(w)
                .map_err(|e| ConnectError::internal(format!("error setting up stdin: {e}")))?;
            (r, Some(sender))
        } else {
            let null = std::fs::File::open("/dev/null")
                .map(OwnedFd::from)
                .and_then(spawn::above_stdio)
                .map_err(|e| ConnectError::internal(format!("error opening /dev/null: {e}")))?;
            (null, None)
        };
        let receiver = |fd| {
            pipe::Receiver::from_owned_fd(fd)
                .map_err(|e| ConnectError::internal(format!("error setting up output: {e}")))
        };
        let (r, child_out) = cloexec_pipe()?;
        let stdout = receiver(r)?;
        let (r, child_err) = cloexec_pipe()?;
        let stderr = receiver(r)?;
        Ok(Stdio::Pipes {
            stdin,
            stdout,
            stderr,
            child: [child_in, child_out, child_err],
        })
    }

    /// The child's stdin, stdout and stderr.
    fn child_fds(&self) -> [BorrowedFd<'_>; 3] {
        match self {
            Stdio::Pty { slave, .. } => [slave.as_fd(); 3],
            Stdio::Pipes { child, .. } => [child[0].as_fd(), child[1].as_fd(), child[2].as_fd()],
        }
    }

    /// Our ends, closing the child's: our copy of a PTY slave must go, or the master never
    /// sees EOF.
    fn into_parent_ends(self) -> ParentEnds {
        match self {
            Stdio::Pty { master, slave: _ } => ParentEnds {
                pty: Some(master),
                stdin: None,
                stdout: None,
                stderr: None,
            },
            Stdio::Pipes {
                stdin,
                stdout,
                stderr,
                child: _,
            } => ParentEnds {
                pty: None,
                stdin,
                stdout: Some(stdout),
                stderr: Some(stderr),
            },
        }
    }
}

/// A close-on-exec pipe, both ends above the standard descriptors: `(read, write)`.
fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd), ConnectError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ConnectError::internal(format!("error creating pipe: {e}")))?;
    let above = |fd| {
        spawn::above_stdio(fd)
            .map_err(|e| ConnectError::internal(format!("error creating pipe: {e}")))
    };
    Ok((above(r)?, above(w)?))
}

/// Spawns `config`'s command on `stdio`. A program that cannot be executed is run through
/// `/bin/sh` instead, which then exits 127 or 126 with sh's message.
fn spawn_child(
    config: &ProcConfig,
    env: &[(String, String)],
    cwd: &CString,
    creds: Option<spawn::Creds>,
    stdio: &Stdio,
) -> Result<spawn::Child, ConnectError> {
    let command = |program: &str, args: &[String]| -> Result<spawn::Command, ConnectError> {
        let mut cmd = spawn::Command::new(program, args, env, cwd.clone())
            .map_err(|e| ConnectError::invalid_argument(format!("error starting process: {e}")))?;
        cmd.creds = creds.clone();
        cmd.pty = matches!(stdio, Stdio::Pty { .. });
        Ok(cmd)
    };
    let fds = stdio.child_fds();
    match command(&config.cmd, &config.args)?.spawn(fds) {
        Ok(child) => Ok(child),
        Err(e)
            if e.stage == spawn::Stage::Exec
                && matches!(
                    e.error.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
        {
            // Upstream runs every command through /bin/sh, so a program that cannot be
            // executed is exit 127/126 with sh's message, not an RPC error: keep that.
            let mut args = vec![
                "-c".to_owned(),
                "exec \"$@\"".to_owned(),
                "--".to_owned(),
                config.cmd.clone(),
            ];
            args.extend(config.args.iter().cloned());
            command("/bin/sh", &args)?
                .spawn(fds)
                .map_err(|e| ConnectError::invalid_argument(format!("error starting process: {e}")))
        }
        Err(e) => Err(ConnectError::invalid_argument(format!(
            "error starting process: {e}"
        ))),
    }
}

/// Kills `proc_` with SIGKILL at `deadline` unless it has ended by then.
fn kill_at_deadline(proc_: &Arc<Proc>, deadline: Instant) {
    let weak = Arc::downgrade(proc_);
    tokio::spawn(async move {
        tokio::time::sleep_until(deadline).await;
        if let Some(p) = weak.upgrade()
            && lock(&p.subs).end.is_none()
        {
            let _ = p.signal(nix::sys::signal::Signal::SIGKILL);
        }
    });
}

/// The environment of a new process in envd's order: PATH (envd's), HOME, USER, LOGNAME,
/// then the global variables, then the request's; later duplicates win.
pub fn build_env(
    user: &User,
    globals: &BTreeMap<String, String>,
    request: &HashMap<String, String>,
) -> Vec<(String, String)> {
    let path = std::env::var("PATH").unwrap_or_else(|_| {
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()
    });
    let mut env = vec![
        ("PATH".to_owned(), path),
        ("HOME".to_owned(), user.home.to_string_lossy().into_owned()),
        ("USER".to_owned(), user.name.clone()),
        ("LOGNAME".to_owned(), user.name.clone()),
    ];
    env.extend(globals.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.extend(request.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

async fn pump<R: AsyncRead + Unpin>(
    proc_: Arc<Proc>,
    mut r: R,
    wrap: fn(Bytes) -> Event,
    mut cancel: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; STD_CHUNK];
    loop {
        let n = tokio::select! {
            biased;
            _ = cancel.wait_for(|c| *c) => return,
            r = r.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        let ev = wrap(Bytes::copy_from_slice(&buf[..n]));
        tokio::select! {
            biased;
            _ = cancel.wait_for(|c| *c) => return,
            () = proc_.fanout(ev) => {}
        }
    }
}

async fn pump_pty(proc_: Arc<Proc>, mut cancel: watch::Receiver<bool>) {
    let Some(master) = &proc_.pty else { return };
    let mut buf = vec![0u8; PTY_CHUNK];
    loop {
        let n = tokio::select! {
            biased;
            _ = cancel.wait_for(|c| *c) => return,
            r = master.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        let ev = Event::Pty(Bytes::copy_from_slice(&buf[..n]));
        tokio::select! {
            biased;
            _ = cancel.wait_for(|c| *c) => return,
            () = proc_.fanout(ev) => {}
        }
    }
}
