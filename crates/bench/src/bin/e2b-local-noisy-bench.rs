//! Noisy-neighbour benchmark of e2b-local (run as root, in release):
//!
//! ```text
//! cargo run --release -p bench --bin e2b-local-noisy-bench -- [PHASE_SECS] [WORKLOAD...]
//! ```
//!
//! `WORKLOAD` picks workloads by a word of their name (`fork`, `CPU`, `memory`, `disk`);
//! default all. `E2B_BENCH_PIDS=<n>` and `E2B_BENCH_CPU_MILLIS=<n>` replace those two default
//! limits, to compare settings.
//!
//! Starts an in-process server (this binary is its own helper and envd) with the default
//! per-sandbox limits. Sandbox B runs `echo ok` (`bash -l -c` through envd's
//! `process.Process/Start`, as the SDKs' `commands.run` does) back to back. Each phase lasts
//! `PHASE_SECS` (default 20): first B alone (its baseline), then with a fresh sandbox A running
//! one workload as `user` (the log flood as root), after which A is killed; a new baseline
//! precedes each workload, so every ratio compares B against itself under the same machine
//! load:
//! * fork bomb: `timeout 20 bash -c ':(){ :|:& };:'` (defect 14);
//! * fork bomb without back-off: a Python loop of `os.fork()` ignoring errors (bash sleeps
//!   1 to 8 s after a failed fork; this one retries at once);
//! * CPU burn: two busy loops;
//! * memory balloon: `tail /dev/zero` in a loop, each growing beyond the memory limit until
//!   the OOM killer ends it;
//! * disk writer: `dd` of 1 GiB with `conv=fsync` to a file in the upper directory, in a loop;
//! * log flood: root in A writes lines straight into envd's stdout (`/proc/2/fd/1`), 1 GB
//!   at a time in a loop, which the server drains into A's size-capped log (defect 3).
//!
//! Per phase: B's p50/p99 and failures, the ratio of p50 to the baseline just before, the
//! host's load average, A's tasks and failed forks (pids limit hits), how long killing A
//! took, and the server's RSS after reading a page of A's logs (`logs?limit=10`); at the end
//! the server's peak RSS over the run (`VmHWM`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::local_api::{Api, Created, load_average, pct, self_usage};

/// What envd streams for `echo ok`: base64("ok\n").
const ECHO_OK: &str = "b2sK";
/// How long one `echo ok` may take before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long A's workload runs before B is measured (the bomb reaches the pids limit, the
/// balloon its first OOM kill).
const RAMP_UP: Duration = Duration::from_secs(2);

/// The workloads run in sandbox A, as `user` but for the log flood (as root).
const WORKLOADS: [(&str, &str); 6] = [
    (
        "fork bomb",
        "timeout 20 bash -c ':(){ :|:& };:' >/dev/null 2>&1",
    ),
    // bash sleeps between failed forks (1, 2, 4, 8 s); this one retries at once.
    (
        "fork bomb, no sleep",
        "python3 -c $'import os\\nwhile True:\\n try: os.fork()\\n except OSError: pass' >/dev/null 2>&1",
    ),
    (
        "CPU burn (2 loops)",
        "for i in 1 2; do (while :; do :; done) & done; wait",
    ),
    (
        "memory balloon",
        "while :; do tail /dev/zero; done >/dev/null 2>&1",
    ),
    (
        "disk writer (dd)",
        "while :; do dd if=/dev/zero of=$HOME/noisy bs=1M count=1024 conv=fsync 2>/dev/null; rm -f $HOME/noisy; done",
    ),
    (
        "log flood (1 GB loop)",
        "while :; do yes attacker line | head -c 1000000000 > /proc/2/fd/1; done",
    ),
];

fn main() -> ExitCode {
    let only: Vec<String> = std::env::args().skip(2).collect();
    let phase = Duration::from_secs(bench::local_api::arg(1, 20) as u64);
    bench::local_api::run_main("e2b-local-noisy-bench", || async move {
        run(phase, &only).await
    })
}

/// B's `echo ok` latencies during one phase, how many failed or timed out, and the host's
/// runnable tasks (`procs_running` of `/proc/stat`, sampled every 100 ms): mean and maximum.
struct Samples {
    ok: Vec<Duration>,
    failed: usize,
    runnable_mean: f64,
    runnable_max: u64,
    /// The longest `true` run on the host (outside any sandbox) during the phase.
    host_true_max: Duration,
}

