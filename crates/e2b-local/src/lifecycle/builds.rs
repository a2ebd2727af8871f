//! Template builds: each file-changing step runs in a build sandbox of its own (the same
//! isolation as any sandbox, with the server's network when it has one) stacked on the
//! layers before it; what the step changed becomes a read-only layer, kept under its cache
//! key so an unchanged step is never run twice. ENV, USER and WORKDIR change the build's
//! settings; the last ones become the defaults of the template's sandboxes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;

use super::{LifecycleError, Manager, lock};
use crate::isolation::{ExecOptions, InitProgram, SandboxHandle, SandboxSpec};
use crate::network::rules::EgressRules;
use crate::state::{
    BuildFailure, BuildImage, BuildLogEntry, BuildRecord, BuildStatus, BuiltTemplate, DEFAULT_TAG,
};
use crate::template::layers::Layers;
use crate::template::steps::{self, RawStep, Step};
use crate::template::{BASE, Template};

/// Most log entries a build keeps; later lines are counted, not stored.
pub(crate) const MAX_LOG_ENTRIES: usize = 20_000;
/// The user build steps and sandboxes run as until a USER step says otherwise (E2B's).
pub(crate) const DEFAULT_USER: &str = "user";
/// The working directory until a WORKDIR step says otherwise (E2B's).
pub(crate) const DEFAULT_WORKDIR: &str = "/home/user";
/// The image name E2B's SDKs build on by default; here it means the `base` template.
const E2B_BASE_IMAGE: &str = "e2bdev/base";
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

/// A build's start request, checked.
#[derive(Debug, Clone)]
pub(crate) struct BuildPlan {
    /// The template the build starts from, resolved.
    pub(crate) base: BaseOf,
    /// Steps as sent (for cache keys) and checked.
    pub(crate) steps: Vec<(RawStepOwned, Step)>,
    /// `force`: rebuild every step.
    pub(crate) force: bool,
    /// `startCmd`.
    pub(crate) start_cmd: Option<String>,
    /// `readyCmd`.
    pub(crate) ready_cmd: Option<String>,
}

/// A step as sent, owned.
#[derive(Debug, Clone)]
pub(crate) struct RawStepOwned {
    /// `type`.
    pub(crate) kind: String,
    /// `args`.
    pub(crate) args: Vec<String>,
    /// `filesHash`.
    pub(crate) files_hash: Option<String>,
    /// `force`: rebuild this step (and so every later one).
    pub(crate) force: bool,
}

/// A build's start request (`TemplateBuildStartV2`), as the API read it.
#[derive(Debug, Clone)]
pub(crate) struct BuildRequest {
    /// `fromTemplate`.
    pub(crate) from_template: Option<String>,
    /// `fromImage`.
    pub(crate) from_image: Option<String>,
    /// `steps`.
    pub(crate) steps: Vec<RawStepOwned>,
    /// `force`.
    pub(crate) force: bool,
    /// `startCmd`.
    pub(crate) start_cmd: Option<String>,
    /// `readyCmd`.
    pub(crate) ready_cmd: Option<String>,
}

impl RawStepOwned {
    fn raw(&self) -> RawStep<'_> {
        RawStep {
            kind: &self.kind,
            args: &self.args,
            files_hash: self.files_hash.as_deref(),
        }
    }
}

/// What a build stands on.
#[derive(Debug, Clone)]
pub(crate) struct BaseOf {
    /// The image below the new steps (a built-in template has no layers).
    pub(crate) image: BuildImage,
    /// Identifies that image in cache keys.
    pub(crate) key: String,
    /// The build of another template it is, if it is one.
    pub(crate) build: Option<String>,
}

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

