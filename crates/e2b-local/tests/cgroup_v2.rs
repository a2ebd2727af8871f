//! The cgroup v2 backend against the kernel: on this v1 host the hybrid
//! `/sys/fs/cgroup/unified` hierarchy (no controllers, but the core `cgroup.procs`,
//! `cgroup.freeze`, `cgroup.events` and `cgroup.kill`) exercises add, freeze, thaw, kill and
//! remove. Limits need the controllers and are covered by the unit tests. Needs root:
//! `cargo test -p e2b-local --test cgroup_v2 -- --ignored`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use e2b_local::isolation::{CgroupConfig, CgroupVersion, Limits, SandboxCgroup, SandboxCgroupImpl};

/// The cgroup2 mount: `/sys/fs/cgroup` on v2 hosts, `/sys/fs/cgroup/unified` on hybrid ones.
fn unified_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| {
            nix::sys::statfs::statfs(p)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        })
}

root_test! {
    fn v2_freeze_thaw_kill_and_remove_on_the_kernel() {
        let Some(root) = unified_root() else {
            panic!("no cgroup2 hierarchy mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified");
        };
        let cfg = CgroupConfig {
            version: CgroupVersion::V2,
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            unified_root: root.clone(),
            parent: "e2b-local-v2-test".into(),
        };
        let cg = SandboxCgroupImpl::create(&cfg, "v2", &Limits::default())
            .unwrap_or_else(|e| panic!("create: {e}"));
        assert!(cg.exists());
        let mut child = Command::new("sleep").arg("300").spawn().unwrap_or_else(|e| panic!("sleep: {e}"));
        cg.add_process(child.id()).unwrap_or_else(|e| panic!("add: {e}"));
        assert_eq!(cg.procs(), vec![child.id()]);
        let own = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap_or_default();
        assert!(own.contains("0::/e2b-local-v2-test/v2\n"), "{own}");

        cg.freeze().unwrap_or_else(|e| panic!("freeze: {e}"));
        assert!(cg.is_frozen());
        let events = std::fs::read_to_string(root.join("e2b-local-v2-test/v2/cgroup.events")).unwrap_or_default();
        assert!(events.contains("frozen 1"), "{events}");
        cg.thaw().unwrap_or_else(|e| panic!("thaw: {e}"));
        assert!(!cg.is_frozen());

        // Frozen again: cgroup.kill must still end it.
        cg.freeze().unwrap_or_else(|e| panic!("freeze: {e}"));
        cg.kill_all(std::time::Duration::from_secs(5)).unwrap_or_else(|e| panic!("kill: {e}"));
        let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
        assert!(cg.procs().is_empty());
        cg.remove().unwrap_or_else(|e| panic!("remove: {e}"));
        assert!(!cg.exists());
        let _ = std::fs::remove_dir(root.join("e2b-local-v2-test"));
    }
}
