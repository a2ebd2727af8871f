//! Captures and forks: a live sandbox's files at one moment, copied into a layer of the
//! layer store while the sandbox is frozen, and `count` new sandboxes booted on it.
//!
//! A sandbox here is a process tree, not a VM: a fork gets the source's files, not its
//! processes or memory. It boots fresh (envd, the template's start command) on the
//! template's layers with the capture stacked over them; the template's layers are shared,
//! only the source's upper directories are copied. A fork's record lists the captures it
//! stands on ([`SandboxRecord::layers`](crate::state::SandboxRecord::layers)), so a paused
//! fork is restored after a restart on the same files, and a capture's layer is removed
//! once no sandbox or snapshot uses it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;

use super::{CreateParams, LifecycleError, Live, Manager, Resolved, lock};
use crate::network::rules::EgressRules;
use crate::state::SandboxRecord;

/// Most forks one request may start (E2B's `count` maximum).
const MAX_FORKS: u32 = 100;
/// Forks booted at once (each mostly waits on envd starting).
const FORK_CONCURRENCY: usize = 4;
/// Prefix of captured layers' keys in the layer store (build layers are cache-key hashes).
const CAPTURE_PREFIX: &str = "capture-";

/// A live sandbox's files at one moment, as a layer of the layer store.
#[derive(Debug, Clone)]
pub(crate) struct Capture {
    /// Its layer key.
    pub(crate) layer: String,
    /// How long the source was frozen for it (zero when it was paused).
    pub(crate) frozen: Duration,
}

/// What [`Manager::fork`] did: the capture, and one outcome per fork in request order.
#[derive(Debug)]
pub(crate) struct Forked {
    /// The source's files the forks boot on.
    pub(crate) capture: Capture,
    /// Each fork, or why it did not start.
    pub(crate) forks: Vec<Result<Arc<Live>, LifecycleError>>,
}

impl Manager {
    /// The template `name` resolves to with the captured `layers` stacked over it (a
    /// fork's, see [`SandboxRecord::layers`]).
    ///
    /// # Errors
    ///
    /// [`template`](Self::template)'s; `Internal` when a captured layer is missing.
    pub(crate) fn template_with_layers(
        &self,
        name: &str,
        layers: &[String],
    ) -> Result<Resolved, LifecycleError> {
        let mut resolved = self.template(name)?;
        if let Some(missing) = layers.iter().find(|k| !self.layers.exists(k)) {
            return Err(LifecycleError::internal(
                format!("template '{name}'"),
                format!("its captured layer {missing} is missing from the layer store"),
            ));
        }
        let tname = resolved.template.name.clone();
        resolved.template = self.layers.stack(resolved.template, &tname, layers);
        Ok(resolved)
    }

