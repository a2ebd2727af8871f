//! Test support: the real envd daemon in-process, and a recording server.
#![allow(dead_code, unreachable_pub)]

pub mod recording;

use std::time::Duration;

use e2b::ConnectionConfig;

/// A running envd (the workspace's daemon) on 127.0.0.1, on its own runtime thread.
pub struct Envd {
    pub base: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Envd {
    pub fn start() -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("envd".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("envd runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    addr_tx.send(listener.local_addr().unwrap()).unwrap();
                    tokio::select! {
                        r = envd::serve(listener, envd::Config::default()) => r.unwrap(),
                        _ = shutdown_rx => {}
                    }
                });
            })
            .unwrap();
        let addr = addr_rx.recv().unwrap();
        Self {
            base: format!("http://{addr}"),
            _shutdown: shutdown_tx,
        }
    }

    /// Debug mode pointed at this envd, as `E2B_DEBUG=true E2B_SANDBOX_URL=...` would.
    pub fn config(&self) -> ConnectionConfig {
        ConnectionConfig::new()
            .with_debug(true)
            .with_sandbox_url(&self.base)
            .with_request_timeout(Some(Duration::from_secs(30)))
    }
}

/// A fresh directory for a test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Resident set size of this process in bytes.
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap()
        * 1024
}
