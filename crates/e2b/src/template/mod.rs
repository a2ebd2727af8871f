//! Templates: build what a sandbox starts from, in code, with E2B's build system.
//!
//! [`Template`] is the Python SDK's builder in Rust form: a base ([`from_template`],
//! [`from_image`], [`from_dockerfile`], ...), then steps ([`run_cmd`], [`copy`],
//! [`set_envs`], [`apt_install`], ...), then optionally a start and a ready command.
//! [`Template::build`] creates the template on the server, uploads the files of each
//! [`copy`] step that the server does not have yet (found by their files hash), starts the
//! build and follows its logs until it is ready.
//!
//! Each step becomes exactly the step the Python SDK 2.63 sends (type, arguments, `force`,
//! files hash), so builds from either SDK share the server's layer cache.
//!
//! ```no_run
//! use e2b::template::{BuildOptions, Template, wait_for_port};
//!
//! # async fn run() -> e2b::Result<()> {
//! let template = Template::new()
//!     .from_python_image(None)
//!     .pip_install(["flask"])
//!     .copy("app.py", "/home/user/app.py")
//!     .set_start_cmd("python /home/user/app.py", wait_for_port(5000));
//! let info = template
//!     .build("my-flask-app", BuildOptions::new().on_build_logs(|log| println!("{log}")))
//!     .await?;
//! println!("built {} (build {})", info.template_id, info.build_id);
//! # Ok(()) }
//! ```
//!
//! [`from_template`]: Template::from_template
//! [`from_image`]: Template::from_image
//! [`from_dockerfile`]: Template::from_dockerfile
//! [`run_cmd`]: Template::run_cmd
//! [`copy`]: Template::copy
//! [`set_envs`]: Template::set_envs
//! [`apt_install`]: Template::apt_install

mod build;
mod dockerfile;
mod files;
mod ready;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use build::{
    BuildInfo, BuildOptions, BuildStatus, BuildStatusReason, BuildStatusResponse, LogEntry,
    LogLevel, TemplateTag, TemplateTagInfo,
};
pub use ready::{
    ReadyCmd, wait_for_file, wait_for_port, wait_for_process, wait_for_timeout, wait_for_url,
};

use crate::error::{Error, Result};
use ready::shell_quote;

/// The image a template starts from when no base is chosen (E2B's base image).
///
/// ```
/// assert_eq!(e2b::template::DEFAULT_BASE_IMAGE, "e2bdev/base");
/// ```
pub const DEFAULT_BASE_IMAGE: &str = "e2bdev/base";

/// The kind of a build step, as the build API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepType {
    Copy,
    Env,
    Run,
    Workdir,
    User,
}

impl StepType {
    fn as_str(self) -> &'static str {
        match self {
            StepType::Copy => "COPY",
            StepType::Env => "ENV",
            StepType::Run => "RUN",
            StepType::Workdir => "WORKDIR",
            StepType::User => "USER",
        }
    }
}

/// One step as the builder recorded it.
#[derive(Debug, Clone)]
struct Instruction {
    kind: StepType,
    args: Vec<String>,
    force: bool,
    force_upload: bool,
    resolve_symlinks: Option<bool>,
    gzip: Option<bool>,
}

/// Credentials to pull a private base image with. Secrets never show in `Debug`.
#[derive(Clone, Serialize)]
#[serde(tag = "type")]
enum RegistryCredentials {
    #[serde(rename = "registry")]
    Registry { username: String, password: String },
    #[serde(rename = "aws")]
    Aws {
        #[serde(rename = "awsAccessKeyId")]
        access_key_id: String,
        #[serde(rename = "awsSecretAccessKey")]
        secret_access_key: String,
        #[serde(rename = "awsRegion")]
        region: String,
    },
    #[serde(rename = "gcp")]
    Gcp {
        #[serde(rename = "serviceAccountJson")]
        service_account_json: String,
    },
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryCredentials::Registry { username, .. } => f
                .debug_struct("Registry")
                .field("username", username)
                .finish_non_exhaustive(),
            RegistryCredentials::Aws { region, .. } => f
                .debug_struct("Aws")
                .field("region", region)
                .finish_non_exhaustive(),
            RegistryCredentials::Gcp { .. } => f.debug_struct("Gcp").finish_non_exhaustive(),
        }
    }
}

/// The service account [`Template::from_gcp_registry`] authenticates with.
///
/// ```
/// use e2b::template::GcpServiceAccount;
///
/// let from_file = GcpServiceAccount::File("keys/gcp.json".into());
/// // The key itself never shows in Debug output.
/// assert_eq!(format!("{:?}", GcpServiceAccount::Json("{}".into())), "Json(..)");
/// # let _ = from_file;
/// ```
#[derive(Clone)]
pub enum GcpServiceAccount {
    /// A key file, relative to the template's file context directory.
    File(PathBuf),
    /// The key itself, as JSON.
    Json(String),
}

impl fmt::Debug for GcpServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GcpServiceAccount::File(path) => f.debug_tuple("File").field(path).finish(),
            GcpServiceAccount::Json(_) => f.write_str("Json(..)"),
        }
    }
}

/// A setter's mistake, reported by the call that uses the template (never a panic).
#[derive(Debug, Clone)]
enum Deferred {
    InvalidArgument(String),
    Template(String),
}

impl Deferred {
    fn to_error(&self) -> Error {
        match self {
            Deferred::InvalidArgument(message) => Error::invalid_argument(message.clone()),
            Deferred::Template(message) => Error::template(message.clone()),
        }
    }
}

/// Options of [`Template::copy_with`] (and each [`CopyItem`]).
///
/// ```
/// use e2b::template::CopyOptions;
///
/// let options = CopyOptions { user: Some("root".into()), mode: Some(0o644), ..Default::default() };
/// assert!(!options.force_upload);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// Upload the files even when the server already has them (and rebuild the step).
    pub force_upload: bool,
    /// Owner of the copied files in the template (`user` or `user:group`).
    pub user: Option<String>,
    /// Mode of the copied files, such as `0o755`.
    pub mode: Option<u32>,
    /// Copy what symlinks point at instead of the links (default: the links).
    pub resolve_symlinks: Option<bool>,
    /// Gzip the upload (default: yes).
    pub gzip: Option<bool>,
}

