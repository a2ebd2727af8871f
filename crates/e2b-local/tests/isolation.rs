//! Isolation tests: each runs attack code inside a real sandbox, as `root` and as `user`, and
//! asserts the denial. Needs root: `cargo test -p e2b-local -- --ignored`.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{as_root_and_user, default_limits, env, sh, sleeper, spawn, text};
use e2b_local::isolation::mounts::BindMount;
use e2b_local::isolation::{ExecOptions, InitProgram, Limits, SandboxCgroup, SandboxSpec};
use e2b_local::volumes::Volumes;

const CG: &str = "e2b-local-test";

/// Loop devices whose backing file is `path` or below it (`/sys/block/loop*/loop/backing_file`).
fn loop_devices_backed_by(path: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
    {
        let backing =
            std::fs::read_to_string(entry.path().join("loop/backing_file")).unwrap_or_default();
        if backing.starts_with(dir.to_str().unwrap_or("?")) {
            out.push(format!("{:?}: {}", entry.file_name(), backing.trim_end()));
        }
    }
    out
}

/// Runs a python3 snippet that calls a raw syscall through ctypes and prints `rc errno`.
fn syscall_py(nr: i64, args: &str) -> String {
    format!(
        "import ctypes; l = ctypes.CDLL(None, use_errno=True); \
         l.syscall.restype = ctypes.c_long; \
         r = l.syscall(ctypes.c_long({nr}){args}); print(r, ctypes.get_errno())"
    )
}

