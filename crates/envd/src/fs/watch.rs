//! Directory watchers: the streaming form (WatchDir) and the polled form (CreateWatcher /
//! GetWatcherEvents / RemoveWatcher), all on **one** inotify instance per envd.
//!
//! Every sandbox's envd runs as the same host uid, and the kernel counts inotify instances per
//! uid (`fs.inotify.max_user_instances`, often 128), so an instance per watcher would let one
//! sandbox use up the host's instances for every other. Here one instance, opened with the
//! first watcher and closed with the last, carries every watch: a table maps each watch
//! descriptor to the watchers (and their paths) that use it, so overlapping watches share a
//! descriptor and one watcher's removal never removes another's. One reader thread turns
//! inotify events into envd events and queues them per watcher without ever blocking, so a
//! slow client cannot stall other watchers.
//!
//! Limits per envd, each answered with `resource_exhausted` naming it: [`MAX_WATCHERS`]
//! watchers and [`MAX_WATCHED_DIRS`] watched directories. Queues are bounded
//! ([`STREAM_QUEUE_CAP`], [`POLLED_BUFFER_CAP`], and [`QUEUED_EVENTS_MAX`] over all of them):
//! a watcher whose queue would pass its bound fails with an `internal` error, as upstream's
//! does on an inotify queue overflow; nothing is dropped silently.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::AsFd as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use e2b_envd::{Code, ConnectError};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent, WatchDescriptor};
use rand::Rng as _;

use super::{Entry, entry_info};
use crate::state::lock;
use crate::users::Names;

/// Most watchers (streaming and polled together) one envd runs at once.
pub const MAX_WATCHERS: usize = 64;
/// Most directories one envd watches at once, over all its watchers (a recursive watch takes
/// one per directory of its tree). Every sandbox's watches also count against the host's
/// `fs.inotify.max_user_watches`.
pub const MAX_WATCHED_DIRS: usize = 8_192;
/// How many events a streaming watcher holds for a client that reads too slowly before it
/// fails (upstream's bound is the kernel queue, 16,384 by default).
pub const STREAM_QUEUE_CAP: usize = 16_384;
/// How many events a polled watcher holds before it fails instead of growing.
pub const POLLED_BUFFER_CAP: usize = 65_536;
/// How many undelivered events all watchers of one envd hold together: with
/// [`MAX_WATCHERS`] watchers, the per-watcher caps alone would allow millions.
pub const QUEUED_EVENTS_MAX: usize = 65_536;

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

/// The events a watch asks the kernel for: no open/close/access, which envd never reports.
fn watch_mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

/// "watcher error: …" for a failed `inotify_init1` or `inotify_add_watch`, naming the host
/// limit when one was hit (`EMFILE`: instances, `ENOSPC`: watches).
fn inotify_error(e: Errno) -> ConnectError {
    match e {
        Errno::EMFILE => ConnectError::new(
            Code::ResourceExhausted,
            "watcher error: the host's inotify instances are used up \
             (fs.inotify.max_user_instances)",
        ),
        Errno::ENOSPC => ConnectError::new(
            Code::ResourceExhausted,
            "watcher error: the host's inotify watches are used up (fs.inotify.max_user_watches)",
        ),
        e => {
            let io = std::io::Error::from(e);
            ConnectError::new(crate::os_error::code(&io), format!("watcher error: {io}"))
        }
    }
}

fn too_many_dirs() -> ConnectError {
    ConnectError::new(
        Code::ResourceExhausted,
        format!(
            "watcher error: this sandbox watches {MAX_WATCHED_DIRS} directories, envd's limit \
             (a recursive watch takes one per directory)"
        ),
    )
}

fn relative(root: &Path, p: &Path) -> String {
    match p.strip_prefix(root) {
        Ok(r) if r.as_os_str().is_empty() => ".".to_owned(),
        Ok(r) => r.to_string_lossy().into_owned(),
        Err(_) => p.to_string_lossy().into_owned(),
    }
}

