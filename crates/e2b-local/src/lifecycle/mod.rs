//! Sandbox lifecycle: create (runtime spawn, envd ready, `/init`), kill, pause, resume,
//! timeouts and the evictor, restart recovery.
//!
//! Knows no HTTP: every failure is a [`LifecycleError`], which the control plane
//! ([`crate::api`]) maps to a status and a `{code, message}` body in one place.

mod build_run;
mod builds;
pub use builds::collect_layers_offline;
pub(crate) use builds::{BuildRequest, RawStepOwned};
mod capacity;
mod code_interpreter;
mod error;
mod evict;
mod ids;
mod live;
mod logs;
mod recover;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

pub use capacity::Capacity;
use capacity::HostUsage;
pub use error::LifecycleError;
pub(crate) use ids::valid_sandbox_id;
use ids::{access_token, new_sandbox_id, traffic_token};
pub use live::Live;
pub(crate) use live::lock;
pub use logs::{LOG_ROTATE_BYTES, SandboxLog};

use crate::envd_client;
use crate::isolation::{InitProgram, Limits, Runtime, SandboxHandle, SandboxSpec};
use crate::network::rules::{EgressRules, NetworkRequest};
use crate::network::{Networks, SandboxNetwork};
use crate::state::{SandboxRecord, SandboxState, Store};
use crate::template::Template;

/// How long shutdown waits for creates under way (a create's spawn step has its own
/// timeouts, well below this).
const SHUTDOWN_CREATE_WAIT: Duration = Duration::from_secs(30);

/// How long an `Idempotency-Key` is remembered.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(600);

/// Server-wide settings of the manager.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Longest a sandbox may live from its start (timeouts past it give 400).
    pub max_lifetime: Duration,
    /// Limits of every sandbox.
    pub limits: Limits,
    /// Domain reported to SDKs (`<port>-<id>.<domain>` reaches a sandbox port).
    pub domain: String,
    /// Admission limits of creates.
    pub capacity: Capacity,
    /// `base` means the `debian` template (built on first use) instead of the host-derived
    /// one.
    pub debian_base: bool,
}

/// Where the `debian` template is.
#[derive(Debug)]
enum Debian {
    /// Not asked for yet (or its last build failed).
    Idle,
    /// Being built in the background.
    Building,
    /// Built.
    Ready(Template),
}

/// What `create` needs, validated.
#[derive(Debug, Clone)]
pub(crate) struct CreateParams {
    /// Template name.
    pub(crate) template: String,
    /// Seconds until the evictor acts.
    pub(crate) timeout: i64,
    /// User metadata.
    pub(crate) metadata: BTreeMap<String, String>,
    /// Environment variables for envd.
    pub(crate) env_vars: BTreeMap<String, String>,
    /// Whether to set an access token.
    pub(crate) secure: bool,
    /// Pause instead of kill on timeout.
    pub(crate) auto_pause: bool,
    /// `allow_internet_access` as requested.
    pub(crate) allow_internet_access: Option<bool>,
    /// `network` as requested.
    pub(crate) network: Option<NetworkRequest>,
    /// Both, validated.
    pub(crate) rules: EgressRules,
}

/// The sandbox manager shared by handlers, the router and the evictor.
#[derive(Debug)]
pub struct Manager {
    runtime: Runtime,
    /// Sandbox networks (`None`: sandboxes have loopback only).
    networks: Option<Arc<Networks>>,
    store: Store,
    secret: Vec<u8>,
    api_key: String,
    config: ManagerConfig,
    sandboxes: RwLock<HashMap<String, Arc<Live>>>,
    evict: Notify,
    base: Mutex<Option<Template>>,
    debian: Arc<Mutex<Debian>>,
    /// The built-in `code-interpreter-v1`'s first build.
    code_interpreter: Mutex<code_interpreter::CodeInterpreterBuild>,
    logs_dir: PathBuf,
    idempotency: Mutex<HashMap<String, (String, Instant)>>,
    /// Creates admitted and not yet live or failed: they hold a slot of the capacity.
    creating: Mutex<usize>,
    /// Sandboxes paused when the server restarted, while they are booted again.
    restoring: Mutex<HashMap<String, SandboxRecord>>,
    /// Set once restart recovery's background part is done.
    recovered: tokio::sync::watch::Sender<bool>,
    /// Set by [`kill_all`](Self::kill_all): a restore finishing later kills its sandbox.
    closing: AtomicBool,
    /// Built templates' layers.
    layers: crate::template::layers::Layers,
    /// Template builds under way.
    builds: builds::Builds,
}

