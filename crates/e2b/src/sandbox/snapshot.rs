//! Forks and snapshots: [`Sandbox::fork`], [`Sandbox::create_snapshot`],
//! [`Sandbox::list_snapshots`] and [`Sandbox::delete_snapshot`], mapped as E2B's Python SDK
//! 2.63 maps them.

use std::time::Duration;

use e2b_api::prelude::*;
use e2b_api::types;
use futures_core::Stream;

use super::Sandbox;
use super::api::{api_error, check_id, send_with_retries, timeout_secs};
use crate::config::ConnectionConfig;
use crate::error::{self, Context, Error, Result};

/// Most forks one call may start (E2B's limit).
pub const MAX_FORK_COUNT: u32 = 100;

/// How many forks [`Sandbox::fork`] starts and how long they live.
///
/// ```
/// use std::time::Duration;
/// use e2b::ForkOptions;
///
/// let options = ForkOptions::new().count(3).timeout(Duration::from_secs(600));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct ForkOptions {
    count: Option<u32>,
    timeout: Option<Duration>,
}

impl ForkOptions {
    /// One fork with the server's default lifetime (15 s on E2B).
    pub fn new() -> Self {
        Self::default()
    }

    /// How many forks, 1 to [`MAX_FORK_COUNT`] (default 1).
    pub fn count(mut self, count: u32) -> Self {
        self.count = Some(count);
        self
    }

    /// Each fork's lifetime (default: the server's, 15 s on E2B).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn to_api(self) -> Result<types::SandboxForkRequest> {
        let mut body = types::SandboxForkRequest::default();
        if let Some(count) = self.count {
            body.count = std::num::NonZeroU32::new(count)
                .filter(|c| c.get() <= MAX_FORK_COUNT)
                .ok_or_else(|| {
                    Error::invalid_argument(format!(
                        "count must be an integer between 1 and {MAX_FORK_COUNT}"
                    ))
                })?;
        }
        if let Some(timeout) = self.timeout {
            body.timeout = timeout_secs(timeout, "the fork timeout")?;
        }
        Ok(body)
    }
}

/// A snapshot: a template made from a sandbox's files ([`Sandbox::create_snapshot`]).
/// Create sandboxes from it with `Sandbox::builder().template(&info.snapshot_id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its template, tag-qualified (`name:default`, or `id:default` when unnamed).
    pub snapshot_id: String,
    /// Its names, tag-qualified (none when unnamed).
    pub names: Vec<String>,
}

impl SnapshotInfo {
    fn from_api(s: types::SnapshotInfo) -> Self {
        Self {
            snapshot_id: s.snapshot_id,
            names: s.names,
        }
    }

    /// Deletes the snapshot; `false` when it no longer existed. See
    /// [`Sandbox::delete_snapshot`].
    ///
    /// # Errors
    ///
    /// As [`Sandbox::delete_snapshot`].
    pub async fn delete(&self, config: &ConnectionConfig) -> Result<bool> {
        Sandbox::delete_snapshot(config, &self.snapshot_id).await
    }
}

/// Filters and page size for [`Sandbox::list_snapshots`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SnapshotQuery {
    sandbox_id: Option<String>,
    name: Option<String>,
    limit: Option<u32>,
    next_token: Option<String>,
}

impl SnapshotQuery {
    /// Every snapshot, in pages of the server's default size.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only snapshots made from this sandbox.
    pub fn sandbox_id(mut self, sandbox_id: impl Into<String>) -> Self {
        self.sandbox_id = Some(sandbox_id.into());
        self
    }

    /// Only the snapshot with this name or id (`name` or `name:tag`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Page size (1 to 100).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Starts from this page token (from [`SnapshotPaginator::next_token`]).
    pub fn next_token(mut self, token: impl Into<String>) -> Self {
        self.next_token = Some(token.into());
        self
    }
}

/// Pages of snapshots, newest first: [`Sandbox::list_snapshots`].
#[derive(Debug)]
pub struct SnapshotPaginator {
    config: ConnectionConfig,
    query: SnapshotQuery,
    next_token: Option<String>,
    has_next: bool,
}

impl SnapshotPaginator {
    /// Whether another page may follow.
    pub fn has_next(&self) -> bool {
        self.has_next
    }

    /// The token of the next page, if any.
    pub fn next_token(&self) -> Option<&str> {
        self.next_token.as_deref()
    }

