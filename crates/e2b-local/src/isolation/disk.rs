//! A sandbox's disk budget: a sparse ext4 image of the budget's size (`sandboxes/<id>/disk.img`)
//! on a loop device, mounted `nosuid,nodev` on `sandboxes/<id>/disk`, where the upper and
//! work directories of its layers live. A sandbox that fills it gets `ENOSPC`; the host's
//! filesystem holds at most the image's size for it.
//!
//! Making one costs ~15 ms (copy of the golden image, `LOOP_CONFIGURE`, mount), removing one
//! ~50 ms on this host (freeing the image's blocks), so both happen off the request path
//! where they can: a background thread keeps [`READY_DISKS`] disks of the server's budget
//! mounted under `disks/ready/`, a create renames one into place, and a kill moves the image
//! to `disks/trash/` for the same thread to unlink. Layout of `<data>/disks/`:
//! `golden-<bytes>.img` (made once per size with `mkfs.ext4`, kept), `ready/<n>/{disk.img,
//! disk/}`, `trash/<n>.img`. What an earlier run left in `ready/` and `trash/` is removed
//! first.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags};

use super::error::{Error, Result};
use super::mounts;

/// A sandbox's image file, next to its `disk/` mount point.
pub(crate) const IMAGE: &str = "disk.img";

/// How many disks of the pooled size are kept ready (mounted, empty) in the background: a
/// burst of this many creates takes no disk set-up; the pool costs this many loop devices,
/// mounts and golden copies (~0.2 MiB each on the host's disk).
pub const READY_DISKS: usize = 4;

/// How long [`unmount_clean`] retries while the disk is still busy (a dying sandbox's
/// overlay lets go of it).
const UNMOUNT_CLEAN_TIMEOUT: Duration = Duration::from_secs(2);

// linux/loop.h and linux/fs.h; the libc crate does not define these.
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
/// Detach the device when its last user (the mount) goes: nothing to detach by hand.
const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// Read and write the image with direct I/O: its pages are cached once (by the sandbox's
/// ext4), not a second time as the image's.
const LO_FLAGS_DIRECT_IO: u32 = 16;
/// The ext4 block size; the loop device's logical block size must not exceed it.
const BLOCK_SIZE: u32 = 4096;
/// `FICLONE`: share the golden image's blocks (btrfs, xfs); ext4 has no reflinks.
const FICLONE: libc::c_ulong = 0x4004_9409;
/// `FS_IOC_SHUTDOWN` with `EXT4_GOING_FLAGS_NOLOGFLUSH`: a killed sandbox's dirty data is
/// dropped instead of being written to an image that is about to be deleted.
const FS_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587D;
const EXT4_GOING_FLAGS_NOLOGFLUSH: u32 = 2;

/// `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config` (`LOOP_CONFIGURE`, Linux 5.8).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// The disks of one data directory: golden images, the ready pool and the trash, and the
/// state the background thread ([`run`](Self::run)) shares with creates and kills.
#[derive(Debug)]
pub(super) struct Disks {
    /// `<data>/disks`.
    root: PathBuf,
    /// The `mkfs.ext4` executable.
    mkfs: PathBuf,
    /// Size of the disks kept ready (`None`: no pool).
    pooled: Option<u64>,
    pool: Mutex<Pool>,
    /// Signalled when `pool` changes.
    changed: Condvar,
    /// Held while a golden image is made, so one size is made once.
    golden: Mutex<()>,
}

