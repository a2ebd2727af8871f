//! The sandbox runtime: isolated process trees on one Linux host.
//!
//! Owns namespaces, the overlay root filesystem, cgroups, seccomp and capabilities, and the
//! processes that set them up. Does not own sandbox ids, timeouts, the REST API or envd.
//! Every step is listed in `docs/isolation.md`.
//!
//! ```no_run
//! use e2b_local::isolation::{InitProgram, Limits, Runtime, RuntimeConfig, SandboxSpec};
//! use e2b_local::template::Template;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::new(RuntimeConfig::new("/var/lib/e2b-local"))?;
//! runtime.check()?;
//! let base = Template::base(runtime.data_dir())?;
//! let sandbox = runtime.spawn(SandboxSpec::new(
//!     "i0123456789abcdefghij",
//!     &base,
//!     InitProgram::sandbox(["/bin/sleep", "infinity"]),
//! ))?;
//! let out = sandbox.exec_in(&["/bin/sh", "-c", "id -u"], &Default::default())?;
//! assert_eq!(out.stdout, b"0\n");
//! sandbox.kill()?;
//! # Ok(()) }
//! ```
#![allow(unsafe_code)]

pub mod caps;
pub mod capture;
pub mod cgroup;
pub mod disk;
mod error;
pub mod exec;
pub mod mounts;
pub mod namespaces;
pub mod rootless;
pub mod seccomp;

mod handle;
pub mod host_runtime;
mod runtime;
mod spawn;
mod spawn_ns;

use std::path::PathBuf;
use std::time::Duration;

pub use cgroup::{
    CgroupConfig, CgroupStats, CgroupVersion, NoCgroup, SandboxCgroup, SandboxCgroupImpl,
};
pub use error::{Error, Result};
pub use exec::{EXEC_ROLE, Executable, INIT_ROLE, ProgramSpec, run_helper_if_requested};
pub use handle::SandboxHandle;
pub use runtime::{Runtime, RuntimeConfig, Unavailable, validate_id};
pub use spawn::layer_name;
pub(crate) use spawn::{SPAWN_DIRS, SPAWN_FILES};

use crate::template::Template;

/// How long `spawn` waits for the helper to report the program exec'd.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `kill` waits for the cgroup to empty.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Resource limits of one sandbox. `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// CPU in thousandths of a core (`2000` = 2 cores), as a CFS quota per 100 ms period;
    /// clamped to the CPU all sandboxes share ([`cgroup::sandboxes_cpu_millis`]) when the
    /// runtime can cap their parent cgroup.
    pub cpu_millis: Option<u32>,
    /// Memory hard limit in bytes; the OOM killer acts inside the sandbox only.
    pub memory_bytes: Option<u64>,
    /// Maximum number of tasks (processes and threads).
    pub pids: Option<u64>,
    /// The disk budget in bytes: the size of a sparse ext4 image on a loop device holding the
    /// writable layers (upper directories); a write past it gets `ENOSPC`. `None` keeps the
    /// upper directories on the data dir's filesystem, unbounded (also the only choice where
    /// [`Runtime::can_limit_disk`] is false).
    pub disk_bytes: Option<u64>,
}

/// The sandbox's first process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitProgram {
    /// What to execute.
    pub exe: Executable,
    /// Full argv including argv\[0\].
    pub argv: Vec<String>,
    /// The complete environment.
    pub env: Vec<(String, String)>,
    /// User id (default 0: envd runs as root inside).
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Run under the minimal reaping init (default `true`).
    pub reaper: bool,
}

impl InitProgram {
    /// The server's own executable re-run inside the sandbox (`/proc/self/exe` of the
    /// helper, opened before `pivot_root`), e.g. with `E2B_LOCAL_ROLE=envd` in `env`.
    pub fn self_exe<I: IntoIterator<Item = S>, S: Into<String>>(argv: I) -> Self {
        Self::with(Executable::Host(PathBuf::from("/proc/self/exe")), argv)
    }

    /// Any host executable, opened before `pivot_root` and run by descriptor
    /// (e.g. a separately built envd given with `--envd PATH`).
    pub fn host<I: IntoIterator<Item = S>, S: Into<String>>(
        path: impl Into<PathBuf>,
        argv: I,
    ) -> Self {
        Self::with(Executable::Host(path.into()), argv)
    }

