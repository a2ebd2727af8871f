//! What a run gives back: [`Execution`] with its [`Result`]s, [`Logs`] and
//! [`ExecutionError`]; the [`OutputMessage`]s the callbacks see; code [`Context`]s.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::charts::Chart;
use crate::wire::{ContextJson, ErrorJson, OutputJson, ResultJson, Timestamp};

/// A rich result of a run: the value of the cell's last expression
/// ([`is_main_result`](Self::is_main_result)) or the data of a display call (a matplotlib
/// figure, `display(df)`), in every representation the kernel produced.
///
/// Binary formats (`png`, `jpeg`, `pdf`) are base64 text, as on the wire; see
/// [`png_bytes`](Self::png_bytes).
///
/// ```no_run
/// # async fn demo() -> e2b::Result<()> {
/// use e2b_code_interpreter::{RunCodeOptions, Sandbox};
///
/// let sandbox = Sandbox::create().await?;
/// let execution = sandbox.run_code("import pandas as pd; pd.DataFrame({'a': [1, 2]})", RunCodeOptions::new()).await?;
/// let result = &execution.results[0];
/// assert!(result.is_main_result);
/// println!("{:?}", result.formats()); // ["text", "html", ...]
/// let table = result.html.as_deref().unwrap_or_default();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Result {
    /// `text/plain`.
    pub text: Option<String>,
    /// `text/html`.
    pub html: Option<String>,
    /// `text/markdown`.
    pub markdown: Option<String>,
    /// `image/svg+xml`.
    pub svg: Option<String>,
    /// `image/png`, base64.
    pub png: Option<String>,
    /// `image/jpeg`, base64.
    pub jpeg: Option<String>,
    /// `application/pdf`, base64.
    pub pdf: Option<String>,
    /// `text/latex`.
    pub latex: Option<String>,
    /// `application/json`.
    pub json: Option<Value>,
    /// `application/javascript`.
    pub javascript: Option<String>,
    /// `e2b/data`: the data of a pandas DataFrame and the like.
    pub data: Option<Value>,
    /// `e2b/chart`, typed. `None` when there is none, or when it did not fit its type (a
    /// warning is logged, as the Python SDK does; the JSON stays in [`raw`](Self::raw)).
    pub chart: Option<Chart>,
    /// Whether this is the value of the cell's last expression, rather than a display call's.
    pub is_main_result: bool,
    /// Other MIME types, by their names: the server's `extra`, plus any field this SDK does
    /// not know.
    pub extra: Map<String, Value>,
    /// Every field as sent (but `type` and `is_main_result`).
    pub raw: Map<String, Value>,
}

impl Result {
    /// A result from a `result` line.
    ///
    /// # Errors
    ///
    /// A message naming the field, when a text format is not a string or `extra` is not an
    /// object.
    pub(crate) fn from_wire(wire: ResultJson) -> std::result::Result<Self, String> {
        let mut fields = wire.fields.clone();
        let mut text = |name: &str| match fields.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("a result's '{name}' is a string, got {other}")),
        };
        let (text_plain, html, markdown, svg, png, jpeg, pdf, latex, javascript) = (
            text("text")?,
            text("html")?,
            text("markdown")?,
            text("svg")?,
            text("png")?,
            text("jpeg")?,
            text("pdf")?,
            text("latex")?,
            text("javascript")?,
        );
        let mut value = |name: &str| fields.remove(name).filter(|v| !v.is_null());
        let (json, data, chart_json, extra_json) =
            (value("json"), value("data"), value("chart"), value("extra"));
        let mut extra = match extra_json {
            None => Map::new(),
            Some(Value::Object(extra)) => extra,
            Some(other) => return Err(format!("a result's 'extra' is an object, got {other}")),
        };
        // What is left is a format this SDK does not know: kept, as the JS SDK keeps it.
        extra.extend(fields);
        let chart = chart_json.and_then(|json| match Chart::from_json(&json) {
            Ok(chart) => Some(chart),
            Err(e) => {
                tracing::warn!(error = %e, "a result's chart did not fit its type; is e2b-code-interpreter up to date?");
                None
            }
        });
        Ok(Result {
            text: text_plain,
            html,
            markdown,
            svg,
            png,
            jpeg,
            pdf,
            latex,
            json,
            javascript,
            data,
            chart,
            is_main_result: wire.is_main_result,
            extra,
            raw: wire.fields,
        })
    }

    /// The formats present, in the official SDKs' order: `text`, `html`, `markdown`, `svg`,
    /// `png`, `jpeg`, `pdf`, `latex`, `json`, `javascript`, `data`, `chart`, then the names in
    /// [`extra`](Self::extra). Empty values do not count (as in the Python SDK).
    ///
    /// ```
    /// let result = e2b_code_interpreter::Result {
    ///     text: Some("<Figure>".into()),
    ///     png: Some("iVBORw0KGgo=".into()),
    ///     ..Default::default()
    /// };
    /// assert_eq!(result.formats(), ["text", "png"]);
    /// ```
    pub fn formats(&self) -> Vec<String> {
        let text = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        let value = |v: &Option<Value>| v.as_ref().is_some_and(truthy);
        let present = [
            ("text", text(&self.text)),
            ("html", text(&self.html)),
            ("markdown", text(&self.markdown)),
            ("svg", text(&self.svg)),
            ("png", text(&self.png)),
            ("jpeg", text(&self.jpeg)),
            ("pdf", text(&self.pdf)),
            ("latex", text(&self.latex)),
            ("json", value(&self.json)),
            ("javascript", text(&self.javascript)),
            ("data", value(&self.data)),
            ("chart", self.chart.is_some()),
        ];
        present
            .into_iter()
            .filter(|(_, present)| *present)
            .map(|(name, _)| name.to_owned())
            .chain(self.extra.keys().cloned())
            .collect()
    }

    /// The PNG's bytes, decoded from base64.
    ///
    /// # Errors
    ///
    /// [`e2b::Error::Sandbox`] when the server sent something that is not base64.
    pub fn png_bytes(&self) -> e2b::Result<Option<Vec<u8>>> {
        decode("png", self.png.as_deref())
    }

    /// The JPEG's bytes, decoded from base64.
    ///
    /// # Errors
    ///
    /// As [`png_bytes`](Self::png_bytes).
    pub fn jpeg_bytes(&self) -> e2b::Result<Option<Vec<u8>>> {
        decode("jpeg", self.jpeg.as_deref())
    }

    /// The PDF's bytes, decoded from base64.
    ///
    /// # Errors
    ///
    /// As [`png_bytes`](Self::png_bytes).
    pub fn pdf_bytes(&self) -> e2b::Result<Option<Vec<u8>>> {
        decode("pdf", self.pdf.as_deref())
    }
}

