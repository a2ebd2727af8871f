//! Prepare a sandbox once, fork it twice, and let the forks diverge: each fork starts from
//! the prepared files and goes its own way, while the source stays as it was. Then keep the
//! prepared state as a snapshot and start a sandbox from it.
//!
//! `cargo run -p e2b --example fork`: on the embedded local host (root), or on E2B's cloud
//! with `E2B_API_KEY` set. On e2b-local a fork copies the files, not processes or memory.

use std::time::Duration;

use e2b::{ForkOptions, RunOptions, Sandbox};

#[tokio::main(flavor = "current_thread")]
async fn main() -> e2b::Result<()> {
    let source = Sandbox::builder()
        .timeout(Duration::from_secs(120))
        .metadata("example", "fork")
        .create()
        .await?;
    // The prepared state: a work directory with a counter in it.
    source
        .commands()
        .run(
            "mkdir -p ~/work && echo 0 > ~/work/counter",
            RunOptions::new(),
        )
        .await?;
    println!("source {} prepared", source.sandbox_id());

    let forks = source
        .fork(ForkOptions::new().count(2).timeout(Duration::from_secs(60)))
        .await?;
    for (i, fork) in forks.into_iter().enumerate() {
        let fork = fork?;
        // Each fork adds its own number; the others never see it.
        let step = (i + 1) * 10;
        let add = format!(
            "echo $(( $(cat ~/work/counter) + {step} )) > ~/work/counter; cat ~/work/counter"
        );
        let out = fork.commands().run(&add, RunOptions::new()).await?;
        println!("fork {} counter: {}", fork.sandbox_id(), out.stdout.trim());
        fork.kill().await?;
    }
    let out = source
        .commands()
        .run("cat ~/work/counter", RunOptions::new())
        .await?;
    println!("source counter: {}", out.stdout.trim());

    let snapshot = source.create_snapshot(Some("fork-example")).await?;
    let copy = Sandbox::builder()
        .template(&snapshot.snapshot_id)
        .timeout(Duration::from_secs(60))
        .create()
        .await?;
    let out = copy
        .commands()
        .run("cat ~/work/counter", RunOptions::new())
        .await?;
    println!(
        "sandbox from snapshot {}: counter {}",
        snapshot.snapshot_id,
        out.stdout.trim()
    );
    copy.kill().await?;
    Sandbox::delete_snapshot(source.connection_config(), &snapshot.snapshot_id).await?;
    source.kill().await?;
    Ok(())
}
