//! The `debian` template: Debian bookworm from Debian's package archive, made with
//! `mmdebstrap` on first use and kept in the data directory, with what E2B's base image
//! offers: `python` (3), `pip`, `node`, `npm`, `git`, `curl`, `sudo`, CA certificates, and the
//! `user` account (uid 1000, home `/home/user`) with passwordless `sudo`.
//!
//! Where the host reaches package registries through a TLS-intercepting proxy, its extra CAs
//! (`/usr/local/share/ca-certificates/`) are added to the template's trust store and pip's
//! and npm's CA settings point at it, or `pip`/`npm`/`apt` inside would fail on certificates.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Template, TemplateLayer};
use crate::isolation::{Error, Result};

/// The template's name.
pub const NAME: &str = "debian";
/// The Debian release.
pub const SUITE: &str = "bookworm";
/// Packages on top of Debian's `apt` variant.
pub const PACKAGES: &[&str] = &[
    "python3",
    "python3-pip",
    "python-is-python3",
    "nodejs",
    "npm",
    "git",
    "curl",
    "sudo",
    "ca-certificates",
    "procps",
];
/// Bump when what goes into the template changes, so old data dirs build it again.
const VERSION: &str = "1";

/// Run by mmdebstrap on the host after the packages are installed (`$1` is the new root):
/// the `user` account with passwordless sudo, the host's extra CAs, pip's and npm's CA
/// settings.
const CUSTOMIZE: &str = r#"set -eu
chroot "$1" useradd --create-home --uid 1000 --user-group --shell /bin/bash --groups sudo user
chroot "$1" usermod --password '*' user
echo 'user ALL=(ALL:ALL) NOPASSWD: ALL' > "$1/etc/sudoers.d/user"
chmod 0440 "$1/etc/sudoers.d/user"
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/"
  chroot "$1" update-ca-certificates
fi
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$1/etc/pip.conf"
printf 'cafile=/etc/ssl/certs/ca-certificates.crt\n' > "$1/etc/npmrc"
"#;

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("templates").join(NAME)
}

/// The template when it was built by this or an earlier run.
pub fn built(data_dir: &Path) -> Option<Template> {
    let dir = dir(data_dir);
    (std::fs::read_to_string(dir.join("version")).ok().as_deref() == Some(VERSION)).then(|| {
        Template {
            name: NAME.to_owned(),
            layers: vec![TemplateLayer::single("/", dir.join("root"))],
        }
    })
}

/// Builds the template with `mmdebstrap` (a few minutes: it downloads about 150 MB of
/// packages) in a temporary directory and renames it into place.
///
/// # Errors
///
/// [`Error::Template`] naming what failed: `mmdebstrap` missing, or its exit and last lines.
pub fn build(data_dir: &Path) -> Result<Template> {
    let fail = |reason: String| Error::Template {
        name: NAME.to_owned(),
        reason,
    };
    let dir = dir(data_dir);
    let tmp = data_dir
        .join("templates")
        .join(format!(".{NAME}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::CreateDir(tmp.clone(), e))?;
    let out = Command::new("mmdebstrap")
        .args(["--variant=apt", "--quiet"])
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(format!("--customize-hook={CUSTOMIZE}"))
        .arg(SUITE)
        .arg(tmp.join("root"))
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(fail(format!(
                "running mmdebstrap ({e}): install it (Debian package mmdebstrap)"
            )));
        }
    };
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        let said = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = said.lines().rev().take(5).collect();
        return Err(fail(format!(
            "mmdebstrap {SUITE} failed ({}): {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )));
    }
    std::fs::write(tmp.join("version"), VERSION)
        .map_err(|e| Error::WriteFile(tmp.join("version"), e))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).map_err(|e| Error::CreateDir(dir.clone(), e))?;
    built(data_dir).ok_or_else(|| fail("the built template has no version stamp".into()))
}