/// What [`Disks::run`] works on.
#[derive(Debug, Default)]
struct Pool {
    /// Ready disk directories (`ready/<n>`), each with `disk.img` mounted on `disk/`.
    ready: Vec<PathBuf>,
    /// Images of removed disks, to unlink.
    trash: VecDeque<PathBuf>,
    /// The thread is making a disk or unlinking an image.
    busy: bool,
    /// Names the next ready directory or trash file.
    next: u64,
    /// Stop refilling, remove the ready disks, empty the trash and exit.
    stop: bool,
    /// The thread has exited: the trash is emptied by whoever fills it.
    stopped: bool,
    /// Making a disk failed (logged): refilling stops, and creates make their own disks and
    /// report the failure.
    failed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Disks {
    /// The disks of `data_dir`, or why this host cannot make them: rootless mode (loop
    /// devices and ext4 mounts need root on the host), no `/dev/loop-control`, no
    /// `mkfs.ext4`. Disks of `pooled` bytes are kept ready once [`run`](Self::run) runs.
    pub(super) fn open(
        data_dir: &Path,
        rootless: bool,
        pooled: Option<u64>,
    ) -> std::result::Result<Self, String> {
        if rootless {
            return Err("loop devices and ext4 mounts need root on the host, and rootless mode is root of a user namespace only".into());
        }
        File::options()
            .read(true)
            .write(true)
            .open("/dev/loop-control")
            .map_err(|e| format!("cannot open /dev/loop-control ({e}): load the loop module (`modprobe loop`) or, in a container, pass the loop devices in"))?;
        let mkfs = [
            "/usr/sbin/mkfs.ext4",
            "/sbin/mkfs.ext4",
            "/usr/bin/mkfs.ext4",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            "mkfs.ext4 was not found in /usr/sbin, /sbin or /usr/bin (install e2fsprogs)".to_owned()
        })?;
        let root = data_dir.join("disks");
        for d in [root.join("ready"), root.join("trash")] {
            std::fs::create_dir_all(&d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        Ok(Disks {
            root,
            mkfs,
            pooled,
            pool: Mutex::new(Pool::default()),
            changed: Condvar::new(),
            golden: Mutex::new(()),
        })
    }

    /// The background thread: removes what an earlier run left in `ready/` and `trash/`,
    /// then keeps [`READY_DISKS`] disks ready and unlinks trashed images, until
    /// [`stop`](Self::stop). Refilling comes first while the pool is short, so a burst of
    /// kills does not starve creates.
    pub(super) fn run(&self) {
        self.remove_leftovers();
        loop {
            enum Job {
                Make(PathBuf, u64),
                Unlink(PathBuf),
                Stop,
            }
            let job = {
                let mut p = lock(&self.pool);
                loop {
                    let short = !p.stop && !p.failed && p.ready.len() < READY_DISKS;
                    if let (true, Some(bytes)) = (short, self.pooled) {
                        p.next += 1;
                        p.busy = true;
                        let dir = self.root.join("ready").join(self.name(p.next));
                        break Job::Make(dir, bytes);
                    }
                    if let Some(image) = p.trash.pop_front() {
                        p.busy = true;
                        break Job::Unlink(image);
                    }
                    if p.stop {
                        break Job::Stop;
                    }
                    p = self
                        .changed
                        .wait(p)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            };
            match job {
                Job::Make(dir, bytes) => {
                    let made = std::fs::create_dir(&dir)
                        .map_err(|e| Error::CreateDir(dir.clone(), e))
                        .and_then(|()| self.make(&dir, bytes));
                    let mut p = lock(&self.pool);
                    match made {
                        Ok(()) => p.ready.push(dir),
                        Err(e) => {
                            tracing::warn!("keeping sandbox disks ready: {e}");
                            p.failed = true;
                            drop(p);
                            let _ = discard(&dir, None);
                            p = lock(&self.pool);
                        }
                    }
                    p.busy = false;
                }
                Job::Unlink(image) => {
                    if let Err(e) = std::fs::remove_file(&image) {
                        tracing::warn!("removing {}: {e}", image.display());
                    }
                    lock(&self.pool).busy = false;
                }
                Job::Stop => {
                    let ready = std::mem::take(&mut lock(&self.pool).ready);
                    for dir in ready {
                        if let Err(e) = discard(&dir, None) {
                            tracing::warn!("removing the ready disk {}: {e}", dir.display());
                        }
                    }
                    lock(&self.pool).stopped = true;
                    self.changed.notify_all();
                    return;
                }
            }
            self.changed.notify_all();
        }
    }

    /// A unique name for a ready directory or trash file (the pid keeps an earlier run's
    /// leftovers apart).
    fn name(&self, n: u64) -> String {
        format!("{}-{n}", std::process::id())
    }

    /// Removes the ready disks and trashed images of an earlier run (a crash leaves their
    /// mounts and files; their loop devices go with the mounts).
    fn remove_leftovers(&self) {
        for entry in read_dir(&self.root.join("ready")) {
            if let Err(e) = discard(&entry, None) {
                tracing::warn!(
                    "removing the earlier run's ready disk {}: {e}",
                    entry.display()
                );
            }
        }
        for entry in read_dir(&self.root.join("trash")) {
            let _ = std::fs::remove_file(entry);
        }
    }

    /// Stops the background thread once it has removed the ready disks and emptied the
    /// trash; returns when it has. Images trashed later are unlinked at once.
    pub(super) fn stop(&self) {
        let mut p = lock(&self.pool);
        p.stop = true;
        self.changed.notify_all();
        while !p.stopped {
            p = self
                .changed
                .wait(p)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// The `mkfs.ext4` executable (volumes make their images with it too).
    pub(super) fn mkfs(&self) -> &Path {
        &self.mkfs
    }

    /// Marks the background thread as gone without it having run (it could not start).
    pub(super) fn mark_stopped(&self) {
        lock(&self.pool).stopped = true;
    }

    /// Waits until every trashed image is unlinked and no disk is being made.
    pub(super) fn wait_idle(&self) {
        let mut p = lock(&self.pool);
        while !p.stopped && (p.busy || !p.trash.is_empty()) {
            p = self
                .changed
                .wait(p)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// A ready disk directory of `bytes`, taken from the pool, if there is one.
    pub(super) fn take_ready(&self, bytes: u64) -> Option<PathBuf> {
        if self.pooled != Some(bytes) {
            return None;
        }
        let mut p = lock(&self.pool);
        let dir = p.ready.pop();
        self.changed.notify_all();
        dir
    }

    /// Gives the trash `image` (a removed disk's), to unlink in the background.
    fn trash(&self, image: &Path) -> io::Result<()> {
        let mut p = lock(&self.pool);
        if p.stopped {
            drop(p);
            return std::fs::remove_file(image);
        }
        p.next += 1;
        let to = self
            .root
            .join("trash")
            .join(format!("{}.img", self.name(p.next)));
        std::fs::rename(image, &to)?;
        p.trash.push_back(to);
        self.changed.notify_all();
        Ok(())
    }

    /// Makes a disk of `bytes` in `dir`: copies the golden image of that size to
    /// `dir/disk.img`, mounts it on `dir/disk` ([`mount_image`]) and lays out the root
    /// layer's `upper/` and `work/`. Done in the pool, the layout takes the first reads of
    /// the new filesystem's bitmaps and inode table (direct I/O, uncached) off the create:
    /// 1.5 ms instead of 7.9 ms p50 for a create's first directories and files (measured).
    ///
    /// # Errors
    ///
    /// [`Error::Mkfs`], [`Error::CopyImage`], [`mount_image`]'s, [`Error::CreateDir`].
    pub(super) fn make(&self, dir: &Path, bytes: u64) -> Result<()> {
        let golden = self.golden(bytes)?;
        let image = dir.join(IMAGE);
        copy_image(&golden, &image).map_err(|e| Error::CopyImage(image.clone(), e))?;
        mount_image(dir)?;
        for sub in ["upper", "work"] {
            let d = dir.join("disk").join(sub);
            std::fs::create_dir(&d).map_err(|e| Error::CreateDir(d, e))?;
        }
        Ok(())
    }

    /// `disks/golden-<bytes>.img`, made once with `mkfs.ext4`: 4 KiB blocks (the loop
    /// device's block size), no journal (nothing to replay: a disk lives as long as its
    /// sandbox, and a journal would cost 64 MiB and a thread per disk), no reserved blocks,
    /// no `resize_inode` (its reserved descriptor blocks, for online growth a sandbox's disk
    /// never has, were 4.1 of the 4.3 MiB written per image: 4 GiB of host disk for 1,000
    /// sandboxes), inode tables left unwritten (the image is sparse, so they read as zeros; mounts pass
    /// `noinit_itable`). ~0.2 MiB of a 10 GiB image are written.
    fn golden(&self, bytes: u64) -> Result<PathBuf> {
        let path = self.root.join(format!("golden-{bytes}.img"));
        if path.exists() {
            return Ok(path);
        }
        let _one = lock(&self.golden);
        if path.exists() {
            return Ok(path);
        }
        let tmp = self
            .root
            .join(format!(".golden-{bytes}.{}", std::process::id()));
        let made = (|| {
            File::create(&tmp)
                .and_then(|f| f.set_len(bytes))
                .map_err(|e| e.to_string())?;
            let out = Command::new(&self.mkfs)
                .args(["-q", "-F", "-b", "4096", "-m", "0"])
                .args(["-O", "^has_journal,^resize_inode"])
                .args(["-E", "lazy_itable_init=1,nodiscard"])
                .arg(&tmp)
                .env_clear()
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
        })();
        made.map(|()| path.clone()).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Mkfs(path, e)
        })
    }
}

/// The entries of `dir` (none when it cannot be read).
fn read_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// Copies `from` to a new file `to` (mode 0600) keeping it sparse: `FICLONE` where the
/// filesystem shares blocks, else only its data ranges (`SEEK_DATA`/`SEEK_HOLE` and
/// `copy_file_range`).
fn copy_image(from: &Path, to: &Path) -> io::Result<()> {
    let src = File::open(from)?;
    let dst = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)?;
    // SAFETY: FICLONE takes the source descriptor as its argument and touches no memory.
    if unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE, src.as_raw_fd()) } == 0 {
        return Ok(());
    }
    let len = i64::try_from(src.metadata()?.len()).map_err(io::Error::other)?;
    dst.set_len(u64::try_from(len).unwrap_or(0))?;
    let mut at = 0i64;
    while at < len {
        // SAFETY: lseek on a descriptor we own; no memory is passed.
        let data = unsafe { libc::lseek(src.as_raw_fd(), at, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            // ENXIO: no data after `at`.
            if e.raw_os_error() == Some(libc::ENXIO) {
                break;
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(src.as_raw_fd(), data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let (mut off_in, mut off_out) = (data, data);
        while off_in < hole {
            let n = usize::try_from(hole - off_in).unwrap_or(usize::MAX);
            // SAFETY: both descriptors are ours and the offsets are valid i64s we own.
            let copied = unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    &mut off_in,
                    dst.as_raw_fd(),
                    &mut off_out,
                    n,
                    0,
                )
            };
            if copied < 0 {
                return Err(io::Error::last_os_error());
            }
            if copied == 0 {
                break;
            }
        }
        at = hole;
    }
    Ok(())
}

/// Attaches `image` to a free loop device with autoclear and direct I/O, by ioctl (no
/// `losetup`): `LOOP_CTL_GET_FREE`, then `LOOP_CONFIGURE`, retried when another process took
/// the same device in between. Returns the device's descriptor and path; the device detaches
/// when its last user goes, so dropping the descriptor before mounting undoes it.
fn attach(image: &Path) -> io::Result<(OwnedFd, PathBuf)> {
    // `LOOP_CTL_GET_FREE` gives every caller the same first free device until one binds it:
    // concurrent creates of this process take turns (a few ms each) instead of racing.
    static ATTACHING: Mutex<()> = Mutex::new(());
    let backing = File::options().read(true).write(true).open(image)?;
    let ctl = File::options()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    let _turn = lock(&ATTACHING);
    for _ in 0..32 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = File::options().read(true).write(true).open(&path)?;
        let config = LoopConfig {
            fd: u32::try_from(backing.as_raw_fd()).map_err(io::Error::other)?,
            block_size: BLOCK_SIZE,
            info: LoopInfo64 {
                device: 0,
                inode: 0,
                rdevice: 0,
                offset: 0,
                sizelimit: 0,
                number: 0,
                encrypt_type: 0,
                encrypt_key_size: 0,
                flags: LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO,
                file_name: [0; 64],
                crypt_name: [0; 64],
                encrypt_key: [0; 32],
                init: [0; 2],
            },
            reserved: [0; 8],
        };
        // SAFETY: LOOP_CONFIGURE reads a `struct loop_config`, which `config` is (repr(C),
        // the kernel's layout), and keeps no pointer to it.
        let rc = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &config) };
        if rc == 0 {
            return Ok((OwnedFd::from(dev), path));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(e);
        }
        // Another process bound it first: let it finish.
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(io::Error::other(
        "every free loop device was taken by another process",
    ))
}

/// Attaches `dir/disk.img` to a loop device and mounts it `nosuid,nodev` on `dir/disk`
/// (created if missing), mode 0700. `noinit_itable`: the kernel would otherwise zero the
/// inode tables in the background, ~160 MiB written into a 10 GiB image that reads as zeros
/// anyway; `discard`: what the sandbox deletes is punched out of the image, so the host gets
/// its space back.
///
/// # Errors
///
/// [`Error::CreateDir`], [`Error::AttachLoop`], [`Error::MountDisk`], [`Error::Chown`].
pub(crate) fn mount_image(dir: &Path) -> Result<()> {
    let image = dir.join(IMAGE);
    let disk = dir.join("disk");
    match std::fs::create_dir(&disk) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::CreateDir(disk, e)),
    }
    let (dev, path) = attach(&image).map_err(|e| Error::AttachLoop(image.clone(), e))?;
    nix::mount::mount(
        Some(&path),
        &disk,
        Some("ext4"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("noinit_itable,discard"),
    )
    .map_err(|e| Error::MountDisk(disk.clone(), e.into()))?;
    // The mount holds the device now; with autoclear it detaches when the mount goes.
    drop(dev);
    std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::Chown(disk, e))
}

