//! The sandbox's filesystem: read, write, list, stat, remove, rename, make directories and
//! watch, through envd's `/files` endpoint and `filesystem.Filesystem` service.
//!
//! The types and the metadata RPCs live here; `transfer` moves file contents over
//! `/files`, and `watch` follows changes under a directory.

mod transfer;
mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use e2b_envd::pb::filesystem::{
    self as pb, ListDirRequest, MakeDirRequest, MoveRequest, RemoveRequest, StatRequest,
};

use crate::envd::Envd;
use crate::error::{Error, Result};

pub use transfer::{ReadStream, STREAM_IDLE_TIMEOUT, WriteEntry};
pub use watch::{EventType, FilesystemEvent, PollingWatchHandle, WatchHandle, WatchOptions};

/// What kind of entry a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (envd reports the target's type instead; kept for completeness).
    Symlink,
}

impl FileType {
    fn from_pb(value: i32) -> Option<Self> {
        match pb::FileType::try_from(value).ok()? {
            pb::FileType::File => Some(FileType::File),
            pb::FileType::Directory => Some(FileType::Dir),
            pb::FileType::Symlink => Some(FileType::Symlink),
            pb::FileType::Unspecified => None,
        }
    }
}

/// Information about a file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryInfo {
    /// The base name.
    pub name: String,
    /// File or directory (for a symlink: its target's type).
    pub file_type: FileType,
    /// The absolute path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits, e.g. `0o644`.
    pub mode: u32,
    /// The permissions as `ls -l` shows them, e.g. `-rw-r--r--`.
    pub permissions: String,
    /// The owning user's name.
    pub owner: String,
    /// The owning group's name.
    pub group: String,
    /// Last modification time.
    pub modified_time: Option<DateTime<Utc>>,
    /// For a symlink, the resolved absolute target.
    pub symlink_target: Option<String>,
    /// User metadata stored with the file.
    pub metadata: BTreeMap<String, String>,
}

impl EntryInfo {
    fn from_pb(entry: pb::EntryInfo) -> Option<Self> {
        Some(Self {
            file_type: FileType::from_pb(entry.r#type)?,
            name: entry.name,
            path: entry.path,
            size: u64::try_from(entry.size).unwrap_or(0),
            mode: entry.mode,
            permissions: entry.permissions,
            owner: entry.owner,
            group: entry.group,
            modified_time: entry.modified_time.and_then(|t| t.to_datetime()),
            symlink_target: entry.symlink_target,
            metadata: entry.metadata.into_iter().collect(),
        })
    }
}

/// A file written by [`Filesystem::write`] or [`Filesystem::write_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteInfo {
    /// The base name.
    pub name: String,
    /// The absolute path.
    pub path: String,
    /// Always [`FileType::File`].
    pub file_type: FileType,
    /// The metadata stored with it.
    pub metadata: BTreeMap<String, String>,
}

/// The sandbox's filesystem: `sandbox.files()`. Cheap to clone.
///
/// Per-call settings are set on a copy of the handle: `files.user("root").exists("/x")`,
/// `files.gzip(true).read("/big.log")`.
#[derive(Debug, Clone)]
pub struct Filesystem {
    envd: Arc<Envd>,
    user: Option<String>,
    request_timeout: Option<Duration>,
    gzip: bool,
    metadata: BTreeMap<String, String>,
}

impl Filesystem {
    pub(crate) fn new(envd: Arc<Envd>) -> Self {
        Self {
            envd,
            user: None,
            request_timeout: None,
            gzip: false,
            metadata: BTreeMap::new(),
        }
    }

    /// A handle acting as `user` (resolving relative paths against their home and owning
    /// written files).
    #[must_use]
    pub fn user(&self, user: impl Into<String>) -> Self {
        Self {
            user: Some(user.into()),
            ..self.clone()
        }
    }

    /// A handle whose calls time out after `timeout` (zero: never) instead of the
    /// connection's request timeout.
    #[must_use]
    pub fn request_timeout(&self, timeout: Duration) -> Self {
        Self {
            request_timeout: Some(timeout),
            ..self.clone()
        }
    }

    /// A handle that compresses transfers with gzip (reads ask for it, writes send it).
    #[must_use]
    pub fn gzip(&self, gzip: bool) -> Self {
        Self {
            gzip,
            ..self.clone()
        }
    }

