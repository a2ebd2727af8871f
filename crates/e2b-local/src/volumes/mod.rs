//! Volumes: storage that outlives sandboxes. Each is a sparse ext4 image of a fixed size
//! with a journal (`volumes/<id>/disk.img`), loop-mounted once by the server on
//! `volumes/<id>/disk` (`nosuid,nodev`), bind-mounted from there into every sandbox that
//! names it in `volumeMounts`, and read and written by the content API ([`files`]) through
//! the same mount. A volume that fills up gives `ENOSPC` to whoever writes (a sandbox, or
//! the content API's 507), and only its own image grows on the host.
//!
//! The mount lives in the host's mount namespace: a server killed with SIGKILL leaves it,
//! and its data, in place (the kernel keeps writing dirty pages back), and the next start
//! re-attaches what is mounted and mounts what is not ([`Volumes::attach`]). A power loss
//! leaves what the journal committed (ext4's default five seconds; the content API syncs
//! every file it writes before it answers).
//!
//! Needs what sandbox disks need (root on the host, loop devices, `mkfs.ext4`); in rootless
//! mode volumes are refused with the reason.

pub mod files;

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::isolation::disk;

/// Default size of a volume: 10 GiB (`e2b-local serve --volume-mib`). The image is sparse:
/// the host's disk holds what was written.
pub const DEFAULT_VOLUME_MIB: u64 = 10 << 10;

/// The smallest volume size (`--volume-mib`): ext4 with its journal and metadata.
pub const MIN_VOLUME_MIB: u64 = 16;

/// Owner and group of a new volume's root: the sandboxes' `user` (uid and gid 1000 inside,
/// the same ids on the host: sandboxes of a root server have no user namespace).
pub const VOLUME_OWNER: u32 = 1000;

/// Why a volume operation failed; the control plane gives each its status.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// No volume has this id or name.
    #[error("volume '{0}' not found")]
    NotFound(String),
    /// The name breaks E2B's pattern `^[a-zA-Z0-9_-]+$`.
    #[error("invalid volume name {0:?}: use 1 to 255 letters, digits, '_' and '-'")]
    InvalidName(String),
    /// Another volume has the name.
    #[error("a volume named '{0}' already exists")]
    NameTaken(String),
    /// Sandboxes mount it (or are being created with it).
    #[error("volume '{name}' is mounted by sandboxes {sandboxes}; kill them first")]
    InUse {
        /// The volume's name.
        name: String,
        /// The sandboxes, comma-separated.
        sandboxes: String,
    },
    /// A `volumeMounts` entry is wrong (the message names the field and entry).
    #[error("{0}")]
    InvalidMount(String),
    /// This server cannot make volumes.
    #[error("volumes are not available on this server: {0}")]
    Unavailable(String),
    /// The host failed making, mounting or removing a volume.
    #[error("volume '{0}': {1}")]
    Host(String, String),
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] crate::state::StateError),
}

/// Whether `name` fits E2B's volume name pattern `^[a-zA-Z0-9_-]+$` (at most 255 bytes).
pub fn valid_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The volumes of one data directory on the host.
#[derive(Debug)]
pub struct Volumes {
    /// `<data>/volumes`.
    root: PathBuf,
    /// `mkfs.ext4`, or why volumes cannot be made here.
    mkfs: Result<PathBuf, String>,
    /// Size of new volumes in bytes.
    size_bytes: u64,
    /// Creates under way that mount a volume: volume id → how many. Deleting it waits for
    /// none to be left (it is refused meanwhile).
    pending: Mutex<HashMap<String, usize>>,
}

/// A create's hold on the volumes it mounts: deleting them is refused until it is dropped
/// (the sandbox is then live, and its record names them, or its create failed).
#[derive(Debug)]
pub struct MountHold<'a> {
    volumes: &'a Volumes,
    ids: Vec<String>,
}

impl Drop for MountHold<'_> {
    fn drop(&mut self) {
        let mut pending = crate::lifecycle::lock(&self.volumes.pending);
        for id in &self.ids {
            if let Some(n) = pending.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    pending.remove(id);
                }
            }
        }
    }
}

