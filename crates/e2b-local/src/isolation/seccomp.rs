//! The seccomp policy: a reviewed deny-list, one reason per syscall, answered with `EPERM`.
//!
//! A deny-list (default allow) because a sandbox runs arbitrary user programs (compilers,
//! language runtimes, databases) whose syscall set we cannot enumerate; what it denies is
//! what a sandbox never needs and what widens the kernel surface towards the host.
//!
//! The filter is installed **without** `no_new_privs` when sudo inside the sandbox must work
//! (setuid binaries need exec to grant privileges); that requires `CAP_SYS_ADMIN` at install
//! time, so it is installed before capabilities are dropped. See `docs/isolation.md`.
#![allow(unsafe_code)]

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

use super::error::{Error, Result};

/// Syscalls denied unconditionally, each with the reason it is denied.
pub const DENIED: &[(&str, i64, &str)] = &[
    // The mount tree.
    (
        "mount",
        libc::SYS_mount,
        "changing mounts could uncover host paths or undo the /proc masks",
    ),
    (
        "umount2",
        libc::SYS_umount2,
        "unmounting could uncover masked /proc paths",
    ),
    (
        "pivot_root",
        libc::SYS_pivot_root,
        "the sandbox root is fixed",
    ),
    (
        "move_mount",
        libc::SYS_move_mount,
        "new mount API: same as mount",
    ),
    (
        "open_tree",
        libc::SYS_open_tree,
        "new mount API: clones mount trees",
    ),
    ("fsopen", libc::SYS_fsopen, "new mount API: same as mount"),
    (
        "fsconfig",
        libc::SYS_fsconfig,
        "new mount API: same as mount",
    ),
    ("fsmount", libc::SYS_fsmount, "new mount API: same as mount"),
    (
        "fspick",
        libc::SYS_fspick,
        "new mount API: reconfigures existing mounts",
    ),
    (
        "mount_setattr",
        libc::SYS_mount_setattr,
        "could make read-only mounts writable",
    ),
    // The kernel itself.
    (
        "init_module",
        libc::SYS_init_module,
        "loading kernel modules affects the host kernel",
    ),
    (
        "finit_module",
        libc::SYS_finit_module,
        "loading kernel modules affects the host kernel",
    ),
    (
        "delete_module",
        libc::SYS_delete_module,
        "unloading kernel modules affects the host kernel",
    ),
    (
        "kexec_load",
        libc::SYS_kexec_load,
        "replaces the host kernel",
    ),
    (
        "kexec_file_load",
        libc::SYS_kexec_file_load,
        "replaces the host kernel",
    ),
    (
        "reboot",
        libc::SYS_reboot,
        "reboots the host (or the pid namespace; never needed)",
    ),
    (
        "bpf",
        libc::SYS_bpf,
        "eBPF programs run in the host kernel; large attack surface",
    ),
    (
        "perf_event_open",
        libc::SYS_perf_event_open,
        "observes other processes and the kernel",
    ),
    ("syslog", libc::SYS_syslog, "the kernel log is host-wide"),
    ("acct", libc::SYS_acct, "process accounting is host-wide"),
    ("swapon", libc::SYS_swapon, "swap is host-wide"),
    ("swapoff", libc::SYS_swapoff, "swap is host-wide"),
    ("quotactl", libc::SYS_quotactl, "quotas of host filesystems"),
    (
        "quotactl_fd",
        libc::SYS_quotactl_fd,
        "quotas of host filesystems",
    ),
    ("iopl", libc::SYS_iopl, "raw I/O port access"),
    ("ioperm", libc::SYS_ioperm, "raw I/O port access"),
    (
        "lookup_dcookie",
        libc::SYS_lookup_dcookie,
        "kernel profiling internals",
    ),
    // Keyrings are not namespaced.
    (
        "keyctl",
        libc::SYS_keyctl,
        "kernel keyrings are shared with the host",
    ),
    (
        "add_key",
        libc::SYS_add_key,
        "kernel keyrings are shared with the host",
    ),
    (
        "request_key",
        libc::SYS_request_key,
        "kernel keyrings are shared with the host",
    ),
    // Clocks are not namespaced (time namespaces only offset monotonic/boottime).
    (
        "settimeofday",
        libc::SYS_settimeofday,
        "the wall clock is host-wide",
    ),
    (
        "clock_settime",
        libc::SYS_clock_settime,
        "the wall clock is host-wide",
    ),
    (
        "clock_adjtime",
        libc::SYS_clock_adjtime,
        "the wall clock is host-wide",
    ),
    // Escape and exploitation primitives.
    (
        "open_by_handle_at",
        libc::SYS_open_by_handle_at,
        "opens host files by handle, bypassing the root (the 'shocker' escape)",
    ),
    (
        "userfaultfd",
        libc::SYS_userfaultfd,
        "a common kernel exploitation aid",
    ),
    (
        "io_uring_setup",
        libc::SYS_io_uring_setup,
        "io_uring: large, frequently exploited kernel surface",
    ),
    (
        "io_uring_enter",
        libc::SYS_io_uring_enter,
        "io_uring: large, frequently exploited kernel surface",
    ),
    (
        "io_uring_register",
        libc::SYS_io_uring_register,
        "io_uring: large, frequently exploited kernel surface",
    ),
    (
        "setns",
        libc::SYS_setns,
        "joining other namespaces is a namespace escape",
    ),
];

