//! Directory watchers on inotify (through `notify`): the streaming form (WatchDir) and the
//! polled form (CreateWatcher / GetWatcherEvents / RemoveWatcher).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use e2b_envd::ConnectError;
use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use rand::Rng as _;
use tokio::sync::mpsc;

use super::{Entry, entry_info};
use crate::state::lock;
use crate::users::Names;

/// How many events a polled watcher holds before it fails instead of growing.
pub const POLLED_BUFFER_CAP: usize = 65_536;

/// Filesystem event type (`EventType` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsEventKind {
    /// Created, or moved in.
    Create,
    /// Content written.
    Write,
    /// Deleted.
    Remove,
    /// Moved away (the old name).
    Rename,
    /// Attributes changed.
    Chmod,
}

/// One event (`FilesystemEvent` on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsEvent {
    /// Path relative to the watched directory.
    pub name: String,
    /// What happened.
    pub kind: FsEventKind,
    /// The entry, for create/write/chmod when asked and when it can still be stat'ed.
    pub entry: Option<Entry>,
}

/// What to watch.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// Resolved directory.
    pub path: PathBuf,
    /// Watch subdirectories too (including ones created later).
    pub recursive: bool,
    /// Attach `EntryInfo` to create/write/chmod events.
    pub include_entry: bool,
    /// Permit NFS/CIFS/SMB/FUSE mounts.
    pub allow_network_mounts: bool,
}

const NETWORK_FS_MAGIC: [i64; 5] = [
    0x6969,                 // NFS
    0x517B,                 // SMB
    0xFF53_4D42_u32 as i64, // CIFS
    0xFE53_4D42_u32 as i64, // SMB2
    0x6573_5546,            // FUSE
];

/// Checks the watch target as envd does.
///
/// # Errors
/// `not_found` (missing), `invalid_argument` (not a directory, or a network mount without
/// opt-in), else the code [`os_error::code`](crate::os_error::code) gives.
pub fn validate(spec: &WatchSpec) -> Result<(), ConnectError> {
    let md = std::fs::metadata(&spec.path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ConnectError::not_found(format!("path not found: {}", spec.path.display()))
        } else {
            crate::os_error::rpc_error("error getting file info", &e)
        }
    })?;
    if !md.is_dir() {
        return Err(ConnectError::invalid_argument(format!(
            "path is not a directory: {}",
            spec.path.display()
        )));
    }
    if !spec.allow_network_mounts
        && let Ok(fs) = nix::sys::statfs::statfs(&spec.path)
    {
        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
        let magic = i64::from(fs.filesystem_type().0 as i64) & 0xFFFF_FFFF;
        if NETWORK_FS_MAGIC.contains(&magic) {
            return Err(ConnectError::invalid_argument(format!(
                "cannot watch path on network filesystem: {}",
                spec.path.display()
            )));
        }
    }
    Ok(())
}

/// Where a watcher's events go.
trait Sink: Send + 'static {
    /// Delivers one event; false means "stop delivering".
    fn push(&self, ev: Result<FsEvent, ConnectError>) -> bool;
}

struct ChannelSink(mpsc::Sender<Result<FsEvent, ConnectError>>);

impl Sink for ChannelSink {
    fn push(&self, ev: Result<FsEvent, ConnectError>) -> bool {
        // Blocking here (notify's own thread) lets the kernel queue absorb bursts; a
        // persistently slow reader ends in an overflow error, as upstream.
        self.0.blocking_send(ev).is_ok()
    }
}

fn relative(root: &Path, p: &Path) -> String {
    match p.strip_prefix(root) {
        Ok(r) if r.as_os_str().is_empty() => ".".to_owned(),
        Ok(r) => r.to_string_lossy().into_owned(),
        Err(_) => p.to_string_lossy().into_owned(),
    }
}

struct Translator {
    root: PathBuf,
    recursive: bool,
    include_entry: bool,
    names: Names,
}

impl Translator {
    fn event(&self, kind: FsEventKind, path: &Path) -> FsEvent {
        let entry = if self.include_entry
            && matches!(
                kind,
                FsEventKind::Create | FsEventKind::Write | FsEventKind::Chmod
            ) {
            entry_info(path, &self.names).ok()
        } else {
            None
        };
        FsEvent {
            name: relative(&self.root, path),
            kind,
            entry,
        }
    }

