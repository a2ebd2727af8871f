//! Volumes in the sandbox lifecycle: create, list, get and delete them (`/volumes`), check
//! a create's `volumeMounts`, and hold the volumes a create mounts so they cannot be deleted
//! under it. The images and mounts are [`crate::volumes`]'.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;

use super::{LifecycleError, Manager};
use crate::isolation::Runtime;
use crate::isolation::mounts::BindMount;
use crate::state::{Store, VolumeMount, VolumeRecord};
use crate::volumes::{MountHold, VolumeError, Volumes, valid_name};

/// Most volumes one sandbox mounts.
const MAX_MOUNTS: usize = 16;

/// The volumes of `runtime`'s data directory, `bytes` large when made; every stored one is
/// mounted (a crashed server's mounts are kept).
pub(super) fn open(runtime: &Runtime, store: &Store, bytes: u64) -> Volumes {
    let volumes = Volumes::new(
        runtime.data_dir(),
        runtime
            .mkfs_ext4()
            .map(Path::to_owned)
            .map_err(str::to_owned),
        bytes,
    );
    match store.volumes() {
        Ok(recs) => volumes.attach(&recs.into_iter().map(|v| v.id).collect::<Vec<_>>()),
        Err(e) => tracing::error!("listing volumes to mount them: {e}"),
    }
    volumes
}

/// Checks `path` of `volumeMounts[i]`: absolute, normalised, not `/`.
fn check_mount_path(i: usize, path: &str) -> Result<PathBuf, VolumeError> {
    let bad =
        |why: &str| VolumeError::InvalidMount(format!("volumeMounts[{i}].path {path:?} {why}"));
    if !path.starts_with('/') {
        return Err(bad("is not an absolute path"));
    }
    if path.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let p = Path::new(path);
    let mut normal = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => normal.push(n),
            Component::CurDir | Component::ParentDir | Component::Prefix(_) => {
                return Err(bad("must not contain '.' or '..'"));
            }
        }
    }
    if normal == Path::new("/") {
        return Err(bad("is the sandbox's root"));
    }
    if normal.as_os_str() != path.trim_end_matches('/') {
        return Err(bad(
            "is not normalised (write it without '.' and repeated '/')",
        ));
    }
    Ok(normal)
}

impl Manager {
    /// The host's volumes.
    pub fn volumes(&self) -> &Volumes {
        &self.volumes
    }

    /// `POST /volumes`: makes a volume named `name` (an empty ext4 filesystem of the
    /// server's volume size, its root owned by the sandboxes' `user`).
    ///
    /// # Errors
    ///
    /// `InvalidName`, `NameTaken`, `Unavailable`, `Host`, `Store` (as [`LifecycleError::Volume`]).
    pub(crate) async fn create_volume(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<VolumeRecord, LifecycleError> {
        if !valid_name(name) {
            return Err(VolumeError::InvalidName(name.to_owned()).into());
        }
        if let Some(why) = self.volumes.unavailable() {
            return Err(VolumeError::Unavailable(why.to_owned()).into());
        }
        let taken = || -> Result<bool, LifecycleError> {
            Ok(self.store.volumes()?.iter().any(|v| v.name == name))
        };
        if taken()? {
            return Err(VolumeError::NameTaken(name.to_owned()).into());
        }
        let rec = VolumeRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_owned(),
            token: crate::state::random_hex(32),
            size_bytes: self.volumes.size_bytes(),
            created_at: Utc::now(),
        };
        // The image first: a crash before the record is stored leaves a directory the next
        // start removes, never a record without an image.
        self.blocking_volume_op(&rec.id, Volumes::make).await?;
        if !self.store.insert_volume(&rec)? {
            // A concurrent create took the name while the image was made.
            let _ = self.blocking_volume_op(&rec.id, Volumes::remove).await;
            return Err(VolumeError::NameTaken(name.to_owned()).into());
        }
        Ok(rec)
    }

    /// `GET /volumes/{volumeID}`: the volume with this id, or else this name.
    ///
    /// # Errors
    ///
    /// `NotFound`, `Store`.
    pub(crate) fn volume(&self, id_or_name: &str) -> Result<VolumeRecord, LifecycleError> {
        self.store
            .volume(id_or_name)?
            .ok_or_else(|| VolumeError::NotFound(id_or_name.to_owned()).into())
    }

    /// The sandboxes (live or being restored) that mount volume `id`.
    fn mounted_by(&self, id: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .records()
            .into_iter()
            .filter(|r| r.volume_mounts.iter().any(|m| m.volume_id == id))
            .map(|r| r.id)
            .collect();
        ids.sort();
        ids
    }

    /// `DELETE /volumes/{volumeID}`: removes the volume and its data, unless a sandbox
    /// mounts it (or is being created with it).
    ///
    /// # Errors
    ///
    /// `NotFound`, `InUse` naming the sandboxes, `Host`, `Store`.
    pub(crate) async fn delete_volume(
        self: &Arc<Self>,
        id_or_name: &str,
    ) -> Result<(), LifecycleError> {
        let rec = self.volume(id_or_name)?;
        self.volumes.unless_held(&rec.id, |held| {
            let mut users = self.mounted_by(&rec.id);
            if held {
                users.push("(one being created)".to_owned());
            }
            if !users.is_empty() {
                return Err(VolumeError::InUse {
                    name: rec.name.clone(),
                    sandboxes: users.join(", "),
                });
            }
            self.store.remove_volume(&rec.id)?;
            Ok(())
        })?;
        // Gone for every request from here on; its files go now (a failure leaves a
        // directory the next start removes).
        self.blocking_volume_op(&rec.id, Volumes::remove).await
    }