/// Namespace flags whose use in `unshare`/`clone` is denied: new namespaces inside the
/// sandbox (above all user namespaces) widen the kernel surface and are never needed.
pub const DENIED_NAMESPACE_FLAGS: &[(&str, u64)] = &[
    ("CLONE_NEWNS", libc::CLONE_NEWNS as u64),
    ("CLONE_NEWUTS", libc::CLONE_NEWUTS as u64),
    ("CLONE_NEWIPC", libc::CLONE_NEWIPC as u64),
    ("CLONE_NEWUSER", libc::CLONE_NEWUSER as u64),
    ("CLONE_NEWPID", libc::CLONE_NEWPID as u64),
    ("CLONE_NEWNET", libc::CLONE_NEWNET as u64),
    ("CLONE_NEWCGROUP", libc::CLONE_NEWCGROUP as u64),
    ("CLONE_NEWTIME", 0x80),
];

/// Syscalls allowed on purpose although they look dangerous, with the reason.
pub const ALLOWED_ON_PURPOSE: &[(&str, &str)] = &[
    (
        "ptrace",
        "debuggers (gdb, strace) are normal sandbox tools; only processes of the sandbox's own \
         pid namespace are visible, CAP_SYS_PTRACE is dropped, and init runs with more \
         capabilities than any sandbox process so it cannot be traced",
    ),
    (
        "adjtimex",
        "glibc's ntp_gettime reads the clock through it; changing the clock needs CAP_SYS_TIME, \
         which is dropped",
    ),
    (
        "chroot",
        "harmless inside the pivoted root (CAP_SYS_CHROOT is kept for build tools)",
    ),
];

fn arch() -> Result<TargetArch> {
    TargetArch::try_from(std::env::consts::ARCH).map_err(|e| Error::SeccompBuild(e.to_string()))
}

fn ns_flag_rules(arg: u8) -> Result<Vec<SeccompRule>> {
    DENIED_NAMESPACE_FLAGS
        .iter()
        .map(|(_, flag)| {
            let cond = SeccompCondition::new(
                arg,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(*flag),
                *flag,
            )
            .map_err(|e| Error::SeccompBuild(e.to_string()))?;
            SeccompRule::new(vec![cond]).map_err(|e| Error::SeccompBuild(e.to_string()))
        })
        .collect()
}

