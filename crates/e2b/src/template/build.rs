//! Building templates with E2B's build API, as the Python SDK 2.63 drives it
//! (`e2b/template_async/`): create the template (`POST /v3/templates`), upload each COPY
//! step's files the server does not have (`GET /templates/{id}/files/{hash}`, then a `PUT`
//! of the tar archive to the URL it gives), start the build
//! (`POST /v2/templates/{id}/builds/{buildID}`), and poll its status every 200 ms with the
//! log offset, draining the last log entries after it ends. Also: build status, tags and
//! whether a name exists.

use std::fmt;
use std::io::{Seek, Write};
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use e2b_api::ClientInfo;
use e2b_api::prelude::*;
use e2b_api::types;
use regex::Regex;

use super::{StepType, Template, files};
use crate::config::ConnectionConfig;
use crate::error::{Error, Result};
use crate::sandbox::api::{api_error, send_with_retries};
use crate::sandbox::default_config;

/// How often a build's status is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long an upload of a COPY step's files may take unless the configuration sets a
/// request timeout (archives can be far larger than any API call).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);
/// The smallest memory the API accepts, in MiB.
const MIN_MEMORY_MB: u32 = 128;

/// Severity of a build log entry.
///
/// ```
/// use e2b::template::LogLevel;
///
/// assert!(LogLevel::Error > LogLevel::Info);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Details.
    Debug,
    /// Progress.
    Info,
    /// Something to look at.
    Warn,
    /// A failure.
    Error,
}

impl LogLevel {
    /// The level as the API and the Python SDK spell it (`debug`, `info`, `warn`, `error`).
    ///
    /// ```
    /// assert_eq!(e2b::template::LogLevel::Warn.as_str(), "warn");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl From<types::LogLevel> for LogLevel {
    fn from(level: types::LogLevel) -> Self {
        match level {
            types::LogLevel::Debug => LogLevel::Debug,
            types::LogLevel::Info => LogLevel::Info,
            types::LogLevel::Warn => LogLevel::Warn,
            types::LogLevel::Error => LogLevel::Error,
        }
    }
}

/// One log entry of a build: from the server, or from the SDK about its own progress
/// (requesting, uploading, waiting).
///
/// ```
/// # fn show(entry: e2b::template::LogEntry) {
/// // "[2026-01-01T00:00:00+00:00] [info] Uploaded 'app/'"
/// println!("{entry}");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// When it was logged.
    pub timestamp: DateTime<Utc>,
    /// How severe it is.
    pub level: LogLevel,
    /// The message, without ANSI escape codes.
    pub message: String,
}

impl LogEntry {
    fn new(level: LogLevel, message: impl Into<String>) -> Self {
        Self {
            timestamp: Utc::now(),
            level,
            message: strip_ansi(&message.into()),
        }
    }
}

impl From<types::BuildLogEntry> for LogEntry {
    fn from(entry: types::BuildLogEntry) -> Self {
        Self {
            timestamp: entry.timestamp,
            level: entry.level.into(),
            message: strip_ansi(&entry.message),
        }
    }
}

impl fmt::Display for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] [{}] {}",
            self.timestamp.to_rfc3339(),
            self.level.as_str(),
            self.message
        )
    }
}

/// ANSI escape codes (chalk's `ansi-regex`, as the Python SDK strips them).
static ANSI: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:\x1B[\]PX^_][\s\S]*?(?:\x07|\x1B\x5C|\x{9C}))|[\x1B\x{9B}][\[\]()#;?]*(?:[0-9]{1,4}(?:[;:][0-9]{0,4})*)?[0-9A-PR-TZcf-nq-uy=><~]",
    )
    .unwrap_or_else(|e| unreachable!("the ANSI pattern is a valid regex: {e}"))
});

fn strip_ansi(text: &str) -> String {
    ANSI.replace_all(text, "").into_owned()
}

/// Where a build stands.
///
/// ```no_run
/// use e2b::template::{BuildStatus, Template};
///
/// # async fn run(config: e2b::ConnectionConfig, info: e2b::BuildInfo) -> e2b::Result<()> {
/// let status = Template::get_build_status(&config, &info, 0).await?;
/// let finished = matches!(status.status, BuildStatus::Ready | BuildStatus::Error);
/// # let _ = finished;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStatus {
    /// Running its steps.
    Building,
    /// Queued.
    Waiting,
    /// Done; sandboxes can be created from it.
    Ready,
    /// Failed.
    Error,
}

