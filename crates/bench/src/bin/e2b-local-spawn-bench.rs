//! Spawn benchmark for the sandbox runtime (run as root, in release):
//!
//! ```text
//! cargo run --release -p bench --bin e2b-local-spawn-bench -- [ITERATIONS]
//! ```
//!
//! Measures, in the same run, p50/p99 of:
//! * the floor: `unshare --pid --fork --mount --net --uts --ipc --cgroup true`;
//! * spawn until `/bin/true` was exec'd inside, and until it exited;
//! * spawn until a process inside answers on a socket (this binary re-run inside by
//!   descriptor, the way envd runs), i.e. "create until envd ready";
//! * kill (full cleanup);
//! * 50 concurrent spawns;
//! * memory per idle sandbox (cgroup charge, and host `MemAvailable` drop).
//!
//! This binary is its own helper: `main` first serves the runtime's helper roles, then the
//! in-sandbox listener role (`E2B_LOCAL_ROLE=bench-listen`).

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    if let Some(code) = e2b_local::isolation::run_helper_if_requested() {
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    if std::env::var("E2B_LOCAL_ROLE").as_deref() == Ok("bench-listen") {
        return bench::listen();
    }
    match bench::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2b-local-spawn-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("e2b-local-spawn-bench runs on Linux only");
}

#[cfg(target_os = "linux")]
mod bench {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::process::{Command, ExitCode, Stdio};
    use std::time::{Duration, Instant};

    use e2b_local::isolation::{
        InitProgram, Limits, Runtime, RuntimeConfig, SandboxHandle, SandboxSpec,
    };
    use e2b_local::template::Template;

    /// The in-sandbox listener stands in for envd, so it listens on envd's port.
    const PORT: u16 = e2b_envd::ENVD_PORT;

    /// Inside the sandbox: answer "ready" to every connection.
    pub(crate) fn listen() -> ExitCode {
        let Ok(l) = TcpListener::bind(("127.0.0.1", PORT)) else {
            return ExitCode::from(3);
        };
        for mut c in l.incoming().flatten() {
            let _ = c.write_all(b"ready");
        }
        ExitCode::SUCCESS
    }

    type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

    fn pct(v: &mut [Duration], p: f64) -> Duration {
        v.sort();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v.get(i).copied().unwrap_or_default()
    }

