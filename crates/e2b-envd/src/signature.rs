//! v1 signatures of envd's `/files` URLs, which let a client without the access token read
//! or write one path (E2B's `download_url` and `upload_url`).
//!
//! The signature is `"v1_"` followed by the unpadded standard base64 of SHA-256 over
//! `<path>:<operation>:<username>:<access token>[:<expiration>]`, where `operation` is `read`
//! or `write`, `username` is empty when the URL names no user, and `expiration` (unix seconds)
//! is present only in URLs that expire. The SDKs sign; envd and a control plane that routes
//! `/files` verify.
//!
//! ```
//! use e2b_envd::signature;
//!
//! let sig = signature::sign("/home/user/a.txt", signature::Operation::Read, "user", "token", None);
//! assert!(sig.starts_with("v1_"));
//! assert!(signature::verify(&sig, "/home/user/a.txt", signature::Operation::Read, "user", "token", None));
//! assert!(!signature::verify(&sig, "/home/user/b.txt", signature::Operation::Read, "user", "token", None));
//! ```

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// What a signed URL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `GET /files`: download.
    Read,
    /// `POST /files`: upload.
    Write,
}

impl Operation {
    /// The word signed: `read` or `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

/// Computes the v1 signature of `path` for `operation` by `username` (`""` for none).
pub fn sign(
    path: &str,
    operation: Operation,
    username: &str,
    access_token: &str,
    expiration: Option<i64>,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(path.as_bytes());
    hasher.update(b":");
    hasher.update(operation.as_str().as_bytes());
    hasher.update(b":");
    hasher.update(username.as_bytes());
    hasher.update(b":");
    hasher.update(access_token.as_bytes());
    if let Some(expiration) = expiration {
        hasher.update(format!(":{expiration}").as_bytes());
    }
    format!(
        "v1_{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(hasher.finalize())
    )
}

/// Whether `signature` is the v1 signature of the other arguments, compared in constant time.
/// Expiry is the caller's to check, since only it knows the clock it trusts.
pub fn verify(
    signature: &str,
    path: &str,
    operation: Operation,
    username: &str,
    access_token: &str,
    expiration: Option<i64>,
) -> bool {
    let expected = sign(path, operation, username, access_token, expiration);
    constant_time_eq(expected.as_bytes(), signature.as_bytes())
}

/// Compares two byte strings in time independent of where they differ (tokens, keys,
/// signatures).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_values_computed_with_python() {
        // hashlib.sha256(...).digest(), base64-encoded with the padding stripped.
        assert_eq!(
            sign("/home/user/a.txt", Operation::Read, "user", "tok", None),
            "v1_p0WqJQYCLtO6YX+e4h7VbpybRsdJbMbIw7clYpulIJk"
        );
        assert_eq!(
            sign("/a", Operation::Read, "", "tok", None),
            "v1_2/gNbgFPxFSqkheS/SD0NHlzA121E/nxkOtc/ovxeoI"
        );
    }

    #[test]
    fn expiration_operation_and_user_are_signed() {
        let base = sign("/a", Operation::Write, "", "tok", None);
        assert_ne!(base, sign("/a", Operation::Write, "", "tok", Some(100)));
        assert_ne!(base, sign("/a", Operation::Read, "", "tok", None));
        assert_ne!(base, sign("/a", Operation::Write, "user", "tok", None));
        assert!(!sign("/a", Operation::Write, "", "tok", Some(100)).ends_with('='));
        assert!(verify(&base, "/a", Operation::Write, "", "tok", None));
        assert!(!verify(&base, "/a", Operation::Write, "", "other", None));
        assert!(!verify("", "/a", Operation::Write, "", "tok", None));
    }
}
