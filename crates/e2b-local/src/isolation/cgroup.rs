//! Per-sandbox control groups through cgroups-rs, cgroup v1 and v2 behind one trait.
//!
//! The mount table (a `mountinfo` file) and the cgroup root directory are parameters
//! ([`CgroupConfig`]), so unit tests run against plain directories on any host.
//! cgroups-rs' own hierarchies always read `/proc/self/mountinfo` and `/sys/fs/cgroup`;
//! [`MountedHierarchy`] is our implementation of its `Hierarchy` trait over the given mounts.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use cgroups_rs::fs::cgroup::Cgroup;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Controller, Hierarchy, MaxValue, Resources, Subsystem};
use cgroups_rs::{CgroupPid, FreezerState};
use serde::{Deserialize, Serialize};

use super::Limits;
use super::error::{Error, Result};

/// CFS period used for the CPU limit, in microseconds (100 ms, the kernel default).
const CPU_PERIOD_US: u64 = 100_000;

/// Which cgroup interface the host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupVersion {
    /// One hierarchy per controller (`/sys/fs/cgroup/<controller>`).
    V1,
    /// The unified hierarchy (`/sys/fs/cgroup` is `cgroup2`).
    V2,
}

/// Where the cgroup hierarchies are and where sandbox cgroups go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupConfig {
    /// v1 or v2.
    pub version: CgroupVersion,
    /// The mount table to read v1 controller mount points from (normally `/proc/self/mountinfo`).
    pub mountinfo: PathBuf,
    /// The v2 unified mount point (normally `/sys/fs/cgroup`); unused for v1.
    pub unified_root: PathBuf,
    /// Directory below each hierarchy's root that holds one cgroup per sandbox
    /// (default `e2b-local`).
    pub parent: String,
}

impl CgroupConfig {
    /// Detects the host's cgroup version from `/sys/fs/cgroup`'s filesystem type.
    pub fn detect(parent: impl Into<String>) -> Self {
        let version = match nix::sys::statfs::statfs("/sys/fs/cgroup") {
            Ok(st) if st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => {
                CgroupVersion::V2
            }
            _ => CgroupVersion::V1,
        };
        CgroupConfig {
            version,
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            unified_root: PathBuf::from("/sys/fs/cgroup"),
            parent: parent.into(),
        }
    }

    /// The controllers the runtime uses, by their v1 names.
    pub const CONTROLLERS: [&'static str; 5] = ["cpu", "cpuacct", "memory", "pids", "freezer"];

    /// Builds the hierarchy view for this configuration.
    ///
    /// # Errors
    ///
    /// [`Error::CgroupMounts`] when the mount table cannot be read.
    ///
    /// The v1 controller mounts are read from `mountinfo` once per file and kept: the host's
    /// table holds a line per sandbox disk, so reading it at every create and kill cost
    /// O(sandboxes) (8% of the CPU of creates with 1,000 sandboxes alive, measured with
    /// `perf`), and controller mounts do not move while a server runs.
    pub fn hierarchy(&self) -> Result<MountedHierarchy> {
        let mounts = match self.version {
            CgroupVersion::V2 => Vec::new(),
            CgroupVersion::V1 => self.v1_mounts()?,
        };
        Ok(MountedHierarchy {
            config: self.clone(),
            mounts,
        })
    }

    /// The v1 controller mounts of `mountinfo`, parsed once per version of the file: a
    /// regular file (tests) is read again when its size or modification time changes, a
    /// `/proc` table (whose size reads 0) never. A table without any controller mount is
    /// read again next time: cgroups may not be mounted yet.
    fn v1_mounts(&self) -> Result<Vec<V1Mount>> {
        type Version = (PathBuf, u64, Option<std::time::SystemTime>);
        static PARSED: Mutex<Vec<(Version, Vec<V1Mount>)>> = Mutex::new(Vec::new());
        let meta = std::fs::metadata(&self.mountinfo)
            .map_err(|e| Error::CgroupMounts(self.mountinfo.clone(), e))?;
        let version = (self.mountinfo.clone(), meta.len(), meta.modified().ok());
        let mut parsed = PARSED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, mounts)) = parsed.iter().find(|(v, _)| *v == version) {
            return Ok(mounts.clone());
        }
        let text = std::fs::read_to_string(&self.mountinfo)
            .map_err(|e| Error::CgroupMounts(self.mountinfo.clone(), e))?;
        let mounts = parse_v1_mounts(&text);
        if !mounts.is_empty() {
            parsed.retain(|(v, _)| v.0 != self.mountinfo);
            parsed.push((version, mounts.clone()));
        }
        Ok(mounts)
    }

    /// Lists the controllers the runtime needs that this host does not offer.
    ///
    /// # Errors
    ///
    /// [`Error::CgroupMounts`] when the mount table cannot be read.
    pub fn missing_controllers(&self) -> Result<Vec<&'static str>> {
        match self.version {
            CgroupVersion::V1 => {
                let h = self.hierarchy()?;
                Ok(Self::CONTROLLERS
                    .into_iter()
                    .filter(|c| {
                        !h.mounts
                            .iter()
                            .any(|m| m.controllers.iter().any(|x| x == c))
                    })
                    .collect())
            }
            CgroupVersion::V2 => {
                let p = self.unified_root.join("cgroup.controllers");
                let text = std::fs::read_to_string(&p).map_err(|e| Error::CgroupMounts(p, e))?;
                let have: Vec<&str> = text.split_whitespace().collect();
                Ok(["cpu", "memory", "pids"]
                    .into_iter()
                    .filter(|c| !have.contains(c))
                    .collect())
            }
        }
    }
}

