//! Volumes: storage that outlives sandboxes, mounted into them with
//! [`SandboxBuilder::volume_mount`](crate::SandboxBuilder::volume_mount) and read and written
//! without a sandbox through the volume content API. The same surface as the official Python
//! SDK's `Volume` (2.63): [`Volume::create`], [`Volume::connect`],
//! [`Volume::get_info_by_id`], [`Volume::list_volumes`], [`Volume::destroy`], and the file
//! operations of one volume ([`list`](Volume::list), [`make_dir`](Volume::make_dir),
//! [`get_info`](Volume::get_info), [`exists`](Volume::exists),
//! [`update_metadata`](Volume::update_metadata), [`read_file`](Volume::read_file),
//! [`write_file`](Volume::write_file), [`remove`](Volume::remove)).
//!
//! Volumes themselves are made and listed by the control plane (`/volumes`, the API key);
//! their files go to the content API at [`ConnectionConfig::volume_api_url`]
//! (`E2B_VOLUME_API_URL`), with the volume's own token. Both are typed clients of `e2b-api`.
//!
//! ```no_run
//! # async fn demo() -> e2b::Result<()> {
//! use e2b::{ConnectionConfig, RunOptions, Sandbox, Volume, VolumeWriteOptions};
//!
//! let config = ConnectionConfig::from_env()?;
//! let volume = Volume::create(&config, "datasets").await?;
//! volume
//!     .write_file("/raw/a.csv", "x,y\n1,2\n", VolumeWriteOptions::new().force(true))
//!     .await?;
//! let sandbox = Sandbox::builder()
//!     .config(config.clone())
//!     .volume_mount(volume.name(), "/mnt/datasets")
//!     .create()
//!     .await?;
//! let out = sandbox
//!     .commands()
//!     .run("cat /mnt/datasets/raw/a.csv", RunOptions::new())
//!     .await?;
//! assert_eq!(out.stdout, "x,y\n1,2\n");
//! sandbox.kill().await?;
//! Volume::destroy(&config, volume.volume_id()).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use e2b_api::prelude::*;
use e2b_api::types;
use e2b_api::volume_content::prelude::*;
use e2b_api::volume_content::types as content;
use futures_util::{Stream, StreamExt as _};

use crate::config::{ConnectionConfig, USER_AGENT};
use crate::error::{self, Context, Error, Result};
use crate::files::ReadStream;
use crate::sandbox::api::{api_error, send_with_retries};

/// How long a whole file transfer may take unless the request timeout is shorter: one hour,
/// the official SDKs' `FILE_TIMEOUT` (transfers are large; unary calls keep the request
/// timeout).
pub const FILE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Kind of a volume entry.
pub use e2b_api::volume_content::types::VolumeEntryType as VolumeFileType;

/// A volume: its id and name ([`Volume::list_volumes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VolumeInfo {
    /// Its id.
    pub volume_id: String,
    /// Its name.
    pub name: String,
}

/// A volume with the token of its content API ([`Volume::get_info_by_id`]).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VolumeAndToken {
    /// Its id.
    pub volume_id: String,
    /// Its name.
    pub name: String,
    /// Bearer token of its content API.
    pub token: String,
    /// Domain of its content API when it is not the configured one (BYOC clusters).
    pub domain: Option<String>,
}

impl fmt::Debug for VolumeAndToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VolumeAndToken")
            .field("volume_id", &self.volume_id)
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("domain", &self.domain)
            .finish()
    }
}

/// A volume mounted into a sandbox ([`SandboxInfo::volume_mounts`](crate::SandboxInfo)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// The volume's name.
    pub name: String,
    /// Where it is mounted inside the sandbox.
    pub path: String,
}

impl VolumeMount {
    pub(crate) fn from_api(m: types::SandboxVolumeMount) -> Self {
        Self {
            name: m.name,
            path: m.path,
        }
    }
}

/// One file, directory or link of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VolumeEntryStat {
    /// Last component of its path (empty for the root).
    pub name: String,
    /// Its kind.
    pub file_type: VolumeFileType,
    /// From the volume's root, starting with `/`.
    pub path: String,
    /// Size in bytes.
    pub size: i64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last access.
    pub atime: DateTime<Utc>,
    /// Last modification.
    pub mtime: DateTime<Utc>,
    /// Last status change.
    pub ctime: DateTime<Utc>,
    /// A symbolic link's target, as stored in it.
    pub target: Option<String>,
}

