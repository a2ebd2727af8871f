//! The host's dynamic loader and C library, for running the host's own executable (envd,
//! exec helpers) inside a sandbox whose template has another C library.
//!
//! envd is the server's executable run inside the sandbox. Exec'd plainly, the kernel loads
//! it with the loader its ELF header names, looked up inside the sandbox: the template's. A
//! template with an older glibc than the host's (Debian 11, Ubuntu 20.04: the server needs
//! glibc 2.34) or with none (busybox, Alpine) could not run it. So the runtime copies the
//! loader and libraries `ldd` lists for its executable into `<data_dir>/host-runtime/` at
//! start; every sandbox gets that directory read-only at [`IN_SANDBOX`] (on its private
//! `/dev`), and host executables are started through that loader with that library path
//! (`ld.so --inhibit-cache --library-path`). Programs envd starts are the template's own,
//! loaded the usual way.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// Where a sandbox sees the host's loader and libraries.
pub const IN_SANDBOX: &str = "/dev/.e2b-runtime";

/// Environment variable giving a program started through the host's loader the descriptor
/// of its own executable (its `/proc/self/exe` is the loader): [`self_invocation`].
pub const EXE_FD_ENV: &str = "E2B_LOCAL_EXE_FD";

/// How a program run from the server's executable inside a sandbox runs that executable
/// again (envd starting another role): the program and the arguments that come before the
/// role's own. Through the host's loader when this process was started through it.
pub fn self_invocation(argv0: &str) -> (String, Vec<String>) {
    let fd = std::env::var(EXE_FD_ENV)
        .ok()
        .filter(|f| f.parse::<u32>().is_ok());
    let loader = std::fs::read_dir(IN_SANDBOX).ok().and_then(|d| {
        d.flatten().map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ld-"))
        })
    });
    match (fd, loader) {
        (Some(fd), Some(loader)) => (
            loader.to_string_lossy().into_owned(),
            vec![
                "--inhibit-cache".into(),
                "--library-path".into(),
                IN_SANDBOX.into(),
                "--argv0".into(),
                argv0.into(),
                format!("/proc/self/fd/{fd}"),
            ],
        ),
        _ => ("/proc/self/exe".into(), Vec::new()),
    }
}

/// The host's loader and libraries, copied for sandboxes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRuntime {
    /// The host directory holding the copies.
    pub dir: PathBuf,
    /// The loader's file name in it (e.g. `ld-linux-x86-64.so.2`).
    pub loader: String,
}

impl HostRuntime {
    /// The loader's path inside a sandbox.
    pub fn loader_in_sandbox(&self) -> String {
        format!("{IN_SANDBOX}/{}", self.loader)
    }
}

/// The loader and libraries `ldd` lists for `exe`, loader first; empty for a static
/// executable.
///
/// # Errors
///
/// [`Error::CopyHostFile`] when `ldd` cannot run.
pub fn libraries(exe: &Path) -> Result<Vec<PathBuf>> {
    let out = std::process::Command::new("ldd")
        .arg(exe)
        .output()
        .map_err(|e| Error::CopyHostFile(exe.to_owned(), e))?;
    if !out.status.success() {
        return Ok(Vec::new()); // "not a dynamic executable"
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // The loader is the line without `=>` (`/lib64/ld-linux-x86-64.so.2 (0x...)`).
    let (loader, libs): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| !l.contains("=>"));
    Ok(loader
        .into_iter()
        .chain(libs)
        .filter_map(|line| line.split_whitespace().find(|t| t.starts_with('/')))
        .map(PathBuf::from)
        .collect())
}

/// Copies `exe`'s loader and libraries into `<data_dir>/host-runtime/` (made anew at each
/// start, so a host upgrade is picked up); `None` for a static executable.
///
/// # Errors
///
/// The failing file operation's variant, naming the path.
pub fn prepare(data_dir: &Path, exe: &Path) -> Result<Option<HostRuntime>> {
    let files = libraries(exe)?;
    let Some(loader) = files.first().and_then(|l| l.file_name()) else {
        return Ok(None);
    };
    let loader = loader.to_string_lossy().into_owned();
    let dir = data_dir.join("host-runtime");
    let tmp = data_dir.join(format!(".host-runtime-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::CreateDir(tmp.clone(), e))?;
    for file in &files {
        let Some(name) = file.file_name() else {
            continue;
        };
        // Follows the host's symlinks (ld-linux → the versioned file): a plain copy.
        let to = tmp.join(name);
        std::fs::copy(file, &to).map_err(|e| Error::CopyHostFile(file.clone(), e))?;
    }
    // Sandboxes of an earlier run may still map the old copies: move them aside, then drop
    // them (a running program keeps its mapped files).
    if dir.exists() {
        let old = data_dir.join(format!(".host-runtime-old-{}", std::process::id()));
        std::fs::rename(&dir, &old).map_err(|e| Error::CreateDir(dir.clone(), e))?;
        let _ = std::fs::remove_dir_all(&old);
    }
    std::fs::rename(&tmp, &dir).map_err(|e| Error::CreateDir(dir.clone(), e))?;
    Ok(Some(HostRuntime { dir, loader }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loader_comes_first_and_every_library_is_copied() {
        let exe = std::env::current_exe().unwrap();
        let libs = libraries(&exe).unwrap();
        let data = tempfile::tempdir().unwrap();
        let rt = prepare(data.path(), &exe).unwrap().unwrap();
        assert!(rt.loader.starts_with("ld-"), "{rt:?}");
        assert_eq!(libs[0].file_name().unwrap().to_string_lossy(), rt.loader);
        for lib in &libs {
            let copy = rt.dir.join(lib.file_name().unwrap());
            assert_eq!(
                std::fs::read(&copy).unwrap(),
                std::fs::read(lib).unwrap(),
                "{}",
                copy.display()
            );
        }
        assert_eq!(
            rt.loader_in_sandbox(),
            format!("/dev/.e2b-runtime/{}", rt.loader)
        );
        // Made anew at the next start.
        let again = prepare(data.path(), &exe).unwrap().unwrap();
        assert_eq!(again, rt);
    }
}