/// One v1 controller mount: its mount point, the mount's root inside the hierarchy and the
/// controllers mounted there (e.g. `cpu,cpuacct` share one mount on some distributions).
#[derive(Debug, Clone, PartialEq, Eq)]
struct V1Mount {
    point: PathBuf,
    root: PathBuf,
    controllers: Vec<String>,
}

/// Parses the `cgroup` (v1) lines of a `mountinfo` file.
fn parse_v1_mounts(text: &str) -> Vec<V1Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 || r[0] != "cgroup" {
            continue;
        }
        let controllers = r[2]
            .split(',')
            .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
            .map(str::to_owned)
            .collect();
        out.push(V1Mount {
            point: PathBuf::from(l[4]),
            root: PathBuf::from(l[3]),
            controllers,
        });
    }
    out
}

/// A cgroups-rs [`Hierarchy`] over a given mount table (v1) or unified root (v2).
#[derive(Debug, Clone)]
pub struct MountedHierarchy {
    config: CgroupConfig,
    mounts: Vec<V1Mount>,
}

impl MountedHierarchy {
    fn v1_mount(&self, controller: &str) -> Option<&V1Mount> {
        self.mounts
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == controller))
    }
}

impl Hierarchy for MountedHierarchy {
    fn subsystems(&self) -> Vec<Subsystem> {
        let v2 = self.config.version == CgroupVersion::V2;
        if v2 {
            let root = self.config.unified_root.clone();
            let base = PathBuf::new();
            return vec![
                Subsystem::Cpu(CpuController::new(root.clone(), base.clone(), true)),
                Subsystem::Mem(MemController::new(root.clone(), base.clone(), true)),
                Subsystem::Pid(PidController::new(root.clone(), base.clone(), true)),
                Subsystem::Freezer(FreezerController::new(root, base, true)),
            ];
        }
        let mut subs = Vec::new();
        // cgroups-rs' `enter` joins the controller's point with the cgroup path; the mount's
        // root is only informative for us (we create cgroups below the mount point).
        if let Some(m) = self.v1_mount("cpu") {
            subs.push(Subsystem::Cpu(CpuController::new(
                m.point.clone(),
                m.root.clone(),
                false,
            )));
        }
        if let Some(m) = self.v1_mount("cpuacct") {
            subs.push(Subsystem::CpuAcct(CpuAcctController::new(
                m.point.clone(),
                m.root.clone(),
            )));
        }
        if let Some(m) = self.v1_mount("memory") {
            subs.push(Subsystem::Mem(MemController::new(
                m.point.clone(),
                m.root.clone(),
                false,
            )));
        }
        if let Some(m) = self.v1_mount("pids") {
            subs.push(Subsystem::Pid(PidController::new(
                m.point.clone(),
                m.root.clone(),
                false,
            )));
        }
        if let Some(m) = self.v1_mount("freezer") {
            subs.push(Subsystem::Freezer(FreezerController::new(
                m.point.clone(),
                m.root.clone(),
                false,
            )));
        }
        subs
    }

    fn root(&self) -> PathBuf {
        match self.config.version {
            CgroupVersion::V2 => self.config.unified_root.clone(),
            CgroupVersion::V1 => self
                .v1_mount("memory")
                .map(|m| m.point.clone())
                .unwrap_or_default(),
        }
    }

    fn root_control_group(&self) -> Cgroup {
        Cgroup::load(Box::new(self.clone()), "")
    }

    fn parent_control_group(&self, path: &str) -> Cgroup {
        let parent = Path::new(path)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Cgroup::load(Box::new(self.clone()), parent)
    }

    fn v2(&self) -> bool {
        self.config.version == CgroupVersion::V2
    }
}

/// Resource usage read from a sandbox's cgroup, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Memory in use, in bytes (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub memory_bytes: u64,
    /// The memory limit in bytes, if one is set.
    pub memory_limit_bytes: Option<u64>,
    /// Total CPU time used, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Number of tasks (threads) in the cgroup.
    pub pids: u64,
    /// How often a fork failed because the pids limit was reached (`pids.events` max).
    pub pids_max_events: u64,
}

