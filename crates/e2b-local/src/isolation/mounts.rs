//! The sandbox's root filesystem: overlays of the template layers, a minimal `/dev`, a fresh
//! `/proc` with the host-wide knobs masked, `/tmp` on tmpfs, entered with `pivot_root`.
//!
//! Everything here except [`bind_disk`]/[`unmount_disk`] runs inside the sandbox's new mount
//! namespace (after the mount tree was made private), so none of it is visible on the host.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

/// One overlay to mount: `target` inside the sandbox (`/` first, then e.g. `/usr`),
/// with its read-only `lowers` directories and per-sandbox `upper` and `work` directories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerPlan {
    /// Absolute path inside the sandbox.
    pub target: PathBuf,
    /// Read-only lower directories (host paths), topmost first.
    pub lowers: Vec<PathBuf>,
    /// Upper directory (host path, per sandbox).
    pub upper: PathBuf,
    /// Overlay work directory (host path, per sandbox, same filesystem as `upper`).
    pub work: PathBuf,
}

/// How to build a sandbox root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsPlan {
    /// Host directory the root overlay is mounted on, then pivoted into.
    pub rootfs: PathBuf,
    /// Overlays; the first must target `/`.
    pub layers: Vec<LayerPlan>,
    /// Size of the `/tmp` and `/dev/shm` tmpfs in bytes (`None`: the kernel default).
    pub tmp_bytes: Option<u64>,
    /// Whether to add `userxattr` to overlay options (rootless overlay).
    pub userxattr: bool,
    /// An empty host file on which a host executable is bind-mounted read-only before it
    /// is opened for exec (see [`read_only_exe`]).
    pub exe_mount: PathBuf,
    /// The host's loader and libraries, mounted read-only at
    /// [`host_runtime::IN_SANDBOX`](super::host_runtime::IN_SANDBOX) (`None`: a static
    /// server, host executables are exec'd directly).
    #[serde(default)]
    pub host_runtime: Option<super::host_runtime::HostRuntime>,
    /// Host directories bind-mounted read-write into the sandbox (volumes), in order.
    #[serde(default)]
    pub binds: Vec<BindMount>,
    /// The sandbox's disk (`sandboxes/<id>/disk`, a mount on the host), carried into the
    /// sandbox's namespace when it is cloned from the runtime's spawn namespace, where it
    /// is not mounted (see [`Carried`]). `None`: the disk is visible where the sandbox is
    /// cloned from.
    #[serde(default)]
    pub disk: Option<PathBuf>,
}

/// Detached copies of the host mounts a sandbox needs (`open_tree(OPEN_TREE_CLONE)`), taken
/// by the helper in the host's mount namespace before it joins the spawn namespace
/// (`isolation/spawn_ns.rs`), and attached in the sandbox's own namespace: its disk at
/// the same path ([`attach_disk`]) and its volumes at their targets ([`mount_binds`]).
#[derive(Debug)]
pub struct Carried {
    /// The disk, for [`RootfsPlan::disk`].
    disk: Option<OwnedFd>,
    /// One per [`RootfsPlan::binds`], in order.
    binds: Vec<OwnedFd>,
}

/// A detached copy of the mount at `path` (flags such as `nosuid,nodev` included).
fn clone_tree(path: &Path) -> io::Result<OwnedFd> {
    use rustix::mount::{OpenTreeFlags, open_tree};
    open_tree(
        rustix::fs::CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(io::Error::from)
}

/// Host side of the helper, in the host's namespace: detached copies of the plan's disk and
/// volumes.
///
/// # Errors
///
/// [`Error::MountDisk`] or [`Error::BindMount`] naming the mount.
pub fn carry(plan: &RootfsPlan) -> Result<Carried> {
    let disk = match &plan.disk {
        Some(d) => Some(clone_tree(d).map_err(|e| Error::MountDisk(d.clone(), e))?),
        None => None,
    };
    let binds = plan
        .binds
        .iter()
        .map(|b| clone_tree(&b.source).map_err(|e| Error::BindMount(b.target.clone(), e)))
        .collect::<Result<_>>()?;
    Ok(Carried { disk, binds })
}

/// Step 1b, in the sandbox's namespace: attaches the carried disk at [`RootfsPlan::disk`],
/// where the layers' upper and work directories are found.
///
/// # Errors
///
/// [`Error::MountDisk`].
pub fn attach_disk(plan: &RootfsPlan, carried: &mut Carried) -> Result<()> {
    use rustix::mount::{MoveMountFlags, move_mount};
    let (Some(path), Some(tree)) = (&plan.disk, carried.disk.take()) else {
        return Ok(());
    };
    move_mount(
        &tree,
        "",
        rustix::fs::CWD,
        path,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| Error::MountDisk(path.clone(), e.into()))
}

/// A host directory bind-mounted into the sandbox (a volume's mount point).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Host directory.
    pub source: PathBuf,
    /// Absolute path inside the sandbox; missing directories are made (root's, 0755).
    pub target: PathBuf,
}

