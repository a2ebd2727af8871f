//! Sandbox lifecycle: create (runtime spawn, envd ready, `/init`), kill, pause, resume,
//! timeouts and the evictor, restart recovery. Handlers in [`super::handlers`] only translate
//! HTTP to these calls.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use rand::Rng;
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use crate::isolation::{InitProgram, Limits, Runtime, SandboxHandle, SandboxSpec};
use crate::state::{SandboxRecord, SandboxState, Store};
use crate::template::Template;

/// `clientID` of every sandbox: a constant E2B keeps for old SDKs.
pub const CLIENT_ID: &str = "6532622b";
/// envd's port inside every sandbox.
pub use e2b_envd::ENVD_PORT;
/// How long an `Idempotency-Key` is remembered.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(600);
/// How long create waits for envd to listen.
const ENVD_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Server-wide settings of the manager.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Longest a sandbox may live from its start (timeouts past it give 400).
    pub max_lifetime: Duration,
    /// Limits of every sandbox.
    pub limits: Limits,
    /// Domain reported to SDKs (`<port>-<id>.<domain>` reaches a sandbox port).
    pub domain: String,
}

/// A live (running or paused) sandbox.
#[derive(Debug)]
pub struct Live {
    /// The runtime's handle.
    pub handle: Arc<SandboxHandle>,
    /// envd access token (`None` when created with `secure: false`).
    pub token: Option<String>,
    /// The record (state, end time, metadata).
    pub rec: Mutex<SandboxRecord>,
    /// Cancelled when the sandbox is paused or killed: cuts every proxied stream.
    cancel: Mutex<CancellationToken>,
    /// Previous CPU sample for `cpuUsedPct`.
    cpu_prev: Mutex<Option<(Instant, u64)>>,
    /// Host file with envd's stdout/stderr.
    pub log: PathBuf,
}

impl Live {
    /// A snapshot of the record.
    pub fn record(&self) -> SandboxRecord {
        lock(&self.rec).clone()
    }

    /// The current stream-cutting token (a child is cancelled with it).
    pub fn cancel_token(&self) -> CancellationToken {
        lock(&self.cancel).clone()
    }

    fn cut_streams(&self) {
        let mut c = lock(&self.cancel);
        c.cancel();
        *c = CancellationToken::new();
    }
}

/// Locks a mutex, ignoring poisoning (state stays consistent: every update is one assignment).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What `create` needs, validated.
#[derive(Debug, Clone)]
pub struct CreateParams {
    /// Template name.
    pub template: String,
    /// Seconds until the evictor acts.
    pub timeout: i64,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Environment variables for envd.
    pub env_vars: BTreeMap<String, String>,
    /// Whether to set an access token.
    pub secure: bool,
    /// Pause instead of kill on timeout.
    pub auto_pause: bool,
    /// Reported back only.
    pub allow_internet_access: Option<bool>,
}

/// The sandbox manager shared by handlers, the router and the evictor.
#[derive(Debug)]
pub struct Manager {
    runtime: Runtime,
    store: Store,
    secret: Vec<u8>,
    api_key: String,
    config: ManagerConfig,
    sandboxes: RwLock<HashMap<String, Arc<Live>>>,
    evict: Notify,
    base: Mutex<Option<Template>>,
    logs_dir: PathBuf,
    idempotency: Mutex<HashMap<String, (String, Instant)>>,
}

/// `hex(HMAC-SHA256(secret, sandbox_id))`: the envd access token of a secure sandbox.
pub fn access_token(secret: &[u8], sandbox_id: &str) -> String {
    // HMAC takes keys of any length, so this never fails.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(sandbox_id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A fresh sandbox id: `i` + 20 characters of `[a-z0-9]`.
pub fn new_sandbox_id() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut id = String::with_capacity(21);
    id.push('i');
    for _ in 0..20 {
        id.push(char::from(CHARS[rng.random_range(0..CHARS.len())]));
    }
    id
}