    /// The next page; empty once there are no more.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a limit outside 1..=100; others as mapped from the API.
    pub async fn next_items(&mut self) -> Result<Vec<SnapshotInfo>> {
        if !self.has_next {
            return Ok(Vec::new());
        }
        let limit = match self.query.limit {
            Some(limit @ 1..=100) => Some(limit),
            Some(limit) => {
                return Err(Error::invalid_argument(format!(
                    "the list limit must be between 1 and 100, got {limit}"
                )));
            }
            None => None,
        };
        let client = self.config.api_client()?;
        let send = || {
            let mut call = client.get_snapshots();
            if let Some(limit) = limit {
                call = call.limit(limit);
            }
            if let Some(id) = &self.query.sandbox_id {
                call = call.sandbox_id(id.as_str());
            }
            if let Some(name) = &self.query.name {
                call = call.name(name.as_str());
            }
            if let Some(token) = &self.next_token {
                call = call.next_token(token.as_str());
            }
            call.send()
        };
        let response = match send_with_retries(self.config.request_timeout(), send).await {
            Ok(r) => r,
            Err(e) => return Err(api_error(e, "listing snapshots", None).await),
        };
        let token = super::list::next_page_token(response.headers());
        self.has_next = token.is_some();
        self.next_token = token;
        Ok(response
            .into_inner()
            .into_iter()
            .map(SnapshotInfo::from_api)
            .collect())
    }

    /// Every snapshot of every remaining page, fetching pages as the stream is read.
    pub fn into_stream(self) -> impl Stream<Item = Result<SnapshotInfo>> + Send {
        super::list::stream_pages(self)
    }
}

impl super::list::Pages for SnapshotPaginator {
    type Item = SnapshotInfo;
    fn more(&self) -> bool {
        self.has_next
    }
    fn next_page(&mut self) -> impl Future<Output = Result<Vec<SnapshotInfo>>> + Send {
        self.next_items()
    }
}

impl Sandbox {
    /// Forks the sandbox: its current state is captured once and `options.count` new
    /// sandboxes start from it. The source keeps its id, end time and processes. Each fork
    /// succeeds or fails on its own, so the result holds one `Result` per requested fork.
    ///
    /// On e2b-local a fork is the source's files, not its processes or memory: each fork
    /// boots fresh on a copy of the source's filesystem.
    ///
    /// ```no_run
    /// # async fn demo(sandbox: e2b::Sandbox) -> e2b::Result<()> {
    /// use e2b::{ForkOptions, RunOptions};
    ///
    /// sandbox.files().write("/home/user/state.txt", "prepared").await?;
    /// for fork in sandbox.fork(ForkOptions::new().count(2)).await? {
    ///     let fork = fork?;
    ///     let out = fork.commands().run("cat /home/user/state.txt", RunOptions::new()).await?;
    ///     assert_eq!(out.stdout, "prepared");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a count outside 1..=100 or a timeout that does not fit
    /// (checked before any request); [`Error::NotFound`] when the sandbox is gone; others as
    /// mapped from the API. A fork that failed is [`Error::NotFound`] for a 404 and as mapped
    /// from its status otherwise.
    pub async fn fork(&self, options: ForkOptions) -> Result<Vec<Result<Sandbox>>> {
        Self::fork_by_id(&self.inner.config, &self.inner.sandbox_id, options).await
    }

    /// [`fork`](Self::fork) by id.
    ///
    /// # Errors
    ///
    /// As [`fork`](Self::fork).
    pub async fn fork_by_id(
        config: &ConnectionConfig,
        sandbox_id: &str,
        options: ForkOptions,
    ) -> Result<Vec<Result<Sandbox>>> {
        check_id(sandbox_id)?;
        let body = options.to_api()?;
        let client = config.api_client()?;
        let send = || {
            client
                .post_sandbox_fork()
                .sandbox_id(sandbox_id)
                .body(body.clone())
                .send()
        };
        let results = match send_with_retries(config.request_timeout(), send).await {
            Ok(r) => r.into_inner(),
            Err(e) => {
                let not_found = format!("Sandbox {sandbox_id} not found");
                return Err(api_error(e, "forking a sandbox", Some(not_found)).await);
            }
        };
        Ok(results
            .into_iter()
            .map(|r| match (r.sandbox, r.error) {
                (Some(sandbox), None) => Sandbox::from_api(config.clone(), sandbox),
                (_, Some(e)) if e.code == 404 => Err(Error::NotFound(
                    Context::new(format!("{}: {}", e.code, e.message)).status(404),
                )),
                (_, Some(e)) => Err(error::from_api_status(
                    u16::try_from(e.code).unwrap_or(500),
                    &e.message,
                )),
                (None, None) => Err(Error::sandbox("Failed to start forked sandbox")),
            })
            .collect())
    }

