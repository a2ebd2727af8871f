//! Sandbox networking, end to end against a fake internet (`fake_internet`): every packet
//! stays in namespaces these tests make. Needs root: run with
//! `cargo test -p e2b-local --test network -- --ignored`.

mod fake_internet;
mod support;

use e2b_local::isolation::ExecOptions;
use e2b_local::network::NetworkOptions;
use fake_internet::{DNS, FakeInternet, SERVER_A, SERVER_B};
use support::TestServer;

/// Starts a server with networking whose uplink is the fake internet.
async fn start() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let server = e2b_local::Server::builder()
        .data_dir(dir.path())
        .listen("127.0.0.1:0")
        .helper_exe(env!("CARGO_BIN_EXE_e2b-local"))
        .cgroup_parent(support::CGROUP_PARENT)
        .network(NetworkOptions {
            pool: e2b_local::network::DEFAULT_POOL.parse().unwrap(),
            dns_upstreams: vec![fake_internet::at(DNS, 53)],
        })
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting the server (needs root): {e}"));
    TestServer {
        url: server.api_url(),
        key: server.api_key().to_owned(),
        server: Some(server),
        http: support::http(),
        dir,
    }
}

/// Runs `bash -c script` in sandbox `id` as `opts` says; returns (exit code, stdout+stderr).
async fn sh(t: &TestServer, id: &str, script: &str, opts: ExecOptions) -> (i32, String) {
    let live = t.server().manager().get(id).unwrap();
    let script = format!("exec 2>&1\n{script}");
    let out = tokio::task::spawn_blocking(move || {
        live.handle.exec_in(&["/bin/bash", "-c", &script], &opts)
    })
    .await
    .unwrap()
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn id_of(sb: &serde_json::Value) -> String {
    sb["sandboxID"].as_str().unwrap().to_owned()
}

/// `curl` of `url` with a short timeout; prints the body, or `curl: (N)` on failure.
fn curl(url: &str) -> String {
    format!("curl -sS --max-time 5 {url}")
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn a_sandbox_reaches_the_internet_by_address_as_root_and_user() {
    let net = FakeInternet::new();
    let _servers = net.serve();
    net.block_on(async {
        let t = start().await;
        let sb = t.create(r#"{"templateID":"base"}"#).await;
        let id = id_of(&sb);
        for opts in [ExecOptions::default(), ExecOptions::user()] {
            let (code, out) = sh(&t, &id, &curl(&format!("http://{SERVER_A}/hello")), opts).await;
            assert_eq!(code, 0, "{out}");
            let body: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(body["path"], "/hello");
            assert_eq!(body["host"], SERVER_A.to_string());
        }
        // Raw TCP too (the echo server), not only HTTP.
        let (code, out) = sh(
            &t,
            &id,
            &format!("exec 3<>/dev/tcp/{SERVER_B}/7; echo ping >&3; head -n1 <&3"),
            ExecOptions::default(),
        )
        .await;
        assert_eq!((code, out.as_str()), (0, "ping\n"));
        t.shutdown().await;
    });
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn allow_internet_access_false_denies_every_address() {
    let net = FakeInternet::new();
    let _servers = net.serve();
    net.block_on(async {
        let t = start().await;
        let sb = t
            .create(r#"{"templateID":"base","allow_internet_access":false}"#)
            .await;
        let id = id_of(&sb);
        let (code, out) = sh(
            &t,
            &id,
            &curl(&format!("http://{SERVER_A}/")),
            ExecOptions::default(),
        )
        .await;
        // Refused at once (a TCP reset from the firewall), not left to time out.
        assert_eq!(code, 7, "{out}");
        assert!(
            out.contains(&format!("Failed to connect to {SERVER_A} port 80")),
            "{out}"
        );
        // The sandbox next to it is not affected.
        let open = id_of(&t.create(r#"{"templateID":"base"}"#).await);
        let (code, out) = sh(
            &t,
            &open,
            &curl(&format!("http://{SERVER_A}/")),
            ExecOptions::default(),
        )
        .await;
        assert_eq!(code, 0, "{out}");
        t.shutdown().await;
    });
}
