//! `commands.run("true")` round trip, p50/p90/p99 over 300 runs after 20 warm-ups:
//!
//! - against the real envd (in-process, debug mode);
//! - through the embedded local E2B host (e2b-local: REST create, envd routing into a
//!   sandbox), when running as root;
//! - `commands.list()` (a unary RPC, no process spawned) the same way, which isolates the
//!   SDK's own cost from the server's process start;
//! - and, when `E2B_BENCH_PYTHON` names a Python with the official SDK installed
//!   (`pip install e2b==2.63.0`), the same loop in that SDK against the same two servers,
//!   side by side, with the ratio of the p50s.
//!
//! `cargo bench -p e2b --bench run_true`
//! `E2B_BENCH_PYTHON=/path/to/venv/bin/python cargo bench -p e2b --bench run_true`

use std::process::Command;
use std::time::{Duration, Instant};

use e2b::{ConnectionConfig, RunOptions, Sandbox};

const WARMUP: usize = 20;
const RUNS: usize = 300;

const PYTHON_LOOP: &str = r#"
import os, sys, time
from e2b import Sandbox
warmup, runs, op = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sbx = Sandbox.create()
call = (lambda: sbx.commands.run("true")) if op == "run" else (lambda: sbx.commands.list())
for _ in range(warmup):
    call()
samples = []
for _ in range(runs):
    t = time.perf_counter()
    call()
    samples.append(time.perf_counter() - t)
sbx.kill()
print(" ".join(f"{s:.9f}" for s in samples))
"#;

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let python = std::env::var("E2B_BENCH_PYTHON").ok();
    let (envd_url, _envd) = start_envd();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let debug = ConnectionConfig::new()
        .with_debug(true)
        .with_sandbox_url(&envd_url);
    let debug_env = [
        ("E2B_DEBUG", "true".to_owned()),
        ("E2B_SANDBOX_URL", envd_url.clone()),
    ];
    compare(&rt, "envd (debug)", debug, &debug_env, python.as_deref());

    if !is_root() {
        println!("(skipping the local host: it needs root)");
        return;
    }
    let local = match e2b::local::LocalServer::start() {
        Ok(local) => local,
        Err(e) => {
            println!("(skipping the local host: {e})");
            return;
        }
    };
    let config = local.config();
    let local_env = [
        ("E2B_API_URL", config.api_url()),
        (
            "E2B_SANDBOX_URL",
            config.sandbox_url().unwrap_or_default().to_owned(),
        ),
        (
            "E2B_API_KEY",
            config.api_key().unwrap_or_default().to_owned(),
        ),
        ("E2B_DOMAIN", config.domain().to_owned()),
    ];
    compare(&rt, "e2b-local   ", config, &local_env, python.as_deref());
}

/// Both operations in Rust, then (with a Python) in the official SDK, on the same server.
fn compare(
    rt: &tokio::runtime::Runtime,
    target: &str,
    config: ConnectionConfig,
    env: &[(&str, String)],
    python: Option<&str>,
) {
    for op in [Op::Run, Op::List] {
        let rust = rt.block_on(rust_loop(config.clone(), op));
        report(&format!("rust   {target}"), op, &rust);
        if let Some(python) = python {
            let py = python_loop(python, env, op);
            report(&format!("python {target}"), op, &py);
            ratio(&rust, &py);
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Run,
    List,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Run => "run",
            Op::List => "list",
        }
    }
}

async fn rust_loop(config: ConnectionConfig, op: Op) -> Vec<Duration> {
    let sandbox = Sandbox::builder()
        .config(config)
        .create()
        .await
        .expect("sandbox");
    let commands = sandbox.commands();
    let call = || async {
        match op {
            Op::Run => commands.run("true", RunOptions::new()).await.map(|_| ()),
            Op::List => commands.list().await.map(|_| ()),
        }
        .expect("call")
    };
    for _ in 0..WARMUP {
        call().await;
    }
    let mut samples = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        call().await;
        samples.push(start.elapsed());
    }
    let _ = sandbox.kill().await;
    samples
}

fn python_loop(python: &str, env: &[(&str, String)], op: Op) -> Vec<Duration> {
    let mut command = Command::new(python);
    command
        .args([
            "-c",
            PYTHON_LOOP,
            &WARMUP.to_string(),
            &RUNS.to_string(),
            op.name(),
        ])
        .env_remove("E2B_API_KEY")
        .env_remove("E2B_API_URL")
        .env_remove("E2B_SANDBOX_URL")
        .env_remove("E2B_DEBUG");
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().expect("running the Python SDK loop");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(|s| Duration::from_secs_f64(s.parse().expect("a sample")))
        .collect()
}

fn pct(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(label: &str, op: Op, samples: &[Duration]) {
    let call = match op {
        Op::Run => "commands.run(\"true\")",
        Op::List => "commands.list()     ",
    };
    println!(
        "{label}: {call} n={} p50={:.3} ms p90={:.3} ms p99={:.3} ms",
        samples.len(),
        ms(pct(samples, 0.5)),
        ms(pct(samples, 0.9)),
        ms(pct(samples, 0.99))
    );
}

fn ratio(rust: &[Duration], python: &[Duration]) {
    println!(
        "  rust p50 / python p50 = {:.3}",
        pct(rust, 0.5).as_secs_f64() / pct(python, 0.5).as_secs_f64()
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

/// envd on its own thread and runtime; the thread lives as long as the process.
fn start_envd() -> (String, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("envd runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            let _ = envd::serve(listener, envd::Config::default()).await;
        });
    });
    let addr = rx.recv().expect("envd address");
    (format!("http://{addr}"), thread)
}
