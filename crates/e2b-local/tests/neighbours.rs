//! Neighbours, from the attacker's side: what one sandbox does must not stop another
//! (defect 14). Asserts behaviour (counts, success), never timings; the latencies are measured
//! by `crates/bench`'s `e2b-local-noisy-bench`.
//! Needs root: run with `cargo test -p e2b-local --test neighbours -- --ignored`.

mod support;

use std::time::{Duration, Instant};

use e2b_local::isolation::SandboxCgroup as _;
use reqwest::Method;
use support::{TestServer, start, start_process};

/// Runs `bash -l -c script` in a sandbox through envd and returns the stream's text.
async fn run(t: &TestServer, id: &str, token: &str, script: &str) -> String {
    let body = support::envelope(&serde_json::json!({
        "process": {"cmd": "/bin/bash", "args": ["-l", "-c", script]}
    }));
    let resp = t
        .envd(Method::POST, id, "/process.Process/Start")
        .header("X-Access-Token", token)
        .header("content-type", "application/connect+json")
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("Start {script:?}: {e}"));
    resp.text().await.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn fork_bombs_stay_at_the_pids_limit_and_the_neighbour_keeps_running_commands() {
    let t = start().await;
    let limit = t
        .server()
        .manager()
        .config()
        .limits
        .pids
        .unwrap_or_else(|| panic!("the default limits must bound tasks"));
    let b = t.create(r#"{"templateID":"base"}"#).await;
    let (b_id, b_token) = (
        b["sandboxID"].as_str().unwrap(),
        b["envdAccessToken"].as_str().unwrap(),
    );
    // As the default user `user`, bounded by `timeout` (which signals its whole process
    // group, i.e. every copy, when it expires): bash's bomb, which sleeps after a failed fork,
    // and one that retries at once.
    let bombs = [
        "timeout -s KILL 30 bash -c ':(){ :|:& };:; sleep 60' >/dev/null 2>&1",
        "timeout -s KILL 30 python3 -c $'import os\\nwhile True:\\n try: os.fork()\\n except OSError: pass' >/dev/null 2>&1",
    ];
    for bomb in bombs {
        let a = t.create(r#"{"templateID":"base"}"#).await;
        let (a_id, a_token) = (
            a["sandboxID"].as_str().unwrap(),
            a["envdAccessToken"].as_str().unwrap(),
        );
        let live_a = t.server().manager().get(a_id).unwrap();
        let running = start_process(&t, a_id, a_token, bomb).await;
        let start_time = Instant::now();
        while live_a.handle.stats().pids_max_events == 0
            && start_time.elapsed() < Duration::from_secs(20)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            live_a.handle.stats().pids_max_events > 0,
            "{bomb}: never reached the limit: {:?}",
            live_a.handle.stats()
        );

        // While it runs: B answers every command, and A never exceeds its limit.
        let mut max_pids = 0;
        for i in 0..5 {
            let out = run(&t, b_id, b_token, &format!("echo ok {i}")).await;
            // base64("ok 0\n") .. base64("ok 4\n")
            let want = ["b2sgMAo=", "b2sgMQo=", "b2sgMgo=", "b2sgMwo=", "b2sgNAo="][i];
            assert!(out.contains(want), "{bomb}: echo ok {i} in B: {out}");
            max_pids = max_pids.max(live_a.handle.stats().pids);
        }
        let stats = live_a.handle.stats();
        assert!(
            max_pids <= limit && stats.pids <= limit,
            "{bomb}: A over its limit of {limit}: {max_pids} {stats:?}"
        );

        // Killing A ends the bomb; B is unaffected.
        t.kill(a_id).await;
        drop(running);
        assert!(
            !live_a.handle.cgroup().exists(),
            "{bomb}: A's cgroup left behind"
        );
        let out = run(&t, b_id, b_token, "echo ok").await;
        assert!(
            out.contains("b2sK"),
            "{bomb}: echo ok in B after the bomb: {out}"
        );
    }
    t.kill(b_id).await;
    t.shutdown().await;
}
