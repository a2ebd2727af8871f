//! The code interpreter's wire: parsing of every event kind, every MIME field and every
//! chart type from fixtures (tests/fixtures/README.md), and the requests `run_code` and the
//! context calls send and how they classify answers, against a scripted server on
//! 127.0.0.1 (tests/support).

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2b_code_interpreter::charts::{Chart, ChartType, ChartValue, ScaleType};
use e2b_code_interpreter::wire::{ErrorJson, Event, OutputJson, Timestamp};
use e2b_code_interpreter::{
    CreateCodeContextOptions, Execution, ExecutionError, Logs, RunCodeOptions, Sandbox,
};
use serde_json::json;
use support::{FakeServer, Reply, fixture};

const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
const TRACEBACK: &str = "---------------------------------------------------------------------------\nZeroDivisionError                         Traceback (most recent call last)\nCell In[1], line 1\n----> 1 1 / 0\n\nZeroDivisionError: division by zero";

async fn sandbox(server: &FakeServer) -> Sandbox {
    Sandbox::builder()
        .config(server.config())
        .create()
        .await
        .unwrap()
}

fn ndjson(lines: &[serde_json::Value]) -> Vec<u8> {
    lines
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .into_bytes()
}

fn end() -> serde_json::Value {
    json!({"type": "end_of_execution"})
}

