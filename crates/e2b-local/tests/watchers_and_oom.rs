//! Shared host limits from an attacker's side (issue 15): inotify instances, which every
//! sandbox's envd takes from the same host uid, and the OOM killer at a sandbox's memory
//! limit. An in-process server with the real runtime. Needs root: ignored unless run with
//! `-- --ignored` as root.

mod support;

use std::time::Duration;

use e2b_local::server::default_limits;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The host processes of sandbox `id` (envd and what it started: their environment names it).
fn processes_of(id: &str) -> Vec<u32> {
    let needle = format!("E2B_SANDBOX_ID={id}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// The inotify instances the processes `pids` hold.
fn inotify_instances(pids: &[u32]) -> usize {
    pids.iter()
        .flat_map(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
        })
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == "anon_inode:inotify")
        })
        .count()
}

/// A unary Connect call (JSON) to envd in sandbox `sb`: status and body.
async fn unary(
    t: &support::TestServer,
    sb: &Value,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let r = t
        .envd(Method::POST, sb["sandboxID"].as_str().unwrap(), path)
        .header("X-Access-Token", sb["envdAccessToken"].as_str().unwrap())
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn create_watcher(t: &support::TestServer, sb: &Value) -> (StatusCode, Value) {
    unary(
        t,
        sb,
        "/filesystem.Filesystem/CreateWatcher",
        json!({"path": "/home/user", "recursive": true}),
    )
    .await
}

/// The output of `bash -c cmd` run through envd in sandbox `sb`, as the stream's JSON text.
async fn run(t: &support::TestServer, sb: &Value, cmd: &str) -> String {
    let mut resp = support::start_process(
        t,
        sb["sandboxID"].as_str().unwrap(),
        sb["envdAccessToken"].as_str().unwrap(),
        cmd,
    )
    .await;
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        out.extend_from_slice(&c);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One sandbox opening watchers without end: its envd holds one inotify instance of the
/// host's uid however many it opens, the 65th is `resource_exhausted` naming envd's limit,
/// and another sandbox still watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn a_sandbox_opening_watchers_without_end_is_capped_and_costs_the_host_one_instance() {
    let t = support::start().await;
    let a = t.create(r#"{"templateID":"base","timeout":120}"#).await;
    let b = t.create(r#"{"templateID":"base","timeout":120}"#).await;
    let a_id = a["sandboxID"].as_str().unwrap();
    assert_eq!(inotify_instances(&processes_of(a_id)), 0);
    for i in 0..64 {
        let (status, v) = create_watcher(&t, &a).await;
        assert_eq!(status, StatusCode::OK, "watcher {i}: {v}");
        assert!(v["watcherId"].as_str().unwrap().starts_with('w'), "{v}");
    }
    assert_eq!(inotify_instances(&processes_of(a_id)), 1);
    let (status, v) = create_watcher(&t, &a).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        v,
        json!({
            "code": "resource_exhausted",
            "message": "watcher error: this sandbox has 64 watchers, envd's limit; remove one first"
        })
    );
    assert_eq!(inotify_instances(&processes_of(a_id)), 1);

    // The neighbour watches and sees an upload.
    let (status, v) = create_watcher(&t, &b).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let watcher_id = v["watcherId"].clone();
    let r = t
        .envd(
            Method::POST,
            b["sandboxID"].as_str().unwrap(),
            "/files?path=/home/user/seen.txt",
        )
        .header("X-Access-Token", b["envdAccessToken"].as_str().unwrap())
        .header("content-type", "application/octet-stream")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut names = Vec::new();
    for _ in 0..50 {
        let (status, v) = unary(
            &t,
            &b,
            "/filesystem.Filesystem/GetWatcherEvents",
            json!({ "watcherId": watcher_id }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        names.extend(
            v["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| (e["name"].clone(), e["type"].clone())),
        );
        if !names.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(names[0], (json!("seen.txt"), json!("EVENT_TYPE_CREATE")));
    t.kill(a_id).await;
    t.kill(b["sandboxID"].as_str().unwrap()).await;
    t.shutdown().await;
}

/// A process ballooning past the sandbox's memory limit is the OOM killer's victim, not envd
/// nor the sandbox's init: user processes start with `oom_score_adj` 100, envd keeps -1000
/// (with `CAP_SYS_RESOURCE` on the host) or 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn a_process_ballooning_past_the_memory_limit_is_killed_and_envd_lives() {
    let t = support::start_with(tempfile::tempdir().unwrap(), |b| {
        b.limits(e2b_local::isolation::Limits {
            memory_bytes: Some(128 << 20),
            ..default_limits()
        })
    })
    .await;
    let sb = t.create(r#"{"templateID":"base","timeout":120}"#).await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    let envd_pids = processes_of(&id);
    assert!(!envd_pids.is_empty());
    let protected =
        e2b_local::isolation::caps::effective_has(e2b_local::isolation::caps::cap::SYS_RESOURCE);
    let envd_adj = if protected { "-1000" } else { "0" };
    for pid in &envd_pids {
        let adj = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
        assert_eq!(adj.trim(), envd_adj, "envd pid {pid}");
    }
    // A user process seen from the host: raised to 100.
    let mut sleeper =
        support::start_process(&t, &id, sb["envdAccessToken"].as_str().unwrap(), "sleep 60").await;
    let _ = sleeper.chunk().await.unwrap();
    // The start event can come before the process shows in the sandbox's cgroup.
    let mut sleeping: Vec<u32> = Vec::new();
    for _ in 0..50 {
        sleeping = processes_of(&id)
            .into_iter()
            .filter(|pid| !envd_pids.contains(pid))
            .collect();
        if !sleeping.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sleeping.len(), 1, "{sleeping:?}");
    let adj = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", sleeping[0])).unwrap();
    assert_eq!(adj.trim(), "100");
    // `tail /dev/zero` holds one endless line: it grows until the OOM killer ends it (SIGKILL,
    // 128 + 9); the shell around it lives on and prints its own score.
    let out = run(
        &t,
        &sb,
        r#"tail /dev/zero; echo -n "$? $(cat /proc/$$/oom_score_adj)""#,
    )
    .await;
    // base64("137 100")
    assert!(out.contains(r#""stdout":"MTM3IDEwMA=="}"#), "{out}");
    // envd answers, unchanged; the sandbox is alive.
    assert_eq!(
        t.get(&format!("/sandboxes/{id}")).await.status,
        StatusCode::OK
    );
    let out = run(&t, &sb, "echo -n ok").await;
    assert!(out.contains(r#""stdout":"b2s="}"#), "{out}"); // base64("ok")
    for pid in &envd_pids {
        let adj = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
        assert_eq!(adj.trim(), envd_adj, "envd pid {pid} lives");
    }
    drop(sleeper);
    t.kill(&id).await;
    t.shutdown().await;
}