impl Volumes {
    /// The volumes under `data_dir/volumes`, made `size_bytes` large with `mkfs` (or
    /// refused with its error's reason).
    pub fn new(data_dir: &Path, mkfs: Result<PathBuf, String>, size_bytes: u64) -> Self {
        Volumes {
            root: data_dir.join("volumes"),
            mkfs,
            size_bytes,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Size of new volumes in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Why volumes cannot be made on this server, if they cannot.
    pub fn unavailable(&self) -> Option<&str> {
        self.mkfs.as_ref().err().map(String::as_str)
    }

    /// `volumes/<id>`: the image and its mount point.
    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Where volume `id` is mounted on the host: the source of its bind mounts.
    pub fn mount_point(&self, id: &str) -> PathBuf {
        self.dir(id).join("disk")
    }

    /// The files of volume `id` (mounted).
    ///
    /// # Errors
    ///
    /// [`VolumeError::Host`] when its mount point cannot be opened.
    pub fn files(&self, id: &str) -> Result<files::VolumeFiles, VolumeError> {
        files::VolumeFiles::open(&self.mount_point(id))
            .map_err(|e| VolumeError::Host(id.to_owned(), format!("opening its files: {e}")))
    }

    /// Holds `ids` for a create (see [`MountHold`]) once `check` (that they still exist)
    /// passes; both run under the lock deletes take, so a delete either sees the hold or
    /// has already removed the volume, which `check` then reports.
    pub(crate) fn hold<T>(
        &self,
        ids: Vec<String>,
        check: impl FnOnce() -> Result<T, VolumeError>,
    ) -> Result<(MountHold<'_>, T), VolumeError> {
        let mut pending = crate::lifecycle::lock(&self.pending);
        let checked = check()?;
        for id in &ids {
            *pending.entry(id.clone()).or_default() += 1;
        }
        Ok((MountHold { volumes: self, ids }, checked))
    }

    /// Runs `delete` for volume `id` unless a create holds it; the lock keeps creates out
    /// meanwhile.
    pub(crate) fn unless_held<T>(
        &self,
        id: &str,
        delete: impl FnOnce(bool) -> Result<T, VolumeError>,
    ) -> Result<T, VolumeError> {
        let pending = crate::lifecycle::lock(&self.pending);
        delete(pending.contains_key(id))
    }

    /// Makes volume `id`: a sparse image of [`size_bytes`](Self::size_bytes) with ext4 and
    /// a journal, its root owned by [`VOLUME_OWNER`], mounted. What a failure left is
    /// removed.
    ///
    /// # Errors
    ///
    /// [`VolumeError::Unavailable`], [`VolumeError::Host`].
    pub fn make(&self, id: &str) -> Result<(), VolumeError> {
        let mkfs = self
            .mkfs
            .as_ref()
            .map_err(|why| VolumeError::Unavailable(why.clone()))?;
        let dir = self.dir(id);
        let made = (|| {
            crate::state::create_private_dir(&self.root)
                .and_then(|()| std::fs::create_dir(&dir))
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let image = dir.join(disk::IMAGE);
            std::fs::File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&image)
                .and_then(|f| f.set_len(self.size_bytes))
                .map_err(|e| format!("creating {}: {e}", image.display()))?;
            // A journal (unlike sandbox disks): a volume outlives crashes of the host.
            // Lazy inode tables and journal: the sparse image reads zeros there anyway.
            let out = Command::new(mkfs)
                .args(["-q", "-F", "-b", "4096", "-m", "0", "-O", "^resize_inode"])
                .arg("-E")
                .arg(format!(
                    "lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner={VOLUME_OWNER}:{VOLUME_OWNER}"
                ))
                .arg(&image)
                .env_clear()
                .output()
                .map_err(|e| format!("running {}: {e}", mkfs.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "mkfs.ext4: {}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            self.mount(id)?;
            // Nothing to recover into on a fresh filesystem; e2fsck makes it when needed.
            let lost = self.mount_point(id).join("lost+found");
            std::fs::remove_dir(&lost).map_err(|e| format!("removing {}: {e}", lost.display()))
        })();
        made.map_err(|e| {
            let _ = self.remove(id);
            VolumeError::Host(id.to_owned(), e)
        })
    }

    /// Mounts volume `id`'s image on its mount point, its root readable by every user of a
    /// sandbox (`disk::mount_image` makes it private to its owner).
    fn mount(&self, id: &str) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt as _;
        disk::mount_image(&self.dir(id)).map_err(|e| e.to_string())?;
        std::fs::set_permissions(self.mount_point(id), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("making the volume's root readable: {e}"))
    }

    /// At start-up: mounts every volume of `ids` not mounted yet (a server that crashed left
    /// its mounts in place; a reboot did not), and removes every other directory under
    /// `volumes/` (a create or delete cut short). Failures are logged; such a volume's
    /// mounts and content requests fail until the next start.
    pub(crate) fn attach(&self, ids: &[String]) {
        if self.mkfs.is_err() {
            return;
        }
        for entry in std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !ids.contains(&id)
                && let Err(e) = self.remove(&id)
            {
                tracing::warn!("removing the unfinished volume directory {id}: {e}");
            }
        }
        for id in ids {
            if disk::mounted_image(&self.dir(id)) {
                continue;
            }
            if let Err(e) = self.mount(id) {
                tracing::error!("mounting volume {id}: {e}");
            }
        }
    }

    /// Unmounts volume `id` (flushing it: not lazily) and removes its image and directory.
    ///
    /// # Errors
    ///
    /// [`VolumeError::Host`] (e.g. still busy after a few seconds).
    pub fn remove(&self, id: &str) -> Result<(), VolumeError> {
        let dir = self.dir(id);
        let host = |e: String| VolumeError::Host(id.to_owned(), e);
        if disk::mounted_image(&dir) {
            disk::unmount_clean(&dir).map_err(|e| host(e.to_string()))?;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(host(format!("removing {}: {e}", dir.display()))),
        }
    }

    /// At shutdown, after every sandbox is gone: unmounts every volume (flushed), so the
    /// data directory holds only their images.
    pub(crate) fn detach_all(&self, ids: &[String]) {
        for id in ids {
            let dir = self.dir(id);
            if disk::mounted_image(&dir)
                && let Err(e) = disk::unmount_clean(&dir)
            {
                tracing::warn!("unmounting volume {id}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_e2bs_pattern() {
        for ok in ["data", "A-b_9", &"x".repeat(255)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a/b", "..", "a.b", "a b", "é", &"x".repeat(256)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
