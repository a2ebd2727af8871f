//! The files of one mounted volume, as the content API reads and writes them: every path is
//! resolved beneath the volume's root directory with `openat2(RESOLVE_BENEATH)`, so neither
//! `..` nor a symbolic link a sandbox left in the volume (`ln -s /etc x`, `ln -s ../.. x`)
//! reaches a file outside it; the kernel refuses such a walk (`EXDEV`) whatever changes
//! under it meanwhile. Only the final component of an operation is named relative to an
//! already-resolved parent directory, so no walk ever starts from the host's root.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Uid};
use rustix::io::Errno;

/// Mode of a directory made without one.
const DEFAULT_DIR_MODE: u32 = 0o755;
/// Mode of a file made without one.
const DEFAULT_FILE_MODE: u32 = 0o644;
/// Deepest listing (`depth`) answered: deeper trees are listed in several calls.
pub const MAX_LIST_DEPTH: u32 = 64;

/// Why an operation on a volume's files failed; each names the path as the client gave it.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// Nothing at the path (or at one of its parents).
    #[error("path '{0}' does not exist in the volume")]
    NotFound(String),
    /// The path is not usable: empty component rules, `..`, a NUL byte, the root where an
    /// entry is needed, a mode that is not one.
    #[error("invalid path '{0}': {1}")]
    Invalid(String, &'static str),
    /// Resolving it would leave the volume (a symbolic link pointing out of it).
    #[error("path '{0}' leads out of the volume (through a symbolic link)")]
    Escapes(String),
    /// A directory was needed.
    #[error("path '{0}' is not a directory")]
    NotADirectory(String),
    /// A regular file was needed.
    #[error("path '{0}' is not a regular file")]
    NotAFile(String),
    /// Something is already there.
    #[error("path '{0}' already exists")]
    Exists(String),
    /// The volume is full (its size is fixed when it is created).
    #[error("not enough space in the volume to write '{0}'")]
    NoSpace(String),
    /// A bad parameter other than the path.
    #[error("{0}")]
    BadParameter(String),
    /// Any other failure of the host's filesystem.
    #[error("'{0}': {1}")]
    Io(String, #[source] std::io::Error),
}

/// Kind of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A FIFO, socket or device node.
    Other,
}

/// One entry of a volume, as `stat` describes it (links are not followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Last component of `path` (empty for the root).
    pub name: String,
    /// From the volume's root, starting with `/`.
    pub path: String,
    /// Its kind.
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last access.
    pub atime: DateTime<Utc>,
    /// Last modification.
    pub mtime: DateTime<Utc>,
    /// Last status change.
    pub ctime: DateTime<Utc>,
    /// A symbolic link's target, as stored.
    pub target: Option<String>,
}

/// Owner, group and mode asked for an entry (`None`: the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attrs {
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Permission bits (at most `0o7777`).
    pub mode: Option<u32>,
}

/// A path inside a volume, checked: its components, none of them empty, `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePath {
    given: String,
    parts: Vec<String>,
}

impl VolumePath {
    /// Parses `given`: `/` is the volume's root and a relative path starts there too; `.`
    /// and empty components are dropped, `..` is refused (a path never climbs).
    ///
    /// # Errors
    ///
    /// [`FsError::Invalid`].
    pub fn parse(given: &str) -> Result<Self, FsError> {
        if given.contains('\0') {
            return Err(FsError::Invalid(given.to_owned(), "it contains a NUL byte"));
        }
        let mut parts = Vec::new();
        for part in given.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    return Err(FsError::Invalid(
                        given.to_owned(),
                        "'..' is not allowed in a volume path",
                    ));
                }
                p => parts.push(p.to_owned()),
            }
        }
        Ok(VolumePath {
            given: given.to_owned(),
            parts,
        })
    }

    /// The path as the client gave it.
    pub fn given(&self) -> &str {
        &self.given
    }

    /// `/a/b` from the volume's root.
    fn display(&self) -> String {
        format!("/{}", self.parts.join("/"))
    }

    /// The parent's components and the last one (`None` for the root).
    fn split_last(&self) -> Option<(&[String], &str)> {
        let (last, parent) = self.parts.split_last()?;
        Some((parent, last.as_str()))
    }

    fn child(&self, name: &str) -> VolumePath {
        let mut parts = self.parts.clone();
        parts.push(name.to_owned());
        VolumePath {
            given: format!("{}/{name}", self.given.trim_end_matches('/')),
            parts,
        }
    }
}

