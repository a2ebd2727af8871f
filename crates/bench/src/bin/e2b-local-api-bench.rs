//! REST API benchmark of e2b-local (run as root, in release):
//!
//! ```text
//! cargo run --release -p bench --bin e2b-local-api-bench -- [ITERATIONS]
//! ```
//!
//! Starts an in-process server (this binary is its own helper and envd) and measures,
//! through the REST API and the envd proxy, in one run:
//! * the floor: `unshare --pid --fork --mount --net --uts --ipc --cgroup true`;
//! * create until 201 (envd ready and `/init` applied), p50/p99;
//! * create + the first `echo hi` through `process.Process/Start`, p50/p99;
//! * 50 concurrent creates, p50/p99 of each request;
//! * host memory per idle sandbox with 200 alive (`MemAvailable` drop and cgroup charge);
//! * kill (DELETE until 204: processes, cgroup, mounts and files gone), p50/p99.
//!
//! The server has the default disk budget (10 GiB images from a ready pool);
//! `E2B_BENCH_DISK_MIB=<mib>` sets another (`0`: none, upper directories on the data
//! directory's filesystem). A second server without a budget runs next to it, and create and
//! kill are compared between both, alternating round by round.
//!
//! `E2B_BENCH_ROOTLESS_USER=<user>` also starts `e2b-local serve` as that user (rootless
//! mode; the user needs a range in `/etc/subuid` and `/etc/subgid`) and compares create and
//! kill on both servers, alternating round by round.
//!
//! `E2B_BENCH_DEBUG=1` also prints the first and second command's latency on five fresh
//! sandboxes (the first one includes opening the proxy's connection into the sandbox).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bench::local_api::{Api, mem_available, report};

/// What envd streams for `echo hi`: base64("hi\n").
const ECHO_HI: &str = "aGkK";

fn main() -> ExitCode {
    bench::local_api::run_main("e2b-local-api-bench", || run(bench::local_api::arg(1, 50)))
}

/// `E2B_BENCH_ROOTLESS_USER=<user>` (run as root): starts `e2b-local serve` as `user`
/// (rootless mode, its own user namespace, no cgroups) next to the in-process root server and
/// measures create until 201 and kill until 204 on both, alternating round by round so both
/// see the same machine load.
async fn rootless_vs_root(root: &Api, user: &str, n: usize) -> Result<(), String> {
    use std::io::BufRead as _;
    let u = nix::unistd::User::from_name(user)
        .map_err(|e| format!("user {user}: {e}"))?
        .ok_or_else(|| format!("no user {user}"))?;
    let dir = std::env::temp_dir().join(format!("e2b-local-api-bench-rootless-{user}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::os::unix::fs::chown(&dir, Some(u.uid.as_raw()), Some(u.gid.as_raw()))
        .map_err(|e| format!("chown {}: {e}", dir.display()))?;
    let exe = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("e2b-local");
    let mut child = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            user,
            "--regid",
            user,
            "--init-groups",
            "env",
            "-i",
        ])
        .arg(format!("HOME={}", u.dir.display()))
        .arg("PATH=/usr/local/bin:/usr/bin:/bin")
        .arg("RUST_LOG=warn")
        .arg(&exe)
        .args([
            "serve",
            "--network",
            "none",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("setpriv {}: {e}", exe.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let (mut url, mut key) = (None, None);
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(v) = line.strip_prefix("export E2B_API_URL=") {
            url = Some(v.to_owned());
        }
        if let Some(v) = line.strip_prefix("export E2B_API_KEY=") {
            key = Some(v.to_owned());
            break;
        }
    }
    // Keep the pipe open and drained for the server's remaining output.
    std::thread::spawn(move || lines.for_each(drop));
    let (Some(url), Some(key)) = (url, key) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("the rootless server did not start (see its stderr)".into());
    };
    let rl = root.with_server(url, key);
    let result = async {
        for _ in 0..3 {
            let id = rl.create().await?.id;
            rl.kill(&id).await?;
        }
        let (mut c_root, mut c_rl, mut k_root, mut k_rl) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            for (api, c, k) in [
                (root, &mut c_root, &mut k_root),
                (&rl, &mut c_rl, &mut k_rl),
            ] {
                let t = Instant::now();
                let id = api.create().await?.id;
                c.push(t.elapsed());
                let t = Instant::now();
                api.kill(&id).await?;
                k.push(t.elapsed());
            }
        }
        report("create until 201, root (alternating)", &mut c_root);
        report("create until 201, rootless (alternating)", &mut c_rl);
        report("kill until 204, root (alternating)", &mut k_root);
        report("kill until 204, rootless (alternating)", &mut k_rl);
        Ok::<(), String>(())
    }
    .await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0)),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    result
}

/// Create until 201 and kill until 204 on `api` (the disk budget of the main server) and on a
/// second in-process server without a budget, alternating round by round so both see the
/// same load.
async fn disk_vs_none(api: &Api, n: usize) -> Result<(), String> {
    let none = e2b_local::Server::builder()
        .data_dir(std::env::temp_dir().join("e2b-local-api-bench-nodisk"))
        .listen("127.0.0.1:0")
        .cgroup_parent("e2b-local-api-bench-nodisk")
        .disk_mib(0)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let plain = Api::new(none.api_url(), none.api_key().to_owned());
    let id = plain.create().await?.id;
    plain.kill(&id).await?;
    let (mut c_disk, mut c_none, mut k_disk, mut k_none) = (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        for (api, c, k) in [
            (api, &mut c_disk, &mut k_disk),
            (&plain, &mut c_none, &mut k_none),
        ] {
            let t = Instant::now();
            let id = api.create().await?.id;
            c.push(t.elapsed());
            let t = Instant::now();
            api.kill(&id).await?;
            k.push(t.elapsed());
        }
    }
    report("create until 201, disk budget (alternating)", &mut c_disk);
    report("create until 201, no budget (alternating)", &mut c_none);
    report("kill until 204, disk budget (alternating)", &mut k_disk);
    report("kill until 204, no budget (alternating)", &mut k_none);
    none.shutdown().await;
    Ok(())
}