/// A watcher's undelivered events, or the error that ended it.
struct Queue {
    state: Mutex<QueueState>,
    /// Most events held.
    cap: usize,
    /// What the error says when `cap` is passed.
    overflow: fn(usize) -> String,
    /// Wakes a streaming reader.
    wake: tokio::sync::Notify,
    /// Events queued over every watcher of the envd ([`QUEUED_EVENTS_MAX`]).
    all_queued: Arc<AtomicUsize>,
}

#[derive(Default)]
struct QueueState {
    events: VecDeque<FsEvent>,
    error: Option<ConnectError>,
}

impl Queue {
    /// Queues one event; false once the watcher has failed (now or before).
    fn push(&self, ev: FsEvent) -> bool {
        let mut s = lock(&self.state);
        if s.error.is_some() {
            return false;
        }
        let overflow = if s.events.len() >= self.cap {
            Some((self.overflow)(self.cap))
        } else if self.all_queued.fetch_add(1, Ordering::Relaxed) >= QUEUED_EVENTS_MAX {
            self.all_queued.fetch_sub(1, Ordering::Relaxed);
            Some(format!(
                "watcher error: this sandbox's watchers hold {QUEUED_EVENTS_MAX} undelivered \
                 events, envd's limit; the watcher stopped"
            ))
        } else {
            None
        };
        let queued = match overflow {
            None => {
                s.events.push_back(ev);
                true
            }
            Some(message) => {
                Self::fail_locked(&mut s, &self.all_queued, ConnectError::internal(message));
                false
            }
        };
        drop(s);
        self.wake.notify_one();
        queued
    }

    /// Ends the watcher with `e` (the first error stays), freeing what it held.
    fn fail(&self, e: ConnectError) {
        Self::fail_locked(&mut lock(&self.state), &self.all_queued, e);
        self.wake.notify_one();
    }

    fn fail_locked(s: &mut QueueState, all_queued: &AtomicUsize, e: ConnectError) {
        if s.error.is_none() {
            all_queued.fetch_sub(s.events.len(), Ordering::Relaxed);
            s.events = VecDeque::new();
            s.error = Some(e);
        }
    }

    /// Takes every queued event, or the error that ended the watcher (every later call
    /// gets the same error; a stored one has only a code and message).
    fn take_all(&self) -> Result<Vec<FsEvent>, ConnectError> {
        let mut s = lock(&self.state);
        if let Some(e) = &s.error {
            return Err(ConnectError::new(e.code(), e.message()));
        }
        self.all_queued.fetch_sub(s.events.len(), Ordering::Relaxed);
        Ok(std::mem::take(&mut s.events).into())
    }

    /// The next event, or the error that ended the watcher.
    async fn next(&self) -> Result<FsEvent, ConnectError> {
        loop {
            {
                let mut s = lock(&self.state);
                if let Some(ev) = s.events.pop_front() {
                    self.all_queued.fetch_sub(1, Ordering::Relaxed);
                    return Ok(ev);
                }
                if let Some(e) = &s.error {
                    return Err(ConnectError::new(e.code(), e.message()));
                }
            }
            // `notify_one` keeps a permit when nobody waits, so no wake-up is lost between
            // the check above and this wait.
            self.wake.notified().await;
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let s = lock(&self.state);
        self.all_queued.fetch_sub(s.events.len(), Ordering::Relaxed);
    }
}

/// One watcher as the table knows it.
struct Watch {
    root: PathBuf,
    recursive: bool,
    include_entry: bool,
    names: Names,
    queue: Arc<Queue>,
    /// The descriptors this watcher uses.
    wds: HashSet<WatchDescriptor>,
}

impl Watch {
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
}

/// The instance, while any watcher lives.
struct Instance {
    inotify: Arc<Inotify>,
    /// Tells the reader thread which instance is current (a closed one's thread exits).
    generation: u64,
    /// Dropping it wakes the reader thread, which then exits.
    _stop: UnixStream,
}

#[derive(Default)]
struct Table {
    instance: Option<Instance>,
    generations: u64,
    next_id: u64,
    watches: HashMap<u64, Watch>,
    /// Descriptor → the watchers using it, with the directory's path for each.
    dirs: HashMap<WatchDescriptor, Vec<(u64, PathBuf)>>,
}

impl Table {
    /// Watches `dir` for watcher `id` and, when `recursive`, every directory below it (not
    /// following symbolic links below the watcher's `root`); `report` collects the entries
    /// found below `dir` in name order, depth first, for the synthetic `CREATE`s of a
    /// directory that appears in a recursive watch.
    fn add_tree(
        &mut self,
        id: u64,
        dir: &Path,
        root: bool,
        recursive: bool,
        mut report: Option<&mut Vec<PathBuf>>,
    ) -> Result<(), ConnectError> {
        if !self.add_one(id, dir, root)? || !recursive {
            return Ok(());
        }
        let Ok(rd) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let p = e.path();
            if let Some(r) = report.as_deref_mut() {
                r.push(p.clone());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                self.add_tree(id, &p, false, true, report.as_deref_mut())?;
            }
        }
        Ok(())
    }

