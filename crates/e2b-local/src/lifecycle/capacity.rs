//! Admission control: how many sandboxes, how much memory they commit, and the host's own
//! limits (open files, tasks, disk, available memory, inotify instances), all checked before
//! a create spawns anything, so a refused create leaves nothing behind.

use std::path::Path;

use crate::isolation::Limits;

/// Descriptors the server holds per sandbox (log FIFO, helper pipes, pidfd, proxied
/// connections), kept free in its `RLIMIT_NOFILE` before a create.
const FDS_PER_SANDBOX: u64 = 16;

/// Tasks kept free below the kernel's `pid_max` and `threads-max` for a new sandbox whose
/// limits set no `pids` maximum.
const TASKS_PER_SANDBOX: u64 = 256;

/// The default limit of committed memory is this many times the host's memory minus the
/// reserve: a sandbox commits its memory limit (512 MiB by default) but an idle one uses
/// about 1.4 MiB, so limits are overcommitted; [`RESERVE`] of available memory is checked
/// on every create.
const MEMORY_OVERCOMMIT: u64 = 8;

/// Free disk space (on the data directory's filesystem) a create needs: its directories and
/// up to 8 MiB of log, with room to spare.
const DISK_RESERVE: u64 = 64 << 20;

/// Where the kernel keeps the most inotify instances one uid may hold. Every sandbox's envd
/// runs as the server's uid and holds one (shared by all its watchers, opened with the
/// first), so this caps the sandboxes of a server.
const MAX_USER_INSTANCES: &str = "/proc/sys/fs/inotify/max_user_instances";

/// inotify instances left to the host's other programs of the server's uid (systemd, udev,
/// desktop tools hold a few each): sandboxes may use `max_user_instances` minus these.
const INOTIFY_INSTANCES_RESERVE: u64 = 16;

/// How many sandboxes the host's `fs.inotify.max_user_instances` leaves room for.
fn inotify_sandboxes(max_user_instances: u64) -> u64 {
    max_user_instances.saturating_sub(INOTIFY_INSTANCES_RESERVE)
}

/// How much of the host's memory is never committed to sandboxes and must stay available:
/// an eighth of `MemTotal`, at least 512 MiB.
fn reserve(mem_total: u64) -> u64 {
    (mem_total / 8).max(512 << 20)
}

/// Server-wide admission limits (`e2b-local serve --max-sandboxes --max-memory-mib`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Most sandboxes alive (running, paused, being created or restored) at once.
    pub max_sandboxes: usize,
    /// Most memory committed: the sum of the live sandboxes' memory limits, in bytes.
    pub max_memory_bytes: u64,
}

impl Capacity {
    /// The defaults derived from this host: `max_sandboxes` is the smaller of
    /// `RLIMIT_NOFILE / 16` (descriptors the server holds per sandbox) and
    /// `pid_max / 32`; `max_memory_bytes` is 8 × (`MemTotal` − reserve), the reserve being
    /// an eighth of `MemTotal`, at least 512 MiB.
    ///
    /// ```
    /// let c = e2b_local::lifecycle::Capacity::from_host();
    /// assert!(c.max_sandboxes > 0 && c.max_memory_bytes > 0);
    /// ```
    pub fn from_host() -> Self {
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| soft);
        let pid_max = read_u64("/proc/sys/kernel/pid_max").unwrap_or(32_768);
        let max_sandboxes = (nofile / FDS_PER_SANDBOX).min(pid_max / 32).max(1);
        let mem_total = meminfo("MemTotal:").unwrap_or(1 << 30);
        Capacity {
            max_sandboxes: usize::try_from(max_sandboxes).unwrap_or(usize::MAX),
            max_memory_bytes: mem_total
                .saturating_sub(reserve(mem_total))
                .saturating_mul(MEMORY_OVERCOMMIT)
                .max(1),
        }
    }

    /// What to print at start-up when the host's `fs.inotify.max_user_instances` leaves
    /// room for fewer sandboxes than `max_sandboxes` (creates past that get 503), with the
    /// `sysctl` that lifts it; `None` when it does not.
    ///
    /// ```
    /// let c = e2b_local::lifecycle::Capacity { max_sandboxes: 1, max_memory_bytes: 1 << 30 };
    /// assert!(c.inotify_notice().is_none());
    /// ```
    pub fn inotify_notice(&self) -> Option<String> {
        inotify_notice(read_u64(MAX_USER_INSTANCES)?, self.max_sandboxes)
    }

    /// As root on the host: raises `fs.inotify.max_user_instances` to what `max_sandboxes`
    /// needs (at most 131,072), as networking enables `ip_forward`;
    /// the default (128) would cap a server at 112 sandboxes. Returns `(from, to)` when it
    /// raised it; `None` when it was high enough or cannot be written (then
    /// [`inotify_notice`](Self::inotify_notice) says what to do).
    pub fn raise_inotify_limit(&self) -> Option<(u64, u64)> {
        raise_inotify_limit_at(Path::new(MAX_USER_INSTANCES), self.max_sandboxes)
    }
}

