//! The runtime: settings, host checks, and re-attaching to or reclaiming sandboxes of an
//! earlier run. Creating one is in `spawn`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::disk::{self, Disks};
use super::handle::State;
use super::spawn::pidfd_open;
use super::spawn_ns::SpawnNamespace;
use super::{
    CgroupConfig, CgroupVersion, Error, KILL_TIMEOUT, Limits, NoCgroup, Result, SandboxCgroup,
    SandboxCgroupImpl, SandboxHandle, cgroup, mounts, namespaces, rootless,
};

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Data directory: `templates/` and `sandboxes/<id>/` live here.
    pub data_dir: PathBuf,
    /// Cgroup interface, mount table and parent (default: detected, parent `e2b-local`).
    pub cgroup: CgroupConfig,
    /// The executable run in the hidden helper roles (default: the current executable).
    /// Its `main` must call [`run_helper_if_requested`](super::run_helper_if_requested) first.
    pub helper_exe: PathBuf,
    /// Rootless mode: the process is uid 0 of a user namespace that is not the host's
    /// (default: detected with [`rootless::in_user_namespace`]). Overlays get `userxattr`,
    /// and cgroups are used only when the parent is writable (delegated).
    pub rootless: bool,
    /// Disks of this many bytes are kept ready in the background ([`disk::READY_DISKS`] of
    /// them) for sandboxes whose `Limits::disk_bytes` asks for this size (default `None`:
    /// every disk is made when its sandbox is created).
    pub pooled_disk_bytes: Option<u64>,
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
            pooled_disk_bytes: None,
        }
    }
}

/// Creates sandboxes.
#[derive(Debug)]
pub struct Runtime {
    /// The settings.
    pub(super) config: RuntimeConfig,
    /// Why sandboxes get no cgroup (rootless mode without a writable parent), or `None`.
    pub(super) no_cgroup: Option<String>,
    /// Whether each sandbox's init and envd get `oom_score_adj` -1000: lowering a score
    /// needs `CAP_SYS_RESOURCE` on the host (not in rootless mode).
    pub(super) oom_protection: bool,
    /// Disk images on loop devices, or why this host cannot make them.
    pub(super) disks: std::result::Result<Arc<Disks>, String>,
    /// The thread keeping disks ready and unlinking removed images.
    disk_worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The helper executable's loader and libraries, for sandboxes
    /// ([`host_runtime`](super::host_runtime)).
    pub(super) host_runtime: Option<super::host_runtime::HostRuntime>,
    /// The mount namespace sandboxes are cloned from, without the other sandboxes' disks
    /// (`None` in rootless mode, or when it could not be made: then the host's).
    pub(super) spawn_ns: Option<SpawnNamespace>,
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
    pub fn new(mut config: RuntimeConfig) -> Result<Self> {
        // Absolute: the helper joins another mount namespace, which resets its working
        // directory to that namespace's root.
        if let Ok(abs) = std::path::absolute(&config.data_dir) {
            config.data_dir = abs;
        }
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
        let oom_protection =
            !config.rootless && super::caps::effective_has(super::caps::cap::SYS_RESOURCE);
        let disks =
            Disks::open(&config.data_dir, config.rootless, config.pooled_disk_bytes).map(Arc::new);
        let disk_worker = match &disks {
            Ok(d) => {
                let d2 = d.clone();
                match std::thread::Builder::new()
                    .name("e2b-local-disks".into())
                    .spawn(move || d2.run())
                {
                    Ok(h) => Some(h),
                    Err(e) => {
                        tracing::warn!("starting the disk thread: {e}; disks are made on create");
                        d.mark_stopped();
                        None
                    }
                }
            }
            Err(_) => None,
        };
        // Without it envd runs on the template's own C library (as before): a template with
        // an older glibc than the host's cannot start, which a create then says.
        let host_runtime = super::host_runtime::prepare(&config.data_dir, &config.helper_exe)
            .unwrap_or_else(|e| {
                tracing::warn!("copying the host's loader for sandboxes: {e}");
                None
            });
        // After `Disks::open`, which removes an earlier run's ready disks: whatever disks are
        // mounted now or later stay out of the namespace.
        let spawn_ns = (!config.rootless && nix::unistd::geteuid().is_root())
            .then(|| SpawnNamespace::new(&config.helper_exe, &config.data_dir))
            .and_then(|made| {
                made.inspect_err(|e| {
                    tracing::warn!(
                        "making the mount namespace sandboxes are cloned from: {e}; they are cloned from the host's, which costs O(sandboxes alive) per create"
                    );
                })
                .ok()
            });
        Ok(Runtime {
            config,
            no_cgroup,
            oom_protection,
            disks,
            disk_worker: Mutex::new(disk_worker),
            host_runtime,
            spawn_ns,
        })
    }

    /// Whether sandboxes can have a disk budget (`Limits::disk_bytes`): false where loop
    /// devices or `mkfs.ext4` are missing and in rootless mode ([`unavailable`](Self::unavailable)
    /// says why).
    pub fn can_limit_disk(&self) -> bool {
        self.disks.is_ok()
    }

    /// The `mkfs.ext4` that makes disk images, or why this host cannot make ext4 images on
    /// loop devices (sandbox disks and volumes need them).
    pub fn mkfs_ext4(&self) -> std::result::Result<&Path, &str> {
        match &self.disks {
            Ok(d) => Ok(d.mkfs()),
            Err(why) => Err(why),
        }
    }

