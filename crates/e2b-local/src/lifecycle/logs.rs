//! A sandbox's log on the host, bounded whatever the sandbox writes.
//!
//! envd's stdout and stderr are a FIFO (`logs/<id>.fifo`), never the log file itself: root
//! in a sandbox can write to them directly (`/proc/<pid>/fd/1`), so a file would grow without
//! bound. The server drains the FIFO into `logs/<id>.log` and rotates it to `<id>.log.1`
//! before it would pass [`LOG_ROTATE_BYTES`], so a sandbox holds at most twice that on the
//! host (plus the pipe's buffer). Readers stream the lines of `<id>.log.1` then `<id>.log`, so their
//! memory is bounded by the page they keep, not by the log.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::net::unix::pipe;

use super::live::lock;

/// Most bytes of `<id>.log`: it is rotated to `<id>.log.1` (the previous `.1` is dropped)
/// before it would pass this.
pub const LOG_ROTATE_BYTES: u64 = 4 << 20;

/// Most bytes moved from the FIFO per wake-up of the pump, or before a read: a sandbox
/// writing without pause cannot hold the log's lock for long.
const DRAIN_CHUNK: usize = 1 << 20;

/// The current and rotated log file of sandbox `id` in `dir`, and its FIFO.
fn paths(dir: &Path, id: &str) -> [PathBuf; 3] {
    [
        dir.join(format!("{id}.log")),
        dir.join(format!("{id}.log.1")),
        dir.join(format!("{id}.fifo")),
    ]
}

/// Removes every log file of sandbox `id` in `dir` (those of an earlier run, too).
fn remove_files(dir: &Path, id: &str) {
    for p in paths(dir, id) {
        let _ = std::fs::remove_file(p);
    }
}

