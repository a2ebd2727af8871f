//! Filesystem core: `EntryInfo` as envd builds it, and Stat, MakeDir, Move, ListDir, Remove.
//! Everything here is blocking; the RPC layer runs it on the blocking pool.

pub mod staged;
pub mod watch;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use e2b_envd::{Code, ConnectError};

use crate::os_error;
use crate::users::Names;

/// Prefix of the extended attributes that carry file metadata.
pub const XATTR_PREFIX: &str = "user.e2b.";

/// What kind of file an entry is (`FileType` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Neither a regular file nor a directory (or a dangling symlink).
    Unspecified,
    /// A regular file.
    File,
    /// A directory.
    Directory,
}

/// One file's description (`EntryInfo` on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Base name.
    pub name: String,
    /// Type; for a symlink, its target's type.
    pub kind: FileKind,
    /// Absolute path.
    pub path: String,
    /// `lstat` size.
    pub size: i64,
    /// Permission bits only; for a symlink, its target's.
    pub mode: u32,
    /// Go `FileMode.String()` of the entry itself.
    pub permissions: String,
    /// Owner name (or uid).
    pub owner: String,
    /// Group name (or gid).
    pub group: String,
    /// Modification time.
    pub modified: SystemTime,
    /// For symlinks: the fully resolved target (or the path itself when unresolvable).
    pub symlink_target: Option<String>,
    /// `user.e2b.*` xattrs with the prefix removed.
    pub metadata: BTreeMap<String, String>,
}

/// Go's `os.FileMode.String()` for a unix `st_mode`.
pub fn go_mode_string(st_mode: u32) -> String {
    let fmt = st_mode & libc::S_IFMT;
    let mut s = String::with_capacity(12);
    // Go's letter order: d a l T L D p S u g c t ?
    if fmt == libc::S_IFDIR {
        s.push('d');
    }
    if fmt == libc::S_IFLNK {
        s.push('L');
    }
    if fmt == libc::S_IFBLK || fmt == libc::S_IFCHR {
        s.push('D');
    }
    if fmt == libc::S_IFIFO {
        s.push('p');
    }
    if fmt == libc::S_IFSOCK {
        s.push('S');
    }
    if st_mode & libc::S_ISUID != 0 {
        s.push('u');
    }
    if st_mode & libc::S_ISGID != 0 {
        s.push('g');
    }
    if fmt == libc::S_IFCHR {
        s.push('c');
    }
    if st_mode & libc::S_ISVTX != 0 {
        s.push('t');
    }
    if s.is_empty() {
        s.push('-');
    }
    const RWX: &[u8; 9] = b"rwxrwxrwx";
    for (i, c) in RWX.iter().enumerate() {
        s.push(if st_mode & (1 << (8 - i)) != 0 {
            *c as char
        } else {
            '-'
        });
    }
    s
}

/// Reads `user.e2b.*` xattrs (following symlinks); unreadable or non-UTF-8 ones are skipped.
pub fn read_metadata(path: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(names) = xattr::list(path) else {
        return out;
    };
    for name in names {
        let Some(n) = name.to_str() else { continue };
        let Some(key) = n.strip_prefix(XATTR_PREFIX) else {
            continue;
        };
        if let Ok(Some(v)) = xattr::get(path, &name)
            && let Ok(v) = String::from_utf8(v)
        {
            out.insert(key.to_owned(), v);
        }
    }
    out
}

fn kind_of(md: &std::fs::Metadata) -> FileKind {
    if md.is_dir() {
        FileKind::Directory
    } else if md.is_file() {
        FileKind::File
    } else {
        FileKind::Unspecified
    }
}

