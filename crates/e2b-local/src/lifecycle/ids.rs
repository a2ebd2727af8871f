//! Sandbox ids and access tokens.

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

/// `hex(HMAC-SHA256(secret, sandbox_id))`: the envd access token of a secure sandbox.
pub(crate) fn access_token(secret: &[u8], sandbox_id: &str) -> String {
    // HMAC takes keys of any length, so this never fails.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(sandbox_id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `hex(HMAC-SHA256(secret, "sandbox-traffic-" + sandbox_id))`: the traffic access token a
/// sandbox with `allowPublicTraffic: false` requires on its ports (E2B's derivation).
pub(crate) fn traffic_token(secret: &[u8], sandbox_id: &str) -> String {
    access_token(secret, &format!("sandbox-traffic-{sandbox_id}"))
}

/// A fresh sandbox id: `i` + 20 characters of `[a-z0-9]`.
pub(crate) fn new_sandbox_id() -> String {
    format!("i{}", random_id(20))
}

/// A fresh template id: 20 characters of `[a-z0-9]`, as E2B's.
pub(crate) fn new_template_id() -> String {
    random_id(20)
}

fn random_id(len: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect()
}

/// Whether `id` is a syntactically valid sandbox id (`^[a-z0-9]+$`, at most 64 characters).
pub(crate) fn valid_sandbox_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_e2b_shape() {
        for _ in 0..100 {
            let id = new_sandbox_id();
            assert_eq!(id.len(), 21);
            assert!(id.starts_with('i'));
            assert!(valid_sandbox_id(&id));
        }
        assert!(!valid_sandbox_id("I-bad"));
        assert!(!valid_sandbox_id(""));
    }

    #[test]
    fn access_token_is_hmac_sha256_hex() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            access_token(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