impl From<types::TemplateBuildStatus> for BuildStatus {
    fn from(status: types::TemplateBuildStatus) -> Self {
        match status {
            types::TemplateBuildStatus::Building => BuildStatus::Building,
            types::TemplateBuildStatus::Waiting => BuildStatus::Waiting,
            types::TemplateBuildStatus::Ready => BuildStatus::Ready,
            types::TemplateBuildStatus::Error => BuildStatus::Error,
        }
    }
}

/// Why a build has its status (reported for failed builds).
///
/// ```no_run
/// # async fn run(config: e2b::ConnectionConfig, info: e2b::BuildInfo) -> e2b::Result<()> {
/// let status = e2b::Template::get_build_status(&config, &info, 0).await?;
/// if let Some(reason) = status.reason {
///     eprintln!("step {:?}: {}", reason.step, reason.message);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildStatusReason {
    /// What happened.
    pub message: String,
    /// The step that failed: its number (1 is the first step after the base), `base` or
    /// `finalize`.
    pub step: Option<String>,
    /// Log entries about it.
    pub log_entries: Vec<LogEntry>,
}

/// A build's status with its log entries from an offset on: [`Template::get_build_status`].
///
/// ```no_run
/// # async fn run(config: e2b::ConnectionConfig, info: e2b::BuildInfo) -> e2b::Result<()> {
/// let mut offset = 0;
/// let status = e2b::Template::get_build_status(&config, &info, offset).await?;
/// offset += status.log_entries.len() as u32;
/// # let _ = offset;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildStatusResponse {
    /// The build.
    pub build_id: String,
    /// Its template.
    pub template_id: String,
    /// Where it stands.
    pub status: BuildStatus,
    /// Log entries from the requested offset on (at most 100).
    pub log_entries: Vec<LogEntry>,
    /// Why it has its status, for a failed build.
    pub reason: Option<BuildStatusReason>,
}

impl From<types::TemplateBuildInfo> for BuildStatusResponse {
    fn from(info: types::TemplateBuildInfo) -> Self {
        Self {
            build_id: info.build_id,
            template_id: info.template_id,
            status: info.status.into(),
            log_entries: info.log_entries.into_iter().map(Into::into).collect(),
            reason: info.reason.map(|r| BuildStatusReason {
                message: r.message,
                step: r.step,
                log_entries: r.log_entries.into_iter().map(Into::into).collect(),
            }),
        }
    }
}

/// A requested or finished build: [`Template::build`].
///
/// ```no_run
/// # async fn run(template: e2b::Template) -> e2b::Result<()> {
/// let info = template.build("my-app:v1", e2b::BuildOptions::new()).await?;
/// let sandbox = e2b::Sandbox::builder().template(&info.name).create().await?;
/// # let _ = sandbox;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The template's ID (what sandboxes are created from, as is its name).
    pub template_id: String,
    /// The build's ID.
    pub build_id: String,
    /// The name the template was built under.
    pub name: String,
    /// The tags the build was assigned.
    pub tags: Vec<String>,
}

/// A tag of a template: [`Template::get_tags`].
///
/// ```no_run
/// # async fn run(config: e2b::ConnectionConfig) -> e2b::Result<()> {
/// for tag in e2b::Template::get_tags(&config, "my-app").await? {
///     println!("{} -> {} ({})", tag.tag, tag.build_id, tag.created_at);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateTag {
    /// The tag.
    pub tag: String,
    /// The build it points at.
    pub build_id: String,
    /// When it was assigned.
    pub created_at: DateTime<Utc>,
}

/// Tags just assigned: [`Template::assign_tags`].
///
/// ```no_run
/// # async fn run(config: e2b::ConnectionConfig) -> e2b::Result<()> {
/// let info = e2b::Template::assign_tags(&config, "my-app:v1", ["prod"]).await?;
/// assert_eq!(info.tags, ["prod"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateTagInfo {
    /// The build they point at.
    pub build_id: String,
    /// The tags.
    pub tags: Vec<String>,
}

/// Called with each log entry of a build.
type LogCallback = Box<dyn FnMut(LogEntry) + Send>;

