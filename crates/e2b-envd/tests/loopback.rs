//! The generated client against the generated server over loopback HTTP.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use e2b_envd::pb::process::process_client::ProcessClient;
use e2b_envd::pb::process::process_server::{Process, ProcessServer};
use e2b_envd::pb::process::{
    CloseStdinRequest, CloseStdinResponse, ConnectRequest, ConnectResponse, ListRequest,
    ListResponse, ProcessConfig, ProcessEvent, ProcessInfo, ProcessInput, SendInputRequest,
    SendInputResponse, SendSignalRequest, SendSignalResponse, StartRequest, StartResponse,
    StreamInputRequest, StreamInputResponse, UpdateRequest, UpdateResponse, process_event,
    process_input, stream_input_request,
};
use e2b_envd::{Client, Code, ConnectError, Encoding, Request, Streaming};
use futures_util::stream::{self, BoxStream, StreamExt};

/// A service whose behaviour the requests choose, to exercise the runtime.
#[derive(Default)]
struct TestProcess {
    inputs: Mutex<Vec<Vec<u8>>>,
}

fn data(i: usize) -> StartResponse {
    StartResponse {
        event: Some(ProcessEvent {
            event: Some(process_event::Event::Data(process_event::DataEvent {
                output: Some(process_event::data_event::Output::Stdout(
                    i.to_string().into_bytes(),
                )),
            })),
        }),
    }
}

impl Process for TestProcess {
    type ConnectStream = BoxStream<'static, Result<ConnectResponse, ConnectError>>;
    type StartStream = BoxStream<'static, Result<StartResponse, ConnectError>>;