/// Host device nodes recreated (same numbers) in the sandbox's `/dev`.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// `/proc` files hidden behind `/dev/null` (host-wide information or kernel memory).
pub const PROC_MASKED: &[&str] = &["kcore", "keys", "timer_list", "sched_debug", "kallsyms"];

/// `/proc` paths made read-only (host-wide kernel knobs; `/proc/sys/kernel/core_pattern`
/// alone would be an escape).
pub const PROC_READ_ONLY: &[&str] = &["sys", "sysrq-trigger", "irq", "bus", "fs"];

fn mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> io::Result<()> {
    nix::mount::mount(src, target, fstype, flags, data).map_err(io::Error::from)
}

/// Step 1: stop mount events from propagating to the host (the host `/` is often shared).
///
/// # Errors
///
/// [`Error::MountPrivate`].
pub fn make_private() -> Result<()> {
    mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )
    .map_err(Error::MountPrivate)
}

fn inside(rootfs: &Path, target: &Path) -> PathBuf {
    rootfs.join(target.strip_prefix("/").unwrap_or(target))
}

/// Step 2: mount each layer's overlay.
///
/// # Errors
///
/// [`Error::MountOverlay`] naming the mount point.
pub fn mount_overlays(plan: &RootfsPlan) -> Result<()> {
    for layer in &plan.layers {
        let target = inside(&plan.rootfs, &layer.target);
        let lowers: Vec<String> = layer
            .lowers
            .iter()
            .map(|l| l.display().to_string())
            .collect();
        let mut opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            layer.upper.display(),
            layer.work.display()
        );
        if plan.userxattr {
            opts.push_str(",userxattr");
        }
        let mounted = if opts.len() < MOUNT_DATA_MAX {
            mount(
                Some("overlay"),
                &target,
                Some("overlay"),
                MsFlags::empty(),
                Some(&opts),
            )
        } else {
            mount_overlay_appending(layer, &target, plan.userxattr)
        };
        mounted.map_err(|e| Error::MountOverlay(target.clone(), e))?;
    }
    Ok(())
}

/// What `mount(2)` takes as options: one page, NUL included.
const MOUNT_DATA_MAX: usize = 4095;

/// An overlay whose options do not fit in a page (a deep template: a built one with many
/// layers), with the new mount API: each lower directory is its own `lowerdir+` (Linux 6.8;
/// overlayfs stacks up to 500).
fn mount_overlay_appending(layer: &LayerPlan, target: &Path, userxattr: bool) -> io::Result<()> {
    use rustix::mount::{
        FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, fsconfig_create,
        fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    };
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for lower in &layer.lowers {
        fsconfig_set_string(&fs, "lowerdir+", lower)?;
    }
    fsconfig_set_string(&fs, "upperdir", &layer.upper)?;
    fsconfig_set_string(&fs, "workdir", &layer.work)?;
    if userxattr {
        fsconfig_set_flag(&fs, "userxattr")?;
    }
    fsconfig_create(&fs)?;
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

fn size_opt(bytes: Option<u64>) -> String {
    bytes.map(|b| format!(",size={b}")).unwrap_or_default()
}

/// Step 3: `/tmp` on its own tmpfs.
///
/// # Errors
///
/// [`Error::MountTmpfs`].
pub fn mount_tmp(plan: &RootfsPlan) -> Result<()> {
    let tmp = plan.rootfs.join("tmp");
    mkdir(&tmp)?;
    mount(
        Some("tmpfs"),
        &tmp,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&format!("mode=1777{}", size_opt(plan.tmp_bytes))),
    )
    .map_err(|e| Error::MountTmpfs(tmp, e))
}

