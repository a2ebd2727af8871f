//! Shared setup for the isolation tests: one runtime and `base` template per test binary.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::Output;
use std::sync::OnceLock;

use e2b_local::isolation::{
    ExecOptions, InitProgram, Limits, Runtime, RuntimeConfig, SandboxHandle, SandboxSpec,
};
use e2b_local::template::Template;

/// Declares tests that need root and namespaces: ignored by default, run as root with
/// `cargo test -p e2b-local -- --ignored` (`scripts/test` does).
#[macro_export]
macro_rules! root_test {
    ($($(#[$m:meta])* fn $name:ident() $body:block)*) => {
        $(
            #[test]
            #[ignore = "needs root: namespaces, mounts and cgroups"]
            $(#[$m])*
            fn $name() $body
        )*
    };
}

pub struct Env {
    pub runtime: Runtime,
    pub base: Template,
    pub dir: PathBuf,
}

/// The runtime for this test binary, with its own data dir (`$TMPDIR/e2b-local-tests/<name>`,
/// reused across runs so the base template is built once) and cgroup parent `<name>`.
/// Sandboxes a crashed earlier run left behind are reclaimed first.
pub fn env(name: &str) -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = std::env::temp_dir().join("e2b-local-tests").join(name);
        let mut cfg = RuntimeConfig::new(&dir);
        cfg.helper_exe = PathBuf::from(env!("CARGO_BIN_EXE_e2b-local"));
        cfg.cgroup.parent = name.to_owned();
        let runtime = Runtime::new(cfg).unwrap_or_else(|e| panic!("runtime: {e}"));
        runtime.check().unwrap_or_else(|e| panic!("check: {e}"));
        for entry in std::fs::read_dir(dir.join("sandboxes"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = entry.file_name().to_string_lossy().into_owned();
            runtime
                .reclaim(&id)
                .unwrap_or_else(|e| panic!("reclaim {id}: {e}"));
        }
        let base = Template::base(runtime.data_dir()).unwrap_or_else(|e| panic!("base: {e}"));
        Env { runtime, base, dir }
    })
}

/// Kills the sandbox when the test ends, pass or fail.
pub struct Guard(pub SandboxHandle);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.0.kill() {
            eprintln!("kill {}: {e}", self.0.id());
        }
    }
}

impl std::ops::Deref for Guard {
    type Target = SandboxHandle;
    fn deref(&self) -> &SandboxHandle {
        &self.0
    }
}

pub fn default_limits() -> Limits {
    Limits {
        cpu_millis: Some(1000),
        memory_bytes: Some(256 << 20),
        pids: Some(128),
        disk_bytes: Some(64 << 20),
    }
}

/// A sandbox whose init sleeps forever.
pub fn sleeper(env: &Env, id: &str) -> Guard {
    spawn(
        env,
        id,
        InitProgram::sandbox(["/bin/sleep", "infinity"]),
        default_limits(),
    )
}

pub fn spawn(env: &Env, id: &str, init: InitProgram, limits: Limits) -> Guard {
    let mut spec = SandboxSpec::new(id, &env.base, init);
    spec.limits = limits;
    Guard(
        env.runtime
            .spawn(spec)
            .unwrap_or_else(|e| panic!("spawn {id}: {e}")),
    )
}

pub fn sh(sb: &SandboxHandle, script: &str, opts: &ExecOptions) -> Output {
    sb.exec_in(&["/bin/bash", "-c", script], opts)
        .unwrap_or_else(|e| panic!("exec_in {}: {e}", sb.id()))
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Both identities the isolation tests run as.
pub fn as_root_and_user() -> [(&'static str, ExecOptions); 2] {
    [
        ("root", ExecOptions::default()),
        ("user", ExecOptions::user()),
    ]
}
