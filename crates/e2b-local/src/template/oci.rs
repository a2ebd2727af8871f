//! OCI images as template bases: pulling an image from a registry (with `oci-client`) and
//! unpacking its layers into the layer store, one layer per blob, content-addressed as
//! `oci-<sha256>` so images sharing a layer store it once.
//!
//! A layer is downloaded into a file (never held in memory), its digest checked, then
//! unpacked entry by entry with `*at` calls on directory descriptors that never follow a
//! symlink, so no entry can land outside its layer. OCI whiteouts become overlayfs ones:
//! `.wh.NAME` a 0/0 character device `NAME`, `.wh..wh..opq` the `trusted.overlay.opaque`
//! xattr on its directory. Device nodes are skipped (a sandbox gets its own `/dev`).
//!
//! Registries are reached over HTTPS, except loopback ones (`localhost`, `127.0.0.0/8`,
//! `[::1]`), which are reached over plain HTTP as Docker treats them (its default insecure
//! registries): a registry on this host is one the host's owner runs.

use std::io::{BufRead as _, BufReader, Read, Seek as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag};
use oci_client::Reference;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use xattr::FileExt as _;

use super::layers::Layers;

/// Most bytes one layer may take, downloaded (compressed) and unpacked (file contents).
pub const MAX_LAYER_BYTES: u64 = 8 << 30;
/// Most bytes all layers of one image may take together, downloaded and unpacked.
pub const MAX_IMAGE_BYTES: u64 = 32 << 30;
/// Largest image config accepted (configs are a few KiB).
const MAX_CONFIG_BYTES: i64 = 4 << 20;
/// The name of the built-in root under an image's layers (the directories and accounts a
/// sandbox needs) as a build records it; `@` keeps it apart from every template name.
pub const IMAGE_ROOT: &str = "@image-root";
/// Its directory under `<data_dir>/templates`.
const IMAGE_ROOT_DIR: &str = "image-root";
/// Bump when the generated image root changes.
const IMAGE_ROOT_VERSION: &str = "1";
/// The prefix of an image layer's key in the layer store.
const LAYER_PREFIX: &str = "oci-";

/// How to log in to a registry.
#[derive(Clone, Default)]
pub enum Credentials {
    /// No login (public images).
    #[default]
    Anonymous,
    /// HTTP basic auth (also used to get a token from registries that hand out tokens).
    Basic {
        /// User name.
        username: String,
        /// Password or access token.
        password: String,
    },
}

impl std::fmt::Debug for Credentials {
    // Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
        }
    }
}

/// An image to pull: its reference, as given and resolved.
#[derive(Debug, Clone)]
pub struct ImageSource {
    /// The reference as the build named it (`python:3.12`).
    pub given: String,
    /// Resolved (`docker.io/library/python:3.12`).
    pub reference: Reference,
    /// How to log in.
    pub credentials: Credentials,
}

impl ImageSource {
    /// Parses `image` with Docker's defaults (registry `docker.io`, namespace `library`,
    /// tag `latest`).
    ///
    /// # Errors
    ///
    /// A message naming the reference and what is wrong with it.
    pub fn parse(image: &str, credentials: Credentials) -> Result<Self, String> {
        let reference: Reference = image
            .parse()
            .map_err(|e| format!("fromImage '{image}' is not a valid image reference: {e}"))?;
        Ok(ImageSource {
            given: image.to_owned(),
            reference,
            credentials,
        })
    }

    /// The registry's host (and port) as written in the reference.
    pub fn registry(&self) -> &str {
        self.reference.registry()
    }
}

/// A pulled image: its layers in the store and the settings of its config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PulledImage {
    /// The image manifest's digest (`sha256:...`; a manifest list's entry for this host).
    pub digest: String,
    /// Layer keys in the store, bottom first.
    pub layers: Vec<String>,
    /// `Env` of the config, in order.
    pub env: Vec<(String, String)>,
    /// `User` of the config (`root` when unset).
    pub user: String,
    /// `WorkingDir` of the config (`/` when unset).
    pub workdir: String,
}

