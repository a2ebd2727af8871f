//! Writing a whole file so that a write cut off part-way leaves the old content: the new
//! content is first written to an unnamed staging file (`O_TMPFILE` in [`STAGING_DIR`]), and
//! copied into the target only once it is complete. Blocking, like the rest of
//! [`fs`](super).
//!
//! The target is written in place, as upstream's `O_TRUNC` write does, so everything but the
//! timing is as before: a symlink at the path is followed, the file keeps its inode (hard
//! links see the new content), mode and extended attributes, FIFOs and devices are written
//! to, and a watcher of the directory sees `CREATE` (for a new file), `CHMOD` (the `chown`)
//! and `WRITE` of the target, nothing else. (A staging file in the target's directory, named or not, shows
//! watchers events of its own: an unnamed one is reported as `#<inode>`.) The cost is writing
//! the content twice and holding it twice until the copy ends.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// Where uploads are staged: on disk (not the memory-backed `/tmp` of a sandbox), and a
/// directory nobody watches for their files.
pub const STAGING_DIR: &str = "/var/tmp";

/// The [`StagingError::step`] of [`StagedFile::check_room`] (also run at commit): its failure
/// means the content does not fit, and the target is unchanged.
pub const NO_ROOM_STEP: &str = "checking the free space for";

/// A failed step of a staged write, with the system call's error.
#[derive(Debug, thiserror::Error)]
#[error("error {step} {}: {source}", path.display())]
pub struct StagingError {
    /// What was being done, e.g. `"opening"`.
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

/// A write in progress. Dropping it before [`commit`](Self::commit) leaves the target as it
/// was (a file this write created is removed again).
#[derive(Debug)]
pub struct StagedFile {
    /// The path as requested.
    path: PathBuf,
    /// The target, opened for writing (not truncated) when the write started, so that a
    /// path that cannot be written fails before the body is read.
    target: File,
    /// Whether this write created the target.
    created: bool,
    /// The unnamed file the content goes to first.
    staging: File,
    /// Set once the content is in the target.
    committed: bool,
}

impl StagedFile {
    /// Starts writing `path` as `uid:gid`: opens it (creating it with mode `0666 & !umask`
    /// if missing, following symlinks), gives it to `uid:gid` as upstream does right after
    /// opening (watchers see that `CHMOD` before the content's `WRITE`), and creates the
    /// unnamed staging file.
    ///
    /// # Errors
    /// The failing step: opening the target (`ENAMETOOLONG`, `EISDIR`, `EACCES`, …), `chown`,
    /// or creating the staging file.
    pub fn create(path: &Path, uid: u32, gid: u32) -> Result<Self, StagingError> {
        // Unnamed (`O_TMPFILE`, or unlinked at once where unsupported), so nothing is ever
        // left behind; beside the path only where the staging directory is unusable.
        let dir = path.parent().unwrap_or(Path::new("/"));
        let staging = tempfile::tempfile_in(STAGING_DIR)
            .or_else(|_| tempfile::tempfile_in(dir))
            .map_err(failed("creating a staging file in", dir))?;
        let open = |create_new: bool| {
            OpenOptions::new()
                .write(true)
                .create_new(create_new)
                .mode(0o666)
                .open(path)
        };
        let (target, created) = match open(false) {
            Ok(f) => (f, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match open(true) {
                Ok(f) => (f, true),
                // A dangling symlink (O_EXCL does not follow it), or a racing creator: open
                // as upstream does, creating the symlink's target.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (
                    OpenOptions::new()
                        .write(true)
                        .create(true)
                        // The content is replaced at commit, once complete.
                        .truncate(false)
                        .mode(0o666)
                        .open(path)
                        .map_err(failed("opening", path))?,
                    false,
                ),
                Err(e) => return Err(failed("opening", path)(e)),
            },
            Err(e) => return Err(failed("opening", path)(e)),
        };
        // Built before the chown, so that a failure removes a file this write created.
        let staged = Self {
            path: path.to_owned(),
            target,
            created,
            staging,
            committed: false,
        };
        std::os::unix::fs::fchown(&staged.target, Some(uid), Some(gid))
            .map_err(failed("changing ownership of", path))?;
        Ok(staged)
    }

    /// A handle on the staging file, for the content.
    ///
    /// # Errors
    /// `dup` failing.
    pub fn writer(&self) -> Result<File, StagingError> {
        self.staging
            .try_clone()
            .map_err(failed("duplicating the staging file of", &self.path))
    }

