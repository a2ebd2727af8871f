//! Copying an overlay upper directory into a layer while its sandbox is frozen (fork and
//! snapshot captures). Unlike a build step's upper, which is renamed into place once its
//! sandbox is gone, a captured sandbox lives on, so its upper is copied: every entry with
//! its owner, mode, extended attributes (overlay's opaque and redirect markers included) and
//! times; whiteouts (character devices 0:0) and other special files as nodes; hard links as
//! links. File data goes through `copy_file_range`, which shares blocks where the host
//! filesystem can (btrfs, xfs) and copies in the kernel elsewhere.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};

/// What a capture copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Entries made (directories, files, links, nodes).
    pub entries: u64,
    /// Bytes of file data copied.
    pub bytes: u64,
}

/// Copies the tree `from` into the directory `to`, which must not exist (it is made with
/// `from`'s owner, mode, attributes and times). On failure what was made stays: the caller
/// copies into a partial layer it removes.
///
/// # Errors
///
/// The first failing step, its error naming the path.
pub fn copy_upper(from: &Path, to: &Path) -> io::Result<CopyStats> {
    let mut c = Copier::default();
    let md = std::fs::symlink_metadata(from).map_err(|e| at(from, e))?;
    c.entry(from, to, &md)?;
    Ok(c.stats)
}

#[derive(Default)]
struct Copier {
    /// First copy of each multiply-linked inode, by `(dev, ino)` of the source.
    links: HashMap<(u64, u64), PathBuf>,
    stats: CopyStats,
}

/// `e` with `path` in its message.
fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl Copier {
    fn entry(&mut self, src: &Path, dst: &Path, md: &std::fs::Metadata) -> io::Result<()> {
        let ft = md.file_type();
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
                let child = e.path();
                let cmd = std::fs::symlink_metadata(&child).map_err(|e| at(&child, e))?;
                self.entry(&child, &dst.join(e.file_name()), &cmd)?;
            }
        } else if ft.is_file() {
            self.stats.bytes += std::fs::copy(src, dst).map_err(|e| at(dst, e))?;
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
