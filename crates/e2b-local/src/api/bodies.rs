//! The response bodies built from live sandboxes and the server's limits.

use e2b_api::types;

use crate::lifecycle::{Live, Manager};
use crate::state::{SandboxRecord, SandboxState};

/// `clientID` of every sandbox: a constant E2B keeps for old SDKs.
const CLIENT_ID: &str = "6532622b";

/// The body of create, resume and connect.
pub(super) fn sandbox_body(m: &Manager, live: &Live) -> types::Sandbox {
    let rec = live.record();
    types::Sandbox {
        alias: Some(rec.template.clone()),
        client_id: CLIENT_ID.into(),
        domain: Some(m.config().domain.clone()),
        envd_access_token: live.token.clone(),
        envd_version: rec.envd_version.into(),
        sandbox_id: rec.id,
        template_id: rec.template,
        traffic_access_token: live.traffic_token.clone(),
    }
}

/// The API's state of a live sandbox (killed ones are never listed).
fn api_state(s: SandboxState) -> types::SandboxState {
    match s {
        SandboxState::Paused => types::SandboxState::Paused,
        _ => types::SandboxState::Running,
    }
}

/// The sizes every sandbox reports.
pub(super) struct Sizes {
    /// CPUs of a sandbox: the limit, or the host's.
    pub(super) cpu: types::CpuCount,
    /// Memory of a sandbox in MiB: the limit, or the host's.
    pub(super) mem_mb: i32,
    /// Disk of a sandbox in MiB: the limit, or the data directory's file system.
    pub(super) disk_mb: i32,
}

/// The sizes of every sandbox on this server.
pub(super) fn sizes(m: &Manager) -> Sizes {
    let limits = m.config().limits;
    let cpus = limits
        .cpu_millis
        .map(|c| c.div_ceil(1000).max(1))
        .unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
        });
    let mem = limits
        .memory_bytes
        .unwrap_or_else(crate::lifecycle::host_mem_total)
        >> 20;
    let disk = limits.disk_bytes.unwrap_or_else(|| {
        nix::sys::statvfs::statvfs(m.runtime().data_dir())
            .map(|v| v.blocks() * v.fragment_size())
            .unwrap_or(0)
    }) >> 20;
    Sizes {
        cpu: types::CpuCount(std::num::NonZeroU32::new(cpus).unwrap_or(std::num::NonZeroU32::MIN)),
        mem_mb: i32::try_from(mem).unwrap_or(i32::MAX).max(128),
        disk_mb: i32::try_from(disk).unwrap_or(i32::MAX),
    }
}

/// `volumeMounts` of a sandbox's bodies.
fn mounts(m: &[crate::state::VolumeMount]) -> Vec<types::SandboxVolumeMount> {
    m.iter()
        .map(|m| types::SandboxVolumeMount {
            name: m.name.clone(),
            path: m.path.clone(),
        })
        .collect()
}

/// The body of `GET /sandboxes/{id}`.
pub(super) fn detail(m: &Manager, live: &Live) -> types::SandboxDetail {
    let rec = live.record();
    let s = sizes(m);
    types::SandboxDetail {
        alias: Some(rec.template.clone()),
        allow_internet_access: rec.allow_internet_access,
        client_id: CLIENT_ID.into(),
        cpu_count: s.cpu,
        disk_size_mb: types::DiskSizeMb(s.disk_mb),
        domain: Some(m.config().domain.clone()),
        end_at: rec.end_at,
        envd_access_token: live.token.clone(),
        envd_version: rec.envd_version.into(),
        lifecycle: Some(types::SandboxLifecycle {
            auto_resume: rec.auto_resume,
            on_timeout: if rec.auto_pause {
                types::SandboxOnTimeout::Pause
            } else {
                types::SandboxOnTimeout::Kill
            },
        }),
        memory_mb: types::MemoryMb(s.mem_mb),
        metadata: Some(types::SandboxMetadata(rec.metadata)),
        network: rec.network.as_ref().and_then(super::network::network_info),
        sandbox_id: rec.id,
        started_at: rec.started_at,
        state: api_state(rec.state),
        template_id: rec.template,
        volume_mounts: mounts(&rec.volume_mounts),
    }
}

/// One entry of the list endpoints.
pub(super) fn listed(m: &Manager, rec: SandboxRecord) -> types::ListedSandbox {
    let s = sizes(m);
    types::ListedSandbox {
        alias: Some(rec.template.clone()),
        client_id: CLIENT_ID.into(),
        cpu_count: s.cpu,
        disk_size_mb: types::DiskSizeMb(s.disk_mb),
        end_at: rec.end_at,
        envd_version: rec.envd_version.into(),
        memory_mb: types::MemoryMb(s.mem_mb),
        metadata: Some(types::SandboxMetadata(rec.metadata)),
        sandbox_id: rec.id,
        started_at: rec.started_at,
        state: api_state(rec.state),
        template_id: rec.template,
        volume_mounts: mounts(&rec.volume_mounts),
    }
}