/// What the runtime does with a sandbox's cgroup; implemented for v1 and v2.
pub trait SandboxCgroup {
    /// The cgroup path below each hierarchy root.
    fn path(&self) -> &str;
    /// Sets CPU, memory and pids limits.
    ///
    /// # Errors
    ///
    /// [`Error::Cgroup`] naming the step.
    fn apply(&self, limits: &Limits) -> Result<()>;
    /// Moves a whole process (all threads) into the cgroup.
    ///
    /// # Errors
    ///
    /// [`Error::Cgroup`] naming the step.
    fn add_process(&self, pid: u32) -> Result<()>;
    /// Freezes every process and waits until the kernel reports the group frozen.
    ///
    /// # Errors
    ///
    /// [`Error::Cgroup`] or [`Error::CgroupTimeout`].
    fn freeze(&self) -> Result<()>;
    /// Thaws the group.
    ///
    /// # Errors
    ///
    /// [`Error::Cgroup`] naming the step.
    fn thaw(&self) -> Result<()>;
    /// Whether the freezer reports the group frozen (or freezing).
    fn is_frozen(&self) -> bool;
    /// Process ids (host view) in the group.
    fn procs(&self) -> Vec<u32>;
    /// Sends SIGKILL to every process in the group until it is empty.
    ///
    /// # Errors
    ///
    /// [`Error::CgroupTimeout`] if processes remain after `timeout`.
    fn kill_all(&self, timeout: Duration) -> Result<()>;
    /// Reads usage for metrics.
    fn stats(&self) -> CgroupStats;
    /// Removes the cgroup directories (the group must be empty).
    ///
    /// # Errors
    ///
    /// [`Error::Cgroup`] naming the step.
    fn remove(&self) -> Result<()>;
    /// Whether the cgroup directory still exists.
    fn exists(&self) -> bool;
}

/// A sandbox cgroup on either interface, or none.
#[derive(Debug)]
pub enum SandboxCgroupImpl {
    /// cgroup v1.
    V1(CgroupV1),
    /// cgroup v2.
    V2(CgroupV2),
    /// No cgroup: rootless mode without a writable (delegated) cgroup parent.
    None(NoCgroup),
}

impl SandboxCgroupImpl {
    /// Loads (without creating) the cgroup `<parent>/<id>`.
    ///
    /// # Errors
    ///
    /// [`Error::CgroupMounts`] when the mount table cannot be read.
    pub fn load(config: &CgroupConfig, id: &str) -> Result<Self> {
        let path = format!("{}/{}", config.parent.trim_matches('/'), id);
        let hier = config.hierarchy()?;
        let cg = Cgroup::load(Box::new(hier), &path);
        Ok(match config.version {
            CgroupVersion::V1 => SandboxCgroupImpl::V1(CgroupV1 { cg, path }),
            CgroupVersion::V2 => SandboxCgroupImpl::V2(CgroupV2 { cg, path }),
        })
    }

    /// Creates the cgroup `<parent>/<id>` and applies `limits`.
    ///
    /// # Errors
    ///
    /// [`Error::Cgroup`] naming the step.
    pub fn create(config: &CgroupConfig, id: &str, limits: &Limits) -> Result<Self> {
        let this = Self::load(config, id)?;
        let mut limits = *limits;
        if let Some(cg) = this.inner() {
            cg.create()
                .map_err(|e| Error::cgroup("create", this.path(), e))?;
            // v1 refuses a child quota above its parent's; the parent's cap binds anyway.
            if let (Some(shared), Some(own)) = (cap_sandboxes_cpu(config), limits.cpu_millis) {
                limits.cpu_millis = Some(own.min(shared));
            }
        }
        if let Err(e) = this.apply(&limits) {
            let _ = this.remove();
            return Err(e);
        }
        Ok(this)
    }

    fn inner(&self) -> Option<&Cgroup> {
        match self {
            SandboxCgroupImpl::V1(c) => Some(&c.cg),
            SandboxCgroupImpl::V2(c) => Some(&c.cg),
            SandboxCgroupImpl::None(_) => None,
        }
    }

    fn as_dyn(&self) -> &dyn SandboxCgroup {
        match self {
            SandboxCgroupImpl::V1(c) => c,
            SandboxCgroupImpl::V2(c) => c,
            SandboxCgroupImpl::None(c) => c,
        }
    }

    /// Whether this is a real cgroup (not [`SandboxCgroupImpl::None`]).
    pub fn is_enabled(&self) -> bool {
        !matches!(self, SandboxCgroupImpl::None(_))
    }
}

impl SandboxCgroup for SandboxCgroupImpl {
    fn path(&self) -> &str {
        self.as_dyn().path()
    }
    fn apply(&self, limits: &Limits) -> Result<()> {
        self.as_dyn().apply(limits)
    }
    fn add_process(&self, pid: u32) -> Result<()> {
        self.as_dyn().add_process(pid)
    }
    fn freeze(&self) -> Result<()> {
        self.as_dyn().freeze()
    }
    fn thaw(&self) -> Result<()> {
        self.as_dyn().thaw()
    }
    fn is_frozen(&self) -> bool {
        self.as_dyn().is_frozen()
    }
    fn procs(&self) -> Vec<u32> {
        self.as_dyn().procs()
    }
    fn kill_all(&self, timeout: Duration) -> Result<()> {
        self.as_dyn().kill_all(timeout)
    }
    fn stats(&self) -> CgroupStats {
        self.as_dyn().stats()
    }
    fn remove(&self) -> Result<()> {
        self.as_dyn().remove()
    }
    fn exists(&self) -> bool {
        self.as_dyn().exists()
    }
}

