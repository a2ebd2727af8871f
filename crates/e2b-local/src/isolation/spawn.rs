//! Creating a sandbox: [`Runtime::spawn`] and its host-side steps, in order, each a
//! function failing with its own [`Error`] variant (Firecracker's jailer style). The
//! in-sandbox steps are in [`exec`](super::exec); `docs/isolation.md` lists both.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use super::disk::{self, Disks};
use super::handle::{State, waitid_pidfd};
use super::{
    Error, INIT_ROLE, KILL_TIMEOUT, ProgramSpec, Result, Runtime, SPAWN_TIMEOUT, SandboxCgroup,
    SandboxCgroupImpl, SandboxHandle, SandboxSpec, exec, mounts, namespaces, validate_id,
};

/// What the `__sandbox-init` helper reported, parsed once from its status lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct HelperStatus {
    /// Host pid of the sandbox's init (`PID <pid>`), once the helper created it.
    init_pid: Option<i32>,
    /// The in-sandbox step that failed (`ERR <message>`).
    error: Option<String>,
}

impl HelperStatus {
    /// Reads the lines up to the first `ERR`: a `PID` after it belongs to no init.
    fn parse(lines: &[String]) -> Self {
        let mut status = HelperStatus::default();
        for line in lines {
            if let Some(msg) = line.strip_prefix("ERR ") {
                status.error = Some(msg.to_owned());
                break;
            }
            if let Some(pid) = line.strip_prefix("PID ") {
                status.init_pid = pid.trim().parse::<i32>().ok();
            }
        }
        status
    }
}

impl Runtime {
    /// Creates a sandbox and starts its first program. Returns when the program was exec'd.
    ///
    /// Steps (host side; the in-sandbox steps are in [`exec`]):
    /// 1. validate the id and create `sandboxes/<id>/`: a ready disk of the pool renamed into
    ///    place when one fits, else an empty directory (`create_sandbox_dir`);
    /// 2. unless it came ready, mount the disk: with `disk_bytes` an ext4 image of that size
    ///    on a loop device, else a `nosuid,nodev` bind mount (`mount_disk`),
    ///    lay out the layers' upper/work directories (`plan_layers`) and write the
    ///    per-sandbox `/etc/hostname` and `/etc/hosts` into the upper (`write_identity`);
    /// 3. create the cgroup with the limits;
    /// 4. spawn the `__sandbox-init` helper, move it into the cgroup, send its config and
    ///    read its status until the program is exec'd (`run_init_helper`);
    /// 5. open a pidfd and the network namespace of the init (`open_init`).
    ///
    /// On any failure everything created so far is removed.
    ///
    /// # Errors
    ///
    /// The failing step's variant; [`Error::Setup`] carries in-sandbox failures.
    pub fn spawn(&self, spec: SandboxSpec<'_>) -> Result<SandboxHandle> {
        let (dir, disk_ready) = self.create_sandbox_dir(&spec)?;
        let mut partial = Partial {
            dir,
            disks: self.disks.as_ref().ok().cloned(),
            cgroup: None,
        };
        let handle = self.spawn_steps(&spec, disk_ready, &mut partial);
        if handle.is_err() {
            partial.cleanup();
        }
        handle
    }

    /// Steps 2 to 5 of [`spawn`](Self::spawn); `partial` records what to undo on failure.
    fn spawn_steps(
        &self,
        spec: &SandboxSpec<'_>,
        disk_ready: bool,
        partial: &mut Partial,
    ) -> Result<SandboxHandle> {
        if !disk_ready {
            self.mount_disk(spec, &partial.dir)?;
        }
        let disk = partial.dir.join("disk");
        let layers = plan_layers(spec, &disk)?;
        let hostname = spec.hostname.clone().unwrap_or_else(|| spec.id.clone());
        write_identity(&disk.join("upper"), &hostname, spec.nameserver)?;
        if let Some(ca) = &spec.trusted_ca {
            add_trusted_ca(&disk.join("upper"), spec.template, ca)?;
        }

        let cgroup = self.new_cgroup(&spec.id, &spec.limits)?;
        let cgroup = &*partial.cgroup.insert(cgroup);

        let config = self.init_config(spec, hostname, layers, &disk);
        let pid = self.run_init_helper(&config, cgroup)?;

        let (pidfd, netns) = open_init(pid).inspect_err(|_| reap_failed_init(pid, cgroup))?;
        partial.take_into_handle(spec, self.config.helper_exe.clone(), pid, pidfd, netns)
    }

