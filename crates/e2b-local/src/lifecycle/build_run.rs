//! Running a template build: each file-changing step in a build sandbox of its own (the
//! same isolation as any sandbox, with the server's network when it has one) stacked on the
//! layers before it, its output streamed into the build's log line by line; what it changed
//! becomes a layer under the step's cache key. Also the start and ready commands a built
//! template's sandboxes run when they boot.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;

use super::builds::{BuildPlan, MAX_LOG_ENTRIES};
use super::{LifecycleError, Manager, lock};
use crate::isolation::{ExecOptions, InitProgram, SandboxHandle, SandboxSpec};
use crate::network::rules::EgressRules;
use crate::state::{BuildFailure, BuildImage, BuildLogEntry, BuildRecord, BuildStatus};
use crate::template::Template;
use crate::template::layers::Layers;
use crate::template::oci;
use crate::template::steps::{self, RawStep, Step};

/// Why a build failed when the server stopped it.
const SHUT_DOWN: &str = "the server shut down during the build";

/// Where a COPY step's archive is put inside the build sandbox (removed by the step).
const COPY_STAGING: &str = ".e2b-build";

/// The step name E2B's SDKs map to the template's base.
const BASE_STEP: &str = "base";

/// The step name of what follows the last step.
const FINALIZE_STEP: &str = "finalize";

/// Runs a COPY inside the build sandbox as root: unpacks the archive, places the matching
/// files as Docker's COPY does (a directory's contents go into `dest`; several sources or a
/// `dest` ending in `/` or naming a directory mean "into"), then sets owner and mode.
/// Arguments: src, dest, owner, mode (may be empty).
const COPY_SCRIPT: &str = r#"set -eu
src=$1; dest=$2; owner=$3; mode=$4
stage=/.e2b-build
mkdir -p "$stage/ctx"
tar -xf "$stage/files.tar" -C "$stage/ctx" --no-same-owner
cd "$stage/ctx"
set --
for f in $src; do
  if [ -e "$f" ] || [ -L "$f" ]; then set -- "$@" "$f"; fi
done
if [ $# -eq 0 ]; then
  echo "COPY: nothing matches '$src' in the uploaded files" >&2
  exit 1
fi
into=0
case "$dest" in */) into=1 ;; esac
if [ $# -gt 1 ] || [ -d "$dest" ]; then into=1; fi
for f in "$@"; do
  if [ -d "$f" ] && [ ! -L "$f" ]; then
    mkdir -p "$dest"
    cp -a "$f/." "$dest/"
    placed=$dest
  elif [ "$into" = 1 ]; then
    mkdir -p "$dest"
    cp -a "$f" "$dest/"
    placed="$dest/$(basename "$f")"
  else
    mkdir -p "$(dirname "$dest")"
    cp -a "$f" "$dest"
    placed=$dest
  fi
  case "$owner" in *:*) ;; *) owner="$owner:" ;; esac
  case "$owner" in *:*) ;; *) owner="$owner:" ;; esac
  chown -R "$owner" "$placed"
  if [ -n "$mode" ]; then
    find "$placed" -type f -exec chmod "$mode" {} +
  fi
done
cd /
rm -rf "$stage"
"#;

/// Makes a WORKDIR as root when it is missing, owned by the build's user.
const WORKDIR_SCRIPT: &str = r#"set -eu
if [ ! -d "$1" ]; then mkdir -p "$1"; chown "$2:" "$1"; fi
"#;

/// A running build's log and where it is.
#[derive(Debug, Default)]
pub(crate) struct BuildLog {
    entries: Mutex<(Vec<BuildLogEntry>, usize)>,
}

impl BuildLog {
    fn push(&self, level: &str, step: Option<&str>, message: impl Into<String>) {
        let mut g = lock(&self.entries);
        if g.0.len() >= MAX_LOG_ENTRIES {
            g.1 += 1;
            return;
        }
        g.0.push(BuildLogEntry {
            timestamp: Utc::now(),
            level: level.to_owned(),
            message: message.into(),
            step: step.map(str::to_owned),
        });
    }