/// Python's truthiness of a JSON value, which `formats()` follows.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn decode(format: &str, base64_text: Option<&str>) -> e2b::Result<Option<Vec<u8>>> {
    let Some(text) = base64_text else {
        return Ok(None);
    };
    // Jupyter may wrap base64 in lines.
    let compact: String = text.split_ascii_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map(Some)
        .map_err(|e| {
            e2b::Error::Sandbox(e2b::error::Context::new(format!(
                "the result's {format} is not base64: {e}"
            )))
        })
}

/// What the code printed, line by line as the kernel flushed it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Logs {
    /// Chunks written to standard output (prints, subprocesses...).
    pub stdout: Vec<String>,
    /// Chunks written to standard error (warnings, logging...).
    pub stderr: Vec<String>,
}

/// The exception a run raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionError {
    /// The exception's class, e.g. `ZeroDivisionError`.
    pub name: String,
    /// Its message, e.g. `division by zero`.
    pub value: String,
    /// The formatted traceback.
    pub traceback: String,
}

impl From<ErrorJson> for ExecutionError {
    fn from(wire: ErrorJson) -> Self {
        ExecutionError {
            name: wire.name,
            value: wire.value,
            traceback: wire.traceback,
        }
    }
}

impl std::fmt::Display for ExecutionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.value)
    }
}

/// A chunk of output as the `on_stdout`/`on_stderr` callbacks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputMessage {
    /// The text.
    pub line: String,
    /// When it was written, in nanoseconds since the Unix epoch: the server's date, or the
    /// client's clock when the server sent none (or one that is not a date).
    pub timestamp: i64,
    /// Whether it came from standard error.
    pub error: bool,
}

impl OutputMessage {
    pub(crate) fn from_wire(wire: OutputJson, error: bool) -> Self {
        let timestamp = wire
            .timestamp
            .as_ref()
            .and_then(Timestamp::nanos)
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            });
        OutputMessage {
            line: wire.text,
            timestamp,
            error,
        }
    }
}

/// The outcome of [`Sandbox::run_code`](crate::Sandbox::run_code).
///
/// A run that raised still returns an `Execution`, with the exception in
/// [`error`](Self::error); only failures to run at all are `Err`s.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Execution {
    /// The results: display calls in order, and the cell's value (the main result).
    pub results: Vec<Result>,
    /// Standard output and error.
    pub logs: Logs,
    /// The exception, if the code raised one.
    pub error: Option<ExecutionError>,
    /// The kernel's execution counter after this run.
    pub execution_count: Option<u32>,
}

impl Execution {
    /// The text of the main result (the value of the cell's last expression), if any.
    ///
    /// ```
    /// use e2b_code_interpreter::{Execution, Result};
    ///
    /// let execution = Execution {
    ///     results: vec![Result { text: Some("2".into()), is_main_result: true, ..Default::default() }],
    ///     ..Default::default()
    /// };
    /// assert_eq!(execution.text(), Some("2"));
    /// ```
    pub fn text(&self) -> Option<&str> {
        self.results
            .iter()
            .find(|r| r.is_main_result)
            .and_then(|r| r.text.as_deref())
    }
}

/// A code context: a kernel of its own (state, language, working directory), made by
/// [`Sandbox::create_code_context`](crate::Sandbox::create_code_context). Passes as a context
/// id wherever one is asked for (`AsRef<str>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Its id.
    pub id: String,
    /// Its language, e.g. `python`.
    pub language: String,
    /// Its working directory.
    pub cwd: String,
}

impl From<ContextJson> for Context {
    fn from(wire: ContextJson) -> Self {
        Context {
            id: wire.id,
            language: wire.language,
            cwd: wire.cwd,
        }
    }
}

impl AsRef<str> for Context {
    fn as_ref(&self) -> &str {
        &self.id
    }
}
