//! [`Template::from_dockerfile`]: a single-stage Dockerfile turned into template steps, as
//! the Python SDK 2.63 converts it (`e2b/template/dockerfile_parser.py`).
//!
//! The Dockerfile is parsed with the `dockerfile-parser` crate (a pest grammar; it handles
//! line continuations, comments, exec and shell forms, quoted `ENV` values), and the
//! instructions it leaves generic (`ADD`, `WORKDIR`, `USER`, ...) are split here. Words are
//! unquoted, but `$VARIABLES` are left for the build's shell, as the Python SDK leaves them.

use dockerfile_parser::{Dockerfile, Instruction, ShellOrExecExpr};

use super::ready::{shell_quote, wait_for_timeout};
use super::{CopyOptions, Template};

/// Flags of `COPY`/`ADD` that have no effect in a template (accepted with a warning).
const IGNORED_COPY_FLAGS: &[&str] = &[
    "link",
    "exclude",
    "parents",
    "keep-git-dir",
    "checksum",
    "unpack",
];

/// Flags of `RUN` that have no effect in a template (accepted with a warning).
const IGNORED_RUN_FLAGS: &[&str] = &["mount", "network", "security", "device"];

/// Instructions with no equivalent in a template.
const IGNORED_INSTRUCTIONS: &[&str] = &["EXPOSE", "VOLUME", "LABEL", "MAINTAINER"];

/// A start command as the Dockerfile gave it.
struct StartCommand {
    exec: bool,
    args: Vec<String>,
}

