//! Code-interpreter benchmark of e2b-local (run as root, in release):
//!
//! ```text
//! cargo run --release -p bench --bin code-interpreter-bench -- [ROUNDS]
//! ```
//!
//! Starts an in-process server on a data directory kept between runs
//! (`$TMPDIR/e2b-local-code-interpreter-bench`: the first run builds `debian` and
//! `code-interpreter-v1`, and says how long that took) and measures, through the router on
//! port 49999 with a raw HTTP client:
//! * create until 201, and create until the first `/execute` of `1+1` has returned, p50;
//! * a new Python context (`POST /contexts`): the kernel's own start-up as the server sees
//!   it, p50;
//! * `/execute` of `1+1` on a warm context, p50, next to its floor: a bare ZeroMQ
//!   `execute_request` → `execute_reply` to the same kernel (no HTTP, no IOPub);
//! * host memory per idle code-interpreter sandbox with its default Python context (the
//!   charge of its cgroup).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bench::local_api::{Api, Created, cgroup_memory, pct, report};
use serde_json::Value;

const TEMPLATE: &str = "code-interpreter-v1";
const CGROUP_PARENT: &str = "e2b-local-code-interpreter-bench";
const PORT: u16 = code_interpreter_server::DEFAULT_PORT;
/// Sandbox addresses of this benchmark's server.
const NETWORK_POOL: &str = "10.223.0.0/16";

fn main() -> ExitCode {
    bench::local_api::run_main("code-interpreter-bench", || {
        run(bench::local_api::arg(1, 10))
    })
}

/// `/execute` of `code`; fails unless the main result's text is `expected`.
async fn execute(api: &Api, sb: &Created, code: &str, expected: &str) -> Result<(), String> {
    let body = serde_json::json!({ "code": code }).to_string();
    let (status, out) = api
        .port_call(sb, PORT, http::Method::POST, "/execute", &body)
        .await?;
    let text = String::from_utf8_lossy(&out);
    let found = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|e| e["is_main_result"] == true && e["text"] == expected);
    if status != 200 || !found {
        return Err(format!("execute {code}: {status}: {text}"));
    }
    Ok(())
}

/// The default Python kernel of sandbox `id`: its root (`/proc/<pid>/root`) and connection
/// file, found among the host's processes by its command line and cgroup.
fn kernel_of(id: &str) -> Option<(PathBuf, PathBuf)> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let dir = entry.path();
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !args.iter().any(|a| a == "ipykernel_launcher") {
            continue;
        }
        let in_sandbox = std::fs::read_to_string(dir.join("cgroup")).is_ok_and(|c| c.contains(id));
        let file = args
            .iter()
            .position(|a| a == "-f")
            .and_then(|i| args.get(i + 1));
        if let (true, Some(file)) = (in_sandbox, file) {
            return Some((dir.join("root"), PathBuf::from(file)));
        }
    }
    None
}

async fn run(rounds: usize) -> Result<(), String> {
    let dir = std::env::temp_dir().join("e2b-local-code-interpreter-bench");
    let server = e2b_local::Server::builder()
        .data_dir(&dir)
        .listen("127.0.0.1:0")
        .cgroup_parent(CGROUP_PARENT)
        // The template's build steps install from PyPI. A pool of its own, so another
        // e2b-local on this host (default pool) does not collide with it.
        .network(e2b_local::network::NetworkOptions {
            pool: NETWORK_POOL
                .parse()
                .map_err(|e| format!("{NETWORK_POOL}: {e}"))?,
            ..e2b_local::network::NetworkOptions::from_host().map_err(|e| e.to_string())?
        })
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let api = Api::new(server.api_url(), server.api_key().to_owned());
    println!(
        "e2b-local code-interpreter benchmark: {rounds} rounds, {} CPUs",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // The template, built on first use (503 until then).
    let started = Instant::now();
    let mut built_here = false;
    let warm = loop {
        match api.create_from(TEMPLATE).await {
            Ok(sb) => break sb,
            Err(e) if e.starts_with("create: 503") => {
                built_here = true;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e),
        }
    };
    if built_here {
        println!(
            "{TEMPLATE} built on first use in {:.0} s (with debian when it was not built yet)",
            started.elapsed().as_secs_f64()
        );
    }
    execute(&api, &warm, "1+1", "2").await?;
    api.kill(&warm.id).await?;

    let (mut created, mut first_run) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let sb = api.create_from(TEMPLATE).await?;
        created.push(t.elapsed());
        execute(&api, &sb, "1+1", "2").await?;
        first_run.push(t.elapsed());
        api.kill(&sb.id).await?;
    }
    report("create until 201", &mut created);
    report(
        "create until first run_code(\"1+1\") returned",
        &mut first_run,
    );

    let sb = api.create_from(TEMPLATE).await?;
    execute(&api, &sb, "1+1", "2").await?;
    let mut contexts = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let (s, body) = api
            .port_call(
                &sb,
                PORT,
                http::Method::POST,
                "/contexts",
                r#"{"language":"python"}"#,
            )
            .await?;
        contexts.push(t.elapsed());
        let ctx: Value = serde_json::from_slice(&body).map_err(|e| format!("{s}: {e}"))?;
        let id = ctx["id"].as_str().unwrap_or_default();
        api.port_call(
            &sb,
            PORT,
            http::Method::DELETE,
            &format!("/contexts/{id}"),
            "",
        )
        .await?;
    }
    report("new Python context (kernel start-up)", &mut contexts);

    let mut warm_runs = Vec::new();
    for _ in 0..rounds * 20 {
        let t = Instant::now();
        execute(&api, &sb, "1+1", "2").await?;
        warm_runs.push(t.elapsed());
    }
    report("run_code(\"1+1\") on a warm context", &mut warm_runs);
    let (root, file) = kernel_of(&sb.id).ok_or("no default kernel found for the sandbox")?;
    let mut shell = code_interpreter_server::wire::ShellClient::connect(&root, &file).await?;
    let mut floor = Vec::new();
    for _ in 0..rounds * 20 {
        let t = Instant::now();
        let reply = shell.execute("1+1").await?;
        floor.push(t.elapsed());
        if reply["status"] != "ok" {
            return Err(format!("floor: {reply}"));
        }
    }
    report("floor: bare ZeroMQ execute_request/reply", &mut floor);
    api.kill(&sb.id).await?;

    // Idle memory: sandboxes whose default context has run once, then left alone.
    let mut alive = Vec::new();
    for _ in 0..5 {
        let sb = api.create_from(TEMPLATE).await?;
        execute(&api, &sb, "1+1", "2").await?;
        alive.push(sb);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let charged: Vec<u64> = alive
        .iter()
        .filter_map(|sb| cgroup_memory(CGROUP_PARENT, &sb.id))
        .collect();
    if !charged.is_empty() {
        let mean = charged.iter().sum::<u64>() as f64 / charged.len() as f64;
        println!(
            "{:<44} {:.1} MiB per sandbox (cgroup charge, mean of {})",
            "host memory per idle sandbox, 1 Python context",
            mean / (1 << 20) as f64,
            charged.len()
        );
    }
    for sb in &alive {
        api.kill(&sb.id).await?;
    }
    println!(
        "targets: warm run_code p50 {:.2} ms (target 5 ms), create until first run p50 {:.0} ms (target 1500 ms)",
        pct(&mut warm_runs, 0.5).as_secs_f64() * 1e3,
        pct(&mut first_run, 0.5).as_secs_f64() * 1e3
    );
    server.shutdown().await;
    Ok(())
}
