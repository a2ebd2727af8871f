//! Templates end to end through the embedded local E2B host (`e2b::local`): a multi-step
//! build checked from inside a sandbox, the cache, a failing step, tags and aliases, and a
//! start command with a ready command. Needs root (builds and sandboxes use namespaces), so
//! every test is ignored unless asked for:
//! `cargo test -p e2b --all-features --test template -- --ignored` as root.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2b::local::LocalServer;
use e2b::template::{BuildOptions, CopyOptions, LogEntry, Template, wait_for_file};
use e2b::{ConnectionConfig, RunOptions, Sandbox};

/// The process-wide embedded host's configuration.
fn local() -> ConnectionConfig {
    LocalServer::shared().expect("local server").config()
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{:08x}",
        nanos ^ std::process::id().rotate_left(16)
    )
}

/// A build context with a script and a data file.
fn context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hello.sh"),
        "#!/bin/sh\necho hello from $1\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/a.txt"), "alpha\n").unwrap();
    dir
}

fn multi_step(ctx: &std::path::Path) -> Template {
    Template::new()
        .file_context_path(ctx)
        .from_template("base")
        .copy_with(
            "hello.sh",
            "/usr/local/bin/hello.sh",
            CopyOptions {
                user: Some("root".into()),
                mode: Some(0o755),
                ..Default::default()
            },
        )
        .copy("data", "/opt/data")
        .set_envs([("GREETING", "from-template")])
        .set_workdir("/opt/data")
        .run_cmd_as("hello.sh build > /opt/built.txt", "root")
        .set_user("user")
}

