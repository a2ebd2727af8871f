//! The processes that build a sandbox and run programs in it.
//!
//! The host server is multi-threaded (tokio), and after `fork` in a multi-threaded process only
//! async-signal-safe work is allowed. So the host never forks to set up namespaces: it spawns
//! a fresh, single-threaded copy of its own executable in a hidden helper role
//! (`e2b-local __sandbox-init` / `__sandbox-exec`), hands it a JSON config on stdin, and the
//! helper does the setup where allocation and file I/O are safe.
//!
//! `__sandbox-init` (see `init_helper` in the source for the ordered steps) `clone`s the sandbox's first
//! process with `CLONE_PARENT`, so the host, not the short-lived helper, is its parent: the
//! host holds a pidfd to it, reaps it, and learns its exit status.
//!
//! Status protocol on the helper's stdout (a pipe): the helper writes `PID <n>`; any step that
//! fails writes `ERR <message>`; the pipe's write end is close-on-exec in the program's
//! process, so end-of-file without `ERR` means the program was exec'd.
#![allow(unsafe_code)]

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::mounts::{self, RootfsPlan};
use super::{caps, namespaces, seccomp};

/// argv\[1\] of the helper that creates a sandbox.
pub const INIT_ROLE: &str = "__sandbox-init";
/// argv\[1\] of the helper that runs a command inside a live sandbox.
pub const EXEC_ROLE: &str = "__sandbox-exec";

/// Default `PATH` for resolving program names inside a sandbox.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which file to execute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Executable {
    /// A host file, opened before `pivot_root` and executed by descriptor (`execveat`), so
    /// it needs no copy in the sandbox. `/proc/self/exe` is the helper's own executable,
    /// i.e. the server binary (how envd runs without an install step).
    Host(PathBuf),
    /// A path inside the sandbox's root; a bare name is looked up in `PATH`.
    Sandbox(PathBuf),
}

/// A program to run, as whom, with what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramSpec {
    /// The file.
    pub exe: Executable,
    /// Full argv, including argv\[0\].
    pub argv: Vec<String>,
    /// The complete environment (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Working directory inside the sandbox.
    pub cwd: PathBuf,
}

/// Config of the `__sandbox-init` helper.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitConfig {
    /// Hostname (the sandbox id).
    pub hostname: String,
    /// Root filesystem plan.
    pub rootfs: RootfsPlan,
    /// The first program.
    pub program: ProgramSpec,
    /// Host file that receives the program's stdout and stderr (`None`: `/dev/null`).
    pub log: Option<PathBuf>,
    /// Set `no_new_privs` (breaks sudo inside).
    pub no_new_privs: bool,
    /// Run a minimal reaping init as pid 1 and the program as its child.
    pub reaper: bool,
    /// Make the init and the program the OOM killer's last choice (`oom_score_adj` -1000;
    /// needs `CAP_SYS_RESOURCE` on the host, see `Runtime::unavailable`).
    pub oom_protected: bool,
    /// The mount namespace to clone the sandbox's from (`isolation/spawn_ns.rs`),
    /// as a path to open; `None`: the helper's own (the host's).
    #[serde(default)]
    pub spawn_ns: Option<PathBuf>,
}

/// Config of the `__sandbox-exec` helper.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecConfig {
    /// Host pid of the sandbox's init.
    pub init_pid: i32,
    /// What to run.
    pub program: ProgramSpec,
    /// Set `no_new_privs`.
    pub no_new_privs: bool,
}

/// Runs a helper role if argv\[1\] names one; returns the exit code, or `None` for a normal
/// start. Call it first thing in `main`, before any thread is started.
pub fn run_helper_if_requested() -> Option<i32> {
    let role = std::env::args_os().nth(1)?;
    if role == OsStr::new(INIT_ROLE) {
        Some(init_helper())
    } else if role == OsStr::new(EXEC_ROLE) {
        Some(exec_helper())
    } else if role == OsStr::new(super::spawn_ns::SPAWN_NS_ROLE) {
        Some(super::spawn_ns::spawn_ns_helper())
    } else {
        None
    }
}

