//! Lifecycle policies against an in-process server with real sandboxes: `autoResume` (a
//! request to a paused sandbox wakes it and is served), files-only pauses (`memory: false`,
//! `autoPauseMemory: false`: the resume is a new boot, with a new boot id and the files
//! kept), the metrics series, and a server killed with SIGKILL in the middle of a pause.
//! Needs root: ignored unless run with `-- --ignored` as root.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{TestServer, err, start, stdout_of};

/// Polls sandbox `id` until its state is `state` (20 s at most).
async fn wait_state(t: &TestServer, id: &str, state: &str) -> Value {
    let start = Instant::now();
    loop {
        let d = t.get(&format!("/sandboxes/{id}")).await;
        if d.status == StatusCode::OK && d.json()["state"] == state {
            return d.json();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "sandbox {id} never became {state}: {} {}",
            d.status,
            d.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn host_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn auto_resume_wakes_a_paused_sandbox_for_a_command_and_a_port_request() {
    let t = start().await;
    let sb = t
        .create(
            r#"{"templateID":"base","timeout":60,"autoPause":true,"autoResume":{"enabled":true}}"#,
        )
        .await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    let token = sb["envdAccessToken"].as_str().unwrap().to_owned();
    let d = t.get(&format!("/sandboxes/{id}")).await.json();
    assert_eq!(
        d["lifecycle"],
        json!({"autoResume": true, "onTimeout": "pause"})
    );
    stdout_of(
        &t,
        &id,
        &token,
        "mkdir -p /tmp/www && cd /tmp/www && echo awake > index.html && \
         (nohup python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 &)",
    )
    .await;
    let domain = t.server().domain().to_owned();
    let port_get = || {
        t.http
            .get(format!("{}/index.html", t.url))
            .header("Host", format!("8000-{id}.{domain}"))
            .send()
    };
    let start = Instant::now();
    while port_get().await.unwrap().status() != StatusCode::OK {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "port 8000 never opened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A command to envd wakes it; the sandbox then runs for its create's timeout again.
    let r = t.post(&format!("/sandboxes/{id}/pause"), "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(
        t.get(&format!("/sandboxes/{id}")).await.json()["state"],
        "paused"
    );
    assert_eq!(
        stdout_of(&t, &id, &token, "echo resumed").await,
        "resumed\n"
    );
    let d = t.get(&format!("/sandboxes/{id}")).await.json();
    assert_eq!(d["state"], "running");
    let end = chrono::DateTime::parse_from_rfc3339(d["endAt"].as_str().unwrap()).unwrap();
    let left = (end.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    assert!((55..=60).contains(&left), "{left}");

    // So does a request to a port: served by the process the pause froze.
    let r = t.post(&format!("/sandboxes/{id}/pause"), "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = port_get().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "awake\n");
    assert_eq!(
        t.get(&format!("/sandboxes/{id}")).await.json()["state"],
        "running"
    );
    t.kill(&id).await;

    // Without autoResume a paused sandbox stays paused: 502, E2B's body.
    let sb = t.create(r#"{"templateID":"base","autoPause":true}"#).await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    assert_eq!(
        t.get(&format!("/sandboxes/{id}")).await.json()["lifecycle"],
        json!({"autoResume": false, "onTimeout": "pause"})
    );
    let r = t.post(&format!("/sandboxes/{id}/pause"), "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = t.envd(Method::GET, &id, "/health").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        support::not_found_502(&id)
    );
    assert_eq!(
        t.get(&format!("/sandboxes/{id}")).await.json()["state"],
        "paused"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn lifecycle_options_that_cannot_hold_together_are_refused() {
    let t = start().await;
    for (body, message) in [
        (
            r#"{"templateID":"base","autoResume":{"enabled":true}}"#,
            "autoResume.enabled needs autoPause: true (a sandbox killed at its timeout cannot be resumed)",
        ),
        (
            r#"{"templateID":"base","autoPause":true,"autoPauseMemory":false,"autoResume":{"enabled":true}}"#,
            "autoResume.enabled cannot be combined with autoPauseMemory: false (a files-only pause is resumed by connect, which reboots it)",
        ),
    ] {
        for path in ["/sandboxes", "/v2/sandboxes"] {
            let r = t.post(path, body).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path} {body}");
            assert_eq!(r.json(), err(400, message), "{path} {body}");
        }
    }
    // `enabled: false` is the default spelled out.
    let sb = t
        .create(r#"{"templateID":"base","autoResume":{"enabled":false}}"#)
        .await;
    let id = sb["sandboxID"].as_str().unwrap();
    assert_eq!(
        t.get(&format!("/sandboxes/{id}")).await.json()["lifecycle"],
        json!({"autoResume": false, "onTimeout": "kill"})
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn a_files_only_pause_is_a_new_boot_and_a_memory_pause_is_not() {
    let t = start().await;
    let sb = t.create(r#"{"templateID":"base","timeout":120}"#).await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    let token = sb["envdAccessToken"].as_str().unwrap().to_owned();
    let boot_id = "cat /proc/sys/kernel/random/boot_id";
    let first = stdout_of(&t, &id, &token, boot_id).await;
    assert_eq!(first.len(), 37, "{first:?}");
    assert_ne!(first, host_boot_id());
    // The file over the host's is read-only, even for root, and its source is gone.
    assert_eq!(
        stdout_of(
            &t,
            &id,
            &token,
            "echo x 2>/dev/null > /proc/sys/kernel/random/boot_id || echo refused; ls -a /dev | grep -c boot_id"
        )
        .await,
        "refused\n0\n"
    );
    // Another sandbox has its own.
    let other = t.create(r#"{"templateID":"base"}"#).await;
    let other_first = stdout_of(
        &t,
        other["sandboxID"].as_str().unwrap(),
        other["envdAccessToken"].as_str().unwrap(),
        boot_id,
    )
    .await;
    assert_ne!(other_first, first);
    t.kill(other["sandboxID"].as_str().unwrap()).await;

    stdout_of(
        &t,
        &id,
        &token,
        "echo kept > /home/user/f.txt; rm /etc/issue; (nohup sleep 1000 >/dev/null 2>&1 &)",
    )
    .await;
    assert_eq!(stdout_of(&t, &id, &token, "pgrep -xc sleep").await, "1\n");

    // A memory pause keeps processes and the boot id.
    assert_eq!(
        t.post(&format!("/sandboxes/{id}/pause"), r#"{"memory":true}"#)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = t
        .post(&format!("/sandboxes/{id}/connect"), r#"{"timeout":120}"#)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(stdout_of(&t, &id, &token, boot_id).await, first);
    assert_eq!(stdout_of(&t, &id, &token, "pgrep -xc sleep").await, "1\n");

    // A files-only pause: same id, token and end time; after the resume, fresh processes,
    // a new boot id, the files as they were (a deletion included).
    let before = t.get(&format!("/sandboxes/{id}")).await.json();
    let r = t
        .post(&format!("/sandboxes/{id}/pause"), r#"{"memory":false}"#)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let paused = t.get(&format!("/sandboxes/{id}")).await.json();
    assert_eq!(paused["state"], "paused");
    assert_eq!(paused["endAt"], before["endAt"]);
    assert_eq!(paused["envdAccessToken"], token.as_str());
    let r = t.envd(Method::GET, &id, "/health").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let r = t
        .post(&format!("/sandboxes/{id}/connect"), r#"{"timeout":120}"#)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let second = stdout_of(&t, &id, &token, boot_id).await;
    assert_eq!(second.len(), 37);
    assert_ne!(second, first);
    assert_eq!(
        stdout_of(
            &t,
            &id,
            &token,
            "cat /home/user/f.txt; test -e /etc/issue || echo gone; pgrep -xc sleep"
        )
        .await,
        "kept\ngone\n0\n"
    );
    // Its log goes on in the same file: envd's start-up line is in it twice.
    let logs = t
        .get(&format!("/v2/sandboxes/{id}/logs?search=envd%20started"))
        .await
        .json();
    assert_eq!(logs["logs"].as_array().unwrap().len(), 2, "{logs}");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn a_timeout_with_auto_pause_memory_false_pauses_to_files() {
    let t = start().await;
    let sb = t
        .create(r#"{"templateID":"base","timeout":2,"autoPause":true,"autoPauseMemory":false}"#)
        .await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    let token = sb["envdAccessToken"].as_str().unwrap().to_owned();
    let boot_id = "cat /proc/sys/kernel/random/boot_id";
    let first = stdout_of(
        &t,
        &id,
        &token,
        "echo kept > /home/user/f.txt; cat /proc/sys/kernel/random/boot_id",
    )
    .await;
    wait_state(&t, &id, "paused").await;
    let r = t
        .post(&format!("/sandboxes/{id}/connect"), r#"{"timeout":60}"#)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_ne!(
        stdout_of(&t, &id, &token, boot_id).await,
        first.trim_start_matches("kept\n")
    );
    assert_eq!(
        stdout_of(&t, &id, &token, "cat /home/user/f.txt").await,
        "kept\n"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn metrics_are_a_series_kept_across_a_pause() {
    let t = start().await;
    let sb = t.create(r#"{"templateID":"base","timeout":120}"#).await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    // One sample at the create, then one per interval.
    let samples = |v: &Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| m["timestampUnix"].as_i64().unwrap())
            .collect()
    };
    let created = samples(&t.get(&format!("/sandboxes/{id}/metrics")).await.json());
    assert_eq!(created.len(), 1, "{created:?}");
    let interval = e2b_local::lifecycle::SAMPLE_INTERVAL.as_secs() as i64;
    tokio::time::sleep(Duration::from_secs(2 * interval as u64 + 1)).await;
    let series = samples(&t.get(&format!("/sandboxes/{id}/metrics")).await.json());
    assert!(series.len() >= 3, "{series:?}");
    for w in series.windows(2) {
        assert!(
            (interval - 1..=interval + 1).contains(&(w[1] - w[0])),
            "{series:?}"
        );
    }
    // A range picks the samples in it, both ends included.
    let (a, b) = (series[1], series[2]);
    let r = t
        .get(&format!("/sandboxes/{id}/metrics?start={a}&end={b}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(samples(&r.json()), vec![a, b]);
    let r = t
        .get(&format!("/sandboxes/{id}/metrics?start={b}&end={a}"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json(),
        err(400, &format!("start ({b}) is after end ({a})"))
    );
    let r = t.get(&format!("/sandboxes/{id}/metrics?end=0")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Paused: no new samples, the old ones stay.
    let r = t.post(&format!("/sandboxes/{id}/pause"), "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let at_pause = samples(&t.get(&format!("/sandboxes/{id}/metrics")).await.json());
    tokio::time::sleep(Duration::from_secs(interval as u64 + 1)).await;
    assert_eq!(
        samples(&t.get(&format!("/sandboxes/{id}/metrics")).await.json()),
        at_pause
    );
    let r = t
        .post(&format!("/sandboxes/{id}/connect"), r#"{"timeout":60}"#)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        samples(&t.get(&format!("/sandboxes/{id}/metrics")).await.json())[..at_pause.len()],
        at_pause[..]
    );
    t.kill(&id).await;
    assert_eq!(
        t.get(&format!("/sandboxes/{id}/metrics")).await.status,
        StatusCode::NOT_FOUND
    );
    t.shutdown().await;
}

/// Starts `e2b-local serve` on `dir` as a process of its own; returns it, its URL and key.
async fn serve(dir: &std::path::Path) -> (std::process::Child, String, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_e2b-local"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--network", "none"])
        .args(["--cgroup-parent", support::CGROUP_PARENT, "--data-dir"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let key = e2b_local::state::Store::open(dir)
        .unwrap()
        .api_key()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while support::http()
        .get(format!("{url}/health"))
        .send()
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, url, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn a_server_killed_during_a_pause_leaves_the_sandbox_paused_with_its_files_or_never_paused() {
    let http = support::http();
    // SIGKILL at several points of a files-only pause (the slow kind: save, stop, boot).
    for delay_ms in [0u64, 5, 20, 60, 150, 400] {
        let dir = tempfile::tempdir().unwrap();
        let (mut child, url, key) = serve(dir.path()).await;
        let sb: Value = http
            .post(format!("{url}/sandboxes"))
            .header("x-api-key", &key)
            .json(&json!({"templateID": "base"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = sb["sandboxID"].as_str().unwrap().to_owned();
        let token = sb["envdAccessToken"].as_str().unwrap().to_owned();
        let r = http
            .post(format!("{url}/files?path=/home/user/kept.txt"))
            .header("E2b-Sandbox-Id", &id)
            .header("E2b-Sandbox-Port", "49983")
            .header("X-Access-Token", &token)
            .header("content-type", "application/octet-stream")
            .body("kept through a crash")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let pause = tokio::spawn({
            let (http, url, key, id) = (http.clone(), url.clone(), key.clone(), id.clone());
            async move {
                http.post(format!("{url}/sandboxes/{id}/pause"))
                    .header("x-api-key", &key)
                    .json(&json!({"memory": false}))
                    .send()
                    .await
                    .map(|r| r.status())
            }
        });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let answered = pause.await.unwrap();

        let t = support::start_in(dir, Duration::from_secs(3600)).await;
        t.server().manager().recovered().await;
        let d = t.get(&format!("/sandboxes/{id}")).await;
        match d.json()["state"].as_str() {
            // The pause took hold: the files are there after a resume.
            Some("paused") => {
                let r = t
                    .post(&format!("/sandboxes/{id}/connect"), r#"{"timeout":60}"#)
                    .await;
                assert_eq!(r.status, StatusCode::CREATED, "{delay_ms} ms: {}", r.text);
                assert_eq!(
                    stdout_of(&t, &id, &token, "cat /home/user/kept.txt").await,
                    "kept through a crash",
                    "{delay_ms} ms"
                );
            }
            // It never did (the server died before the record said paused): a running
            // sandbox of a crashed server is killed at the restart, as always.
            _ => {
                assert_eq!(d.status, StatusCode::NOT_FOUND, "{delay_ms} ms: {}", d.text);
                assert!(
                    !matches!(answered, Ok(StatusCode::NO_CONTENT)),
                    "{delay_ms} ms: the pause was acknowledged but not kept"
                );
            }
        }
        t.shutdown().await;
    }
}
