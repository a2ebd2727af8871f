//! Copying an overlay upper directory into a layer for a fork or snapshot. Unlike a build
//! step's upper, which is renamed into place once its sandbox is gone, a captured sandbox
//! lives on, so its upper is copied: every entry with its owner, mode, extended attributes
//! (overlay's opaque and redirect markers included) and times; whiteouts (character devices
//! 0:0) and other special files as nodes; hard links as links. File data goes through
//! `copy_file_range`, which shares blocks where the host filesystem can (btrfs, xfs) and
//! copies in the kernel elsewhere.
//!
//! The copy is made in two passes so the sandbox is frozen only briefly: [`copy_upper`]
//! copies everything while the sandbox runs and stamps each entry (inode and change time,
//! read before its data), then [`sync_upper`], with the sandbox frozen, walks the upper
//! again and copies only what changed since (a new change time, another inode, or a
//! change time too close to the first pass to be told apart from a later write), and
//! removes what is gone.
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};

/// What a capture copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Entries made (directories, files, links, nodes).
    pub entries: u64,
    /// Bytes of file data copied.
    pub bytes: u64,
}

impl CopyStats {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: CopyStats) {
        self.entries += other.entries;
        self.bytes += other.bytes;
    }
}

/// How close to the first pass a change time must be to count as changed in the second:
/// a write right after the first pass read an entry's stamp could keep the same change
/// time on a filesystem with coarse timestamps (a timer tick, 1 to 10 ms).
const COARSE_TIME: Duration = Duration::from_millis(20);

/// What the first pass saw of each entry it copied, by destination path.
#[derive(Debug, Default)]
pub struct Stamps {
    by_path: HashMap<PathBuf, Stamp>,
    /// When the first pass started.
    started: Option<SystemTime>,
}

/// An entry's identity and last change, as the first pass read it before copying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    ctime: (i64, i64),
    dir: bool,
}

impl Stamp {
    fn of(md: &std::fs::Metadata) -> Self {
        Stamp {
            dev: md.dev(),
            ino: md.ino(),
            ctime: (md.ctime(), md.ctime_nsec()),
            dir: md.is_dir(),
        }
    }
}

/// Copies the tree `from` into the directory `to`, which must not exist (it is made with
/// `from`'s owner, mode, attributes and times), and stamps what it copied for
/// [`sync_upper`]. On failure what was made stays: the caller copies into a partial layer
/// it removes.
///
/// # Errors
///
/// The first failing step, its error naming the path.
pub fn copy_upper(from: &Path, to: &Path, stamps: &mut Stamps) -> io::Result<CopyStats> {
    stamps.started.get_or_insert_with(SystemTime::now);
    let mut c = Copier {
        stamps: Some(stamps),
        ..Copier::default()
    };
    let md = std::fs::symlink_metadata(from).map_err(|e| at(from, e))?;
    c.entry(from, to, &md)?;
    Ok(c.stats)
}

/// Brings `to`, a [`copy_upper`] of `from`, up to date with `from` (which must not change
/// meanwhile: its sandbox is frozen): copies the entries that changed or appeared since
/// their stamp and removes those that are gone.
///
/// # Errors
///
/// The first failing step, its error naming the path.
pub fn sync_upper(from: &Path, to: &Path, stamps: &Stamps) -> io::Result<CopyStats> {
    let recent = stamps.started.map(|t| t - COARSE_TIME);
    let mut c = Copier::default();
    c.sync_dir(from, to, stamps, recent)?;
    let md = std::fs::symlink_metadata(from).map_err(|e| at(from, e))?;
    keep_metadata(from, to, &md)?;
    Ok(c.stats)
}

/// Removes `path`, a directory with its contents or anything else.
fn remove_any(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
    .map_err(|e| at(path, e))
}

#[derive(Default)]
struct Copier<'a> {
    /// First copy of each multiply-linked inode, by `(dev, ino)` of the source.
    links: HashMap<(u64, u64), PathBuf>,
    /// Where the first pass records what it copied.
    stamps: Option<&'a mut Stamps>,
    stats: CopyStats,
}

