//! The one mapping from operating-system errors to what envd answers: a Connect [`Code`] on
//! RPCs and an HTTP status on `/files`. Every filesystem failure goes through [`code`], so a
//! client mistake (a missing path, a name too long, no permission, a full disk) is reported as
//! the client's error, never as `internal` (500).
//!
//! Upstream envd answers `internal` for almost every OS error and reports a full disk only on
//! `/files` (507); we keep its codes where it has one (`not_found`, `already_exists`,
//! `failed_precondition` for a symlink loop, `invalid_argument`) and give the rest the code
//! Connect defines for them.

use std::fmt::Display;
use std::io;

use e2b_envd::{Code, ConnectError};
use http::StatusCode;

/// The Connect code for an OS error, by errno (or by kind for errors the standard library
/// raises before any system call, such as a NUL byte in a path).
///
/// ```
/// use e2b_envd::Code;
/// let e = std::io::Error::from_raw_os_error(libc::ENAMETOOLONG);
/// assert_eq!(envd::os_error::code(&e), Code::InvalidArgument);
/// ```
pub fn code(e: &io::Error) -> Code {
    let Some(errno) = e.raw_os_error() else {
        return match e.kind() {
            io::ErrorKind::InvalidInput => Code::InvalidArgument,
            io::ErrorKind::NotFound => Code::NotFound,
            io::ErrorKind::PermissionDenied => Code::PermissionDenied,
            _ => Code::Internal,
        };
    };
    match errno {
        // A file where a directory should be: the path does not exist either.
        libc::ENOENT | libc::ENOTDIR => Code::NotFound,
        libc::EEXIST => Code::AlreadyExists,
        libc::EACCES | libc::EPERM | libc::EROFS => Code::PermissionDenied,
        libc::ENAMETOOLONG | libc::EINVAL | libc::EISDIR => Code::InvalidArgument,
        // The request is fine; the files it names are not in a state that allows it.
        libc::ELOOP | libc::ENOTEMPTY | libc::EBUSY | libc::ETXTBSY | libc::EXDEV => {
            Code::FailedPrecondition
        }
        libc::ENOSPC | libc::EDQUOT | libc::EFBIG | libc::ENOMEM => Code::ResourceExhausted,
        // Transient: retrying later can succeed.
        libc::EMFILE | libc::ENFILE | libc::EAGAIN => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// The HTTP status for an OS error on `/files`: the Connect status of [`code`], except that an
/// exhausted resource is 507 (Insufficient Storage), which the SDKs raise as
/// `NotEnoughSpaceError`, as upstream answers a full disk.
pub fn http_status(e: &io::Error) -> StatusCode {
    match code(e) {
        Code::ResourceExhausted => StatusCode::INSUFFICIENT_STORAGE,
        other => other.http_status(),
    }
}

/// An RPC error for `e` with the message `"{context}: {e}"`.
pub fn rpc_error(context: impl Display, e: &io::Error) -> ConnectError {
    ConnectError::new(code(e), format!("{context}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno(n: i32) -> io::Error {
        io::Error::from_raw_os_error(n)
    }

    #[test]
    fn client_errors_are_not_internal() {
        assert_eq!(code(&errno(libc::ENOENT)), Code::NotFound);
        assert_eq!(code(&errno(libc::ENOTDIR)), Code::NotFound);
        assert_eq!(code(&errno(libc::EEXIST)), Code::AlreadyExists);
        assert_eq!(code(&errno(libc::EACCES)), Code::PermissionDenied);
        assert_eq!(code(&errno(libc::ENAMETOOLONG)), Code::InvalidArgument);
        assert_eq!(code(&errno(libc::ELOOP)), Code::FailedPrecondition);
        assert_eq!(code(&errno(libc::ENOSPC)), Code::ResourceExhausted);
        assert_eq!(code(&errno(libc::EMFILE)), Code::Unavailable);
        assert_eq!(code(&errno(libc::EIO)), Code::Internal);
        // What std::fs returns for a path holding a NUL byte, before any system call.
        let nul = std::fs::metadata("/tmp/a\0b").unwrap_err();
        assert_eq!(code(&nul), Code::InvalidArgument);
    }

    #[test]
    fn http_statuses() {
        assert_eq!(
            http_status(&errno(libc::ENOSPC)),
            StatusCode::INSUFFICIENT_STORAGE
        );
        assert_eq!(
            http_status(&errno(libc::EDQUOT)),
            StatusCode::INSUFFICIENT_STORAGE
        );
        assert_eq!(
            http_status(&errno(libc::ENAMETOOLONG)),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(http_status(&errno(libc::EACCES)), StatusCode::FORBIDDEN);
        assert_eq!(http_status(&errno(libc::ENOENT)), StatusCode::NOT_FOUND);
        assert_eq!(
            http_status(&errno(libc::EIO)),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
