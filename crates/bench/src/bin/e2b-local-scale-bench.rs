//! Scale benchmark of e2b-local (run as root, in release):
//!
//! ```text
//! cargo run --release -p bench --bin e2b-local-scale-bench -- [SANDBOXES] [ROUNDS]
//! ```
//!
//! Starts an in-process server (this binary is its own helper and envd) with the default
//! per-sandbox limits and measures, in one run:
//! * create until 201 with no sandbox alive, p50/p99 over `ROUNDS` (default 50) creates one
//!   after another, killed only after the last ("in a row", measured first, while no kill is
//!   being torn down), and over `ROUNDS` create+kill rounds ("under churn": each create
//!   follows a kill, whose teardown the kernel finishes in the background);
//! * `SANDBOXES` (default 1000) idle sandboxes created one after another, reporting every
//!   tenth of the way: the host's `MemAvailable` drop per sandbox, the memory charged to the
//!   sandboxes' cgroups per sandbox, and this process's (the server's) RSS, descriptors and
//!   threads;
//! * create until 201 with `SANDBOXES` alive, in a row, then under churn alternating round
//!   by round with a second, empty server in the same process (so both see the same host);
//!   p50/p99 and the ratios to the measurements with none alive;
//! * kill of every sandbox, then a check that nothing is left: no process in the sandboxes'
//!   cgroups, no cgroup directory, no sandbox directory, and no mount below the data
//!   directories that was not there before.
//!
//! If a create fails on the way, the error and how many sandboxes were alive are printed and
//! the rest of the run goes on with those.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bench::local_api::{Api, load_average, mem_available, pct, report, self_usage};

/// Cgroup parent of the sandboxes of the loaded server.
const CGROUP_PARENT: &str = "e2b-local-scale-bench";
/// Cgroup parent of the empty server created for the alternating comparison.
const REFERENCE_CGROUP_PARENT: &str = "e2b-local-scale-bench-ref";

fn main() -> ExitCode {
    use bench::local_api::arg;
    bench::local_api::run_main("e2b-local-scale-bench", || run(arg(1, 1000), arg(2, 50)))
}

const MIB: f64 = 1048576.0;

/// Prints the readings with `alive` sandboxes.
fn progress(server: &e2b_local::RunningServer, alive: usize, mem_before: u64, t: Instant) {
    let charged: u64 = server
        .manager()
        .all()
        .iter()
        .map(|l| l.handle.stats().memory_bytes)
        .sum();
    let (rss, fds, threads) = self_usage();
    let per = |bytes: u64| bytes as f64 / alive.max(1) as f64 / MIB;
    println!(
        "{alive:>5} alive after {:>6.1} s: MemAvailable drop {:>5.2} MiB/sandbox, cgroup charge {:>5.2} MiB/sandbox, server RSS {:>6.1} MiB, {fds} fds, {threads} threads, load {:.1}",
        t.elapsed().as_secs_f64(),
        per(mem_before.saturating_sub(mem_available())),
        per(charged),
        rss as f64 / MIB,
        load_average(),
    );
}

/// The cgroup directories left below `parent` in every v1 hierarchy (or the v2 root).
fn cgroups_left(parent: &str) -> Vec<String> {
    let roots = ["cpu", "cpuacct", "memory", "pids", "freezer", ""];
    let mut left = Vec::new();
    for r in roots {
        let dir = Path::new("/sys/fs/cgroup").join(r).join(parent);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            left.extend(
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path().display().to_string()),
            );
        }
    }
    left
}

/// Processes whose pids cgroup lies below `parent`.
fn processes_in(parent: &str) -> usize {
    let needle = format!(":pids:/{parent}/");
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("cgroup"))
                        .is_ok_and(|c| c.contains(&needle))
                })
                .count()
        })
        .unwrap_or(0)
}

/// The host's mounts below this benchmark's data directories (other programs on the host
/// may mount and unmount meanwhile).
fn mountinfo() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("e2b-local-scale-bench"))
        .map(str::to_owned)
        .collect()
}

async fn start(dir: &Path, cgroup_parent: &str) -> Result<e2b_local::RunningServer, String> {
    // No admission limits: the default commits 8 × (MemTotal − reserve) of memory limits
    // (about 336 sandboxes of 512 MiB on 24 GiB), while idle ones use 1.5 MiB each, and this
    // bench measures how far that goes. The checks of the host's descriptors, tasks, disk and
    // memory at each create still apply.
    let capacity = e2b_local::lifecycle::Capacity {
        max_sandboxes: usize::MAX,
        max_memory_bytes: u64::MAX,
    };
    e2b_local::Server::builder()
        .data_dir(dir)
        .listen("127.0.0.1:0")
        .cgroup_parent(cgroup_parent)
        .capacity(capacity)
        .start()
        .await
        .map_err(|e| e.to_string())
}

/// `count` creates one after another, then kills of all of them once the last is measured,
/// then a second for the kernel's teardown of those; returns the create latencies.
async fn create_in_a_row(api: &Api, count: usize) -> Result<Vec<Duration>, String> {
    let (mut v, mut ids) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let t = Instant::now();
        ids.push(api.create().await?.id);
        v.push(t.elapsed());
    }
    for id in &ids {
        api.kill(id).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(v)
}

/// Create until 201 then kill, `rounds` times; returns the create latencies.
async fn create_rounds(api: &Api, rounds: usize) -> Result<Vec<Duration>, String> {
    let mut v = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        let id = api.create().await?.id;
        v.push(t.elapsed());
        api.kill(&id).await?;
    }
    Ok(v)
}

