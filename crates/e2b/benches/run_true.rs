//! `commands.run("true")` round trip against the real envd (in-process, debug mode):
//! `cargo bench -p e2b --bench run_true` prints p50/p90/p99 over 300 runs after 20 warm-ups.
//!
//! Set `E2B_BENCH_ENVD=http://127.0.0.1:<port>` to measure against an envd (or a router)
//! started elsewhere, e.g. the one the Python SDK comparison uses.

use std::time::{Duration, Instant};

use e2b::{ConnectionConfig, RunOptions, Sandbox};

const WARMUP: usize = 20;
const RUNS: usize = 300;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing to run.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let (base, _envd_thread) = match std::env::var("E2B_BENCH_ENVD") {
        Ok(url) => (url, None),
        Err(_) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let thread = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("envd runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind");
                    tx.send(listener.local_addr().expect("addr")).expect("send");
                    let _ = envd::serve(listener, envd::Config::default()).await;
                });
            });
            let addr = rx.recv().expect("envd address");
            (format!("http://{addr}"), Some(thread))
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut samples = rt.block_on(async {
        let config = ConnectionConfig::new()
            .with_debug(true)
            .with_sandbox_url(&base);
        let sandbox = Sandbox::builder()
            .config(config)
            .create()
            .await
            .expect("sandbox");
        let commands = sandbox.commands();
        for _ in 0..WARMUP {
            commands.run("true", RunOptions::new()).await.expect("run");
        }
        let mut samples = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let start = Instant::now();
            commands.run("true", RunOptions::new()).await.expect("run");
            samples.push(start.elapsed());
        }
        samples
    });
    samples.sort();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "commands.run(\"true\") against {base}: n={RUNS} p50={:.3} ms p90={:.3} ms p99={:.3} ms",
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(pct(0.99))
    );
}
