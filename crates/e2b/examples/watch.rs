//! Watch a directory while writing into it.
//!
//! `cargo run -p e2b --example watch` (embedded local host, or E2B's cloud with `E2B_API_KEY`)

use std::time::Duration;

use e2b::{Sandbox, WatchOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> e2b::Result<()> {
    let sandbox = Sandbox::create().await?;
    let files = sandbox.files();
    files.make_dir("/tmp/watched").await?;
    let mut watch = files
        .watch_dir("/tmp/watched", WatchOptions::new().recursive(true))
        .await?;
    files.write("/tmp/watched/a.txt", "one").await?;
    files.make_dir("/tmp/watched/sub").await?;
    files.write("/tmp/watched/sub/b.txt", "two").await?;
    files.remove("/tmp/watched/a.txt").await?;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_secs(1), watch.next_event()).await
    {
        let event = event?;
        println!("{:?} {}", event.event_type, event.name);
    }
    watch.stop();
    sandbox.kill().await?;
    Ok(())
}