    /// Waits until the images of killed sandboxes are unlinked (that happens in the
    /// background, a few ms after a kill returns) and no ready disk is being made.
    pub fn wait_for_disk_cleanup(&self) {
        if let Ok(d) = &self.disks {
            d.wait_idle();
        }
    }

    /// Removes the disks kept ready and unlinks every removed image, then stops the thread
    /// doing that; later disks are made on create and removed at once. Call it at shutdown,
    /// after the last kill (dropping the runtime does it too).
    pub fn close_disks(&self) {
        let worker = self
            .disk_worker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let (Ok(d), Some(worker)) = (&self.disks, worker) {
            d.stop();
            let _ = worker.join();
        }
    }

    /// Whether sandboxes can be paused (frozen): false without cgroups (rootless mode
    /// without a delegated cgroup).
    pub fn can_freeze(&self) -> bool {
        self.no_cgroup.is_none()
    }

    /// What this runtime cannot do on this host although [`check`](Self::check) passed,
    /// and why. Empty as root with `CAP_SYS_RESOURCE`; without it (rootless mode, restricted
    /// hosts), keeping envd from the OOM killer. In rootless mode without a writable cgroup
    /// parent: CPU, memory and pids limits, pause and resume. A server should print this at
    /// start-up.
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
        if !self.oom_protection {
            out.push(Unavailable {
                feature: "keeping envd from the OOM killer (oom_score_adj -1000)".into(),
                reason: "lowering a score needs CAP_SYS_RESOURCE on the host (rootless mode or a restricted host); envd keeps the server's score and the processes it starts get 100, so they are still chosen first".into(),
            });
        }
        if let Err(why) = &self.disks {
            out.push(Unavailable {
                feature: "a disk budget per sandbox (an ext4 image on a loop device)".into(),
                reason: format!(
                    "sandboxes write to the data directory's filesystem without a limit: {why}"
                ),
            });
            out.push(Unavailable {
                feature: "volumes (ext4 images on loop devices)".into(),
                reason: format!("creating a volume or mounting one answers 501: {why}"),
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

    /// `sandboxes/<id>/` in the data directory.
    pub(super) fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.config.data_dir.join("sandboxes").join(id)
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
        let frozen = cgroup.is_frozen();
        Ok(SandboxHandle {
            id: id.to_owned(),
            init_pid,
            dir,
            helper_exe: self.config.helper_exe.clone(),
            disks: self.disks.as_ref().ok().cloned(),
            cgroup,
            state: Mutex::new(State {
                pidfd: Some(pidfd),
                netns: Some(netns),
                exit: None,
                killed: false,
                frozen,
            }),
        })
    }

    /// Keeps what a sandbox of an earlier run wrote, out of its sandbox directory, so that
    /// [`reclaim`](Self::reclaim) keeps it. A sandbox with a disk budget keeps its whole
    /// image: its processes are killed, the disk is unmounted (flushed), and `disk.img`
    /// becomes the file `to`, to be given back as [`SandboxSpec::disk_image`](super::SandboxSpec::disk_image).
    /// Without one, its root upper directory becomes the directory `to` (its files are copied
    /// into the new sandbox).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidId`], the cgroup's kill errors, [`Error::UnmountDisk`] or
    /// [`Error::SaveUpper`].
    pub fn save_upper(&self, id: &str, to: &Path) -> Result<()> {
        validate_id(id)?;
        let dir = self.sandbox_dir(id);
        let image = dir.join(disk::IMAGE);
        if image.exists() {
            // Its overlay holds the disk until its processes are gone.
            let cg = self.load_cgroup(id)?;
            if cg.exists() {
                cg.kill_all(KILL_TIMEOUT)?;
            }
            disk::unmount_clean(&dir)?;
            return std::fs::rename(&image, to).map_err(|e| Error::SaveUpper(image, e));
        }
        let disk = dir.join("disk");
        // A rename out of the disk's nosuid bind mount would fail with EXDEV; the sandbox's
        // overlay holds the upper directory itself, not through this mount.
        mounts::unmount_disk(&disk)?;
        let upper = disk.join("upper");
        std::fs::rename(&upper, to).map_err(|e| Error::SaveUpper(upper, e))
    }

    /// Removes what a sandbox left behind when its handle is gone (e.g. after a server
    /// restart): kills anything in its cgroup, removes the cgroup, detaches its disk and
    /// deletes its directory (an image is unlinked in the background). Succeeds when nothing
    /// is there.
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
        disk::discard(
            &self.sandbox_dir(id),
            self.disks.as_ref().ok().map(|d| &**d),
        )
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.close_disks();
    }
}

impl Runtime {
    /// A new cgroup for sandbox `id` with `limits` (none without a usable cgroup parent).
    pub(super) fn new_cgroup(&self, id: &str, limits: &Limits) -> Result<SandboxCgroupImpl> {
        match self.no_cgroup {
            Some(_) => Ok(SandboxCgroupImpl::None(NoCgroup)),
            None => SandboxCgroupImpl::create(&self.config.cgroup, id, limits),
        }
    }

    /// The existing cgroup of sandbox `id`.
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

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

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
    #[ignore = "needs root: namespaces, mounts and cgroups"]
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
}