/// Whether `id` is a syntactically valid sandbox id (`^[a-z0-9]+$`, at most 64 characters).
pub fn valid_sandbox_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl Manager {
    /// A manager over `runtime` and `store`; run [`recover`](Self::recover) before serving.
    ///
    /// # Errors
    ///
    /// Reading the key or secret from the store.
    pub fn new(
        runtime: Runtime,
        store: Store,
        config: ManagerConfig,
    ) -> Result<Self, crate::state::StateError> {
        let secret = store.secret()?;
        let api_key = store.api_key()?;
        let logs_dir = runtime.data_dir().join("logs");
        let _ = std::fs::create_dir_all(&logs_dir);
        Ok(Manager {
            runtime,
            store,
            secret,
            api_key,
            config,
            sandboxes: RwLock::new(HashMap::new()),
            evict: Notify::new(),
            base: Mutex::new(None),
            logs_dir,
            idempotency: Mutex::new(HashMap::new()),
        })
    }

    /// The API key.
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The settings.
    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    /// After a restart: sandboxes of an earlier run cannot be re-attached (their processes
    /// may survive a crashed server). Each one, and every directory left in `sandboxes/`, is
    /// reclaimed (processes killed, cgroup, mounts and files removed). Running ones are
    /// marked killed. Paused ones keep their files: the root upper directory is saved first,
    /// and the sandbox is booted again from its template with those files copied in, then
    /// paused (memory is not kept: resuming it is a reboot). Returns how many were reclaimed.
    pub async fn recover(self: &Arc<Self>) -> usize {
        let recs = self.store.live_sandboxes().unwrap_or_else(|e| {
            tracing::warn!("recover: {e}");
            Vec::new()
        });
        let saved_root = self.runtime.data_dir().join("paused");
        let mut ids: Vec<String> = recs.iter().map(|r| r.id.clone()).collect();
        let dir = self.runtime.data_dir().join("sandboxes");
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let mut saved = HashMap::new();
        for rec in recs.iter().filter(|r| r.state == SandboxState::Paused) {
            let to = saved_root.join(&rec.id);
            let _ = std::fs::create_dir_all(&saved_root);
            if to.exists() || self.runtime.save_upper(&rec.id, &to).is_ok() {
                saved.insert(rec.id.clone(), to);
            }
        }
        let mut n = 0;
        for id in ids {
            let this = self.clone();
            let id2 = id.clone();
            match tokio::task::spawn_blocking(move || this.runtime.reclaim(&id2)).await {
                Ok(Ok(())) => n += 1,
                Ok(Err(e)) => tracing::warn!("reclaiming sandbox {id}: {e}"),
                Err(e) => tracing::warn!("reclaiming sandbox {id}: {e}"),
            }
            let _ = std::fs::remove_file(self.logs_dir.join(format!("{id}.log")));
        }
        for mut rec in recs {
            if let Some(files) = saved.remove(&rec.id) {
                match self.restore_paused(&rec, files.clone()).await {
                    Ok(()) => {
                        let _ = std::fs::remove_dir_all(&files);
                        continue;
                    }
                    Err(e) => tracing::warn!(
                        "sandbox {}: could not restore it paused ({e}); its files stay in {}",
                        rec.id,
                        files.display()
                    ),
                }
            }
            rec.state = SandboxState::Killed;
            if let Err(e) = self.store.put_sandbox(&rec) {
                tracing::warn!("recover {}: {e}", rec.id);
            }
        }
        n
    }

    async fn restore_paused(
        self: &Arc<Self>,
        rec: &SandboxRecord,
        files: PathBuf,
    ) -> Result<(), ApiError> {
        let template = self.template(&rec.template)?;
        let token = rec.secure.then(|| access_token(&self.secret, &rec.id));
        let (handle, envd_version, log) = self
            .boot(
                &rec.id,
                template,
                &rec.template,
                token.as_deref(),
                &rec.env_vars,
                Some(files),
            )
            .await?;
        let h = handle.clone();
        let frozen = tokio::task::spawn_blocking(move || h.freeze()).await;
        if !matches!(frozen, Ok(Ok(()))) {
            let h = handle.clone();
            let _ = tokio::task::spawn_blocking(move || h.kill()).await;
            return Err(ApiError::internal(format!(
                "sandbox {}: pausing it again failed",
                rec.id
            )));
        }
        let mut rec = rec.clone();
        rec.envd_version = envd_version;
        self.store
            .put_sandbox(&rec)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        self.insert_live(handle, token, rec, log);
        Ok(())
    }

    /// Registers a running (or re-attached) sandbox as live.
    fn insert_live(
        &self,
        handle: Arc<SandboxHandle>,
        token: Option<String>,
        rec: SandboxRecord,
        log: PathBuf,
    ) -> Arc<Live> {
        let id = rec.id.clone();
        let live = Arc::new(Live {
            handle,
            token,
            rec: Mutex::new(rec),
            cancel: Mutex::new(CancellationToken::new()),
            cpu_prev: Mutex::new(None),
            log,
        });
        self.sandboxes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, live.clone());
        live
    }

    /// The live sandbox `id`, if any.
    pub fn get(&self, id: &str) -> Option<Arc<Live>> {
        self.sandboxes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Every live sandbox.
    pub fn all(&self) -> Vec<Arc<Live>> {
        self.sandboxes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// The template `name`: `base` (built on first use) or one registered with `template add`.
    ///
    /// # Errors
    ///
    /// 404 when no such template exists; 500 when building `base` fails.
    pub fn template(&self, name: &str) -> Result<Template, ApiError> {
        if name == crate::template::BASE {
            let mut base = lock(&self.base);
            if let Some(t) = base.as_ref() {
                return Ok(t.clone());
            }
            let t = Template::base(self.runtime.data_dir())
                .map_err(|e| ApiError::internal(format!("building template base: {e}")))?;
            *base = Some(t.clone());
            return Ok(t);
        }
        let recs = self
            .store
            .templates()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let rec = recs
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| ApiError::not_found(format!("template '{name}' not found")))?;
        Template::from_rootfs(&rec.name, &rec.rootfs)
            .map_err(|e| ApiError::internal(format!("template '{name}': {e}")))
    }

    /// Checks that `now + secs` stays within the maximum lifetime counted from `started`.
    fn check_lifetime(&self, started: DateTime<Utc>, secs: i64) -> Result<DateTime<Utc>, ApiError> {
        let max = chrono::Duration::from_std(self.config.max_lifetime)
            .unwrap_or(chrono::Duration::hours(24));
        let end = Utc::now() + chrono::Duration::seconds(secs.max(0));
        if end > started + max + chrono::Duration::seconds(1) {
            return Err(ApiError::bad_request(format!(
                "timeout of {secs} s exceeds the maximum sandbox lifetime of {} s",
                self.config.max_lifetime.as_secs()
            )));
        }
        Ok(end)
    }

    /// Validates a create-time timeout.
    ///
    /// # Errors
    ///
    /// 400 for zero, negative or too long timeouts.
    pub fn check_create_timeout(&self, secs: i64) -> Result<(), ApiError> {
        if secs <= 0 {
            return Err(ApiError::bad_request(format!(
                "timeout must be greater than 0 (got {secs})"
            )));
        }
        if u64::try_from(secs).unwrap_or(u64::MAX) > self.config.max_lifetime.as_secs() {
            return Err(ApiError::bad_request(format!(
                "timeout of {secs} s exceeds the maximum sandbox lifetime of {} s",
                self.config.max_lifetime.as_secs()
            )));
        }
        Ok(())
    }

    /// Spawns sandbox `id` with envd, copies `restore` (a saved upper directory) into its
    /// root when given, waits until envd listens and applies `/init`. Returns the handle,
    /// envd's version and the log file.
    async fn boot(
        self: &Arc<Self>,
        id: &str,
        template: Template,
        template_name: &str,
        token: Option<&str>,
        env_vars: &BTreeMap<String, String>,
        restore: Option<PathBuf>,
    ) -> Result<(Arc<SandboxHandle>, String, PathBuf), ApiError> {
        let log = self.logs_dir.join(format!("{id}.log"));
        let handle = {
            let this = self.clone();
            let id2 = id.to_owned();
            let log = log.clone();
            let tname = template_name.to_owned();
            tokio::task::spawn_blocking(move || {
                let id = id2;
                let mut init = InitProgram::self_exe(["envd"]);
                init.env.push((
                    crate::envd_role::ROLE_ENV.into(),
                    crate::envd_role::ENVD_ROLE.into(),
                ));
                init.env
                    .push((crate::envd_role::SANDBOX_ID_ENV.into(), id.clone()));
                init.env
                    .push((crate::envd_role::TEMPLATE_ID_ENV.into(), tname));
                init.env.push(("HOME".into(), "/root".into()));
                let mut spec = SandboxSpec::new(id, &template, init);
                spec.limits = this.config.limits;
                spec.log = Some(log);
                this.runtime.spawn(spec)
            })
            .await
            .map_err(|e| ApiError::internal(format!("creating sandbox {id}: {e}")))?
            .map_err(|e| ApiError::internal(format!("creating sandbox {id}: {e}")))?
        };
        let handle = Arc::new(handle);
        let fail = |e: String| {
            let h = handle.clone();
            let log = log.clone();
            async move {
                let _ = tokio::task::spawn_blocking(move || h.kill()).await;
                let _ = std::fs::remove_file(&log);
                ApiError::internal(e)
            }
        };
        if let Some(saved) = restore {
            // Through /proc/<init>/root, so the files go through the sandbox's overlay.
            let root = PathBuf::from(format!("/proc/{}/root", handle.init_pid()));
            let res = tokio::task::spawn_blocking(move || copy_tree(&saved, &root))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            if let Err(e) = res {
                return Err(fail(format!("sandbox {id}: restoring its files: {e}")).await);
            }
        }
        match init_envd(&handle, token, env_vars).await {
            Ok(v) => Ok((handle, v, log)),
            Err(e) => Err(fail(format!("sandbox {id}: envd did not start: {e}")).await),
        }
    }

    /// Creates a sandbox: spawns it with envd, waits until envd listens, applies `/init`
    /// (token, env vars, default user `user`), records it. Returns the live sandbox.
    ///
    /// # Errors
    ///
    /// 404 for an unknown template, 500 when the runtime or envd fails (message names it).
    pub async fn create(self: &Arc<Self>, p: CreateParams) -> Result<Arc<Live>, ApiError> {
        self.check_create_timeout(p.timeout)?;
        if p.auto_pause && !self.runtime.can_freeze() {
            return Err(pause_unavailable("autoPause"));
        }
        let template = self.template(&p.template)?;
        let id = new_sandbox_id();
        let token = p.secure.then(|| access_token(&self.secret, &id));
        let (handle, envd_version, log) = self
            .boot(
                &id,
                template,
                &p.template,
                token.as_deref(),
                &p.env_vars,
                None,
            )
            .await?;
        let now = Utc::now();
        let rec = SandboxRecord {
            id: id.clone(),
            template: p.template,
            state: SandboxState::Running,
            started_at: now,
            end_at: now + chrono::Duration::seconds(p.timeout),
            metadata: p.metadata,
            env_vars: p.env_vars,
            secure: p.secure,
            auto_pause: p.auto_pause,
            allow_internet_access: p.allow_internet_access,
            envd_version,
        };
        if let Err(e) = self.store.put_sandbox(&rec) {
            let h = handle.clone();
            let _ = tokio::task::spawn_blocking(move || h.kill()).await;
            return Err(ApiError::internal(e.to_string()));
        }
        let live = self.insert_live(handle, token, rec, log);
        self.evict.notify_one();
        Ok(live)
    }

    /// The sandbox an earlier create with the same `Idempotency-Key` made, if it is still
    /// live (keys are remembered for ten minutes).
    pub fn idempotent(&self, key: &str) -> Option<Arc<Live>> {
        let mut map = lock(&self.idempotency);
        map.retain(|_, (_, at)| at.elapsed() < IDEMPOTENCY_TTL);
        let id = map.get(key)?.0.clone();
        drop(map);
        self.get(&id)
    }

    /// Remembers that `key` created sandbox `id`.
    pub fn remember_idempotency(&self, key: String, id: String) {
        lock(&self.idempotency).insert(key, (id, Instant::now()));
    }

    /// Kills a sandbox (running or paused): cuts its streams, removes every trace on the
    /// host and marks its record killed.
    ///
    /// # Errors
    ///
    /// 404 when it is not live; 500 when cleanup fails.
    pub async fn kill(&self, id: &str) -> Result<(), ApiError> {
        let live = self
            .sandboxes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id)
            .ok_or_else(|| ApiError::sandbox_not_found(id))?;
        live.cut_streams();
        let h = live.handle.clone();
        let res = tokio::task::spawn_blocking(move || h.kill())
            .await
            .map_err(|e| ApiError::internal(format!("killing sandbox {id}: {e}")))?;
        let mut rec = live.record();
        rec.state = SandboxState::Killed;
        *lock(&live.rec) = rec.clone();
        let _ = self.store.put_sandbox(&rec);
        let _ = std::fs::remove_file(&live.log);
        res.map_err(|e| ApiError::internal(format!("killing sandbox {id}: {e}")))
    }

    /// Pauses (freezes) a running sandbox and cuts its streams.
    ///
    /// # Errors
    ///
    /// 404 when not live, 409 when already paused, 501 when this server cannot pause
    /// (rootless mode without cgroups: no freezer), 500 when freezing fails.
    pub async fn pause(&self, id: &str) -> Result<(), ApiError> {
        let live = self
            .get(id)
            .ok_or_else(|| ApiError::sandbox_not_found(id))?;
        if !self.runtime.can_freeze() {
            return Err(pause_unavailable(&format!("pausing sandbox {id}")));
        }
        {
            let rec = lock(&live.rec);
            if rec.state == SandboxState::Paused {
                return Err(ApiError::conflict(format!(
                    "sandbox '{id}' is already paused"
                )));
            }
        }
        live.cut_streams();
        let h = live.handle.clone();
        tokio::task::spawn_blocking(move || h.freeze())
            .await
            .map_err(|e| ApiError::internal(format!("pausing sandbox {id}: {e}")))?
            .map_err(|e| ApiError::internal(format!("pausing sandbox {id}: {e}")))?;
        let rec = {
            let mut rec = lock(&live.rec);
            rec.state = SandboxState::Paused;
            rec.clone()
        };
        self.store
            .put_sandbox(&rec)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        self.evict.notify_one();
        Ok(())
    }

    /// Resumes a paused sandbox with a new end time `now + timeout`.
    ///
    /// # Errors
    ///
    /// 404 when not live, 409 when already running, 400 past the maximum lifetime.
    pub async fn resume(&self, id: &str, timeout: i64) -> Result<Arc<Live>, ApiError> {
        let live = self
            .get(id)
            .ok_or_else(|| ApiError::sandbox_not_found(id))?;
        let started = {
            let rec = lock(&live.rec);
            if rec.state == SandboxState::Running {
                return Err(ApiError::conflict(format!(
                    "sandbox {id} is already running"
                )));
            }
            rec.started_at
        };
        let end = self.check_lifetime(started, timeout)?;
        let h = live.handle.clone();
        tokio::task::spawn_blocking(move || h.thaw())
            .await
            .map_err(|e| ApiError::internal(format!("resuming sandbox {id}: {e}")))?
            .map_err(|e| ApiError::internal(format!("resuming sandbox {id}: {e}")))?;
        let rec = {
            let mut rec = lock(&live.rec);
            rec.state = SandboxState::Running;
            rec.end_at = end;
            rec.clone()
        };
        self.store
            .put_sandbox(&rec)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        self.evict.notify_one();
        Ok(live)
    }

    /// Connect: resumes a paused sandbox (`true`), or extends a running one's end time to at
    /// least `now + timeout` (`false`); never shortens.
    ///
    /// # Errors
    ///
    /// 404 when not live, 400 for a negative timeout or past the maximum lifetime.
    pub async fn connect(&self, id: &str, timeout: i64) -> Result<(Arc<Live>, bool), ApiError> {
        if timeout < 0 {
            return Err(ApiError::bad_request(format!(
                "timeout must not be negative (got {timeout})"
            )));
        }
        let live = self
            .get(id)
            .ok_or_else(|| ApiError::sandbox_not_found(id))?;
        if live.record().state == SandboxState::Paused {
            return Ok((self.resume(id, timeout).await?, true));
        }
        self.extend(&live, timeout)?;
        Ok((live, false))
    }

    /// Moves the end time to `max(end, now + secs)`.
    fn extend(&self, live: &Live, secs: i64) -> Result<(), ApiError> {
        let started = live.record().started_at;
        let end = self.check_lifetime(started, secs)?;
        let rec = {
            let mut rec = lock(&live.rec);
            if end > rec.end_at {
                rec.end_at = end;
            }
            rec.clone()
        };
        self.store
            .put_sandbox(&rec)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        self.evict.notify_one();
        Ok(())
    }

    /// Refresh: extends only, by `secs`.
    ///
    /// # Errors
    ///
    /// 404, 400 past the maximum lifetime.
    pub fn refresh(&self, id: &str, secs: i64) -> Result<(), ApiError> {
        let live = self
            .get(id)
            .ok_or_else(|| ApiError::sandbox_not_found(id))?;
        self.extend(&live, secs)
    }

    /// Sets the end time to exactly `now + secs` (may shorten; `0` expires it now).
    ///
    /// # Errors
    ///
    /// 404 when not live, 409 when paused, 400 for a negative timeout or past the maximum
    /// lifetime.
    pub fn set_timeout(&self, id: &str, secs: i64) -> Result<(), ApiError> {
        if secs < 0 {
            return Err(ApiError::bad_request(format!(
                "timeout must not be negative (got {secs})"
            )));
        }
        let live = self
            .get(id)
            .ok_or_else(|| ApiError::sandbox_not_found(id))?;
        let rec = live.record();
        if rec.state != SandboxState::Running {
            return Err(ApiError::conflict(format!(
                "sandbox \"{id}\" is not running (state: paused)"
            )));
        }
        let end = self.check_lifetime(rec.started_at, secs)?;
        let rec = {
            let mut rec = lock(&live.rec);
            rec.end_at = end;
            rec.clone()
        };
        self.store
            .put_sandbox(&rec)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        self.evict.notify_one();
        Ok(())
    }

    /// The evictor: kills (or, with `autoPause`, pauses) each running sandbox as soon as its
    /// end time passes. Wakes at the earliest end time or when any end time changes.
    pub async fn run_evictor(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let now = Utc::now();
            let mut next: Option<DateTime<Utc>> = None;
            let mut due = Vec::new();
            for live in self.all() {
                let rec = lock(&live.rec);
                if rec.state != SandboxState::Running {
                    continue;
                }
                if rec.end_at <= now {
                    due.push((rec.id.clone(), rec.auto_pause));
                } else if next.is_none_or(|n| rec.end_at < n) {
                    next = Some(rec.end_at);
                }
            }
            for (id, auto_pause) in due {
                let this = self.clone();
                tokio::spawn(async move {
                    let res = if auto_pause {
                        this.pause(&id).await
                    } else {
                        this.kill(&id).await
                    };
                    match res {
                        Ok(()) => tracing::info!(
                            "sandbox {id} timed out: {}",
                            if auto_pause { "paused" } else { "killed" }
                        ),
                        Err(e) if e.status == StatusCode::NOT_FOUND => {}
                        Err(e) => tracing::warn!("evicting sandbox {id}: {e}"),
                    }
                });
            }
            let wait = next.map_or(Duration::from_secs(3600), |n| {
                (n - Utc::now()).to_std().unwrap_or(Duration::ZERO)
            });
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.evict.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Every second, finds running sandboxes whose first process (envd under its reaper)
    /// has exited, e.g. killed by the OOM killer, and cleans them up like a kill, so their
    /// state is not left "running" with nothing behind it.
    pub async fn run_reaper(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let live = self.all();
            let dead = tokio::task::spawn_blocking(move || {
                live.iter()
                    .filter(|l| l.record().state == SandboxState::Running && !l.handle.is_running())
                    .map(|l| l.record().id)
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            for id in dead {
                match self.kill(&id).await {
                    Ok(()) => tracing::warn!("sandbox {id}: its envd exited; cleaned up"),
                    Err(e) if e.status == StatusCode::NOT_FOUND => {}
                    Err(e) => tracing::warn!("sandbox {id}: its envd exited; cleanup: {e}"),
                }
            }
        }
    }

    /// Kills every live sandbox (server shutdown).
    pub async fn kill_all(&self) {
        let ids: Vec<String> = self.all().iter().map(|l| l.record().id).collect();
        for id in ids {
            if let Err(e) = self.kill(&id).await {
                tracing::warn!("shutdown: {e}");
            }
        }
    }

    /// One metric sample: cgroup CPU and memory, disk from envd's `/metrics` when reachable.
    pub async fn metric(&self, live: &Live) -> e2b_api::types::SandboxMetric {
        let stats = live.handle.stats();
        let now = Instant::now();
        // Without cgroups (rootless mode) the configured limits are not enforced: report
        // the host's CPUs and memory instead.
        let limits = if live.handle.cgroup().is_enabled() {
            self.config.limits
        } else {
            Limits::default()
        };
        let cpus = i32::try_from(
            limits
                .cpu_millis
                .map(|m| m.div_ceil(1000).max(1) as usize)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        )
        .unwrap_or(1);
        let pct = {
            let mut prev = lock(&live.cpu_prev);
            let (t0, c0) = prev.unwrap_or_else(|| {
                let started = live.record().started_at;
                let age = (Utc::now() - started).to_std().unwrap_or(Duration::ZERO);
                (now.checked_sub(age).unwrap_or(now), 0)
            });
            *prev = Some((now, stats.cpu_usage_ns));
            let wall = now.duration_since(t0).as_nanos().max(1) as f64;
            let used = stats.cpu_usage_ns.saturating_sub(c0) as f64;
            ((used / wall / f64::from(cpus.max(1))) * 10000.0).round() / 100.0
        };
        let mem_total = stats
            .memory_limit_bytes
            .or(limits.memory_bytes)
            .unwrap_or_else(host_mem_total);
        let (disk_used, disk_total) = if live.record().state == SandboxState::Running {
            envd_disk(live).await.unwrap_or((0, 0))
        } else {
            (0, 0)
        };
        let ts = Utc::now();
        e2b_api::types::SandboxMetric {
            cpu_count: cpus,
            cpu_used_pct: pct as f32,
            disk_total: i64::try_from(disk_total).unwrap_or(i64::MAX),
            disk_used: i64::try_from(disk_used).unwrap_or(i64::MAX),
            mem_cache: 0,
            mem_total: i64::try_from(mem_total).unwrap_or(i64::MAX),
            mem_used: i64::try_from(stats.memory_bytes).unwrap_or(i64::MAX),
            timestamp: ts,
            timestamp_unix: ts.timestamp(),
        }
    }
}

/// 501 for pause (and `autoPause`) on a server without the cgroup freezer: the sandbox is
/// fine and the request well-formed, but this server lacks the functionality (rootless mode
/// without a delegated cgroup), which is what 501 means.
fn pause_unavailable(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "{what}: pause needs the cgroup freezer, which is unavailable in rootless mode without a delegated cgroup (run e2b-local as root to pause sandboxes)"
        ),
    )
}