/// The error of everything a sandbox without a cgroup cannot do.
fn no_freezer() -> Error {
    Error::Unsupported {
        feature: "pause and resume (the cgroup freezer)".into(),
        hint: format!(
            "this server has no cgroup (rootless mode without a delegated cgroup); {DELEGATION_HINT}"
        ),
    }
}

/// What gives a rootless server cgroups.
pub const DELEGATION_HINT: &str = "run e2b-local as root, or pass --cgroup-parent a cgroup delegated to this user: on cgroup v2 one below user@<uid>.service with cpu, memory and pids enabled; on cgroup v1 a directory in each of the cpu, cpuacct, memory, pids and freezer hierarchies that root chowned to the user (with its cgroup.procs and tasks)";

/// No cgroup at all: rootless mode when the cgroup parent is not writable. Sandboxes run
/// without CPU, memory and pids limits (reported at start-up by
/// [`Runtime::unavailable`](super::Runtime::unavailable)), cannot be frozen, and are killed
/// through their pid namespace: SIGKILL to its pid 1 makes the kernel kill every process
/// in it, and pid 1 is reaped only after all of them are gone.
#[derive(Debug, Clone, Default)]
pub struct NoCgroup;

impl SandboxCgroup for NoCgroup {
    fn path(&self) -> &str {
        ""
    }
    fn apply(&self, _limits: &Limits) -> Result<()> {
        // Reported once at start-up, not per sandbox.
        Ok(())
    }
    fn add_process(&self, _pid: u32) -> Result<()> {
        Ok(())
    }
    fn freeze(&self) -> Result<()> {
        Err(no_freezer())
    }
    fn thaw(&self) -> Result<()> {
        Err(no_freezer())
    }
    fn is_frozen(&self) -> bool {
        false
    }
    fn procs(&self) -> Vec<u32> {
        Vec::new()
    }
    fn kill_all(&self, _timeout: Duration) -> Result<()> {
        Ok(())
    }
    fn stats(&self) -> CgroupStats {
        CgroupStats::default()
    }
    fn remove(&self) -> Result<()> {
        Ok(())
    }
    fn exists(&self) -> bool {
        false
    }
}

/// In rootless mode: why sandbox cgroups cannot be used under `config.parent`, or `None`
/// when they can (the parent exists or can be created, and it and its `cgroup.procs` are
/// writable by this process, i.e. delegated to the user: on v2 by systemd, on v1 by root
/// creating and chowning the parent in each hierarchy).
pub fn rootless_cgroup_problem(config: &CgroupConfig) -> Option<String> {
    let parent = config.parent.trim_matches('/');
    let dirs: Vec<PathBuf> = match config.version {
        CgroupVersion::V2 => vec![config.unified_root.join(parent)],
        CgroupVersion::V1 => {
            let h = match config.hierarchy() {
                Ok(h) => h,
                Err(e) => return Some(e.to_string()),
            };
            let mut dirs = Vec::new();
            for c in CgroupConfig::CONTROLLERS {
                match h.v1_mount(c) {
                    Some(m) => dirs.push(m.point.join(parent)),
                    None => return Some(format!("the cgroup v1 controller {c} is not mounted")),
                }
            }
            dirs
        }
    };
    for dir in &dirs {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Some(format!(
                "cannot create the cgroup {} ({e}){}",
                dir.display(),
                if config.version == CgroupVersion::V1 {
                    ": on cgroup v1, root must create it and chown it to this user"
                } else {
                    ""
                }
            ));
        }
        for p in [dir.clone(), dir.join("cgroup.procs")] {
            if !super::rootless::writable(&p) {
                return Some(format!("{} is not writable by this user", p.display()));
            }
        }
    }
    if config.version == CgroupVersion::V2 {
        let p = config.unified_root.join(parent).join("cgroup.controllers");
        let have = std::fs::read_to_string(&p).unwrap_or_default();
        let missing: Vec<&str> = ["cpu", "memory", "pids"]
            .into_iter()
            .filter(|c| !have.split_whitespace().any(|x| x == *c))
            .collect();
        if !missing.is_empty() {
            return Some(format!(
                "the controllers {} are not delegated to {}",
                missing.join(", "),
                p.display()
            ));
        }
    }
    None
}

/// The CPU all sandboxes of a server may use together, in thousandths of a core: every core
/// of the host but one (`None`, no cap, on a one-core host). Without it, a fork bomb that
/// retries failed forks at once (1,024 tasks at the pids limit) stalled process creation on
/// the whole 2-core host for up to 27 s, commands in other sandboxes included; with it, the
/// host keeps a core (`e2b-local-noisy-bench`, see the README). The period stays 100 ms: a
/// 20 ms period throttles the bomb in windows too short for the host to catch up (stalls of
/// 13 s again).
pub fn sandboxes_cpu_millis() -> Option<u32> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cpus >= 2).then(|| u32::try_from((cpus - 1) * 1000).unwrap_or(u32::MAX))
}

