//! A live sandbox: the runtime's handle plus what the control plane keeps about it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{Booted, SandboxLog};
use crate::isolation::SandboxHandle;
use crate::network::SandboxNetwork;
use crate::state::SandboxRecord;

/// A live (running or paused) sandbox.
#[derive(Debug)]
pub struct Live {
    /// The runtime's handle.
    pub handle: Arc<SandboxHandle>,
    /// envd access token (`None` when created with `secure: false`).
    pub token: Option<String>,
    /// Required on its ports (`e2b-traffic-access-token`) when created with
    /// `allowPublicTraffic: false`.
    pub traffic_token: Option<String>,
    /// The record (state, end time, metadata).
    pub rec: Mutex<SandboxRecord>,
    /// Cancelled when the sandbox is paused or killed: cuts every proxied stream.
    cancel: Mutex<CancellationToken>,
    /// Previous CPU sample for `cpuUsedPct`.
    pub(crate) cpu_prev: Mutex<Option<(Instant, u64)>>,
    /// envd's stdout and stderr on the host.
    pub log: Arc<SandboxLog>,
    /// Its network (`None` without networking, and once killed).
    network: Mutex<Option<Arc<SandboxNetwork>>>,
}

impl Live {
    /// A live sandbox with a fresh stream-cutting token and no CPU sample yet.
    pub(super) fn new(
        booted: Booted,
        token: Option<String>,
        traffic_token: Option<String>,
        rec: SandboxRecord,
    ) -> Self {
        Live {
            handle: booted.handle,
            token,
            traffic_token,
            rec: Mutex::new(rec),
            cancel: Mutex::new(CancellationToken::new()),
            cpu_prev: Mutex::new(None),
            log: booted.log,
            network: Mutex::new(booted.network.map(Arc::new)),
        }
    }

    /// Its network, if it has one.
    pub fn network(&self) -> Option<Arc<SandboxNetwork>> {
        lock(&self.network).clone()
    }

    /// Replaces its egress rules (no-op without a network).
    pub(super) async fn update_network(
        &self,
        networks: &crate::network::Networks,
        rules: &crate::network::rules::EgressRules,
    ) -> Result<(), crate::network::NetworkError> {
        let net = lock(&self.network).clone();
        match net {
            Some(net) => networks.update(&net, rules).await,
            None => Ok(()),
        }
    }

    /// Takes its network away (at kill, to detach it).
    pub(super) fn take_network(&self) -> Option<Arc<SandboxNetwork>> {
        lock(&self.network).take()
    }

    /// A snapshot of the record.
    pub fn record(&self) -> SandboxRecord {
        lock(&self.rec).clone()
    }

    /// The current stream-cutting token (a child is cancelled with it).
    pub fn cancel_token(&self) -> CancellationToken {
        lock(&self.cancel).clone()
    }

    /// Cancels the current token (cutting every stream that holds it) and starts a new one.
    pub(super) fn cut_streams(&self) {
        let mut c = lock(&self.cancel);
        c.cancel();
        *c = CancellationToken::new();
    }
}

/// Locks a mutex, ignoring poisoning (state stays consistent: every update is one assignment).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