/// The highest `fs.inotify.max_user_instances` the server sets by itself.
const INOTIFY_INSTANCES_CEILING: u64 = 1 << 17;

fn raise_inotify_limit_at(path: &Path, max_sandboxes: usize) -> Option<(u64, u64)> {
    let now: u64 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    let wanted = (max_sandboxes as u64)
        .saturating_add(INOTIFY_INSTANCES_RESERVE)
        .min(INOTIFY_INSTANCES_CEILING);
    if now >= wanted {
        return None;
    }
    std::fs::write(path, wanted.to_string()).ok()?;
    Some((now, wanted))
}

fn inotify_notice(max_user_instances: u64, max_sandboxes: usize) -> Option<String> {
    let room = inotify_sandboxes(max_user_instances);
    (room < max_sandboxes as u64).then(|| {
        format!(
            "the host's fs.inotify.max_user_instances ({max_user_instances}) leaves room for \
             {room} sandboxes, fewer than the maximum of {max_sandboxes}: each sandbox's envd \
             holds one inotify instance of the server's uid and {INOTIFY_INSTANCES_RESERVE} are \
             left to other programs; creates past {room} get 503 (raise it: sysctl \
             fs.inotify.max_user_instances={})",
            (max_sandboxes as u64).saturating_add(INOTIFY_INSTANCES_RESERVE)
        )
    })
}

/// What a create would be refused for, as `(limit, detail)`: `None` when it fits.
/// `alive` counts every sandbox holding a slot (live, being created or restored), each
/// committing `limits.memory_bytes`.
pub(super) fn over_capacity(
    capacity: &Capacity,
    limits: &Limits,
    alive: usize,
) -> Option<super::LifecycleError> {
    if alive >= capacity.max_sandboxes {
        return Some(super::LifecycleError::TooManySandboxes {
            max: capacity.max_sandboxes,
        });
    }
    let each = limits.memory_bytes.unwrap_or(0);
    let committed = each.saturating_mul(alive as u64);
    if committed.saturating_add(each) > capacity.max_memory_bytes {
        return Some(super::LifecycleError::MemoryCommitted {
            committed_mib: committed >> 20,
            each_mib: each >> 20,
            max_mib: capacity.max_memory_bytes >> 20,
        });
    }
    None
}

/// How many descriptors this process has open. Linux 6.2 and later report it as the size
/// of `/proc/self/fd`, in O(1); listing the directory instead costs O(descriptors), 7% of
/// the CPU of creates with 1,000 sandboxes alive (4,000 descriptors), measured with `perf`.
/// Older kernels report 0 there, and the directory is listed.
fn open_fds() -> u64 {
    open_fds_in(Path::new("/proc/self/fd"))
}

/// The number of entries of a `/proc/<pid>/fd` directory.
fn open_fds_in(fd_dir: &Path) -> u64 {
    match std::fs::metadata(fd_dir) {
        Ok(m) if m.len() > 0 => m.len(),
        _ => std::fs::read_dir(fd_dir).map_or(0, |d| d.count() as u64),
    }
}

/// What the host has left, read when a create is admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HostUsage {
    /// Descriptors open in this process, and its `RLIMIT_NOFILE`.
    pub(super) fds: (u64, u64),
    /// Tasks on the host, and the smaller of `pid_max` and `threads-max`.
    pub(super) tasks: (u64, u64),
    /// Bytes available to us on the data directory's filesystem.
    pub(super) disk_free: u64,
    /// `MemAvailable` and `MemTotal`.
    pub(super) memory: (u64, u64),
    /// The host's `fs.inotify.max_user_instances`.
    pub(super) inotify_instances: u64,
}

