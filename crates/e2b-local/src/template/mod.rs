//! Templates: the read-only layers a sandbox's root overlay is built from.
//!
//! * [`Template::base`] — the default template `base`, made on first use from the host's own
//!   system directories (`/usr`, and `/bin`, `/sbin`, `/lib*` when they are not usr-merge
//!   symlinks), each an overlay lower layer used in place (nothing is copied), plus a small
//!   generated root directory in the data dir with a filtered `/etc` and empty `/home/user`,
//!   `/root`, `/tmp`, `/var`. What goes into it is listed in `docs/isolation.md`.
//! * [`Template::from_rootfs`] — any root filesystem directory (e.g. made with debootstrap),
//!   used as the single lower layer.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod code_interpreter;
pub mod debian;
pub mod layers;
pub mod oci;
pub mod steps;

use crate::isolation::{Error, Result};

/// The name of the default template.
pub const BASE: &str = "base";

/// Bump when the generated base root changes, so old data dirs get a fresh one.
const BASE_VERSION: &str = "3";

/// One read-only overlay: the host directories `lowers` (topmost first) appear merged at
/// `target` in the sandbox. A built template stacks its steps' layers above its base's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateLayer {
    /// Absolute path inside the sandbox (`/` for the first layer).
    pub target: PathBuf,
    /// Host directories (never written), topmost first.
    pub lowers: Vec<PathBuf>,
}

impl TemplateLayer {
    /// A layer of the single host directory `source`.
    pub fn single(target: impl Into<PathBuf>, source: impl Into<PathBuf>) -> Self {
        TemplateLayer {
            target: target.into(),
            lowers: vec![source.into()],
        }
    }

    /// The host path of `rel` (relative to [`target`](Self::target)) in the topmost lower
    /// directory that has it.
    pub fn find(&self, rel: &Path) -> Option<PathBuf> {
        self.lowers
            .iter()
            .map(|l| l.join(rel))
            .find(|p| std::fs::symlink_metadata(p).is_ok())
    }
}

/// A template: its name and layers, the first targeting `/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// Template name (`base`, or what `template add` was given).
    pub name: String,
    /// Layers, `/` first.
    pub layers: Vec<TemplateLayer>,
}

/// Host directories that become layers of `base` when they are real directories
/// (on usr-merged hosts they are symlinks into `/usr` and are recreated as symlinks).
pub const HOST_SYSTEM_DIRS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Host `/etc` entries copied into `base` (files, symlinks or whole directories).
/// Everything else of the host's `/etc` — above all `shadow`, `gshadow`, `ssh/`, `machine-id`,
/// the host's `passwd`/`group`, `sudoers`, and `ssl/private` — is never copied.
pub const ETC_COPIED: &[&str] = &[
    "resolv.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "bash.bashrc",
    "profile",
    "profile.d",
    "skel",
    "shells",
    "login.defs",
    "inputrc",
    "os-release",
    "debian_version",
    "localtime",
    "timezone",
    "protocols",
    "services",
    "mime.types",
    "gai.conf",
    "host.conf",
    "environment",
    "pam.d",
    "security",
    "pip.conf",
    "npmrc",
    "python3",
    "python3.11",
    "python3.12",
    "python3.13",
    "perl",
    "magic",
    "magic.mime",
    "mke2fs.conf",
    "terminfo",
];

/// Commands E2B's base image has, which programs written against E2B expect.
pub const E2B_BASE_COMMANDS: &[&str] = &[
    "python", "python3", "pip", "node", "npm", "git", "curl", "sudo",
];

/// The commands of [`E2B_BASE_COMMANDS`] that `base` built from `host_root` lacks (looked
/// up where `base` has them: the host's `/usr/bin`, `/usr/local/bin`, `/bin`, and the
/// `python` link `base` adds).
pub fn base_lacks(host_root: &Path) -> Vec<&'static str> {
    let has = |cmd: &str| {
        ["usr/bin", "usr/local/bin", "bin"]
            .iter()
            .any(|d| host_root.join(d).join(cmd).exists())
    };
    E2B_BASE_COMMANDS
        .iter()
        .copied()
        .filter(|c| !(has(c) || (*c == "python" && has("python3"))))
        .collect()
}

/// The base's additions to the host's `/usr` (a lower layer above it), e.g. `python`.
const USR_EXTRA: &str = "usr-extra";

/// Entries of [`ETC_COPIED`] copied by content even when they are symlinks.
const ETC_FOLLOWED: &[&str] = &["resolv.conf"];