    /// Fails with the code named in `x-fail-code`, else echoes `x-tag` as one process.
    async fn list(&self, request: Request<ListRequest>) -> Result<ListResponse, ConnectError> {
        if let Some(code) = request.headers().get("x-fail-code") {
            let code = Code::from_wire(code.to_str().unwrap()).unwrap();
            return Err(ConnectError::new(
                code,
                format!("asked to fail with {code}"),
            ));
        }
        if request.headers().contains_key("x-sleep") {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        let tag = request
            .headers()
            .get("x-tag")
            .map(|v| v.to_str().unwrap().to_owned());
        Ok(ListResponse {
            processes: vec![ProcessInfo {
                config: None,
                pid: 1,
                tag,
            }],
        })
    }

    async fn connect(
        &self,
        request: Request<ConnectRequest>,
    ) -> Result<Self::ConnectStream, ConnectError> {
        Err(ConnectError::not_found(format!(
            "process with pid {:?} not found",
            request.message().process
        )))
    }

    /// `cmd` picks the behaviour: `count` streams `args[0]` messages, `hang` never ends,
    /// `fail` sends two messages and then `not_found`, `big` sends one message of `args[0]` bytes.
    async fn start(
        &self,
        request: Request<StartRequest>,
    ) -> Result<Self::StartStream, ConnectError> {
        let config = request.into_message().process.unwrap_or_default();
        let arg = || config.args[0].parse::<usize>().unwrap();
        Ok(match config.cmd.as_str() {
            "count" => stream::iter((0..arg()).map(|i| Ok(data(i)))).boxed(),
            "hang" => stream::iter([Ok(data(0))]).chain(stream::pending()).boxed(),
            "fail" => stream::iter([
                Ok(data(0)),
                Ok(data(1)),
                Err(ConnectError::not_found("the process went away")),
            ])
            .boxed(),
            "big" => {
                let payload = vec![b'x'; arg()];
                stream::iter([Ok(StartResponse {
                    event: Some(ProcessEvent {
                        event: Some(process_event::Event::Data(process_event::DataEvent {
                            output: Some(process_event::data_event::Output::Stdout(payload)),
                        })),
                    }),
                })])
                .boxed()
            }
            other => {
                return Err(ConnectError::invalid_argument(format!(
                    "unknown test command {other:?}"
                )));
            }
        })
    }

    async fn update(&self, _: Request<UpdateRequest>) -> Result<UpdateResponse, ConnectError> {
        Err(ConnectError::unimplemented(
            "update is not part of this test",
        ))
    }

    /// Records every chunk of input in order.
    async fn stream_input(
        &self,
        request: Request<Streaming<StreamInputRequest>>,
    ) -> Result<StreamInputResponse, ConnectError> {
        let mut messages = request.into_message();
        while let Some(message) = messages.next().await {
            if let Some(stream_input_request::Event::Data(data)) = message?.event
                && let Some(ProcessInput {
                    input: Some(process_input::Input::Stdin(bytes)),
                }) = data.input
            {
                self.inputs.lock().unwrap().push(bytes);
            }
        }
        Ok(StreamInputResponse {})
    }

    async fn send_input(
        &self,
        request: Request<SendInputRequest>,
    ) -> Result<SendInputResponse, ConnectError> {
        if let Some(ProcessInput {
            input: Some(process_input::Input::Stdin(bytes)),
        }) = request.into_message().input
        {
            self.inputs.lock().unwrap().push(bytes);
        }
        Ok(SendInputResponse {})
    }

    async fn send_signal(
        &self,
        _: Request<SendSignalRequest>,
    ) -> Result<SendSignalResponse, ConnectError> {
        Ok(SendSignalResponse {})
    }

    async fn close_stdin(
        &self,
        _: Request<CloseStdinRequest>,
    ) -> Result<CloseStdinResponse, ConnectError> {
        Ok(CloseStdinResponse {})
    }
}

struct Harness {
    base_url: String,
    service: Arc<TestProcess>,
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

async fn harness() -> Harness {
    let service = Arc::new(TestProcess::default());
    let router = ProcessServer::from_arc(service.clone())
        .max_message_size(1024 * 1024)
        .into_router();
    Harness {
        base_url: serve(router).await,
        service,
    }
}

fn client(base_url: &str, encoding: Encoding) -> ProcessClient {
    ProcessClient::new(
        Client::builder(base_url)
            .encoding(encoding)
            .build()
            .unwrap(),
    )
}

fn start(cmd: &str, arg: &str) -> StartRequest {
    StartRequest {
        process: Some(ProcessConfig {
            cmd: cmd.into(),
            args: vec![arg.into()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn stdout_of(response: StartResponse) -> Vec<u8> {
    match response.event.unwrap().event.unwrap() {
        process_event::Event::Data(process_event::DataEvent {
            output: Some(process_event::data_event::Output::Stdout(bytes)),
        }) => bytes,
        other => panic!("expected stdout, got {other:?}"),
    }
}

#[tokio::test]
async fn unary_round_trip_in_both_codecs() {
    let h = harness().await;
    for encoding in [Encoding::Json, Encoding::Proto] {
        let response = client(&h.base_url, encoding)
            .list(Request::new(ListRequest {}).with_header("x-tag", "web"))
            .await
            .unwrap();
        assert_eq!(response.processes[0].tag.as_deref(), Some("web"));
    }
}

#[tokio::test]
async fn server_stream_delivers_10000_messages_in_order() {
    let h = harness().await;
    for encoding in [Encoding::Json, Encoding::Proto] {
        let mut stream = client(&h.base_url, encoding)
            .start(start("count", "10000"))
            .await
            .unwrap();
        let mut n = 0;
        while let Some(message) = stream.next().await {
            assert_eq!(stdout_of(message.unwrap()), n.to_string().into_bytes());
            n += 1;
        }
        assert_eq!(n, 10_000);
    }
}

#[tokio::test]
async fn stream_error_arrives_after_the_messages_before_it() {
    let h = harness().await;
    let mut stream = client(&h.base_url, Encoding::Json)
        .start(start("fail", ""))
        .await
        .unwrap();
    assert_eq!(stdout_of(stream.next().await.unwrap().unwrap()), b"0");
    assert_eq!(stdout_of(stream.next().await.unwrap().unwrap()), b"1");
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert_eq!(error.message(), "the process went away");
    assert!(!error.is_transport());
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn stream_error_before_the_first_message_is_an_end_stream_frame() {
    let h = harness().await;
    let mut stream = client(&h.base_url, Encoding::Json)
        .connect(ConnectRequest::default())
        .await
        .expect("streaming errors arrive with HTTP 200");
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert_eq!(error.message(), "process with pid None not found");
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn client_stream_delivers_every_message() {
    let h = harness().await;
    let messages = (0..100u8).map(|i| StreamInputRequest {
        event: Some(stream_input_request::Event::Data(
            stream_input_request::DataEvent {
                input: Some(ProcessInput {
                    input: Some(process_input::Input::Stdin(vec![i; usize::from(i)])),
                }),
            },
        )),
    });
    for encoding in [Encoding::Json, Encoding::Proto] {
        h.service.inputs.lock().unwrap().clear();
        client(&h.base_url, encoding)
            .stream_input(stream::iter(messages.clone()))
            .await
            .unwrap();
        let inputs = h.service.inputs.lock().unwrap().clone();
        assert_eq!(inputs.len(), 100);
        for (i, input) in inputs.iter().enumerate() {
            assert_eq!(input, &vec![i as u8; i]);
        }
    }
}

#[tokio::test]
async fn deadlines_end_unary_calls_and_streams() {
    let h = harness().await;
    let c = client(&h.base_url, Encoding::Json);

    let error = c
        .list(
            Request::new(ListRequest {})
                .with_header("x-sleep", "1")
                .with_timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded);

    let started = tokio::time::Instant::now();
    let mut stream = c
        .start(Request::new(start("hang", "")).with_timeout(Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(stdout_of(stream.next().await.unwrap().unwrap()), b"0");
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.code(), Code::DeadlineExceeded);
    assert!(stream.next().await.is_none());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_server_enforces_connect_timeout_ms() {
    let h = harness().await;
    let mut body = BytesMut::new();
    e2b_envd::envelope::encode_with(&mut body, 0, |b| {
        b.extend_from_slice(br#"{"process":{"cmd":"hang","args":[""]}}"#);
        Ok::<(), ()>(())
    })
    .unwrap();
    let response = e2b_envd::default_http_client()
        .unwrap()
        .post(format!("{}/process.Process/Start", h.base_url))
        .header("content-type", "application/connect+json")
        .header("connect-timeout-ms", "200")
        .body(body.freeze())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    let end = br#"{"error":{"code":"deadline_exceeded","message":"the call's Connect-Timeout-Ms passed"}}"#;
    assert!(body.ends_with(end), "{body:?}");
    assert_eq!(body[body.len() - end.len() - 5], 2, "end-stream flag");
}

#[tokio::test]
async fn every_error_code_arrives_with_its_http_status() {
    let h = harness().await;
    let http = e2b_envd::default_http_client().unwrap();
    let c = client(&h.base_url, Encoding::Json);
    for code in Code::ALL {
        let response = http
            .post(format!("{}/process.Process/List", h.base_url))
            .header("content-type", "application/json")
            .header("x-fail-code", code.as_str())
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), code.http_status(), "{code}");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(
            response.text().await.unwrap(),
            format!(r#"{{"code":"{code}","message":"asked to fail with {code}"}}"#)
        );

        let error = c
            .list(Request::new(ListRequest {}).with_header("x-fail-code", code.as_str()))
            .await
            .unwrap_err();
        assert_eq!(error.code(), code);
        assert_eq!(error.message(), format!("asked to fail with {code}"));
        assert_eq!(error.http_status(), Some(code.http_status().as_u16()));
    }
}

#[tokio::test]
async fn bad_requests_get_connect_errors() {
    let h = harness().await;
    let http = e2b_envd::default_http_client().unwrap();
    let post = |path: &str, content_type: &str, body: Vec<u8>| {
        http.post(format!("{}{path}", h.base_url))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let json = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap();
        (
            status,
            body["code"].as_str().unwrap().to_owned(),
            body["message"].as_str().unwrap().to_owned(),
        )
    };

    // Unknown method of a known service.
    let (status, code, message) = json(
        post("/process.Process/Fly", "application/json", b"{}".to_vec())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (501, "unimplemented"));
    assert_eq!(message, "process.Process/Fly is not implemented");

    // Wrong content type.
    let response = post("/process.Process/List", "text/plain", b"{}".to_vec())
        .await
        .unwrap();
    assert_eq!(
        response.headers()["accept-post"],
        "application/json, application/proto"
    );
    let (status, code, message) = json(response).await;
    assert_eq!((status, code.as_str()), (415, "invalid_argument"));
    assert_eq!(
        message,
        "unsupported content type \"text/plain\"; this method takes application/json or application/proto"
    );

    // A unary content type on a streaming method.
    let (status, _, _) = json(
        post("/process.Process/Start", "application/json", b"{}".to_vec())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 415);

    // Invalid JSON and invalid protobuf.
    let (status, code, message) = json(
        post(
            "/process.Process/List",
            "application/json",
            b"{nope".to_vec(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "invalid_argument"));
    assert!(
        message.starts_with("invalid JSON for process::ListRequest: "),
        "{message}"
    );
    let (status, code, message) = json(
        post(
            "/process.Process/SendInput",
            "application/proto",
            vec![0x0a, 0x09, 0x01],
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "invalid_argument"));
    assert!(
        message.starts_with("invalid protobuf for process::SendInputRequest: "),
        "{message}"
    );

    // Oversize unary body (the test server allows 1 MiB).
    let (status, code, _) = json(
        post(
            "/process.Process/List",
            "application/json",
            vec![b' '; 2 << 20],
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (429, "resource_exhausted"));

    // Bad timeout header.
    let response = http
        .post(format!("{}/process.Process/List", h.base_url))
        .header("content-type", "application/json")
        .header("connect-timeout-ms", "soon")
        .body("{}")
        .send()
        .await
        .unwrap();
    let (status, code, message) = json(response).await;
    assert_eq!((status, code.as_str()), (400, "invalid_argument"));
    assert_eq!(
        message,
        "invalid Connect-Timeout-Ms header \"soon\": expected 1 to 10 digits"
    );

    // Streaming bodies: truncated, empty, oversize. Errors arrive in the end-stream frame.
    let end_stream_error = |body: bytes::Bytes| {
        assert_eq!(body[0], 2, "only an end-stream frame: {body:?}");
        let value: serde_json::Value = serde_json::from_slice(&body[5..]).unwrap();
        (
            value["error"]["code"].as_str().unwrap().to_owned(),
            value["error"]["message"].as_str().unwrap().to_owned(),
        )
    };
    let send_stream =
        |body: Vec<u8>| post("/process.Process/Start", "application/connect+json", body);
    let body = send_stream(vec![0, 0, 0, 0, 10, b'{'])
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        end_stream_error(body),
        (
            "invalid_argument".into(),
            "stream truncated inside a message (1 of 10 bytes)".into()
        )
    );
    let body = send_stream(Vec::new())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        end_stream_error(body),
        (
            "invalid_argument".into(),
            "the request has no message: expected exactly one envelope".into()
        )
    );
    let mut huge = vec![0, 0, 0x20, 0, 0];
    huge.extend(std::iter::repeat_n(b' ', 2 << 20));
    let body = send_stream(huge).await.unwrap().bytes().await.unwrap();
    assert_eq!(end_stream_error(body).0, "resource_exhausted");
}

/// A server that answers every call with fixed bytes, to test the client against bad peers.
async fn raw_server(status: u16, content_type: &'static str, body: Vec<u8>) -> String {
    let router = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move {
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                [("content-type", content_type)],
                body,
            )
        }
    });
    serve(router).await
}

#[tokio::test]
async fn the_client_reports_broken_streams_without_hanging() {
    // Truncated inside a message.
    let url = raw_server(200, "application/connect+json", vec![0, 0, 0, 0, 9, b'{']).await;
    let mut stream = client(&url, Encoding::Json)
        .start(start("x", ""))
        .await
        .unwrap();
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.code(), Code::Internal);
    assert_eq!(
        error.message(),
        "stream truncated inside a message (1 of 9 bytes)"
    );
    assert!(stream.next().await.is_none());

    // Ends cleanly but without an end-of-stream frame: a cut connection.
    let mut body = BytesMut::new();
    e2b_envd::envelope::encode_with(&mut body, 0, |b| {
        b.put_slice(br#"{"event":{"start":{"pid":1}}}"#);
        Ok::<(), ()>(())
    })
    .unwrap();
    let url = raw_server(200, "application/connect+json", body.to_vec()).await;
    let mut stream = client(&url, Encoding::Json)
        .start(start("x", ""))
        .await
        .unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.code(), Code::Unavailable);
    assert!(error.is_transport());

    // An oversize frame is refused before it is buffered.
    let url = raw_server(200, "application/connect+json", vec![0, 0x10, 0, 0, 0]).await;
    let mut stream = client(&url, Encoding::Json)
        .start(start("x", ""))
        .await
        .unwrap();
    assert_eq!(
        stream.next().await.unwrap().unwrap_err().code(),
        Code::ResourceExhausted
    );

    // A proxy's plain 502 keeps its status and message.
    let url = raw_server(
        502,
        "application/json",
        br#"{"sandboxId":"i1","message":"The sandbox was not found","code":502}"#.to_vec(),
    )
    .await;
    let error = client(&url, Encoding::Json)
        .start(start("x", ""))
        .await
        .unwrap_err();
    assert_eq!(
        (error.code(), error.http_status()),
        (Code::Unavailable, Some(502))
    );
    assert_eq!(error.message(), "The sandbox was not found");
    let error = client(&url, Encoding::Json)
        .list(ListRequest {})
        .await
        .unwrap_err();
    assert_eq!(
        (error.code(), error.http_status()),
        (Code::Unavailable, Some(502))
    );

    // A 200 with the wrong content type.
    let url = raw_server(200, "text/html", b"<html>".to_vec()).await;
    let error = client(&url, Encoding::Json)
        .list(ListRequest {})
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Internal);
    assert_eq!(
        error.message(),
        "/process.Process/List: expected a application/json response, got content type \"text/html\""
    );
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let error = client(&url, Encoding::Json)
        .list(ListRequest {})
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable);
    assert!(error.is_transport());
    assert!(
        error.message().starts_with("/process.Process/List: "),
        "{}",
        error.message()
    );
}

#[tokio::test]
async fn large_messages_cross_both_codecs() {
    let h = harness().await;
    for encoding in [Encoding::Json, Encoding::Proto] {
        let mut stream = client(&h.base_url, encoding)
            .start(start("big", "500000"))
            .await
            .unwrap();
        assert_eq!(
            stdout_of(stream.next().await.unwrap().unwrap()).len(),
            500_000
        );
        assert!(stream.next().await.is_none());
    }
}

#[tokio::test]
async fn messages_without_a_json_form_are_errors_not_panics() {
    // An enum field holding a number the proto does not name has no proto3 JSON encoding.
    let h = harness().await;
    let request = SendSignalRequest {
        process: None,
        signal: 2,
    };
    let error = client(&h.base_url, Encoding::Json)
        .send_signal(request.clone())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().starts_with(
            "/process.Process/SendSignal: cannot encode process::SendSignalRequest as JSON: "
        ),
        "{}",
        error.message()
    );
    // Binary protobuf carries it, and the server takes it.
    client(&h.base_url, Encoding::Proto)
        .send_signal(request)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_finished_stream_leaves_its_connection_for_the_next_call() {
    // An HTTP/1.1 body dropped before its end closes the connection: the stream reads past
    // its end-of-stream frame so the pool can reuse it. Count the server's connections.
    use axum::serve::{Listener as _, ListenerExt as _};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .tap_io(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = ProcessServer::from_arc(Arc::new(TestProcess::default())).into_router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    for encoding in [Encoding::Json, Encoding::Proto] {
        let client = client(&url, encoding);
        for _ in 0..5 {
            let mut stream = client.start(start("count", "3")).await.unwrap();
            let mut n = 0;
            while let Some(message) = stream.next().await {
                message.unwrap();
                n += 1;
            }
            assert_eq!(n, 3);
        }
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "one connection per client"
    );
}

#[tokio::test]
async fn a_body_left_open_after_the_end_of_stream_frame_does_not_hang_the_stream() {
    // The end-of-stream frame (with an error), then the body stays open forever.
    let router = axum::Router::new().fallback(|| async {
        let end = br#"{"error":{"code":"not_found","message":"gone"}}"#;
        let mut frame = vec![2];
        frame.extend_from_slice(&(end.len() as u32).to_be_bytes());
        frame.extend_from_slice(end);
        let body = futures_util::stream::once(async move {
            Ok::<_, std::io::Error>(bytes::Bytes::from(frame))
        })
        .chain(futures_util::stream::pending());
        (
            [("content-type", "application/connect+json")],
            axum::body::Body::from_stream(body),
        )
    });
    let url = serve(router).await;
    let mut stream = client(&url, Encoding::Json)
        .start(start("x", ""))
        .await
        .unwrap();
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let error = stream.next().await.unwrap().unwrap_err();
        (error, stream.next().await.is_none())
    })
    .await
    .expect("the stream hung after its end-of-stream frame");
    assert_eq!(
        (outcome.0.code(), outcome.0.message(), outcome.1),
        (Code::NotFound, "gone", true)
    );
}