    /// Step 1: checks the id and makes the sandbox's directory, which must not exist: a
    /// ready disk of the pool (`disks/ready/<n>`, its image mounted) renamed into place in
    /// one syscall when one of the asked size is there (returns `true`), else an empty
    /// directory.
    fn create_sandbox_dir(&self, spec: &SandboxSpec<'_>) -> Result<(PathBuf, bool)> {
        validate_id(&spec.id)?;
        let dir = self.sandbox_dir(&spec.id);
        let exists = || Error::AlreadyExists(spec.id.clone());
        let ready = match (&self.disks, spec.limits.disk_bytes, &spec.disk_image) {
            (Ok(d), Some(bytes), None) => d.take_ready(bytes),
            _ => None,
        };
        if let Some(ready) = ready {
            match disk::rename_noreplace(&ready, &dir) {
                Ok(()) => return Ok((dir, true)),
                Err(e) => {
                    let _ = disk::discard(&ready, self.disks.as_deref().ok());
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        return Err(exists());
                    }
                    // E.g. `sandboxes/` on another filesystem: make the disk in place.
                    tracing::warn!("taking a ready disk for sandbox {}: {e}", spec.id);
                }
            }
        }
        match std::fs::create_dir(&dir) {
            Ok(()) => Ok((dir, false)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
            Err(e) => Err(Error::CreateDir(dir, e)),
        }
    }

    /// Step 2a: the sandbox's disk on `dir/disk`, a `nosuid,nodev` mount of its own. With a
    /// budget, an ext4 image mounted from a loop device: `spec.disk_image` hard-linked (a
    /// paused sandbox's, restored) or a copy of the golden image of that size. Without, a
    /// bind mount of the directory itself on the data dir's filesystem.
    fn mount_disk(&self, spec: &SandboxSpec<'_>, dir: &Path) -> Result<()> {
        let wants_image = spec.limits.disk_bytes.is_some() || spec.disk_image.is_some();
        match (&self.disks, spec.limits.disk_bytes, &spec.disk_image) {
            (Ok(_), _, Some(image)) => {
                let to = dir.join(disk::IMAGE);
                std::fs::hard_link(image, &to).map_err(|e| Error::CopyImage(to, e))?;
                disk::mount_image(dir)
            }
            (Ok(disks), Some(bytes), None) => disks.make(dir, bytes),
            (Err(why), _, _) if wants_image => Err(Error::Unsupported {
                feature: "a disk budget per sandbox (an ext4 image on a loop device)".into(),
                hint: why.clone(),
            }),
            _ => {
                let disk = dir.join("disk");
                create_dir(&disk)?;
                mounts::bind_disk(&disk)
            }
        }
    }

    /// The helper's configuration: the root filesystem plan and the program to exec.
    fn init_config(
        &self,
        spec: &SandboxSpec<'_>,
        hostname: String,
        layers: Vec<mounts::LayerPlan>,
        disk: &Path,
    ) -> exec::InitConfig {
        let spawn_ns = self
            .spawn_ns
            .as_ref()
            .map(super::spawn_ns::SpawnNamespace::path);
        exec::InitConfig {
            hostname,
            rootfs: mounts::RootfsPlan {
                // Every sandbox mounts its root on the same host directory, each in its own
                // private mount namespace. A per-sandbox mount point would make removing the
                // sandbox directory wait for the dead namespace's teardown (rmdir of a mount
                // point in another namespace detaches it synchronously: several ms per kill).
                rootfs: self.config.data_dir.join("mnt"),
                layers,
                tmp_bytes: tmpfs_bytes(&spec.limits),
                userxattr: self.config.rootless,
                exe_mount: self.config.data_dir.join("exe"),
                host_runtime: self.host_runtime.clone(),
                binds: spec.binds.clone(),
                disk: spawn_ns.is_some().then(|| disk.to_path_buf()),
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
            oom_protected: self.oom_protection,
            spawn_ns,
        }
    }

    /// Step 4: spawns the `__sandbox-init` helper, moves it into `cgroup`, sends `config`
    /// and reads its status until the program is exec'd. The helper exits right after
    /// reporting and is reaped here whatever happened. Returns the init's host pid; on
    /// failure an init the helper already created is killed and reaped.
    fn run_init_helper(
        &self,
        config: &exec::InitConfig,
        cgroup: &SandboxCgroupImpl,
    ) -> Result<i32> {
        let body = serde_json::to_vec(config).map_err(Error::Encode)?;
        let mut child = Command::new(&self.config.helper_exe)
            .arg(INIT_ROLE)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::SpawnHelper(self.config.helper_exe.clone(), e))?;
        let mut lines = Vec::new();
        let exchanged = (|| {
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
        if exchanged.is_err() {
            let _ = child.kill();
        }
        let _ = child.wait();
        let status = HelperStatus::parse(&lines);
        let failure = match (exchanged, status.error) {
            (Err(e), _) => Some(e),
            (Ok(_), Some(msg)) => Some(Error::Setup(msg)),
            (Ok(_), None) => None,
        };
        match (failure, status.init_pid) {
            (Some(e), pid) => {
                if let Some(pid) = pid {
                    // The init exists: kill and reap it so nothing is left.
                    reap_failed_init(pid, cgroup);
                }
                Err(e)
            }
            (None, Some(pid)) => Ok(pid),
            (None, None) => Err(Error::HelperProtocol(format!(
                "no PID line in helper output {lines:?}"
            ))),
        }
    }
}

/// Size of each of the sandbox's `/tmp` and `/dev/shm` tmpfs: at most [`TMPFS_SHARE`] of the
/// memory limit (their pages are charged to the sandbox's memory cgroup, so both full still
/// leave half of it to processes), and at most the disk limit. Without either limit, `None`
/// (the kernel's default, half the host's memory).
pub(super) fn tmpfs_bytes(limits: &super::Limits) -> Option<u64> {
    let from_memory = limits.memory_bytes.map(|m| m / TMPFS_SHARE);
    match (from_memory, limits.disk_bytes) {
        (Some(m), Some(d)) => Some(m.min(d)),
        (m, d) => m.or(d),
    }
}

/// The fraction (1/n) of a sandbox's memory limit each of its tmpfs mounts may hold.
pub(super) const TMPFS_SHARE: u64 = 4;

/// `create_dir_all`, failing with [`Error::CreateDir`].
fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::CreateDir(path.to_path_buf(), e))
}