/// The host's runnable tasks right now.
fn procs_running() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("procs_running "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `echo ok` in `b` back to back for `d`.
async fn measure(api: &Api, b: &Created, d: Duration) -> Samples {
    let end = Instant::now() + d;
    let sampler = tokio::spawn(async move {
        let (mut v, mut host_true) = (Vec::new(), Duration::ZERO);
        while Instant::now() < end {
            v.push(procs_running());
            let t = Instant::now();
            let _ = tokio::process::Command::new("true").status().await;
            host_true = host_true.max(t.elapsed());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (v, host_true)
    });
    let mut s = Samples {
        ok: Vec::new(),
        failed: 0,
        runnable_mean: 0.0,
        runnable_max: 0,
        host_true_max: Duration::ZERO,
    };
    while Instant::now() < end {
        let t = Instant::now();
        match tokio::time::timeout(COMMAND_TIMEOUT, api.run_expecting(b, "echo ok", ECHO_OK)).await
        {
            Ok(Ok(())) => s.ok.push(t.elapsed()),
            Ok(Err(e)) => {
                s.failed += 1;
                eprintln!("echo ok in B: {e}");
            }
            Err(_) => s.failed += 1,
        }
    }
    let (runnable, host_true) = sampler.await.unwrap_or_default();
    s.host_true_max = host_true;
    s.runnable_mean = runnable.iter().sum::<u64>() as f64 / runnable.len().max(1) as f64;
    s.runnable_max = runnable.iter().copied().max().unwrap_or(0);
    s
}

/// This process's (the server's) peak resident memory, `VmHWM`, in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn run(phase: Duration, only: &[String]) -> Result<(), String> {
    let dir = std::env::temp_dir().join("e2b-local-noisy-bench");
    let mut limits = e2b_local::server::default_limits();
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    if let Some(pids) = env("E2B_BENCH_PIDS") {
        limits.pids = Some(pids);
    }
    if let Some(millis) = env("E2B_BENCH_CPU_MILLIS") {
        limits.cpu_millis = u32::try_from(millis).ok();
    }
    let server = e2b_local::Server::builder()
        .data_dir(&dir)
        .listen("127.0.0.1:0")
        .cgroup_parent("e2b-local-noisy-bench")
        .limits(limits)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let api = Arc::new(Api::new(server.api_url(), server.api_key().to_owned()));
    println!(
        "e2b-local noisy-neighbour benchmark: {} s per phase, {} CPUs, limits {limits:?}",
        phase.as_secs(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let b = api.create().await?;
    // Warm-up: page cache, the proxy's connection into B.
    for _ in 0..20 {
        api.run_expecting(&b, "echo ok", ECHO_OK).await?;
    }
    println!(
        "{:<20} {:>5} {:>6} {:>8} {:>8} {:>8} {:>6} {:>9} {:>6} {:>9} {:>6} {:>9} {:>7} {:>7} {:>9} {:>7}",
        "phase",
        "n",
        "failed",
        "p50 ms",
        "p99 ms",
        "max ms",
        "ratio",
        "runnable",
        "load",
        "host true",
        "A pids",
        "fork-fail",
        "A CPUs",
        "A MiB",
        "kill A ms",
        "RSS MiB"
    );
    let mut all_baseline = Vec::new();
    let mut max_rss = 0;
    let picked = WORKLOADS
        .into_iter()
        .filter(|(name, _)| only.is_empty() || only.iter().any(|w| name.contains(w.as_str())));
    for (name, script) in picked {
        let mut base = measure(&api, &b, phase).await;
        let base_p50 = pct(&mut base.ok, 0.5);
        println!(
            "{:<20} {:>5} {:>6} {:>8.2} {:>8.2} {:>8.1} {:>6} {:>4.1}/{:<4} {:>6.1} {:>9.1}",
            "baseline",
            base.ok.len(),
            base.failed,
            ms(base_p50),
            ms(pct(&mut base.ok, 0.99)),
            ms(pct(&mut base.ok, 1.0)),
            "",
            base.runnable_mean,
            base.runnable_max,
            load_average(),
            ms(base.host_true_max)
        );
        all_baseline.extend_from_slice(&base.ok);

        let a = api.create().await?;
        let a_id = a.id.clone();
        // The workload's stream ends when A is killed (or, for the bomb, when its first
        // shell returns); its result is irrelevant.
        let workload = {
            let api = Arc::clone(&api);
            let user = if name.starts_with("log flood") {
                "root"
            } else {
                "user"
            };
            tokio::spawn(async move { api.run_as(&a, Some(user), script).await })
        };
        tokio::time::sleep(RAMP_UP).await;
        let a_stats = || {
            server
                .manager()
                .get(&a_id)
                .map(|l| l.handle.stats())
                .unwrap_or_default()
        };
        let (cpu0, t0) = (a_stats().cpu_usage_ns, Instant::now());
        let mut noisy = measure(&api, &b, phase).await;
        let stats = a_stats();
        let a_cpus =
            stats.cpu_usage_ns.saturating_sub(cpu0) as f64 / t0.elapsed().as_nanos() as f64;
        let load = load_average();
        let (status, _) = api
            .call(
                http::Method::GET,
                &format!("/sandboxes/{a_id}/logs?limit=10"),
                "",
            )
            .await?;
        if status != 200 {
            return Err(format!("logs of A: {status}"));
        }
        let t = Instant::now();
        api.kill(&a_id).await?;
        let kill = t.elapsed();
        let _ = workload.await;
        let (rss, _, _) = self_usage();
        max_rss = max_rss.max(rss);
        let p50 = pct(&mut noisy.ok, 0.5);
        println!(
            "{:<20} {:>5} {:>6} {:>8.2} {:>8.2} {:>8.1} {:>5.1}x {:>4.1}/{:<4} {:>6.1} {:>9.1} {:>6} {:>9} {:>7.2} {:>7.0} {:>9.1} {:>7.1}",
            name,
            noisy.ok.len(),
            noisy.failed,
            ms(p50),
            ms(pct(&mut noisy.ok, 0.99)),
            ms(pct(&mut noisy.ok, 1.0)),
            p50.as_secs_f64() / base_p50.as_secs_f64().max(1e-9),
            noisy.runnable_mean,
            noisy.runnable_max,
            load,
            ms(noisy.host_true_max),
            stats.pids,
            stats.pids_max_events,
            a_cpus,
            stats.memory_bytes as f64 / 1048576.0,
            ms(kill),
            rss as f64 / 1048576.0
        );
    }
    println!(
        "baseline over the run: p50 {:.2} ms, p99 {:.2} ms (n={}); server RSS max {:.1} MiB, peak (VmHWM) {:.1} MiB",
        ms(pct(&mut all_baseline, 0.5)),
        ms(pct(&mut all_baseline, 0.99)),
        all_baseline.len(),
        max_rss as f64 / 1048576.0,
        peak_rss() as f64 / 1048576.0
    );
    api.kill(&b.id).await?;
    server.shutdown().await;
    Ok(())
}
