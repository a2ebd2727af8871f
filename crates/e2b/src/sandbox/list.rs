//! Listing sandboxes: [`SandboxQuery`] and the pages of [`SandboxPaginator`].

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use e2b_api::prelude::*;
use futures_core::Stream;

use super::api::{api_error, send_with_retries};
use super::{SandboxInfo, SandboxState};
use crate::config::ConnectionConfig;
use crate::error::{Error, Result};
use crate::percent;

/// Filters and page size for [`Sandbox::list`](super::Sandbox::list).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct SandboxQuery {
    metadata: BTreeMap<String, String>,
    states: Vec<SandboxState>,
    template: Option<String>,
    started_after: Option<DateTime<Utc>>,
    limit: Option<u32>,
    next_token: Option<String>,
}

impl SandboxQuery {
    /// All sandboxes, running and paused, in pages of the server's default size.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only sandboxes with this metadata entry (entries are ANDed).
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Only sandboxes in `state` (several calls allow several states).
    pub fn state(mut self, state: SandboxState) -> Self {
        if !self.states.contains(&state) {
            self.states.push(state);
        }
        self
    }

    /// Only sandboxes of this template.
    pub fn template(mut self, template: impl Into<String>) -> Self {
        self.template = Some(template.into());
        self
    }

    /// Only sandboxes started after `time`.
    pub fn started_after(mut self, time: DateTime<Utc>) -> Self {
        self.started_after = Some(time);
        self
    }

    /// Page size (1 to 100).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Starts from this page token (from [`SandboxPaginator::next_token`]).
    pub fn next_token(mut self, token: impl Into<String>) -> Self {
        self.next_token = Some(token.into());
        self
    }

    /// `k=v&k2=v2`, each part quoted twice, as the Python SDK sends it
    /// (`docs/control-plane.md`).
    fn metadata_param(&self) -> Option<String> {
        if self.metadata.is_empty() {
            return None;
        }
        let twice = |s: &str| {
            let once = quote_keep_slash(s);
            once.replace('%', "%25").replace('/', "%2F")
        };
        Some(
            self.metadata
                .iter()
                .map(|(k, v)| format!("{}={}", twice(k), twice(v)))
                .collect::<Vec<_>>()
                .join("&"),
        )
    }
}

fn quote_keep_slash(value: &str) -> String {
    percent::quote(value).replace("%2F", "/")
}

/// Pages of sandboxes: [`Sandbox::list`](super::Sandbox::list).
#[derive(Debug)]
pub struct SandboxPaginator {
    config: ConnectionConfig,
    query: SandboxQuery,
    next_token: Option<String>,
    has_next: bool,
}

impl SandboxPaginator {
    /// Pages of `query`; fails only when `config` cannot make an API client (no API key).
    pub(super) fn new(config: &ConnectionConfig, query: SandboxQuery) -> Result<Self> {
        config.api_client()?;
        Ok(Self {
            config: config.clone(),
            next_token: query.next_token.clone(),
            query,
            has_next: true,
        })
    }

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
    pub async fn next_items(&mut self) -> Result<Vec<SandboxInfo>> {
        if !self.has_next {
            return Ok(Vec::new());
        }
        if let Some(limit) = self.query.limit
            && !(1..=100).contains(&limit)
        {
            return Err(Error::invalid_argument(format!(
                "the list limit must be between 1 and 100, got {limit}"
            )));
        }
        let metadata = self.query.metadata_param();
        let states = self
            .query
            .states
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let client = self.config.api_client()?;
        let send = || {
            let mut call = client.get_sandboxes_v2();
            if let Some(limit) = self.query.limit {
                call = call.limit(limit);
            }
            if let Some(metadata) = &metadata {
                call = call.metadata(metadata.as_str());
            }
            if !states.is_empty() {
                call = call.state(states.as_str());
            }
            if let Some(template) = &self.query.template {
                call = call.template(template.as_str());
            }
            if let Some(after) = self.query.started_after {
                call = call.started_after(after);
            }
            if let Some(token) = &self.next_token {
                call = call.next_token(token.as_str());
            }
            call.send()
        };
        let response = match send_with_retries(self.config.request_timeout(), send).await {
            Ok(r) => r,
            Err(e) => return Err(api_error(e, "listing sandboxes", None).await),
        };
        let token = next_page_token(response.headers());
        self.has_next = token.is_some();
        self.next_token = token;
        Ok(response
            .into_inner()
            .into_iter()
            .map(|s| SandboxInfo::from_listed(s, &self.config))
            .collect())
    }

    /// Every sandbox of every remaining page, fetching pages as the stream is read.
    pub fn into_stream(self) -> impl Stream<Item = Result<SandboxInfo>> + Send {
        stream_pages(self)
    }
}

/// The next page's token from a list response's `x-next-token` header (`None`: last page).
pub(crate) fn next_page_token(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get("x-next-token")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// A paginator of a list endpoint ([`SandboxPaginator`], `SnapshotPaginator`), for
/// [`stream_pages`].
pub(crate) trait Pages: Send + Sized {
    /// What a page holds.
    type Item: Send;
    /// Whether another page can be fetched.
    fn more(&self) -> bool;
    /// The next page.
    fn next_page(&mut self) -> impl Future<Output = Result<Vec<Self::Item>>> + Send;
}

impl Pages for SandboxPaginator {
    type Item = SandboxInfo;
    fn more(&self) -> bool {
        self.has_next
    }
    fn next_page(&mut self) -> impl Future<Output = Result<Vec<SandboxInfo>>> + Send {
        self.next_items()
    }
}

/// Every item of every remaining page, fetching pages as the stream is read; a failed page
/// is the stream's last item.
pub(crate) fn stream_pages<P: Pages>(pages: P) -> impl Stream<Item = Result<P::Item>> + Send {
    futures_util::stream::unfold(
        (pages, VecDeque::new(), false),
        |(mut pages, mut buffer, failed)| async move {
            if failed {
                return None;
            }
            loop {
                if let Some(item) = buffer.pop_front() {
                    return Some((Ok(item), (pages, buffer, false)));
                }
                if !pages.more() {
                    return None;
                }
                match pages.next_page().await {
                    Ok(items) => buffer.extend(items),
                    Err(e) => return Some((Err(e), (pages, buffer, true))),
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_encoded_like_the_python_sdk() {
        let q = SandboxQuery::new()
            .metadata("a b", "c/d")
            .metadata("k", "v");
        assert_eq!(q.metadata_param().unwrap(), "a%2520b=c%2Fd&k=v");
    }
}