/// A template ready to boot: its layers, and for a built one the settings its build gave
/// its sandboxes (environment, user, workdir, start and ready commands).
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    template: Template,
    image: Option<crate::state::BuildImage>,
    /// The server's limits, with the template's CPU and memory when it sets them.
    limits: Limits,
}

/// What [`Manager::boot`] made: a sandbox with envd answering.
struct Booted {
    handle: Arc<SandboxHandle>,
    envd_version: String,
    log: Arc<SandboxLog>,
    network: Option<SandboxNetwork>,
}

/// A create's slot in the capacity: given back when dropped (the sandbox is then live, and
/// counted as such, or its create failed).
struct Admission<'a>(&'a Mutex<usize>);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        *lock(self.0) -= 1;
    }
}

impl Manager {
    /// A manager over `runtime` and `store`; run [`recover`](Self::recover) before serving.
    ///
    /// # Errors
    ///
    /// Reading the key or secret from the store.
    pub(crate) fn new(
        runtime: Runtime,
        store: Store,
        config: ManagerConfig,
        networks: Option<Arc<Networks>>,
    ) -> Result<Self, crate::state::StateError> {
        let secret = store.secret()?;
        let api_key = store.api_key()?;
        let logs_dir = runtime.data_dir().join("logs");
        let _ = std::fs::create_dir_all(&logs_dir);
        let layers = crate::template::layers::Layers::open(runtime.data_dir())
            .map_err(|e| crate::state::StateError::Private(runtime.data_dir().join("layers"), e))?;
        store.fail_unfinished_builds()?;
        // No build runs yet: every layer no stored build uses is a deleted template's or a
        // crashed build's.
        let removed = layers.collect(&builds::referenced_layers(&store.builds()?));
        if removed > 0 {
            tracing::info!(removed, "removed unused template layers");
        }
        Ok(Manager {
            runtime,
            networks,
            store,
            secret,
            api_key,
            config,
            sandboxes: RwLock::new(HashMap::new()),
            evict: Notify::new(),
            base: Mutex::new(None),
            debian: Arc::new(Mutex::new(Debian::Idle)),
            code_interpreter: Mutex::new(code_interpreter::CodeInterpreterBuild::Idle),
            logs_dir,
            idempotency: Mutex::new(HashMap::new()),
            creating: Mutex::new(0),
            restoring: Mutex::new(HashMap::new()),
            recovered: tokio::sync::watch::Sender::new(false),
            closing: AtomicBool::new(false),
            layers,
            builds: builds::Builds::default(),
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

    /// Registers a running (or re-attached) sandbox as live.
    fn insert_live(&self, booted: Booted, token: Option<String>, rec: SandboxRecord) -> Arc<Live> {
        let id = rec.id.clone();
        let private = rec
            .network
            .as_ref()
            .is_some_and(|n| n.allow_public_traffic == Some(false));
        let traffic = private.then(|| traffic_token(&self.secret, &id));
        let live = Arc::new(Live::new(booted, token, traffic, rec));
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

    /// The live sandbox `id`, or why there is none: it is being restored after a restart
    /// ([`LifecycleError::Restoring`]) or it does not exist.
    ///
    /// # Errors
    ///
    /// `Restoring`, `SandboxNotFound`.
    pub fn live(&self, id: &str) -> Result<Arc<Live>, LifecycleError> {
        self.get(id).ok_or_else(|| self.missing(id))
    }

    /// Why `id` is not live: `Restoring` while a paused sandbox of the earlier run is booted
    /// again, else `SandboxNotFound`.
    pub fn missing(&self, id: &str) -> LifecycleError {
        if lock(&self.restoring).contains_key(id) {
            LifecycleError::Restoring { id: id.to_owned() }
        } else {
            LifecycleError::not_found(id)
        }
    }

    /// The records of every live sandbox and of those being restored (paused).
    pub fn records(&self) -> Vec<SandboxRecord> {
        let mut recs: Vec<SandboxRecord> = self.all().iter().map(|l| l.record()).collect();
        for r in lock(&self.restoring).values() {
            // A restored sandbox is live a moment before it leaves `restoring`.
            if !recs.iter().any(|l| l.id == r.id) {
                recs.push(r.clone());
            }
        }
        recs
    }

    /// Takes a slot of the capacity for a create, or says which limit it would pass.
    fn admit(&self) -> Result<Admission<'_>, LifecycleError> {
        let usage = HostUsage::read(self.runtime.data_dir());
        if let Some(e) = usage.shortage(&self.config.limits) {
            return Err(e);
        }
        // Under `creating`'s lock, so concurrent creates cannot both take the last slot, and
        // a shutdown (which sets `closing` under it) either waits for this create or
        // refuses it.
        let mut creating = lock(&self.creating);
        if self.closing.load(Ordering::SeqCst) {
            return Err(LifecycleError::ShuttingDown);
        }
        let alive = self
            .sandboxes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
            + lock(&self.restoring).len()
            + *creating;
        if let Some(e) = capacity::over_capacity(&self.config.capacity, &self.config.limits, alive)
            .or_else(|| usage.inotify_shortage(alive))
        {
            return Err(e);
        }
        *creating += 1;
        Ok(Admission(&self.creating))
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

    /// The built-in template `name`: `base` (built on first use) or one registered with
    /// `template add`.
    ///
    /// # Errors
    ///
    /// `TemplateNotFound`; `Internal` when building `base` fails; `Store`.
    pub(crate) fn builtin_template(&self, name: &str) -> Result<Template, LifecycleError> {
        use crate::template::debian;
        if name == debian::NAME || (name == crate::template::BASE && self.config.debian_base) {
            return self.debian_template();
        }
        if name == crate::template::BASE {
            let mut base = lock(&self.base);
            if let Some(t) = base.as_ref() {
                return Ok(t.clone());
            }
            let t = Template::base(self.runtime.data_dir())
                .map_err(|e| LifecycleError::internal("building template base", e))?;
            *base = Some(t.clone());
            return Ok(t);
        }
        let recs = self.store.templates()?;
        let rec = recs.into_iter().find(|t| t.name == name).ok_or_else(|| {
            LifecycleError::TemplateNotFound {
                name: name.to_owned(),
            }
        })?;
        Template::from_rootfs(&rec.name, &rec.rootfs)
            .map_err(|e| LifecycleError::internal(format!("template '{name}'"), e))
    }

    /// The `debian` template: built, or being built in the background from now on (a
    /// create meanwhile gets `TemplateBuilding`, 503).
    ///
    /// # Errors
    ///
    /// `TemplateBuilding`; `Internal` with the last build's failure (the next call builds
    /// again).
    pub(crate) fn debian_template(&self) -> Result<Template, LifecycleError> {
        use crate::template::debian;
        let mut state = lock(&self.debian);
        match &*state {
            Debian::Ready(t) => return Ok(t.clone()),
            Debian::Building => {}
            Debian::Idle => {
                if let Some(t) = debian::built(self.runtime.data_dir()) {
                    *state = Debian::Ready(t.clone());
                    return Ok(t);
                }
                *state = Debian::Building;
                let slot = self.debian.clone();
                let data_dir = self.runtime.data_dir().to_owned();
                tracing::info!("building template debian with mmdebstrap");
                std::thread::spawn(move || {
                    let built = debian::build(&data_dir);
                    *lock(&slot) = match built {
                        Ok(t) => {
                            tracing::info!("template debian is built");
                            Debian::Ready(t)
                        }
                        Err(e) => {
                            tracing::error!("template debian: {e}");
                            Debian::Idle
                        }
                    };
                });
            }
        }
        Err(LifecycleError::TemplateBuilding {
            name: debian::NAME.to_owned(),
        })
    }

    /// The template a create names: a built-in one, or a built one by `name`, `name:tag`,
    /// `id` or `id:tag` with the settings its build gave it.
    ///
    /// # Errors
    ///
    /// `TemplateNotFound`; `InvalidBuild` for a tag it does not have; `Internal`; `Store`.
    pub(crate) fn template(&self, name: &str) -> Result<Resolved, LifecycleError> {
        match self.builtin_template(name) {
            Err(LifecycleError::TemplateNotFound { .. }) => {}
            other => {
                return other.map(|template| Resolved {
                    template,
                    image: None,
                    limits: self.config.limits,
                });
            }
        }
        let (t, _, image) =
            self.tagged_build(name)?
                .ok_or_else(|| LifecycleError::TemplateNotFound {
                    name: name.to_owned(),
                })?;
        let mut limits = self.config.limits;
        if let Some(cpus) = t.cpu_count {
            limits.cpu_millis = Some(cpus.saturating_mul(1000));
        }
        if let Some(mb) = t.memory_mb {
            limits.memory_bytes = Some(mb << 20);
        }
        Ok(Resolved {
            template: self.template_of_build(&t.name, &image)?,
            image: Some(image),
            limits,
        })
    }

    /// Checks that `now + secs` stays within the maximum lifetime counted from `started`.
    fn check_lifetime(
        &self,
        started: DateTime<Utc>,
        secs: i64,
    ) -> Result<DateTime<Utc>, LifecycleError> {
        let max = chrono::Duration::from_std(self.config.max_lifetime)
            .unwrap_or(chrono::Duration::hours(24));
        let end = Utc::now() + chrono::Duration::seconds(secs.max(0));
        if end > started + max + chrono::Duration::seconds(1) {
            return Err(LifecycleError::TimeoutPastLifetime {
                secs,
                max_secs: self.config.max_lifetime.as_secs(),
            });
        }
        Ok(end)
    }

    /// Validates a create-time timeout.
    ///
    /// # Errors
    ///
    /// `TimeoutNotPositive`, `TimeoutPastLifetime`.
    pub(crate) fn check_create_timeout(&self, secs: i64) -> Result<(), LifecycleError> {
        if secs <= 0 {
            return Err(LifecycleError::TimeoutNotPositive { secs });
        }
        if u64::try_from(secs).unwrap_or(u64::MAX) > self.config.max_lifetime.as_secs() {
            return Err(LifecycleError::TimeoutPastLifetime {
                secs,
                max_secs: self.config.max_lifetime.as_secs(),
            });
        }
        Ok(())
    }

    /// Spawns sandbox `id` with envd, with `restore` when given (a saved disk image as its
    /// disk, or a saved upper directory copied into its root), gives it its network (while
    /// envd starts), waits until envd listens and applies `/init`.
    #[allow(clippy::too_many_arguments)]
    async fn boot(
        self: &Arc<Self>,
        id: &str,
        resolved: Resolved,
        template_name: &str,
        token: Option<&str>,
        env_vars: &BTreeMap<String, String>,
        rules: &EgressRules,
        restore: Option<PathBuf>,
    ) -> Result<Booted, LifecycleError> {
        let log = SandboxLog::open(&self.logs_dir, id)
            .map_err(|e| LifecycleError::internal(format!("sandbox {id}: its log"), e))?;
        let Resolved {
            template,
            image,
            limits,
        } = resolved;
        // The template's ENV steps, under what the create asked for.
        let mut env_vars = env_vars.clone();
        if let Some(image) = &image {
            for (k, v) in &image.env {
                env_vars.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let env_vars = &env_vars;
        let spawned = {
            let this = self.clone();
            let id2 = id.to_owned();
            let fifo = log.fifo().to_owned();
            let tname = template_name.to_owned();
            let image = restore.clone().filter(|p| p.is_file());
            let template = template.clone();
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
                spec.limits = limits;
                spec.log = Some(fifo);
                spec.nameserver = this.networks.as_ref().map(|n| n.dns_address());
                spec.trusted_ca = this.networks.as_ref().map(|n| n.ca_pem().to_owned());
                spec.disk_image = image;
                this.runtime.spawn(spec)
            })
            .await
            .map_err(|e| LifecycleError::internal(format!("creating sandbox {id}"), e))
            .and_then(|r| {
                r.map_err(|e| LifecycleError::internal(format!("creating sandbox {id}"), e))
            })
        };
        let handle = match spawned {
            Ok(h) => Arc::new(h),
            Err(e) => {
                log.close();
                return Err(e);
            }
        };
        let fail = |e: LifecycleError, network: Option<SandboxNetwork>| {
            let h = handle.clone();
            let log = log.clone();
            let networks = self.networks.clone();
            async move {
                let _ = tokio::task::spawn_blocking(move || h.kill()).await;
                if let (Some(networks), Some(net)) = (networks, network) {
                    networks.detach(&net).await;
                }
                log.close();
                e
            }
        };
        if let Some(saved) = restore.filter(|p| p.is_dir()) {
            // Through /proc/<init>/root, so the files go through the sandbox's overlay.
            let root = PathBuf::from(format!("/proc/{}/root", handle.init_pid()));
            let res = tokio::task::spawn_blocking(move || recover::copy_tree(&saved, &root))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            if let Err(e) = res {
                return Err(fail(
                    LifecycleError::internal(format!("sandbox {id}: restoring its files"), e),
                    None,
                )
                .await);
            }
        }
        let (network, init) = tokio::join!(
            self.attach_network(&handle, rules, Self::sandbox_logger(&log)),
            envd_client::init(
                &handle,
                token,
                env_vars,
                image
                    .as_ref()
                    .map(|i| (i.user.as_str(), i.workdir.as_str()))
            )
        );
        match (network, init) {
            (Ok(network), Ok(envd_version)) => {
                if let Some(image) = &image
                    && let Err(e) = build_run::start_and_wait_ready(
                        &handle,
                        image,
                        env_vars,
                        &log,
                        (template_name, &template),
                    )
                    .await
                {
                    return Err(fail(e, network).await);
                }
                Ok(Booted {
                    handle,
                    envd_version,
                    log,
                    network,
                })
            }
            (Err(e), init) => {
                drop(init);
                Err(fail(
                    LifecycleError::internal(format!("sandbox {id}: its network"), e),
                    None,
                )
                .await)
            }
            (Ok(network), Err(e)) => Err(fail(
                LifecycleError::internal(format!("sandbox {id}: envd did not start"), e),
                network,
            )
            .await),
        }
    }

    /// Connects a just-spawned sandbox to its network (nothing without networking); what
    /// the egress proxy reports about its connections goes to `log`.
    async fn attach_network(
        &self,
        handle: &SandboxHandle,
        rules: &EgressRules,
        log: crate::network::proxy::SandboxLogger,
    ) -> Result<Option<SandboxNetwork>, crate::network::NetworkError> {
        let Some(networks) = &self.networks else {
            return Ok(None);
        };
        let netns = handle
            .netns()
            .map_err(|e| crate::network::NetworkError::Host("opening its network namespace", e))?;
        Ok(Some(
            networks
                .attach(std::os::fd::AsFd::as_fd(&netns), rules, log)
                .await?,
        ))
    }

    /// A logger writing into a sandbox's log while it is open. Weak: the proxy keeps the
    /// logger until the network is detached, the log is closed before.
    fn sandbox_logger(log: &Arc<SandboxLog>) -> crate::network::proxy::SandboxLogger {
        let log = Arc::downgrade(log);
        Arc::new(move |level, line| {
            if let Some(log) = log.upgrade() {
                log.server_line(level, line);
            }
        })
    }

    /// Creates a sandbox: spawns it with envd, waits until envd listens, applies `/init`
    /// (token, env vars, default user `user`), records it. Returns the live sandbox.
    ///
    /// # Errors
    ///
    /// The timeout's errors, `FreezerUnavailable` for `autoPause` without a freezer,
    /// `TemplateNotFound`, `TooManySandboxes` and `MemoryCommitted` (the server's capacity),
    /// `HostLimit` (checked before anything is spawned), `Internal` when the runtime or envd
    /// fails (naming which; what was made is removed), `Store`.
    pub(crate) async fn create(
        self: &Arc<Self>,
        p: CreateParams,
    ) -> Result<Arc<Live>, LifecycleError> {
        self.check_create_timeout(p.timeout)?;
        if p.auto_pause && !self.runtime.can_freeze() {
            return Err(LifecycleError::FreezerUnavailable {
                action: "autoPause".to_owned(),
            });
        }
        if p.template == crate::template::code_interpreter::NAME {
            self.ensure_code_interpreter()?;
        }
        let template = self.template(&p.template)?;
        let slot = self.admit()?;
        let id = new_sandbox_id();
        let token = p.secure.then(|| access_token(&self.secret, &id));
        let booted = self
            .boot(
                &id,
                template,
                &p.template,
                token.as_deref(),
                &p.env_vars,
                &p.rules,
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
            network: p.network,
            envd_version: booted.envd_version.clone(),
        };
        if let Err(e) = self.store.put_sandbox(&rec) {
            self.discard(booted).await;
            return Err(e.into());
        }
        let live = self.insert_live(booted, token, rec);
        drop(slot);
        self.evict.notify_one();
        Ok(live)
    }

    /// Removes a booted sandbox that never became live.
    async fn discard(&self, booted: Booted) {
        let h = booted.handle.clone();
        let _ = tokio::task::spawn_blocking(move || h.kill()).await;
        if let (Some(networks), Some(net)) = (&self.networks, booted.network) {
            networks.detach(&net).await;
        }
        booted.log.close();
    }

    /// The sandbox an earlier create with the same `Idempotency-Key` made, if it is still
    /// live (keys are remembered for ten minutes).
    pub(crate) fn idempotent(&self, key: &str) -> Option<Arc<Live>> {
        let mut map = lock(&self.idempotency);
        map.retain(|_, (_, at)| at.elapsed() < IDEMPOTENCY_TTL);
        let id = map.get(key)?.0.clone();
        drop(map);
        self.get(&id)
    }

    /// Remembers that `key` created sandbox `id`.
    pub(crate) fn remember_idempotency(&self, key: String, id: String) {
        lock(&self.idempotency).insert(key, (id, Instant::now()));
    }

    /// Kills a sandbox (running or paused): cuts its streams, removes every trace on the
    /// host and marks its record killed.
    ///
    /// # Errors
    ///
    /// `SandboxNotFound` when it is not live; `Internal` when cleanup fails.
    pub(crate) async fn kill(&self, id: &str) -> Result<(), LifecycleError> {
        let live = self
            .sandboxes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id)
            .ok_or_else(|| self.missing(id))?;
        live.cut_streams();
        let h = live.handle.clone();
        let res = tokio::task::spawn_blocking(move || h.kill())
            .await
            .map_err(|e| LifecycleError::internal(format!("killing sandbox {id}"), e))?;
        if let (Some(networks), Some(net)) = (&self.networks, live.take_network()) {
            networks.detach(&net).await;
        }
        let mut rec = live.record();
        rec.state = SandboxState::Killed;
        *lock(&live.rec) = rec.clone();
        let _ = self.store.put_sandbox(&rec);
        live.log.close();
        res.map_err(|e| LifecycleError::internal(format!("killing sandbox {id}"), e))
    }

    /// Pauses (freezes) a running sandbox and cuts its streams.
    ///
    /// # Errors
    ///
    /// `SandboxNotFound` when not live, `AlreadyPaused`, `FreezerUnavailable` when this server
    /// cannot pause (rootless mode without cgroups), `Internal` when freezing fails, `Store`.
    pub(crate) async fn pause(&self, id: &str) -> Result<(), LifecycleError> {
        let live = self.live(id)?;
        if !self.runtime.can_freeze() {
            return Err(LifecycleError::FreezerUnavailable {
                action: format!("pausing sandbox {id}"),
            });
        }
        {
            let rec = lock(&live.rec);
            if rec.state == SandboxState::Paused {
                return Err(LifecycleError::AlreadyPaused { id: id.to_owned() });
            }
        }
        live.cut_streams();
        let h = live.handle.clone();
        tokio::task::spawn_blocking(move || h.freeze())
            .await
            .map_err(|e| LifecycleError::internal(format!("pausing sandbox {id}"), e))?
            .map_err(|e| LifecycleError::internal(format!("pausing sandbox {id}"), e))?;
        let rec = {
            let mut rec = lock(&live.rec);
            rec.state = SandboxState::Paused;
            rec.clone()
        };
        self.store.put_sandbox(&rec)?;
        self.evict.notify_one();
        Ok(())
    }

    /// Resumes a paused sandbox with a new end time `now + timeout`.
    ///
    /// # Errors
    ///
    /// `SandboxNotFound` when not live, `AlreadyRunning`, `TimeoutPastLifetime`, `Internal`
    /// when thawing fails, `Store`.
    pub(crate) async fn resume(&self, id: &str, timeout: i64) -> Result<Arc<Live>, LifecycleError> {
        let live = self.live(id)?;
        let started = {
            let rec = lock(&live.rec);
            if rec.state == SandboxState::Running {
                return Err(LifecycleError::AlreadyRunning { id: id.to_owned() });
            }
            rec.started_at
        };
        let end = self.check_lifetime(started, timeout)?;
        let h = live.handle.clone();
        tokio::task::spawn_blocking(move || h.thaw())
            .await
            .map_err(|e| LifecycleError::internal(format!("resuming sandbox {id}"), e))?
            .map_err(|e| LifecycleError::internal(format!("resuming sandbox {id}"), e))?;
        let rec = {
            let mut rec = lock(&live.rec);
            rec.state = SandboxState::Running;
            rec.end_at = end;
            rec.clone()
        };
        self.store.put_sandbox(&rec)?;
        self.evict.notify_one();
        Ok(live)
    }

    /// Connect: resumes a paused sandbox (`true`), or extends a running one's end time to at
    /// least `now + timeout` (`false`); never shortens.
    ///
    /// # Errors
    ///
    /// `SandboxNotFound` when not live, `TimeoutNegative`, `TimeoutPastLifetime`, and
    /// [`resume`](Self::resume)'s errors for a paused sandbox.
    pub(crate) async fn connect(
        &self,
        id: &str,
        timeout: i64,
    ) -> Result<(Arc<Live>, bool), LifecycleError> {
        if timeout < 0 {
            return Err(LifecycleError::TimeoutNegative { secs: timeout });
        }
        let live = self.live(id)?;
        if live.record().state == SandboxState::Paused {
            return Ok((self.resume(id, timeout).await?, true));
        }
        self.extend(&live, timeout)?;
        Ok((live, false))
    }

    /// Moves the end time to `max(end, now + secs)`.
    fn extend(&self, live: &Live, secs: i64) -> Result<(), LifecycleError> {
        let started = live.record().started_at;
        let end = self.check_lifetime(started, secs)?;
        let rec = {
            let mut rec = lock(&live.rec);
            if end > rec.end_at {
                rec.end_at = end;
            }
            rec.clone()
        };
        self.store.put_sandbox(&rec)?;
        self.evict.notify_one();
        Ok(())
    }

    /// Refresh: extends only, by `secs`.
    ///
    /// # Errors
    ///
    /// `SandboxNotFound` when not live, `TimeoutPastLifetime`, `Store`.
    pub(crate) fn refresh(&self, id: &str, secs: i64) -> Result<(), LifecycleError> {
        let live = self.live(id)?;
        self.extend(&live, secs)
    }

    /// Sets the end time to exactly `now + secs` (may shorten; `0` expires it now).
    ///
    /// # Errors
    ///
    /// `TimeoutNegative`, `SandboxNotFound` when not live, `Paused`, `TimeoutPastLifetime`,
    /// `Store`.
    pub(crate) fn set_timeout(&self, id: &str, secs: i64) -> Result<(), LifecycleError> {
        if secs < 0 {
            return Err(LifecycleError::TimeoutNegative { secs });
        }
        let live = self.live(id)?;
        let rec = live.record();
        if rec.state != SandboxState::Running {
            return Err(LifecycleError::Paused { id: id.to_owned() });
        }
        let end = self.check_lifetime(rec.started_at, secs)?;
        let rec = {
            let mut rec = lock(&live.rec);
            rec.end_at = end;
            rec.clone()
        };
        self.store.put_sandbox(&rec)?;
        self.evict.notify_one();
        Ok(())
    }

    /// Replaces the egress rules of a live sandbox (running or paused) and records them.
    ///
    /// # Errors
    ///
    /// `SandboxNotFound` when not live, `Internal` when the firewall refuses (the old rules
    /// then still hold), `Store`.
    pub(crate) async fn update_network(
        &self,
        id: &str,
        allow_internet_access: Option<bool>,
        request: NetworkRequest,
        rules: EgressRules,
    ) -> Result<(), LifecycleError> {
        let live = self.live(id)?;
        if let Some(networks) = &self.networks {
            live.update_network(networks, &rules)
                .await
                .map_err(|e| LifecycleError::internal(format!("sandbox {id}: its network"), e))?;
        }
        let rec = {
            let mut rec = lock(&live.rec);
            rec.allow_internet_access = allow_internet_access;
            rec.network = Some(request);
            rec.clone()
        };
        self.store.put_sandbox(&rec)?;
        Ok(())
    }

    /// Kills every live sandbox (server shutdown).
    pub(crate) async fn kill_all(&self) {
        {
            let _creating = lock(&self.creating);
            self.closing.store(true, Ordering::SeqCst);
        }
        // A restart's reclaim still under way finishes first, so nothing of it is left; a
        // restore it has started kills its sandbox once booted (`closing`).
        self.recovered().await;
        // Creates admitted before `closing` finish first, so they are killed below; later
        // ones were refused.
        let deadline = Instant::now() + SHUTDOWN_CREATE_WAIT;
        while *lock(&self.creating) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let ids: Vec<String> = self.all().iter().map(|l| l.record().id).collect();
        for id in ids {
            if let Err(e) = self.kill(&id).await {
                tracing::warn!("shutdown: {e}");
            }
        }
        self.kill_builds().await;
    }
}
