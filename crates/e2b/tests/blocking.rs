//! The blocking API end to end against the real envd (in-process).

mod support;

use std::io::Read as _;
use std::time::Duration;

use e2b::blocking::Sandbox;
use e2b::{
    ALL_TRAFFIC, CommandEvent, ConnectionConfig, NetworkConfig, NetworkUpdate, PtyOptions,
    RunOptions, WatchOptions,
};

fn sandbox(envd: &support::Envd) -> Sandbox {
    Sandbox::builder().config(envd.config()).create().unwrap()
}

#[test]
fn commands_files_pty_watch() {
    let envd = support::Envd::start();
    let sbx = sandbox(&envd);
    let dir = support::tempdir();
    let base = dir.path().to_str().unwrap().to_owned();

    let r = sbx.commands().run("echo hello", RunOptions::new()).unwrap();
    assert_eq!(r.stdout, "hello\n");
    let err = sbx
        .commands()
        .run("echo out; exit 2", RunOptions::new())
        .unwrap_err();
    let e2b::Error::CommandExit(result) = err else {
        panic!("expected CommandExit");
    };
    assert_eq!((result.exit_code, result.stdout.as_str()), (2, "out\n"));

    let mut h = sbx
        .commands()
        .run_background("cat", RunOptions::new().stdin(true))
        .unwrap();
    h.send_stdin("abc").unwrap();
    h.close_stdin().unwrap();
    let events: Vec<_> = h.by_ref().collect::<Result<_, _>>().unwrap();
    assert!(matches!(&events[0], CommandEvent::Stdout { text, .. } if text == "abc"));
    assert_eq!(h.wait().unwrap().stdout, "abc");

    let h = sbx
        .commands()
        .run_background("cat", RunOptions::new().stdin(true))
        .unwrap();
    sbx.commands()
        .stream_input(h.pid(), &b"streamed"[..], None)
        .unwrap();
    sbx.commands().close_stdin(h.pid()).unwrap();
    let mut h = h;
    assert_eq!(h.wait().unwrap().stdout, "streamed");
    assert!(!sbx.commands().kill(h.pid()).unwrap());

    let mut h = sbx
        .commands()
        .run_background("echo r", RunOptions::new())
        .unwrap();
    assert_eq!(h.wait().unwrap().stdout, "r\n");
    assert_eq!(h.result().map(|r| r.exit_code), Some(0));
    let mut h = sbx
        .commands()
        .run_background("sleep 30", RunOptions::new())
        .unwrap();
    assert!(h.result().is_none());
    let control = h.control();
    assert_eq!(control.pid(), h.pid());
    assert!(
        std::thread::spawn(move || control.kill())
            .join()
            .unwrap()
            .unwrap()
    );
    assert!(h.wait().is_err());

    let fs = sbx.files();
    fs.write(&format!("{base}/a.txt"), "hi").unwrap();
    assert_eq!(fs.read(&format!("{base}/a.txt")).unwrap(), "hi");
    assert!(fs.exists(&format!("{base}/a.txt")).unwrap());
    assert!(fs.make_dir(&format!("{base}/d")).unwrap());
    assert_eq!(fs.list(&base, 1).unwrap().len(), 2);
    fs.write_reader(&format!("{base}/r.txt"), &b"reader"[..])
        .unwrap();
    let mut text = String::new();
    fs.read_stream(&format!("{base}/r.txt"))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "reader");
    assert!(fs.read(&format!("{base}/nope")).unwrap_err().is_not_found());

    let mut watch = fs.watch_dir(&base, WatchOptions::new()).unwrap();
    fs.write(&format!("{base}/w.txt"), "x").unwrap();
    let mut events = Vec::new();
    for _ in 0..50 {
        events.extend(watch.get_new_events().unwrap());
        if !events.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(events[0].name, "w.txt");
    watch.stop().unwrap();
    assert_eq!(
        watch.get_new_events().unwrap_err().to_string(),
        "The watcher is already stopped"
    );

    let mut events = fs.watch_dir_events(&base, WatchOptions::new()).unwrap();
    fs.write(&format!("{base}/s.txt"), "x").unwrap();
    assert_eq!(events.next().unwrap().unwrap().name, "s.txt");
    events.stop();
    assert!(events.next().is_none());

    let mut term = sbx.pty().create(PtyOptions::new()).unwrap();
    term.send_stdin("echo pty-$((1+1)); exit\n").unwrap();
    let mut out = Vec::new();
    for event in term.by_ref() {
        if let CommandEvent::Pty(bytes) = event.unwrap() {
            out.extend_from_slice(&bytes);
        }
    }
    assert!(String::from_utf8_lossy(&out).contains("pty-2"));
    assert!(sbx.is_running().unwrap());
    assert!(sbx.kill().unwrap());
}

