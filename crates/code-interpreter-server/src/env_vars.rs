//! Environment variables set inside a kernel for one execution (and the sandbox's global ones
//! once per kernel), as code in the kernel's language, the way E2B's server does it.
//!
//! Values are written as JSON string literals, which Python, JavaScript, R and Java read as
//! the same string; bash gets single quotes. Names must be shell identifiers (checked by the
//! API before anything runs).

use std::collections::BTreeMap;

/// Whether `name` is usable as an environment variable name in every kernel language:
/// `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn literal(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

fn bash_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn set_one(language: &str, name: &str, value: &str) -> Option<String> {
    Some(match language {
        "python" => format!("os.environ[{}] = {}", literal(name), literal(value)),
        "javascript" | "typescript" => {
            format!("process.env[{}] = {}", literal(name), literal(value))
        }
        "r" => format!("Sys.setenv({name} = {})", literal(value)),
        "java" => format!("System.setProperty({}, {});", literal(name), literal(value)),
        "bash" => format!("export {name}={}", bash_quote(value)),
        _ => return None,
    })
}

fn unset_one(language: &str, name: &str) -> Option<String> {
    Some(match language {
        "python" => format!("os.environ.pop({}, None)", literal(name)),
        "javascript" | "typescript" => format!("delete process.env[{}]", literal(name)),
        "r" => format!("Sys.unsetenv({})", literal(name)),
        "java" => format!("System.clearProperty({});", literal(name)),
        "bash" => format!("unset {name}"),
        _ => return None,
    })
}

fn join(language: &str, lines: Vec<String>) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut code = lines.join("\n");
    if language == "python" {
        code.insert_str(0, "import os\n");
    }
    code
}

/// Code setting `vars` (empty when there is nothing to set or the language has no form).
pub(crate) fn set_code(language: &str, vars: &BTreeMap<String, String>) -> String {
    join(
        language,
        vars.iter()
            .filter_map(|(k, v)| set_one(language, k, v))
            .collect(),
    )
}

/// Code undoing [`set_code`] for `vars`: back to the global value where there is one, unset
/// otherwise.
pub(crate) fn reset_code(
    language: &str,
    vars: &BTreeMap<String, String>,
    globals: &BTreeMap<String, String>,
) -> String {
    join(
        language,
        vars.keys()
            .filter_map(|k| match globals.get(k) {
                Some(v) => set_one(language, k, v),
                None => unset_one(language, k),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_identifiers() {
        assert!(valid_name("A_1"));
        assert!(valid_name("_x"));
        assert!(!valid_name(""));
        assert!(!valid_name("1A"));
        assert!(!valid_name("A-B"));
        assert!(!valid_name("A=B"));
    }

    #[test]
    fn values_are_quoted_for_each_language() {
        let vars = BTreeMap::from([("A".to_owned(), "it's \"x\"\n".to_owned())]);
        assert_eq!(
            set_code("python", &vars),
            "import os\nos.environ[\"A\"] = \"it's \\\"x\\\"\\n\""
        );
        assert_eq!(set_code("bash", &vars), "export A='it'\\''s \"x\"\n'");
        assert_eq!(
            set_code("javascript", &vars),
            "process.env[\"A\"] = \"it's \\\"x\\\"\\n\""
        );
        assert_eq!(set_code("cobol", &vars), "");
        let globals = BTreeMap::from([("A".to_owned(), "g".to_owned())]);
        assert_eq!(reset_code("bash", &vars, &globals), "export A='g'");
        assert_eq!(
            reset_code("python", &vars, &BTreeMap::new()),
            "import os\nos.environ.pop(\"A\", None)"
        );
    }
}
