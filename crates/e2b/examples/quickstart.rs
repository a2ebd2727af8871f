//! Create a sandbox, run a command, write and read a file, list a directory, run a command in
//! the background, and kill the sandbox.
//!
//! `cargo run -p e2b --example quickstart`: on the embedded local host, or on E2B's cloud with
//! `E2B_API_KEY` set.

use std::time::Duration;

use e2b::{CommandEvent, RunOptions, Sandbox};

#[tokio::main(flavor = "current_thread")]
async fn main() -> e2b::Result<()> {
    let sandbox = Sandbox::builder()
        .timeout(Duration::from_secs(120))
        .metadata("example", "quickstart")
        .create()
        .await?;
    println!(
        "sandbox {} (envd {})",
        sandbox.sandbox_id(),
        sandbox.envd_version()
    );

    let result = sandbox
        .commands()
        .run("uname -sr", RunOptions::new())
        .await?;
    print!("uname: {}", result.stdout);

    sandbox
        .files()
        .write("/tmp/hello.txt", "Hello from Rust!")
        .await?;
    println!(
        "read back: {}",
        sandbox.files().read("/tmp/hello.txt").await?
    );

    for entry in sandbox.files().list("/tmp", 1).await? {
        println!(
            "  {:?} {} ({} bytes)",
            entry.file_type, entry.path, entry.size
        );
    }

    let mut ticker = sandbox
        .commands()
        .run_background(
            "for i in 1 2 3; do echo tick $i; sleep 0.2; done",
            RunOptions::new(),
        )
        .await?;
    println!("background pid {}", ticker.pid());
    while let Some(event) = ticker.next_event().await {
        if let CommandEvent::Stdout { text, .. } = event? {
            print!("  {text}");
        }
    }

    sandbox.kill().await?;
    println!("killed");
    Ok(())
}
