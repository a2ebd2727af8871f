//! Leak test: create and kill many sandboxes, then assert that nothing is left — processes,
//! mounts, loop devices, disk images, cgroups, upper directories, descriptors. Its own test
//! binary, so no other test's sandboxes run meanwhile. Needs root: `cargo test -p e2b-local --test leaks -- --ignored`.
//! `E2B_LOCAL_LEAK_N` overrides the count (default 200).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{default_limits, env, sh};
use e2b_local::isolation::{CgroupVersion, ExecOptions, InitProgram, SandboxSpec};

const CG: &str = "e2b-local-leaks";

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The mounts of the test's data directory (other users of this shared host mount and
/// unmount elsewhere meanwhile).
fn mountinfo(env: &common::Env) -> Vec<String> {
    let dir = env.dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&dir))
        .map(str::to_owned)
        .collect()
}

/// Processes whose parent is this test process (zombies included).
fn children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        if rest.split_whitespace().nth(1) == Some(me.as_str()) {
            out.push(stat);
        }
    }
    out
}

/// Processes in any cgroup below our parent.
fn processes_in_our_cgroups() -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cg = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        if cg.contains(&format!("/{CG}/")) {
            out.push(format!("{:?}: {cg}", entry.file_name()));
        }
    }
    out
}

fn cgroup_children(env: &common::Env) -> Vec<String> {
    let cfg = &env.runtime.config().cgroup;
    let roots: Vec<std::path::PathBuf> = match cfg.version {
        CgroupVersion::V2 => vec![cfg.unified_root.join(CG)],
        CgroupVersion::V1 => ["cpu", "cpuacct", "memory", "pids", "freezer"]
            .iter()
            .map(|c| Path::new("/sys/fs/cgroup").join(c).join(CG))
            .collect(),
    };
    let mut out = Vec::new();
    for root in roots {
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.push(entry.path().display().to_string());
            }
        }
    }
    out
}

root_test! {
    fn create_and_kill_many_sandboxes_leaves_nothing_behind() {
        let env = env(CG);
        let n: usize = std::env::var("E2B_LOCAL_LEAK_N").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
        // Warm up (lazy statics, first template use) before taking the baseline.
        {
            let sb = common::sleeper(env, "leak-warmup");
            let out = sh(&sb, "echo hi", &ExecOptions::default());
            assert_eq!(common::text(&out.stdout), "hi\n");
        }
        let fds = fd_count();
        let mounts = mountinfo(env);
        assert!(children().is_empty(), "children before: {:?}", children());

        let start = Instant::now();
        let mut spawn_total = Duration::ZERO;
        let mut kill_total = Duration::ZERO;
        for i in 0..n {
            let mut spec = SandboxSpec::new(format!("leak-{i}"), &env.base, InitProgram::sandbox(["/bin/sleep", "infinity"]));
            spec.limits = default_limits();
            let t = Instant::now();
            let sb = env.runtime.spawn(spec).unwrap_or_else(|e| panic!("spawn leak-{i}: {e}"));
            spawn_total += t.elapsed();
            // Something written to the upper dir, a connection into the netns, an exec_in
            // helper in the cgroup: every kind of resource a sandbox holds.
            if i % 20 == 0 {
                let out = sh(&sb, "echo data > /home/user/f; sleep 30 >/dev/null 2>&1 & echo started", &ExecOptions::user());
                assert_eq!(common::text(&out.stdout), "started\n");
                assert!(sb.connect(1).is_err());
            }
            if i % 50 == 0 {
                sb.freeze().unwrap_or_else(|e| panic!("freeze: {e}"));
            }
            let t = Instant::now();
            sb.kill().unwrap_or_else(|e| panic!("kill leak-{i}: {e}"));
            kill_total += t.elapsed();
        }
        eprintln!(
            "{n} sandboxes created and killed in {:?} (spawn mean {:?}, kill mean {:?})",
            start.elapsed(),
            spawn_total / u32::try_from(n.max(1)).unwrap_or(1),
            kill_total / u32::try_from(n.max(1)).unwrap_or(1)
        );

        // Killed sandboxes' images are unlinked in the background.
        env.runtime.wait_for_disk_cleanup();
        assert_eq!(fd_count(), fds, "descriptors leaked");
        let dir = std::fs::canonicalize(&env.dir).unwrap_or_else(|e| panic!("{e}"));
        let loops: Vec<String> = std::fs::read_dir("/sys/block").into_iter().flatten().flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("loop/backing_file")).ok())
            .filter(|b| b.starts_with(dir.to_str().unwrap_or("?")))
            .collect();
        assert!(loops.is_empty(), "loop devices leaked: {loops:?}");
        let trash = std::fs::read_dir(env.dir.join("disks/trash")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(trash, 0, "disk images leaked");
        assert_eq!(mountinfo(env), mounts, "mounts leaked");
        assert!(children().is_empty(), "processes leaked: {:?}", children());
        assert!(processes_in_our_cgroups().is_empty(), "processes leaked: {:?}", processes_in_our_cgroups());
        assert!(cgroup_children(env).is_empty(), "cgroups leaked: {:?}", cgroup_children(env));
        let left: Vec<_> = std::fs::read_dir(env.dir.join("sandboxes"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "sandbox directories leaked: {left:?}");
    }
}