async fn run(n: usize, rounds: usize) -> Result<(), String> {
    // Every sandbox's envd may hold an inotify instance of this uid: past the host's limit
    // the server refuses creates (503), so say how to lift it before starting.
    let wanted = e2b_local::lifecycle::Capacity {
        max_sandboxes: n.saturating_add(1),
        max_memory_bytes: u64::MAX,
    };
    if let Some(notice) = wanted.inotify_notice() {
        return Err(notice);
    }
    let dir = std::env::temp_dir().join("e2b-local-scale-bench");
    let mounts_before = mountinfo();
    // Before the server raises its soft limit.
    let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_err(|e| e.to_string())?;
    let server = start(&dir, CGROUP_PARENT).await?;
    let api = Api::new(server.api_url(), server.api_key().to_owned());
    println!(
        "e2b-local scale benchmark: {n} sandboxes, {rounds} rounds, {} CPUs, limits {:?}, RLIMIT_NOFILE {nofile:?}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        server.manager().config().limits,
    );
    create_rounds(&api, 3).await?;
    // In a row first, while no kill is being torn down (as after the fill below).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut at_zero_in_a_row = create_in_a_row(&api, rounds).await?;
    report("create until 201, 0 alive, in a row", &mut at_zero_in_a_row);
    let mut at_zero = create_rounds(&api, rounds).await?;
    report("create until 201, 0 alive, under churn", &mut at_zero);

    tokio::time::sleep(Duration::from_secs(1)).await;
    let mem_before = mem_available();
    let (rss0, fds0, threads0) = self_usage();
    println!(
        "    0 alive: server RSS {:.1} MiB, {fds0} fds, {threads0} threads",
        rss0 as f64 / MIB
    );
    let t = Instant::now();
    let mut ids = Vec::with_capacity(n);
    let mut create_failure = None;
    let step = (n / 10).max(1);
    for i in 0..n {
        match api.create().await {
            Ok(sb) => ids.push(sb.id),
            Err(e) => {
                println!("create #{} failed with {} alive: {e}", i + 1, ids.len());
                create_failure = Some(e);
                break;
            }
        }
        if (i + 1) % step == 0 {
            progress(&server, ids.len(), mem_before, t);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    progress(&server, ids.len(), mem_before, t);
    let mut at_n_in_a_row = create_in_a_row(&api, rounds).await?;

    // The same host, an empty server: separates what the loaded server does from what
    // the host (kernel) does with many sandboxes.
    let ref_dir = std::env::temp_dir().join("e2b-local-scale-bench-ref");
    let reference = start(&ref_dir, REFERENCE_CGROUP_PARENT).await?;
    let ref_api = api.with_server(reference.api_url(), reference.api_key().to_owned());
    create_rounds(&ref_api, 3).await?;
    let (mut at_n, mut at_n_ref) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        at_n.extend(create_rounds(&api, 1).await?);
        at_n_ref.extend(create_rounds(&ref_api, 1).await?);
    }
    let alive = ids.len();
    report(
        &format!("create until 201, {alive} alive, under churn"),
        &mut at_n,
    );
    report(
        "create until 201, empty server (alternating)",
        &mut at_n_ref,
    );
    report(
        &format!("create until 201, {alive} alive, in a row"),
        &mut at_n_in_a_row,
    );
    let ratio = |n: &mut [Duration], zero: &mut [Duration]| {
        pct(n, 0.5).as_secs_f64() / pct(zero, 0.5).as_secs_f64().max(1e-9)
    };
    println!(
        "create p50 with {alive} alive / with 0 alive: {:.2}x in a row, {:.2}x under churn",
        ratio(&mut at_n_in_a_row, &mut at_zero_in_a_row),
        ratio(&mut at_n, &mut at_zero),
    );
    reference.shutdown().await;
    let (rss, fds, threads) = self_usage();
    println!(
        "after the comparison: server RSS {:.1} MiB, {fds} fds, {threads} threads",
        rss as f64 / MIB
    );

    let t = Instant::now();
    let mut kill_failures = 0;
    for id in &ids {
        if let Err(e) = api.kill(id).await {
            kill_failures += 1;
            eprintln!("{e}");
        }
    }
    println!(
        "kill {alive} sandboxes: {:.1} s, {kill_failures} failed",
        t.elapsed().as_secs_f64()
    );
    server.shutdown().await;
    let procs = processes_in(CGROUP_PARENT) + processes_in(REFERENCE_CGROUP_PARENT);
    let mut cgroups = cgroups_left(CGROUP_PARENT);
    cgroups.extend(cgroups_left(REFERENCE_CGROUP_PARENT));
    let dirs = std::fs::read_dir(dir.join("sandboxes")).map_or(0, Iterator::count)
        + std::fs::read_dir(ref_dir.join("sandboxes")).map_or(0, Iterator::count);
    let mounts_same = mountinfo() == mounts_before;
    println!(
        "left behind: {procs} processes, {} cgroups, {dirs} sandbox directories, mount table {}",
        cgroups.len(),
        if mounts_same { "unchanged" } else { "CHANGED" }
    );
    let (rss, fds, threads) = self_usage();
    println!(
        "after shutdown: server RSS {:.1} MiB, {fds} fds, {threads} threads",
        rss as f64 / MIB
    );
    if procs > 0 || !cgroups.is_empty() || dirs > 0 || !mounts_same || kill_failures > 0 {
        return Err(format!("leftovers: {cgroups:?}"));
    }
    match create_failure {
        Some(e) => Err(format!("stopped at {alive} sandboxes: {e}")),
        None => Ok(()),
    }
}