/// Names never copied even inside a copied directory.
const ETC_EXCLUDED: &[&str] = &["private", "shadow", "gshadow", "machine-id"];

impl Template {
    /// The default template `base`, generating its root directory under
    /// `<data_dir>/templates/base` on first use (about a megabyte; `/usr` is not copied).
    ///
    /// # Errors
    ///
    /// The failing file operation's variant, naming the path.
    pub fn base(data_dir: &Path) -> Result<Template> {
        Self::base_from_host(data_dir, Path::new("/"))
    }

    /// [`Template::base`] built from the system directories under `host_root` instead of
    /// `/` (tests use a fake host; a server could use a chroot).
    ///
    /// # Errors
    ///
    /// The failing file operation's variant, naming the path.
    pub fn base_from_host(data_dir: &Path, host_root: &Path) -> Result<Template> {
        let dir = data_dir.join("templates").join(BASE);
        let root = dir.join("root");
        let stamp = dir.join("version");
        if std::fs::read_to_string(&stamp).ok().as_deref() != Some(BASE_VERSION) {
            // One builder per process; other processes are handled by the atomic rename.
            static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _guard = BUILD
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if std::fs::read_to_string(&stamp).ok().as_deref() != Some(BASE_VERSION) {
                build_base(data_dir, &dir, host_root)?;
            }
        }
        let mut usr = TemplateLayer::single("/usr", host_root.join("usr"));
        let usr_extra = dir.join(USR_EXTRA);
        if usr_extra.is_dir() {
            usr.lowers.insert(0, usr_extra);
        }
        let mut layers = vec![TemplateLayer::single("/", root), usr];
        for name in HOST_SYSTEM_DIRS {
            let host = host_root.join(name);
            if std::fs::symlink_metadata(&host).is_ok_and(|md| md.is_dir()) {
                layers.push(TemplateLayer::single(Path::new("/").join(name), host));
            }
        }
        Ok(Template {
            name: BASE.to_owned(),
            layers,
        })
    }

    /// A template whose single layer is the root filesystem directory `dir`
    /// (e.g. made with debootstrap). The directory must contain `bin/sh` (or a usr-merge
    /// `bin` symlink) and is never written. It should have its own `user` (uid 1000).
    ///
    /// # Errors
    ///
    /// [`Error::Template`] when `name` is not `[a-z0-9._-]+` or `dir` is not a root
    /// filesystem.
    pub fn from_rootfs(name: &str, dir: &Path) -> Result<Template> {
        let bad = |reason: String| Error::Template {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return Err(bad("name must be 1 to 64 characters of [a-z0-9._-]".into()));
        }
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| bad(format!("root directory {}: {e}", dir.display())))?;
        if !dir.is_dir() {
            return Err(bad(format!("{} is not a directory", dir.display())));
        }
        if std::fs::symlink_metadata(dir.join("bin")).is_err() {
            return Err(bad(format!(
                "{} has no bin/: not a root filesystem",
                dir.display()
            )));
        }
        Ok(Template {
            name: name.to_owned(),
            layers: vec![TemplateLayer::single("/", dir)],
        })
    }
}

fn mkdir(p: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir_all(p).map_err(|e| Error::CreateDir(p.to_path_buf(), e))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::Chown(p.to_path_buf(), e))
}

fn write(p: &Path, body: &str, mode: u32) -> Result<()> {
    std::fs::write(p, body).map_err(|e| Error::WriteFile(p.to_path_buf(), e))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::Chown(p.to_path_buf(), e))
}

fn link(to: &Path, at: &Path) -> Result<()> {
    symlink(to, at).map_err(|e| Error::Symlink(at.to_path_buf(), e))
}

