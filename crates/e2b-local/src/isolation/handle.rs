//! A running sandbox's handle: state, signals, freeze, stats, connecting and exec'ing
//! inside, kill.

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::capture;
use super::disk::{self, Disks};
use super::spawn::layer_name;
use super::{
    CgroupStats, EXEC_ROLE, Error, ExecOptions, Executable, KILL_TIMEOUT, ProgramSpec, Result,
    SandboxCgroup, SandboxCgroupImpl, exec, mounts, namespaces,
};

/// What changes over a sandbox's life, behind the handle's lock.
#[derive(Debug)]
pub(super) struct State {
    /// The init's pidfd; `None` once reaped.
    pub(super) pidfd: Option<OwnedFd>,
    /// The network namespace, for [`SandboxHandle::connect`]; `None` when the init exited
    /// before it could be opened.
    pub(super) netns: Option<OwnedFd>,
    /// The init's exit status, once known.
    pub(super) exit: Option<i32>,
    /// Whether [`SandboxHandle::kill`] ran.
    pub(super) killed: bool,
    /// Whether the cgroup is frozen.
    pub(super) frozen: bool,
}

/// A running sandbox. All methods take `&self`, so it can be shared behind an `Arc`.
///
/// Dropping the handle does **not** kill the sandbox (it keeps running, like E2B sandboxes
/// outlive their clients); call [`kill`](Self::kill), or [`Runtime::reclaim`](super::Runtime::reclaim) later.
#[derive(Debug)]
pub struct SandboxHandle {
    pub(super) id: String,
    pub(super) init_pid: i32,
    /// `sandboxes/<id>/` in the data directory.
    pub(super) dir: PathBuf,
    /// The executable serving the helper roles (`__sandbox-exec` for `exec_in`).
    pub(super) helper_exe: PathBuf,
    /// Where kill sends the disk image, to unlink in the background.
    pub(super) disks: Option<Arc<Disks>>,
    pub(super) cgroup: SandboxCgroupImpl,
    pub(super) state: Mutex<State>,
}

impl SandboxHandle {
    /// The sandbox id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Host pid of the sandbox's init (the reaper, or the program without one).
    pub fn init_pid(&self) -> i32 {
        self.init_pid
    }

    /// The root layer's upper directory on the host: every file the sandbox wrote outside
    /// the extra template layers (e.g. `/usr`, see [`layer_upper_dir`](Self::layer_upper_dir)).
    pub fn upper_dir(&self) -> PathBuf {
        self.dir.join("disk/upper")
    }

    /// The upper directory of the layer mounted at `target` (e.g. `/usr`).
    pub fn layer_upper_dir(&self, target: &Path) -> PathBuf {
        if target == Path::new("/") {
            return self.upper_dir();
        }
        self.dir
            .join("disk/layers")
            .join(layer_name(target))
            .join("upper")
    }