fn mkdir(p: &Path) -> Result<()> {
    match std::fs::create_dir(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::CreateDir(p.to_path_buf(), e)),
    }
}

fn symlink(to: &str, at: PathBuf) -> Result<()> {
    std::os::unix::fs::symlink(to, &at).map_err(|e| Error::Symlink(at, e))
}

fn bind(src: &Path, target: &Path, flags: MsFlags) -> Result<()> {
    mount(
        Some(src.to_str().unwrap_or_default()),
        target,
        None,
        MsFlags::MS_BIND | flags,
        None,
    )
    .map_err(|e| Error::BindMount(target.to_path_buf(), e))
}

/// Step 4: a minimal `/dev`: a small tmpfs with the usual character devices (nodes with the
/// host's device numbers, or bind mounts of the host nodes without `CAP_MKNOD`), a private
/// devpts instance, `/dev/shm`, and the `fd`/`std*` symlinks.
///
/// # Errors
///
/// The failing step's variant, naming the path.
pub fn mount_dev(plan: &RootfsPlan) -> Result<()> {
    let dev = plan.rootfs.join("dev");
    mkdir(&dev)?;
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=755,size=65536"),
    )
    .map_err(|e| Error::MountTmpfs(dev.clone(), e))?;
    for name in DEVICES {
        let host = Path::new("/dev").join(name);
        let target = dev.join(name);
        // A node with the host device's numbers: no mount, so no contention on the kernel's
        // global mount lock when many sandboxes start at once. Without CAP_MKNOD (e.g. in a
        // container), bind-mount the host node instead.
        let made = nix::sys::stat::stat(&host).is_ok_and(|st| {
            nix::sys::stat::mknod(
                &target,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o666),
                st.st_rdev,
            )
            .is_ok()
                && nix::sys::stat::fchmodat(
                    nix::fcntl::AT_FDCWD,
                    &target,
                    nix::sys::stat::Mode::from_bits_truncate(0o666),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .is_ok()
        });
        if !made {
            let _ = std::fs::remove_file(&target);
            std::fs::File::create(&target).map_err(|e| Error::WriteFile(target.clone(), e))?;
            bind(&host, &target, MsFlags::empty())?;
        }
    }
    let pts = dev.join("pts");
    mkdir(&pts)?;
    // A new devpts instance: the sandbox sees only its own ptys.
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(|e| Error::MountDevpts(pts.clone(), e))?;
    symlink("pts/ptmx", dev.join("ptmx"))?;
    let shm = dev.join("shm");
    mkdir(&shm)?;
    mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&format!("mode=1777{}", size_opt(plan.tmp_bytes))),
    )
    .map_err(|e| Error::MountTmpfs(shm, e))?;
    if let Some(rt) = &plan.host_runtime {
        let to = plan
            .rootfs
            .join(super::host_runtime::IN_SANDBOX.trim_start_matches('/'));
        mkdir(&to)?;
        bind(&rt.dir, &to, MsFlags::empty())?;
        bind(
            &to,
            &to,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | kept_flags(&rt.dir),
        )?;
    }
    symlink("/proc/self/fd", dev.join("fd"))?;
    symlink("/proc/self/fd/0", dev.join("stdin"))?;
    symlink("/proc/self/fd/1", dev.join("stdout"))?;
    symlink("/proc/self/fd/2", dev.join("stderr"))?;
    Ok(())
}