    /// Watches one directory; false when a directory below a root could not be watched
    /// because it vanished or is unreadable (skipped, as `ListDir` skips it).
    fn add_one(&mut self, id: u64, dir: &Path, root: bool) -> Result<bool, ConnectError> {
        let Some(inst) = &self.instance else {
            return Err(ConnectError::internal("watcher error: no inotify instance"));
        };
        if self.dirs.len() >= MAX_WATCHED_DIRS {
            return Err(too_many_dirs());
        }
        let follow = if root {
            AddWatchFlags::empty()
        } else {
            AddWatchFlags::IN_DONT_FOLLOW
        };
        let wd = match inst.inotify.add_watch(dir, watch_mask() | follow) {
            Ok(wd) => wd,
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::EACCES) if !root => return Ok(false),
            Err(e) => return Err(inotify_error(e)),
        };
        let users = self.dirs.entry(wd).or_default();
        users.retain(|(u, _)| *u != id);
        users.push((id, dir.to_path_buf()));
        if let Some(w) = self.watches.get_mut(&id) {
            w.wds.insert(wd);
        }
        Ok(true)
    }

    /// Stops watcher `id` using the descriptors for which `which(path)` holds, removing a
    /// descriptor from the kernel when no watcher uses it any more.
    fn release(&mut self, id: u64, which: impl Fn(&Path) -> bool) {
        let Some(w) = self.watches.get_mut(&id) else {
            return;
        };
        let mut gone = Vec::new();
        for wd in &w.wds {
            let Some(users) = self.dirs.get_mut(wd) else {
                gone.push(*wd);
                continue;
            };
            let before = users.len();
            users.retain(|(u, p)| *u != id || !which(p));
            if users.len() < before {
                gone.push(*wd);
                if users.is_empty() {
                    self.dirs.remove(wd);
                    if let Some(inst) = &self.instance {
                        // EINVAL: the kernel already dropped it (the directory was deleted).
                        let _ = inst.inotify.rm_watch(*wd);
                    }
                }
            }
        }
        for wd in gone {
            w.wds.remove(&wd);
        }
    }

    /// Removes watcher `id`; the instance closes with the last watcher.
    fn remove(&mut self, id: u64) {
        self.release(id, |_| true);
        self.watches.remove(&id);
        if self.watches.is_empty() {
            self.dirs.clear();
            self.instance = None;
        }
    }

    /// Turns one inotify event into envd events for every watcher of its descriptor.
    fn dispatch(&mut self, ev: &InotifyEvent) {
        if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
            // The shared queue lost events; whose is unknown, so every watcher ends.
            for w in self.watches.values() {
                w.queue.fail(ConnectError::internal(
                    "watcher error: inotify event queue overflowed",
                ));
            }
            return;
        }
        if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
            // The kernel removed the watch (its directory was deleted or unmounted).
            if let Some(users) = self.dirs.remove(&ev.wd) {
                for (id, _) in users {
                    if let Some(w) = self.watches.get_mut(&id) {
                        w.wds.remove(&ev.wd);
                    }
                }
            }
            return;
        }
        let Some(users) = self.dirs.get(&ev.wd).cloned() else {
            return;
        };
        let m = ev.mask;
        for (id, dir) in users {
            let Some(w) = self.watches.get(&id) else {
                continue;
            };
            let path = match &ev.name {
                Some(n) => dir.join(n),
                None => dir.clone(),
            };
            // Events about a watched directory itself count only for a watcher's root;
            // a subdirectory's removal or move is reported by its parent.
            let is_self = ev.name.is_none();
            if is_self && dir != w.root {
                continue;
            }
            let is_dir = m.contains(AddWatchFlags::IN_ISDIR);
            let mut kinds = Vec::with_capacity(1);
            // Upstream's order: CREATE, RENAME, CHMOD, WRITE, REMOVE.
            if m.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO) {
                kinds.push(FsEventKind::Create);
            }
            if m.intersects(AddWatchFlags::IN_MOVED_FROM | AddWatchFlags::IN_MOVE_SELF) {
                kinds.push(FsEventKind::Rename);
            }
            if m.contains(AddWatchFlags::IN_ATTRIB) {
                kinds.push(FsEventKind::Chmod);
            }
            if m.contains(AddWatchFlags::IN_MODIFY) {
                kinds.push(FsEventKind::Write);
            }
            if m.intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_DELETE_SELF) {
                kinds.push(FsEventKind::Remove);
            }
            let mut out: Vec<FsEvent> = kinds.iter().map(|k| w.event(*k, &path)).collect();
            let (recursive, queue) = (w.recursive, w.queue.clone());
            let mut failure = None;
            if recursive && is_dir && !is_self {
                if m.contains(AddWatchFlags::IN_MOVED_FROM) {
                    // Moved away: its watches go; a move within the tree re-adds them
                    // under the new name (the kernel hands back the same descriptors).
                    self.release(id, |p| p.starts_with(&path));
                }
                if m.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO) {
                    // A new subtree (`mkdir -p a/b/c`, a move in) may hold entries made
                    // before its watches were added: report them as created.
                    let mut found = Vec::new();
                    if let Err(e) = self.add_tree(id, &path, false, true, Some(&mut found)) {
                        failure = Some(e);
                    }
                    if let Some(w) = self.watches.get(&id) {
                        out.extend(found.iter().map(|p| w.event(FsEventKind::Create, p)));
                    }
                }
            }
            for e in out {
                if !queue.push(e) {
                    break;
                }
            }
            if let Some(e) = failure {
                queue.fail(e);
            }
        }
    }
}