impl HostUsage {
    /// Reads this process's and the host's usage (`data_dir` names the filesystem).
    pub(super) fn read(data_dir: &Path) -> Self {
        let open = open_fds();
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(u64::MAX, |(soft, _)| soft);
        // The fourth field of /proc/loadavg is `running/total` scheduling entities (tasks).
        let tasks = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .nth(3)
                    .and_then(|f| f.split_once('/'))
                    .and_then(|(_, t)| t.parse().ok())
            })
            .unwrap_or(0);
        let task_max = read_u64("/proc/sys/kernel/pid_max")
            .unwrap_or(u64::MAX)
            .min(read_u64("/proc/sys/kernel/threads-max").unwrap_or(u64::MAX));
        let disk_free = nix::sys::statvfs::statvfs(data_dir)
            .map_or(u64::MAX, |s| s.blocks_available() * s.fragment_size());
        HostUsage {
            fds: (open, nofile),
            tasks: (tasks, task_max),
            disk_free,
            memory: (
                meminfo("MemAvailable:").unwrap_or(u64::MAX),
                meminfo("MemTotal:").unwrap_or(u64::MAX),
            ),
            inotify_instances: read_u64(MAX_USER_INSTANCES).unwrap_or(u64::MAX),
        }
    }

    /// The inotify shortage a new sandbox would hit with `alive` sandboxes holding a slot
    /// (each one's envd may hold an instance), if any.
    pub(super) fn inotify_shortage(&self, alive: usize) -> Option<super::LifecycleError> {
        let room = inotify_sandboxes(self.inotify_instances);
        (alive as u64 >= room).then(|| super::LifecycleError::HostLimit {
            limit: "inotify instances",
            detail: format!(
                "{alive} sandboxes hold one each, fs.inotify.max_user_instances is {} and {} \
                 are left to other programs",
                self.inotify_instances, INOTIFY_INSTANCES_RESERVE
            ),
        })
    }

    /// The host limit a new sandbox with `limits` would hit, if any.
    pub(super) fn shortage(&self, limits: &Limits) -> Option<super::LifecycleError> {
        let short = |limit: &'static str, detail: String| {
            Some(super::LifecycleError::HostLimit { limit, detail })
        };
        let (open, nofile) = self.fds;
        if open.saturating_add(FDS_PER_SANDBOX) > nofile {
            return short(
                "open files",
                format!("{open} of the server's {nofile} descriptors are in use"),
            );
        }
        let (tasks, task_max) = self.tasks;
        let needs = limits.pids.unwrap_or(TASKS_PER_SANDBOX);
        if tasks.saturating_add(needs) > task_max {
            return short(
                "tasks",
                format!("{tasks} of {task_max} in use, a sandbox may start {needs}"),
            );
        }
        // A new sandbox must be able to fill its whole disk budget now; the budgets of all
        // sandboxes together may exceed the free space (sparse images hold only what was
        // written), as memory limits are overcommitted.
        let budget = limits.disk_bytes.unwrap_or(0);
        if self.disk_free < DISK_RESERVE.saturating_add(budget) {
            let budget = match budget {
                0 => String::new(),
                b => format!("a sandbox's disk budget is {} MiB and ", b >> 20),
            };
            return short(
                "disk space",
                format!(
                    "{} MiB free on the data directory's filesystem, {budget}{} MiB are kept free",
                    self.disk_free >> 20,
                    DISK_RESERVE >> 20
                ),
            );
        }
        let (available, total) = self.memory;
        if available < reserve(total) {
            return short(
                "memory",
                format!(
                    "{} MiB available, {} MiB are kept available",
                    available >> 20,
                    reserve(total) >> 20
                ),
            );
        }
        None
    }
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A `/proc/meminfo` field in bytes.
fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        cpu_millis: None,
        memory_bytes: Some(512 << 20),
        pids: Some(1024),
        disk_bytes: None,
    };

    #[test]
    fn open_descriptors_are_counted_exactly() {
        // A child whose descriptors stay put: stdin, stdout, stderr and whatever the test
        // harness left inheritable (cargo's jobserver pipe).
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("sleep: {e}"));
        let dir = std::path::PathBuf::from(format!("/proc/{}/fd", child.id()));
        let counted = open_fds_in(&dir);
        let listed = std::fs::read_dir(&dir).map_or(0, |d| d.count() as u64);
        let _ = child.kill();
        let _ = child.wait();
        assert!(counted >= 3, "{counted} descriptors counted");
        assert_eq!(counted, listed);
    }

    #[test]
    fn admission_counts_sandboxes_and_committed_memory() {
        let c = Capacity {
            max_sandboxes: 3,
            max_memory_bytes: 1200 << 20,
        };
        assert!(over_capacity(&c, &LIMITS, 0).is_none());
        assert!(over_capacity(&c, &LIMITS, 1).is_none());
        assert_eq!(
            over_capacity(&c, &LIMITS, 2).unwrap().to_string(),
            "the sandboxes' committed memory would exceed this server's limit: 1024 MiB \
             committed, a sandbox commits 512 MiB, the limit is 1200 MiB (e2b-local serve \
             --max-memory-mib)"
        );
        let c = Capacity {
            max_memory_bytes: u64::MAX,
            ..c
        };
        assert_eq!(
            over_capacity(&c, &LIMITS, 3).unwrap().to_string(),
            "you have reached the maximum number of concurrent E2B sandboxes (3) \
             (e2b-local serve --max-sandboxes)"
        );
    }

    #[test]
    fn host_shortages_name_the_limit() {
        let fine = HostUsage {
            fds: (100, 1024),
            tasks: (500, 32_768),
            disk_free: 10 << 30,
            memory: (8 << 30, 16 << 30),
            inotify_instances: 128,
        };
        assert!(fine.shortage(&LIMITS).is_none());
        assert!(fine.inotify_shortage(111).is_none());
        assert_eq!(
            fine.inotify_shortage(112).unwrap().to_string(),
            "the host cannot take another sandbox (inotify instances: 112 sandboxes hold one \
             each, fs.inotify.max_user_instances is 128 and 16 are left to other programs); \
             nothing was created"
        );
        assert_eq!(inotify_notice(128, 112), None);
        // Root raises a short limit to what the maximum needs, never lowers it, and stops at
        // the ceiling.
        let dir = tempfile::tempdir().unwrap();
        let knob = dir.path().join("max_user_instances");
        std::fs::write(&knob, "128\n").unwrap();
        assert_eq!(raise_inotify_limit_at(&knob, 1000), Some((128, 1016)));
        assert_eq!(std::fs::read_to_string(&knob).unwrap(), "1016");
        assert_eq!(raise_inotify_limit_at(&knob, 500), None);
        assert_eq!(
            raise_inotify_limit_at(&knob, usize::MAX),
            Some((1016, INOTIFY_INSTANCES_CEILING))
        );
        assert_eq!(
            inotify_notice(128, 1000).unwrap(),
            "the host's fs.inotify.max_user_instances (128) leaves room for 112 sandboxes, \
             fewer than the maximum of 1000: each sandbox's envd holds one inotify instance of \
             the server's uid and 16 are left to other programs; creates past 112 get 503 \
             (raise it: sysctl fs.inotify.max_user_instances=1016)"
        );
        let cases = [
            (
                HostUsage {
                    fds: (1010, 1024),
                    ..fine
                },
                "the host cannot take another sandbox (open files: 1010 of the server's 1024 descriptors are in use); nothing was created",
            ),
            (
                HostUsage {
                    tasks: (32_000, 32_768),
                    ..fine
                },
                "the host cannot take another sandbox (tasks: 32000 of 32768 in use, a sandbox may start 1024); nothing was created",
            ),
            (
                HostUsage {
                    disk_free: 10 << 20,
                    ..fine
                },
                "the host cannot take another sandbox (disk space: 10 MiB free on the data directory's filesystem, 64 MiB are kept free); nothing was created",
            ),
            (
                HostUsage {
                    memory: (1 << 30, 16 << 30),
                    ..fine
                },
                "the host cannot take another sandbox (memory: 1024 MiB available, 2048 MiB are kept available); nothing was created",
            ),
        ];
        for (usage, message) in cases {
            assert_eq!(usage.shortage(&LIMITS).unwrap().to_string(), message);
        }
        let budgeted = Limits {
            disk_bytes: Some(10 << 30),
            ..LIMITS
        };
        let room = HostUsage {
            disk_free: (10 << 30) + (64 << 20),
            ..fine
        };
        assert!(room.shortage(&budgeted).is_none());
        let short = HostUsage {
            disk_free: room.disk_free - 1,
            ..fine
        };
        assert_eq!(
            short.shortage(&budgeted).unwrap().to_string(),
            "the host cannot take another sandbox (disk space: 10303 MiB free on the data directory's filesystem, a sandbox's disk budget is 10240 MiB and 64 MiB are kept free); nothing was created"
        );
    }

    #[test]
    fn host_defaults_are_positive() {
        let c = Capacity::from_host();
        assert!(c.max_sandboxes >= 1 && c.max_memory_bytes >= 1);
        let u = HostUsage::read(Path::new("/"));
        assert!(u.fds.0 > 0 && u.tasks.0 > 0 && u.memory.1 > 0);
    }
}
