//! The events of `POST /execute`, one JSON object per line, in E2B's shapes.

use serde::Serialize;
use serde_json::{Map, Value};

/// One line of an execution's response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Text the code wrote to stdout.
    Stdout {
        /// The text, as the kernel batched it.
        text: String,
        /// When the kernel sent it (ISO 8601, from the kernel's message header).
        timestamp: String,
    },
    /// Text the code wrote to stderr.
    Stderr {
        /// The text, as the kernel batched it.
        text: String,
        /// When the kernel sent it (ISO 8601, from the kernel's message header).
        timestamp: String,
    },
    /// A rich result: the cell's value (`is_main_result`) or a display call's.
    Result(Box<ResultData>),
    /// The code raised (or the execution could not run).
    Error {
        /// The exception's class name (or the server's reason, e.g. `ContextRestarting`).
        name: String,
        /// The exception's message.
        value: String,
        /// The formatted traceback, its entries joined without separators as E2B does.
        traceback: String,
    },
    /// The kernel's execution counter for this run.
    NumberOfExecutions {
        /// The counter (`In [n]`).
        execution_count: u64,
    },
    /// The execution is over; always the last line.
    EndOfExecution,
    /// Sent after a quiet interval so a vanished client is noticed.
    Keepalive,
}

/// A result's representations, named as E2B names MIME types; the others go to `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResultData {
    /// `text/plain`, without the quotes IPython puts around a string's repr.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<Value>,
    /// `text/html`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<Value>,
    /// `text/markdown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub markdown: Option<Value>,
    /// `image/svg+xml`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svg: Option<Value>,
    /// `image/png`, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub png: Option<Value>,
    /// `image/jpeg`, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jpeg: Option<Value>,
    /// `application/pdf`, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pdf: Option<Value>,
    /// `text/latex`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latex: Option<Value>,
    /// `application/json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// `application/javascript`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub javascript: Option<Value>,
    /// `e2b/data` (a DataFrame as columns, from the template's formatter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// `e2b/chart` (a matplotlib figure's data, from `e2b_charts`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart: Option<Value>,
    /// Every other MIME type, by its name.
    pub extra: Map<String, Value>,
    /// Whether this is the cell's value rather than a display call's output.
    pub is_main_result: bool,
}

impl ResultData {
    /// Splits a Jupyter MIME bundle (`content.data`) into E2B's fields.
    pub fn from_bundle(bundle: Value, is_main_result: bool) -> Self {
        let mut bundle = match bundle {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let text = bundle.remove("text/plain").map(|t| match t {
            Value::String(s) => Value::String(unquote(s)),
            other => other,
        });
        ResultData {
            text,
            html: bundle.remove("text/html"),
            markdown: bundle.remove("text/markdown"),
            svg: bundle.remove("image/svg+xml"),
            png: bundle.remove("image/png"),
            jpeg: bundle.remove("image/jpeg"),
            pdf: bundle.remove("application/pdf"),
            latex: bundle.remove("text/latex"),
            json: bundle.remove("application/json"),
            javascript: bundle.remove("application/javascript"),
            data: bundle.remove("e2b/data"),
            chart: bundle.remove("e2b/chart"),
            extra: bundle,
            is_main_result,
        }
    }
}

/// `'abc'` → `abc`: a string's repr shown as its text, as E2B does.
fn unquote(s: String) -> String {
    let quoted = s.len() >= 2
        && ((s.starts_with('\'') && s.ends_with('\'')) || (s.starts_with('"') && s.ends_with('"')));
    if quoted {
        s[1..s.len() - 1].to_owned()
    } else {
        s
    }
}

impl Event {
    /// An error event the server itself raises (no traceback).
    pub(crate) fn server_error(name: &str, value: impl Into<String>) -> Self {
        Event::Error {
            name: name.to_owned(),
            value: value.into(),
            traceback: String::new(),
        }
    }

    /// The event as one response line (JSON and `\n`), or an `OutputTooLarge` error line when
    /// it is longer than `max_bytes`.
    pub fn to_line(&self, max_bytes: usize) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        if line.len() > max_bytes {
            let kind = match self {
                Event::Stdout { .. } => "stdout",
                Event::Stderr { .. } => "stderr",
                Event::Result(_) => "result",
                Event::Error { .. } => "error",
                _ => "event",
            };
            let too_large = Event::server_error(
                "OutputTooLarge",
                format!(
                    "a {kind} event of {} bytes is over the limit of {max_bytes} bytes per event; it was dropped",
                    line.len()
                ),
            );
            line = serde_json::to_vec(&too_large).unwrap_or_default();
        }
        line.push(b'\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_serialize_in_e2b_shapes() {
        let line = |e: Event| String::from_utf8(e.to_line(1 << 20)).unwrap();
        assert_eq!(
            line(Event::Stdout {
                text: "hi\n".into(),
                timestamp: "2026-01-01T00:00:00.000001Z".into()
            }),
            "{\"type\":\"stdout\",\"text\":\"hi\\n\",\"timestamp\":\"2026-01-01T00:00:00.000001Z\"}\n"
        );
        assert_eq!(
            line(Event::NumberOfExecutions { execution_count: 3 }),
            "{\"type\":\"number_of_executions\",\"execution_count\":3}\n"
        );
        assert_eq!(
            line(Event::EndOfExecution),
            "{\"type\":\"end_of_execution\"}\n"
        );
        assert_eq!(line(Event::Keepalive), "{\"type\":\"keepalive\"}\n");
        assert_eq!(
            line(Event::server_error("X", "y")),
            "{\"type\":\"error\",\"name\":\"X\",\"value\":\"y\",\"traceback\":\"\"}\n"
        );
    }

    #[test]
    fn a_bundle_splits_into_named_fields_and_extra() {
        let r = ResultData::from_bundle(
            json!({"text/plain": "'abc'", "text/html": "<b>", "image/png": "iVBOR", "application/x-custom": 1}),
            true,
        );
        let v = serde_json::to_value(Event::Result(Box::new(r))).unwrap();
        assert_eq!(
            v,
            json!({"type": "result", "text": "abc", "html": "<b>", "png": "iVBOR",
                   "extra": {"application/x-custom": 1}, "is_main_result": true})
        );
        let two = ResultData::from_bundle(json!({"text/plain": "2"}), false);
        assert_eq!(two.text, Some(json!("2")));
        assert_eq!(unquote("'".into()), "'");
    }

    #[test]
    fn an_event_over_the_limit_becomes_an_output_too_large_error() {
        let big = Event::Stdout {
            text: "x".repeat(100),
            timestamp: String::new(),
        };
        let line: Value = serde_json::from_slice(&big.to_line(50)).unwrap();
        assert_eq!(line["type"], "error");
        assert_eq!(line["name"], "OutputTooLarge");
        assert_eq!(
            line["value"],
            "a stdout event of 142 bytes is over the limit of 50 bytes per event; it was dropped"
        );
    }
}