impl VolumeEntryStat {
    fn from_api(s: content::VolumeEntryStat) -> Self {
        Self {
            name: s.name,
            file_type: s.type_,
            path: s.path,
            size: s.size,
            mode: s.mode,
            uid: s.uid,
            gid: s.gid,
            atime: s.atime,
            mtime: s.mtime,
            ctime: s.ctime,
            target: s.target,
        }
    }
}

/// Owner, group, mode and `force` of [`Volume::write_file`] and [`Volume::make_dir`]; what is
/// left unset is the server's default (the volume root's owner, `0644`/`0755`).
///
/// ```
/// let opts = e2b::VolumeWriteOptions::new().mode(0o600).force(true);
/// assert_eq!(opts.mode, Some(0o600));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub struct VolumeWriteOptions {
    /// Owner of a new entry.
    pub uid: Option<u32>,
    /// Group of a new entry.
    pub gid: Option<u32>,
    /// Permission bits of a new entry.
    pub mode: Option<u32>,
    /// Make missing parent directories (and, for a directory, accept an existing one).
    pub force: Option<bool>,
}

impl VolumeWriteOptions {
    /// No option set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the owner.
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    /// Sets the group.
    pub fn gid(mut self, gid: u32) -> Self {
        self.gid = Some(gid);
        self
    }

    /// Sets the permission bits.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Sets `force`.
    pub fn force(mut self, force: bool) -> Self {
        self.force = Some(force);
        self
    }
}

/// What [`Volume::update_metadata`] changes; unset fields are kept.
///
/// ```
/// let change = e2b::VolumeMetadata { mode: Some(0o640), ..Default::default() };
/// assert_eq!(change.uid, None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VolumeMetadata {
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New permission bits.
    pub mode: Option<u32>,
}

/// A volume, with what its file operations need: its id, name, token and the configuration
/// that locates the content API. Cheap to clone.
#[derive(Clone)]
pub struct Volume {
    inner: Arc<Inner>,
}

struct Inner {
    volume_id: String,
    name: String,
    token: String,
    config: ConnectionConfig,
    content_url: String,
    client: OnceLock<e2b_api::volume_content::Client>,
}

impl fmt::Debug for Volume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Volume")
            .field("volume_id", &self.inner.volume_id)
            .field("name", &self.inner.name)
            .field("content_url", &self.inner.content_url)
            .finish_non_exhaustive()
    }
}

/// Checks a volume id or name given by the caller.
fn check_id(what: &str, id: &str) -> Result<()> {
    if id.trim().is_empty() {
        return Err(Error::invalid_argument(format!(
            "the {what} must not be empty"
        )));
    }
    if id.contains(['/', '?', '#', '\0']) || id.chars().any(char::is_whitespace) {
        return Err(Error::invalid_argument(format!(
            "the {what} '{id}' contains characters it cannot have"
        )));
    }
    Ok(())
}

impl Volume {
    /// A handle on an existing volume from what is known of it, without an API call (the
    /// Python SDK's `Volume(volume_id, name, token, domain)`); `domain` replaces the
    /// configured one for content requests.
    pub fn new(
        config: &ConnectionConfig,
        volume_id: impl Into<String>,
        name: impl Into<String>,
        token: impl Into<String>,
        domain: Option<&str>,
    ) -> Self {
        let content_url = match domain.filter(|d| !d.is_empty()) {
            Some(d) => config.clone().with_domain(d).volume_api_url(),
            None => config.volume_api_url(),
        };
        Self {
            inner: Arc::new(Inner {
                volume_id: volume_id.into(),
                name: name.into(),
                token: token.into(),
                config: config.clone(),
                content_url,
                client: OnceLock::new(),
            }),
        }
    }