/// Applies `content`'s instructions to `template`; returns it with the `FROM` image, or a
/// message naming the line that is wrong.
pub(super) fn apply(mut template: Template, content: &str) -> Result<(Template, String), String> {
    let dockerfile = Dockerfile::parse(content).map_err(|e| format!("{e}"))?;
    let line_of = |offset: usize| content[..offset.min(content.len())].matches('\n').count() + 1;

    let froms: Vec<_> = dockerfile
        .instructions
        .iter()
        .filter_map(Instruction::as_from)
        .collect();
    let from = match froms.as_slice() {
        [] => return Err("Dockerfile must contain a FROM instruction".to_owned()),
        [from] => *from,
        _ => return Err("Multi-stage Dockerfiles are not supported".to_owned()),
    };
    for flag in &from.flags {
        if flag.name.content != "platform" {
            return Err(format!(
                "line {}: unknown flag: {}",
                line_of(from.span.start),
                flag.name.content
            ));
        }
    }
    let base_image = unquote(&from.image.content);

    // Docker's defaults while building, E2B's afterwards (unless the Dockerfile set them).
    template = template.set_user("root").set_workdir("/");
    let mut user_changed = false;
    let mut workdir_changed = false;
    let mut cmd: Option<StartCommand> = None;
    let mut entrypoint: Option<StartCommand> = None;
    // ARG and ENV values declared so far, for `COPY --chmod=$MODE` (the only place the
    // Python SDK resolves them; elsewhere `$X` is left for the build's shell).
    let mut vars: Vec<(String, String)> = Vec::new();

    for instruction in &dockerfile.instructions {
        let start = instruction.span().start;
        let line = line_of(start);
        let at = |message: String| format!("line {line}: {message}");
        if start < from.span.start && instruction.as_arg().is_none() {
            return Err(at(format!(
                "{} must be preceded by a FROM instruction",
                name_of(instruction)
            )));
        }
        match instruction {
            Instruction::From(_) => {}
            Instruction::Run(run) => {
                let command = match &run.expr {
                    ShellOrExecExpr::Exec(array) => shell_join(&array.as_str_vec()),
                    // The grammar keeps `RUN --flag=...` in the command, and with flags an
                    // exec form is not recognized: take both apart here.
                    ShellOrExecExpr::Shell(shell) => {
                        let shell = shell.to_string();
                        let (flags, rest) = leading_flags(&shell);
                        for (name, _) in &flags {
                            if !IGNORED_RUN_FLAGS.contains(&name.as_str()) {
                                return Err(at(format!("unknown flag: {name}")));
                            }
                            tracing::warn!(line, "Ignoring unsupported RUN flag --{name}");
                        }
                        match exec_form(rest) {
                            Some(words) => {
                                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                                shell_join(&words)
                            }
                            None => rest.to_owned(),
                        }
                    }
                };
                if command.trim_start().starts_with("<<") || command.contains(" <<") {
                    return Err(at("heredocs are not supported".to_owned()));
                }
                if command.trim().is_empty() {
                    return Err(at("RUN requires at least one argument".to_owned()));
                }
                template = template.run_cmd(command);
            }
            Instruction::Copy(copy) => {
                let mut flags: Vec<(String, String)> = copy
                    .flags
                    .iter()
                    .map(|f| (f.name.content.clone(), f.value.content.clone()))
                    .collect();
                let mut words: Vec<String> =
                    copy.sources.iter().map(|s| s.content.clone()).collect();
                words.push(copy.destination.content.clone());
                // The grammar only knows `--name=value` flags; a bare `--link` arrives as a
                // source.
                let bare = words.iter().take_while(|w| w.starts_with("--")).count();
                for word in words.drain(..bare) {
                    let (more, _) = leading_flags(&word);
                    flags.extend(more);
                }
                template = apply_copy(template, "COPY", &flags, &words, &vars).map_err(at)?;
            }
            Instruction::Env(env) => {
                let pairs: Vec<(String, String)> = env
                    .vars
                    .iter()
                    .map(|v| (unquote(&v.key.content), unquote(&v.value.to_string())))
                    .collect();
                if pairs.iter().any(|(k, _)| k.is_empty()) {
                    return Err(at("ENV names can not be blank".to_owned()));
                }
                for (key, value) in &pairs {
                    let resolved = substitute(value, &vars);
                    declare(&mut vars, key, resolved);
                }
                template = template.set_envs(pairs);
            }
            Instruction::Arg(arg) => {
                let name = unquote(&arg.name.content);
                if name.is_empty() {
                    return Err(at("ARG names can not be blank".to_owned()));
                }
                let value = arg
                    .value
                    .as_ref()
                    .map(|v| unquote(&v.content))
                    .unwrap_or_default();
                let resolved = substitute(&value, &vars);
                declare(&mut vars, &name, resolved);
                template = template.set_envs([(name, value)]);
            }
            Instruction::Cmd(c) => cmd = Some(start_command(&c.expr)),
            Instruction::Entrypoint(e) => entrypoint = Some(start_command(&e.expr)),
            Instruction::Label(_) => {}
            Instruction::Misc(misc) => {
                let name = misc.instruction.content.to_ascii_uppercase();
                let arguments = misc.arguments.to_string();
                match name.as_str() {
                    "ADD" => {
                        let (flags, words) = split_flags(&arguments);
                        template =
                            apply_copy(template, "ADD", &flags, &words, &vars).map_err(at)?;
                    }
                    "WORKDIR" => {
                        template = template.set_workdir(single(&name, &arguments).map_err(at)?);
                        workdir_changed = true;
                    }
                    "USER" => {
                        template = template.set_user(single(&name, &arguments).map_err(at)?);
                        user_changed = true;
                    }
                    other if IGNORED_INSTRUCTIONS.contains(&other) => {}
                    other => tracing::warn!(line, "Unsupported instruction: {other}"),
                }
            }
        }
    }

    if let Some(command) = start_cmd(entrypoint, cmd)
        && !command.trim().is_empty()
    {
        template = template.set_start_cmd(command, wait_for_timeout(20_000));
    }
    if !user_changed {
        template = template.set_user("user");
    }
    if !workdir_changed {
        template = template.set_workdir("/home/user");
    }
    Ok((template, base_image))
}