/// Builds the entry for `path` (not following a final symlink for name, size and mode string).
///
/// # Errors
/// The `lstat` error.
pub fn entry_info(path: &Path, names: &Names) -> std::io::Result<Entry> {
    let lmd = std::fs::symlink_metadata(path)?;
    let name = path.file_name().map_or_else(
        || path.to_string_lossy().into_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let (kind, mode, symlink_target) = if lmd.file_type().is_symlink() {
        let target = std::fs::canonicalize(path).map_or_else(
            |_| path.to_string_lossy().into_owned(),
            |p| p.to_string_lossy().into_owned(),
        );
        match std::fs::metadata(path) {
            Ok(t) => (kind_of(&t), t.permissions().mode() & 0o777, Some(target)),
            Err(_) => (FileKind::Unspecified, lmd.mode() & 0o777, Some(target)),
        }
    } else {
        (kind_of(&lmd), lmd.mode() & 0o777, None)
    };
    let modified = if lmd.mtime() >= 0 {
        SystemTime::UNIX_EPOCH
            + Duration::new(
                lmd.mtime().unsigned_abs(),
                lmd.mtime_nsec().clamp(0, 999_999_999) as u32,
            )
    } else {
        SystemTime::UNIX_EPOCH
    };
    Ok(Entry {
        name,
        kind,
        path: path.to_string_lossy().into_owned(),
        size: i64::try_from(lmd.len()).unwrap_or(i64::MAX),
        mode,
        permissions: go_mode_string(lmd.mode()),
        owner: names.user(lmd.uid()),
        group: names.group(lmd.gid()),
        modified,
        symlink_target,
        metadata: read_metadata(path),
    })
}

/// Creates every missing directory of `dir` (mode 0755) and gives each to `uid:gid`, as
/// envd's `EnsureDirs` does.
///
/// # Errors
/// [`EnsureDirsError`], naming the component that is a file or could not be created.
pub fn ensure_dirs(dir: &Path, uid: u32, gid: u32) -> Result<(), EnsureDirsError> {
    let mut cur = PathBuf::from("/");
    let io = |op, path: &Path, source| EnsureDirsError::Io {
        op,
        path: path.to_owned(),
        source,
    };
    for comp in dir.components().skip(1) {
        cur.push(comp);
        match std::fs::metadata(&cur) {
            Ok(md) if md.is_dir() => continue,
            Ok(_) => return Err(EnsureDirsError::NotADirectory(cur)),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io("stat", &cur, e)),
        }
        match std::fs::create_dir(&cur) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io("mkdir", &cur, e)),
        }
        std::fs::set_permissions(&cur, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io("chmod", &cur, e))?;
        std::os::unix::fs::chown(&cur, Some(uid), Some(gid)).map_err(|e| io("chown", &cur, e))?;
    }
    Ok(())
}

/// Why [`ensure_dirs`] failed.
#[derive(Debug, thiserror::Error)]
pub enum EnsureDirsError {
    /// A component of the path is a file: the request named an impossible path.
    #[error("path is a file: {}", .0.display())]
    NotADirectory(PathBuf),
    /// The filesystem refused a stat, mkdir, chmod or chown.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The system call.
        op: &'static str,
        /// The directory it was made on.
        path: PathBuf,
        /// Its error.
        source: std::io::Error,
    },
}

impl EnsureDirsError {
    /// The Connect code: `invalid_argument` for a file in the path, else [`os_error::code`].
    pub fn code(&self) -> Code {
        match self {
            Self::NotADirectory(_) => Code::InvalidArgument,
            Self::Io { source, .. } => os_error::code(source),
        }
    }

    /// As an RPC error whose message starts with `context`.
    pub fn to_rpc(&self, context: &str) -> ConnectError {
        ConnectError::new(self.code(), format!("{context}: {self}"))
    }
}

/// `Stat`.
///
/// # Errors
/// `not_found` for a missing path, else the code [`os_error::code`] gives.
pub fn stat(path: &Path, names: &Names) -> Result<Entry, ConnectError> {
    entry_info(path, names).map_err(|e| match os_error::code(&e) {
        Code::NotFound => ConnectError::not_found(format!("file not found: {}", path.display())),
        _ => os_error::rpc_error(
            format_args!("error getting file info for {}", path.display()),
            &e,
        ),
    })
}

/// `MakeDir`: `mkdir -p` with ownership; `already_exists` for an existing directory.
///
/// # Errors
/// `already_exists`, `invalid_argument` (exists but not a directory, or a file in the path),
/// else the code [`os_error::code`] gives.
pub fn make_dir(path: &Path, uid: u32, gid: u32, names: &Names) -> Result<Entry, ConnectError> {
    match std::fs::metadata(path) {
        Ok(md) if md.is_dir() => {
            return Err(ConnectError::already_exists(format!(
                "directory already exists: {}",
                path.display()
            )));
        }
        Ok(_) => {
            return Err(ConnectError::invalid_argument(format!(
                "path already exists but it is not a directory: {}",
                path.display()
            )));
        }
        // Missing, or a file on the way, which ensure_dirs names.
        Err(e) if os_error::code(&e) == Code::NotFound => {}
        Err(e) => {
            return Err(os_error::rpc_error(
                format_args!("error getting file info for {}", path.display()),
                &e,
            ));
        }
    }
    ensure_dirs(path, uid, gid).map_err(|e| e.to_rpc("error creating directory"))?;
    stat(path, names)
}