/// Whether `dir/disk` is the mount of `dir/disk.img` on a loop device (and not, say, a bind
/// mount on a data directory that is itself on a loop device): its device differs from
/// `dir`'s and that device's backing file is the image.
pub(crate) fn mounted_image(dir: &Path) -> bool {
    let (Ok(disk), Ok(parent)) = (std::fs::metadata(dir.join("disk")), std::fs::metadata(dir))
    else {
        return false;
    };
    if disk.dev() == parent.dev() {
        return false;
    }
    let dev = disk.dev();
    let backing = std::fs::read_to_string(format!(
        "/sys/dev/block/{}:{}/loop/backing_file",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    ))
    .unwrap_or_default();
    std::fs::canonicalize(dir.join(IMAGE))
        .is_ok_and(|image| image.as_os_str().as_bytes() == backing.trim_end().as_bytes())
}

/// `(used, total)` bytes of the disk mounted on `dir/disk` when it is the sandbox's image
/// (statvfs: what `df` inside shows; the total is the image's size less ext4's metadata,
/// ~2%).
pub(super) fn usage(dir: &Path) -> Option<(u64, u64)> {
    if !mounted_image(dir) {
        return None;
    }
    let v = nix::sys::statvfs::statvfs(&dir.join("disk")).ok()?;
    let block = v.fragment_size();
    let total = v.blocks() * block;
    Some((total.saturating_sub(v.blocks_free() * block), total))
}