fn name_of(instruction: &Instruction) -> String {
    match instruction {
        Instruction::From(_) => "FROM".to_owned(),
        Instruction::Arg(_) => "ARG".to_owned(),
        Instruction::Label(_) => "LABEL".to_owned(),
        Instruction::Run(_) => "RUN".to_owned(),
        Instruction::Entrypoint(_) => "ENTRYPOINT".to_owned(),
        Instruction::Cmd(_) => "CMD".to_owned(),
        Instruction::Copy(_) => "COPY".to_owned(),
        Instruction::Env(_) => "ENV".to_owned(),
        Instruction::Misc(misc) => misc.instruction.content.to_ascii_uppercase(),
    }
}

fn start_command(expr: &ShellOrExecExpr) -> StartCommand {
    match expr {
        ShellOrExecExpr::Exec(array) => StartCommand {
            exec: true,
            args: array.elements.iter().map(|e| e.content.clone()).collect(),
        },
        ShellOrExecExpr::Shell(shell) => StartCommand {
            exec: false,
            args: vec![shell.to_string()],
        },
    }
}

/// The start command from `ENTRYPOINT` and `CMD`, combined as Docker combines them.
fn start_cmd(entrypoint: Option<StartCommand>, cmd: Option<StartCommand>) -> Option<String> {
    match (entrypoint, cmd) {
        (Some(entrypoint), cmd) if entrypoint.exec => {
            let mut words = entrypoint.args;
            if let Some(cmd) = cmd {
                if cmd.exec {
                    words.extend(cmd.args);
                } else if let Some(first) = cmd.args.into_iter().next() {
                    words.extend(["/bin/sh".to_owned(), "-c".to_owned(), first]);
                }
            }
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            (!words.is_empty()).then(|| shell_join(&words))
        }
        (Some(entrypoint), _) => entrypoint.args.into_iter().next(),
        (None, Some(cmd)) if cmd.exec => {
            let words: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
            (!words.is_empty()).then(|| shell_join(&words))
        }
        (None, Some(cmd)) => cmd.args.into_iter().next(),
        (None, None) => None,
    }
}

fn apply_copy(
    template: Template,
    instruction: &str,
    flags: &[(String, String)],
    words: &[String],
    vars: &[(String, String)],
) -> Result<Template, String> {
    let mut options = CopyOptions::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in flags {
        if seen.contains(&name.as_str()) {
            return Err(format!("duplicate flag specified: {name}"));
        }
        seen.push(name);
        match name.as_str() {
            "chown" => options.user = Some(unquote(value)),
            "chmod" => {
                let mode = unquote(value);
                let resolved = substitute(&mode, vars);
                let valid = (3..=4).contains(&resolved.len())
                    && resolved.bytes().all(|b| (b'0'..=b'7').contains(&b));
                if !valid {
                    let detail = if resolved == mode {
                        String::new()
                    } else {
                        format!(" (resolves to \"{resolved}\")")
                    };
                    return Err(format!(
                        "invalid chmod value \"{mode}\"{detail}, expected an octal mode such as \
                         0755"
                    ));
                }
                options.mode = u32::from_str_radix(&resolved, 8).ok();
            }
            "from" => {
                return Err(format!(
                    "{instruction} --from is not supported (multi-stage builds are not supported)"
                ));
            }
            ignored if IGNORED_COPY_FLAGS.contains(&ignored) => {
                tracing::warn!("Ignoring unsupported {instruction} flag --{ignored}");
            }
            other => return Err(format!("unknown flag: {other}")),
        }
    }
    let Some((dest, sources)) = words.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(format!("{instruction} requires at least two arguments"));
    };
    if dest.starts_with("<<") || sources.iter().any(|s| s.starts_with("<<")) {
        return Err("heredocs are not supported".to_owned());
    }
    let dest = unquote(dest);
    let mut template = template;
    for src in sources {
        let src = unquote(src);
        if instruction == "ADD" && is_remote_url(&src) {
            return Err(format!("ADD from a remote URL is not supported: {src}"));
        }
        template = template.copy_with(src, dest.clone(), options.clone());
    }
    Ok(template)
}

/// `scheme://`, as Docker recognizes a URL source of `ADD`.
fn is_remote_url(src: &str) -> bool {
    let Some((scheme, _)) = src.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
}

