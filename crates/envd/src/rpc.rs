//! The Connect services: `process.Process` and `filesystem.Filesystem` on top of the
//! supervisor and filesystem cores, through `e2b-envd`'s generated server traits.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use base64::Engine as _;
use e2b_envd::pb::filesystem as fpb;
use e2b_envd::pb::process as ppb;
use e2b_envd::{Code, ConnectError, Request, Streaming};
use futures_util::{Stream, StreamExt as _};
use http::HeaderMap;
use tokio::time::Instant;

use crate::fs::watch::{DirWatcher, FsEvent, FsEventKind, WatchSpec};
use crate::fs::{self, Entry, FileKind};
use crate::paths::expand_and_resolve;
use crate::process::{self, Event, Input, ProcConfig, PtySize, Selector, StartSpec};
use crate::state::State;
use crate::users::User;

/// Keepalive interval when the request names none.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(90);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, ConnectError>> + Send + 'static>>;

/// Both services on one router.
pub fn router(state: Arc<State>) -> Router {
    let svc = Arc::new(Service { state });
    Router::new()
        .merge(ppb::process_server::ProcessServer::from_arc(svc.clone()).into_router())
        .merge(fpb::filesystem_server::FilesystemServer::from_arc(svc).into_router())
}

/// Implements both generated service traits.
#[derive(Debug)]
pub struct Service {
    state: Arc<State>,
}

/// The user named by `Authorization: Basic base64(user:)`, if any (a malformed header counts
/// as none, as upstream).
fn basic_auth_user(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let s = String::from_utf8(decoded).ok()?;
    let (user, _password) = s.split_once(':')?;
    Some(user.to_owned())
}

fn keepalive_interval(headers: &HeaderMap) -> Duration {
    headers
        .get(e2b_envd::headers::KEEPALIVE_PING_INTERVAL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(DEFAULT_KEEPALIVE, Duration::from_secs)
}

impl Service {
    fn user(&self, headers: &HeaderMap) -> Result<User, ConnectError> {
        self.state
            .user(basic_auth_user(headers).as_deref())
            .map_err(|e| ConnectError::new(Code::Unauthenticated, e.to_string()))
    }

    fn resolve(&self, path: &str, user: &User) -> Result<PathBuf, ConnectError> {
        expand_and_resolve(path, user, self.state.defaults().workdir.as_deref())
            .map_err(|e| ConnectError::new(Code::InvalidArgument, e.to_string()))
    }

    /// Runs blocking filesystem work off the async threads.
    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, ConnectError> + Send + 'static,
    ) -> Result<T, ConnectError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ConnectError::new(Code::Internal, format!("task failed: {e}")))?
    }
}

fn selector(s: Option<ppb::ProcessSelector>) -> Result<Selector, ConnectError> {
    match s.and_then(|s| s.selector) {
        Some(ppb::process_selector::Selector::Pid(p)) => Ok(Selector::Pid(p)),
        Some(ppb::process_selector::Selector::Tag(t)) => Ok(Selector::Tag(t)),
        None => Err(ConnectError::new(
            Code::Unimplemented,
            "invalid process selector: neither pid nor tag set",
        )),
    }
}

fn input(i: Option<ppb::ProcessInput>) -> Result<Input, ConnectError> {
    match i.and_then(|i| i.input) {
        Some(ppb::process_input::Input::Stdin(b)) => Ok(Input::Stdin(b.into())),
        Some(ppb::process_input::Input::Pty(b)) => Ok(Input::Pty(b.into())),
        None => Err(ConnectError::new(
            Code::Unimplemented,
            "invalid input type: neither stdin nor pty set",
        )),
    }
}

fn pb_event(ev: Event) -> ppb::ProcessEvent {
    use ppb::process_event as pe;
    let data = |o| pe::Event::Data(pe::DataEvent { output: Some(o) });
    let event = match ev {
        Event::Start { pid } => pe::Event::Start(pe::StartEvent { pid }),
        Event::Stdout(b) => data(pe::data_event::Output::Stdout(b.into())),
        Event::Stderr(b) => data(pe::data_event::Output::Stderr(b.into())),
        Event::Pty(b) => data(pe::data_event::Output::Pty(b.into())),
        Event::End(e) => pe::Event::End(pe::EndEvent {
            exit_code: e.exit_code,
            exited: e.exited,
            status: e.status,
            error: e.error,
        }),
    };
    ppb::ProcessEvent { event: Some(event) }
}

fn keepalive_event() -> ppb::ProcessEvent {
    ppb::ProcessEvent {
        event: Some(ppb::process_event::Event::Keepalive(
            ppb::process_event::KeepAlive {},
        )),
    }
}

