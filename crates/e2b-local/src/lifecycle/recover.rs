//! Restart recovery: reclaiming an earlier run's sandboxes and restoring paused ones.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt as _;

use super::{LifecycleError, Manager, access_token, lock};
use crate::network::rules::EgressRules;
use crate::state::{SandboxRecord, SandboxState};

/// How many sandboxes of an earlier run are reclaimed at once (each mostly waits on the
/// kernel: processes dying, unmounts, unlinks).
const RECLAIM_CONCURRENCY: usize = 4;

impl Manager {
    /// After a restart: sandboxes of an earlier run cannot be re-attached (their processes
    /// may survive a crashed server). What a client can observe is settled here, before the
    /// server listens, in one store transaction: running ones are marked killed (so they are
    /// 404 from the first request on) and paused ones are registered as restoring. The slow
    /// part (SIGKILL and wait per cgroup, unmounting, deleting every file a sandbox wrote,
    /// copying a paused sandbox's files back) is returned as a future to run in the
    /// background: it reclaims each sandbox (and every directory left in `sandboxes/`) and
    /// boots each paused one again from its template with its saved disk image (or, without
    /// a disk budget, its saved root upper directory copied in), then pauses it (memory is not kept: resuming is a reboot). Until its
    /// restore ends, a request naming a paused sandbox gets [`LifecycleError::Restoring`]
    /// (503, retry); afterwards it is live and paused, or killed when it could not be
    /// restored. [`recovered`](Self::recovered) resolves when everything is done.
    pub(crate) fn recover(self: &Arc<Self>) -> impl Future<Output = ()> + Send + 'static {
        let recs = self.store.live_sandboxes().unwrap_or_else(|e| {
            tracing::warn!("recover: {e}");
            Vec::new()
        });
        let mut ids: Vec<String> = recs.iter().map(|r| r.id.clone()).collect();
        let dir = self.runtime.data_dir().join("sandboxes");
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let (paused, running): (Vec<SandboxRecord>, Vec<SandboxRecord>) = recs
            .into_iter()
            .partition(|r| r.state == SandboxState::Paused);
        let killed: Vec<SandboxRecord> = running
            .into_iter()
            .map(|mut r| {
                r.state = SandboxState::Killed;
                r
            })
            .collect();
        if let Err(e) = self.store.put_sandboxes(&killed) {
            tracing::warn!("recover: marking the earlier run's sandboxes killed: {e}");
        }
        lock(&self.restoring).extend(paused.iter().map(|r| (r.id.clone(), r.clone())));
        // Every log file is the earlier run's (a restore starts a new log), including those
        // of a sandbox whose kill was cut after its record and directory were gone.
        for entry in std::fs::read_dir(&self.logs_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_file(entry.path());
        }
        let this = self.clone();
        let saved_dir = self.runtime.data_dir().join("paused");
        async move {
            // Saved files a crash left half-deleted (see `remove_saved`).
            for entry in std::fs::read_dir(&saved_dir)
                .into_iter()
                .flatten()
                .flatten()
            {
                if entry.path().extension().is_some_and(|e| e == "removing") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
            // Paused ones first: they are the ones clients wait for.
            let paused_ids: Vec<String> = paused.iter().map(|r| r.id.clone()).collect();
            for rec in paused {
                this.recover_paused(rec).await;
            }
            let rest: Vec<String> = ids
                .into_iter()
                .filter(|id| !paused_ids.contains(id))
                .collect();
            let n = rest.len();
            futures_util::stream::iter(rest)
                .for_each_concurrent(RECLAIM_CONCURRENCY, |id| this.reclaim(id))
                .await;
            // Layers captured for forks and snapshots that only reclaimed sandboxes used
            // (a crash cut a fork, or killed its forks' server).
            let collector = this.clone();
            let _ = tokio::task::spawn_blocking(move || collector.release_captures()).await;
            if n + paused_ids.len() > 0 {
                tracing::info!(
                    "reclaimed {n} sandboxes of an earlier run, restored {} paused ones",
                    paused_ids.len()
                );
            }
            this.recovered.send_replace(true);
        }
    }