/// The soft limit of open files sandbox programs start with: Linux's default. The server
/// raises its own soft limit to the hard one (it holds descriptors for every sandbox, see
/// `Server::start`); sandboxes do not inherit that.
pub const SANDBOX_NOFILE_SOFT: u64 = 1024;

/// Sanitize first: close every inherited descriptor from 3 up, clear the environment, and
/// put the soft limit of open files back to [`SANDBOX_NOFILE_SOFT`].
fn sanitize() -> Result<()> {
    // SAFETY: close_range touches no memory; nothing in this fresh process owns fds >= 3.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if rc != 0 {
        return Err(Error::CloseFds(std::io::Error::last_os_error()));
    }
    // SAFETY: the helper is single-threaded, so nothing reads the environment concurrently.
    unsafe { libc::clearenv() };
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| Error::NoFileLimit(e.into()))?;
    setrlimit(Resource::RLIMIT_NOFILE, SANDBOX_NOFILE_SOFT.min(hard), hard)
        .map_err(|e| Error::NoFileLimit(e.into()))
}

fn read_config<T: for<'de> Deserialize<'de>>() -> Result<T> {
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut buf)
        .map_err(Error::HelperPipe)?;
    serde_json::from_slice(&buf).map_err(|e| Error::HelperProtocol(format!("bad config: {e}")))
}

/// A close-on-exec duplicate of fd 1 for status lines.
fn status_pipe() -> Result<File> {
    let fd = nix::fcntl::fcntl(
        std::io::stdout().as_fd(),
        nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3),
    )
    .map_err(|e| Error::HelperPipe(e.into()))?;
    // SAFETY: fcntl just returned this new descriptor; we own it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn report(status: &mut File, line: &str) {
    // Nothing more can be done if the host went away.
    let _ = status.write_all(line.as_bytes());
}

fn open_cloexec(path: &Path, flags: nix::fcntl::OFlag) -> std::io::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        flags | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .map_err(std::io::Error::from)
}