/// Caps the CPU of the sandboxes' parent cgroup at [`sandboxes_cpu_millis`] and returns the
/// cap, or `None` when there is none: a one-core host, or a parent this process cannot
/// write (rootless with a delegated parent, whose own limits belong to its owner) or that
/// refuses the cap (v1: a child of an earlier run with a larger quota).
fn cap_sandboxes_cpu(config: &CgroupConfig) -> Option<u32> {
    let millis = sandboxes_cpu_millis()?;
    let quota = u64::from(millis) * CPU_PERIOD_US / 1000;
    let parent = config.parent.trim_matches('/');
    let (files, values): (Vec<PathBuf>, Vec<String>) = match config.version {
        CgroupVersion::V1 => {
            let dir = config.hierarchy().ok()?.v1_mount("cpu")?.point.join(parent);
            (
                vec![dir.join("cpu.cfs_period_us"), dir.join("cpu.cfs_quota_us")],
                vec![CPU_PERIOD_US.to_string(), quota.to_string()],
            )
        }
        CgroupVersion::V2 => (
            vec![config.unified_root.join(parent).join("cpu.max")],
            vec![format!("{quota} {CPU_PERIOD_US}")],
        ),
    };
    for (file, value) in files.iter().zip(&values) {
        let current = std::fs::read_to_string(file).unwrap_or_default();
        if current.trim() != value && std::fs::write(file, value).is_err() {
            return None;
        }
    }
    Some(millis)
}

/// Translates [`Limits`] to cgroups-rs resources (the same for both versions; cgroups-rs
/// writes `memory.limit_in_bytes` or `memory.max`, `cpu.cfs_quota_us` or `cpu.max`).
fn resources(limits: &Limits) -> Resources {
    let mut res = Resources::default();
    if let Some(m) = limits.memory_bytes {
        res.memory.memory_hard_limit = Some(i64::try_from(m).unwrap_or(i64::MAX));
    }
    if let Some(p) = limits.pids {
        res.pid.maximum_number_of_processes =
            Some(MaxValue::Value(i64::try_from(p).unwrap_or(i64::MAX)));
    }
    if let Some(c) = limits.cpu_millis {
        let quota = u64::from(c) * CPU_PERIOD_US / 1000;
        res.cpu.period = Some(CPU_PERIOD_US);
        res.cpu.quota = Some(i64::try_from(quota).unwrap_or(i64::MAX));
    }
    res
}

/// Applies `limits`, then makes sure the memory limit holds: cgroups-rs ignores errors when
/// writing memory files, so the limit is read back; and swap is closed off where the host
/// accounts it (v1 `memory.memsw.limit_in_bytes` = the limit, v2 `memory.swap.max` = 0), so
/// the limit cannot be exceeded through swap.
fn apply_limits(cg: &Cgroup, path: &str, limits: &Limits, v2: bool) -> Result<()> {
    cg.apply(&resources(limits))
        .map_err(|e| Error::cgroup("apply limits", path, e))?;
    let Some(wanted) = limits.memory_bytes else {
        return Ok(());
    };
    let mem = cg
        .controller_of::<MemController>()
        .ok_or_else(|| Error::Unsupported {
            feature: "the memory cgroup controller".into(),
            hint: "enable it (cgroup_enable=memory, or +memory in cgroup.subtree_control)".into(),
        })?;
    let got = mem.memory_stat().limit_in_bytes;
    // v1 rounds the limit down to whole pages.
    let low = i64::try_from(wanted.saturating_sub(65_536)).unwrap_or(i64::MAX);
    if got > i64::try_from(wanted).unwrap_or(i64::MAX) || got < low {
        return Err(Error::CgroupLimit {
            path: path.to_owned(),
            what: "the memory limit",
            wanted,
            got,
        });
    }
    let (file, value) = if v2 {
        ("memory.swap.max", 0)
    } else {
        ("memory.memsw.limit_in_bytes", got)
    };
    if mem.path().join(file).exists() {
        mem.set_memswap_limit(value)
            .map_err(|e| Error::cgroup("close off swap", path, e))?;
    }
    Ok(())
}

fn freezer(cg: &Cgroup) -> Option<&FreezerController> {
    cg.controller_of::<FreezerController>()
}

fn frozen(cg: &Cgroup) -> bool {
    freezer(cg)
        .is_some_and(|f| matches!(f.state(), Ok(FreezerState::Frozen | FreezerState::Freezing)))
}

fn procs_of(cg: &Cgroup) -> Vec<u32> {
    // Every v1 hierarchy holds the same processes; the pids hierarchy is authoritative for
    // "is anything left", since it is where fork bombs live.
    let from = cg
        .controller_of::<PidController>()
        .map(|c| c.procs())
        .unwrap_or_else(|| cg.procs());
    from.into_iter()
        .filter_map(|p| u32::try_from(p.pid).ok())
        .filter(|p| *p != 0)
        .collect()
}

