//! Build a small template (on `base`: a copied file, environment variables, a command) and
//! start a sandbox from it.
//!
//! `cargo run -p e2b --example template`: on the embedded local host, or on E2B's cloud with
//! `E2B_API_KEY` set.

use std::time::Duration;

use e2b::template::{BuildOptions, Template};
use e2b::{RunOptions, Sandbox};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The build context: one file to copy into the template.
    let context = std::env::temp_dir().join(format!("e2b-template-example-{}", std::process::id()));
    std::fs::create_dir_all(&context)?;
    std::fs::write(context.join("greeting.txt"), "Hello from a template!\n")?;

    let template = Template::new()
        .file_context_path(&context)
        .from_template("base")
        .copy("greeting.txt", "/home/user/greeting.txt")
        .set_envs([("GREETING_FILE", "/home/user/greeting.txt")])
        .run_cmd("cat $GREETING_FILE | tr a-z A-Z > /home/user/shout.txt");

    let info = template
        .build(
            "rust-example",
            BuildOptions::new().on_build_logs(|entry| println!("{entry}")),
        )
        .await?;
    println!(
        "built template {} (build {})",
        info.template_id, info.build_id
    );

    let sandbox = Sandbox::builder()
        .template(&info.name)
        .timeout(Duration::from_secs(60))
        .create()
        .await?;
    let result = sandbox
        .commands()
        .run("cat $GREETING_FILE ~/shout.txt", RunOptions::new())
        .await?;
    print!("{}", result.stdout);
    sandbox.kill().await?;
    let _ = std::fs::remove_dir_all(&context);
    Ok(())
}