/// Whether `registry` (`host[:port]`) is on this host, so plain HTTP is used for it.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => registry.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Pulls `source` into `layers`, reusing what is there: an image whose manifest digest was
/// pulled before downloads nothing but its manifest. `log` gets a line per thing done;
/// `pin` is called with each layer key before it is used (so it is never collected
/// meanwhile).
///
/// # Errors
///
/// A message naming the image, the registry and its error; or the layer that could not
/// be stored.
pub async fn pull(
    layers: &Layers,
    data_dir: &Path,
    source: &ImageSource,
    log: &(dyn Fn(String) + Sync),
    pin: &(dyn Fn(&str) + Sync),
) -> Result<PulledImage, String> {
    let registry = source.registry().to_owned();
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        format!(
            "pulling image '{}' from {registry}: {what}: {e}",
            source.given
        )
    };
    let client = client_for(&registry);
    let auth = match &source.credentials {
        Credentials::Anonymous => RegistryAuth::Anonymous,
        Credentials::Basic { username, password } => {
            RegistryAuth::Basic(username.clone(), password.clone())
        }
    };
    let (manifest, digest) = client
        .pull_image_manifest(&source.reference, &auth)
        .await
        .map_err(|e| failed("the manifest", &causes(&e)))?;
    let cache = image_cache_path(data_dir, &digest)?;
    if let Some(cached) = read_cached(&cache) {
        cached.layers.iter().for_each(|k| pin(k));
        if cached.layers.iter().all(|k| layers.exists(k)) {
            log(format!(
                "Using image {} ({digest}), pulled before",
                source.reference
            ));
            return Ok(cached);
        }
    }
    if manifest.config.size > MAX_CONFIG_BYTES {
        return Err(failed(
            "the config",
            &format!("{} bytes is too large", manifest.config.size),
        ));
    }
    let mut config = Vec::new();
    client
        .pull_blob(&source.reference, &manifest.config, &mut config)
        .await
        .map_err(|e| failed("the config", &causes(&e)))?;
    let config: ImageConfig =
        serde_json::from_slice(&config).map_err(|e| failed("the config", &e))?;
    log(format!(
        "Pulling image {} ({digest}): {} layers",
        source.reference,
        manifest.layers.len()
    ));
    let mut keys = Vec::with_capacity(manifest.layers.len());
    let mut image_bytes = 0u64;
    for layer in &manifest.layers {
        let key = layer_key(&layer.digest).map_err(|e| failed("a layer", &e))?;
        pin(&key);
        if layers.exists(&key) {
            log(format!("Layer {} is already here", layer.digest));
            keys.push(key);
            continue;
        }
        let partial = layers
            .partial()
            .map_err(|e| format!("making a layer directory: {e}"))?;
        let stored = fetch_layer(&client, source, layer, &partial, &mut image_bytes).await;
        let stored = match stored {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(failed(&format!("layer {}", layer.digest), &e));
            }
        };
        layers
            .commit(&partial, &key)
            .map_err(|e| format!("storing layer {}: {e}", layer.digest))?;
        log(format!(
            "Pulled layer {} ({} bytes, {} unpacked)",
            layer.digest, stored.downloaded, stored.unpacked
        ));
        keys.push(key);
    }
    let settings = config.config.unwrap_or_default();
    let image = PulledImage {
        digest,
        layers: keys,
        env: settings
            .env
            .unwrap_or_default()
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        // `user[:group]`: the group is the user's own here, as for a USER step.
        user: settings
            .user
            .as_deref()
            .and_then(|u| u.split(':').next())
            .filter(|u| !u.is_empty())
            .unwrap_or("root")
            .to_owned(),
        workdir: settings
            .working_dir
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "/".to_owned()),
    };
    write_cached(&cache, &image).map_err(|e| format!("recording the pulled image: {e}"))?;
    Ok(image)
}

/// `e` and its causes, `: `-separated (the registry client's errors say "error sending
/// request" and leave "connection refused" to their sources); a cause its parent already
/// quotes is not repeated.
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        source = cause.source();
    }
    text
}