    /// Resolves once the background part of [`recover`](Self::recover) is done (at once
    /// when there was nothing to recover).
    pub async fn recovered(&self) {
        let mut done = self.recovered.subscribe();
        let _ = done.wait_for(|d| *d).await;
    }

    /// Kills what is left of sandbox `id` of an earlier run and removes its files (its log
    /// files are gone already).
    async fn reclaim(self: &Arc<Self>, id: String) {
        let this = self.clone();
        let id2 = id.clone();
        match tokio::task::spawn_blocking(move || this.runtime.reclaim(&id2)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("reclaiming sandbox {id}: {e}"),
            Err(e) => tracing::warn!("reclaiming sandbox {id}: {e}"),
        }
    }

    /// Saves a paused sandbox's files, reclaims it and boots it again paused with them; marks
    /// it killed when that fails.
    async fn recover_paused(self: &Arc<Self>, mut rec: SandboxRecord) {
        let saved_root = self.runtime.data_dir().join("paused");
        let to = saved_root.join(&rec.id);
        let saved = {
            let this = self.clone();
            let (id, to) = (rec.id.clone(), to.clone());
            tokio::task::spawn_blocking(move || {
                let _ = std::fs::create_dir_all(&saved_root);
                to.exists() || this.runtime.save_upper(&id, &to).is_ok()
            })
            .await
            .unwrap_or(false)
        };
        self.reclaim(rec.id.clone()).await;
        if saved && self.closing.load(std::sync::atomic::Ordering::SeqCst) {
            // Shut down meanwhile: the record stays paused and its files saved, for the
            // next run to restore.
            lock(&self.restoring).remove(&rec.id);
            return;
        }
        if saved {
            match self.restore_paused(&rec, to.clone()).await {
                Ok(()) => {
                    let _ = tokio::task::spawn_blocking(move || remove_saved(&to)).await;
                    lock(&self.restoring).remove(&rec.id);
                    return;
                }
                Err(e) => tracing::warn!(
                    "sandbox {}: could not restore it paused ({e}); its files stay in {}",
                    rec.id,
                    to.display()
                ),
            }
        }
        rec.state = SandboxState::Killed;
        if let Err(e) = self.store.put_sandbox(&rec) {
            tracing::warn!("recover {}: {e}", rec.id);
        }
        lock(&self.restoring).remove(&rec.id);
    }

