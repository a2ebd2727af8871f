//! The files of a COPY step: which files a source pattern names, their files hash, and the
//! tar archive that is uploaded.
//!
//! Everything here follows the Python SDK 2.63 (`e2b/template/utils.py`) step by step,
//! because the files hash is a cache key the server shares between SDKs: a source is a
//! glob (`**` for any depth, wildcards match dot files, symlinked directories are not
//! descended by `**`), a matched directory brings everything under it, and paths excluded by
//! `.dockerignore` semantics (moby's pattern matcher, `!` re-includes) are left out. The
//! hash is SHA-256 over `COPY {src} {dest}`, then per file (sorted by path): its path
//! relative to the context, its `st_mode` in decimal, its size unless it is a directory, and
//! its contents (regular files) or link target (symlinks that are not resolved).

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use regex::Regex;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// `path` made absolute against the current directory and normalized without touching the
/// filesystem, as Python's `os.path.abspath`.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::template(format!("reading the current directory failed: {e}")))?
            .join(path)
    };
    let text = utf8(&joined)?;
    Ok(PathBuf::from(normpath(text)))
}

fn utf8(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| {
        Error::template(format!(
            "the path {} is not UTF-8, which the files hash cannot name",
            path.display()
        ))
    })
}

/// Python's `posixpath.normpath`: collapses `.`, `..` and repeated slashes, lexically.
pub(crate) fn normpath(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    // POSIX keeps exactly two leading slashes; three or more become one.
    let leading = if path.starts_with("//") && !path.starts_with("///") {
        "//"
    } else if path.starts_with('/') {
        "/"
    } else {
        ""
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if leading.is_empty() {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = format!("{leading}{}", parts.join("/"));
    if joined.is_empty() {
        ".".to_owned()
    } else {
        joined
    }
}

/// Rejects a COPY source that is absolute or leaves the context directory, with the Python
/// SDK's messages.
pub(crate) fn validate_relative_path(src: &str) -> std::result::Result<(), String> {
    if src.starts_with('/') {
        return Err(format!(
            "Invalid source path \"{src}\": absolute paths are not allowed. Use a relative \
             path within the context directory."
        ));
    }
    let normalized = normpath(src);
    if normalized == ".." || normalized.starts_with("../") {
        return Err(format!(
            "Invalid source path \"{src}\": path escapes the context directory. The path \
             must stay within the context directory."
        ));
    }
    Ok(())
}

/// The patterns of `context/.dockerignore`: its lines, trimmed, without blank lines and
/// comments; none when there is no such file.
pub(crate) fn read_dockerignore(context: &Path) -> Result<Vec<String>> {
    let path = context.join(".dockerignore");
    let content = match fs::read_to_string(&path) {
        Ok(content) => content,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::template(format!(
                "reading {} failed: {e}",
                path.display()
            )));
        }
    };
    let content = content.strip_prefix('\u{feff}').unwrap_or(&content);
    Ok(content
        .split('\n')
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.trim().to_owned())
        .collect())
}

// ---------------------------------------------------------------------------------------
// `.dockerignore` patterns (moby/patternmatcher, as `e2b_dockerfile_utils` ports it).

/// How a pattern is matched; plain string checks where moby uses them.
#[derive(Debug)]
enum Match {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(Regex),
}

impl Match {
    fn matches(&self, path: &str) -> bool {
        match self {
            Match::Exact(pattern) => path == pattern,
            Match::Prefix(prefix) => path.starts_with(prefix.as_str()),
            // "**/foo" also matches "foo".
            Match::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Match::Regex(regex) => regex.is_match(path),
        }
    }
}

const BAD_PATTERN: &str = "syntax error in pattern";

/// Advances over one (possibly escaped) character of a bracket expression.
fn class_char(pattern: &[char], mut i: usize) -> std::result::Result<usize, &'static str> {
    let n = pattern.len();
    if i >= n || pattern[i] == '-' || pattern[i] == ']' {
        return Err(BAD_PATTERN);
    }
    if pattern[i] == '\\' {
        i += 1;
        if i >= n {
            return Err(BAD_PATTERN);
        }
    }
    i += 1;
    if i >= n {
        return Err(BAD_PATTERN);
    }
    Ok(i)
}