    /// Its id.
    pub fn volume_id(&self) -> &str {
        &self.inner.volume_id
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The bearer token of its content API.
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// Creates a volume named `name` (letters, digits, `_` and `-`).
    ///
    /// # Errors
    ///
    /// [`Error::Volume`] with `<status>: <message>` for what the API refuses (a taken name is
    /// `409: ...`, a bad one `400: ...`); [`Error::Authentication`], [`Error::RateLimit`].
    pub async fn create(config: &ConnectionConfig, name: &str) -> Result<Volume> {
        let client = config.api_client()?;
        let body = types::NewVolume {
            name: name.to_owned(),
        };
        let send = || client.post_volumes().body(body.clone()).send();
        match send_with_retries(config.request_timeout(), send).await {
            Ok(v) => {
                let v = v.into_inner();
                Ok(Volume::new(
                    config,
                    v.volume_id,
                    v.name,
                    v.token,
                    v.domain.as_deref(),
                ))
            }
            Err(e) => Err(api_error(e, "creating a volume", None)
                .await
                .into_class(Error::Volume)),
        }
    }

    /// A handle on the existing volume `volume_id`, with its token.
    ///
    /// # Errors
    ///
    /// As [`get_info_by_id`](Self::get_info_by_id).
    pub async fn connect(config: &ConnectionConfig, volume_id: &str) -> Result<Volume> {
        let info = Self::get_info_by_id(config, volume_id).await?;
        Ok(Volume::new(
            config,
            volume_id,
            info.name,
            info.token,
            info.domain.as_deref(),
        ))
    }

    /// The volume `volume_id` and its token (`GET /volumes/{volumeID}`).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] (`Volume {id} not found`); others as [`create`](Self::create).
    pub async fn get_info_by_id(
        config: &ConnectionConfig,
        volume_id: &str,
    ) -> Result<VolumeAndToken> {
        check_id("volume id", volume_id)?;
        let client = config.api_client()?;
        let send = || client.get_volume().volume_id(volume_id).send();
        match send_with_retries(config.request_timeout(), send).await {
            Ok(v) => {
                let v = v.into_inner();
                Ok(VolumeAndToken {
                    volume_id: v.volume_id,
                    name: v.name,
                    token: v.token,
                    domain: v.domain.filter(|d| !d.is_empty()),
                })
            }
            Err(e) => {
                let not_found = format!("Volume {volume_id} not found");
                Err(api_error(e, "getting a volume", Some(not_found))
                    .await
                    .into_class(Error::Volume))
            }
        }
    }

    /// Every volume of the team (`GET /volumes`).
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    pub async fn list_volumes(config: &ConnectionConfig) -> Result<Vec<VolumeInfo>> {
        let client = config.api_client()?;
        let send = || client.get_volumes().send();
        match send_with_retries(config.request_timeout(), send).await {
            Ok(list) => Ok(list
                .into_inner()
                .into_iter()
                .map(|v| VolumeInfo {
                    volume_id: v.volume_id,
                    name: v.name,
                })
                .collect()),
            Err(e) => Err(api_error(e, "listing volumes", None)
                .await
                .into_class(Error::Volume)),
        }
    }

    /// Deletes the volume `volume_id` and its data; `false` when there was none.
    ///
    /// # Errors
    ///
    /// [`Error::Volume`] (`409: ...` naming the sandboxes) while a sandbox mounts it; others
    /// as [`create`](Self::create).
    pub async fn destroy(config: &ConnectionConfig, volume_id: &str) -> Result<bool> {
        check_id("volume id", volume_id)?;
        let client = config.api_client()?;
        let send = || client.delete_volume().volume_id(volume_id).send();
        match send_with_retries(config.request_timeout(), send).await {
            Ok(_) => Ok(true),
            Err(e) if e.status().map(|s| s.as_u16()) == Some(404) => Ok(false),
            Err(e) => Err(api_error(e, "deleting a volume", None)
                .await
                .into_class(Error::Volume)),
        }
    }

    // ---- the content API ------------------------------------------------------------------

    /// The content API client: bearer token and user agent on every request; time limits are
    /// per call ([`unary`](Self::unary), [`FILE_TIMEOUT`]).
    fn client(&self) -> Result<&e2b_api::volume_content::Client> {
        if let Some(c) = self.inner.client.get() {
            return Ok(c);
        }
        let mut token =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", self.inner.token))
                .map_err(|_| {
                    Error::invalid_argument("the volume token is not a valid header value")
                })?;
        token.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, token);
        headers.insert(
            reqwest::header::USER_AGENT,
            reqwest::header::HeaderValue::from_static(USER_AGENT),
        );
        let tls =
            e2b_envd::tls_config().map_err(|e| Error::Sandbox(Context::new(e.to_string())))?;
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| error::from_reqwest("building the volume client", e))?;
        let client =
            e2b_api::volume_content::Client::new_with_client(&self.inner.content_url, http);
        Ok(self.inner.client.get_or_init(|| client))
    }

    /// Runs a content call within `limit` (`None`: none).
    async fn within<T>(
        limit: Option<Duration>,
        what: &str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match limit {
            Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
                Err(Error::timeout(format!(
                    "{what} timed out after {limit:?}. This error is likely due to exceeding 'request_timeout'."
                )))
            }),
            None => call.await,
        }
    }

    /// The limit of a unary call: the request timeout.
    fn unary(&self) -> Option<Duration> {
        self.inner.config.request_timeout()
    }

    /// The limit of a whole transfer: [`FILE_TIMEOUT`], or the request timeout when shorter.
    fn transfer(&self) -> Option<Duration> {
        Some(self.unary().map_or(FILE_TIMEOUT, |t| t.min(FILE_TIMEOUT)))
    }

    /// Lists the directory `path`, down to `depth` levels (`None`: 1).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] (`Path {path} not found`); [`Error::Volume`] with
    /// `<status>: <message>` for what the server refuses (`400` for a file or a path
    /// leaving the volume); [`Error::Authentication`] for a rejected token.
    pub async fn list(&self, path: &str, depth: Option<u32>) -> Result<Vec<VolumeEntryStat>> {
        let client = self.client()?;
        Self::within(self.unary(), "listing a volume directory", async {
            let mut req = client
                .list_volume_dir()
                .volume_id(self.volume_id())
                .path(path);
            if let Some(depth) = depth {
                req = req.depth(depth);
            }
            match req.send().await {
                Ok(list) => Ok(list
                    .into_inner()
                    .0
                    .into_iter()
                    .map(VolumeEntryStat::from_api)
                    .collect()),
                Err(e) => Err(content_error(e, "listing a volume directory", path).await),
            }
        })
        .await
    }

    /// Makes the directory `path` (with `force`, its parents too).
    ///
    /// # Errors
    ///
    /// As [`list`](Self::list); an existing path is [`Error::Volume`] `409: ...`.
    pub async fn make_dir(&self, path: &str, opts: VolumeWriteOptions) -> Result<VolumeEntryStat> {
        let client = self.client()?;
        Self::within(self.unary(), "making a volume directory", async {
            let mut req = client
                .make_volume_dir()
                .volume_id(self.volume_id())
                .path(path);
            if let Some(v) = opts.uid {
                req = req.uid(v);
            }
            if let Some(v) = opts.gid {
                req = req.gid(v);
            }
            if let Some(v) = opts.mode {
                req = req.mode(v);
            }
            if let Some(v) = opts.force {
                req = req.force(v);
            }
            match req.send().await {
                Ok(s) => Ok(VolumeEntryStat::from_api(s.into_inner())),
                Err(e) => Err(content_error(e, "making a volume directory", path).await),
            }
        })
        .await
    }

    /// The entry at `path` (a link is described, not followed).
    ///
    /// # Errors
    ///
    /// As [`list`](Self::list).
    pub async fn get_info(&self, path: &str) -> Result<VolumeEntryStat> {
        let client = self.client()?;
        Self::within(self.unary(), "getting a volume entry", async {
            match client
                .stat_volume_path()
                .volume_id(self.volume_id())
                .path(path)
                .send()
                .await
            {
                Ok(s) => Ok(VolumeEntryStat::from_api(s.into_inner())),
                Err(e) => Err(content_error(e, "getting a volume entry", path).await),
            }
        })
        .await
    }

    /// Whether `path` exists ([`get_info`](Self::get_info) without the not-found error).
    ///
    /// # Errors
    ///
    /// As [`get_info`](Self::get_info), except [`Error::NotFound`].
    pub async fn exists(&self, path: &str) -> Result<bool> {
        match self.get_info(path).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sets the owner, group or mode of `path`.
    ///
    /// # Errors
    ///
    /// As [`list`](Self::list).
    pub async fn update_metadata(
        &self,
        path: &str,
        change: VolumeMetadata,
    ) -> Result<VolumeEntryStat> {
        let client = self.client()?;
        Self::within(self.unary(), "updating a volume entry", async {
            let body = content::VolumeEntryUpdate {
                uid: change.uid,
                gid: change.gid,
                mode: change.mode,
            };
            match client
                .update_volume_path()
                .volume_id(self.volume_id())
                .path(path)
                .body(body)
                .send()
                .await
            {
                Ok(s) => Ok(VolumeEntryStat::from_api(s.into_inner())),
                Err(e) => Err(content_error(e, "updating a volume entry", path).await),
            }
        })
        .await
    }

    /// Reads the file at `path` whole.
    ///
    /// # Errors
    ///
    /// As [`list`](Self::list); [`Error::Timeout`] past [`FILE_TIMEOUT`].
    pub async fn read_file(&self, path: &str) -> Result<Bytes> {
        Self::within(self.transfer(), "reading a volume file", async {
            let mut stream = self.open_read(path).await?;
            let mut out = Vec::new();
            while let Some(chunk) = stream.next().await {
                out.extend_from_slice(&chunk?);
            }
            Ok(Bytes::from(out))
        })
        .await
    }

    /// Reads the file at `path` as text (invalid UTF-8 becomes U+FFFD).
    ///
    /// # Errors
    ///
    /// As [`read_file`](Self::read_file).
    pub async fn read_file_text(&self, path: &str) -> Result<String> {
        let bytes = self.read_file(path).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The file at `path` as a stream of chunks, never held whole; no overall time limit.
    ///
    /// # Errors
    ///
    /// As [`list`](Self::list), for the answer; the stream yields transport failures.
    pub async fn read_file_stream(&self, path: &str) -> Result<ReadStream> {
        Self::within(self.unary(), "reading a volume file", self.open_read(path)).await
    }

    async fn open_read(&self, path: &str) -> Result<ReadStream> {
        let client = self.client()?;
        match client
            .read_volume_file()
            .volume_id(self.volume_id())
            .path(path)
            .send()
            .await
        {
            Ok(body) => Ok(ReadStream::new(body.into_inner().into_inner().map(|c| {
                c.map_err(|e| error::from_reqwest("reading a volume file", e))
            }))),
            Err(e) => Err(content_error(e, "reading a volume file", path).await),
        }
    }

    /// Writes `data` as the whole file at `path` (made, or overwritten).
    ///
    /// # Errors
    ///
    /// As [`list`](Self::list); a missing parent without `force` is [`Error::NotFound`]; a
    /// full volume is [`Error::Volume`] `507: ...`.
    pub async fn write_file(
        &self,
        path: &str,
        data: impl Into<Bytes>,
        opts: VolumeWriteOptions,
    ) -> Result<VolumeEntryStat> {
        let data: Bytes = data.into();
        Self::within(
            self.transfer(),
            "writing a volume file",
            self.write_body(path, reqwest::Body::from(data), opts),
        )
        .await
    }

    /// Writes a stream of chunks as the file at `path`, never holding it whole; no overall
    /// time limit.
    ///
    /// # Errors
    ///
    /// As [`write_file`](Self::write_file); a failing stream aborts the upload.
    pub async fn write_file_stream<S>(
        &self,
        path: &str,
        stream: S,
        opts: VolumeWriteOptions,
    ) -> Result<VolumeEntryStat>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        self.write_body(path, reqwest::Body::wrap_stream(stream), opts)
            .await
    }

    async fn write_body(
        &self,
        path: &str,
        body: reqwest::Body,
        opts: VolumeWriteOptions,
    ) -> Result<VolumeEntryStat> {
        let client = self.client()?;
        let mut req = client
            .write_volume_file()
            .volume_id(self.volume_id())
            .path(path)
            .body(body);
        if let Some(v) = opts.uid {
            req = req.uid(v);
        }
        if let Some(v) = opts.gid {
            req = req.gid(v);
        }
        if let Some(v) = opts.mode {
            req = req.mode(v);
        }
        if let Some(v) = opts.force {
            req = req.force(v);
        }
        match req.send().await {
            Ok(s) => Ok(VolumeEntryStat::from_api(s.into_inner())),
            Err(e) => Err(content_error(e, "writing a volume file", path).await),
        }
    }

    /// Removes the file, link or directory (with its content) at `path`.
    ///
    /// # Errors
    ///
    /// As [`list`](Self::list).
    pub async fn remove(&self, path: &str) -> Result<()> {
        let client = self.client()?;
        Self::within(self.unary(), "removing a volume entry", async {
            match client
                .remove_volume_path()
                .volume_id(self.volume_id())
                .path(path)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => Err(content_error(e, "removing a volume entry", path).await),
            }
        })
        .await
    }
}

