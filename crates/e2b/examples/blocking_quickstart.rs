//! The Python "Sandbox sync" quickstart, line by line, with the blocking API:
//!
//! ```python
//! from e2b import Sandbox
//!
//! sandbox = Sandbox.create()                              # create
//! result = sandbox.commands.run("echo hello")             # run a command
//! print(result.stdout)
//! sandbox.files.write("/tmp/hello.txt", "Hello, world!")  # write a file
//! print(sandbox.files.read("/tmp/hello.txt"))             # read it back
//! for entry in sandbox.files.list("/tmp"):                # list a directory
//!     print(entry.name)
//! sandbox.kill()                                          # kill
//! ```
//!
//! `cargo run -p e2b --example blocking_quickstart`: on the embedded local host, or on E2B's
//! cloud with `E2B_API_KEY` set.

use e2b::RunOptions;
use e2b::blocking::Sandbox;

fn main() -> e2b::Result<()> {
    let sandbox = Sandbox::create()?;
    let result = sandbox.commands().run("echo hello", RunOptions::new())?;
    print!("{}", result.stdout);
    sandbox.files().write("/tmp/hello.txt", "Hello, world!")?;
    println!("{}", sandbox.files().read("/tmp/hello.txt")?);
    for entry in sandbox.files().list("/tmp", 1)? {
        println!("{}", entry.name);
    }
    sandbox.kill()?;
    Ok(())
}
