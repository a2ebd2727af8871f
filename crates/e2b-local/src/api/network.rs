//! `network` of create and `GET /sandboxes/{id}`, and `PUT /sandboxes/{id}/network`:
//! E2B's egress rules in and out of the wire types. Validation is
//! [`EgressRules::from_request`]'s; every refusal is a 400 naming the entry.

use axum::extract::State;
use axum::http::StatusCode;
use e2b_api::types;

use super::AppState;
use super::error::ApiError;
use super::request::{Path, RawBody, parse_body, sandbox_id};
use crate::network::rules::{EgressRules, NetworkRequest};

/// Fields of `SandboxNetworkUpdateConfig`.
const UPDATE_FIELDS: &[&str] = &[
    "allowOut",
    "denyOut",
    "dnsServers",
    "egressProxy",
    "rules",
    "allow_internet_access",
];

/// The wire's `network` as the rules module reads it (the two are the same JSON object;
/// the generated type has already checked its shape).
fn request_of<T: serde::Serialize>(wire: &T) -> Result<NetworkRequest, ApiError> {
    serde_json::to_value(wire)
        .and_then(serde_json::from_value)
        .map_err(|e| ApiError::bad_request(format!("network: {e}")))
}

/// Validates a create's `network` and `allow_internet_access`.
///
/// # Errors
///
/// 400 naming the first invalid entry or exceeded limit.
pub(super) fn create_rules(
    allow_internet_access: Option<bool>,
    network: Option<&types::SandboxNetworkConfig>,
) -> Result<(Option<NetworkRequest>, EgressRules), ApiError> {
    let request = network.map(request_of).transpose()?;
    let rules =
        EgressRules::from_request(allow_internet_access, &request.clone().unwrap_or_default())
            .map_err(|e| ApiError::bad_request(format!("network: {e}")))?;
    Ok((request, rules))
}

/// The `network` of `GET /sandboxes/{id}`: as given, without the egress proxy's password and
/// CA certificate (E2B never returns them) and with its `tls` only when TLS is on.
pub(super) fn network_info(request: &NetworkRequest) -> Option<types::SandboxNetworkConfig> {
    let mut shown = request.clone();
    if let Some(proxy) = &mut shown.egress_proxy {
        proxy.password = None;
        proxy.tls = proxy.tls.take().filter(|tls| tls.enabled);
        if let Some(tls) = &mut proxy.tls {
            tls.ca_cert = None;
        }
    }
    serde_json::to_value(&shown)
        .and_then(serde_json::from_value)
        .ok()
}

/// `PUT /sandboxes/{sandboxID}/network`: replaces the egress rules of a running or paused
/// sandbox at once (what the body leaves out is cleared); open connections the new rules
/// deny are cut. 204, 400 naming the entry, 404.
pub(super) async fn update_network(
    State(m): State<AppState>,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let id = sandbox_id(&id)?;
    let update: types::SandboxNetworkUpdateConfig = parse_body(&body, UPDATE_FIELDS, false)?;
    let mut request = request_of(&update)?;
    let live = m.live(&id)?;
    // The update carries the egress rules only: what else the sandbox was created with stays.
    if let Some(old) = live.record().network {
        request.allow_public_traffic = old.allow_public_traffic;
        request.mask_request_host = old.mask_request_host;
        request.https_ports = old.https_ports;
    }
    let rules = EgressRules::from_request(update.allow_internet_access, &request)
        .map_err(|e| ApiError::bad_request(format!("network: {e}")))?;
    m.update_network(&id, update.allow_internet_access, request, rules)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