/// Points fds 0, 1 and 2 at `/dev/null` and the log (or `/dev/null`).
fn redirect_stdio(log: Option<&Path>) -> Result<()> {
    let null = Path::new("/dev/null");
    let input = open_cloexec(null, nix::fcntl::OFlag::O_RDONLY)
        .map_err(|e| Error::Stdio(null.to_path_buf(), e))?;
    let out_path = log.unwrap_or(null);
    let output = open_cloexec(
        out_path,
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CREAT | nix::fcntl::OFlag::O_APPEND,
    )
    .map_err(|e| Error::Stdio(out_path.to_path_buf(), e))?;
    for (src, dst) in [(&input, 0), (&output, 1), (&output, 2)] {
        // SAFETY: dup2 onto the standard descriptors; both fds are valid.
        if unsafe { libc::dup2(src.as_raw_fd(), dst) } < 0 {
            return Err(Error::Stdio(
                out_path.to_path_buf(),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// Everything the program's exec needs, prepared before `clone` (still on the host root).
struct Prepared {
    exe_fd: Option<OwnedFd>,
    exe_path: PathBuf,
    /// The host's loader inside the sandbox, to start the host executable with (see
    /// [`host_runtime`](super::host_runtime)).
    loader: Option<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: PathBuf,
    uid: u32,
    gid: u32,
    no_new_privs: bool,
    filters: Vec<seccompiler::BpfProgram>,
    last_cap: u32,
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::NulByte(s.to_owned()))
}

fn prepare(
    program: &ProgramSpec,
    no_new_privs: bool,
    host_runtime: Option<&super::host_runtime::HostRuntime>,
) -> Result<Prepared> {
    let argv = program
        .argv
        .iter()
        .map(|a| cstring(a))
        .collect::<Result<Vec<_>>>()?;
    let envp = program
        .env
        .iter()
        .map(|(k, v)| cstring(&format!("{k}={v}")))
        .collect::<Result<Vec<_>>>()?;
    let (exe_fd, exe_path) = match &program.exe {
        Executable::Host(p) => {
            // O_PATH: we only need to exec it; opened now because after pivot_root the host
            // file is unreachable by path.
            let fd = open_cloexec(p, nix::fcntl::OFlag::O_PATH)
                .map_err(|e| Error::OpenProgram(p.clone(), e))?;
            (Some(fd), p.clone())
        }
        Executable::Sandbox(p) => (None, p.clone()),
    };
    // Only the server's own executable: the copied libraries are what it links.
    let loader = match (&program.exe, host_runtime) {
        (Executable::Host(p), Some(rt)) if p == Path::new("/proc/self/exe") => {
            Some(cstring(&rt.loader_in_sandbox())?)
        }
        _ => None,
    };
    Ok(Prepared {
        exe_fd,
        exe_path,
        loader,
        argv,
        envp,
        cwd: program.cwd.clone(),
        uid: program.uid,
        gid: program.gid,
        no_new_privs,
        filters: seccomp::compile()?,
        last_cap: caps::last_cap(),
    })
}

/// Looks `name` up in the program's `PATH` (inside the sandbox, after pivot_root).
fn resolve(name: &Path, envp: &[CString]) -> PathBuf {
    if name.as_os_str().as_bytes().contains(&b'/') {
        return name.to_path_buf();
    }
    let path = envp
        .iter()
        .find_map(|e| e.to_bytes().strip_prefix(b"PATH="))
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_else(|| DEFAULT_PATH.to_owned());
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        if nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok() {
            return candidate;
        }
    }
    name.to_path_buf()
}

/// The last steps before exec, in the program's own process: user switch, capabilities,
/// `no_new_privs`, signal mask, working directory, exec. Returns only on failure.
fn exec_program(p: &Prepared) -> Error {
    // Switch user: supplementary groups, then gid, then uid (dropping all capabilities when
    // leaving root).
    let gid = nix::unistd::Gid::from_raw(p.gid);
    let uid = nix::unistd::Uid::from_raw(p.uid);
    if let Err(e) = nix::unistd::setgroups(&[])
        .and_then(|()| nix::unistd::setresgid(gid, gid, gid))
        .and_then(|()| nix::unistd::setresuid(uid, uid, uid))
    {
        return Error::SetUser(p.uid, p.gid, e.into());
    }
    if p.uid == 0
        && let Err(e) = caps::restrict_current()
    {
        return e;
    }
    if p.no_new_privs {
        // SAFETY: PR_SET_NO_NEW_PRIVS touches no memory.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Error::NoNewPrivs(std::io::Error::last_os_error());
        }
    }
    // The mask is inherited across exec; the reaper blocked signals before forking us.
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        None,
    );
    if let Err(e) = nix::unistd::chdir(&p.cwd) {
        return Error::Chdir(p.cwd.clone(), e.into());
    }
    let mut argv: Vec<*const libc::c_char> = p.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = p.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    match (&p.exe_fd, &p.loader) {
        (Some(fd), Some(loader)) => {
            // The host's loader runs the host executable (by its descriptor, kept open
            // across the exec for that) with the host's libraries: the template's C library
            // may be older than the host's, or missing.
            if let Err(e) = nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            ) {
                return Error::Exec(p.exe_path.clone(), e.into());
            }
            let Some(argv0) = p.argv.first() else {
                return Error::Exec(p.exe_path.clone(), std::io::Error::other("empty argv"));
            };
            let (Ok(lib_dir), Ok(exe)) = (
                CString::new(super::host_runtime::IN_SANDBOX),
                CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            ) else {
                return Error::NulByte(super::host_runtime::IN_SANDBOX.to_owned());
            };
            // The program's own executable, for running it again (`self_invocation`).
            let Ok(fd_env) = CString::new(format!(
                "{}={}",
                super::host_runtime::EXE_FD_ENV,
                fd.as_raw_fd()
            )) else {
                return Error::NulByte(super::host_runtime::EXE_FD_ENV.to_owned());
            };
            let envp: Vec<*const libc::c_char> = p
                .envp
                .iter()
                .map(|a| a.as_ptr())
                .chain([fd_env.as_ptr(), std::ptr::null()])
                .collect();
            let mut args: Vec<*const libc::c_char> = vec![
                argv0.as_ptr(),
                c"--inhibit-cache".as_ptr(),
                c"--library-path".as_ptr(),
                lib_dir.as_ptr(),
                c"--argv0".as_ptr(),
                argv0.as_ptr(),
                exe.as_ptr(),
            ];
            args.extend(p.argv.iter().skip(1).map(|a| a.as_ptr()));
            args.push(std::ptr::null());
            // SAFETY: args and envp are NUL-terminated arrays of valid C strings that outlive
            // the call.
            unsafe { libc::execve(loader.as_ptr(), args.as_ptr(), envp.as_ptr()) };
            Error::Exec(
                PathBuf::from(super::host_runtime::IN_SANDBOX),
                std::io::Error::last_os_error(),
            )
        }
        (Some(fd), None) => {
            // SAFETY: argv and envp are NUL-terminated arrays of valid C strings that outlive
            // the call; the path is the empty C string with AT_EMPTY_PATH.
            unsafe {
                libc::syscall(
                    libc::SYS_execveat,
                    fd.as_raw_fd(),
                    c"".as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                )
            };
            Error::Exec(p.exe_path.clone(), std::io::Error::last_os_error())
        }
        (None, _) => {
            let path = resolve(&p.exe_path, &p.envp);
            let c = match CString::new(path.as_os_str().as_bytes()) {
                Ok(c) => c,
                Err(_) => return Error::NulByte(path.display().to_string()),
            };
            // SAFETY: as above; `c` is a valid C string.
            unsafe { libc::execve(c.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            Error::Exec(path, std::io::Error::last_os_error())
        }
    }
}

/// `clone` with namespace flags, fork-style (no new stack: the child continues on a copy of
/// the caller's stack, which is safe because this process is single-threaded).
fn clone_fork(flags: libc::c_ulong) -> std::io::Result<Option<Pid>> {
    // SAFETY: a raw clone without CLONE_VM and a null stack behaves like fork; the calling
    // process is single-threaded, so the child inherits a consistent heap and no locks.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match rc {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(Pid::from_raw(i32::try_from(pid).unwrap_or(-1)))),
    }
}

fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process without running atexit handlers or flushing stdio
    // buffers inherited from the parent, which must not run twice.
    unsafe { libc::_exit(code) }
}