/// Step 2b: creates the upper and work directories of every template layer under `disk`
/// (the root layer's in `disk/`, each extra layer's in `disk/layers/<name>/`).
fn plan_layers(spec: &SandboxSpec<'_>, disk: &Path) -> Result<Vec<mounts::LayerPlan>> {
    let mut layers = Vec::new();
    for (i, layer) in spec.template.layers.iter().enumerate() {
        let base = if i == 0 {
            disk.to_path_buf()
        } else {
            disk.join("layers").join(layer_name(&layer.target))
        };
        let (upper, work) = (base.join("upper"), base.join("work"));
        create_dir(&upper)?;
        create_dir(&work)?;
        layers.push(mounts::LayerPlan {
            target: layer.target.clone(),
            lowers: layer.lowers.clone(),
            upper,
            work,
        });
    }
    Ok(layers)
}

/// Step 5: a pidfd and the network namespace of the init. The init is our unreaped child,
/// so its pid cannot have been reused: the pidfd always refers to it. Its namespace files
/// vanish once it exits, which a program like /bin/true does at once; such a sandbox has
/// no network namespace and is returned as already exited.
fn open_init(pid: i32) -> Result<(OwnedFd, Option<OwnedFd>)> {
    let pidfd = pidfd_open(pid)?;
    let netns = match namespaces::open_ns(pid, "net") {
        Ok(fd) => Some(fd),
        // The namespace files go early in exit, before the task is a zombie: wait for the
        // exit to finish (WNOWAIT leaves the zombie for try_wait/kill).
        Err(Error::OpenNamespace(_, e)) if e.kind() == std::io::ErrorKind::NotFound => {
            waitid_pidfd(pid, &pidfd, libc::WNOWAIT)?;
            None
        }
        Err(e) => return Err(e),
    };
    Ok((pidfd, netns))
}

/// The flat directory name of the extra layer mounted at `target` (`/usr/local` → `usr_local`).
pub fn layer_name(target: &Path) -> String {
    target.to_string_lossy().trim_matches('/').replace('/', "_")
}

/// Writes the per-sandbox `/etc/hostname` and `/etc/hosts` into the root upper directory.
fn write_identity(
    upper: &Path,
    hostname: &str,
    nameserver: Option<std::net::Ipv4Addr>,
) -> Result<()> {
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
    )?;
    match nameserver {
        Some(ns) => write("resolv.conf", format!("nameserver {ns}\n")),
        None => Ok(()),
    }
}

/// The system CA bundle (Debian's path, which OpenSSL, curl, Python's `ssl` and Go read).
const CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

/// Every file spawn may write into a sandbox's root upper directory (its identity, DNS and
/// trust), relative to `/`: a build step's layer leaves them out unless the step changed
/// them, since every sandbox gets its own.
pub(crate) const SPAWN_FILES: &[&str] = &[
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
    CA_BUNDLE,
    CA_SETTINGS[0].0,
    CA_SETTINGS[1].0,
    CA_SETTINGS[2].0,
];

/// The directories spawn may make for [`SPAWN_FILES`], parents first.
pub(crate) const SPAWN_DIRS: &[&str] = &[
    "etc",
    "etc/ssl",
    "etc/ssl/certs",
    "usr",
    "usr/local",
    "usr/local/etc",
];