    /// The entries so far.
    pub(super) fn entries(&self) -> Vec<BuildLogEntry> {
        lock(&self.entries).0.clone()
    }

    fn take(&self) -> Vec<BuildLogEntry> {
        let mut g = lock(&self.entries);
        let dropped = g.1;
        if dropped > 0 {
            g.0.push(BuildLogEntry {
                timestamp: Utc::now(),
                level: "warn".into(),
                message: format!(
                    "{dropped} more log lines were not kept (limit {MAX_LOG_ENTRIES})"
                ),
                step: None,
            });
        }
        g.0.clone()
    }
}

/// A step's failure: message and log lines.
struct StepFailed(String);

/// The settings a build carries from step to step.
#[derive(Debug, Clone)]
struct BuildState {
    env: Vec<(String, String)>,
    user: String,
    workdir: String,
}

impl Manager {
    /// Starts build `b` in the background.
    pub(crate) fn start_build(
        self: &Arc<Self>,
        mut b: BuildRecord,
        plan: BuildPlan,
    ) -> Result<(), LifecycleError> {
        if b.status != BuildStatus::Waiting {
            return Err(LifecycleError::BuildConflict(format!(
                "build {} was already started",
                b.id
            )));
        }
        b.status = BuildStatus::Building;
        b.base_build = plan.base.build.clone();
        self.store.put_build(&b)?;
        let log = Arc::new(BuildLog::default());
        lock(&self.builds.logs).insert(b.id.clone(), log.clone());
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.run_build(&b, plan, &log).await;
            b.finished_at = Some(Utc::now());
            match result {
                Ok(image) => {
                    log.push("info", Some(FINALIZE_STEP), "Build finished");
                    b.status = BuildStatus::Ready;
                    b.image = Some(image);
                }
                Err(failure) => {
                    log.push("error", failure.step.as_deref(), failure.message.clone());
                    b.status = BuildStatus::Error;
                    b.reason = Some(failure);
                }
            }
            b.logs = log.take();
            if let Err(e) = this.finish_build(&b) {
                tracing::warn!(build = %b.id, "storing the build's end: {e}");
            }
            // Recorded now (or failed): a later collection decides.
            lock(&this.builds.pinned).remove(&b.id);
            lock(&this.builds.logs).remove(&b.id);
        });
        Ok(())
    }

    /// Stores a finished build, and on success points its tags at it.
    fn finish_build(&self, b: &BuildRecord) -> Result<(), LifecycleError> {
        self.store.put_build(b)?;
        if b.status == BuildStatus::Ready {
            let _naming = lock(&self.builds.naming);
            if let Some(mut t) = self.built_template(&b.template_id)? {
                for tag in &b.tags {
                    t.tags.insert(tag.clone(), b.id.clone());
                }
                t.updated_at = Utc::now();
                self.store.put_built_template(&t)?;
            }
        }
        Ok(())
    }

    async fn run_build(
        self: &Arc<Self>,
        b: &BuildRecord,
        mut plan: BuildPlan,
        log: &BuildLog,
    ) -> Result<BuildImage, BuildFailure> {
        if let Some(source) = plan.base.pull.take() {
            let pin = |key: &str| {
                lock(&self.builds.pinned)
                    .entry(b.id.clone())
                    .or_default()
                    .insert(key.to_owned());
            };
            let say = |line: String| log.push("info", Some(BASE_STEP), line);
            let pulled = oci::pull(&self.layers, self.runtime.data_dir(), &source, &say, &pin)
                .await
                .map_err(|e| failure(Some(BASE_STEP), e))?;
            plan.base.key = format!("image:{}", pulled.digest);
            plan.base.image.layers = pulled.layers;
            plan.base.image.env = pulled.env;
            plan.base.image.user = pulled.user;
            plan.base.image.workdir = pulled.workdir;
            // A numeric `User` (`1000`): envd and the steps run commands as a named user.
            let uid = plan.base.image.user.clone();
            if uid.bytes().all(|c| c.is_ascii_digit()) {
                let template = self
                    .template_of_build(&b.template_id, &plan.base.image)
                    .map_err(|e| failure(Some(BASE_STEP), e.to_string()))?;
                plan.base.image.user = passwd_text_on_host(&template)
                    .and_then(|text| passwd_name_of(&text, &uid))
                    .ok_or_else(|| {
                        failure(
                            Some(BASE_STEP),
                            format!("the image's User '{uid}' has no account in its /etc/passwd (commands run as a named user)"),
                        )
                    })?;
            }
        }
        let n = plan.steps.len();
        log.push(
            "info",
            Some(BASE_STEP),
            format!("Building template from {} with {n} steps", plan.base.key),
        );
        let mut image = plan.base.image.clone();
        let mut state = BuildState {
            env: image.env.clone(),
            user: image.user.clone(),
            workdir: image.workdir.clone(),
        };
        let mut key = if plan.force {
            format!("{}#{}", plan.base.key, b.id)
        } else {
            plan.base.key.clone()
        };
        for (i, (raw, step)) in plan.steps.iter().enumerate() {
            let name = (i + 1).to_string();
            let step_name = Some(name.as_str());
            key = steps::chain_key(&key, raw.raw());
            if raw.force {
                key = steps::chain_key(
                    &key,
                    RawStep {
                        kind: "force",
                        args: &[],
                        files_hash: Some(&b.id),
                    },
                );
            }
            let shown = format!("[{}/{n}] {} {}", i + 1, raw.kind, raw.args.join(" "));
            match step {
                Step::Env(vars) => {
                    for (k, v) in vars {
                        state.env.retain(|(name, _)| name != k);
                        state.env.push((k.clone(), v.clone()));
                    }
                    log.push("info", step_name, shown);
                    continue;
                }
                Step::User(u) => {
                    state.user = u.clone();
                    log.push("info", step_name, shown);
                    continue;
                }
                Step::Workdir(d) => {
                    state.workdir = resolve(&state.workdir, d);
                }
                Step::Run { .. } | Step::Copy { .. } => {}
            }
            lock(&self.builds.pinned)
                .entry(b.id.clone())
                .or_default()
                .insert(key.clone());
            if self.layers.exists(&key) {
                log.push("info", step_name, format!("CACHED {shown}"));
                image.layers.push(key.clone());
                continue;
            }
            log.push("info", step_name, shown);
            let template = self
                .template_of_build(&b.template_id, &image)
                .map_err(|e| failure(step_name, e.to_string()))?;
            match self.run_step(&template, step, &state, log, step_name).await {
                Ok(partial) => {
                    self.layers.commit(&partial, &key).map_err(|e| {
                        failure(step_name, format!("storing the step's layer: {e}"))
                    })?;
                    image.layers.push(key.clone());
                }
                Err(StepFailed(message)) => return Err(failure(step_name, message)),
            }
        }
        image.env = state.env;
        image.user = state.user;
        image.workdir = state.workdir;
        image.start_cmd = plan.start_cmd;
        image.ready_cmd = plan.ready_cmd;
        Ok(image)
    }

    /// Runs one file-changing step in a fresh build sandbox over `template` and returns the
    /// partial layer it made.
    async fn run_step(
        self: &Arc<Self>,
        template: &Template,
        step: &Step,
        state: &BuildState,
        log: &BuildLog,
        step_name: Option<&str>,
    ) -> Result<PathBuf, StepFailed> {
        if self.closing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StepFailed(SHUT_DOWN.into()));
        }
        let id = format!("build-{}", crate::state::random_hex(8));
        let handle = self
            .spawn_build_sandbox(&id, template)
            .await
            .map_err(|e| StepFailed(format!("starting the build sandbox: {e}")))?;
        lock(&self.builds.sandboxes).insert(id.clone(), handle.clone());
        // A build sandbox has no egress proxy settings that could fail: the tracing log is
        // enough for the rest.
        let logger: crate::network::proxy::SandboxLogger = Arc::new(|level, line| {
            if level <= tracing::Level::WARN {
                tracing::warn!(target: "e2b_local::build", "{line}");
            } else {
                tracing::debug!(target: "e2b_local::build", "{line}");
            }
        });
        let network = match self
            .attach_network(&handle, &EgressRules::default(), logger)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                self.end_build_sandbox(&id, &handle, None).await;
                return Err(StepFailed(format!("the build sandbox's network: {e}")));
            }
        };
        let spawned = spawn_writes(&handle.upper_dir());
        let ran = self
            .step_in(&handle, template, step, state, log, step_name)
            .await;
        let result = match ran {
            Ok(()) => self.capture(&handle, template, &spawned).await,
            Err(e) => Err(e),
        };
        // Shutdown kills build sandboxes: whatever failed then failed because of it.
        let result = match result {
            Err(_) if self.closing.load(std::sync::atomic::Ordering::SeqCst) => {
                Err(StepFailed(SHUT_DOWN.into()))
            }
            other => other,
        };
        self.end_build_sandbox(&id, &handle, network).await;
        result
    }

    async fn spawn_build_sandbox(
        self: &Arc<Self>,
        id: &str,
        template: &Template,
    ) -> Result<Arc<SandboxHandle>, String> {
        let this = self.clone();
        let id = id.to_owned();
        let template = template.clone();
        tokio::task::spawn_blocking(move || {
            let mut init = InitProgram::self_exe(["envd"]);
            init.env.push((
                crate::envd_role::ROLE_ENV.into(),
                crate::envd_role::ENVD_ROLE.into(),
            ));
            init.env.push(("HOME".into(), "/root".into()));
            let mut spec = SandboxSpec::new(id, &template, init);
            spec.limits = this.config.limits;
            // Layers are renamed out of the upper directories: no disk image.
            spec.limits.disk_bytes = None;
            spec.nameserver = this.networks.as_ref().map(|n| n.dns_address());
            spec.trusted_ca = this.trusted_ca.clone();
            this.runtime
                .spawn(spec)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    async fn end_build_sandbox(
        &self,
        id: &str,
        handle: &Arc<SandboxHandle>,
        network: Option<crate::network::SandboxNetwork>,
    ) {
        let h = handle.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || h.kill()).await {
            tracing::warn!(sandbox = id, "removing a build sandbox: {e}");
        }
        if let (Some(networks), Some(net)) = (&self.networks, network) {
            networks.detach(&net).await;
        }
        lock(&self.builds.sandboxes).remove(id);
    }

    /// Kills every build sandbox (at shutdown) and waits (up to 10 s) until their builds
    /// have recorded that they failed. A sandbox a build was spawning meanwhile is killed
    /// once it is registered; no new one starts (`closing` is set).
    pub(crate) async fn kill_builds(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let all: Vec<Arc<SandboxHandle>> =
                lock(&self.builds.sandboxes).values().cloned().collect();
            for h in all {
                let _ = tokio::task::spawn_blocking(move || h.kill()).await;
            }
            if lock(&self.builds.logs).is_empty() || std::time::Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    async fn step_in(
        &self,
        handle: &Arc<SandboxHandle>,
        template: &Template,
        step: &Step,
        state: &BuildState,
        log: &BuildLog,
        step_name: Option<&str>,
    ) -> Result<(), StepFailed> {
        match step {
            Step::Run { cmd, user } => {
                let user = user.as_deref().unwrap_or(&state.user);
                let opts = exec_options(handle, template, user, &state.env, &state.workdir).await?;
                run_streamed(handle, &["/bin/sh", "-c", cmd], &opts, log, step_name).await
            }
            Step::Copy {
                src,
                dest,
                owner,
                mode,
                files_hash,
            } => {
                let staging = handle.upper_dir().join(COPY_STAGING);
                let archive = self.files_path(files_hash);
                std::fs::create_dir(&staging)
                    .and_then(|()| std::fs::copy(&archive, staging.join("files.tar")))
                    .map_err(|e| StepFailed(format!("staging the uploaded files: {e}")))?;
                let dest = resolve(&state.workdir, dest);
                let owner = owner.clone().unwrap_or_else(|| state.user.clone());
                let mode = mode.map(|m| format!("{m:o}")).unwrap_or_default();
                let opts = exec_options(handle, template, "root", &state.env, "/").await?;
                run_streamed(
                    handle,
                    &[
                        "/bin/sh",
                        "-c",
                        COPY_SCRIPT,
                        "copy",
                        src,
                        &dest,
                        &owner,
                        &mode,
                    ],
                    &opts,
                    log,
                    step_name,
                )
                .await
            }
            Step::Workdir(_) => {
                let opts = exec_options(handle, template, "root", &state.env, "/").await?;
                run_streamed(
                    handle,
                    &[
                        "/bin/sh",
                        "-c",
                        WORKDIR_SCRIPT,
                        "workdir",
                        &state.workdir,
                        &state.user,
                    ],
                    &opts,
                    log,
                    step_name,
                )
                .await
            }
            Step::Env(_) | Step::User(_) => Ok(()),
        }
    }

    /// Moves what the step changed into a partial layer, without the files every sandbox
    /// gets written at its start (unless the step changed them).
    async fn capture(
        &self,
        handle: &Arc<SandboxHandle>,
        template: &Template,
        spawned: &SpawnWrites,
    ) -> Result<PathBuf, StepFailed> {
        let partial = self
            .layers
            .partial()
            .map_err(|e| StepFailed(format!("making the layer directory: {e}")))?;
        let targets: Vec<PathBuf> = template.layers.iter().map(|l| l.target.clone()).collect();
        let h = handle.clone();
        let to = partial.clone();
        let moved = tokio::task::spawn_blocking(move || h.take_uppers(&targets, &to))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = moved {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(StepFailed(format!("taking the step's changes: {e}")));
        }
        spawned.remove_from(&Layers::part(&partial, Path::new("/")));
        // A part with nothing in it is no change: not stacking it saves every lookup under
        // its target a directory.
        for layer in &template.layers {
            let part = Layers::part(&partial, &layer.target);
            if std::fs::read_dir(&part).is_ok_and(|mut d| d.next().is_none()) {
                let _ = std::fs::remove_dir(&part);
            }
        }
        Ok(partial)
    }
}

fn failure(step: Option<&str>, message: String) -> BuildFailure {
    BuildFailure {
        message,
        step: step.map(str::to_owned),
    }
}

/// `dir` taken from `cwd` when relative.
fn resolve(cwd: &str, dir: &str) -> String {
    if dir.starts_with('/') {
        dir.to_owned()
    } else {
        format!("{}/{dir}", cwd.trim_end_matches('/'))
    }
}

/// What spawn wrote into a build sandbox's root upper directory, as it was right after
/// spawn: the per-sandbox files (relative path, content) and the directories made for them
/// (relative path, inode, mtime). A step that does not touch them leaves them as they were,
/// and they are removed from its layer: every sandbox gets its own.
#[derive(Debug, Default)]
struct SpawnWrites {
    files: Vec<(PathBuf, Vec<u8>)>,
    dirs: Vec<(PathBuf, u64, i64, i64)>,
}

use crate::isolation::{SPAWN_DIRS, SPAWN_FILES};

fn dir_stamp(p: &Path) -> Option<(u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt as _;
    let md = std::fs::symlink_metadata(p).ok().filter(|m| m.is_dir())?;
    Some((md.ino(), md.mtime(), md.mtime_nsec()))
}

fn spawn_writes(upper: &Path) -> SpawnWrites {
    SpawnWrites {
        files: SPAWN_FILES
            .iter()
            .filter_map(|rel| Some((PathBuf::from(rel), std::fs::read(upper.join(rel)).ok()?)))
            .collect(),
        dirs: SPAWN_DIRS
            .iter()
            .filter_map(|rel| {
                let (ino, s, ns) = dir_stamp(&upper.join(rel))?;
                Some((PathBuf::from(rel), ino, s, ns))
            })
            .collect(),
    }
}

impl SpawnWrites {
    /// Removes from `root` (a layer's `/` part) what spawn wrote and the step left alone,
    /// then the part itself when nothing is left: an empty part is no change.
    fn remove_from(&self, root: &Path) {
        // Directories the step did not touch (same inode, same mtime), decided before our
        // own removals change their mtime.
        let untouched: Vec<&PathBuf> = self
            .dirs
            .iter()
            .filter(|(rel, ino, s, ns)| dir_stamp(&root.join(rel)) == Some((*ino, *s, *ns)))
            .map(|(rel, ..)| rel)
            .collect();
        for (rel, before) in &self.files {
            let p = root.join(rel);
            if std::fs::read(&p).ok().as_ref() == Some(before) {
                let _ = std::fs::remove_file(&p);
            }
        }
        for rel in untouched.into_iter().rev() {
            // Fails (and is kept) when not empty.
            let _ = std::fs::remove_dir(root.join(rel));
        }
    }
}

/// A `/etc/passwd` line's uid, gid and home.
type PasswdEntry = (u32, u32, String);

/// `user`'s entry in `passwd` text.
fn passwd_lookup(passwd: &str, user: &str) -> Option<PasswdEntry> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.first() != Some(&user) {
            return None;
        }
        Some((
            f.get(2)?.parse().ok()?,
            f.get(3)?.parse().ok()?,
            (*f.get(5)?).to_owned(),
        ))
    })
}

