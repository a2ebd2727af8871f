//! The mount namespace sandboxes are cloned from.
//!
//! `clone(CLONE_NEWNS)` copies every mount of the caller's namespace, and the sandbox then
//! makes them private and detaches them again at `pivot_root`: O(mounts) twice per create.
//! Each sandbox's disk is a mount in the host's namespace (`sandboxes/<id>/disk`), so with
//! 1,000 sandboxes alive a create copied and detached 1,000 disks it never uses: with
//! `perf`, 7% of the host's CPU during creates went there, and creates were 1.5× slower than
//! on an empty host.
//!
//! So the `__sandbox-init` helper clones from this namespace instead: a private copy of the
//! host's, made once per runtime, in which nothing is mounted below `sandboxes/` or
//! `disks/`. The helper starts in the host's namespace, takes detached copies of the mounts
//! its sandbox needs (`open_tree(OPEN_TREE_CLONE)`: its disk and its volumes), joins this
//! namespace, clones, and attaches them in the sandbox's own namespace
//! ([`mounts::Carried`](super::mounts::Carried)). Mounts made on the host after the runtime
//! started are not visible here; sandboxes reach the host's files only through their
//! template's directories, which are plain directories of the data directory.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::{MntFlags, MsFlags};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::CloneFlags;

/// argv\[1\] of the helper that makes the namespace; argv\[2\] is the data directory.
pub(super) const SPAWN_NS_ROLE: &str = "__spawn-ns";

/// What the helper prints once the namespace is ready.
const READY: &str = "READY";

/// How long the helper may take to say [`READY`].
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The data directory's subdirectories whose mounts (sandbox disks, ready disks, volumes)
/// stay out: sandboxes get theirs carried in, and a copy held here would keep a deleted
/// volume's image and loop device busy until the server exits.
const KEPT_OUT: &[&str] = &["sandboxes", "disks", "volumes"];

/// The namespace, kept alive by a descriptor of this process.
#[derive(Debug)]
pub(super) struct SpawnNamespace {
    fd: OwnedFd,
}

impl SpawnNamespace {
    /// Makes the namespace with the [`SPAWN_NS_ROLE`] helper: it unshares a mount
    /// namespace, makes it private, detaches the sandbox, ready and volume disks
    /// ([`mounts_below`]), says it is ready and waits; this process opens the namespace and
    /// ends the helper.
    ///
    /// # Errors
    ///
    /// What failed, as text (the runtime then clones from its own namespace, as before),
    /// including a helper executable that does not serve the role: whatever it printed, or
    /// nothing within 10 s.
    pub(super) fn new(helper_exe: &Path, data_dir: &Path) -> Result<Self, String> {
        let data_dir = std::fs::canonicalize(data_dir)
            .map_err(|e| format!("resolving {}: {e}", data_dir.display()))?;
        let mut child = Command::new(helper_exe)
            .arg(SPAWN_NS_ROLE)
            .arg(&data_dir)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", helper_exe.display()))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            // A helper executable that does not serve the role (a program embedding the
            // runtime without its pre-main hook) may never print: wait a bounded time.
            let mut fds = [PollFd::new(out.as_fd(), PollFlags::POLLIN)];
            let waited = u16::try_from(READY_TIMEOUT.as_millis()).unwrap_or(u16::MAX);
            if matches!(poll(&mut fds, PollTimeout::from(waited)), Ok(n) if n > 0) {
                let _ = BufReader::new(out).read_line(&mut line);
            } else {
                line = format!("nothing in {} s", READY_TIMEOUT.as_secs());
            }
        }
        let opened = if line.trim_end() == READY {
            std::fs::File::open(format!("/proc/{}/ns/mnt", child.id()))
                .map(OwnedFd::from)
                .map_err(|e| format!("opening the namespace: {e}"))
        } else {
            // Ended first, so that reading what it said on stderr cannot block.
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            if let Some(e) = child.stderr.take() {
                let _ = BufReader::new(e).read_line(&mut err);
            }
            Err(format!(
                "the {SPAWN_NS_ROLE} helper said {:?}{}",
                line.trim_end(),
                if err.is_empty() {
                    String::new()
                } else {
                    format!(": {}", err.trim_end())
                }
            ))
        };
        // The namespace lives on in `fd`.
        drop(child.stdin.take());
        let _ = child.kill();
        let _ = child.wait();
        let fd = opened?;
        let ours = std::fs::metadata("/proc/self/ns/mnt").map(|m| m.ino());
        let theirs = std::fs::File::from(fd.try_clone().map_err(|e| e.to_string())?)
            .metadata()
            .map(|m| m.ino());
        match (ours, theirs) {
            (Ok(a), Ok(b)) if a != b => Ok(SpawnNamespace { fd }),
            _ => Err("the helper's namespace is this process's".into()),
        }
    }

    /// The path the `__sandbox-init` helper, a child of this process, opens to join the
    /// namespace.
    pub(super) fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.fd.as_raw_fd()
        ))
    }
}

