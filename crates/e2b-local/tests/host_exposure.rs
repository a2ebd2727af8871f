//! What the host exposes of a sandbox's files and of the server's secrets, tried from the
//! attacker's side against `e2b-local serve` run as a new user would run it: a data directory
//! made by `mkdir` with a permissive mode, under a umask of `000`.
//!
//! - Root in a sandbox writes a setuid-root copy of bash into its root filesystem; a host user
//!   other than the server's must not be able to reach it, and even when an administrator opens
//!   the data directory up, running it must not give euid 0 (the disk is `nosuid,nodev`).
//! - The database holding the API key and the server secret is readable by its owner only.
//!
//! Needs root (it runs the server and switches to the host user `nobody`).

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;

/// `nobody`: a host user with no business in the data directory.
const NOBODY: &str = "65534";

/// Stops the server when the test ends (SIGTERM: it kills its sandboxes on the way out).
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Runs `cmd args…` as `nobody`; returns (exit status success, stdout, stderr).
///
/// setpriv keeps its capabilities until its own `execve`, so the path lookup of the command it
/// runs would still bypass permissions: a shell, already unprivileged, runs the command.
fn as_nobody(cmd: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
            "/bin/sh",
            "-c",
            r#"exec "$0" "$@""#,
        ])
        .arg(cmd)
        .args(args)
        .output()
        .expect("setpriv (util-linux)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One Connect JSON envelope.
fn envelope(msg: &serde_json::Value) -> Vec<u8> {
    let body = serde_json::to_vec(msg).unwrap();
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: runs e2b-local serve and switches to the host user nobody"]
async fn a_setuid_binary_written_in_a_sandbox_gives_no_host_user_root() {
    // A data directory as a careless admin would make it: world-writable, under umask 000.
    let parent = tempfile::tempdir().unwrap();
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = parent.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"umask 000; exec "$0" serve --listen "$1" --data-dir "$2" --cgroup-parent e2b-local-exposure-tests"#)
        .arg(env!("CARGO_BIN_EXE_e2b-local"))
        .arg(format!("127.0.0.1:{port}"))
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _serve = Serve(child);
    let mut key = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(k) = line.strip_prefix("export E2B_API_KEY=") {
            key = Some(k.to_owned());
        }
        if line.starts_with("export E2B_DOMAIN=") {
            break;
        }
    }
    let key = key.expect("serve printed no E2B_API_KEY");
    let api = format!("http://127.0.0.1:{port}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();

    // The server's secrets: owner-only, whatever the umask.
    assert_eq!(mode(&data), 0o700, "the data directory");
    for file in ["state.db", "state.db-wal", "state.db-shm"] {
        let path = data.join(file);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{file}");
        }
    }
    let (ok, _, err) = as_nobody(Path::new("cat"), &[data.join("state.db").to_str().unwrap()]);
    assert!(!ok && err.contains("Permission denied"), "{err}");

    let created: serde_json::Value = http
        .post(format!("{api}/sandboxes"))
        .header("x-api-key", &key)
        .json(&serde_json::json!({"templateID": "base"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["sandboxID"].as_str().expect("sandboxID").to_owned();
    let token = created["envdAccessToken"].as_str().unwrap_or("").to_owned();

    // Root in the sandbox plants a setuid-root shell in its root filesystem.
    let root = base64::engine::general_purpose::STANDARD.encode("root:");
    let resp = http
        .post(format!("{api}/process.Process/Start"))
        .header("e2b-sandbox-id", &id)
        .header("e2b-sandbox-port", "49983")
        .header("x-access-token", &token)
        .header("authorization", format!("Basic {root}"))
        .header("content-type", "application/connect+json")
        .body(envelope(&serde_json::json!({"process": {
            "cmd": "/bin/bash",
            "args": ["-c", "cp /bin/bash /rb && chmod 4755 /rb && stat -c %a /rb"]
        }})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    let stream = String::from_utf8_lossy(&body);
    let stdout = base64::engine::general_purpose::STANDARD.encode("4755\n");
    assert!(stream.contains(&stdout), "the plant failed: {stream}");

    let planted = data.join("sandboxes").join(&id).join("disk/upper/rb");
    let meta = std::fs::metadata(&planted).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid()),
        (0o4755, 0),
        "{}",
        planted.display()
    );

    // Another host user cannot reach it.
    let (ok, out, err) = as_nobody(&planted, &["-p", "-c", "id -u"]);
    assert!(!ok && out.is_empty(), "nobody ran it: {out} {err}");
    assert!(err.contains("Permission denied"), "{err}");

    // The disk is nosuid,nodev: even with the data directory opened up, running it gives no root.
    let flags = nix::sys::statvfs::statvfs(&planted).unwrap().flags();
    assert!(
        flags.contains(nix::sys::statvfs::FsFlags::ST_NOSUID),
        "{flags:?}"
    );
    assert!(
        flags.contains(nix::sys::statvfs::FsFlags::ST_NODEV),
        "{flags:?}"
    );
    // (The disk's root is 0700 too, like the data directory.)
    let disk = data.join("sandboxes").join(&id).join("disk");
    assert_eq!(mode(&disk), 0o700);
    for d in [&data, &disk] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (ok, out, err) = as_nobody(&planted, &["-p", "-c", "id -u"]);
    for d in [&data, &disk] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    assert!(ok, "{err}");
    assert_eq!(out, format!("{NOBODY}\n"));
}
