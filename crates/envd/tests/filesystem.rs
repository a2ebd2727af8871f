//! `filesystem.Filesystem` over Connect against the real binary, with the generated client.

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use base64::Engine as _;
use common::{Envd, is_root, test_user};
use e2b_envd::pb::filesystem::watch_dir_response::Event as W;
use e2b_envd::pb::filesystem::{self as pb, filesystem_client::FilesystemClient};
use e2b_envd::{Client, Code, Request};
use futures_util::StreamExt as _;

fn client(envd: &Envd) -> FilesystemClient {
    FilesystemClient::new(Client::builder(envd.base.clone()).build().unwrap())
}

fn ev(name: &str, t: pb::EventType) -> (String, i32) {
    (name.to_owned(), t as i32)
}

#[tokio::test]
async fn stat_make_dir_move_list_remove() {
    let envd = Envd::start(&[]);
    let c = client(&envd);
    let d = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(d.path()).unwrap();
    let r = root.to_str().unwrap().to_owned();

    let made = c
        .make_dir(pb::MakeDirRequest {
            path: format!("{r}/a/b"),
        })
        .await
        .unwrap()
        .entry
        .unwrap();
    assert_eq!(made.name, "b");
    assert_eq!(made.r#type, pb::FileType::Directory as i32);
    assert_eq!(made.path, format!("{r}/a/b"));
    assert_eq!(made.mode, 0o755);
    assert_eq!(made.permissions, "drwxr-xr-x");
    let e = c
        .make_dir(pb::MakeDirRequest {
            path: format!("{r}/a/b"),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message().to_owned()),
        (
            Code::AlreadyExists,
            format!("directory already exists: {r}/a/b")
        )
    );
    std::fs::write(root.join("a/f.txt"), b"12345").unwrap();
    xattr::set(root.join("a/f.txt"), "user.e2b.k", b"v").unwrap();
    let e = c
        .make_dir(pb::MakeDirRequest {
            path: format!("{r}/a/f.txt"),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    let st = c
        .stat(pb::StatRequest {
            path: format!("{r}/a/f.txt"),
        })
        .await
        .unwrap()
        .entry
        .unwrap();
    assert_eq!(st.size, 5);
    assert_eq!(st.r#type, pb::FileType::File as i32);
    assert_eq!(st.metadata.get("k").map(String::as_str), Some("v"));
    assert_eq!(st.owner, if is_root() { "root" } else { &st.owner });
    let mtime = std::fs::metadata(root.join("a/f.txt")).unwrap().mtime();
    assert_eq!(st.modified_time.unwrap().seconds, mtime);
    let e = c
        .stat(pb::StatRequest {
            path: format!("{r}/nope"),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .stat(pb::StatRequest {
            path: "~someone/x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    std::os::unix::fs::symlink(root.join("a/f.txt"), root.join("a/link")).unwrap();
    let l = c
        .stat(pb::StatRequest {
            path: format!("{r}/a/link"),
        })
        .await
        .unwrap()
        .entry
        .unwrap();
    assert_eq!(l.r#type, pb::FileType::File as i32);
    assert_eq!(l.permissions, "Lrwxrwxrwx");
    assert_eq!(l.mode, 0o644);
    assert_eq!(
        l.symlink_target.as_deref(),
        Some(format!("{r}/a/f.txt").as_str())
    );

    let list = c
        .list_dir(pb::ListDirRequest {
            path: r.clone(),
            depth: 0,
        })
        .await
        .unwrap();
    let names: Vec<_> = list.entries.iter().map(|e| e.path.clone()).collect();
    assert_eq!(names, [format!("{r}/a")]);
    let list = c
        .list_dir(pb::ListDirRequest {
            path: r.clone(),
            depth: 2,
        })
        .await
        .unwrap();
    let names: Vec<_> = list.entries.iter().map(|e| e.name.clone()).collect();
    assert_eq!(names, ["a", "b", "f.txt", "link"]);
    std::os::unix::fs::symlink(root.join("l2"), root.join("l1")).unwrap();
    std::os::unix::fs::symlink(root.join("l1"), root.join("l2")).unwrap();
    let e = c
        .list_dir(pb::ListDirRequest {
            path: format!("{r}/l1"),
            depth: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = c
        .list_dir(pb::ListDirRequest {
            path: format!("{r}/a/f.txt"),
            depth: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .list_dir(pb::ListDirRequest {
            path: format!("{r}/zzz"),
            depth: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let moved = c
        .r#move(pb::MoveRequest {
            source: format!("{r}/a/f.txt"),
            destination: format!("{r}/x/y/g.txt"),
        })
        .await
        .unwrap()
        .entry
        .unwrap();
    assert_eq!((moved.name.as_str(), moved.size), ("g.txt", 5));
    let e = c
        .r#move(pb::MoveRequest {
            source: format!("{r}/a/f.txt"),
            destination: format!("{r}/x/h.txt"),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    c.remove(pb::RemoveRequest {
        path: format!("{r}/x"),
    })
    .await
    .unwrap();
    assert!(!root.join("x").exists());
    c.remove(pb::RemoveRequest {
        path: format!("{r}/x"),
    })
    .await
    .unwrap();

    // Wire shape of an entry as the SDK reads it.
    let resp = common::http()
        .post(format!("{}/filesystem.Filesystem/Stat", envd.base))
        .header("content-type", "application/json")
        .body(serde_json::json!({"path": format!("{r}/a/b")}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["entry"]["type"], "FILE_TYPE_DIRECTORY");
    assert!(v["entry"]["size"].is_string());
    assert!(v["entry"]["modifiedTime"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
#[ignore = "needs root: creates a user and acts as it"]
async fn make_dir_as_user_owns_created_dirs() {
    let (name, uid, gid, home) = test_user();
    let envd = Envd::start(&[]);
    let c = client(&envd);
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{name}:"))
    );
    let e = c
        .make_dir(
            Request::new(pb::MakeDirRequest {
                path: "mk/inner".into(),
            })
            .with_header("authorization", &auth),
        )
        .await
        .unwrap()
        .entry
        .unwrap();
    assert_eq!(e.path, format!("{home}/mk/inner"));
    assert_eq!(e.owner, name);
    for p in ["mk", "mk/inner"] {
        let md = std::fs::metadata(format!("{home}/{p}")).unwrap();
        assert_eq!((md.uid(), md.gid()), (uid, gid));
    }
    std::fs::remove_dir_all(format!("{home}/mk")).unwrap();
}

async fn next_events(
    s: &mut e2b_envd::Streaming<pb::WatchDirResponse>,
    n: usize,
) -> Vec<(String, i32)> {
    let mut got = Vec::new();
    while got.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(10), s.next())
            .await
            .unwrap_or_else(|_| panic!("timed out after {got:?}"))
            .unwrap()
            .unwrap();
        match m.event {
            Some(W::Filesystem(f)) => got.push((f.name, f.r#type)),
            Some(W::Keepalive(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

#[tokio::test]
async fn watch_dir_streaming_recursive() {
    let envd = Envd::start(&[]);
    let c = client(&envd);
    let d = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(d.path()).unwrap();
    std::fs::create_dir(root.join("nested")).unwrap();
    let mut s = c
        .watch_dir(pb::WatchDirRequest {
            path: root.to_str().unwrap().into(),
            recursive: true,
            include_entry: true,
            allow_network_mounts: false,
        })
        .await
        .unwrap();
    let first = s.next().await.unwrap().unwrap();
    assert!(matches!(first.event, Some(W::Start(_))), "{first:?}");

    std::fs::write(root.join("nested/f.txt"), b"x").unwrap();
    assert_eq!(
        next_events(&mut s, 2).await,
        [
            ev("nested/f.txt", pb::EventType::Create),
            ev("nested/f.txt", pb::EventType::Write)
        ]
    );
    std::fs::rename(root.join("nested/f.txt"), root.join("nested/g.txt")).unwrap();
    assert_eq!(
        next_events(&mut s, 2).await,
        [
            ev("nested/f.txt", pb::EventType::Rename),
            ev("nested/g.txt", pb::EventType::Create)
        ]
    );
    std::fs::remove_file(root.join("nested/g.txt")).unwrap();
    assert_eq!(
        next_events(&mut s, 1).await,
        [ev("nested/g.txt", pb::EventType::Remove)]
    );
    // A new subdirectory is watched too.
    std::fs::create_dir(root.join("fresh")).unwrap();
    assert_eq!(
        next_events(&mut s, 1).await,
        [ev("fresh", pb::EventType::Create)]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(root.join("fresh/h"), b"").unwrap();
    assert_eq!(
        next_events(&mut s, 1).await,
        [ev("fresh/h", pb::EventType::Create)]
    );
    std::fs::set_permissions(
        root.join("fresh/h"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let m = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match m.event {
        Some(W::Filesystem(f)) => {
            assert_eq!(
                (f.name.as_str(), f.r#type),
                ("fresh/h", pb::EventType::Chmod as i32)
            );
            assert_eq!(f.entry.unwrap().mode, 0o600);
        }
        other => panic!("{other:?}"),
    }

    // Errors.
    let err = match c
        .watch_dir(pb::WatchDirRequest {
            path: root.join("missing").to_str().unwrap().into(),
            ..Default::default()
        })
        .await
    {
        Err(e) => e,
        Ok(mut s) => s.next().await.unwrap().unwrap_err(),
    };
    assert_eq!(err.code(), Code::NotFound);
    std::fs::write(root.join("file"), b"").unwrap();
    let err = match c
        .watch_dir(pb::WatchDirRequest {
            path: root.join("file").to_str().unwrap().into(),
            ..Default::default()
        })
        .await
    {
        Err(e) => e,
        Ok(mut s) => s.next().await.unwrap().unwrap_err(),
    };
    assert_eq!(err.code(), Code::InvalidArgument);

    // Keepalive at the requested interval.
    let mut s = c
        .watch_dir(
            Request::new(pb::WatchDirRequest {
                path: root.to_str().unwrap().into(),
                ..Default::default()
            })
            .with_header("keepalive-ping-interval", "1"),
        )
        .await
        .unwrap();
    assert!(matches!(
        s.next().await.unwrap().unwrap().event,
        Some(W::Start(_))
    ));
    let m = tokio::time::timeout(Duration::from_secs(3), s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(m.event, Some(W::Keepalive(_))), "{m:?}");
}

#[tokio::test]
async fn polled_watchers() {
    let envd = Envd::start(&[]);
    let c = client(&envd);
    let d = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(d.path()).unwrap();
    let id = c
        .create_watcher(pb::CreateWatcherRequest {
            path: root.to_str().unwrap().into(),
            recursive: true,
            include_entry: false,
            allow_network_mounts: false,
        })
        .await
        .unwrap()
        .watcher_id;
    assert!(id.starts_with('w') && id.len() == 21, "{id}");
    std::fs::create_dir(root.join("sub")).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(root.join("sub/a"), b"1").unwrap();
    let mut got = Vec::new();
    for _ in 0..50 {
        let evs = c
            .get_watcher_events(pb::GetWatcherEventsRequest {
                watcher_id: id.clone(),
            })
            .await
            .unwrap()
            .events;
        got.extend(evs.into_iter().map(|e| (e.name, e.r#type)));
        if got.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        got,
        [
            ev("sub", pb::EventType::Create),
            ev("sub/a", pb::EventType::Create),
            ev("sub/a", pb::EventType::Write)
        ]
    );
    // Drained: nothing new.
    let evs = c
        .get_watcher_events(pb::GetWatcherEventsRequest {
            watcher_id: id.clone(),
        })
        .await
        .unwrap()
        .events;
    assert!(evs.is_empty(), "{evs:?}");
    c.remove_watcher(pb::RemoveWatcherRequest {
        watcher_id: id.clone(),
    })
    .await
    .unwrap();
    let e = c
        .get_watcher_events(pb::GetWatcherEventsRequest {
            watcher_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .remove_watcher(pb::RemoveWatcherRequest { watcher_id: id })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .create_watcher(pb::CreateWatcherRequest {
            path: root.join("nope").to_str().unwrap().into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

/// Defect 9: OS errors from a client's request map to its Connect code, not `internal`.
#[tokio::test]
async fn os_errors_map_to_client_codes() {
    let envd = Envd::start(&[]);
    let c = client(&envd);
    let d = tempfile::tempdir().unwrap();
    let r = d.path().to_str().unwrap().to_owned();
    // Refused by the path check before any system call.
    let long = format!("{r}/{}", "n".repeat(300));
    let e = c
        .stat(pb::StatRequest { path: long.clone() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    // Through the errno mapping: a symlink loop is ELOOP.
    std::os::unix::fs::symlink("loop", d.path().join("loop")).unwrap();
    let e = c
        .make_dir(pb::MakeDirRequest {
            path: format!("{r}/loop/sub"),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message().to_owned()),
        (
            Code::FailedPrecondition,
            format!(
                "error getting file info for {r}/loop/sub: Too many levels of symbolic links (os error 40)"
            )
        )
    );
    let e = c
        .make_dir(pb::MakeDirRequest {
            path: format!("{long}/sub"),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let e = c
        .stat(pb::StatRequest {
            path: format!("{r}/a\0b"),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    // A file in the middle of the path: that path does not exist.
    std::fs::write(d.path().join("file"), b"").unwrap();
    let e = c
        .list_dir(pb::ListDirRequest {
            path: format!("{r}/file/x"),
            depth: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
}

/// Defect 9: `ListDir /proc` deep enough to meet unreadable directories (`fdinfo` of other
/// users' processes) skips them instead of failing. As root, envd runs as a test user so
/// that some directories are unreadable.
#[tokio::test]
async fn list_dir_skips_unreadable_entries() {
    let envd = if is_root() {
        let (_, uid, gid, _) = test_user();
        Envd::start_as(uid, gid, &[])
    } else {
        Envd::start(&[])
    };
    let c = client(&envd);
    let entries = c
        .list_dir(pb::ListDirRequest {
            path: "/proc".into(),
            depth: 3,
        })
        .await
        .unwrap()
        .entries;
    assert!(entries.iter().any(|e| e.path == "/proc/1/status"));
    // pid 1 is another user's: its fd directory cannot be read, and is listed without children.
    assert!(entries.iter().any(|e| e.path == "/proc/1/fd"));
    assert!(!entries.iter().any(|e| e.path.starts_with("/proc/1/fd/")));
}

/// Defect 4: a full filesystem is `resource_exhausted` on RPCs, not `internal`.
#[tokio::test]
#[ignore = "needs root: mounts a tmpfs"]
async fn full_filesystem_is_resource_exhausted() {
    let envd = Envd::start(&[]);
    let c = client(&envd);
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().to_str().unwrap().to_owned();
    // Room for the root directory and two more inodes.
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,nr_inodes=3", "tmpfs", &mnt])
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let mut made = 0;
    while std::fs::create_dir(dir.path().join(format!("d{made}"))).is_ok() {
        made += 1;
    }
    let e = c
        .make_dir(pb::MakeDirRequest {
            path: format!("{mnt}/one-too-many"),
        })
        .await
        .unwrap_err();
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    assert!(made > 0);
    assert_eq!(
        (e.code(), e.message().to_owned()),
        (
            Code::ResourceExhausted,
            format!(
                "error creating directory: mkdir {mnt}/one-too-many: No space left on device (os error 28)"
            )
        )
    );
}

/// Defect 12: an upload, staged before it reaches its target, shows a watcher of the
/// directory only the target's events, in upstream's order: `CREATE`, `CHMOD` (the chown
/// right after opening), `WRITE`.
#[tokio::test]
async fn watchers_see_an_upload_as_create_chmod_write_of_the_target() {
    let envd = Envd::start(&[]);
    let c = client(&envd);
    let d = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(d.path()).unwrap();
    let mut s = c
        .watch_dir(pb::WatchDirRequest {
            path: root.to_str().unwrap().into(),
            recursive: false,
            include_entry: false,
            allow_network_mounts: false,
        })
        .await
        .unwrap();
    let first = s.next().await.unwrap().unwrap();
    assert!(matches!(first.event, Some(W::Start(_))), "{first:?}");
    let r = reqwest::Client::new()
        .post(format!("{}/files", envd.base))
        .query(&[("path", root.join("up.txt").to_str().unwrap())])
        .header("content-type", "application/octet-stream")
        .body("uploaded")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let mut got = next_events(&mut s, 3).await;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(300), s.next()).await {
        if let Some(W::Filesystem(f)) = m.event {
            got.push((f.name, f.r#type));
        }
    }
    // Exactly upstream's three (the SDK's own test counts them): no staging file, no
    // second WRITE.
    assert_eq!(
        got,
        [
            ev("up.txt", pb::EventType::Create),
            ev("up.txt", pb::EventType::Chmod),
            ev("up.txt", pb::EventType::Write)
        ]
    );
}

/// The inotify instances process `pid` holds.
fn inotify_instances(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == "anon_inode:inotify")
        })
        .count()
}

/// Issue 15: every sandbox's envd runs as the same host uid, whose inotify instances
/// (`fs.inotify.max_user_instances`) all sandboxes share. A client opening watchers without
/// end costs the host one instance, is refused with `resource_exhausted` naming the limit
/// past 64 watchers, and leaves another envd able to watch.
#[tokio::test]
async fn watchers_share_one_inotify_instance_and_are_capped() {
    let envd = Envd::start(&[]);
    let other = Envd::start(&[]);
    let c = client(&envd);
    let d = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(d.path()).unwrap();
    let path = root.to_str().unwrap().to_owned();
    assert_eq!(inotify_instances(envd.pid), 0, "no watcher, no instance");
    let mut streams = Vec::new();
    for _ in 0..32 {
        let mut s = c
            .watch_dir(pb::WatchDirRequest {
                path: path.clone(),
                recursive: true,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(matches!(
            s.next().await.unwrap().unwrap().event,
            Some(W::Start(_))
        ));
        streams.push(s);
    }
    let mut ids = Vec::new();
    for _ in 0..32 {
        ids.push(
            c.create_watcher(pb::CreateWatcherRequest {
                path: path.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .watcher_id,
        );
    }
    assert_eq!(inotify_instances(envd.pid), 1);
    let e = c
        .create_watcher(pb::CreateWatcherRequest {
            path: path.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::ResourceExhausted,
            "watcher error: this sandbox has 64 watchers, envd's limit; remove one first"
        )
    );
    let e = match c
        .watch_dir(pb::WatchDirRequest {
            path: path.clone(),
            ..Default::default()
        })
        .await
    {
        Err(e) => e,
        Ok(mut s) => s.next().await.unwrap().unwrap_err(),
    };
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
    // Every watcher still works, on the one instance.
    std::fs::write(root.join("f"), b"").unwrap();
    for s in &mut streams {
        assert_eq!(next_events(s, 1).await, [ev("f", pb::EventType::Create)]);
    }
    // Another sandbox's envd watches as usual.
    let mut s = client(&other)
        .watch_dir(pb::WatchDirRequest {
            path: path.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(matches!(
        s.next().await.unwrap().unwrap().event,
        Some(W::Start(_))
    ));
    std::fs::write(root.join("g"), b"").unwrap();
    assert_eq!(
        next_events(&mut s, 1).await,
        [ev("g", pb::EventType::Create)]
    );
    // Freed slots can be used again; the last watcher gone, the instance closes.
    c.remove_watcher(pb::RemoveWatcherRequest {
        watcher_id: ids.pop().unwrap(),
    })
    .await
    .unwrap();
    ids.push(
        c.create_watcher(pb::CreateWatcherRequest {
            path: path.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .watcher_id,
    );
    for watcher_id in ids {
        c.remove_watcher(pb::RemoveWatcherRequest { watcher_id })
            .await
            .unwrap();
    }
    drop(streams);
    let mut left = usize::MAX;
    for _ in 0..100 {
        left = inotify_instances(envd.pid);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0);
}

/// A recursive watch of a tree larger than envd's 8,192 watched directories is refused
/// whole with `resource_exhausted` naming the limit; a smaller one then works.
#[tokio::test]
async fn watching_more_directories_than_the_limit_is_resource_exhausted() {
    let envd = Envd::start(&[]);
    let c = client(&envd);
    let d = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(d.path()).unwrap();
    for i in 0..90 {
        for j in 0..92 {
            std::fs::create_dir_all(root.join(format!("big/{i}/{j}"))).unwrap();
        }
    }
    std::fs::create_dir(root.join("small")).unwrap();
    let e = match c
        .watch_dir(pb::WatchDirRequest {
            path: root.join("big").to_str().unwrap().into(),
            recursive: true,
            ..Default::default()
        })
        .await
    {
        Err(e) => e,
        Ok(mut s) => s.next().await.unwrap().unwrap_err(),
    };
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::ResourceExhausted,
            "watcher error: this sandbox watches 8192 directories, envd's limit (a recursive \
             watch takes one per directory)"
        )
    );
    let mut s = c
        .watch_dir(pb::WatchDirRequest {
            path: root.join("small").to_str().unwrap().into(),
            recursive: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(matches!(
        s.next().await.unwrap().unwrap().event,
        Some(W::Start(_))
    ));
    std::fs::write(root.join("small/f"), b"").unwrap();
    assert_eq!(
        next_events(&mut s, 1).await,
        [ev("f", pb::EventType::Create)]
    );
}
