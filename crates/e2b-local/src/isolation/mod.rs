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
pub mod cgroup;
mod error;
pub mod exec;
pub mod mounts;
pub mod namespaces;
pub mod rootless;
pub mod seccomp;

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

pub use cgroup::{
    CgroupConfig, CgroupStats, CgroupVersion, NoCgroup, SandboxCgroup, SandboxCgroupImpl,
};
pub use error::{Error, Result};
pub use exec::{EXEC_ROLE, Executable, INIT_ROLE, ProgramSpec, run_helper_if_requested};

use crate::template::Template;

/// How long `spawn` waits for the helper to report the program exec'd.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `kill` waits for the cgroup to empty.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Resource limits of one sandbox. `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// CPU in thousandths of a core (`2000` = 2 cores), as a CFS quota per 100 ms period.
    pub cpu_millis: Option<u32>,
    /// Memory hard limit in bytes; the OOM killer acts inside the sandbox only.
    pub memory_bytes: Option<u64>,
    /// Maximum number of tasks (processes and threads).
    pub pids: Option<u64>,
    /// Size of the writable layer (upper directory) in bytes, on a size-limited tmpfs;
    /// `None` keeps the upper directory on the data dir's filesystem, unbounded.
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

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Data directory: `templates/` and `sandboxes/<id>/` live here.
    pub data_dir: PathBuf,
    /// Cgroup interface, mount table and parent (default: detected, parent `e2b-local`).
    pub cgroup: CgroupConfig,
    /// The executable run in the hidden helper roles (default: the current executable).
    /// Its `main` must call [`run_helper_if_requested`] first.
    pub helper_exe: PathBuf,
    /// Rootless mode: the process is uid 0 of a user namespace that is not the host's
    /// (default: detected with [`rootless::in_user_namespace`]). Overlays get `userxattr`,
    /// and cgroups are used only when the parent is writable (delegated).
    pub rootless: bool,
}

impl RuntimeConfig {
    /// Defaults for `data_dir`: detected cgroups under `e2b-local`, the current executable
    /// as helper.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        RuntimeConfig {
            data_dir: data_dir.into(),
            cgroup: CgroupConfig::detect("e2b-local"),
            helper_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")),
            rootless: rootless::in_user_namespace(),
        }
    }
}

/// Creates sandboxes.
#[derive(Debug)]
pub struct Runtime {
    config: RuntimeConfig,
    /// Why sandboxes get no cgroup (rootless mode without a writable parent), or `None`.
    no_cgroup: Option<String>,
}

/// A feature this runtime cannot offer on this host, and why: see [`Runtime::unavailable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// What is missing, e.g. `pause and resume (the cgroup freezer)`.
    pub feature: String,
    /// Why, and what would provide it.
    pub reason: String,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.feature, self.reason)
    }
}

/// Checks a sandbox id: it becomes a path component, a cgroup name and a hostname.
///
/// # Errors
///
/// [`Error::InvalidId`].
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_owned()))
    }
}