/// Flags of every walk: stay beneath the directory the walk starts from (`..` and absolute
/// or escaping symbolic links fail with `EXDEV`), and never through `/proc` magic links.
fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
}

/// The error of a failed walk or operation on `path`.
fn fail(path: &VolumePath, e: Errno) -> FsError {
    let p = path.given.clone();
    match e {
        Errno::NOENT => FsError::NotFound(p),
        Errno::XDEV | Errno::LOOP => FsError::Escapes(p),
        Errno::NOTDIR => FsError::NotADirectory(p),
        Errno::EXIST | Errno::NOTEMPTY => FsError::Exists(p),
        Errno::NOSPC | Errno::DQUOT => FsError::NoSpace(p),
        // Client input the filesystem refuses, not a server failure.
        Errno::NAMETOOLONG => FsError::Invalid(p, "a name is longer than 255 bytes"),
        Errno::ISDIR => FsError::NotAFile(p),
        Errno::INVAL => FsError::Invalid(p, "the filesystem refuses it"),
        e => FsError::Io(p, e.into()),
    }
}

/// A stat time, to the microsecond: JSON readers (Python's `isoparse`, JavaScript's `Date`)
/// take at most six fractional digits reliably.
fn time(secs: i64, nanos: i64) -> DateTime<Utc> {
    let micros = u32::try_from(nanos / 1000 * 1000).unwrap_or(0);
    DateTime::from_timestamp(secs, micros).unwrap_or_default()
}

/// Checks the parameters of a change: a mode of permission bits only, ids other than
/// `u32::MAX` (chown's "leave unchanged").
fn check_attrs(attrs: Attrs) -> Result<(), FsError> {
    if let Some(m) = attrs.mode.filter(|m| *m > 0o7777) {
        return Err(FsError::BadParameter(format!(
            "mode {m} is not a permission mode (at most 0o7777 = 4095)"
        )));
    }
    for (what, id) in [("uid", attrs.uid), ("gid", attrs.gid)] {
        if id == Some(u32::MAX) {
            return Err(FsError::BadParameter(format!(
                "{what} {} is not a valid id",
                u32::MAX
            )));
        }
    }
    Ok(())
}

/// The files of one volume, through a descriptor of its root directory.
#[derive(Debug)]
pub struct VolumeFiles {
    root: OwnedFd,
}

impl VolumeFiles {
    /// The volume mounted on `mount_point`.
    ///
    /// # Errors
    ///
    /// Opening the directory failed.
    pub fn open(mount_point: &Path) -> std::io::Result<Self> {
        let root = rustix::fs::open(
            mount_point,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
        )?;
        Ok(VolumeFiles { root })
    }

    /// Opens the directory made of `parts` beneath the root, with `flags`.
    fn open_dir(
        &self,
        path: &VolumePath,
        parts: &[String],
        flags: OFlags,
    ) -> Result<OwnedFd, FsError> {
        let rel = if parts.is_empty() {
            ".".to_owned()
        } else {
            parts.join("/")
        };
        rustix::fs::openat2(
            &self.root,
            rel.as_str(),
            flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            beneath(),
        )
        .map_err(|e| fail(path, e))
    }

    /// The entry at `path`, a symbolic link described, not followed.
    ///
    /// # Errors
    ///
    /// [`FsError`] naming the path.
    pub fn stat(&self, path: &VolumePath) -> Result<Entry, FsError> {
        match path.split_last() {
            None => self.describe(&self.root, ".", path),
            Some((parent, name)) => {
                let dir = self.open_dir(path, parent, OFlags::PATH)?;
                self.describe(&dir, name, path)
            }
        }
    }

