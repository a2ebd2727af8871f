//! Rootless mode: the whole server runs in one user namespace of its own, where it is uid 0
//! with every capability, plus a private mount namespace (the podman/rootlesskit approach).
//!
//! Why one namespace for the server rather than one per sandbox: the server reaches a
//! sandbox's envd by `setns(CLONE_NEWNET)` from a helper thread
//! ([`SandboxHandle::connect`](super::SandboxHandle::connect)). That needs `CAP_SYS_ADMIN`
//! in the user namespace owning the network namespace *and* in the caller's own one; a
//! multi-threaded process cannot `setns` into a user namespace, and a plain non-root server
//! has no `CAP_SYS_ADMIN` at all. When the server itself lives in user namespace A and every
//! sandbox namespace is created from A (so owned by A), all of that holds, and the root code
//! paths (overlays, tmpfs, devpts, proc, pivot_root, seccomp, capabilities) run unchanged.
//!
//! [`enter_user_namespace`] is the bootstrap, run by `e2b-local serve` before any thread
//! exists: fork; the child `unshare`s a user and a mount namespace, makes its mounts
//! private and waits; the parent maps ids with the setuid helpers `newuidmap`/`newgidmap`
//! (`0 → the invoking user`, `1..=count → the user's range in /etc/subuid` and
//! `/etc/subgid`), then lets the child re-execute the program with [`ROOTLESS_ENV`] set.
//! The exec'd server is uid 0 in the namespace with a full capability set. The parent
//! forwards `SIGINT`, `SIGTERM`, `SIGHUP` and `SIGQUIT` to it and exits with its status.
//!
//! With [`UserModeNetwork`] the child also unshares a network namespace, and the parent
//! (still the invoking user on the host) attaches `pasta` (Debian package `passt`) to it:
//! the namespace gets a copy of the host's uplink address and default route, its traffic
//! leaves through pasta's sockets of the invoking user, and the API port is forwarded in.
//! The server then runs its sandbox networks (veths, nftables, DNS forwarder, egress proxy)
//! in that namespace exactly as a root server does on the host (`docs/network.md`).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

use super::error::{Error, Result};

/// Set (to `1`) in the environment of the server that [`enter_user_namespace`] started, so
/// it does not bootstrap again.
pub const ROOTLESS_ENV: &str = "E2B_LOCAL_ROOTLESS";

/// Set in the environment of a rootless server with [`UserModeNetwork`]: the host's IPv4
/// addresses when it started, comma-separated. Through pasta they are ordinary destinations,
/// so the server forbids them to sandboxes.
pub const HOST_ADDRESSES_ENV: &str = "E2B_LOCAL_HOST_ADDRESSES";

/// Where a rootless server with [`UserModeNetwork`] sends DNS queries meant for a resolver on
/// the host's loopback (e.g. systemd-resolved's 127.0.0.53): pasta forwards what is sent to
/// it to the host's first resolver (`--dns-forward`). Link-local, so never a real server.
pub const PASTA_DNS: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 53);

/// How long the server's start waits for pasta to configure its namespace.
const PASTA_READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// User-mode networking for the rootless server: pasta connects the server's own network
/// namespace to the host's network and forwards the API's port into it.
#[derive(Debug, Clone)]
pub struct UserModeNetwork {
    pasta: PathBuf,
    listen: SocketAddr,
}

impl UserModeNetwork {
    /// Checks that pasta can run for a server listening on `listen`.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] naming what is missing: `pasta`, access to `/dev/net/tun`, or a
    /// fixed port (pasta forwards the port it is given; `0` is not known in advance).
    pub fn for_listen(listen: SocketAddr) -> Result<Self> {
        let unsupported = |feature: &str, hint: &str| Error::Unsupported {
            feature: format!("user-mode networking: {feature}"),
            hint: hint.to_owned(),
        };
        // First: it does not depend on the host.
        if listen.port() == 0 {
            return Err(unsupported(
                "a fixed API port (pasta forwards it from the host)",
                "pass --listen with a port other than 0",
            ));
        }
        let pasta = find_in_path("pasta").ok_or_else(|| {
            unsupported(
                "pasta (user-mode networking)",
                "install it as root: `apt install passt` (Debian, Ubuntu) or `dnf install passt` (Fedora)",
            )
        })?;
        if let Err(e) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
        {
            return Err(unsupported(
                &format!("opening /dev/net/tun ({e})"),
                "make it usable by every user as distributions do: `chmod 0666 /dev/net/tun` as root",
            ));
        }
        Ok(Self { pasta, listen })
    }