/// The [`SPAWN_NS_ROLE`] helper: see [`SpawnNamespace::new`]. Exits 0 once its stdin is
/// closed.
pub(super) fn spawn_ns_helper() -> i32 {
    let fail = |what: String| {
        eprintln!("{what}");
        1
    };
    let Some(data_dir) = std::env::args_os().nth(2).map(PathBuf::from) else {
        return fail("usage: __spawn-ns DATA_DIR".into());
    };
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWNS) {
        return fail(format!("unshare(CLONE_NEWNS): {e}"));
    }
    // Private first: from here on no mount of the host's reaches this namespace, and nothing
    // done here reaches the host.
    if let Err(e) = nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    ) {
        return fail(format!("making the mount tree private: {e}"));
    }
    let table = match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(t) => t,
        Err(e) => return fail(format!("reading /proc/self/mountinfo: {e}")),
    };
    for point in mounts_below(&table, &data_dir) {
        match nix::mount::umount2(&point, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return fail(format!("detaching {}: {e}", point.display())),
        }
    }
    println!("{READY}");
    // Wait for the server to have opened the namespace: it closes our stdin.
    let _ = std::io::stdin().lines().count();
    0
}

/// The mount points of `mountinfo` to detach, deepest first (a mount inside another goes
/// with it anyway): those below `data_dir`'s [`KEPT_OUT`] directories, and the sandbox,
/// ready and volume disks of other servers' data directories (`…/sandboxes/<id>/disk`,
/// `…/disks/ready/<n>/disk`, `…/volumes/<id>/disk`), which would otherwise be copied at
/// each create as well.
fn mounts_below(mountinfo: &str, data_dir: &Path) -> Vec<PathBuf> {
    let roots: Vec<PathBuf> = KEPT_OUT.iter().map(|d| data_dir.join(d)).collect();
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| roots.iter().any(|r| p.starts_with(r) && p != r) || is_a_servers_disk(p))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points
}

/// Whether `point` is where e2b-local mounts a sandbox's, a ready or a volume's disk:
/// `…/sandboxes/<id>/disk`, `…/volumes/<id>/disk` or `…/disks/ready/<n>/disk`.
fn is_a_servers_disk(point: &Path) -> bool {
    let names: Vec<&std::ffi::OsStr> = point.iter().collect();
    match names.as_slice() {
        [.., parent, _, last]
            if *last == "disk" && (*parent == "sandboxes" || *parent == "volumes") =>
        {
            true
        }
        [.., disks, ready, _, last] => *last == "disk" && *ready == "ready" && *disks == "disks",
        _ => false,
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_ready_and_volume_disks_are_detached_deepest_first_and_nothing_else() {
        let table = "\
22 1 8:1 / / rw - ext4 /dev/vda rw
40 22 7:1 / /d\\040x/sandboxes/a/disk rw,nosuid,nodev - ext4 /dev/loop1 rw
41 22 7:2 / /d\\040x/disks/ready/1-2/disk rw - ext4 /dev/loop2 rw
42 40 0:5 / /d\\040x/sandboxes/a/disk/deeper rw - tmpfs tmpfs rw
43 22 7:3 / /d\\040x/volumes/v/disk rw - ext4 /dev/loop3 rw
44 22 0:6 / /d\\040x/sandboxes rw - tmpfs tmpfs rw
45 22 7:4 / /d\\040x/sandboxesX/b rw - ext4 /dev/loop4 rw
46 22 7:5 / /other/sandboxes/c/disk rw - ext4 /dev/loop5 rw
47 22 7:6 / /other/disks/ready/9-1/disk rw - ext4 /dev/loop6 rw
48 22 7:7 / /other/sandboxes/c/diskette rw - ext4 /dev/loop7 rw
49 22 7:8 / /other/volumes/v/disk rw - ext4 /dev/loop8 rw
50 22 7:9 / /d\\040x/volumes/w/disk rw - ext4 /dev/loop9 rw
51 22 7:9 / /other/volumes/v/disk/sub rw - ext4 /dev/loop9 rw
52 22 0:7 / /srv/data rw - ext4 /dev/vdb rw
";
        assert_eq!(
            mounts_below(table, Path::new("/d x")),
            [
                "/d x/disks/ready/1-2/disk",
                "/d x/sandboxes/a/disk/deeper",
                "/other/disks/ready/9-1/disk",
                "/d x/sandboxes/a/disk",
                "/d x/volumes/v/disk",
                "/other/sandboxes/c/disk",
                "/other/volumes/v/disk",
                "/d x/volumes/w/disk",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn a_helper_that_does_not_serve_the_role_is_an_error_not_a_hang() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let helper = |name: &str, body: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap_or_else(|e| panic!("{e}"));
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("{e}"));
            p
        };
        let err = |exe: PathBuf| match SpawnNamespace::new(&exe, dir.path()) {
            Ok(_) => panic!("{} made a namespace", exe.display()),
            Err(e) => e,
        };
        assert_eq!(
            err(helper(
                "other",
                "echo 'some other program' >&2; echo usage; exit 3"
            )),
            "the __spawn-ns helper said \"usage\": some other program"
        );
        let started = std::time::Instant::now();
        assert_eq!(
            err(helper("silent", "exec sleep 60")),
            "the __spawn-ns helper said \"nothing in 10 s\""
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape(r"/a\040b\011c\012d\134e"), "/a b\tc\nd\\e");
        assert_eq!(unescape(r"/plain\09"), r"/plain\09");
        assert_eq!(unescape("/end\\"), "/end\\");
    }
}