/// The `__sandbox-init` helper. Steps, in order:
///
/// 1. sanitize (close inherited fds, clear the environment);
/// 2. read the config (arrives only after the host moved us into the sandbox's cgroup, so
///    every sandbox process is accounted from its first instruction);
/// 3. keep a close-on-exec status pipe, point stdio at `/dev/null` and the log;
/// 4. with `oom_protected`, set `oom_score_adj` to -1000, inherited by the init and the
///    program; prepare the exec (open a host executable `O_PATH`, compile seccomp, build
///    argv/env);
/// 5. with `spawn_ns`, take detached copies of the sandbox's disk and volume mounts and join
///    that mount namespace (it holds no other sandbox's disk, so cloning it is cheap);
/// 6. `clone` with new pid, mount, net, uts, ipc and cgroup namespaces and `CLONE_PARENT`;
///    report the child's pid and exit. The child (pid 1 of the sandbox) continues in
///    [`sandbox_init`].
fn init_helper() -> i32 {
    if let Err(e) = sanitize() {
        let _ = writeln!(std::io::stdout(), "ERR {e}");
        return 1;
    }
    let cfg: InitConfig = match read_config() {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stdout(), "ERR {e}");
            return 1;
        }
    };
    let mut status = match status_pipe() {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(std::io::stdout(), "ERR {e}");
            return 1;
        }
    };
    let mut prepared = match redirect_stdio(cfg.log.as_deref())
        .and_then(|()| protect_from_oom(cfg.oom_protected))
        .and_then(|()| {
            prepare(
                &cfg.program,
                cfg.no_new_privs,
                cfg.rootfs.host_runtime.as_ref(),
            )
        }) {
        Ok(p) => p,
        Err(e) => {
            report(&mut status, &format!("ERR {e}\n"));
            return 1;
        }
    };
    let mut carried = match cfg.spawn_ns.as_deref().map(|ns| {
        let carried = mounts::carry(&cfg.rootfs)?;
        namespaces::enter_mount_ns(ns)?;
        Ok::<_, Error>(carried)
    }) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            report(&mut status, &format!("ERR {e}\n"));
            return 1;
        }
    };
    let flags = namespaces::sandbox_clone_flags().bits() as libc::c_ulong
        | libc::CLONE_PARENT as libc::c_ulong;
    match clone_fork(flags) {
        Err(e) => {
            report(&mut status, &format!("ERR {}\n", Error::Clone(e)));
            1
        }
        Ok(Some(pid)) => {
            report(&mut status, &format!("PID {pid}\n"));
            0
        }
        Ok(None) => {
            let e = sandbox_init(&cfg, &mut prepared, carried.as_mut(), &mut status);
            report(&mut status, &format!("ERR {e}\n"));
            exit_now(1)
        }
    }
}