    /// `stat` of `name` in `dir`, reported as `path`.
    fn describe(&self, dir: &OwnedFd, name: &str, path: &VolumePath) -> Result<Entry, FsError> {
        let flags = AtFlags::SYMLINK_NOFOLLOW
            | if name == "." {
                AtFlags::EMPTY_PATH
            } else {
                AtFlags::empty()
            };
        let st = rustix::fs::statat(dir, name, flags).map_err(|e| fail(path, e))?;
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => EntryKind::File,
            FileType::Directory => EntryKind::Directory,
            FileType::Symlink => EntryKind::Symlink,
            _ => EntryKind::Other,
        };
        let target = if kind == EntryKind::Symlink {
            let t = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(|e| fail(path, e))?;
            Some(
                OsStr::from_bytes(t.as_bytes())
                    .to_string_lossy()
                    .into_owned(),
            )
        } else {
            None
        };
        Ok(Entry {
            name: path.parts.last().cloned().unwrap_or_default(),
            path: path.display(),
            kind,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            atime: time(st.st_atime, st.st_atime_nsec as i64),
            mtime: time(st.st_mtime, st.st_mtime_nsec as i64),
            ctime: time(st.st_ctime, st.st_ctime_nsec as i64),
            target,
        })
    }

    /// The entries under the directory `path`, down to `depth` levels (1: its own), sorted
    /// by path; symbolic links to directories are listed, not entered.
    ///
    /// # Errors
    ///
    /// [`FsError`] naming the path; [`FsError::BadParameter`] for a depth of 0 or past
    /// [`MAX_LIST_DEPTH`].
    pub fn list(&self, path: &VolumePath, depth: u32) -> Result<Vec<Entry>, FsError> {
        if !(1..=MAX_LIST_DEPTH).contains(&depth) {
            return Err(FsError::BadParameter(format!(
                "depth {depth} is out of range: give 1 to {MAX_LIST_DEPTH}"
            )));
        }
        let dir = self.open_dir(path, &path.parts, OFlags::RDONLY)?;
        let mut out = Vec::new();
        self.list_into(dir, path, depth, &mut out)?;
        Ok(out)
    }

    fn list_into(
        &self,
        dir: OwnedFd,
        path: &VolumePath,
        depth: u32,
        out: &mut Vec<Entry>,
    ) -> Result<(), FsError> {
        let mut names = Vec::new();
        let reader = rustix::fs::Dir::read_from(&dir).map_err(|e| fail(path, e))?;
        for entry in reader {
            let entry = entry.map_err(|e| fail(path, e))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            names.push(OsStr::from_bytes(name).to_string_lossy().into_owned());
        }
        names.sort();
        for name in names {
            let child = path.child(&name);
            let entry = match self.describe(&dir, &name, &child) {
                // Removed while listing.
                Err(FsError::NotFound(_)) => continue,
                other => other?,
            };
            let is_dir = entry.kind == EntryKind::Directory;
            out.push(entry);
            if is_dir && depth > 1 {
                let sub = rustix::fs::openat2(
                    &dir,
                    name.as_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                    Mode::empty(),
                    beneath(),
                );
                match sub {
                    Ok(sub) => self.list_into(sub, &child, depth - 1, out)?,
                    Err(Errno::NOENT) => {}
                    Err(e) => return Err(fail(&child, e)),
                }
            }
        }
        Ok(())
    }

    /// The owner and group of the volume's root: what new entries get unless asked otherwise
    /// (so the sandboxes' `user` owns what the API writes).
    fn default_owner(&self) -> Result<(u32, u32), FsError> {
        let st = rustix::fs::fstat(&self.root).map_err(|e| FsError::Io("/".into(), e.into()))?;
        Ok((st.st_uid, st.st_gid))
    }

    /// Sets owner, group and mode on `fd` (a new entry: defaults fill what `attrs` leaves).
    fn apply(
        &self,
        fd: &OwnedFd,
        path: &VolumePath,
        attrs: Attrs,
        default_mode: u32,
    ) -> Result<(), FsError> {
        let (uid, gid) = self.default_owner()?;
        let uid = attrs.uid.unwrap_or(uid);
        let gid = attrs.gid.unwrap_or(gid);
        rustix::fs::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .map_err(|e| fail(path, e))?;
        // After chown, which clears the set-id bits.
        rustix::fs::fchmod(fd, Mode::from_raw_mode(attrs.mode.unwrap_or(default_mode)))
            .map_err(|e| fail(path, e))
    }

    /// Opens (making it with `force`) the parent directory of `path` for changes.
    fn parent_for_change(
        &self,
        path: &VolumePath,
        parent: &[String],
        force: bool,
        attrs: Attrs,
    ) -> Result<OwnedFd, FsError> {
        if !force {
            return self.open_dir(path, parent, OFlags::PATH);
        }
        let mut dir = self.open_dir(path, &[], OFlags::PATH)?;
        for part in parent {
            match rustix::fs::mkdirat(&dir, part.as_str(), Mode::from_raw_mode(0o700)) {
                Ok(()) => {
                    let made = self.open_component(&dir, part, path)?;
                    self.apply(
                        &made,
                        path,
                        Attrs {
                            mode: None,
                            ..attrs
                        },
                        DEFAULT_DIR_MODE,
                    )?;
                    dir = made;
                }
                Err(Errno::EXIST) => dir = self.open_component(&dir, part, path)?,
                Err(e) => return Err(fail(path, e)),
            }
        }
        Ok(dir)
    }

    /// One existing directory `name` in `dir`, no symbolic link followed; readable, so
    /// its owner and mode can be set through it.
    fn open_component(
        &self,
        dir: &OwnedFd,
        name: &str,
        path: &VolumePath,
    ) -> Result<OwnedFd, FsError> {
        rustix::fs::openat2(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            beneath() | ResolveFlags::NO_SYMLINKS,
        )
        .map_err(|e| fail(path, e))
    }

    /// Makes the directory `path` (with `force`, its parents too, and an existing directory
    /// is no error).
    ///
    /// # Errors
    ///
    /// [`FsError`] naming the path: `Exists` without `force`, `NotFound` for a missing parent
    /// without `force`.
    pub fn make_dir(&self, path: &VolumePath, attrs: Attrs, force: bool) -> Result<Entry, FsError> {
        check_attrs(attrs)?;
        let Some((parent, name)) = path.split_last() else {
            return if force {
                self.stat(path)
            } else {
                Err(FsError::Exists(path.given.clone()))
            };
        };
        let dir = self.parent_for_change(path, parent, force, attrs)?;
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {
                let made = self.open_component(&dir, name, path)?;
                self.apply(&made, path, attrs, DEFAULT_DIR_MODE)?;
            }
            Err(Errno::EXIST) if force => {
                let existing = self.describe(&dir, name, path)?;
                if existing.kind != EntryKind::Directory {
                    return Err(FsError::Exists(path.given.clone()));
                }
            }
            Err(e) => return Err(fail(path, e)),
        }
        self.describe(&dir, name, path)
    }

    /// Sets what `attrs` names on the entry at `path` (a link itself is not changed: its
    /// target is).
    ///
    /// # Errors
    ///
    /// [`FsError`] naming the path.
    pub fn update(&self, path: &VolumePath, attrs: Attrs) -> Result<Entry, FsError> {
        check_attrs(attrs)?;
        let fd = rustix::fs::openat2(
            &self.root,
            if path.parts.is_empty() {
                ".".to_owned()
            } else {
                path.parts.join("/")
            }
            .as_str(),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            beneath(),
        )
        .map_err(|e| fail(path, e))?;
        // O_PATH descriptors take fchownat/fchmodat with AT_EMPTY_PATH only through /proc;
        // the *at calls on "" with AT_EMPTY_PATH work directly for chown.
        if attrs.uid.is_some() || attrs.gid.is_some() {
            let (u, g) = (attrs.uid.map(Uid::from_raw), attrs.gid.map(Gid::from_raw));
            rustix::fs::chownat(&fd, "", u, g, AtFlags::EMPTY_PATH).map_err(|e| fail(path, e))?;
        }
        if let Some(mode) = attrs.mode {
            // fchmod does not take O_PATH descriptors; its magic link does (resolved by the
            // kernel to this very inode, never by path).
            let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
            rustix::fs::chmod(proc_path.as_str(), Mode::from_raw_mode(mode))
                .map_err(|e| fail(path, e))?;
        }
        self.stat(path)
    }

    /// Removes the entry at `path`; a directory with everything in it.
    ///
    /// # Errors
    ///
    /// [`FsError`] naming the path; `Invalid` for the root.
    pub fn remove(&self, path: &VolumePath) -> Result<(), FsError> {
        let Some((parent, name)) = path.split_last() else {
            return Err(FsError::Invalid(
                path.given.clone(),
                "the volume's root cannot be removed",
            ));
        };
        let dir = self.open_dir(path, parent, OFlags::RDONLY)?;
        remove_at(&dir, name).map_err(|e| fail(path, e))
    }

    /// Opens the regular file at `path` for reading (a link to one inside the volume is
    /// followed).
    ///
    /// # Errors
    ///
    /// [`FsError`] naming the path; `NotAFile` for anything but a regular file (a FIFO
    /// would block the reader).
    pub fn open_read(&self, path: &VolumePath) -> Result<File, FsError> {
        if path.parts.is_empty() {
            return Err(FsError::NotAFile(path.given.clone()));
        }
        let fd = rustix::fs::openat2(
            &self.root,
            path.parts.join("/").as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
            beneath(),
        )
        .map_err(|e| match e {
            Errno::ISDIR => FsError::NotAFile(path.given.clone()),
            e => fail(path, e),
        })?;
        regular(fd, path)
    }

    /// Starts writing the whole file at `path`: the content goes to a new unnamed file in
    /// the same directory (`O_TMPFILE`), which replaces the file only at
    /// [`PendingWrite::commit`]. A write that fails or is cut off leaves the old file as it
    /// was and nothing new. The new file gets `attrs`, else the old file's owner and mode,
    /// else the defaults. Missing parent directories are made with `force`. Over a link
    /// (to a file inside the volume) the linked file is rewritten in place, as before.
    ///
    /// # Errors
    ///
    /// [`FsError`] naming the path: `NotAFile` when a directory or anything but a regular
    /// file or a link is there.
    pub fn open_write(
        &self,
        path: &VolumePath,
        attrs: Attrs,
        force: bool,
    ) -> Result<PendingWrite, FsError> {
        check_attrs(attrs)?;
        let Some((parent, name)) = path.split_last() else {
            return Err(FsError::NotAFile(path.given.clone()));
        };
        let dir = self.parent_for_change(path, parent, force, attrs)?;
        let old = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(fail(path, e)),
        };
        let kind = old.as_ref().map(|st| FileType::from_raw_mode(st.st_mode));
        if kind == Some(FileType::Symlink) {
            return self.open_in_place(path, &dir, name, attrs);
        }
        if kind.is_some() && kind != Some(FileType::RegularFile) {
            return Err(FsError::NotAFile(path.given.clone()));
        }
        // A descriptor that can write to the directory (`dir` may be `O_PATH`).
        let dir = rustix::fs::openat2(
            &dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            beneath(),
        )
        .map_err(|e| fail(path, e))?;
        let fd = rustix::fs::openat2(
            &dir,
            ".",
            OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
            beneath(),
        )
        .map_err(|e| fail(path, e))?;
        match &old {
            None => self.apply(&fd, path, attrs, DEFAULT_FILE_MODE)?,
            Some(st) => {
                let u = Uid::from_raw(attrs.uid.unwrap_or(st.st_uid));
                let g = Gid::from_raw(attrs.gid.unwrap_or(st.st_gid));
                rustix::fs::fchown(&fd, Some(u), Some(g)).map_err(|e| fail(path, e))?;
                let mode = attrs.mode.unwrap_or(st.st_mode & 0o7777);
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| fail(path, e))?;
            }
        }
        Ok(PendingWrite {
            file: File::from(fd),
            dir: Some(dir),
            name: name.to_owned(),
            given: path.given.clone(),
        })
    }

    /// The file a link at `name` in `dir` leads to (inside the volume), opened for writing
    /// and truncated: what [`open_write`](Self::open_write) does over a link.
    fn open_in_place(
        &self,
        path: &VolumePath,
        dir: &OwnedFd,
        name: &str,
        attrs: Attrs,
    ) -> Result<PendingWrite, FsError> {
        let fd = rustix::fs::openat2(
            dir,
            name,
            OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
            beneath(),
        )
        .map_err(|e| wrong_kind(path, e))?;
        let file = regular(fd, path)?;
        if attrs != Attrs::default() {
            let existing = self.stat(path)?;
            let fd = file.as_fd();
            if attrs.uid.is_some() || attrs.gid.is_some() {
                let u = Uid::from_raw(attrs.uid.unwrap_or(existing.uid));
                let g = Gid::from_raw(attrs.gid.unwrap_or(existing.gid));
                rustix::fs::fchown(fd, Some(u), Some(g)).map_err(|e| fail(path, e))?;
            }
            rustix::fs::fchmod(fd, Mode::from_raw_mode(attrs.mode.unwrap_or(existing.mode)))
                .map_err(|e| fail(path, e))?;
        }
        file.set_len(0)
            .map_err(|e| FsError::Io(path.given.clone(), e))?;
        Ok(PendingWrite {
            file,
            dir: None,
            name: name.to_owned(),
            given: path.given.clone(),
        })
    }
}