    /// Maps one notify event to zero or more envd events.
    fn translate(
        &self,
        res: notify::Result<notify::Event>,
        out: &mut Vec<Result<FsEvent, ConnectError>>,
    ) {
        let ev = match res {
            Ok(ev) => ev,
            Err(e) => {
                out.push(Err(watcher_error(&e)));
                return;
            }
        };
        if ev.need_rescan() {
            out.push(Err(ConnectError::internal(
                "watcher error: inotify event queue overflowed",
            )));
            return;
        }
        let kind = match ev.kind {
            EventKind::Create(_) | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                FsEventKind::Create
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) => FsEventKind::Rename,
            EventKind::Modify(ModifyKind::Data(_)) => FsEventKind::Write,
            EventKind::Modify(ModifyKind::Metadata(_)) => FsEventKind::Chmod,
            EventKind::Remove(_) => FsEventKind::Remove,
            _ => return,
        };
        for p in &ev.paths {
            out.push(Ok(self.event(kind, p)));
            // A directory that appears in a recursive watch may already hold entries that
            // were created before its watch was added (`mkdir -p a/b/c`): report them.
            if kind == FsEventKind::Create
                && self.recursive
                && std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
            {
                self.scan(p, out);
            }
        }
    }

    fn scan(&self, dir: &Path, out: &mut Vec<Result<FsEvent, ConnectError>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut names: Vec<_> = rd.filter_map(Result::ok).map(|d| d.path()).collect();
        names.sort();
        for p in names {
            out.push(Ok(self.event(FsEventKind::Create, &p)));
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                self.scan(&p, out);
            }
        }
    }
}

fn start_notify(
    spec: &WatchSpec,
    names: Names,
    sink: impl Sink,
) -> Result<notify::RecommendedWatcher, ConnectError> {
    let tr = Translator {
        root: spec.path.clone(),
        recursive: spec.recursive,
        include_entry: spec.include_entry,
        names,
    };
    let mut stopped = false;
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if stopped {
            return;
        }
        let mut out = Vec::new();
        tr.translate(res, &mut out);
        for ev in out {
            let is_err = ev.is_err();
            if !sink.push(ev) || is_err {
                stopped = true;
                return;
            }
        }
    })
    .map_err(|e| watcher_error(&e))?;
    let mode = if spec.recursive {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    };
    watcher
        .watch(&spec.path, mode)
        .map_err(|e| watcher_error(&e))?;
    Ok(watcher)
}

/// "watcher error: …" with the code of the OS error under it ([`os_error::code`]: running
/// out of inotify watches is `resource_exhausted`), else `internal` as upstream.
///
/// [`os_error::code`]: crate::os_error::code
fn watcher_error(e: &notify::Error) -> ConnectError {
    let code = match &e.kind {
        notify::ErrorKind::Io(io) => crate::os_error::code(io),
        notify::ErrorKind::MaxFilesWatch => e2b_envd::Code::ResourceExhausted,
        _ => e2b_envd::Code::Internal,
    };
    ConnectError::new(code, format!("watcher error: {e}"))
}

/// A running streaming watcher. Dropping it stops the watch.
pub struct DirWatcher {
    // Declared first so it drops first: the notify thread may be blocked sending to it.
    rx: mpsc::Receiver<Result<FsEvent, ConnectError>>,
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for DirWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatcher").finish_non_exhaustive()
    }
}

impl DirWatcher {
    /// Validates and starts watching.
    ///
    /// # Errors
    /// As [`validate`], plus `internal` when inotify refuses the watch.
    pub fn start(spec: &WatchSpec, names: Names) -> Result<Self, ConnectError> {
        validate(spec)?;
        let (tx, rx) = mpsc::channel(4096);
        let watcher = start_notify(spec, names, ChannelSink(tx))?;
        Ok(Self {
            rx,
            _watcher: watcher,
        })
    }

    /// The next event; `None` never happens while the watcher lives, an `Err` is terminal.
    pub async fn next(&mut self) -> Option<Result<FsEvent, ConnectError>> {
        self.rx.recv().await
    }
}

#[derive(Default)]
struct PolledBuf {
    events: Vec<FsEvent>,
    error: Option<ConnectError>,
}

struct BufferSink(Arc<Mutex<PolledBuf>>);

impl Sink for BufferSink {
    fn push(&self, ev: Result<FsEvent, ConnectError>) -> bool {
        let mut b = lock(&self.0);
        if b.error.is_some() {
            return false;
        }
        match ev {
            Ok(ev) if b.events.len() < POLLED_BUFFER_CAP => {
                b.events.push(ev);
                true
            }
            Ok(_) => {
                b.events = Vec::new();
                b.error = Some(ConnectError::internal(format!(
                    "watcher error: more than {POLLED_BUFFER_CAP} events were not collected \
                     with GetWatcherEvents; the watcher stopped"
                )));
                false
            }
            Err(e) => {
                b.error = Some(e);
                false
            }
        }
    }
}

struct Polled {
    buf: Arc<Mutex<PolledBuf>>,
    _watcher: notify::RecommendedWatcher,
}

/// The polled watchers, by id.
#[derive(Default)]
pub struct Watchers {
    map: Mutex<HashMap<String, Polled>>,
}

impl std::fmt::Debug for Watchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchers")
            .field("count", &lock(&self.map).len())
            .finish()
    }
}

/// A new watcher id: `w` + 20 characters of `[a-z0-9]`.
pub fn new_watcher_id() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz1234567890";
    let mut rng = rand::rng();
    let mut id = String::with_capacity(21);
    id.push('w');
    for _ in 0..20 {
        id.push(CHARS[rng.random_range(0..CHARS.len())] as char);
    }
    id
}

