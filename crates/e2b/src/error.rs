//! The one error type of the SDK, mirroring E2B's exception classes.
//!
//! Every failure is an [`Error`] variant named after the Python SDK's exception
//! (`SandboxException` → [`Error::Sandbox`], `TimeoutException` → [`Error::Timeout`], ...).
//! Each keeps what it was built from: the HTTP status ([`Error::http_status`]) and the
//! Connect code ([`Error::connect_code`]). Messages never contain the API key or the envd
//! access token.

use std::fmt;

use crate::commands::CommandResult;

pub use e2b_envd::Code as ConnectCode;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What an error carries besides its class: the message and where it came from.
pub struct Context {
    message: String,
    http_status: Option<u16>,
    connect_code: Option<ConnectCode>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Context {
    /// A context with only a message, for crates built on this one that classify their own
    /// failures (e2b-code-interpreter): `Error::Timeout(Context::new("..."))`.
    ///
    /// ```
    /// use e2b::error::{Context, Error};
    ///
    /// let err = Error::NotFound(Context::new("context 'x' not found").status(404));
    /// assert!(err.is_not_found());
    /// assert_eq!(err.http_status(), Some(404));
    /// ```
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            http_status: None,
            connect_code: None,
            source: None,
        }
    }

    /// The HTTP status the error arrived with.
    pub fn status(mut self, status: u16) -> Self {
        self.http_status = Some(status);
        self
    }

    pub(crate) fn code(mut self, code: ConnectCode) -> Self {
        self.connect_code = Some(code);
        self
    }

    /// The error that caused this one (shown by `Debug` with its `Display`, never its
    /// `Debug`, so that URLs with signatures stay out).
    pub fn source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The message, as shown by `Display`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status the error arrived with, if it came from a response.
    pub fn http_status(&self) -> Option<u16> {
        self.http_status
    }

    /// The Connect code the error arrived with, if it came from an envd RPC.
    pub fn connect_code(&self) -> Option<ConnectCode> {
        self.connect_code
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Context");
        s.field("message", &self.message);
        if let Some(status) = self.http_status {
            s.field("http_status", &status);
        }
        if let Some(code) = self.connect_code {
            s.field("connect_code", &code);
        }
        if let Some(source) = &self.source {
            // The source's Display, not its Debug: reqwest's Debug of a request error
            // includes the URL, which for signed URLs carries a signature.
            s.field("source", &source.to_string());
        }
        s.finish()
    }
}

/// An error from the SDK. One variant per exception class of E2B's SDKs.
///
/// ```
/// # fn check(err: e2b::Error) {
/// if err.is_not_found() {
///     eprintln!("no such file: {err}");
/// } else if let e2b::Error::CommandExit(result) = &err {
///     eprintln!("exit {}: {}", result.exit_code, result.stderr);
/// }
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Any other failure (`SandboxException`): an unexpected status, an unknown Connect code,
    /// a malformed response, a connection that could not be made.
    Sandbox(Context),
    /// A time limit was hit (`TimeoutException`): the sandbox's own timeout (it was killed or
    /// reached its end of life), a request timeout, or a command's or watch's `timeout`.
    Timeout(Context),
    /// A file, process or sandbox does not exist (`NotFoundException`,
    /// `FileNotFoundException`, `SandboxNotFoundException`).
    NotFound(Context),
    /// The API key or access token was missing or rejected, or an unknown user was named
    /// (`AuthenticationException`).
    Authentication(Context),
    /// An argument was rejected, by the SDK or by the server (`InvalidArgumentException`).
    InvalidArgument(Context),
    /// The sandbox's disk is full (`NotEnoughSpaceException`, HTTP 507).
    NotEnoughSpace(Context),
    /// Too many requests (`RateLimitException`, HTTP 429 or `resource_exhausted`).
    RateLimit(Context),
    /// The sandbox's template (its envd) is too old for the feature, or a template
    /// definition is wrong (`TemplateException`).
    Template(Context),
    /// A template build failed, on the server or while it was being requested
    /// (`BuildException`); the message names the failing step.
    Build(Context),
    /// Uploading a template's files failed (`FileUploadException`).
    FileUpload(Context),
    /// A volume operation failed (`VolumeException`): `<status>: <message>` of what the API
    /// refused. A missing volume or path is [`Error::NotFound`] instead
    /// (`VolumeNotFoundException`, `VolumePathNotFoundException`).
    Volume(Context),
    /// A foreground command exited with a non-zero code (`CommandExitException`); the result
    /// carries its output.
    CommandExit(Box<CommandResult>),
}

