//! Installed Jupyter kernels: `<dir>/<name>/kernel.json` under the configured kernel
//! directories, as `jupyter kernelspec list` finds them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// An installed kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSpec {
    /// The directory's name (e.g. `python3`, `bash`).
    pub name: String,
    /// The language the kernel declares, lowercased (e.g. `python`, `bash`).
    pub language: String,
    /// The command, `{connection_file}` still in it; a bare program name is resolved at
    /// launch.
    pub argv: Vec<String>,
    /// Extra environment the spec asks for.
    pub env: Vec<(String, String)>,
    /// Where the spec lives.
    pub dir: PathBuf,
}

#[derive(Deserialize)]
struct KernelJson {
    argv: Vec<String>,
    #[serde(default)]
    language: String,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
}

/// The language E2B's SDKs mean by `language`: lowercased, `js` → `javascript`, `ts` →
/// `typescript`, nothing → `python`.
pub fn normalize_language(language: Option<&str>) -> String {
    match language.map(|l| l.trim().to_lowercase()) {
        None => "python".to_owned(),
        Some(l) if l.is_empty() => "python".to_owned(),
        Some(l) if l == "js" => "javascript".to_owned(),
        Some(l) if l == "ts" => "typescript".to_owned(),
        Some(l) => l,
    }
}

/// Every readable spec under `dirs`, earlier directories first.
pub fn installed(dirs: &[PathBuf]) -> Vec<KernelSpec> {
    let mut specs: Vec<KernelSpec> = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            if let Some(spec) = read(&path)
                && !specs.iter().any(|s| s.name == spec.name)
            {
                specs.push(spec);
            }
        }
    }
    specs
}

fn read(dir: &Path) -> Option<KernelSpec> {
    let name = dir.file_name()?.to_str()?.to_owned();
    let json: KernelJson =
        serde_json::from_slice(&std::fs::read(dir.join("kernel.json")).ok()?).ok()?;
    if json.argv.is_empty() {
        return None;
    }
    Some(KernelSpec {
        name,
        language: json.language.to_lowercase(),
        argv: json.argv,
        env: json.env.into_iter().collect(),
        dir: dir.to_owned(),
    })
}

/// The kernel serving `language` (normalized): the spec named like it, else one declaring
/// it (`python3` declares `python`); `typescript` runs on the JavaScript kernel, as in E2B.
pub fn for_language<'a>(specs: &'a [KernelSpec], language: &str) -> Option<&'a KernelSpec> {
    let language = if language == "typescript" {
        "javascript"
    } else {
        language
    };
    specs
        .iter()
        .find(|s| s.name == language)
        .or_else(|| specs.iter().find(|s| s.language == language))
}

impl KernelSpec {
    /// The command line for a connection file. A bare program name (`python`) is taken from
    /// the prefix the spec is installed in (`<prefix>/share/jupyter/kernels/<name>` →
    /// `<prefix>/bin/python`) when it is there, so a virtualenv's kernel runs its own
    /// interpreter; otherwise it is left to `PATH`.
    pub fn command(&self, connection_file: &Path) -> Vec<String> {
        let file = connection_file.to_string_lossy();
        let mut argv: Vec<String> = self
            .argv
            .iter()
            .map(|a| a.replace("{connection_file}", &file))
            .collect();
        if !argv[0].contains('/')
            && let Some(prefix) = self.dir.ancestors().nth(4)
        {
            let candidate = prefix.join("bin").join(&argv[0]);
            if candidate.is_file() {
                argv[0] = candidate.to_string_lossy().into_owned();
            }
        }
        argv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_spec(root: &Path, name: &str, json: &str) {
        std::fs::create_dir_all(root.join(name)).unwrap();
        std::fs::write(root.join(name).join("kernel.json"), json).unwrap();
    }

    #[test]
    fn languages_normalize_as_e2b_does() {
        assert_eq!(normalize_language(None), "python");
        assert_eq!(normalize_language(Some(" Python ")), "python");
        assert_eq!(normalize_language(Some("JS")), "javascript");
        assert_eq!(normalize_language(Some("ts")), "typescript");
        assert_eq!(normalize_language(Some("")), "python");
    }

    #[test]
    fn specs_are_found_by_name_or_declared_language_and_argv_resolves_in_their_prefix() {
        let prefix = tempfile::tempdir().unwrap();
        let kernels = prefix.path().join("share/jupyter/kernels");
        write_spec(
            &kernels,
            "python3",
            r#"{"argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "language": "python", "display_name": "Python 3"}"#,
        );
        write_spec(
            &kernels,
            "bash",
            r#"{"argv": ["/usr/bin/python3", "-m", "bash_kernel", "-f", "{connection_file}"], "language": "bash", "env": {"PS1": "$"}}"#,
        );
        write_spec(&kernels, "broken", "not json");
        let specs = installed(&[kernels.clone(), PathBuf::from("/nonexistent")]);
        assert_eq!(specs.len(), 2);
        let python = for_language(&specs, "python").unwrap();
        assert_eq!(python.name, "python3");
        let bash = for_language(&specs, "bash").unwrap();
        assert_eq!(bash.env, vec![("PS1".to_owned(), "$".to_owned())]);
        assert!(for_language(&specs, "r").is_none());

        let file = Path::new("/run/k.json");
        // No `<prefix>/bin/python` yet: left to PATH.
        assert_eq!(
            python.command(file),
            ["python", "-m", "ipykernel_launcher", "-f", "/run/k.json"]
        );
        std::fs::create_dir_all(prefix.path().join("bin")).unwrap();
        std::fs::write(prefix.path().join("bin/python"), "").unwrap();
        assert_eq!(
            python.command(file)[0],
            prefix.path().join("bin/python").to_string_lossy()
        );
        assert_eq!(bash.command(file)[0], "/usr/bin/python3");
    }
}