#[test]
fn every_event_kind_parses() {
    let events: Vec<Event> = fixture("execute.ndjson")
        .lines()
        .map(|l| Event::parse(l).unwrap())
        .collect();
    assert_eq!(events.len(), 10);
    assert_eq!(
        events[0],
        Event::Stdout(OutputJson {
            text: "hello\n".into(),
            timestamp: Some(Timestamp::Nanos(1_732_960_000_000_000_000))
        })
    );
    assert_eq!(
        events[1],
        Event::Stderr(OutputJson {
            text: "warning: careful\n".into(),
            timestamp: Some(Timestamp::Text("2024-11-30T09:46:40.000001Z".into()))
        })
    );
    assert_eq!(events[2], Event::Other("keepalive".into()));
    let Event::Result(display) = &events[3] else {
        panic!("{:?}", events[3])
    };
    assert!(!display.is_main_result);
    assert_eq!(display.fields["png"], PNG);
    let Event::Result(main) = &events[5] else {
        panic!("{:?}", events[5])
    };
    assert!(main.is_main_result);
    assert_eq!(
        main.fields,
        json!({"text": "2"}).as_object().unwrap().clone()
    );
    assert_eq!(events[6], Event::Other("a_future_event".into()));
    assert_eq!(
        events[7],
        Event::Error(ErrorJson {
            name: "ZeroDivisionError".into(),
            value: "division by zero".into(),
            traceback: TRACEBACK.into(),
        })
    );
    assert_eq!(events[8], Event::NumberOfExecutions { execution_count: 7 });
    assert_eq!(events[9], Event::EndOfExecution);
    assert_eq!(
        Timestamp::Text("2024-11-30T10:46:40.5+01:00".into()).nanos(),
        Some(1_732_960_000_500_000_000)
    );
    assert_eq!(
        Timestamp::Text("2024-11-30T09:46:40.25".into()).nanos(),
        Some(1_732_960_000_250_000_000),
        "no offset: UTC"
    );
    assert_eq!(Timestamp::Text("yesterday".into()).nanos(), None);
    // A server that sends no timestamp (the JS SDK makes its own).
    assert_eq!(
        Event::parse(r#"{"type":"stdout","text":"x"}"#).unwrap(),
        Event::Stdout(OutputJson {
            text: "x".into(),
            timestamp: None
        })
    );
}

#[test]
fn malformed_events_are_named() {
    let err = Event::parse("not json").unwrap_err();
    assert!(err.0.starts_with("not JSON ("), "{err}");
    assert_eq!(Event::parse("[1]").unwrap_err().0, "not a JSON object: [1]");
    assert_eq!(
        Event::parse(r#"{"text":"x"}"#).unwrap_err().0,
        r#"no string 'type': {"text":"x"}"#
    );
    let err = Event::parse(r#"{"type":"stdout"}"#).unwrap_err();
    assert!(
        err.0.starts_with("a 'stdout' event missing field `text`"),
        "{err}"
    );
    let err = Event::parse(r#"{"type":"number_of_executions","execution_count":"x"}"#).unwrap_err();
    assert!(
        err.0
            .starts_with("a 'number_of_executions' event invalid type"),
        "{err}"
    );
    let err = Event::parse(r#"{"type":"result","is_main_result":"yes"}"#).unwrap_err();
    assert!(
        err.0.contains("non-boolean is_main_result \"yes\""),
        "{err}"
    );
    let long = format!(
        r#"{{"type":"stdout","text":1,"pad":"{}"}}"#,
        "x".repeat(500)
    );
    let err = Event::parse(&long).unwrap_err();
    assert!(err.0.ends_with('…') && err.0.len() < 320, "{err}");
}

#[tokio::test]
async fn every_mime_field_and_extra_reach_the_result() {
    let server = FakeServer::start([Reply::ok(format!(
        "{}\n{}\n",
        fixture("result_every_mime.json").trim(),
        end()
    ))]);
    let execution = sandbox(&server)
        .await
        .run_code("display(everything)", RunCodeOptions::new())
        .await
        .unwrap();
    let [result] = &execution.results[..] else {
        panic!("{execution:?}")
    };
    assert_eq!(result.text.as_deref(), Some("Out"));
    assert_eq!(result.html.as_deref(), Some("<b>Out</b>"));
    assert_eq!(result.markdown.as_deref(), Some("**Out**"));
    assert_eq!(
        result.svg.as_deref(),
        Some(r#"<svg xmlns="http://www.w3.org/2000/svg"/>"#)
    );
    assert_eq!(result.png.as_deref(), Some(PNG));
    assert_eq!(result.jpeg.as_deref(), Some("/9j/4AAQSkZJRg=="));
    assert_eq!(result.pdf.as_deref(), Some("JVBERi0xLjQK"));
    assert_eq!(result.latex.as_deref(), Some(r"\frac{1}{2}"));
    assert_eq!(result.json, Some(json!({"a": [1, 2]})));
    assert_eq!(result.javascript.as_deref(), Some("console.log(1)"));
    assert_eq!(
        result.data,
        Some(json!({"columns": ["a"], "index": [0], "data": [[1]]}))
    );
    let Some(Chart::Pie(pie)) = &result.chart else {
        panic!("{:?}", result.chart)
    };
    assert_eq!(pie.title.as_deref(), Some("Shares"));
    assert!(result.is_main_result);
    assert_eq!(
        serde_json::Value::Object(result.extra.clone()),
        json!({"application/vnd.custom+json": {"k": "v"}, "application/x-new": "from a newer server"})
    );
    assert_eq!(result.raw["chart"]["type"], "pie");
    assert!(!result.raw.contains_key("type") && !result.raw.contains_key("is_main_result"));
    assert_eq!(
        result.formats(),
        [
            "text",
            "html",
            "markdown",
            "svg",
            "png",
            "jpeg",
            "pdf",
            "latex",
            "json",
            "javascript",
            "data",
            "chart",
            "application/vnd.custom+json",
            "application/x-new"
        ]
    );
    let png = result.png_bytes().unwrap().unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(result.pdf_bytes().unwrap().unwrap(), b"%PDF-1.4\n");
    assert_eq!(&result.jpeg_bytes().unwrap().unwrap()[..3], b"\xff\xd8\xff");
    assert_eq!(execution.text(), Some("Out"));
}

#[tokio::test]
async fn malformed_results_and_charts() {
    let server = FakeServer::start([
        Reply::ok(ndjson(&[
            json!({"type": "result", "text": 3, "is_main_result": true}),
            end(),
        ])),
        Reply::ok(ndjson(&[
            json!({"type": "result", "text": "t", "chart": {"type": "pie", "elements": [{"label": "a"}]}, "png": "%%%", "is_main_result": true}),
            end(),
        ])),
    ]);
    let sandbox = sandbox(&server).await;
    let err = sandbox
        .run_code("x", RunCodeOptions::new())
        .await
        .unwrap_err();
    assert!(err.is_sandbox());
    assert_eq!(
        err.to_string(),
        "the code interpreter sent a malformed result: a result's 'text' is a string, got 3"
    );
    // A chart that does not fit its type is left out (logged), as the Python SDK does.
    let execution = sandbox.run_code("x", RunCodeOptions::new()).await.unwrap();
    let result = &execution.results[0];
    assert_eq!(result.chart, None);
    assert_eq!(result.raw["chart"]["type"], "pie");
    assert_eq!(result.formats(), ["text", "png"]);
    let err = result.png_bytes().unwrap_err();
    assert!(err.is_sandbox());
    assert!(
        err.to_string()
            .starts_with("the result's png is not base64: "),
        "{err}"
    );
}

fn chart(name: &str) -> Chart {
    let json: serde_json::Value =
        serde_json::from_str(&fixture(&format!("charts/{name}.json"))).unwrap();
    Chart::from_json(&json).unwrap()
}

#[test]
fn charts_are_typed() {
    let Chart::Line(line) = chart("line") else {
        panic!()
    };
    assert_eq!(line.title.as_deref(), Some("Plot of sin(x) and cos(x)"));
    assert_eq!(line.x_label.as_deref(), Some("Time (s)"));
    assert_eq!(line.y_label.as_deref(), Some("Amplitude (Hz)"));
    assert_eq!(line.x_unit.as_deref(), Some("s"));
    assert_eq!(line.y_unit.as_deref(), Some("Hz"));
    assert_eq!(line.x_scale, ScaleType::Linear);
    assert_eq!(line.y_scale, ScaleType::Linear);
    assert_eq!(line.x_ticks.len(), 4);
    assert_eq!(line.x_ticks[1], ChartValue::Number(2.0));
    assert_eq!(line.y_tick_labels, ["\u{2212}1.0", "0.0", "1.0"]);
    assert_eq!(line.elements.len(), 2);
    assert_eq!(line.elements[1].label, "cos(x)");
    assert_eq!(
        line.elements[1].points[1],
        (ChartValue::Number(3.25), ChartValue::Number(-1.0))
    );

    let Chart::Line(dates) = chart("line_datetime") else {
        panic!()
    };
    assert_eq!(dates.x_scale, ScaleType::Datetime);
    assert_eq!(dates.y_scale, ScaleType::Unknown, "an unknown scale name");
    assert_eq!(dates.x_unit, None);
    assert_eq!(
        dates.elements[0].points[0],
        (
            ChartValue::Text("2023-09-01T00:00:00".into()),
            ChartValue::Number(14.5)
        )
    );

    let Chart::Scatter(scatter) = chart("scatter") else {
        panic!()
    };
    assert_eq!(scatter.x_scale, ScaleType::Log);
    assert_eq!(scatter.y_scale, ScaleType::Unknown, "no y_scale at all");
    assert_eq!(
        scatter.elements[1].points,
        [(ChartValue::Number(2.0), ChartValue::Number(1.0))]
    );

    let Chart::Bar(bar) = chart("bar") else {
        panic!()
    };
    assert_eq!(bar.x_label.as_deref(), Some("Authors"));
    assert_eq!(bar.elements[0].label, "Author A");
    assert_eq!(bar.elements[0].group, "Books Sold");
    assert_eq!(bar.elements[0].value, ChartValue::Number(100.0));
    assert_eq!(bar.elements[1].value, ChartValue::Number(200.5));
    assert_eq!(bar.elements[2].value, ChartValue::Text("n/a".into()));

    let Chart::Pie(pie) = chart("pie") else {
        panic!()
    };
    assert_eq!(pie.elements[0].label, "No");
    assert_eq!(pie.elements[0].angle, 324.0);
    assert_eq!(pie.elements[1].radius, 1.0);

    let Chart::BoxAndWhisker(boxes) = chart("box_and_whisker") else {
        panic!()
    };
    let b = &boxes.elements[1];
    assert_eq!(
        (
            b.label.as_str(),
            b.min,
            b.first_quartile,
            b.median,
            b.third_quartile,
            b.max
        ),
        ("Class B", 84.0, 84.75, 88.0, 90.5, 95.0)
    );
    assert_eq!(b.outliers, [76.0]);
    assert!(boxes.elements[2].outliers.is_empty(), "null outliers");

    let Chart::SuperChart(superchart) = chart("superchart") else {
        panic!()
    };
    assert_eq!(superchart.title.as_deref(), Some("Multiple Charts Example"));
    let types: Vec<ChartType> = superchart.elements.iter().map(Chart::chart_type).collect();
    assert_eq!(types, [ChartType::Line, ChartType::Scatter]);
    assert_eq!(superchart.elements[1].title(), Some("Scatter Plot"));

    let Chart::Unknown(unknown) = chart("unknown") else {
        panic!()
    };
    assert_eq!(unknown.type_name, "unknown");
    assert_eq!(unknown.title.as_deref(), Some("Unknown Chart"));
    assert_eq!(unknown.elements, [json!({"some": "shape"})]);

    let other =
        Chart::from_json(&json!({"type": "heatmap", "title": null, "elements": []})).unwrap();
    assert_eq!(other.chart_type(), ChartType::Unknown);
    assert_eq!(other.title(), None);
    let err = Chart::from_json(&json!({"type": "bar", "elements": [{"label": "a"}]})).unwrap_err();
    assert!(
        err.starts_with("a bar chart: missing field `group`"),
        "{err}"
    );
    assert_eq!(
        Chart::from_json(&json!([])).unwrap_err(),
        "a chart is a JSON object, got []"
    );
}

#[derive(Debug, PartialEq)]
enum Seen {
    Stdout(String, i64),
    Stderr(String, i64),
    Result(bool),
    Error(String),
}

#[tokio::test]
async fn run_code_sends_the_official_request_and_folds_the_stream_in_order() {
    // The fixture in awkward pieces: lines split mid-way, several per chunk, and the PNG
    // line cut mid-base64.
    let body = fixture("execute.ndjson").into_bytes();
    let cuts = [5, 40, 41, 200, 260, body.len() - 3, body.len()];
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        chunks.push((Duration::from_millis(20), body[start..cut].to_vec()));
        start = cut;
    }
    let server = FakeServer::start([Reply::chunks(chunks)]);
    let sandbox = sandbox(&server).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s1, s2, s3, s4) = (seen.clone(), seen.clone(), seen.clone(), seen.clone());
    let execution = sandbox
        .run_code(
            "print('hello'); 1 + 1",
            RunCodeOptions::new()
                .on_stdout(move |m| {
                    assert!(!m.error);
                    s1.lock().unwrap().push(Seen::Stdout(m.line, m.timestamp));
                })
                .on_stderr(move |m| {
                    assert!(m.error);
                    s2.lock().unwrap().push(Seen::Stderr(m.line, m.timestamp));
                })
                .on_result(move |r| s3.lock().unwrap().push(Seen::Result(r.is_main_result)))
                .on_error(move |e| s4.lock().unwrap().push(Seen::Error(e.name))),
        )
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            Seen::Stdout("hello\n".into(), 1_732_960_000_000_000_000),
            Seen::Stderr("warning: careful\n".into(), 1_732_960_000_000_001_000),
            Seen::Result(false),
            Seen::Stdout("world\n".into(), 1_732_960_000_000_000_002),
            Seen::Result(true),
            Seen::Error("ZeroDivisionError".into()),
        ]
    );
    assert_eq!(
        execution.logs,
        Logs {
            stdout: vec!["hello\n".into(), "world\n".into()],
            stderr: vec!["warning: careful\n".into()],
        }
    );
    assert_eq!(execution.results.len(), 2);
    assert_eq!(execution.results[0].png.as_deref(), Some(PNG));
    assert_eq!(execution.results[0].formats(), ["text", "png"]);
    assert_eq!(execution.text(), Some("2"));
    assert_eq!(
        execution.error,
        Some(ExecutionError {
            name: "ZeroDivisionError".into(),
            value: "division by zero".into(),
            traceback: TRACEBACK.into(),
        })
    );
    assert_eq!(execution.execution_count, Some(7));

    let [request] = &server.requests()[..] else {
        panic!("{:?}", server.requests())
    };
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/execute");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("e2b-sandbox-id"), Some("debug_sandbox_id"));
    assert_eq!(request.header("e2b-sandbox-port"), Some("49999"));
    // Debug mode: no envd token, no traffic token.
    assert_eq!(request.header("x-access-token"), None);
    assert_eq!(request.header("e2b-traffic-access-token"), None);
    assert!(
        request
            .header("user-agent")
            .unwrap()
            .starts_with("e2b-rust-sdk/")
    );
    assert_eq!(
        request.json(),
        json!({"code": "print('hello'); 1 + 1", "context_id": null, "language": null, "env_vars": null})
    );
}

#[tokio::test]
async fn run_code_sends_language_context_and_envs() {
    let server = FakeServer::start([Reply::ok(ndjson(&[end()])), Reply::ok(ndjson(&[end()]))]);
    let sandbox = sandbox(&server).await;
    let execution = sandbox
        .run_code(
            "echo $A",
            RunCodeOptions::new()
                .language("bash")
                .env("A", "1")
                .envs([("B", "2")]),
        )
        .await
        .unwrap();
    assert_eq!(execution, Execution::default());
    sandbox
        .run_code("x", RunCodeOptions::new().context("ctx-1"))
        .await
        .unwrap();
    let requests = server.requests();
    assert_eq!(
        requests[0].json(),
        json!({"code": "echo $A", "context_id": null, "language": "bash", "env_vars": {"A": "1", "B": "2"}})
    );
    assert_eq!(
        requests[1].json(),
        json!({"code": "x", "context_id": "ctx-1", "language": null, "env_vars": null})
    );

    let err = sandbox
        .run_code(
            "x",
            RunCodeOptions::new().language("python").context("ctx-1"),
        )
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument());
    assert_eq!(
        err.to_string(),
        "You can provide context or language, but not both at the same time."
    );
    assert_eq!(server.requests().len(), 2, "nothing sent");
}

#[tokio::test]
async fn error_statuses_are_classified() {
    let server = FakeServer::start([
        Reply::status(404, "Context ctx-9 not found"),
        Reply::status(502, "The sandbox is not running"),
        Reply::status(500, "kernel manager failed\n"),
        Reply::status(401, ""),
    ]);
    let sandbox = sandbox(&server).await;
    let run = || sandbox.run_code("x", RunCodeOptions::new().context("ctx-9"));
    let err = run().await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), "Context ctx-9 not found");
    assert_eq!(err.http_status(), Some(404));
    let err = run().await.unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(
        err.to_string(),
        "The sandbox is not running: This error is likely due to sandbox timeout. You can modify \
         the sandbox timeout by passing 'timeout' when starting the sandbox or calling \
         '.set_timeout' on the sandbox with the desired timeout."
    );
    let err = run().await.unwrap_err();
    assert!(err.is_sandbox());
    assert_eq!(
        err.to_string(),
        "500 Internal Server Error: kernel manager failed"
    );
    assert_eq!(err.http_status(), Some(500));
    let err = run().await.unwrap_err();
    assert_eq!(err.to_string(), "401 Unauthorized");
}