async fn run(sandbox: &Sandbox, command: &str) -> String {
    sandbox
        .commands()
        .run(command, RunOptions::new())
        .await
        .unwrap()
        .stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: builds and sandboxes use namespaces"]
async fn a_multi_step_build_is_what_its_sandboxes_see() {
    let config = local();
    let ctx = context();
    let name = unique("multi-step");
    let logs: Arc<Mutex<Vec<LogEntry>>> = Arc::default();
    let sink = logs.clone();
    let info = multi_step(ctx.path())
        .build(
            &name,
            BuildOptions::new()
                .config(config.clone())
                .on_build_logs(move |entry| sink.lock().unwrap().push(entry)),
        )
        .await
        .unwrap();
    assert_eq!(info.name, name);
    assert!(
        logs.lock()
            .unwrap()
            .iter()
            .any(|l| l.message == "Uploaded 'hello.sh'"),
        "{:?}",
        logs.lock().unwrap()
    );
    assert!(Template::exists(&config, &name).await.unwrap());

    let sandbox = Sandbox::builder()
        .config(config.clone())
        .template(&name)
        .timeout(Duration::from_secs(120))
        .create()
        .await
        .unwrap();
    assert_eq!(
        run(&sandbox, "stat -c '%a %U' /usr/local/bin/hello.sh").await,
        "755 root\n"
    );
    assert_eq!(run(&sandbox, "cat /opt/data/a.txt").await, "alpha\n");
    assert_eq!(
        run(&sandbox, "cat /opt/built.txt").await,
        "hello from build\n"
    );
    assert_eq!(run(&sandbox, "echo $GREETING").await, "from-template\n");
    assert_eq!(run(&sandbox, "pwd").await, "/opt/data\n");
    assert_eq!(run(&sandbox, "whoami").await, "user\n");
    sandbox.kill().await.unwrap();

    // An identical second build uploads nothing.
    let logs: Arc<Mutex<Vec<LogEntry>>> = Arc::default();
    let sink = logs.clone();
    multi_step(ctx.path())
        .build(
            &name,
            BuildOptions::new()
                .config(config.clone())
                .on_build_logs(move |entry| sink.lock().unwrap().push(entry)),
        )
        .await
        .unwrap();
    let messages: Vec<String> = logs
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.message.clone())
        .collect();
    assert!(
        messages.contains(&"Skipping upload of 'hello.sh', already cached".to_owned()),
        "{messages:?}"
    );
    assert!(
        !messages.iter().any(|m| m.starts_with("Uploaded")),
        "{messages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: builds and sandboxes use namespaces"]
async fn a_failing_step_fails_the_build_and_names_it() {
    let config = local();
    let err = Template::new()
        .from_template("base")
        .run_cmd("true")
        .run_cmd("echo about to fail >&2; exit 3")
        .build(&unique("failing"), BuildOptions::new().config(config))
        .await
        .unwrap_err();
    assert!(err.is_build(), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with("build failed in step 2 (RUN echo about to fail >&2; exit 3)"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: builds and sandboxes use namespaces"]
async fn tags_are_assigned_listed_and_removed() {
    let config = local();
    let name = unique("tagged");
    let info = Template::new()
        .from_template("base")
        .run_cmd("echo v1 > /tmp/version")
        .build(
            &format!("{name}:v1"),
            BuildOptions::new().config(config.clone()),
        )
        .await
        .unwrap();
    assert_eq!(info.tags, ["v1"]);
    let assigned = Template::assign_tags(&config, &format!("{name}:v1"), ["stable"])
        .await
        .unwrap();
    assert_eq!(assigned.tags, ["stable"]);
    let tags: Vec<String> = Template::get_tags(&config, &info.template_id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.tag)
        .collect();
    assert!(
        tags.contains(&"v1".to_owned()) && tags.contains(&"stable".to_owned()),
        "{tags:?}"
    );
    Template::remove_tags(&config, &name, ["stable"])
        .await
        .unwrap();
    let tags: Vec<String> = Template::get_tags(&config, &info.template_id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.tag)
        .collect();
    assert!(!tags.contains(&"stable".to_owned()), "{tags:?}");
    assert!(
        !Template::exists(&config, &unique("never-built"))
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: builds and sandboxes use namespaces"]
async fn a_start_command_runs_and_create_waits_for_ready() {
    let config = local();
    let name = unique("started");
    Template::new()
        .from_template("base")
        .set_start_cmd(
            "sh -c 'sleep 1; echo started > /tmp/ready; sleep 600'",
            wait_for_file("/tmp/ready"),
        )
        .build(&name, BuildOptions::new().config(config.clone()))
        .await
        .unwrap();
    let sandbox = Sandbox::builder()
        .config(config)
        .template(&name)
        .timeout(Duration::from_secs(60))
        .create()
        .await
        .unwrap();
    // Create returned after the ready command succeeded, so the file is there.
    assert_eq!(run(&sandbox, "cat /tmp/ready").await, "started\n");
    sandbox.kill().await.unwrap();
}

#[test]
#[ignore = "needs root: builds and sandboxes use namespaces"]
fn the_blocking_twin_builds_and_starts_a_sandbox() {
    let config = local();
    let name = unique("blocking");
    let info = e2b::blocking::Template::new()
        .from_template("base")
        .set_envs([("FROM_BLOCKING", "yes")])
        .build(&name, BuildOptions::new().config(config.clone()))
        .unwrap();
    assert!(e2b::blocking::Template::exists(&config, &info.name).unwrap());
    let sandbox = e2b::blocking::Sandbox::builder()
        .config(config)
        .template(&name)
        .timeout(Duration::from_secs(60))
        .create()
        .unwrap();
    let result = sandbox
        .commands()
        .run("echo $FROM_BLOCKING", RunOptions::new())
        .unwrap();
    assert_eq!(result.stdout, "yes\n");
    sandbox.kill().unwrap();
}

/// The official Python SDK 2.63 builds a template; the same definition built from Rust
/// uploads nothing and reruns no step, because both SDKs send the same steps and files
/// hashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and E2B_COMPAT_PYTHON=<a python with e2b==2.63.0>"]
async fn python_and_rust_share_the_build_cache() {
    let python = std::env::var("E2B_COMPAT_PYTHON")
        .expect("E2B_COMPAT_PYTHON names a python with e2b==2.63.0 installed");
    let config = local();
    let ctx = context();
    let script = r#"
import os, sys
from e2b import Template
t = (
    Template(file_context_path=sys.argv[1])
    .from_template("base")
    .copy("data", "/opt/data")
    .set_envs({"K": "v"})
    .run_cmd("cat /opt/data/a.txt > /tmp/copied")
)
Template.build(t, sys.argv[2])
"#;
    let output = std::process::Command::new(&python)
        .args(["-c", script])
        .arg(ctx.path())
        .arg(unique("from-python"))
        .env("E2B_API_URL", config.api_url())
        .env("E2B_API_KEY", config.api_key().unwrap())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let logs: Arc<Mutex<Vec<LogEntry>>> = Arc::default();
    let sink = logs.clone();
    Template::new()
        .file_context_path(ctx.path())
        .from_template("base")
        .copy("data", "/opt/data")
        .set_envs([("K", "v")])
        .run_cmd("cat /opt/data/a.txt > /tmp/copied")
        .build(
            &unique("from-rust"),
            BuildOptions::new()
                .config(config)
                .on_build_logs(move |entry| sink.lock().unwrap().push(entry)),
        )
        .await
        .unwrap();
    let messages: Vec<String> = logs
        .lock()
        .unwrap()
        .iter()
        .map(|l| l.message.clone())
        .collect();
    assert!(
        messages.contains(&"Skipping upload of 'data', already cached".to_owned()),
        "{messages:?}"
    );
    let cached = messages.iter().filter(|m| m.starts_with("CACHED")).count();
    assert_eq!(
        cached, 2,
        "the COPY and RUN layers come from the cache: {messages:?}"
    );
}
