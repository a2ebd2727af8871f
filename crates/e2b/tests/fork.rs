//! Forks and snapshots through the SDK, async and blocking, against the embedded local E2B
//! host: forks see the source's files and diverge, each fork's result stands alone,
//! snapshots start sandboxes, list (filtered, paged) and delete, and errors map as the
//! Python SDK maps them. Needs root (sandboxes use namespaces): run with
//! `cargo test -p e2b --all-features --test fork -- --ignored` as root.

use std::time::Duration;

use e2b::local::LocalServer;
use e2b::{ConnectionConfig, Error, ForkOptions, RunOptions, Sandbox, SnapshotQuery};
use futures_util::TryStreamExt as _;

/// The process-wide embedded host's configuration.
fn local() -> ConnectionConfig {
    LocalServer::shared().expect("local server").config()
}

/// A name no other run of this test uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{:08x}",
        nanos ^ std::process::id().rotate_left(16)
    )
}

async fn cat(sandbox: &Sandbox, path: &str) -> String {
    sandbox.files().read(path).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the local host isolates sandboxes in namespaces"]
async fn forks_diverge_from_one_prepared_state() {
    let config = local();
    let source = Sandbox::builder()
        .config(config.clone())
        .timeout(Duration::from_secs(300))
        .create()
        .await
        .unwrap();
    source
        .files()
        .write("/home/user/state.txt", "prepared")
        .await
        .unwrap();
    let forks: Vec<Sandbox> = source
        .fork(
            ForkOptions::new()
                .count(2)
                .timeout(Duration::from_secs(120)),
        )
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(forks.len(), 2);
    for (i, fork) in forks.iter().enumerate() {
        assert_ne!(fork.sandbox_id(), source.sandbox_id());
        assert_eq!(cat(fork, "/home/user/state.txt").await, "prepared");
        fork.files()
            .write("/home/user/state.txt", format!("fork {i}"))
            .await
            .unwrap();
    }
    assert_eq!(cat(&forks[0], "/home/user/state.txt").await, "fork 0");
    assert_eq!(cat(&forks[1], "/home/user/state.txt").await, "fork 1");
    assert_eq!(cat(&source, "/home/user/state.txt").await, "prepared");
    let r = forks[0]
        .commands()
        .run("cat /home/user/state.txt", RunOptions::new())
        .await
        .unwrap();
    assert_eq!(r.stdout, "fork 0");

    // The count is checked before any request; a gone source is NotFound.
    let e = source.fork(ForkOptions::new().count(0)).await.unwrap_err();
    assert!(e.is_invalid_argument(), "{e:?}");
    assert_eq!(e.to_string(), "count must be an integer between 1 and 100");
    for fork in &forks {
        assert!(fork.kill().await.unwrap());
    }
    assert!(source.kill().await.unwrap());
    let e = source.fork(ForkOptions::new()).await.unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("Sandbox {} not found", source.sandbox_id())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the local host isolates sandboxes in namespaces"]
async fn snapshots_start_sandboxes_list_and_delete() {
    let config = local();
    let source = Sandbox::builder()
        .config(config.clone())
        .create()
        .await
        .unwrap();
    source
        .files()
        .write("/home/user/s.txt", "snap")
        .await
        .unwrap();
    let name = unique("snap");
    let snap = source.create_snapshot(Some(&name)).await.unwrap();
    assert_eq!(snap.snapshot_id, format!("{name}:default"));
    assert_eq!(snap.names, vec![format!("{name}:default")]);
    let unnamed = source.create_snapshot(None).await.unwrap();
    assert!(unnamed.names.is_empty());

    let copy = Sandbox::builder()
        .config(config.clone())
        .template(&snap.snapshot_id)
        .create()
        .await
        .unwrap();
    assert_eq!(cat(&copy, "/home/user/s.txt").await, "snap");
    copy.kill().await.unwrap();

    // Listed newest first, filtered by sandbox, in pages of one.
    let mine = SnapshotQuery::new().sandbox_id(source.sandbox_id());
    let all: Vec<_> = Sandbox::list_snapshots(&config, mine.clone())
        .unwrap()
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all, vec![unnamed.clone(), snap.clone()]);
    let mut pages = Sandbox::list_snapshots(&config, mine.limit(1)).unwrap();
    assert_eq!(pages.next_items().await.unwrap(), vec![unnamed.clone()]);
    assert!(pages.has_next());
    assert_eq!(pages.next_items().await.unwrap(), vec![snap.clone()]);
    assert!(!pages.has_next());
    let named = SnapshotQuery::new().name(&name);
    let mut by_name = Sandbox::list_snapshots(&config, named).unwrap();
    assert_eq!(by_name.next_items().await.unwrap(), vec![snap.clone()]);

    // Errors as the Python SDK maps them.
    let e = source.create_snapshot(Some("Bad Name")).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "400: name 'Bad Name': a template name is 1 to 64 characters of a-z, 0-9, '.', '_' and '-'"
    );
    let e = Sandbox::list_snapshots(&config, SnapshotQuery::new().limit(0))
        .unwrap()
        .next_items()
        .await
        .unwrap_err();
    assert!(e.is_invalid_argument(), "{e:?}");

    // Deleted once; then gone.
    assert!(snap.delete(&config).await.unwrap());
    assert!(
        !Sandbox::delete_snapshot(&config, &snap.snapshot_id)
            .await
            .unwrap()
    );
    assert!(
        Sandbox::delete_snapshot(&config, &unnamed.snapshot_id)
            .await
            .unwrap()
    );
    let left: Vec<_> = Sandbox::list_snapshots(
        &config,
        SnapshotQuery::new().sandbox_id(source.sandbox_id()),
    )
    .unwrap()
    .into_stream()
    .try_collect()
    .await
    .unwrap();
    assert!(left.is_empty(), "{left:?}");
    source.kill().await.unwrap();
    let e = source.create_snapshot(None).await.unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
}

#[test]
#[ignore = "needs root: the local host isolates sandboxes in namespaces"]
fn the_blocking_twin_forks_and_snapshots() {
    let config = local();
    let source = e2b::blocking::Sandbox::builder()
        .config(config.clone())
        .create()
        .unwrap();
    source
        .files()
        .write("/home/user/b.txt", "blocking")
        .unwrap();
    let forks = source.fork(ForkOptions::new().count(2)).unwrap();
    assert_eq!(forks.len(), 2);
    for fork in forks {
        let fork = fork.unwrap();
        assert_eq!(fork.files().read("/home/user/b.txt").unwrap(), "blocking");
        fork.kill().unwrap();
    }
    let name = unique("blocking-snap");
    let snap = source.create_snapshot(Some(&name)).unwrap();
    let listed: Vec<_> = e2b::blocking::Sandbox::list_snapshots(
        &config,
        SnapshotQuery::new().sandbox_id(source.sandbox_id()),
    )
    .unwrap()
    .collect::<e2b::Result<_>>()
    .unwrap();
    assert_eq!(listed, vec![snap.clone()]);
    assert!(e2b::blocking::Sandbox::delete_snapshot(&config, &snap.snapshot_id).unwrap());
    assert!(!e2b::blocking::Sandbox::delete_snapshot(&config, &snap.snapshot_id).unwrap());
    source.kill().unwrap();
}
