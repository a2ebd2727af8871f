//! The error the process and filesystem cores return: a Connect code plus a message. The RPC
//! layer turns it into `e2b_envd::ConnectError` unchanged.

/// Connect codes envd produces (envd-behavior.md §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `not_found`
    NotFound,
    /// `already_exists`
    AlreadyExists,
    /// `invalid_argument`
    InvalidArgument,
    /// `failed_precondition`
    FailedPrecondition,
    /// `unauthenticated`
    Unauthenticated,
    /// `unimplemented`
    Unimplemented,
    /// `internal`
    Internal,
    /// `unknown`
    Unknown,
}

/// A failed RPC: code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct RpcError {
    /// The Connect code.
    pub code: Code,
    /// The message sent to the client.
    pub message: String,
}

macro_rules! ctor {
    ($name:ident, $code:ident) => {
        #[doc = concat!("An error with code `", stringify!($name), "`.")]
        pub fn $name(message: impl Into<String>) -> Self {
            Self {
                code: Code::$code,
                message: message.into(),
            }
        }
    };
}

impl RpcError {
    ctor!(not_found, NotFound);
    ctor!(already_exists, AlreadyExists);
    ctor!(invalid_argument, InvalidArgument);
    ctor!(failed_precondition, FailedPrecondition);
    ctor!(unauthenticated, Unauthenticated);
    ctor!(unimplemented, Unimplemented);
    ctor!(internal, Internal);
    ctor!(unknown, Unknown);
}

/// Result alias for the cores.
pub type RpcResult<T> = Result<T, RpcError>;
