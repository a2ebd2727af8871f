//! Ready commands: what tells a sandbox's start command is ready, with the Python SDK's
//! helpers (`e2b/template/readycmd.py`), which produce the same shell commands.

use std::fmt;

/// A shell command that exits 0 once a template's start command is ready; the sandbox
/// create returns after it succeeds. Made from any string, or by the `wait_for_*` helpers.
///
/// ```
/// use e2b::template::{ReadyCmd, wait_for_port};
///
/// assert_eq!(wait_for_port(8000).as_str(), r#"[ -n "$(ss -Htuln sport = :8000)" ]"#);
/// let custom: ReadyCmd = "test -f /tmp/ready".into();
/// assert_eq!(custom.as_str(), "test -f /tmp/ready");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyCmd(String);

impl ReadyCmd {
    /// A ready command from a shell command.
    pub fn new(cmd: impl Into<String>) -> Self {
        Self(cmd.into())
    }

    /// The shell command.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ReadyCmd {
    fn from(cmd: &str) -> Self {
        Self::new(cmd)
    }
}

impl From<String> for ReadyCmd {
    fn from(cmd: String) -> Self {
        Self::new(cmd)
    }
}

impl fmt::Display for ReadyCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Ready once something listens on TCP or UDP `port` (`ss` with a source-port filter, so 80
/// does not match 8080).
///
/// ```
/// let ready = e2b::template::wait_for_port(80);
/// assert_eq!(ready.as_str(), r#"[ -n "$(ss -Htuln sport = :80)" ]"#);
/// ```
pub fn wait_for_port(port: u16) -> ReadyCmd {
    ReadyCmd(format!("[ -n \"$(ss -Htuln sport = :{port})\" ]"))
}

/// Ready once `url` answers with HTTP status `status_code` (the Python SDK's default is 200).
///
/// ```
/// let ready = e2b::template::wait_for_url("http://localhost:3000/health", 200);
/// assert_eq!(
///     ready.as_str(),
///     r#"curl -s -o /dev/null -w "%{http_code}" http://localhost:3000/health | grep -q "200""#
/// );
/// ```
pub fn wait_for_url(url: &str, status_code: u16) -> ReadyCmd {
    ReadyCmd(format!(
        "curl -s -o /dev/null -w \"%{{http_code}}\" {} | grep -q \"{status_code}\"",
        shell_quote(url)
    ))
}

/// Ready once a process named `process_name` runs (`pgrep`).
///
/// ```
/// let ready = e2b::template::wait_for_process("my-daemon");
/// assert_eq!(ready.as_str(), "pgrep my-daemon > /dev/null");
/// ```
pub fn wait_for_process(process_name: &str) -> ReadyCmd {
    ReadyCmd(format!("pgrep {} > /dev/null", shell_quote(process_name)))
}

/// Ready once the file `filename` exists.
///
/// ```
/// let ready = e2b::template::wait_for_file("/tmp/ready");
/// assert_eq!(ready.as_str(), "[ -f /tmp/ready ]");
/// ```
pub fn wait_for_file(filename: &str) -> ReadyCmd {
    ReadyCmd(format!("[ -f {} ]", shell_quote(filename)))
}

/// Ready after `timeout_ms` milliseconds, in whole seconds and at least one.
///
/// ```
/// assert_eq!(e2b::template::wait_for_timeout(5_000).as_str(), "sleep 5");
/// assert_eq!(e2b::template::wait_for_timeout(10).as_str(), "sleep 1");
/// ```
pub fn wait_for_timeout(timeout_ms: u64) -> ReadyCmd {
    ReadyCmd(format!("sleep {}", (timeout_ms / 1000).max(1)))
}

/// Python's `shlex.quote`: the word as is when it holds only safe characters, else in single
/// quotes (a `'` inside becomes `'"'"'`).
pub(crate) fn shell_quote(word: &str) -> String {
    if word.is_empty() {
        return "''".to_owned();
    }
    let safe = word.chars().all(|c| {
        c.is_ascii_alphanumeric() || c == '_' || "@%+=:,./-".contains(c) || is_unicode_word(c)
    });
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\"'\"'"))
    }
}

/// Python's `\w` outside ASCII (`shlex.quote`'s regex is not ASCII-only).
fn is_unicode_word(c: char) -> bool {
    !c.is_ascii() && (c.is_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_is_shlex_quote() {
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("abc-1.2/x@y%z+=:,"), "abc-1.2/x@y%z+=:,");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\"'\"'s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote("héllo"), "héllo");
    }
}