    /// A handle that stores `metadata` with every file it writes (replacing what the file
    /// had). Keys must be header tokens, values printable ASCII.
    #[must_use]
    pub fn metadata<K: Into<String>, V: Into<String>>(
        &self,
        metadata: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            metadata: metadata
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            ..self.clone()
        }
    }

    fn timeout(&self) -> Option<Duration> {
        self.request_timeout
            .or(self.envd.request_timeout)
            .filter(|t| !t.is_zero())
    }

    fn username(&self) -> Option<String> {
        self.envd
            .effective_user(self.user.as_deref())
            .map(str::to_owned)
    }

    // ---- filesystem RPCs ----------------------------------------------------------------

    async fn rpc<T>(&self, result: std::result::Result<T, e2b_envd::ConnectError>) -> Result<T> {
        match result {
            Ok(value) => Ok(value),
            Err(e) => Err(self.envd.rpc_error(e).await),
        }
    }

    fn request<T>(&self, message: T) -> e2b_envd::Request<T> {
        self.envd
            .request(message, self.user.as_deref(), self.request_timeout)
    }

    /// Lists a directory, `depth` levels deep (1: its children only).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a depth below 1 or a path that is not a directory;
    /// [`Error::NotFound`] when it does not exist.
    pub async fn list(&self, path: &str, depth: u32) -> Result<Vec<EntryInfo>> {
        check_path(path)?;
        if depth < 1 {
            return Err(Error::invalid_argument("depth should be at least one"));
        }
        let message = ListDirRequest {
            path: path.to_owned(),
            depth,
        };
        let response = self
            .rpc(self.envd.filesystem.list_dir(self.request(message)).await)
            .await?;
        Ok(response
            .entries
            .into_iter()
            .filter_map(EntryInfo::from_pb)
            .collect())
    }

    /// Whether `path` exists.
    ///
    /// # Errors
    ///
    /// As mapped from envd, except that "not found" is `Ok(false)`.
    pub async fn exists(&self, path: &str) -> Result<bool> {
        check_path(path)?;
        let message = StatRequest {
            path: path.to_owned(),
        };
        match self.envd.filesystem.stat(self.request(message)).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == e2b_envd::Code::NotFound => Ok(false),
            Err(e) => Err(self.envd.rpc_error(e).await),
        }
    }

    /// Information about `path`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when it does not exist.
    pub async fn get_info(&self, path: &str) -> Result<EntryInfo> {
        check_path(path)?;
        let message = StatRequest {
            path: path.to_owned(),
        };
        let response = self
            .rpc(self.envd.filesystem.stat(self.request(message)).await)
            .await?;
        entry_of(response.entry, path)
    }

    /// Removes a file or directory (recursively). Removing a missing path succeeds.
    ///
    /// # Errors
    ///
    /// As mapped from envd.
    pub async fn remove(&self, path: &str) -> Result<()> {
        check_path(path)?;
        let message = RemoveRequest {
            path: path.to_owned(),
        };
        self.rpc(self.envd.filesystem.remove(self.request(message)).await)
            .await?;
        Ok(())
    }

    /// Renames (moves) `old_path` to `new_path`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when `old_path` does not exist.
    pub async fn rename(&self, old_path: &str, new_path: &str) -> Result<EntryInfo> {
        check_path(old_path)?;
        check_path(new_path)?;
        let message = MoveRequest {
            source: old_path.to_owned(),
            destination: new_path.to_owned(),
        };
        let response = self
            .rpc(self.envd.filesystem.r#move(self.request(message)).await)
            .await?;
        entry_of(response.entry, new_path)
    }

    /// Creates a directory and its parents; `false` when it already existed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when a file is in the way.
    pub async fn make_dir(&self, path: &str) -> Result<bool> {
        check_path(path)?;
        let message = MakeDirRequest {
            path: path.to_owned(),
        };
        match self.envd.filesystem.make_dir(self.request(message)).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == e2b_envd::Code::AlreadyExists => Ok(false),
            Err(e) => Err(self.envd.rpc_error(e).await),
        }
    }
}

fn entry_of(entry: Option<pb::EntryInfo>, path: &str) -> Result<EntryInfo> {
    entry
        .and_then(EntryInfo::from_pb)
        .ok_or_else(|| Error::sandbox(format!("envd returned no usable entry for '{path}'")))
}

fn check_path(path: &str) -> Result<()> {
    if path.is_empty() {
        return Err(Error::invalid_argument("the path must not be empty"));
    }
    if path.contains('\0') {
        return Err(Error::invalid_argument(format!(
            "the path {path:?} contains a NUL byte"
        )));
    }
    Ok(())
}

fn request_timeout_error(what: &str, path: &str, limit: Duration) -> Error {
    Error::timeout(format!(
        "{what} '{path}' took longer than the request timeout of {limit:?}. This error is \
         likely due to exceeding 'request_timeout'."
    ))
}
