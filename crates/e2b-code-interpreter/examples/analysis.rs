//! A small data analysis in a code-interpreter sandbox: upload a CSV, summarise it with
//! pandas, plot it with matplotlib, and write the chart to `analysis.png` (or the path given
//! as the first argument).
//!
//! `cargo run -p e2b-code-interpreter --example analysis`: on the embedded local host (as
//! root; its first run builds the `code-interpreter-v1` template from Debian's archive and
//! PyPI, which takes minutes), or on E2B's cloud with `E2B_API_KEY` set.

use std::time::{Duration, Instant};

use e2b_code_interpreter::{Chart, RunCodeOptions, Sandbox};

const SALES: &str = "\
month,region,units
2026-01,north,120
2026-01,south,95
2026-02,north,132
2026-02,south,101
2026-03,north,150
2026-03,south,97
2026-04,north,161
2026-04,south,118
";

const ANALYSIS: &str = r#"
import pandas as pd
import matplotlib.pyplot as plt

sales = pd.read_csv("/home/user/sales.csv")
by_month = sales.pivot(index="month", columns="region", values="units")
print(by_month.describe().round(1).to_string())

ax = by_month.plot(kind="bar", figsize=(6, 4), title="Units sold by month")
ax.set_xlabel("Month")
ax.set_ylabel("Units")
plt.tight_layout()
plt.show()

sales.groupby("region")["units"].sum()
"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> e2b::Result<()> {
    let output = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "analysis.png".to_owned());
    let sandbox = create().await?;
    println!("sandbox {}", sandbox.sandbox_id());

    sandbox.files().write("/home/user/sales.csv", SALES).await?;
    let execution = sandbox
        .run_code(
            ANALYSIS,
            RunCodeOptions::new()
                .timeout(Duration::from_secs(120))
                .on_stdout(|m| print!("{}", m.line))
                .on_stderr(|m| eprint!("{}", m.line)),
        )
        .await?;
    if let Some(error) = &execution.error {
        eprintln!("{}", error.traceback);
        sandbox.kill().await?;
        return Err(e2b::Error::Sandbox(e2b::error::Context::new(format!(
            "the analysis raised {error}"
        ))));
    }
    println!(
        "units per region:\n{}",
        execution.text().unwrap_or_default()
    );

    for result in &execution.results {
        if let Some(Chart::Bar(bar)) = &result.chart {
            println!(
                "chart: {:?}, {} bars",
                bar.title.as_deref().unwrap_or_default(),
                bar.elements.len()
            );
        }
        if let Some(png) = result.png_bytes()? {
            std::fs::write(&output, &png).map_err(|e| {
                e2b::Error::Sandbox(e2b::error::Context::new(format!("writing {output}: {e}")))
            })?;
            println!("wrote {output} ({} bytes)", png.len());
        }
    }
    sandbox.kill().await?;
    Ok(())
}

/// Creates the sandbox, waiting while the local host builds the template (it answers 503).
async fn create() -> e2b::Result<Sandbox> {
    let started = Instant::now();
    let mut told = false;
    loop {
        match Sandbox::builder()
            .timeout(Duration::from_secs(300))
            .create()
            .await
        {
            Err(e)
                if e.http_status() == Some(503)
                    && started.elapsed() < Duration::from_secs(3600) =>
            {
                if !told {
                    eprintln!("waiting for the code-interpreter-v1 template to build: {e}");
                    told = true;
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            other => return other,
        }
    }
}