/// Copies the tree `from` into `to` (directories, regular files, symlinks), keeping modes
/// and owners. Overlay whiteouts and other special files are skipped.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let md = std::fs::symlink_metadata(&src)?;
        let ft = md.file_type();
        if ft.is_dir() {
            match std::fs::create_dir(&dst) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            copy_tree(&src, &dst)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&src)?;
            let _ = std::fs::remove_file(&dst);
            std::os::unix::fs::symlink(target, &dst)?;
        } else {
            continue;
        }
        std::os::unix::fs::lchown(&dst, Some(md.uid()), Some(md.gid()))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
    }
    Ok(())
}

/// Host `MemTotal` in bytes.
pub fn host_mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Sends one request to envd over a fresh connection into the sandbox.
async fn envd_request(
    handle: &Arc<SandboxHandle>,
    req: Request<Full<Bytes>>,
) -> Result<(http::response::Parts, Bytes), String> {
    let h = handle.clone();
    let stream = tokio::task::spawn_blocking(move || h.connect(ENVD_PORT))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("connecting to envd: {e}"))?;
    send_on(stream, req).await
}

async fn send_on(
    stream: std::net::TcpStream,
    req: Request<Full<Bytes>>,
) -> Result<(http::response::Parts, Bytes), String> {
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    let stream = tokio::net::TcpStream::from_std(stream).map_err(|e| e.to_string())?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("envd handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("envd request: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("envd response: {e}"))?
        .to_bytes();
    conn.abort();
    Ok((parts, body))
}

