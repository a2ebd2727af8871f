//! Template build benchmark of e2b-local (run as root, in release):
//!
//! ```text
//! cargo run --release -p bench --bin e2b-local-template-bench -- [ROUNDS]
//! ```
//!
//! Starts an in-process server and measures, through E2B's build API, in one run:
//! * build overhead per step: a build of 10 `RUN true` steps none of which is cached,
//!   divided by 10, p50 over the rounds (each step is a build sandbox started on the
//!   layers before it, the command, and its changes moved into a layer);
//! * a fully cached rebuild of that 10-step template (request until `ready`), p50;
//! * create until 201 of a template with 20 layers against `base`, alternating round by
//!   round, p50 and the ratio.
//!
//! Status is polled every 2 ms, so that is the timing's resolution.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bench::local_api::{Api, pct, report};
use serde_json::{Value, json};

fn main() -> ExitCode {
    bench::local_api::run_main("e2b-local-template-bench", || {
        run(bench::local_api::arg(1, 10))
    })
}

/// `POST /v3/templates`: (template id, build id).
async fn request(api: &Api, name: &str) -> Result<(String, String), String> {
    let body = json!({ "name": name }).to_string();
    let (s, body) = api.call(http::Method::POST, "/v3/templates", &body).await?;
    if s != 202 {
        return Err(format!(
            "request build: {s}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok((
        v["templateID"].as_str().unwrap_or_default().to_owned(),
        v["buildID"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// Builds `name` from `base` with `commands` as RUN steps (as root); returns the time from
/// the build request until its status is `ready`.
async fn build(api: &Api, name: &str, commands: &[String]) -> Result<Duration, String> {
    let t = Instant::now();
    let (id, build) = request(api, name).await?;
    let steps: Vec<Value> = commands
        .iter()
        .map(|c| json!({"type": "RUN", "args": [c, "root"], "force": false}))
        .collect();
    let start = json!({"fromTemplate": "base", "force": false, "steps": steps}).to_string();
    let (s, body) = api
        .call(
            http::Method::POST,
            &format!("/v2/templates/{id}/builds/{build}"),
            &start,
        )
        .await?;
    if s != 202 {
        return Err(format!(
            "start build: {s}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    loop {
        let (s, body) = api
            .call(
                http::Method::GET,
                &format!("/templates/{id}/builds/{build}/status?logsOffset=100000"),
                "",
            )
            .await?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| format!("{s}: {e}"))?;
        match v["status"].as_str() {
            Some("ready") => return Ok(t.elapsed()),
            Some("error") => return Err(format!("build {name} failed: {}", v["reason"])),
            _ => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

async fn run(rounds: usize) -> Result<(), String> {
    let dir = std::env::temp_dir().join("e2b-local-template-bench");
    let _ = std::fs::remove_dir_all(&dir);
    let server = e2b_local::Server::builder()
        .data_dir(&dir)
        .listen("127.0.0.1:0")
        .cgroup_parent("e2b-local-template-bench")
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let api = Api::new(server.api_url(), server.api_key().to_owned());
    println!(
        "e2b-local template benchmark: {rounds} rounds, {} CPUs",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // Warm-up: base, page cache.
    build(&api, "warm", &["true".to_owned()]).await?;

    let mut per_step = Vec::new();
    let mut cached = Vec::new();
    for round in 0..rounds {
        // A comment makes each round's steps new, so none is a cache hit.
        let steps: Vec<String> = (0..10).map(|i| format!("true # {round}-{i}")).collect();
        let name = format!("ten-{round}");
        per_step.push(build(&api, &name, &steps).await? / 10);
        cached.push(build(&api, &name, &steps).await?);
    }
    report("build overhead per RUN step (uncached)", &mut per_step);
    report("fully cached rebuild of 10 steps", &mut cached);

    let twenty: Vec<String> = (0..20).map(|i| format!("echo {i} > /layer-{i}")).collect();
    build(&api, "twenty", &twenty).await?;
    let (mut base, mut layered) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(10) {
        for (template, out) in [("base", &mut base), ("twenty", &mut layered)] {
            let t = Instant::now();
            let sb = api.create_from(template).await?;
            out.push(t.elapsed());
            api.kill(&sb.id).await?;
        }
    }
    let ratio = pct(&mut layered, 0.5).as_secs_f64() / pct(&mut base, 0.5).as_secs_f64();
    report("create until 201: base", &mut base);
    report("create until 201: 20-layer template", &mut layered);
    println!("20-layer / base create p50 ratio: {ratio:.2}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
