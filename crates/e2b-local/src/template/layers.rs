//! Built layers on disk: `<data_dir>/layers/<key>/<target>/`, one directory per overlay
//! target of the base (`rootfs` for `/`, `usr` for `/usr`, ...), each the upper directory a
//! build step left (whiteouts and opaque directories included, so it works as an overlay
//! lower layer). A key is the step's cache key ([`super::steps::chain_key`]). Layers are
//! written once, under a temporary name, and renamed into place.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::Template;

/// The directory name of the layer part mounted at `/`.
const ROOT_PART: &str = "rootfs";
/// Prefix of layers being written (removed at start-up: a crashed build's).
const PARTIAL_PREFIX: &str = ".partial-";

/// The layer store.
#[derive(Debug, Clone)]
pub struct Layers {
    dir: PathBuf,
}

impl Layers {
    /// The store under `data_dir`, created private, with an earlier run's partial layers
    /// removed.
    ///
    /// # Errors
    ///
    /// Creating the directory.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join("layers");
        crate::state::create_private_dir(&dir)?;
        for e in std::fs::read_dir(&dir)?.flatten() {
            if e.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(Layers { dir })
    }

    /// The directory of layer `key`.
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Whether layer `key` exists.
    pub fn exists(&self, key: &str) -> bool {
        self.path(key).is_dir()
    }

    /// A fresh directory to write a layer into before [`commit`](Self::commit).
    ///
    /// # Errors
    ///
    /// Creating it.
    pub fn partial(&self) -> std::io::Result<PathBuf> {
        let p = self
            .dir
            .join(format!("{PARTIAL_PREFIX}{}", crate::state::random_hex(8)));
        std::fs::create_dir(&p)?;
        Ok(p)
    }

    /// Moves a written layer into place as `key`. When another build made `key` meanwhile,
    /// theirs is kept and `partial` removed (both hold the same step's result).
    ///
    /// # Errors
    ///
    /// Renaming failed for another reason.
    pub fn commit(&self, partial: &Path, key: &str) -> std::io::Result<()> {
        match std::fs::rename(partial, self.path(key)) {
            Ok(()) => Ok(()),
            Err(_) if self.exists(key) => {
                let _ = std::fs::remove_dir_all(partial);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The part of a layer directory that holds the files under `target`.
    pub fn part(layer_dir: &Path, target: &Path) -> PathBuf {
        if target == Path::new("/") {
            layer_dir.join(ROOT_PART)
        } else {
            layer_dir.join(crate::isolation::layer_name(target))
        }
    }

    /// `base` with the layers `keys` (bottom first) stacked over its overlays.
    pub fn stack(&self, mut base: Template, name: &str, keys: &[String]) -> Template {
        for key in keys {
            let dir = self.path(key);
            for layer in &mut base.layers {
                let part = Self::part(&dir, &layer.target);
                if part.is_dir() {
                    layer.lowers.insert(0, part);
                }
            }
        }
        base.name = name.to_owned();
        base
    }

    /// Removes every layer not in `keep`; returns how many were removed.
    pub fn collect(&self, keep: &HashSet<String>) -> usize {
        let mut removed = 0;
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(PARTIAL_PREFIX) || keep.contains(&name) {
                continue;
            }
            if std::fs::remove_dir_all(e.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Bytes the store takes on disk (allocated blocks).
    pub fn disk_usage(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            use std::os::unix::fs::MetadataExt as _;
            let Ok(md) = std::fs::symlink_metadata(p) else {
                return 0;
            };
            let mut n = md.blocks() * 512;
            if md.is_dir() {
                for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                    n += walk(&e.path());
                }
            }
            n
        }
        walk(&self.dir)
    }
}
