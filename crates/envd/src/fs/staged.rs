//! Writing a whole file so that a write cut off part-way leaves the old content: the new
//! content goes to a hidden file beside the target, which replaces the target only once it is
//! complete. Blocking, like the rest of [`fs`](super).
//!
//! What a finished write leaves is what writing the target in place (upstream's
//! `O_TRUNC`) leaves:
//! - a symlink at the path is followed: its final target gets the content, the link stays;
//! - an existing file keeps its mode (less set-uid/set-gid, which the `chown` to the writing
//!   user clears, as before) and its extended attributes except `user.e2b.*` (replaced by the
//!   upload's metadata) and `security.*`/`trusted.*` (file capabilities must not carry over
//!   to new content);
//! - new and existing files belong to the writing user; a new file has mode `0666 & !umask`;
//! - a file with several hard links is rewritten in its own inode, so every link sees the new
//!   content (the complete content is copied in at the end, from the local hidden file);
//! - something that is not a regular file (a FIFO, a device) is written in place.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::XATTR_PREFIX;

/// Symlinks followed before giving up with `ELOOP`, as the kernel's limit.
const MAX_SYMLINKS: usize = 40;

/// A failed step of a staged write, with the system call's error.
#[derive(Debug, thiserror::Error)]
#[error("error {step} {}: {source}", path.display())]
pub struct StagingError {
    /// What was being done, e.g. `"creating a temporary file in"`.
    pub step: &'static str,
    /// The path it was done on.
    pub path: PathBuf,
    /// The error.
    #[source]
    pub source: io::Error,
}

fn failed(step: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StagingError {
    let path = path.to_owned();
    move |source| StagingError { step, path, source }
}

/// How the content reaches the target when the write completes.
#[derive(Debug, PartialEq, Eq)]
enum Finish {
    /// Rename the hidden file over the target.
    Rename,
    /// Copy the hidden file into the target's inode (hard links share it).
    CopyInto,
    /// Nothing: the target itself was written (not a regular file).
    InPlace,
}

/// A write in progress. Dropping it before [`commit`](Self::commit) removes the hidden file
/// and leaves the target as it was.
#[derive(Debug)]
pub struct StagedFile {
    /// The path written, after following symlinks.
    target: PathBuf,
    /// The hidden file, or `None` when the target is written in place.
    temp: Option<PathBuf>,
    /// Where the content goes.
    file: File,
    finish: Finish,
}

impl StagedFile {
    /// Starts writing `path` as `uid:gid`.
    ///
    /// # Errors
    /// The failing step: following symlinks (`ENAMETOOLONG`, `ELOOP`, …), creating the hidden
    /// file, copying the old file's mode and attributes, or `chown`.
    pub fn create(path: &Path, uid: u32, gid: u32) -> Result<Self, StagingError> {
        let target = follow_symlinks(path).map_err(failed("resolving", path))?;
        let existing = match std::fs::metadata(&target) {
            Ok(md) => Some(md),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(failed("getting file info for", &target)(e)),
        };
        let (temp, file, finish) = match &existing {
            Some(md) if !md.is_file() => {
                let file = OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&target)
                    .map_err(failed("opening", &target))?;
                (None, file, Finish::InPlace)
            }
            _ => {
                let dir = target.parent().unwrap_or(Path::new("/"));
                let (temp, file) = create_hidden(dir)?;
                let finish = match &existing {
                    Some(md) => {
                        // Set before the chown below, which clears set-uid/set-gid as the
                        // chown of the existing file did.
                        file.set_permissions(std::fs::Permissions::from_mode(md.mode() & 0o7777))
                            .map_err(failed("copying the mode of", &target))?;
                        copy_xattrs(&target, &temp);
                        if md.nlink() > 1 {
                            Finish::CopyInto
                        } else {
                            Finish::Rename
                        }
                    }
                    None => Finish::Rename,
                };
                (Some(temp), file, finish)
            }
        };
        let staged = Self {
            target,
            temp,
            file,
            finish,
        };
        std::os::unix::fs::fchown(&staged.file, Some(uid), Some(gid))
            .map_err(failed("changing ownership of", staged.written()))?;
        Ok(staged)
    }

    /// The path written, after following symlinks.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// A handle on the file the content goes to.
    ///
    /// # Errors
    /// `dup` failing.
    pub fn writer(&self) -> Result<File, StagingError> {
        self.file
            .try_clone()
            .map_err(failed("duplicating the descriptor of", self.written()))
    }

    /// The file being written: the hidden file, or the target.
    fn written(&self) -> &Path {
        self.temp.as_deref().unwrap_or(&self.target)
    }

    /// Finishes the write: `set_metadata` runs on the complete file before it replaces the
    /// target (after, when the target's own inode is written), then the target gets the
    /// content.
    ///
    /// # Errors
    /// `set_metadata`'s error, or the rename or copy failing; the target is then unchanged,
    /// except after a copy into it that failed part-way.
    pub fn commit(
        mut self,
        set_metadata: impl Fn(&Path) -> Result<(), StagingError>,
    ) -> Result<(), StagingError> {
        let Some(temp) = self.temp.clone() else {
            return set_metadata(&self.target);
        };
        if self.finish == Finish::Rename {
            set_metadata(&temp)?;
            match std::fs::rename(&temp, &self.target) {
                Ok(()) => {
                    self.temp = None;
                    return Ok(());
                }
                // A mount point (a bind-mounted file) or another filesystem: write in place.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EXDEV)) => {}
                Err(e) => return Err(failed("replacing", &self.target)(e)),
            }
        }
        self.copy_into_target()?;
        set_metadata(&self.target)
    }

    /// Copies the complete hidden file into the target's inode, then gives the target to the
    /// hidden file's owner.
    fn copy_into_target(&mut self) -> Result<(), StagingError> {
        let md = self
            .file
            .metadata()
            .map_err(failed("getting file info for", self.written()))?;
        let mut out = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&self.target)
            .map_err(failed("opening", &self.target))?;
        self.file
            .rewind()
            .map_err(failed("rewinding", self.written()))?;
        io::copy(&mut self.file, &mut out).map_err(failed("writing", &self.target))?;
        std::os::unix::fs::fchown(&out, Some(md.uid()), Some(md.gid()))
            .map_err(failed("changing ownership of", &self.target))
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if let Some(temp) = &self.temp {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// `path` with every symlink at its end followed (a dangling one gives the path it names).
fn follow_symlinks(path: &Path) -> io::Result<PathBuf> {
    let mut cur = path.to_owned();
    for _ in 0..MAX_SYMLINKS {
        match std::fs::symlink_metadata(&cur) {
            Ok(md) if md.file_type().is_symlink() => {
                let link = std::fs::read_link(&cur)?;
                // Not cleaned lexically: `..` after a symlinked directory is the kernel's to
                // resolve.
                cur = match cur.parent() {
                    Some(dir) => dir.join(link),
                    None => link,
                };
            }
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => return Ok(cur),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ELOOP))
}

/// Creates a new hidden file in `dir`, readable and writable, mode `0666 & !umask` like the
/// file upstream creates.
fn create_hidden(dir: &Path) -> Result<(PathBuf, File), StagingError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Short, whatever the target's name: a 255-byte name must still get a hidden file.
        let temp = dir.join(format!(".e2b-upload.{}.{n}", std::process::id()));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            // Left by an envd that died mid-upload with the same pid.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(failed("creating a temporary file in", dir)(e)),
        }
    }
}

