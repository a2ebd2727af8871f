//! Fork and snapshot benchmark of e2b-local (run as root, in release):
//!
//! ```text
//! cargo run --release -p bench --bin e2b-local-fork-bench -- [ROUNDS]
//! ```
//!
//! Starts an in-process server and a source sandbox with 100 MiB written into it, then
//! measures, round by round in one run:
//! * how long a fork keeps the source frozen (the server's `x-e2b-local-frozen-ms`: freeze,
//!   copy of the source's upper directories, thaw), p50;
//! * a fork of one until 201 (capture and the fork's boot until envd answers) against a
//!   plain create until 201, p50 and their ratio;
//! * a snapshot until 201 (capture and its template recorded), p50.
//!
//! Each round kills its fork and deletes its snapshot, so every capture copies the same
//! 100 MiB.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bench::local_api::{Api, Created, pct, report};
use serde_json::{Value, json};

/// What the source writes before the forks: 100 MiB.
const WRITTEN_BYTES: u64 = 100 << 20;

fn main() -> ExitCode {
    bench::local_api::run_main("e2b-local-fork-bench", || run(bench::local_api::arg(1, 20)))
}

/// `POST /sandboxes/{id}/fork` of one: the fork and how long the source was frozen.
async fn fork(api: &Api, source: &str) -> Result<(Created, Duration), String> {
    let body = json!({"count": 1, "timeout": 3600}).to_string();
    let (s, headers, body) = api
        .call_with_headers(
            http::Method::POST,
            &format!("/sandboxes/{source}/fork"),
            &body,
        )
        .await?;
    if s != 201 {
        return Err(format!("fork: {s}: {}", String::from_utf8_lossy(&body)));
    }
    let frozen_ms: f64 = headers
        .get("x-e2b-local-frozen-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or("fork: no x-e2b-local-frozen-ms header")?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let sb = &v[0]["sandbox"];
    if sb.is_null() {
        return Err(format!("fork: {}", v[0]["error"]));
    }
    Ok((
        Created {
            id: sb["sandboxID"].as_str().unwrap_or_default().to_owned(),
            token: sb["envdAccessToken"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        },
        Duration::from_secs_f64(frozen_ms / 1e3),
    ))
}

/// `POST /sandboxes/{id}/snapshots` named `name`, then deletes it; returns the time until
/// 201.
async fn snapshot(api: &Api, source: &str, name: &str) -> Result<Duration, String> {
    let t = Instant::now();
    let (s, body) = api
        .call(
            http::Method::POST,
            &format!("/sandboxes/{source}/snapshots"),
            &json!({ "name": name }).to_string(),
        )
        .await?;
    let took = t.elapsed();
    if s != 201 {
        return Err(format!("snapshot: {s}: {}", String::from_utf8_lossy(&body)));
    }
    let (s, body) = api
        .call(http::Method::DELETE, &format!("/templates/{name}"), "")
        .await?;
    if s != 204 {
        return Err(format!("delete: {s}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(took)
}

async fn run(rounds: usize) -> Result<(), String> {
    let dir = std::env::temp_dir().join("e2b-local-fork-bench");
    let _ = std::fs::remove_dir_all(&dir);
    let server = e2b_local::Server::builder()
        .data_dir(&dir)
        .listen("127.0.0.1:0")
        .cgroup_parent("e2b-local-fork-bench")
        // Room for the 100 MiB and more; small enough for a tight host disk.
        .disk_mib(2048)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let api = Api::new(server.api_url(), server.api_key().to_owned());
    println!(
        "e2b-local fork benchmark: {rounds} rounds, {} MiB written in the source, {} CPUs",
        WRITTEN_BYTES >> 20,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let source = api.create().await?;
    let write = format!(
        "head -c {WRITTEN_BYTES} /dev/urandom > /home/user/data.bin && stat -c %s /home/user/data.bin"
    );
    let out = api.run(&source, &write).await?;
    let size = base64_of(&format!("{WRITTEN_BYTES}\n"));
    if !out.contains(&size) {
        return Err(format!("writing the 100 MiB: {out}"));
    }
    // Warm-up: a create, a fork and a snapshot (page cache, the disk pool).
    let warm = api.create().await?;
    api.kill(&warm.id).await?;
    let (warm, _) = fork(&api, &source.id).await?;
    api.kill(&warm.id).await?;
    snapshot(&api, &source.id, "warm").await?;

    let (mut frozen, mut forks, mut creates, mut snapshots) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let t = Instant::now();
        let plain = api.create().await?;
        creates.push(t.elapsed());
        api.kill(&plain.id).await?;

        let t = Instant::now();
        let (forked, froze) = fork(&api, &source.id).await?;
        forks.push(t.elapsed());
        frozen.push(froze);
        if round == 0 {
            // The fork has the source's 100 MiB.
            let out = api.run(&forked, "stat -c %s /home/user/data.bin").await?;
            if !out.contains(&size) {
                return Err(format!("the fork lacks the source's file: {out}"));
            }
        }
        api.kill(&forked.id).await?;

        snapshots.push(snapshot(&api, &source.id, &format!("bench-{round}")).await?);
    }
    let ratio = pct(&mut forks, 0.5).as_secs_f64() / pct(&mut creates, 0.5).as_secs_f64();
    report("source frozen per fork (100 MiB captured)", &mut frozen);
    report("fork of one until 201", &mut forks);
    report("plain create until 201", &mut creates);
    println!("fork / create p50 ratio: {ratio:.2}");
    report("snapshot until 201 (100 MiB captured)", &mut snapshots);
    api.kill(&source.id).await?;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `s` as envd sends output: base64 in the stream's JSON.
fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