/// Makes this helper, and so the sandbox's init and program (envd) that inherit the value, the
/// OOM killer's last choice, as upstream's `OOMScoreAdjust=-1000` does for envd: a sandbox at
/// its memory limit loses a user process (envd starts each with 100), never envd. Nothing in
/// the sandbox keeps `CAP_SYS_RESOURCE`, so it cannot lower another process's score.
fn protect_from_oom(enabled: bool) -> Result<()> {
    if !enabled {
        return Ok(());
    }
    std::fs::write("/proc/self/oom_score_adj", "-1000").map_err(Error::OomScoreAdj)
}

/// pid 1 of a new sandbox. Steps, in order (each one's failure is reported and ends it):
///
/// 1. make the mount tree private; attach the carried disk; re-open a host executable
///    through a read-only bind mount (so `/proc/<pid>/exe` can never be opened for writing);
/// 2. mount the layer overlays, `/tmp`, `/dev`, `/proc` (masked), then the bind mounts
///    (volumes);
/// 3. set the hostname, bring loopback up;
/// 4. `pivot_root` into the overlay and detach the host root;
/// 5. install the seccomp filter (needs `CAP_SYS_ADMIN` when `no_new_privs` is off);
/// 6. drop the capability bounding set;
/// 7. with a reaper: block signals, fork the program, and reap until it exits; without:
///    exec the program as pid 1.
fn sandbox_init(
    cfg: &InitConfig,
    p: &mut Prepared,
    mut carried: Option<&mut mounts::Carried>,
    status: &mut File,
) -> Error {
    let mut steps = || -> Result<()> {
        mounts::make_private()?;
        if let Some(c) = carried.as_deref_mut() {
            mounts::attach_disk(&cfg.rootfs, c)?;
        }
        if let Some(fd) = p.exe_fd.as_ref()
            && let Some(ro) = mounts::read_only_exe(&cfg.rootfs, fd.as_fd())?
        {
            p.exe_fd = Some(ro);
        }
        mounts::mount_overlays(&cfg.rootfs)?;
        mounts::mount_tmp(&cfg.rootfs)?;
        mounts::mount_dev(&cfg.rootfs)?;
        mounts::mount_proc(&cfg.rootfs)?;
        mounts::mount_binds(&cfg.rootfs, carried.as_deref_mut())?;
        namespaces::set_hostname(&cfg.hostname)?;
        namespaces::loopback_up()?;
        mounts::pivot(&cfg.rootfs.rootfs)?;
        seccomp::install(&p.filters)?;
        caps::drop_bounding(p.last_cap)?;
        Ok(())
    };
    if let Err(e) = steps() {
        return e;
    }
    if !cfg.reaper {
        return exec_program(p);
    }
    reaper(p, status)
}