/// Waits until envd listens inside the sandbox, then `POST /init` with the access token, the
/// env vars and default user `user`. Returns envd's version (`X-Envd-Version`).
async fn init_envd(
    handle: &Arc<SandboxHandle>,
    token: Option<&str>,
    env_vars: &BTreeMap<String, String>,
) -> Result<String, String> {
    let deadline = Instant::now() + ENVD_READY_TIMEOUT;
    let mut pause = Duration::from_micros(500);
    let stream = loop {
        let h = handle.clone();
        let res = tokio::task::spawn_blocking(move || h.connect(ENVD_PORT))
            .await
            .map_err(|e| e.to_string())?;
        match res {
            Ok(s) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                if !handle.is_running() {
                    return Err("envd exited (see the sandbox logs)".into());
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "envd did not listen on port {ENVD_PORT} within {ENVD_READY_TIMEOUT:?}"
                    ));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("connecting to envd: {e}")),
        }
    };
    let mut body = serde_json::json!({
        "envVars": env_vars,
        "defaultUser": "user",
        "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    });
    if let Some(t) = token {
        body["accessToken"] = serde_json::Value::String(t.to_owned());
    }
    let req = Request::post("/init")
        .header(http::header::HOST, format!("127.0.0.1:{ENVD_PORT}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let (parts, resp_body) = send_on(stream, req).await?;
    if parts.status != StatusCode::NO_CONTENT {
        return Err(format!(
            "envd /init answered {}: {}",
            parts.status,
            String::from_utf8_lossy(&resp_body)
        ));
    }
    Ok(parts
        .headers
        .get("x-envd-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(envd::ENVD_VERSION)
        .to_owned())
}

/// `(disk_used, disk_total)` from envd's `/metrics`.
async fn envd_disk(live: &Live) -> Option<(u64, u64)> {
    let mut req = Request::get("/metrics").header(http::header::HOST, "127.0.0.1");
    if let Some(t) = &live.token {
        req = req.header("x-access-token", t.as_str());
    }
    let req = req.body(Full::new(Bytes::new())).ok()?;
    let fut = envd_request(&live.handle, req);
    let (parts, body) = tokio::time::timeout(Duration::from_secs(1), fut)
        .await
        .ok()?
        .ok()?;
    if !parts.status.is_success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    Some((v["disk_used"].as_u64()?, v["disk_total"].as_u64()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_e2b_shape() {
        for _ in 0..100 {
            let id = new_sandbox_id();
            assert_eq!(id.len(), 21);
            assert!(id.starts_with('i'));
            assert!(valid_sandbox_id(&id));
        }
        assert!(!valid_sandbox_id("I-bad"));
        assert!(!valid_sandbox_id(""));
    }

    #[test]
    fn access_token_is_hmac_sha256_hex() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            access_token(b"Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
