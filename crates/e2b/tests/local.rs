//! End to end through the embedded local E2B host (`e2b::local`, e2b-local's server in this
//! process): the REST lifecycle, pagination, signed URLs, pause/resume, and a sandbox killed
//! while a command streams. Needs root (sandboxes use namespaces), so every test is ignored
//! unless asked for: `cargo test -p e2b --all-features --test local -- --ignored` as root.

mod support;

use std::time::Duration;

use e2b::local::LocalServer;
use e2b::{
    ConnectionConfig, OnTimeout, PauseMode, RunOptions, Sandbox, SandboxQuery, SandboxState,
};
use futures_util::TryStreamExt as _;

/// The process-wide embedded host's configuration.
fn local() -> ConnectionConfig {
    LocalServer::shared().expect("local server").config()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    nanos ^ std::process::id().rotate_left(16)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the local host isolates sandboxes in namespaces"]
async fn lifecycle_files_and_signed_urls() {
    let config = local();
    let tag = unique("lifecycle");
    let sbx = Sandbox::builder()
        .config(config.clone())
        .metadata("test", &tag)
        .timeout(Duration::from_secs(120))
        .create()
        .await
        .unwrap();
    let info = sbx.get_info().await.unwrap();
    assert_eq!(info.sandbox_id, sbx.sandbox_id());
    assert_eq!(info.state, SandboxState::Running);
    assert_eq!(info.metadata.get("test"), Some(&tag));
    assert!(sbx.is_running().await.unwrap());
    sbx.set_timeout(Duration::from_secs(90)).await.unwrap();
    let info = sbx.get_info().await.unwrap();
    let left = (info.end_at - chrono::Utc::now()).num_seconds();
    assert!((80..=91).contains(&left), "end_at is {left} s away");
    // Metrics: every sample, if the host has any yet, describes this sandbox's limits.
    for m in sbx.get_metrics(None, None).await.unwrap() {
        assert!(m.cpu_count >= 1 && m.mem_total > 0, "{m:?}");
    }

    let r = sbx
        .commands()
        .run("echo $((6*7))", RunOptions::new())
        .await
        .unwrap();
    assert_eq!(r.stdout, "42\n");

    sbx.files()
        .write("/tmp/signed.txt", "signed content")
        .await
        .unwrap();
    let url = sbx.download_url("/tmp/signed.txt", None, None).unwrap();
    assert!(url.contains("signature=v1_"), "{url}");
    let http = e2b_envd::http_client_builder().unwrap().build().unwrap();
    let body = http.get(&url).send().await.unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(body.text().await.unwrap(), "signed content");

    let expired = sbx
        .download_url("/tmp/signed.txt", None, Some(-120))
        .unwrap();
    let response = http.get(&expired).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"code": 401, "message": "signature is already expired"})
    );

    let upload = sbx.upload_url("/tmp/uploaded.txt", None, Some(60)).unwrap();
    let boundary = "XyZ";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"uploaded.txt\"\r\n\r\nvia url\r\n--{boundary}--\r\n"
    );
    let response = http
        .post(&upload)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    assert_eq!(
        sbx.files().read("/tmp/uploaded.txt").await.unwrap(),
        "via url"
    );

    assert!(sbx.kill().await.unwrap());
    assert!(!sbx.kill().await.unwrap());
    assert!(!sbx.is_running().await.unwrap());
    let err = sbx.get_info().await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let err = Sandbox::builder()
        .config(config)
        .connect("nonexistent0000")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the local host isolates sandboxes in namespaces"]