/// A file being written by [`VolumeFiles::open_write`]: write [`file`](Self::file), sync it,
/// then [`commit`](Self::commit). Dropped uncommitted, it leaves nothing (the unnamed file
/// goes with its descriptor).
#[derive(Debug)]
pub struct PendingWrite {
    /// Where the content goes.
    pub file: File,
    /// The directory to link the new file into (`None`: written in place, over a link).
    dir: Option<OwnedFd>,
    /// Its name there.
    name: String,
    /// The path as the client gave it, for errors.
    given: String,
}

impl PendingWrite {
    /// Puts the written file in place: links the unnamed file under a temporary name, then
    /// renames it over the old one (one `rename`, so a reader sees the old file or the new,
    /// never a part). A crash between the two leaves a `.e2b-write-*` file next to it.
    ///
    /// # Errors
    ///
    /// [`FsError::NoSpace`] or [`FsError::Io`] naming the path; the old file is unchanged.
    pub fn commit(self) -> Result<(), FsError> {
        let Some(dir) = self.dir else {
            return Ok(());
        };
        let io = |e: Errno| match e {
            Errno::NOSPC | Errno::DQUOT => FsError::NoSpace(self.given.clone()),
            e => FsError::Io(self.given.clone(), e.into()),
        };
        let temp = format!(".e2b-write-{:016x}", rand::random::<u64>());
        // Through /proc: `AT_EMPTY_PATH` would need CAP_DAC_READ_SEARCH.
        let proc_path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        rustix::fs::linkat(
            rustix::fs::CWD,
            proc_path.as_str(),
            &dir,
            temp.as_str(),
            AtFlags::SYMLINK_FOLLOW,
        )
        .map_err(io)?;
        rustix::fs::renameat(&dir, temp.as_str(), &dir, self.name.as_str()).map_err(|e| {
            let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
            io(e)
        })
    }
}