    /// pasta attached to the namespaces of `pid`: a copy of the host's uplink (IPv4 only),
    /// no gateway mapped to the host's loopback, only the API port forwarded in and nothing
    /// out to the host's loopback, DNS to [`PASTA_DNS`] forwarded to the host's resolver.
    fn pasta_command(&self, pid: Pid) -> std::process::Command {
        let forward = match self.listen.ip() {
            ip if ip.is_unspecified() => self.listen.port().to_string(),
            ip => format!("{ip}/{}", self.listen.port()),
        };
        let mut cmd = std::process::Command::new(&self.pasta);
        cmd.args([
            "--config-net",
            "--no-map-gw",
            "-4",
            "--foreground",
            "--quiet",
        ])
        .args(["--dns-forward", &PASTA_DNS.to_string()])
        .args(["-t", &forward, "-u", "none", "-T", "none", "-U", "none"])
        .arg(pid.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null());
        // SAFETY: the closure only calls prctl, which is async-signal-safe, between fork and
        // exec. pasta outlives its target namespace otherwise: it must end with us, even when
        // we are killed.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        cmd
    }
}

/// The host's IPv4 addresses, comma-separated (for [`HOST_ADDRESSES_ENV`]).
fn host_addresses() -> String {
    let mut addresses: Vec<Ipv4Addr> = nix::ifaddrs::getifaddrs()
        .into_iter()
        .flatten()
        .filter_map(|a| a.address?.as_sockaddr_in().map(|s| s.ip()))
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether this network namespace has a default IPv4 route (`/proc/net/route`).
fn has_default_route() -> bool {
    std::fs::read_to_string("/proc/net/route").is_ok_and(|table| {
        table
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some("00000000"))
    })
}

/// The fewest subordinate ids that still contain the sandbox's `user` (uid/gid 1000).
pub const MIN_SUBORDINATE_IDS: u32 = 1000;

/// Whether this process is in a user namespace other than the initial one, i.e. "root"
/// here is not the host's root: rootless mode (ours, or e.g. a rootless container's). The
/// initial namespace maps all 2³² − 1 ids onto themselves.
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|map| {
        !map.split_whitespace()
            .eq(["0", "0", "4294967295"].iter().copied())
    })
}

/// Whether `e2b-local serve` must enter a user namespace first: not root, and not already
/// the server [`enter_user_namespace`] started.
pub fn needs_user_namespace() -> bool {
    !nix::unistd::geteuid().is_root() && std::env::var_os(ROOTLESS_ENV).is_none()
}

/// A range of subordinate ids (`/etc/subuid` or `/etc/subgid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIdRange {
    /// First host id of the range.
    pub start: u32,
    /// Number of ids.
    pub count: u32,
}

/// The first range in `text` (the format of `/etc/subuid`: `name-or-id:start:count` lines)
/// that belongs to `user` or `uid` and holds at least [`MIN_SUBORDINATE_IDS`] ids.
pub fn parse_subid(text: &str, user: &str, uid: u32) -> Option<SubIdRange> {
    let uid = uid.to_string();
    text.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (name, start, count) = (f.next()?, f.next()?, f.next()?);
        if name != user && name != uid {
            return None;
        }
        let range = SubIdRange {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        };
        (range.count >= MIN_SUBORDINATE_IDS).then_some(range)
    })
}

/// Everything the mapping needs, gathered before forking so a missing piece is reported
/// before anything is started.
#[derive(Debug, Clone)]
pub struct IdMapping {
    /// The invoking user's name.
    pub user: String,
    /// Its uid and gid (mapped to 0 inside).
    pub uid: u32,
    /// See `uid`.
    pub gid: u32,
    /// Mapped to 1..=count inside.
    pub subuid: SubIdRange,
    /// See `subuid`.
    pub subgid: SubIdRange,
    /// The setuid helpers.
    pub newuidmap: PathBuf,
    /// See `newuidmap`.
    pub newgidmap: PathBuf,
}

