//! The `embed` feature: this test binary embeds the server without calling
//! `run_role_if_requested` in any `main` of ours, so the runtime re-executes *this binary* as
//! its helper and as envd, and the pre-main hook must take over. Needs root: ignored unless run with `-- --ignored` as root.
#![cfg(feature = "embed")]

mod support;

use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn an_embedding_binary_serves_the_helper_and_envd_roles() {
    let dir = tempfile::tempdir().unwrap();
    // No helper_exe: the default is the current executable, i.e. this test binary.
    let server = e2b_local::Server::builder()
        .data_dir(dir.path())
        .listen("127.0.0.1:0")
        .cgroup_parent(support::CGROUP_PARENT)
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting the server (needs root): {e}"));
    let http = support::http();
    let r = http
        .post(format!("{}/v2/sandboxes", server.api_url()))
        .header("x-api-key", server.api_key())
        .json(&serde_json::json!({"templateID": "base"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let sb: serde_json::Value = r.json().await.unwrap();
    assert_eq!(sb["envdVersion"], envd::ENVD_VERSION);
    let id = sb["sandboxID"].as_str().unwrap();
    let r = http
        .get(format!("{}/health", server.sandbox_url()))
        .header("E2b-Sandbox-Id", id)
        .header("E2b-Sandbox-Port", "49983")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    server.shutdown().await;
    assert!(!dir.path().join("sandboxes").join(id).exists());
}
