//! Restart recovery: reclaiming an earlier run's sandboxes and restoring paused ones.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{LifecycleError, Manager, access_token};
use crate::state::{SandboxRecord, SandboxState};

impl Manager {
    /// After a restart: sandboxes of an earlier run cannot be re-attached (their processes
    /// may survive a crashed server). Each one, and every directory left in `sandboxes/`, is
    /// reclaimed (processes killed, cgroup, mounts and files removed). Running ones are
    /// marked killed. Paused ones keep their files: the root upper directory is saved first,
    /// and the sandbox is booted again from its template with those files copied in, then
    /// paused (memory is not kept: resuming it is a reboot). Returns how many were reclaimed.
    pub(crate) async fn recover(self: &Arc<Self>) -> usize {
        let recs = self.store.live_sandboxes().unwrap_or_else(|e| {
            tracing::warn!("recover: {e}");
            Vec::new()
        });
        let saved_root = self.runtime.data_dir().join("paused");
        let mut ids: Vec<String> = recs.iter().map(|r| r.id.clone()).collect();
        let dir = self.runtime.data_dir().join("sandboxes");
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let mut saved = HashMap::new();
        for rec in recs.iter().filter(|r| r.state == SandboxState::Paused) {
            let to = saved_root.join(&rec.id);
            let _ = std::fs::create_dir_all(&saved_root);
            if to.exists() || self.runtime.save_upper(&rec.id, &to).is_ok() {
                saved.insert(rec.id.clone(), to);
            }
        }
        let mut n = 0;
        for id in ids {
            let this = self.clone();
            let id2 = id.clone();
            match tokio::task::spawn_blocking(move || this.runtime.reclaim(&id2)).await {
                Ok(Ok(())) => n += 1,
                Ok(Err(e)) => tracing::warn!("reclaiming sandbox {id}: {e}"),
                Err(e) => tracing::warn!("reclaiming sandbox {id}: {e}"),
            }
            super::logs::remove_files(&self.logs_dir, &id);
        }
        for mut rec in recs {
            if let Some(files) = saved.remove(&rec.id) {
                match self.restore_paused(&rec, files.clone()).await {
                    Ok(()) => {
                        let _ = std::fs::remove_dir_all(&files);
                        continue;
                    }
                    Err(e) => tracing::warn!(
                        "sandbox {}: could not restore it paused ({e}); its files stay in {}",
                        rec.id,
                        files.display()
                    ),
                }
            }
            rec.state = SandboxState::Killed;
            if let Err(e) = self.store.put_sandbox(&rec) {
                tracing::warn!("recover {}: {e}", rec.id);
            }
        }
        n
    }

    async fn restore_paused(
        self: &Arc<Self>,
        rec: &SandboxRecord,
        files: PathBuf,
    ) -> Result<(), LifecycleError> {
        let template = self.template(&rec.template)?;
        let token = rec.secure.then(|| access_token(&self.secret, &rec.id));
        let (handle, envd_version, log) = self
            .boot(
                &rec.id,
                template,
                &rec.template,
                token.as_deref(),
                &rec.env_vars,
                Some(files),
            )
            .await?;
        let h = handle.clone();
        let frozen = tokio::task::spawn_blocking(move || h.freeze()).await;
        if !matches!(frozen, Ok(Ok(()))) {
            let h = handle.clone();
            let _ = tokio::task::spawn_blocking(move || h.kill()).await;
            log.close();
            return Err(LifecycleError::internal(
                format!("sandbox {}", rec.id),
                "pausing it again failed",
            ));
        }
        let mut rec = rec.clone();
        rec.envd_version = envd_version;
        if let Err(e) = self.store.put_sandbox(&rec) {
            let _ = tokio::task::spawn_blocking(move || handle.kill()).await;
            log.close();
            return Err(e.into());
        }
        self.insert_live(handle, token, rec, log);
        Ok(())
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
