//! The blocking twin of forks and snapshots ([`crate::Sandbox::fork`] and the snapshot
//! calls).

use std::collections::VecDeque;

use super::{Runtime, Sandbox};
use crate::config::ConnectionConfig;
use crate::error::Result;
use crate::sandbox::{ForkOptions, SnapshotInfo, SnapshotQuery};

impl Sandbox {
    /// Forks the sandbox: one result per requested fork. See [`crate::Sandbox::fork`].
    ///
    /// ```no_run
    /// # fn demo(sandbox: e2b::blocking::Sandbox) -> e2b::Result<()> {
    /// use e2b::{ForkOptions, RunOptions};
    ///
    /// for fork in sandbox.fork(ForkOptions::new().count(2))? {
    ///     let out = fork?.commands().run("ls /home/user", RunOptions::new())?;
    ///     println!("{}", out.stdout);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::fork`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn fork(&self, options: ForkOptions) -> Result<Vec<Result<Sandbox>>> {
        Self::fork_by_id(
            self.inner.connection_config(),
            self.inner.sandbox_id(),
            options,
        )
    }

    /// [`fork`](Self::fork) by id.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::fork_by_id`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn fork_by_id(
        config: &ConnectionConfig,
        sandbox_id: &str,
        options: ForkOptions,
    ) -> Result<Vec<Result<Sandbox>>> {
        let (config, id) = (config.clone(), sandbox_id.to_owned());
        let rt = Runtime::shared()?;
        let forks =
            rt.run(async move { crate::Sandbox::fork_by_id(&config, &id, options).await })?;
        Ok(forks
            .into_iter()
            .map(|f| {
                f.map(|inner| Sandbox {
                    inner,
                    rt: rt.clone(),
                })
            })
            .collect())
    }

    /// Makes a snapshot of the sandbox. See [`crate::Sandbox::create_snapshot`].
    ///
    /// ```no_run
    /// # fn demo(sandbox: e2b::blocking::Sandbox) -> e2b::Result<()> {
    /// let snapshot = sandbox.create_snapshot(Some("prepared"))?;
    /// let copy = e2b::blocking::Sandbox::builder().template(&snapshot.snapshot_id).create()?;
    /// # let _ = copy;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::create_snapshot`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn create_snapshot(&self, name: Option<&str>) -> Result<SnapshotInfo> {
        let (inner, name) = (self.inner.clone(), name.map(str::to_owned));
        self.rt
            .run(async move { inner.create_snapshot(name.as_deref()).await })
    }

    /// [`create_snapshot`](Self::create_snapshot) by id.
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::create_snapshot_by_id`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn create_snapshot_by_id(
        config: &ConnectionConfig,
        sandbox_id: &str,
        name: Option<&str>,
    ) -> Result<SnapshotInfo> {
        let (config, id, name) = (
            config.clone(),
            sandbox_id.to_owned(),
            name.map(str::to_owned),
        );
        Runtime::shared()?.run(async move {
            crate::Sandbox::create_snapshot_by_id(&config, &id, name.as_deref()).await
        })
    }

    /// Lists snapshots as an iterator that fetches pages as it goes. See
    /// [`crate::Sandbox::list_snapshots`].
    ///
    /// ```no_run
    /// # fn main() -> e2b::Result<()> {
    /// use e2b::{ConnectionConfig, SnapshotQuery};
    ///
    /// let config = ConnectionConfig::from_env()?;
    /// for snapshot in e2b::blocking::Sandbox::list_snapshots(&config, SnapshotQuery::new())? {
    ///     println!("{}", snapshot?.snapshot_id);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::list_snapshots`].
    pub fn list_snapshots(
        config: &ConnectionConfig,
        query: SnapshotQuery,
    ) -> Result<SnapshotPaginator> {
        Ok(SnapshotPaginator {
            inner: Some(crate::Sandbox::list_snapshots(config, query)?),
            buffer: VecDeque::new(),
            rt: Runtime::shared()?,
        })
    }

    /// Deletes a snapshot by id; `false` when it did not exist. See
    /// [`crate::Sandbox::delete_snapshot`].
    ///
    /// # Errors
    ///
    /// As [`crate::Sandbox::delete_snapshot`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn delete_snapshot(config: &ConnectionConfig, snapshot_id: &str) -> Result<bool> {
        let (config, id) = (config.clone(), snapshot_id.to_owned());
        Runtime::shared()?.run(async move { crate::Sandbox::delete_snapshot(&config, &id).await })
    }
}

/// Pages of snapshots as an iterator: [`Sandbox::list_snapshots`]. Wraps
/// [`crate::SnapshotPaginator`].
#[derive(Debug)]
pub struct SnapshotPaginator {
    inner: Option<crate::SnapshotPaginator>,
    buffer: VecDeque<SnapshotInfo>,
    rt: Runtime,
}

impl SnapshotPaginator {
    /// Whether another page may follow.
    pub fn has_next(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(crate::SnapshotPaginator::has_next)
    }

    /// The token of the next page, if any.
    pub fn next_token(&self) -> Option<&str> {
        self.inner
            .as_ref()
            .and_then(crate::SnapshotPaginator::next_token)
    }

    /// The next page.
    ///
    /// # Errors
    ///
    /// As [`crate::SnapshotPaginator::next_items`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime.
    pub fn next_items(&mut self) -> Result<Vec<SnapshotInfo>> {
        super::next_page(&mut self.inner, &self.rt)
    }
}

impl Iterator for SnapshotPaginator {
    type Item = Result<SnapshotInfo>;

    fn next(&mut self) -> Option<Self::Item> {
        super::next_listed(&mut self.inner, &mut self.buffer, &self.rt)
    }
}
