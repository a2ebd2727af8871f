//! The host's extra CAs, trusted in every template.
//!
//! Where the host reaches package registries through a TLS-intercepting proxy, its extra CAs
//! (`/usr/local/share/ca-certificates/`) must be trusted inside sandboxes too, or `pip`,
//! `npm` and `apt` in build steps and in sandboxes fail on certificates. The server appends
//! them (with its egress proxy's CA) to each sandbox's CA bundle at spawn and points pip and
//! npm at that bundle (`serve --no-host-cas` turns it off).

use std::path::Path;

/// Where the host keeps its extra CAs (Debian's `update-ca-certificates` input).
pub const HOST_CA_DIR: &str = "/usr/local/share/ca-certificates";

/// The `*.crt` files of `dir`, sorted by name.
fn crt_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// How many extra CAs the host has.
pub fn host_ca_count() -> usize {
    crt_files(Path::new(HOST_CA_DIR)).len()
}

/// The PEM text of the CAs in `dir`, concatenated in name order, each ending in a newline
/// (unreadable files are skipped).
pub fn extra_cas(dir: &Path) -> String {
    let mut pem = String::new();
    for file in crt_files(dir) {
        if let Ok(text) = std::fs::read_to_string(&file) {
            pem.push_str(&text);
            if !pem.ends_with('\n') {
                pem.push('\n');
            }
        }
    }
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_cas_are_the_crt_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.crt"), "B").unwrap();
        std::fs::write(dir.path().join("a.crt"), "A\n").unwrap();
        std::fs::write(dir.path().join("c.pem"), "not a .crt").unwrap();
        assert_eq!(extra_cas(dir.path()), "A\nB\n");
        assert_eq!(extra_cas(&dir.path().join("missing")), "");
    }
}