/// Rejects what Go's `filepath.Match` rejects, as Docker does.
fn validate_pattern(pattern: &[char]) -> std::result::Result<(), &'static str> {
    let n = pattern.len();
    let mut i = 0;
    while i < n {
        let ch = pattern[i];
        i += 1;
        if ch == '\\' {
            if i >= n {
                return Err(BAD_PATTERN);
            }
            i += 1;
        } else if ch == '[' {
            if i < n && pattern[i] == '^' {
                i += 1;
            }
            let mut ranges = 0;
            while !(ranges > 0 && i < n && pattern[i] == ']') {
                i = class_char(pattern, i)?;
                if pattern[i] == '-' {
                    i = class_char(pattern, i + 1)?;
                }
                ranges += 1;
            }
            i += 1;
        }
    }
    Ok(())
}

fn compile(pattern: &str) -> std::result::Result<Match, String> {
    let chars: Vec<char> = pattern.chars().collect();
    validate_pattern(&chars)?;
    #[derive(PartialEq)]
    enum Kind {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut regex = String::from("^");
    let mut kind = Kind::Exact;
    let n = chars.len();
    let mut i = 0;
    while i < n {
        let first = i == 0;
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if i < n && chars[i] == '*' => {
                i += 1;
                // "**/" is "**".
                if i < n && chars[i] == '/' {
                    i += 1;
                }
                if i >= n {
                    regex.push_str(".*");
                    kind = if kind == Kind::Exact {
                        Kind::Prefix
                    } else {
                        Kind::Regex
                    };
                } else {
                    regex.push_str("(.*/)?");
                    kind = Kind::Regex;
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                regex.push_str("[^/]*");
                kind = Kind::Regex;
            }
            '?' => {
                regex.push_str("[^/]");
                kind = Kind::Regex;
            }
            '[' => {
                // A bracket expression is copied as is; a leading "^" negates it.
                let mut j = i;
                if j < n && chars[j] == '^' {
                    j += 1;
                }
                while j < n && chars[j] != ']' {
                    if chars[j] == '\\' {
                        j += 1;
                    }
                    j += 1;
                }
                let end = (j + 1).min(n);
                regex.extend(&chars[i - 1..end]);
                i = j + 1;
                kind = Kind::Regex;
            }
            ']' => {
                regex.push(']');
                kind = Kind::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' | '^' => {
                regex.push('\\');
                regex.push(ch);
            }
            '\\' => {
                if i < n {
                    regex.push_str(&regex::escape(&chars[i].to_string()));
                    i += 1;
                    kind = Kind::Regex;
                } else {
                    regex.push_str("\\\\");
                }
            }
            other => regex.push(other),
        }
    }
    Ok(match kind {
        Kind::Exact => Match::Exact(pattern.to_owned()),
        Kind::Prefix => Match::Prefix(pattern[..pattern.len() - 2].to_owned()),
        Kind::Suffix => Match::Suffix(pattern[2..].to_owned()),
        Kind::Regex => Match::Regex(
            Regex::new(&format!("{regex}$")).map_err(|e| format!("{BAD_PATTERN}: {e}"))?,
        ),
    })
}

#[derive(Debug)]
struct Pattern {
    exclusion: bool,
    dirs: Vec<String>,
    matcher: Match,
}

/// Matches context-relative paths against `.dockerignore` patterns: a pattern that matches a
/// directory excludes everything under it, and `!` patterns re-include (the last match
/// wins).
#[derive(Debug)]
pub(crate) struct IgnoreMatcher {
    patterns: Vec<Pattern>,
}

impl IgnoreMatcher {
    /// Compiles `patterns`; an invalid one is named in the error.
    pub(crate) fn new(patterns: &[String]) -> std::result::Result<Self, String> {
        let mut compiled = Vec::new();
        for original in patterns {
            if original.starts_with('#') {
                continue;
            }
            let mut pattern = original.trim();
            if pattern.is_empty() {
                continue;
            }
            let exclusion = pattern.starts_with('!');
            if exclusion {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    return Err(format!(
                        "Invalid ignore pattern '{original}': illegal exclusion pattern"
                    ));
                }
            }
            let mut cleaned = normpath(&collapse_slashes(pattern));
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let matcher = compile(&cleaned)
                .map_err(|e| format!("Invalid ignore pattern '{original}': {e}"))?;
            compiled.push(Pattern {
                exclusion,
                dirs: cleaned.split('/').map(str::to_owned).collect(),
                matcher,
            });
        }
        Ok(Self { patterns: compiled })
    }

    /// Whether `path` is excluded; the patterns are evaluated on each parent first, and a
    /// pattern that matched a parent matches what is under it.
    pub(crate) fn matches(&self, path: &str) -> bool {
        let segments: Vec<&str> = path.split('/').collect();
        let mut parent_matched: Vec<bool> = Vec::new();
        let mut matched = false;
        for depth in 1..=segments.len() {
            let current = segments[..depth].join("/");
            let mut current_matched = Vec::with_capacity(self.patterns.len());
            matched = false;
            for (i, pattern) in self.patterns.iter().enumerate() {
                let mut hit = parent_matched.get(i).copied().unwrap_or(false);
                if !hit {
                    // An inclusion cannot change a matched path, nor an exclusion an
                    // unmatched one.
                    if pattern.exclusion != matched {
                        current_matched.push(false);
                        continue;
                    }
                    hit = pattern.matcher.matches(&current);
                }
                current_matched.push(hit);
                if hit {
                    matched = !pattern.exclusion;
                }
            }
            parent_matched = current_matched;
        }
        matched
    }

    /// Whether a `!` pattern could re-include something under the excluded directory `dir`,
    /// which must then still be walked.
    pub(crate) fn may_match_under(&self, dir: &str) -> bool {
        let segments: Vec<&str> = dir.split('/').collect();
        self.patterns.iter().any(|pattern| {
            pattern.exclusion && {
                let mut under = None;
                for (i, segment) in segments.iter().enumerate() {
                    let Some(part) = pattern.dirs.get(i) else {
                        under = Some(false);
                        break;
                    };
                    if part.contains("**") {
                        under = Some(true);
                        break;
                    }
                    if !part.contains(['*', '?', '[', '\\']) && part != segment {
                        under = Some(false);
                        break;
                    }
                }
                under.unwrap_or(pattern.dirs.len() > segments.len())
            }
        })
    }
}