/// `start`, data and keepalives (after `interval` of silence), then `end`.
fn process_stream<T: Send + 'static>(
    sub: process::Subscription,
    interval: Duration,
    wrap: fn(ppb::ProcessEvent) -> T,
) -> BoxStream<T> {
    let s = futures_util::stream::unfold(
        (sub, Instant::now() + interval, false),
        move |(mut sub, mut next_ka, done)| async move {
            if done {
                return None;
            }
            tokio::select! {
                ev = sub.next() => {
                    let ev = ev?;
                    let end = matches!(ev, Event::End(_));
                    next_ka = Instant::now() + interval;
                    Some((Ok(wrap(pb_event(ev))), (sub, next_ka, end)))
                }
                () = tokio::time::sleep_until(next_ka) => {
                    next_ka = Instant::now() + interval;
                    Some((Ok(wrap(keepalive_event())), (sub, next_ka, false)))
                }
            }
        },
    );
    Box::pin(s)
}

impl ppb::process_server::Process for Service {
    type ConnectStream = BoxStream<ppb::ConnectResponse>;
    type StartStream = BoxStream<ppb::StartResponse>;

    async fn list(
        &self,
        _request: Request<ppb::ListRequest>,
    ) -> Result<ppb::ListResponse, ConnectError> {
        let processes = self
            .state
            .processes
            .list()
            .into_iter()
            .map(|p| ppb::ProcessInfo {
                config: Some(ppb::ProcessConfig {
                    cmd: p.config.cmd.clone(),
                    args: p.config.args.clone(),
                    envs: p.config.envs.clone(),
                    cwd: p.config.cwd.clone(),
                }),
                pid: p.pid,
                tag: p.tag.clone(),
            })
            .collect();
        Ok(ppb::ListResponse { processes })
    }

    async fn connect(
        &self,
        request: Request<ppb::ConnectRequest>,
    ) -> Result<Self::ConnectStream, ConnectError> {
        let interval = keepalive_interval(request.headers());
        let sel = selector(request.into_message().process)?;
        let sub = self.state.processes.connect(&sel)?;
        Ok(process_stream(sub, interval, |e| ppb::ConnectResponse {
            event: Some(e),
        }))
    }

    async fn start(
        &self,
        request: Request<ppb::StartRequest>,
    ) -> Result<Self::StartStream, ConnectError> {
        let user = self.user(request.headers())?;
        let interval = keepalive_interval(request.headers());
        let deadline = request.deadline();
        let msg = request.into_message();
        let p = msg.process.unwrap_or_default();
        let cwd = self.resolve(p.cwd.as_deref().unwrap_or(""), &user)?;
        let env = process::build_env(&user, &self.state.global_env(), &p.envs);
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        let pty = msg.pty.map(|pty| match pty.size {
            Some(s) => PtySize {
                cols: clamp(s.cols),
                rows: clamp(s.rows),
            },
            None => PtySize { cols: 80, rows: 24 },
        });
        let spec = StartSpec {
            config: ProcConfig {
                cmd: p.cmd,
                args: p.args,
                envs: p.envs,
                cwd: p.cwd,
            },
            cwd,
            pty,
            tag: msg.tag,
            stdin: msg.stdin,
            deadline,
        };
        let switch_user = self.state.euid == 0;
        let sub = self.state.processes.start(spec, &user, env, switch_user)?;
        Ok(process_stream(sub, interval, |e| ppb::StartResponse {
            event: Some(e),
        }))
    }

    async fn update(
        &self,
        request: Request<ppb::UpdateRequest>,
    ) -> Result<ppb::UpdateResponse, ConnectError> {
        let msg = request.into_message();
        let proc_ = self.state.processes.get(&selector(msg.process)?)?;
        if let Some(size) = msg.pty.and_then(|p| p.size) {
            let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
            proc_.resize(PtySize {
                cols: clamp(size.cols),
                rows: clamp(size.rows),
            })?;
        }
        Ok(ppb::UpdateResponse {})
    }

    async fn stream_input(
        &self,
        request: Request<Streaming<ppb::StreamInputRequest>>,
    ) -> Result<ppb::StreamInputResponse, ConnectError> {
        use ppb::stream_input_request::Event as E;
        let mut stream = request.into_message();
        let mut target = None;
        while let Some(msg) = stream.next().await {
            let msg = msg.map_err(|e| {
                // A malformed or oversized message is the client's error and keeps its code;
                // `unknown` (as in E2B) is for a stream that broke.
                let code = match e.code() {
                    Code::InvalidArgument | Code::ResourceExhausted => e.code(),
                    _ => Code::Unknown,
                };
                ConnectError::new(code, format!("error reading input stream: {}", e.message()))
            })?;
            match msg.event {
                Some(E::Start(s)) => {
                    target = Some(self.state.processes.get(&selector(s.process)?)?);
                }
                Some(E::Data(d)) => {
                    let Some(p) = &target else {
                        return Err(ConnectError::new(
                            Code::FailedPrecondition,
                            "input stream sent data before a start event selecting the process",
                        ));
                    };
                    p.write(input(d.input)?).await?;
                }
                Some(E::Keepalive(_)) | None => {}
            }
        }
        Ok(ppb::StreamInputResponse {})
    }

