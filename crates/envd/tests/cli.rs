//! The binary's flags and failure phases.

use std::process::Command;

#[test]
fn version_flag_prints_the_envd_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_envd"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "0.6.13\n");
}

#[test]
fn busy_port_fails_in_the_bind_phase() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_envd"))
        .args(["--listen", "127.0.0.1", "--port", &port])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("envd: bind failed: 127.0.0.1:{port}: ")),
        "{err}"
    );
}