async fn list_paginates_over_more_sandboxes_than_the_limit() {
    let config = local();
    let tag = unique("paging");
    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(
            Sandbox::builder()
                .config(config.clone())
                .metadata("paging", &tag)
                .create()
                .await
                .unwrap(),
        );
    }
    let mut pages = Sandbox::list(
        &config,
        SandboxQuery::new().metadata("paging", &tag).limit(2),
    )
    .unwrap();
    let first = pages.next_items().await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(pages.has_next());
    let second = pages.next_items().await.unwrap();
    assert_eq!(second.len(), 1);
    assert!(!pages.has_next());

    let mut listed: Vec<String> = Sandbox::list(
        &config,
        SandboxQuery::new().metadata("paging", &tag).limit(1),
    )
    .unwrap()
    .into_stream()
    .map_ok(|s| s.sandbox_id)
    .try_collect()
    .await
    .unwrap();
    listed.sort();
    let mut ids: Vec<String> = created.iter().map(|s| s.sandbox_id().to_owned()).collect();
    ids.sort();
    assert_eq!(listed, ids);
    for sbx in created {
        assert!(sbx.kill().await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the local host isolates sandboxes in namespaces"]
async fn a_sandbox_killed_mid_stream_is_a_timeout() {
    let config = local();
    let sbx = Sandbox::builder()
        .config(config.clone())
        .create()
        .await
        .unwrap();
    let mut running = sbx
        .commands()
        .run_background("echo started; sleep 60", RunOptions::new())
        .await
        .unwrap();
    let first = running.next_event().await.unwrap().unwrap();
    assert!(matches!(first, e2b::CommandEvent::Stdout { ref text, .. } if text == "started\n"));
    assert!(
        Sandbox::kill_by_id(&config, sbx.sandbox_id())
            .await
            .unwrap()
    );
    let err = tokio::time::timeout(Duration::from_secs(20), running.wait())
        .await
        .expect("the stream ends once the sandbox is killed")
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        err.to_string().ends_with(
            "The sandbox was killed or reached its end of life while the request was in flight."
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the local host isolates sandboxes in namespaces"]
async fn pause_and_resume_through_connect() {
    let config = local();
    let sbx = Sandbox::builder()
        .config(config.clone())
        .create()
        .await
        .unwrap();
    sbx.files().write("/tmp/kept.txt", "kept").await.unwrap();
    assert!(sbx.pause().await.unwrap());
    assert_eq!(sbx.get_info().await.unwrap().state, SandboxState::Paused);
    let resumed = Sandbox::builder()
        .config(config)
        .connect(sbx.sandbox_id())
        .await
        .unwrap();
    assert_eq!(resumed.files().read("/tmp/kept.txt").await.unwrap(), "kept");
    let r = resumed
        .commands()
        .run("echo back", RunOptions::new())
        .await
        .unwrap();
    assert_eq!(r.stdout, "back\n");
    assert!(resumed.kill().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the local host isolates sandboxes in namespaces"]
async fn auto_resume_and_a_files_only_pause() {
    let config = local();
    let sbx = Sandbox::builder()
        .config(config.clone())
        .lifecycle(OnTimeout::Pause(PauseMode::Full), true)
        .create()
        .await
        .unwrap();
    let lifecycle = sbx.get_info().await.unwrap().lifecycle.unwrap();
    assert!(lifecycle.pauses_on_timeout && lifecycle.auto_resume);
    let boot_id = || async {
        sbx.files()
            .read("/proc/sys/kernel/random/boot_id")
            .await
            .unwrap()
    };
    let first = boot_id().await;
    sbx.files()
        .write("/home/user/kept.txt", "kept")
        .await
        .unwrap();
    // Paused with memory: the next command wakes it, same boot.
    assert!(sbx.pause().await.unwrap());
    let r = sbx
        .commands()
        .run("echo awake", RunOptions::new())
        .await
        .unwrap();
    assert_eq!(r.stdout, "awake\n");
    assert_eq!(sbx.get_info().await.unwrap().state, SandboxState::Running);
    assert_eq!(boot_id().await, first);
    // Paused to files: connect boots it again on them (`/tmp` is a tmpfs, so it starts
    // empty, as after a reboot).
    assert!(sbx.pause_with(PauseMode::Filesystem).await.unwrap());
    assert_eq!(sbx.get_info().await.unwrap().state, SandboxState::Paused);
    let resumed = Sandbox::builder()
        .config(config.clone())
        .connect(sbx.sandbox_id())
        .await
        .unwrap();
    assert_eq!(
        resumed.files().read("/home/user/kept.txt").await.unwrap(),
        "kept"
    );
    assert_ne!(boot_id().await, first);
    assert!(resumed.kill().await.unwrap());

    // What E2B refuses is refused before any request.
    for (on_timeout, message) in [
        (
            OnTimeout::Kill,
            "auto_resume can only be true when the timeout pauses the sandbox",
        ),
        (
            OnTimeout::Pause(PauseMode::Filesystem),
            "auto_resume cannot be combined with PauseMode::Filesystem: a files-only pause is resumed with connect",
        ),
    ] {
        let e = Sandbox::builder()
            .config(config.clone())
            .lifecycle(on_timeout, true)
            .create()
            .await
            .unwrap_err();
        assert!(matches!(e, e2b::Error::InvalidArgument(_)), "{e:?}");
        assert_eq!(e.to_string(), message);
    }
}

#[test]
#[ignore = "needs root: the local host isolates sandboxes in namespaces"]
fn blocking_api_on_the_local_host() {
    let config = local();
    let sbx = e2b::blocking::Sandbox::builder()
        .config(config)
        .create()
        .unwrap();
    let r = sbx.commands().run("echo sync", RunOptions::new()).unwrap();
    assert_eq!(r.stdout, "sync\n");
    sbx.files().write("/tmp/b.txt", "b").unwrap();
    assert_eq!(sbx.files().read("/tmp/b.txt").unwrap(), "b");
    assert_eq!(sbx.get_info().unwrap().sandbox_id, sbx.sandbox_id());
    assert!(sbx.kill().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the local host isolates sandboxes in namespaces"]
async fn network_rules_round_trip_and_private_urls_get_a_traffic_token() {
    use e2b::{NetworkConfig, NetworkUpdate};
    let config = local();
    let sbx = Sandbox::builder()
        .config(config.clone())
        .allow_internet_access(false)
        .network(
            NetworkConfig::new()
                .allow_out(["203.0.113.7", "*.example.test"])
                .allow_public_traffic(false),
        )
        .timeout(Duration::from_secs(120))
        .create()
        .await
        .unwrap();
    let token = sbx
        .traffic_access_token()
        .expect("a private sandbox has a traffic token");
    assert_eq!(token.len(), 64);
    let info = sbx.get_info().await.unwrap();
    assert_eq!(info.allow_internet_access, Some(false));
    let network = info.network.expect("network reported");
    assert_eq!(network.allow_out, ["203.0.113.7", "*.example.test"]);
    assert_eq!(network.allow_public_traffic, Some(false));

    // Replace-all: the update's deny list only; allowPublicTraffic stays as created.
    sbx.update_network(NetworkUpdate::new().deny_out(["198.51.100.0/24"]))
        .await
        .unwrap();
    let network = sbx.get_info().await.unwrap().network.unwrap();
    assert!(network.allow_out.is_empty());
    assert_eq!(network.deny_out, ["198.51.100.0/24"]);
    assert_eq!(network.allow_public_traffic, Some(false));

    // Refusals name the entry; an unknown sandbox is not found.
    let err = sbx
        .update_network(NetworkUpdate::new().deny_out(["example.com"]))
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), Some(400));
    assert!(err.to_string().contains("\"example.com\""), "{err}");
    let err = Sandbox::update_network_by_id(&config, "inosuchsandbox", NetworkUpdate::new())
        .await
        .unwrap_err();
    assert!(matches!(err, e2b::Error::NotFound(_)), "{err:?}");
    sbx.kill().await.unwrap();
}

/// Set in the child process of
/// [`a_dead_processs_sandboxes_are_killed_by_the_next_embedded_server`].
const ORPHAN_CHILD_ENV: &str = "E2B_TEST_ORPHAN_CHILD";

/// The processes in sandbox `id`'s cgroup under the embedded server's parent (v1 `pids`
/// hierarchy or v2), or `None` when the cgroup does not exist.
fn cgroup_procs(id: &str) -> Option<Vec<i32>> {
    ["/sys/fs/cgroup/pids/e2b-local", "/sys/fs/cgroup/e2b-local"]
        .iter()
        .map(|parent| std::path::Path::new(parent).join(id).join("cgroup.procs"))
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|text| text.lines().filter_map(|l| l.parse().ok()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the local host isolates sandboxes in namespaces"]
async fn a_dead_processs_sandboxes_are_killed_by_the_next_embedded_server() {
    let name = "a_dead_processs_sandboxes_are_killed_by_the_next_embedded_server";
    if std::env::var_os(ORPHAN_CHILD_ENV).is_some() {
        // The child: a program whose embedded server has a sandbox, ending without stopping
        // it (as `LocalServer::shared`'s server always does, or a crash).
        let server = LocalServer::start().unwrap();
        let sbx = Sandbox::builder()
            .config(server.config())
            .timeout(Duration::from_secs(600))
            .create()
            .await
            .unwrap();
        println!(
            "ORPHAN {} {}",
            sbx.sandbox_id(),
            server.data_dir().display()
        );
        std::process::exit(0);
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--ignored", "--nocapture"])
        .env(ORPHAN_CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ORPHAN "))
        .unwrap_or_else(|| {
            panic!(
                "no ORPHAN line: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let (id, dir) = line.split_once(' ').unwrap();
    // The sandbox outlived its process.
    let procs = cgroup_procs(id).unwrap_or_default();
    assert!(!procs.is_empty(), "sandbox {id} has no process left");
    // The next embedded server kills it and removes what the dead one left.
    let next = LocalServer::start().unwrap();
    assert_eq!(
        cgroup_procs(id),
        None,
        "sandbox {id}'s cgroup is still there"
    );
    for pid in procs {
        // Gone, or a zombie waiting for the host's init to reap it.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        assert!(
            matches!(state, None | Some('Z')),
            "process {pid} of sandbox {id} still runs: {stat}"
        );
    }
    assert!(!std::path::Path::new(dir).exists(), "{dir} is still there");
    drop(next);
}
