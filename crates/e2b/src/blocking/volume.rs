//! The blocking twin of [`crate::volume`].

use std::io::Read;

use bytes::Bytes;

use super::files::{FileReader, pump};
use super::{Runtime, wait};
use crate::config::ConnectionConfig;
use crate::error::Result;
use crate::volume::{
    VolumeAndToken, VolumeEntryStat, VolumeInfo, VolumeMetadata, VolumeWriteOptions,
};

/// A volume, used synchronously: the twin of [`crate::Volume`].
///
/// ```no_run
/// # fn main() -> e2b::Result<()> {
/// use e2b::blocking::Volume;
/// use e2b::{ConnectionConfig, VolumeWriteOptions};
///
/// let config = ConnectionConfig::from_env()?;
/// let volume = Volume::create(&config, "notes")?;
/// volume.write_file("/hello.txt", "hi", VolumeWriteOptions::new())?;
/// assert_eq!(volume.read_file_text("/hello.txt")?, "hi");
/// Volume::destroy(&config, volume.volume_id())?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Volume {
    inner: crate::Volume,
    rt: Runtime,
}

impl Volume {
    /// The async volume this one drives.
    pub fn as_async(&self) -> &crate::Volume {
        &self.inner
    }

    /// A handle from what is known of a volume, without an API call. See
    /// [`crate::Volume::new`].
    ///
    /// # Errors
    ///
    /// Starting the runtime thread failed.
    pub fn new(
        config: &ConnectionConfig,
        volume_id: impl Into<String>,
        name: impl Into<String>,
        token: impl Into<String>,
        domain: Option<&str>,
    ) -> Result<Self> {
        Ok(Self {
            inner: crate::Volume::new(config, volume_id, name, token, domain),
            rt: Runtime::shared()?,
        })
    }

    /// Its id.
    pub fn volume_id(&self) -> &str {
        self.inner.volume_id()
    }

    /// Its name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Its content API token.
    pub fn token(&self) -> &str {
        self.inner.token()
    }

    /// Creates a volume. See [`crate::Volume::create`].
    ///
    /// # Errors
    ///
    /// As [`crate::Volume::create`].
    pub fn create(config: &ConnectionConfig, name: &str) -> Result<Self> {
        let rt = Runtime::shared()?;
        let (config, name) = (config.clone(), name.to_owned());
        let inner = rt.run(async move { crate::Volume::create(&config, &name).await })?;
        Ok(Self { inner, rt })
    }

    /// Connects to a volume by id. See [`crate::Volume::connect`].
    ///
    /// # Errors
    ///
    /// As [`crate::Volume::connect`].
    pub fn connect(config: &ConnectionConfig, volume_id: &str) -> Result<Self> {
        let rt = Runtime::shared()?;
        let (config, id) = (config.clone(), volume_id.to_owned());
        let inner = rt.run(async move { crate::Volume::connect(&config, &id).await })?;
        Ok(Self { inner, rt })
    }

    /// A volume and its token. See [`crate::Volume::get_info_by_id`].
    ///
    /// # Errors
    ///
    /// As [`crate::Volume::get_info_by_id`].
    pub fn get_info_by_id(config: &ConnectionConfig, volume_id: &str) -> Result<VolumeAndToken> {
        let (config, id) = (config.clone(), volume_id.to_owned());
        Runtime::shared()?.run(async move { crate::Volume::get_info_by_id(&config, &id).await })
    }

    /// Every volume. See [`crate::Volume::list_volumes`].
    ///
    /// # Errors
    ///
    /// As [`crate::Volume::list_volumes`].
    pub fn list_volumes(config: &ConnectionConfig) -> Result<Vec<VolumeInfo>> {
        let config = config.clone();
        Runtime::shared()?.run(async move { crate::Volume::list_volumes(&config).await })
    }

    /// Deletes a volume. See [`crate::Volume::destroy`].
    ///
    /// # Errors
    ///
    /// As [`crate::Volume::destroy`].
    pub fn destroy(config: &ConnectionConfig, volume_id: &str) -> Result<bool> {
        let (config, id) = (config.clone(), volume_id.to_owned());
        Runtime::shared()?.run(async move { crate::Volume::destroy(&config, &id).await })
    }

