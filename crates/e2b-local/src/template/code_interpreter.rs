//! The `code-interpreter-v1` template (E2B's code-interpreter SDKs' default): the `debian`
//! template plus, from PyPI, IPython's kernel (`ipykernel`), the bash kernel
//! (`bash_kernel`), numpy, pandas, matplotlib, pillow and E2B's chart extractor
//! (`e2b-charts`), with IPython set up as E2B's template sets it (plain tracebacks, whole
//! collections, the `e2b/data`, `e2b/chart` and JSON formatters). It is built with the
//! template system on first use (see [`crate::lifecycle`]) and kept as a built template
//! like any other; its sandboxes run the code-interpreter server
//! ([`crate::code_interpreter_role`]), started by envd because of
//! [`MARKER`](crate::code_interpreter_role::MARKER).

use base64::Engine as _;

use crate::code_interpreter_role::MARKER;

/// The template's name.
pub const NAME: &str = "code-interpreter-v1";
/// The template it is built on.
pub const BASE: &str = super::debian::NAME;
/// The Python packages, pinned (versions that support bookworm's Python 3.11).
pub const PACKAGES: &[&str] = &[
    "ipykernel==7.4.0",
    "ipython==9.18.1",
    "bash_kernel==0.10.0",
    "numpy==2.4.6",
    "pandas==3.1.1",
    "matplotlib==3.11.2",
    "pillow==13.0.0",
    "e2b-charts==1.0.0",
];
/// IPython's configuration for every kernel (`/etc/ipython/ipython_kernel_config.py`).
const KERNEL_CONFIG: &str = include_str!("code_interpreter/ipython_kernel_config.py");
/// The formatters that configuration runs in each kernel.
const FORMATTERS: &str = include_str!("code_interpreter/code_interpreter_formatters.py");
/// Where [`FORMATTERS`] is installed (named in [`KERNEL_CONFIG`]).
const FORMATTERS_PATH: &str = "/usr/local/share/e2b/code_interpreter_formatters.py";

/// A shell command writing `content` to `path` (base64, so no quoting can break it).
fn write_file(path: &str, content: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(content);
    format!("mkdir -p \"$(dirname {path})\" && echo {encoded} | base64 -d > {path}")
}

/// The build's steps as `(type, args)`, in E2B's build API form.
pub fn steps() -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("USER", vec!["root".into()]),
        (
            "RUN",
            vec![format!(
                "pip install --no-cache-dir --disable-pip-version-check --break-system-packages {}",
                PACKAGES.join(" ")
            )],
        ),
        (
            "RUN",
            vec!["python3 -m ipykernel install --prefix /usr/local --name python3 --display-name 'Python 3' && python3 -m bash_kernel.install --prefix /usr/local".into()],
        ),
        (
            "RUN",
            vec![format!(
                "{} && {} && touch {MARKER}",
                write_file("/etc/ipython/ipython_kernel_config.py", KERNEL_CONFIG),
                write_file(FORMATTERS_PATH, FORMATTERS),
            )],
        ),
        // matplotlib builds its font cache on first import: once here, not in the first
        // execution of every sandbox.
        (
            "RUN",
            vec!["python3 -c 'import matplotlib.pyplot'".into(), "user".into()],
        ),
        ("USER", vec!["user".into()]),
        ("WORKDIR", vec!["/home/user".into()]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_is_valid_and_the_files_decode_to_their_content() {
        for (i, (kind, args)) in steps().iter().enumerate() {
            let raw = super::super::steps::RawStep {
                kind,
                args,
                files_hash: None,
            };
            super::super::steps::parse(i, raw).unwrap();
        }
        let cmd = write_file("/x/y.py", "a = 'b'\n");
        assert_eq!(
            cmd,
            "mkdir -p \"$(dirname /x/y.py)\" && echo YSA9ICdiJwo= | base64 -d > /x/y.py"
        );
        assert!(KERNEL_CONFIG.contains(FORMATTERS_PATH));
    }
}
