//! The `e2b-local` command line: `key`, `template list|add`, `serve` (the exports it prints),
//! `sandbox list|kill` against a running server, and usage errors. `serve` needs root
//! (CI runs as root).

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_e2b-local");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn key_is_created_once_and_printed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let a = run(&["key", "--data-dir", d]);
    assert!(a.status.success(), "{}", text(&a.stderr));
    let key = text(&a.stdout);
    let key = key.trim_end();
    assert!(key.starts_with("e2b_") && key.len() == 44, "{key}");
    assert!(key[4..].bytes().all(|b| b.is_ascii_hexdigit()));
    let b = run(&["key", "--data-dir", d]);
    assert_eq!(text(&b.stdout).trim_end(), key);
}

#[test]
fn templates_are_listed_and_added() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run(&["template", "list", "--data-dir", d]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!(
            "NAME                     ID                     STATUS     SOURCE\n\
             base                     base                   ready      host /usr, /bin, /lib*; filtered /etc\n\
             layers: 0 MiB in {d}/layers\n"
        )
    );
    // Not a root filesystem: the error names it.
    let empty = tempfile::tempdir().unwrap();
    let out = run(&[
        "template",
        "add",
        "mini",
        "--rootfs",
        empty.path().to_str().unwrap(),
        "--data-dir",
        d,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("e2b-local: template add failed: ") && err.contains("has no bin/"),
        "{err}"
    );
    let out = run(&["template", "add", "base", "--rootfs", "/", "--data-dir", d]);
    assert_eq!(
        text(&out.stderr),
        "e2b-local: template add failed: the name base is reserved\n"
    );
    // A directory with bin/ is accepted and listed.
    std::fs::create_dir(empty.path().join("bin")).unwrap();
    let root = std::fs::canonicalize(empty.path()).unwrap();
    let out = run(&[
        "template",
        "add",
        "mini",
        "--rootfs",
        root.to_str().unwrap(),
        "--data-dir",
        d,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("template mini -> {}\n", root.display())
    );
    let out = run(&["template", "list", "--data-dir", d]);
    assert!(
        text(&out.stdout).contains(&format!(
            "\nmini                     mini                   ready      {}\n",
            root.display()
        )),
        "{}",
        text(&out.stdout)
    );
    // Nothing to collect in a fresh data directory.
    let out = run(&["template", "gc", "--data-dir", d]);
    assert_eq!(text(&out.stdout), "removed 0 unused layers\n");
}

#[test]
fn usage_errors_exit_2() {
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("Usage: e2b-local <COMMAND>"));
    let out = run(&["sandbox", "nuke"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["serve", "--disk-mib", "8"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: invalid value '8' for '--disk-mib <DISK_MIB>': 8 MiB is too small for a disk: give at least 16 MiB, or 0 for none\n"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["serve", "--volume-mib", "15"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("error: invalid value '15' for '--volume-mib <VOLUME_MIB>': 15 MiB is too small for a volume: give at least 16 MiB\n"),
        "{}",
        text(&out.stderr)
    );
}

/// Kills the serve process when the test ends.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        // SIGTERM: the server kills its sandboxes on the way out.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs root: `serve` spawns sandboxes (namespaces, mounts, cgroups)"]
fn serve_prints_exports_and_sandbox_commands_use_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            d,
        ])
        .args([
            "--cgroup-parent",
            "e2b-local-cli-tests",
            "--network",
            "none",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let serve = Serve(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut exports = Vec::new();
    while exports.len() < 5 {
        let line = lines.next().expect("serve ended early").unwrap();
        if let Some(e) = line.strip_prefix("export ") {
            exports.push(e.to_owned());
        }
    }
    let key = text(&run(&["key", "--data-dir", d]).stdout)
        .trim_end()
        .to_owned();
    assert_eq!(
        exports,
        vec![
            format!("E2B_API_URL=http://127.0.0.1:{port}"),
            format!("E2B_SANDBOX_URL=http://127.0.0.1:{port}"),
            format!("E2B_API_KEY={key}"),
            format!("E2B_DOMAIN=localhost:{port}"),
            format!("E2B_VOLUME_API_URL=http://127.0.0.1:{port}"),
        ]
    );

    // Create one sandbox over REST with a plain HTTP/1.1 request.
    let api = format!("http://127.0.0.1:{port}");
    let body = r#"{"templateID":"base"}"#;
    let req = format!(
        "POST /sandboxes HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let start = Instant::now();
    let resp = loop {
        use std::io::{Read, Write};
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            break out;
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    let json = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let id = v["sandboxID"].as_str().unwrap().to_owned();

    let out = run(&["sandbox", "list", "--api-url", &api, "--data-dir", d]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    let mut rows = list.lines();
    assert_eq!(
        rows.next().unwrap(),
        "ID                     TEMPLATE     STATE    STARTED                    END"
    );
    let row = rows.next().unwrap();
    assert!(
        row.starts_with(&format!("{id:<22} base         running  ")),
        "{row}"
    );
    assert!(rows.next().is_none());

    let out = run(&["sandbox", "kill", &id, "--api-url", &api, "--data-dir", d]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("killed {id}\n"));
    let out = run(&["sandbox", "kill", &id, "--api-url", &api, "--data-dir", d]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "e2b-local: sandbox kill failed: 404: {{\"code\":404,\"message\":\"sandbox \\\"{id}\\\" doesn't exist or you don't have access to it\"}}\n"
        )
    );
    drop(serve);
    // No server: the error says so.
    let out = run(&["sandbox", "list", "--api-url", &api, "--data-dir", d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("(is `e2b-local serve` running?)"),
        "{}",
        text(&out.stderr)
    );
}