/// Options of [`Template::build`] and [`Template::build_in_background`].
///
/// ```
/// use e2b::template::BuildOptions;
///
/// let options = BuildOptions::new()
///     .tags(["v1", "latest"])
///     .cpu_count(2)
///     .memory_mb(1024)
///     .on_build_logs(|entry| eprintln!("{entry}"));
/// # let _ = options;
/// ```
#[derive(Default)]
#[must_use]
pub struct BuildOptions {
    tags: Vec<String>,
    cpu_count: Option<u32>,
    memory_mb: Option<u32>,
    min_free_disk_mb: Option<u32>,
    skip_cache: bool,
    on_build_logs: Option<LogCallback>,
    config: Option<ConnectionConfig>,
}

impl fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildOptions")
            .field("tags", &self.tags)
            .field("cpu_count", &self.cpu_count)
            .field("memory_mb", &self.memory_mb)
            .field("min_free_disk_mb", &self.min_free_disk_mb)
            .field("skip_cache", &self.skip_cache)
            .field("on_build_logs", &self.on_build_logs.is_some())
            .field("config", &self.config)
            .finish()
    }
}

impl BuildOptions {
    /// The server's defaults, no tags, no log callback, the environment's configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tags to assign to the build (a `name:tag` name adds its tag too).
    pub fn tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// CPU cores of the template's sandboxes (at least 1).
    pub fn cpu_count(mut self, cpu_count: u32) -> Self {
        self.cpu_count = Some(cpu_count);
        self
    }

    /// Memory of the template's sandboxes, in MiB (at least 128).
    pub fn memory_mb(mut self, memory_mb: u32) -> Self {
        self.memory_mb = Some(memory_mb);
        self
    }

    /// Free disk space the template must have after its steps, in MiB.
    pub fn min_free_disk_mb(mut self, min_free_disk_mb: u32) -> Self {
        self.min_free_disk_mb = Some(min_free_disk_mb);
        self
    }

    /// Rebuilds every step instead of taking it from the cache.
    pub fn skip_cache(mut self, skip_cache: bool) -> Self {
        self.skip_cache = skip_cache;
        self
    }

    /// Called with each log entry: the SDK's own progress, then the server's build logs.
    pub fn on_build_logs(mut self, callback: impl FnMut(LogEntry) + Send + 'static) -> Self {
        self.on_build_logs = Some(Box::new(callback));
        self
    }

    /// Uses `config` instead of the environment (or, with the `local` feature and no
    /// `E2B_API_KEY`/`E2B_API_URL`, the embedded host).
    pub fn config(mut self, config: ConnectionConfig) -> Self {
        self.config = Some(config);
        self
    }

    fn log(&mut self, level: LogLevel, message: impl Into<String>) {
        if let Some(callback) = &mut self.on_build_logs {
            callback(LogEntry::new(level, message));
        }
    }

    fn resolved_config(&mut self) -> Result<ConnectionConfig> {
        match self.config.take() {
            Some(config) => Ok(config),
            None => default_config(),
        }
    }
}

impl Template {
    /// Builds the template under `name` (`name` or `name:tag`) and waits until the build is
    /// ready, passing its logs to [`BuildOptions::on_build_logs`].
    ///
    /// ```no_run
    /// use e2b::template::{BuildOptions, Template};
    ///
    /// # async fn run() -> e2b::Result<()> {
    /// let template = Template::new().from_template("base").run_cmd("echo hi > /hi");
    /// let info = Template::build(&template, "hello", BuildOptions::new()).await?;
    /// let sandbox = e2b::Sandbox::builder().template(&info.name).create().await?;
    /// # let _ = sandbox;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Build`] when the build fails (naming the failing step) or cannot be
    /// requested; [`Error::FileUpload`] when uploading files fails;
    /// [`Error::InvalidArgument`]/[`Error::Template`] for a wrong template or option.
    pub async fn build(&self, name: &str, mut options: BuildOptions) -> Result<BuildInfo> {
        options.log(LogLevel::Debug, "Build started");
        let result = self.build_and_wait(name, &mut options).await;
        options.log(LogLevel::Debug, "Build finished");
        result
    }

    async fn build_and_wait(&self, name: &str, options: &mut BuildOptions) -> Result<BuildInfo> {
        let config = options.resolved_config()?;
        let info = self.request_and_start(&config, name, options).await?;
        options.log(LogLevel::Info, "Waiting for logs...");
        self.wait_for_build(&config, &info, options).await?;
        Ok(info)
    }

