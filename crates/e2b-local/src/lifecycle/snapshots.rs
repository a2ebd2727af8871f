//! Snapshots: a live sandbox's files made into a template. A snapshot is a ready build
//! whose image is the source's template's (its layers, environment, user, start and ready
//! commands) with the sandbox's captured upper directories as its top layer
//! ([`Manager::capture_files`]), so it is created from by id or `name:tag`, listed by
//! `GET /snapshots`, deleted as a template, and kept across restarts like any build. A name
//! already in use makes a new build of that template (E2B's rule); without a name the
//! template is named by its id.

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Utc};

use super::builds::{check_name, check_tag, new_build, new_template};
use super::{LifecycleError, Manager, lock};
use crate::state::{BuildStatus, BuiltTemplate, DEFAULT_TAG};

/// A snapshot as listed: its id and names, tag-qualified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotEntry {
    /// `name:tag` (or `id:tag` for an unnamed one): what `create` takes.
    pub(crate) snapshot_id: String,
    /// Every `name:tag` of a named snapshot (none for an unnamed one).
    pub(crate) names: Vec<String>,
}

/// `GET /snapshots`'s filters and page.
#[derive(Debug, Clone, Default)]
pub(crate) struct SnapshotQuery {
    /// Only snapshots of this sandbox.
    pub(crate) sandbox_id: Option<String>,
    /// Only the snapshot with this name or id (`name` or `name:tag`).
    pub(crate) name: Option<String>,
    /// Page size (1 to 100).
    pub(crate) limit: usize,
    /// Where the previous page ended ([`SnapshotList::next`]).
    pub(crate) next_token: Option<String>,
}

/// One page of snapshots, newest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct SnapshotList {
    /// The page.
    pub(crate) items: Vec<SnapshotEntry>,
    /// The next page's token, when there is one.
    pub(crate) next: Option<String>,
}

/// A name's template part and tag (`default` when it has none).
fn split_name(name: &str) -> (&str, &str) {
    name.split_once(':').unwrap_or((name, DEFAULT_TAG))
}

impl Manager {
    /// `POST /sandboxes/{id}/snapshots`: captures sandbox `id`'s files (frozen meanwhile,
    /// see [`capture_files`](Self::capture_files)) as a new ready build of the template `name` (`name`
    /// or `name:tag`; made when new, a new build of it when it exists), or of a new template
    /// named by its id when `name` is `None`. The source keeps running (or paused).
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a bad name or tag (checked before anything is captured);
    /// `SandboxNotFound`; `TemplateNotFound`/`InvalidBuild` when the source's template is
    /// gone; [`capture_files`](Self::capture_files)'s; `Store`.
    pub(crate) async fn snapshot(
        self: &Arc<Self>,
        id: &str,
        name: Option<&str>,
    ) -> Result<SnapshotEntry, LifecycleError> {
        let named = match name {
            Some(n) => {
                let (template, tag) = split_name(n);
                let invalid = |e: LifecycleError| LifecycleError::InvalidArgument(e.to_string());
                check_name(template).map_err(invalid)?;
                check_tag(tag).map_err(invalid)?;
                Some((template, tag))
            }
            None => None,
        };
        let live = self.live(id)?;
        let src = live.record();
        let template = self.template_with_layers(&src.template, &src.layers)?;
        // What the snapshot stands on: the source's build (with its start and ready
        // commands: the snapshot's sandboxes boot fresh, so they run again), or a built-in
        // template.
        let (mut image, base_build) = match self.tagged_build(&src.template)? {
            Some((_, b, image)) => (image, Some(b.id)),
            None => (self.base_of(&src.template)?.image, None),
        };
        let pin = format!("snapshot-{id}-{}", crate::state::random_hex(4));
        let capture = self.capture_files(&live, &template, &pin).await?;
        image.layers.extend(src.layers.iter().cloned());
        image.layers.push(capture.layer);
        let stored = (|| {
            let _naming = lock(&self.builds.naming);
            let (mut t, tag) = match named {
                Some((n, tag)) => (
                    self.built_template(n)?.unwrap_or_else(|| new_template(n)),
                    tag,
                ),
                None => {
                    let mut t = new_template("");
                    t.name = t.id.clone();
                    (t, DEFAULT_TAG)
                }
            };
            let mut b = new_build(&t.id, vec![tag.to_owned()]);
            b.status = BuildStatus::Ready;
            b.finished_at = Some(Utc::now());
            b.base_build = base_build;
            b.source_sandbox = Some(id.to_owned());
            b.image = Some(image);
            t.tags.insert(tag.to_owned(), b.id.clone());
            t.updated_at = Utc::now();
            // The template first: a build without its template would be collected as
            // unreferenced by nothing, a template without a build is only a name.
            self.store.put_built_template(&t)?;
            self.store.put_build(&b)?;
            Ok::<_, LifecycleError>(entry(&t, &[b.id], tag))
        })();
        lock(&self.builds.pinned).remove(&pin);
        if stored.is_err() {
            self.release_captures();
        }
        let e = stored?;
        tracing::info!(sandbox = %id, snapshot = %e.snapshot_id, frozen_ms = capture.frozen.as_secs_f64() * 1e3, "snapshot made");
        Ok(e)
    }