/// The shared instance's table and the envd-wide event count.
#[derive(Default)]
struct Hub {
    table: Mutex<Table>,
    all_queued: Arc<AtomicUsize>,
}

impl Hub {
    /// Registers a watcher and adds its watches; on failure nothing of it is left.
    fn start(
        self: &Arc<Self>,
        spec: &WatchSpec,
        names: Names,
        cap: usize,
        overflow: fn(usize) -> String,
    ) -> Result<Registration, ConnectError> {
        validate(spec)?;
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState::default()),
            cap,
            overflow,
            wake: tokio::sync::Notify::new(),
            all_queued: self.all_queued.clone(),
        });
        let mut t = lock(&self.table);
        if t.watches.len() >= MAX_WATCHERS {
            return Err(ConnectError::new(
                Code::ResourceExhausted,
                format!(
                    "watcher error: this sandbox has {MAX_WATCHERS} watchers, envd's limit; \
                     remove one first"
                ),
            ));
        }
        if t.instance.is_none() {
            t.generations += 1;
            let generation = t.generations;
            t.instance = Some(self.open(generation)?);
        }
        t.next_id += 1;
        let id = t.next_id;
        t.watches.insert(
            id,
            Watch {
                root: spec.path.clone(),
                recursive: spec.recursive,
                include_entry: spec.include_entry,
                names,
                queue: queue.clone(),
                wds: HashSet::new(),
            },
        );
        if let Err(e) = t.add_tree(id, &spec.path, true, spec.recursive, None) {
            t.remove(id);
            return Err(e);
        }
        Ok(Registration {
            hub: self.clone(),
            id,
            queue,
        })
    }

    /// Opens the instance and starts its reader thread.
    fn open(self: &Arc<Self>, generation: u64) -> Result<Instance, ConnectError> {
        let inotify = Arc::new(
            Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).map_err(inotify_error)?,
        );
        let (stop, stop_peer) = UnixStream::pair()
            .map_err(|e| crate::os_error::rpc_error("watcher error: socketpair", &e))?;
        let hub = Arc::downgrade(self);
        let reader = inotify.clone();
        std::thread::Builder::new()
            .name("envd-inotify".into())
            .spawn(move || read_events(&hub, &reader, generation, &stop_peer))
            .map_err(|e| crate::os_error::rpc_error("watcher error: starting its thread", &e))?;
        Ok(Instance {
            inotify,
            generation,
            _stop: stop,
        })
    }
}

