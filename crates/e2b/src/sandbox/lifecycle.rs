//! What happens to a sandbox at its timeout and after: [`OnTimeout`], [`PauseMode`] and
//! the [`SandboxLifecycle`] the API reports.

use e2b_api::types;

/// What a pause keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PauseMode {
    /// Memory and files: a resume continues the processes where they stopped.
    #[default]
    Full,
    /// Files only: a resume boots the sandbox again on its files (its processes, memory
    /// and open connections are gone). Cheaper to keep.
    Filesystem,
}

impl PauseMode {
    /// The API's `memory` flag.
    pub(crate) fn keeps_memory(self) -> bool {
        self == PauseMode::Full
    }
}

/// What happens when a sandbox's timeout passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnTimeout {
    /// It is killed (the default).
    #[default]
    Kill,
    /// It is paused, keeping what the mode says; [`Sandbox::connect`](crate::Sandbox::connect)
    /// resumes it.
    Pause(PauseMode),
}

/// The lifecycle policy of a sandbox, as [`SandboxInfo::lifecycle`](crate::SandboxInfo)
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxLifecycle {
    /// Whether the timeout pauses it (`true`) or kills it.
    pub pauses_on_timeout: bool,
    /// Whether a request to its envd or ports resumes it while paused.
    pub auto_resume: bool,
}

impl SandboxLifecycle {
    pub(super) fn from_api(l: types::SandboxLifecycle) -> Self {
        Self {
            pauses_on_timeout: l.on_timeout == types::SandboxOnTimeout::Pause,
            auto_resume: l.auto_resume,
        }
    }
}