async fn run(n: usize) -> Result<(), String> {
    let dir = std::env::temp_dir().join("e2b-local-api-bench");
    let mut builder = e2b_local::Server::builder()
        .data_dir(&dir)
        .listen("127.0.0.1:0")
        .cgroup_parent("e2b-local-api-bench");
    if let Some(mib) = std::env::var("E2B_BENCH_DISK_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder = builder.disk_mib(mib);
    }
    let server = builder.start().await.map_err(|e| e.to_string())?;
    let api = Api::new(server.api_url(), server.api_key().to_owned());
    println!(
        "e2b-local REST benchmark: {n} iterations, {} CPUs",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // Warm-up (base template, page cache).
    for _ in 0..3 {
        let id = api.create().await?.id;
        api.kill(&id).await?;
    }

    let mut floor = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let st = std::process::Command::new("unshare")
            .args([
                "--pid", "--fork", "--mount", "--net", "--uts", "--ipc", "--cgroup", "true",
            ])
            .status()
            .map_err(|e| format!("unshare: {e}"))?;
        if !st.success() {
            return Err(format!("unshare failed: {st}"));
        }
        floor.push(t.elapsed());
    }
    report("floor: unshare (same namespaces) true", &mut floor);

    let mut create = Vec::new();
    let mut kill = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let id = api.create().await?.id;
        create.push(t.elapsed());
        let t = Instant::now();
        api.kill(&id).await?;
        kill.push(t.elapsed());
    }
    report("create until 201 (envd ready)", &mut create);
    disk_vs_none(&api, n).await?;

    if let Some(user) = std::env::var_os("E2B_BENCH_ROOTLESS_USER") {
        rootless_vs_root(&api, &user.to_string_lossy(), n).await?;
    }

    if std::env::var_os("E2B_BENCH_DEBUG").is_some() {
        for _ in 0..5 {
            let sb = api.create().await?;
            let t = Instant::now();
            api.run_expecting(&sb, "echo hi", ECHO_HI).await?;
            let a = t.elapsed();
            let t = Instant::now();
            api.run_expecting(&sb, "echo hi", ECHO_HI).await?;
            println!("echo 1st {a:?} 2nd {:?}", t.elapsed());
            api.kill(&sb.id).await?;
        }
    }
    let mut first_cmd = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let sb = api.create().await?;
        api.run_expecting(&sb, "echo hi", ECHO_HI).await?;
        first_cmd.push(t.elapsed());
        api.kill(&sb.id).await?;
    }
    report("create + first `echo hi`", &mut first_cmd);
    report("kill until 204 (everything released)", &mut kill);

    let mut conc = Vec::new();
    let mut ids = Vec::new();
    {
        let api = &api;
        let futs = (0..50).map(|_| async move {
            let t = Instant::now();
            let r = api.create().await;
            (t.elapsed(), r)
        });
        for (d, r) in futures_util::future::join_all(futs).await {
            conc.push(d);
            ids.push(r?.id);
        }
    }
    report("50 concurrent creates (per request)", &mut conc);
    for id in ids.drain(..) {
        api.kill(&id).await?;
    }

    // Evictor: time from a sandbox's end time until its GET answers 404.
    let mut evict = Vec::new();
    for _ in 0..10 {
        let id = api.create().await?.id;
        let (s, _) = api
            .call(
                http::Method::POST,
                &format!("/sandboxes/{id}/timeout"),
                r#"{"timeout":1}"#,
            )
            .await?;
        if s != 204 {
            return Err(format!("timeout: {s}"));
        }
        let (_, body) = api
            .call(http::Method::GET, &format!("/sandboxes/{id}"), "")
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let end = chrono::DateTime::parse_from_rfc3339(v["endAt"].as_str().unwrap_or(""))
            .map_err(|e| e.to_string())?;
        loop {
            let (s, _) = api
                .call(http::Method::GET, &format!("/sandboxes/{id}"), "")
                .await?;
            if s == 404 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let late = chrono::Utc::now().signed_duration_since(end);
        evict.push(late.to_std().unwrap_or_default());
    }
    report("evictor: end time until 404", &mut evict);

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = mem_available();
    for _ in 0..200 {
        ids.push(api.create().await?.id);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = mem_available();
    let charged: u64 = server
        .manager()
        .all()
        .iter()
        .map(|l| l.handle.stats().memory_bytes)
        .sum();
    println!(
        "{:<44} host MemAvailable drop {:.2} MiB/sandbox, cgroup charge {:.2} MiB/sandbox",
        "memory per idle sandbox (200 alive)",
        before.saturating_sub(after) as f64 / 200.0 / 1048576.0,
        charged as f64 / 200.0 / 1048576.0
    );
    let t = Instant::now();
    for id in ids.drain(..) {
        api.kill(&id).await?;
    }
    println!(
        "{:<44} {:.2} ms total",
        "kill 200 sandboxes sequentially",
        t.elapsed().as_secs_f64() * 1e3
    );
    server.shutdown().await;
    Ok(())
}