#[test]
#[should_panic(expected = "Cannot block the current thread from within a runtime")]
fn blocking_inside_a_runtime_panics() {
    let envd = support::Envd::start();
    let config = envd.config();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let _ = Sandbox::builder().config(config).create();
    });
}

/// Threads of this process named like the blocking runtime's (names are cut to 15 bytes).
fn blocking_runtime_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| "e2b-blocking-runtime".starts_with(name.trim_end()))
        .count()
}

#[test]
fn control_plane_calls_by_id_share_one_runtime_thread() {
    let server_runtime = tokio::runtime::Runtime::new().unwrap();
    let server = server_runtime.block_on(support::recording::start());
    let config = ConnectionConfig::new()
        .with_api_key("e2b_0123abcd")
        .with_api_url(&server.base)
        .with_sandbox_url(&server.base);
    let builder = Sandbox::builder()
        .config(config.clone())
        .request_timeout(None);
    assert_eq!(builder.connection_config().unwrap().request_timeout(), None);
    let sbx = Sandbox::builder().config(config.clone()).create().unwrap();
    let other = Sandbox::builder().config(config.clone()).create().unwrap();
    assert_eq!(sbx.connection_config().api_url(), server.base);
    assert_eq!(sbx.envd_api_url(), server.base);
    assert_eq!(sbx.traffic_access_token(), None);

    let info = Sandbox::get_info_by_id(&config, "sbx1").unwrap();
    assert_eq!(info.sandbox_id, "sbx1");
    Sandbox::set_timeout_by_id(&config, "sbx1", Duration::from_secs(30)).unwrap();
    assert_eq!(
        server.log.find("POST", "/sandboxes/sbx1/timeout").json(),
        serde_json::json!({"timeout": 30})
    );
    assert!(Sandbox::pause_by_id(&config, "sbx1").unwrap());
    assert!(!Sandbox::pause_by_id(&config, "paused").unwrap());

    sbx.update_network(NetworkUpdate::new().deny_out([ALL_TRAFFIC]))
        .unwrap();
    assert_eq!(
        server.log.find("PUT", "/sandboxes/sbx1/network").json(),
        serde_json::json!({"denyOut": ["0.0.0.0/0"]})
    );
    let err = Sandbox::update_network_by_id(&config, "missing", NetworkUpdate::new()).unwrap_err();
    assert_eq!(err.to_string(), "Sandbox missing not found");
    let private = Sandbox::builder()
        .config(config.clone())
        .template("private")
        .allow_internet_access(false)
        .network(NetworkConfig::new().allow_public_traffic(false))
        .create()
        .unwrap();
    assert_eq!(private.traffic_access_token(), Some("traffic-tok"));
    let create = server
        .log
        .all()
        .into_iter()
        .rfind(|r| r.path == "/v2/sandboxes")
        .unwrap();
    assert_eq!(create.json()["allow_internet_access"], false);
    assert_eq!(
        create.json()["network"],
        serde_json::json!({"allowPublicTraffic": false})
    );

    let guard = other.kill_on_drop();
    assert!(guard.kill().unwrap());
    let guard = sbx.kill_on_drop();
    let sbx = guard.into_inner();
    assert!(sbx.kill().unwrap());
    assert_eq!(blocking_runtime_threads(), 1);
}
