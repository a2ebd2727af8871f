//! Metrics of sandboxes: one sample on demand, and the series the sampler records.
//!
//! E2B keeps a series per sandbox, sampled every few seconds, and `GET
//! /sandboxes/{id}/metrics?start&end` returns the samples in that range. Here the sampler
//! records every running sandbox each [`SAMPLE_INTERVAL`], keeping the last
//! [`HISTORY_SAMPLES`] per sandbox in memory (about 50 KiB each). A paused sandbox is not
//! sampled and keeps its series; a kill drops it; a restart starts new series.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{Live, Manager, lock};
use crate::envd_client;
use crate::isolation::Limits;
use crate::state::SandboxState;

/// Time between two samples of a running sandbox.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// How often the sampler looks for sandboxes due for a sample.
const SAMPLER_TICK: Duration = Duration::from_millis(250);

/// Samples kept per sandbox: one hour at [`SAMPLE_INTERVAL`].
pub const HISTORY_SAMPLES: usize = 720;

/// One sample of a sandbox's resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSample {
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// CPUs the sandbox may use.
    pub cpu_count: u32,
    /// CPU used since the previous sample, in percent of `cpu_count` CPUs.
    pub cpu_used_pct: f32,
    /// Memory used, in bytes.
    pub mem_used: u64,
    /// Memory limit (or the host's memory), in bytes.
    pub mem_total: u64,
    /// Disk used, in bytes.
    pub disk_used: u64,
    /// Disk size, in bytes.
    pub disk_total: u64,
}

/// The recorded series of every sandbox, by id.
#[derive(Debug, Default)]
pub(super) struct History {
    series: std::sync::Mutex<HashMap<String, VecDeque<MetricSample>>>,
}

impl History {
    fn record(&self, id: &str, sample: MetricSample) {
        let mut series = lock(&self.series);
        let s = series.entry(id.to_owned()).or_default();
        if s.len() == HISTORY_SAMPLES {
            s.pop_front();
        }
        s.push_back(sample);
    }

    /// When sandbox `id` was last sampled.
    fn last(&self, id: &str) -> Option<DateTime<Utc>> {
        lock(&self.series).get(id)?.back().map(|m| m.at)
    }

    /// Forgets sandbox `id`'s series (at kill).
    pub(super) fn forget(&self, id: &str) {
        lock(&self.series).remove(id);
    }

    fn range(&self, id: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<MetricSample> {
        lock(&self.series).get(id).map_or_else(Vec::new, |s| {
            s.iter()
                .filter(|m| m.at >= start && m.at <= end)
                .copied()
                .collect()
        })
    }
}

impl Manager {
    /// One sample of `live` now: cgroup CPU and memory; disk from the sandbox's image, or
    /// without a budget from envd's `/metrics` when reachable.
    pub(crate) async fn sample(&self, live: &Live) -> MetricSample {
        let h = live.handle.clone();
        let stats = tokio::task::spawn_blocking(move || h.stats())
            .await
            .unwrap_or_default();
        let now = Instant::now();
        // Without cgroups (rootless mode) the configured limits are not enforced: report
        // the host's CPUs and memory instead.
        let limits = if live.handle.cgroup().is_enabled() {
            self.config().limits
        } else {
            Limits::default()
        };
        let cpus = limits
            .cpu_millis
            .map(|m| m.div_ceil(1000).max(1))
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            });
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
        // With a disk budget, statvfs of the sandbox's mounted image (paused ones too).
        let (disk_used, disk_total) = match live.handle.disk_usage() {
            Some(usage) => usage,
            None if live.record().state == SandboxState::Running => {
                envd_client::disk_usage(&live.handle, live.token.as_deref())
                    .await
                    .unwrap_or((0, 0))
            }
            None => (0, 0),
        };
        MetricSample {
            at: Utc::now(),
            cpu_count: cpus,
            cpu_used_pct: pct as f32,
            mem_used: stats.memory_bytes,
            mem_total,
            disk_used,
            disk_total,
        }
    }

    /// The recorded samples of sandbox `id` taken from `start` to `end` (both included),
    /// oldest first.
    pub(crate) fn metrics_between(
        &self,
        id: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Vec<MetricSample> {
        self.history.range(id, start, end)
    }

    /// Samples `live` now and records the sample in its series.
    pub(super) async fn record_sample(&self, live: &Live) {
        let sample = self.sample(live).await;
        let id = live.record().id;
        // Not for a sandbox killed meanwhile (its series is gone).
        if self.get(&id).is_some() {
            self.history.record(&id, sample);
        }
    }

    /// The sampler: records a sample of each running sandbox [`SAMPLE_INTERVAL`] after its
    /// previous one (checked every [`SAMPLER_TICK`], so each sandbox's series keeps its own
    /// cadence from its create or resume).
    pub(crate) async fn run_sampler(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(SAMPLER_TICK) => {}
            }
            let due = Utc::now() - SAMPLE_INTERVAL;
            for live in self.all() {
                let (running, id) = {
                    let rec = lock(&live.rec);
                    (rec.state == SandboxState::Running, rec.id.clone())
                };
                if running && self.history.last(&id).is_none_or(|at| at <= due) {
                    self.record_sample(&live).await;
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> MetricSample {
        MetricSample {
            at: DateTime::from_timestamp(secs, 0).unwrap(),
            cpu_count: 1,
            cpu_used_pct: 0.0,
            mem_used: 0,
            mem_total: 0,
            disk_used: 0,
            disk_total: 0,
        }
    }

    #[test]
    fn history_is_bounded_and_ranges_include_both_ends() {
        let h = History::default();
        for s in 0..(HISTORY_SAMPLES as i64 + 10) {
            h.record("a", at(s));
        }
        let all = h.range(
            "a",
            DateTime::from_timestamp(0, 0).unwrap(),
            DateTime::from_timestamp(i64::from(u32::MAX), 0).unwrap(),
        );
        assert_eq!(all.len(), HISTORY_SAMPLES);
        assert_eq!(all[0], at(10));
        let some = h.range(
            "a",
            DateTime::from_timestamp(100, 0).unwrap(),
            DateTime::from_timestamp(102, 0).unwrap(),
        );
        assert_eq!(some, vec![at(100), at(101), at(102)]);
        assert!(h.range("b", some[0].at, some[2].at).is_empty());
        h.forget("a");
        assert!(h.range("a", some[0].at, some[2].at).is_empty());
    }
}