/// `e` with `path` in its message.
fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl Copier<'_> {
    fn entry(&mut self, src: &Path, dst: &Path, md: &std::fs::Metadata) -> io::Result<()> {
        let ft = md.file_type();
        if let Some(stamps) = self.stamps.as_deref_mut() {
            stamps.by_path.insert(dst.to_owned(), Stamp::of(md));
        }
        if !ft.is_dir() && md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key) {
                std::fs::hard_link(first, dst).map_err(|e| at(dst, e))?;
                self.stats.entries += 1;
                return Ok(());
            }
            self.links.insert(key, dst.to_owned());
        }
        if ft.is_dir() {
            std::fs::create_dir(dst).map_err(|e| at(dst, e))?;
            for e in std::fs::read_dir(src).map_err(|e| at(src, e))? {
                let e = e.map_err(|e| at(src, e))?;
                let (child, to) = (e.path(), dst.join(e.file_name()));
                // The first pass copies a running sandbox's files: one it removes meanwhile
                // is left out, and the second pass copies what is there then.
                let first_pass = self.stamps.is_some();
                let copied = std::fs::symlink_metadata(&child)
                    .map_err(|e| at(&child, e))
                    .and_then(|cmd| self.entry(&child, &to, &cmd));
                match copied {
                    Err(e) if first_pass && e.kind() == io::ErrorKind::NotFound => {
                        remove_any(&to)?;
                        if let Some(stamps) = self.stamps.as_deref_mut() {
                            stamps.by_path.remove(&to);
                        }
                    }
                    other => other?,
                }
            }
        } else if ft.is_file() {
            self.stats.bytes += copy_data(src, dst, md.len()).map_err(|e| at(dst, e))?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(src).map_err(|e| at(src, e))?;
            std::os::unix::fs::symlink(target, dst).map_err(|e| at(dst, e))?;
        } else {
            let kind = if ft.is_char_device() {
                FileType::CharacterDevice
            } else if ft.is_block_device() {
                FileType::BlockDevice
            } else if ft.is_fifo() {
                FileType::Fifo
            } else {
                FileType::Socket
            };
            rustix::fs::mknodat(
                CWD,
                dst,
                kind,
                Mode::from_raw_mode(md.mode() & 0o7777),
                md.rdev(),
            )
            .map_err(|e| at(dst, e.into()))?;
        }
        self.stats.entries += 1;
        keep_metadata(src, dst, md)
    }

    /// The second pass over directory `src` and its copy `dst` (see [`sync_upper`]).
    fn sync_dir(
        &mut self,
        src: &Path,
        dst: &Path,
        stamps: &Stamps,
        recent: Option<SystemTime>,
    ) -> io::Result<()> {
        let mut names = HashSet::new();
        for e in std::fs::read_dir(src).map_err(|e| at(src, e))? {
            let e = e.map_err(|e| at(src, e))?;
            let name = e.file_name();
            let (child, to) = (e.path(), dst.join(&name));
            names.insert(name);
            let md = std::fs::symlink_metadata(&child).map_err(|e| at(&child, e))?;
            let now = Stamp::of(&md);
            match stamps.by_path.get(&to) {
                // The same directory: its entries are checked one by one; its own
                // attributes are set again when it changed.
                Some(was) if was.dir && now.dir && (was.dev, was.ino) == (now.dev, now.ino) => {
                    self.sync_dir(&child, &to, stamps, recent)?;
                    if *was != now {
                        keep_metadata(&child, &to, &md)?;
                    }
                }
                Some(was) if *was == now && !changed_lately(&md, recent) => {}
                _ => {
                    remove_any(&to)?;
                    self.entry(&child, &to, &md)?;
                }
            }
        }
        for e in std::fs::read_dir(dst).map_err(|e| at(dst, e))? {
            let e = e.map_err(|e| at(dst, e))?;
            if !names.contains(&e.file_name()) {
                remove_any(&e.path())?;
            }
        }
        Ok(())
    }
}