/// The parts of an OCI image config a template uses.
#[derive(Debug, Default, Deserialize)]
struct ImageConfig {
    config: Option<ImageSettings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImageSettings {
    env: Option<Vec<String>>,
    user: Option<String>,
    working_dir: Option<String>,
}

fn client_for(registry: &str) -> oci_client::Client {
    // reqwest is built without a default crypto provider; the workspace uses ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let protocol = if is_loopback_registry(registry) {
        ClientProtocol::HttpsExcept(vec![registry.to_owned()])
    } else {
        ClientProtocol::Https
    };
    oci_client::Client::new(ClientConfig {
        protocol,
        connect_timeout: Some(std::time::Duration::from_secs(15)),
        read_timeout: Some(std::time::Duration::from_secs(120)),
        ..ClientConfig::default()
    })
}

/// `oci-<hex>` for a `sha256:<hex>` digest.
fn layer_key(digest: &str) -> Result<String, String> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(format!("{LAYER_PREFIX}{}", hex.to_ascii_lowercase()))
        }
        _ => Err(format!("digest '{digest}' is not a sha256 digest")),
    }
}

fn image_cache_path(data_dir: &Path, digest: &str) -> Result<PathBuf, String> {
    let key = layer_key(digest).map_err(|e| format!("the image manifest: {e}"))?;
    Ok(data_dir.join("images").join(format!("{key}.json")))
}

fn read_cached(path: &Path) -> Option<PulledImage> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn write_cached(path: &Path, image: &PulledImage) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::state::create_private_dir(dir)?;
    let tmp = dir.join(format!(".{}", crate::state::random_hex(8)));
    std::fs::write(&tmp, serde_json::to_vec(image)?)?;
    std::fs::rename(&tmp, path)
}

/// Sizes of a stored layer.
struct StoredLayer {
    downloaded: u64,
    unpacked: u64,
}

/// Downloads `layer` into `partial/blob` (checking its size and digest as it streams),
/// unpacks it into `partial/rootfs` and removes the blob.
async fn fetch_layer(
    client: &oci_client::Client,
    source: &ImageSource,
    layer: &oci_client::manifest::OciDescriptor,
    partial: &Path,
    image_bytes: &mut u64,
) -> Result<StoredLayer, String> {
    use futures_util::StreamExt as _;
    use tokio::io::AsyncWriteExt as _;
    let blob = partial.join("blob");
    let mut file = tokio::fs::File::create(&blob)
        .await
        .map_err(|e| format!("writing {}: {e}", blob.display()))?;
    let mut stream = client
        .pull_blob_stream(&source.reference, layer)
        .await
        .map_err(|e| causes(&e))?;
    let mut hasher = sha2::Sha256::new();
    let mut downloaded = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("downloading: {}", causes(&e)))?;
        downloaded += chunk.len() as u64;
        *image_bytes += chunk.len() as u64;
        check_caps(downloaded, *image_bytes, "downloaded")?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("writing {}: {e}", blob.display()))?;
    }
    file.flush()
        .await
        .map_err(|e| format!("writing {}: {e}", blob.display()))?;
    drop(file);
    let got = format!("sha256:{}", hex::encode(hasher.finalize()));
    if got != layer.digest.to_ascii_lowercase() {
        return Err(format!("the download's digest is {got}"));
    }
    let root = Layers::part(partial, Path::new("/"));
    let allowance = MAX_IMAGE_BYTES.saturating_sub(*image_bytes);
    let (blob_in, root_in) = (blob.clone(), root.clone());
    let unpacked = tokio::task::spawn_blocking(move || unpack_blob(&blob_in, &root_in, allowance))
        .await
        .map_err(|e| e.to_string())??;
    *image_bytes += unpacked;
    let _ = std::fs::remove_file(&blob);
    let _ = std::fs::remove_file(partial.join("blob.tar"));
    Ok(StoredLayer {
        downloaded,
        unpacked,
    })
}