    /// The sandbox's directory in the data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cgroup.
    pub fn cgroup(&self) -> &SandboxCgroupImpl {
        &self.cgroup
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A duplicate of the pidfd of the sandbox's init: it becomes readable when init exits,
    /// so a server can wait for that without polling (e.g. `tokio::io::unix::AsyncFd`), then
    /// call [`try_wait`](Self::try_wait) to reap it. `None` after kill.
    ///
    /// # Errors
    ///
    /// The `dup` error.
    pub fn exit_fd(&self) -> std::io::Result<Option<OwnedFd>> {
        let st = self.lock();
        match st.pidfd.as_ref() {
            Some(fd) if !st.killed => fd.try_clone().map(Some),
            _ => Ok(None),
        }
    }

    /// Whether init is still running (reaps it if it exited).
    pub fn is_running(&self) -> bool {
        self.try_wait().map(|s| s.is_none()).unwrap_or(false)
    }

    /// The init's exit code if it has exited (128+signal when killed), reaping it.
    ///
    /// # Errors
    ///
    /// [`Error::Wait`].
    pub fn try_wait(&self) -> Result<Option<i32>> {
        let mut st = self.lock();
        if st.exit.is_some() || st.killed {
            return Ok(st.exit);
        }
        let Some(fd) = st.pidfd.as_ref() else {
            return Ok(st.exit);
        };
        let code = waitid_pidfd(self.init_pid, fd, libc::WNOHANG)?;
        st.exit = code;
        Ok(code)
    }

    /// Sends `signal` to the sandbox's init (the reaper forwards `SIGTERM`, `SIGINT`,
    /// `SIGHUP`, `SIGQUIT`, `SIGUSR1` and `SIGUSR2` to the program), e.g. for a graceful stop.
    ///
    /// # Errors
    ///
    /// [`Error::NotRunning`] after kill or exit; [`Error::Signal`] otherwise.
    pub fn signal(&self, signal: i32) -> Result<()> {
        let st = self.lock();
        let fd = match st.pidfd.as_ref() {
            Some(fd) if !st.killed && st.exit.is_none() => fd,
            _ => return Err(Error::NotRunning(self.id.clone())),
        };
        // SAFETY: pidfd_send_signal with a valid pidfd and no siginfo.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Err(Error::NotRunning(self.id.clone()));
            }
            return Err(Error::Signal {
                pid: self.init_pid,
                signal,
                source: e,
            });
        }
        Ok(())
    }

    /// Freezes every process of the sandbox (pause).
    ///
    /// # Errors
    ///
    /// [`Error::NotRunning`] after kill, or the cgroup error.
    pub fn freeze(&self) -> Result<()> {
        let mut st = self.lock();
        if st.killed {
            return Err(Error::NotRunning(self.id.clone()));
        }
        self.cgroup.freeze()?;
        st.frozen = true;
        Ok(())
    }

    /// Thaws the sandbox (resume).
    ///
    /// # Errors
    ///
    /// [`Error::NotRunning`] after kill, or the cgroup error.
    pub fn thaw(&self) -> Result<()> {
        let mut st = self.lock();
        if st.killed {
            return Err(Error::NotRunning(self.id.clone()));
        }
        self.cgroup.thaw()?;
        st.frozen = false;
        Ok(())
    }

    /// Whether the sandbox is frozen.
    pub fn is_frozen(&self) -> bool {
        self.lock().frozen
    }

    /// CPU, memory and task counts from the cgroup. Without one (rootless mode), summed
    /// over the processes of the sandbox's pid namespace from `/proc`: CPU time, resident
    /// memory (shared pages counted once per process) and threads.
    pub fn stats(&self) -> CgroupStats {
        if self.cgroup.is_enabled() {
            return self.cgroup.stats();
        }
        let st = self.lock();
        if st.killed || st.exit.is_some() {
            return CgroupStats::default();
        }
        drop(st);
        procfs_stats(self.init_pid)
    }

    /// `(used, total)` bytes of the sandbox's disk (statvfs of its mounted image: what `df`
    /// inside shows; the total is the budget less ext4's own metadata, ~2%), or `None` when
    /// it has no budget (upper directory on the data dir's filesystem, bind-mounted
    /// `nosuid,nodev`) or was killed.
    pub fn disk_usage(&self) -> Option<(u64, u64)> {
        if self.lock().killed {
            return None;
        }
        disk::usage(&self.dir)
    }

    /// Connects to `127.0.0.1:port` inside the sandbox's network namespace (blocking; on
    /// loopback it completes or is refused at once). No host port is opened.
    ///
    /// # Errors
    ///
    /// `NotConnected` after kill; otherwise the `setns`/`connect` error
    /// (`ConnectionRefused` when nothing listens).
    pub fn connect(&self, port: u16) -> std::io::Result<TcpStream> {
        let netns = self.netns()?;
        namespaces::connect_in_netns(netns.as_fd(), port, Some(Duration::from_secs(5)))
    }

    /// A descriptor of the sandbox's network namespace (to give it a network).
    ///
    /// # Errors
    ///
    /// `NotConnected` after kill.
    pub fn netns(&self) -> std::io::Result<OwnedFd> {
        let st = self.lock();
        match st.netns.as_ref() {
            Some(fd) if !st.killed => fd.try_clone(),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                format!("sandbox {} is not running", self.id),
            )),
        }
    }

    /// Runs `argv` inside the live sandbox (all its namespaces, its cgroup, the same seccomp
    /// filter and capability bounding set, as `opts.uid`) and collects its output.
    /// For tests and diagnostics; envd is the way to run user commands.
    ///
    /// The exit code is the program's, 128+signal when it was killed, 125 when joining
    /// the sandbox failed and 127 when the exec failed (message on stderr).
    ///
    /// # Errors
    ///
    /// [`Error::NotRunning`], [`Error::Frozen`], [`Error::SpawnHelper`] or a pipe error.
    pub fn exec_in(&self, argv: &[&str], opts: &ExecOptions) -> Result<Output> {
        self.spawn_in(argv, opts)?
            .wait_with_output()
            .map_err(Error::HelperPipe)
    }

    /// Starts `argv` inside the live sandbox as [`exec_in`](Self::exec_in) does and returns
    /// at once: the child's stdout and stderr are pipes to read as it runs (template build
    /// steps stream them into the build's logs), its exit status is the program's.
    ///
    /// # Errors
    ///
    /// [`Error::NotRunning`], [`Error::Frozen`], [`Error::SpawnHelper`] or a pipe error.
    pub fn spawn_in(&self, argv: &[&str], opts: &ExecOptions) -> Result<std::process::Child> {
        {
            let st = self.lock();
            if st.killed {
                return Err(Error::NotRunning(self.id.clone()));
            }
            // The helper would join the frozen cgroup and freeze with it.
            if st.frozen {
                return Err(Error::Frozen(self.id.clone()));
            }
        }
        let cfg = exec::ExecConfig {
            init_pid: self.init_pid,
            program: ProgramSpec {
                exe: Executable::Sandbox(PathBuf::from(argv.first().copied().unwrap_or_default())),
                argv: argv.iter().map(|s| (*s).to_owned()).collect(),
                env: opts.env.clone(),
                uid: opts.uid,
                gid: opts.gid,
                cwd: opts.cwd.clone(),
            },
            no_new_privs: opts.no_new_privs,
        };
        let body = serde_json::to_vec(&cfg).map_err(Error::Encode)?;
        let mut child = Command::new(&self.helper_exe)
            .arg(EXEC_ROLE)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::SpawnHelper(self.helper_exe.clone(), e))?;
        let sent = (|| {
            self.cgroup.add_process(child.id())?;
            let mut stdin = child
                .stdin
                .take()
                .ok_or_else(|| Error::HelperProtocol("no stdin pipe".into()))?;
            stdin.write_all(&body).map_err(Error::HelperPipe)
        })();
        if let Err(e) = sent {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(child)
    }

    /// Stops every process of a sandbox without a disk image and moves the upper directory
    /// of each overlay in `targets` to `layer_dir` (as
    /// [`Layers::part`](crate::template::layers::Layers::part) names it), keeping whiteouts and ownership: what the sandbox changed, as a layer for
    /// others to stack. [`kill`](Self::kill) removes the rest afterwards.
    ///
    /// # Errors
    ///
    /// The cgroup's kill errors, [`Error::UnmountDisk`] or [`Error::SaveUpper`].
    pub fn take_uppers(&self, targets: &[PathBuf], layer_dir: &Path) -> Result<()> {
        self.cgroup.kill_all(KILL_TIMEOUT)?;
        let disk = self.dir.join("disk");
        // A rename out of the disk's nosuid bind mount would fail with EXDEV.
        mounts::unmount_disk(&disk)?;
        for target in targets {
            let upper = self.layer_upper_dir(target);
            let to = crate::template::layers::Layers::part(layer_dir, target);
            std::fs::rename(&upper, &to).map_err(|e| Error::SaveUpper(upper, e))?;
        }
        Ok(())
    }

    /// Copies the upper directory of each overlay in `targets` into `layer_dir` (as
    /// [`Layers::part`](crate::template::layers::Layers::part) names it) as one moment's
    /// files: what the sandbox changed, as a layer for new sandboxes to stack, while it
    /// lives on. A running sandbox is copied while it runs, then frozen while what changed
    /// meanwhile is copied again ([`capture::sync_upper`]) and thawed, also when that
    /// failed; a paused one is copied once and stays frozen. Returns what was copied and
    /// how long the sandbox was frozen for it (zero when it was paused).
    ///
    /// # Errors
    ///
    /// [`Error::NotRunning`] after kill, the cgroup's freeze and thaw errors,
    /// [`Error::Capture`] (what was copied stays in `layer_dir` for the caller to remove).
    pub fn capture_uppers(
        &self,
        targets: &[PathBuf],
        layer_dir: &Path,
    ) -> Result<(capture::CopyStats, Duration)> {
        let parts: Vec<(PathBuf, PathBuf)> = targets
            .iter()
            .map(|t| {
                let to = crate::template::layers::Layers::part(layer_dir, t);
                (self.layer_upper_dir(t), to)
            })
            .collect();
        let mut stats = capture::CopyStats::default();
        let mut stamps = capture::Stamps::default();
        let mut copy_all = |stamps: &mut capture::Stamps| {
            parts.iter().try_for_each(|(upper, to)| {
                let s = capture::copy_upper(upper, to, stamps)
                    .map_err(|e| Error::Capture(to.clone(), e))?;
                stats.add(s);
                Ok(())
            })
        };
        {
            // Paused: one copy, under the state lock so that no resume comes in between.
            let st = self.lock();
            if st.killed {
                return Err(Error::NotRunning(self.id.clone()));
            }
            if st.frozen {
                copy_all(&mut stamps)?;
                return Ok((stats, Duration::ZERO));
            }
        }
        copy_all(&mut stamps)?;
        // From here the state lock is held, so a pause, resume or kill waits for the
        // capture; a sandbox paused meanwhile is synced without a freeze of its own.
        let st = self.lock();
        if st.killed {
            return Err(Error::NotRunning(self.id.clone()));
        }
        let paused = st.frozen;
        let start = std::time::Instant::now();
        if !paused {
            self.cgroup.freeze()?;
        }
        let synced = parts.iter().try_for_each(|(upper, to)| {
            let s = capture::sync_upper(upper, to, &stamps)
                .map_err(|e| Error::Capture(to.clone(), e))?;
            stats.add(s);
            Ok(())
        });
        if paused {
            return synced.map(|()| (stats, Duration::ZERO));
        }
        let thawed = self.cgroup.thaw();
        let frozen = start.elapsed();
        thawed?;
        synced.map(|()| (stats, frozen))
    }

    /// Kills every process of the sandbox and removes everything it had: processes (SIGKILL
    /// to init ends the pid namespace; the cgroup is then emptied), the init zombie, the
    /// cgroup, the mount namespace (with its last process), the disk (its image shut down
    /// unflushed, unmounted, its loop device detached; the file is unlinked in the background,
    /// see [`Runtime::wait_for_disk_cleanup`](super::Runtime::wait_for_disk_cleanup)), the
    /// sandbox directory and the held namespace and pid descriptors. Idempotent.
    ///
    /// # Errors
    ///
    /// The failing cleanup step's variant; calling `kill` again retries the rest.
    pub fn kill(&self) -> Result<()> {
        let mut st = self.lock();
        if st.killed {
            return Ok(());
        }
        if let Some(fd) = st.pidfd.as_ref()
            && st.exit.is_none()
        {
            // SAFETY: pidfd_send_signal with a valid pidfd and no siginfo.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ESRCH) {
                    return Err(Error::Signal {
                        pid: self.init_pid,
                        signal: libc::SIGKILL,
                        source: e,
                    });
                }
            }
        }
        // Thaws first (frozen tasks cannot die), then SIGKILLs until the cgroup is empty:
        // catches exec_in helpers, which live in the cgroup but outside the pid namespace.
        self.cgroup.kill_all(KILL_TIMEOUT)?;
        st.frozen = false;
        if let Some(fd) = st.pidfd.as_ref()
            && st.exit.is_none()
        {
            st.exit = waitid_pidfd(self.init_pid, fd, 0)?;
        }
        st.pidfd = None;
        st.netns = None;
        self.cgroup.remove()?;
        disk::discard(&self.dir, self.disks.as_deref())?;
        st.killed = true;
        Ok(())
    }
}

