//! The real server against real Jupyter kernels on the host: ipykernel and bash_kernel in a
//! virtualenv under `target/ci-venv` (made with `python3 -m venv` and `pip install` on first
//! run; every test is skipped, saying so, when that cannot be done, e.g. without PyPI).
//! HTTP and NDJSON are read directly, as E2B's SDKs do.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use code_interpreter_server::{Config, Server};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

const PACKAGES: &[&str] = &["ipykernel", "bash_kernel", "matplotlib", "pandas"];

/// The virtualenv with the kernels, made once; `None` (after saying why) when it cannot be.
fn venv() -> Option<PathBuf> {
    static READY: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);
    let mut ready = READY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let result = ready.get_or_insert_with(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ci-venv");
        let python = dir.join("bin/python");
        let has_all = || {
            std::process::Command::new(&python)
                .args(["-c", "import ipykernel, bash_kernel, matplotlib, pandas"])
                .output()
                .is_ok_and(|o| o.status.success())
                && dir.join("share/jupyter/kernels/bash/kernel.json").is_file()
        };
        if has_all() {
            return Ok(dir);
        }
        let run = |cmd: &mut std::process::Command| -> Result<(), String> {
            let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{cmd:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                ))
            }
        };
        run(std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir))?;
        run(std::process::Command::new(&python)
            .args(["-m", "pip", "install", "-q"])
            .args(PACKAGES))
        .map_err(|e| format!("pip cannot install the kernels (is PyPI reachable?): {e}"))?;
        run(std::process::Command::new(&python).args([
            "-m",
            "bash_kernel.install",
            "--sys-prefix",
        ]))?;
        Ok(dir)
    });
    match result {
        Ok(dir) => Some(dir.clone()),
        Err(e) => {
            eprintln!("skipping: no Jupyter kernels on this host: {e}");
            None
        }
    }
}

struct Harness {
    base: String,
    http: reqwest::Client,
    cwd: tempfile::TempDir,
    _server: Server,
}

async fn start_with(tune: impl FnOnce(&mut Config)) -> Option<Harness> {
    let venv = venv()?;
    // reqwest is built without a default TLS provider in this workspace.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cwd = tempfile::tempdir().unwrap();
    // Plain tracebacks, as the template's IPython configuration (and E2B's) makes them.
    let profile = cwd.path().join(".ipython/profile_default");
    std::fs::create_dir_all(&profile).unwrap();
    std::fs::write(
        profile.join("ipython_kernel_config.py"),
        "c.InteractiveShell.colors = 'NoColor'\n",
    )
    .unwrap();
    let mut config = Config {
        kernel_dirs: vec![venv.join("share/jupyter/kernels")],
        default_cwd: cwd.path().to_owned(),
        runtime_dir: cwd.path().join(".run"),
        ..Config::default()
    };
    config
        .kernel_env
        .push(("HOME".into(), cwd.path().to_string_lossy().into_owned()));
    config.kernel_env.push((
        "MPLCONFIGDIR".into(),
        cwd.path().join(".mpl").to_string_lossy().into_owned(),
    ));
    tune(&mut config);
    let server = Server::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = server.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Some(Harness {
        base,
        http: reqwest::Client::new(),
        cwd,
        _server: server,
    })
}

async fn start() -> Option<Harness> {
    start_with(|_| {}).await
}