    /// Requests the build and starts it, without waiting for it: follow it with
    /// [`get_build_status`](Self::get_build_status).
    ///
    /// ```no_run
    /// use e2b::template::{BuildOptions, Template};
    ///
    /// # async fn run() -> e2b::Result<()> {
    /// let template = Template::new().from_template("base").run_cmd("sleep 1");
    /// let info = template.build_in_background("slow", BuildOptions::new()).await?;
    /// let config = e2b::ConnectionConfig::from_env()?;
    /// let status = Template::get_build_status(&config, &info, 0).await?;
    /// println!("{:?}", status.status);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), except for the build's own failure.
    pub async fn build_in_background(
        &self,
        name: &str,
        mut options: BuildOptions,
    ) -> Result<BuildInfo> {
        let config = options.resolved_config()?;
        self.request_and_start(&config, name, &mut options).await
    }

    async fn request_and_start(
        &self,
        config: &ConnectionConfig,
        name: &str,
        options: &mut BuildOptions,
    ) -> Result<BuildInfo> {
        if name.is_empty() {
            return Err(Error::template("Name must be provided"));
        }
        let request = build_request(name, options)?;
        self.check()?;
        let client = config.api_client()?;

        let tags_message = if options.tags.is_empty() {
            String::new()
        } else {
            format!(" with tags: {}", options.tags.join(", "))
        };
        options.log(
            LogLevel::Info,
            format!("Requesting build for template: {name}{tags_message}"),
        );
        let send = || client.post_templates_v3().body(request.clone()).send();
        let created = send_with_retries(config.request_timeout(), send)
            .await
            .map_err(|e| (e, "requesting a template build"));
        let created = match created {
            Ok(response) => response.into_inner(),
            Err((e, what)) => return Err(api_error(e, what, None).await.into_class(Error::Build)),
        };
        let (template_id, build_id) = (created.template_id, created.build_id);
        options.log(
            LogLevel::Info,
            format!("Template created with ID: {template_id}, Build ID: {build_id}"),
        );

        let hashed = self.clone();
        let hashes = tokio::task::spawn_blocking(move || hashed.files_hashes())
            .await
            .map_err(|e| Error::template(format!("hashing the template's files failed: {e}")))??;
        let ignore = self.ignore_patterns()?;
        for (instruction, hash) in self.instructions.iter().zip(&hashes) {
            let (StepType::Copy, Some(hash)) = (instruction.kind, hash) else {
                continue;
            };
            let src = &instruction.args[0];
            let send = || {
                client
                    .get_template_files_upload()
                    .template_id(&template_id)
                    .hash(hash)
                    .send()
            };
            let upload = match send_with_retries(config.request_timeout(), send).await {
                Ok(response) => response.into_inner(),
                Err(e) => {
                    return Err(api_error(e, "getting a file upload link", None)
                        .await
                        .into_class(Error::FileUpload));
                }
            };
            match upload
                .url
                .filter(|_| instruction.force_upload || !upload.present)
            {
                Some(url) => {
                    self.upload(config, instruction, src, &ignore, &url, &upload.headers)
                        .await?;
                    options.log(LogLevel::Info, format!("Uploaded '{src}'"));
                }
                None => options.log(
                    LogLevel::Info,
                    format!("Skipping upload of '{src}', already cached"),
                ),
            }
        }
        options.log(LogLevel::Info, "All file uploads completed");

        options.log(LogLevel::Info, "Starting building...");
        let body = self.start_request(&hashes, self.force || options.skip_cache)?;
        let send = || {
            client
                .post_template_build_v2()
                .template_id(&template_id)
                .build_id(&build_id)
                .body(body.clone())
                .send()
        };
        if let Err(e) = send_with_retries(config.request_timeout(), send).await {
            return Err(api_error(e, "starting a template build", None)
                .await
                .into_class(Error::Build));
        }
        Ok(BuildInfo {
            template_id,
            build_id,
            name: name.to_owned(),
            tags: created.tags,
        })
    }

    /// The start request: exactly [`to_json`](Self::to_json)'s document, read by the
    /// generated type (which has no `forceUpload`; the server ignores it).
    fn start_request(
        &self,
        hashes: &[Option<String>],
        force: bool,
    ) -> Result<types::TemplateBuildStartV2> {
        let value = serde_json::to_value(self.serialize(hashes, force))
            .map_err(|e| Error::template(format!("serializing the template failed: {e}")))?;
        serde_json::from_value(value)
            .map_err(|e| Error::template(format!("the template is not a valid build: {e}")))
    }

