//! The background tasks that end sandboxes: the evictor (end times) and the reaper (envd
//! exited on its own).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{LifecycleError, Manager, lock};
use crate::state::SandboxState;

impl Manager {
    /// The evictor: kills (or, with `autoPause`, pauses) each running sandbox as soon as its
    /// end time passes. Wakes at the earliest end time or when any end time changes.
    pub(crate) async fn run_evictor(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let now = Utc::now();
            let mut next: Option<DateTime<Utc>> = None;
            let mut due = Vec::new();
            for live in self.all() {
                let rec = lock(&live.rec);
                if rec.state != SandboxState::Running {
                    continue;
                }
                if rec.end_at <= now {
                    due.push((rec.id.clone(), rec.auto_pause, rec.auto_pause_memory));
                } else if next.is_none_or(|n| rec.end_at < n) {
                    next = Some(rec.end_at);
                }
            }
            for (id, auto_pause, keep_memory) in due {
                let this = self.clone();
                tokio::spawn(async move {
                    let res = if auto_pause {
                        this.pause(&id, keep_memory).await
                    } else {
                        this.kill(&id).await
                    };
                    match res {
                        Ok(()) => tracing::info!(
                            "sandbox {id} timed out: {}",
                            if auto_pause { "paused" } else { "killed" }
                        ),
                        Err(LifecycleError::SandboxNotFound { .. }) => {}
                        Err(e) => tracing::warn!("evicting sandbox {id}: {e}"),
                    }
                });
            }
            let wait = next.map_or(Duration::from_secs(3600), |n| {
                (n - Utc::now()).to_std().unwrap_or(Duration::ZERO)
            });
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.evict.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Every second, finds running sandboxes whose first process (envd under its reaper)
    /// has exited, e.g. killed by the OOM killer, and cleans them up like a kill, so their
    /// state is not left "running" with nothing behind it.
    pub(crate) async fn run_reaper(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let live = self.all();
            let dead = tokio::task::spawn_blocking(move || {
                live.iter()
                    .filter(|l| l.record().state == SandboxState::Running && !l.handle.is_running())
                    .map(|l| l.record().id)
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            for id in dead {
                match self.kill(&id).await {
                    Ok(()) => tracing::warn!("sandbox {id}: its envd exited; cleaned up"),
                    Err(LifecycleError::SandboxNotFound { .. }) => {}
                    Err(e) => tracing::warn!("sandbox {id}: its envd exited; cleanup: {e}"),
                }
            }
        }
    }
}