/// Copies the extended attributes an in-place write would have kept (best effort: a
/// filesystem without them, or one refusing a name, leaves the attribute out).
fn copy_xattrs(from: &Path, to: &Path) {
    let Ok(names) = xattr::list(from) else {
        return;
    };
    for name in names {
        let Some(n) = name.to_str() else { continue };
        let kept = (n.starts_with("user.") && !n.starts_with(XATTR_PREFIX))
            || n.starts_with("system.posix_acl_");
        if kept && let Ok(Some(value)) = xattr::get(from, &name) {
            let _ = xattr::set(to, &name, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_are_followed_to_their_final_target() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::write(root.join("real"), b"x").unwrap();
        std::os::unix::fs::symlink("real", root.join("a")).unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("b")).unwrap();
        std::os::unix::fs::symlink("missing", root.join("dangling")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert_eq!(follow_symlinks(&root.join("b")).unwrap(), root.join("real"));
        assert_eq!(
            follow_symlinks(&root.join("dangling")).unwrap(),
            root.join("missing")
        );
        assert_eq!(
            follow_symlinks(&root.join("new")).unwrap(),
            root.join("new")
        );
        assert_eq!(
            follow_symlinks(&root.join("loop"))
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ELOOP)
        );
    }

    #[test]
    fn an_abandoned_write_leaves_the_old_file_and_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("f");
        std::fs::write(&target, b"old").unwrap();
        let (uid, gid) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        let staged = StagedFile::create(&target, uid, gid).unwrap();
        std::io::Write::write_all(&mut staged.writer().unwrap(), b"partial").unwrap();
        drop(staged);
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