fn collapse_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for ch in path.chars() {
        if ch == '/' && out.ends_with('/') {
            continue;
        }
        out.push(ch);
    }
    out
}

/// An absolute ignore pattern that points into the context becomes relative to it; others
/// stay as they are (the matcher drops a leading `/`).
fn normalize_ignore_pattern(pattern: &str, context: &str) -> String {
    let mut pattern = pattern.trim();
    let negated = pattern.starts_with('!');
    if negated {
        pattern = pattern[1..].trim();
    }
    let mut out = pattern.to_owned();
    if pattern.starts_with('/') {
        let relative = relpath(&normpath(pattern), context);
        if relative != "." && relative != ".." && !relative.starts_with("../") {
            out = relative;
        }
    }
    if negated { format!("!{out}") } else { out }
}

/// Python's `os.path.relpath` for two normalized absolute paths.
fn relpath(path: &str, start: &str) -> String {
    let split = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (path, start) = (split(path), split(start));
    let common = path.iter().zip(&start).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_owned(); start.len() - common];
    parts.extend(path[common..].iter().cloned());
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

// ---------------------------------------------------------------------------------------
// The source glob (wcmatch's `glob` with GLOBSTAR | DOTMATCH, relative to the context).

/// One segment of a source pattern, matched against one directory entry's name.
fn segment_regex(segment: &str) -> std::result::Result<Regex, String> {
    let chars: Vec<char> = segment.chars().collect();
    let mut regex = String::from("(?s)^");
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            '\\' if i < chars.len() => {
                regex.push_str(&regex::escape(&chars[i].to_string()));
                i += 1;
            }
            '[' => {
                // A class up to its `]` (a `]` right after `[`, `[!` or `[^` is literal);
                // without one the `[` is literal.
                let mut j = i;
                if j < chars.len() && (chars[j] == '!' || chars[j] == '^') {
                    j += 1;
                }
                if j < chars.len() && chars[j] == ']' {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j >= chars.len() {
                    regex.push_str("\\[");
                    continue;
                }
                let mut body: String = chars[i..j].iter().collect();
                if let Some(rest) = body.strip_prefix('!') {
                    body = format!("^{rest}");
                }
                let body = body.replace('[', "\\[");
                regex.push('[');
                regex.push_str(&body);
                regex.push(']');
                i = j + 1;
            }
            other => regex.push_str(&regex::escape(&other.to_string())),
        }
    }
    regex.push('$');
    Regex::new(&regex).map_err(|e| format!("invalid pattern segment '{segment}': {e}"))
}

fn has_magic(segment: &str) -> bool {
    segment.contains(['*', '?', '['])
}