fn check_caps(layer: u64, image: u64, what: &str) -> Result<(), String> {
    if layer > MAX_LAYER_BYTES {
        return Err(format!(
            "more than {MAX_LAYER_BYTES} bytes {what}: a layer may take at most that"
        ));
    }
    if image > MAX_IMAGE_BYTES {
        return Err(format!(
            "more than {MAX_IMAGE_BYTES} bytes {what} for the image: an image may take at most that"
        ));
    }
    Ok(())
}

/// Unpacks the layer blob at `blob` (a tar, gzip'd, zstd'd or plain, told by its magic
/// bytes) into the new directory `root`; returns the bytes of file contents written.
/// A zstd blob is decompressed into `blob.tar` beside it first (zstd streams may hold
/// several frames).
fn unpack_blob(blob: &Path, root: &Path, image_allowance: u64) -> Result<u64, String> {
    let open = |p: &Path| std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut file = open(blob)?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(|e| e.to_string())?;
    file.rewind().map_err(|e| e.to_string())?;
    let cap = MAX_LAYER_BYTES.min(image_allowance);
    match &magic[..n] {
        [0x1f, 0x8b, ..] => unpack(
            flate2::read::MultiGzDecoder::new(BufReader::new(file)),
            root,
            cap,
        ),
        [0x28, 0xb5, 0x2f, 0xfd] => {
            let tar = blob.with_file_name("blob.tar");
            zstd_decompress(file, &tar, cap)?;
            unpack(BufReader::new(open(&tar)?), root, cap)
        }
        _ => unpack(BufReader::new(file), root, cap),
    }
}

