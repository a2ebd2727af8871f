//! `e2b-local`: E2B sandboxes on one Linux machine.
//!
//! For now: the hidden sandbox helper roles and a usage message. The control plane, envd
//! routing and the CLI subcommands are added on top of the library.

use std::process::ExitCode;

const USAGE: &str = "\
usage: e2b-local <command>

commands (coming): serve, sandbox list|kill, key, template list|add
";

fn main() -> ExitCode {
    // Phase 1: helper roles run before anything else (no threads, no logging).
    #[cfg(target_os = "linux")]
    if let Some(code) = e2b_local::isolation::run_helper_if_requested() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    // Phase 2: the CLI.
    eprint!("{USAGE}");
    ExitCode::from(2)
}