/// One source (or several) to copy to one destination: [`Template::copy_items`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyItem {
    /// Sources, relative to the file context directory; globs allowed.
    pub src: Vec<String>,
    /// Destination in the template.
    pub dest: String,
    /// How to copy.
    pub options: CopyOptions,
}

impl CopyItem {
    /// Copies `src` to `dest` with the default options.
    ///
    /// ```
    /// let item = e2b::template::CopyItem::new("app/", "/home/user/app");
    /// assert_eq!(item.src, ["app/"]);
    /// ```
    pub fn new(src: impl Into<String>, dest: impl Into<String>) -> Self {
        Self {
            src: vec![src.into()],
            dest: dest.into(),
            options: CopyOptions::default(),
        }
    }
}

/// Options of [`Template::remove_with`].
///
/// ```
/// let options = e2b::template::RemoveOptions { recursive: true, ..Default::default() };
/// assert!(!options.force);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoveOptions {
    /// `rm -f`: no error for missing files.
    pub force: bool,
    /// `rm -r`: remove directories and their contents.
    pub recursive: bool,
    /// Run as this user.
    pub user: Option<String>,
}

/// Options of [`Template::rename_with`] and [`Template::make_symlink_with`].
///
/// ```
/// let options = e2b::template::MoveOptions { force: true, user: None };
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoveOptions {
    /// `-f`: replace an existing destination.
    pub force: bool,
    /// Run as this user.
    pub user: Option<String>,
}

/// Options of [`Template::make_dir_with`].
///
/// ```
/// let options = e2b::template::MakeDirOptions { mode: Some(0o750), user: Some("root".into()) };
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MakeDirOptions {
    /// Mode of the new directories, such as `0o755`.
    pub mode: Option<u32>,
    /// Run as this user.
    pub user: Option<String>,
}

/// Options of [`Template::apt_install_with`].
///
/// ```
/// let options = e2b::template::AptInstallOptions { no_install_recommends: true, ..Default::default() };
/// assert!(!options.fix_missing);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AptInstallOptions {
    /// `--no-install-recommends`.
    pub no_install_recommends: bool,
    /// `--fix-missing`.
    pub fix_missing: bool,
}

/// Options of [`Template::pip_install_with`].
///
/// ```
/// // System-wide as root unless asked otherwise, as in the Python SDK.
/// assert!(e2b::template::PipInstallOptions::default().global);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipInstallOptions {
    /// Install for the whole system, as root (the default); otherwise `pip install --user`
    /// as the current user.
    pub global: bool,
}

impl Default for PipInstallOptions {
    fn default() -> Self {
        Self { global: true }
    }
}

/// Options of [`Template::npm_install_with`] and [`Template::bun_install_with`].
///
/// ```
/// let options = e2b::template::NodeInstallOptions { global: true, dev: false };
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInstallOptions {
    /// `-g`: install globally, as root.
    pub global: bool,
    /// Save as development dependencies (`--save-dev` for npm, `--dev` for bun).
    pub dev: bool,
}

/// Options of [`Template::git_clone_with`].
///
/// ```
/// let options = e2b::template::GitCloneOptions { depth: Some(1), ..Default::default() };
/// assert_eq!(options.branch, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitCloneOptions {
    /// Where to clone to (default: git's choice, in the working directory).
    pub path: Option<String>,
    /// Clone only this branch.
    pub branch: Option<String>,
    /// `--depth`: how many commits of history.
    pub depth: Option<u32>,
    /// Run as this user.
    pub user: Option<String>,
}

/// A template definition: a base, build steps, and a start and ready command. Building it
/// ([`Template::build`]) makes a template sandboxes can be created from.
///
/// Setters consume and return the template; a setter's mistake (a COPY source outside the
/// context, credentials with an empty password, a bad Dockerfile) is reported by
/// [`build`](Self::build), [`to_json`](Self::to_json) or
/// [`to_dockerfile`](Self::to_dockerfile), never by a panic.
///
/// ```
/// use e2b::template::Template;
///
/// let template = Template::new()
///     .from_template("base")
///     .set_envs([("GREETING", "hi")])
///     .run_cmd("echo $GREETING > /tmp/greeting");
/// let json: serde_json::Value = serde_json::from_str(&template.to_json()?).unwrap();
/// assert_eq!(json["fromTemplate"], "base");
/// assert_eq!(json["steps"][1]["args"][0], "echo $GREETING > /tmp/greeting");
/// # Ok::<(), e2b::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Template {
    file_context_path: PathBuf,
    file_ignore_patterns: Vec<String>,
    base_image: Option<String>,
    base_template: Option<String>,
    registry: Option<RegistryCredentials>,
    start_cmd: Option<String>,
    ready_cmd: Option<String>,
    /// Rebuild the whole template.
    force: bool,
    /// Rebuild every step from here on ([`skip_cache`](Self::skip_cache)).
    force_next_layer: bool,
    instructions: Vec<Instruction>,
    deferred: Option<Deferred>,
}

impl Default for Template {
    fn default() -> Self {
        Self::new()
    }
}

impl Template {
    /// An empty template on [`DEFAULT_BASE_IMAGE`], with the current directory as its file
    /// context (where [`copy`](Self::copy) sources are found).
    ///
    /// ```
    /// let template = e2b::template::Template::new();
    /// assert!(template.to_json()?.contains("\"fromImage\": \"e2bdev/base\""));
    /// # Ok::<(), e2b::Error>(())
    /// ```
    pub fn new() -> Self {
        Self {
            file_context_path: PathBuf::from("."),
            file_ignore_patterns: Vec::new(),
            base_image: Some(DEFAULT_BASE_IMAGE.to_owned()),
            base_template: None,
            registry: None,
            start_cmd: None,
            ready_cmd: None,
            force: false,
            force_next_layer: false,
            instructions: Vec::new(),
            deferred: None,
        }
    }