root_test! {
    fn init_runs_with_hostname_users_and_bounded_privileges() {
        let env = env(CG);
        let sb = sleeper(env, "iso-basics");
        let out = sh(&sb, "hostname; cat /etc/hostname; id -u; grep -E '^(CapBnd|CapEff|NoNewPrivs|Seccomp):' /proc/2/status /proc/1/status", &ExecOptions::default());
        assert!(out.status.success(), "{}", text(&out.stderr));
        // Kept: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE
        // NET_RAW SYS_CHROOT AUDIT_WRITE SETFCAP = 0xa00425fb. The program (pid 2) has them;
        // the reaper (pid 1) has none left.
        assert_eq!(
            text(&out.stdout),
            "iso-basics\niso-basics\n0\n\
             /proc/2/status:CapEff:\t00000000a00425fb\n/proc/2/status:CapBnd:\t00000000a00425fb\n\
             /proc/2/status:NoNewPrivs:\t0\n/proc/2/status:Seccomp:\t2\n\
             /proc/1/status:CapEff:\t0000000000000000\n/proc/1/status:CapBnd:\t00000000a00425fb\n\
             /proc/1/status:NoNewPrivs:\t0\n/proc/1/status:Seccomp:\t2\n"
        );
        let out = sh(&sb, "id; echo $HOME; pwd", &ExecOptions::user());
        assert_eq!(
            text(&out.stdout),
            "uid=1000(user) gid=1000(user) groups=1000(user)\n/home/user\n/home/user\n"
        );
        // The minimal /dev.
        let out = sh(&sb, "stat -c '%n %F %t:%T %a' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty; ls /dev | tr '\\n' ' '; head -c 4 /dev/zero | od -An -tx1", &ExecOptions::user());
        assert_eq!(
            text(&out.stdout),
            "/dev/null character special file 1:3 666\n/dev/zero character special file 1:5 666\n\
             /dev/full character special file 1:7 666\n/dev/random character special file 1:8 666\n\
             /dev/urandom character special file 1:9 666\n/dev/tty character special file 5:0 666\n\
             fd full null ptmx pts random shm stderr stdin stdout tty urandom zero  00 00 00 00\n",
            "{}",
            text(&out.stderr)
        );
        // PTYs (envd's pty service) come from the sandbox's own devpts instance.
        let out = sb
            .exec_in(
                &["/usr/bin/python3", "-c", "import os, pty; m, s = pty.openpty(); print(os.ttyname(s), oct(os.stat(os.ttyname(s)).st_mode))"],
                &ExecOptions::user(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text(&out.stdout), "/dev/pts/0 0o20620\n", "{}", text(&out.stderr));
        let out = sh(&sb, "grep -E '^(CapEff|CapBnd):' /proc/self/status", &ExecOptions::user());
        assert_eq!(text(&out.stdout), "CapEff:\t0000000000000000\nCapBnd:\t00000000a00425fb\n");
    }

    fn cannot_read_host_files_outside_the_template() {
        let env = env(CG);
        let secret = Path::new("/root/e2b-local-test-secret");
        std::fs::write(secret, "host secret\n").unwrap_or_else(|e| panic!("write secret: {e}"));
        let data_secret = env.dir.join("host-secret");
        std::fs::write(&data_secret, "data secret\n").unwrap_or_else(|e| panic!("write: {e}"));
        let sb = sleeper(env, "iso-read");
        for (who, opts) in as_root_and_user() {
            let script = format!(
                "cat {} {} /etc/shadow /etc/machine-id; ls /root /home; ls /work 2>&1; cat /proc/1/root{} 2>&1",
                secret.display(),
                data_secret.display(),
                secret.display()
            );
            let out = sh(&sb, &script, &opts);
            let stdout = text(&out.stdout);
            let stderr = text(&out.stderr);
            assert!(!stdout.contains("host secret") && !stdout.contains("data secret"), "{who} read a host secret: {stdout}");
            // root finds no such file; user is already stopped by the sandbox's own /root (0700).
            let denial = if who == "root" { "No such file or directory" } else { "Permission denied" };
            assert!(stderr.contains(&format!("cat: {}: {denial}", secret.display())), "{who}: {stderr}");
            assert!(stderr.contains(&format!("cat: {}: No such file or directory", data_secret.display())), "{who}: {stderr}");
            // The template's own shadow (entries without passwords, for PAM), never the host's.
            if who == "root" {
                assert!(stdout.contains("root:*:19000:0:99999:7:::\nuser:*:19000:0:99999:7:::\n"), "{stdout}");
            } else {
                assert!(stderr.contains("cat: /etc/shadow: Permission denied"), "{who}: {stderr}");
            }
            assert!(stderr.contains("cat: /etc/machine-id: No such file or directory"), "{who}: {stderr}");
            assert!(stdout.contains("ls: cannot access '/work': No such file or directory"), "{who}: {stdout}");
            assert!(stdout.contains("No such file or directory") || stdout.contains("Permission denied"), "{who}: {stdout}");
            if who == "user" {
                assert!(stderr.contains("ls: cannot open directory '/root': Permission denied"), "{stderr}");
            }
            // /home holds only `user`.
            assert!(stdout.contains("/home:\nuser\n"), "{who}: {stdout}");
        }
        let _ = std::fs::remove_file(secret);
    }

    fn sees_only_its_own_processes() {
        let env = env(CG);
        let mut host_sleep = Command::new("sleep").arg("300").spawn().unwrap_or_else(|e| panic!("sleep: {e}"));
        let sb = sleeper(env, "iso-ps");
        for (who, opts) in as_root_and_user() {
            let out = sh(&sb, "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo; cat /proc/1/cmdline | tr '\\0' ' '", &opts);
            let s = text(&out.stdout);
            let mut lines = s.lines();
            let pids: Vec<u32> = lines.next().unwrap_or_default().split_whitespace().filter_map(|p| p.parse().ok()).collect();
            // The reaper (1), the sleeper (2), bash and ls/grep/...: all small pids.
            assert!(pids.len() <= 8 && pids.iter().all(|p| *p < 100), "{who} sees {pids:?}");
            assert!(!pids.contains(&host_sleep.id()), "{who} sees the host sleep");
            assert!(pids.contains(&1) && pids.contains(&2), "{who}: {pids:?}");
            assert!(lines.next().unwrap_or_default().contains("__sandbox-init"), "{who}: {s}");
        }
        let _ = host_sleep.kill();
        let _ = host_sleep.wait();
    }

    fn cannot_signal_a_host_process() {
        let env = env(CG);
        let mut host_sleep = Command::new("sleep").arg("300").spawn().unwrap_or_else(|e| panic!("sleep: {e}"));
        let pid = host_sleep.id();
        let sb = sleeper(env, "iso-kill");
        for (who, opts) in as_root_and_user() {
            let out = sh(&sb, &format!("kill -9 {pid}"), &opts);
            assert_eq!(out.status.code(), Some(1), "{who}");
            assert_eq!(text(&out.stderr), format!("/bin/bash: line 1: kill: ({pid}) - No such process\n"), "{who}");
            // The sandbox cannot see the host's pid 1 either: its own pid 1 is the reaper.
            let out = sh(&sb, "kill -0 1 && echo alive", &opts);
            if who == "root" {
                assert_eq!(text(&out.stdout), "alive\n");
            } else {
                assert!(text(&out.stderr).contains("Operation not permitted"), "{}", text(&out.stderr));
            }
        }
        assert!(host_sleep.try_wait().map(|s| s.is_none()).unwrap_or(false), "host sleep died");
        let _ = host_sleep.kill();
        let _ = host_sleep.wait();
    }

    fn cannot_connect_to_the_hosts_loopback() {
        let env = env(CG);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        listener.set_nonblocking(true).unwrap_or_default();
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let sb = sleeper(env, "iso-net");
        for (who, opts) in as_root_and_user() {
            let out = sh(&sb, &format!("echo hi > /dev/tcp/127.0.0.1/{port}"), &opts);
            assert_eq!(out.status.code(), Some(1), "{who}");
            assert!(text(&out.stderr).contains("Connection refused"), "{who}: {}", text(&out.stderr));
            // Only loopback exists: no route anywhere else.
            let out = sh(&sb, "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '", &opts);
            assert_eq!(text(&out.stdout), "lo\n", "{who}");
            let out = sh(&sb, "echo hi > /dev/tcp/10.0.0.1/80", &opts);
            assert!(text(&out.stderr).contains("Network is unreachable"), "{who}: {}", text(&out.stderr));
        }
        assert_eq!(
            listener.accept().map(|_| ()).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "the host listener got a connection"
        );
    }

    fn host_reaches_a_port_inside_without_a_host_port() {
        let env = env(CG);
        let port = 38_917;
        let server = format!(
            "import socket\ns = socket.socket()\ns.bind(('127.0.0.1', {port}))\ns.listen(8)\n\
             while True:\n    c, _ = s.accept()\n    c.sendall(b'hello from ' + socket.gethostname().encode())\n    c.close()\n"
        );
        let sb = spawn(env, "iso-port", InitProgram::sandbox(["/usr/bin/python3", "-c", &server]), default_limits());
        let start = Instant::now();
        let mut stream = loop {
            match sb.connect(port) {
                Ok(s) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && start.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("connect: {e}"),
            }
        };
        let mut got = String::new();
        stream.read_to_string(&mut got).unwrap_or_default();
        assert_eq!(got, "hello from iso-port");
        // Nothing listens on the host side.
        assert_eq!(
            std::net::TcpStream::connect(("127.0.0.1", port)).map(|_| ()).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionRefused)
        );
        // A closed port inside is refused.
        assert_eq!(sb.connect(1).map(|_| ()).map_err(|e| e.kind()), Err(std::io::ErrorKind::ConnectionRefused));
    }

    fn cannot_mount_load_modules_or_use_bpf() {
        let env = env(CG);
        let sb = sleeper(env, "iso-sys");
        let cases: &[(&str, String, &str)] = &[
            ("mount", syscall_py(libc::SYS_mount, ", b'none', b'/mnt', b'tmpfs', 0, None"), "-1 1\n"),
            ("umount2", syscall_py(libc::SYS_umount2, ", b'/proc/sys', 2"), "-1 1\n"),
            ("init_module", syscall_py(libc::SYS_init_module, ", None, 0, b''"), "-1 1\n"),
            ("finit_module", syscall_py(libc::SYS_finit_module, ", 0, b'', 0"), "-1 1\n"),
            ("delete_module", syscall_py(libc::SYS_delete_module, ", b'ext4', 0"), "-1 1\n"),
            ("bpf", syscall_py(libc::SYS_bpf, ", 0, None, 0"), "-1 1\n"),
            ("unshare(NEWUSER)", syscall_py(libc::SYS_unshare, ", 0x10000000"), "-1 1\n"),
            ("unshare(NEWNS)", syscall_py(libc::SYS_unshare, ", 0x00020000"), "-1 1\n"),
            ("setns", syscall_py(libc::SYS_setns, ", 0, 0"), "-1 1\n"),
            ("keyctl", syscall_py(libc::SYS_keyctl, ", 0, 0"), "-1 1\n"),
            ("perf_event_open", syscall_py(libc::SYS_perf_event_open, ", None, 0, -1, -1, 0"), "-1 1\n"),
            ("kexec_load", syscall_py(libc::SYS_kexec_load, ", 0, 0, None, 0"), "-1 1\n"),
            ("open_by_handle_at", syscall_py(libc::SYS_open_by_handle_at, ", 0, None, 0"), "-1 1\n"),
            ("clone3", syscall_py(libc::SYS_clone3, ", None, 0"), "-1 38\n"),
            ("x32 mount", syscall_py(0x4000_0000 + libc::SYS_mount, ", b'none', b'/mnt', b'tmpfs', 0, None"), "-1 1\n"),
        ];
        for (who, opts) in as_root_and_user() {
            for (name, code, want) in cases {
                let out = sb.exec_in(&["/usr/bin/python3", "-c", code], &opts).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(text(&out.stdout), *want, "{who} {name}: {}", text(&out.stderr));
            }
            // The tools agree.
            let out = sh(&sb, "mount -t tmpfs none /mnt", &opts);
            let want = if who == "root" { "permission denied" } else { "must be superuser" };
            assert!(text(&out.stderr).contains(want), "{who}: {}", text(&out.stderr));
            assert_ne!(out.status.code(), Some(0), "{who}");
            let out = sh(&sb, "echo '|/tmp/x' > /proc/sys/kernel/core_pattern", &opts);
            assert!(
                text(&out.stderr).contains("Read-only file system") || text(&out.stderr).contains("Permission denied"),
                "{who}: {}",
                text(&out.stderr)
            );
            let out = sh(&sb, "mknod /tmp/disk b 254 0", &opts);
            assert!(text(&out.stderr).contains("Operation not permitted"), "{who}: {}", text(&out.stderr));
        }
        // Fork and threads (clone without namespace flags) still work.
        let out = sh(&sb, "(echo sub) | cat; python3 -c 'import threading; t = threading.Thread(target=print, args=(\"thread\",)); t.start(); t.join()'", &ExecOptions::user());
        assert_eq!(text(&out.stdout), "sub\nthread\n", "{}", text(&out.stderr));
    }

    fn fork_bomb_stops_at_the_pids_limit_and_the_host_stays_responsive() {
        let env = env(CG);
        let limits = Limits { pids: Some(64), cpu_millis: Some(500), ..default_limits() };
        for (who, opts) in as_root_and_user() {
            let sb = spawn(env, &format!("iso-forkbomb-{who}"), InitProgram::sandbox(["/bin/sleep", "infinity"]), limits);
            let out = sh(&sb, "bash -c ':(){ :|:& };:' >/dev/null 2>&1 </dev/null & sleep 1; echo started", &opts);
            assert_eq!(text(&out.stdout), "started\n", "{who}");
            let start = Instant::now();
            while sb.stats().pids_max_events == 0 && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let stats = sb.stats();
            assert!(stats.pids_max_events > 0, "{who}: the bomb never hit the limit: {stats:?}");
            assert!(stats.pids <= 64, "{who}: {stats:?}");
            // The host still spawns processes promptly.
            let t = Instant::now();
            let ok = Command::new("true").status().map(|s| s.success()).unwrap_or(false);
            assert!(ok && t.elapsed() < Duration::from_secs(2), "host unresponsive: {:?}", t.elapsed());
            // Kill ends a running bomb completely.
            sb.kill().unwrap_or_else(|e| panic!("kill: {e}"));
            assert!(!sb.cgroup().exists(), "{who}: cgroup left behind");
        }
    }

    fn memory_bomb_is_oom_killed_inside_the_sandbox_only() {
        let env = env(CG);
        let limits = Limits { memory_bytes: Some(64 << 20), ..default_limits() };
        let sb = spawn(env, "iso-oom", InitProgram::sandbox(["/bin/sleep", "infinity"]), limits);
        for (who, opts) in as_root_and_user() {
            let out = sb.exec_in(&["/usr/bin/python3", "-c", "b = []\nwhile True: b.append(bytearray(1 << 20))"], &opts)
                .unwrap_or_else(|e| panic!("{e}"));
            // SIGKILL from the memcg OOM killer.
            assert_eq!(out.status.code(), Some(137), "{who}: {}", text(&out.stderr));
            assert!(sb.is_running(), "{who}: the sandbox's init must survive");
            let out = sh(&sb, "echo still here", &opts);
            assert_eq!(text(&out.stdout), "still here\n");
        }
        assert!(sb.stats().memory_limit_bytes == Some(64 << 20));
        // Swap cannot extend the limit (v1 with swap accounting: memsw = the limit).
        let memsw = Path::new("/sys/fs/cgroup/memory").join(CG).join("iso-oom/memory.memsw.limit_in_bytes");
        if memsw.exists() {
            assert_eq!(std::fs::read_to_string(&memsw).unwrap_or_default(), format!("{}\n", 64u64 << 20));
        }
    }

    fn writes_land_only_in_the_sandboxs_upper_directory() {
        let env = env(CG);
        let sb = sleeper(env, "iso-upper");
        let out = sh(&sb, "echo user-data > /home/user/f && echo tmp > /tmp/t", &ExecOptions::user());
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = sh(&sb, "echo root-data > /usr/local/e2b-local-test-file && echo etc > /etc/e2b-test", &ExecOptions::default());
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(std::fs::read_to_string(sb.upper_dir().join("home/user/f")).unwrap_or_default(), "user-data\n");
        assert_eq!(std::fs::read_to_string(sb.upper_dir().join("etc/e2b-test")).unwrap_or_default(), "etc\n");
        assert_eq!(
            std::fs::read_to_string(sb.layer_upper_dir(Path::new("/usr")).join("local/e2b-local-test-file")).unwrap_or_default(),
            "root-data\n"
        );
        // Not on the host, not in the template, not in the upper (/tmp is a tmpfs).
        assert!(!Path::new("/usr/local/e2b-local-test-file").exists());
        assert!(!env.base.layers[0].lowers[0].join("home/user/f").exists());
        assert!(!env.base.layers[0].lowers[0].join("etc/e2b-test").exists());
        assert!(!sb.upper_dir().join("tmp/t").exists());
        // A user cannot write the read-only template's system files.
        let out = sh(&sb, "echo x > /usr/bin/e2b-x", &ExecOptions::user());
        assert!(text(&out.stderr).contains("Permission denied"), "{}", text(&out.stderr));
    }

    fn sandboxes_are_cloned_from_a_namespace_that_holds_no_sandboxs_disk() {
        let env = env(CG);
        let a = sleeper(env, "iso-spawn-ns-a");
        let b = sleeper(env, "iso-spawn-ns-b");
        let disk = |sb: &common::Guard| sb.dir().join("disk").display().to_string();
        let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        assert!(host.contains(&format!(" {} ", disk(&a))), "{host}");
        // The runtime holds the namespace by a descriptor of this process.
        let own = std::fs::read_link("/proc/self/ns/mnt").unwrap_or_default();
        let held: Vec<std::path::PathBuf> = std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                std::fs::read_link(p).is_ok_and(|l| l != own && l.to_string_lossy().starts_with("mnt:["))
            })
            .collect();
        assert_eq!(held.len(), 1, "{held:?}");
        let path = format!("/proc/{}/fd/{}", std::process::id(), held[0].file_name().unwrap_or_default().to_string_lossy());
        let out = std::process::Command::new("nsenter")
            .arg(format!("--mount={path}"))
            .args(["cat", "/proc/self/mountinfo"])
            .output()
            .unwrap_or_else(|e| panic!("nsenter: {e}"));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let spawn_ns = text(&out.stdout);
        let sandboxes = format!("{}/", env.dir.join("sandboxes").display());
        assert!(!spawn_ns.contains(&sandboxes), "{spawn_ns}");
        assert!(spawn_ns.lines().count() < host.lines().count(), "{spawn_ns}");
        // Both still have their own disk: what each writes lands in its own upper directory.
        for (sb, word) in [(&a, "a"), (&b, "b")] {
            let out = sh(sb, &format!("echo {word} > /home/user/who"), &ExecOptions::user());
            assert!(out.status.success(), "{}", text(&out.stderr));
            assert_eq!(std::fs::read_to_string(sb.upper_dir().join("home/user/who")).unwrap_or_default(), format!("{word}\n"));
        }
    }

    fn a_sandbox_writing_past_its_disk_budget_gets_enospc_and_the_host_holds_at_most_the_budget() {
        let env = env(CG);
        let budget: u64 = 32 << 20;
        let limits = Limits { disk_bytes: Some(budget), ..default_limits() };
        let sb = spawn(env, "iso-disk", InitProgram::sandbox(["/bin/sleep", "infinity"]), limits);
        let image = sb.dir().join("disk.img");
        let disk = sb.dir().join("disk");
        // The disk is an ext4 image of the budget's size on a loop device, mounted nosuid,nodev.
        assert_eq!(std::fs::metadata(&image).map(|m| m.len()).unwrap_or(0), budget);
        let loops = loop_devices_backed_by(sb.dir());
        assert_eq!(loops.len(), 1, "{loops:?}");
        let flags = nix::sys::statvfs::statvfs(&disk).unwrap_or_else(|e| panic!("statvfs: {e}")).flags();
        assert!(flags.contains(nix::sys::statvfs::FsFlags::ST_NOSUID | nix::sys::statvfs::FsFlags::ST_NODEV), "{flags:?}");
        // Inside, df shows the budget (less ext4's metadata) on /.
        let out = sh(&sb, "df -B1 --output=size / | tail -n 1", &ExecOptions::user());
        let (used0, total) = sb.disk_usage().unwrap_or_default();
        assert_eq!(text(&out.stdout).trim(), total.to_string(), "{}", text(&out.stderr));
        assert!(total > budget * 9 / 10 && total < budget && used0 < 1 << 20, "{used0} of {total}");
        // The attack: write twice the budget, as user and as root.
        for (who, opts) in as_root_and_user() {
            let out = sh(&sb, &format!("dd if=/dev/urandom of={}/big-{who} bs=1M count=64", if who == "root" { "/root" } else { "/home/user" }), &opts);
            assert_eq!(out.status.code(), Some(1), "{who}");
            assert!(text(&out.stderr).contains("No space left on device"), "{who}: {}", text(&out.stderr));
            let _ = sh(&sb, "sync", &ExecOptions::default());
            let allocated = std::fs::metadata(&image).map(|m| m.blocks() * 512).unwrap_or(u64::MAX);
            assert!(allocated <= budget, "{who}: the image holds {allocated} bytes of the host's disk");
        }
        let (used, _) = sb.disk_usage().unwrap_or_default();
        assert!(used > total - (2 << 20), "used {used} of {total}");
        // The sandbox lives on, and deleting gives the host its space back (discard).
        let out = sh(&sb, "rm /home/user/big-user /root/big-root && sync && echo alive", &ExecOptions::default());
        assert_eq!(text(&out.stdout), "alive\n", "{}", text(&out.stderr));
        let deadline = Instant::now() + Duration::from_secs(5);
        let allocated = loop {
            let a = std::fs::metadata(&image).map(|m| m.blocks() * 512).unwrap_or(u64::MAX);
            if a < 8 << 20 || Instant::now() > deadline {
                break a;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(allocated < 8 << 20, "{allocated} bytes still allocated after rm");
        // Kill leaves no loop device, mount or image (other tests' sandboxes run meanwhile).
        let dir = sb.dir().to_path_buf();
        let backing = std::fs::canonicalize(&image).unwrap_or_else(|e| panic!("{e}"));
        sb.kill().unwrap_or_else(|e| panic!("kill: {e}"));
        env.runtime.wait_for_disk_cleanup();
        assert!(!dir.exists());
        assert_eq!(loop_devices_backed_by(&backing), Vec::<String>::new());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        assert!(!mounts.contains("iso-disk"), "{mounts}");
    }

    fn a_volume_is_reachable_only_from_sandboxes_that_mount_it() {
        let env = env(CG);
        let vols = Volumes::new(
            &env.dir,
            env.runtime.mkfs_ext4().map(Path::to_owned).map_err(str::to_owned),
            32 << 20,
        );
        let id = "iso-volume";
        let _ = vols.remove(id);
        vols.make(id).unwrap_or_else(|e| panic!("{e}"));
        let mount_point = vols.mount_point(id);
        let image = mount_point.with_file_name("disk.img");
        std::fs::write(mount_point.join("vol-marker"), "volume-secret-data").unwrap();
        // As the content API leaves it: owned by the sandboxes' `user`.
        std::os::unix::fs::chown(mount_point.join("vol-marker"), Some(1000), Some(1000)).unwrap();
        let dev = std::fs::metadata(&mount_point).unwrap().dev();
        let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
        let mut spec = SandboxSpec::new("iso-vol-in", &env.base, InitProgram::sandbox(["/bin/sleep", "infinity"]));
        spec.limits = default_limits();
        spec.binds = vec![BindMount { source: mount_point.clone(), target: "/mnt/vol".into() }];
        let inside = common::Guard(env.runtime.spawn(spec).unwrap_or_else(|e| panic!("spawn: {e}")));
        let out = sh(&inside, "cat /mnt/vol/vol-marker && echo appended >> /mnt/vol/vol-marker && stat -c '%U %a' /mnt/vol", &ExecOptions::user());
        assert_eq!(text(&out.stdout), "volume-secret-datauser 755\n", "{}", text(&out.stderr));
        // The attack, from a sandbox without the mount: look for the data by name, at the
        // host's paths of the mount and the image, through another sandbox's root, and
        // through the block device itself.
        let outside = sleeper(env, "iso-vol-out");
        let script = format!(
            "find / \\( -path /proc -o -path /sys \\) -prune -o -name vol-marker -print 2>/dev/null; echo found-none; \
             cat {mp}/vol-marker {img} 2>&1 | sed 's/^cat: //'; \
             grep -c {id} /proc/self/mountinfo; \
             cat /proc/[0-9]*/root/mnt/vol/vol-marker 2>/dev/null | wc -c; \
             ls /dev/loop-control /dev/loop{minor} 2>&1 | sed 's/^ls: //'; \
             mknod /tmp/vol-dev b {major} {minor} 2>&1; \
             mknod /dev/shm/vol-dev b {major} {minor} 2>&1",
            mp = mount_point.display(),
            img = image.display(),
        );
        for (who, opts) in as_root_and_user() {
            let out = sh(&outside, &script, &opts);
            let stdout = text(&out.stdout);
            assert!(!stdout.contains("volume-secret-data"), "{who}: {stdout}");
            assert_eq!(
                stdout,
                format!(
                    "found-none\n\
                     {mp}/vol-marker: No such file or directory\n{img}: No such file or directory\n\
                     0\n\
                     0\n\
                     cannot access '/dev/loop-control': No such file or directory\n\
                     cannot access '/dev/loop{minor}': No such file or directory\n\
                     mknod: /tmp/vol-dev: Operation not permitted\n\
                     mknod: /dev/shm/vol-dev: Operation not permitted\n",
                    mp = mount_point.display(),
                    img = image.display(),
                ),
                "{who}"
            );
        }
        drop(inside);
        drop(outside);
        assert_eq!(std::fs::read_to_string(mount_point.join("vol-marker")).unwrap(), "volume-secret-dataappended\n");
        vols.remove(id).unwrap_or_else(|e| panic!("{e}"));
        assert!(!mount_point.exists());
    }

    fn two_sandboxes_see_neither_files_nor_processes_of_each_other() {
        let env = env(CG);
        let a = spawn(env, "iso-two-a", InitProgram::sandbox(["/bin/sleep", "4242"]), default_limits());
        let b = spawn(env, "iso-two-b", InitProgram::sandbox(["/bin/sleep", "4343"]), default_limits());
        let out = sh(&a, "echo a-secret > /home/user/a-secret && echo a-tmp > /tmp/a-tmp", &ExecOptions::user());
        assert!(out.status.success());
        for (who, opts) in as_root_and_user() {
            let out = sh(&b, "cat /home/user/a-secret /tmp/a-tmp; ps -eo args", &opts);
            let stdout = text(&out.stdout);
            assert!(!stdout.contains("a-secret") && !stdout.contains("a-tmp"), "{who}: {stdout}");
            assert!(!stdout.contains("4242"), "{who} sees sandbox a's process: {stdout}");
            assert!(stdout.contains("sleep 4343"), "{who}: {stdout}");
            assert!(text(&out.stderr).contains("cat: /home/user/a-secret: No such file or directory"));
        }
    }

    fn freeze_stops_and_thaw_resumes_every_process() {
        let env = env(CG);
        let init = InitProgram::sandbox(["/bin/bash", "-c", "i=0; while :; do i=$((i+1)); echo $i > /home/user/counter; sleep 0.01; done"]);
        let sb = spawn(env, "iso-freeze", init, default_limits());
        let counter = sb.upper_dir().join("home/user/counter");
        let read = || std::fs::read_to_string(&counter).unwrap_or_default();
        let start = Instant::now();
        while read().is_empty() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        sb.freeze().unwrap_or_else(|e| panic!("freeze: {e}"));
        assert!(sb.is_frozen());
        assert_eq!(
            sb.exec_in(&["/bin/true"], &ExecOptions::default()).map(|_| ()).map_err(|e| e.to_string()),
            Err("sandbox iso-freeze is paused".to_owned())
        );
        let frozen = read();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(read(), frozen, "a frozen sandbox kept running");
        sb.thaw().unwrap_or_else(|e| panic!("thaw: {e}"));
        std::thread::sleep(Duration::from_millis(200));
        assert_ne!(read(), frozen, "a thawed sandbox did not resume");
        // Kill works on a frozen sandbox too.
        sb.freeze().unwrap_or_else(|e| panic!("freeze: {e}"));
        sb.kill().unwrap_or_else(|e| panic!("kill frozen: {e}"));
        assert!(!sb.cgroup().exists());
    }

    fn init_exit_code_is_reported_and_bad_programs_fail_cleanly() {
        let env = env(CG);
        let sb = spawn(env, "iso-exit", InitProgram::sandbox(["/bin/sh", "-c", "exit 7"]), default_limits());
        let start = Instant::now();
        let code = loop {
            match sb.try_wait() {
                Ok(Some(c)) => break c,
                Ok(None) if start.elapsed() < Duration::from_secs(5) => std::thread::sleep(Duration::from_millis(5)),
                other => panic!("try_wait: {other:?}"),
            }
        };
        assert_eq!(code, 7);
        assert!(matches!(sb.exec_in(&["/bin/true"], &ExecOptions::default()).map(|o| o.status.code()), Ok(Some(125))));

        let mut spec = e2b_local::isolation::SandboxSpec::new("iso-noexe", &env.base, InitProgram::sandbox(["/nonexistent/prog"]));
        spec.limits = default_limits();
        let err = env.runtime.spawn(spec).map(|_| ()).err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("sandbox setup: exec /nonexistent/prog: No such file or directory (os error 2)"));
        assert!(!env.dir.join("sandboxes/iso-noexe").exists(), "failed spawn left its directory");
        assert!(!Path::new("/sys/fs/cgroup/pids").join(CG).join("iso-noexe").exists(), "failed spawn left its cgroup");
        let spec = e2b_local::isolation::SandboxSpec::new("iso-exit", &env.base, InitProgram::sandbox(["/bin/true"]));
        assert_eq!(env.runtime.spawn(spec).map(|_| ()).err().map(|e| e.to_string()).as_deref(), Some("sandbox iso-exit already exists"));
    }

    fn self_exe_runs_the_host_binary_inside() {
        let env = env(CG);
        // The helper's own executable (the e2b-local binary) in its exec-helper role with no
        // config on stdin fails in a way only that binary can, with exit code 125: proof it
        // ran inside by descriptor, without any copy in the sandbox.
        let log = env.dir.join("self-exe.log");
        let _ = std::fs::remove_file(&log);
        let mut spec = e2b_local::isolation::SandboxSpec::new("iso-selfexe", &env.base, InitProgram::self_exe(["e2b-local", "__sandbox-exec"]));
        spec.log = Some(log.clone());
        let sb = common::Guard(env.runtime.spawn(spec).unwrap_or_else(|e| panic!("{e}")));
        let start = Instant::now();
        let code = loop {
            match sb.try_wait() {
                Ok(Some(c)) => break c,
                Ok(None) if start.elapsed() < Duration::from_secs(5) => std::thread::sleep(Duration::from_millis(5)),
                other => panic!("try_wait: {other:?}"),
            }
        };
        assert_eq!(code, 125);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap_or_default(),
            "e2b-local exec: sandbox helper protocol: bad config: EOF while parsing a value at line 1 column 0\n"
        );
    }

    fn signals_reach_the_program_through_the_reaper() {
        let env = env(CG);
        let init = InitProgram::sandbox(["/bin/bash", "-c", "trap 'echo got-term > /home/user/sig; exit 3' TERM; echo up > /home/user/up; while :; do sleep 0.05; done"]);
        let sb = spawn(env, "iso-signal", init, default_limits());
        let start = Instant::now();
        while !sb.upper_dir().join("home/user/up").exists() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let exit_fd = sb.exit_fd().ok().flatten().unwrap_or_else(|| panic!("no exit fd"));
        let mut pfd = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&exit_fd), nix::poll::PollFlags::POLLIN)];
        assert_eq!(nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO).ok(), Some(0), "readable before exit");
        sb.signal(libc::SIGTERM).unwrap_or_else(|e| panic!("signal: {e}"));
        assert_eq!(nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(5000u16)).ok(), Some(1), "not readable after exit");
        let code = loop {
            match sb.try_wait() {
                Ok(Some(c)) => break c,
                Ok(None) if start.elapsed() < Duration::from_secs(5) => std::thread::sleep(Duration::from_millis(5)),
                other => panic!("try_wait: {other:?}"),
            }
        };
        assert_eq!(code, 3);
        assert_eq!(std::fs::read_to_string(sb.upper_dir().join("home/user/sig")).unwrap_or_default(), "got-term\n");
        assert!(matches!(sb.signal(libc::SIGTERM), Err(e2b_local::isolation::Error::NotRunning(_))));
    }

    fn a_new_handle_attaches_to_a_running_sandbox() {
        let env = env(CG);
        let mut spec = e2b_local::isolation::SandboxSpec::new("iso-attach", &env.base, InitProgram::sandbox(["/bin/sleep", "infinity"]));
        spec.limits = default_limits();
        let first = env.runtime.spawn(spec).unwrap_or_else(|e| panic!("spawn: {e}"));
        let pid = first.init_pid();
        first.freeze().unwrap_or_else(|e| panic!("freeze: {e}"));
        // Dropping a handle leaves the sandbox running (as after a server restart).
        drop(first);
        let wrong = env.runtime.attach("iso-attach", i32::try_from(std::process::id()).unwrap_or(1));
        assert!(matches!(wrong, Err(e2b_local::isolation::Error::NotRunning(_))), "{wrong:?}");
        let sb = common::Guard(env.runtime.attach("iso-attach", pid).unwrap_or_else(|e| panic!("attach: {e}")));
        assert!(sb.is_frozen());
        sb.thaw().unwrap_or_else(|e| panic!("thaw: {e}"));
        let out = sh(&sb, "echo attached; hostname", &ExecOptions::default());
        assert_eq!(text(&out.stdout), "attached\niso-attach\n");
        sb.kill().unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(!sb.cgroup().exists());
        assert!(!env.dir.join("sandboxes/iso-attach").exists());
        assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().contains("iso-attach"));
    }

    fn without_limits_the_upper_directory_is_on_a_nosuid_bind_mount() {
        let env = env(CG);
        let sb = spawn(env, "iso-nolimits", InitProgram::sandbox(["/bin/sleep", "infinity"]), Limits::default());
        let out = sh(&sb, "echo kept > /home/user/f; df --output=target,fstype / /tmp | tail -n 2 | tr -s ' '", &ExecOptions::user());
        assert_eq!(text(&out.stdout), "/ overlay\n/tmp tmpfs\n", "{}", text(&out.stderr));
        assert_eq!(std::fs::read_to_string(sb.upper_dir().join("home/user/f")).unwrap_or_default(), "kept\n");
        // No budget: the upper directory is on the data directory's filesystem, through a
        // nosuid,nodev bind mount of the sandbox's disk directory that kill removes.
        let disk = sb.dir().join("disk");
        let flags = nix::sys::statvfs::statvfs(&disk).unwrap_or_else(|e| panic!("statvfs: {e}")).flags();
        assert!(flags.contains(nix::sys::statvfs::FsFlags::ST_NOSUID | nix::sys::statvfs::FsFlags::ST_NODEV), "{flags:?}");
        let disk_mount = format!(" {} ", disk.to_str().unwrap_or("?"));
        assert!(std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().contains(&disk_mount));
        let stats = sb.stats();
        assert_eq!(stats.memory_limit_bytes, None, "{stats:?}");
        assert_eq!(sb.disk_usage(), None);
        sb.kill().unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(!sb.dir().exists());
        assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().contains(&disk_mount));
    }

    fn setuid_programs_work_without_no_new_privs_and_not_with_it() {
        // What sudo needs: exec of a setuid-root file raises the effective uid. The
        // bounding set still caps what that root can do.
        let env = env(CG);
        let sb = sleeper(env, "iso-setuid");
        let out = sh(&sb, "cp /usr/bin/id /home/user/id-suid && chmod 4755 /home/user/id-suid", &ExecOptions::default());
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = sh(&sb, "/home/user/id-suid", &ExecOptions::user());
        assert_eq!(text(&out.stdout), "uid=1000(user) gid=1000(user) euid=0(root) groups=1000(user)\n", "{}", text(&out.stderr));
        let out = sh(&sb, "grep CapEff /proc/self/status; /home/user/id-suid -u", &ExecOptions { no_new_privs: true, ..ExecOptions::user() });
        assert_eq!(text(&out.stdout), "CapEff:\t0000000000000000\n1000\n", "{}", text(&out.stderr));
    }

    fn the_host_executable_cannot_be_written_through_proc_exe() {
        // runc's CVE-2019-5736: root inside reopens /proc/<pid>/exe of a process running a
        // host binary for writing and overwrites the host's copy. The program is a private
        // copy of sleep here, so a failure of this test damages nothing.
        let env = env(CG);
        let exe = env.dir.join("sleep-copy");
        std::fs::copy("/bin/sleep", &exe).unwrap_or_else(|e| panic!("copy: {e}"));
        let sb = spawn(env, "iso-exe", InitProgram::host(&exe, ["sleep", "infinity"]), default_limits());
        // Text-busy while it runs; and it is reached through a read-only mount, so the
        // write is refused also once it stops running. Its path inside is just "/" (the
        // detached bind mount), which names no host path.
        let py = "import os\n\
                  try:\n    os.open('/proc/2/exe', os.O_WRONLY)\n    print('opened')\n\
                  except OSError as e:\n    print(e.strerror)\n\
                  print(bool(os.statvfs('/proc/2/exe').f_flag & os.ST_RDONLY))\n\
                  print(os.readlink('/proc/2/exe'))";
        let out = sb.exec_in(&["/usr/bin/python3", "-c", py], &ExecOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text(&out.stdout), "Text file busy\nTrue\n/\n", "{}", text(&out.stderr));
        let out = sb.exec_in(&["/usr/bin/python3", "-c", "import os\ntry:\n    os.open('/proc/2/exe', os.O_WRONLY)\nexcept OSError as e:\n    print(e.strerror)"], &ExecOptions::user()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text(&out.stdout), "Permission denied\n", "{}", text(&out.stderr));
        let _ = std::fs::remove_file(&exe);
    }

    fn check_names_a_data_dir_that_cannot_hold_upper_directories() {
        // overlayfs cannot be the upper filesystem of another overlay.
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let d = |n: &str| {
            let p = tmp.path().join(n);
            std::fs::create_dir_all(&p).unwrap_or_default();
            p
        };
        let (l, u, w, m) = (d("l"), d("u"), d("w"), d("m"));
        let opts = format!("lowerdir={},upperdir={},workdir={}", l.display(), u.display(), w.display());
        nix::mount::mount(Some("overlay"), &m, Some("overlay"), nix::mount::MsFlags::empty(), Some(opts.as_str()))
            .unwrap_or_else(|e| panic!("mount: {e}"));
        let data = m.join("data");
        let result = e2b_local::isolation::Runtime::new(e2b_local::isolation::RuntimeConfig::new(&data))
            .and_then(|rt| rt.check())
            .map_err(|e| e.to_string());
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        let err = result.err().unwrap_or_default();
        assert!(
            err.starts_with(&format!("overlayfs with upper directories in {} (EINVAL", data.display()))
                && err.ends_with("is unavailable: put the data dir on ext4, xfs or tmpfs"),
            "{err}"
        );
    }
}