/// `fd` as a file when it is a regular file.
fn regular(fd: OwnedFd, path: &VolumePath) -> Result<File, FsError> {
    let st = rustix::fs::fstat(&fd).map_err(|e| fail(path, e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(FsError::NotAFile(path.given.clone()));
    }
    // Back to blocking I/O (the flag only kept a FIFO from blocking the open).
    rustix::fs::fcntl_setfl(&fd, OFlags::empty()).map_err(|e| fail(path, e))?;
    Ok(File::from(fd))
}

/// The error of opening a non-file for writing.
fn wrong_kind(path: &VolumePath, e: Errno) -> FsError {
    match e {
        Errno::ISDIR | Errno::NXIO => FsError::NotAFile(path.given.clone()),
        e => fail(path, e),
    }
}

/// Removes `name` in `dir`: a file or link at once, a directory after its contents.
fn remove_at(dir: &OwnedFd, name: &str) -> Result<(), Errno> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e),
    }
    let sub = rustix::fs::openat2(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        beneath() | ResolveFlags::NO_SYMLINKS,
    )?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&sub)? {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    for n in names {
        match remove_at(&sub, &n.to_string_lossy()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn p(s: &str) -> VolumePath {
        VolumePath::parse(s).unwrap()
    }

    #[test]
    fn paths_start_at_the_volume_root_and_never_climb() {
        assert_eq!(p("/a//b/./c/").parts, ["a", "b", "c"]);
        assert_eq!(p("a/b").display(), "/a/b");
        assert_eq!(p("/").display(), "/");
        assert!(p("").parts.is_empty());
        for bad in ["..", "/a/../b", "a/..", "x\0y"] {
            assert!(
                matches!(VolumePath::parse(bad), Err(FsError::Invalid(..))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn operations_stay_beneath_the_root() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("vol");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(outer.path().join("secret"), "host data").unwrap();
        std::os::unix::fs::symlink("../secret", root.join("up")).unwrap();
        std::os::unix::fs::symlink(outer.path().join("secret"), root.join("abs")).unwrap();
        std::os::unix::fs::symlink("..", root.join("parent")).unwrap();
        std::fs::write(root.join("inside"), "volume data").unwrap();
        std::os::unix::fs::symlink("inside", root.join("ok")).unwrap();
        let v = VolumeFiles::open(&root).unwrap();
        for escaping in ["/up", "/abs", "/parent/secret"] {
            assert!(
                matches!(v.open_read(&p(escaping)), Err(FsError::Escapes(_))),
                "{escaping}"
            );
        }
        assert!(matches!(
            v.open_write(&p("/parent/secret"), Attrs::default(), false),
            Err(FsError::Escapes(_))
        ));
        assert!(matches!(
            v.open_write(&p("/parent/new/x"), Attrs::default(), true),
            Err(FsError::Escapes(_))
        ));
        assert!(matches!(
            v.remove(&p("/parent/secret")),
            Err(FsError::Escapes(_))
        ));
        assert_eq!(
            std::fs::read_to_string(outer.path().join("secret")).unwrap(),
            "host data"
        );
        // A link that stays inside is followed by reads and described by stat.
        let mut text = String::new();
        std::io::Read::read_to_string(&mut v.open_read(&p("ok")).unwrap(), &mut text).unwrap();
        assert_eq!(text, "volume data");
        let st = v.stat(&p("/abs")).unwrap();
        assert_eq!(st.kind, EntryKind::Symlink);
        assert_eq!(
            st.target.as_deref(),
            Some(outer.path().join("secret").to_str().unwrap())
        );
    }

    #[test]
    fn an_overwrite_replaces_the_file_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("f"), "old content").unwrap();
        std::fs::set_permissions(root.join("f"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("f", root.join("link")).unwrap();
        let v = VolumeFiles::open(root).unwrap();
        let names = || {
            let mut n: Vec<String> = std::fs::read_dir(root)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        // Cut off part-way (dropped uncommitted): the old file as it was, nothing new.
        let mut w = v.open_write(&p("/f"), Attrs::default(), false).unwrap();
        std::io::Write::write_all(&mut w.file, b"partial").unwrap();
        drop(w);
        assert_eq!(
            std::fs::read_to_string(root.join("f")).unwrap(),
            "old content"
        );
        assert_eq!(names(), ["f", "link"]);
        // Committed: the new content, the old file's mode, no temporary file left.
        let mut w = v.open_write(&p("/f"), Attrs::default(), false).unwrap();
        std::io::Write::write_all(&mut w.file, b"new").unwrap();
        w.commit().unwrap();
        assert_eq!(std::fs::read_to_string(root.join("f")).unwrap(), "new");
        assert_eq!(v.stat(&p("/f")).unwrap().mode, 0o640);
        assert_eq!(names(), ["f", "link"]);
        // Over a link, the linked file is rewritten and the link stays a link.
        let mut w = v.open_write(&p("/link"), Attrs::default(), false).unwrap();
        std::io::Write::write_all(&mut w.file, b"through the link").unwrap();
        w.commit().unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("f")).unwrap(),
            "through the link"
        );
        assert_eq!(v.stat(&p("/link")).unwrap().kind, EntryKind::Symlink);
    }

    #[test]
    fn write_list_make_dir_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let v = VolumeFiles::open(dir.path()).unwrap();
        assert!(matches!(
            v.open_write(&p("/a/b/f"), Attrs::default(), false),
            Err(FsError::NotFound(_))
        ));
        let mut w = v
            .open_write(
                &p("/a/b/f"),
                Attrs {
                    mode: Some(0o600),
                    ..Attrs::default()
                },
                true,
            )
            .unwrap();
        std::io::Write::write_all(&mut w.file, b"hello").unwrap();
        w.commit().unwrap();
        let st = v.stat(&p("a/b/f")).unwrap();
        assert_eq!(
            (
                st.kind,
                st.size,
                st.mode,
                st.name.as_str(),
                st.path.as_str()
            ),
            (EntryKind::File, 5, 0o600, "f", "/a/b/f")
        );
        assert_eq!(v.stat(&p("/a")).unwrap().mode, 0o755);
        let listed: Vec<String> = v
            .list(&p("/"), 3)
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(listed, ["/a", "/a/b", "/a/b/f"]);
        let listed: Vec<String> = v
            .list(&p("/"), 1)
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(listed, ["/a"]);
        assert!(matches!(
            v.list(&p("/a/b/f"), 1),
            Err(FsError::NotADirectory(_))
        ));
        assert!(matches!(
            v.make_dir(&p("/a"), Attrs::default(), false),
            Err(FsError::Exists(_))
        ));
        assert_eq!(
            v.make_dir(&p("/a"), Attrs::default(), true).unwrap().kind,
            EntryKind::Directory
        );
        assert!(matches!(
            v.make_dir(&p("/a/b/f"), Attrs::default(), true),
            Err(FsError::Exists(_))
        ));
        assert!(matches!(v.open_read(&p("/a")), Err(FsError::NotAFile(_))));
        let r = v.open_write(&p("/a"), Attrs::default(), false);
        assert!(matches!(r, Err(FsError::NotAFile(_))), "{r:?}");
        let st = v
            .update(
                &p("/a/b/f"),
                Attrs {
                    mode: Some(0o640),
                    ..Attrs::default()
                },
            )
            .unwrap();
        assert_eq!(st.mode, 0o640);
        assert!(matches!(
            v.update(
                &p("/a/b/f"),
                Attrs {
                    mode: Some(0o10000),
                    ..Attrs::default()
                }
            ),
            Err(FsError::BadParameter(_))
        ));
        assert!(matches!(v.remove(&p("/")), Err(FsError::Invalid(..))));
        v.remove(&p("/a")).unwrap();
        assert!(matches!(v.stat(&p("/a")), Err(FsError::NotFound(_))));
        assert!(matches!(v.remove(&p("/a")), Err(FsError::NotFound(_))));
    }
}