/// `Move`: creates the destination's parents, then `rename(2)`.
///
/// # Errors
/// `not_found` when the source is missing, else the code [`os_error::code`] gives.
pub fn rename(
    src: &Path,
    dst: &Path,
    uid: u32,
    gid: u32,
    names: &Names,
) -> Result<Entry, ConnectError> {
    if let Some(parent) = dst.parent() {
        ensure_dirs(parent, uid, gid).map_err(|e| e.to_rpc("error ensuring directories"))?;
    }
    std::fs::rename(src, dst).map_err(|e| match e.kind() {
        ErrorKind::NotFound => {
            ConnectError::not_found(format!("source file not found: {}", src.display()))
        }
        _ => os_error::rpc_error(
            format_args!("error renaming {} to {}", src.display(), dst.display()),
            &e,
        ),
    })?;
    stat(dst, names)
}

/// `Remove`: recursive; a missing path succeeds.
///
/// # Errors
/// The code [`os_error::code`] gives for any other failure.
pub fn remove(path: &Path) -> Result<(), ConnectError> {
    let failed = |e: &std::io::Error| {
        os_error::rpc_error(format_args!("error removing {}", path.display()), e)
    };
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(failed(&e)),
    };
    let r = if md.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(failed(&e)),
    }
}

/// `ListDir`: entries up to `depth` levels below `path` (0 means 1), lexical walk order,
/// symlinks inside the tree not followed. Reported paths are joined onto `path` as requested.
/// Entries below `path` that vanish or cannot be read (`/proc/1/fdinfo` without
/// `CAP_SYS_PTRACE`) are skipped, so one unreadable corner does not fail the listing.
///
/// # Errors
/// `not_found`, `failed_precondition` (symlink loop), `invalid_argument` (not a directory),
/// else the code [`os_error::code`] gives for `path` itself.
pub fn list_dir(path: &Path, depth: u32, names: &Names) -> Result<Vec<Entry>, ConnectError> {
    let depth = depth.max(1);
    let real = std::fs::canonicalize(path).map_err(|e| match os_error::code(&e) {
        Code::NotFound => ConnectError::not_found(format!("path not found: {}", path.display())),
        Code::FailedPrecondition if e.raw_os_error() == Some(libc::ELOOP) => {
            ConnectError::failed_precondition(format!("path is a symlink loop: {}", path.display()))
        }
        _ => os_error::rpc_error(format_args!("error resolving path {}", path.display()), &e),
    })?;
    let md =
        std::fs::metadata(&real).map_err(|e| os_error::rpc_error("error getting file info", &e))?;
    if !md.is_dir() {
        return Err(ConnectError::invalid_argument(format!(
            "path is not a directory: {}",
            path.display()
        )));
    }
    let mut out = Vec::new();
    walk(&real, path, 1, depth, names, &mut out)?;
    Ok(out)
}

/// Whether a walk skips an entry that failed with `e`: it vanished or is unreadable.
fn skipped_in_walk(e: &std::io::Error) -> bool {
    matches!(os_error::code(e), Code::NotFound | Code::PermissionDenied)
}

