//! Loopback benchmarks of the real envd binary with the Rust Connect client.
//!
//! `cargo bench -p envd --bench envd` (release build; `ENVD_BIN=path` benchmarks another
//! envd binary instead of this build's). Prints:
//! - Start→end latency of `/bin/true` (no shell) and of `bash -l -c true`, p50/p90/p99,
//!   against the floor of spawning `/bin/true` from the bench process (vfork and fork);
//! - stdout throughput of `head -c 1G /dev/zero` (binary and JSON codecs);
//! - envd's idle RSS, and its RSS after the runs;
//! - 100 concurrent Start streams.
#![allow(missing_docs)]
#![allow(unsafe_code)]

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2b_envd::pb::process::process_event::{Event as Ev, data_event::Output};
use e2b_envd::pb::process::{self as pb, process_client::ProcessClient};
use e2b_envd::{Client, Encoding};
use futures_util::StreamExt as _;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn req(cmd: &str, args: &[&str]) -> pb::StartRequest {
    pb::StartRequest {
        process: Some(pb::ProcessConfig {
            cmd: cmd.into(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }),
        stdin: Some(false),
        ..Default::default()
    }
}

/// Runs one process to its end and reads the stream to its end-of-stream frame, as the SDK
/// does (so the connection is reused); returns the stdout byte count.
async fn run(c: &ProcessClient, r: pb::StartRequest) -> usize {
    let mut s = c.start(r).await.expect("start");
    let mut n = 0;
    let mut ended = false;
    while let Some(m) = s.next().await {
        match m.expect("stream").event.and_then(|e| e.event) {
            Some(Ev::Data(d)) => {
                if let Some(Output::Stdout(b)) = d.output {
                    n += b.len();
                }
            }
            Some(Ev::End(e)) => {
                assert_eq!(e.exit_code, 0, "{e:?}");
                ended = true;
            }
            _ => {}
        }
    }
    assert!(ended, "stream ended without an end event");
    n
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms (n={})",
        p(0.5).as_secs_f64() * 1e3,
        p(0.9).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        v.len()
    )
}

fn main() {
    // `cargo bench` passes --bench; nothing to filter.
    // ENVD_BIN runs the bench against another build (an A/B against an older envd).
    let envd = std::env::var("ENVD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_envd").into());
    let mut child = Command::new(envd)
        .args(["--port", "0", "--listen", "127.0.0.1"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn envd");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = format!(
        "http://{}",
        line.trim().strip_prefix("envd listening on ").unwrap()
    );
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(300));
    println!("envd idle RSS: {} KiB", rss_kib(pid));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let json = ProcessClient::new(Client::builder(base.clone()).build().unwrap());
        let proto = ProcessClient::new(
            Client::builder(base.clone())
                .encoding(Encoding::Proto)
                .build()
                .unwrap(),
        );
        // Interleaved rounds, so that load from elsewhere hits every series alike. The
        // floors run /bin/true from this process: std's posix_spawn (vfork) path, and a
        // forced fork (a no-op pre_exec hook), which is how envd spawned before.
        let floor_spawn = || {
            let t = Instant::now();
            let st = Command::new("/bin/true").status().expect("spawn");
            assert!(st.success());
            t.elapsed()
        };
        let floor_fork = || {
            let mut cmd = Command::new("/bin/true");
            // SAFETY: the hook does nothing; it only makes std take its fork path.
            unsafe {
                cmd.pre_exec(|| Ok(()));
            }
            let t = Instant::now();
            assert!(cmd.status().expect("spawn").success());
            t.elapsed()
        };
        for _ in 0..20 {
            run(&json, req("/bin/true", &[])).await;
            run(&proto, req("/bin/true", &[])).await;
        }
        let (mut vjson, mut vproto, mut vspawn, mut vfork) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..500 {
            let t = Instant::now();
            run(&json, req("/bin/true", &[])).await;
            vjson.push(t.elapsed());
            let t = Instant::now();
            run(&proto, req("/bin/true", &[])).await;
            vproto.push(t.elapsed());
            vspawn.push(floor_spawn());
            vfork.push(floor_fork());
        }
        let floor = median(&vspawn);
        for (name, v) in [
            ("Start→end /bin/true (json)", vjson),
            ("Start→end /bin/true (proto)", vproto),
            ("floor: posix_spawn + wait /bin/true in-process", vspawn),
            ("floor: fork + exec + wait /bin/true in-process", vfork),
        ] {
            let ratio = median(&v).as_secs_f64() / floor.as_secs_f64();
            println!("{name}: {} = {ratio:.2}x posix_spawn", percentiles(v));
        }
        // Breakdown: when the start event, the end event and the end of the stream arrive.
        let (mut vstart, mut vend, mut vdone) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..300 {
            let t = Instant::now();
            let mut s = proto.start(req("/bin/true", &[])).await.expect("start");
            let _ = s.next().await;
            vstart.push(t.elapsed());
            while let Some(m) = s.next().await {
                if let Some(Ev::End(_)) = m.expect("stream").event.and_then(|e| e.event) {
                    vend.push(t.elapsed());
                }
            }
            vdone.push(t.elapsed());
        }
        println!("Start→start event /bin/true (proto): {}", percentiles(vstart));
        println!("Start→end event /bin/true (proto): {}", percentiles(vend));
        println!("Start→end of stream /bin/true (proto): {}", percentiles(vdone));
        let mut v = Vec::new();
        for _ in 0..100 {
            let t = Instant::now();
            run(&json, req("/bin/bash", &["-l", "-c", "true"])).await;
            v.push(t.elapsed());
        }
        println!("Start→end bash -l -c true (json): {}", percentiles(v));

        for (name, c) in [("proto", &proto), ("json", &json)] {
            let t = Instant::now();
            let n = run(c, req("/usr/bin/head", &["-c", "1073741824", "/dev/zero"])).await;
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(n, 1 << 30);
            println!(
                "stdout throughput head -c 1G /dev/zero ({name}): {:.0} MB/s ({:.2} s)",
                n as f64 / secs / 1e6,
                secs
            );
        }
        println!("envd RSS after throughput runs: {} KiB", rss_kib(pid));

        let t = Instant::now();
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let c = json.clone();
                tokio::spawn(async move {
                    run(&c, req("/bin/sh", &["-c", "sleep 1; echo x"])).await
                })
            })
            .collect();
        let mut peak = 0;
        let mut ok = 0;
        for t in tasks {
            peak = peak.max(rss_kib(pid));
            if t.await.unwrap() == 2 {
                ok += 1;
            }
        }
        println!(
            "100 concurrent Start streams (sleep 1; echo x): {ok}/100 complete in {:.2} s, envd RSS peak {} KiB",
            t.elapsed().as_secs_f64(),
            peak
        );
    });
    std::thread::sleep(Duration::from_millis(500));
    println!("envd RSS at the end: {} KiB", rss_kib(pid));
    let _ = child.kill();
    let _ = child.wait();
}