/// `user`'s entry read on the host from the topmost root layer holding `etc/passwd`, with
/// no symlink followed (a build step may have made it a link to a host file): saves an exec
/// per step. `None` when it cannot be read that way (a whiteout, a link, no such user); the
/// caller then asks the sandbox.
fn passwd_on_host(template: &Template, user: &str) -> Option<PasswdEntry> {
    passwd_text_on_host(template).and_then(|text| passwd_lookup(&text, user))
}

/// The name of the account with uid `uid` in `passwd` text.
fn passwd_name_of(passwd: &str, uid: &str) -> Option<String> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.get(2) == Some(&uid)).then(|| f[0].to_owned())
    })
}

/// The topmost root layer's `etc/passwd` (see [`passwd_on_host`]).
fn passwd_text_on_host(template: &Template) -> Option<String> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
    let root = template
        .layers
        .iter()
        .find(|l| l.target == Path::new("/"))?;
    for lower in &root.lowers {
        let Ok(dir) = std::fs::File::open(lower) else {
            return None;
        };
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK)
            .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_BENEATH);
        match openat2(&dir, "etc/passwd", how) {
            Ok(fd) => {
                let file = std::fs::File::from(fd);
                if !file.metadata().ok()?.is_file() {
                    return None;
                }
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::Read::take(file, 1 << 20), &mut text)
                    .ok()?;
                return Some(text);
            }
            Err(nix::errno::Errno::ENOENT) => {}
            Err(_) => return None,
        }
    }
    None
}