    /// Makes a snapshot of the sandbox: a template of its current files that sandboxes can
    /// be created from, and that outlives the sandbox. A `name` already in use becomes a new
    /// build of that template; without one the snapshot is named by its id.
    ///
    /// ```no_run
    /// # async fn demo(sandbox: e2b::Sandbox) -> e2b::Result<()> {
    /// use e2b::Sandbox;
    ///
    /// let snapshot = sandbox.create_snapshot(Some("prepared")).await?;
    /// let copy = Sandbox::builder().template(&snapshot.snapshot_id).create().await?;
    /// # let _ = copy;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the sandbox is gone; a bad name is [`Error::Sandbox`] with
    /// `400: <the server's message>`, as in the Python SDK; others as mapped from the API.
    pub async fn create_snapshot(&self, name: Option<&str>) -> Result<SnapshotInfo> {
        Self::create_snapshot_by_id(&self.inner.config, &self.inner.sandbox_id, name).await
    }

    /// [`create_snapshot`](Self::create_snapshot) by id.
    ///
    /// # Errors
    ///
    /// As [`create_snapshot`](Self::create_snapshot).
    pub async fn create_snapshot_by_id(
        config: &ConnectionConfig,
        sandbox_id: &str,
        name: Option<&str>,
    ) -> Result<SnapshotInfo> {
        check_id(sandbox_id)?;
        let body = types::SandboxSnapshotRequest {
            name: name.filter(|n| !n.is_empty()).map(str::to_owned),
        };
        let client = config.api_client()?;
        let send = || {
            client
                .post_sandbox_snapshots()
                .sandbox_id(sandbox_id)
                .body(body.clone())
                .send()
        };
        match send_with_retries(config.request_timeout(), send).await {
            Ok(r) => Ok(SnapshotInfo::from_api(r.into_inner())),
            Err(e) => {
                let not_found = format!("Sandbox {sandbox_id} not found");
                Err(api_error(e, "snapshotting a sandbox", Some(not_found)).await)
            }
        }
    }

    /// Lists snapshots (`GET /snapshots`), newest first, page by page.
    ///
    /// ```no_run
    /// # async fn demo(sandbox: e2b::Sandbox) -> e2b::Result<()> {
    /// use futures_util::TryStreamExt as _;
    /// use e2b::{Sandbox, SnapshotQuery};
    ///
    /// let query = SnapshotQuery::new().sandbox_id(sandbox.sandbox_id());
    /// let config = sandbox.connection_config();
    /// let mine: Vec<_> = Sandbox::list_snapshots(config, query)?.into_stream().try_collect().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Creating the paginator fails only without an API key; its calls fail as mapped from
    /// the API.
    pub fn list_snapshots(
        config: &ConnectionConfig,
        query: SnapshotQuery,
    ) -> Result<SnapshotPaginator> {
        config.api_client()?;
        Ok(SnapshotPaginator {
            config: config.clone(),
            next_token: query.next_token.clone(),
            query,
            has_next: true,
        })
    }

    /// Deletes a snapshot by its id (`DELETE /templates/{id}`); `false` when it did not exist.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty id; others as mapped from the API (a snapshot
    /// other templates are built on is `409`).
    pub async fn delete_snapshot(config: &ConnectionConfig, snapshot_id: &str) -> Result<bool> {
        if snapshot_id.trim().is_empty() {
            return Err(Error::invalid_argument("the snapshot id must not be empty"));
        }
        let client = config.api_client()?;
        let send = || client.delete_template().template_id(snapshot_id).send();
        match send_with_retries(config.request_timeout(), send).await {
            Ok(_) => Ok(true),
            Err(e) if e.status().map(|s| s.as_u16()) == Some(404) => Ok(false),
            Err(e) => Err(api_error(e, "deleting a snapshot", None).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_options_check_the_count_and_timeout() {
        let body = ForkOptions::new().to_api().unwrap();
        assert_eq!((body.count.get(), body.timeout), (1, 15));
        let body = ForkOptions::new()
            .count(3)
            .timeout(Duration::from_millis(1500))
            .to_api()
            .unwrap();
        assert_eq!((body.count.get(), body.timeout), (3, 2));
        for count in [0, 101] {
            let e = ForkOptions::new().count(count).to_api().unwrap_err();
            assert_eq!(e.to_string(), "count must be an integer between 1 and 100");
        }
        let e = ForkOptions::new()
            .timeout(Duration::ZERO)
            .to_api()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the fork timeout must be at least 1 second, got 0ns"
        );
    }
}