impl Watchers {
    /// `CreateWatcher`.
    ///
    /// # Errors
    /// As [`DirWatcher::start`].
    pub fn create(&self, spec: &WatchSpec, names: Names) -> Result<String, ConnectError> {
        validate(spec)?;
        let buf = Arc::new(Mutex::new(PolledBuf::default()));
        let watcher = start_notify(spec, names, BufferSink(buf.clone()))?;
        let id = new_watcher_id();
        lock(&self.map).insert(
            id.clone(),
            Polled {
                buf,
                _watcher: watcher,
            },
        );
        Ok(id)
    }

    /// `GetWatcherEvents`: the events since the last call.
    ///
    /// # Errors
    /// `not_found` for an unknown id; the watcher's stored `internal` error once it failed.
    pub fn take(&self, id: &str) -> Result<Vec<FsEvent>, ConnectError> {
        let map = lock(&self.map);
        let w = map
            .get(id)
            .ok_or_else(|| ConnectError::not_found(format!("watcher with id {id} not found")))?;
        let mut b = lock(&w.buf);
        if let Some(e) = &b.error {
            // Every later call gets the same error; a stored one has only a code and message.
            return Err(ConnectError::new(e.code(), e.message()));
        }
        Ok(std::mem::take(&mut b.events))
    }

    /// `RemoveWatcher`.
    ///
    /// # Errors
    /// `not_found` for an unknown id.
    pub fn remove(&self, id: &str) -> Result<(), ConnectError> {
        let w = lock(&self.map).remove(id);
        match w {
            // Dropped outside the map lock: stopping joins notify's thread.
            Some(w) => {
                drop(w);
                Ok(())
            }
            None => Err(ConnectError::not_found(format!(
                "watcher with id {id} not found"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn collect(w: &mut DirWatcher, n: usize) -> Vec<(String, FsEventKind)> {
        let mut got = Vec::new();
        while got.len() < n {
            match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
                Ok(Some(Ok(ev))) => got.push((ev.name, ev.kind)),
                other => panic!("watch ended early: {other:?} after {got:?}"),
            }
        }
        got
    }

    #[tokio::test]
    async fn recursive_watch_sees_nested_changes() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        let spec = WatchSpec {
            path: root.clone(),
            recursive: true,
            include_entry: true,
            allow_network_mounts: false,
        };
        let mut w = DirWatcher::start(&spec, Names::default()).unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        let got = collect(&mut w, 1).await;
        assert_eq!(got, [("sub".to_owned(), FsEventKind::Create)]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::write(root.join("sub/f.txt"), b"x").unwrap();
        let got = collect(&mut w, 2).await;
        assert_eq!(
            got,
            [
                ("sub/f.txt".to_owned(), FsEventKind::Create),
                ("sub/f.txt".to_owned(), FsEventKind::Write)
            ]
        );
        std::fs::rename(root.join("sub/f.txt"), root.join("sub/g.txt")).unwrap();
        let got = collect(&mut w, 2).await;
        assert_eq!(
            got,
            [
                ("sub/f.txt".to_owned(), FsEventKind::Rename),
                ("sub/g.txt".to_owned(), FsEventKind::Create)
            ]
        );
        std::fs::remove_file(root.join("sub/g.txt")).unwrap();
        let got = collect(&mut w, 1).await;
        assert_eq!(got, [("sub/g.txt".to_owned(), FsEventKind::Remove)]);
    }

    #[test]
    fn polled_watcher_buffers_and_caps() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        let spec = WatchSpec {
            path: root.clone(),
            recursive: false,
            include_entry: false,
            allow_network_mounts: false,
        };
        let ws = Watchers::default();
        let id = ws.create(&spec, Names::default()).unwrap();
        assert_eq!(id.len(), 21);
        std::fs::create_dir(root.join("d")).unwrap();
        let mut events = Vec::new();
        for _ in 0..50 {
            events.extend(ws.take(&id).unwrap());
            if !events.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(events[0].name, "d");
        assert_eq!(events[0].kind, FsEventKind::Create);
        // Overflow the buffer: it fails instead of growing.
        let sink = BufferSink(Arc::new(Mutex::new(PolledBuf::default())));
        let ev = FsEvent {
            name: "x".into(),
            kind: FsEventKind::Write,
            entry: None,
        };
        for _ in 0..POLLED_BUFFER_CAP {
            assert!(sink.push(Ok(ev.clone())));
        }
        assert!(!sink.push(Ok(ev)));
        assert!(
            lock(&sink.0)
                .error
                .as_ref()
                .unwrap()
                .message()
                .contains("65536")
        );
        ws.remove(&id).unwrap();
        assert_eq!(ws.take(&id).unwrap_err().code(), e2b_envd::Code::NotFound);
        assert_eq!(ws.remove(&id).unwrap_err().code(), e2b_envd::Code::NotFound);
    }
}