    /// Copies the files sandbox `live` changed over `template` (its upper directories) into a
    /// new layer, with the sandbox frozen during the copy and thawed after it (a paused one
    /// stays paused). The layer is pinned under `pin` (never collected) until the caller
    /// records it and unpins. Nothing is left when it fails.
    ///
    /// # Errors
    ///
    /// `FreezerUnavailable` without the cgroup freezer; `SandboxNotFound` when it was killed
    /// meanwhile; `Internal` when copying fails (a full disk: the message says so).
    pub(super) async fn capture_files(
        &self,
        live: &Arc<Live>,
        template: &Resolved,
        pin: &str,
    ) -> Result<Capture, LifecycleError> {
        let id = live.record().id;
        if !self.runtime.can_freeze() {
            return Err(LifecycleError::FreezerUnavailable {
                action: format!("capturing sandbox {id}'s files"),
            });
        }
        let partial = self
            .layers
            .partial()
            .map_err(|e| LifecycleError::internal(format!("capturing sandbox {id}'s files"), e))?;
        let targets: Vec<PathBuf> = template
            .template
            .layers
            .iter()
            .map(|l| l.target.clone())
            .collect();
        let h = live.handle.clone();
        let to = partial.clone();
        let copied = tokio::task::spawn_blocking(move || h.capture_uppers(&targets, &to))
            .await
            .map_err(|e| LifecycleError::internal(format!("capturing sandbox {id}'s files"), e))?;
        let (stats, frozen) = match copied {
            Ok(done) => done,
            Err(e) => {
                let _ =
                    tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&partial)).await;
                return Err(match e {
                    crate::isolation::Error::NotRunning(_) => LifecycleError::not_found(&id),
                    e => LifecycleError::internal(format!("capturing sandbox {id}'s files"), e),
                });
            }
        };
        let layer = format!("{CAPTURE_PREFIX}{}", crate::state::random_hex(10));
        lock(&self.builds.pinned)
            .entry(pin.to_owned())
            .or_default()
            .insert(layer.clone());
        if let Err(e) = self.layers.commit(&partial, &layer) {
            lock(&self.builds.pinned).remove(pin);
            let _ = std::fs::remove_dir_all(&partial);
            return Err(LifecycleError::internal(
                format!("capturing sandbox {id}'s files"),
                e,
            ));
        }
        tracing::info!(sandbox = %id, %layer, bytes = stats.bytes, entries = stats.entries, frozen_ms = frozen.as_secs_f64() * 1e3, "captured a sandbox's files");
        Ok(Capture { layer, frozen })
    }

    /// Forks sandbox `id`: captures its files once ([`capture_files`](Self::capture_files)), then boots
    /// `count` sandboxes on them (`timeout` seconds to live each) with the source's metadata,
    /// environment variables, security and network settings, a few at a time. Each fork
    /// succeeds or fails on its own (a full server fails the forks past its capacity); the
    /// source keeps its id, end time, state and processes. When no fork starts, the capture
    /// is removed.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a count outside 1..=100; the timeout's errors; `SandboxNotFound`;
    /// `TemplateNotFound` when the source's template was deleted; [`capture_files`](Self::capture_files)'s.
    pub(crate) async fn fork(
        self: &Arc<Self>,
        id: &str,
        count: i64,
        timeout: i64,
    ) -> Result<Forked, LifecycleError> {
        if !(1..=i64::from(MAX_FORKS)).contains(&count) {
            return Err(LifecycleError::InvalidArgument(format!(
                "count must be between 1 and {MAX_FORKS} (got {count})"
            )));
        }
        self.check_create_timeout(timeout)?;
        let live = self.live(id)?;
        let src = live.record();
        let template = self.template_with_layers(&src.template, &src.layers)?;
        let pin = format!("fork-{id}-{}", crate::state::random_hex(4));
        let capture = self.capture_files(&live, &template, &pin).await?;
        let mut layers = src.layers.clone();
        layers.push(capture.layer.clone());
        let forks: Vec<Result<Arc<Live>, LifecycleError>> = futures_util::stream::iter(0..count)
            .map(|_| {
                let p = fork_params(&src, timeout, layers.clone());
                async move {
                    let p = p?;
                    self.create(p).await
                }
            })
            .buffered(FORK_CONCURRENCY)
            .collect()
            .await;
        lock(&self.builds.pinned).remove(&pin);
        if forks.iter().all(Result::is_err) {
            self.release_captures();
        }
        Ok(Forked { capture, forks })
    }

    /// Removes the captured layers no live sandbox or stored snapshot uses any more (after a
    /// fork is killed, or a fork request started none).
    pub(super) fn release_captures(&self) {
        match self.collect_layers() {
            Ok(n) if n > 0 => tracing::info!(layers = n, "removed unused captured layers"),
            Ok(_) => {}
            Err(e) => tracing::warn!("removing unused captured layers: {e}"),
        }
    }
}

/// A fork's create: the source's template, captured layers and settings, its own timeout.
fn fork_params(
    src: &SandboxRecord,
    timeout: i64,
    layers: Vec<String>,
) -> Result<CreateParams, LifecycleError> {
    // Validated when the source was made; a record that no longer validates forks only if
    // it had no rules.
    let rules = EgressRules::from_request(
        src.allow_internet_access,
        &src.network.clone().unwrap_or_default(),
    )
    .map_err(|e| LifecycleError::internal(format!("sandbox {}: its network rules", src.id), e))?;
    Ok(CreateParams {
        template: src.template.clone(),
        timeout,
        metadata: src.metadata.clone(),
        env_vars: src.env_vars.clone(),
        secure: src.secure,
        auto_pause: src.auto_pause,
        auto_pause_memory: src.auto_pause_memory,
        auto_resume: src.auto_resume,
        allow_internet_access: src.allow_internet_access,
        network: src.network.clone(),
        rules,
        // The same volumes, shared: a volume's data is not the sandbox's to copy.
        volume_mounts: src.volume_mounts.clone(),
        layers,
    })
}