/// The uid, gid and home of `user` in a sandbox of `template`, and the environment a
/// command there gets.
async fn exec_options(
    handle: &Arc<SandboxHandle>,
    template: &Template,
    user: &str,
    env: &[(String, String)],
    cwd: &str,
) -> Result<ExecOptions, StepFailed> {
    let entry = match user {
        "root" => Some((0, 0, "/root".to_owned())),
        _ => passwd_on_host(template, user),
    };
    let (uid, gid, home) = match entry {
        Some(e) => e,
        None => {
            let h = handle.clone();
            let name = user.to_owned();
            let out = tokio::task::spawn_blocking(move || {
                h.exec_in(&["getent", "passwd", &name], &ExecOptions::default())
            })
            .await
            .map_err(|e| StepFailed(e.to_string()))?
            .map_err(|e| StepFailed(format!("looking up user '{user}': {e}")))?;
            passwd_lookup(&String::from_utf8_lossy(&out.stdout), user).ok_or_else(|| {
                StepFailed(format!("user '{user}' does not exist in the template"))
            })?
        }
    };
    let mut vars = vec![
        (
            "PATH".to_owned(),
            crate::isolation::exec::DEFAULT_PATH.to_owned(),
        ),
        ("HOME".to_owned(), home),
        ("USER".to_owned(), user.to_owned()),
    ];
    for (k, v) in env {
        vars.retain(|(name, _)| name != k);
        vars.push((k.clone(), v.clone()));
    }
    Ok(ExecOptions {
        uid,
        gid,
        env: vars,
        cwd: PathBuf::from(cwd),
        no_new_privs: false,
    })
}