/// Removes a sandbox's (or a ready) directory with its disk: an image that nothing else
/// links to is shut down first (its dirty data dropped, not written), the disk is detached
/// (its loop device goes with the mount), the image goes to `disks`' trash (unlinked in the
/// background; at once without `disks`), then the directory is deleted. Succeeds when
/// nothing is there.
///
/// # Errors
///
/// [`Error::UnmountDisk`], [`Error::RemoveDir`].
pub(super) fn discard(dir: &Path, disks: Option<&Disks>) -> Result<()> {
    let disk = dir.join("disk");
    let image = dir.join(IMAGE);
    // A second link is a paused sandbox's image being restored (`SandboxSpec::disk_image`):
    // its data must reach it.
    if mounted_image(dir) && std::fs::metadata(&image).is_ok_and(|m| m.nlink() == 1) {
        shutdown(&disk);
    }
    mounts::unmount_disk(&disk)?;
    if std::fs::symlink_metadata(&image).is_ok() {
        let trashed = match disks {
            Some(d) => d.trash(&image),
            None => std::fs::remove_file(&image),
        };
        trashed.map_err(|e| Error::RemoveDir(image, e))?;
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::RemoveDir(dir.to_path_buf(), e)),
    }
}

/// Shuts the filesystem on `disk` down without flushing (best effort): every later
/// operation on it fails, and unmounting it writes nothing.
fn shutdown(disk: &Path) {
    let Ok(fd) = File::open(disk) else {
        return;
    };
    let flags = EXT4_GOING_FLAGS_NOLOGFLUSH;
    // SAFETY: FS_IOC_SHUTDOWN reads one u32 from the pointer, which lives across the call.
    let _ = unsafe { libc::ioctl(fd.as_raw_fd(), FS_IOC_SHUTDOWN, &flags) };
}

