//! Durable state of the control plane: an embedded SQLite database (`state.db` in the data
//! directory) holding the API key, the server secret, registered templates and every sandbox
//! record. Owns persistence only; live processes are the runtime's and lifecycle is the
//! [`api`](crate::api) module's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

mod templates;
pub use templates::{
    BuildFailure, BuildImage, BuildLogEntry, BuildRecord, BuildStatus, BuiltTemplate, DEFAULT_TAG,
};
mod volumes;
pub use volumes::{VolumeMount, VolumeRecord};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "state.db";

/// Failures of the state store, one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Opening or migrating the database failed.
    #[error("opening state database {0}: {1}")]
    Open(PathBuf, #[source] rusqlite::Error),
    /// A query failed; the first field names the operation.
    #[error("state database: {0}: {1}")]
    Query(&'static str, #[source] rusqlite::Error),
    /// A stored record could not be encoded or decoded.
    #[error("state database: record {0}: {1}")]
    Record(String, #[source] serde_json::Error),
    /// Making the data directory or a database file private to the server's user failed.
    #[error("making {0} private to its owner: {1}")]
    Private(PathBuf, #[source] std::io::Error),
}

/// Creates `dir` (and missing parents) and sets its mode to `0700` whatever the umask and
/// however it was made: the data directory holds the API key, the server secret and every
/// sandbox's files, which no other host user may reach.
///
/// # Errors
///
/// Creating the directory or changing its mode failed.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Creates the database file when absent and sets it and its WAL and shared-memory files to
/// `0600`; SQLite gives the `-wal` and `-shm` files it creates later the database's mode.
fn restrict_to_owner(db: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(db)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Result alias of this module.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// Lifecycle state of a sandbox record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxState {
    /// Processes run; envd is reachable.
    Running,
    /// Processes are frozen (after a files-only pause: freshly booted ones); envd traffic
    /// gets 502, or resumes it with `auto_resume`.
    Paused,
    /// Gone; kept for the record only.
    Killed,
}

impl SandboxState {
    fn as_str(self) -> &'static str {
        match self {
            SandboxState::Running => "running",
            SandboxState::Paused => "paused",
            SandboxState::Killed => "killed",
        }
    }
}

/// Everything the control plane knows about one sandbox (stored as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// `i` + 20 characters of `[a-z0-9]`.
    pub id: String,
    /// Template name it was created from.
    pub template: String,
    /// Current state.
    pub state: SandboxState,
    /// Creation time.
    pub started_at: DateTime<Utc>,
    /// When the evictor ends it (kill, or pause with `auto_pause`).
    pub end_at: DateTime<Utc>,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Environment variables given at create time (sent to envd's `/init`).
    pub env_vars: BTreeMap<String, String>,
    /// Whether the sandbox has an envd access token.
    pub secure: bool,
    /// Pause instead of kill when the timeout passes.
    pub auto_pause: bool,
    /// Whether that pause keeps memory (`autoPauseMemory`); `false` pauses to files only.
    #[serde(default = "keep_memory")]
    pub auto_pause_memory: bool,
    /// Whether the first request to a paused sandbox's envd or ports resumes it
    /// (`autoResume.enabled`).
    #[serde(default)]
    pub auto_resume: bool,
    /// Seconds the create asked for; an auto-resume runs the sandbox this long again.
    #[serde(default = "default_timeout")]
    pub timeout: i64,
    /// `allow_internet_access` as requested (or as last updated).
    pub allow_internet_access: Option<bool>,
    /// `network` as requested (or as last updated); restored with the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::network::rules::NetworkRequest>,
    /// envd's version, from `/init`'s `X-Envd-Version`.
    pub envd_version: String,
    /// Captured layers stacked over the template's, bottom first: a fork's (its source's
    /// files at the fork, and its source's own captured layers below).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    /// Volumes bind-mounted into it (`volumeMounts`), mounted again when it is restored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
}

fn keep_memory() -> bool {
    true
}

/// E2B's default sandbox timeout, for records written before `timeout` was kept.
fn default_timeout() -> i64 {
    300
}

/// A template registered with `template add` (the default `base` is implicit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    /// Template name.
    pub name: String,
    /// Root filesystem directory on the host.
    pub rootfs: PathBuf,
    /// Registration time.
    pub created_at: DateTime<Utc>,
}

/// The SQLite store. Cheap operations under one mutex; every call is a short transaction.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating when absent) `<data_dir>/state.db` and its tables.
    ///
    /// # Errors
    ///
    /// [`StateError::Open`] naming the file.
    pub fn open(data_dir: &Path) -> Result<Store> {
        let path = data_dir.join(DB_FILE);
        create_private_dir(data_dir).map_err(|e| StateError::Private(data_dir.to_owned(), e))?;
        restrict_to_owner(&path).map_err(|e| StateError::Private(path.clone(), e))?;
        let open = |path: &Path| -> rusqlite::Result<Connection> {
            let conn = Connection::open(path)?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            // WAL + NORMAL: durable across process crashes, fast enough for 50 concurrent
            // creates (no fsync per commit).
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS settings (
                     key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS templates (
                     name TEXT PRIMARY KEY, rootfs TEXT NOT NULL, created_at TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS sandboxes (
                     id TEXT PRIMARY KEY, state TEXT NOT NULL, record TEXT NOT NULL);",
            )?;
            Store::create_template_tables(&conn)?;
            Store::create_volume_tables(&conn)?;
            Ok(conn)
        };
        let conn = open(&path).map_err(|e| StateError::Open(path.clone(), e))?;
        Ok(Store {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn setting_or_init(&self, key: &str, make: impl FnOnce() -> String) -> Result<String> {
        let conn = self.conn();
        let existing: Option<String> = conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| StateError::Query("reading a setting", e))?;
        if let Some(v) = existing {
            return Ok(v);
        }
        let v = make();
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)",
            params![key, v],
        )
        .map_err(|e| StateError::Query("storing a setting", e))?;
        Ok(v)
    }

    /// The API key (`e2b_` + 40 hex digits), created and stored on first use.
    ///
    /// # Errors
    ///
    /// [`StateError::Query`].
    pub fn api_key(&self) -> Result<String> {
        self.setting_or_init("api_key", || format!("e2b_{}", random_hex(20)))
    }

    /// The server secret keying envd access tokens (32 random bytes, hex), created on first use.
    ///
    /// # Errors
    ///
    /// [`StateError::Query`].
    pub fn secret(&self) -> Result<Vec<u8>> {
        let hex_secret = self.setting_or_init("secret", || random_hex(32))?;
        Ok(hex::decode(&hex_secret).unwrap_or_else(|_| hex_secret.into_bytes()))
    }

    /// Inserts or replaces a sandbox record.
    ///
    /// # Errors
    ///
    /// [`StateError::Record`] or [`StateError::Query`].
    pub fn put_sandbox(&self, rec: &SandboxRecord) -> Result<()> {
        let json = serde_json::to_string(rec).map_err(|e| StateError::Record(rec.id.clone(), e))?;
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO sandboxes (id, state, record) VALUES (?1, ?2, ?3)",
                params![rec.id, rec.state.as_str(), json],
            )
            .map_err(|e| StateError::Query("storing a sandbox", e))?;
        Ok(())
    }

    /// Inserts or replaces `recs` in one transaction (one commit for a whole restart).
    ///
    /// # Errors
    ///
    /// [`StateError::Record`] or [`StateError::Query`]; then none is stored.
    pub fn put_sandboxes(&self, recs: &[SandboxRecord]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(|e| StateError::Query("storing sandboxes", e))?;
        for rec in recs {
            let json =
                serde_json::to_string(rec).map_err(|e| StateError::Record(rec.id.clone(), e))?;
            tx.execute(
                "INSERT OR REPLACE INTO sandboxes (id, state, record) VALUES (?1, ?2, ?3)",
                params![rec.id, rec.state.as_str(), json],
            )
            .map_err(|e| StateError::Query("storing sandboxes", e))?;
        }
        tx.commit()
            .map_err(|e| StateError::Query("storing sandboxes", e))
    }

    /// Every record not yet killed.
    ///
    /// # Errors
    ///
    /// [`StateError::Record`] or [`StateError::Query`].
    pub fn live_sandboxes(&self) -> Result<Vec<SandboxRecord>> {
        self.sandboxes_where("state != 'killed'")
    }

    /// Every record, killed ones included.
    ///
    /// # Errors
    ///
    /// [`StateError::Record`] or [`StateError::Query`].
    pub fn all_sandboxes(&self) -> Result<Vec<SandboxRecord>> {
        self.sandboxes_where("1")
    }

    fn sandboxes_where(&self, cond: &str) -> Result<Vec<SandboxRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT id, record FROM sandboxes WHERE {cond}"))
            .map_err(|e| StateError::Query("listing sandboxes", e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| StateError::Query("listing sandboxes", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row.map_err(|e| StateError::Query("listing sandboxes", e))?;
            out.push(serde_json::from_str(&json).map_err(|e| StateError::Record(id, e))?);
        }
        Ok(out)
    }

    /// Registers (or re-points) a template.
    ///
    /// # Errors
    ///
    /// [`StateError::Query`].
    pub fn put_template(&self, name: &str, rootfs: &Path) -> Result<()> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO templates (name, rootfs, created_at) VALUES (?1, ?2, ?3)",
                params![name, rootfs.to_string_lossy(), Utc::now().to_rfc3339()],
            )
            .map_err(|e| StateError::Query("storing a template", e))?;
        Ok(())
    }

    /// Registered templates, by name.
    ///
    /// # Errors
    ///
    /// [`StateError::Query`].
    pub fn templates(&self) -> Result<Vec<TemplateRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name, rootfs, created_at FROM templates ORDER BY name")
            .map_err(|e| StateError::Query("listing templates", e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| StateError::Query("listing templates", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, rootfs, created) =
                row.map_err(|e| StateError::Query("listing templates", e))?;
            out.push(TemplateRecord {
                name,
                rootfs: PathBuf::from(rootfs),
                created_at: DateTime::parse_from_rfc3339(&created)
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Removes a registered template; `false` when there was none.
    ///
    /// # Errors
    ///
    /// [`StateError::Query`].
    pub fn remove_template(&self, name: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("DELETE FROM templates WHERE name = ?1", [name])
            .map_err(|e| StateError::Query("deleting a template", e))?;
        Ok(n > 0)
    }
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_secret_are_created_once_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let (key, secret) = {
            let s = Store::open(dir.path()).unwrap();
            (s.api_key().unwrap(), s.secret().unwrap())
        };
        assert!(key.starts_with("e2b_") && key.len() == 44, "{key}");
        assert!(key[4..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(secret.len(), 32);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.api_key().unwrap(), key);
        assert_eq!(s.secret().unwrap(), secret);
    }

    #[test]
    fn records_of_earlier_versions_get_the_lifecycle_defaults() {
        let rec: SandboxRecord = serde_json::from_value(serde_json::json!({
            "id": "iabc", "template": "base", "state": "paused",
            "started_at": "2026-01-01T00:00:00Z", "end_at": "2026-01-01T00:05:00Z",
            "metadata": {}, "env_vars": {}, "secure": true, "auto_pause": true,
            "allow_internet_access": null, "envd_version": "0.6.13"
        }))
        .unwrap();
        assert!(rec.auto_pause_memory);
        assert!(!rec.auto_resume);
        assert_eq!(rec.timeout, 300);
    }

    #[test]
    fn sandbox_records_round_trip_and_filter_killed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut rec = SandboxRecord {
            id: "iabc".into(),
            template: "base".into(),
            state: SandboxState::Running,
            started_at: Utc::now(),
            end_at: Utc::now(),
            metadata: BTreeMap::from([("k".into(), "v".into())]),
            env_vars: BTreeMap::new(),
            secure: true,
            auto_pause: false,
            auto_pause_memory: true,
            auto_resume: false,
            timeout: 300,
            allow_internet_access: Some(true),
            network: None,
            envd_version: "0.6.13".into(),
            volume_mounts: vec![VolumeMount {
                volume_id: "vid".into(),
                name: "data".into(),
                path: "/mnt/data".into(),
            }],
            layers: Vec::new(),
        };
        s.put_sandbox(&rec).unwrap();
        assert_eq!(s.live_sandboxes().unwrap(), vec![rec.clone()]);
        rec.state = SandboxState::Killed;
        s.put_sandbox(&rec).unwrap();
        assert!(s.live_sandboxes().unwrap().is_empty());
        assert_eq!(s.all_sandboxes().unwrap(), vec![rec]);
    }

    #[test]
    fn templates_are_stored_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put_template("deb", Path::new("/srv/deb")).unwrap();
        let t = s.templates().unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].rootfs, PathBuf::from("/srv/deb"));
        assert!(s.remove_template("deb").unwrap());
        assert!(!s.remove_template("deb").unwrap());
    }
}