impl Harness {
    /// `POST /execute`: the status and the event lines, keepalives left out.
    async fn execute(&self, body: Value) -> (u16, Vec<Value>) {
        let res = self
            .http
            .post(format!("{}/execute", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        if status != 200 {
            return (status, vec![Value::String(text)]);
        }
        let events = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|e| e["type"] != "keepalive")
            .collect();
        (status, events)
    }

    async fn run(&self, code: &str) -> Vec<Value> {
        let (status, events) = self.execute(json!({"code": code})).await;
        assert_eq!(status, 200, "{events:?}");
        events
    }

    async fn run_in(&self, context: &str, code: &str) -> Vec<Value> {
        let (status, events) = self
            .execute(json!({"code": code, "context_id": context}))
            .await;
        assert_eq!(status, 200, "{events:?}");
        events
    }

    async fn create_context(&self, body: Value) -> (u16, Value) {
        let res = self
            .http
            .post(format!("{}/contexts", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn context(&self, language: &str) -> String {
        let (status, body) = self.create_context(json!({"language": language})).await;
        assert_eq!(status, 200, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

fn main_result(events: &[Value]) -> &Value {
    of_type(events, "result")
        .into_iter()
        .find(|r| r["is_main_result"] == true)
        .unwrap_or_else(|| panic!("no main result in {events:?}"))
}

fn error_of(events: &[Value]) -> &Value {
    of_type(events, "error")
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no error in {events:?}"))
}

#[tokio::test]
async fn one_plus_one_is_the_main_result_and_the_stream_ends_with_end_of_execution() {
    let Some(h) = start().await else { return };
    let events = h.run("1+1").await;
    assert_eq!(
        events[0],
        json!({"type": "number_of_executions", "execution_count": 1})
    );
    assert_eq!(
        events[1],
        json!({"type": "result", "text": "2", "extra": {}, "is_main_result": true})
    );
    assert_eq!(events.last().unwrap(), &json!({"type": "end_of_execution"}));
    assert_eq!(events.len(), 3, "{events:?}");
    let health = h
        .http
        .get(format!("{}/health", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "\"OK\"");
}

#[tokio::test]
async fn stdout_and_stderr_stream_in_order_as_they_come() {
    let Some(h) = start().await else { return };
    let code = "import sys, time\nprint('one', flush=True)\ntime.sleep(0.3)\nprint('two', file=sys.stderr, flush=True)\ntime.sleep(0.3)\nprint('three', flush=True)\ntime.sleep(1)";
    h.run("0").await; // the kernel is up
    let started = Instant::now();
    let res = h
        .http
        .post(format!("{}/execute", h.base))
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    let mut stream = res.bytes_stream();
    let mut buf = Vec::new();
    let mut seen: Vec<(Value, Duration)> = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.unwrap());
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            seen.push((serde_json::from_slice(&line).unwrap(), started.elapsed()));
        }
    }
    let logs: Vec<(String, String)> = seen
        .iter()
        .filter(|(e, _)| e["type"] == "stdout" || e["type"] == "stderr")
        .map(|(e, _)| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        logs,
        [
            ("stdout", "one\n"),
            ("stderr", "two\n"),
            ("stdout", "three\n")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    let first = seen.iter().find(|(e, _)| e["type"] == "stdout").unwrap().1;
    let end = seen.last().unwrap();
    assert_eq!(end.0, json!({"type": "end_of_execution"}));
    // Streamed: the first line came well before the execution's last second.
    assert!(
        end.1 - first >= Duration::from_millis(1400),
        "first {first:?}, end {:?}",
        end.1
    );
    let stamp = seen.iter().find(|(e, _)| e["type"] == "stdout").unwrap().0["timestamp"].clone();
    assert!(
        stamp.as_str().is_some_and(|s| s.starts_with("20")),
        "{stamp}"
    );
}

#[tokio::test]
async fn state_is_kept_between_calls_and_contexts_are_isolated() {
    let Some(h) = start().await else { return };
    assert_eq!(main_result(&h.run("x = 41\nx").await)["text"], "41");
    assert_eq!(main_result(&h.run("x + 1").await)["text"], "42");
    let other = h.context("python").await;
    let events = h.run_in(&other, "x").await;
    assert_eq!(error_of(&events)["name"], "NameError");
    assert_eq!(error_of(&events)["value"], "name 'x' is not defined");
    // The default context still has it.
    assert_eq!(main_result(&h.run("x").await)["text"], "41");
}

#[tokio::test]
async fn a_matplotlib_figure_is_a_png_that_decodes() {
    let Some(h) = start().await else { return };
    let events = h
        .run("import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [4, 1, 9])\nplt.show()")
        .await;
    let png = of_type(&events, "result")
        .into_iter()
        .find_map(|r| r["png"].as_str())
        .unwrap_or_else(|| panic!("no png in {events:?}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png.trim())
        .unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert!(width > 100 && height > 100, "{width}x{height}");
}

#[tokio::test]
async fn a_dataframe_is_html_and_an_exception_has_name_value_and_traceback() {
    let Some(h) = start().await else { return };
    let events = h
        .run("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})")
        .await;
    let result = main_result(&events);
    let html = result["html"].as_str().unwrap();
    assert!(
        html.contains("<table") && html.contains("<th>a</th>"),
        "{html}"
    );
    assert!(
        result["text"].as_str().unwrap().contains("a  b"),
        "{result}"
    );

    let events = h.run("def f():\n    return 1 / 0\nf()").await;
    let error = error_of(&events);
    assert_eq!(error["name"], "ZeroDivisionError");
    assert_eq!(error["value"], "division by zero");
    let traceback = error["traceback"].as_str().unwrap();
    assert!(
        traceback.contains("ZeroDivisionError") && traceback.contains("return 1 / 0"),
        "{traceback}"
    );
    assert_eq!(of_type(&events, "error").len(), 1);
    assert_eq!(events.last().unwrap()["type"], "end_of_execution");
}

#[tokio::test]
async fn a_client_timeout_interrupts_the_kernel_and_the_next_call_works() {
    let Some(h) = start_with(|c| c.keepalive_interval = Duration::from_millis(200)).await else {
        return;
    };
    h.run("kept = 'yes'").await;
    let timed_out = h
        .http
        .post(format!("{}/execute", h.base))
        .timeout(Duration::from_secs(1))
        .json(&json!({"code": "import time\ntime.sleep(120)"}))
        .send()
        .await;
    let timed_out = match timed_out {
        Ok(res) => res.text().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(timed_out.is_err_and(|e| e.is_timeout()));
    let started = Instant::now();
    let events = h.run("kept").await;
    assert_eq!(main_result(&events)["text"], "yes");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn restart_clears_state_and_delete_removes_the_context() {
    let Some(h) = start().await else { return };
    let id = h.context("python").await;
    h.run_in(&id, "y = 5").await;
    let res = h
        .http
        .post(format!("{}/contexts/{id}/restart", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "null");
    assert_eq!(error_of(&h.run_in(&id, "y").await)["name"], "NameError");

    let list: Vec<Value> = h
        .http
        .get(format!("{}/contexts", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        list.contains(
            &json!({"id": id, "language": "python", "cwd": h.cwd.path().to_string_lossy()})
        ),
        "{list:?}"
    );
    let res = h
        .http
        .delete(format!("{}/contexts/{id}", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = h
        .http
        .delete(format!("{}/contexts/{id}", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.text().await.unwrap(), format!("Context {id} not found"));
    let list: Vec<Value> = h
        .http
        .get(format!("{}/contexts", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!list.iter().any(|c| c["id"] == id.as_str()), "{list:?}");
}

#[tokio::test]
async fn env_vars_apply_to_one_run_and_a_context_runs_in_its_cwd() {
    let Some(h) = start().await else { return };
    let (status, events) = h
        .execute(json!({"code": "import os; print(os.environ.get('FOO'))", "env_vars": {"FOO": "it's \"bar\""}}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(of_type(&events, "stdout")[0]["text"], "it's \"bar\"\n");
    assert_eq!(
        main_result(&h.run("import os; str(os.environ.get('FOO'))").await)["text"],
        "None"
    );

    let dir = h.cwd.path().join("work");
    std::fs::create_dir(&dir).unwrap();
    let (status, body) = h
        .create_context(json!({"cwd": dir, "language": "python"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cwd"], dir.to_string_lossy().as_ref());
    assert_eq!(body["language"], "python");
    let events = h
        .run_in(body["id"].as_str().unwrap(), "import os; os.getcwd()")
        .await;
    assert_eq!(main_result(&events)["text"], dir.to_string_lossy().as_ref());
}

#[tokio::test]
async fn bash_runs_in_its_default_context_with_env_vars() {
    let Some(h) = start().await else { return };
    let (status, events) = h
        .execute(json!({"code": "echo \"hi $NAME\"; X=1", "language": "bash", "env_vars": {"NAME": "o'k"}}))
        .await;
    assert_eq!(status, 200, "{events:?}");
    let out: String = of_type(&events, "stdout")
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(out, "hi o'k\n");
    let (_, events) = h
        .execute(json!({"code": "echo \"${X}-${NAME:-unset}\"", "language": "bash"}))
        .await;
    let out: String = of_type(&events, "stdout")
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(out, "1-unset\n");
    let list: Vec<Value> = h
        .http
        .get(format!("{}/contexts", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list.iter().filter(|c| c["language"] == "bash").count(),
        1,
        "{list:?}"
    );
}

#[tokio::test]
async fn a_kernel_killed_from_outside_is_an_error_event_and_the_context_comes_back() {
    let Some(h) = start().await else { return };
    let id = h.context("python").await;
    let pid = main_result(&h.run_in(&id, "import os; os.getpid()").await)["text"]
        .as_str()
        .unwrap()
        .parse::<i32>()
        .unwrap();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    });
    let events = h
        .run_in(
            &id,
            "import time\nprint('before', flush=True)\ntime.sleep(60)",
        )
        .await;
    killer.await.unwrap();
    let error = error_of(&events);
    assert_eq!(error["name"], "ContextRestarting");
    assert_eq!(
        error["value"],
        "the context's kernel was killed by signal 9 (SIGKILL) during the execution; it is restarted and its state is lost"
    );
    assert_eq!(events.last().unwrap()["type"], "end_of_execution");
    assert_eq!(main_result(&h.run_in(&id, "1+1").await)["text"], "2");
    // The default context was never touched.
    assert_eq!(main_result(&h.run("2+2").await)["text"], "4");
}

#[tokio::test]
async fn bad_requests_get_e2b_statuses_and_clear_messages() {
    let Some(h) = start_with(|c| c.max_event_bytes = 4096).await else {
        return;
    };
    let cases = [
        (json!({"code": "1", "context_id": "nope"}), 404, "Context nope not found".to_owned()),
        (
            json!({"code": "1", "context_id": "a", "language": "python"}),
            400,
            "Only one of context_id or language can be provided".to_owned(),
        ),
        (
            json!({"code": "1", "language": "cobol"}),
            400,
            "Unknown language 'cobol': no Jupyter kernel for it is installed (installed: bash, python)".to_owned(),
        ),
        (
            json!({"code": "1", "env_vars": {"1X": "y"}}),
            400,
            "env var name '1X' is not valid: use letters, digits and '_', not starting with a digit".to_owned(),
        ),
        (
            json!({"context_id": "x"}),
            422,
            "the request body is not a valid request: missing field `code` at line 1 column 18".to_owned(),
        ),
    ];
    for (body, status, message) in cases {
        assert_eq!(
            h.execute(body.clone()).await,
            (status, vec![Value::String(message)]),
            "{body}"
        );
    }
    let res = h
        .http
        .post(format!("{}/execute", h.base))
        .header("content-type", "application/json")
        .body(b"{\"code\": \"print('\xff')\"}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.text().await.unwrap(),
        "the request body is not valid UTF-8 (invalid byte at offset 17)"
    );
    let (status, body) = h.create_context(json!({"cwd": "/nonexistent/dir"})).await;
    assert_eq!(
        (status, body),
        (400, json!("cwd '/nonexistent/dir' is not a directory"))
    );

    // Output over the per-event limit, then the context keeps serving.
    let events = h.run("print('x' * 10000)").await;
    assert_eq!(error_of(&events)["name"], "OutputTooLarge");
    assert_eq!(main_result(&h.run("1+1").await)["text"], "2");
}
