//! Starting a process without `fork`: `clone(CLONE_VM | CLONE_VFORK)`, as glibc's
//! `posix_spawn` does, plus the steps `posix_spawn` cannot take (credentials, a new session
//! with a controlling terminal, OOM score, priority).
//!
//! Why: `fork` copies envd's page tables, and on a virtual machine that costs more than the
//! whole life of a short command (fork + exec + wait of `/bin/true`: 2.0 ms, against 0.39 ms
//! with `posix_spawn`, on the CI machine). With `CLONE_VM` the child borrows envd's memory
//! until it calls `execve`; `CLONE_VFORK` suspends the calling thread until then, so the
//! child's stack and the data below stay valid.
//!
//! The child shares memory with envd's other threads, so between `clone` and `execve` it
//! only makes plain system calls on data prepared before: no allocation, no locks, no
//! panics, and no glibc wrapper that acts on "all threads of the process". glibc's `setuid`
//! is one (it would switch every envd thread to the user): the credential changes below are
//! raw system calls, which change only the calling task, the child.
#![allow(unsafe_code)]

use std::ffi::{CString, c_char, c_int, c_void};
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd as _, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::ptr;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::io::unix::AsyncFd;

/// The child's stack: it runs a handful of frames before `execve`.
const STACK_SIZE: usize = 128 * 1024;

/// The user a process runs as.
#[derive(Debug, Clone)]
pub(crate) struct Creds {
    pub(crate) uid: libc::uid_t,
    pub(crate) gid: libc::gid_t,
    /// Supplementary groups (the primary group included).
    pub(crate) groups: Vec<libc::gid_t>,
}

/// A program to start, with everything the child needs prepared as C strings.
#[derive(Debug)]
pub(crate) struct Command {
    /// Paths to `execve` in order: the program itself, or the `PATH` search's candidates.
    candidates: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// `None` keeps envd's credentials.
    pub(crate) creds: Option<Creds>,
    /// Entered after the credential switch (as Go's `os/exec` does).
    pub(crate) cwd: CString,
    /// Start a new session and take stdin (a PTY slave) as the controlling terminal.
    pub(crate) pty: bool,
}

/// An argument, variable or path with a NUL byte, which no C string can hold; names which.
#[derive(Debug)]
pub(crate) struct NulByte(&'static str);

impl fmt::Display for NulByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} contains a NUL byte", self.0)
    }
}

fn c_string(s: &str, what: &'static str) -> Result<CString, NulByte> {
    CString::new(s).map_err(|_| NulByte(what))
}

impl Command {
    /// Prepares `program` with `args` and `env` (later duplicates win). A program without
    /// a `/` is looked up in the `PATH` of `env`, relative to `cwd` for relative entries.
    pub(crate) fn new(
        program: &str,
        args: &[String],
        env: &[(String, String)],
        cwd: CString,
    ) -> Result<Self, NulByte> {
        // Later duplicates win, in the first one's place; indexed, since a request may carry
        // many variables.
        let mut vars: Vec<(&str, &str)> = Vec::with_capacity(env.len());
        let mut index: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::with_capacity(env.len());
        for (k, v) in env {
            match index.entry(k.as_str()) {
                std::collections::hash_map::Entry::Occupied(slot) => vars[*slot.get()].1 = v,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(vars.len());
                    vars.push((k, v));
                }
            }
        }
        // An empty name is no file at all (execve fails with ENOENT), not a PATH search.
        let candidates = if program.is_empty() || program.contains('/') {
            vec![c_string(program, "the command")?]
        } else {
            let path = vars
                .iter()
                .find(|(k, _)| *k == "PATH")
                .map_or("/usr/local/bin:/usr/bin:/bin", |(_, v)| v);
            let mut c = Vec::new();
            for dir in path.split(':') {
                let dir = if dir.is_empty() { "." } else { dir };
                c.push(c_string(&format!("{dir}/{program}"), "the command")?);
            }
            c
        };
        let mut argv = vec![c_string(program, "the command")?];
        for a in args {
            argv.push(c_string(a, "an argument")?);
        }
        let envp = vars
            .iter()
            .map(|(k, v)| c_string(&format!("{k}={v}"), "an environment variable"))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            candidates,
            argv,
            envp,
            creds: None,
            cwd,
            pty: false,
        })
    }
}

/// The step of the start that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Allocating the stack or `clone` itself.
    Clone,
    /// Connecting stdin, stdout and stderr.
    Stdio,
    /// `setsid` or taking the controlling terminal.
    Session,
    /// `setgroups`, `setgid` or `setuid`.
    Credentials,
    /// Entering the working directory.
    Cwd,
    /// `execve`.
    Exec,
}

