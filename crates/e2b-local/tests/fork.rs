//! `POST /sandboxes/{id}/fork` against an in-process server with real sandboxes: forks see
//! the source's files (modes, links, deletions), diverge on their own, and the source keeps
//! its id, end time, state and processes; a paused source; the count and capacity limits;
//! bad input; a capture that fails on a full disk. Needs root: ignored unless run with
//! `-- --ignored`.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{TestServer, err, start, start_with, stdout_as, stdout_of};

/// Creates a sandbox; returns its id and envd token.
async fn sandbox(t: &TestServer) -> (String, String) {
    let v = t
        .create(r#"{"templateID":"base","timeout":600,"metadata":{"role":"source"}}"#)
        .await;
    (
        v["sandboxID"].as_str().unwrap().to_owned(),
        v["envdAccessToken"].as_str().unwrap().to_owned(),
    )
}

/// Forks `id` with `body`; returns the response and its results.
async fn fork(t: &TestServer, id: &str, body: Value) -> (support::Resp, Vec<Value>) {
    let r = t
        .post(&format!("/sandboxes/{id}/fork"), &body.to_string())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let results = r.json().as_array().unwrap().clone();
    (r, results)
}

/// The id and token of a successful fork result.
fn forked(result: &Value) -> (String, String) {
    let s = &result["sandbox"];
    assert!(result.get("error").is_none(), "{result}");
    (
        s["sandboxID"].as_str().unwrap().to_owned(),
        s["envdAccessToken"].as_str().unwrap().to_owned(),
    )
}

fn layer_count(t: &TestServer) -> usize {
    std::fs::read_dir(t.dir.path().join("layers"))
        .unwrap()
        .count()
}

/// Prepares a source: files with modes and owners, a symlink, a hard link, a deleted
/// template file, a directory replaced by an opaque one, and a process left running.
const PREPARE: &str = "set -e
mkdir -p /home/user/work && printf prepared > /home/user/work/state.txt
chmod 640 /home/user/work/state.txt && chown 1000:1000 /home/user/work/state.txt
ln -s state.txt /home/user/work/link && ln /home/user/work/state.txt /home/user/work/hard
test -e /etc/os-release && rm /etc/os-release
head -c 3000000 /dev/urandom > /home/user/work/blob && sha256sum /home/user/work/blob | cut -c1-64
nohup sleep 900 >/dev/null 2>&1 &
echo $!";

/// What a fork or the source shows of [`PREPARE`]'s files.
const INSPECT: &str = "cd /home/user/work && cat state.txt && echo
stat -c '%a %U %h' state.txt && readlink link && cat hard && echo
test -e /etc/os-release && echo os-release-present || echo os-release-deleted
sha256sum blob | cut -c1-64";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: sandboxes (namespaces, mounts, cgroups)"]
async fn forks_see_the_source_files_diverge_and_leave_the_source_running() {
    let t = start().await;
    let (src, src_token) = sandbox(&t).await;
    let prepared = stdout_as(&t, &src, &src_token, PREPARE, Some("root")).await;
    let (blob_sum, sleep_pid) = prepared
        .trim()
        .split_once('\n')
        .unwrap_or_else(|| panic!("{prepared:?}"));
    let before = t.get(&format!("/sandboxes/{src}")).await.json();

    let (r, results) = fork(&t, &src, json!({"count": 2, "timeout": 120})).await;
    assert_eq!(
        r.headers["x-e2b-local-fork-scope"],
        "filesystem: forks boot fresh on the source's files; processes and memory are not cloned"
    );
    let frozen: f64 = r.headers["x-e2b-local-frozen-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(frozen > 0.0, "{frozen}");
    assert_eq!(results.len(), 2);
    let forks: Vec<(String, String)> = results.iter().map(forked).collect();
    assert_ne!(forks[0].0, forks[1].0);

    let expected =
        format!("prepared\n640 user 2\nstate.txt\nprepared\nos-release-deleted\n{blob_sum}\n");
    for (id, token) in &forks {
        assert_ne!(id, &src);
        assert_eq!(stdout_of(&t, id, token, INSPECT).await, expected);
        // Processes are not cloned: the fork booted fresh.
        let ps = stdout_of(&t, id, token, "pgrep -x sleep || echo none").await;
        assert_eq!(ps, "none\n");
        // The fork has the source's metadata, its template, and its own timeout.
        let d = t.get(&format!("/sandboxes/{id}")).await.json();
        assert_eq!(d["templateID"], "base");
        assert_eq!(d["metadata"], json!({"role": "source"}));
        assert_eq!(d["state"], "running");
    }

    // Each diverges on its own; the source does not see them, nor they the source.
    let (a, a_token) = &forks[0];
    let (b, b_token) = &forks[1];
    stdout_of(&t, a, a_token, "printf a > /home/user/work/state.txt").await;
    let root = Some("root");
    stdout_as(&t, b, b_token, "rm /home/user/work/blob", root).await;
    stdout_as(
        &t,
        &src,
        &src_token,
        "printf later > /home/user/work/new",
        root,
    )
    .await;
    let show = "cat /home/user/work/state.txt; echo; ls /home/user/work | tr '\\n' ' '";
    assert_eq!(
        stdout_of(&t, a, a_token, show).await,
        "a\nblob hard link state.txt "
    );
    assert_eq!(
        stdout_of(&t, b, b_token, show).await,
        "prepared\nhard link state.txt "
    );
    assert_eq!(
        stdout_of(&t, &src, &src_token, show).await,
        "prepared\nblob hard link new state.txt "
    );

    // The source keeps its id, end time, state and processes.
    let after = t.get(&format!("/sandboxes/{src}")).await.json();
    assert_eq!(after["sandboxID"], before["sandboxID"]);
    assert_eq!(after["endAt"], before["endAt"]);
    assert_eq!(after["state"], "running");
    let alive = format!("kill -0 {sleep_pid} && echo alive");
    let alive = stdout_as(&t, &src, &src_token, &alive, root).await;
    assert_eq!(alive, "alive\n");

    // A fork of a fork stacks both captures.
    let (_, results) = fork(&t, a, json!({})).await;
    assert_eq!(results.len(), 1);
    let (aa, aa_token) = forked(&results[0]);
    assert_eq!(
        stdout_of(&t, &aa, &aa_token, show).await,
        "a\nblob hard link state.txt "
    );
    // E2B's default timeout of a fork: 15 s.
    let d = t.get(&format!("/sandboxes/{aa}")).await.json();
    let started = chrono::DateTime::parse_from_rfc3339(d["startedAt"].as_str().unwrap()).unwrap();
    let end = chrono::DateTime::parse_from_rfc3339(d["endAt"].as_str().unwrap()).unwrap();
    assert_eq!((end - started).num_seconds(), 15);

    // A capture goes with the last sandbox standing on it: `a`'s with its fork, the
    // source's with the last of its forks.
    assert_eq!(layer_count(&t), 2);
    t.kill(&aa).await;
    assert_eq!(layer_count(&t), 1);
    t.kill(a).await;
    assert_eq!(layer_count(&t), 1);
    t.kill(b).await;
    assert_eq!(layer_count(&t), 0);
    t.kill(&src).await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: sandboxes (namespaces, mounts, cgroups)"]
async fn a_paused_sandbox_forks_and_stays_paused() {
    let t = start().await;
    let (src, src_token) = sandbox(&t).await;
    stdout_of(&t, &src, &src_token, "printf paused > /home/user/p").await;
    let r = t.post(&format!("/sandboxes/{src}/pause"), "{}").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let (r, results) = fork(&t, &src, json!({"count": 1, "timeout": 60})).await;
    assert_eq!(r.headers["x-e2b-local-frozen-ms"], "0.0");
    let (id, token) = forked(&results[0]);
    assert_eq!(
        stdout_of(&t, &id, &token, "cat /home/user/p").await,
        "paused"
    );
    let d = t.get(&format!("/sandboxes/{src}")).await.json();
    assert_eq!(d["state"], "paused");
    let r = t
        .post(&format!("/sandboxes/{src}/connect"), r#"{"timeout":60}"#)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        stdout_of(&t, &src, &src_token, "cat /home/user/p").await,
        "paused"
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: sandboxes (namespaces, mounts, cgroups)"]
async fn bad_forks_get_e2b_statuses_and_messages_naming_the_field() {
    let capacity = e2b_local::lifecycle::Capacity {
        max_sandboxes: 2,
        ..e2b_local::lifecycle::Capacity::from_host()
    };
    let t = start_with(tempfile::tempdir().unwrap(), |b| b.capacity(capacity)).await;
    let (src, _) = sandbox(&t).await;
    let path = format!("/sandboxes/{src}/fork");
    for (body, status, message) in [
        (
            r#"{"count":0}"#,
            400,
            "count must be between 1 and 100 (got 0)".to_owned(),
        ),
        (
            r#"{"count":101}"#,
            400,
            "count must be between 1 and 100 (got 101)".to_owned(),
        ),
        (
            r#"{"timeout":0}"#,
            400,
            "timeout must be greater than 0 (got 0)".to_owned(),
        ),
        (
            r#"{"timeout":100000}"#,
            400,
            "timeout of 100000 s exceeds the maximum sandbox lifetime of 3600 s".to_owned(),
        ),
        (
            r#"{"count":"two"}"#,
            400,
            "invalid request body: invalid type: string \"two\", expected i64".to_owned(),
        ),
        (
            r#"{"memory":true}"#,
            400,
            "unknown field `memory` in request body (expected one of: timeout, count)".to_owned(),
        ),
    ] {
        let r = t.post(&path, body).await;
        assert_eq!(r.status.as_u16(), status, "{body}: {}", r.text);
        assert_eq!(r.json(), err(status, &message), "{body}");
    }
    // Unknown and killed sources: 404, nothing captured.
    let r = t.post("/sandboxes/iunknown0000000000000/fork", "{}").await;
    assert_eq!(
        r.json(),
        err(
            404,
            "sandbox \"iunknown0000000000000\" doesn't exist or you don't have access to it"
        )
    );
    // The server takes two sandboxes: one fork starts, the others get E2B's 429 each.
    let (_, results) = fork(&t, &src, json!({"count": 3})).await;
    assert_eq!(results.len(), 3);
    let (first, _) = forked(&results[0]);
    for r in &results[1..] {
        assert!(r.get("sandbox").is_none(), "{r}");
        assert_eq!(
            r["error"],
            err(
                429,
                "you have reached the maximum number of concurrent E2B sandboxes (2) (e2b-local serve --max-sandboxes)"
            )
        );
    }
    t.kill(&first).await;
    t.kill(&src).await;
    let r = t.post(&path, "{}").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json(),
        err(
            404,
            &format!("sandbox \"{src}\" doesn't exist or you don't have access to it")
        )
    );
    assert_eq!(layer_count(&t), 0);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: sandboxes (namespaces, mounts, cgroups) and a tmpfs mount"]
async fn a_capture_that_fills_the_disk_leaves_the_source_running_and_nothing_made() {
    let t = start().await;
    let (src, token) = sandbox(&t).await;
    stdout_of(
        &t,
        &src,
        &token,
        "head -c 8000000 /dev/zero > /home/user/big",
    )
    .await;
    // The layer store on a 4 MiB filesystem: the 8 MB capture cannot fit.
    let layers = t.dir.path().join("layers");
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&layers)
        .status()
        .unwrap();
    assert!(st.success());
    let r = t.post(&format!("/sandboxes/{src}/fork"), "{}").await;
    let r2 = t
        .post(&format!("/sandboxes/{src}/snapshots"), r#"{"name":"full"}"#)
        .await;
    let left = layer_count(&t);
    let st = std::process::Command::new("umount")
        .arg(&layers)
        .status()
        .unwrap();
    assert!(st.success());
    for r in [&r, &r2] {
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(
            message.starts_with(&format!(
                "capturing sandbox {src}'s files: copy the sandbox's files to "
            )) && message.ends_with("No space left on device (os error 28)"),
            "{message}"
        );
    }
    assert_eq!(left, 0, "a partial layer was left");
    // Nothing was made: no fork, no snapshot; the source runs, thawed.
    let list = t.get("/v2/sandboxes").await.json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(t.get("/snapshots").await.json(), json!([]));
    assert_eq!(t.get("/templates/full").await.status, StatusCode::NOT_FOUND);
    let d = t.get(&format!("/sandboxes/{src}")).await.json();
    assert_eq!(d["state"], "running");
    assert_eq!(
        stdout_of(&t, &src, &token, "stat -c %s /home/user/big").await,
        "8000000\n"
    );
    let r = t
        .call(Method::DELETE, &format!("/sandboxes/{src}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: sandboxes (namespaces, mounts, cgroups)"]
async fn a_paused_fork_outlives_a_crash_with_its_files() {
    // A real `e2b-local serve`, SIGKILLed with a paused fork: the next run restores it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_e2b-local"))
        .args(["serve", "--network", "none"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--cgroup-parent", support::CGROUP_PARENT, "--data-dir"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let key = e2b_local::state::Store::open(&path)
        .unwrap()
        .api_key()
        .unwrap();
    let http = support::http();
    let call = |p: String, body: Value| {
        http.post(format!("{url}{p}"))
            .header("x-api-key", &key)
            .json(&body)
            .send()
    };
    let write = |id: String, token: String, file: &'static str, body: &'static str| {
        http.post(format!("{url}/files?path={file}"))
            .header("E2b-Sandbox-Id", id)
            .header("E2b-Sandbox-Port", "49983")
            .header("X-Access-Token", token)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let src: Value = loop {
        if let Ok(r) = call("/sandboxes".into(), json!({"templateID": "base"})).await {
            assert_eq!(r.status(), StatusCode::CREATED);
            break r.json().await.unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "serve did not listen");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let (src_id, src_token) = (
        src["sandboxID"].as_str().unwrap().to_owned(),
        src["envdAccessToken"].as_str().unwrap().to_owned(),
    );
    let r = write(src_id.clone(), src_token, "/home/user/f", "from-source")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = call(format!("/sandboxes/{src_id}/fork"), json!({"timeout": 600}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let results: Value = r.json().await.unwrap();
    let (id, token) = forked(&results[0]);
    let r = write(id.clone(), token, "/home/user/g", "from-fork")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = call(format!("/sandboxes/{id}/pause"), json!({}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    serve.kill().unwrap();
    serve.wait().unwrap();

    // The running source is reclaimed; the paused fork is restored on its captured layer.
    let t = start_with(dir, |b| b).await;
    t.server().manager().recovered().await;
    assert_eq!(
        t.get(&format!("/sandboxes/{src_id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.get(&format!("/sandboxes/{id}")).await.json()["state"],
        "paused"
    );
    assert_eq!(layer_count(&t), 1);
    let r = t
        .post(&format!("/sandboxes/{id}/connect"), r#"{"timeout":60}"#)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let token = r.json()["envdAccessToken"].as_str().unwrap().to_owned();
    assert_eq!(
        stdout_of(&t, &id, &token, "cat /home/user/f /home/user/g").await,
        "from-sourcefrom-fork"
    );
    t.kill(&id).await;
    assert_eq!(layer_count(&t), 0);
    t.shutdown().await;
}
