//! User and group lookup from `/etc/passwd` and `/etc/group`.
//!
//! envd runs inside a sandbox whose root filesystem carries its own account files, so they are
//! read directly (as Go's pure `os/user` does) instead of going through NSS.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// An account from the passwd file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
    /// Supplementary group ids (from the group file), without the primary group.
    pub groups: Vec<u32>,
}

/// Where the account database lives; tests point it at fixture files.
#[derive(Debug, Clone)]
pub struct AccountFiles {
    /// Path of the passwd file (normally `/etc/passwd`).
    pub passwd: PathBuf,
    /// Path of the group file (normally `/etc/group`).
    pub group: PathBuf,
}

impl Default for AccountFiles {
    fn default() -> Self {
        Self {
            passwd: PathBuf::from("/etc/passwd"),
            group: PathBuf::from("/etc/group"),
        }
    }
}

/// Why a user could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The account file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No account with that name.
    #[error("unknown user '{0}'")]
    UnknownUser(String),
}

fn read(path: &Path) -> Result<String, LookupError> {
    std::fs::read_to_string(path).map_err(|source| LookupError::Read {
        path: path.to_owned(),
        source,
    })
}

impl AccountFiles {
    /// Looks a user up by login name, including its supplementary groups.
    ///
    /// # Errors
    /// [`LookupError::UnknownUser`] when no such account exists, [`LookupError::Read`] when the
    /// account files cannot be read.
    pub fn lookup(&self, name: &str) -> Result<User, LookupError> {
        let passwd = read(&self.passwd)?;
        let mut user = passwd
            .lines()
            .filter_map(parse_passwd_line)
            .find(|u| u.name == name)
            .ok_or_else(|| LookupError::UnknownUser(name.to_owned()))?;
        // A missing group file only means "no supplementary groups".
        if let Ok(group) = std::fs::read_to_string(&self.group) {
            for line in group.lines() {
                let mut f = line.split(':');
                let (Some(_gname), Some(_pw), Some(gid), Some(members)) =
                    (f.next(), f.next(), f.next(), f.next())
                else {
                    continue;
                };
                let Ok(gid) = gid.parse::<u32>() else {
                    continue;
                };
                if gid != user.gid
                    && members.split(',').any(|m| m.trim() == name)
                    && !user.groups.contains(&gid)
                {
                    user.groups.push(gid);
                }
            }
        }
        Ok(user)
    }

    /// Looks a user up by uid (without supplementary groups).
    pub fn by_uid(&self, uid: u32) -> Option<User> {
        let passwd = read(&self.passwd).ok()?;
        passwd
            .lines()
            .filter_map(parse_passwd_line)
            .find(|u| u.uid == uid)
    }

    /// A snapshot of uid → name and gid → name, for naming many files' owners at once.
    pub fn names(&self) -> Names {
        let mut names = Names::default();
        if let Ok(passwd) = std::fs::read_to_string(&self.passwd) {
            for u in passwd.lines().filter_map(parse_passwd_line) {
                names.users.entry(u.uid).or_insert(u.name);
            }
        }
        if let Ok(group) = std::fs::read_to_string(&self.group) {
            for line in group.lines() {
                let mut f = line.split(':');
                if let (Some(name), Some(_), Some(gid)) = (f.next(), f.next(), f.next())
                    && let Ok(gid) = gid.parse::<u32>()
                {
                    names.groups.entry(gid).or_insert_with(|| name.to_owned());
                }
            }
        }
        names
    }
}

/// Owner and group names by id; ids without a name render as the number (as Go's envd does).
#[derive(Debug, Default, Clone)]
pub struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    /// The name of `uid`, or its decimal form.
    pub fn user(&self, uid: u32) -> String {
        self.users
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    /// The name of `gid`, or its decimal form.
    pub fn group(&self, gid: u32) -> String {
        self.groups
            .get(&gid)
            .cloned()
            .unwrap_or_else(|| gid.to_string())
    }
}

fn parse_passwd_line(line: &str) -> Option<User> {
    if line.starts_with('#') {
        return None;
    }
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 7 {
        return None;
    }
    Some(User {
        name: f[0].to_owned(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: PathBuf::from(f[5]),
        groups: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_reads_passwd_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        let group = dir.path().join("group");
        std::fs::write(
            &passwd,
            "root:x:0:0:root:/root:/bin/bash\n#c\nuser:x:1000:1000::/home/user:/bin/bash\nbad\n",
        )
        .unwrap();
        std::fs::write(
            &group,
            "root:x:0:\nuser:x:1000:user\nsudo:x:27:user,other\nadm:x:4:other\n",
        )
        .unwrap();
        let files = AccountFiles { passwd, group };
        let u = files.lookup("user").unwrap();
        assert_eq!(u.uid, 1000);
        assert_eq!(u.gid, 1000);
        assert_eq!(u.home, PathBuf::from("/home/user"));
        assert_eq!(u.groups, vec![27]);
        assert!(matches!(
            files.lookup("nobody"),
            Err(LookupError::UnknownUser(n)) if n == "nobody"
        ));
        let names = files.names();
        assert_eq!(names.user(1000), "user");
        assert_eq!(names.user(4242), "4242");
        assert_eq!(names.group(27), "sudo");
    }
}