/// Why a process did not start.
#[derive(Debug)]
pub(crate) struct SpawnError {
    pub(crate) stage: Stage,
    pub(crate) error: io::Error,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.stage {
            Stage::Clone => "clone",
            Stage::Stdio => "setting up stdio",
            Stage::Session => "starting a session with the terminal",
            Stage::Credentials => "switching user",
            Stage::Cwd => "chdir",
            Stage::Exec => "exec",
        };
        write!(f, "{what}: {}", self.error)
    }
}

impl Stage {
    fn code(self) -> i32 {
        self as i32
    }

    fn from_code(code: i32) -> Self {
        [
            Self::Clone,
            Self::Stdio,
            Self::Session,
            Self::Credentials,
            Self::Cwd,
            Self::Exec,
        ]
        .into_iter()
        .find(|s| s.code() == code)
        .unwrap_or(Self::Exec)
    }
}

/// What the child reads, by pointer, from the suspended parent's stack.
struct ChildArgs {
    candidates: *const *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    stdio: [RawFd; 3],
    pty: bool,
    creds: Option<(libc::uid_t, libc::gid_t, *const libc::gid_t, usize)>,
    cwd: *const c_char,
    /// Written by the child when it fails before `execve`; 0 means it exec'd.
    errno: AtomicI32,
    stage: AtomicI32,
}

fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect()
}

/// An anonymous mapping for the child's stack, with a guard page below it.
struct Stack {
    base: *mut c_void,
    len: usize,
}