/// The error of a failed content call, as the official SDKs map it: 404 is
/// `VolumePathNotFoundException` (`Path {path} not found`, a not-found error), 401 and 429
/// their own classes, anything else `VolumeException` (`<status>: <message>`).
async fn content_error(
    err: e2b_api::volume_content::Error<content::Error>,
    what: &str,
    path: &str,
) -> Error {
    use e2b_api::volume_content::Error as E;
    let (status, message) = match err {
        E::ErrorResponse(response) => {
            let status = response.status().as_u16();
            (status, response.into_inner().message)
        }
        E::UnexpectedResponse(response) => {
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            (status, error::body_message(&body))
        }
        E::CommunicationError(e) | E::ResponseBodyError(e) | E::InvalidUpgrade(e) => {
            return error::from_reqwest(what, e);
        }
        E::InvalidRequest(message) | E::Custom(message) => {
            return Error::invalid_argument(format!("{what}: {message}"));
        }
        E::InvalidResponsePayload(_, e) => {
            return Error::Volume(Context::new(format!(
                "{what}: the volume API answered unexpected JSON: {e}"
            )));
        }
    };
    if status == 404 {
        return Error::NotFound(Context::new(format!("Path {path} not found")).status(404));
    }
    error::from_api_status(status, &message).into_class(Error::Volume)
}
