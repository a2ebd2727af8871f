//! Mutable daemon state shared by every handler: defaults set by `/init`, the global
//! environment, the access token, and the process and watcher tables.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::Config;
use crate::fs::watch::Watchers;
use crate::process::Processes;
use crate::users::{AccountFiles, LookupError, User};

/// Names of the variables envd sets itself; `/init` cannot override them.
pub const INTERNAL_ENV: [&str; 3] = ["E2B_SANDBOX", "E2B_SANDBOX_ID", "E2B_TEMPLATE_ID"];

/// Values `/init` may change.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    /// The user requests run as when they name none.
    pub user: String,
    /// The directory empty paths (and process cwds) resolve to, if set.
    pub workdir: Option<PathBuf>,
}

/// The shared state.
#[derive(Debug)]
pub struct State {
    /// Account database.
    pub accounts: AccountFiles,
    defaults: RwLock<Defaults>,
    internal_env: BTreeMap<String, String>,
    user_env: RwLock<BTreeMap<String, String>>,
    token: RwLock<Option<String>>,
    /// Live and recently ended processes.
    pub processes: Arc<Processes>,
    /// Directory watchers (WatchDir and CreateWatcher), on one inotify instance.
    pub watchers: Watchers,
    /// Previous CPU sample for `/metrics`.
    pub cpu_sample: Mutex<Option<crate::http::misc::CpuSample>>,
    /// uid envd runs as; non-root envd can only act as itself.
    pub euid: u32,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}
fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}
/// Locks a mutex, ignoring poisoning (state stays consistent: every critical section is a
/// plain field update).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a user cannot act.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Unknown or (for non-root envd) foreign user.
    #[error("invalid username: '{0}'")]
    Invalid(String),
    /// The account files are unreadable.
    #[error(transparent)]
    Lookup(LookupError),
}

impl State {
    /// Builds the state from the daemon configuration.
    pub fn new(config: &Config) -> Self {
        let euid = nix::unistd::geteuid().as_raw();
        let accounts = config.accounts.clone();
        let user = config.default_user.clone().unwrap_or_else(|| {
            if euid == 0 {
                "root".to_owned()
            } else {
                accounts
                    .by_uid(euid)
                    .map(|u| u.name)
                    .unwrap_or_else(|| "root".to_owned())
            }
        });
        let mut internal_env = BTreeMap::new();
        internal_env.insert("E2B_SANDBOX".to_owned(), "true".to_owned());
        if let Some(id) = &config.sandbox_id {
            internal_env.insert("E2B_SANDBOX_ID".to_owned(), id.clone());
        }
        if let Some(id) = &config.template_id {
            internal_env.insert("E2B_TEMPLATE_ID".to_owned(), id.clone());
        }
        Self {
            accounts,
            defaults: RwLock::new(Defaults {
                user,
                workdir: config.workdir.clone(),
            }),
            internal_env,
            user_env: RwLock::new(BTreeMap::new()),
            token: RwLock::new(None),
            processes: Arc::new(Processes::default()),
            watchers: Watchers::default(),
            cpu_sample: Mutex::new(None),
            euid,
        }
    }

    /// Current defaults.
    pub fn defaults(&self) -> Defaults {
        read(&self.defaults).clone()
    }

    /// Changes the default user.
    pub fn set_default_user(&self, user: String) {
        write(&self.defaults).user = user;
    }

    /// Changes the default workdir.
    pub fn set_default_workdir(&self, dir: Option<PathBuf>) {
        write(&self.defaults).workdir = dir;
    }

    /// The global environment: internal variables, then the ones from `/init`.
    pub fn global_env(&self) -> BTreeMap<String, String> {
        let mut env = read(&self.user_env).clone();
        for (k, v) in &self.internal_env {
            env.insert(k.clone(), v.clone());
        }
        env
    }

    /// Replaces the `/init` environment (internal names are ignored).
    pub fn replace_user_env(&self, vars: BTreeMap<String, String>) {
        let vars = vars
            .into_iter()
            .filter(|(k, _)| !INTERNAL_ENV.contains(&k.as_str()))
            .collect();
        *write(&self.user_env) = vars;
    }

    /// The access token, if one is set.
    pub fn token(&self) -> Option<String> {
        read(&self.token).clone()
    }

    /// Sets or clears the access token.
    pub fn set_token(&self, token: Option<String>) {
        *write(&self.token) = token;
    }

    /// Resolves the user a request acts as: `name` if given, else the default user.
    ///
    /// # Errors
    /// [`UserError::Invalid`] for unknown users, and for any user but envd's own when envd
    /// does not run as root.
    pub fn user(&self, name: Option<&str>) -> Result<User, UserError> {
        let name = match name {
            Some(n) => n.to_owned(),
            None => self.defaults().user,
        };
        let user = match self.accounts.lookup(&name) {
            Ok(u) => u,
            Err(LookupError::UnknownUser(n)) => return Err(UserError::Invalid(n)),
            Err(e) => return Err(UserError::Lookup(e)),
        };
        if self.euid != 0 && user.uid != self.euid {
            return Err(UserError::Invalid(name));
        }
        Ok(user)
    }
}