/// Builds under way: their logs, and the build sandboxes to kill at shutdown.
#[derive(Debug, Default)]
pub(crate) struct Builds {
    logs: Mutex<HashMap<String, Arc<BuildLog>>>,
    sandboxes: Mutex<HashMap<String, Arc<SandboxHandle>>>,
    /// Layers builds under way use and have not recorded yet, by build (never collected).
    pinned: Mutex<HashMap<String, HashSet<String>>>,
    /// Serializes a template's creation by name.
    naming: Mutex<()>,
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
    /// The built template named `name` or with id `name`.
    pub(crate) fn built_template(
        &self,
        name: &str,
    ) -> Result<Option<BuiltTemplate>, LifecycleError> {
        Ok(self
            .store
            .built_templates()?
            .into_iter()
            .find(|t| t.name == name || t.id == name))
    }

    /// The ready build `reference` (`name`, `name:tag`, `id` or `id:tag`) points at.
    pub(crate) fn tagged_build(
        &self,
        reference: &str,
    ) -> Result<Option<(BuiltTemplate, BuildRecord)>, LifecycleError> {
        let (name, tag) = reference
            .split_once(':')
            .unwrap_or((reference, DEFAULT_TAG));
        let Some(t) = self.built_template(name)? else {
            return Ok(None);
        };
        let Some(build_id) = t.tags.get(tag).cloned() else {
            return Err(LifecycleError::InvalidBuild(if t.tags.is_empty() {
                format!("template '{name}' has no successful build yet")
            } else {
                format!("template '{name}' has no tag '{tag}'")
            }));
        };
        let build = self.store.build(&build_id)?.filter(|b| b.image.is_some());
        Ok(build.map(|b| (t, b)))
    }

    /// The runnable template of a ready build.
    pub(crate) fn template_of_build(
        &self,
        name: &str,
        image: &BuildImage,
    ) -> Result<Template, LifecycleError> {
        let base = self.builtin_template(&image.base)?;
        Ok(self.layers.stack(base, name, &image.layers))
    }

    /// `POST /v3/templates`: the template `name` (made when new) and a new waiting build.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a bad name or tag; `Store`.
    pub(crate) fn request_build(
        &self,
        name: &str,
        tags: Vec<String>,
        cpu_count: Option<u32>,
        memory_mb: Option<u64>,
    ) -> Result<(BuiltTemplate, BuildRecord), LifecycleError> {
        let (name, mut tags) = match name.split_once(':') {
            Some((n, t)) => (n, {
                let mut all = vec![t.to_owned()];
                all.extend(tags);
                all
            }),
            None => (name, tags),
        };
        check_name(name)?;
        if tags.is_empty() {
            tags.push(DEFAULT_TAG.to_owned());
        }
        for t in &tags {
            check_tag(t)?;
        }
        let _naming = lock(&self.builds.naming);
        let now = Utc::now();
        let mut t = match self.built_template(name)? {
            Some(t) => t,
            None => BuiltTemplate {
                id: super::ids::new_template_id(),
                name: name.to_owned(),
                created_at: now,
                updated_at: now,
                public: false,
                cpu_count: None,
                memory_mb: None,
                tags: BTreeMap::new(),
                spawn_count: 0,
                last_spawned_at: None,
            },
        };
        if cpu_count.is_some() {
            t.cpu_count = cpu_count;
        }
        if memory_mb.is_some() {
            t.memory_mb = memory_mb;
        }
        self.store.put_built_template(&t)?;
        let b = BuildRecord {
            id: uuid::Uuid::new_v4().to_string(),
            template_id: t.id.clone(),
            status: BuildStatus::Waiting,
            created_at: now,
            finished_at: None,
            tags,
            base_build: None,
            reason: None,
            image: None,
            logs: Vec::new(),
        };
        self.store.put_build(&b)?;
        Ok((t, b))
    }