/// The `--flag[=value]` words at the start of `arguments`, and the rest.
fn leading_flags(arguments: &str) -> (Vec<(String, String)>, &str) {
    let mut rest = arguments.trim_start();
    let mut flags = Vec::new();
    while rest.starts_with("--") {
        let end = word_end(rest);
        let flag = &rest[2..end];
        let (name, value) = flag.split_once('=').unwrap_or((flag, "true"));
        flags.push((name.to_owned(), value.to_owned()));
        rest = rest[end..].trim_start();
    }
    (flags, rest)
}

/// The words of an exec form (`["a", "b"]`), if `arguments` is one.
fn exec_form(arguments: &str) -> Option<Vec<String>> {
    let trimmed = arguments.trim();
    if !trimmed.starts_with('[') {
        return None;
    }
    serde_json::from_str(trimmed).ok()
}

/// Flags, then the arguments (an exec form or shell words) of an instruction the grammar
/// leaves generic.
fn split_flags(arguments: &str) -> (Vec<(String, String)>, Vec<String>) {
    let (flags, rest) = leading_flags(arguments);
    let words = exec_form(rest).unwrap_or_else(|| split_words(rest));
    (flags, words)
}

/// Where the word at the start of `text` ends: the first whitespace outside quotes.
fn word_end(text: &str) -> usize {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, ch) in text.char_indices() {
        match (quote, ch) {
            _ if escaped => escaped = false,
            (Some('\''), '\'') => quote = None,
            (Some('\''), _) => {}
            (_, '\\') => escaped = true,
            (Some('"'), '"') => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(ch),
            (None, c) if c.is_whitespace() => return i,
            (None, _) => {}
        }
    }
    text.len()
}

/// Shell words, still quoted: split at whitespace outside quotes.
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let end = word_end(rest);
        words.push(rest[..end].to_owned());
        rest = rest[end..].trim_start();
    }
    words
}

/// The one argument of `WORKDIR`/`USER`, unquoted.
fn single(instruction: &str, arguments: &str) -> Result<String, String> {
    match split_words(arguments).as_slice() {
        [word] => Ok(unquote(word)),
        _ => Err(format!("{instruction} requires exactly one argument")),
    }
}

/// Records `name=value`, replacing an earlier declaration.
fn declare(vars: &mut Vec<(String, String)>, name: &str, value: String) {
    vars.retain(|(k, _)| k != name);
    vars.push((name.to_owned(), value));
}