    /// The directory [`copy`](Self::copy) sources are relative to (default: the current
    /// directory). Its `.dockerignore` applies to every copy.
    ///
    /// ```
    /// let template = e2b::template::Template::new().file_context_path("./docker");
    /// # let _ = template;
    /// ```
    pub fn file_context_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.file_context_path = path.into();
        self
    }

    /// Patterns (`.dockerignore` syntax) of files no copy takes, besides `.dockerignore`'s.
    ///
    /// ```
    /// let template = e2b::template::Template::new().file_ignore_patterns(["*.log", "target/"]);
    /// # let _ = template;
    /// ```
    pub fn file_ignore_patterns(
        mut self,
        patterns: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.file_ignore_patterns = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// The file context directory.
    pub fn context_path(&self) -> &Path {
        &self.file_context_path
    }

    fn defer(&mut self, deferred: Deferred) {
        if self.deferred.is_none() {
            self.deferred = Some(deferred);
        }
    }

    /// A base replaces the whole template when the cache is skipped before it.
    fn set_base(&mut self, image: Option<String>, template: Option<String>) {
        self.base_image = image;
        self.base_template = template;
        if self.force_next_layer {
            self.force = true;
        }
    }

    // -- bases ---------------------------------------------------------------------------

    /// Builds on another template (its name, `name:tag` or ID), such as `base`.
    ///
    /// ```
    /// let template = e2b::template::Template::new().from_template("base");
    /// assert!(template.to_json()?.contains("\"fromTemplate\": \"base\""));
    /// # Ok::<(), e2b::Error>(())
    /// ```
    pub fn from_template(mut self, template: impl Into<String>) -> Self {
        self.set_base(None, Some(template.into()));
        self
    }

    /// Builds on a public container image, such as `python:3.12`.
    ///
    /// ```
    /// let template = e2b::template::Template::new().from_image("python:3.12");
    /// assert!(template.to_json()?.contains("\"fromImage\": \"python:3.12\""));
    /// # Ok::<(), e2b::Error>(())
    /// ```
    pub fn from_image(mut self, image: impl Into<String>) -> Self {
        self.set_base(Some(image.into()), None);
        self
    }

    /// Builds on a private image, pulled with a registry username and password (both must be
    /// non-empty).
    ///
    /// ```
    /// let template = e2b::template::Template::new()
    ///     .from_image_with_credentials("registry.example.com/app:1", "me", "secret");
    /// # let _ = template;
    /// ```
    pub fn from_image_with_credentials(
        mut self,
        image: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        let (username, password) = (username.into(), password.into());
        if username.is_empty() || password.is_empty() {
            self.defer(Deferred::InvalidArgument(
                "Both username and password are required when providing registry credentials"
                    .to_owned(),
            ));
            return self;
        }
        self.registry = Some(RegistryCredentials::Registry { username, password });
        self.from_image(image)
    }

    /// Builds on an image in AWS ECR, pulled with an access key.
    ///
    /// ```
    /// let template = e2b::template::Template::new().from_aws_registry(
    ///     "123456789.dkr.ecr.us-east-1.amazonaws.com/app:1",
    ///     "AKIA...",
    ///     "secret",
    ///     "us-east-1",
    /// );
    /// # let _ = template;
    /// ```
    pub fn from_aws_registry(
        mut self,
        image: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        self.registry = Some(RegistryCredentials::Aws {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            region: region.into(),
        });
        self.set_base(Some(image.into()), None);
        self
    }

    /// Builds on an image in Google's Artifact or Container Registry, pulled with a service
    /// account key (a file is read now, relative to the file context directory).
    ///
    /// ```
    /// use e2b::template::{GcpServiceAccount, Template};
    ///
    /// let template = Template::new().from_gcp_registry(
    ///     "us-docker.pkg.dev/project/repo/app:1",
    ///     GcpServiceAccount::Json(r#"{"type":"service_account"}"#.into()),
    /// );
    /// # let _ = template;
    /// ```
    pub fn from_gcp_registry(
        mut self,
        image: impl Into<String>,
        service_account: GcpServiceAccount,
    ) -> Self {
        let json = match service_account {
            GcpServiceAccount::Json(json) => json,
            GcpServiceAccount::File(path) => {
                let path = self.file_context_path.join(path);
                match std::fs::read_to_string(&path) {
                    Ok(json) => json,
                    Err(e) => {
                        self.defer(Deferred::Template(format!(
                            "reading the GCP service account key {} failed: {e}",
                            path.display()
                        )));
                        return self;
                    }
                }
            }
        };
        self.registry = Some(RegistryCredentials::Gcp {
            service_account_json: json,
        });
        self.set_base(Some(image.into()), None);
        self
    }

    /// Builds on E2B's base image, [`DEFAULT_BASE_IMAGE`].
    ///
    /// ```
    /// let template = e2b::template::Template::new().from_base_image();
    /// # let _ = template;
    /// ```
    pub fn from_base_image(self) -> Self {
        self.from_image(DEFAULT_BASE_IMAGE)
    }

    /// Builds on `debian:{variant}` (default `stable`).
    ///
    /// ```
    /// let template = e2b::template::Template::new().from_debian_image(Some("bookworm"));
    /// assert!(template.to_json()?.contains("debian:bookworm"));
    /// # Ok::<(), e2b::Error>(())
    /// ```
    pub fn from_debian_image(self, variant: Option<&str>) -> Self {
        self.from_image(format!("debian:{}", variant.unwrap_or("stable")))
    }

    /// Builds on `ubuntu:{variant}` (default `latest`).
    ///
    /// ```
    /// let template = e2b::template::Template::new().from_ubuntu_image(None);
    /// assert!(template.to_json()?.contains("ubuntu:latest"));
    /// # Ok::<(), e2b::Error>(())
    /// ```
    pub fn from_ubuntu_image(self, variant: Option<&str>) -> Self {
        self.from_image(format!("ubuntu:{}", variant.unwrap_or("latest")))
    }

    /// Builds on `fedora:{variant}` (default `44`).
    ///
    /// ```
    /// let template = e2b::template::Template::new().from_fedora_image(None);
    /// assert!(template.to_json()?.contains("fedora:44"));
    /// # Ok::<(), e2b::Error>(())
    /// ```
    pub fn from_fedora_image(self, variant: Option<&str>) -> Self {
        self.from_image(format!("fedora:{}", variant.unwrap_or("44")))
    }

    /// Builds on `alpine:{variant}` (default `3.24`).
    ///
    /// ```
    /// let template = e2b::template::Template::new().from_alpine_image(None);
    /// assert!(template.to_json()?.contains("alpine:3.24"));
    /// # Ok::<(), e2b::Error>(())
    /// ```
    pub fn from_alpine_image(self, variant: Option<&str>) -> Self {
        self.from_image(format!("alpine:{}", variant.unwrap_or("3.24")))
    }

    /// Builds on `archlinux:{variant}` (default `latest`).
    ///
    /// ```
    /// let template = e2b::template::Template::new().from_arch_image(None);
    /// assert!(template.to_json()?.contains("archlinux:latest"));
    /// # Ok::<(), e2b::Error>(())
    /// ```
    pub fn from_arch_image(self, variant: Option<&str>) -> Self {
        self.from_image(format!("archlinux:{}", variant.unwrap_or("latest")))
    }

    /// Builds on `python:{version}` (default `3`).
    ///
    /// ```
    /// let template = e2b::template::Template::new().from_python_image(Some("3.12"));
    /// assert!(template.to_json()?.contains("python:3.12"));
    /// # Ok::<(), e2b::Error>(())
    /// ```
    pub fn from_python_image(self, version: Option<&str>) -> Self {
        self.from_image(format!("python:{}", version.unwrap_or("3")))
    }

    /// Builds on `node:{variant}` (default `lts`).
    ///
    /// ```
    /// let template = e2b::template::Template::new().from_node_image(None);
    /// assert!(template.to_json()?.contains("node:lts"));
    /// # Ok::<(), e2b::Error>(())
    /// ```
    pub fn from_node_image(self, variant: Option<&str>) -> Self {
        self.from_image(format!("node:{}", variant.unwrap_or("lts")))
    }

    /// Builds on `oven/bun:{variant}` (default `latest`).
    ///
    /// ```
    /// let template = e2b::template::Template::new().from_bun_image(None);
    /// assert!(template.to_json()?.contains("oven/bun:latest"));
    /// # Ok::<(), e2b::Error>(())
    /// ```
    pub fn from_bun_image(self, variant: Option<&str>) -> Self {
        self.from_image(format!("oven/bun:{}", variant.unwrap_or("latest")))
    }

    /// Builds from a Dockerfile, given as its contents or as a path to it: its `FROM` image
    /// becomes the base and its instructions become steps, as the Python SDK converts them
    /// (`RUN`, `COPY`/`ADD` with `--chown`/`--chmod`, `WORKDIR`, `USER`, `ENV`, `ARG`, and
    /// `CMD`/`ENTRYPOINT` as the start command; `EXPOSE`, `VOLUME`, `LABEL` and
    /// `MAINTAINER` are ignored). Multi-stage Dockerfiles, `COPY --from`, heredocs and
    /// `ADD` from URLs are reported as errors.
    ///
    /// ```
    /// let template = e2b::template::Template::new()
    ///     .from_dockerfile("FROM python:3.12\nRUN pip install flask\nWORKDIR /app\n");
    /// assert!(template.to_json()?.contains("pip install flask"));
    /// # Ok::<(), e2b::Error>(())
    /// ```
    pub fn from_dockerfile(self, content_or_path: &str) -> Self {
        let content = match std::fs::metadata(content_or_path) {
            Ok(meta) if meta.is_file() => match std::fs::read_to_string(content_or_path) {
                Ok(content) => content,
                Err(e) => {
                    let mut this = self;
                    this.defer(Deferred::Template(format!(
                        "reading the Dockerfile {content_or_path} failed: {e}"
                    )));
                    return this;
                }
            },
            _ => content_or_path.to_owned(),
        };
        let force_next_layer = self.force_next_layer;
        let fallback = self.clone();
        match dockerfile::apply(self, &content) {
            Ok((mut template, base_image)) => {
                template.base_image = Some(base_image);
                if force_next_layer {
                    template.force = true;
                }
                template
            }
            Err(message) => {
                let mut template = fallback;
                template.defer(Deferred::InvalidArgument(format!(
                    "invalid Dockerfile: {message}"
                )));
                template
            }
        }
    }

    // -- steps ---------------------------------------------------------------------------

    fn push(&mut self, kind: StepType, args: Vec<String>) {
        self.instructions.push(Instruction {
            kind,
            args,
            force: self.force_next_layer,
            force_upload: false,
            resolve_symlinks: None,
            gzip: None,
        });
    }

    /// Copies `src` (relative to the file context directory; a glob, a file or a
    /// directory) to `dest` in the template.
    ///
    /// ```
    /// let template = e2b::template::Template::new().copy("app/", "/home/user/app");
    /// # let _ = template;
    /// ```
    pub fn copy(self, src: impl Into<String>, dest: impl Into<String>) -> Self {
        self.copy_with(src, dest, CopyOptions::default())
    }

    /// [`copy`](Self::copy) with an owner, a mode, or other [`CopyOptions`].
    ///
    /// ```
    /// use e2b::template::{CopyOptions, Template};
    ///
    /// let template = Template::new().copy_with(
    ///     "run.sh",
    ///     "/usr/local/bin/run.sh",
    ///     CopyOptions { user: Some("root".into()), mode: Some(0o755), ..Default::default() },
    /// );
    /// # let _ = template;
    /// ```
    pub fn copy_with(
        mut self,
        src: impl Into<String>,
        dest: impl Into<String>,
        options: CopyOptions,
    ) -> Self {
        let src = src.into();
        if let Err(message) = files::validate_relative_path(&src) {
            self.defer(Deferred::Template(message));
            return self;
        }
        let args = vec![
            src,
            dest.into(),
            options.user.unwrap_or_default(),
            options.mode.map(|m| format!("{m:04o}")).unwrap_or_default(),
        ];
        self.instructions.push(Instruction {
            kind: StepType::Copy,
            args,
            force: options.force_upload || self.force_next_layer,
            force_upload: options.force_upload,
            resolve_symlinks: options.resolve_symlinks,
            gzip: options.gzip,
        });
        self
    }

    /// Several copies, one step per source.
    ///
    /// ```
    /// use e2b::template::{CopyItem, Template};
    ///
    /// let template = Template::new().copy_items([
    ///     CopyItem::new("a.txt", "/tmp/a.txt"),
    ///     CopyItem::new("b.txt", "/tmp/b.txt"),
    /// ]);
    /// # let _ = template;
    /// ```
    pub fn copy_items(mut self, items: impl IntoIterator<Item = CopyItem>) -> Self {
        for item in items {
            for src in item.src {
                self = self.copy_with(src, item.dest.clone(), item.options.clone());
            }
        }
        self
    }

    /// Removes files (`rm`).
    ///
    /// ```
    /// let template = e2b::template::Template::new().remove(["/tmp/cache.tar"]);
    /// # let _ = template;
    /// ```
    pub fn remove(self, paths: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.remove_with(paths, RemoveOptions::default())
    }

    /// [`remove`](Self::remove) with `-r`, `-f` or a user.
    ///
    /// ```
    /// use e2b::template::{RemoveOptions, Template};
    ///
    /// let options = RemoveOptions { recursive: true, force: true, user: None };
    /// let template = Template::new().remove_with(["/tmp/build"], options);
    /// # let _ = template;
    /// ```
    pub fn remove_with(
        self,
        paths: impl IntoIterator<Item = impl AsRef<str>>,
        options: RemoveOptions,
    ) -> Self {
        let mut args = vec!["rm".to_owned()];
        if options.recursive {
            args.push("-r".to_owned());
        }
        if options.force {
            args.push("-f".to_owned());
        }
        args.extend(paths.into_iter().map(|p| shell_quote(p.as_ref())));
        self.run(args.join(" "), options.user)
    }

    /// Renames a file (`mv`).
    ///
    /// ```
    /// let template = e2b::template::Template::new().rename("/tmp/a", "/tmp/b");
    /// # let _ = template;
    /// ```
    pub fn rename(self, src: &str, dest: &str) -> Self {
        self.rename_with(src, dest, MoveOptions::default())
    }

    /// [`rename`](Self::rename) with `-f` or a user.
    ///
    /// ```
    /// use e2b::template::{MoveOptions, Template};
    ///
    /// let options = MoveOptions { force: true, user: Some("root".into()) };
    /// let template = Template::new().rename_with("/tmp/a", "/tmp/b", options);
    /// # let _ = template;
    /// ```
    pub fn rename_with(self, src: &str, dest: &str, options: MoveOptions) -> Self {
        let mut args = vec!["mv".to_owned(), shell_quote(src), shell_quote(dest)];
        if options.force {
            args.push("-f".to_owned());
        }
        self.run(args.join(" "), options.user)
    }

    /// Makes directories with their parents (`mkdir -p`).
    ///
    /// ```
    /// let template = e2b::template::Template::new().make_dir(["/app/data"]);
    /// # let _ = template;
    /// ```
    pub fn make_dir(self, paths: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.make_dir_with(paths, MakeDirOptions::default())
    }

    /// [`make_dir`](Self::make_dir) with a mode or a user.
    ///
    /// ```
    /// use e2b::template::{MakeDirOptions, Template};
    ///
    /// let options = MakeDirOptions { mode: Some(0o700), user: None };
    /// let template = Template::new().make_dir_with(["/app/secrets"], options);
    /// # let _ = template;
    /// ```
    pub fn make_dir_with(
        self,
        paths: impl IntoIterator<Item = impl AsRef<str>>,
        options: MakeDirOptions,
    ) -> Self {
        let mut args = vec!["mkdir".to_owned(), "-p".to_owned()];
        if let Some(mode) = options.mode {
            args.push(format!("-m {mode:04o}"));
        }
        args.extend(paths.into_iter().map(|p| shell_quote(p.as_ref())));
        self.run(args.join(" "), options.user)
    }

    /// Makes a symbolic link `dest` pointing at `src` (`ln -s`).
    ///
    /// ```
    /// let template = e2b::template::Template::new()
    ///     .make_symlink("/usr/bin/python3", "/usr/local/bin/python");
    /// # let _ = template;
    /// ```
    pub fn make_symlink(self, src: &str, dest: &str) -> Self {
        self.make_symlink_with(src, dest, MoveOptions::default())
    }

    /// [`make_symlink`](Self::make_symlink) with `-f` or a user.
    ///
    /// ```
    /// use e2b::template::{MoveOptions, Template};
    ///
    /// let options = MoveOptions { force: true, user: None };
    /// let template = Template::new().make_symlink_with("/a", "/b", options);
    /// # let _ = template;
    /// ```
    pub fn make_symlink_with(self, src: &str, dest: &str, options: MoveOptions) -> Self {
        let mut args = vec!["ln".to_owned(), "-s".to_owned()];
        if options.force {
            args.push("-f".to_owned());
        }
        args.push(shell_quote(src));
        args.push(shell_quote(dest));
        self.run(args.join(" "), options.user)
    }

    fn run(mut self, command: String, user: Option<String>) -> Self {
        let mut args = vec![command];
        if let Some(user) = user.filter(|u| !u.is_empty()) {
            args.push(user);
        }
        self.push(StepType::Run, args);
        self
    }

    /// Runs a shell command, as the current user ([`set_user`](Self::set_user)).
    ///
    /// ```
    /// let template = e2b::template::Template::new().run_cmd("echo hello > /tmp/hello");
    /// # let _ = template;
    /// ```
    pub fn run_cmd(self, command: impl Into<String>) -> Self {
        self.run(command.into(), None)
    }

    /// Runs a shell command as `user`.
    ///
    /// ```
    /// let template = e2b::template::Template::new().run_cmd_as("apt-get update", "root");
    /// # let _ = template;
    /// ```
    pub fn run_cmd_as(self, command: impl Into<String>, user: impl Into<String>) -> Self {
        self.run(command.into(), Some(user.into()))
    }

    /// Runs several shell commands in one step, joined with `&&`, optionally as `user`.
    ///
    /// ```
    /// let template = e2b::template::Template::new()
    ///     .run_cmds(["mkdir -p /app", "touch /app/ready"], Some("root"));
    /// # let _ = template;
    /// ```
    pub fn run_cmds(
        self,
        commands: impl IntoIterator<Item = impl AsRef<str>>,
        user: Option<&str>,
    ) -> Self {
        let joined = commands
            .into_iter()
            .map(|c| c.as_ref().to_owned())
            .collect::<Vec<_>>()
            .join(" && ");
        self.run(joined, user.map(str::to_owned))
    }

    /// Sets the working directory of the following steps and of the sandboxes.
    ///
    /// ```
    /// let template = e2b::template::Template::new().set_workdir("/app");
    /// # let _ = template;
    /// ```
    pub fn set_workdir(mut self, workdir: impl Into<String>) -> Self {
        self.push(StepType::Workdir, vec![workdir.into()]);
        self
    }

    /// Sets the user of the following steps and of the sandboxes.
    ///
    /// ```
    /// let template = e2b::template::Template::new().set_user("root");
    /// # let _ = template;
    /// ```
    pub fn set_user(mut self, user: impl Into<String>) -> Self {
        self.push(StepType::User, vec![user.into()]);
        self
    }

    /// Sets environment variables of the following steps and of the sandboxes, in the
    /// order given. No step when there are none.
    ///
    /// ```
    /// let template = e2b::template::Template::new()
    ///     .set_envs([("NODE_ENV", "production"), ("PORT", "3000")]);
    /// # let _ = template;
    /// ```
    pub fn set_envs(
        mut self,
        envs: impl IntoIterator<Item = (impl Into<String>, impl Into<String>)>,
    ) -> Self {
        let args: Vec<String> = envs
            .into_iter()
            .flat_map(|(k, v)| [k.into(), v.into()])
            .collect();
        if !args.is_empty() {
            self.push(StepType::Env, args);
        }
        self
    }

    /// Installs Debian packages as root (`apt-get update && apt-get install -y ...`).
    ///
    /// ```
    /// let template = e2b::template::Template::new().apt_install(["curl", "git"]);
    /// # let _ = template;
    /// ```
    pub fn apt_install(self, packages: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.apt_install_with(packages, AptInstallOptions::default())
    }

    /// [`apt_install`](Self::apt_install) with `--no-install-recommends` or
    /// `--fix-missing`.
    ///
    /// ```
    /// use e2b::template::{AptInstallOptions, Template};
    ///
    /// let options = AptInstallOptions { no_install_recommends: true, fix_missing: false };
    /// let template = Template::new().apt_install_with(["curl"], options);
    /// # let _ = template;
    /// ```
    pub fn apt_install_with(
        self,
        packages: impl IntoIterator<Item = impl AsRef<str>>,
        options: AptInstallOptions,
    ) -> Self {
        let packages = join(packages);
        let install = format!(
            "DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y {}{}{}",
            if options.no_install_recommends {
                "--no-install-recommends "
            } else {
                ""
            },
            if options.fix_missing {
                "--fix-missing "
            } else {
                ""
            },
            packages
        );
        self.run(
            format!("apt-get update && {install}"),
            Some("root".to_owned()),
        )
    }

    /// Installs Python packages system-wide as root (`pip install ...`); with no packages,
    /// the project in the working directory (`pip install .`).
    ///
    /// ```
    /// let template = e2b::template::Template::new().pip_install(["numpy", "pandas"]);
    /// # let _ = template;
    /// ```
    pub fn pip_install(self, packages: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.pip_install_with(packages, PipInstallOptions::default())
    }

    /// [`pip_install`](Self::pip_install), or with `global: false` `pip install --user` as
    /// the current user.
    ///
    /// ```
    /// use e2b::template::{PipInstallOptions, Template};
    ///
    /// let template = Template::new().pip_install_with(["requests"], PipInstallOptions { global: false });
    /// # let _ = template;
    /// ```
    pub fn pip_install_with(
        self,
        packages: impl IntoIterator<Item = impl AsRef<str>>,
        options: PipInstallOptions,
    ) -> Self {
        let mut args = vec!["pip".to_owned(), "install".to_owned()];
        if !options.global {
            args.push("--user".to_owned());
        }
        let packages = join(packages);
        args.push(if packages.is_empty() {
            ".".to_owned()
        } else {
            packages
        });
        self.run(args.join(" "), options.global.then(|| "root".to_owned()))
    }

    /// Installs Node packages (`npm install ...`); with no packages, the project's
    /// dependencies.
    ///
    /// ```
    /// let template = e2b::template::Template::new().npm_install(["express"]);
    /// # let _ = template;
    /// ```
    pub fn npm_install(self, packages: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.npm_install_with(packages, NodeInstallOptions::default())
    }

    /// [`npm_install`](Self::npm_install) globally as root (`-g`) or as development
    /// dependencies (`--save-dev`).
    ///
    /// ```
    /// use e2b::template::{NodeInstallOptions, Template};
    ///
    /// let options = NodeInstallOptions { global: true, dev: false };
    /// let template = Template::new().npm_install_with(["typescript"], options);
    /// # let _ = template;
    /// ```
    pub fn npm_install_with(
        self,
        packages: impl IntoIterator<Item = impl AsRef<str>>,
        options: NodeInstallOptions,
    ) -> Self {
        self.node_install("npm", "--save-dev", packages, options)
    }

    /// Installs packages with bun (`bun install ...`).
    ///
    /// ```
    /// let template = e2b::template::Template::new().bun_install(["hono"]);
    /// # let _ = template;
    /// ```
    pub fn bun_install(self, packages: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        self.bun_install_with(packages, NodeInstallOptions::default())
    }

    /// [`bun_install`](Self::bun_install) globally as root (`-g`) or as development
    /// dependencies (`--dev`).
    ///
    /// ```
    /// use e2b::template::{NodeInstallOptions, Template};
    ///
    /// let options = NodeInstallOptions { global: false, dev: true };
    /// let template = Template::new().bun_install_with(["vitest"], options);
    /// # let _ = template;
    /// ```
    pub fn bun_install_with(
        self,
        packages: impl IntoIterator<Item = impl AsRef<str>>,
        options: NodeInstallOptions,
    ) -> Self {
        self.node_install("bun", "--dev", packages, options)
    }

    fn node_install(
        self,
        tool: &str,
        dev_flag: &str,
        packages: impl IntoIterator<Item = impl AsRef<str>>,
        options: NodeInstallOptions,
    ) -> Self {
        let mut args = vec![tool.to_owned(), "install".to_owned()];
        if options.global {
            args.push("-g".to_owned());
        }
        if options.dev {
            args.push(dev_flag.to_owned());
        }
        let packages = join(packages);
        if !packages.is_empty() {
            args.push(packages);
        }
        self.run(args.join(" "), options.global.then(|| "root".to_owned()))
    }

    /// Pulls MCP servers into an `mcp-gateway` based template (`mcp-gateway pull ...`, as
    /// root); on any other base the build reports an error.
    ///
    /// ```
    /// let template = e2b::template::Template::new()
    ///     .from_template("mcp-gateway")
    ///     .add_mcp_server(["github"]);
    /// # let _ = template;
    /// ```
    pub fn add_mcp_server(mut self, servers: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        if self.base_template.as_deref() != Some("mcp-gateway") {
            self.defer(Deferred::Template(
                "MCP servers can only be added to mcp-gateway template".to_owned(),
            ));
            return self;
        }
        let servers = join(servers);
        self.run(
            format!("mcp-gateway pull {servers}"),
            Some("root".to_owned()),
        )
    }

    /// Clones a git repository.
    ///
    /// ```
    /// let template = e2b::template::Template::new()
    ///     .git_clone("https://github.com/e2b-dev/e2b.git");
    /// # let _ = template;
    /// ```
    pub fn git_clone(self, url: &str) -> Self {
        self.git_clone_with(url, GitCloneOptions::default())
    }

    /// [`git_clone`](Self::git_clone) to a path, of one branch, shallow, or as a user.
    ///
    /// ```
    /// use e2b::template::{GitCloneOptions, Template};
    ///
    /// let options = GitCloneOptions {
    ///     path: Some("/app".into()),
    ///     branch: Some("main".into()),
    ///     depth: Some(1),
    ///     user: None,
    /// };
    /// let template = Template::new().git_clone_with("https://github.com/e2b-dev/e2b.git", options);
    /// # let _ = template;
    /// ```
    pub fn git_clone_with(self, url: &str, options: GitCloneOptions) -> Self {
        let mut args = vec!["git".to_owned(), "clone".to_owned(), shell_quote(url)];
        if let Some(branch) = options.branch.filter(|b| !b.is_empty()) {
            args.push(format!("--branch {}", shell_quote(&branch)));
            args.push("--single-branch".to_owned());
        }
        if let Some(depth) = options.depth.filter(|d| *d > 0) {
            args.push(format!("--depth {depth}"));
        }
        if let Some(path) = options.path.filter(|p| !p.is_empty()) {
            args.push(shell_quote(&path));
        }
        self.run(args.join(" "), options.user)
    }

    /// Rebuilds every following step (and, before a base, the whole template) instead of
    /// taking it from the cache.
    ///
    /// ```
    /// let template = e2b::template::Template::new()
    ///     .from_template("base")
    ///     .skip_cache()
    ///     .run_cmd("date > /build-time");
    /// # let _ = template;
    /// ```
    pub fn skip_cache(mut self) -> Self {
        self.force_next_layer = true;
        self
    }

    /// The command each sandbox starts in the background, and the command that tells it is
    /// ready (a [`ReadyCmd`] or any shell command).
    ///
    /// ```
    /// use e2b::template::{Template, wait_for_url};
    ///
    /// let template = Template::new()
    ///     .from_node_image(None)
    ///     .set_start_cmd("npm start", wait_for_url("http://localhost:3000/health", 200));
    /// # let _ = template;
    /// ```
    pub fn set_start_cmd(
        mut self,
        start_cmd: impl Into<String>,
        ready_cmd: impl Into<ReadyCmd>,
    ) -> Self {
        self.start_cmd = Some(start_cmd.into());
        self.ready_cmd = Some(ready_cmd.into().as_str().to_owned());
        self
    }

    /// The command that tells a sandbox is ready, without a start command.
    ///
    /// ```
    /// use e2b::template::{Template, wait_for_file};
    ///
    /// let template = Template::new().set_ready_cmd(wait_for_file("/tmp/ready"));
    /// # let _ = template;
    /// ```
    pub fn set_ready_cmd(mut self, ready_cmd: impl Into<ReadyCmd>) -> Self {
        self.ready_cmd = Some(ready_cmd.into().as_str().to_owned());
        self
    }

    // -- serialization -------------------------------------------------------------------

    fn check(&self) -> Result<()> {
        match &self.deferred {
            Some(deferred) => Err(deferred.to_error()),
            None => Ok(()),
        }
    }

    /// The ignore patterns of every copy: `.dockerignore`'s, then the template's own.
    fn ignore_patterns(&self) -> Result<Vec<String>> {
        let mut patterns = files::read_dockerignore(&self.file_context_path)?;
        patterns.extend(self.file_ignore_patterns.iter().cloned());
        Ok(patterns)
    }

    /// The files hash of each COPY step, `None` for the other steps (reading the files).
    fn files_hashes(&self) -> Result<Vec<Option<String>>> {
        self.check()?;
        let ignore = self.ignore_patterns()?;
        self.instructions
            .iter()
            .map(|instruction| match instruction.kind {
                StepType::Copy => files::files_hash(
                    &instruction.args[0],
                    &instruction.args[1],
                    &self.file_context_path,
                    &ignore,
                    instruction.resolve_symlinks.unwrap_or(false),
                )
                .map(Some),
                _ => Ok(None),
            })
            .collect()
    }

    /// The build request with `hashes` from [`files_hashes`](Self::files_hashes).
    fn serialize<'a>(&'a self, hashes: &'a [Option<String>], force: bool) -> TemplateJson<'a> {
        TemplateJson {
            steps: self
                .instructions
                .iter()
                .zip(hashes)
                .map(|(instruction, hash)| StepJson {
                    kind: instruction.kind.as_str(),
                    args: &instruction.args,
                    force: instruction.force,
                    files_hash: hash.as_deref(),
                    force_upload: instruction.force_upload.then_some(true),
                })
                .collect(),
            force,
            from_image: self.base_image.as_deref(),
            from_template: self.base_template.as_deref(),
            from_image_registry: self.registry.as_ref(),
            start_cmd: self.start_cmd.as_deref(),
            ready_cmd: self.ready_cmd.as_deref(),
        }
    }

    /// The template as the Python SDK's `Template.to_json` writes it: the build request with
    /// each COPY step's files hash (so this reads the copied files).
    ///
    /// ```
    /// let template = e2b::template::Template::new().from_template("base").run_cmd("true");
    /// let json: serde_json::Value = serde_json::from_str(&template.to_json()?).unwrap();
    /// assert_eq!(
    ///     json["steps"][0],
    ///     serde_json::json!({"type": "RUN", "args": ["true"], "force": false})
    /// );
    /// # Ok::<(), e2b::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A setter's mistake ([`Error::InvalidArgument`] or [`Error::Template`]), or
    /// [`Error::Template`] when a COPY source matches no file or cannot be read.
    pub fn to_json(&self) -> Result<String> {
        let hashes = self.files_hashes()?;
        serde_json::to_string_pretty(&self.serialize(&hashes, self.force))
            .map_err(|e| Error::template(format!("serializing the template failed: {e}")))
    }

    /// The template as a Dockerfile (`FROM`, then one instruction per step, and the start
    /// command as `ENTRYPOINT`), as the Python SDK's `Template.to_dockerfile` writes it.
    ///
    /// ```
    /// let template = e2b::template::Template::new()
    ///     .from_image("python:3.12")
    ///     .set_envs([("A", "1")])
    ///     .run_cmd("pip install flask");
    /// assert_eq!(
    ///     template.to_dockerfile()?,
    ///     "FROM python:3.12\nENV A=1\nRUN pip install flask\n"
    /// );
    /// # Ok::<(), e2b::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Template`] for a template built on another template (only the build API can
    /// build those) or without a base image; a setter's mistake.
    pub fn to_dockerfile(&self) -> Result<String> {
        self.check()?;
        if self.base_template.is_some() {
            return Err(Error::template(
                "Cannot convert template built from another template to Dockerfile. \
                 Templates based on other templates can only be built using the E2B API.",
            ));
        }
        let Some(base_image) = &self.base_image else {
            return Err(Error::template("No base image specified for template"));
        };
        let mut out = format!("FROM {base_image}\n");
        for instruction in &self.instructions {
            let args = &instruction.args;
            let line = match instruction.kind {
                StepType::Run => format!("RUN {}", args[0]),
                StepType::Copy => format!("COPY {} {}", args[0], args[1]),
                StepType::Env => {
                    let pairs: Vec<String> = args
                        .chunks(2)
                        .map(|kv| format!("{}={}", kv[0], kv.get(1).map_or("", String::as_str)))
                        .collect();
                    format!("ENV {}", pairs.join(" "))
                }
                kind => format!("{} {}", kind.as_str(), args.join(" ")),
            };
            out.push_str(&line);
            out.push('\n');
        }
        if let Some(start_cmd) = self.start_cmd.as_deref().filter(|c| !c.is_empty()) {
            out.push_str(&format!("ENTRYPOINT {start_cmd}\n"));
        }
        Ok(out)
    }
}

fn join(words: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    words
        .into_iter()
        .map(|w| w.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `Template.to_json`'s shape, field for field and in its order.
#[derive(Serialize)]
struct TemplateJson<'a> {
    steps: Vec<StepJson<'a>>,
    force: bool,
    #[serde(rename = "fromImage", skip_serializing_if = "Option::is_none")]
    from_image: Option<&'a str>,
    #[serde(rename = "fromTemplate", skip_serializing_if = "Option::is_none")]
    from_template: Option<&'a str>,
    #[serde(rename = "fromImageRegistry", skip_serializing_if = "Option::is_none")]
    from_image_registry: Option<&'a RegistryCredentials>,
    #[serde(rename = "startCmd", skip_serializing_if = "Option::is_none")]
    start_cmd: Option<&'a str>,
    #[serde(rename = "readyCmd", skip_serializing_if = "Option::is_none")]
    ready_cmd: Option<&'a str>,
}

#[derive(Serialize)]
struct StepJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    args: &'a [String],
    force: bool,
    #[serde(rename = "filesHash", skip_serializing_if = "Option::is_none")]
    files_hash: Option<&'a str>,
    #[serde(rename = "forceUpload", skip_serializing_if = "Option::is_none")]
    force_upload: Option<bool>,
}