/// Unmounts `dir/disk` now, flushing it (not lazily: once this returns the image is closed
/// and may be attached again), retrying while a dying sandbox still holds it.
///
/// # Errors
///
/// [`Error::UnmountDisk`] (`EBUSY` after [`UNMOUNT_CLEAN_TIMEOUT`]).
pub(crate) fn unmount_clean(dir: &Path) -> Result<()> {
    let disk = dir.join("disk");
    let deadline = Instant::now() + UNMOUNT_CLEAN_TIMEOUT;
    loop {
        match nix::mount::umount2(&disk, MntFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {
                return Ok(());
            }
            Err(nix::errno::Errno::EBUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(Error::UnmountDisk(disk, e.into())),
        }
    }
}

/// Moves the directory `from` to `to`, which must not exist (`renameat2(RENAME_NOREPLACE)`);
/// a mount inside moves with it.
pub(super) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_config_has_the_kernels_layout() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }

    #[test]
    fn a_sparse_copy_keeps_data_and_holes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let from = dir.path().join("from");
        let f = File::create(&from).unwrap_or_else(|e| panic!("{e}"));
        f.set_len(64 << 20).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::FileExt::write_all_at(&f, b"head", 0).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::FileExt::write_all_at(&f, b"tail", (32 << 20) + 5)
            .unwrap_or_else(|e| panic!("{e}"));
        f.sync_all().unwrap_or_else(|e| panic!("{e}"));
        let to = dir.path().join("to");
        copy_image(&from, &to).unwrap_or_else(|e| panic!("{e}"));
        let (a, b) = (
            std::fs::read(&from).unwrap_or_default(),
            std::fs::read(&to).unwrap_or_default(),
        );
        assert!(a == b, "contents differ");
        let m = std::fs::metadata(&to).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((m.len(), m.mode() & 0o777), (64 << 20, 0o600));
        assert!(
            m.blocks() * 512 < 1 << 20,
            "{} bytes allocated",
            m.blocks() * 512
        );
        assert_eq!(
            copy_image(&from, &to).map_err(|e| e.kind()),
            Err(io::ErrorKind::AlreadyExists)
        );
    }
}
