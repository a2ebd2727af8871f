//! The directory tree of `tests/data/template_vectors.py` and the vectors it made.
#![allow(dead_code, unreachable_pub)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const VECTORS: &str = include_str!("../data/template_vectors.json");

/// The vectors `tests/data/template_vectors.py` wrote.
pub fn vectors() -> serde_json::Value {
    serde_json::from_str(VECTORS).unwrap()
}

pub enum Kind {
    Dir,
    File(&'static str),
    Symlink(&'static str),
}

/// The tree of `template_vectors.py`'s `TREE`, entry for entry.
pub const TREE: &[(&str, Kind, Option<u32>)] = &[
    ("app", Kind::Dir, Some(0o755)),
    ("app/data", Kind::Dir, Some(0o700)),
    ("ignored_dir", Kind::Dir, Some(0o755)),
    (".hidden", Kind::Dir, Some(0o750)),
    ("empty", Kind::Dir, Some(0o755)),
    (
        ".dockerignore",
        Kind::File("*.log\n# a comment\nignored_dir/\n!ignored_dir/keep.txt\n"),
        Some(0o644),
    ),
    ("app/main.py", Kind::File("print('hi')\n"), Some(0o644)),
    (
        "app/run.sh",
        Kind::File("#!/bin/sh\necho run\n"),
        Some(0o755),
    ),
    (
        "app/data/config.json",
        Kind::File("{\"a\": 1}\n"),
        Some(0o600),
    ),
    (
        "app/debug.log",
        Kind::File("nested logs are not matched by *.log\n"),
        Some(0o644),
    ),
    ("root.log", Kind::File("ignored\n"), Some(0o644)),
    (
        "notes.tmp",
        Kind::File("ignored by the template's own pattern\n"),
        Some(0o644),
    ),
    ("ignored_dir/skip.txt", Kind::File("skipped\n"), Some(0o644)),
    (
        "ignored_dir/keep.txt",
        Kind::File("re-included\n"),
        Some(0o644),
    ),
    (
        ".hidden/secret",
        Kind::File("dot files are copied\n"),
        Some(0o400),
    ),
    (
        "gcp.json",
        Kind::File("{\"type\": \"service_account\"}"),
        Some(0o644),
    ),
    ("link_to_main", Kind::Symlink("app/main.py"), None),
    ("broken_link", Kind::Symlink("does/not/exist"), None),
    ("dirlink", Kind::Symlink("app"), None),
];

/// Makes the tree under `root`, with the modes the vectors were made with.
pub fn make_tree(root: &Path) {
    for (path, kind, mode) in TREE {
        let full = root.join(path);
        match kind {
            Kind::Dir => std::fs::create_dir_all(&full).unwrap(),
            Kind::File(content) => std::fs::write(&full, content).unwrap(),
            Kind::Symlink(target) => std::os::unix::fs::symlink(target, &full).unwrap(),
        }
        if let Some(mode) = mode {
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
    }
}