/// Runs `argv` in the build sandbox, each output line a log entry; fails on a non-zero exit.
async fn run_streamed(
    handle: &Arc<SandboxHandle>,
    argv: &[&str],
    opts: &ExecOptions,
    log: &BuildLog,
    step_name: Option<&str>,
) -> Result<(), StepFailed> {
    let mut child = handle
        .spawn_in(argv, opts)
        .map_err(|e| StepFailed(format!("starting the step: {e}")))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(bool, String)>();
    let readers: Vec<std::thread::JoinHandle<()>> = [
        child
            .stdout
            .take()
            .map(|s| (false, Box::new(s) as Box<dyn std::io::Read + Send>)),
        child
            .stderr
            .take()
            .map(|s| (true, Box::new(s) as Box<dyn std::io::Read + Send>)),
    ]
    .into_iter()
    .flatten()
    .map(|(is_err, pipe)| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).split(b'\n').map_while(Result::ok) {
                let _ = tx.send((is_err, String::from_utf8_lossy(&line).into_owned()));
            }
        })
    })
    .collect();
    drop(tx);
    let mut last_err = Vec::new();
    while let Some((is_err, line)) = rx.recv().await {
        if is_err {
            last_err.push(line.clone());
            if last_err.len() > 5 {
                last_err.remove(0);
            }
        }
        log.push("info", step_name, line);
    }
    let status = tokio::task::spawn_blocking(move || {
        for r in readers {
            let _ = r.join();
        }
        child.wait()
    })
    .await
    .map_err(|e| StepFailed(e.to_string()))?
    .map_err(|e| StepFailed(format!("waiting for the step: {e}")))?;
    match status.code() {
        Some(0) => Ok(()),
        code => {
            let code = code.map_or_else(|| "a signal".to_owned(), |c| format!("exit code {c}"));
            let tail = if last_err.is_empty() {
                String::new()
            } else {
                format!(": {}", last_err.join("\n"))
            };
            Err(StepFailed(format!("the step failed with {code}{tail}")))
        }
    }
}