    /// Runs `f` on the async volume on the runtime thread.
    fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(crate::Volume) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.rt.run(f(self.inner.clone()))
    }

    /// Lists a directory. See [`crate::Volume::list`].
    ///
    /// # Errors
    ///
    /// As [`crate::Volume::list`].
    pub fn list(&self, path: &str, depth: Option<u32>) -> Result<Vec<VolumeEntryStat>> {
        let path = path.to_owned();
        self.run(|v| async move { v.list(&path, depth).await })
    }

    /// Makes a directory. See [`crate::Volume::make_dir`].
    ///
    /// # Errors
    ///
    /// As [`crate::Volume::make_dir`].
    pub fn make_dir(&self, path: &str, opts: VolumeWriteOptions) -> Result<VolumeEntryStat> {
        let path = path.to_owned();
        self.run(|v| async move { v.make_dir(&path, opts).await })
    }

    /// An entry. See [`crate::Volume::get_info`].
    ///
    /// # Errors
    ///
    /// As [`crate::Volume::get_info`].
    pub fn get_info(&self, path: &str) -> Result<VolumeEntryStat> {
        let path = path.to_owned();
        self.run(|v| async move { v.get_info(&path).await })
    }

    /// Whether an entry exists. See [`crate::Volume::exists`].
    ///
    /// # Errors
    ///
    /// As [`crate::Volume::exists`].
    pub fn exists(&self, path: &str) -> Result<bool> {
        let path = path.to_owned();
        self.run(|v| async move { v.exists(&path).await })
    }

    /// Changes owner, group or mode. See [`crate::Volume::update_metadata`].
    ///
    /// # Errors
    ///
    /// As [`crate::Volume::update_metadata`].
    pub fn update_metadata(&self, path: &str, change: VolumeMetadata) -> Result<VolumeEntryStat> {
        let path = path.to_owned();
        self.run(|v| async move { v.update_metadata(&path, change).await })
    }

    /// Reads a file whole. See [`crate::Volume::read_file`].
    ///
    /// # Errors
    ///
    /// As [`crate::Volume::read_file`].
    pub fn read_file(&self, path: &str) -> Result<Bytes> {
        let path = path.to_owned();
        self.run(|v| async move { v.read_file(&path).await })
    }

    /// Reads a file as text. See [`crate::Volume::read_file_text`].
    ///
    /// # Errors
    ///
    /// As [`crate::Volume::read_file_text`].
    pub fn read_file_text(&self, path: &str) -> Result<String> {
        let path = path.to_owned();
        self.run(|v| async move { v.read_file_text(&path).await })
    }

    /// A file as a [`std::io::Read`], streamed. See [`crate::Volume::read_file_stream`].
    ///
    /// # Errors
    ///
    /// As [`crate::Volume::read_file_stream`].
    pub fn read_file_stream(&self, path: &str) -> Result<FileReader> {
        let path = path.to_owned();
        let stream = self.run(|v| async move { v.read_file_stream(&path).await })?;
        Ok(FileReader::new(stream, self.rt.clone()))
    }

    /// Writes a file whole. See [`crate::Volume::write_file`].
    ///
    /// # Errors
    ///
    /// As [`crate::Volume::write_file`].
    pub fn write_file(
        &self,
        path: &str,
        data: impl Into<Bytes>,
        opts: VolumeWriteOptions,
    ) -> Result<VolumeEntryStat> {
        let (path, data) = (path.to_owned(), data.into());
        self.run(|v| async move { v.write_file(&path, data, opts).await })
    }

    /// Writes what `reader` yields as a file, streamed: the reader is read on this thread
    /// while earlier chunks are sent. See [`crate::Volume::write_file_stream`].
    ///
    /// # Errors
    ///
    /// As [`crate::Volume::write_file_stream`]; a read error aborts the upload.
    pub fn write_file_reader(
        &self,
        path: &str,
        reader: impl Read,
        opts: VolumeWriteOptions,
    ) -> Result<VolumeEntryStat> {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let (v, path) = (self.inner.clone(), path.to_owned());
        let done = self
            .rt
            .spawn(async move { v.write_file_stream(&path, stream, opts).await });
        pump(reader, &tx);
        drop(tx);
        wait(done)?
    }

    /// Removes an entry. See [`crate::Volume::remove`].
    ///
    /// # Errors
    ///
    /// As [`crate::Volume::remove`].
    pub fn remove(&self, path: &str) -> Result<()> {
        let path = path.to_owned();
        self.run(|v| async move { v.remove(&path).await })
    }
}