    /// A program inside the sandbox's root; argv\[0\] is the path (or a name looked up in
    /// `PATH`).
    pub fn sandbox<I: IntoIterator<Item = S>, S: Into<String>>(argv: I) -> Self {
        let argv: Vec<String> = argv.into_iter().map(Into::into).collect();
        let exe = Executable::Sandbox(PathBuf::from(argv.first().cloned().unwrap_or_default()));
        InitProgram {
            exe,
            argv,
            env: default_env(),
            uid: 0,
            gid: 0,
            reaper: true,
        }
    }

    fn with<I: IntoIterator<Item = S>, S: Into<String>>(exe: Executable, argv: I) -> Self {
        InitProgram {
            exe,
            argv: argv.into_iter().map(Into::into).collect(),
            env: default_env(),
            uid: 0,
            gid: 0,
            reaper: true,
        }
    }
}

fn default_env() -> Vec<(String, String)> {
    vec![("PATH".into(), exec::DEFAULT_PATH.into())]
}

/// Everything needed to create one sandbox.
#[derive(Debug, Clone)]
pub struct SandboxSpec<'a> {
    /// Sandbox id: 1 to 64 characters of `[a-z0-9-]`; names the directory and cgroup.
    pub id: String,
    /// The template whose layers form the read-only lower directories.
    pub template: &'a Template,
    /// Hostname inside (default: the id).
    pub hostname: Option<String>,
    /// Resource limits.
    pub limits: Limits,
    /// The first process.
    pub init: InitProgram,
    /// Set `no_new_privs` for every sandbox process (default `false`, so `sudo` works).
    pub no_new_privs: bool,
    /// Host file receiving the first process's stdout and stderr (`None`: `/dev/null`).
    pub log: Option<PathBuf>,
    /// The nameserver written to the sandbox's `/etc/resolv.conf` (`None`: the template's
    /// file stays).
    pub nameserver: Option<std::net::Ipv4Addr>,
    /// A CA certificate (PEM) appended to the template's `/etc/ssl/certs/ca-certificates.crt`
    /// in the sandbox (the egress proxy's, for header rules over HTTPS).
    pub trusted_ca: Option<String>,
    /// A disk image to use as the sandbox's disk instead of a fresh one of
    /// `limits.disk_bytes`: a paused sandbox's, kept by [`Runtime::save_upper`]. It is
    /// hard-linked, not copied, so it stays where it is until the caller removes it.
    pub disk_image: Option<PathBuf>,
    /// Host directories bind-mounted read-write into the sandbox (its volumes).
    pub binds: Vec<mounts::BindMount>,
}

impl<'a> SandboxSpec<'a> {
    /// A spec with default limits, hostname = id, no log.
    pub fn new(id: impl Into<String>, template: &'a Template, init: InitProgram) -> Self {
        SandboxSpec {
            id: id.into(),
            template,
            hostname: None,
            limits: Limits::default(),
            init,
            no_new_privs: false,
            log: None,
            nameserver: None,
            trusted_ca: None,
            disk_image: None,
            binds: Vec::new(),
        }
    }
}

/// Options for [`SandboxHandle::exec_in`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOptions {
    /// User id (default 0).
    pub uid: u32,
    /// Group id (default 0).
    pub gid: u32,
    /// The complete environment (default: `PATH` only).
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox (default `/`).
    pub cwd: PathBuf,
    /// Set `no_new_privs`.
    pub no_new_privs: bool,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            uid: 0,
            gid: 0,
            env: default_env(),
            cwd: PathBuf::from("/"),
            no_new_privs: false,
        }
    }
}

impl ExecOptions {
    /// As the sandbox's `user` (uid/gid 1000, cwd `/home/user`, `HOME` and `USER` set).
    pub fn user() -> Self {
        let mut env = default_env();
        env.push(("HOME".into(), "/home/user".into()));
        env.push(("USER".into(), "user".into()));
        ExecOptions {
            uid: 1000,
            gid: 1000,
            env,
            cwd: PathBuf::from("/home/user"),
            no_new_privs: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_shareable_across_threads() {
        fn assert<T: Send + Sync + 'static>() {}
        assert::<Runtime>();
        assert::<SandboxHandle>();
    }
}