/// Decompresses every zstd frame of `file` into `to`, at most `cap` bytes.
fn zstd_decompress(file: std::fs::File, to: &Path, cap: u64) -> Result<(), String> {
    let mut input = BufReader::new(file);
    let mut out = std::fs::File::create(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let mut written = 0u64;
    while !input.fill_buf().map_err(|e| e.to_string())?.is_empty() {
        let decoder = ruzstd::decoding::StreamingDecoder::new(&mut input)
            .map_err(|e| format!("zstd: {e}"))?;
        written += std::io::copy(&mut decoder.take(cap + 1 - written), &mut out)
            .map_err(|e| format!("zstd: {e}"))?;
        if written > cap {
            return Err(too_large(cap));
        }
    }
    out.flush().map_err(|e| e.to_string())
}

fn too_large(cap: u64) -> String {
    format!(
        "more than {cap} bytes unpacked: a layer may take at most {MAX_LAYER_BYTES} bytes, an image {MAX_IMAGE_BYTES}"
    )
}

/// The overlayfs xattr marking a directory opaque (lower layers' entries hidden).
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// OCI's whiteout prefix and opaque marker.
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Unpacks the tar stream `input` into the new directory `root`, entry by entry, never
/// following a symlink; returns the bytes of file contents written (at most `cap`).
fn unpack(input: impl Read, root: &Path, cap: u64) -> Result<u64, String> {
    std::fs::create_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let root_fd = open_dir_at(nix::fcntl::AT_FDCWD, root.as_os_str())
        .map_err(|e| format!("{}: {e}", root.display()))?;
    let mut archive = tar::Archive::new(input);
    let mut written = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| format!("reading the tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("reading the tar: {e}"))?;
        let raw = entry
            .path()
            .map_err(|e| format!("reading the tar: {e}"))?
            .into_owned();
        let shown = raw.display().to_string();
        let bad = |e: &dyn std::fmt::Display| format!("entry '{shown}': {e}");
        let rel = relative(&raw).map_err(|e| bad(&e))?;
        let Some(name) = rel.file_name().map(std::ffi::OsStr::to_owned) else {
            continue; // The layer's root itself.
        };
        let parent =
            open_parents(&root_fd, rel.parent().unwrap_or(Path::new(""))).map_err(|e| bad(&e))?;
        let header = entry.header();
        let mode = Mode::from_bits_truncate(header.mode().map_err(|e| bad(&e))? & 0o7777);
        // Empty owner fields are 0, as Go's archive/tar (Docker's) reads them.
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0);
        let kind = header.entry_type();
        let name_str = name.to_string_lossy();
        if name_str == OPAQUE_MARKER {
            std::fs::File::from(parent)
                .set_xattr(OPAQUE_XATTR, b"y")
                .map_err(|e| bad(&e))?;
            continue;
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            replace(&parent, hidden).map_err(|e| bad(&e))?;
            nix::sys::stat::mknodat(&parent, hidden, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| bad(&e))?;
            continue;
        }
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                let dir = match open_dir_at(&parent, name.as_os_str()) {
                    Ok(d) => d,
                    Err(_) => {
                        replace(&parent, name.as_os_str()).map_err(|e| bad(&e))?;
                        nix::sys::stat::mkdirat(
                            &parent,
                            name.as_os_str(),
                            Mode::from_bits_truncate(0o755),
                        )
                        .map_err(|e| bad(&e))?;
                        open_dir_at(&parent, name.as_os_str()).map_err(|e| bad(&e))?
                    }
                };
                nix::sys::stat::fchmod(&dir, mode).map_err(|e| bad(&e))?;
                fchown(&dir, uid, gid).map_err(|e| bad(&e))?;
                continue;
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                replace(&parent, name.as_os_str()).map_err(|e| bad(&e))?;
                let fd = openat(
                    &parent,
                    name.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| bad(&e))?;
                let mut file = std::fs::File::from(fd);
                written += std::io::copy(&mut (&mut entry).take(cap + 1 - written), &mut file)
                    .map_err(|e| bad(&e))?;
                if written > cap {
                    return Err(too_large(cap));
                }
                fchown(&file, uid, gid).map_err(|e| bad(&e))?;
                // After chown, which clears set-id bits.
                nix::sys::stat::fchmod(&file, mode).map_err(|e| bad(&e))?;
            }
            T::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| bad(&e))?
                    .ok_or_else(|| bad(&"a symlink without a target"))?;
                replace(&parent, name.as_os_str()).map_err(|e| bad(&e))?;
                nix::unistd::symlinkat(target.as_os_str(), &parent, name.as_os_str())
                    .map_err(|e| bad(&e))?;
                nix::unistd::fchownat(
                    &parent,
                    name.as_os_str(),
                    Some(nix::unistd::Uid::from_raw(to_id(uid)?)),
                    Some(nix::unistd::Gid::from_raw(to_id(gid)?)),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| bad(&e))?;
            }
            T::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| bad(&e))?
                    .ok_or_else(|| bad(&"a hard link without a target"))?;
                let target = relative(&target).map_err(|e| bad(&format!("its target: {e}")))?;
                let target_name = target
                    .file_name()
                    .ok_or_else(|| bad(&"a hard link to the layer's root"))?;
                let target_dir = open_existing(&root_fd, target.parent().unwrap_or(Path::new("")))
                    .map_err(|e| bad(&format!("its target {}: {e}", target.display())))?;
                replace(&parent, name.as_os_str()).map_err(|e| bad(&e))?;
                nix::unistd::linkat(
                    &target_dir,
                    target_name,
                    &parent,
                    name.as_os_str(),
                    nix::fcntl::AtFlags::empty(),
                )
                .map_err(|e| bad(&format!("linking to {}: {e}", target.display())))?;
                continue;
            }
            T::Fifo => {
                replace(&parent, name.as_os_str()).map_err(|e| bad(&e))?;
                nix::sys::stat::mknodat(&parent, name.as_os_str(), SFlag::S_IFIFO, mode, 0)
                    .map_err(|e| bad(&e))?;
                nix::unistd::fchownat(
                    &parent,
                    name.as_os_str(),
                    Some(nix::unistd::Uid::from_raw(to_id(uid)?)),
                    Some(nix::unistd::Gid::from_raw(to_id(gid)?)),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| bad(&e))?;
            }
            // Device nodes: a sandbox's /dev is its own; a node elsewhere would only be a
            // way to reach a host device. PAX and GNU metadata entries are read by `tar`.
            _ => continue,
        }
        let t = nix::sys::time::TimeSpec::new(i64::try_from(mtime).unwrap_or(0), 0);
        nix::sys::stat::utimensat(
            &parent,
            name.as_os_str(),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| bad(&e))?;
    }
    Ok(written)
}

