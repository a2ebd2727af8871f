//! Sandbox networking benchmark of e2b-local (run as root, in release):
//!
//! ```text
//! cargo run --release -p bench --bin e2b-local-network-bench -- [ITERATIONS]
//! ```
//!
//! Builds the tests' fake internet (two network namespaces and a veth pair; every packet
//! stays in them: `crates/e2b-local/tests/fake_internet`), starts two in-process servers in
//! its uplink namespace, one with networking and one without, and measures in one run:
//! * create until 201 on both, alternating, p50/p99, and their ratio;
//! * 50 concurrent creates with and without networking, p50/p99 of each request;
//! * TCP throughput of a 1 GiB HTTP upload (a Python sender) to the fake internet: from the uplink
//!   namespace itself (the veth-to-veth floor), from a sandbox directly (veth, NAT, veth) and
//!   from a sandbox whose port 80 goes through the egress proxy (a domain rule), and from a
//!   sandbox whose TCP is tunneled through the fake internet's SOCKS5 server (`egressProxy`,
//!   with credentials: the egress proxy, then the SOCKS server's relay); median of 3;
//! * host memory per idle sandbox with 200 alive, with and without networking.

#[path = "../../../e2b-local/tests/fake_internet/mod.rs"]
mod fake_internet;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bench::local_api::{Api, mem_available, pct, report};
use e2b_local::network::NetworkOptions;
use fake_internet::{DNS, FakeInternet, SERVER_A, SOCKS, SOCKS_PASSWORD, SOCKS_PORT, SOCKS_USER};

const UPLOAD_BYTES: u64 = 1 << 30;