/// Builds the base root in a temporary directory and renames it into place, so concurrent
/// first uses never see a half-built template.
fn build_base(data_dir: &Path, dir: &Path, host_root: &Path) -> Result<()> {
    let templates = data_dir.join("templates");
    mkdir(&templates, 0o755)?;
    let tmp = templates.join(format!(".base-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let root = tmp.join("root");
    mkdir(&root, 0o755)?;
    populate_base_root(&root, host_root)?;
    populate_usr_extra(&tmp.join(USR_EXTRA), host_root)?;
    write(&tmp.join("version"), BASE_VERSION, 0o644)?;
    // Replace an older version; if another process won the race, use theirs.
    if dir.exists()
        && std::fs::read_to_string(dir.join("version")).ok().as_deref() != Some(BASE_VERSION)
    {
        let old = templates.join(format!(".base-old-{}", std::process::id()));
        let _ = std::fs::rename(dir, &old);
        // Running sandboxes may still use the old root as their lower layer (renaming is
        // harmless to them, deleting is not): delete it only when no sandbox exists.
        let idle = std::fs::read_dir(data_dir.join("sandboxes"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true);
        if idle {
            let _ = std::fs::remove_dir_all(&old);
        }
    }
    match std::fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.join("version").exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => Err(Error::CreateDir(dir.to_path_buf(), e)),
    }
}

/// The generated root: mount points, symlinks mirroring the host's usr-merge, `/etc`,
/// `/home/user`, `/root`, `/tmp`, `/var`.
pub(crate) fn populate_base_root(root: &Path, host_root: &Path) -> Result<()> {
    for (d, mode) in [
        ("usr", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("run", 0o755),
        ("run/lock", 0o1777),
        ("mnt", 0o755),
        ("media", 0o755),
        ("opt", 0o755),
        ("srv", 0o755),
        ("root", 0o700),
        ("home", 0o755),
        ("home/user", 0o755),
        ("var", 0o755),
        ("var/tmp", 0o1777),
        ("var/log", 0o755),
        ("var/cache", 0o755),
        ("var/lib", 0o755),
        ("var/spool", 0o755),
        ("var/mail", 0o2775),
        ("code", 0o777),
    ] {
        mkdir(&root.join(d), mode)?;
    }
    link(Path::new("/run"), &root.join("var/run"))?;
    link(Path::new("/run/lock"), &root.join("var/lock"))?;
    for name in HOST_SYSTEM_DIRS {
        let host = host_root.join(name);
        match std::fs::symlink_metadata(&host) {
            Ok(md) if md.file_type().is_symlink() => {
                let to =
                    std::fs::read_link(&host).map_err(|e| Error::CopyHostFile(host.clone(), e))?;
                link(&to, &root.join(name))?;
            }
            Ok(md) if md.is_dir() => mkdir(&root.join(name), 0o755)?,
            _ => {}
        }
    }
    let etc = root.join("etc");
    mkdir(&etc, 0o755)?;
    populate_etc(&host_root.join("etc"), host_root, &etc)?;
    // `user`'s home: the skeleton dotfiles, owned by 1000:1000.
    let home = root.join("home/user");
    let skel = host_root.join("etc/skel");
    if skel.is_dir() {
        copy_tree(&skel, &home)?;
    }
    if nix::unistd::geteuid().is_root() {
        chown_tree(&home, 1000, 1000)?;
    }
    Ok(())
}

/// `local/bin/python` → `/usr/bin/python3` where the host has `python3` but no `python`, as
/// E2B's base image has; nothing (and no directory) otherwise.
fn populate_usr_extra(dir: &Path, host_root: &Path) -> Result<()> {
    let has = |p: &str| std::fs::symlink_metadata(host_root.join(p)).is_ok();
    if has("usr/bin/python3") && !has("usr/bin/python") && !has("usr/local/bin/python") {
        mkdir(&dir.join("local/bin"), 0o755)?;
        link(Path::new("/usr/bin/python3"), &dir.join("local/bin/python"))?;
    }
    Ok(())
}

fn populate_etc(host_etc: &Path, host_root: &Path, etc: &Path) -> Result<()> {
    write(
        &etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000:user:/home/user:/bin/bash\n",
        0o644,
    )?;
    let sudo = host_root.join("usr/bin/sudo").exists();
    let group = if sudo {
        "root:x:0:\nsudo:x:27:user\nuser:x:1000:\n"
    } else {
        "root:x:0:\nuser:x:1000:\n"
    };
    write(&etc.join("group"), group, 0o644)?;
    // No password for either (`*`), but an entry: PAM's account check (sudo's too) refuses
    // a user without one ("account validation failure, is your account locked?").
    write(
        &etc.join("shadow"),
        "root:*:19000:0:99999:7:::\nuser:*:19000:0:99999:7:::\n",
        0o600,
    )?;
    write(&etc.join("hostname"), "sandbox\n", 0o644)?;
    write(
        &etc.join("hosts"),
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        0o644,
    )?;
    write(
        &etc.join("nsswitch.conf"),
        "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n\
         protocols: files\nservices: files\nethers: files\nrpc: files\n",
        0o644,
    )?;
    link(Path::new("../proc/self/mounts"), &etc.join("mtab"))?;
    for name in ETC_COPIED {
        let src = host_etc.join(name);
        let Ok(md) = std::fs::symlink_metadata(&src) else {
            continue;
        };
        let dst = etc.join(name);
        if ETC_FOLLOWED.contains(name) {
            // Often a symlink into /run (systemd-resolved), which the sandbox does not have.
            let body = std::fs::read(&src).unwrap_or_default();
            std::fs::write(&dst, body).map_err(|e| Error::WriteFile(dst.clone(), e))?;
        } else if md.file_type().is_symlink() {
            let to = std::fs::read_link(&src).map_err(|e| Error::CopyHostFile(src.clone(), e))?;
            link(&to, &dst)?;
        } else if md.is_dir() {
            copy_tree(&src, &dst)?;
        } else if md.is_file() {
            copy_file(&src, &dst, md.permissions().mode())?;
        }
    }
    if sudo {
        write(
            &etc.join("sudoers"),
            "Defaults env_reset\nDefaults secure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\n\
             root ALL=(ALL:ALL) ALL\nuser ALL=(ALL:ALL) NOPASSWD: ALL\n",
            0o440,
        )?;
        mkdir(&etc.join("sudoers.d"), 0o755)?;
    }
    Ok(())
}

fn copy_file(src: &Path, dst: &Path, mode: u32) -> Result<()> {
    match std::fs::copy(src, dst) {
        Ok(_) => {}
        // Rootless mode: a host file the invoking user cannot read (e.g. the 0600
        // /etc/security/opasswd) must not reach a sandbox anyway.
        Err(e)
            if e.kind() == std::io::ErrorKind::PermissionDenied
                && (!nix::unistd::geteuid().is_root()
                    || crate::isolation::rootless::in_user_namespace()) =>
        {
            let _ = std::fs::remove_file(dst);
            return Ok(());
        }
        Err(e) => return Err(Error::CopyHostFile(src.to_path_buf(), e)),
    }
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| Error::Chown(dst.to_path_buf(), e))
}

/// Copies a directory tree: directories, regular files (with their modes) and symlinks (as
/// symlinks); skips [`ETC_EXCLUDED`] names, sockets, fifos and devices.
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let md = std::fs::metadata(src).map_err(|e| Error::CopyHostFile(src.to_path_buf(), e))?;
    mkdir(dst, md.permissions().mode() & 0o7777)?;
    let entries = std::fs::read_dir(src).map_err(|e| Error::CopyHostFile(src.to_path_buf(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::CopyHostFile(src.to_path_buf(), e))?;
        let name = entry.file_name();
        if ETC_EXCLUDED.iter().any(|x| name == *x) {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        let ft = entry
            .file_type()
            .map_err(|e| Error::CopyHostFile(from.clone(), e))?;
        if ft.is_symlink() {
            let target =
                std::fs::read_link(&from).map_err(|e| Error::CopyHostFile(from.clone(), e))?;
            link(&target, &to)?;
        } else if ft.is_dir() {
            copy_tree(&from, &to)?;
        } else if ft.is_file() {
            let mode = entry
                .metadata()
                .map_err(|e| Error::CopyHostFile(from.clone(), e))?
                .permissions()
                .mode();
            copy_file(&from, &to, mode)?;
        }
    }
    Ok(())
}

fn chown_tree(p: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        .map_err(|e| Error::Chown(p.to_path_buf(), e))?;
    let md = std::fs::symlink_metadata(p).map_err(|e| Error::Chown(p.to_path_buf(), e))?;
    if md.is_dir() {
        for entry in std::fs::read_dir(p).map_err(|e| Error::Chown(p.to_path_buf(), e))? {
            let entry = entry.map_err(|e| Error::Chown(p.to_path_buf(), e))?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_root_has_users_and_no_secrets() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let root = dir.path().join("root");
        mkdir(&root, 0o755).unwrap_or_else(|e| panic!("{e}"));
        populate_base_root(&root, Path::new("/")).unwrap_or_else(|e| panic!("{e}"));
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
        assert_eq!(
            passwd,
            "root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000:user:/home/user:/bin/bash\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("etc/shadow")).unwrap_or_default(),
            "root:*:19000:0:99999:7:::\nuser:*:19000:0:99999:7:::\n"
        );
        for secret in [
            "etc/gshadow",
            "etc/ssh",
            "etc/machine-id",
            "etc/ssl/private",
        ] {
            assert!(
                std::fs::symlink_metadata(root.join(secret)).is_err(),
                "{secret} must not be in the template"
            );
        }
        use std::os::unix::fs::MetadataExt;
        let home = std::fs::metadata(root.join("home/user")).unwrap_or_else(|e| panic!("{e}"));
        if nix::unistd::geteuid().is_root() {
            assert_eq!((home.uid(), home.gid()), (1000, 1000));
        }
        let tmp = std::fs::metadata(root.join("tmp")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    }

    #[test]
    fn base_lacks_what_the_host_does_not_have() {
        let host = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        for (dir, cmd) in [
            ("usr/bin", "python3"),
            ("usr/local/bin", "node"),
            ("bin", "sudo"),
        ] {
            std::fs::create_dir_all(host.path().join(dir)).unwrap_or_default();
            std::fs::write(host.path().join(dir).join(cmd), "").unwrap_or_default();
        }
        assert_eq!(base_lacks(host.path()), ["pip", "npm", "git", "curl"]);
    }

    #[test]
    fn from_rootfs_validates() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let err = Template::from_rootfs("x", dir.path()).map(|_| ());
        assert!(matches!(err, Err(Error::Template { .. })));
        std::fs::create_dir(dir.path().join("bin")).unwrap_or_default();
        let t = Template::from_rootfs("deb12", dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.layers.len(), 1);
        assert_eq!(t.layers[0].target, PathBuf::from("/"));
        assert!(matches!(
            Template::from_rootfs("Bad/Name", dir.path()),
            Err(Error::Template { .. })
        ));
    }

    /// A fake host that is not usr-merged, with secrets and sudo: layers, symlinks, the
    /// `/etc` filter and the sudoers entry.
    #[test]
    fn base_from_a_fake_host_filters_etc_and_maps_layers() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let host = tmp.path().join("host");
        let data = tmp.path().join("data");
        let mk = |p: &str| std::fs::create_dir_all(host.join(p)).unwrap_or_default();
        let put = |p: &str, body: &str| std::fs::write(host.join(p), body).unwrap_or_default();
        for d in [
            "usr/bin",
            "usr/lib",
            "bin",
            "sbin",
            "etc/ssl/private",
            "etc/ssl/certs",
            "etc/ssh",
            "etc/skel",
            "run",
        ] {
            mk(d);
        }
        symlink("usr/lib", host.join("lib")).unwrap_or_default();
        put("usr/bin/sudo", "");
        put("etc/shadow", "root:$6$secret");
        put(
            "etc/passwd",
            "root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n",
        );
        put("etc/machine-id", "0123");
        put("etc/ssh/ssh_host_ed25519_key", "KEY");
        put("etc/ssl/private/server.key", "KEY");
        put("etc/ssl/certs/ca.pem", "CERT");
        put("etc/skel/.bashrc", "# rc");
        put("run/resolv.conf", "nameserver 10.0.0.53\n");
        symlink("../run/resolv.conf", host.join("etc/resolv.conf")).unwrap_or_default();
        put("etc/hostname", "hostbox");

        let t = Template::base_from_host(&data, &host).unwrap_or_else(|e| panic!("{e}"));
        let targets: Vec<_> = t
            .layers
            .iter()
            .map(|l| l.target.display().to_string())
            .collect();
        assert_eq!(targets, ["/", "/usr", "/bin", "/sbin"]);
        assert_eq!(t.layers[2].lowers, [host.join("bin")]);
        let root = &t.layers[0].lowers[0];
        let read =
            |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| format!("<{e}>"));
        assert_eq!(
            std::fs::read_link(root.join("lib")).unwrap_or_default(),
            PathBuf::from("usr/lib")
        );
        assert!(root.join("bin").is_dir() && !root.join("bin").is_symlink());
        assert!(!read("etc/passwd").contains("alice"));
        assert_eq!(read("etc/hostname"), "sandbox\n");
        assert_eq!(read("etc/resolv.conf"), "nameserver 10.0.0.53\n");
        assert_eq!(read("etc/ssl/certs/ca.pem"), "CERT");
        assert_eq!(read("home/user/.bashrc"), "# rc");
        assert!(read("etc/sudoers").contains("user ALL=(ALL:ALL) NOPASSWD: ALL"));
        assert!(read("etc/group").contains("sudo:x:27:user"));
        assert!(!read("etc/shadow").contains("secret"));
        for secret in ["etc/machine-id", "etc/ssh", "etc/ssl/private"] {
            assert!(
                std::fs::symlink_metadata(root.join(secret)).is_err(),
                "{secret} leaked"
            );
        }
        // Built once: a second call reuses it.
        let again = Template::base_from_host(&data, &host).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, t);
    }
}
