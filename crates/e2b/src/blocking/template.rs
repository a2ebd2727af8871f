//! The blocking twin of [`crate::template`].

use std::path::{Path, PathBuf};

use super::Runtime;
use crate::config::ConnectionConfig;
use crate::error::Result;
use crate::template::{
    AptInstallOptions, BuildInfo, BuildOptions, BuildStatusResponse, CopyItem, CopyOptions,
    GcpServiceAccount, GitCloneOptions, MakeDirOptions, MoveOptions, NodeInstallOptions,
    PipInstallOptions, ReadyCmd, RemoveOptions, TemplateTag, TemplateTagInfo,
};

/// A template definition whose build blocks: the twin of [`crate::Template`], with the same
/// builder methods (each documented there) and synchronous [`build`](Self::build), status
/// and tag calls. The log callback of [`BuildOptions::on_build_logs`] runs on the runtime
/// thread.
///
/// ```no_run
/// use e2b::blocking::Template;
/// use e2b::template::BuildOptions;
///
/// # fn main() -> e2b::Result<()> {
/// let template = Template::new()
///     .from_template("base")
///     .set_envs([("GREETING", "hi")])
///     .run_cmd("echo $GREETING > /greeting");
/// let info = template.build("greeting", BuildOptions::new().on_build_logs(|l| println!("{l}")))?;
/// println!("{}", info.template_id);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Template {
    inner: crate::Template,
}

impl From<crate::Template> for Template {
    fn from(inner: crate::Template) -> Self {
        Self { inner }
    }
}

macro_rules! forward {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            #[doc = concat!("See [`crate::Template::", stringify!($name), "`].")]
            pub fn $name(self, $($arg: $ty),*) -> Self {
                Self { inner: self.inner.$name($($arg),*) }
            }
        )*
    };
}

impl Template {
    /// An empty template: [`crate::Template::new`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The async template this wraps.
    pub fn as_async(&self) -> &crate::Template {
        &self.inner
    }

    /// The file context directory: [`crate::Template::context_path`].
    pub fn context_path(&self) -> &Path {
        self.inner.context_path()
    }

    forward! {
        file_context_path(path: impl Into<PathBuf>);
        file_ignore_patterns(patterns: impl IntoIterator<Item = impl Into<String>>);
        from_template(template: impl Into<String>);
        from_image(image: impl Into<String>);
        from_image_with_credentials(
            image: impl Into<String>,
            username: impl Into<String>,
            password: impl Into<String>
        );
        from_aws_registry(
            image: impl Into<String>,
            access_key_id: impl Into<String>,
            secret_access_key: impl Into<String>,
            region: impl Into<String>
        );
        from_gcp_registry(image: impl Into<String>, service_account: GcpServiceAccount);
        from_base_image();
        from_debian_image(variant: Option<&str>);
        from_ubuntu_image(variant: Option<&str>);
        from_fedora_image(variant: Option<&str>);
        from_alpine_image(variant: Option<&str>);
        from_arch_image(variant: Option<&str>);
        from_python_image(version: Option<&str>);
        from_node_image(variant: Option<&str>);
        from_bun_image(variant: Option<&str>);
        from_dockerfile(content_or_path: &str);
        copy(src: impl Into<String>, dest: impl Into<String>);
        copy_with(src: impl Into<String>, dest: impl Into<String>, options: CopyOptions);
        copy_items(items: impl IntoIterator<Item = CopyItem>);
        remove(paths: impl IntoIterator<Item = impl AsRef<str>>);
        remove_with(paths: impl IntoIterator<Item = impl AsRef<str>>, options: RemoveOptions);
        rename(src: &str, dest: &str);
        rename_with(src: &str, dest: &str, options: MoveOptions);
        make_dir(paths: impl IntoIterator<Item = impl AsRef<str>>);
        make_dir_with(paths: impl IntoIterator<Item = impl AsRef<str>>, options: MakeDirOptions);
        make_symlink(src: &str, dest: &str);
        make_symlink_with(src: &str, dest: &str, options: MoveOptions);
        run_cmd(command: impl Into<String>);
        run_cmd_as(command: impl Into<String>, user: impl Into<String>);
        run_cmds(commands: impl IntoIterator<Item = impl AsRef<str>>, user: Option<&str>);
        set_workdir(workdir: impl Into<String>);
        set_user(user: impl Into<String>);
        set_envs(envs: impl IntoIterator<Item = (impl Into<String>, impl Into<String>)>);
        apt_install(packages: impl IntoIterator<Item = impl AsRef<str>>);
        apt_install_with(
            packages: impl IntoIterator<Item = impl AsRef<str>>,
            options: AptInstallOptions
        );
        pip_install(packages: impl IntoIterator<Item = impl AsRef<str>>);
        pip_install_with(
            packages: impl IntoIterator<Item = impl AsRef<str>>,
            options: PipInstallOptions
        );
        npm_install(packages: impl IntoIterator<Item = impl AsRef<str>>);
        npm_install_with(
            packages: impl IntoIterator<Item = impl AsRef<str>>,
            options: NodeInstallOptions
        );
        bun_install(packages: impl IntoIterator<Item = impl AsRef<str>>);
        bun_install_with(
            packages: impl IntoIterator<Item = impl AsRef<str>>,
            options: NodeInstallOptions
        );
        add_mcp_server(servers: impl IntoIterator<Item = impl AsRef<str>>);
        git_clone(url: &str);
        git_clone_with(url: &str, options: GitCloneOptions);
        skip_cache();
        set_start_cmd(start_cmd: impl Into<String>, ready_cmd: impl Into<ReadyCmd>);
        set_ready_cmd(ready_cmd: impl Into<ReadyCmd>);
    }

