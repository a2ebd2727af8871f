//! Built templates and their builds: requesting a build, checking its steps, tags,
//! aliases, delete and layer collection, and resolving a template reference to the build
//! it names. Running a build is [`super::build_run`]'s. Each file-changing step's result is
//! a read-only layer kept under its cache key, so an unchanged step is never run twice;
//! ENV, USER and WORKDIR change the build's settings, and the last ones become the defaults
//! of the template's sandboxes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;

use super::{LifecycleError, Manager, lock};
use crate::isolation::SandboxHandle;
use crate::state::{
    BuildImage, BuildLogEntry, BuildRecord, BuildStatus, BuiltTemplate, DEFAULT_TAG,
};
use crate::template::layers::Layers;
use crate::template::oci::{self, Credentials, ImageSource};
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
    /// `fromImageRegistry`'s login, when given.
    pub(crate) from_image_registry: Option<Credentials>,
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
    pub(super) fn raw(&self) -> RawStep<'_> {
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
    /// The OCI image to pull first (its layers and config then complete `image`, and its
    /// manifest digest `key`).
    pub(crate) pull: Option<ImageSource>,
}

/// Builds under way: their logs, and the build sandboxes to kill at shutdown.
#[derive(Debug, Default)]
pub(crate) struct Builds {
    pub(super) logs: Mutex<HashMap<String, Arc<super::build_run::BuildLog>>>,
    pub(super) sandboxes: Mutex<HashMap<String, Arc<SandboxHandle>>>,
    /// Layers builds under way use and have not recorded yet, by build (never collected).
    pub(super) pinned: Mutex<HashMap<String, HashSet<String>>>,
    /// Serializes a template's creation by name.
    pub(super) naming: Mutex<()>,
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

    /// The built template named `name` or with id `name`, which must exist.
    ///
    /// # Errors
    ///
    /// `TemplateNotFound`; `Store`.
    pub(crate) fn existing_template(&self, name: &str) -> Result<BuiltTemplate, LifecycleError> {
        self.built_template(name)?
            .ok_or_else(|| LifecycleError::TemplateNotFound {
                name: name.to_owned(),
            })
    }

    /// The ready build `reference` (`name`, `name:tag`, `id` or `id:tag`) points at, and
    /// what it made.
    pub(crate) fn tagged_build(
        &self,
        reference: &str,
    ) -> Result<Option<(BuiltTemplate, BuildRecord, BuildImage)>, LifecycleError> {
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
        Ok(self.store.build(&build_id)?.and_then(|b| {
            let image = b.image.clone()?;
            Some((t, b, image))
        }))
    }

    /// The runnable template of a ready build.
    pub(crate) fn template_of_build(
        &self,
        name: &str,
        image: &BuildImage,
    ) -> Result<Template, LifecycleError> {
        let base = if image.base == oci::IMAGE_ROOT {
            oci::image_root(self.runtime.data_dir(), &self.runtime.config().helper_exe)
                .map_err(|e| LifecycleError::internal("making the image root", e))?
        } else {
            self.builtin_template(&image.base)?
        };
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
        let mut t = match self.built_template(name)? {
            Some(t) => t,
            None => new_template(name),
        };
        if cpu_count.is_some() {
            t.cpu_count = cpu_count;
        }
        if memory_mb.is_some() {
            t.memory_mb = memory_mb;
        }
        self.store.put_built_template(&t)?;
        let b = new_build(&t.id, tags);
        self.store.put_build(&b)?;
        Ok((t, b))
    }

