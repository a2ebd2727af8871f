//! Connect error codes and the one error type of this crate.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A Connect error code (<https://connectrpc.com/docs/protocol#error-codes>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// The operation was cancelled, typically by the caller.
    Canceled,
    /// An error that fits no other code.
    Unknown,
    /// The request is invalid regardless of the system's state.
    InvalidArgument,
    /// The deadline passed before the operation completed.
    DeadlineExceeded,
    /// A requested entity was not found.
    NotFound,
    /// The entity the request tried to create already exists.
    AlreadyExists,
    /// The caller may not perform the operation.
    PermissionDenied,
    /// A resource (quota, message size, memory) ran out.
    ResourceExhausted,
    /// The system is not in the state the operation needs.
    FailedPrecondition,
    /// The operation was aborted, usually by a concurrency conflict.
    Aborted,
    /// The operation was attempted past the valid range.
    OutOfRange,
    /// The operation is not implemented or not supported.
    Unimplemented,
    /// An invariant of the system broke.
    Internal,
    /// The service is currently unavailable; retrying may help.
    Unavailable,
    /// Data was lost or corrupted.
    DataLoss,
    /// The caller did not authenticate correctly.
    Unauthenticated,
}

impl Code {
    /// Every code, in the protocol's numbering order.
    pub const ALL: [Code; 16] = [
        Code::Canceled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code's wire name, e.g. `"not_found"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Canceled => "canceled",
            Code::Unknown => "unknown",
            Code::InvalidArgument => "invalid_argument",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::PermissionDenied => "permission_denied",
            Code::ResourceExhausted => "resource_exhausted",
            Code::FailedPrecondition => "failed_precondition",
            Code::Aborted => "aborted",
            Code::OutOfRange => "out_of_range",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
            Code::DataLoss => "data_loss",
            Code::Unauthenticated => "unauthenticated",
        }
    }

    /// Parses a wire name; `None` for anything that is not a Connect code.
    pub fn from_wire(name: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|code| code.as_str() == name)
    }

    /// The HTTP status a unary error with this code is sent with.
    pub fn http_status(self) -> http::StatusCode {
        let status = match self {
            Code::Canceled => 499,
            Code::Unknown | Code::Internal | Code::DataLoss => 500,
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
            Code::DeadlineExceeded => 504,
            Code::NotFound => 404,
            Code::AlreadyExists | Code::Aborted => 409,
            Code::PermissionDenied => 403,
            Code::ResourceExhausted => 429,
            Code::Unimplemented => 501,
            Code::Unavailable => 503,
            Code::Unauthenticated => 401,
        };
        http::StatusCode::from_u16(status).expect("every status in the table is valid")
    }

    /// The code for an HTTP error whose body is not a Connect error, e.g. a proxy's plain 502.
    ///
    /// This is the table E2B's Python SDK uses (`PLAIN_HTTP_ERROR_CODES`), so that a proxy's
    /// 502 becomes `unavailable` and envd's plain 401 becomes `unauthenticated`.
    pub fn from_http_status(status: u16) -> Code {
        match status {
            400 => Code::InvalidArgument,
            401 => Code::Unauthenticated,
            403 => Code::PermissionDenied,
            404 => Code::NotFound,
            409 => Code::AlreadyExists,
            413 | 429 => Code::ResourceExhausted,
            499 => Code::Canceled,
            500 => Code::Internal,
            501 | 505 => Code::Unimplemented,
            502 | 503 => Code::Unavailable,
            504 => Code::DeadlineExceeded,
            _ => Code::Unknown,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A detail attached to an error: a protobuf `Any`, as Connect sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    /// The fully qualified message type, e.g. `google.rpc.RetryInfo`.
    pub type_name: String,
    /// The binary protobuf encoding of the message.
    pub value: Vec<u8>,
}

/// The error of every call: a Connect error from the peer, or a transport failure.
///
/// Modelled on tonic's `Status`: a [`Code`], a message and optional details. Errors the peer
/// sent keep the HTTP status they arrived with ([`http_status`](Self::http_status)); failures
/// of the connection itself (refused, reset, cut mid-stream) are marked
/// [`is_transport`](Self::is_transport) and keep their cause as [`source`](std::error::Error::source).
///
/// ```
/// use e2b_envd::{Code, ConnectError};
///
/// let err = ConnectError::not_found("process with pid 42 not found");
/// assert_eq!(err.code(), Code::NotFound);
/// assert_eq!(err.to_string(), "not_found: process with pid 42 not found");
/// ```
#[derive(Debug)]
pub struct ConnectError {
    code: Code,
    message: String,
    details: Vec<ErrorDetail>,
    http_status: Option<u16>,
    transport: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

macro_rules! shorthands {
    ($($(#[$doc:meta])* $name:ident => $code:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(message: impl Into<String>) -> Self {
                Self::new(Code::$code, message)
            }
        )*
    };
}

impl ConnectError {
    /// An error with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
            http_status: None,
            transport: false,
            source: None,
        }
    }

    shorthands! {
        /// A `canceled` error.
        canceled => Canceled;
        /// An `unknown` error.
        unknown => Unknown;
        /// An `invalid_argument` error.
        invalid_argument => InvalidArgument;
        /// A `deadline_exceeded` error.
        deadline_exceeded => DeadlineExceeded;
        /// A `not_found` error.
        not_found => NotFound;
        /// An `already_exists` error.
        already_exists => AlreadyExists;
        /// A `permission_denied` error.
        permission_denied => PermissionDenied;
        /// A `resource_exhausted` error.
        resource_exhausted => ResourceExhausted;
        /// A `failed_precondition` error.
        failed_precondition => FailedPrecondition;
        /// An `unimplemented` error.
        unimplemented => Unimplemented;
        /// An `internal` error.
        internal => Internal;
        /// An `unavailable` error.
        unavailable => Unavailable;
        /// An `unauthenticated` error.
        unauthenticated => Unauthenticated;
    }

    /// A failure of the connection itself (refused, reset, cut mid-stream), with its cause.
    pub fn transport(
        code: Code,
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            transport: true,
            source: Some(source.into()),
            ..Self::new(code, message)
        }
    }

    /// Adds a detail.
    #[must_use]
    pub fn with_detail(mut self, detail: ErrorDetail) -> Self {
        self.details.push(detail);
        self
    }

    /// Records the HTTP status the error arrived with.
    #[must_use]
    pub fn with_http_status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }

    /// The error code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The details the peer attached.
    pub fn details(&self) -> &[ErrorDetail] {
        &self.details
    }

    /// The HTTP status of the response this error came from, when it came from one with a
    /// status other than 200 (for example a proxy's 502 or envd's plain 401).
    pub fn http_status(&self) -> Option<u16> {
        self.http_status
    }

    /// Whether the connection failed (refused, reset, cut mid-stream) rather than the peer
    /// answering with an error.
    pub fn is_transport(&self) -> bool {
        self.transport
    }

    /// The Connect JSON error body: `{"code":"…","message":"…"}`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&WireError::from(self)).expect("error bodies always serialize")
    }

    /// Parses a Connect JSON error body; `None` when `body` is not one.
    pub fn from_json(body: &[u8]) -> Option<ConnectError> {
        let wire: WireError = serde_json::from_slice(body).ok()?;
        wire.into_error()
    }

    /// The error for a non-200 response: the Connect error in the body when there is one,
    /// otherwise a code from the HTTP status and the body's `message` (E2B's proxies answer
    /// `{"code":502,"message":"…"}`). The status is kept either way.
    pub fn from_http_response(status: u16, body: &[u8]) -> ConnectError {
        let error = ConnectError::from_json(body).unwrap_or_else(|| {
            let message = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| {
                    let text = String::from_utf8_lossy(body);
                    let text = text.trim();
                    if text.is_empty() {
                        format!("HTTP {status}")
                    } else {
                        format!("HTTP {status}: {text}")
                    }
                });
            ConnectError::new(Code::from_http_status(status), message)
        });
        error.with_http_status(status)
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// An error's message followed by each cause the message does not already include, joined
/// by `": "`, e.g. `"error sending request: connection refused"`.
///
/// HTTP clients put the useful part (refused, reset, a TLS failure) in the causes, so a
/// message made from `to_string()` alone says only "error sending request".
///
/// ```
/// use std::fmt;
///
/// #[derive(Debug)]
/// struct Outer(std::io::Error);
/// impl fmt::Display for Outer {
///     fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
///         f.write_str("error sending request")
///     }
/// }
/// impl std::error::Error for Outer {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
///         Some(&self.0)
///     }
/// }
///
/// let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
/// assert_eq!(
///     e2b_envd::error_chain(&Outer(refused)),
///     "error sending request: connection refused"
/// );
/// ```
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The JSON shape of a Connect error.
#[derive(Serialize, Deserialize)]
pub(crate) struct WireError {
    code: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    details: Vec<WireDetail>,
}