/// Step 5: a fresh `/proc` for the new pid namespace, with host-wide files masked and
/// kernel knobs read-only. Must run in a process inside the new pid namespace.
///
/// # Errors
///
/// The failing step's variant, naming the path.
pub fn mount_proc(plan: &RootfsPlan) -> Result<()> {
    let proc_ = plan.rootfs.join("proc");
    mkdir(&proc_)?;
    mount(
        Some("proc"),
        &proc_,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
    .map_err(|e| Error::MountProc(proc_.clone(), e))?;
    mount_boot_id(&proc_, &plan.rootfs.join("dev"))?;
    let null = plan.rootfs.join("dev/null");
    for name in PROC_MASKED {
        let p = proc_.join(name);
        if p.exists() {
            bind(&null, &p, MsFlags::empty())?;
        }
    }
    for name in PROC_READ_ONLY {
        let p = proc_.join(name);
        if !p.exists() {
            continue;
        }
        bind(&p, &p, MsFlags::MS_REC)?;
        bind(
            &p,
            &p,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
        )?;
    }
    Ok(())
}

/// `/proc/sys/kernel/random/boot_id` is the host's (the same in every sandbox and across
/// every resume); each boot of a sandbox gets its own, as a VM would: a fresh UUID in a file
/// on `dev` (the sandbox's tmpfs), bind-mounted read-only over it, then unlinked. A
/// memory-kept resume keeps the mount, so the id; a files-only resume is a new boot.
fn mount_boot_id(proc_: &Path, dev: &Path) -> Result<()> {
    let target = proc_.join("sys/kernel/random/boot_id");
    if !target.exists() {
        return Ok(());
    }
    let source = dev.join(".boot_id");
    std::fs::write(&source, format!("{}\n", uuid::Uuid::new_v4()))
        .map_err(|e| Error::WriteFile(source.clone(), e))?;
    bind(&source, &target, MsFlags::empty())?;
    bind(
        &source,
        &target,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
    )?;
    std::fs::remove_file(&source).map_err(|e| Error::WriteFile(source, e))
}

/// Before `pivot_root`, for a host executable run inside: bind-mounts the file behind `fd`
/// read-only on `plan.exe_mount` (in this private namespace only) and opens it `O_PATH`
/// from there. The program's `/proc/<pid>/exe` then resolves through a read-only mount, so
/// root inside can never reopen it for writing and replace the host's binary (runc's
/// CVE-2019-5736), even in the moment after the program exits and the file stops being
/// text-busy.
///
/// `fd` was opened before the namespace was created, and a bind mount's source must be in
/// the caller's namespace, so the file is looked up again by path and must be the same
/// inode. Returns `None` (keep using `fd`) when the file was deleted or replaced since,
/// e.g. by a server upgrade.
///
/// # Errors
///
/// [`Error::BindMount`] or [`Error::OpenProgram`] naming the path.
pub fn read_only_exe(plan: &RootfsPlan, fd: BorrowedFd<'_>) -> Result<Option<OwnedFd>> {
    let Ok(path) = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) else {
        return Ok(None);
    };
    let same = |a: &nix::sys::stat::FileStat, b: &nix::sys::stat::FileStat| {
        a.st_dev == b.st_dev && a.st_ino == b.st_ino
    };
    let (Ok(old), Ok(now)) = (nix::sys::stat::fstat(fd), nix::sys::stat::stat(&path)) else {
        return Ok(None);
    };
    if !same(&old, &now) {
        return Ok(None);
    }
    bind(&path, &plan.exe_mount, MsFlags::empty())?;
    bind(
        &plan.exe_mount,
        &plan.exe_mount,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NODEV | kept_flags(&plan.exe_mount),
    )?;
    let new = nix::fcntl::open(
        &plan.exe_mount,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::OpenProgram(plan.exe_mount.clone(), e.into()))?;
    // The path could have been swapped between stat and bind: check the inode again.
    match nix::sys::stat::fstat(&new) {
        Ok(st) if same(&old, &st) => Ok(Some(new)),
        _ => Err(Error::OpenProgram(
            path,
            io::Error::other("the executable changed while it was being mounted"),
        )),
    }
}

