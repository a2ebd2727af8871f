//! Percent-encoding of URL query values (`/files` paths and users, list filters). The
//! `/files` URL signature itself is `e2b_envd::signature`.

/// Percent-encodes everything but unreserved characters (Python's `quote(safe="")`).
pub(crate) fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_slashes() {
        assert_eq!(quote("/home/user/a b.txt"), "%2Fhome%2Fuser%2Fa%20b.txt");
        assert_eq!(quote("v1_ab+c/d"), "v1_ab%2Bc%2Fd");
    }
}