/// Opens (creating, owner-only) a log file for appending.
fn open_append(path: &Path) -> std::io::Result<File> {
    File::options()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Where the drained bytes go.
#[derive(Debug)]
struct Sink {
    file: File,
    len: u64,
}

/// The host side of one sandbox's log: the FIFO's read end and the rotated files.
#[derive(Debug)]
pub struct SandboxLog {
    current: PathBuf,
    rotated: PathBuf,
    fifo_path: PathBuf,
    fifo: pipe::Receiver,
    sink: Mutex<Sink>,
    pump: Mutex<Option<tokio::task::AbortHandle>>,
}

impl SandboxLog {
    /// Makes the FIFO and log file of sandbox `id` in `dir` and starts draining it. The
    /// sandbox's init opens [`fifo`](Self::fifo) as its stdout and stderr.
    ///
    /// # Errors
    ///
    /// Creating the FIFO or the file, or registering the FIFO with the tokio runtime.
    pub(super) fn open(dir: &Path, id: &str) -> std::io::Result<Arc<Self>> {
        remove_files(dir, id);
        Self::continue_in(dir, id)
    }

    /// Like [`open`](Self::open), but appends to the log files already there: a sandbox
    /// booted again on its own files (a files-only pause) keeps its earlier lines. Stop
    /// the earlier [`SandboxLog`] first ([`stop`](Self::stop)).
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub(super) fn continue_in(dir: &Path, id: &str) -> std::io::Result<Arc<Self>> {
        let [current, rotated, fifo_path] = paths(dir, id);
        let _ = std::fs::remove_file(&fifo_path);
        nix::unistd::mkfifo(&fifo_path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
        // Read-write: the FIFO never reports end-of-file (there is always a writer: us), and
        // the sandbox's open for writing does not block.
        let fifo = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&fifo_path)?;
        let file = open_append(&current)?;
        let len = file.metadata()?.len();
        let log = Arc::new(SandboxLog {
            current,
            rotated,
            fifo_path,
            fifo,
            sink: Mutex::new(Sink { file, len }),
            pump: Mutex::new(None),
        });
        let task = tokio::spawn(log.clone().pump());
        *lock(&log.pump) = Some(task.abort_handle());
        Ok(log)
    }

    /// The FIFO the sandbox writes to.
    pub(super) fn fifo(&self) -> &Path {
        &self.fifo_path
    }

    /// Stops draining the FIFO; the files stay.
    pub(super) fn stop(&self) {
        if let Some(pump) = lock(&self.pump).take() {
            pump.abort();
        }
    }

    /// Moves whatever the sandbox writes into the files until [`close`](Self::close).
    async fn pump(self: Arc<Self>) {
        loop {
            if self.fifo.readable().await.is_err() {
                return;
            }
            // Through try_io, so an empty FIFO clears tokio's readiness.
            match self.fifo.try_io(|| self.drain()) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    tracing::warn!("log {}: {e}", self.current.display());
                    return;
                }
            }
        }
    }

    /// Moves up to [`DRAIN_CHUNK`] bytes from the FIFO into the files, rotating as needed.
    /// `WouldBlock` when the FIFO was empty.
    fn drain(&self) -> std::io::Result<usize> {
        let mut sink = lock(&self.sink);
        let mut buf = [0u8; 64 * 1024];
        let mut moved = 0;
        while moved < DRAIN_CHUNK {
            // A plain read, not tokio's (which answers `WouldBlock` until the reactor has
            // seen the FIFO readable): readers drain what is there right now.
            let n = match nix::unistd::read(&self.fifo, &mut buf) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) if moved > 0 => break,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            moved += n;
            if sink.len + (n as u64) <= LOG_ROTATE_BYTES {
                sink.file.write_all(chunk)?;
                sink.len += n as u64;
                continue;
            }
            // Rotate after the last complete line that still fits, so no file passes the
            // limit and each starts with a whole line (unless a line spans the chunk before).
            let room = usize::try_from(LOG_ROTATE_BYTES - sink.len)
                .unwrap_or(n)
                .min(n);
            let split = chunk[..room]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
            sink.file.write_all(&chunk[..split])?;
            std::fs::rename(&self.current, &self.rotated)?;
            sink.file = open_append(&self.current)?;
            sink.file.write_all(&chunk[split..])?;
            sink.len = (n - split) as u64;
        }
        Ok(moved)
    }

    /// Appends one line the server writes about the sandbox (its `egressProxy` failing, say),
    /// in envd's format (`<RFC 3339> <LEVEL> <message>`), after what the sandbox wrote so far.
    pub fn server_line(&self, level: tracing::Level, message: &str) {
        let _ = self.drain();
        let line = format!(
            "{} {level} {}\n",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            message.replace(['\n', '\r'], " ")
        );
        let mut sink = lock(&self.sink);
        let written = (|| {
            if sink.len + line.len() as u64 > LOG_ROTATE_BYTES {
                std::fs::rename(&self.current, &self.rotated)?;
                sink.file = open_append(&self.current)?;
                sink.len = 0;
            }
            sink.file.write_all(line.as_bytes())?;
            sink.len += line.len() as u64;
            Ok::<_, std::io::Error>(())
        })();
        if let Err(e) = written {
            tracing::warn!("log {}: {e}", self.current.display());
        }
    }

    /// The log's lines, oldest first, read as they are asked for (what the sandbox wrote
    /// until now is included). Each line is decoded lossily, without its line ending.
    pub fn lines(&self) -> impl Iterator<Item = String> + use<> {
        // What is still in the pipe belongs to the answer; a bounded amount, so a sandbox
        // writing without pause cannot hold the request.
        let _ = self.drain();
        let files = {
            // Under the lock, so no rotation happens between the two opens.
            let _sink = lock(&self.sink);
            [
                File::open(&self.rotated).ok(),
                File::open(&self.current).ok(),
            ]
        };
        let reader: Box<dyn Read + Send> = match files {
            [Some(a), Some(b)] => Box::new(a.chain(b)),
            [Some(a), None] => Box::new(a),
            [None, Some(b)] => Box::new(b),
            [None, None] => Box::new(std::io::empty()),
        };
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        std::iter::from_fn(move || {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => None,
                Ok(_) => {
                    let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    Some(String::from_utf8_lossy(line).into_owned())
                }
            }
        })
    }

    /// Stops draining and removes the files.
    pub(super) fn close(&self) {
        self.stop();
        for p in [&self.current, &self.rotated, &self.fifo_path] {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_come_through_the_fifo_and_rotation_bounds_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = SandboxLog::open(dir.path(), "isb").unwrap();
        let mut w = File::options().write(true).open(log.fifo()).unwrap();
        w.write_all(b"one\r\ntwo\n\nthree\n").unwrap();
        let lines: Vec<String> = log.lines().collect();
        assert_eq!(lines, ["one", "two", "", "three"]);
        // Three rotations' worth: only the last two files' worth stays, each starting with a
        // whole line.
        let line = [b'x'; 1023];
        let writer = std::thread::spawn(move || {
            for _ in 0..(3 * LOG_ROTATE_BYTES / 1024) {
                w.write_all(&line).unwrap();
                w.write_all(b"\n").unwrap();
            }
        });
        while !writer.is_finished() {
            let _ = log.drain();
            tokio::task::yield_now().await;
        }
        let _ = log.drain();
        let total: u64 = [&log.current, &log.rotated]
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        assert!(total <= 2 * LOG_ROTATE_BYTES, "{total}");
        for p in [&log.current, &log.rotated] {
            assert!(std::fs::metadata(p).unwrap().len() <= LOG_ROTATE_BYTES);
        }
        assert!(
            log.lines()
                .all(|l| l.is_empty() || l == "three" || l.bytes().all(|b| b == b'x'))
        );
        log.close();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