    async fn send_input(
        &self,
        request: Request<ppb::SendInputRequest>,
    ) -> Result<ppb::SendInputResponse, ConnectError> {
        let msg = request.into_message();
        let proc_ = self.state.processes.get(&selector(msg.process)?)?;
        proc_.write(input(msg.input)?).await?;
        Ok(ppb::SendInputResponse {})
    }

    async fn send_signal(
        &self,
        request: Request<ppb::SendSignalRequest>,
    ) -> Result<ppb::SendSignalResponse, ConnectError> {
        let msg = request.into_message();
        let proc_ = self.state.processes.get(&selector(msg.process)?)?;
        let sig = match ppb::Signal::try_from(msg.signal) {
            Ok(ppb::Signal::Sigkill) => nix::sys::signal::Signal::SIGKILL,
            Ok(ppb::Signal::Sigterm) => nix::sys::signal::Signal::SIGTERM,
            _ => {
                return Err(ConnectError::new(
                    Code::Unimplemented,
                    format!(
                        "invalid signal {}: only SIGTERM and SIGKILL are supported",
                        msg.signal
                    ),
                ));
            }
        };
        proc_.signal(sig)?;
        Ok(ppb::SendSignalResponse {})
    }

    async fn close_stdin(
        &self,
        request: Request<ppb::CloseStdinRequest>,
    ) -> Result<ppb::CloseStdinResponse, ConnectError> {
        let msg = request.into_message();
        let proc_ = self.state.processes.get(&selector(msg.process)?)?;
        proc_.close_stdin().await?;
        Ok(ppb::CloseStdinResponse {})
    }
}

fn pb_entry(e: Entry) -> fpb::EntryInfo {
    let since = e
        .modified
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    fpb::EntryInfo {
        name: e.name,
        r#type: match e.kind {
            FileKind::Unspecified => fpb::FileType::Unspecified,
            FileKind::File => fpb::FileType::File,
            FileKind::Directory => fpb::FileType::Directory,
        } as i32,
        path: e.path,
        size: e.size,
        mode: e.mode,
        permissions: e.permissions,
        owner: e.owner,
        group: e.group,
        modified_time: Some(e2b_envd::Timestamp {
            seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
        }),
        symlink_target: e.symlink_target,
        metadata: e.metadata.into_iter().collect(),
    }
}

fn pb_fs_event(e: FsEvent) -> fpb::FilesystemEvent {
    fpb::FilesystemEvent {
        name: e.name,
        r#type: match e.kind {
            FsEventKind::Create => fpb::EventType::Create,
            FsEventKind::Write => fpb::EventType::Write,
            FsEventKind::Remove => fpb::EventType::Remove,
            FsEventKind::Rename => fpb::EventType::Rename,
            FsEventKind::Chmod => fpb::EventType::Chmod,
        } as i32,
        entry: e.entry.map(pb_entry),
    }
}

fn watch_stream(watcher: DirWatcher, interval: Duration) -> BoxStream<fpb::WatchDirResponse> {
    use fpb::watch_dir_response::{Event as W, KeepAlive, StartEvent};
    let wrap = |e| fpb::WatchDirResponse { event: Some(e) };
    let start = futures_util::stream::once(async move { Ok(wrap(W::Start(StartEvent {}))) });
    let events = futures_util::stream::unfold(
        (watcher, Instant::now() + interval, false),
        move |(mut w, mut next_ka, done)| async move {
            if done {
                return None;
            }
            tokio::select! {
                ev = w.next() => {
                    next_ka = Instant::now() + interval;
                    match ev? {
                        Ok(ev) => Some((Ok(wrap(W::Filesystem(pb_fs_event(ev)))), (w, next_ka, false))),
                        Err(e) => Some((Err(e), (w, next_ka, true))),
                    }
                }
                () = tokio::time::sleep_until(next_ka) => {
                    next_ka = Instant::now() + interval;
                    Some((Ok(wrap(W::Keepalive(KeepAlive {}))), (w, next_ka, false)))
                }
            }
        },
    );
    Box::pin(start.chain(events))
}

impl fpb::filesystem_server::Filesystem for Service {
    type WatchDirStream = BoxStream<fpb::WatchDirResponse>;

