//! `build-tools`: regenerates the checked-in protocol code from the specs.
//!
//! ```text
//! cargo run -p build-tools            # rewrite the generated files
//! cargo run -p build-tools -- --check # fail, naming the file, if they differ from the specs
//! ```
//!
//! Inputs: `openapi/*.yml` and `proto/**/*.proto`. Outputs: `crates/e2b-api/src/generated.rs`
//! (progenitor) and `crates/e2b-envd/src/generated/` (prost, pbjson and our Connect services).
//! Every output is formatted by `rustfmt` with the workspace edition, so regenerating is
//! byte-stable and the files pass `cargo fmt --check` as they are.

mod connect;
mod format;
mod openapi;
mod protobuf;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

/// One file the generators produce, with its path relative to the workspace root.
pub(crate) struct GeneratedFile {
    pub(crate) path: PathBuf,
    pub(crate) contents: String,
}

#[derive(Parser)]
#[command(about = "Regenerate e2b-api and e2b-envd from openapi/ and proto/")]
struct Args {
    /// Compare instead of writing; exit 1 naming each file that differs.
    #[arg(long)]
    check: bool,
    /// With --check, print a unified diff of each difference.
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("build-tools: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Generates everything, then writes it or compares it. Returns whether the tree is clean.
fn run(args: &Args) -> Result<bool> {
    let root = workspace_root();
    let mut files = openapi::generate(&root)?;
    files.extend(protobuf::generate(&root)?);

    let mut clean = true;
    for file in &files {
        let target = root.join(&file.path);
        let current = std::fs::read_to_string(&target).unwrap_or_default();
        if current == file.contents {
            continue;
        }
        if args.check {
            clean = false;
            eprintln!(
                "build-tools: {} differs from what the specs generate; run `cargo run -p build-tools`",
                file.path.display()
            );
            if args.verbose {
                let diff = similar::TextDiff::from_lines(&current, &file.contents);
                eprintln!(
                    "{}",
                    diff.unified_diff()
                        .header("checked in", "generated")
                        .context_radius(3)
                );
            }
        } else {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&target, &file.contents)
                .with_context(|| format!("writing {}", target.display()))?;
            println!("build-tools: wrote {}", file.path.display());
        }
    }
    Ok(clean)
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("build-tools/ sits inside the workspace")
        .to_path_buf()
}