/// The executable `name` in `PATH`, else in the usual bin and sbin directories (an
/// unprivileged user's `PATH` often lacks the sbin ones).
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok())
}

impl IdMapping {
    /// Looks up the current user, its subordinate ranges and the helpers.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] naming exactly what is missing and how to get it.
    pub fn for_current_user() -> Result<Self> {
        let uid = nix::unistd::getuid();
        let gid = nix::unistd::getgid();
        let user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| uid.to_string(), |u| u.name);
        let helper = |name: &str| {
            find_in_path(name).ok_or_else(|| Error::Unsupported {
                feature: format!("rootless mode: {name} (setuid helper that maps the user namespace's ids)"),
                hint: "install it as root: `apt install uidmap` (Debian, Ubuntu) or `dnf install shadow-utils` (Fedora); or run e2b-local as root".into(),
            })
        };
        let newuidmap = helper("newuidmap")?;
        let newgidmap = helper("newgidmap")?;
        let range = |file: &str, kind: &str| {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            parse_subid(&text, &user, uid.as_raw()).ok_or_else(|| Error::Unsupported {
                feature: format!(
                    "rootless mode: a subordinate {kind} range of at least {MIN_SUBORDINATE_IDS} ids for user {user} in {file}"
                ),
                hint: format!(
                    "add one as root: `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}` (pick a range no other user has); or run e2b-local as root"
                ),
            })
        };
        Ok(IdMapping {
            subuid: range("/etc/subuid", "uid")?,
            subgid: range("/etc/subgid", "gid")?,
            user,
            uid: uid.as_raw(),
            gid: gid.as_raw(),
            newuidmap,
            newgidmap,
        })
    }

    fn apply(&self, pid: Pid) -> Result<()> {
        for (tool, id, range) in [
            (&self.newuidmap, self.uid, self.subuid),
            (&self.newgidmap, self.gid, self.subgid),
        ] {
            let out = std::process::Command::new(tool)
                .arg(pid.to_string())
                .args(["0", &id.to_string(), "1"])
                .args(["1", &range.start.to_string(), &range.count.to_string()])
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| Error::SpawnHelper(tool.clone(), e))?;
            if !out.status.success() {
                return Err(Error::Unsupported {
                    feature: format!(
                        "rootless mode: {} {pid} 0 {id} 1 1 {} {} ({}: {})",
                        tool.display(),
                        range.start,
                        range.count,
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                    hint: "check that the helper is setuid root and the range in /etc/subuid or /etc/subgid belongs to this user and does not contain its own id".into(),
                });
            }
        }
        Ok(())
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::HelperPipe(e.into()))
}

fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// Signals the bootstrap parent forwards to the server.
const FORWARDED: [Signal; 4] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// Runs this program again (same argv) as uid 0 of a new user namespace with a private
/// mount namespace (and, with `network`, a network namespace of its own that pasta connects
/// to the host's network), and returns its exit code (128+signal when it was killed) once it
/// ends. Call it before any thread is started.
///
/// # Errors
///
/// [`Error::Unsupported`] when `newuidmap`/`newgidmap` or a subordinate id range is
/// missing, the kernel refuses the user namespace, or pasta cannot start; [`Error::Fork`]
/// and pipe errors.
pub fn enter_user_namespace(network: Option<&UserModeNetwork>) -> Result<i32> {
    if thread_count() != 1 {
        return Err(Error::Unsupported {
            feature: "rootless mode from a multi-threaded process".into(),
            hint: "enter the user namespace before starting any thread".into(),
        });
    }
    let mapping = IdMapping::for_current_user()?;
    // Everything the child needs after fork, allocated now.
    let exe =
        CString::new("/proc/self/exe").map_err(|_| Error::NulByte("/proc/self/exe".into()))?;
    let to_c = |b: &[u8]| {
        CString::new(b).map_err(|_| Error::NulByte(String::from_utf8_lossy(b).into_owned()))
    };
    let argv = std::env::args_os()
        .map(|a| to_c(a.as_bytes()))
        .collect::<Result<Vec<_>>>()?;
    let mut envp = std::env::vars_os()
        .filter(|(k, _)| k != ROOTLESS_ENV)
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            to_c(&kv)
        })
        .collect::<Result<Vec<_>>>()?;
    envp.push(to_c(format!("{ROOTLESS_ENV}=1").as_bytes())?);
    let mut namespaces = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS;
    if network.is_some() {
        namespaces |= CloneFlags::CLONE_NEWNET;
        envp.retain(|kv| !kv.as_bytes().starts_with(HOST_ADDRESSES_ENV.as_bytes()));
        envp.push(to_c(
            format!("{HOST_ADDRESSES_ENV}={}", host_addresses()).as_bytes(),
        )?);
    }
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_p.push(std::ptr::null());

    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    // Blocked before fork so no forwarded signal is lost in between; the child restores the
    // old mask before exec.
    let mut forwarded = SigSet::empty();
    for s in FORWARDED {
        forwarded.add(s);
    }
    forwarded.add(Signal::SIGCHLD);
    let mut old_mask = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), Some(&mut old_mask))
        .map_err(|e| Error::Fork(e.into()))?;
    let parent = nix::unistd::getpid();
    // SAFETY: the process is single-threaded (checked above), so the child inherits a
    // consistent heap; it only makes syscalls and execs or _exits.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(Error::Fork(e.into())),
        Ok(ForkResult::Child) => {
            drop(ready_r);
            drop(go_w);
            let mut ready = File::from(ready_w);
            let code = (|| {
                nix::sched::unshare(namespaces)
                    .map_err(|e| format!("unshare({namespaces:?}): {e}"))?;
                if namespaces.contains(CloneFlags::CLONE_NEWNET) {
                    // The API listens on it; pasta configures the uplink only.
                    super::namespaces::loopback_up().map_err(|e| e.to_string())?;
                }
                // Nothing mounted by the server (disk tmpfs) propagates to the host.
                nix::mount::mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .map_err(|e| format!("make mounts private: {e}"))?;
                Ok::<(), String>(())
            })();
            match code {
                Ok(()) => {
                    let _ = ready.write_all(b"K");
                }
                Err(msg) => {
                    let _ = ready.write_all(format!("E{msg}").as_bytes());
                    // SAFETY: _exit skips the parent's atexit handlers and stdio buffers.
                    unsafe { libc::_exit(1) };
                }
            }
            drop(ready);
            let mut go = [0u8; 1];
            if File::from(go_r).read_exact(&mut go).is_err() || go[0] != b'G' {
                // SAFETY: as above.
                unsafe { libc::_exit(1) };
            }
            // Stop with the bootstrap parent if it dies without forwarding a signal.
            // SAFETY: PR_SET_PDEATHSIG touches no memory.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) };
            if nix::unistd::getppid() != parent {
                // SAFETY: as above.
                unsafe { libc::_exit(1) };
            }
            if namespaces.contains(CloneFlags::CLONE_NEWNET) {
                // pasta (started by the parent after 'G') has configured the namespace once
                // its default route exists; bounded, the server starts regardless.
                let start = std::time::Instant::now();
                while !has_default_route() && start.elapsed() < PASTA_READY_TIMEOUT {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
            // SAFETY: argv and envp are NUL-terminated arrays of valid C strings that live
            // until exec.
            unsafe { libc::execve(exe.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
            let _ = writeln!(
                std::io::stderr(),
                "e2b-local: re-executing in the user namespace failed: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: as above.
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(ready_w);
            drop(go_r);
            // Sandbox inits are the server's children (CLONE_PARENT); should the server die
            // without killing them, they become ours, and `supervise` kills them.
            // SAFETY: PR_SET_CHILD_SUBREAPER touches no memory.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
            let abort = |e: Error| {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                e
            };
            let mut answer = Vec::new();
            let _ = File::from(ready_r).read_to_end(&mut answer);
            match answer.first() {
                Some(b'K') => {}
                Some(b'E') => {
                    return Err(abort(Error::Unsupported {
                        feature: format!(
                            "rootless mode: a user namespace ({})",
                            String::from_utf8_lossy(&answer[1..])
                        ),
                        hint: "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0, or the AppArmor restriction kernel.apparmor_restrict_unprivileged_userns=0); or run e2b-local as root".into(),
                    }));
                }
                _ => {
                    return Err(abort(Error::HelperProtocol(
                        "the user-namespace child exited before reporting".into(),
                    )));
                }
            }
            if let Err(e) = mapping.apply(child) {
                return Err(abort(e));
            }
            // Ours until `supervise` ends: it is killed with the server's other leftovers.
            if let Some(network) = network
                && let Err(e) = network.pasta_command(child).spawn()
            {
                return Err(abort(Error::SpawnHelper(network.pasta.clone(), e)));
            }
            let mut go = File::from(go_w);
            go.write_all(b"G")
                .map_err(|e| abort(Error::HelperPipe(e)))?;
            drop(go);
            Ok(supervise(child, &forwarded))
        }
    }
}

/// The bootstrap parent's loop: forwards signals to the server and returns its exit code
/// once it has ended, after killing any sandbox it left behind.
fn supervise(child: Pid, set: &SigSet) -> i32 {
    let code = loop {
        let Ok(sig) = set.wait() else { continue };
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, sig);
            continue;
        }
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
            Ok(_) => {}
            Err(_) => break 1,
        }
    };
    kill_orphans();
    code
}