    /// Runs `op` (making, removing) on volume `id` off the async workers.
    async fn blocking_volume_op(
        self: &Arc<Self>,
        id: &str,
        op: fn(&Volumes, &str) -> Result<(), VolumeError>,
    ) -> Result<(), LifecycleError> {
        let (this, id) = (self.clone(), id.to_owned());
        tokio::task::spawn_blocking(move || op(&this.volumes, &id))
            .await
            .map_err(|e| LifecycleError::internal("a volume operation", e))?
            .map_err(LifecycleError::from)
    }

    /// Checks a create's `volumeMounts` (`(name, path)` each): known volumes, absolute
    /// normalised paths, none inside another. Returns them as recorded.
    ///
    /// # Errors
    ///
    /// `InvalidMount` naming the entry and field, `Unavailable`, `Store`.
    pub(crate) fn check_volume_mounts(
        &self,
        mounts: &[(String, String)],
    ) -> Result<Vec<VolumeMount>, LifecycleError> {
        if mounts.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(why) = self.volumes.unavailable() {
            return Err(VolumeError::Unavailable(why.to_owned()).into());
        }
        if mounts.len() > MAX_MOUNTS {
            return Err(VolumeError::InvalidMount(format!(
                "volumeMounts has {} entries (at most {MAX_MOUNTS})",
                mounts.len()
            ))
            .into());
        }
        let mut out: Vec<VolumeMount> = Vec::new();
        let mut paths: Vec<PathBuf> = Vec::new();
        for (i, (name, path)) in mounts.iter().enumerate() {
            let normal = check_mount_path(i, path)?;
            if let Some(j) = paths
                .iter()
                .position(|p| p.starts_with(&normal) || normal.starts_with(p))
            {
                return Err(VolumeError::InvalidMount(format!(
                    "volumeMounts[{i}].path {path:?} overlaps volumeMounts[{j}].path {:?}",
                    mounts[j].1
                ))
                .into());
            }
            if !valid_name(name) {
                return Err(VolumeError::InvalidMount(format!(
                    "volumeMounts[{i}].name {name:?} is not a volume name (letters, digits, '_' and '-')"
                ))
                .into());
            }
            let v = self
                .store
                .volume(name)?
                .filter(|v| v.name == *name)
                .ok_or_else(|| {
                    VolumeError::InvalidMount(format!(
                        "volumeMounts[{i}].name: volume '{name}' not found"
                    ))
                })?;
            paths.push(normal.clone());
            out.push(VolumeMount {
                volume_id: v.id,
                name: v.name,
                path: normal.to_string_lossy().into_owned(),
            });
        }
        Ok(out)
    }

    /// Holds the volumes of `mounts` for a create until the hold is dropped, and returns
    /// their bind mounts.
    ///
    /// # Errors
    ///
    /// `NotFound` when one was deleted since the mounts were checked.
    pub(super) fn hold_volumes(
        &self,
        mounts: &[VolumeMount],
    ) -> Result<(MountHold<'_>, Vec<BindMount>), LifecycleError> {
        let ids = mounts.iter().map(|m| m.volume_id.clone()).collect();
        Ok(self.volumes.hold(ids, || {
            for m in mounts {
                if self.store.volume(&m.volume_id)?.is_none() {
                    return Err(VolumeError::NotFound(m.name.clone()));
                }
            }
            Ok(self.volume_binds(mounts))
        })?)
    }

    /// The bind mounts of `mounts`.
    pub(super) fn volume_binds(&self, mounts: &[VolumeMount]) -> Vec<BindMount> {
        mounts
            .iter()
            .map(|m| BindMount {
                source: self.volumes.mount_point(&m.volume_id),
                target: PathBuf::from(&m.path),
            })
            .collect()
    }

    /// At shutdown, after the sandboxes: unmounts every volume.
    pub(super) fn detach_volumes(&self) {
        match self.store.volumes() {
            Ok(recs) => self
                .volumes
                .detach_all(&recs.into_iter().map(|v| v.id).collect::<Vec<_>>()),
            Err(e) => tracing::warn!("listing volumes to unmount them: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_absolute_and_normalised() {
        assert_eq!(
            check_mount_path(0, "/mnt/data").unwrap(),
            Path::new("/mnt/data")
        );
        assert_eq!(
            check_mount_path(0, "/mnt/data/").unwrap(),
            Path::new("/mnt/data")
        );
        for (bad, why) in [
            ("mnt/data", "is not an absolute path"),
            ("/", "is the sandbox's root"),
            ("/mnt/../etc", "must not contain '.' or '..'"),
            (
                "/mnt//data",
                "is not normalised (write it without '.' and repeated '/')",
            ),
            (
                "/mnt/./data",
                "is not normalised (write it without '.' and repeated '/')",
            ),
        ] {
            let e = check_mount_path(2, bad).unwrap_err().to_string();
            assert_eq!(e, format!("volumeMounts[2].path {bad:?} {why}"));
        }
    }
}
