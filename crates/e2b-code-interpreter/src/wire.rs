//! The wire of the code interpreter's server (port 49999 inside `code-interpreter-v1`
//! sandboxes), as E2B's official SDKs speak it (`e2b-code-interpreter` 2.11.5 on PyPI,
//! `@e2b/code-interpreter` 2.8.0 on npm).
//!
//! That API has no OpenAPI (or other) spec upstream, so it has no generated layer; these
//! serde types and constants are its one home in this workspace.
//!
//! | request | body | answer |
//! |---|---|---|
//! | `POST /execute` | [`ExecuteRequest`] | 200, NDJSON: one [`Event`] per line |
//! | `POST /contexts` | [`CreateContextRequest`] | 200, a [`ContextJson`] |
//! | `GET /contexts` | — | 200, `[ContextJson]` |
//! | `DELETE /contexts/{id}` | — | 2xx |
//! | `POST /contexts/{id}/restart` | — | 2xx |
//!
//! Every request carries `Content-Type: application/json`, `E2b-Sandbox-Id: <id>`,
//! `E2b-Sandbox-Port: 49999` and, for a private sandbox, `E2B-Traffic-Access-Token`;
//! `/execute` also carries `X-Access-Token` (envd's token) when the sandbox has one. Errors
//! are a status with a text body: 404 (no such context), 502 (the sandbox is gone), others.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The port the server listens on inside the sandbox.
pub const JUPYTER_PORT: u16 = 49999;

/// `POST /execute`'s body. `None`s are sent as JSON `null`, as the official SDKs do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecuteRequest<'a> {
    /// The code to run.
    pub code: &'a str,
    /// The context to run it in; `null` for the language's default context.
    pub context_id: Option<&'a str>,
    /// The language's default context to run it in; `null` (with no context) for Python.
    pub language: Option<&'a str>,
    /// Environment variables for this run only.
    pub env_vars: Option<&'a std::collections::BTreeMap<String, String>>,
}

/// `POST /contexts`'s body: absent fields take the server's defaults (Python, `/home/user`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreateContextRequest<'a> {
    /// The context's language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<&'a str>,
    /// The context's working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<&'a str>,
}

/// A context as the server describes it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ContextJson {
    /// Its id.
    pub id: String,
    /// Its language.
    pub language: String,
    /// Its working directory.
    pub cwd: String,
}

/// One line of `/execute`'s answer. Lines of other types (keepalives, types added later) are
/// [`Event::Other`] and ignored, as the official SDKs ignore them.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A chunk of the code's standard output.
    Stdout(OutputJson),
    /// A chunk of the code's standard error.
    Stderr(OutputJson),
    /// A rich result: the cell's value (`is_main_result`) or a display call's data.
    Result(ResultJson),
    /// The exception the code raised.
    Error(ErrorJson),
    /// The kernel's execution counter after this run.
    NumberOfExecutions {
        /// The counter.
        execution_count: u32,
    },
    /// The last line of a complete answer.
    EndOfExecution,
    /// A line of another type, with its type.
    Other(String),
}

/// A `stdout` or `stderr` line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OutputJson {
    /// The text.
    pub text: String,
    /// When it was written (absent from some servers).
    #[serde(default)]
    pub timestamp: Option<Timestamp>,
}

/// When output was written: E2B's server sends the Jupyter message's date (RFC 3339 text);
/// the Python SDK documents nanoseconds since the Unix epoch. Both are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Timestamp {
    /// Nanoseconds since the Unix epoch.
    Nanos(i64),
    /// A date as text, e.g. `2026-01-01T00:00:00.000001Z`.
    Text(String),
}

impl Timestamp {
    /// Nanoseconds since the Unix epoch; `None` for text that is not an RFC 3339 date (or a
    /// date without an offset, taken as UTC) in the range of an `i64`.
    pub fn nanos(&self) -> Option<i64> {
        match self {
            Timestamp::Nanos(n) => Some(*n),
            Timestamp::Text(text) => chrono::DateTime::parse_from_rfc3339(text)
                .map(|d| d.to_utc())
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                        .map(|d| d.and_utc())
                })
                .ok()
                .and_then(|d| d.timestamp_nanos_opt()),
        }
    }
}

