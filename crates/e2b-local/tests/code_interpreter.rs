//! The built-in `code-interpreter-v1` template and the code-interpreter server in its
//! sandboxes, reached on port 49999 through e2b-local's router (by `E2b-Sandbox-Port` and by
//! `49999-<id>.<domain>`), with HTTP and NDJSON as E2B's SDKs speak them. Needs root,
//! Debian's package archive (the `debian` template under it) and PyPI (its packages);
//! `scripts/test` runs it when both answer, and the test skips, saying so, when pip cannot
//! reach PyPI.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestServer, err, start_with};

const TEMPLATE: &str = "code-interpreter-v1";

/// The host's networking for sandboxes: the template's build steps install from PyPI.
fn with_network(b: e2b_local::ServerBuilder) -> e2b_local::ServerBuilder {
    b.network(e2b_local::network::NetworkOptions::from_host().unwrap())
}

/// Whether pip reaches PyPI (the template's packages come from there).
fn pypi_reachable() -> bool {
    let dir = tempfile::tempdir().unwrap();
    std::process::Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(dir.path())
        .arg("e2b-charts==1.0.0")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Creates a code-interpreter sandbox, waiting while the template builds; the 201 body.
async fn create_when_built(t: &TestServer, body: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(2400);
    loop {
        let r = t.post("/sandboxes", body).await;
        if r.status == StatusCode::CREATED {
            return r.json();
        }
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
        assert!(
            Instant::now() < deadline,
            "{TEMPLATE} was not built in 40 minutes"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

struct Sandbox<'a> {
    t: &'a TestServer,
    id: String,
    token: Option<String>,
}

impl Sandbox<'_> {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self
            .t
            .http
            .request(method, format!("{}{path}", self.t.url))
            .header("E2b-Sandbox-Id", &self.id)
            .header("E2b-Sandbox-Port", "49999")
            .timeout(Duration::from_secs(180));
        if let Some(token) = &self.token {
            req = req.header("X-Access-Token", token);
        }
        req
    }

    /// `POST /execute`: status and events, keepalives left out.
    async fn execute(&self, body: Value) -> (StatusCode, Vec<Value>) {
        let res = self
            .request(reqwest::Method::POST, "/execute")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        if status != StatusCode::OK {
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
        assert_eq!(status, StatusCode::OK, "{events:?}");
        assert_eq!(events.last().unwrap(), &json!({"type": "end_of_execution"}));
        events
    }
}

fn main_result(events: &[Value]) -> &Value {
    events
        .iter()
        .find(|e| e["type"] == "result" && e["is_main_result"] == true)
        .unwrap_or_else(|| panic!("no main result in {events:?}"))
}

fn stdout(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["type"] == "stdout")
        .map(|e| e["text"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, Debian's package archive and PyPI (scripts/test runs it when they answer)"]
async fn code_interpreter_template_is_built_on_first_use_and_serves_run_code() {
    if !pypi_reachable() {
        eprintln!(
            "skipping: pip cannot reach PyPI, which the {TEMPLATE} template's packages come from"
        );
        return;
    }
    let t = start_with(tempfile::tempdir().unwrap(), with_network).await;
    let body =
        r#"{"templateID":"code-interpreter-v1","timeout":600,"envVars":{"FROM_CREATE":"yes"}}"#;
    let first = t.post("/sandboxes", body).await;
    assert_eq!(
        (first.status, first.json()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            err(
                503,
                "template 'code-interpreter-v1' is being built from Debian's package archive (a few minutes on first use); retry in a moment"
            )
        )
    );
    let sb = create_when_built(&t, body).await;
    let s = Sandbox {
        t: &t,
        id: sb["sandboxID"].as_str().unwrap().to_owned(),
        token: sb["envdAccessToken"].as_str().map(str::to_owned),
    };

    // 1+1 through the router by header.
    let events = s.run("1+1").await;
    assert_eq!(
        main_result(&events),
        &json!({"type": "result", "text": "2", "extra": {}, "is_main_result": true})
    );
    // Kernels run as `user` in its home, with the sandbox's env vars.
    let events = s
        .run("import getpass, os\nprint(getpass.getuser(), os.getcwd(), os.environ.get('FROM_CREATE'))")
        .await;
    assert_eq!(stdout(&events), "user /home/user yes\n");
    // The template's formatters: a DataFrame's columns, a figure's chart and PNG.
    let events = s
        .run("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})")
        .await;
    let frame = main_result(&events);
    assert_eq!(frame["data"], json!({"a": [1, 2], "b": ["x", "y"]}));
    assert!(
        frame["html"].as_str().unwrap().contains("<table"),
        "{frame}"
    );
    let events = s
        .run("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.title('t')\nplt.show()")
        .await;
    let figure = events.iter().find(|e| e["type"] == "result").unwrap();
    assert_eq!(figure["chart"]["type"], "line", "{figure}");
    assert_eq!(figure["chart"]["title"], "t", "{figure}");
    let png = base64::engine::general_purpose::STANDARD
        .decode(figure["png"].as_str().unwrap().trim())
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    // Plain tracebacks.
    let events = s.run("1/0").await;
    let error = events.iter().find(|e| e["type"] == "error").unwrap();
    assert_eq!(
        (error["name"].as_str(), error["value"].as_str()),
        (Some("ZeroDivisionError"), Some("division by zero"))
    );
    assert!(
        !error["traceback"].as_str().unwrap().contains('\u{1b}'),
        "{error}"
    );
    // The default bash context.
    let (status, events) = s
        .execute(json!({"code": "echo $((1 + 2)) $USER", "language": "bash"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{events:?}");
    assert_eq!(stdout(&events), "3 user\n");
    // An unknown context: E2B's 404 and body.
    let (status, events) = s.execute(json!({"code": "1", "context_id": "nope"})).await;
    assert_eq!(
        (status, events),
        (StatusCode::NOT_FOUND, vec![json!("Context nope not found")])
    );
    // `/contexts` lists the two default contexts.
    let contexts: Vec<Value> = s
        .request(reqwest::Method::GET, "/contexts")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut languages: Vec<&str> = contexts
        .iter()
        .map(|c| c["language"].as_str().unwrap())
        .collect();
    languages.sort_unstable();
    assert_eq!(languages, ["bash", "python"]);
    assert!(
        contexts.iter().all(|c| c["cwd"] == "/home/user"),
        "{contexts:?}"
    );

    // The same server through `49999-<id>.<domain>`.
    let domain = t.server().domain().to_owned();
    let health = t
        .http
        .get(format!("{}/health", t.url))
        .header("Host", format!("49999-{}.{domain}", s.id))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.unwrap(), "\"OK\"");
    let id = s.id.clone();
    t.kill(&id).await;

    // The built template is kept: a restarted server creates from it at once.
    let TestServer { server, dir, .. } = t;
    server.unwrap().shutdown().await;
    let t = start_with(dir, with_network).await;
    let r = t.post("/sandboxes", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let sb = r.json();
    let s = Sandbox {
        t: &t,
        id: sb["sandboxID"].as_str().unwrap().to_owned(),
        token: sb["envdAccessToken"].as_str().map(str::to_owned),
    };
    assert_eq!(main_result(&s.run("6*7").await)["text"], "42");
    t.kill(&s.id.clone()).await;
    t.shutdown().await;
}
