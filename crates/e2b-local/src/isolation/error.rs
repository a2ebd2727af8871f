//! The one error type of the sandbox runtime: one variant per step that can fail.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while building, running or tearing down a sandbox.
///
/// Each variant names one step (jailer style) and carries the path and the
/// [`io::Error`] involved, so a message reads like
/// `mount overlay at /var/lib/e2b-local/sandboxes/x/rootfs/usr: Operation not permitted (os error 1)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The host lacks a kernel feature or privilege the runtime needs.
    #[error("{feature} is unavailable: {hint}")]
    Unsupported {
        /// The missing feature, e.g. `overlayfs`.
        feature: String,
        /// How to get it.
        hint: String,
    },
    /// A sandbox id is not 1 to 64 characters of `[a-z0-9-]`.
    #[error("invalid sandbox id {0:?}: expected 1 to 64 characters of [a-z0-9-]")]
    InvalidId(String),
    /// A sandbox with this id already has a directory in the data dir.
    #[error("sandbox {0} already exists")]
    AlreadyExists(String),
    /// A template is malformed (missing root directory, bad name).
    #[error("template {name}: {reason}")]
    Template {
        /// The template's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Creating a directory failed.
    #[error("create directory {0}: {1}")]
    CreateDir(PathBuf, #[source] io::Error),
    /// Writing a file failed.
    #[error("write {0}: {1}")]
    WriteFile(PathBuf, #[source] io::Error),
    /// Copying a host file into a template's generated `/etc` failed.
    #[error("copy {0} into the template: {1}")]
    CopyHostFile(PathBuf, #[source] io::Error),
    /// Changing ownership or mode of a path failed.
    #[error("set owner or mode of {0}: {1}")]
    Chown(PathBuf, #[source] io::Error),
    /// Removing a sandbox's directory failed.
    #[error("remove {0}: {1}")]
    RemoveDir(PathBuf, #[source] io::Error),
    /// Mounting the disk that holds a sandbox's upper directory (its ext4 image, or a
    /// `nosuid,nodev` bind mount) failed.
    #[error("mount the sandbox disk at {0}: {1}")]
    MountDisk(PathBuf, #[source] io::Error),
    /// Making the golden ext4 image of a disk size with `mkfs.ext4` failed (the message
    /// carries its output).
    #[error("make the disk image {0} with mkfs.ext4: {1}")]
    Mkfs(PathBuf, String),
    /// Copying the golden image into a sandbox's `disk.img` failed.
    #[error("copy the disk image to {0}: {1}")]
    CopyImage(PathBuf, #[source] io::Error),
    /// Attaching a disk image to a loop device (`LOOP_CTL_GET_FREE`, `LOOP_CONFIGURE`)
    /// failed.
    #[error("attach {0} to a loop device: {1}")]
    AttachLoop(PathBuf, #[source] io::Error),
    /// Moving a sandbox's upper directory aside (to keep a paused sandbox's files) failed.
    #[error("save the upper directory {0}: {1}")]
    SaveUpper(PathBuf, #[source] io::Error),
    /// Copying a live sandbox's upper directory into a layer (a fork's or snapshot's
    /// capture) failed; the message names the entry.
    #[error("copy the sandbox's files to {0}: {1}")]
    Capture(PathBuf, #[source] io::Error),
    /// Unmounting a sandbox's disk failed.
    #[error("unmount the sandbox disk at {0}: {1}")]
    UnmountDisk(PathBuf, #[source] io::Error),
    /// A cgroup operation failed.
    #[error("cgroup {step} for {path}: {source}")]
    Cgroup {
        /// The operation: `create`, `apply limits`, `add process`, `freeze`, ...
        step: &'static str,
        /// The cgroup path below the hierarchy root.
        path: String,
        /// The underlying error from cgroups-rs.
        #[source]
        source: cgroups_rs::fs::error::Error,
    },
    /// A limit written to a cgroup did not take effect (cgroups-rs ignores some write
    /// errors, so limits are read back).
    #[error("cgroup {path}: {what} is {got} after setting {wanted}")]
    CgroupLimit {
        /// The cgroup path below the hierarchy root.
        path: String,
        /// Which limit.
        what: &'static str,
        /// The value we set.
        wanted: u64,
        /// The value the kernel reports.
        got: i64,
    },
    /// The cgroup did not empty or freeze in time.
    #[error("cgroup {path}: {what} did not happen within {millis} ms")]
    CgroupTimeout {
        /// The cgroup path below the hierarchy root.
        path: String,
        /// What was awaited.
        what: &'static str,
        /// How long we waited.
        millis: u64,
    },
    /// Reading the cgroup mount table failed.
    #[error("read cgroup mounts from {0}: {1}")]
    CgroupMounts(PathBuf, #[source] io::Error),
    /// Reading a cgroup file failed.
    #[error("read cgroup file {0}: {1}")]
    CgroupRead(PathBuf, #[source] io::Error),
    /// Spawning the sandbox helper process failed.
    #[error("spawn the sandbox helper {0}: {1}")]
    SpawnHelper(PathBuf, #[source] io::Error),
    /// Talking to the sandbox helper over its pipes failed.
    #[error("sandbox helper pipe: {0}")]
    HelperPipe(#[source] io::Error),
    /// The helper answered something we do not understand.
    #[error("sandbox helper protocol: {0}")]
    HelperProtocol(String),
    /// A step inside the new sandbox failed; the message names the step, path and error.
    #[error("sandbox setup: {0}")]
    Setup(String),
    /// `pidfd_open` on the sandbox's init failed.
    #[error("pidfd_open of init pid {0}: {1}")]
    PidfdOpen(i32, #[source] io::Error),
    /// Opening a namespace file of a sandbox failed.
    #[error("open namespace {0}: {1}")]
    OpenNamespace(PathBuf, #[source] io::Error),
    /// `setns` into a sandbox namespace failed.
    #[error("setns into {0}: {1}")]
    SetNs(&'static str, #[source] io::Error),
    /// Sending a signal to a sandbox process failed.
    #[error("signal {signal} to pid {pid}: {source}")]
    Signal {
        /// The target pid (host view).
        pid: i32,
        /// The signal number.
        signal: i32,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Waiting for the sandbox's init failed.
    #[error("wait for init pid {0}: {1}")]
    Wait(i32, #[source] io::Error),
    /// The sandbox was already killed.
    #[error("sandbox {0} is not running")]
    NotRunning(String),
    /// The sandbox is frozen (paused); thaw it first.
    #[error("sandbox {0} is paused")]
    Frozen(String),
    /// Serializing the helper configuration failed.
    #[error("encode helper config: {0}")]
    Encode(#[source] serde_json::Error),

    /// Setting the helper's `oom_score_adj` (inherited by the init and the program) failed.
    #[error("set oom_score_adj to -1000: {0}")]
    OomScoreAdj(#[source] io::Error),

    // Steps that run inside the new namespaces (reported through the status pipe).
    /// `clone` with the new namespaces failed.
    #[error("clone with new namespaces: {0}")]
    Clone(#[source] io::Error),
    /// Making the mount tree private failed.
    #[error("make mounts private: {0}")]
    MountPrivate(#[source] io::Error),
    /// Mounting an overlay failed.
    #[error("mount overlay at {0}: {1}")]
    MountOverlay(PathBuf, #[source] io::Error),
    /// Mounting a tmpfs failed.
    #[error("mount tmpfs at {0}: {1}")]
    MountTmpfs(PathBuf, #[source] io::Error),
    /// Mounting `/proc` failed.
    #[error("mount proc at {0}: {1}")]
    MountProc(PathBuf, #[source] io::Error),
    /// Mounting devpts failed.
    #[error("mount devpts at {0}: {1}")]
    MountDevpts(PathBuf, #[source] io::Error),
    /// Bind-mounting a device node or masking a path failed.
    #[error("bind mount onto {0}: {1}")]
    BindMount(PathBuf, #[source] io::Error),
    /// Creating a symlink failed.
    #[error("symlink {0}: {1}")]
    Symlink(PathBuf, #[source] io::Error),
    /// `pivot_root` failed.
    #[error("pivot_root into {0}: {1}")]
    PivotRoot(PathBuf, #[source] io::Error),
    /// Detaching the old root failed.
    #[error("detach the old root: {0}")]
    UnmountOldRoot(#[source] io::Error),
    /// `chdir` failed.
    #[error("chdir {0}: {1}")]
    Chdir(PathBuf, #[source] io::Error),
    /// Setting the hostname failed.
    #[error("sethostname {0:?}: {1}")]
    SetHostname(String, #[source] io::Error),
    /// Bringing the loopback interface up failed.
    #[error("bring loopback up: {0}")]
    LoopbackUp(#[source] io::Error),
    /// Opening the program to exec failed.
    #[error("open program {0}: {1}")]
    OpenProgram(PathBuf, #[source] io::Error),
    /// Closing inherited file descriptors failed.
    #[error("close inherited fds: {0}")]
    CloseFds(#[source] io::Error),
    /// Setting the soft limit of open files failed.
    #[error("set the soft limit of open files (RLIMIT_NOFILE): {0}")]
    NoFileLimit(#[source] io::Error),
    /// Redirecting stdio failed.
    #[error("redirect stdio to {0}: {1}")]
    Stdio(PathBuf, #[source] io::Error),
    /// Building the seccomp filter failed.
    #[error("build seccomp filter: {0}")]
    SeccompBuild(String),
    /// Installing the seccomp filter failed.
    #[error("install seccomp filter: {0}")]
    SeccompInstall(#[source] io::Error),
    /// Dropping a capability failed.
    #[error("drop capability {0}: {1}")]
    DropCapability(u32, #[source] io::Error),
    /// Setting `no_new_privs` failed.
    #[error("set no_new_privs: {0}")]
    NoNewPrivs(#[source] io::Error),
    /// Switching user or group failed.
    #[error("switch to uid {0} gid {1}: {2}")]
    SetUser(u32, u32, #[source] io::Error),
    /// `fork` failed.
    #[error("fork: {0}")]
    Fork(#[source] io::Error),
    /// `exec` of the program failed.
    #[error("exec {0}: {1}")]
    Exec(PathBuf, #[source] io::Error),
    /// An argument or environment entry contains a NUL byte.
    #[error("{0:?} contains a NUL byte")]
    NulByte(String),
}

/// `Result` with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::Cgroup`].
    pub(crate) fn cgroup(
        step: &'static str,
        path: &str,
        source: cgroups_rs::fs::error::Error,
    ) -> Self {
        Error::Cgroup {
            step,
            path: path.to_owned(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_static() {
        fn assert<T: Send + Sync + 'static>() {}
        assert::<Error>();
    }

    #[test]
    fn messages_name_the_path() {
        let e = Error::MountOverlay(
            PathBuf::from("/x/rootfs/usr"),
            io::Error::from_raw_os_error(libc::EPERM),
        );
        assert_eq!(
            e.to_string(),
            "mount overlay at /x/rootfs/usr: Operation not permitted (os error 1)"
        );
        assert_eq!(
            Error::InvalidId("A".into()).to_string(),
            "invalid sandbox id \"A\": expected 1 to 64 characters of [a-z0-9-]"
        );
    }
}