/// An `error` line.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ErrorJson {
    /// The exception's class, e.g. `ZeroDivisionError`.
    pub name: String,
    /// Its message.
    pub value: String,
    /// The formatted traceback.
    pub traceback: String,
}

/// A `result` line: every field but `type`, MIME data under short names (`text` is
/// `text/plain`, `png` is `image/png` in base64, ...), the rest under `extra`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResultJson {
    /// Whether this is the value of the cell's last expression.
    pub is_main_result: bool,
    /// Every other field of the line, as sent.
    pub fields: Map<String, Value>,
}

/// A line that is not valid JSON, or not an object with a string `type`, or whose type's
/// fields are missing or mistyped.
#[derive(Debug, Clone, PartialEq)]
pub struct MalformedEvent(pub String);

impl std::fmt::Display for MalformedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MalformedEvent {}

impl Event {
    /// Parses one line of `/execute`'s answer (without its newline).
    ///
    /// ```
    /// use e2b_code_interpreter::wire::{Event, OutputJson, Timestamp};
    ///
    /// let event = Event::parse(r#"{"type":"stdout","text":"hi\n","timestamp":1}"#).unwrap();
    /// assert_eq!(event, Event::Stdout(OutputJson { text: "hi\n".into(), timestamp: Some(Timestamp::Nanos(1)) }));
    /// ```
    ///
    /// # Errors
    ///
    /// [`MalformedEvent`] naming what was wrong with the line.
    pub fn parse(line: &str) -> Result<Event, MalformedEvent> {
        let value: Value = serde_json::from_str(line)
            .map_err(|e| MalformedEvent(format!("not JSON ({e}): {}", excerpt(line))))?;
        let Value::Object(mut object) = value else {
            return Err(MalformedEvent(format!(
                "not a JSON object: {}",
                excerpt(line)
            )));
        };
        let kind = match object.remove("type") {
            Some(Value::String(kind)) => kind,
            _ => {
                return Err(MalformedEvent(format!(
                    "no string 'type': {}",
                    excerpt(line)
                )));
            }
        };
        let fields = |object: Map<String, Value>| Value::Object(object);
        let typed = |what: &str, e: serde_json::Error| {
            MalformedEvent(format!("a '{what}' event {e}: {}", excerpt(line)))
        };
        Ok(match kind.as_str() {
            "stdout" => Event::Stdout(
                serde_json::from_value(fields(object)).map_err(|e| typed("stdout", e))?,
            ),
            "stderr" => Event::Stderr(
                serde_json::from_value(fields(object)).map_err(|e| typed("stderr", e))?,
            ),
            "error" => {
                Event::Error(serde_json::from_value(fields(object)).map_err(|e| typed("error", e))?)
            }
            "number_of_executions" => {
                #[derive(Deserialize)]
                struct Count {
                    execution_count: u32,
                }
                let count: Count = serde_json::from_value(fields(object))
                    .map_err(|e| typed("number_of_executions", e))?;
                Event::NumberOfExecutions {
                    execution_count: count.execution_count,
                }
            }
            "end_of_execution" => Event::EndOfExecution,
            "result" => {
                let is_main_result = match object.remove("is_main_result") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => b,
                    Some(other) => {
                        return Err(MalformedEvent(format!(
                            "a 'result' event with a non-boolean is_main_result {other}: {}",
                            excerpt(line)
                        )));
                    }
                };
                Event::Result(ResultJson {
                    is_main_result,
                    fields: object,
                })
            }
            _ => Event::Other(kind),
        })
    }
}

/// The start of a line, for messages: results can be megabytes of base64.
fn excerpt(line: &str) -> String {
    const MAX: usize = 200;
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}
