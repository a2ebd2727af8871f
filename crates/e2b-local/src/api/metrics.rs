//! Metrics: `GET /sandboxes/{id}/metrics` and `GET /sandboxes/metrics`.

use std::time::{Duration, Instant};

use chrono::Utc;
use e2b_api::types;

use crate::envd_client;
use crate::isolation::Limits;
use crate::lifecycle::{Live, Manager, lock};
use crate::state::SandboxState;

/// One metric sample of `live`: cgroup CPU and memory, disk from envd's `/metrics` when
/// reachable.
pub(crate) async fn sample(m: &Manager, live: &Live) -> types::SandboxMetric {
    let stats = live.handle.stats();
    let now = Instant::now();
    // Without cgroups (rootless mode) the configured limits are not enforced: report
    // the host's CPUs and memory instead.
    let limits = if live.handle.cgroup().is_enabled() {
        m.config().limits
    } else {
        Limits::default()
    };
    let cpus = i32::try_from(
        limits
            .cpu_millis
            .map(|m| m.div_ceil(1000).max(1) as usize)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    )
    .unwrap_or(1);
    let pct = {
        let mut prev = lock(&live.cpu_prev);
        let (t0, c0) = prev.unwrap_or_else(|| {
            let started = live.record().started_at;
            let age = (Utc::now() - started).to_std().unwrap_or(Duration::ZERO);
            (now.checked_sub(age).unwrap_or(now), 0)
        });
        *prev = Some((now, stats.cpu_usage_ns));
        let wall = now.duration_since(t0).as_nanos().max(1) as f64;
        let used = stats.cpu_usage_ns.saturating_sub(c0) as f64;
        ((used / wall / f64::from(cpus.max(1))) * 10000.0).round() / 100.0
    };
    let mem_total = stats
        .memory_limit_bytes
        .or(limits.memory_bytes)
        .unwrap_or_else(host_mem_total);
    let (disk_used, disk_total) = if live.record().state == SandboxState::Running {
        envd_client::disk_usage(&live.handle, live.token.as_deref())
            .await
            .unwrap_or((0, 0))
    } else {
        (0, 0)
    };
    let ts = Utc::now();
    types::SandboxMetric {
        cpu_count: cpus,
        cpu_used_pct: pct as f32,
        disk_total: i64::try_from(disk_total).unwrap_or(i64::MAX),
        disk_used: i64::try_from(disk_used).unwrap_or(i64::MAX),
        mem_cache: 0,
        mem_total: i64::try_from(mem_total).unwrap_or(i64::MAX),
        mem_used: i64::try_from(stats.memory_bytes).unwrap_or(i64::MAX),
        timestamp: ts,
        timestamp_unix: ts.timestamp(),
    }
}

/// Host `MemTotal` in bytes.
pub(crate) fn host_mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