impl Drop for SandboxHandle {
    /// Leaves the sandbox running; only reaps its init if it already exited, so a dropped
    /// handle leaves no zombie behind.
    fn drop(&mut self) {
        let st = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let (Some(fd), None, false) = (st.pidfd.as_ref(), st.exit, st.killed) {
            let _ = waitid_pidfd(self.init_pid, fd, libc::WNOHANG);
        }
    }
}

/// [`SandboxHandle::stats`] without a cgroup: sums over every host process in the pid
/// namespace of `init_pid`.
fn procfs_stats(init_pid: i32) -> CgroupStats {
    let mut s = CgroupStats::default();
    let Ok(ns) = std::fs::read_link(format!("/proc/{init_pid}/ns/pid")) else {
        return s;
    };
    // SAFETY: sysconf only reads configuration values.
    let (tick, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let tick_ns = 1_000_000_000 / u64::try_from(tick).unwrap_or(100).max(1);
    let page = u64::try_from(page).unwrap_or(4096);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/ns/pid"))
            .ok()
            .as_ref()
            != Some(&ns)
        {
            continue;
        }
        // Fields after the `(comm)`, which may itself contain spaces: state is field 3,
        // utime 14, stime 15, num_threads 20.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| {
            f.get(i - 3)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        s.cpu_usage_ns += (num(14) + num(15)) * tick_ns;
        s.pids += num(20);
        let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
        let rss: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        s.memory_bytes += rss * page;
    }
    s
}

/// `waitid(P_PIDFD)`: `Some(code)` once exited (reaped), `None` while running (`WNOHANG`).
pub(super) fn waitid_pidfd(pid: i32, fd: &OwnedFd, flags: libc::c_int) -> Result<Option<i32>> {
    loop {
        // SAFETY: siginfo_t is plain data; all-zero is valid and lets us detect "no child
        // changed state" under WNOHANG (si_pid stays 0).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: P_PIDFD (3) with a valid pidfd and a valid siginfo buffer.
        let rc = unsafe {
            libc::waitid(
                3 as libc::idtype_t,
                fd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | flags,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // Already reaped elsewhere: report as killed.
                Some(libc::ECHILD) => return Ok(Some(128 + libc::SIGKILL)),
                _ => return Err(Error::Wait(pid, e)),
            }
        }
        // SAFETY: the kernel filled `info` for WEXITED; these accessors read the union
        // members that waitid defines.
        let (spid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
        if spid == 0 {
            return Ok(None);
        }
        return Ok(Some(if code == libc::CLD_EXITED {
            status
        } else {
            128 + status
        }));
    }
}