fn walk(
    real: &Path,
    shown: &Path,
    level: u32,
    max: u32,
    names: &Names,
    out: &mut Vec<Entry>,
) -> Result<(), ConnectError> {
    let rd = match std::fs::read_dir(real) {
        Ok(rd) => rd,
        Err(e) if level > 1 && skipped_in_walk(&e) => return Ok(()),
        Err(e) => {
            return Err(os_error::rpc_error(
                format_args!("error reading directory {}", shown.display()),
                &e,
            ));
        }
    };
    let mut children: Vec<_> = rd.filter_map(Result::ok).map(|d| d.file_name()).collect();
    children.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in children {
        let real_child = real.join(&name);
        let shown_child = shown.join(&name);
        let mut entry = match entry_info(&real_child, names) {
            Ok(e) => e,
            Err(e) if skipped_in_walk(&e) => continue,
            Err(e) => {
                return Err(os_error::rpc_error(
                    format_args!("error getting file info for {}", shown_child.display()),
                    &e,
                ));
            }
        };
        entry.path = shown_child.to_string_lossy().into_owned();
        let is_real_dir = std::fs::symlink_metadata(&real_child).is_ok_and(|m| m.is_dir());
        out.push(entry);
        if is_real_dir && level < max {
            walk(&real_child, &shown_child, level + 1, max, names, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_strings_match_go() {
        assert_eq!(go_mode_string(libc::S_IFREG | 0o644), "-rw-r--r--");
        assert_eq!(go_mode_string(libc::S_IFDIR | 0o755), "drwxr-xr-x");
        assert_eq!(go_mode_string(libc::S_IFLNK | 0o777), "Lrwxrwxrwx");
        assert_eq!(go_mode_string(libc::S_IFCHR | 0o666), "Dcrw-rw-rw-");
        assert_eq!(
            go_mode_string(libc::S_IFDIR | libc::S_ISVTX | 0o777),
            "dtrwxrwxrwx"
        );
        assert_eq!(
            go_mode_string(libc::S_IFREG | libc::S_ISUID | 0o755),
            "urwxr-xr-x"
        );
        assert_eq!(go_mode_string(libc::S_IFIFO | 0o600), "prw-------");
    }

    #[test]
    fn fs_operations() {
        let names = Names::default();
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let e = make_dir(&root.join("a/b"), uid, gid, &names).unwrap();
        assert_eq!(e.kind, FileKind::Directory);
        assert_eq!(e.mode, 0o755);
        let err = make_dir(&root.join("a/b"), uid, gid, &names).unwrap_err();
        assert_eq!(err.code(), e2b_envd::Code::AlreadyExists);
        std::fs::write(root.join("a/f.txt"), b"hello").unwrap();
        let err = make_dir(&root.join("a/f.txt"), uid, gid, &names).unwrap_err();
        assert_eq!(err.code(), e2b_envd::Code::InvalidArgument);
        std::os::unix::fs::symlink(root.join("a/f.txt"), root.join("a/link")).unwrap();
        std::os::unix::fs::symlink(root.join("nope"), root.join("a/dangling")).unwrap();
        let l = stat(&root.join("a/link"), &names).unwrap();
        assert_eq!(l.kind, FileKind::File);
        assert_eq!(l.permissions, "Lrwxrwxrwx");
        assert_eq!(
            l.symlink_target.as_deref(),
            Some(
                std::fs::canonicalize(root.join("a/f.txt"))
                    .unwrap()
                    .to_str()
                    .unwrap()
            )
        );
        let dl = stat(&root.join("a/dangling"), &names).unwrap();
        assert_eq!(dl.kind, FileKind::Unspecified);
        let list = list_dir(&root.join("a"), 0, &names).unwrap();
        let got: Vec<_> = list.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(got, ["b", "dangling", "f.txt", "link"]);
        let list2 = list_dir(&root.join("a"), 2, &names).unwrap();
        assert_eq!(list2.len(), 4, "b is empty");
        std::fs::write(root.join("a/b/c"), b"").unwrap();
        let list2 = list_dir(&root.join("a"), 2, &names).unwrap();
        assert_eq!(list2[1].path, root.join("a/b/c").to_str().unwrap());
        std::os::unix::fs::symlink(root.join("loop1"), root.join("loop2")).unwrap();
        std::os::unix::fs::symlink(root.join("loop2"), root.join("loop1")).unwrap();
        let err = list_dir(&root.join("loop1"), 1, &names).unwrap_err();
        assert_eq!(err.code(), e2b_envd::Code::FailedPrecondition);
        let err = list_dir(&root.join("a/f.txt"), 1, &names).unwrap_err();
        assert_eq!(err.code(), e2b_envd::Code::InvalidArgument);
        let err = list_dir(&root.join("missing"), 1, &names).unwrap_err();
        assert_eq!(err.code(), e2b_envd::Code::NotFound);
        let moved = rename(
            &root.join("a/f.txt"),
            &root.join("x/y/g.txt"),
            uid,
            gid,
            &names,
        )
        .unwrap();
        assert_eq!(moved.name, "g.txt");
        assert_eq!(moved.size, 5);
        let err = rename(&root.join("a/f.txt"), &root.join("z"), uid, gid, &names).unwrap_err();
        assert_eq!(err.code(), e2b_envd::Code::NotFound);
        remove(&root.join("x")).unwrap();
        remove(&root.join("x")).unwrap();
        assert!(!root.join("x").exists());
    }
}
