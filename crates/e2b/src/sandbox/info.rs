//! What the API says about a sandbox: [`SandboxInfo`] and [`SandboxMetrics`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use e2b_api::types;

use super::{NetworkInfo, SandboxLifecycle};
use crate::config::ConnectionConfig;

/// Whether a sandbox runs or is paused.
pub use e2b_api::types::SandboxState;

/// Information about a sandbox.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SandboxInfo {
    /// Its id.
    pub sandbox_id: String,
    /// The template it was created from.
    pub template_id: String,
    /// The template's alias, if any.
    pub name: Option<String>,
    /// Its metadata.
    pub metadata: BTreeMap<String, String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it will end.
    pub end_at: DateTime<Utc>,
    /// Running or paused.
    pub state: SandboxState,
    /// CPU cores.
    pub cpu_count: u32,
    /// Memory in MiB.
    pub memory_mb: i32,
    /// Disk in MiB.
    pub disk_size_mb: i32,
    /// envd's version.
    pub envd_version: String,
    /// The domain of its URLs.
    pub sandbox_domain: String,
    /// Whether internet access was set (None: never set).
    pub allow_internet_access: Option<bool>,
    /// Its network configuration, when the API reports one (`GET /sandboxes/{id}` does;
    /// listings do not).
    pub network: Option<NetworkInfo>,
    /// Its lifecycle policy, when the API reports one (`GET /sandboxes/{id}` does;
    /// listings do not).
    pub lifecycle: Option<SandboxLifecycle>,
    /// The volumes mounted into it.
    pub volume_mounts: Vec<crate::volume::VolumeMount>,
}

impl SandboxInfo {
    pub(super) fn from_detail(d: types::SandboxDetail, config: &ConnectionConfig) -> Self {
        Self {
            sandbox_id: d.sandbox_id,
            template_id: d.template_id,
            name: d.alias,
            metadata: d.metadata.map(|m| m.0).unwrap_or_default(),
            started_at: d.started_at,
            end_at: d.end_at,
            state: d.state,
            cpu_count: d.cpu_count.0.get(),
            memory_mb: *d.memory_mb,
            disk_size_mb: *d.disk_size_mb,
            envd_version: d.envd_version.0,
            sandbox_domain: d
                .domain
                .filter(|x| !x.is_empty())
                .unwrap_or_else(|| config.domain().to_owned()),
            allow_internet_access: d.allow_internet_access,
            network: d.network.map(NetworkInfo::from_api),
            lifecycle: d.lifecycle.map(SandboxLifecycle::from_api),
            volume_mounts: d
                .volume_mounts
                .into_iter()
                .map(crate::volume::VolumeMount::from_api)
                .collect(),
        }
    }

    pub(super) fn from_listed(d: types::ListedSandbox, config: &ConnectionConfig) -> Self {
        Self {
            sandbox_id: d.sandbox_id,
            template_id: d.template_id,
            name: d.alias,
            metadata: d.metadata.map(|m| m.0).unwrap_or_default(),
            started_at: d.started_at,
            end_at: d.end_at,
            state: d.state,
            cpu_count: d.cpu_count.0.get(),
            memory_mb: *d.memory_mb,
            disk_size_mb: *d.disk_size_mb,
            envd_version: d.envd_version.0,
            sandbox_domain: config.domain().to_owned(),
            allow_internet_access: None,
            network: None,
            lifecycle: None,
            volume_mounts: d
                .volume_mounts
                .into_iter()
                .map(crate::volume::VolumeMount::from_api)
                .collect(),
        }
    }
}

/// One resource usage sample of a sandbox.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SandboxMetrics {
    /// When it was taken.
    pub timestamp: DateTime<Utc>,
    /// CPU cores.
    pub cpu_count: i32,
    /// CPU usage in percent.
    pub cpu_used_pct: f32,
    /// Memory used, bytes.
    pub mem_used: i64,
    /// Memory total, bytes.
    pub mem_total: i64,
    /// Page cache, bytes.
    pub mem_cache: i64,
    /// Disk used, bytes.
    pub disk_used: i64,
    /// Disk total, bytes.
    pub disk_total: i64,
}

impl SandboxMetrics {
    pub(super) fn from_api(m: types::SandboxMetric) -> Self {
        Self {
            timestamp: m.timestamp,
            cpu_count: m.cpu_count,
            cpu_used_pct: m.cpu_used_pct,
            mem_used: m.mem_used,
            mem_total: m.mem_total,
            mem_cache: m.mem_cache,
            disk_used: m.disk_used,
            disk_total: m.disk_total,
        }
    }
}