/// The reader thread: waits for events or for its instance to be closed, and dispatches
/// each batch under the table's lock.
fn read_events(hub: &std::sync::Weak<Hub>, inotify: &Inotify, generation: u64, stop: &UnixStream) {
    loop {
        let mut fds = [
            PollFd::new(inotify.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
        // The other end is dropped when the instance closes: readable (EOF) or hung up.
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            return;
        }
        let events = match inotify.read_events() {
            Ok(evs) => evs,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(e) => {
                let Some(hub) = hub.upgrade() else { return };
                let t = lock(&hub.table);
                for w in t.watches.values() {
                    w.queue.fail(inotify_error(e));
                }
                return;
            }
        };
        let Some(hub) = hub.upgrade() else { return };
        let mut t = lock(&hub.table);
        if t.instance.as_ref().map(|i| i.generation) != Some(generation) {
            return;
        }
        for ev in &events {
            t.dispatch(ev);
        }
    }
}

/// A watcher's place in the table; dropping it stops the watcher.
struct Registration {
    hub: Arc<Hub>,
    id: u64,
    queue: Arc<Queue>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.hub.table).remove(self.id);
    }
}

/// A running streaming watcher. Dropping it stops the watch.
pub struct DirWatcher {
    reg: Registration,
    ended: bool,
}

impl std::fmt::Debug for DirWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatcher").finish_non_exhaustive()
    }
}

impl DirWatcher {
    /// The next event; `None` only after the error that ended the watcher was returned.
    pub async fn next(&mut self) -> Option<Result<FsEvent, ConnectError>> {
        if self.ended {
            return None;
        }
        let ev = self.reg.queue.next().await;
        self.ended = ev.is_err();
        Some(ev)
    }
}

/// Every watcher of one envd: the shared inotify instance and the polled watchers by id.
#[derive(Default)]
pub struct Watchers {
    hub: Arc<Hub>,
    polled: Mutex<HashMap<String, Registration>>,
}