    /// `GET /snapshots`: templates with a ready snapshot build, newest snapshot first,
    /// filtered and paged.
    ///
    /// # Errors
    ///
    /// `InvalidArgument` for a bad `nextToken`; `Store`.
    pub(crate) fn snapshots(&self, q: &SnapshotQuery) -> Result<SnapshotList, LifecycleError> {
        let builds = self.store.builds()?;
        let cursor = q.next_token.as_deref().map(decode_cursor).transpose()?;
        let mut found: Vec<(DateTime<Utc>, BuiltTemplate, Vec<String>)> = Vec::new();
        for t in self.store.built_templates()? {
            let snaps: Vec<_> = builds
                .iter()
                .filter(|b| b.template_id == t.id && b.status == BuildStatus::Ready)
                .filter(|b| b.source_sandbox.is_some())
                .collect();
            let Some(newest) = snaps.iter().map(|b| b.created_at).max() else {
                continue;
            };
            if let Some(sid) = &q.sandbox_id
                && !snaps.iter().any(|b| b.source_sandbox.as_ref() == Some(sid))
            {
                continue;
            }
            if let Some(n) = &q.name {
                let (name, tag) = split_name(n);
                if (name != t.name && name != t.id)
                    || (n.contains(':') && !t.tags.contains_key(tag))
                {
                    continue;
                }
            }
            let ids = snaps.iter().map(|b| b.id.clone()).collect();
            found.push((newest, t, ids));
        }
        let key = |at: &DateTime<Utc>, t: &BuiltTemplate| {
            (at.timestamp_nanos_opt().unwrap_or(0), t.id.clone())
        };
        found.sort_by_key(|(at, t, _)| std::cmp::Reverse(key(at, t)));
        if let Some(c) = &cursor {
            found.retain(|(at, t, _)| key(at, t) < *c);
        }
        let more = found.len() > q.limit;
        found.truncate(q.limit);
        let next = more
            .then(|| found.last().map(|(at, t, _)| encode_cursor(key(at, t))))
            .flatten();
        let items = found
            .iter()
            .map(|(_, t, ids)| {
                let tag = if t.tags.contains_key(DEFAULT_TAG) {
                    DEFAULT_TAG
                } else {
                    t.tags
                        .iter()
                        .find(|(_, b)| ids.contains(b))
                        .map_or(DEFAULT_TAG, |(tag, _)| tag.as_str())
                };
                entry(t, ids, tag)
            })
            .collect();
        Ok(SnapshotList { items, next })
    }
}

/// A template's snapshot entry: `tag` qualifies its id; its names are the tags that point
/// at one of its snapshot builds `ids` (none when it is unnamed, its name being its id).
fn entry(t: &BuiltTemplate, ids: &[String], tag: &str) -> SnapshotEntry {
    let names = if t.name == t.id {
        Vec::new()
    } else {
        t.tags
            .iter()
            .filter(|(_, b)| ids.contains(b))
            .map(|(tag, _)| format!("{}:{tag}", t.name))
            .collect()
    };
    SnapshotEntry {
        snapshot_id: format!("{}:{tag}", t.name),
        names,
    }
}

fn encode_cursor((ns, id): (i64, String)) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{ns}__{id}"))
}

fn decode_cursor(token: &str) -> Result<(i64, String), LifecycleError> {
    let bad = || LifecycleError::InvalidArgument(format!("invalid nextToken \"{token}\""));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (ns, id) = raw.split_once("__").ok_or_else(bad)?;
    Ok((ns.parse().map_err(|_| bad())?, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_name_the_field() {
        let c = (1_700_000_000_123_456_789, "abc".to_owned());
        assert_eq!(decode_cursor(&encode_cursor(c.clone())).unwrap(), c);
        assert_eq!(
            decode_cursor("!!").unwrap_err().to_string(),
            "invalid nextToken \"!!\""
        );
    }

    #[test]
    fn names_split_into_template_and_tag() {
        assert_eq!(split_name("snap"), ("snap", "default"));
        assert_eq!(split_name("snap:v1"), ("snap", "v1"));
    }
}
