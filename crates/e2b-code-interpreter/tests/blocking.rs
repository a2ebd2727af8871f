//! The blocking twin against the scripted server (tests/support): the same requests and
//! results as the async API, callbacks on the runtime thread, and a loud failure inside an
//! async runtime.

mod support;

use std::sync::{Arc, Mutex};

use e2b_code_interpreter::blocking::Sandbox;
use e2b_code_interpreter::{CreateCodeContextOptions, RunCodeOptions};
use serde_json::json;
use support::{FakeServer, Reply, fixture};

fn sandbox(server: &FakeServer) -> Sandbox {
    Sandbox::builder().config(server.config()).create().unwrap()
}

#[test]
fn run_code_and_contexts() {
    let server = FakeServer::start([
        Reply::ok(fixture("execute.ndjson")),
        Reply::ok(json!({"id": "c1", "language": "python", "cwd": "/home/user"}).to_string()),
        Reply::ok(json!([{"id": "c1", "language": "python", "cwd": "/home/user"}]).to_string()),
        Reply::ok(""),
        Reply::status(404, "no such context"),
    ]);
    let sandbox = sandbox(&server);
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let seen = stdout.clone();
    let execution = sandbox
        .run_code(
            "1 + 1",
            RunCodeOptions::new().on_stdout(move |m| seen.lock().unwrap().push(m.line)),
        )
        .unwrap();
    assert_eq!(execution.text(), Some("2"));
    assert_eq!(execution.execution_count, Some(7));
    assert_eq!(execution.error.unwrap().name, "ZeroDivisionError");
    assert_eq!(*stdout.lock().unwrap(), ["hello\n", "world\n"]);

    let context = sandbox
        .create_code_context(CreateCodeContextOptions::new())
        .unwrap();
    assert_eq!(context.id, "c1");
    assert_eq!(
        sandbox.list_code_contexts().unwrap(),
        std::slice::from_ref(&context)
    );
    sandbox.restart_code_context(&context).unwrap();
    let err = sandbox.remove_code_context(&context).unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), "no such context");

    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/execute",
            "/contexts",
            "/contexts",
            "/contexts/c1/restart",
            "/contexts/c1"
        ]
    );
    // Every e2b::blocking::Sandbox method is reachable, and the async twin shares it.
    assert_eq!(sandbox.sandbox_id(), "debug_sandbox_id");
    assert_eq!(sandbox.as_async().jupyter_url(), server.base);
}

#[tokio::test]
#[should_panic(expected = "Cannot block the current thread from within a runtime")]
async fn blocking_inside_a_runtime_panics() {
    let server = FakeServer::start([]);
    let _ = sandbox(&server);
}