    /// Checks a build's start request: base, steps, uploaded files.
    ///
    /// # Errors
    ///
    /// `InvalidBuild` naming what is wrong; `TemplateNotFound` for an unknown base.
    pub(crate) fn plan_build(&self, req: BuildRequest) -> Result<BuildPlan, LifecycleError> {
        let BuildRequest {
            from_template,
            from_image,
            from_image_registry,
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
            (Some(_), None) | (None, None) if from_image_registry.is_some() => {
                return Err(LifecycleError::InvalidBuild(
                    "fromImageRegistry: the registry login is for fromImage, which is not given"
                        .into(),
                ));
            }
            (Some(t), None) => self.base_of(t)?,
            (None, Some(image)) => {
                let repo = image.split([':', '@']).next().unwrap_or(image);
                if repo == E2B_BASE_IMAGE || repo == format!("docker.io/{E2B_BASE_IMAGE}") {
                    self.base_of(BASE)?
                } else {
                    image_base(
                        ImageSource::parse(image, from_image_registry.unwrap_or_default())
                            .map_err(LifecycleError::InvalidBuild)?,
                    )
                }
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

    pub(super) fn base_of(&self, reference: &str) -> Result<BaseOf, LifecycleError> {
        if let Some((_, b, image)) = self.tagged_build(reference)? {
            return Ok(BaseOf {
                key: format!("build:{}", b.id),
                build: Some(b.id.clone()),
                pull: None,
                image: BuildImage {
                    start_cmd: None,
                    ready_cmd: None,
                    ..image
                },
            });
        }
        // A built-in template (base, debian, or one added with `template add`), by what it
        // is: `base` may mean `debian` (`serve --base debian`).
        let t = self.builtin_template(reference)?;
        Ok(BaseOf {
            key: format!("template:{}", t.name),
            build: None,
            pull: None,
            image: BuildImage {
                base: t.name,
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
        let (mut t, b, _) =
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
        let mut t = self.existing_template(name)?;
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
        let mut t = self.existing_template(name)?;
        if let Some(p) = public {
            t.public = p;
            t.updated_at = Utc::now();
            self.store.put_built_template(&t)?;
        }
        Ok(t)
    }

    /// Deletes a built template (by name or id, optionally tag-qualified as a snapshot's
    /// id is): its builds, and the layers no other build uses. Refused while another
    /// template's ready build stands on it.
    ///
    /// # Errors
    ///
    /// `TemplateNotFound`, `BuildConflict` naming the templates built on it, `Store`.
    pub(crate) fn delete_built_template(&self, reference: &str) -> Result<(), LifecycleError> {
        let _naming = lock(&self.builds.naming);
        // A tag-qualified reference (a snapshot's id, `name:default`) names its template.
        let (name, tag) = match reference.split_once(':') {
            Some((name, tag)) => (name, Some(tag)),
            None => (reference, None),
        };
        let t = self.existing_template(name)?;
        if let Some(tag) = tag.filter(|tag| !t.tags.contains_key(*tag)) {
            return Err(LifecycleError::TemplateNotFound {
                name: format!("{name}:{tag}"),
            });
        }
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
        keep.extend(self.records().into_iter().flat_map(|r| r.layers));
        Ok(self.layers.collect(&keep))
    }

    /// Where the uploaded files `hash` are kept.
    pub(crate) fn files_path(&self, hash: &str) -> PathBuf {
        self.runtime.data_dir().join("template-files").join(hash)
    }

    /// A build's log entries so far (stored or live).
    pub(crate) fn build_logs(&self, b: &BuildRecord) -> Vec<BuildLogEntry> {
        match lock(&self.builds.logs).get(&b.id) {
            Some(log) => log.entries(),
            None => b.logs.clone(),
        }
    }
}

/// The base of a build from an OCI image, before the pull: the image root with the image's
/// defaults (E2B's for images: `root`, in `/`); the pull fills in layers, config and key.
fn image_base(source: ImageSource) -> BaseOf {
    BaseOf {
        image: BuildImage {
            base: oci::IMAGE_ROOT.to_owned(),
            layers: Vec::new(),
            env: Vec::new(),
            user: "root".to_owned(),
            workdir: "/".to_owned(),
            start_cmd: None,
            ready_cmd: None,
        },
        key: format!("image:{}", source.reference),
        build: None,
        pull: Some(source),
    }
}

/// A new template named `name` (with a fresh id), not stored yet.
pub(super) fn new_template(name: &str) -> BuiltTemplate {
    let now = Utc::now();
    BuiltTemplate {
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
    }
}

/// A new waiting build of template `template_id` that gets `tags`, not stored yet.
pub(super) fn new_build(template_id: &str, tags: Vec<String>) -> BuildRecord {
    BuildRecord {
        id: uuid::Uuid::new_v4().to_string(),
        template_id: template_id.to_owned(),
        status: BuildStatus::Waiting,
        created_at: Utc::now(),
        finished_at: None,
        tags,
        base_build: None,
        source_sandbox: None,
        reason: None,
        image: None,
        logs: Vec::new(),
    }
}

/// Template names: 1 to 64 characters of `[a-z0-9._-]`, not a built-in template's.
pub(super) fn check_name(name: &str) -> Result<(), LifecycleError> {
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
        return Err(
            "a build is under way: let it finish (or start the server once to settle a killed one)"
                .into(),
        );
    }
    let layers = Layers::open(data_dir).map_err(|e| e.to_string())?;
    Ok(layers.collect(&referenced_layers(&builds)))
}