    /// Checks that content of `len` bytes still fits in the target's filesystem (the space
    /// free there covers what `len` adds to the target's current size), so that an upload
    /// too large for the target fails while it is staged, not after all of it was.
    ///
    /// # Errors
    /// `ENOSPC` when it does not fit; `fstatvfs` or `fstat` failing.
    pub fn check_room(&self, len: u64) -> Result<(), StagingError> {
        let stats = nix::sys::statvfs::fstatvfs(&self.target)
            .map_err(|e| failed("getting the free space of", &self.path)(e.into()))?;
        let free = stats
            .blocks_available()
            .saturating_mul(stats.fragment_size());
        let current = self
            .target
            .metadata()
            .map_err(failed("getting file info for", &self.path))?
            .len();
        if len.saturating_sub(current) > free {
            return Err(failed(NO_ROOM_STEP, &self.path)(
                io::Error::from_raw_os_error(libc::ENOSPC),
            ));
        }
        Ok(())
    }

    /// Finishes the write: checks the content fits in the target's filesystem (so a full disk
    /// fails here, with the target unchanged), copies the content in, cuts off the old tail,
    /// then runs `set_metadata` on the written file (the symlink's target when the path
    /// is a symlink) and the path.
    ///
    /// # Errors
    /// The failing step; only after a failed copy (an I/O error, or another writer taking the
    /// space after the check) is the target left part-written.
    pub fn commit(
        mut self,
        set_metadata: impl FnOnce(&File, &Path) -> Result<(), StagingError>,
    ) -> Result<(), StagingError> {
        let path = self.path.clone();
        let len = self
            .staging
            .metadata()
            .map_err(failed("getting the size of the staging file of", &path))?
            .len();
        let old = self
            .target
            .metadata()
            .map_err(failed("getting file info for", &path))?;
        let regular = old.is_file();
        // Checked, not reserved: `fallocate` would show watchers a `WRITE` of its own.
        if regular {
            self.check_room(len)?;
        }
        self.staging
            .rewind()
            .map_err(failed("rewinding the staging file of", &path))?;
        io::copy(&mut self.staging, &mut self.target).map_err(failed("writing", &path))?;
        if regular && old.len() > len {
            self.target
                .set_len(len)
                .map_err(failed("truncating", &path))?;
        }
        self.committed = true;
        set_metadata(&self.target, &path)
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        // Remove the file this write created, unless the name now holds another file.
        if self.created
            && !self.committed
            && let (Ok(ours), Ok(named)) = (
                self.target.metadata(),
                std::fs::symlink_metadata(&self.path),
            )
            && (ours.dev(), ours.ino()) == (named.dev(), named.ino())
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (u32, u32) {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    }

    #[test]
    fn an_abandoned_write_leaves_the_old_file_and_removes_a_new_one() {
        let (uid, gid) = ids();
        let d = tempfile::tempdir().unwrap();
        let old = d.path().join("old");
        std::fs::write(&old, b"old").unwrap();
        let staged = StagedFile::create(&old, uid, gid).unwrap();
        std::io::Write::write_all(&mut staged.writer().unwrap(), b"partial").unwrap();
        drop(staged);
        assert_eq!(std::fs::read(&old).unwrap(), b"old");
        let new = d.path().join("new");
        let staged = StagedFile::create(&new, uid, gid).unwrap();
        std::io::Write::write_all(&mut staged.writer().unwrap(), b"partial").unwrap();
        drop(staged);
        assert!(!new.exists());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn content_larger_than_the_free_space_does_not_fit() {
        let (uid, gid) = ids();
        let d = tempfile::tempdir().unwrap();
        let staged = StagedFile::create(&d.path().join("f"), uid, gid).unwrap();
        staged.check_room(1).unwrap();
        let e = staged.check_room(u64::MAX / 2).unwrap_err();
        assert_eq!(
            (e.step, e.source.raw_os_error()),
            (NO_ROOM_STEP, Some(libc::ENOSPC))
        );
    }

    #[test]
    fn a_committed_write_replaces_the_content_and_cuts_the_old_tail() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"a much longer old content").unwrap();
        let (uid, gid) = ids();
        let staged = StagedFile::create(&f, uid, gid).unwrap();
        std::io::Write::write_all(&mut staged.writer().unwrap(), b"new").unwrap();
        staged.commit(|_, _| Ok(())).unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
    }
}
