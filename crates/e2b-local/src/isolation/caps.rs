//! The capability bounding set of every sandbox process.
//!
//! Root inside the sandbox (envd, `sudo`) gets exactly [`KEPT`]; everything else is removed
//! from the bounding set, so no exec (setuid or file capabilities) can regain it.
#![allow(unsafe_code)]

use super::error::{Error, Result};

/// Capability numbers from `linux/capability.h` (libc does not export them).
#[allow(missing_docs)]
pub mod cap {
    pub const CHOWN: u32 = 0;
    pub const DAC_OVERRIDE: u32 = 1;
    pub const DAC_READ_SEARCH: u32 = 2;
    pub const FOWNER: u32 = 3;
    pub const FSETID: u32 = 4;
    pub const KILL: u32 = 5;
    pub const SETGID: u32 = 6;
    pub const SETUID: u32 = 7;
    pub const SETPCAP: u32 = 8;
    pub const NET_BIND_SERVICE: u32 = 10;
    pub const NET_ADMIN: u32 = 12;
    pub const NET_RAW: u32 = 13;
    pub const SYS_MODULE: u32 = 16;
    pub const SYS_CHROOT: u32 = 18;
    pub const SYS_PTRACE: u32 = 19;
    pub const SYS_RESOURCE: u32 = 24;
    pub const SYS_ADMIN: u32 = 21;
    pub const MKNOD: u32 = 27;
    pub const AUDIT_WRITE: u32 = 29;
    pub const SETFCAP: u32 = 31;
}

/// Whether this process has capability `cap` in its effective set (`CapEff` of
/// `/proc/self/status`; false when it cannot be read).
pub fn effective_has(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_owned();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|mask| mask & (1 << cap) != 0)
}

/// Capabilities root keeps inside a sandbox, with the reason.
pub const KEPT: &[(u32, &str, &str)] = &[
    (
        cap::CHOWN,
        "CAP_CHOWN",
        "envd and package managers chown files",
    ),
    (
        cap::DAC_OVERRIDE,
        "CAP_DAC_OVERRIDE",
        "root reads and writes any sandbox file",
    ),
    (
        cap::FOWNER,
        "CAP_FOWNER",
        "chmod/utime on files of other users",
    ),
    (cap::FSETID, "CAP_FSETID", "keep setgid bits when writing"),
    (
        cap::KILL,
        "CAP_KILL",
        "envd signals user processes (only sandbox pids are visible)",
    ),
    (cap::SETGID, "CAP_SETGID", "envd and sudo switch to `user`"),
    (cap::SETUID, "CAP_SETUID", "envd and sudo switch to `user`"),
    (
        cap::SETPCAP,
        "CAP_SETPCAP",
        "lets envd drop capabilities further",
    ),
    (
        cap::NET_BIND_SERVICE,
        "CAP_NET_BIND_SERVICE",
        "servers on ports < 1024",
    ),
    (
        cap::NET_RAW,
        "CAP_NET_RAW",
        "ping and raw sockets; forged source addresses are dropped by the host (docs/network.md)",
    ),
    (
        cap::SYS_CHROOT,
        "CAP_SYS_CHROOT",
        "build tools chroot inside the sandbox",
    ),
    (
        cap::SETFCAP,
        "CAP_SETFCAP",
        "package managers install file capabilities",
    ),
    (
        cap::AUDIT_WRITE,
        "CAP_AUDIT_WRITE",
        "sudo and PAM write audit records",
    ),
];

/// Capabilities dropped on purpose that someone might expect to be kept.
pub const DROPPED_NOTES: &[(&str, &str)] = &[
    (
        "CAP_SYS_ADMIN",
        "mount, namespaces, and most of the kernel's privileged surface",
    ),
    ("CAP_SYS_PTRACE", "tracing processes of other users"),
    (
        "CAP_MKNOD",
        "no device cgroup is set, so a block device node would expose host disks",
    ),
    ("CAP_DAC_READ_SEARCH", "open_by_handle_at escapes the root"),
    (
        "CAP_NET_ADMIN",
        "the sandbox's addresses and routes are set by the host",
    ),
    ("CAP_SYS_MODULE", "kernel modules"),
    ("CAP_SYS_RAWIO", "raw I/O and /proc/kcore"),
    ("CAP_SYS_BOOT", "reboot"),
    ("CAP_SYS_TIME", "the host clock"),
    ("CAP_SYSLOG", "the kernel log"),
    (
        "CAP_SYS_RESOURCE",
        "raising limits past the cgroup's intent",
    ),
    ("CAP_BPF / CAP_PERFMON", "eBPF and perf"),
];

fn kept_mask() -> u64 {
    KEPT.iter().fold(0u64, |m, (c, _, _)| m | (1u64 << c))
}

/// The highest capability number the kernel knows (`/proc/sys/kernel/cap_last_cap`),
/// read before `pivot_root` while the host `/proc` is visible.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Removes every capability not in [`KEPT`] from the bounding set and clears the ambient
/// set. Needs `CAP_SETPCAP`.
///
/// # Errors
///
/// [`Error::DropCapability`] naming the capability.
pub fn drop_bounding(last_cap: u32) -> Result<()> {
    let keep = kept_mask();
    for cap in 0..=last_cap {
        if keep & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        if rc != 0 {
            return Err(Error::DropCapability(cap, std::io::Error::last_os_error()));
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL touches no memory.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(Error::DropCapability(
            u32::MAX,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Limits the current process's effective and permitted sets to [`KEPT`] and clears the
/// inheritable set (for a root process that keeps running before exec).
///
/// # Errors
///
/// [`Error::DropCapability`] with the kernel's error.
pub fn restrict_current() -> Result<()> {
    capset(kept_mask())
}

/// Clears the current process's effective, permitted and inheritable sets.
///
/// # Errors
///
/// [`Error::DropCapability`] with the kernel's error.
pub fn clear_current() -> Result<()> {
    capset(0)
}

fn capset(keep: u64) -> Result<()> {
    let lo = (keep & 0xffff_ffff) as u32;
    let hi = (keep >> 32) as u32;
    let header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [
        CapData {
            effective: lo,
            permitted: lo,
            inheritable: 0,
        },
        CapData {
            effective: hi,
            permitted: hi,
            inheritable: 0,
        },
    ];
    // SAFETY: header and data are valid, correctly laid out (`#[repr(C)]`) and live across
    // the call; version 3 reads exactly two `CapData` entries.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(Error::DropCapability(
            u32::MAX,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_admin_mknod_and_ptrace_are_not_kept() {
        let m = kept_mask();
        for c in [
            cap::SYS_ADMIN,
            cap::MKNOD,
            cap::SYS_PTRACE,
            cap::DAC_READ_SEARCH,
            cap::SYS_MODULE,
            cap::NET_ADMIN,
        ] {
            assert_eq!(m & (1 << c), 0, "capability {c} must be dropped");
        }
        assert_ne!(m & (1 << cap::SETUID), 0);
    }
}