    /// Checks a build's start request: base, steps, uploaded files.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming what is wrong; `TemplateNotFound` for an unknown base.
    pub(crate) fn plan_build(&self, req: BuildRequest) -> Result<BuildPlan, LifecycleError> {
        let BuildRequest {
            from_template,
            from_image,
            steps: raw_steps,
            force,
            start_cmd,
            ready_cmd,
        } = req;
        if raw_steps.len() > steps::MAX_STEPS {
            return Err(LifecycleError::InvalidBuild(format!(
                "steps: {} steps is more than the {} a build may have",
                raw_steps.len(),
                steps::MAX_STEPS
            )));
        }
        let base = match (from_template.as_deref(), from_image.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(LifecycleError::InvalidBuild(
                    "give fromTemplate or fromImage, not both".into(),
                ));
            }
            (Some(t), None) => self.base_of(t)?,
            (None, Some(image)) => {
                let repo = image.split([':', '@']).next().unwrap_or(image);
                if repo != E2B_BASE_IMAGE && repo != format!("docker.io/{E2B_BASE_IMAGE}") {
                    return Err(LifecycleError::InvalidBuild(format!(
                        "fromImage '{image}': e2b-local does not pull OCI images yet; build from a template (fromTemplate, e.g. \"base\") instead"
                    )));
                }
                self.base_of(BASE)?
            }
            (None, None) => {
                return Err(LifecycleError::InvalidBuild(
                    "fromTemplate or fromImage is required".into(),
                ));
            }
        };
        let mut checked = Vec::with_capacity(raw_steps.len());
        for (i, raw) in raw_steps.into_iter().enumerate() {
            let step = steps::parse(i, raw.raw())
                .map_err(|e| LifecycleError::InvalidBuild(e.to_string()))?;
            if let Step::Copy { files_hash, .. } = &step
                && !self.files_path(files_hash).is_file()
            {
                return Err(LifecycleError::InvalidBuild(format!(
                    "steps[{i}] (COPY): the files {files_hash} were never uploaded (GET /templates/{{templateID}}/files/{files_hash} gives the upload link)"
                )));
            }
            checked.push((raw, step));
        }
        Ok(BuildPlan {
            base,
            steps: checked,
            force,
            start_cmd: start_cmd.filter(|c| !c.is_empty()),
            ready_cmd: ready_cmd.filter(|c| !c.is_empty()),
        })
    }

    fn base_of(&self, reference: &str) -> Result<BaseOf, LifecycleError> {
        if let Some((t, b)) = self.tagged_build(reference)? {
            let image = b.image.unwrap_or_else(|| unreachable_image(&t.name));
            return Ok(BaseOf {
                key: format!("build:{}", b.id),
                build: Some(b.id.clone()),
                image: BuildImage {
                    start_cmd: None,
                    ready_cmd: None,
                    ..image
                },
            });
        }
        // A built-in template (base, or one added with `template add`).
        self.builtin_template(reference)?;
        Ok(BaseOf {
            key: format!("template:{reference}"),
            build: None,
            image: BuildImage {
                base: reference.to_owned(),
                layers: Vec::new(),
                env: Vec::new(),
                user: DEFAULT_USER.to_owned(),
                workdir: DEFAULT_WORKDIR.to_owned(),
                start_cmd: None,
                ready_cmd: None,
            },
        })
    }

    /// The signature of an upload link for the files `hash`, valid until `expires` (Unix
    /// seconds): `hex(HMAC-SHA256(secret, "template-files:" + hash + ":" + expires))`.
    pub(crate) fn upload_signature(&self, hash: &str, expires: i64) -> String {
        super::ids::access_token(&self.secret, &format!("template-files:{hash}:{expires}"))
    }

    /// Points `tags` of the template `target` names (`name:tag`, tag `default` when absent)
    /// at the build that tag points at; returns that build's id.
    ///
    /// # Errors
    ///
    /// `TemplateNotFound`, `InvalidBuild` for a bad tag, `Store`.
    pub(crate) fn assign_tags(
        &self,
        target: &str,
        tags: &[String],
    ) -> Result<String, LifecycleError> {
        if tags.is_empty() {
            return Err(LifecycleError::InvalidBuild(
                "tags: at least one tag is required".into(),
            ));
        }
        for t in tags {
            check_tag(t)?;
        }
        let _naming = lock(&self.builds.naming);
        let (name, _) = target.split_once(':').unwrap_or((target, DEFAULT_TAG));
        let (mut t, b) =
            self.tagged_build(target)?
                .ok_or_else(|| LifecycleError::TemplateNotFound {
                    name: name.to_owned(),
                })?;
        for tag in tags {
            t.tags.insert(tag.clone(), b.id.clone());
        }
        t.updated_at = Utc::now();
        self.store.put_built_template(&t)?;
        Ok(b.id)
    }

    /// Removes `tags` from template `name`.
    ///
    /// # Errors
    ///
    /// `TemplateNotFound`, `InvalidBuild` for a tag it does not have, `Store`.
    pub(crate) fn remove_tags(&self, name: &str, tags: &[String]) -> Result<(), LifecycleError> {
        let _naming = lock(&self.builds.naming);
        let mut t = self
            .built_template(name)?
            .ok_or_else(|| LifecycleError::TemplateNotFound {
                name: name.to_owned(),
            })?;
        if let Some(missing) = tags.iter().find(|tag| !t.tags.contains_key(*tag)) {
            return Err(LifecycleError::InvalidBuild(format!(
                "template '{name}' has no tag '{missing}'"
            )));
        }
        for tag in tags {
            t.tags.remove(tag);
        }
        t.updated_at = Utc::now();
        self.store.put_built_template(&t)?;
        Ok(())
    }

    /// Sets a template's `public` flag.
    ///
    /// # Errors
    ///
    /// `TemplateNotFound`, `Store`.
    pub(crate) fn update_template(
        &self,
        name: &str,
        public: Option<bool>,
    ) -> Result<BuiltTemplate, LifecycleError> {
        let _naming = lock(&self.builds.naming);
        let mut t = self
            .built_template(name)?
            .ok_or_else(|| LifecycleError::TemplateNotFound {
                name: name.to_owned(),
            })?;
        if let Some(p) = public {
            t.public = p;
            t.updated_at = Utc::now();
            self.store.put_built_template(&t)?;
        }
        Ok(t)
    }

    /// Deletes a built template: its builds, and the layers no other build uses. Refused
    /// while another template's ready build stands on it.
    ///
    /// # Errors
    ///
    /// `TemplateNotFound`, `BuildConflict` naming the templates built on it, `Store`.
    pub(crate) fn delete_built_template(&self, name: &str) -> Result<(), LifecycleError> {
        let _naming = lock(&self.builds.naming);
        let t = self
            .built_template(name)?
            .ok_or_else(|| LifecycleError::TemplateNotFound {
                name: name.to_owned(),
            })?;
        let builds = self.store.builds()?;
        let ours: HashSet<&str> = builds
            .iter()
            .filter(|b| b.template_id == t.id)
            .map(|b| b.id.as_str())
            .collect();
        let templates = self.store.built_templates()?;
        let mut dependents: Vec<String> = builds
            .iter()
            .filter(|b| b.template_id != t.id)
            .filter(|b| b.base_build.as_deref().is_some_and(|id| ours.contains(id)))
            .filter_map(|b| templates.iter().find(|x| x.id == b.template_id))
            .map(|x| x.name.clone())
            .collect();
        dependents.sort();
        dependents.dedup();
        if !dependents.is_empty() {
            return Err(LifecycleError::BuildConflict(format!(
                "template '{}' cannot be deleted: {} built on it",
                t.name,
                dependents.join(", ")
            )));
        }
        self.store.remove_built_template(&t.id)?;
        // A live sandbox of the template still has its layers mounted: they are collected
        // by a later delete or at the next start instead.
        let in_use = self.all().iter().any(|l| {
            let rec = lock(&l.rec);
            let name = rec.template.split(':').next().unwrap_or_default();
            name == t.name || name == t.id
        });
        if !in_use {
            let removed = self.collect_layers()?;
            tracing::info!(template = %t.name, layers = removed, "template deleted");
        }
        Ok(())
    }

    /// Removes the layers no stored build uses; returns how many.
    ///
    /// # Errors
    ///
    /// `Store`.
    pub(crate) fn collect_layers(&self) -> Result<usize, LifecycleError> {
        let mut keep = referenced_layers(&self.store.builds()?);
        keep.extend(lock(&self.builds.pinned).values().flatten().cloned());
        Ok(self.layers.collect(&keep))
    }

    /// Where the uploaded files `hash` are kept.
    pub(crate) fn files_path(&self, hash: &str) -> PathBuf {
        self.runtime.data_dir().join("template-files").join(hash)
    }

    /// A build's log entries so far (stored or live).
    pub(crate) fn build_logs(&self, b: &BuildRecord) -> Vec<BuildLogEntry> {
        match lock(&self.builds.logs).get(&b.id) {
            Some(log) => lock(&log.entries).0.clone(),
            None => b.logs.clone(),
        }
    }

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
        plan: BuildPlan,
        log: &BuildLog,
    ) -> Result<BuildImage, BuildFailure> {
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
            return Err(StepFailed("the server is shutting down".into()));
        }
        let id = format!("build-{}", crate::state::random_hex(8));
        let handle = self
            .spawn_build_sandbox(&id, template)
            .await
            .map_err(|e| StepFailed(format!("starting the build sandbox: {e}")))?;
        lock(&self.builds.sandboxes).insert(id.clone(), handle.clone());
        let network = match self.attach_network(&handle, &EgressRules::default()).await {
            Ok(n) => n,
            Err(e) => {
                self.end_build_sandbox(&id, &handle, None).await;
                return Err(StepFailed(format!("the build sandbox's network: {e}")));
            }
        };
        let identity = per_sandbox_files(&handle);
        let ran = self.step_in(&handle, step, state, log, step_name).await;
        let result = match ran {
            Ok(()) => self.capture(&handle, template, &identity).await,
            Err(e) => Err(e),
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
            spec.trusted_ca = this.networks.as_ref().map(|n| n.ca_pem().to_owned());
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

    /// Kills every build sandbox (at shutdown); their builds fail.
    pub(crate) async fn kill_builds(&self) {
        let all: Vec<Arc<SandboxHandle>> = lock(&self.builds.sandboxes).values().cloned().collect();
        for h in all {
            let _ = tokio::task::spawn_blocking(move || h.kill()).await;
        }
    }

    async fn step_in(
        &self,
        handle: &Arc<SandboxHandle>,
        step: &Step,
        state: &BuildState,
        log: &BuildLog,
        step_name: Option<&str>,
    ) -> Result<(), StepFailed> {
        match step {
            Step::Run { cmd, user } => {
                let user = user.as_deref().unwrap_or(&state.user);
                let opts = exec_options(handle, user, &state.env, &state.workdir).await?;
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
                let opts = exec_options(handle, "root", &state.env, "/").await?;
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
                let opts = exec_options(handle, "root", &state.env, "/").await?;
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
        identity: &[(PathBuf, Option<Vec<u8>>)],
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
        let root = Layers::part(&partial, Path::new("/"));
        for (rel, before) in identity {
            let p = root.join(rel);
            if std::fs::read(&p).ok() == *before {
                let _ = std::fs::remove_file(&p);
            }
        }
        Ok(partial)
    }
}

pub(super) fn unreachable_image(name: &str) -> BuildImage {
    // `tagged_build` only returns builds with an image.
    tracing::error!(template = name, "a ready build without an image");
    BuildImage {
        base: BASE.to_owned(),
        layers: Vec::new(),
        env: Vec::new(),
        user: DEFAULT_USER.to_owned(),
        workdir: DEFAULT_WORKDIR.to_owned(),
        start_cmd: None,
        ready_cmd: None,
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

/// The files spawn writes into every sandbox's root upper directory, with their content
/// right after spawn (relative paths).
fn per_sandbox_files(handle: &SandboxHandle) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    [
        "etc/hostname",
        "etc/hosts",
        "etc/resolv.conf",
        "etc/ssl/certs/ca-certificates.crt",
    ]
    .into_iter()
    .map(|rel| {
        let rel = PathBuf::from(rel);
        let content = std::fs::read(handle.upper_dir().join(&rel)).ok();
        (rel, content)
    })
    .filter(|(_, c)| c.is_some())
    .collect()
}

/// The uid, gid and home of `user` in the build sandbox, and the step's environment.
async fn exec_options(
    handle: &Arc<SandboxHandle>,
    user: &str,
    env: &[(String, String)],
    cwd: &str,
) -> Result<ExecOptions, StepFailed> {
    let h = handle.clone();
    let name = user.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        h.exec_in(&["getent", "passwd", &name], &ExecOptions::default())
    })
    .await
    .map_err(|e| StepFailed(e.to_string()))?
    .map_err(|e| StepFailed(format!("looking up user '{user}': {e}")))?;
    let line = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = line.trim_end().split(':').collect();
    let (Some(uid), Some(gid), Some(home)) = (
        fields.get(2).and_then(|v| v.parse().ok()),
        fields.get(3).and_then(|v| v.parse().ok()),
        fields.get(5),
    ) else {
        return Err(StepFailed(format!(
            "user '{user}' does not exist in the template"
        )));
    };
    let mut vars = vec![
        (
            "PATH".to_owned(),
            crate::isolation::exec::DEFAULT_PATH.to_owned(),
        ),
        ("HOME".to_owned(), (*home).to_owned()),
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

/// Template names: 1 to 64 characters of `[a-z0-9._-]`, not a built-in template's.
fn check_name(name: &str) -> Result<(), LifecycleError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !ok {
        return Err(LifecycleError::InvalidBuild(format!(
            "name '{name}': a template name is 1 to 64 characters of a-z, 0-9, '.', '_' and '-'"
        )));
    }
    if name == BASE {
        return Err(LifecycleError::InvalidBuild(format!(
            "name '{name}' is the built-in template"
        )));
    }
    Ok(())
}

/// Tags: 1 to 64 characters of `[A-Za-z0-9._-]`.
pub(crate) fn check_tag(tag: &str) -> Result<(), LifecycleError> {
    let ok = !tag.is_empty()
        && tag.len() <= 64
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(LifecycleError::InvalidBuild(format!(
            "tag '{tag}': a tag is 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
        )))
    }
}

/// Every layer a stored build uses, for collection.
pub(crate) fn referenced_layers(builds: &[BuildRecord]) -> HashSet<String> {
    builds
        .iter()
        .filter_map(|b| b.image.as_ref())
        .flat_map(|i| i.layers.iter().cloned())
        .collect()
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
    template: &str,
) -> Result<(), LifecycleError> {
    let env: Vec<(String, String)> = env_vars
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let opts = exec_options(handle, &image.user, &env, &image.workdir)
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

/// `template gc` on a stopped server's data directory: removes the layers no stored build
/// uses. Refused while sandboxes or builds are recorded as live (a running server may be
/// using layers of a deleted template).
///
/// # Errors
///
/// A message saying why it was refused, or the store's error.
pub fn collect_layers_offline(
    store: &crate::state::Store,
    data_dir: &Path,
) -> Result<usize, String> {
    let live = store.live_sandboxes().map_err(|e| e.to_string())?;
    if !live.is_empty() {
        return Err(format!(
            "{} sandboxes are recorded as running or paused: stop them first (a running server collects layers itself)",
            live.len()
        ));
    }
    let builds = store.builds().map_err(|e| e.to_string())?;
    if builds
        .iter()
        .any(|b| matches!(b.status, BuildStatus::Waiting | BuildStatus::Building))
    {
        return Err("a build is under way: let it finish (or start the server once to settle a killed one)".into());
    }
    let layers = Layers::open(data_dir).map_err(|e| e.to_string())?;
    Ok(layers.collect(&referenced_layers(&builds)))
}