#[derive(Serialize, Deserialize)]
struct WireDetail {
    #[serde(rename = "type")]
    type_name: String,
    value: String,
}

impl From<&ConnectError> for WireError {
    fn from(error: &ConnectError) -> Self {
        WireError {
            code: error.code.as_str().to_owned(),
            message: error.message.clone(),
            details: error
                .details
                .iter()
                .map(|d| WireDetail {
                    type_name: d.type_name.clone(),
                    value: base64::engine::general_purpose::STANDARD_NO_PAD.encode(&d.value),
                })
                .collect(),
        }
    }
}

impl WireError {
    /// The error this body describes; `None` when `code` is not a Connect code.
    pub(crate) fn into_error(self) -> Option<ConnectError> {
        let code = Code::from_wire(&self.code)?;
        let mut error = ConnectError::new(code, self.message);
        for detail in self.details {
            // Connect sends unpadded base64; accept padded too.
            let value = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(detail.value.trim_end_matches('='))
                .unwrap_or_default();
            error = error.with_detail(ErrorDetail {
                type_name: detail.type_name,
                value,
            });
        }
        Some(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<ConnectError>();
    }

    #[test]
    fn codes_round_trip_through_wire_names() {
        for code in Code::ALL {
            assert_eq!(Code::from_wire(code.as_str()), Some(code));
        }
        assert_eq!(Code::from_wire("NOT_FOUND"), None);
    }

    #[test]
    fn json_body_round_trips_with_details() {
        let error = ConnectError::not_found("no such file").with_detail(ErrorDetail {
            type_name: "google.rpc.RetryInfo".into(),
            value: vec![1, 2, 3],
        });
        let body = error.to_json();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"code":"not_found","message":"no such file","details":[{"type":"google.rpc.RetryInfo","value":"AQID"}]}"#
        );
        let parsed = ConnectError::from_json(&body).unwrap();
        assert_eq!(parsed.code(), Code::NotFound);
        assert_eq!(parsed.message(), "no such file");
        assert_eq!(parsed.details(), error.details());
    }

    #[test]
    fn proxy_bodies_keep_status_and_message() {
        let body = br#"{"sandboxId":"i123","message":"The sandbox was not found","code":502}"#;
        let error = ConnectError::from_http_response(502, body);
        assert_eq!(error.code(), Code::Unavailable);
        assert_eq!(error.message(), "The sandbox was not found");
        assert_eq!(error.http_status(), Some(502));

        let body = br#"{"code":401,"message":"unauthorized access, please provide a valid access token or method signing if supported"}"#;
        let error = ConnectError::from_http_response(401, body);
        assert_eq!(error.code(), Code::Unauthenticated);
        assert_eq!(error.http_status(), Some(401));

        let error = ConnectError::from_http_response(418, b"teapot");
        assert_eq!(error.code(), Code::Unknown);
        assert_eq!(error.message(), "HTTP 418: teapot");
    }

    #[test]
    fn connect_bodies_win_over_status() {
        let error = ConnectError::from_http_response(400, br#"{"code":"failed_precondition"}"#);
        assert_eq!(error.code(), Code::FailedPrecondition);
        assert_eq!(error.to_string(), "failed_precondition");
    }
}
