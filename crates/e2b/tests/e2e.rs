//! End to end against the real envd daemon (in-process), in debug mode as
//! `E2B_DEBUG=true E2B_SANDBOX_URL=http://127.0.0.1:<port>` would configure it.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use e2b::{
    CommandEvent, EventType, FileType, PtyOptions, PtySize, RunOptions, Sandbox, WatchOptions,
    WriteEntry,
};
use futures_util::StreamExt as _;

async fn sandbox(envd: &support::Envd) -> Sandbox {
    Sandbox::builder()
        .config(envd.config())
        .create()
        .await
        .unwrap()
}

#[tokio::test]
async fn debug_sandbox_identity() {
    let envd = support::Envd::start();
    let sbx = sandbox(&envd).await;
    assert_eq!(sbx.sandbox_id(), "debug_sandbox_id");
    assert_eq!(sbx.envd_version(), "99.99.99");
    assert_eq!(sbx.get_host(8080), "localhost:8080");
    assert!(sbx.is_running().await.unwrap());
    assert!(sbx.kill().await.unwrap());
    sbx.set_timeout(Duration::from_secs(10)).await.unwrap();
    assert!(sbx.get_metrics(None, None).await.unwrap().is_empty());
}

#[tokio::test]
async fn run_foreground_output_and_exit_codes() {
    let envd = support::Envd::start();
    let sbx = sandbox(&envd).await;
    let cmds = sbx.commands();

    let r = cmds
        .run("echo hello; echo oops >&2", RunOptions::new())
        .await
        .unwrap();
    assert_eq!(r.stdout, "hello\n");
    assert_eq!(r.stderr, "oops\n");
    assert_eq!(r.exit_code, 0);
    assert_eq!(r.error, None);

    let err = cmds
        .run("echo partial; echo bad >&2; exit 3", RunOptions::new())
        .await
        .unwrap_err();
    let e2b::Error::CommandExit(result) = &err else {
        panic!("expected CommandExit, got {err:?}");
    };
    assert_eq!(result.exit_code, 3);
    assert_eq!(result.stdout, "partial\n");
    assert_eq!(result.stderr, "bad\n");
    assert_eq!(result.error.as_deref(), Some("exit status 3"));
    assert_eq!(
        err.to_string(),
        "Command exited with code 3 and error:\nbad\n"
    );

    let dir = support::tempdir();
    let r = cmds
        .run(
            "echo $FOO; pwd",
            RunOptions::new()
                .env("FOO", "bar baz")
                .cwd(dir.path().to_str().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(r.stdout, format!("bar baz\n{}\n", dir.path().display()));

    let err = cmds
        .run("true", RunOptions::new().cwd("/definitely/not/here"))
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
    assert!(err.to_string().contains("/definitely/not/here"), "{err}");

    let err = cmds.run("  ", RunOptions::new()).await.unwrap_err();
    assert_eq!(err.to_string(), "the command must not be empty");
}

#[tokio::test]
async fn output_is_decoded_incrementally_and_raw_bytes_kept() {
    let envd = support::Envd::start();
    let sbx = sandbox(&envd).await;
    let seen = Arc::new(Mutex::new(String::new()));
    let seen2 = seen.clone();
    let r = sbx
        .commands()
        .run(
            r"printf 'a\xe2\x82'; sleep 0.2; printf '\xacb\xff'",
            RunOptions::new().on_stdout(move |t| seen2.lock().unwrap().push_str(t)),
        )
        .await
        .unwrap();
    assert_eq!(r.stdout, "a€b\u{FFFD}");
    assert_eq!(*seen.lock().unwrap(), "a€b\u{FFFD}");

    let mut handle = sbx
        .commands()
        .run_background(r"printf '\xff\xfe'", RunOptions::new())
        .await
        .unwrap();
    let mut raw = Vec::new();
    while let Some(event) = handle.next_event().await {
        if let CommandEvent::Stdout { raw: bytes, text } = event.unwrap() {
            raw.extend_from_slice(&bytes);
            assert!(text.chars().all(|c| c == '\u{FFFD}'));
        }
    }
    assert_eq!(raw, b"\xff\xfe");
    assert_eq!(handle.result().unwrap().exit_code, 0);
}

#[tokio::test]
async fn background_commands_stdin_connect_list_kill() {
    let envd = support::Envd::start();
    let sbx = sandbox(&envd).await;
    let cmds = sbx.commands();

    // stdin round trip
    let mut cat = cmds
        .run_background("cat", RunOptions::new().stdin(true).tag("my-cat"))
        .await
        .unwrap();
    let listed = cmds.list().await.unwrap();
    let me = listed.iter().find(|p| p.pid == cat.pid()).expect("listed");
    assert_eq!(me.tag.as_deref(), Some("my-cat"));
    assert_eq!(me.args, ["-l", "-c", "cat"]);
    cat.send_stdin("line one\n").await.unwrap();
    cmds.send_stdin(cat.pid(), Bytes::from_static(b"line two\n"))
        .await
        .unwrap();
    cat.close_stdin().await.unwrap();
    let result = cat.wait().await.unwrap();
    assert_eq!(result.stdout, "line one\nline two\n");

    // stream_input (client streaming)
    let cat = cmds
        .run_background("cat", RunOptions::new().stdin(true))
        .await
        .unwrap();
    let pid = cat.pid();
    drop(cat); // disconnects; the process keeps running
    let mut again = cmds.connect(pid, None).await.unwrap();
    let chunks = futures_util::stream::iter(vec![Bytes::from("a"), Bytes::from("b\n")]);
    cmds.stream_input(pid, chunks, Some(Duration::from_secs(10)))
        .await
        .unwrap();
    cmds.close_stdin(pid).await.unwrap();
    let result = again.wait().await.unwrap();
    assert_eq!(result.stdout, "ab\n");

    // kill
    let mut sleeper = cmds
        .run_background("sleep 30", RunOptions::new())
        .await
        .unwrap();
    assert!(sleeper.kill().await.unwrap());
    let err = sleeper.wait().await.unwrap_err();
    let e2b::Error::CommandExit(result) = err else {
        panic!("expected CommandExit");
    };
    assert_eq!(result.exit_code, -1);
    assert_eq!(result.error.as_deref(), Some("signal: killed"));
    assert!(!cmds.kill(999_999).await.unwrap());

    // connecting to a missing pid
    let err = cmds.connect(999_999, None).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn explicit_timeout_ends_a_background_command_with_timeout() {
    let envd = support::Envd::start();
    let sbx = sandbox(&envd).await;
    // An explicit timeout is the process lifetime: envd kills it and the stream ends with
    // deadline_exceeded, mapped to Timeout.
    let mut h = sbx
        .commands()
        .run_background(
            "sleep 10",
            RunOptions::new().timeout(Duration::from_millis(500)),
        )
        .await
        .unwrap();
    let err = h.wait().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
}

#[tokio::test]
async fn files_round_trip() {
    let envd = support::Envd::start();
    let sbx = sandbox(&envd).await;
    let fs = sbx.files();
    let dir = support::tempdir();
    let base = dir.path().to_str().unwrap().to_owned();

    let info = fs.write(&format!("{base}/a/b.txt"), "hello").await.unwrap();
    assert_eq!(info.name, "b.txt");
    assert_eq!(info.path, format!("{base}/a/b.txt"));
    assert_eq!(info.file_type, FileType::File);
    assert_eq!(fs.read(&format!("{base}/a/b.txt")).await.unwrap(), "hello");
    assert_eq!(
        fs.read_bytes(&format!("{base}/a/b.txt")).await.unwrap(),
        Bytes::from_static(b"hello")
    );
    assert!(fs.exists(&format!("{base}/a/b.txt")).await.unwrap());
    assert!(!fs.exists(&format!("{base}/nope")).await.unwrap());

    let entry = fs.get_info(&format!("{base}/a/b.txt")).await.unwrap();
    assert_eq!(entry.size, 5);
    assert_eq!(entry.file_type, FileType::File);

    assert!(fs.make_dir(&format!("{base}/d/e")).await.unwrap());
    assert!(!fs.make_dir(&format!("{base}/d/e")).await.unwrap());

    let listed = fs.list(&base, 1).await.unwrap();
    let mut names: Vec<_> = listed.iter().map(|e| e.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["a", "d"]);
    let deep = fs.list(&base, 2).await.unwrap();
    assert_eq!(deep.len(), 4, "{deep:#?}");
    let err = fs.list(&base, 0).await.unwrap_err();
    assert!(err.is_invalid_argument());

    let moved = fs
        .rename(&format!("{base}/a/b.txt"), &format!("{base}/c.txt"))
        .await
        .unwrap();
    assert_eq!(moved.path, format!("{base}/c.txt"));
    fs.remove(&format!("{base}/c.txt")).await.unwrap();
    fs.remove(&format!("{base}/c.txt")).await.unwrap(); // missing: still fine
    assert!(!fs.exists(&format!("{base}/c.txt")).await.unwrap());

    let err = fs.read(&format!("{base}/missing.txt")).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(err.http_status(), Some(404));
    let err = fs
        .get_info(&format!("{base}/missing.txt"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let err = fs.read(&base).await.unwrap_err();
    assert!(err.is_invalid_argument(), "{err:?}");
    let err = fs.read("").await.unwrap_err();
    assert_eq!(err.to_string(), "the path must not be empty");

    // several files in one multipart request, one of them streamed
    let stream = futures_util::stream::iter(vec![Ok(Bytes::from("str")), Ok(Bytes::from("eamed"))]);
    let written = fs
        .write_files(vec![
            WriteEntry::new(format!("{base}/m/1.txt"), "one"),
            WriteEntry::from_stream(format!("{base}/m/2.txt"), stream),
        ])
        .await
        .unwrap();
    assert_eq!(written.len(), 2);
    assert_eq!(fs.read(&format!("{base}/m/1.txt")).await.unwrap(), "one");
    assert_eq!(
        fs.read(&format!("{base}/m/2.txt")).await.unwrap(),
        "streamed"
    );

    // gzip both ways, metadata, a reader
    let gz = fs.gzip(true);
    gz.write(&format!("{base}/g.txt"), "zipped content")
        .await
        .unwrap();
    assert_eq!(
        gz.read(&format!("{base}/g.txt")).await.unwrap(),
        "zipped content"
    );
    assert_eq!(
        fs.read(&format!("{base}/g.txt")).await.unwrap(),
        "zipped content"
    );
    let info = fs
        .metadata([("owner", "tests")])
        .write(&format!("{base}/meta.txt"), "m")
        .await
        .unwrap();
    assert_eq!(
        info.metadata.get("owner").map(String::as_str),
        Some("tests")
    );
    let entry = fs.get_info(&format!("{base}/meta.txt")).await.unwrap();
    assert_eq!(
        entry.metadata.get("owner").map(String::as_str),
        Some("tests")
    );
    let err = fs
        .metadata([("bad key", "x")])
        .write(&format!("{base}/x.txt"), "x")
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument());
    fs.write_reader(&format!("{base}/r.txt"), &b"from a reader"[..])
        .await
        .unwrap();
    assert_eq!(
        fs.read(&format!("{base}/r.txt")).await.unwrap(),
        "from a reader"
    );
}

#[tokio::test]
async fn watch_dir_streams_events() {
    let envd = support::Envd::start();
    let sbx = sandbox(&envd).await;
    let dir = support::tempdir();
    let base = dir.path().to_str().unwrap().to_owned();
    let mut watch = sbx
        .files()
        .watch_dir(&base, WatchOptions::new().include_entry(true))
        .await
        .unwrap();
    sbx.files()
        .write(&format!("{base}/new.txt"), "x")
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), watch.next_event())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.name, "new.txt");
    assert_eq!(event.event_type, EventType::Create);
    watch.stop();
    assert!(watch.next_event().await.is_none());

    let err = sbx
        .files()
        .watch_dir(&format!("{base}/missing"), WatchOptions::new())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");

    let mut polled = sbx
        .files()
        .watch_dir_polling(&base, WatchOptions::new())
        .await
        .unwrap();
    sbx.files()
        .write(&format!("{base}/p.txt"), "x")
        .await
        .unwrap();
    let mut events = Vec::new();
    for _ in 0..50 {
        events.extend(polled.get_new_events().await.unwrap());
        if !events.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(events[0].name, "p.txt");
    polled.stop().await.unwrap();
    let err = polled.get_new_events().await.unwrap_err();
    assert_eq!(err.to_string(), "The watcher is already stopped");
}

#[tokio::test]
async fn pty_interactive_shell() {
    let envd = support::Envd::start();
    let sbx = sandbox(&envd).await;
    let mut term = sbx
        .pty()
        .create(PtyOptions::new().size(PtySize::new(100, 30)))
        .await
        .unwrap();
    term.resize(PtySize::new(120, 40)).await.unwrap();
    term.send_stdin("stty size; echo marker-$((40+2)); exit\n")
        .await
        .unwrap();
    let mut output = Vec::new();
    let events = term.events();
    futures_util::pin_mut!(events);
    while let Some(event) = events.next().await {
        if let CommandEvent::Pty(bytes) = event.unwrap() {
            output.extend_from_slice(&bytes);
        }
    }
    let text = String::from_utf8_lossy(&output);
    assert!(text.contains("marker-42"), "{text}");
    assert!(text.contains("40 120"), "{text}");
    let err = sbx
        .pty()
        .create(PtyOptions::new().size(PtySize::new(0, 10)))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "a terminal size needs at least one column and one row, got 0x10"
    );
}

#[tokio::test]
async fn dropping_a_handle_or_a_future_does_not_kill_the_process() {
    let envd = support::Envd::start();
    let sbx = sandbox(&envd).await;
    let cmds = sbx.commands();

    let handle = cmds
        .run_background("sleep 30", RunOptions::new().tag("dropped-handle"))
        .await
        .unwrap();
    let pid = handle.pid();
    drop(handle);

    // A foreground run whose future is dropped mid-way (here by a timeout).
    let cut = tokio::time::timeout(
        Duration::from_millis(300),
        cmds.run("sleep 30", RunOptions::new().tag("dropped-future")),
    )
    .await;
    assert!(cut.is_err(), "the run should still have been going");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let listed = cmds.list().await.unwrap();
    let tags: Vec<_> = listed.iter().filter_map(|p| p.tag.clone()).collect();
    assert!(tags.contains(&"dropped-handle".to_owned()), "{tags:?}");
    assert!(tags.contains(&"dropped-future".to_owned()), "{tags:?}");
    assert!(listed.iter().any(|p| p.pid == pid));

    for p in listed.iter().filter(|p| p.tag.is_some()) {
        assert!(cmds.kill(p.pid).await.unwrap());
    }
}