impl std::fmt::Debug for Watchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchers")
            .field("polled", &lock(&self.polled).len())
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
    /// `WatchDir`: validates and starts a streaming watcher.
    ///
    /// # Errors
    /// As [`validate`]; `resource_exhausted` past [`MAX_WATCHERS`] or [`MAX_WATCHED_DIRS`]
    /// or when the host's inotify instances or watches are used up; else the code of the
    /// OS error inotify gave.
    pub fn watch(&self, spec: &WatchSpec, names: Names) -> Result<DirWatcher, ConnectError> {
        let reg = self.hub.start(spec, names, STREAM_QUEUE_CAP, |cap| {
            format!(
                "watcher error: the client read too slowly: {cap} events were queued; the \
                 watcher stopped"
            )
        })?;
        Ok(DirWatcher { reg, ended: false })
    }

    /// `CreateWatcher`.
    ///
    /// # Errors
    /// As [`watch`](Self::watch).
    pub fn create(&self, spec: &WatchSpec, names: Names) -> Result<String, ConnectError> {
        let reg = self.hub.start(spec, names, POLLED_BUFFER_CAP, |cap| {
            format!(
                "watcher error: more than {cap} events were not collected with \
                 GetWatcherEvents; the watcher stopped"
            )
        })?;
        let id = new_watcher_id();
        lock(&self.polled).insert(id.clone(), reg);
        Ok(id)
    }

    /// `GetWatcherEvents`: the events since the last call.
    ///
    /// # Errors
    /// `not_found` for an unknown id; the watcher's stored error once it failed.
    pub fn take(&self, id: &str) -> Result<Vec<FsEvent>, ConnectError> {
        let queue = lock(&self.polled)
            .get(id)
            .map(|r| r.queue.clone())
            .ok_or_else(|| ConnectError::not_found(format!("watcher with id {id} not found")))?;
        queue.take_all()
    }

    /// `RemoveWatcher`.
    ///
    /// # Errors
    /// `not_found` for an unknown id.
    pub fn remove(&self, id: &str) -> Result<(), ConnectError> {
        // Dropped outside the map lock: it takes the table's lock.
        let reg = lock(&self.polled).remove(id);
        match reg {
            Some(reg) => {
                drop(reg);
                Ok(())
            }
            None => Err(ConnectError::not_found(format!(
                "watcher with id {id} not found"
            ))),
        }
    }

    /// How many directories are watched, over every watcher (distinct inotify watches).
    pub fn watched_dirs(&self) -> usize {
        lock(&self.hub.table).dirs.len()
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

    fn spec(path: &Path, recursive: bool) -> WatchSpec {
        WatchSpec {
            path: path.to_path_buf(),
            recursive,
            include_entry: true,
            allow_network_mounts: false,
        }
    }

    /// The generation of the open instance (each `inotify_init1` makes a new one), if any.
    fn instance(ws: &Watchers) -> Option<u64> {
        lock(&ws.hub.table).instance.as_ref().map(|i| i.generation)
    }

    #[tokio::test]
    async fn recursive_watch_sees_nested_changes() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        let ws = Watchers::default();
        let mut w = ws.watch(&spec(&root, true), Names::default()).unwrap();
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
        // A directory moved within the tree keeps being watched under its new name.
        std::fs::rename(root.join("sub"), root.join("moved")).unwrap();
        let got = collect(&mut w, 2).await;
        assert_eq!(
            got,
            [
                ("sub".to_owned(), FsEventKind::Rename),
                ("moved".to_owned(), FsEventKind::Create)
            ]
        );
        std::fs::write(root.join("moved/h"), b"").unwrap();
        let got = collect(&mut w, 1).await;
        assert_eq!(got, [("moved/h".to_owned(), FsEventKind::Create)]);
    }

    #[tokio::test]
    async fn watchers_share_one_instance_and_overlapping_watches() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        let ws = Watchers::default();
        let mut outer = ws.watch(&spec(&root, true), Names::default()).unwrap();
        let mut inner = ws
            .watch(&spec(&root.join("a"), false), Names::default())
            .unwrap();
        let polled: Vec<_> = (0..10)
            .map(|_| ws.create(&spec(&root, false), Names::default()).unwrap())
            .collect();
        assert_eq!(instance(&ws), Some(1), "one instance for every watcher");
        // root, a, a/b: the overlapping watches share descriptors.
        assert_eq!(ws.watched_dirs(), 3);
        std::fs::write(root.join("a/f"), b"").unwrap();
        assert_eq!(
            collect(&mut outer, 1).await,
            [("a/f".to_owned(), FsEventKind::Create)]
        );
        assert_eq!(
            collect(&mut inner, 1).await,
            [("f".to_owned(), FsEventKind::Create)]
        );
        // Removing the inner watcher keeps the outer one's watch of the same directory.
        drop(inner);
        assert_eq!(ws.watched_dirs(), 3);
        std::fs::write(root.join("a/g"), b"").unwrap();
        assert_eq!(
            collect(&mut outer, 1).await,
            [("a/g".to_owned(), FsEventKind::Create)]
        );
        for id in &polled {
            ws.remove(id).unwrap();
        }
        drop(outer);
        assert_eq!(ws.watched_dirs(), 0);
        assert_eq!(instance(&ws), None, "the last watcher closes the instance");
        let again = ws.create(&spec(&root, false), Names::default()).unwrap();
        assert_eq!(instance(&ws), Some(2));
        ws.remove(&again).unwrap();
    }

    #[test]
    fn limits_are_resource_exhausted_naming_the_limit() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        let ws = Watchers::default();
        let ids: Vec<_> = (0..MAX_WATCHERS)
            .map(|_| ws.create(&spec(&root, false), Names::default()).unwrap())
            .collect();
        let e = ws
            .create(&spec(&root, false), Names::default())
            .unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert_eq!(
            e.message(),
            "watcher error: this sandbox has 64 watchers, envd's limit; remove one first"
        );
        for id in &ids {
            ws.remove(id).unwrap();
        }
        // A tree of more directories than the limit: refused whole, nothing left watched.
        for i in 0..=MAX_WATCHED_DIRS {
            std::fs::create_dir(root.join(i.to_string())).unwrap();
        }
        let e = ws.create(&spec(&root, true), Names::default()).unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert_eq!(
            e.message(),
            "watcher error: this sandbox watches 8192 directories, envd's limit (a recursive \
             watch takes one per directory)"
        );
        assert_eq!(ws.watched_dirs(), 0);
        ws.create(&spec(&root, false), Names::default()).unwrap();
    }

    #[test]
    fn polled_watcher_buffers_and_caps() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        let ws = Watchers::default();
        let id = ws.create(&spec(&root, false), Names::default()).unwrap();
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
        // Overflow the buffer: it fails instead of growing, and frees what it held.
        let queue = lock(&ws.polled)[&id].queue.clone();
        let ev = FsEvent {
            name: "x".into(),
            kind: FsEventKind::Write,
            entry: None,
        };
        for _ in 0..POLLED_BUFFER_CAP {
            assert!(queue.push(ev.clone()));
        }
        assert_eq!(ws.hub.all_queued.load(Ordering::Relaxed), POLLED_BUFFER_CAP);
        assert!(!queue.push(ev));
        assert_eq!(ws.hub.all_queued.load(Ordering::Relaxed), 0);
        let e = ws.take(&id).unwrap_err();
        assert_eq!(e.code(), Code::Internal);
        assert_eq!(
            e.message(),
            "watcher error: more than 65536 events were not collected with GetWatcherEvents; \
             the watcher stopped"
        );
        ws.remove(&id).unwrap();
        assert_eq!(ws.take(&id).unwrap_err().code(), Code::NotFound);
        assert_eq!(ws.remove(&id).unwrap_err().code(), Code::NotFound);
    }

    #[tokio::test]
    async fn the_envd_wide_bound_ends_the_watcher_that_passes_it() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        let ws = Watchers::default();
        let mut w = ws.watch(&spec(&root, false), Names::default()).unwrap();
        // Another watcher's undelivered events fill the envd-wide bound.
        ws.hub
            .all_queued
            .fetch_add(QUEUED_EVENTS_MAX, Ordering::Relaxed);
        std::fs::write(root.join("f"), b"").unwrap();
        let e = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (
                Code::Internal,
                "watcher error: this sandbox's watchers hold 65536 undelivered events, envd's \
                 limit; the watcher stopped"
            )
        );
        assert!(w.next().await.is_none());
        ws.hub
            .all_queued
            .fetch_sub(QUEUED_EVENTS_MAX, Ordering::Relaxed);
    }
}
