//! A build's steps, as E2B's build API sends them (`{type, args, force, filesHash}`),
//! checked once when the build is started, and the cache keys they chain into.

use sha2::{Digest as _, Sha256};

/// Most steps one build may have.
pub const MAX_STEPS: usize = 200;
/// Longest argument of a step, in bytes (a RUN command included).
pub const MAX_ARG_BYTES: usize = 64 * 1024;

/// One checked build step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `RUN cmd [user]`: a shell command, as `user` (default: the build's current user).
    Run {
        /// The command, run with `/bin/sh -c`.
        cmd: String,
        /// The user it runs as, when the step names one.
        user: Option<String>,
    },
    /// `COPY src dest [user] [mode]`: files of the uploaded archive `files_hash`.
    Copy {
        /// The path (or glob) relative to the build context.
        src: String,
        /// Where the files go (relative paths are taken from the current workdir).
        dest: String,
        /// Owner (`user` or `user:group`; default: the build's current user).
        owner: Option<String>,
        /// Octal mode for the copied files.
        mode: Option<u32>,
        /// The archive's hash, as uploaded to `/templates/{id}/files/{hash}`.
        files_hash: String,
    },
    /// `ENV k1 v1 k2 v2 ...`.
    Env(Vec<(String, String)>),
    /// `WORKDIR dir`: later steps (and the template's sandboxes) start there; created if
    /// missing.
    Workdir(String),
    /// `USER name`: later steps (and the template's sandboxes) run as `name`.
    User(String),
}

impl Step {
    /// Whether the step changes files (and so makes a layer).
    pub fn makes_layer(&self) -> bool {
        matches!(
            self,
            Step::Run { .. } | Step::Copy { .. } | Step::Workdir(_)
        )
    }

    /// The name shown in logs and errors, as E2B's builder names steps.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Run { .. } => "RUN",
            Step::Copy { .. } => "COPY",
            Step::Env(_) => "ENV",
            Step::Workdir(_) => "WORKDIR",
            Step::User(_) => "USER",
        }
    }
}

/// Why a step list was refused; the message names the step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("steps[{index}] ({kind}): {reason}")]
pub struct StepError {
    /// Index in the step list.
    pub index: usize,
    /// The step's `type` as sent.
    pub kind: String,
    /// What was wrong.
    pub reason: String,
}

/// A step as sent: `type`, `args`, `filesHash`.
#[derive(Debug, Clone, Copy)]
pub struct RawStep<'a> {
    /// `type`.
    pub kind: &'a str,
    /// `args`.
    pub args: &'a [String],
    /// `filesHash`.
    pub files_hash: Option<&'a str>,
}

/// Checks one step.
///
/// # Errors
///
/// [`StepError`] naming the step and what is wrong with it.
pub fn parse(index: usize, raw: RawStep<'_>) -> Result<Step, StepError> {
    let fail = |reason: String| StepError {
        index,
        kind: raw.kind.to_owned(),
        reason,
    };
    if let Some(a) = raw
        .args
        .iter()
        .find(|a| a.len() > MAX_ARG_BYTES || a.contains('\0'))
    {
        return Err(fail(if a.contains('\0') {
            "an argument contains a NUL byte".into()
        } else {
            format!("an argument is longer than {MAX_ARG_BYTES} bytes")
        }));
    }
    let arg = |i: usize| raw.args.get(i).filter(|a| !a.is_empty()).cloned();
    let step = match raw.kind {
        "RUN" => {
            let cmd = arg(0).ok_or_else(|| fail("a command is required".into()))?;
            if raw.args.len() > 2 {
                return Err(fail("takes a command and an optional user".into()));
            }
            let user = arg(1);
            if let Some(u) = &user {
                check_user(u).map_err(fail)?;
            }
            Step::Run { cmd, user }
        }
        "COPY" => {
            let (Some(src), Some(dest)) = (arg(0), arg(1)) else {
                return Err(fail("a source and a destination are required".into()));
            };
            if raw.args.len() > 4 {
                return Err(fail("takes source, destination, user and mode".into()));
            }
            check_source(&src).map_err(fail)?;
            let owner = arg(2);
            if let Some(o) = &owner {
                for part in o.splitn(2, ':') {
                    check_user(part).map_err(fail)?;
                }
            }
            let mode = arg(3)
                .map(|m| match u32::from_str_radix(&m, 8) {
                    Ok(v) if v <= 0o7777 => Ok(v),
                    _ => Err(fail(format!("mode '{m}' is not an octal file mode"))),
                })
                .transpose()?;
            let files_hash = raw
                .files_hash
                .filter(|h| is_files_hash(h))
                .ok_or_else(|| {
                    fail("filesHash (64 hex digits of the uploaded files) is required".into())
                })?
                .to_owned();
            Step::Copy {
                src,
                dest,
                owner,
                mode,
                files_hash,
            }
        }
        "ENV" => {
            if raw.args.is_empty() || !raw.args.len().is_multiple_of(2) {
                return Err(fail("takes pairs of name and value".into()));
            }
            let mut vars = Vec::new();
            for pair in raw.args.chunks(2) {
                let name = &pair[0];
                if name.is_empty() || name.contains('=') {
                    return Err(fail(format!(
                        "'{name}' is not an environment variable name"
                    )));
                }
                vars.push((name.clone(), pair[1].clone()));
            }
            Step::Env(vars)
        }
        "WORKDIR" => {
            let dir = arg(0).ok_or_else(|| fail("a directory is required".into()))?;
            Step::Workdir(dir)
        }
        "USER" => {
            let user = arg(0).ok_or_else(|| fail("a user name is required".into()))?;
            check_user(&user).map_err(fail)?;
            Step::User(user)
        }
        other => {
            return Err(fail(format!(
                "unknown step type '{other}' (expected RUN, COPY, ENV, WORKDIR or USER)"
            )));
        }
    };
    Ok(step)
}