    /// The build request as JSON: [`crate::Template::to_json`].
    ///
    /// # Errors
    ///
    /// As [`crate::Template::to_json`].
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_json()
    }

    /// The template as a Dockerfile: [`crate::Template::to_dockerfile`].
    ///
    /// # Errors
    ///
    /// As [`crate::Template::to_dockerfile`].
    pub fn to_dockerfile(&self) -> Result<String> {
        self.inner.to_dockerfile()
    }

    /// Builds the template and waits until it is ready: [`crate::Template::build`].
    ///
    /// ```no_run
    /// # fn main() -> e2b::Result<()> {
    /// let template = e2b::blocking::Template::new().from_template("base").run_cmd("true");
    /// let info = template.build("noop", e2b::BuildOptions::new())?;
    /// # let _ = info;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`crate::Template::build`].
    ///
    /// # Panics
    ///
    /// Inside an async runtime (see [`crate::blocking`]).
    pub fn build(&self, name: &str, options: BuildOptions) -> Result<BuildInfo> {
        let (inner, name) = (self.inner.clone(), name.to_owned());
        Runtime::shared()?.run(async move { inner.build(&name, options).await })
    }

    /// Requests and starts the build without waiting:
    /// [`crate::Template::build_in_background`].
    ///
    /// # Errors
    ///
    /// As [`crate::Template::build_in_background`].
    pub fn build_in_background(&self, name: &str, options: BuildOptions) -> Result<BuildInfo> {
        let (inner, name) = (self.inner.clone(), name.to_owned());
        Runtime::shared()?.run(async move { inner.build_in_background(&name, options).await })
    }

    /// A build's status and logs from `logs_offset` on:
    /// [`crate::Template::get_build_status`].
    ///
    /// # Errors
    ///
    /// As [`crate::Template::get_build_status`].
    pub fn get_build_status(
        config: &ConnectionConfig,
        build: &BuildInfo,
        logs_offset: u32,
    ) -> Result<BuildStatusResponse> {
        let (config, build) = (config.clone(), build.clone());
        Runtime::shared()?.run(async move {
            crate::Template::get_build_status(&config, &build, logs_offset).await
        })
    }

    /// Whether a template with this name exists: [`crate::Template::exists`].
    ///
    /// ```no_run
    /// # fn main() -> e2b::Result<()> {
    /// let config = e2b::ConnectionConfig::from_env()?;
    /// let built = e2b::blocking::Template::exists(&config, "noop")?;
    /// # let _ = built;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`crate::Template::exists`].
    pub fn exists(config: &ConnectionConfig, name: &str) -> Result<bool> {
        let (config, name) = (config.clone(), name.to_owned());
        Runtime::shared()?.run(async move { crate::Template::exists(&config, &name).await })
    }

    /// Whether a template with this alias exists: [`crate::Template::alias_exists`].
    ///
    /// # Errors
    ///
    /// As [`crate::Template::alias_exists`].
    pub fn alias_exists(config: &ConnectionConfig, alias: &str) -> Result<bool> {
        let (config, alias) = (config.clone(), alias.to_owned());
        Runtime::shared()?.run(async move { crate::Template::alias_exists(&config, &alias).await })
    }

    /// Assigns tags to a build: [`crate::Template::assign_tags`].
    ///
    /// # Errors
    ///
    /// As [`crate::Template::assign_tags`].
    pub fn assign_tags(
        config: &ConnectionConfig,
        target_name: &str,
        tags: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<TemplateTagInfo> {
        let (config, target) = (config.clone(), target_name.to_owned());
        let tags: Vec<String> = tags.into_iter().map(Into::into).collect();
        Runtime::shared()?
            .run(async move { crate::Template::assign_tags(&config, &target, tags).await })
    }

    /// Removes tags from a template: [`crate::Template::remove_tags`].
    ///
    /// # Errors
    ///
    /// As [`crate::Template::remove_tags`].
    pub fn remove_tags(
        config: &ConnectionConfig,
        name: &str,
        tags: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<()> {
        let (config, name) = (config.clone(), name.to_owned());
        let tags: Vec<String> = tags.into_iter().map(Into::into).collect();
        Runtime::shared()?
            .run(async move { crate::Template::remove_tags(&config, &name, tags).await })
    }

    /// A template's tags: [`crate::Template::get_tags`].
    ///
    /// ```no_run
    /// # fn main() -> e2b::Result<()> {
    /// let config = e2b::ConnectionConfig::from_env()?;
    /// for tag in e2b::blocking::Template::get_tags(&config, "noop")? {
    ///     println!("{}", tag.tag);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`crate::Template::get_tags`].
    pub fn get_tags(config: &ConnectionConfig, template_id: &str) -> Result<Vec<TemplateTag>> {
        let (config, id) = (config.clone(), template_id.to_owned());
        Runtime::shared()?.run(async move { crate::Template::get_tags(&config, &id).await })
    }
}