/// Whether `md`'s change time is too close to the first pass's start to trust its stamp.
fn changed_lately(md: &std::fs::Metadata, recent: Option<SystemTime>) -> bool {
    let ctime = SystemTime::UNIX_EPOCH
        + Duration::new(
            u64::try_from(md.ctime()).unwrap_or(0),
            u32::try_from(md.ctime_nsec()).unwrap_or(0),
        );
    recent.is_some_and(|r| ctime >= r)
}

/// Files at least this large are copied by two threads, a half each: the copy is the
/// kernel moving pages, one core's worth per thread.
const SPLIT_COPY_BYTES: u64 = 16 << 20;

/// Copies the data of the regular file `src` (`len` bytes when it was stat'ed) to a new file
/// `dst`; returns the bytes copied.
fn copy_data(src: &Path, dst: &Path, len: u64) -> io::Result<u64> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if len < SPLIT_COPY_BYTES {
        return std::fs::copy(src, dst);
    }
    let from = std::fs::File::open(src)?;
    let to = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)?;
    let half = (len / 2) & !((1 << 20) - 1);
    let (first, second) = std::thread::scope(|s| {
        let second = s.spawn(|| copy_range(&from, dst, half, len));
        (copy_range(&from, dst, 0, half), second.join())
    });
    drop(to);
    first?;
    second.map_err(|_| io::Error::other("a copy thread panicked"))??;
    Ok(len)
}

/// Copies bytes `start..end` of `from` to the same offsets of the file `to`, through its own
/// descriptor (`sendfile` writes at the descriptor's position; `copy_file_range` refuses
/// two filesystems); stops early when `from` is shorter (a running sandbox truncated it:
/// the second pass copies it again).
fn copy_range(from: &std::fs::File, to: &Path, start: u64, end: u64) -> io::Result<()> {
    use std::io::Seek as _;
    let mut out = std::fs::File::options().write(true).open(to)?;
    out.seek(io::SeekFrom::Start(start))?;
    let mut offset = start;
    while offset < end {
        let chunk = usize::try_from(end - offset)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        if rustix::fs::sendfile(&out, from, Some(&mut offset), chunk)? == 0 {
            break;
        }
    }
    Ok(())
}

/// Gives `dst` the owner, mode, extended attributes and times of `src`, in that order:
/// a chown clears set-id bits and file capabilities, so mode and attributes come after it.
fn keep_metadata(src: &Path, dst: &Path, md: &std::fs::Metadata) -> io::Result<()> {
    let symlink = md.file_type().is_symlink();
    std::os::unix::fs::lchown(dst, Some(md.uid()), Some(md.gid())).map_err(|e| at(dst, e))?;
    if !symlink {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(|e| at(dst, e))?;
    }
    copy_xattrs(src, dst)?;
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: md.atime(),
            tv_nsec: md.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec() as _,
        },
    };
    rustix::fs::utimensat(CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| at(dst, e.into()))
}