/// After the server ended: its orphans were reparented to us (child subreaper). A server
/// that crashed leaves its sandboxes' inits; SIGKILL to each ends its whole pid namespace.
fn kill_orphans() {
    let me = std::process::id();
    // Bounded: a round that kills nothing ends it (never wait for a process we could not
    // signal).
    for _ in 0..100 {
        let mut killed = false;
        for pid in children_of(me) {
            if nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                let _ = waitpid(Pid::from_raw(pid), None);
                killed = true;
            }
        }
        if !killed {
            return;
        }
    }
}

/// Pids whose parent is `parent` (from `/proc/<pid>/stat`).
fn children_of(parent: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// One line describing the current user namespace's id mapping (`/proc/self/uid_map`),
/// e.g. `0 → 1000, 1-65536 → 100000-165535`.
pub fn describe_uid_map() -> String {
    describe_map(&std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default())
}

fn describe_map(text: &str) -> String {
    text.lines()
        .filter_map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            let [inside, outside, count] = v[..] else {
                return None;
            };
            Some(if count == 1 {
                format!("{inside} → {outside}")
            } else {
                format!(
                    "{inside}-{} → {outside}-{}",
                    inside + count - 1,
                    outside + count - 1
                )
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `path` is writable by this process (`access(W_OK)`, which honours the user
/// namespace: a directory owned by an unmapped host id is not).
pub(crate) fn writable(path: &Path) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_ranges_match_by_name_or_uid_and_need_enough_ids() {
        let text = "other:100000:65536\nalice:165536:65536\n1001:231072:65536\nsmall:300000:10\n";
        assert_eq!(
            parse_subid(text, "alice", 1000),
            Some(SubIdRange {
                start: 165_536,
                count: 65_536
            })
        );
        assert_eq!(
            parse_subid(text, "bob", 1001),
            Some(SubIdRange {
                start: 231_072,
                count: 65_536
            })
        );
        assert_eq!(parse_subid(text, "small", 5), None);
        assert_eq!(parse_subid(text, "carol", 7), None);
        assert_eq!(parse_subid("garbage\nalice:x:y\n", "alice", 1), None);
    }

    #[test]
    fn maps_are_described() {
        assert_eq!(
            describe_map("         0       1002          1\n         1     165536      65536\n"),
            "0 → 1002, 1-65536 → 165536-231071"
        );
        assert_eq!(
            describe_map("0 0 4294967295\n"),
            "0-4294967294 → 0-4294967294"
        );
    }
}