/// `path` as a relative path of normal components; refuses `..` and absolute paths.
fn relative(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err("an absolute path would escape the layer".into());
            }
            Component::ParentDir => return Err("a '..' would escape the layer".into()),
        }
    }
    Ok(out)
}

fn open_dir_at<Fd: AsFd, P: ?Sized + nix::NixPath>(dir: Fd, name: &P) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens (making missing ones) the directories `rel` under `root`, following no symlink.
fn open_parents(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, String> {
    let mut dir = root.try_clone().map_err(|e| e.to_string())?;
    for c in rel.components() {
        dir = match open_dir_at(&dir, c.as_os_str()) {
            Ok(d) => d,
            Err(Errno::ENOENT) => {
                nix::sys::stat::mkdirat(&dir, c.as_os_str(), Mode::from_bits_truncate(0o755))
                    .map_err(|e| e.to_string())?;
                open_dir_at(&dir, c.as_os_str()).map_err(|e| e.to_string())?
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                return Err(format!(
                    "'{}' is not a directory in this layer (a symlink is never followed)",
                    c.as_os_str().to_string_lossy()
                ));
            }
            Err(e) => return Err(e.to_string()),
        };
    }
    Ok(dir)
}

/// Opens the existing directories `rel` under `root`, following no symlink.
fn open_existing(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, String> {
    let mut dir = root.try_clone().map_err(|e| e.to_string())?;
    for c in rel.components() {
        dir = open_dir_at(&dir, c.as_os_str()).map_err(|e| e.to_string())?;
    }
    Ok(dir)
}

/// Removes a non-directory `name` an earlier entry of the layer made (a later entry wins).
fn replace<P: ?Sized + nix::NixPath>(dir: &OwnedFd, name: &P) -> Result<(), String> {
    match nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) => Err("it would replace a directory of the same layer".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn to_id(id: u64) -> Result<u32, String> {
    u32::try_from(id).map_err(|_| format!("owner id {id} is out of range"))
}

fn fchown(fd: &impl AsFd, uid: u64, gid: u64) -> Result<(), String> {
    nix::unistd::fchown(
        fd,
        Some(nix::unistd::Uid::from_raw(to_id(uid)?)),
        Some(nix::unistd::Gid::from_raw(to_id(gid)?)),
    )
    .map_err(|e| e.to_string())
}

/// The root under an image's layers, generated under `<data_dir>/templates/image-root` on
/// first use: the mount points a sandbox needs (`/dev`, `/proc`, `/sys`, `/tmp`, `/run`),
/// `/root`, an `/etc` with `root` as the only account (an image's own `/etc/passwd` hides
/// it), and the dynamic loader and libraries of `helper_exe` at their host paths: a
/// sandbox's init and envd are that host binary run inside, and an image (busybox, Alpine)
/// may have no glibc of its own. An image with files at those paths uses its own.
///
/// # Errors
///
/// The failing file operation's variant, naming the path.
pub fn image_root(data_dir: &Path, helper_exe: &Path) -> crate::isolation::Result<super::Template> {
    let dir = data_dir.join("templates").join(IMAGE_ROOT_DIR);
    let root = dir.join("root");
    let stamp = dir.join("version");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(IMAGE_ROOT_VERSION) {
        let tmp = data_dir
            .join("templates")
            .join(format!(".{IMAGE_ROOT_DIR}-{}", crate::state::random_hex(8)));
        let made = populate_image_root(&tmp.join("root"), helper_exe)
            .and_then(|()| super::write(&tmp.join("version"), IMAGE_ROOT_VERSION, 0o644));
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let current =
            || std::fs::read_to_string(&stamp).ok().as_deref() == Some(IMAGE_ROOT_VERSION);
        // An older version is moved aside, not deleted: sandboxes may still use it. One
        // another build made meanwhile is kept.
        if current() {
            let _ = std::fs::remove_dir_all(&tmp);
        } else if dir.exists() {
            let _ = std::fs::rename(
                &dir,
                dir.with_file_name(format!(
                    ".{IMAGE_ROOT_DIR}-old-{}",
                    crate::state::random_hex(8)
                )),
            );
        }
        if tmp.exists() && std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
    }
    Ok(super::Template {
        name: IMAGE_ROOT.to_owned(),
        layers: vec![super::TemplateLayer::single("/", root)],
    })
}

fn populate_image_root(root: &Path, helper_exe: &Path) -> crate::isolation::Result<()> {
    for (d, mode) in [
        ("", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("run", 0o755),
        ("root", 0o700),
        ("etc", 0o755),
    ] {
        super::mkdir(&root.join(d), mode)?;
    }
    super::write(
        &root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
        0o644,
    )?;
    super::write(&root.join("etc/group"), "root:x:0:\n", 0o644)?;
    for lib in crate::isolation::host_runtime::libraries(helper_exe)? {
        let to = root.join(lib.strip_prefix("/").unwrap_or(&lib));
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| crate::isolation::Error::CreateDir(dir.to_owned(), e))?;
        }
        // Follows the host's symlinks (ld-linux → the versioned file): a plain copy.
        super::copy_file(&lib, &to, 0o755)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_with_docker_defaults() {
        let s = ImageSource::parse("python:3.12", Credentials::Anonymous)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.reference.whole(), "docker.io/library/python:3.12");
        let s = ImageSource::parse("127.0.0.1:5000/test/img:1", Credentials::Anonymous)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.registry(), "127.0.0.1:5000");
        let e = ImageSource::parse("Bad Ref", Credentials::Anonymous).map(|_| ());
        assert_eq!(
            e,
            Err(
                "fromImage 'Bad Ref' is not a valid image reference: invalid reference format"
                    .into()
            )
        );
    }

    #[test]
    fn only_loopback_registries_get_plain_http() {
        for r in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.0.0.7",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback_registry(r), "{r}");
        }
        for r in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example.com",
            "ghcr.io:443",
        ] {
            assert!(!is_loopback_registry(r), "{r}");
        }
    }

    #[test]
    fn credentials_never_show_the_password() {
        let c = Credentials::Basic {
            username: "me".into(),
            password: "s3cret".into(),
        };
        assert_eq!(format!("{c:?}"), "Basic(me, ***)");
    }

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap_or_else(|e| panic!("{e}"))
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    }

    /// Raw names (the builder refuses `..` and absolute paths, as it should for its users).
    fn put_raw(
        b: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        body: &[u8],
    ) {
        let mut h = header(kind, body.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        b.append(&h, body).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn entries_escaping_the_layer_are_refused() {
        use tar::EntryType as T;
        for (name, kind, link, want) in [
            (
                "../evil",
                T::Regular,
                None,
                "entry '../evil': a '..' would escape the layer",
            ),
            (
                "/etc/evil",
                T::Regular,
                None,
                "entry '/etc/evil': an absolute path would escape the layer",
            ),
            (
                "hl",
                T::Link,
                Some("../../etc/passwd"),
                "entry 'hl': its target: a '..' would escape the layer",
            ),
        ] {
            let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            let data = tar_of(|b| put_raw(b, name, kind, link, b"x"));
            let got = unpack(&data[..], &tmp.path().join("l"), 1 << 20);
            assert_eq!(got, Err(want.to_owned()));
        }
        // A symlink is kept as a link, and never followed by a later entry.
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap_or_else(|e| panic!("{e}"));
        let data = tar_of(|b| {
            put_raw(
                b,
                "link",
                T::Symlink,
                Some(outside.to_str().unwrap_or_default()),
                b"",
            );
            put_raw(b, "link/planted", T::Regular, None, b"x");
        });
        let got = unpack(&data[..], &tmp.path().join("l"), 1 << 20);
        assert_eq!(
            got,
            Err("entry 'link/planted': 'link' is not a directory in this layer (a symlink is never followed)".into())
        );
        assert!(!outside.join("planted").exists());
        assert_eq!(
            std::fs::read_link(tmp.path().join("l/link")).unwrap_or_default(),
            outside
        );
    }

    #[test]
    fn file_contents_are_capped_while_unpacking() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let data = tar_of(|b| {
            put_raw(b, "a", tar::EntryType::Regular, None, &[1; 600]);
            put_raw(b, "b", tar::EntryType::Regular, None, &[2; 600]);
        });
        let got = unpack(&data[..], &tmp.path().join("l"), 1000);
        assert_eq!(
            got,
            Err(format!(
                "more than 1000 bytes unpacked: a layer may take at most {MAX_LAYER_BYTES} bytes, an image {MAX_IMAGE_BYTES}"
            ))
        );
    }

    #[test]
    fn zstd_layers_of_several_frames_unpack() {
        let data = tar_of(|b| {
            put_raw(b, "one", tar::EntryType::Regular, None, &[1; 3000]);
            put_raw(b, "two", tar::EntryType::Regular, None, b"2\n");
        });
        let (head, tail) = data.split_at(1500);
        let level = ruzstd::encoding::CompressionLevel::Fastest;
        let mut blob = ruzstd::encoding::compress_to_vec(head, level);
        blob.extend(ruzstd::encoding::compress_to_vec(tail, level));
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(tmp.path().join("blob"), blob).unwrap_or_else(|e| panic!("{e}"));
        let root = tmp.path().join("rootfs");
        let written = unpack_blob(&tmp.path().join("blob"), &root, u64::MAX)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(written, 3002);
        assert_eq!(
            std::fs::read(root.join("one")).unwrap_or_default(),
            [1; 3000]
        );
        assert_eq!(
            std::fs::read_to_string(root.join("two")).unwrap_or_default(),
            "2\n"
        );
        // Capped while decompressing, too.
        let small = tmp.path().join("small");
        let got = unpack_blob(&tmp.path().join("blob"), &small, 100);
        assert_eq!(got, Err(too_large(100)));
    }

    #[test]
    fn a_layer_unpacks_with_modes_links_and_whiteouts() {
        use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
        use tar::EntryType as T;
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let data = tar_of(|b| {
            put_raw(b, "./etc/", T::Directory, None, b"");
            put_raw(b, "./etc/motd", T::Regular, None, b"hello\n");
            put_raw(b, "./etc/motd.link", T::Link, Some("etc/motd"), b"");
            put_raw(b, "./etc/alias", T::Symlink, Some("/etc/motd"), b"");
            put_raw(b, "./etc/.wh.gone", T::Regular, None, b"");
            put_raw(b, "./opt/.wh..wh..opq", T::Regular, None, b"");
            put_raw(b, "./dev/sda", T::Block, None, b"");
        });
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&data).unwrap_or_else(|e| panic!("{e}"));
            e.finish().unwrap_or_else(|e| panic!("{e}"))
        };
        let blob = tmp.path().join("blob");
        std::fs::write(&blob, gz).unwrap_or_else(|e| panic!("{e}"));
        let root = tmp.path().join("rootfs");
        let written = unpack_blob(&blob, &root, u64::MAX).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(written, 6);
        assert_eq!(
            std::fs::read_to_string(root.join("etc/motd")).unwrap_or_default(),
            "hello\n"
        );
        let md = std::fs::metadata(root.join("etc/motd")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((md.mode() & 0o7777, md.nlink()), (0o644, 2));
        assert_eq!(
            std::fs::read_link(root.join("etc/alias")).unwrap_or_default(),
            PathBuf::from("/etc/motd")
        );
        assert!(!root.join("dev/sda").exists());
        if nix::unistd::geteuid().is_root() {
            let gone =
                std::fs::symlink_metadata(root.join("etc/gone")).unwrap_or_else(|e| panic!("{e}"));
            assert!(gone.file_type().is_char_device());
            assert_eq!(gone.rdev(), 0);
            let opaque = xattr::get(root.join("opt"), OPAQUE_XATTR).unwrap_or_default();
            assert_eq!(opaque.as_deref(), Some(&b"y"[..]));
        }
    }
}
