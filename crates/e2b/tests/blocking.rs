//! The blocking API end to end against the real envd (in-process).

mod support;

use std::io::Read as _;
use std::time::Duration;

use e2b::blocking::Sandbox;
use e2b::{CommandEvent, PtyOptions, RunOptions, WatchOptions};

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