/// Compiles the policy into the BPF programs to install, in order.
///
/// Two programs: the deny-list answering `EPERM`, and `clone3` answering `ENOSYS` (its flags
/// live in a struct a filter cannot read, so it is refused in a way that makes glibc fall
/// back to `clone`, whose flags the first program checks).
///
/// # Errors
///
/// [`Error::SeccompBuild`] if seccompiler rejects the rules (a bug).
pub fn compile() -> Result<Vec<BpfProgram>> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (_, nr, _) in DENIED {
        rules.insert(*nr, Vec::new());
    }
    rules.insert(libc::SYS_unshare, ns_flag_rules(0)?);
    // x86_64 and aarch64 both pass clone's flags in the first argument.
    rules.insert(libc::SYS_clone, ns_flag_rules(0)?);
    let deny = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch()?,
    )
    .map_err(|e| Error::SeccompBuild(e.to_string()))?;
    let mut deny: BpfProgram = deny
        .try_into()
        .map_err(|e: seccompiler::BackendError| Error::SeccompBuild(e.to_string()))?;
    guard_x32(&mut deny);

    let mut c3 = BTreeMap::new();
    c3.insert(libc::SYS_clone3, Vec::new());
    let clone3 = SeccompFilter::new(
        c3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch()?,
    )
    .map_err(|e| Error::SeccompBuild(e.to_string()))?;
    let clone3: BpfProgram = clone3
        .try_into()
        .map_err(|e: seccompiler::BackendError| Error::SeccompBuild(e.to_string()))?;
    Ok(vec![deny, clone3])
}

/// On x86_64 the x32 ABI shares `AUDIT_ARCH_X86_64` but numbers its syscalls from
/// `0x4000_0000`; a deny-list keyed on x86_64 numbers would miss `mount` called that way.
/// Insert, right after seccompiler's 3-instruction architecture check, "nr >= 0x40000000 →
/// EPERM". No jump crosses the insertion point, so the rest of the program stays valid.
fn guard_x32(prog: &mut BpfProgram) {
    if !cfg!(target_arch = "x86_64") || prog.len() < 3 {
        return;
    }
    // BPF_LD | BPF_W | BPF_ABS
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
    const BPF_RET_K: u16 = 0x06;
    let guard = [
        // A = seccomp_data.nr (offset 0)
        sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // if A >= 0x40000000 fall through to the return, else skip it
        sock_filter {
            code: BPF_JMP_JGE_K,
            jt: 0,
            jf: 1,
            k: 0x4000_0000,
        },
        sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
    ];
    let tail = prog.split_off(3);
    prog.extend(guard);
    prog.extend(tail);
}

/// Installs the compiled programs on the calling thread (and its future children).
///
/// Without `no_new_privs` this needs `CAP_SYS_ADMIN`; the caller installs it before
/// dropping capabilities.
///
/// # Errors
///
/// [`Error::SeccompInstall`] with the kernel's error.
pub fn install(programs: &[BpfProgram]) -> Result<()> {
    for prog in programs {
        let len = u16::try_from(prog.len())
            .map_err(|_| Error::SeccompBuild(format!("program too long: {}", prog.len())))?;
        let fprog = libc::sock_fprog {
            len,
            // seccompiler's `sock_filter` is `#[repr(C)]` with the kernel layout.
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: `fprog` points at `len` valid instructions that outlive the call; the
        // kernel copies the program before returning.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &fprog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(Error::SeccompInstall(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_denied_syscall_has_a_reason_and_a_unique_number() {
        let mut seen = std::collections::HashSet::new();
        for (name, nr, reason) in DENIED {
            assert!(!reason.is_empty(), "{name} has no reason");
            assert!(seen.insert(*nr), "{name} listed twice");
        }
        assert!(!DENIED.iter().any(|(n, _, _)| *n == "ptrace"));
    }

    #[test]
    fn policy_compiles_with_the_x32_guard() {
        let progs = compile().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(progs.len(), 2);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(progs[0][4].k, 0x4000_0000);
        }
        // The kernel's limit is 4096 instructions.
        assert!(progs.iter().all(|p| p.len() < 4096));
    }
}