/// Signals the reaper forwards to the program.
const FORWARDED: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// The minimal init: forks the program, forwards signals to it, reaps every zombie, and
/// exits with the program's status (which ends the pid namespace).
fn reaper(p: &Prepared, status: &mut File) -> Error {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED {
        set.add(*s);
    }
    if let Err(e) = set.thread_block() {
        return Error::Fork(e.into());
    }
    // SAFETY: this process is single-threaded (pid 1 of a fresh namespace), so fork is safe.
    let child = match unsafe { nix::unistd::fork() } {
        Err(e) => return Error::Fork(e.into()),
        Ok(ForkResult::Child) => {
            let e = exec_program(p);
            report(status, &format!("ERR {e}\n"));
            exit_now(127);
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    // The reaper must not hold the status pipe open: the host waits for its end-of-file.
    // Nor the host executable's descriptor, the one handle on a host file left.
    // SAFETY: both fds are owned by values that are never used or dropped again in this
    // process (the reaper only ever leaves through `_exit`).
    unsafe {
        libc::close(status.as_raw_fd());
        if let Some(fd) = &p.exe_fd {
            libc::close(fd.as_raw_fd());
        }
    }
    // Not dumpable: sandbox processes cannot ptrace it or read its /proc files; and it needs
    // no capability to wait and forward signals to its own child, so it keeps none.
    // SAFETY: PR_SET_DUMPABLE touches no memory.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let _ = caps::clear_current();
    loop {
        let sig = match set.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, sig);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => exit_now(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => exit_now(128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// The `__sandbox-exec` helper: join every namespace of a live sandbox, apply the same
/// seccomp filter and capability bounding set, fork (to enter the pid namespace), switch
/// user and exec. Exits with the program's status (128+signal when killed), or 125 with a
/// message on stderr when a step fails, 127 when the exec fails.
fn exec_helper() -> i32 {
    let run = || -> Result<i32> {
        sanitize()?;
        let cfg: ExecConfig = read_config()?;
        let null = Path::new("/dev/null");
        let input = open_cloexec(null, nix::fcntl::OFlag::O_RDONLY)
            .map_err(|e| Error::Stdio(null.to_path_buf(), e))?;
        // SAFETY: dup2 onto stdin; the fd is valid.
        unsafe { libc::dup2(input.as_raw_fd(), 0) };
        let fds = namespaces::JOIN_ORDER
            .iter()
            .map(|(name, _)| namespaces::open_ns(cfg.init_pid, name))
            .collect::<Result<Vec<_>>>()?;
        // Programs run in a sandbox through this helper are the sandbox's own.
        let prepared = prepare(&cfg.program, cfg.no_new_privs, None)?;
        for ((name, flag), fd) in namespaces::JOIN_ORDER.iter().zip(&fds) {
            namespaces::join(name, fd.as_fd(), *flag)?;
        }
        drop(fds);
        seccomp::install(&prepared.filters)?;
        caps::drop_bounding(prepared.last_cap)?;
        // SAFETY: this helper is single-threaded, so fork is safe.
        match unsafe { nix::unistd::fork() }.map_err(|e| Error::Fork(e.into()))? {
            ForkResult::Child => {
                let e = exec_program(&prepared);
                let _ = writeln!(std::io::stderr(), "e2b-local exec: {e}");
                exit_now(127)
            }
            ForkResult::Parent { child } => loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                    Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(Error::Wait(child.as_raw(), e.into())),
                }
            },
        }
    };
    match run() {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "e2b-local exec: {e}");
            125
        }
    }
}

/// Reads the helper's status lines until end-of-file or `timeout`.
/// Returns the lines read so far together with the error, so a caller can still learn the
/// init's pid and reap it.
pub(crate) fn read_status(fd: RawFd, timeout: std::time::Duration) -> (Vec<String>, Result<()>) {
    let mut out = Vec::new();
    let result = read_until_eof(fd, timeout, &mut out);
    let lines = String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_owned)
        .collect();
    (lines, result)
}

fn read_until_eof(fd: RawFd, timeout: std::time::Duration, out: &mut Vec<u8>) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(Error::HelperProtocol(format!(
                "no answer within {} ms",
                timeout.as_millis()
            )));
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::HelperPipe(e));
        }
        if rc == 0 {
            continue;
        }
        // SAFETY: reading into a valid buffer of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::HelperPipe(e));
        }
        if n == 0 {
            return Ok(());
        }
        out.extend_from_slice(&buf[..usize::try_from(n).unwrap_or(0)]);
    }
}
