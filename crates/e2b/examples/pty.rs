//! An interactive terminal: start `bash -i -l` in a PTY, type into it, print what it shows.
//!
//! `cargo run -p e2b --example pty` (embedded local host, or E2B's cloud with `E2B_API_KEY`)

use e2b::{CommandEvent, PtyOptions, PtySize, Sandbox};

#[tokio::main(flavor = "current_thread")]
async fn main() -> e2b::Result<()> {
    let sandbox = Sandbox::create().await?;
    let mut terminal = sandbox
        .pty()
        .create(PtyOptions::new().size(PtySize::new(100, 30)))
        .await?;
    terminal
        .send_stdin("echo \"$TERM $(tput cols)x$(tput lines)\"\n")
        .await?;
    terminal.resize(PtySize::new(120, 40)).await?;
    terminal.send_stdin("stty size; exit\n").await?;
    while let Some(event) = terminal.next_event().await {
        if let CommandEvent::Pty(bytes) = event? {
            print!("{}", String::from_utf8_lossy(&bytes));
        }
    }
    sandbox.kill().await?;
    Ok(())
}