impl Stack {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Self { base, len };
        // SAFETY: the first page of the mapping made above; an overflow faults there
        // instead of running into other memory.
        if unsafe { libc::mprotect(base, page_size(), libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    fn top(&self) -> *mut c_void {
        // The stack grows down; the end of a page-aligned mapping is 16-byte aligned.
        self.base.cast::<u8>().wrapping_add(self.len).cast()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, which nothing uses any more
        // (the child has exec'd or exited before `clone` returned).
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// Returns `fd` itself when it is above stderr, else a close-on-exec duplicate that is, so
/// that `dup2` onto 0, 1 and 2 in the child cannot overwrite a source not yet copied.
pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on an open descriptor we own; the result is a new descriptor.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` was just returned by fcntl and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

impl Command {
    /// Starts the process with `stdio` as its descriptors 0, 1 and 2 (each above 2, see
    /// [`above_stdio`]). Returns when it has exec'd, or with the step that failed.
    pub(crate) fn spawn(&self, stdio: [BorrowedFd<'_>; 3]) -> Result<Child, SpawnError> {
        let clone_error = |error| SpawnError {
            stage: Stage::Clone,
            error,
        };
        let candidates = null_terminated(&self.candidates);
        let argv = null_terminated(&self.argv);
        let envp = null_terminated(&self.envp);
        let args = ChildArgs {
            candidates: candidates.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            stdio: stdio.map(|fd| fd.as_raw_fd()),
            pty: self.pty,
            creds: self
                .creds
                .as_ref()
                .map(|c| (c.uid, c.gid, c.groups.as_ptr(), c.groups.len())),
            cwd: self.cwd.as_ptr(),
            errno: AtomicI32::new(0),
            stage: AtomicI32::new(0),
        };
        let stack = Stack::new(STACK_SIZE).map_err(clone_error)?;

        // Block every signal so that none runs an envd handler on the child's stack before
        // the child has reset the handlers.
        // SAFETY: zeroed sigset_t values are valid inputs to sigfillset and outputs of
        // pthread_sigmask.
        let (mut all, mut old) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        // SAFETY: both point to live sigset_t values.
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        // SAFETY: `child` runs on `stack`, which outlives the call; with CLONE_VFORK this
        // thread is suspended until the child has exec'd or exited, so `args` and the
        // vectors it points into stay alive and unchanged while the child reads them.
        let pid = unsafe {
            libc::clone(
                child,
                stack.top(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                ptr::from_ref(&args).cast_mut().cast(),
            )
        };
        let clone_errno = io::Error::last_os_error();
        // SAFETY: restores the mask saved above.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut());
        }
        drop(stack);
        if pid < 0 {
            return Err(clone_error(clone_errno));
        }
        let errno = args.errno.load(Ordering::Acquire);
        if errno != 0 {
            reap(pid);
            return Err(SpawnError {
                stage: Stage::from_code(args.stage.load(Ordering::Acquire)),
                error: io::Error::from_raw_os_error(errno),
            });
        }
        Ok(Child::new(pid))
    }
}

/// Waits for a child that failed before `execve` (it has already exited).
fn reap(pid: libc::pid_t) {
    loop {
        // SAFETY: waits for our own child; a null status pointer is allowed.
        let r = unsafe { libc::waitpid(pid, ptr::null_mut(), 0) };
        if r >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

/// The child, between `clone` and `execve`. Only plain system calls (see the module doc).
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `ChildArgs` of the suspended parent, valid until we exec or exit.
    let args = unsafe { &*arg.cast::<ChildArgs>() };
    // SAFETY: see `prepare_and_exec`.
    let (stage, err) = unsafe { prepare_and_exec(args) };
    args.stage.store(stage.code(), Ordering::Release);
    args.errno
        .store(if err == 0 { libc::EINVAL } else { err }, Ordering::Release);
    // SAFETY: ends the child without running any of envd's exit handlers.
    unsafe { libc::_exit(127) }
}

/// Sets the child up and execs; returns only on failure, with the step and errno.
///
/// # Safety
/// Must run in the `CLONE_VM` child, with `args` valid (see [`Command::spawn`]).
unsafe fn prepare_and_exec(args: &ChildArgs) -> (Stage, c_int) {
    macro_rules! check {
        ($stage:expr, $call:expr) => {
            if $call == -1 {
                return ($stage, errno());
            }
        };
    }
    // SAFETY: the whole body makes system calls (or glibc's thin wrappers of them) on
    // integers, on pointers into `args`, or on stack values of this frame.
    unsafe {
        // A fresh process gets default signal handling (envd ignores SIGPIPE, as every Rust
        // program does) and no blocked signals. Failures (SIGKILL, SIGSTOP) are expected.
        // The raw call, because glibc refuses to touch the signals it reserves (32, 33),
        // which may be ignored too. An all-zero kernel `sigaction` is SIG_DFL, no flags, no
        // mask, on every architecture.
        let default_action = [0u64; 4];
        for sig in 1..=64 {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                default_action.as_ptr(),
                ptr::null_mut::<c_void>(),
                8,
            );
        }
        let mut empty = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, ptr::null_mut());

        for (target, &fd) in args.stdio.iter().enumerate() {
            let target = target as c_int;
            if fd == target {
                check!(Stage::Stdio, libc::fcntl(fd, libc::F_SETFD, 0));
            } else {
                check!(Stage::Stdio, libc::dup2(fd, target));
            }
        }
        if args.pty {
            check!(Stage::Session, libc::setsid());
            check!(Stage::Session, libc::ioctl(0, libc::TIOCSCTTY, 0));
        }
        // Processes are the OOM killer's first victims, never envd (best effort).
        let fd = libc::open(
            c"/proc/self/oom_score_adj".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        if fd >= 0 {
            let adj = super::USER_OOM_SCORE_ADJ;
            libc::write(fd, adj.as_ptr().cast(), adj.len());
            libc::close(fd);
        }
        // User processes run at nice 0 whatever envd's own priority is (best effort).
        libc::setpriority(libc::PRIO_PROCESS, 0, 0);
        if let Some((uid, gid, groups, ngroups)) = args.creds {
            // Raw system calls: glibc's wrappers would change every envd thread too.
            check!(
                Stage::Credentials,
                libc::syscall(libc::SYS_setgroups, ngroups, groups)
            );
            check!(Stage::Credentials, libc::syscall(libc::SYS_setgid, gid));
            check!(Stage::Credentials, libc::syscall(libc::SYS_setuid, uid));
        }
        check!(Stage::Cwd, libc::chdir(args.cwd));
        // Like execvp: a candidate that does not exist or cannot be searched is skipped;
        // permission denied is reported only when no later candidate runs.
        let mut denied = false;
        let mut candidate = args.candidates;
        while !(*candidate).is_null() {
            libc::execve(*candidate, args.argv, args.envp);
            match errno() {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => denied = true,
                e => return (Stage::Exec, e),
            }
            candidate = candidate.add(1);
        }
        (
            Stage::Exec,
            if denied { libc::EACCES } else { libc::ENOENT },
        )
    }
}

/// A started process, not yet reaped.
#[derive(Debug)]
pub(crate) struct Child {
    pid: libc::pid_t,
}

impl Child {
    fn new(pid: libc::pid_t) -> Self {
        Self { pid }
    }

    /// Its pid.
    pub(crate) fn id(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    /// Waits for it to end and reaps it: through a pidfd, which becomes readable when the
    /// process exits, or, without pidfds (Linux before 5.3), on a blocking thread.
    pub(crate) async fn wait(self) -> io::Result<ExitStatus> {
        let pid = self.pid;
        // Output ends when the process exits, so it has usually exited by now.
        if let Some(status) = try_wait(pid)? {
            return Ok(status);
        }
        // SAFETY: pidfd_open takes a pid and flags; it returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return tokio::task::spawn_blocking(move || wait_blocking(pid))
                .await
                .map_err(io::Error::other)?;
        }
        // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        // SAFETY: the pidfd is owned by the `AsyncFd` and stays open until it is dropped.
        let pidfd =
            unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }?;
        loop {
            let mut guard = pidfd.readable().await?;
            match try_wait(pid)? {
                Some(status) => return Ok(status),
                None => guard.clear_ready(),
            }
        }
    }
}

/// Reaps `pid` if it has ended.
fn try_wait(pid: libc::pid_t) -> io::Result<Option<ExitStatus>> {
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child without blocking; `status` is a valid int.
        match unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } {
            0 => return Ok(None),
            -1 if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            -1 => return Err(io::Error::last_os_error()),
            _ => return Ok(Some(ExitStatus::from_raw(status))),
        }
    }
}

fn wait_blocking(pid: libc::pid_t) -> io::Result<ExitStatus> {
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid int.
        match unsafe { libc::waitpid(pid, &mut status, 0) } {
            -1 if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            -1 => return Err(io::Error::last_os_error()),
            _ => return Ok(ExitStatus::from_raw(status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::os::fd::AsFd as _;

    fn pipe() -> (OwnedFd, OwnedFd) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        (above_stdio(r).unwrap(), above_stdio(w).unwrap())
    }

    fn run(cmd: &Command) -> Result<(ExitStatus, String), SpawnError> {
        let (r, w) = pipe();
        let null = above_stdio(std::fs::File::open("/dev/null").unwrap().into()).unwrap();
        let child = cmd.spawn([null.as_fd(), w.as_fd(), w.as_fd()])?;
        drop(w);
        let mut out = String::new();
        std::fs::File::from(r).read_to_string(&mut out).unwrap();
        let status = wait_blocking(child.pid).unwrap();
        Ok((status, out))
    }

    fn env() -> Vec<(String, String)> {
        vec![
            ("PATH".into(), "/nonexistent:/usr/bin:/bin".into()),
            ("A".into(), "1".into()),
            ("A".into(), "2".into()),
        ]
    }

    #[test]
    fn runs_with_path_search_env_and_cwd() {
        let cmd = Command::new(
            "sh",
            &["-c".into(), "echo \"$A\" $(pwd); exit 3".into()],
            &env(),
            c"/tmp".into(),
        )
        .unwrap();
        let (status, out) = run(&cmd).unwrap();
        assert_eq!(out, "2 /tmp\n");
        assert_eq!(status.code(), Some(3));
    }

    #[test]
    fn failures_name_their_step() {
        let missing = Command::new("no-such-program-e2b", &[], &env(), c"/".into()).unwrap();
        let err = run(&missing).unwrap_err();
        assert_eq!(err.stage, Stage::Exec);
        assert_eq!(err.error.kind(), io::ErrorKind::NotFound);
        let empty = Command::new("", &[], &env(), c"/".into()).unwrap();
        let err = run(&empty).unwrap_err();
        assert_eq!(
            (err.stage, err.error.kind()),
            (Stage::Exec, io::ErrorKind::NotFound)
        );

        let bad_cwd = Command::new("true", &[], &env(), c"/no/such/dir".into()).unwrap();
        let err = run(&bad_cwd).unwrap_err();
        assert_eq!(err.stage, Stage::Cwd);
        assert_eq!(
            err.to_string(),
            "chdir: No such file or directory (os error 2)"
        );

        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::write(&data, "not a program").unwrap();
        let not_exec = Command::new(data.to_str().unwrap(), &[], &env(), c"/".into()).unwrap();
        let err = run(&not_exec).unwrap_err();
        assert_eq!(
            (err.stage, err.error.raw_os_error()),
            (Stage::Exec, Some(libc::EACCES)),
            "{err}"
        );
    }

    #[test]
    fn nul_bytes_are_named() {
        let err = Command::new("true", &["a\0b".into()], &env(), c"/".into()).unwrap_err();
        assert_eq!(err.to_string(), "an argument contains a NUL byte");
    }

    #[test]
    fn signal_handlers_and_mask_are_reset() {
        // envd ignores SIGPIPE like every Rust program; the child must not inherit that.
        let cmd = Command::new(
            "sh",
            &[
                "-c".into(),
                "grep -E '^Sig(Ign|Blk)' /proc/self/status".into(),
            ],
            &env(),
            c"/".into(),
        )
        .unwrap();
        let (_, out) = run(&cmd).unwrap();
        assert_eq!(
            out,
            "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
        );
    }
}