    fn report(name: &str, mut v: Vec<Duration>) {
        let (p50, p99) = (pct(&mut v, 0.5), pct(&mut v, 0.99));
        println!(
            "{name:<44} n={:<4} p50={:>8.2} ms  p99={:>8.2} ms",
            v.len(),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }

    fn limits() -> Limits {
        Limits {
            cpu_millis: Some(2000),
            memory_bytes: Some(512 << 20),
            pids: Some(256),
            disk_bytes: Some(512 << 20),
        }
    }

    fn spawn(rt: &Runtime, t: &Template, id: &str, init: InitProgram) -> Res<SandboxHandle> {
        let mut spec = SandboxSpec::new(id, t, init);
        spec.limits = limits();
        Ok(rt.spawn(spec)?)
    }

    fn wait_exit(sb: &SandboxHandle) -> Res<i32> {
        let start = Instant::now();
        loop {
            if let Some(c) = sb.try_wait()? {
                return Ok(c);
            }
            if start.elapsed() > Duration::from_secs(5) {
                return Err("init did not exit".into());
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    fn wait_ready(sb: &SandboxHandle) -> Res<()> {
        let start = Instant::now();
        loop {
            match sb.connect(PORT) {
                Ok(mut s) => {
                    let mut b = String::new();
                    s.read_to_string(&mut b)?;
                    if b == "ready" {
                        return Ok(());
                    }
                    return Err(format!("unexpected answer {b:?}").into());
                }
                Err(_) if start.elapsed() < Duration::from_secs(5) => {
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn mem_available_kb() -> u64 {
        std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub(crate) fn run() -> Res<()> {
        // [ITERATIONS] [--helper PATH]: with --helper, another binary (e.g. the real
        // `e2b-local`) serves the helper roles; the "server answers" rows then need this
        // binary's listener role and are skipped.
        let args: Vec<String> = std::env::args().collect();
        let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
        let helper = args
            .iter()
            .position(|a| a == "--helper")
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from);
        let data = std::env::temp_dir().join("e2b-local-bench");
        let mut cfg = RuntimeConfig::new(&data);
        cfg.cgroup.parent = "e2b-local-bench".into();
        let own_helper = helper.is_none();
        cfg.helper_exe = match helper {
            Some(h) => h,
            None => std::env::current_exe()?,
        };
        let rt = Runtime::new(cfg)?;
        rt.check()?;
        for e in std::fs::read_dir(data.join("sandboxes"))?.flatten() {
            rt.reclaim(&e.file_name().to_string_lossy())?;
        }
        let base = Template::base(rt.data_dir())?;
        println!(
            "e2b-local spawn bench: {n} iterations, helper {}",
            rt.config().helper_exe.display()
        );

        // Floor: the same namespaces with unshare(1).
        let mut floor = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let ok = Command::new("unshare")
                .args([
                    "--pid", "--fork", "--mount", "--net", "--uts", "--ipc", "--cgroup", "true",
                ])
                .stdout(Stdio::null())
                .status()?
                .success();
            floor.push(t.elapsed());
            if !ok {
                return Err("unshare failed".into());
            }
        }
        report("floor: unshare (same namespaces) true", floor);

        // Spawn until /bin/true was exec'd, until it exited; kill.
        let (mut exec, mut exited, mut kill) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let t = Instant::now();
            let sb = spawn(
                &rt,
                &base,
                &format!("b-true-{i}"),
                InitProgram::sandbox(["/bin/true"]),
            )?;
            exec.push(t.elapsed());
            let code = wait_exit(&sb)?;
            exited.push(t.elapsed());
            if code != 0 {
                return Err(format!("/bin/true exited {code}").into());
            }
            let k = Instant::now();
            sb.kill()?;
            kill.push(k.elapsed());
        }
        report("spawn until /bin/true exec'd", exec);
        report("spawn until /bin/true exited", exited);
        report("kill (full cleanup)", kill);

        // Spawn until a process inside (this binary, run by descriptor) answers.
        let (mut ready, mut kill, mut connect) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..if own_helper { n } else { 0 } {
            let mut init = InitProgram::self_exe(["e2b-local-bench-listen"]);
            init.env
                .push(("E2B_LOCAL_ROLE".into(), "bench-listen".into()));
            let t = Instant::now();
            let sb = spawn(&rt, &base, &format!("b-ready-{i}"), init)?;
            wait_ready(&sb)?;
            ready.push(t.elapsed());
            for _ in 0..10 {
                let c = Instant::now();
                let mut s = sb.connect(PORT)?;
                connect.push(c.elapsed());
                let mut b = [0u8; 5];
                s.read_exact(&mut b)?;
            }
            let k = Instant::now();
            sb.kill()?;
            kill.push(k.elapsed());
        }
        if own_helper {
            report("spawn until a server inside answers", ready);
            report("kill of a serving sandbox", kill);
            report("connect() into a sandbox (thread + setns)", connect);
        }

        // 50 concurrent spawns.
        let start = Instant::now();
        let results: Vec<Res<(Duration, SandboxHandle)>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..50)
                .map(|i| {
                    let (rt, base) = (&rt, &base);
                    s.spawn(move || -> Res<(Duration, SandboxHandle)> {
                        let t = Instant::now();
                        let sb = spawn(
                            rt,
                            base,
                            &format!("b-conc-{i}"),
                            InitProgram::sandbox(["/bin/sleep", "infinity"]),
                        )
                        .map_err(|e| e.to_string())?;
                        Ok((t.elapsed(), sb))
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
                .collect()
        });
        let wall = start.elapsed();
        let mut lat = Vec::new();
        let mut handles = Vec::new();
        for r in results {
            let (d, sb) = r.map_err(|e| e.to_string())?;
            lat.push(d);
            handles.push(sb);
        }
        report("50 concurrent spawns (each)", lat);
        println!(
            "{:<44} {:.2} ms",
            "50 concurrent spawns (wall)",
            wall.as_secs_f64() * 1e3
        );

        // Memory of idle sandboxes (the 50 above, init = sleep under the reaper).
        std::thread::sleep(Duration::from_millis(200));
        let charged: u64 = handles.iter().map(|h| h.stats().memory_bytes).sum();
        println!(
            "{:<44} {:.2} MiB per sandbox (cgroup charge)",
            "idle sandbox memory",
            charged as f64 / handles.len() as f64 / (1 << 20) as f64
        );
        let before = mem_available_kb();
        let t = Instant::now();
        for sb in &handles {
            sb.kill()?;
        }
        let killed = t.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        let freed = mem_available_kb().saturating_sub(before);
        println!(
            "{:<44} {:.2} MiB per sandbox (host MemAvailable regained on kill)",
            "idle sandbox memory",
            freed as f64 / handles.len() as f64 / 1024.0
        );
        println!(
            "{:<44} {:.2} ms total",
            "kill 50 sandboxes",
            killed.as_secs_f64() * 1e3
        );
        Ok(())
    }
}