impl Runtime {
    /// Creates the data directory layout.
    ///
    /// # Errors
    ///
    /// [`Error::CreateDir`].
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        // Private whatever the umask and however the directory was made: it holds every
        // sandbox's files and the server's secrets, and only the server's user may reach them.
        crate::state::create_private_dir(&config.data_dir)
            .map_err(|e| Error::CreateDir(config.data_dir.clone(), e))?;
        for d in [
            config.data_dir.join("sandboxes"),
            config.data_dir.join("templates"),
            config.data_dir.join("mnt"),
        ] {
            std::fs::create_dir_all(&d).map_err(|e| Error::CreateDir(d.clone(), e))?;
        }
        // Mount point for host executables (see mounts::read_only_exe).
        let exe = config.data_dir.join("exe");
        if !exe.exists() {
            std::fs::write(&exe, b"").map_err(|e| Error::WriteFile(exe.clone(), e))?;
        }
        let no_cgroup = if config.rootless {
            cgroup::rootless_cgroup_problem(&config.cgroup)
        } else {
            None
        };
        Ok(Runtime { config, no_cgroup })
    }

    /// Whether sandboxes can be paused (frozen): false without cgroups (rootless mode
    /// without a delegated cgroup).
    pub fn can_freeze(&self) -> bool {
        self.no_cgroup.is_none()
    }

    /// What this runtime cannot do on this host although [`check`](Self::check) passed,
    /// and why. Empty as root. In rootless mode without a writable cgroup parent: CPU,
    /// memory and pids limits, pause and resume. A server should print this at start-up.
    pub fn unavailable(&self) -> Vec<Unavailable> {
        let mut out = Vec::new();
        if let Some(why) = &self.no_cgroup {
            out.push(Unavailable {
                feature: "CPU, memory and pids limits".into(),
                reason: format!(
                    "sandboxes run without them: no cgroup in rootless mode ({why}); {}",
                    cgroup::DELEGATION_HINT
                ),
            });
            out.push(Unavailable {
                feature: "pause and resume (the cgroup freezer)".into(),
                reason: "pausing answers 501 and autoPause is refused: no cgroup in rootless mode"
                    .into(),
            });
        }
        if self.config.rootless {
            out.push(Unavailable {
                feature: "sudo and other setuid programs of the host's /usr inside sandboxes".into(),
                reason: "in rootless mode they are owned by the host's root, an id outside the user namespace, so the kernel ignores their setuid bit; root inside also cannot modify such files".into(),
            });
        }
        out
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Reports the first missing kernel feature or privilege, naming it and how to get it.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`].
    pub fn check(&self) -> Result<()> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::Unsupported {
                feature: "sandboxes in a process that is not root".into(),
                hint: "start the server with `e2b-local serve`, which as a normal user first enters a user namespace of its own (rootless mode); a program that embeds the runtime must run as root".into(),
            });
        }
        for (ns, file) in [
            ("pid namespaces (CONFIG_PID_NS)", "pid"),
            ("network namespaces (CONFIG_NET_NS)", "net"),
            ("UTS namespaces (CONFIG_UTS_NS)", "uts"),
            ("IPC namespaces (CONFIG_IPC_NS)", "ipc"),
            ("cgroup namespaces (CONFIG_CGROUPS, kernel 4.6+)", "cgroup"),
            ("mount namespaces", "mnt"),
        ] {
            if !Path::new("/proc/self/ns").join(file).exists() {
                return Err(Error::Unsupported {
                    feature: ns.into(),
                    hint: "use a kernel built with it (every distribution kernel has it)".into(),
                });
            }
        }
        let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
        for (name, feature) in [
            ("overlay", "overlayfs"),
            ("tmpfs", "tmpfs"),
            ("devpts", "devpts"),
        ] {
            if !fs
                .lines()
                .any(|l| l.split_whitespace().last() == Some(name))
            {
                return Err(Error::Unsupported {
                    feature: feature.into(),
                    hint: format!(
                        "load it with `modprobe {name}` (CONFIG_{})",
                        name.to_uppercase()
                    ),
                });
            }
        }
        let missing = match self.no_cgroup {
            // Rootless without cgroups: reported by `unavailable`, not an error.
            Some(_) => Vec::new(),
            None => self.config.cgroup.missing_controllers()?,
        };
        if !missing.is_empty() {
            return Err(Error::Unsupported {
                feature: format!("cgroup controllers {}", missing.join(", ")),
                hint: match self.config.cgroup.version {
                    CgroupVersion::V1 => "mount them under /sys/fs/cgroup (cgroup v1)".into(),
                    CgroupVersion::V2 => format!(
                        "enable them in {}/cgroup.subtree_control",
                        self.config.cgroup.unified_root.display()
                    ),
                },
            });
        }
        self.check_overlay()?;
        // pidfds (pidfd_open 5.3, waitid(P_PIDFD) 5.4) and close_range (5.9).
        match pidfd_open(i32::try_from(std::process::id()).unwrap_or(i32::MAX)) {
            Ok(fd) => drop(fd),
            Err(_) => {
                return Err(Error::Unsupported {
                    feature: "pidfd_open".into(),
                    hint: "use Linux 5.9 or newer".into(),
                });
            }
        }
        // SAFETY: an empty range (first > last is rejected, so use first == last == MAX,
        // which no process has open) touches no memory and closes nothing.
        if unsafe { libc::syscall(libc::SYS_close_range, u32::MAX, u32::MAX, 0u32) } != 0 {
            return Err(Error::Unsupported {
                feature: "close_range".into(),
                hint: "use Linux 5.9 or newer".into(),
            });
        }
        if !Path::new("/proc/self/exe").exists() {
            return Err(Error::Unsupported {
                feature: "/proc".into(),
                hint: "mount procfs on /proc".into(),
            });
        }
        Ok(())
    }

    /// Mounts a throwaway overlay with its upper directory in the data dir (where sandboxes
    /// without a disk budget keep theirs): some filesystems (overlayfs itself, NFS) cannot
    /// hold an upper directory, and that should fail at start-up, not at the first create.
    fn check_overlay(&self) -> Result<()> {
        let base = self
            .config
            .data_dir
            .join(format!(".check-overlay-{}", std::process::id()));
        let dirs = ["lower", "upper", "work", "merged"].map(|d| base.join(d));
        let result = (|| {
            for d in &dirs {
                std::fs::create_dir_all(d).map_err(|e| Error::CreateDir(d.clone(), e))?;
            }
            let mut opts = format!(
                "lowerdir={},upperdir={},workdir={}",
                dirs[0].display(),
                dirs[1].display(),
                dirs[2].display()
            );
            if self.config.rootless {
                opts.push_str(",userxattr");
            }
            nix::mount::mount(
                Some("overlay"),
                &dirs[3],
                Some("overlay"),
                nix::mount::MsFlags::empty(),
                Some(opts.as_str()),
            )
            .map_err(|e| Error::Unsupported {
                feature: format!(
                    "overlayfs with upper directories in {} ({e})",
                    self.config.data_dir.display()
                ),
                hint: if self.config.rootless {
                    "put the data dir on ext4, xfs or tmpfs; rootless mode needs Linux 5.11+ (overlay in user namespaces, userxattr)".into()
                } else {
                    "put the data dir on ext4, xfs or tmpfs".into()
                },
            })?;
            let _ = nix::mount::umount2(&dirs[3], nix::mount::MntFlags::MNT_DETACH);
            Ok(())
        })();
        let _ = std::fs::remove_dir_all(&base);
        result
    }

    fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.config.data_dir.join("sandboxes").join(id)
    }

    /// Creates a sandbox and starts its first program. Returns when the program was exec'd.
    ///
    /// Steps (host side; the in-sandbox steps are in [`exec`]):
    /// 1. validate the id and create `sandboxes/<id>/`;
    /// 2. mount the disk (a tmpfs of `disk_bytes` when set, else a `nosuid,nodev` bind mount)
    ///    and lay out upper/work directories, with the per-sandbox `/etc/hostname` and
    ///    `/etc/hosts` in the upper;
    /// 3. create the cgroup with the limits;
    /// 4. spawn the `__sandbox-init` helper, move it into the cgroup, then send its config;
    /// 5. read its status until the program is exec'd; open a pidfd and the netns.
    ///
    /// On any failure everything created so far is removed.
    ///
    /// # Errors
    ///
    /// The failing step's variant; [`Error::Setup`] carries in-sandbox failures.
    pub fn spawn(&self, spec: SandboxSpec<'_>) -> Result<SandboxHandle> {
        validate_id(&spec.id)?;
        let dir = self.sandbox_dir(&spec.id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(spec.id));
            }
            Err(e) => return Err(Error::CreateDir(dir, e)),
        }
        let mut partial = Partial {
            dir: dir.clone(),
            disk_mounted: false,
            cgroup: None,
        };
        let handle = self.spawn_inner(&spec, &dir, &mut partial);
        if handle.is_err() {
            partial.cleanup();
        }
        handle
    }

    fn spawn_inner(
        &self,
        spec: &SandboxSpec<'_>,
        dir: &Path,
        partial: &mut Partial,
    ) -> Result<SandboxHandle> {
        let mkdir =
            |p: &Path| std::fs::create_dir_all(p).map_err(|e| Error::CreateDir(p.to_path_buf(), e));
        // Step 2: disk.
        let disk = dir.join("disk");
        mkdir(&disk)?;
        match spec.limits.disk_bytes {
            Some(bytes) => mounts::mount_disk(&disk, bytes)?,
            None => mounts::bind_disk(&disk)?,
        }
        partial.disk_mounted = true;
        // Every sandbox mounts its root on the same host directory, each in its own private
        // mount namespace. A per-sandbox mount point would make removing the sandbox
        // directory wait for the dead namespace's teardown (rmdir of a mount point in
        // another namespace detaches it synchronously: several ms per kill).
        let rootfs = self.config.data_dir.join("mnt");
        let mut layers = Vec::new();
        for (i, layer) in spec.template.layers.iter().enumerate() {
            let (upper, work) = if i == 0 {
                (disk.join("upper"), disk.join("work"))
            } else {
                let name = layer_name(&layer.target);
                let base = disk.join("layers").join(name);
                (base.join("upper"), base.join("work"))
            };
            mkdir(&upper)?;
            mkdir(&work)?;
            layers.push(mounts::LayerPlan {
                target: layer.target.clone(),
                lower: layer.source.clone(),
                upper,
                work,
            });
        }
        let hostname = spec.hostname.clone().unwrap_or_else(|| spec.id.clone());
        write_identity(&disk.join("upper"), &hostname)?;

        // Step 3: cgroup (none in rootless mode without a writable parent).
        let cgroup = self.new_cgroup(&spec.id, &spec.limits)?;
        let cgroup = &*partial.cgroup.insert(cgroup);

        // Step 4: helper.
        let cfg = exec::InitConfig {
            hostname,
            rootfs: mounts::RootfsPlan {
                rootfs,
                layers,
                tmp_bytes: spec.limits.disk_bytes,
                userxattr: self.config.rootless,
                exe_mount: self.config.data_dir.join("exe"),
            },
            program: ProgramSpec {
                exe: spec.init.exe.clone(),
                argv: spec.init.argv.clone(),
                env: spec.init.env.clone(),
                uid: spec.init.uid,
                gid: spec.init.gid,
                cwd: PathBuf::from("/"),
            },
            log: spec.log.clone(),
            no_new_privs: spec.no_new_privs,
            reaper: spec.init.reaper,
        };
        let body = serde_json::to_vec(&cfg).map_err(Error::Encode)?;
        let mut child = Command::new(&self.config.helper_exe)
            .arg(INIT_ROLE)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::SpawnHelper(self.config.helper_exe.clone(), e))?;
        let mut lines = Vec::new();
        let result = (|| {
            cgroup.add_process(child.id())?;
            let mut stdin = child
                .stdin
                .take()
                .ok_or_else(|| Error::HelperProtocol("no stdin pipe".into()))?;
            stdin.write_all(&body).map_err(Error::HelperPipe)?;
            drop(stdin);
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| Error::HelperProtocol("no stdout pipe".into()))?;
            let (read, result) = exec::read_status(stdout.as_raw_fd(), SPAWN_TIMEOUT);
            lines = read;
            result
        })();
        // The helper exits right after reporting; reap it whatever happened.
        if result.is_err() {
            let _ = child.kill();
        }
        let _ = child.wait();
        let init_pid = lines
            .iter()
            .find_map(|l| l.strip_prefix("PID ")?.trim().parse::<i32>().ok());
        if let Err(e) = result {
            if let Some(pid) = init_pid {
                reap_failed_init(pid, cgroup);
            }
            return Err(e);
        }

        // Step 5: parse the status.
        let mut init_pid = None;
        for line in &lines {
            if let Some(msg) = line.strip_prefix("ERR ") {
                if let Some(pid) = init_pid {
                    // The init exists: kill and reap it so nothing is left.
                    reap_failed_init(pid, cgroup);
                }
                return Err(Error::Setup(msg.to_owned()));
            }
            if let Some(pid) = line.strip_prefix("PID ") {
                init_pid = pid.trim().parse::<i32>().ok();
            }
        }
        let pid = init_pid.ok_or_else(|| {
            Error::HelperProtocol(format!("no PID line in helper output {lines:?}"))
        })?;
        // The init is our unreaped child, so its pid cannot have been reused: the pidfd
        // always refers to it. Its namespace files vanish once it exits, which a program
        // like /bin/true does at once; such a sandbox is returned as already exited.
        let opened = (|| {
            let pidfd = pidfd_open(pid)?;
            let netns = match namespaces::open_ns(pid, "net") {
                Ok(fd) => Some(fd),
                // The namespace files go early in exit, before the task is a zombie: wait
                // for the exit to finish (WNOWAIT leaves the zombie for try_wait/kill).
                Err(Error::OpenNamespace(_, e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    waitid_pidfd(pid, &pidfd, libc::WNOWAIT)?;
                    None
                }
                Err(e) => return Err(e),
            };
            Ok((pidfd, netns))
        })();
        let (pidfd, netns) = match opened {
            Ok(x) => x,
            Err(e) => {
                reap_failed_init(pid, cgroup);
                return Err(e);
            }
        };
        let cgroup = partial
            .cgroup
            .take()
            .ok_or_else(|| Error::HelperProtocol("cgroup lost".into()))?;
        let disk_mounted = std::mem::take(&mut partial.disk_mounted);
        partial.dir = PathBuf::new();
        Ok(SandboxHandle {
            id: spec.id.clone(),
            init_pid: pid,
            dir: dir.to_path_buf(),
            helper_exe: self.config.helper_exe.clone(),
            cgroup,
            state: Mutex::new(State {
                pidfd: Some(pidfd),
                netns,
                disk_mounted,
                exit: None,
                killed: false,
                frozen: false,
            }),
        })
    }

    /// Re-attaches to a sandbox created by an earlier server process (after a restart),
    /// given its id and the init pid recorded at spawn. The process must still exist and be
    /// in the sandbox's cgroup (checked after taking a pidfd, so a reused pid is refused).
    /// The returned handle supports everything; its init is no longer the server's child, so
    /// the exit status is unknown (`try_wait` reports 137 once it is gone).
    ///
    /// # Errors
    ///
    /// [`Error::NotRunning`] when the sandbox or its process is gone; the failing step's
    /// variant otherwise.
    pub fn attach(&self, id: &str, init_pid: i32) -> Result<SandboxHandle> {
        validate_id(id)?;
        let dir = self.sandbox_dir(id);
        if !dir.is_dir() {
            return Err(Error::NotRunning(id.to_owned()));
        }
        let pidfd = pidfd_open(init_pid).map_err(|_| Error::NotRunning(id.to_owned()))?;
        let cgroup = self.load_cgroup(id)?;
        let member = if cgroup.is_enabled() {
            let want = format!("/{}", cgroup.path());
            std::fs::read_to_string(format!("/proc/{init_pid}/cgroup"))
                .unwrap_or_default()
                .lines()
                .any(|l| l.rsplit_once(':').is_some_and(|(_, p)| p == want))
        } else {
            // No cgroup to prove membership: the process must be pid 1 of a pid namespace
            // other than ours, as every sandbox init is.
            is_namespace_init(init_pid)
        };
        if !member {
            return Err(Error::NotRunning(id.to_owned()));
        }
        let netns =
            namespaces::open_ns(init_pid, "net").map_err(|_| Error::NotRunning(id.to_owned()))?;
        let disk = dir.join("disk");
        let disk_mounted = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(4) == disk.to_str());
        let frozen = cgroup.is_frozen();
        Ok(SandboxHandle {
            id: id.to_owned(),
            init_pid,
            dir,
            helper_exe: self.config.helper_exe.clone(),
            cgroup,
            state: Mutex::new(State {
                pidfd: Some(pidfd),
                netns: Some(netns),
                disk_mounted,
                exit: None,
                killed: false,
                frozen,
            }),
        })
    }

    /// Moves the files a sandbox wrote to its root (its root upper directory) to `to`, out of
    /// its sandbox directory, so that [`reclaim`](Self::reclaim) keeps them. A sandbox whose
    /// disk is a tmpfs has nothing to keep on disk, and this fails with [`Error::SaveUpper`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], [`Error::UnmountDisk`] or [`Error::SaveUpper`].
    pub fn save_upper(&self, id: &str, to: &Path) -> Result<()> {
        validate_id(id)?;
        let disk = self.sandbox_dir(id).join("disk");
        let on_tmpfs = nix::sys::statfs::statfs(&disk)
            .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
        if !on_tmpfs {
            // A rename out of the disk's nosuid bind mount would fail with EXDEV; the
            // sandbox's overlay holds the upper directory itself, not through this mount.
            mounts::unmount_disk(&disk)?;
        }
        let upper = disk.join("upper");
        std::fs::rename(&upper, to).map_err(|e| Error::SaveUpper(upper, e))
    }

    /// Removes what a sandbox left behind when its handle is gone (e.g. after a server
    /// restart): kills anything in its cgroup, removes the cgroup, unmounts its disk and
    /// deletes its directory. Succeeds when nothing is there.
    ///
    /// # Errors
    ///
    /// The failing step's variant.
    pub fn reclaim(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        let cg = self.load_cgroup(id)?;
        if cg.exists() {
            cg.kill_all(KILL_TIMEOUT)?;
            cg.remove()?;
        }
        let dir = self.sandbox_dir(id);
        mounts::unmount_disk(&dir.join("disk"))?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::RemoveDir(dir, e)),
        }
    }
}

impl Runtime {
    fn new_cgroup(&self, id: &str, limits: &Limits) -> Result<SandboxCgroupImpl> {
        match self.no_cgroup {
            Some(_) => Ok(SandboxCgroupImpl::None(NoCgroup)),
            None => SandboxCgroupImpl::create(&self.config.cgroup, id, limits),
        }
    }

    fn load_cgroup(&self, id: &str) -> Result<SandboxCgroupImpl> {
        match self.no_cgroup {
            Some(_) => Ok(SandboxCgroupImpl::None(NoCgroup)),
            None => SandboxCgroupImpl::load(&self.config.cgroup, id),
        }
    }
}

/// Whether host pid `pid` is pid 1 of a pid namespace other than the caller's
/// (`NSpid:` in its status ends in 1 and lists more than our level).
fn is_namespace_init(pid: i32) -> bool {
    let ours = std::fs::read_link("/proc/self/ns/pid").ok();
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    if theirs.is_none() || theirs == ours {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .map(|v| v.split_whitespace().last() == Some("1"))
        })
        .unwrap_or(false)
}

fn layer_name(target: &Path) -> String {
    target.to_string_lossy().trim_matches('/').replace('/', "_")
}

/// Writes the per-sandbox `/etc/hostname` and `/etc/hosts` into the root upper directory.
fn write_identity(upper: &Path, hostname: &str) -> Result<()> {
    let etc = upper.join("etc");
    std::fs::create_dir_all(&etc).map_err(|e| Error::CreateDir(etc.clone(), e))?;
    let write = |name: &str, body: String| {
        let p = etc.join(name);
        std::fs::write(&p, body).map_err(|e| Error::WriteFile(p, e))
    };
    write("hostname", format!("{hostname}\n"))?;
    write(
        "hosts",
        format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
    )
}

fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and touches no memory.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Error::PidfdOpen(pid, std::io::Error::last_os_error()));
    }
    // SAFETY: the kernel just returned this descriptor; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).unwrap_or(-1)) })
}

fn reap_failed_init(pid: i32, cgroup: &SandboxCgroupImpl) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = cgroup.kill_all(KILL_TIMEOUT);
    // Our child (CLONE_PARENT), so unreaped it cannot have been reused.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
}

/// What a failed `spawn` must undo.
struct Partial {
    dir: PathBuf,
    disk_mounted: bool,
    cgroup: Option<SandboxCgroupImpl>,
}

impl Partial {
    fn cleanup(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.kill_all(KILL_TIMEOUT);
            let _ = cg.remove();
        }
        if self.disk_mounted {
            let _ = mounts::unmount_disk(&self.dir.join("disk"));
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[derive(Debug)]
struct State {
    pidfd: Option<OwnedFd>,
    netns: Option<OwnedFd>,
    disk_mounted: bool,
    exit: Option<i32>,
    killed: bool,
    frozen: bool,
}

/// A running sandbox. All methods take `&self`, so it can be shared behind an `Arc`.
///
/// Dropping the handle does **not** kill the sandbox (it keeps running, like E2B sandboxes
/// outlive their clients); call [`kill`](Self::kill), or [`Runtime::reclaim`] later.
#[derive(Debug)]
pub struct SandboxHandle {
    id: String,
    init_pid: i32,
    dir: PathBuf,
    helper_exe: PathBuf,
    cgroup: SandboxCgroupImpl,
    state: Mutex<State>,
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

    /// `(used, total)` bytes of the sandbox's disk budget (its upper-directory tmpfs), or
    /// `None` when it has no budget (upper directory on the data dir's filesystem, bind-mounted
    /// `nosuid,nodev`) or was killed.
    pub fn disk_usage(&self) -> Option<(u64, u64)> {
        let st = self.lock();
        if !st.disk_mounted || st.killed {
            return None;
        }
        let disk = self.dir.join("disk");
        let fs = nix::sys::statfs::statfs(&disk).ok()?;
        if fs.filesystem_type() != nix::sys::statfs::TMPFS_MAGIC {
            return None;
        }
        let v = nix::sys::statvfs::statvfs(&disk).ok()?;
        let block = v.fragment_size();
        let total = v.blocks() * block;
        Some((total.saturating_sub(v.blocks_free() * block), total))
    }

    /// Connects to `127.0.0.1:port` inside the sandbox's network namespace (blocking; on
    /// loopback it completes or is refused at once). No host port is opened.
    ///
    /// # Errors
    ///
    /// `NotConnected` after kill; otherwise the `setns`/`connect` error
    /// (`ConnectionRefused` when nothing listens).
    pub fn connect(&self, port: u16) -> std::io::Result<TcpStream> {
        let netns = {
            let st = self.lock();
            match st.netns.as_ref() {
                Some(fd) if !st.killed => fd.try_clone()?,
                _ => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        format!("sandbox {} is not running", self.id),
                    ));
                }
            }
        };
        namespaces::connect_in_netns(netns.as_fd(), port, Some(Duration::from_secs(5)))
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
        child.wait_with_output().map_err(Error::HelperPipe)
    }

    /// Kills every process of the sandbox and removes everything it had: processes (SIGKILL
    /// to init ends the pid namespace; the cgroup is then emptied), the init zombie, the
    /// cgroup, the mount namespace (with its last process), the disk tmpfs, the upper
    /// directory and the held namespace and pid descriptors. Idempotent.
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
        if st.disk_mounted {
            mounts::unmount_disk(&self.dir.join("disk"))?;
            st.disk_mounted = false;
        }
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::RemoveDir(self.dir.clone(), e)),
        }
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
fn waitid_pidfd(pid: i32, fd: &OwnedFd, flags: libc::c_int) -> Result<Option<i32>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(validate_id("i0123456789abcdefghij").is_ok());
        assert!(validate_id("a-b").is_ok());
        for bad in ["", "A", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(
                matches!(validate_id(bad), Err(Error::InvalidId(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn handles_are_shareable_across_threads() {
        fn assert<T: Send + Sync + 'static>() {}
        assert::<Runtime>();
        assert::<SandboxHandle>();
    }

    #[test]
    #[ignore = "needs root + namespaces"]
    fn a_namespace_init_is_recognised_without_a_cgroup() {
        let mut child = Command::new("unshare")
            .args(["--pid", "--fork", "sleep", "30"])
            .spawn()
            .unwrap_or_else(|e| panic!("unshare: {e}"));
        let outer = i32::try_from(child.id()).unwrap_or(0);
        // The forked sleep, pid 1 of the new namespace, is unshare's only child.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let inner = loop {
            let kids = std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))
                .unwrap_or_default();
            if let Some(p) = kids.split_whitespace().next() {
                break p.parse::<i32>().unwrap_or(0);
            }
            assert!(std::time::Instant::now() < deadline, "no child of unshare");
            std::thread::sleep(Duration::from_millis(5));
        };
        let results = (
            is_namespace_init(inner),
            is_namespace_init(outer),
            is_namespace_init(i32::try_from(std::process::id()).unwrap_or(0)),
        );
        let _ = child.kill();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(inner),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        assert_eq!(results, (true, false, false));
    }

    #[test]
    fn layer_names_are_flat() {
        assert_eq!(layer_name(Path::new("/usr")), "usr");
        assert_eq!(layer_name(Path::new("/usr/local")), "usr_local");
    }
}