fn freeze_and_wait(cg: &Cgroup, path: &str) -> Result<()> {
    let f = freezer(cg).ok_or_else(|| Error::Unsupported {
        feature: "the cgroup freezer".into(),
        hint: "mount the v1 freezer controller or use cgroup v2".into(),
    })?;
    f.freeze().map_err(|e| Error::cgroup("freeze", path, e))?;
    let start = Instant::now();
    loop {
        match f.state() {
            Ok(FreezerState::Frozen) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(Error::cgroup("read freezer state", path, e)),
        }
        if start.elapsed() > Duration::from_secs(5) {
            return Err(Error::CgroupTimeout {
                path: path.to_owned(),
                what: "freeze",
                millis: 5000,
            });
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn kill_loop(cg: &Cgroup, path: &str, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let procs = procs_of(cg);
        if procs.is_empty() {
            return Ok(());
        }
        for p in procs {
            if let Ok(pid) = i32::try_from(p) {
                // ESRCH only means it already died.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if start.elapsed() > timeout {
            return Err(Error::CgroupTimeout {
                path: path.to_owned(),
                what: "emptying after SIGKILL",
                millis: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            });
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn stats_of(cg: &Cgroup, v2: bool) -> CgroupStats {
    let mut s = CgroupStats::default();
    if let Some(m) = cg.controller_of::<MemController>() {
        let mem = m.memory_stat();
        s.memory_bytes = mem.usage_in_bytes;
        s.memory_limit_bytes = u64::try_from(mem.limit_in_bytes)
            .ok()
            .filter(|l| *l < (1 << 62));
    }
    if let Some(p) = cg.controller_of::<PidController>() {
        s.pids = p.get_pid_current().unwrap_or(0);
        s.pids_max_events = p.get_pid_events().unwrap_or(0);
    }
    if v2 {
        if let Some(c) = cg.controller_of::<CpuController>() {
            let text = c.cpu().stat;
            s.cpu_usage_ns = text
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(0, |us| us * 1000);
        }
    } else if let Some(c) = cg.controller_of::<CpuAcctController>() {
        s.cpu_usage_ns = c.cpuacct().usage;
    }
    s
}

/// cgroup v1: one directory per controller hierarchy.
#[derive(Debug)]
pub struct CgroupV1 {
    cg: Cgroup,
    path: String,
}

impl SandboxCgroup for CgroupV1 {
    fn path(&self) -> &str {
        &self.path
    }
    fn apply(&self, limits: &Limits) -> Result<()> {
        apply_limits(&self.cg, &self.path, limits, false)
    }
    fn add_process(&self, pid: u32) -> Result<()> {
        self.cg
            .add_task_by_tgid(CgroupPid::from(u64::from(pid)))
            .map_err(|e| Error::cgroup("add process", &self.path, e))
    }
    fn freeze(&self) -> Result<()> {
        freeze_and_wait(&self.cg, &self.path)
    }
    fn thaw(&self) -> Result<()> {
        match freezer(&self.cg) {
            Some(f) => f.thaw().map_err(|e| Error::cgroup("thaw", &self.path, e)),
            None => Ok(()),
        }
    }
    fn is_frozen(&self) -> bool {
        frozen(&self.cg)
    }
    fn procs(&self) -> Vec<u32> {
        procs_of(&self.cg)
    }
    fn kill_all(&self, timeout: Duration) -> Result<()> {
        // v1 has no cgroup.kill: SIGKILL each process until none is left. Frozen tasks
        // cannot die, so thaw first.
        let _ = self.thaw();
        kill_loop(&self.cg, &self.path, timeout)
    }
    fn stats(&self) -> CgroupStats {
        stats_of(&self.cg, false)
    }
    fn remove(&self) -> Result<()> {
        self.cg
            .delete()
            .map_err(|e| Error::cgroup("remove", &self.path, e))
    }
    fn exists(&self) -> bool {
        self.cg
            .subsystems()
            .iter()
            .any(|s| s.to_controller().exists())
    }
}

/// cgroup v2: one directory in the unified hierarchy.
#[derive(Debug)]
pub struct CgroupV2 {
    cg: Cgroup,
    path: String,
}

impl SandboxCgroup for CgroupV2 {
    fn path(&self) -> &str {
        &self.path
    }
    fn apply(&self, limits: &Limits) -> Result<()> {
        apply_limits(&self.cg, &self.path, limits, true)
    }
    fn add_process(&self, pid: u32) -> Result<()> {
        self.cg
            .add_task_by_tgid(CgroupPid::from(u64::from(pid)))
            .map_err(|e| Error::cgroup("add process", &self.path, e))
    }
    fn freeze(&self) -> Result<()> {
        // `cgroup.freeze` holds the requested state; the kernel reports the effective one
        // as `frozen 1` in `cgroup.events` once every task has stopped.
        let f = freezer(&self.cg).ok_or_else(|| Error::Unsupported {
            feature: "cgroup.freeze".into(),
            hint: "use a kernel with the v2 freezer (5.2+)".into(),
        })?;
        f.freeze()
            .map_err(|e| Error::cgroup("freeze", &self.path, e))?;
        let events = self.config_dir().join("cgroup.events");
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&events)
                .map_err(|e| Error::CgroupRead(events.clone(), e))?;
            if text.lines().any(|l| l.trim() == "frozen 1") {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(5) {
                return Err(Error::CgroupTimeout {
                    path: self.path.clone(),
                    what: "freeze",
                    millis: 5000,
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    fn thaw(&self) -> Result<()> {
        match freezer(&self.cg) {
            Some(f) => f.thaw().map_err(|e| Error::cgroup("thaw", &self.path, e)),
            None => Ok(()),
        }
    }
    fn is_frozen(&self) -> bool {
        frozen(&self.cg)
    }
    fn procs(&self) -> Vec<u32> {
        procs_of(&self.cg)
    }
    fn kill_all(&self, timeout: Duration) -> Result<()> {
        // cgroup.kill (5.14+) kills atomically, frozen or not; fall back to the loop.
        if self.cg.kill().is_err() {
            let _ = self.thaw();
        }
        kill_loop(&self.cg, &self.path, timeout)
    }
    fn stats(&self) -> CgroupStats {
        stats_of(&self.cg, true)
    }
    fn remove(&self) -> Result<()> {
        self.cg
            .delete()
            .map_err(|e| Error::cgroup("remove", &self.path, e))
    }
    fn exists(&self) -> bool {
        self.config_dir().exists()
    }
}

impl CgroupV2 {
    fn config_dir(&self) -> PathBuf {
        self.cg
            .subsystems()
            .first()
            .map(|s| s.to_controller().path().to_path_buf())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
30 29 0:26 / {ROOT}/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
31 29 0:27 / {ROOT}/memory rw,nosuid - cgroup cgroup rw,memory
32 29 0:28 / {ROOT}/pids rw,nosuid - cgroup cgroup rw,pids
33 29 0:29 / {ROOT}/freezer rw,nosuid - cgroup cgroup rw,freezer
34 29 0:30 / {ROOT}/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
";

    fn fake_v1(dir: &Path) -> CgroupConfig {
        let mi = dir.join("mountinfo");
        std::fs::write(
            &mi,
            MOUNTINFO.replace("{ROOT}", dir.to_str().unwrap_or_default()),
        )
        .unwrap_or_default();
        CgroupConfig {
            version: CgroupVersion::V1,
            mountinfo: mi,
            unified_root: dir.join("unused"),
            parent: "e2b-test".into(),
        }
    }

    #[test]
    fn parses_v1_mounts_with_shared_controllers() {
        let m = parse_v1_mounts(&MOUNTINFO.replace("{ROOT}", "/sys/fs/cgroup"));
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].point, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m[0].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(m[4].controllers, vec!["xattr"]);
    }

    #[test]
    fn missing_controllers_are_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut cfg = fake_v1(dir.path());
        assert!(
            cfg.missing_controllers()
                .map(|m| m.is_empty())
                .unwrap_or(false)
        );
        std::fs::write(&cfg.mountinfo, "").unwrap_or_default();
        assert_eq!(
            cfg.missing_controllers().unwrap_or_default(),
            vec!["cpu", "cpuacct", "memory", "pids", "freezer"]
        );
        cfg.mountinfo = dir.path().join("nope");
        assert!(matches!(
            cfg.missing_controllers(),
            Err(Error::CgroupMounts(..))
        ));
    }

    #[test]
    fn rootless_probe_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        // v1: every controller's parent is created (these tests run as root, so plain
        // directories are writable).
        let cfg = fake_v1(dir.path());
        let procs = dir.path().join("memory/e2b-test/cgroup.procs");
        assert_eq!(
            rootless_cgroup_problem(&cfg),
            Some(format!(
                "{} is not writable by this user",
                dir.path()
                    .join("cpu,cpuacct/e2b-test/cgroup.procs")
                    .display()
            ))
        );
        // The kernel makes cgroup.procs in every new cgroup; plain directories need it made.
        for c in ["cpu,cpuacct", "memory", "pids", "freezer"] {
            let d = dir.path().join(c).join("e2b-test");
            std::fs::create_dir_all(&d).unwrap_or_default();
            std::fs::write(d.join("cgroup.procs"), "").unwrap_or_default();
        }
        assert!(procs.exists());
        assert_eq!(rootless_cgroup_problem(&cfg), None);
        assert!(dir.path().join("freezer/e2b-test").is_dir());
        // A parent that cannot be created is named.
        std::fs::write(dir.path().join("cpu,cpuacct/blocked"), "").unwrap_or_default();
        let mut blocked = cfg.clone();
        blocked.parent = "blocked/sub".into();
        let msg = rootless_cgroup_problem(&blocked).unwrap_or_default();
        assert!(
            msg.starts_with(&format!(
                "cannot create the cgroup {}/cpu,cpuacct/blocked/sub (",
                dir.path().display()
            )) && msg.ends_with("): on cgroup v1, root must create it and chown it to this user"),
            "{msg}"
        );
        // v2: the controllers must be delegated to the parent.
        let v2 = CgroupConfig {
            version: CgroupVersion::V2,
            mountinfo: dir.path().join("unused"),
            unified_root: dir.path().join("unified"),
            parent: "user.slice/e2b".into(),
        };
        let ctl = dir.path().join("unified/user.slice/e2b/cgroup.controllers");
        std::fs::create_dir_all(dir.path().join("unified/user.slice/e2b")).unwrap_or_default();
        std::fs::write(dir.path().join("unified/user.slice/e2b/cgroup.procs"), "")
            .unwrap_or_default();
        std::fs::write(&ctl, "cpu pids\n").unwrap_or_default();
        assert_eq!(
            rootless_cgroup_problem(&v2),
            Some(format!(
                "the controllers memory are not delegated to {}",
                ctl.display()
            ))
        );
        std::fs::write(&ctl, "cpuset cpu io memory pids\n").unwrap_or_default();
        assert_eq!(rootless_cgroup_problem(&v2), None);
    }

    #[test]
    fn a_sandbox_without_a_cgroup_cannot_pause() {
        let cg = SandboxCgroupImpl::None(NoCgroup);
        assert!(!cg.is_enabled());
        assert!(cg.apply(&Limits::default()).is_ok() && cg.add_process(1).is_ok());
        assert_eq!(
            cg.freeze()
                .map_err(|e| e.to_string())
                .err()
                .unwrap_or_default(),
            format!(
                "pause and resume (the cgroup freezer) is unavailable: this server has no cgroup (rootless mode without a delegated cgroup); {DELEGATION_HINT}"
            )
        );
        assert!(cg.thaw().is_err() && !cg.is_frozen() && !cg.exists());
        assert_eq!(cg.procs(), Vec::<u32>::new());
    }

    #[test]
    fn v1_limits_land_in_the_right_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let cfg = fake_v1(dir.path());
        let limits = Limits {
            cpu_millis: Some(1500),
            memory_bytes: Some(256 << 20),
            pids: Some(64),
            disk_bytes: None,
        };
        let cg = SandboxCgroupImpl::create(&cfg, "sbx1", &limits)
            .unwrap_or_else(|e| panic!("create: {e}"));
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap_or_default();
        assert_eq!(
            read("memory/e2b-test/sbx1/memory.limit_in_bytes"),
            "268435456"
        );
        // No memory.memsw file in the fake tree (no swap accounting): nothing written.
        assert!(
            !dir.path()
                .join("memory/e2b-test/sbx1/memory.memsw.limit_in_bytes")
                .exists()
        );
        assert_eq!(read("pids/e2b-test/sbx1/pids.max"), "64");
        assert_eq!(
            read("cpu,cpuacct/e2b-test/sbx1/cpu.cfs_period_us"),
            "100000"
        );
        // The sandbox's quota is clamped to its parent's, which leaves the host a core.
        let shared = sandboxes_cpu_millis();
        let quota = shared.map_or(1500, |s| s.min(1500)) * 100;
        assert_eq!(
            read("cpu,cpuacct/e2b-test/sbx1/cpu.cfs_quota_us"),
            quota.to_string()
        );
        if let Some(s) = shared {
            assert_eq!(
                read("cpu,cpuacct/e2b-test/cpu.cfs_quota_us"),
                (u64::from(s) * CPU_PERIOD_US / 1000).to_string()
            );
        }
        cg.add_process(4242).unwrap_or_else(|e| panic!("add: {e}"));
        assert_eq!(read("pids/e2b-test/sbx1/cgroup.procs"), "4242");
        assert_eq!(read("freezer/e2b-test/sbx1/cgroup.procs"), "4242");
        // A plain file reads back what was written, so freeze() sees FROZEN at once.
        cg.freeze().unwrap_or_else(|e| panic!("freeze: {e}"));
        assert_eq!(read("freezer/e2b-test/sbx1/freezer.state"), "FROZEN");
        cg.thaw().unwrap_or_else(|e| panic!("thaw: {e}"));
        assert_eq!(read("freezer/e2b-test/sbx1/freezer.state"), "THAWED");
        assert_eq!(cg.path(), "e2b-test/sbx1");
    }

    #[test]
    fn v2_limits_land_in_the_right_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let cfg = CgroupConfig {
            version: CgroupVersion::V2,
            mountinfo: dir.path().join("unused"),
            unified_root: dir.path().to_path_buf(),
            parent: "e2b-test".into(),
        };
        let cg = SandboxCgroupImpl::load(&cfg, "sbx2").unwrap_or_else(|e| panic!("load: {e}"));
        std::fs::create_dir_all(dir.path().join("e2b-test/sbx2")).unwrap_or_default();
        // The kernel creates cpu.max with its default; cgroups-rs reads it to keep the period.
        std::fs::write(dir.path().join("e2b-test/sbx2/cpu.max"), "max 100000\n")
            .unwrap_or_default();
        // ... and reports the effective freezer state in cgroup.events.
        std::fs::write(
            dir.path().join("e2b-test/sbx2/cgroup.events"),
            "populated 1\nfrozen 1\n",
        )
        .unwrap_or_default();
        let limits = Limits {
            cpu_millis: Some(500),
            memory_bytes: Some(128 << 20),
            pids: Some(10),
            disk_bytes: None,
        };
        cg.apply(&limits).unwrap_or_else(|e| panic!("apply: {e}"));
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap_or_default();
        assert_eq!(read("e2b-test/sbx2/memory.max"), "134217728");
        assert_eq!(read("e2b-test/sbx2/pids.max"), "10");
        assert_eq!(read("e2b-test/sbx2/cpu.max"), "50000 100000");
        cg.freeze().unwrap_or_else(|e| panic!("freeze: {e}"));
        assert_eq!(read("e2b-test/sbx2/cgroup.freeze"), "1");
    }
}