    /// Pauses `live` keeping only its files (`memory: false`, `autoPauseMemory: false`):
    /// its processes end, its files are saved as a restart saves them, and it is booted
    /// again on them, frozen, so a resume finds fresh processes and a new boot id, as after
    /// a reboot. Its id, end time, settings and log stay. Meanwhile requests naming it get
    /// `Restoring` (503, retry). The record says paused before anything moves, so a crash at
    /// any point leaves a sandbox the next start restores from its files.
    ///
    /// # Errors
    ///
    /// `Store`; `Internal` when saving or booting fails (the sandbox is then killed and its
    /// files stay in `paused/<id>`).
    pub(super) async fn pause_files_only(
        self: &Arc<Self>,
        live: Arc<super::Live>,
    ) -> Result<(), LifecycleError> {
        let mut rec = live.record();
        rec.state = SandboxState::Paused;
        self.store.put_sandbox(&rec)?;
        let id = rec.id.clone();
        lock(&self.restoring).insert(id.clone(), rec.clone());
        self.sandboxes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
        live.log.stop();
        if let (Some(networks), Some(net)) = (&self.networks, live.take_network()) {
            networks.detach(&net).await;
        }
        let saved_root = self.runtime.data_dir().join("paused");
        let to = saved_root.join(&id);
        let saved = {
            let this = self.clone();
            let (id, to, h) = (id.clone(), to.clone(), live.handle.clone());
            tokio::task::spawn_blocking(move || -> Result<(), String> {
                std::fs::create_dir_all(&saved_root).map_err(|e| e.to_string())?;
                this.runtime
                    .save_upper(&id, &to)
                    .map_err(|e| e.to_string())?;
                h.kill().map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
        };
        let res = match saved {
            Err(e) => Err(LifecycleError::internal(
                format!("pausing sandbox {id} to its files"),
                e,
            )),
            // Shutting down: the record stays paused with its files saved, for the next run.
            Ok(()) if self.closing.load(std::sync::atomic::Ordering::SeqCst) => {
                lock(&self.restoring).remove(&id);
                return Ok(());
            }
            Ok(()) => self.restore_paused(&rec, to.clone()).await,
        };
        match res {
            Ok(()) => {
                let _ = tokio::task::spawn_blocking(move || remove_saved(&to)).await;
                lock(&self.restoring).remove(&id);
                self.evict.notify_one();
                Ok(())
            }
            Err(e) => {
                tracing::warn!(
                    "sandbox {id}: pausing it to its files failed ({e}); its files stay in {}",
                    to.display()
                );
                let _ = tokio::task::spawn_blocking({
                    let h = live.handle.clone();
                    move || h.kill()
                })
                .await;
                rec.state = SandboxState::Killed;
                let _ = self.store.put_sandbox(&rec);
                lock(&self.restoring).remove(&id);
                live.log.close();
                Err(e)
            }
        }
    }

    async fn restore_paused(
        self: &Arc<Self>,
        rec: &SandboxRecord,
        files: PathBuf,
    ) -> Result<(), LifecycleError> {
        let mut template = self.template_with_layers(&rec.template, &rec.layers)?;
        template.binds = self.volume_binds(&rec.volume_mounts);
        let token = rec.secure.then(|| access_token(&self.secret, &rec.id));
        // Validated at create; a record that no longer validates restores without rules
        // only if it had none.
        let rules = EgressRules::from_request(
            rec.allow_internet_access,
            &rec.network.clone().unwrap_or_default(),
        )
        .map_err(|e| {
            LifecycleError::internal(format!("sandbox {}: its network rules", rec.id), e)
        })?;
        let booted = self
            .boot(
                &rec.id,
                template,
                &rec.template,
                token.as_deref(),
                &rec.env_vars,
                &rules,
                Some(files),
            )
            .await?;
        let h = booted.handle.clone();
        let frozen = tokio::task::spawn_blocking(move || h.freeze()).await;
        if !matches!(frozen, Ok(Ok(()))) {
            self.discard(booted).await;
            return Err(LifecycleError::internal(
                format!("sandbox {}", rec.id),
                "pausing it again failed",
            ));
        }
        let mut rec = rec.clone();
        let rec_id = rec.id.clone();
        rec.envd_version = booted.envd_version.clone();
        if let Err(e) = self.store.put_sandbox(&rec) {
            self.discard(booted).await;
            return Err(e.into());
        }
        // Inserted before `restoring` forgets it, so no request sees it missing.
        self.insert_live(booted, token, rec);
        if self.closing.load(std::sync::atomic::Ordering::SeqCst) {
            // The server shut down during the restore: its kill_all may have missed this one.
            let _ = self.kill(&rec_id).await;
        }
        Ok(())
    }
}

/// Removes a paused sandbox's saved files once it is booted on them: a saved image (now
/// also linked as the sandbox's disk) or directory. The directory is renamed away first, so
/// a crash while deleting it never leaves a partial copy where the next start looks.
fn remove_saved(saved: &std::path::Path) -> std::io::Result<()> {
    if saved.is_dir() {
        let doomed = saved.with_extension("removing");
        std::fs::rename(saved, &doomed)?;
        std::fs::remove_dir_all(doomed)
    } else {
        std::fs::remove_file(saved)
    }
}

/// Copies the tree `from` into `to` (directories, regular files, symlinks), keeping modes
/// and owners. Overlay whiteouts and other special files are skipped.
pub(super) fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let md = std::fs::symlink_metadata(&src)?;
        let ft = md.file_type();
        if ft.is_dir() {
            match std::fs::create_dir(&dst) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            copy_tree(&src, &dst)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&src)?;
            let _ = std::fs::remove_file(&dst);
            std::os::unix::fs::symlink(target, &dst)?;
        } else {
            continue;
        }
        std::os::unix::fs::lchown(&dst, Some(md.uid()), Some(md.gid()))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
    }
    Ok(())
}
