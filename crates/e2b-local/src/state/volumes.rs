//! Volumes (E2B's `/volumes`): id, unique name, content-API token and size of each.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};

use super::{Result, StateError, Store};

/// One volume. Its data is an ext4 image in the data directory ([`crate::volumes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRecord {
    /// Volume id (a UUID).
    pub id: String,
    /// Its name (`^[a-zA-Z0-9_-]+$`, unique per server).
    pub name: String,
    /// Bearer token of its content API (32 random bytes, hex).
    pub token: String,
    /// Size of its filesystem image in bytes (fixed at creation).
    pub size_bytes: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A volume mounted into a sandbox (an entry of `volumeMounts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeMount {
    /// The volume's id.
    pub volume_id: String,
    /// The volume's name, as the create named it.
    pub name: String,
    /// Absolute path of the mount inside the sandbox.
    pub path: String,
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeRecord> {
    let created: String = r.get(4)?;
    Ok(VolumeRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        token: r.get(2)?,
        size_bytes: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
        created_at: DateTime::parse_from_rfc3339(&created)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default(),
    })
}

const COLUMNS: &str = "id, name, token, size_bytes, created_at";

impl Store {
    pub(super) fn create_volume_tables(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS volumes (
                 id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, token TEXT NOT NULL,
                 size_bytes INTEGER NOT NULL, created_at TEXT NOT NULL);",
        )
    }

    /// Stores a new volume; `false` (nothing stored) when its name is taken.
    ///
    /// # Errors
    ///
    /// [`StateError::Query`].
    pub fn insert_volume(&self, v: &VolumeRecord) -> Result<bool> {
        let inserted = self.conn().execute(
            "INSERT INTO volumes (id, name, token, size_bytes, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING",
            params![
                v.id,
                v.name,
                v.token,
                i64::try_from(v.size_bytes).unwrap_or(i64::MAX),
                v.created_at.to_rfc3339()
            ],
        );
        inserted
            .map(|n| n == 1)
            .map_err(|e| StateError::Query("storing a volume", e))
    }

    /// Every volume, oldest first.
    ///
    /// # Errors
    ///
    /// [`StateError::Query`].
    pub fn volumes(&self) -> Result<Vec<VolumeRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM volumes ORDER BY created_at, name"
            ))
            .map_err(|e| StateError::Query("listing volumes", e))?;
        let rows = stmt
            .query_map([], from_row)
            .map_err(|e| StateError::Query("listing volumes", e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| StateError::Query("listing volumes", e))
    }

    /// The volume whose id, or else name, is `id_or_name`.
    ///
    /// # Errors
    ///
    /// [`StateError::Query`].
    pub fn volume(&self, id_or_name: &str) -> Result<Option<VolumeRecord>> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM volumes WHERE id = ?1 OR name = ?1
                     ORDER BY id = ?1 DESC LIMIT 1"
                ),
                [id_or_name],
                from_row,
            )
            .optional()
            .map_err(|e| StateError::Query("reading a volume", e))
    }

    /// Removes volume `id`; `false` when there was none.
    ///
    /// # Errors
    ///
    /// [`StateError::Query`].
    pub fn remove_volume(&self, id: &str) -> Result<bool> {
        self.conn()
            .execute("DELETE FROM volumes WHERE id = ?1", [id])
            .map(|n| n > 0)
            .map_err(|e| StateError::Query("deleting a volume", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(id: &str, name: &str) -> VolumeRecord {
        VolumeRecord {
            id: id.into(),
            name: name.into(),
            token: format!("token-{id}"),
            size_bytes: 64 << 20,
            created_at: DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn volumes_are_stored_found_by_id_or_name_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let a = volume("id-a", "data");
        assert!(s.insert_volume(&a).unwrap());
        assert!(!s.insert_volume(&volume("id-b", "data")).unwrap());
        assert_eq!(s.volumes().unwrap(), vec![a.clone()]);
        assert_eq!(s.volume("id-a").unwrap(), Some(a.clone()));
        assert_eq!(s.volume("data").unwrap(), Some(a.clone()));
        assert_eq!(s.volume("id-b").unwrap(), None);
        // An id wins over another volume's equal name.
        let c = volume("data2", "id-a");
        assert!(s.insert_volume(&c).unwrap());
        assert_eq!(s.volume("id-a").unwrap(), Some(a));
        assert!(s.remove_volume("id-a").unwrap());
        assert!(!s.remove_volume("id-a").unwrap());
        assert_eq!(s.volume("id-a").unwrap(), Some(c));
        drop(s);
        assert_eq!(Store::open(dir.path()).unwrap().volumes().unwrap().len(), 1);
    }
}