    /// Uploads the files of one COPY step: their tar archive (built in a temporary file),
    /// `PUT` with the headers the API gave and an explicit `Content-Length`.
    async fn upload(
        &self,
        config: &ConnectionConfig,
        instruction: &super::Instruction,
        src: &str,
        ignore: &[String],
        url: &str,
        headers: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        let failed = |what: String| Error::file_upload(format!("Failed to upload file: {what}"));
        let (src_owned, context, ignore_owned) = (
            src.to_owned(),
            self.file_context_path.clone(),
            ignore.to_vec(),
        );
        let resolve_symlinks = instruction.resolve_symlinks.unwrap_or(false);
        let gzip = instruction.gzip.unwrap_or(true);
        let archive = tokio::task::spawn_blocking(move || -> Result<(std::fs::File, u64)> {
            let file = tempfile::tempfile().map_err(|e| {
                Error::file_upload(format!("creating a temporary file failed: {e}"))
            })?;
            let mut file = files::write_archive(
                &src_owned,
                &context,
                &ignore_owned,
                resolve_symlinks,
                gzip,
                file,
            )?;
            file.flush()
                .and_then(|()| file.rewind())
                .map_err(|e| Error::file_upload(format!("writing the archive failed: {e}")))?;
            let size = file
                .metadata()
                .map_err(|e| Error::file_upload(format!("reading the archive failed: {e}")))?
                .len();
            Ok((file, size))
        })
        .await
        .map_err(|e| failed(e.to_string()))??;
        let (file, size) = archive;

        let http = config.api_client()?.client();
        let mut request = http
            .put(url)
            .timeout(config.request_timeout().unwrap_or(UPLOAD_TIMEOUT));
        for (name, value) in headers {
            // Content-Length stays ours: presigned URLs must not see a chunked upload.
            if !name.eq_ignore_ascii_case("content-length") {
                request = request.header(name, value);
            }
        }
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(
            tokio::fs::File::from_std(file),
        ));
        let response = request
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body)
            .send()
            .await
            .map_err(|e| failed(e2b_envd::error_chain(&e.without_url())))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            return Err(Error::FileUpload(
                crate::error::Context::new(format!(
                    "Failed to upload file: {}: {}",
                    status.as_u16(),
                    crate::error::body_message(&body)
                ))
                .status(status.as_u16()),
            ));
        }
        Ok(())
    }

    /// Polls until the build ends (module docs); a failed build is [`Error::Build`].
    async fn wait_for_build(
        &self,
        config: &ConnectionConfig,
        info: &BuildInfo,
        options: &mut BuildOptions,
    ) -> Result<()> {
        let mut offset = 0u32;
        loop {
            let status = poll(config, info, &mut offset, options).await?;
            match status.status {
                BuildStatus::Building | BuildStatus::Waiting => {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                BuildStatus::Ready | BuildStatus::Error => {
                    // A status answer holds at most 100 entries: drain the rest.
                    let mut tail = status.log_entries.len();
                    while tail > 0 {
                        tail = poll(config, info, &mut offset, options)
                            .await?
                            .log_entries
                            .len();
                    }
                    if status.status == BuildStatus::Ready {
                        return Ok(());
                    }
                    return Err(self.build_failure(status.reason));
                }
            }
        }
    }

    /// The error of a failed build, naming its step as the template defines it.
    fn build_failure(&self, reason: Option<BuildStatusReason>) -> Error {
        let Some(reason) = reason else {
            return Error::build("Build failed");
        };
        let Some(step) = reason.step else {
            return Error::build(reason.message);
        };
        // Step numbers count from 1 after the base, as the build API numbers them.
        let described = step
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.instructions.get(i))
            .map(|i| format!(" ({} {})", i.kind.as_str(), i.args.join(" ").trim_end()))
            .unwrap_or_default();
        Error::build(format!(
            "build failed in step {step}{described}: {}",
            reason.message
        ))
    }

    /// A build's status with its log entries from `logs_offset` on.
    ///
    /// ```no_run
    /// use e2b::template::{BuildOptions, BuildStatus, Template};
    ///
    /// # async fn run(info: e2b::template::BuildInfo) -> e2b::Result<()> {
    /// let config = e2b::ConnectionConfig::from_env()?;
    /// let status = Template::get_build_status(&config, &info, 0).await?;
    /// if status.status == BuildStatus::Error {
    ///     eprintln!("{:?}", status.reason);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Build`] as mapped from the API.
    pub async fn get_build_status(
        config: &ConnectionConfig,
        build: &BuildInfo,
        logs_offset: u32,
    ) -> Result<BuildStatusResponse> {
        let offset = i32::try_from(logs_offset).map_err(|_| {
            Error::invalid_argument(format!(
                "logs_offset {logs_offset} does not fit: at most {}",
                i32::MAX
            ))
        })?;
        let client = config.api_client()?;
        let send = || {
            client
                .get_template_build_status()
                .template_id(&build.template_id)
                .build_id(&build.build_id)
                .logs_offset(offset)
                .send()
        };
        match send_with_retries(config.request_timeout(), send).await {
            Ok(response) => Ok(response.into_inner().into()),
            Err(e) => Err(api_error(e, "getting the build status", None)
                .await
                .into_class(Error::Build)),
        }
    }

    /// Whether a template with this name exists (also when it is another team's).
    ///
    /// ```no_run
    /// # async fn run() -> e2b::Result<()> {
    /// let config = e2b::ConnectionConfig::from_env()?;
    /// if !e2b::Template::exists(&config, "my-template").await? {
    ///     println!("not built yet");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Template`] as mapped from the API.
    pub async fn exists(config: &ConnectionConfig, name: &str) -> Result<bool> {
        Self::alias_exists(config, name).await
    }

    /// Whether a template with this alias exists; the older name of
    /// [`exists`](Self::exists).
    ///
    /// ```no_run
    /// # async fn run() -> e2b::Result<()> {
    /// let config = e2b::ConnectionConfig::from_env()?;
    /// let taken = e2b::Template::alias_exists(&config, "my-template").await?;
    /// # let _ = taken;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Template`] as mapped from the API.
    pub async fn alias_exists(config: &ConnectionConfig, alias: &str) -> Result<bool> {
        let client = config.api_client()?;
        let send = || client.get_template_alias().alias(alias).send();
        match send_with_retries(config.request_timeout(), send).await {
            Ok(_) => Ok(true),
            Err(e) => match e.status().map(|s| s.as_u16()) {
                Some(404) => Ok(false),
                // It exists but belongs to another team.
                Some(403) => Ok(true),
                _ => Err(api_error(e, "checking a template alias", None)
                    .await
                    .into_class(Error::Template)),
            },
        }
    }

    /// Assigns `tags` to the build `target_name` (`name:tag`) points at.
    ///
    /// ```no_run
    /// # async fn run() -> e2b::Result<()> {
    /// let config = e2b::ConnectionConfig::from_env()?;
    /// let info = e2b::Template::assign_tags(&config, "my-template:v2", ["production"]).await?;
    /// println!("{} now tagged {:?}", info.build_id, info.tags);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Template`] as mapped from the API.
    pub async fn assign_tags(
        config: &ConnectionConfig,
        target_name: &str,
        tags: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<TemplateTagInfo> {
        let body = types::AssignTemplateTagsRequest {
            target: target_name.to_owned(),
            tags: tags.into_iter().map(Into::into).collect(),
        };
        let client = config.api_client()?;
        let send = || client.post_template_tags().body(body.clone()).send();
        match send_with_retries(config.request_timeout(), send).await {
            Ok(response) => {
                let assigned = response.into_inner();
                Ok(TemplateTagInfo {
                    build_id: assigned.build_id.to_string(),
                    tags: assigned.tags,
                })
            }
            Err(e) => Err(api_error(e, "assigning template tags", None)
                .await
                .into_class(Error::Template)),
        }
    }

    /// Removes `tags` from the template `name`.
    ///
    /// ```no_run
    /// # async fn run() -> e2b::Result<()> {
    /// let config = e2b::ConnectionConfig::from_env()?;
    /// e2b::Template::remove_tags(&config, "my-template", ["staging"]).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Template`] as mapped from the API.
    pub async fn remove_tags(
        config: &ConnectionConfig,
        name: &str,
        tags: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<()> {
        let body = types::DeleteTemplateTagsRequest {
            name: name.to_owned(),
            tags: tags.into_iter().map(Into::into).collect(),
        };
        let client = config.api_client()?;
        let send = || client.delete_template_tags().body(body.clone()).send();
        match send_with_retries(config.request_timeout(), send).await {
            Ok(_) => Ok(()),
            Err(e) => Err(api_error(e, "removing template tags", None)
                .await
                .into_class(Error::Template)),
        }
    }

    /// Every tag of a template (by ID or name) with the build it points at.
    ///
    /// ```no_run
    /// # async fn run() -> e2b::Result<()> {
    /// let config = e2b::ConnectionConfig::from_env()?;
    /// for tag in e2b::Template::get_tags(&config, "my-template").await? {
    ///     println!("{} -> {}", tag.tag, tag.build_id);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Template`] as mapped from the API.
    pub async fn get_tags(
        config: &ConnectionConfig,
        template_id: &str,
    ) -> Result<Vec<TemplateTag>> {
        let client = config.api_client()?;
        let send = || client.get_template_tags().template_id(template_id).send();
        match send_with_retries(config.request_timeout(), send).await {
            Ok(response) => Ok(response
                .into_inner()
                .into_iter()
                .map(|t| TemplateTag {
                    tag: t.tag,
                    build_id: t.build_id.to_string(),
                    created_at: t.created_at,
                })
                .collect()),
            Err(e) => Err(api_error(e, "listing template tags", None)
                .await
                .into_class(Error::Template)),
        }
    }
}

/// The create request, with the options checked.
fn build_request(name: &str, options: &BuildOptions) -> Result<types::TemplateBuildRequestV3> {
    let cpu_count = options
        .cpu_count
        .map(|n| {
            std::num::NonZeroU32::new(n)
                .map(types::CpuCount)
                .ok_or_else(|| Error::invalid_argument("cpu_count must be at least 1, got 0"))
        })
        .transpose()?;
    let memory_mb = options
        .memory_mb
        .map(|mb| {
            if mb < MIN_MEMORY_MB {
                return Err(Error::invalid_argument(format!(
                    "memory_mb must be at least {MIN_MEMORY_MB} MiB, got {mb}"
                )));
            }
            i32::try_from(mb)
                .map(types::MemoryMb)
                .map_err(|_| Error::invalid_argument(format!("memory_mb {mb} is too large")))
        })
        .transpose()?;
    let min_free_disk_mb = options
        .min_free_disk_mb
        .map(|mb| {
            i32::try_from(mb)
                .map_err(|_| Error::invalid_argument(format!("min_free_disk_mb {mb} is too large")))
        })
        .transpose()?;
    let name = types::TemplateBuildRequestV3Name::try_from(name)
        .map_err(|e| Error::invalid_argument(format!("the template name '{name}': {e}")))?;
    Ok(types::TemplateBuildRequestV3 {
        alias: None,
        cpu_count,
        memory_mb,
        min_free_disk_mb,
        name: Some(name),
        tags: options.tags.clone(),
        team_id: None,
    })
}

/// One status poll: advances `offset` past the entries received and hands them to the
/// callback.
async fn poll(
    config: &ConnectionConfig,
    info: &BuildInfo,
    offset: &mut u32,
    options: &mut BuildOptions,
) -> Result<BuildStatusResponse> {
    let status = Template::get_build_status(config, info, *offset).await?;
    *offset += u32::try_from(status.log_entries.len()).unwrap_or(u32::MAX);
    if let Some(callback) = &mut options.on_build_logs {
        for entry in &status.log_entries {
            callback(entry.clone());
        }
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_codes_are_stripped() {
        assert_eq!(strip_ansi("\x1b[31mred\x1b[0m plain"), "red plain");
        assert_eq!(strip_ansi("\x1b]8;;http://x\x07link\x1b]8;;\x07"), "link");
    }

    #[test]
    fn options_are_checked() {
        let e = build_request("t", &BuildOptions::new().cpu_count(0)).unwrap_err();
        assert_eq!(e.to_string(), "cpu_count must be at least 1, got 0");
        let e = build_request("t", &BuildOptions::new().memory_mb(64)).unwrap_err();
        assert_eq!(e.to_string(), "memory_mb must be at least 128 MiB, got 64");
        let long = "x".repeat(129);
        assert!(
            build_request(&long, &BuildOptions::new())
                .unwrap_err()
                .is_invalid_argument()
        );
        let request = build_request("t:v1", &BuildOptions::new().tags(["a"]).cpu_count(2)).unwrap();
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            serde_json::json!({"name": "t:v1", "tags": ["a"], "cpuCount": 2})
        );
    }
}
