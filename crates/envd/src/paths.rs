//! Path resolution as envd does it: `~` expansion, paths relative to the user's home, and the
//! default working directory for empty paths.

use std::path::{Component, Path, PathBuf};

use crate::users::User;

/// A path that cannot be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// `~name` forms name another user's home, which envd does not expand.
    #[error("path '{0}' is invalid: cannot expand another user's home directory")]
    OtherUsersHome(String),
    /// No C string, so no system call, can hold a NUL byte.
    #[error("path '{}' is invalid: it contains a NUL byte", .0.escape_debug())]
    ContainsNul(String),
    /// A component over `NAME_MAX` (255 bytes) or a path over `PATH_MAX` (4096 bytes), which
    /// every system call on it would refuse with `ENAMETOOLONG`.
    #[error("path '{0}' is invalid: {1}")]
    TooLong(String, &'static str),
}

/// Linux's `NAME_MAX`: the longest file name, in bytes.
const NAME_MAX: usize = 255;
/// Linux's `PATH_MAX`: the longest path, in bytes, with its terminating NUL.
const PATH_MAX: usize = 4096;

/// Resolves `path` for `user`:
/// - empty: `default_workdir` if set, else the user's home;
/// - `~` and `~/x`: the user's home (joined with `x`);
/// - absolute: kept (lexically cleaned);
/// - relative: joined onto the user's home.
///
/// # Errors
/// [`PathError::OtherUsersHome`] for `~name` paths; [`PathError::ContainsNul`] and
/// [`PathError::TooLong`] for paths no system call accepts, so they are client errors rather
/// than failures of the operation.
pub fn expand_and_resolve(
    path: &str,
    user: &User,
    default_workdir: Option<&Path>,
) -> Result<PathBuf, PathError> {
    let resolved = resolve_unchecked(path, user, default_workdir)?;
    let bytes = resolved.as_os_str().len();
    if path.contains('\0') {
        Err(PathError::ContainsNul(path.to_owned()))
    } else if bytes >= PATH_MAX {
        Err(PathError::TooLong(
            format!("{}...", path.chars().take(64).collect::<String>()),
            "it is longer than 4095 bytes",
        ))
    } else if resolved.iter().any(|c| c.len() > NAME_MAX) {
        Err(PathError::TooLong(
            path.to_owned(),
            "a file name in it is longer than 255 bytes",
        ))
    } else {
        Ok(resolved)
    }
}

fn resolve_unchecked(
    path: &str,
    user: &User,
    default_workdir: Option<&Path>,
) -> Result<PathBuf, PathError> {
    if path.is_empty() {
        if let Some(w) = default_workdir {
            return Ok(clean(w));
        }
        return Ok(clean(&user.home));
    }
    let expanded: PathBuf = if path == "~" {
        user.home.clone()
    } else if let Some(rest) = path.strip_prefix("~/") {
        user.home.join(rest)
    } else if path.starts_with('~') {
        return Err(PathError::OtherUsersHome(path.to_owned()));
    } else {
        PathBuf::from(path)
    };
    if expanded.is_absolute() {
        Ok(clean(&expanded))
    } else {
        Ok(clean(&user.home.join(expanded)))
    }
}

/// Lexical cleaning like Go's `filepath.Clean` for absolute paths: drops `.`, resolves `..`
/// against the preceding component and never goes above `/`.
pub fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            name: "user".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/user".into(),
            groups: vec![],
        }
    }

    #[test]
    fn resolution_rules() {
        let u = user();
        let r = |p: &str, w: Option<&str>| expand_and_resolve(p, &u, w.map(Path::new));
        assert_eq!(r("", None).unwrap(), PathBuf::from("/home/user"));
        assert_eq!(r("", Some("/code")).unwrap(), PathBuf::from("/code"));
        assert_eq!(r("~", None).unwrap(), PathBuf::from("/home/user"));
        assert_eq!(r("~/a/b", None).unwrap(), PathBuf::from("/home/user/a/b"));
        assert_eq!(
            r("a/../b/./c", None).unwrap(),
            PathBuf::from("/home/user/b/c")
        );
        assert_eq!(r("/x//y/../z", None).unwrap(), PathBuf::from("/x/z"));
        assert_eq!(r("/../..", None).unwrap(), PathBuf::from("/"));
        assert_eq!(
            r("~root/x", None),
            Err(PathError::OtherUsersHome("~root/x".into()))
        );
        assert_eq!(r("a\0b", None), Err(PathError::ContainsNul("a\0b".into())));
        assert!(matches!(
            r(&"a".repeat(256), None),
            Err(PathError::TooLong(..))
        ));
        assert!(r(&"a".repeat(255), None).is_ok());
        assert!(matches!(
            r(&"a/".repeat(2100), None),
            Err(PathError::TooLong(..))
        ));
    }
}