/// The flags of the mount holding `path` that a bind remount must repeat: in a user
/// namespace, flags of a mount inherited from the host (`nosuid`, `noexec`, `nodev`, the
/// atime mode) are locked, and a remount that would clear one fails with `EPERM`.
fn kept_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::FsFlags;
    let Ok(v) = nix::sys::statvfs::statvfs(path) else {
        return MsFlags::empty();
    };
    let f = v.flags();
    let mut out = MsFlags::empty();
    for (st, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(st) {
            out |= ms;
        }
    }
    out
}

/// Step 5b: bind-mount each of `plan.binds` on its target inside the root, made when
/// missing. The target is walked beneath the new root without following any symbolic link
/// (a template's link at a mount path, say to `/`, would otherwise resolve against the
/// host's root, which is still this namespace's root here), and the mount is attached to the
/// walked directory's descriptor with `move_mount`, never by path. The source's mount flags
/// (`nosuid,nodev` of a volume) carry over to the bind.
///
/// # Errors
///
/// [`Error::BindMount`] naming the target.
pub fn mount_binds(plan: &RootfsPlan, carried: Option<&mut Carried>) -> Result<()> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use rustix::mount::{MoveMountFlags, move_mount};
    let mut carried = carried.map(|c| std::mem::take(&mut c.binds).into_iter());
    for b in &plan.binds {
        let fail = |e: io::Error| Error::BindMount(b.target.clone(), e);
        let mut dir = rustix::fs::open(
            &plan.rootfs,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(e.into()))?;
        for part in b.target.components().skip(1) {
            let part = part.as_os_str();
            match rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(fail(e.into())),
            }
            dir = rustix::fs::openat2(
                &dir,
                part,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
            )
            .map_err(|e| fail(e.into()))?;
        }
        let tree = match carried.as_mut().and_then(Iterator::next) {
            Some(tree) => tree,
            None => clone_tree(&b.source).map_err(fail)?,
        };
        move_mount(
            &tree,
            "",
            &dir,
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .map_err(|e| fail(e.into()))?;
    }
    Ok(())
}

/// Step 6: make the overlay the root and detach the host's root from this namespace.
///
/// Uses the `pivot_root(".", ".")` form: the old root ends up stacked on the new one and is
/// detached at once, so no directory for it is needed and nothing of the host stays reachable.
///
/// # Errors
///
/// [`Error::Chdir`], [`Error::PivotRoot`] or [`Error::UnmountOldRoot`].
pub fn pivot(rootfs: &Path) -> Result<()> {
    nix::unistd::chdir(rootfs).map_err(|e| Error::Chdir(rootfs.to_path_buf(), e.into()))?;
    nix::unistd::pivot_root(".", ".")
        .map_err(|e| Error::PivotRoot(rootfs.to_path_buf(), e.into()))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH).map_err(|e| Error::UnmountOldRoot(e.into()))?;
    nix::unistd::chdir("/").map_err(|e| Error::Chdir(PathBuf::from("/"), e.into()))?;
    Ok(())
}

/// Host side: makes a sandbox's disk directory (which holds its upper and work directories)
/// a `nosuid,nodev` mount of its own, for sandboxes without a disk budget (no image). Root in a sandbox
/// can write a setuid-root binary or a device node into its upper directory; reached from the
/// host through this mount, neither carries any privilege.
///
/// # Errors
///
/// [`Error::MountDisk`].
pub fn bind_disk(dir: &Path) -> Result<()> {
    let fail = |e: io::Error| Error::MountDisk(dir.to_path_buf(), e);
    mount(dir.to_str(), dir, None, MsFlags::MS_BIND, None).map_err(fail)?;
    let flags = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | kept_flags(dir);
    if let Err(e) = mount(None, dir, None, flags, None) {
        let _ = nix::mount::umount2(dir, MntFlags::MNT_DETACH);
        return Err(fail(e));
    }
    Ok(())
}

/// Host side: detaches a sandbox's disk (lazily, since the dying sandbox's overlay may hold
/// it for a moment longer); an image's loop device detaches when the last reference goes.
///
/// # Errors
///
/// [`Error::UnmountDisk`], except that "not mounted" is success.
pub fn unmount_disk(dir: &Path) -> Result<()> {
    match nix::mount::umount2(dir, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::UnmountDisk(dir.to_path_buf(), e.into())),
    }
}