impl Error {
    fn context(&self) -> Option<&Context> {
        match self {
            Error::Sandbox(c)
            | Error::Timeout(c)
            | Error::NotFound(c)
            | Error::Authentication(c)
            | Error::InvalidArgument(c)
            | Error::NotEnoughSpace(c)
            | Error::RateLimit(c)
            | Error::Template(c)
            | Error::Build(c)
            | Error::FileUpload(c)
            | Error::Volume(c) => Some(c),
            Error::CommandExit(_) => None,
        }
    }

    /// The message, without the class.
    pub fn message(&self) -> String {
        match self.context() {
            Some(c) => c.message.clone(),
            None => self.to_string(),
        }
    }

    /// The HTTP status the error was built from, if any.
    pub fn http_status(&self) -> Option<u16> {
        self.context().and_then(|c| c.http_status)
    }

    /// The Connect code the error was built from, if any.
    pub fn connect_code(&self) -> Option<ConnectCode> {
        self.context().and_then(|c| c.connect_code)
    }

    /// Whether this is [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }

    /// Whether this is [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    /// Whether this is [`Error::Authentication`].
    pub fn is_authentication(&self) -> bool {
        matches!(self, Error::Authentication(_))
    }

    /// Whether this is [`Error::InvalidArgument`].
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self, Error::InvalidArgument(_))
    }

    /// Whether this is [`Error::NotEnoughSpace`].
    pub fn is_not_enough_space(&self) -> bool {
        matches!(self, Error::NotEnoughSpace(_))
    }

    /// Whether this is [`Error::RateLimit`].
    pub fn is_rate_limit(&self) -> bool {
        matches!(self, Error::RateLimit(_))
    }

    /// Whether this is [`Error::Template`].
    pub fn is_template(&self) -> bool {
        matches!(self, Error::Template(_))
    }

    /// Whether this is [`Error::Build`].
    pub fn is_build(&self) -> bool {
        matches!(self, Error::Build(_))
    }

    /// Whether this is [`Error::FileUpload`].
    pub fn is_file_upload(&self) -> bool {
        matches!(self, Error::FileUpload(_))
    }

    /// Whether this is [`Error::Volume`].
    pub fn is_volume(&self) -> bool {
        matches!(self, Error::Volume(_))
    }

    /// Whether this is [`Error::CommandExit`].
    pub fn is_command_exit(&self) -> bool {
        matches!(self, Error::CommandExit(_))
    }

    /// Whether this is [`Error::Sandbox`].
    pub fn is_sandbox(&self) -> bool {
        matches!(self, Error::Sandbox(_))
    }

    pub(crate) fn sandbox(message: impl Into<String>) -> Self {
        Error::Sandbox(Context::new(message))
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Error::InvalidArgument(Context::new(message))
    }

    pub(crate) fn timeout(message: impl Into<String>) -> Self {
        Error::Timeout(Context::new(message))
    }

    pub(crate) fn template(message: impl Into<String>) -> Self {
        Error::Template(Context::new(message))
    }

    pub(crate) fn build(message: impl Into<String>) -> Self {
        Error::Build(Context::new(message))
    }

    pub(crate) fn file_upload(message: impl Into<String>) -> Self {
        Error::FileUpload(Context::new(message))
    }

    /// The same error in another class, for failures the Python SDK reports with a
    /// call-specific class (`BuildException`, `TemplateException`, ...) instead of
    /// `SandboxException`.
    pub(crate) fn into_class(self, class: fn(Context) -> Error) -> Error {
        match self {
            Error::Sandbox(context) => class(context),
            other => other,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::CommandExit(result) => write!(
                f,
                "Command exited with code {} and error:\n{}",
                result.exit_code, result.stderr
            ),
            _ => match self.context() {
                Some(c) => f.write_str(&c.message),
                None => Ok(()),
            },
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.context()
            .and_then(|c| c.source.as_deref())
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

// ---------------------------------------------------------------------------------------
// Mapping from what the wire says to the classes: `docs/control-plane.md` (control plane)
// and `docs/envd.md` (RPCs, `/files`).

/// Appended to `unavailable` errors, as the SDKs do.
pub(crate) const SANDBOX_TIMEOUT_HINT: &str = "This error is likely due to sandbox timeout. \
You can modify the sandbox timeout by passing 'timeout' when starting the sandbox or calling \
'set_timeout' on the sandbox with the desired timeout.";

/// Appended to a transport failure when `/health` answers 502.
pub(crate) const SANDBOX_GONE: &str =
    "The sandbox was killed or reached its end of life while the request was in flight.";

/// From a Connect error of an envd RPC (`docs/envd.md`). `not_found` keeps the server's
/// message.
pub(crate) fn from_connect(err: &e2b_envd::ConnectError) -> Error {
    let code = err.code();
    let message = err.message();
    let context = |text: String| {
        let c = Context::new(text).code(code);
        match err.http_status() {
            Some(status) => c.status(status),
            None => c,
        }
    };
    match code {
        ConnectCode::InvalidArgument => Error::InvalidArgument(context(message.to_owned())),
        ConnectCode::Unauthenticated => Error::Authentication(context(message.to_owned())),
        ConnectCode::NotFound => Error::NotFound(context(message.to_owned())),
        ConnectCode::Unavailable => {
            Error::Timeout(context(format!("{message}: {SANDBOX_TIMEOUT_HINT}")))
        }
        ConnectCode::ResourceExhausted => Error::RateLimit(context(format!(
            "{message}: Rate limit exceeded, please try again later."
        ))),
        ConnectCode::Canceled => Error::Timeout(context(format!(
            "{message}: This error is likely due to exceeding 'request_timeout', or the \
             request was cancelled by the server or a proxy. You can pass the request timeout \
             value as an option when making the request."
        ))),
        ConnectCode::DeadlineExceeded => Error::Timeout(context(format!(
            "{message}: This error is likely due to exceeding 'timeout' — the total time a \
             long running request (like a command or a directory watch) can be active, or \
             'request_timeout'. Pass 'timeout' when making the request; a zero timeout \
             disables it."
        ))),
        _ => Error::Sandbox(context(format!("{code}: {message}"))),
    }
}

/// From an error status of envd's `/files` (`docs/envd.md`).
pub(crate) fn from_files_status(status: u16, message: &str) -> Error {
    let c = |text: String| Context::new(text).status(status);
    match status {
        400 => Error::InvalidArgument(c(message.to_owned())),
        401 => Error::Authentication(c(message.to_owned())),
        404 => Error::NotFound(c(message.to_owned())),
        429 => Error::RateLimit(c(format!(
            "{message}: Rate limit exceeded, please try again later."
        ))),
        502 => Error::Timeout(c(format!("{message}: {SANDBOX_TIMEOUT_HINT}"))),
        507 => Error::NotEnoughSpace(c(message.to_owned())),
        _ => Error::Sandbox(c(format!("{status}: {message}"))),
    }
}

/// From an error status of the control plane (`docs/control-plane.md`). Per-call 404s are
/// handled by callers.
pub(crate) fn from_api_status(status: u16, message: &str) -> Error {
    let c = |text: String| Context::new(text).status(status);
    match status {
        401 => Error::Authentication(c(format!(
            "401: Unauthorized, please check your credentials. - {message}"
        ))),
        429 => Error::RateLimit(c(format!(
            "429: Rate limit exceeded, please try again later. - {message}"
        ))),
        _ => Error::Sandbox(c(format!("{status}: {message}"))),
    }
}

/// The message of an error body: JSON `message` if there is one, else the text.
pub(crate) fn body_message(body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(body)
        && let Some(serde_json::Value::String(message)) = object.get("message")
    {
        return message.clone();
    }
    String::from_utf8_lossy(body).trim().to_owned()
}

/// A reqwest failure before or while reading a response, with its cause chain.
pub(crate) fn from_reqwest(what: &str, err: reqwest::Error) -> Error {
    let text = e2b_envd::error_chain(&err);
    if err.is_timeout() {
        return Error::Timeout(
            Context::new(format!(
                "{what} timed out: {text}. This error is likely due to exceeding \
                 'request_timeout'."
            ))
            .source(err.without_url()),
        );
    }
    Error::Sandbox(Context::new(format!("{what} failed: {text}")).source(err.without_url()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_static() {
        fn assert<T: Send + Sync + 'static>() {}
        assert::<Error>();
        assert::<Context>();
    }

    #[test]
    fn connect_codes_map_to_classes() {
        let e = from_connect(&e2b_envd::ConnectError::not_found(
            "path '/x' does not exist",
        ));
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "path '/x' does not exist");
        assert_eq!(e.connect_code(), Some(ConnectCode::NotFound));

        let e = from_connect(&e2b_envd::ConnectError::unavailable("gone"));
        assert!(e.is_timeout());
        assert_eq!(e.to_string(), format!("gone: {SANDBOX_TIMEOUT_HINT}"));

        let e = from_connect(&e2b_envd::ConnectError::unauthenticated(
            "invalid username: 'x'",
        ));
        assert!(e.is_authentication());
        let e = from_connect(&e2b_envd::ConnectError::invalid_argument("bad"));
        assert!(e.is_invalid_argument());
        let e = from_connect(&e2b_envd::ConnectError::resource_exhausted("slow down"));
        assert!(e.is_rate_limit());
        let e = from_connect(&e2b_envd::ConnectError::deadline_exceeded("late"));
        assert!(e.is_timeout());
        assert!(e.to_string().starts_with("late: "));
        let e = from_connect(&e2b_envd::ConnectError::canceled("cancelled"));
        assert!(e.is_timeout());
        let e = from_connect(&e2b_envd::ConnectError::internal("boom"));
        assert!(e.is_sandbox());
        assert_eq!(e.to_string(), "internal: boom");
        let e = from_connect(&e2b_envd::ConnectError::already_exists("there"));
        assert_eq!(e.to_string(), "already_exists: there");
    }

    #[test]
    fn files_statuses_map_to_classes() {
        assert!(from_files_status(400, "x").is_invalid_argument());
        assert!(from_files_status(401, "x").is_authentication());
        assert!(from_files_status(404, "x").is_not_found());
        assert!(from_files_status(429, "x").is_rate_limit());
        assert!(from_files_status(502, "x").is_timeout());
        let e = from_files_status(507, "no space");
        assert!(e.is_not_enough_space());
        assert_eq!(e.http_status(), Some(507));
        let e = from_files_status(500, "oops");
        assert!(e.is_sandbox());
        assert_eq!(e.to_string(), "500: oops");
    }

    #[test]
    fn api_statuses_map_to_classes() {
        let e = from_api_status(401, "Invalid API key");
        assert!(e.is_authentication());
        assert_eq!(
            e.to_string(),
            "401: Unauthorized, please check your credentials. - Invalid API key"
        );
        let e = from_api_status(429, "too many");
        assert_eq!(
            e.to_string(),
            "429: Rate limit exceeded, please try again later. - too many"
        );
        let e = from_api_status(500, "internal");
        assert_eq!(e.to_string(), "500: internal");
        assert_eq!(e.http_status(), Some(500));
    }

    #[test]
    fn command_exit_displays_like_the_python_sdk() {
        let e = Error::CommandExit(Box::new(CommandResult {
            stdout: "out".into(),
            stderr: "bad things".into(),
            exit_code: 3,
            error: Some("exit status 3".into()),
            ..CommandResult::default()
        }));
        assert_eq!(
            e.to_string(),
            "Command exited with code 3 and error:\nbad things"
        );
        assert!(e.is_command_exit());
    }

    #[test]
    fn body_message_prefers_json_message() {
        assert_eq!(body_message(br#"{"code":404,"message":"nope"}"#), "nope");
        assert_eq!(body_message(b"404 page not found\n"), "404 page not found");
    }
}