/// `$NAME` and `${NAME}` replaced by declared values (unset names become empty, as the
/// Python SDK's resolving lexer does).
fn substitute(text: &str, vars: &[(String, String)]) -> String {
    let lookup = |name: &str| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
            .to_owned()
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(braced) = after.strip_prefix('{')
            && let Some(end) = braced.find('}')
        {
            out.push_str(&lookup(&braced[..end]));
            rest = &braced[end + 1..];
            continue;
        }
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if len == 0 {
            out.push('$');
        } else {
            out.push_str(&lookup(&after[..len]));
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// Removes shell quoting from a word (single and double quotes, backslash escapes) and
/// leaves `$VARIABLES` as they are.
fn unquote(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut chars = word.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    out.push(c);
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&next @ ('"' | '\\')) => {
                                out.push(next);
                                chars.next();
                            }
                            _ => out.push('\\'),
                        },
                        other => out.push(other),
                    }
                }
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Words joined into one shell command, each quoted as `shlex.quote` does.
fn shell_join(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_unquoted_and_variables_kept() {
        assert_eq!(unquote("\"a b\""), "a b");
        assert_eq!(unquote("'$X'"), "$X");
        assert_eq!(unquote("$HOME/x"), "$HOME/x");
        assert_eq!(unquote("a\\ b"), "a b");
    }

    #[test]
    fn start_commands_combine_as_docker_does() {
        let exec = |args: &[&str]| StartCommand {
            exec: true,
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        let shell = |s: &str| StartCommand {
            exec: false,
            args: vec![s.to_owned()],
        };
        assert_eq!(
            start_cmd(Some(exec(&["python", "-m"])), Some(exec(&["http.server"]))),
            Some("python -m http.server".to_owned())
        );
        assert_eq!(
            start_cmd(Some(exec(&["run"])), Some(shell("a b"))),
            Some("run /bin/sh -c 'a b'".to_owned())
        );
        assert_eq!(
            start_cmd(None, Some(shell("npm start"))),
            Some("npm start".to_owned())
        );
        assert_eq!(start_cmd(None, None), None);
    }

    fn steps(template: &Template) -> Vec<(&'static str, Vec<String>)> {
        template
            .instructions
            .iter()
            .map(|i| (i.kind.as_str(), i.args.clone()))
            .collect()
    }

    #[test]
    fn flags_quotes_and_env_forms_convert_as_the_python_sdk_does() {
        // Expected: the Python SDK 2.63's steps for the same Dockerfile.
        let (template, base) = apply(
            Template::new(),
            "FROM a\n\
             RUN --mount=type=cache,target=/root/.cache pip install x\n\
             RUN --network=none [\"echo\", \"a b\"]\n\
             COPY --link a /app\n\
             ENV A=1 B=\"two words\" C='single $X'\n\
             ENV D plain value here\n\
             WORKDIR \"/my dir\"\n",
        )
        .unwrap();
        assert_eq!(base, "a");
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            steps(&template),
            [
                ("USER", s(&["root"])),
                ("WORKDIR", s(&["/"])),
                ("RUN", s(&["pip install x"])),
                ("RUN", s(&["echo 'a b'"])),
                ("COPY", s(&["a", "/app", "", ""])),
                ("ENV", s(&["A", "1", "B", "two words", "C", "single $X"])),
                ("ENV", s(&["D", "plain value here"])),
                ("WORKDIR", s(&["/my dir"])),
                ("USER", s(&["user"])),
            ]
        );
    }

    #[test]
    fn chmod_resolves_declared_args_and_envs() {
        // Expected: the Python SDK 2.63's steps for the same Dockerfile.
        let (template, _) = apply(
            Template::new(),
            "FROM a\nARG MODE=0750\nENV M2=${MODE}\nCOPY --chmod=$MODE a /x\nCOPY --chmod=${M2} a /y\n",
        )
        .unwrap();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            steps(&template),
            [
                ("USER", s(&["root"])),
                ("WORKDIR", s(&["/"])),
                ("ENV", s(&["MODE", "0750"])),
                ("ENV", s(&["M2", "${MODE}"])),
                ("COPY", s(&["a", "/x", "", "0750"])),
                ("COPY", s(&["a", "/y", "", "0750"])),
                ("USER", s(&["user"])),
                ("WORKDIR", s(&["/home/user"])),
            ]
        );
        assert_eq!(
            apply(Template::new(), "FROM a\nCOPY --chmod=${NOPE}7 a /y\n")
                .err()
                .unwrap(),
            "line 2: invalid chmod value \"${NOPE}7\" (resolves to \"7\"), expected an octal \
             mode such as 0755"
        );
    }

    #[test]
    fn bad_dockerfiles_are_named() {
        let err = |content: &str| apply(Template::new(), content).err().unwrap();
        assert_eq!(
            err("RUN true\n"),
            "Dockerfile must contain a FROM instruction"
        );
        assert_eq!(
            err("FROM a\nFROM b\n"),
            "Multi-stage Dockerfiles are not supported"
        );
        assert_eq!(
            err("FROM a\nCOPY --from=build /x /y\n"),
            "line 2: COPY --from is not supported (multi-stage builds are not supported)"
        );
        assert_eq!(
            err("FROM a\nADD https://example.com/x /x\n"),
            "line 2: ADD from a remote URL is not supported: https://example.com/x"
        );
        assert_eq!(
            err("FROM a\nCOPY --chmod=99 x /x\n"),
            "line 2: invalid chmod value \"99\", expected an octal mode such as 0755"
        );
    }
}
