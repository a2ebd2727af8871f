//! The few raw syscalls the supervisor needs: what runs in the forked child before `exec`,
//! and terminal size changes.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt as _;

/// What the child does between `fork` and `exec`.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    /// `(uid, gid, all group ids)` to switch to; `None` keeps envd's credentials.
    pub(crate) creds: Option<(u32, u32, Vec<libc::gid_t>)>,
    /// Working directory, entered after the credential switch (as Go's `os/exec` does).
    pub(crate) cwd: CString,
    /// Start a new session and take stdin (the PTY slave) as the controlling terminal.
    pub(crate) pty: bool,
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Registers the pre-exec steps on `cmd`.
pub(crate) fn prepare_child(cmd: &mut std::process::Command, plan: ChildPlan) {
    let closure = move || -> io::Result<()> {
        // Only async-signal-safe calls below: no allocation, no locks.
        if plan.pty {
            // SAFETY: setsid has no memory-safety preconditions.
            check(unsafe { libc::setsid() })?;
            // SAFETY: fd 0 is the PTY slave (stdio is set up before pre_exec runs); the
            // argument of TIOCSCTTY is an int flag.
            check(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) })?;
        }
        // Processes are the first victims of the OOM killer, never envd (best effort).
        // SAFETY: the path is a NUL-terminated static string.
        let fd = unsafe {
            libc::open(
                c"/proc/self/oom_score_adj".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: writes 3 bytes from a static buffer to the fd opened above, then
            // closes it; failures are ignored on purpose.
            unsafe {
                libc::write(fd, b"100".as_ptr().cast(), 3);
                libc::close(fd);
            }
        }
        // User processes run at nice 0 whatever envd's own priority is (best effort).
        // SAFETY: plain syscall on the calling process.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, 0);
        }
        if let Some((uid, gid, groups)) = &plan.creds {
            // SAFETY: `groups` outlives the call and its length is passed alongside.
            check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })?;
            // SAFETY: plain syscalls taking integers.
            check(unsafe { libc::setgid(*gid) })?;
            // SAFETY: as above.
            check(unsafe { libc::setuid(*uid) })?;
        }
        // SAFETY: `cwd` is a valid NUL-terminated string owned by the closure.
        check(unsafe { libc::chdir(plan.cwd.as_ptr()) })?;
        Ok(())
    };
    // SAFETY: the closure only makes async-signal-safe syscalls on data prepared before the
    // fork, as `pre_exec` requires.
    unsafe {
        cmd.pre_exec(closure);
    }
}

/// Sets a terminal's window size.
pub(crate) fn set_winsize(fd: BorrowedFd<'_>, cols: u16, rows: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `fd` is an open descriptor borrowed for the call; `ws` is a valid winsize.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) })
}

/// Registers an owned file with the tokio reactor.
pub(crate) fn register_fd(
    file: std::fs::File,
) -> io::Result<tokio::io::unix::AsyncFd<std::fs::File>> {
    // SAFETY: the `File` owns its descriptor, which stays open and unchanged until the
    // `AsyncFd` (which now owns the `File`) is dropped.
    unsafe { tokio::io::unix::AsyncFd::register(file) }.map_err(io::Error::from)
}
