//! Shared test support: runs the real `envd` binary on an ephemeral port.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

/// A running envd; killed on drop.
pub struct Envd {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Its pid.
    pub pid: u32,
    _bin_dir: Option<tempfile::TempDir>,
}

impl Envd {
    /// Starts envd with extra arguments.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(
            std::path::Path::new(env!("CARGO_BIN_EXE_envd")),
            args,
            |_| {},
        )
    }

    /// Starts envd as another user (root only). The binary is copied to a world-readable
    /// directory first: the build tree may sit under a home only root can enter.
    pub fn start_as(uid: u32, gid: u32, args: &[&str]) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        use std::os::unix::process::CommandExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.path().join("envd");
        std::fs::copy(env!("CARGO_BIN_EXE_envd"), &bin).expect("copy envd");
        let mut envd = Self::start_with(&bin, args, |c| {
            c.uid(uid).gid(gid).current_dir("/");
        });
        envd._bin_dir = Some(dir);
        envd
    }

    fn start_with(bin: &std::path::Path, args: &[&str], tweak: impl Fn(&mut Command)) -> Self {
        // A freshly copied binary can be ETXTBSY for a moment: a process another test forks
        // meanwhile inherits the copy's write descriptor until it execs.
        let mut attempts = 0;
        let mut child = loop {
            let mut cmd = Command::new(bin);
            cmd.args(["--port", "0", "--listen", "127.0.0.1"])
                .args(args);
            tweak(&mut cmd);
            match cmd
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
            {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 100 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                spawned => break spawned.expect("spawn envd"),
            }
        };
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read address line");
        let addr = line
            .trim()
            .strip_prefix("envd listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        let pid = child.id();
        Self {
            child,
            base: format!("http://{addr}"),
            pid,
            _bin_dir: None,
        }
    }

    /// Resident set size of the envd process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

impl Drop for Envd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reqwest client with e2b-envd's TLS setup (the one place a rustls provider is chosen).
pub fn http() -> reqwest::Client {
    e2b_envd::default_http_client().unwrap()
}

/// The name of the user the tests run as.
pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .expect("the tests' user has a passwd entry")
        .name
}

/// Whether the tests run as root (CI does).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Ensures a local test user exists (root only) and returns (name, uid, gid, home).
pub fn test_user() -> (String, u32, u32, String) {
    let name = "envdtest";
    let find = || {
        std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (
                    name.to_owned(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                    f[5].to_owned(),
                )
            })
    };
    if let Some(u) = find() {
        return u;
    }
    let st = Command::new("useradd")
        .args(["-m", "-s", "/bin/bash", name])
        .status()
        .expect("useradd");
    // Another test may have created it concurrently.
    assert!(st.success() || find().is_some(), "useradd failed: {st}");
    find().expect("user after useradd")
}