fn main() -> ExitCode {
    if let Some(code) = e2b_local::envd_role::run_role_if_requested() {
        return code;
    }
    let iterations: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let net = FakeInternet::new();
    let _servers = net.serve();
    match net.block_on(run(iterations)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2b-local-network-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn server(
    dir: &std::path::Path,
    cgroup: &str,
    network: bool,
) -> Result<e2b_local::RunningServer, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut b = e2b_local::Server::builder()
        .data_dir(dir)
        .listen("127.0.0.1:0")
        .helper_exe(exe)
        .cgroup_parent(cgroup)
        .capacity(e2b_local::lifecycle::Capacity {
            max_sandboxes: 10_000,
            max_memory_bytes: u64::MAX,
        });
    if network {
        b = b.network(NetworkOptions {
            pool: e2b_local::network::DEFAULT_POOL
                .parse()
                .map_err(|e| format!("{e}"))?,
            dns_upstreams: vec![fake_internet::at(DNS, 53)],
            upstream_roots: Vec::new(),
            unreachable: Vec::new(),
        });
    }
    b.start().await.map_err(|e| e.to_string())
}

async fn run(iterations: usize) -> Result<(), String> {
    let tmp = std::env::temp_dir().join(format!("e2b-network-bench-{}", std::process::id()));
    let (with_dir, without_dir) = (tmp.join("with"), tmp.join("without"));
    let with = server(&with_dir, "e2b-network-bench-with", true).await?;
    let without = server(&without_dir, "e2b-network-bench-without", false).await?;
    let api = Api::new(with.api_url(), with.api_key().to_owned());
    let plain = api.with_server(without.api_url(), without.api_key().to_owned());

    // Create until 201, alternating which server goes first, so both see the same load
    // (including what the other's kill leaves running).
    let (mut t_with, mut t_without) = (Vec::new(), Vec::new());
    for i in 0..iterations {
        let mut order = [(&api, &mut t_with), (&plain, &mut t_without)];
        if i % 2 == 1 {
            order.reverse();
        }
        for (api, times) in order {
            let t0 = Instant::now();
            let sb = api.create().await?;
            times.push(t0.elapsed());
            api.kill(&sb.id).await?;
        }
    }
    report("create until 201, without networking", &mut t_without);
    report("create until 201, with networking", &mut t_with);
    println!(
        "ratio of p50s (with / without): {:.2}",
        pct(&mut t_with, 0.5).as_secs_f64() / pct(&mut t_without, 0.5).as_secs_f64()
    );

    for (name, api) in [("without", &plain), ("with", &api)] {
        concurrent_creates(api, &format!("50 concurrent creates {name} networking")).await?;
    }

    throughput(&api).await?;
    memory(&api, &plain).await?;

    with.shutdown().await;
    without.shutdown().await;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// 50 creates at once: p50/p99 of each request, then all killed.
async fn concurrent_creates(api: &Api, name: &str) -> Result<(), String> {
    let t0 = Instant::now();
    let creates = (0..50).map(|_| async move {
        let t = Instant::now();
        let sb = api.create().await?;
        Ok::<_, String>((t.elapsed(), sb))
    });
    let results = futures_util::future::join_all(creates).await;
    let wall = t0.elapsed();
    let mut times = Vec::new();
    for r in results {
        let (t, sb) = r?;
        times.push(t);
        api.kill(&sb.id).await?;
    }
    report(name, &mut times);
    println!("  (all 50 done after {:.1} ms)", wall.as_secs_f64() * 1e3);
    Ok(())
}

/// A Python sender (in the sandbox's template and on the host alike): one HTTP POST of
/// `UPLOAD_BYTES` to `/sink` at `addr:80` with `Host: name`, from a 4 MiB buffer, timed until
/// the sink's answer (the byte count it received, checked); prints bytes per second.
fn upload_script(addr: &str, name: &str) -> String {
    format!(
        r#"python3 - <<'PY'
import socket, time
n = {UPLOAD_BYTES}
s = socket.create_connection(("{addr}", 80), timeout=60)
s.sendall(b"POST /sink HTTP/1.1\r\nHost: {name}\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % n)
buf = memoryview(bytearray(4 << 20))
t = time.monotonic()
left = n
while left:
    k = min(left, len(buf))
    s.sendall(buf[:k])
    left -= k
resp = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    resp += d
dt = time.monotonic() - t
got = resp.split(b"\r\n\r\n", 1)[-1].strip()
assert got == str(n).encode(), resp[:300]
print(n / dt)
PY"#
    )
}

/// A sandbox with `network`.
async fn create_with_network(
    api: &Api,
    network: serde_json::Value,
) -> Result<bench::local_api::Created, String> {
    let body = serde_json::json!({"templateID": "base", "timeout": 3600, "network": network});
    let (s, body) = api
        .call(http::Method::POST, "/sandboxes", &body.to_string())
        .await?;
    if s != 201 {
        return Err(format!("create: {s}: {}", String::from_utf8_lossy(&body)));
    }
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(bench::local_api::Created {
        id: v["sandboxID"].as_str().unwrap_or_default().to_owned(),
        token: v["envdAccessToken"].as_str().unwrap_or_default().to_owned(),
    })
}

async fn throughput(api: &Api) -> Result<(), String> {
    let ip = SERVER_A.to_string();
    let direct = api.create().await?;
    let proxied = create_with_network(
        api,
        serde_json::json!({"allowOut": ["a.test"], "denyOut": ["0.0.0.0/0"]}),
    )
    .await?;
    let tunneled = create_with_network(
        api,
        serde_json::json!({"egressProxy": {
            "address": format!("{SOCKS}:{SOCKS_PORT}"),
            "username": SOCKS_USER,
            "password": SOCKS_PASSWORD,
        }}),
    )
    .await?;
    let mut floor = Vec::new();
    let mut from_sandbox = Vec::new();
    let mut through_proxy = Vec::new();
    let mut through_socks = Vec::new();
    for _ in 0..3 {
        let out = tokio::process::Command::new("bash")
            .args(["-c", &upload_script(&ip, &ip)])
            .output()
            .await
            .map_err(|e| e.to_string())?;
        floor.push(parse_speed(&String::from_utf8_lossy(&out.stdout))?);
        from_sandbox.push(speed_in(api, &direct, &upload_script(&ip, &ip)).await?);
        through_proxy.push(speed_in(api, &proxied, &upload_script("a.test", "a.test")).await?);
        through_socks.push(speed_in(api, &tunneled, &upload_script(&ip, &ip)).await?);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let gbit = |bps: f64| bps * 8.0 / 1e9;
    let (f, d, p, s) = (
        median(&mut floor),
        median(&mut from_sandbox),
        median(&mut through_proxy),
        median(&mut through_socks),
    );
    println!(
        "TCP upload, veth-to-veth floor (uplink namespace):  {:>6.2} Gbit/s",
        gbit(f)
    );
    println!(
        "TCP upload from a sandbox, direct:                  {:>6.2} Gbit/s ({:.2} of the floor)",
        gbit(d),
        d / f
    );
    println!(
        "TCP upload from a sandbox, through the egress proxy: {:>6.2} Gbit/s ({:.2} of the floor)",
        gbit(p),
        p / f
    );
    println!(
        "TCP upload from a sandbox, through SOCKS5 (egressProxy): {:>6.2} Gbit/s ({:.2} of the floor)",
        gbit(s),
        s / f
    );
    api.kill(&direct.id).await?;
    api.kill(&proxied.id).await?;
    api.kill(&tunneled.id).await?;
    Ok(())
}

fn parse_speed(out: &str) -> Result<f64, String> {
    out.trim()
        .parse::<f64>()
        .map_err(|_| format!("the sender printed {out:?}, not a speed"))
}

/// Runs `script` in the sandbox and parses the speed curl printed (in envd's base64 stream).
async fn speed_in(api: &Api, sb: &bench::local_api::Created, script: &str) -> Result<f64, String> {
    let stream = api.run(sb, script).await?;
    let stdout = stdout_of(&stream);
    parse_speed(&stdout).map_err(|e| format!("{e}; stream: {stream}"))
}

/// The stdout in an envd `process.Process/Start` response stream (JSON envelopes).
fn stdout_of(stream: &str) -> String {
    use base64::Engine as _;
    let mut out = Vec::new();
    for part in stream.split("\"stdout\":\"").skip(1) {
        if let Some(b64) = part.split('"').next()
            && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64)
        {
            out.extend(bytes);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn memory(api: &Api, plain: &Api) -> Result<(), String> {
    for (name, api) in [("without networking", plain), ("with networking", api)] {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = mem_available();
        let mut ids = Vec::new();
        for _ in 0..200 {
            ids.push(api.create().await?.id);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = mem_available();
        println!(
            "host memory per idle sandbox, 200 alive, {name}: {:.2} MiB",
            before.saturating_sub(after) as f64 / 200.0 / f64::from(1 << 20)
        );
        for id in ids {
            api.kill(&id).await?;
        }
    }
    Ok(())
}