/// How long a create waits for a template's ready command to succeed.
pub(super) const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// For a sandbox of a built template: starts its start command in the background (as the
/// template's user, in its workdir, output into the sandbox's log) and polls its ready
/// command until it exits 0.
///
/// # Errors
///
/// `Internal` naming the command when it cannot start, or the ready command does not
/// succeed within [`READY_TIMEOUT`] (with its last output).
pub(super) async fn start_and_wait_ready(
    handle: &Arc<SandboxHandle>,
    image: &BuildImage,
    env_vars: &BTreeMap<String, String>,
    log: &super::SandboxLog,
    built: (&str, &Template),
) -> Result<(), LifecycleError> {
    if image.start_cmd.is_none() && image.ready_cmd.is_none() {
        return Ok(());
    }
    let (template, layers) = built;
    let env: Vec<(String, String)> = env_vars
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let opts = exec_options(handle, layers, &image.user, &env, &image.workdir)
        .await
        .map_err(|StepFailed(e)| LifecycleError::internal(format!("template '{template}'"), e))?;
    if let Some(cmd) = &image.start_cmd {
        let mut child = handle
            .spawn_in(&["/bin/sh", "-c", cmd], &opts)
            .map_err(|e| {
                LifecycleError::internal(format!("template '{template}': its start command"), e)
            })?;
        let fifo = log.fifo().to_owned();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                if let Ok(mut out) = std::fs::OpenOptions::new().write(true).open(&fifo) {
                    let _ = std::io::copy(&mut pipe, &mut out);
                }
            });
        }
        // Reaped when it ends (with the sandbox at the latest).
        std::thread::spawn(move || child.wait());
    }
    let Some(ready) = image.ready_cmd.clone() else {
        return Ok(());
    };
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        let h = handle.clone();
        let (o, r) = (opts.clone(), ready.clone());
        let out = tokio::task::spawn_blocking(move || h.exec_in(&["/bin/sh", "-c", &r], &o))
            .await
            .map_err(|e| LifecycleError::internal(format!("template '{template}'"), e))?
            .map_err(|e| {
                LifecycleError::internal(format!("template '{template}': its ready command"), e)
            })?;
        if out.status.success() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline || !handle.is_running() {
            let said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            return Err(LifecycleError::internal(
                format!(
                    "template '{template}': its ready command `{ready}` did not succeed within {} s",
                    READY_TIMEOUT.as_secs()
                ),
                format!("last exit {:?}: {said}", out.status.code()),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::TemplateLayer;

    #[test]
    fn a_numeric_user_is_named_by_its_passwd_entry() {
        let passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
        assert_eq!(passwd_name_of(passwd, "1000"), Some("app".to_owned()));
        assert_eq!(passwd_name_of(passwd, "0"), Some("root".to_owned()));
        assert_eq!(passwd_name_of(passwd, "7"), None);
    }

    #[test]
    fn passwd_is_read_from_the_topmost_layer_without_following_links() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let (top, mid, bottom) = (
            tmp.path().join("top"),
            tmp.path().join("mid"),
            tmp.path().join("bottom"),
        );
        for d in [&top, &mid, &bottom] {
            std::fs::create_dir_all(d.join("etc")).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(
            mid.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nbob:x:1001:1002::/home/bob:/bin/sh\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(bottom.join("etc/passwd"), "bob:x:7:7::/old:/bin/sh\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let template = |lowers: Vec<PathBuf>| Template {
            name: "t".into(),
            layers: vec![TemplateLayer {
                target: "/".into(),
                lowers,
            }],
        };
        let t = template(vec![top.clone(), mid.clone(), bottom.clone()]);
        assert_eq!(
            passwd_on_host(&t, "bob"),
            Some((1001, 1002, "/home/bob".into()))
        );
        assert_eq!(passwd_on_host(&t, "nobody"), None);
        // A step made /etc/passwd a link (to a host file, say): not followed.
        std::os::unix::fs::symlink("/etc/hostname", top.join("etc/passwd"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(passwd_on_host(&t, "bob"), None);
        std::fs::remove_file(top.join("etc/passwd")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::remove_dir(top.join("etc")).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink("/etc", top.join("etc")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(passwd_on_host(&t, "root"), None);
    }
}
