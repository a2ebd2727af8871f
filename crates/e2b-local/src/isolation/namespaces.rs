//! Namespaces: which ones a sandbox gets, bringing its loopback up, and reaching into its
//! network namespace from the host.
#![allow(unsafe_code)]

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use nix::sched::CloneFlags;

use super::error::{Error, Result};

/// The namespaces every sandbox gets (user namespaces are not used: the runtime runs as root).
pub fn sandbox_clone_flags() -> CloneFlags {
    CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWCGROUP
}

/// Namespaces `exec_in` joins, in order (`mnt` last: after it, `/proc` paths of the host are
/// gone, so every namespace file is opened first).
pub const JOIN_ORDER: &[(&str, CloneFlags)] = &[
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Opens `/proc/<pid>/ns/<name>`.
///
/// # Errors
///
/// [`Error::OpenNamespace`] with the path.
pub fn open_ns(pid: i32, name: &str) -> Result<OwnedFd> {
    let path = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
    std::fs::File::open(&path)
        .map(OwnedFd::from)
        .map_err(|e| Error::OpenNamespace(path, e))
}

/// Joins the namespace behind `fd` on the calling thread.
///
/// # Errors
///
/// [`Error::SetNs`] naming the namespace.
pub fn join(name: &'static str, fd: BorrowedFd<'_>, flags: CloneFlags) -> Result<()> {
    nix::sched::setns(fd, flags).map_err(|e| Error::SetNs(name, io::Error::from(e)))
}

/// Joins the mount namespace behind the file at `path` (a single-threaded process only).
/// The process's root and working directory become that namespace's root.
///
/// # Errors
///
/// [`Error::OpenNamespace`] or [`Error::SetNs`].
pub fn enter_mount_ns(path: &std::path::Path) -> Result<()> {
    let fd = std::fs::File::open(path).map_err(|e| Error::OpenNamespace(path.to_path_buf(), e))?;
    join("mnt", fd.as_fd(), CloneFlags::CLONE_NEWNS)
}

/// Sets the UTS hostname of the current namespace.
///
/// # Errors
///
/// [`Error::SetHostname`].
pub fn set_hostname(name: &str) -> Result<()> {
    nix::unistd::sethostname(name).map_err(|e| Error::SetHostname(name.to_owned(), e.into()))
}

/// Brings `lo` up in the current network namespace (a new netns starts with it down).
///
/// # Errors
///
/// [`Error::LoopbackUp`] with the kernel's error.
pub fn loopback_up() -> Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Error::LoopbackUp(e.into()))?;
    // SAFETY: `ifreq` is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags member of a valid `ifreq`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(Error::LoopbackUp(io::Error::last_os_error()));
    }
    // SAFETY: the flags member of the union was just written by the kernel.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads a valid `ifreq`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(Error::LoopbackUp(io::Error::last_os_error()));
    }
    Ok(())
}

/// Connects to `127.0.0.1:port` inside the network namespace behind `netns`.
///
/// `setns` is per thread, so a short-lived helper thread joins the namespace, connects and
/// hands the connected socket back; the caller's threads never change namespace and no
/// host port is opened. A socket keeps the namespace it was created in, so the stream
/// works from any thread (and can be handed to tokio with `TcpStream::from_std`).
///
/// # Errors
///
/// The `setns` or `connect` error (`ConnectionRefused` when nothing listens on `port`).
pub fn connect_in_netns(
    netns: BorrowedFd<'_>,
    port: u16,
    timeout: Option<Duration>,
) -> io::Result<TcpStream> {
    let fd = netns.try_clone_to_owned()?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            match timeout {
                Some(t) => TcpStream::connect_timeout(&addr, t),
                None => TcpStream::connect(addr),
            }
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netns connect thread panicked")))
    })
}
