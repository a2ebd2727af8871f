//! `e2b-local`: E2B sandboxes on one Linux machine. All logic lives in the library.
//!
//! Phases: (1) hidden roles — the runtime's helper roles (`__sandbox-init`,
//! `__sandbox-exec`, argv\[1\]) and the envd role (`E2B_LOCAL_ROLE=envd`), before any thread
//! exists; (2) the command line.

use std::process::ExitCode;

#[cfg(target_os = "linux")]
fn main() -> ExitCode {
    // Phase 1: roles run before anything else (no threads, no logging set up yet).
    if let Some(code) = e2b_local::envd_role::run_role_if_requested() {
        return code;
    }
    // Phase 2: the CLI.
    use clap::Parser as _;
    e2b_local::cli::run(e2b_local::cli::Cli::parse())
}

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    eprintln!("e2b-local: only Linux is supported");
    ExitCode::FAILURE
}
