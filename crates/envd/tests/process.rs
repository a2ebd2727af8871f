//! `process.Process` over Connect against the real binary, with the generated client.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Envd, is_root, test_user};
use e2b_envd::pb::process::process_event::{Event as Ev, data_event::Output};
use e2b_envd::pb::process::{self as pb, process_client::ProcessClient};
use e2b_envd::{Client, Code, ConnectError, Encoding, Request};
use futures_util::StreamExt as _;

fn client(envd: &Envd) -> ProcessClient {
    ProcessClient::new(Client::builder(envd.base.clone()).build().unwrap())
}

fn proto_client(envd: &Envd) -> ProcessClient {
    ProcessClient::new(
        Client::builder(envd.base.clone())
            .encoding(Encoding::Proto)
            .build()
            .unwrap(),
    )
}

fn cfg(cmd: &str, args: &[&str]) -> pb::ProcessConfig {
    pb::ProcessConfig {
        cmd: cmd.to_owned(),
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

fn sh(script: &str) -> pb::StartRequest {
    pb::StartRequest {
        process: Some(cfg("/bin/sh", &["-c", script])),
        stdin: Some(false),
        ..Default::default()
    }
}

fn pid_sel(pid: u32) -> Option<pb::ProcessSelector> {
    Some(pb::ProcessSelector {
        selector: Some(pb::process_selector::Selector::Pid(pid)),
    })
}

fn tag_sel(tag: &str) -> Option<pb::ProcessSelector> {
    Some(pb::ProcessSelector {
        selector: Some(pb::process_selector::Selector::Tag(tag.to_owned())),
    })
}

#[derive(Debug, Default)]
struct Run {
    pid: u32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    pty: Vec<u8>,
    keepalives: usize,
    end: Option<pb::process_event::EndEvent>,
    error: Option<ConnectError>,
    max_chunk: usize,
}

/// Drains a Start/Connect stream.
async fn drain<S>(mut s: S) -> Run
where
    S: futures_util::Stream<Item = Result<Option<pb::ProcessEvent>, ConnectError>> + Unpin,
{
    let mut run = Run::default();
    let mut first = true;
    while let Some(item) = s.next().await {
        let ev = match item {
            Ok(ev) => ev.and_then(|e| e.event),
            Err(e) => {
                run.error = Some(e);
                break;
            }
        };
        if first {
            assert!(
                matches!(ev, Some(Ev::Start(_))),
                "first event must be start: {ev:?}"
            );
            first = false;
        }
        assert!(run.end.is_none(), "event after end: {ev:?}");
        match ev {
            Some(Ev::Start(s)) => run.pid = s.pid,
            Some(Ev::Data(d)) => match d.output {
                Some(Output::Stdout(b)) => {
                    run.max_chunk = run.max_chunk.max(b.len());
                    run.stdout.extend(b)
                }
                Some(Output::Stderr(b)) => {
                    run.max_chunk = run.max_chunk.max(b.len());
                    run.stderr.extend(b)
                }
                Some(Output::Pty(b)) => {
                    run.max_chunk = run.max_chunk.max(b.len());
                    run.pty.extend(b)
                }
                None => panic!("empty data event"),
            },
            Some(Ev::Keepalive(_)) => run.keepalives += 1,
            Some(Ev::End(e)) => run.end = Some(e),
            None => panic!("event without payload"),
        }
    }
    run
}

async fn start(c: &ProcessClient, req: impl e2b_envd::IntoRequest<pb::StartRequest>) -> Run {
    match c.start(req).await {
        Ok(s) => drain(Box::pin(s.map(|r| r.map(|m| m.event)))).await,
        Err(e) => Run {
            error: Some(e),
            ..Default::default()
        },
    }
}

/// Drains a Start stream whose `start` event the caller already read.
async fn rest(pid: u32, s: e2b_envd::Streaming<pb::StartResponse>) -> Run {
    drain(Box::pin(
        futures_util::stream::once(async move {
            Ok(Some(pb::ProcessEvent {
                event: Some(Ev::Start(pb::process_event::StartEvent { pid })),
            }))
        })
        .chain(s.map(|r| r.map(|m| m.event))),
    ))
    .await
}

fn end(code: i32, exited: bool, status: &str) -> pb::process_event::EndEvent {
    pb::process_event::EndEvent {
        exit_code: code,
        exited,
        status: status.to_owned(),
        error: (status != "exit status 0").then(|| status.to_owned()),
    }
}

fn code_of(e: &Option<ConnectError>) -> Option<(Code, String)> {
    e.as_ref().map(|e| (e.code(), e.message().to_owned()))
}

#[tokio::test]
async fn output_exit_codes_and_missing_programs() {
    let envd = Envd::start(&[]);
    let c = client(&envd);
    let r = start(&c, sh("printf out; printf err >&2; exit 3")).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(r.pid > 0);
    assert_eq!(r.stdout, b"out");
    assert_eq!(r.stderr, b"err");
    assert_eq!(r.end, Some(end(3, true, "exit status 3")));

    let r = start(&c, sh("true")).await;
    assert_eq!(r.end, Some(end(0, true, "exit status 0")));

    // A direct program (no shell) works too.
    let r = start(
        &c,
        pb::StartRequest {
            process: Some(cfg("/bin/echo", &["-n", "direct"])),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.stdout, b"direct");

    // A program that does not exist is exit 127, as upstream's /bin/sh wrapper reports it.
    let r = start(
        &c,
        pb::StartRequest {
            process: Some(cfg("no-such-program-xyz", &[])),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.end.as_ref().map(|e| e.exit_code), Some(127), "{r:?}");

    // Binary output is passed through untouched.
    let r = start(&c, sh("printf '\\377\\000\\001'")).await;
    assert_eq!(r.stdout, [0xff, 0x00, 0x01]);
}

#[tokio::test]
async fn environment_and_cwd() {
    let envd = Envd::start(&["--sandbox-id", "isbx"]);
    let http = common::http();
    let r = http
        .post(format!("{}/init", envd.base))
        .json(&serde_json::json!({"envVars": {"GLOBAL": "g", "OVER": "global"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let c = client(&envd);
    let mut req = sh(
        "echo \"$PATH|$HOME|$USER|$LOGNAME|$E2B_SANDBOX|$E2B_SANDBOX_ID|$GLOBAL|$OVER|$REQ\"; pwd",
    );
    let p = req.process.as_mut().unwrap();
    p.envs.insert("OVER".into(), "request".into());
    p.envs.insert("REQ".into(), "r".into());
    let r = start(&c, req).await;
    let out = String::from_utf8(r.stdout).unwrap();
    let (user, home) = if is_root() {
        ("root".to_owned(), "/root".to_owned())
    } else {
        let u = std::env::var("USER").unwrap_or_default();
        (u, std::env::var("HOME").unwrap_or_default())
    };
    let path = std::env::var("PATH").unwrap();
    assert_eq!(
        out,
        format!("{path}|{home}|{user}|{user}|true|isbx|g|request|r\n{home}\n")
    );

    // Explicit cwd, relative cwd (to home) and a missing one.
    let dir = tempfile::tempdir().unwrap();
    let mut req = sh("pwd");
    req.process.as_mut().unwrap().cwd = Some(dir.path().to_str().unwrap().to_owned());
    let r = start(&c, req).await;
    assert_eq!(r.stdout, format!("{}\n", dir.path().display()).into_bytes());
    let mut req = sh("pwd");
    req.process.as_mut().unwrap().cwd = Some("/definitely/missing".to_owned());
    let r = start(&c, req).await;
    assert_eq!(
        code_of(&r.error),
        Some((
            Code::InvalidArgument,
            "cwd '/definitely/missing' does not exist".to_owned()
        ))
    );
    let mut req = sh("pwd");
    req.process.as_mut().unwrap().cwd = Some("~root/x".to_owned());
    let r = start(&c, req).await;
    assert_eq!(
        r.error.as_ref().map(ConnectError::code),
        Some(Code::InvalidArgument)
    );

    // The default workdir from /init applies to processes without a cwd.
    let r = http
        .post(format!("{}/init", envd.base))
        .json(&serde_json::json!({"defaultWorkdir": dir.path().to_str().unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = start(&c, sh("pwd")).await;
    assert_eq!(r.stdout, format!("{}\n", dir.path().display()).into_bytes());
}

#[tokio::test]
async fn stdin_send_close_and_stream_input() {
    let envd = Envd::start(&[]);
    let c = client(&envd);
    let mut stream = c
        .start(pb::StartRequest {
            process: Some(cfg("/bin/cat", &[])),
            stdin: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let pid = match stream.next().await.unwrap().unwrap().event.unwrap().event {
        Some(Ev::Start(s)) => s.pid,
        other => panic!("{other:?}"),
    };
    c.send_input(pb::SendInputRequest {
        process: pid_sel(pid),
        input: Some(pb::ProcessInput {
            input: Some(pb::process_input::Input::Stdin(b"hello ".to_vec())),
        }),
    })
    .await
    .unwrap();
    // StreamInput: start, data, keepalive.
    let msgs = vec![
        pb::StreamInputRequest {
            event: Some(pb::stream_input_request::Event::Start(
                pb::stream_input_request::StartEvent {
                    process: pid_sel(pid),
                },
            )),
        },
        pb::StreamInputRequest {
            event: Some(pb::stream_input_request::Event::Data(
                pb::stream_input_request::DataEvent {
                    input: Some(pb::ProcessInput {
                        input: Some(pb::process_input::Input::Stdin(b"world".to_vec())),
                    }),
                },
            )),
        },
        pb::StreamInputRequest {
            event: Some(pb::stream_input_request::Event::Keepalive(
                pb::stream_input_request::KeepAlive {},
            )),
        },
    ];
    c.stream_input(futures_util::stream::iter(msgs))
        .await
        .unwrap();
    c.close_stdin(pb::CloseStdinRequest {
        process: pid_sel(pid),
    })
    .await
    .unwrap();
    let r = drain(Box::pin(
        futures_util::stream::once(async move {
            Ok(Some(pb::ProcessEvent {
                event: Some(Ev::Start(pb::process_event::StartEvent { pid })),
            }))
        })
        .chain(stream.map(|r| r.map(|m| m.event))),
    ))
    .await;
    assert_eq!(r.stdout, b"hello world");
    assert_eq!(r.end, Some(end(0, true, "exit status 0")));

    // stdin:false gives /dev/null, and writing to it is an error.
    let mut s = c.start(sh("sleep 5")).await.unwrap();
    let pid = match s.next().await.unwrap().unwrap().event.unwrap().event {
        Some(Ev::Start(s)) => s.pid,
        other => panic!("{other:?}"),
    };
    let e = c
        .send_input(pb::SendInputRequest {
            process: pid_sel(pid),
            input: Some(pb::ProcessInput {
                input: Some(pb::process_input::Input::Stdin(b"x".to_vec())),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal);
    assert_eq!(
        e.message(),
        "error writing to stdin: stdin not enabled or closed"
    );
    let e = c
        .send_input(pb::SendInputRequest {
            process: pid_sel(pid),
            input: Some(pb::ProcessInput {
                input: Some(pb::process_input::Input::Pty(b"x".to_vec())),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal);
    assert_eq!(
        e.message(),
        "error writing to tty: tty not assigned to process"
    );
    let e = c
        .send_input(pb::SendInputRequest {
            process: pid_sel(pid),
            input: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    // Closing a missing stdin is a no-op.
    c.close_stdin(pb::CloseStdinRequest {
        process: pid_sel(pid),
    })
    .await
    .unwrap();
    let e = c
        .update(pb::UpdateRequest {
            process: pid_sel(pid),
            pty: Some(pb::Pty {
                size: Some(pb::pty::Size { cols: 10, rows: 10 }),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal);
    assert_eq!(
        e.message(),
        "error resizing tty: tty not assigned to process"
    );
    c.send_signal(pb::SendSignalRequest {
        process: pid_sel(pid),
        signal: pb::Signal::Sigkill as i32,
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn signals_and_unknown_processes() {
    let envd = Envd::start(&[]);
    let c = client(&envd);
    for (sig, status) in [
        (pb::Signal::Sigterm, "signal: terminated"),
        (pb::Signal::Sigkill, "signal: killed"),
    ] {
        let mut s = c.start(sh("exec sleep 30")).await.unwrap();
        let pid = match s.next().await.unwrap().unwrap().event.unwrap().event {
            Some(Ev::Start(s)) => s.pid,
            other => panic!("{other:?}"),
        };
        // SIGINT is not supported. (Sent in binary: the JSON codec cannot name value 2.)
        let e = proto_client(&envd)
            .send_signal(pb::SendSignalRequest {
                process: pid_sel(pid),
                signal: 2,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unimplemented);
        c.send_signal(pb::SendSignalRequest {
            process: pid_sel(pid),
            signal: sig as i32,
        })
        .await
        .unwrap();
        let r = rest(pid, s).await;
        assert_eq!(r.end, Some(end(-1, false, status)));
    }
    let e = c
        .send_signal(pb::SendSignalRequest {
            process: pid_sel(999_999_999),
            signal: pb::Signal::Sigkill as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::NotFound, "process with pid 999999999 not found")
    );
    let r = match c
        .connect(pb::ConnectRequest {
            process: tag_sel("nope"),
        })
        .await
    {
        Ok(s) => drain(Box::pin(s.map(|r| r.map(|m| m.event)))).await,
        Err(e) => Run {
            error: Some(e),
            ..Default::default()
        },
    };
    assert_eq!(
        code_of(&r.error),
        Some((Code::NotFound, "process with tag nope not found".to_owned()))
    );
    let e = c
        .close_stdin(pb::CloseStdinRequest { process: None })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
}

#[tokio::test]
async fn connect_list_tags_disconnect_and_retention() {
    let envd = Envd::start(&[]);
    let c = client(&envd);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("done");
    // Two tagged processes: looking up the second tag must work (upstream stops early).
    let mut first = c
        .start(pb::StartRequest {
            tag: Some("alpha".into()),
            ..sh("sleep 30")
        })
        .await
        .unwrap();
    first.next().await.unwrap().unwrap();
    let mut second = c
        .start(pb::StartRequest {
            tag: Some("beta".into()),
            stdin: Some(true),
            process: Some(cfg(
                "/bin/sh",
                &[
                    "-c",
                    &format!("read x; echo got $x; sleep 1; touch {}", marker.display()),
                ],
            )),
            ..Default::default()
        })
        .await
        .unwrap();
    let pid2 = match second.next().await.unwrap().unwrap().event.unwrap().event {
        Some(Ev::Start(s)) => s.pid,
        other => panic!("{other:?}"),
    };
    let list = c.list(pb::ListRequest {}).await.unwrap();
    let beta = list
        .processes
        .iter()
        .find(|p| p.pid == pid2)
        .expect("listed");
    assert_eq!(beta.tag.as_deref(), Some("beta"));
    assert_eq!(beta.config.as_ref().unwrap().cmd, "/bin/sh");
    assert!(
        list.processes
            .iter()
            .any(|p| p.tag.as_deref() == Some("alpha"))
    );

    // Connect by tag while the Start stream is still attached: both see the output.
    let conn = c
        .connect(Request::new(pb::ConnectRequest {
            process: tag_sel("beta"),
        }))
        .await
        .unwrap();
    let conn_task = tokio::spawn(drain(Box::pin(conn.map(|r| r.map(|m| m.event)))));
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.send_input(pb::SendInputRequest {
        process: tag_sel("beta"),
        input: Some(pb::ProcessInput {
            input: Some(pb::process_input::Input::Stdin(b"hi\n".to_vec())),
        }),
    })
    .await
    .unwrap();
    // Read the Start stream up to the output, then disconnect it: the process lives on.
    let mut seen = Vec::new();
    while let Some(Ok(m)) = second.next().await {
        if let Some(Ev::Data(d)) = m.event.and_then(|e| e.event)
            && let Some(Output::Stdout(b)) = d.output
        {
            seen.extend(b);
            if seen.ends_with(b"\n") {
                break;
            }
        }
    }
    assert_eq!(seen, b"got hi\n");
    drop(second);
    let r = conn_task.await.unwrap();
    assert_eq!(r.pid, pid2);
    assert_eq!(r.stdout, b"got hi\n");
    assert_eq!(r.end, Some(end(0, true, "exit status 0")));
    assert!(
        marker.exists(),
        "process finished after its Start client disconnected"
    );

    // The exit is kept for a late Connect: start + end.
    let r = drain(Box::pin(
        c.connect(pb::ConnectRequest {
            process: pid_sel(pid2),
        })
        .await
        .unwrap()
        .map(|r| r.map(|m| m.event)),
    ))
    .await;
    assert_eq!(r.pid, pid2);
    assert_eq!(r.end, Some(end(0, true, "exit status 0")));
    let list = c.list(pb::ListRequest {}).await.unwrap();
    assert!(!list.processes.iter().any(|p| p.pid == pid2));
    drop(first);
    let list = c.list(pb::ListRequest {}).await.unwrap();
    let alpha = list
        .processes
        .iter()
        .find(|p| p.tag.as_deref() == Some("alpha"))
        .expect("alpha still runs after its client left");
    c.send_signal(pb::SendSignalRequest {
        process: pid_sel(alpha.pid),
        signal: pb::Signal::Sigkill as i32,
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn deadline_kills_and_keepalives_arrive() {
    let envd = Envd::start(&[]);
    let c = client(&envd);
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let t0 = Instant::now();
    let r = start(
        &c,
        Request::new(sh(&format!(
            "echo $$ > {}; exec sleep 30",
            pidfile.display()
        )))
        .with_timeout(Duration::from_millis(1500)),
    )
    .await;
    assert!(t0.elapsed() < Duration::from_secs(10));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Either the deadline error or the kill's end event reaches the client first.
    if let Some(e) = &r.error {
        assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    } else {
        assert_eq!(r.end, Some(end(-1, false, "signal: killed")));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    assert!(!alive, "process {pid} survived its deadline");
    let r = drain(Box::pin(
        c.connect(pb::ConnectRequest {
            process: pid_sel(u32::try_from(pid).unwrap()),
        })
        .await
        .unwrap()
        .map(|r| r.map(|m| m.event)),
    ))
    .await;
    assert_eq!(r.end, Some(end(-1, false, "signal: killed")));

    // A Connect deadline ends only that stream (deadline_exceeded); the process lives on.
    let mut s = c.start(sh("exec sleep 30")).await.unwrap();
    let pid = match s.next().await.unwrap().unwrap().event.unwrap().event {
        Some(Ev::Start(s)) => s.pid,
        other => panic!("{other:?}"),
    };
    let r = match c
        .connect(
            Request::new(pb::ConnectRequest {
                process: pid_sel(pid),
            })
            .with_timeout(Duration::from_millis(500)),
        )
        .await
    {
        Ok(st) => drain(Box::pin(st.map(|r| r.map(|m| m.event)))).await,
        Err(e) => Run {
            error: Some(e),
            ..Default::default()
        },
    };
    assert_eq!(
        r.error.as_ref().map(ConnectError::code),
        Some(Code::DeadlineExceeded)
    );
    assert!(r.end.is_none());
    let alive = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        None,
    )
    .is_ok();
    assert!(alive, "a Connect deadline must not kill the process");
    c.send_signal(pb::SendSignalRequest {
        process: pid_sel(pid),
        signal: pb::Signal::Sigkill as i32,
    })
    .await
    .unwrap();
    assert_eq!(
        rest(pid, s).await.end,
        Some(end(-1, false, "signal: killed"))
    );

    // Keepalives at the requested interval, none once data flows more often.
    let r = start(
        &c,
        Request::new(sh("sleep 3.5")).with_header("keepalive-ping-interval", "1"),
    )
    .await;
    assert!(
        (2..=4).contains(&r.keepalives),
        "{} keepalives",
        r.keepalives
    );
    let r = start(&c, sh("sleep 1.5")).await;
    assert_eq!(r.keepalives, 0);
}

#[tokio::test]
async fn pty_echo_and_resize() {
    let envd = Envd::start(&[]);
    let c = client(&envd);
    let mut s = c
        .start(pb::StartRequest {
            process: Some(pb::ProcessConfig {
                cmd: "/bin/sh".into(),
                envs: [("TERM".to_owned(), "xterm-256color".to_owned())].into(),
                ..Default::default()
            }),
            pty: Some(pb::Pty {
                size: Some(pb::pty::Size { cols: 80, rows: 24 }),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let pid = match s.next().await.unwrap().unwrap().event.unwrap().event {
        Some(Ev::Start(s)) => s.pid,
        other => panic!("{other:?}"),
    };
    let send = |data: &'static [u8]| {
        c.send_input(pb::SendInputRequest {
            process: pid_sel(pid),
            input: Some(pb::ProcessInput {
                input: Some(pb::process_input::Input::Pty(data.to_vec())),
            }),
        })
    };
    let mut out = Vec::new();
    let read_until =
        async |s: &mut e2b_envd::Streaming<pb::StartResponse>, needle: &str, out: &mut Vec<u8>| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !String::from_utf8_lossy(out).contains(needle) {
                assert!(
                    Instant::now() < deadline,
                    "timed out waiting for {needle:?} in {:?}",
                    String::from_utf8_lossy(out)
                );
                let m = tokio::time::timeout(Duration::from_secs(10), s.next())
                    .await
                    .unwrap()
                    .unwrap()
                    .unwrap();
                match m.event.and_then(|e| e.event) {
                    Some(Ev::Data(d)) => match d.output {
                        Some(Output::Pty(b)) => out.extend(b),
                        other => panic!("non-pty output {other:?}"),
                    },
                    Some(Ev::End(e)) => panic!("ended early: {e:?}"),
                    _ => {}
                }
            }
        };
    send(b"stty size; tty\n").await.unwrap();
    read_until(&mut s, "24 80", &mut out).await;
    read_until(&mut s, "/dev/pts/", &mut out).await;
    c.update(pb::UpdateRequest {
        process: pid_sel(pid),
        pty: Some(pb::Pty {
            size: Some(pb::pty::Size {
                cols: 100,
                rows: 40,
            }),
        }),
    })
    .await
    .unwrap();
    out.clear();
    send(b"stty size\n").await.unwrap();
    read_until(&mut s, "40 100", &mut out).await;
    // Stdin-specific calls are refused for a PTY process.
    let e = c
        .send_input(pb::SendInputRequest {
            process: pid_sel(pid),
            input: Some(pb::ProcessInput {
                input: Some(pb::process_input::Input::Stdin(b"x".to_vec())),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal);
    let e = c
        .close_stdin(pb::CloseStdinRequest {
            process: pid_sel(pid),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unknown);
    send(b"exit 5\n").await.unwrap();
    let r = drain(Box::pin(
        futures_util::stream::once(async move {
            Ok(Some(pb::ProcessEvent {
                event: Some(Ev::Start(pb::process_event::StartEvent { pid })),
            }))
        })
        .chain(s.map(|r| r.map(|m| m.event))),
    ))
    .await;
    assert_eq!(r.end, Some(end(5, true, "exit status 5")));
    assert!(r.max_chunk <= 16 * 1024);
}

#[tokio::test]
async fn one_gib_of_stdout_streams_with_bounded_memory() {
    let envd = Envd::start(&[]);
    let c = proto_client(&envd);
    let before = envd.rss_kib();
    let r = start(&c, sh("head -c 1073741824 /dev/zero")).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(r.end, Some(end(0, true, "exit status 0")));
    assert_eq!(r.stdout.len(), 1 << 30);
    assert!(r.max_chunk <= 32 * 1024, "chunk of {} bytes", r.max_chunk);
    let after = envd.rss_kib();
    assert!(
        after < before + 32 * 1024,
        "envd RSS grew from {before} KiB to {after} KiB"
    );
}

/// `Authorization: Basic base64(user:)`, how the SDKs name the user to act as.
fn basic(user: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:"))
    )
}

#[tokio::test]
async fn unknown_users_are_unauthenticated() {
    let envd = Envd::start(&[]);
    let c = client(&envd);
    let r = start(
        &c,
        Request::new(sh("id -u")).with_header("authorization", &basic("no-such-user-xyz")),
    )
    .await;
    assert_eq!(
        code_of(&r.error),
        Some((
            Code::Unauthenticated,
            "invalid username: 'no-such-user-xyz'".to_owned()
        ))
    );
}

#[tokio::test]
#[ignore = "needs root: creates a user and switches to it"]
async fn users_processes_run_as_the_requested_user() {
    let envd = Envd::start(&[]);
    let c = client(&envd);
    let (name, uid, gid, home) = test_user();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let f = dir.path().join("made-by-user");
    let r = start(
        &c,
        Request::new(sh(&format!(
            "id -u; id -g; echo $HOME $USER; pwd; touch {}",
            f.display()
        )))
        .with_header("authorization", &basic(&name)),
    )
    .await;
    assert_eq!(
        String::from_utf8(r.stdout).unwrap(),
        format!("{uid}\n{gid}\n{home} {name}\n{home}\n")
    );
    use std::os::unix::fs::MetadataExt as _;
    let md = std::fs::metadata(&f).unwrap();
    assert_eq!((md.uid(), md.gid()), (uid, gid));
    // The default user from /init applies without a header.
    let r = common::http()
        .post(format!("{}/init", envd.base))
        .json(&serde_json::json!({"defaultUser": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = start(&c, sh("id -un")).await;
    assert_eq!(r.stdout, format!("{name}\n").into_bytes());
}

#[tokio::test]
async fn wire_json_matches_upstream_shapes() {
    let envd = Envd::start(&[]);
    let http = common::http();
    // A unary error is a Connect JSON error with the mapped HTTP status.
    let r = http
        .post(format!("{}/process.Process/SendSignal", envd.base))
        .header("content-type", "application/json")
        .body(r#"{"process":{"pid":4242424},"signal":"SIGNAL_SIGKILL"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!({"code": "not_found", "message": "process with pid 4242424 not found"})
    );
    // A stream as the Python SDK reads it: envelopes of camelCase JSON.
    let body = br#"{"process":{"cmd":"/bin/sh","args":["-c","printf hi; exit 2"]},"stdin":false}"#;
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(body);
    let r = http
        .post(format!("{}/process.Process/Start", envd.base))
        .header("content-type", "application/connect+json")
        .header("connect-protocol-version", "1")
        .body(framed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    let mut frames = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        frames.push((
            rest[0],
            String::from_utf8(rest[5..5 + len].to_vec()).unwrap(),
        ));
        rest = &rest[5 + len..];
    }
    let n = frames.len();
    assert!(
        frames[0].1.starts_with(r#"{"event":{"start":{"pid":"#),
        "{frames:?}"
    );
    assert_eq!(
        frames[1].1,
        format!(
            r#"{{"event":{{"data":{{"stdout":"{}"}}}}}}"#,
            base64::engine::general_purpose::STANDARD.encode("hi")
        )
    );
    assert_eq!(
        frames[n - 2].1,
        r#"{"event":{"end":{"exitCode":2,"exited":true,"status":"exit status 2","error":"exit status 2"}}}"#
    );
    assert_eq!(frames[n - 1], (2, "{}".to_owned()));
}

#[tokio::test]
async fn slow_subscriber_gets_everything_and_unsubscribed_output_is_discarded() {
    let envd = Envd::start(&[]);
    let c = proto_client(&envd);
    // Back-pressure: a reader that pauses after every event still receives every byte.
    let mut s = c
        .start(sh(
            "head -c 4194304 /dev/urandom | od -An -v -tx1 | head -c 4194304",
        ))
        .await
        .unwrap();
    let mut total = 0usize;
    while let Some(m) = s.next().await {
        match m.unwrap().event.and_then(|e| e.event) {
            Some(Ev::Data(d)) => {
                if let Some(Output::Stdout(b)) = d.output {
                    total += b.len();
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Some(Ev::End(e)) => {
                assert_eq!(e.exit_code, 0);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(total, 4 * 1024 * 1024);

    // Nobody subscribed: 200 MB of output is discarded, so the process is never blocked by
    // a full pipe, and a later Connect sees only what comes after it.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("wrote-all");
    let mut s = c
        .start(sh(&format!(
            "head -c 200000000 /dev/zero; touch {}; sleep 1; echo late",
            marker.display()
        )))
        .await
        .unwrap();
    let pid = match s.next().await.unwrap().unwrap().event.unwrap().event {
        Some(Ev::Start(s)) => s.pid,
        other => panic!("{other:?}"),
    };
    drop(s);
    let t0 = Instant::now();
    while !marker.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the process stayed blocked on its output with no subscriber"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = drain(Box::pin(
        c.connect(pb::ConnectRequest {
            process: pid_sel(pid),
        })
        .await
        .unwrap()
        .map(|r| r.map(|m| m.event)),
    ))
    .await;
    assert_eq!(r.stdout, b"late\n");
    assert_eq!(r.end, Some(end(0, true, "exit status 0")));
    assert!(
        envd.rss_kib() < 64 * 1024,
        "envd RSS {} KiB",
        envd.rss_kib()
    );
}

#[tokio::test]
#[ignore = "needs root: creates a user and starts envd as it"]
async fn non_root_envd_only_acts_as_itself() {
    let (name, uid, gid, home) = test_user();
    let envd = Envd::start_as(uid, gid, &[]);
    let c = client(&envd);
    let r = start(&c, sh("id -un; pwd")).await;
    assert_eq!(
        String::from_utf8(r.stdout).unwrap(),
        format!("{name}\n{home}\n")
    );
    let r = start(
        &c,
        Request::new(sh("id -un")).with_header("authorization", &basic(&name)),
    )
    .await;
    assert_eq!(r.stdout, format!("{name}\n").into_bytes());
    let r = start(
        &c,
        Request::new(sh("id -un")).with_header("authorization", &basic("root")),
    )
    .await;
    assert_eq!(
        code_of(&r.error),
        Some((Code::Unauthenticated, "invalid username: 'root'".to_owned()))
    );
}