#[tokio::test]
async fn an_answer_without_end_of_execution_is_an_error() {
    let server = FakeServer::start([
        Reply::ok(ndjson(&[
            json!({"type": "stdout", "text": "partial", "timestamp": 1}),
        ])),
        Reply::ok("{\"type\": \"stdout\"\n"),
    ]);
    let sandbox = sandbox(&server).await;
    let err = sandbox
        .run_code("x", RunCodeOptions::new())
        .await
        .unwrap_err();
    assert!(err.is_sandbox());
    assert_eq!(
        err.to_string(),
        "the code interpreter's answer ended before its end_of_execution event: the server or \
         the context's kernel stopped during the run"
    );
    let err = sandbox
        .run_code("x", RunCodeOptions::new())
        .await
        .unwrap_err();
    assert!(err.is_sandbox());
    assert!(
        err.to_string()
            .starts_with("the code interpreter sent a malformed line: not JSON ("),
        "{err}"
    );
}

#[tokio::test]
async fn the_execution_timeout_closes_the_run() {
    let stall = Duration::from_secs(30);
    let server = FakeServer::start([
        Reply::chunks(vec![
            (
                Duration::ZERO,
                ndjson(&[json!({"type": "stdout", "text": "started\n"})]),
            ),
            (stall, ndjson(&[end()])),
        ]),
        Reply::chunks(vec![
            (
                Duration::ZERO,
                ndjson(&[json!({"type": "stdout", "text": "a\n"})]),
            ),
            (Duration::from_millis(700), ndjson(&[end()])),
        ]),
    ]);
    let sandbox = sandbox(&server).await;
    let started = Instant::now();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    let err = sandbox
        .run_code(
            "import time; time.sleep(30)",
            RunCodeOptions::new()
                .timeout(Duration::from_millis(400))
                .on_stdout(move |m| seen.lock().unwrap().push(m.line)),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(
        err.to_string(),
        "Execution timed out — the 'timeout' option can be used to increase this timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(*lines.lock().unwrap(), ["started\n"]);
    // The server sees the connection go, which is its cue to interrupt the kernel.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.disconnected() {
        assert!(
            Instant::now() < deadline,
            "the server never saw the client go"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Zero is no limit.
    let execution = sandbox
        .run_code("x", RunCodeOptions::new().timeout(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(execution.logs.stdout, ["a\n"]);
}

#[tokio::test]
async fn the_request_timeout_bounds_the_wait_for_the_answer() {
    let slow = Reply {
        head_delay: Duration::from_secs(3),
        ..Reply::ok(ndjson(&[end()]))
    };
    let server = FakeServer::start([slow.clone(), slow]);
    let sandbox = sandbox(&server).await;
    let err = sandbox
        .run_code(
            "x",
            RunCodeOptions::new().request_timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(
        err.to_string(),
        "Request timed out — the 'request_timeout' option can be used to increase this timeout"
    );
    let err = sandbox
        .create_code_context(
            CreateCodeContextOptions::new().request_timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert!(err.to_string().starts_with("Request timed out"));
}

#[tokio::test]
async fn contexts_are_created_listed_removed_and_restarted() {
    let context = json!({"id": "0b6c", "language": "bash", "cwd": "/tmp"});
    let server = FakeServer::start([
        Reply::ok(context.to_string()),
        Reply::ok(json!({"id": "1", "language": "python", "cwd": "/home/user"}).to_string()),
        Reply::ok(
            json!([context, {"id": "1", "language": "python", "cwd": "/home/user"}]).to_string(),
        ),
        Reply::status(204, ""),
        Reply::ok(""),
        Reply::status(404, "Context a/b not found"),
        Reply::ok("not json"),
    ]);
    let sandbox = sandbox(&server).await;
    let created = sandbox
        .create_code_context(CreateCodeContextOptions::new().language("bash").cwd("/tmp"))
        .await
        .unwrap();
    assert_eq!(
        created,
        e2b_code_interpreter::Context {
            id: "0b6c".into(),
            language: "bash".into(),
            cwd: "/tmp".into()
        }
    );
    sandbox
        .create_code_context(CreateCodeContextOptions::new())
        .await
        .unwrap();
    let listed = sandbox.list_code_contexts().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], created);
    sandbox.remove_code_context(&created).await.unwrap();
    sandbox.restart_code_context("0b6c").await.unwrap();
    let err = sandbox.remove_code_context("a/b").await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), "Context a/b not found");
    let err = sandbox.list_code_contexts().await.unwrap_err();
    assert!(err.is_sandbox());
    assert!(
        err.to_string()
            .starts_with("GET /contexts answered with unexpected JSON ("),
        "{err}"
    );

    let requests = server.requests();
    let summary: Vec<(String, String)> = requests
        .iter()
        .map(|r| (r.method.to_string(), r.path.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("POST", "/contexts"),
            ("POST", "/contexts"),
            ("GET", "/contexts"),
            ("DELETE", "/contexts/0b6c"),
            ("POST", "/contexts/0b6c/restart"),
            ("DELETE", "/contexts/a%2Fb"),
            ("GET", "/contexts"),
        ]
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
    );
    assert_eq!(
        requests[0].json(),
        json!({"language": "bash", "cwd": "/tmp"})
    );
    assert_eq!(requests[1].json(), json!({}));
    for request in &requests {
        assert_eq!(request.header("e2b-sandbox-id"), Some("debug_sandbox_id"));
        assert_eq!(request.header("e2b-sandbox-port"), Some("49999"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("x-access-token"), None);
    }
    assert!(requests[2].body.is_empty());
}

#[tokio::test]
async fn urls_follow_the_configuration() {
    let server = FakeServer::start([]);
    let local = sandbox(&server).await;
    assert_eq!(local.jupyter_url(), server.base);
    let debug = Sandbox::builder()
        .config(e2b::ConnectionConfig::new().with_debug(true))
        .create()
        .await
        .unwrap();
    assert_eq!(debug.jupyter_url(), "http://localhost:49999");
    // Every e2b::Sandbox method is reachable.
    assert_eq!(debug.sandbox_id(), "debug_sandbox_id");
    assert_eq!(debug.sandbox().get_host(49999), "localhost:49999");
}

#[tokio::test]
async fn a_secured_sandbox_sends_its_tokens_as_the_official_sdks_do() {
    let created = json!({
        "sandboxID": "isb1", "clientID": "local", "templateID": "code-interpreter-v1",
        "envdVersion": "0.4.0", "envdAccessToken": "envd-secret",
        "trafficAccessToken": "traffic-secret", "domain": null
    });
    let server = FakeServer::start([
        Reply::status(201, created.to_string()),
        Reply::ok(ndjson(&[end()])),
        Reply::ok(json!({"id": "c", "language": "python", "cwd": "/home/user"}).to_string()),
        Reply::ok("[]"),
        Reply::ok(""),
        Reply::ok(""),
    ]);
    let config = e2b::ConnectionConfig::new()
        .with_api_url(&server.base)
        .with_sandbox_url(&server.base)
        .with_api_key("e2b_test_key");
    let sandbox = Sandbox::builder().config(config).create().await.unwrap();
    assert_eq!(sandbox.sandbox_id(), "isb1");
    sandbox.run_code("1", RunCodeOptions::new()).await.unwrap();
    sandbox
        .create_code_context(CreateCodeContextOptions::new())
        .await
        .unwrap();
    sandbox.list_code_contexts().await.unwrap();
    sandbox.restart_code_context("c").await.unwrap();
    sandbox.remove_code_context("c").await.unwrap();

    let requests = server.requests();
    assert_eq!(requests[0].path, "/v2/sandboxes");
    assert_eq!(requests[0].json()["templateID"], "code-interpreter-v1");
    for request in &requests[1..] {
        assert_eq!(request.header("e2b-sandbox-id"), Some("isb1"));
        assert_eq!(request.header("e2b-sandbox-port"), Some("49999"));
        assert_eq!(
            request.header("e2b-traffic-access-token"),
            Some("traffic-secret")
        );
        assert_eq!(
            request.header("x-api-key"),
            None,
            "the API key stays with the control plane"
        );
    }
    // envd's token goes with /execute only, as the official SDKs send it.
    assert_eq!(requests[1].path, "/execute");
    assert_eq!(requests[1].header("x-access-token"), Some("envd-secret"));
    for request in &requests[2..] {
        assert_eq!(request.header("x-access-token"), None, "{}", request.path);
    }
    assert!(!format!("{sandbox:?}").contains("secret"));
}