    async fn stat(
        &self,
        request: Request<fpb::StatRequest>,
    ) -> Result<fpb::StatResponse, ConnectError> {
        let user = self.user(request.headers())?;
        let path = self.resolve(&request.message().path, &user)?;
        let names = self.state.accounts.names();
        let entry = Self::blocking(move || fs::stat(&path, &names)).await?;
        Ok(fpb::StatResponse {
            entry: Some(pb_entry(entry)),
        })
    }

    async fn make_dir(
        &self,
        request: Request<fpb::MakeDirRequest>,
    ) -> Result<fpb::MakeDirResponse, ConnectError> {
        let user = self.user(request.headers())?;
        let path = self.resolve(&request.message().path, &user)?;
        let names = self.state.accounts.names();
        let entry = Self::blocking(move || fs::make_dir(&path, user.uid, user.gid, &names)).await?;
        Ok(fpb::MakeDirResponse {
            entry: Some(pb_entry(entry)),
        })
    }

    async fn r#move(
        &self,
        request: Request<fpb::MoveRequest>,
    ) -> Result<fpb::MoveResponse, ConnectError> {
        let user = self.user(request.headers())?;
        let src = self.resolve(&request.message().source, &user)?;
        let dst = self.resolve(&request.message().destination, &user)?;
        let names = self.state.accounts.names();
        let entry =
            Self::blocking(move || fs::rename(&src, &dst, user.uid, user.gid, &names)).await?;
        Ok(fpb::MoveResponse {
            entry: Some(pb_entry(entry)),
        })
    }

    async fn list_dir(
        &self,
        request: Request<fpb::ListDirRequest>,
    ) -> Result<fpb::ListDirResponse, ConnectError> {
        let user = self.user(request.headers())?;
        let path = self.resolve(&request.message().path, &user)?;
        let depth = request.message().depth;
        let names = self.state.accounts.names();
        let entries = Self::blocking(move || fs::list_dir(&path, depth, &names)).await?;
        Ok(fpb::ListDirResponse {
            entries: entries.into_iter().map(pb_entry).collect(),
        })
    }

    async fn remove(
        &self,
        request: Request<fpb::RemoveRequest>,
    ) -> Result<fpb::RemoveResponse, ConnectError> {
        let user = self.user(request.headers())?;
        let path = self.resolve(&request.message().path, &user)?;
        Self::blocking(move || fs::remove(&path)).await?;
        Ok(fpb::RemoveResponse {})
    }

    async fn watch_dir(
        &self,
        request: Request<fpb::WatchDirRequest>,
    ) -> Result<Self::WatchDirStream, ConnectError> {
        let user = self.user(request.headers())?;
        let interval = keepalive_interval(request.headers());
        let m = request.into_message();
        let spec = WatchSpec {
            path: self.resolve(&m.path, &user)?,
            recursive: m.recursive,
            include_entry: m.include_entry,
            allow_network_mounts: m.allow_network_mounts,
        };
        let names = self.state.accounts.names();
        let state = self.state.clone();
        let watcher = Self::blocking(move || state.watchers.watch(&spec, names)).await?;
        Ok(watch_stream(watcher, interval))
    }

    async fn create_watcher(
        &self,
        request: Request<fpb::CreateWatcherRequest>,
    ) -> Result<fpb::CreateWatcherResponse, ConnectError> {
        let user = self.user(request.headers())?;
        let m = request.into_message();
        let spec = WatchSpec {
            path: self.resolve(&m.path, &user)?,
            recursive: m.recursive,
            include_entry: m.include_entry,
            allow_network_mounts: m.allow_network_mounts,
        };
        let names = self.state.accounts.names();
        let state = self.state.clone();
        let watcher_id = Self::blocking(move || state.watchers.create(&spec, names)).await?;
        Ok(fpb::CreateWatcherResponse { watcher_id })
    }

    async fn get_watcher_events(
        &self,
        request: Request<fpb::GetWatcherEventsRequest>,
    ) -> Result<fpb::GetWatcherEventsResponse, ConnectError> {
        let events = self.state.watchers.take(&request.message().watcher_id)?;
        Ok(fpb::GetWatcherEventsResponse {
            events: events.into_iter().map(pb_fs_event).collect(),
        })
    }

    async fn remove_watcher(
        &self,
        request: Request<fpb::RemoveWatcherRequest>,
    ) -> Result<fpb::RemoveWatcherResponse, ConnectError> {
        let id = request.into_message().watcher_id;
        let state = self.state.clone();
        Self::blocking(move || state.watchers.remove(&id)).await?;
        Ok(fpb::RemoveWatcherResponse {})
    }
}
