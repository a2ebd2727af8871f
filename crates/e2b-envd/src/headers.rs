//! Header names of the Connect protocol and of E2B's envd routing, as lowercase constants.

/// The Connect protocol version; always `1`.
pub const CONNECT_PROTOCOL_VERSION: &str = "connect-protocol-version";
/// The call's deadline in milliseconds (1 to 10 digits).
pub const CONNECT_TIMEOUT_MS: &str = "connect-timeout-ms";
/// Compression of streaming messages; only `identity` is supported.
pub const CONNECT_CONTENT_ENCODING: &str = "connect-content-encoding";
/// Compressions a streaming client accepts.
pub const CONNECT_ACCEPT_ENCODING: &str = "connect-accept-encoding";
/// Compression of a unary body; only `identity` is supported.
pub const CONTENT_ENCODING: &str = "content-encoding";
/// Seconds between keepalive events on envd's server streams (envd default 90, SDKs send 50).
pub const KEEPALIVE_PING_INTERVAL: &str = "keepalive-ping-interval";
/// The sandbox a request is routed to.
pub const SANDBOX_ID: &str = "e2b-sandbox-id";
/// The port inside the sandbox a request is routed to (envd: 49983).
pub const SANDBOX_PORT: &str = "e2b-sandbox-port";
/// envd's access token, set by the control plane through `/init`.
pub const ACCESS_TOKEN: &str = "x-access-token";
/// The envd version, answered by `/init`.
pub const ENVD_VERSION: &str = "x-envd-version";
/// The prefix of an upload's metadata headers: `x-metadata-<key>: <value>` on `POST /files`.
pub const METADATA_PREFIX: &str = "x-metadata-";
/// The token that a sandbox's port URLs require when it was created with
/// `allowPublicTraffic: false`: the create response's `trafficAccessToken`. E2B's proxy
/// answers 403 without it; envd's own port is reached with [`ACCESS_TOKEN`] instead.
pub const TRAFFIC_ACCESS_TOKEN: &str = "e2b-traffic-access-token";