/// Copies every extended attribute of `src` to `dst` (not following symlinks).
fn copy_xattrs(src: &Path, dst: &Path) -> io::Result<()> {
    let n = match rustix::fs::llistxattr_query(src) {
        Ok(n) => n,
        // A filesystem without attributes has none to copy.
        Err(rustix::io::Errno::OPNOTSUPP) => return Ok(()),
        Err(e) => return Err(at(src, e.into())),
    };
    if n == 0 {
        return Ok(());
    }
    let mut names = vec![0u8; n];
    let n = rustix::fs::llistxattr(src, &mut names[..]).map_err(|e| at(src, e.into()))?;
    for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name);
        let len = rustix::fs::lgetxattr_query(src, name).map_err(|e| at(src, e.into()))?;
        let mut value = vec![0u8; len];
        let len =
            rustix::fs::lgetxattr(src, name, &mut value[..]).map_err(|e| at(src, e.into()))?;
        rustix::fs::lsetxattr(dst, name, &value[..len], XattrFlags::empty())
            .map_err(|e| at(dst, e.into()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(kind, mode, uid, rdev, xattrs, content or link target)` of every entry under `root`.
    fn tree(root: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(p) = stack.pop() {
            let md = std::fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let body = if ft.is_dir() {
                for e in std::fs::read_dir(&p).unwrap() {
                    stack.push(e.unwrap().path());
                }
                String::new()
            } else if ft.is_symlink() {
                std::fs::read_link(&p).unwrap().display().to_string()
            } else if ft.is_file() {
                // FNV-1a of the bytes: files here go past 16 MiB.
                let bytes = std::fs::read(&p).unwrap();
                let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
                });
                format!("{} bytes, fnv {hash:x}", bytes.len())
            } else {
                String::new()
            };
            let mut names = vec![0u8; 4096];
            let n = rustix::fs::llistxattr(&p, &mut names[..]).unwrap_or(0);
            let mut xattrs: Vec<String> = names[..n]
                .split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|name| {
                    let name = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name);
                    let mut v = vec![0u8; 256];
                    let len = rustix::fs::lgetxattr(&p, name, &mut v[..]).unwrap();
                    format!("{}={}", name.display(), String::from_utf8_lossy(&v[..len]))
                })
                .collect();
            xattrs.sort();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let mode = if ft.is_symlink() { 0 } else { md.mode() };
            out.push((
                rel,
                format!(
                    "{:o} {} {} nlink={} mtime={} {xattrs:?} {body:?}",
                    mode,
                    md.uid(),
                    md.rdev(),
                    if ft.is_dir() { 0 } else { md.nlink() },
                    if ft.is_dir() { 0 } else { md.mtime() },
                ),
            ));
        }
        out.sort();
        out
    }

    fn sh(script: &str) {
        let st = std::process::Command::new("/bin/sh")
            .args(["-ec", script])
            .status()
            .unwrap();
        assert!(st.success(), "{script}");
    }

    #[test]
    #[ignore = "needs root: whiteouts (mknod), trusted.* attributes and owners"]
    fn copies_keep_everything_an_upper_holds_and_a_sync_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("upper"), dir.path().join("layer"));
        sh(&format!(
            "cd {}; mkdir -p upper/d/sub upper/opaque upper/gone-dir; cd upper
             printf data > d/file; chmod 4755 d/file; chown 1000:1000 d/file
             ln d/file d/hard; ln -s file d/link; mknod d/whiteout c 0 0; mkfifo d/fifo
             touch -d 2001-01-01 d/sub/old
             printf stays > keep; printf bye > gone; printf x > gone-dir/x
             head -c 17000000 /dev/urandom > big",
            dir.path().display()
        ));
        for (path, name, value) in [
            ("opaque", "trusted.overlay.opaque", "y"),
            ("d/file", "user.note", "kept"),
        ] {
            rustix::fs::lsetxattr(from.join(path), name, value.as_bytes(), XattrFlags::empty())
                .unwrap();
        }
        // Older than the coarse-time guard, so the sync can tell unchanged entries.
        std::thread::sleep(Duration::from_millis(50));
        let mut stamps = Stamps::default();
        let first = copy_upper(&from, &to, &mut stamps).unwrap();
        assert_eq!(tree(&from), tree(&to));
        assert_eq!(first.bytes, 4 + 5 + 3 + 1 + 17_000_000);
        assert_eq!(first.entries, 15);

        // Changes after the first pass: new content, a new file, removals, a directory
        // replaced by a file, a new whiteout.
        sh(&format!(
            "cd {}; printf changed > d/file; printf new > d/sub/new; rm gone
             rm -r gone-dir; printf file > gone-dir; mknod keep-wh c 0 0",
            from.display()
        ));
        let second = sync_upper(&from, &to, &stamps).unwrap();
        assert_eq!(tree(&from), tree(&to));
        // Only what changed was copied: the file (and its hard link), `new`, `gone-dir`
        // and the whiteout.
        assert_eq!(second.entries, 5, "{second:?}");
        assert_eq!(second.bytes, 7 + 3 + 4);
    }
}