/// Whether `h` looks like a files hash (SHA-256 in lowercase hex).
pub fn is_files_hash(h: &str) -> bool {
    h.len() == 64
        && h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A user or group name as `useradd` takes it, or a numeric id.
fn check_user(u: &str) -> Result<(), String> {
    let ok = !u.is_empty()
        && u.len() <= 32
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        && !u.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("'{u}' is not a user name"))
    }
}

/// A COPY source must stay inside the build context.
fn check_source(src: &str) -> Result<(), String> {
    let escapes = src.starts_with('/')
        || std::path::Path::new(src)
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
    if escapes {
        return Err(format!(
            "source '{src}' is outside the build context (it must be a relative path without '..')"
        ));
    }
    Ok(())
}

/// The cache key of a step: a hash over its parent's key and what the step is, so a step is
/// reused only when everything before it is the same (E2B's cache semantics).
pub fn chain_key(parent: &str, raw: RawStep<'_>) -> String {
    let mut h = Sha256::new();
    h.update(parent.as_bytes());
    h.update([0]);
    h.update(raw.kind.as_bytes());
    for a in raw.args {
        h.update([0]);
        h.update(a.as_bytes());
    }
    h.update([1]);
    h.update(raw.files_hash.unwrap_or_default().as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(kind: &str, args: &[&str], hash: Option<&str>) -> Result<Step, StepError> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        parse(
            3,
            RawStep {
                kind,
                args: &args,
                files_hash: hash,
            },
        )
    }

    #[test]
    fn steps_are_checked_and_errors_name_the_step() {
        let h = "a".repeat(64);
        assert_eq!(
            step("COPY", &["app", "/app/", "root", "0755"], Some(&h)),
            Ok(Step::Copy {
                src: "app".into(),
                dest: "/app/".into(),
                owner: Some("root".into()),
                mode: Some(0o755),
                files_hash: h.clone(),
            })
        );
        assert_eq!(
            step("RUN", &["echo hi"], None),
            Ok(Step::Run {
                cmd: "echo hi".into(),
                user: None
            })
        );
        let bad = [
            (
                step("FROM", &["x"], None),
                "steps[3] (FROM): unknown step type 'FROM' (expected RUN, COPY, ENV, WORKDIR or USER)",
            ),
            (
                step("COPY", &["../etc/passwd", "/x"], Some(&h)),
                "steps[3] (COPY): source '../etc/passwd' is outside the build context (it must be a relative path without '..')",
            ),
            (
                step("COPY", &["a", "/x"], None),
                "steps[3] (COPY): filesHash (64 hex digits of the uploaded files) is required",
            ),
            (
                step("COPY", &["a", "/x", "", "999"], Some(&h)),
                "steps[3] (COPY): mode '999' is not an octal file mode",
            ),
            (
                step("ENV", &["A"], None),
                "steps[3] (ENV): takes pairs of name and value",
            ),
            (
                step("ENV", &["A=B", "c"], None),
                "steps[3] (ENV): 'A=B' is not an environment variable name",
            ),
            (
                step("USER", &["bob;rm"], None),
                "steps[3] (USER): 'bob;rm' is not a user name",
            ),
            (
                step("RUN", &["a\0b"], None),
                "steps[3] (RUN): an argument contains a NUL byte",
            ),
        ];
        for (got, want) in bad {
            assert_eq!(got.map_err(|e| e.to_string()), Err(want.to_owned()));
        }
    }

    #[test]
    fn keys_chain_over_everything_before() {
        let a = ["echo a".to_owned()];
        let b = ["echo b".to_owned()];
        let run = |args| RawStep {
            kind: "RUN",
            args,
            files_hash: None,
        };
        let k1 = chain_key("base", run(&a));
        assert_eq!(k1, chain_key("base", run(&a)));
        assert_ne!(k1, chain_key("other", run(&a)));
        assert_ne!(k1, chain_key("base", run(&b)));
        assert_ne!(chain_key(&k1, run(&b)), chain_key("base", run(&b)));
    }
}
