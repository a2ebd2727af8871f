//! Built templates and their builds (E2B's build API), stored as JSON records.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};

use super::{Result, StateError, Store};

/// The tag a build gets when none is named, and that `name` alone means.
pub const DEFAULT_TAG: &str = "default";

/// A template made with the build API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuiltTemplate {
    /// Template id (20 characters of `[a-z0-9]`).
    pub id: String,
    /// Its name (unique per server), also its only alias.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When a build of it last became ready, or it was changed.
    pub updated_at: DateTime<Utc>,
    /// `public`, as set with `PATCH` (kept and reported; one team per server).
    pub public: bool,
    /// CPU count its sandboxes get (`None`: the server's).
    pub cpu_count: Option<u32>,
    /// Memory its sandboxes get in MiB (`None`: the server's).
    pub memory_mb: Option<u64>,
    /// Tag → build id.
    pub tags: BTreeMap<String, String>,
    /// Sandboxes created from it.
    pub spawn_count: u64,
    /// When the last one was created.
    pub last_spawned_at: Option<DateTime<Utc>>,
}

/// Where a build is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildStatus {
    /// Created, not started.
    Waiting,
    /// Running its steps.
    Building,
    /// Done: its image can be used.
    Ready,
    /// Failed (see its reason).
    Error,
}

/// One log line of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildLogEntry {
    /// When it was written.
    pub timestamp: DateTime<Utc>,
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The line.
    pub message: String,
    /// The step it belongs to (`base`, `1`.., `finalize`).
    pub step: Option<String>,
}

/// Why a build failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildFailure {
    /// What happened.
    pub message: String,
    /// The failing step (`base`, `1`.., `finalize`), when one failed.
    pub step: Option<String>,
}

/// What a ready build is: a base template with layers over it, and the settings its
/// sandboxes start with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildImage {
    /// The built-in template at the bottom (`base`, or one added with `template add`).
    pub base: String,
    /// Layer keys, bottom first.
    pub layers: Vec<String>,
    /// The environment set with ENV steps, in order.
    pub env: Vec<(String, String)>,
    /// The user sandboxes' commands run as by default.
    pub user: String,
    /// Their default working directory.
    pub workdir: String,
    /// Started in the background when a sandbox starts.
    pub start_cmd: Option<String>,
    /// Polled until it succeeds before a create returns.
    pub ready_cmd: Option<String>,
}

/// One build of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildRecord {
    /// Build id (a UUID, as E2B's).
    pub id: String,
    /// The template it builds.
    pub template_id: String,
    /// Where it is.
    pub status: BuildStatus,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Tags it gets when it becomes ready.
    pub tags: Vec<String>,
    /// The build of another template it stands on (`fromTemplate` of a built template).
    #[serde(default)]
    pub base_build: Option<String>,
    /// The sandbox it was captured from, when it is a snapshot (`POST
    /// /sandboxes/{id}/snapshots`) rather than a build of steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sandbox: Option<String>,
    /// Why it failed.
    pub reason: Option<BuildFailure>,
    /// What it made, once ready.
    pub image: Option<BuildImage>,
    /// Its log, stored when it ends (while it runs, the builder holds it).
    pub logs: Vec<BuildLogEntry>,
}

fn record_err(what: &str, e: serde_json::Error) -> StateError {
    StateError::Record(what.to_owned(), e)
}

impl Store {
    pub(super) fn create_template_tables(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS built_templates (
                 id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS template_builds (
                 id TEXT PRIMARY KEY, template_id TEXT NOT NULL, status TEXT NOT NULL,
                 record TEXT NOT NULL);",
        )
    }

    /// Inserts or replaces a built template.
    ///
    /// # Errors
    ///
    /// [`StateError::Record`] or [`StateError::Query`] (also when another template has the
    /// name).
    pub fn put_built_template(&self, t: &BuiltTemplate) -> Result<()> {
        let json = serde_json::to_string(t).map_err(|e| record_err(&t.id, e))?;
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO built_templates (id, name, record) VALUES (?1, ?2, ?3)",
                params![t.id, t.name, json],
            )
            .map_err(|e| StateError::Query("storing a template", e))?;
        Ok(())
    }

    /// Every built template, by name.
    ///
    /// # Errors
    ///
    /// [`StateError::Query`] or [`StateError::Record`].
    pub fn built_templates(&self) -> Result<Vec<BuiltTemplate>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, record FROM built_templates ORDER BY name")
            .map_err(|e| StateError::Query("listing templates", e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| StateError::Query("listing templates", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row.map_err(|e| StateError::Query("listing templates", e))?;
            out.push(serde_json::from_str(&json).map_err(|e| record_err(&id, e))?);
        }
        Ok(out)
    }

    /// Removes a built template and its builds; `false` when there was none.
    ///
    /// # Errors
    ///
    /// [`StateError::Query`].
    pub fn remove_built_template(&self, id: &str) -> Result<bool> {
        let conn = self.conn();
        conn.execute("DELETE FROM template_builds WHERE template_id = ?1", [id])
            .map_err(|e| StateError::Query("deleting a template's builds", e))?;
        let n = conn
            .execute("DELETE FROM built_templates WHERE id = ?1", [id])
            .map_err(|e| StateError::Query("deleting a template", e))?;
        Ok(n > 0)
    }

    /// Inserts or replaces a build.
    ///
    /// # Errors
    ///
    /// [`StateError::Record`] or [`StateError::Query`].
    pub fn put_build(&self, b: &BuildRecord) -> Result<()> {
        let json = serde_json::to_string(b).map_err(|e| record_err(&b.id, e))?;
        let status = serde_json::to_value(b.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO template_builds (id, template_id, status, record)
                 VALUES (?1, ?2, ?3, ?4)",
                params![b.id, b.template_id, status, json],
            )
            .map_err(|e| StateError::Query("storing a build", e))?;
        Ok(())
    }

    /// A build by id.
    ///
    /// # Errors
    ///
    /// [`StateError::Query`] or [`StateError::Record`].
    pub fn build(&self, id: &str) -> Result<Option<BuildRecord>> {
        let json: Option<String> = self
            .conn()
            .query_row(
                "SELECT record FROM template_builds WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| StateError::Query("reading a build", e))?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| record_err(id, e)))
            .transpose()
    }

    /// Every build (of every template), oldest first.
    ///
    /// # Errors
    ///
    /// [`StateError::Query`] or [`StateError::Record`].
    pub fn builds(&self) -> Result<Vec<BuildRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, record FROM template_builds ORDER BY rowid")
            .map_err(|e| StateError::Query("listing builds", e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| StateError::Query("listing builds", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row.map_err(|e| StateError::Query("listing builds", e))?;
            out.push(serde_json::from_str(&json).map_err(|e| record_err(&id, e))?);
        }
        Ok(out)
    }

    /// Marks builds an earlier run left waiting or building as failed (their build
    /// sandboxes are reclaimed with every other sandbox of that run).
    ///
    /// # Errors
    ///
    /// [`StateError::Query`] or [`StateError::Record`].
    pub fn fail_unfinished_builds(&self) -> Result<()> {
        for mut b in self.builds()? {
            if matches!(b.status, BuildStatus::Waiting | BuildStatus::Building) {
                b.status = BuildStatus::Error;
                b.finished_at = Some(Utc::now());
                b.reason = Some(BuildFailure {
                    message: "the server restarted during the build".into(),
                    step: None,
                });
                self.put_build(&b)?;
            }
        }
        Ok(())
    }
}
