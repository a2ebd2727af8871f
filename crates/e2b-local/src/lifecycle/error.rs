//! Why a lifecycle operation failed, in the sandbox's terms. The control plane maps each
//! variant to an HTTP status in one place (`api::error`); the messages are the API's.

/// Any error a cause can be boxed from.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A failed lifecycle operation. Every message names the sandbox, template or value that
/// was wrong.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// No live sandbox has this id: never created, killed, or expired.
    #[error("sandbox \"{id}\" doesn't exist or you don't have access to it")]
    SandboxNotFound {
        /// The sandbox id asked for.
        id: String,
    },
    /// Neither `base` nor a registered template has this name.
    #[error("template '{name}' not found")]
    TemplateNotFound {
        /// The template name asked for.
        name: String,
    },
    /// Pausing a sandbox that is already paused.
    #[error("sandbox '{id}' is already paused")]
    AlreadyPaused {
        /// The sandbox id.
        id: String,
    },
    /// Resuming a sandbox that is already running.
    #[error("sandbox {id} is already running")]
    AlreadyRunning {
        /// The sandbox id.
        id: String,
    },
    /// Setting the timeout of a paused sandbox (it has no end time while paused).
    #[error("sandbox \"{id}\" is not running (state: paused)")]
    Paused {
        /// The sandbox id.
        id: String,
    },
    /// A create or resume timeout of zero or less.
    #[error("timeout must be greater than 0 (got {secs})")]
    TimeoutNotPositive {
        /// The timeout asked for, in seconds.
        secs: i64,
    },
    /// A negative timeout where zero is allowed (set-timeout, connect).
    #[error("timeout must not be negative (got {secs})")]
    TimeoutNegative {
        /// The timeout asked for, in seconds.
        secs: i64,
    },
    /// A timeout that would end the sandbox after its maximum lifetime.
    #[error("timeout of {secs} s exceeds the maximum sandbox lifetime of {max_secs} s")]
    TimeoutPastLifetime {
        /// The timeout asked for, in seconds.
        secs: i64,
        /// The server's maximum lifetime, in seconds.
        max_secs: u64,
    },
    /// Pausing (or `autoPause`) on a server without the cgroup freezer: rootless mode
    /// without a delegated cgroup. The request is fine; this server cannot do it.
    #[error(
        "{action}: pause needs the cgroup freezer, which is unavailable in rootless mode without a delegated cgroup (run e2b-local as root to pause sandboxes)"
    )]
    FreezerUnavailable {
        /// What was refused (`pausing sandbox <id>`, `autoPause`).
        action: String,
    },
    /// Admission control: the server runs its maximum number of sandboxes (E2B's
    /// concurrency message, then how to raise it here).
    #[error(
        "you have reached the maximum number of concurrent E2B sandboxes ({max}) (e2b-local serve --max-sandboxes)"
    )]
    TooManySandboxes {
        /// The server's limit.
        max: usize,
    },
    /// Admission control: one more sandbox would commit more memory (the sum of the
    /// sandboxes' memory limits) than the server allows.
    #[error(
        "the sandboxes' committed memory would exceed this server's limit: {committed_mib} MiB committed, a sandbox commits {each_mib} MiB, the limit is {max_mib} MiB (e2b-local serve --max-memory-mib)"
    )]
    MemoryCommitted {
        /// Memory committed by the live sandboxes, in MiB.
        committed_mib: u64,
        /// What one more sandbox commits, in MiB.
        each_mib: u64,
        /// The server's limit, in MiB.
        max_mib: u64,
    },
    /// A host limit (open files, tasks, disk space, available memory) would be hit by one
    /// more sandbox; nothing was spawned.
    #[error("the host cannot take another sandbox ({limit}: {detail}); nothing was created")]
    HostLimit {
        /// Which limit.
        limit: &'static str,
        /// Usage against the limit.
        detail: String,
    },
    /// The sandbox was paused when the server restarted and is being booted again; it
    /// answers once that ends (as paused, or as not found when it could not be restored).
    #[error("sandbox \"{id}\" is being restored after a server restart; retry in a moment")]
    Restoring {
        /// The sandbox id.
        id: String,
    },
    /// A request's value is out of range (a fork count, a snapshot name); the message
    /// names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// A template build request or template operation was malformed; the message names the
    /// field, step or value.
    #[error("{0}")]
    InvalidBuild(String),
    /// A template or build operation conflicts with its state (a build started twice, a
    /// template other templates are built on).
    #[error("{0}")]
    BuildConflict(String),
    /// No build with this id exists for the template.
    #[error("build '{build}' of template '{template}' not found")]
    BuildNotFound {
        /// The template id asked for.
        template: String,
        /// The build id asked for.
        build: String,
    },
    /// A built-in template is being made (the `debian` template, on first use).
    #[error(
        "template '{name}' is being built from Debian's package archive (a few minutes on first use); retry in a moment"
    )]
    TemplateBuilding {
        /// The template.
        name: String,
    },
    /// The server is shutting down: no new sandboxes.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The server failed while doing `action` (the runtime, envd, files on the host).
    #[error("{action}: {source}")]
    Internal {
        /// What failed, naming the sandbox or template.
        action: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// Reading or writing the state database failed.
    #[error(transparent)]
    Store(#[from] crate::state::StateError),
    /// A volume operation failed (or a create's `volumeMounts` were wrong).
    #[error(transparent)]
    Volume(#[from] crate::volumes::VolumeError),
}

impl LifecycleError {
    /// [`SandboxNotFound`](Self::SandboxNotFound) for `id`.
    pub(crate) fn not_found(id: &str) -> Self {
        LifecycleError::SandboxNotFound { id: id.to_owned() }
    }

    /// [`Internal`](Self::Internal): `action` failed because of `source`.
    pub(crate) fn internal(action: impl Into<String>, source: impl Into<BoxError>) -> Self {
        LifecycleError::Internal {
            action: action.into(),
            source: source.into(),
        }
    }
}