/// pip's and npm's settings pointing at [`CA_BUNDLE`], written where the template has none
/// of its own (npm reads `etc/npmrc` under its prefix: `/usr` for Debian's, `/usr/local` for
/// Node's images).
const CA_SETTINGS: &[(&str, &str)] = &[
    (
        "etc/pip.conf",
        "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n",
    ),
    ("etc/npmrc", "cafile=/etc/ssl/certs/ca-certificates.crt\n"),
    (
        "usr/local/etc/npmrc",
        "cafile=/etc/ssl/certs/ca-certificates.crt\n",
    ),
];

/// Writes the template's CA bundle with `ca_pem` appended into the upper directory, and
/// pip's and npm's CA settings where the template has none.
fn add_trusted_ca(upper: &Path, template: &crate::template::Template, ca_pem: &str) -> Result<()> {
    let in_template = |path: &str| {
        template
            .layers
            .iter()
            .find(|l| l.target == Path::new("/"))
            .and_then(|l| l.find(Path::new(path)))
    };
    for (path, settings) in CA_SETTINGS {
        // npm's `/usr/local` prefix only where an npm lives there.
        let wanted = !path.starts_with("usr/local/") || in_template("usr/local/bin/npm").is_some();
        if wanted && in_template(path).is_none() {
            let path = upper.join(path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| Error::CreateDir(dir.to_owned(), e))?;
            }
            std::fs::write(&path, settings).map_err(|e| Error::WriteFile(path, e))?;
        }
    }
    let root = in_template(CA_BUNDLE);
    // A template without a bundle (or with one we cannot read) trusts just this CA.
    let mut bundle = root
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    if !bundle.is_empty() && !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str(ca_pem);
    let path = upper.join(CA_BUNDLE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::CreateDir(dir.to_owned(), e))?;
    }
    std::fs::write(&path, bundle).map_err(|e| Error::WriteFile(path, e))
}

/// A pidfd for `pid` (`pidfd_open(2)`).
pub(super) fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and touches no memory.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Error::PidfdOpen(pid, std::io::Error::last_os_error()));
    }
    // SAFETY: the kernel just returned this descriptor; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).unwrap_or(-1)) })
}

/// Kills and reaps the init of a sandbox whose spawn failed, and anything else in its cgroup.
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
    /// Where a removed disk's image goes.
    disks: Option<Arc<Disks>>,
    cgroup: Option<SandboxCgroupImpl>,
}

impl Partial {
    /// Removes everything recorded: the cgroup (killing what is in it), then the directory
    /// with its disk (a restored image keeps its other link).
    fn cleanup(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.kill_all(KILL_TIMEOUT);
            let _ = cg.remove();
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = disk::discard(&self.dir, self.disks.as_deref());
        }
    }

    /// The handle of a spawned sandbox, taking over what was recorded (nothing is left to
    /// undo).
    fn take_into_handle(
        &mut self,
        spec: &SandboxSpec<'_>,
        helper_exe: PathBuf,
        init_pid: i32,
        pidfd: OwnedFd,
        netns: Option<OwnedFd>,
    ) -> Result<SandboxHandle> {
        let cgroup = self
            .cgroup
            .take()
            .ok_or_else(|| Error::HelperProtocol("cgroup lost".into()))?;
        let dir = std::mem::take(&mut self.dir);
        Ok(SandboxHandle {
            id: spec.id.clone(),
            init_pid,
            dir,
            helper_exe,
            disks: self.disks.take(),
            cgroup,
            state: Mutex::new(State {
                pidfd: Some(pidfd),
                netns,
                exit: None,
                killed: false,
                frozen: false,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_fits_in_the_memory_budget() {
        let limits = |memory_bytes, disk_bytes| super::super::Limits {
            memory_bytes,
            disk_bytes,
            ..Default::default()
        };
        assert_eq!(tmpfs_bytes(&limits(Some(512 << 20), None)), Some(128 << 20));
        assert_eq!(
            tmpfs_bytes(&limits(Some(512 << 20), Some(64 << 20))),
            Some(64 << 20)
        );
        assert_eq!(tmpfs_bytes(&limits(None, Some(64 << 20))), Some(64 << 20));
        assert_eq!(tmpfs_bytes(&limits(None, None)), None);
    }

    #[test]
    fn layer_names_are_flat() {
        assert_eq!(layer_name(Path::new("/usr")), "usr");
        assert_eq!(layer_name(Path::new("/usr/local")), "usr_local");
    }

    #[test]
    fn helper_status_is_read_up_to_the_first_error() {
        let lines = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            HelperStatus::parse(&lines(&["PID 42", "OK"])),
            HelperStatus {
                init_pid: Some(42),
                error: None
            }
        );
        assert_eq!(
            HelperStatus::parse(&lines(&["PID 42", "ERR mount /proc: EPERM", "PID 7"])),
            HelperStatus {
                init_pid: Some(42),
                error: Some("mount /proc: EPERM".into())
            }
        );
        assert_eq!(HelperStatus::parse(&lines(&[])), HelperStatus::default());
    }
}