/// Paths relative to `root` that `pattern` matches, spelled as the pattern spells them
/// (`./a`, `a/`), as wcmatch returns them.
fn glob(root: &Path, pattern: &str) -> Result<Vec<String>> {
    let dir_only = pattern.ends_with('/');
    let segments: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let mut compiled = Vec::with_capacity(segments.len());
    for segment in &segments {
        compiled.push(if *segment == "**" || !has_magic(segment) {
            None
        } else {
            Some(segment_regex(segment).map_err(Error::invalid_argument)?)
        });
    }
    let mut out = Vec::new();
    let walker = Glob {
        root,
        segments: &segments,
        compiled: &compiled,
        dir_only,
    };
    walker.visit("", 0, &mut out)?;
    Ok(out)
}

struct Glob<'a> {
    root: &'a Path,
    segments: &'a [&'a str],
    compiled: &'a [Option<Regex>],
    dir_only: bool,
}

impl Glob<'_> {
    fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(rel)
        }
    }

    fn join(rel: &str, name: &str) -> String {
        if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        }
    }

    fn emit(&self, rel: &str, out: &mut Vec<String>) {
        if rel.is_empty() {
            return;
        }
        if self.dir_only {
            if self.path(rel).is_dir() {
                out.push(format!("{rel}/"));
            }
        } else {
            out.push(rel.to_owned());
        }
    }

    /// Names in the directory `rel` (following a symlink to it); none when it cannot be read.
    fn entries(&self, rel: &str) -> Result<Vec<(String, bool)>> {
        let Ok(read) = fs::read_dir(self.path(rel)) else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        for entry in read.flatten() {
            let name = entry.file_name().into_string().map_err(|name| {
                Error::template(format!(
                    "the file name {name:?} in the build context is not UTF-8"
                ))
            })?;
            let real_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            names.push((name, real_dir));
        }
        Ok(names)
    }

    fn visit(&self, rel: &str, index: usize, out: &mut Vec<String>) -> Result<()> {
        if index == self.segments.len() {
            self.emit(rel, out);
            return Ok(());
        }
        let last = index + 1 == self.segments.len();
        let segment = self.segments[index];
        if segment == "**" {
            // Zero directories, then every real directory below (symlinks are not
            // descended); as the last segment it matches every path below.
            if last {
                if !rel.is_empty() {
                    out.push(format!("{rel}/"));
                }
                self.globstar_all(rel, out)?;
            } else {
                self.visit(rel, index + 1, out)?;
                self.globstar_dirs(rel, index, out)?;
            }
            return Ok(());
        }
        match &self.compiled[index] {
            None => {
                let child = Self::join(rel, &unescape(segment));
                let path = self.path(&child);
                let exists = if last {
                    fs::symlink_metadata(&path).is_ok()
                } else {
                    path.is_dir()
                };
                if exists {
                    self.visit(&child, index + 1, out)?;
                }
            }
            Some(regex) => {
                for (name, _) in self.entries(rel)? {
                    if !regex.is_match(&name) {
                        continue;
                    }
                    let child = Self::join(rel, &name);
                    if last || self.path(&child).is_dir() {
                        self.visit(&child, index + 1, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn globstar_dirs(&self, rel: &str, index: usize, out: &mut Vec<String>) -> Result<()> {
        for (name, real_dir) in self.entries(rel)? {
            if real_dir {
                let child = Self::join(rel, &name);
                self.visit(&child, index + 1, out)?;
                self.globstar_dirs(&child, index, out)?;
            }
        }
        Ok(())
    }

    fn globstar_all(&self, rel: &str, out: &mut Vec<String>) -> Result<()> {
        for (name, real_dir) in self.entries(rel)? {
            let child = Self::join(rel, &name);
            self.emit(&child, out);
            if real_dir {
                self.globstar_all(&child, out)?;
            }
        }
        Ok(())
    }
}

fn unescape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    let mut chars = segment.chars();
    while let Some(ch) = chars.next() {
        if ch == '\\'
            && let Some(next) = chars.next()
        {
            out.push(next);
            continue;
        }
        out.push(ch);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Files, hash and archive.

/// The files (and directories) a COPY source names under `context`, as context-relative
/// paths (`.` for the context itself), sorted as the Python SDK sorts them.
pub(crate) fn files_in_path(src: &str, context: &Path, ignore: &[String]) -> Result<Vec<String>> {
    let context = absolute(context)?;
    let context_text = utf8(&context)?.to_owned();
    let normalized: Vec<String> = ignore
        .iter()
        .map(|p| normalize_ignore_pattern(p, &context_text))
        .collect();
    let matcher = IgnoreMatcher::new(&normalized).map_err(Error::template)?;

    let mut files = BTreeSet::new();
    let mut matches: Vec<String> = glob(&context, src)?
        .into_iter()
        .map(|m| normpath(&m))
        .collect();
    // Parents before children, so nothing under a walked directory is walked again.
    matches.sort_by_key(|m| {
        if m == "." {
            0
        } else {
            m.matches('/').count() + 1
        }
    });
    let mut walked: BTreeSet<String> = BTreeSet::new();
    let under_walked = |walked: &BTreeSet<String>, rel: &str| {
        if walked.contains(".") {
            return true;
        }
        let mut parent = rel;
        while let Some((head, _)) = parent.rsplit_once('/') {
            if walked.contains(head) {
                return true;
            }
            parent = head;
        }
        false
    };
    for rel in matches {
        if under_walked(&walked, &rel) {
            continue;
        }
        if rel != "." && matcher.matches(&rel) {
            continue;
        }
        let path = if rel == "." {
            context.clone()
        } else {
            context.join(&rel)
        };
        let is_link = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if path.is_dir() && !is_link {
            files.insert(rel.clone());
            walk(&path, &rel, &matcher, &mut files)?;
            walked.insert(rel);
        } else {
            files.insert(rel);
        }
    }
    // The context sorts first: every other path is its path plus "/...".
    let mut sorted: Vec<String> = files.into_iter().collect();
    if let Some(pos) = sorted.iter().position(|f| f == ".") {
        let root = sorted.remove(pos);
        sorted.insert(0, root);
    }
    Ok(sorted)
}

fn walk(
    dir: &Path,
    rel: &str,
    matcher: &IgnoreMatcher,
    files: &mut BTreeSet<String>,
) -> Result<()> {
    let read = fs::read_dir(dir)
        .map_err(|e| Error::template(format!("reading {} failed: {e}", dir.display())))?;
    for entry in read {
        let entry =
            entry.map_err(|e| Error::template(format!("reading {} failed: {e}", dir.display())))?;
        let name = entry.file_name().into_string().map_err(|name| {
            Error::template(format!(
                "the file name {name:?} in the build context is not UTF-8"
            ))
        })?;
        let child = if rel == "." {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ignored = matcher.matches(&child);
        let real_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if real_dir && (!ignored || matcher.may_match_under(&child)) {
            walk(&entry.path(), &child, matcher, files)?;
        }
        if !ignored {
            files.insert(child);
        }
    }
    Ok(())
}

fn context_path(context: &Path, rel: &str) -> PathBuf {
    if rel == "." {
        context.to_path_buf()
    } else {
        context.join(rel)
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::template(format!("reading {} failed: {e}", path.display()))
}

/// The files hash of `COPY src dest` (module docs).
///
/// # Errors
///
/// [`Error::Template`] when no file matches or a file cannot be read.
pub(crate) fn files_hash(
    src: &str,
    dest: &str,
    context: &Path,
    ignore: &[String],
    resolve_symlinks: bool,
) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(format!("COPY {src} {dest}").as_bytes());
    let files = files_in_path(src, context, ignore)?;
    if files.is_empty() {
        return Err(Error::template(format!(
            "No files found in {}",
            context.join(src).display()
        )));
    }
    let context = absolute(context)?;
    let hash_stats = |hasher: &mut Sha256, meta: &fs::Metadata| {
        hasher.update(meta.mode().to_string().as_bytes());
        // A directory's size depends on the filesystem, not on the copied files.
        if !meta.is_dir() {
            hasher.update(meta.size().to_string().as_bytes());
        }
    };
    for rel in &files {
        let path = context_path(&context, rel);
        hasher.update(rel.as_bytes());
        let lstat = fs::symlink_metadata(&path).map_err(|e| io_error(&path, e))?;
        if lstat.file_type().is_symlink() {
            let target_exists = fs::metadata(&path).is_ok_and(|m| m.is_file() || m.is_dir());
            if !(resolve_symlinks && target_exists) {
                hash_stats(&mut hasher, &lstat);
                let target = fs::read_link(&path).map_err(|e| io_error(&path, e))?;
                hasher.update(target.as_os_str().as_encoded_bytes());
                continue;
            }
        }
        let stat = fs::metadata(&path).map_err(|e| io_error(&path, e))?;
        hash_stats(&mut hasher, &stat);
        if stat.is_file() {
            let mut file = fs::File::open(&path).map_err(|e| io_error(&path, e))?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).map_err(|e| io_error(&path, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Writes the tar archive of what `src` names to `out`, gzipped when `gzip`: one entry per
/// file or directory, named by its path relative to the context, symlinks stored as links
/// unless `resolve_symlinks`.
///
/// # Errors
///
/// [`Error::Template`] when a file cannot be read or the archive cannot be written.
pub(crate) fn write_archive<W: Write>(
    src: &str,
    context: &Path,
    ignore: &[String],
    resolve_symlinks: bool,
    gzip: bool,
    out: W,
) -> Result<W> {
    let files = files_in_path(src, context, ignore)?;
    let context = absolute(context)?;
    let failed =
        |e: std::io::Error| Error::template(format!("writing the archive of '{src}' failed: {e}"));
    if gzip {
        let encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        let encoder = append_all(&context, &files, resolve_symlinks, encoder).map_err(failed)?;
        encoder.finish().map_err(failed)
    } else {
        append_all(&context, &files, resolve_symlinks, out).map_err(failed)
    }
}

fn append_all<W: Write>(
    context: &Path,
    files: &[String],
    resolve_symlinks: bool,
    out: W,
) -> std::io::Result<W> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    builder.follow_symlinks(resolve_symlinks);
    for rel in files {
        if rel == "." {
            // The tar crate refuses a path with no normal component; write the context's
            // own directory entry by hand, as Python's tarfile names it.
            let meta = fs::metadata(context)?;
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            header.as_old_mut().name[..2].copy_from_slice(b"./");
            header.set_cksum();
            builder.append(&header, std::io::empty())?;
            continue;
        }
        builder.append_path_with_name(context.join(rel), rel)?;
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normpath_is_pythons() {
        for (input, expected) in [
            ("", "."),
            (".", "."),
            ("./a", "a"),
            ("a/../b", "b"),
            ("a/../../b", "../b"),
            ("/a/../..", "/"),
            ("//a", "//a"),
            ("///a", "/a"),
            ("a//b/", "a/b"),
            ("..myconfig", "..myconfig"),
        ] {
            assert_eq!(normpath(input), expected, "{input:?}");
        }
    }

    #[test]
    fn sources_outside_the_context_are_rejected() {
        assert_eq!(
            validate_relative_path("/etc/passwd").unwrap_err(),
            "Invalid source path \"/etc/passwd\": absolute paths are not allowed. Use a \
             relative path within the context directory."
        );
        assert_eq!(
            validate_relative_path("foo/../../bar").unwrap_err(),
            "Invalid source path \"foo/../../bar\": path escapes the context directory. The \
             path must stay within the context directory."
        );
        assert!(validate_relative_path("foo/../bar").is_ok());
        assert!(validate_relative_path("..myconfig").is_ok());
    }

    #[test]
    fn ignore_patterns_follow_dockerignore() {
        let patterns: Vec<String> = ["*.log", "build/", "!build/keep.txt", "**/tmp", "/abs"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m = IgnoreMatcher::new(&patterns).unwrap();
        assert!(m.matches("a.log"));
        assert!(!m.matches("dir/a.log"));
        assert!(m.matches("build"));
        assert!(m.matches("build/x.o"));
        assert!(!m.matches("build/keep.txt"));
        assert!(m.matches("x/y/tmp"));
        assert!(m.matches("tmp/z"));
        assert!(m.matches("abs"));
        assert!(m.may_match_under("build"));
        assert!(!m.may_match_under("other"));
        let e = IgnoreMatcher::new(&["[".to_owned()]).unwrap_err();
        assert_eq!(e, "Invalid ignore pattern '[': syntax error in pattern");
        let e = IgnoreMatcher::new(&["!".to_owned()]).unwrap_err();
        assert_eq!(e, "Invalid ignore pattern '!': illegal exclusion pattern");
    }

    #[test]
    fn absolute_ignore_patterns_inside_the_context_become_relative() {
        assert_eq!(normalize_ignore_pattern("/ctx/sub/*.o", "/ctx"), "sub/*.o");
        assert_eq!(normalize_ignore_pattern("!/ctx/keep", "/ctx"), "!keep");
        assert_eq!(normalize_ignore_pattern("/elsewhere", "/ctx"), "/elsewhere");
        assert_eq!(normalize_ignore_pattern("/ctx", "/ctx"), "/ctx");
    }
}
