//! Pause and resume benchmark of e2b-local (run as root, in release):
//!
//! ```text
//! cargo run --release -p bench --bin e2b-local-lifecycle-bench -- [ROUNDS]
//! ```
//!
//! Starts an in-process server and, round by round on one `autoResume` sandbox, measures:
//! * a command (`true` through envd's `process.Process/Start`, as `commands.run` sends it)
//!   to the running sandbox: the baseline;
//! * the same command to the sandbox paused with its memory: `autoResume` thaws it and
//!   serves the command; the difference to the baseline is what the resume adds;
//! * `POST /pause` keeping memory (the freezer) and `POST /pause {"memory": false}` (files
//!   only: saved, booted again, frozen), and the `connect` that resumes the latter.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bench::local_api::{Api, Created, pct, report};
use serde_json::{Value, json};

fn main() -> ExitCode {
    bench::local_api::run_main("e2b-local-lifecycle-bench", || {
        run(bench::local_api::arg(1, 30))
    })
}

/// A REST call that must answer `expected`; returns how long it took.
async fn timed(api: &Api, path: &str, body: &str, expected: u16) -> Result<Duration, String> {
    let t = Instant::now();
    let (s, answer) = api.call(http::Method::POST, path, body).await?;
    if s != expected {
        return Err(format!("{path}: {s}: {}", String::from_utf8_lossy(&answer)));
    }
    Ok(t.elapsed())
}

async fn command(api: &Api, sb: &Created) -> Result<Duration, String> {
    let t = Instant::now();
    api.run(sb, "true").await?;
    Ok(t.elapsed())
}

async fn run(rounds: usize) -> Result<(), String> {
    let dir = std::env::temp_dir().join("e2b-local-lifecycle-bench");
    let _ = std::fs::remove_dir_all(&dir);
    let server = e2b_local::Server::builder()
        .data_dir(&dir)
        .listen("127.0.0.1:0")
        .cgroup_parent("e2b-local-lifecycle-bench")
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let api = Api::new(server.api_url(), server.api_key().to_owned());
    println!(
        "e2b-local lifecycle benchmark: {rounds} rounds, {} CPUs",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let result = measure(&api, rounds).await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(api: &Api, rounds: usize) -> Result<(), String> {
    let body = json!({
        "templateID": "base", "timeout": 3600,
        "autoPause": true, "autoResume": {"enabled": true}
    })
    .to_string();
    let (s, answer) = api.call(http::Method::POST, "/sandboxes", &body).await?;
    if s != 201 {
        return Err(format!("create: {s}: {}", String::from_utf8_lossy(&answer)));
    }
    let v: Value = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
    let sb = Created {
        id: v["sandboxID"].as_str().unwrap_or_default().to_owned(),
        token: v["envdAccessToken"].as_str().unwrap_or_default().to_owned(),
    };
    let pause = format!("/sandboxes/{}/pause", sb.id);
    let connect = format!("/sandboxes/{}/connect", sb.id);
    // Warm-up: page cache, connection pool.
    command(api, &sb).await?;

    let (mut running, mut woken, mut freeze) = (Vec::new(), Vec::new(), Vec::new());
    let (mut files_pause, mut files_resume) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        freeze.push(timed(api, &pause, "", 204).await?);
        woken.push(command(api, &sb).await?);
        running.push(command(api, &sb).await?);
        files_pause.push(timed(api, &pause, r#"{"memory":false}"#, 204).await?);
        files_resume.push(timed(api, &connect, r#"{"timeout":3600}"#, 201).await?);
    }
    let overhead = pct(&mut woken, 0.5).saturating_sub(pct(&mut running, 0.5));
    report("command to a running sandbox", &mut running);
    report("command to a paused one (autoResume)", &mut woken);
    println!(
        "autoResume adds (p50 difference): {:.2} ms",
        overhead.as_secs_f64() * 1e3
    );
    report("pause, memory kept (freezer)", &mut freeze);
    report("pause, files only", &mut files_pause);
    report("connect after a files-only pause", &mut files_resume);
    api.kill(&sb.id).await
}
