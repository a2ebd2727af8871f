//! The generated client against an in-process HTTP server on `127.0.0.1:0`: the exact
//! method, path, query string, headers and body it sends, and how it reads responses.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{TimeZone, Utc};
use e2b_api::prelude::*;
use e2b_api::{ClientConfig, DEFAULT_USER_AGENT, Error, types};
use serde_json::{Value, json};

/// One request as the server saw it.
#[derive(Debug)]
struct Recorded {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header"))
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

/// A canned response: status, extra headers, JSON body (or none), or a raw body.
struct Canned {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: Option<Value>,
    raw: Option<&'static str>,
}

fn raw(status: u16, content_type: &'static str, text: &'static str) -> Canned {
    Canned {
        status,
        headers: vec![("content-type", content_type)],
        body: None,
        raw: Some(text),
    }
}

fn reply(status: u16, body: Value) -> Canned {
    Canned {
        status,
        headers: Vec::new(),
        body: Some(body),
        raw: None,
    }
}

fn empty(status: u16) -> Canned {
    Canned {
        status,
        headers: Vec::new(),
        body: None,
        raw: None,
    }
}

#[derive(Clone, Default)]
struct Server {
    replies: Arc<Mutex<VecDeque<Canned>>>,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    /// Starts the server; every request is recorded and answered with the next canned reply.
    async fn start() -> (Self, SocketAddr) {
        let server = Self::default();
        let state = server.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { state.handle(method, uri, headers, body) }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (server, addr)
    }

    fn handle(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        self.seen.lock().unwrap().push(Recorded {
            method,
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers,
            body,
        });
        let Some(canned) = self.replies.lock().unwrap().pop_front() else {
            return (StatusCode::IM_A_TEAPOT, "no canned reply left").into_response();
        };
        let mut response = match (canned.body, canned.raw) {
            (Some(body), _) => (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response(),
            (None, Some(text)) => text.into_response(),
            (None, None) => ().into_response(),
        };
        *response.status_mut() = StatusCode::from_u16(canned.status).unwrap();
        for (name, value) in canned.headers {
            response
                .headers_mut()
                .insert(name, axum::http::HeaderValue::from_static(value));
        }
        response
    }

    fn push(&self, canned: Canned) {
        self.replies.lock().unwrap().push_back(canned);
    }

    /// The only request seen since the last call.
    fn take_one(&self) -> Recorded {
        let mut seen = self.seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "expected exactly one request: {seen:#?}");
        seen.pop().unwrap()
    }
}

const API_KEY: &str = "e2b_0123456789abcdef";

fn client(addr: SocketAddr) -> e2b_api::Client {
    ClientConfig::new(format!("http://{addr}"), API_KEY)
        .build()
        .unwrap()
}

fn sandbox_json() -> Value {
    json!({
        "templateID": "rki5dems9wqfm4r03t7g",
        "sandboxID": "iojbyrxp6ik2vhga55m7j",
        "alias": "base",
        "clientID": "6532622b",
        "envdVersion": "0.6.13",
        "envdAccessToken": "2f0a4c1b",
        "domain": "e2b.app",
    })
}

fn listed_json(id: &str) -> Value {
    json!({
        "templateID": "base",
        "sandboxID": id,
        "clientID": "6532622b",
        "startedAt": "2026-11-26T09:30:11Z",
        "endAt": "2026-11-26T09:35:11Z",
        "cpuCount": 2,
        "memoryMB": 512,
        "diskSizeMB": 0,
        "state": "running",
        "envdVersion": "0.6.13",
    })
}

#[tokio::test]
async fn create_sends_key_user_agent_and_exact_body() {
    let (server, addr) = Server::start().await;
    server.push(reply(201, sandbox_json()));

    let created = client(addr)
        .post_sandboxes()
        .body(
            types::NewSandbox::builder()
                .template_id("base")
                .timeout(300)
                .secure(true)
                .allow_internet_access(true)
                .metadata(Some(types::SandboxMetadata(
                    [("sandbox_test_id".to_owned(), "test_ab12".to_owned())].into(),
                )))
                .env_vars(Some(types::EnvVars(Default::default()))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let sandbox = created.into_inner();
    assert_eq!(sandbox.sandbox_id, "iojbyrxp6ik2vhga55m7j");
    assert_eq!(sandbox.envd_access_token.as_deref(), Some("2f0a4c1b"));

    let request = server.take_one();
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/sandboxes");
    assert_eq!(request.query, None);
    assert_eq!(request.header("x-api-key"), Some(API_KEY));
    assert_eq!(request.header("user-agent"), Some(DEFAULT_USER_AGENT));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("accept"), Some("application/json"));
    // progenitor's `api-version` header is dropped: the official SDKs do not send it.
    assert_eq!(request.header("api-version"), None);
    assert_eq!(
        request.json(),
        json!({
            "templateID": "base",
            "timeout": 300,
            "secure": true,
            "allow_internet_access": true,
            "metadata": {"sandbox_test_id": "test_ab12"},
            "envVars": {},
            "autoPause": false,
            "autoPauseMemory": true,
        })
    );
}

#[tokio::test]
async fn custom_user_agent_and_extra_headers() {
    let (server, addr) = Server::start().await;
    server.push(reply(200, json!([])));

    let client = ClientConfig::new(format!("http://{addr}/"), API_KEY)
        .with_user_agent("e2b-rust-sdk/9.9.9 my-integration")
        .with_header(
            "lang".parse().unwrap(),
            axum::http::HeaderValue::from_static("rust"),
        )
        .build()
        .unwrap();
    client.get_sandboxes().send().await.unwrap();

    let request = server.take_one();
    assert_eq!(
        request.path, "/sandboxes",
        "no double slash from the base URL"
    );
    assert_eq!(
        request.header("user-agent"),
        Some("e2b-rust-sdk/9.9.9 my-integration")
    );
    assert_eq!(request.header("lang"), Some("rust"));
    assert_eq!(request.header("x-api-key"), Some(API_KEY));
}

#[tokio::test]
async fn list_v2_query_encoding_and_paging_headers() {
    let (server, addr) = Server::start().await;
    server.push(Canned {
        status: 200,
        headers: vec![
            ("x-next-token", "MTc5NTY4NTQxMV9faTE"),
            ("x-total-running", "3"),
        ],
        body: Some(json!([listed_json("i1"), listed_json("i2")])),
        raw: None,
    });

    // The metadata filter exactly as e2b (py) builds it for {"sandbox_test_id": "test_ab12",
    // "user": "a b"} (crates/e2b/docs/control-plane.md, "List filters"):
    // `urlencode({quote(k): quote(v)})`, so the space is
    // `%20` encoded once more to `%2520`; the whole string is then one query value.
    let page = client(addr)
        .get_sandboxes_v2()
        .metadata("sandbox_test_id=test_ab12&user=a%2520b")
        .state("running,paused")
        .order(types::OrderDirection::Asc)
        .started_after(Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap())
        .template("base")
        .limit(std::num::NonZeroU32::new(10).unwrap())
        .next_token("abc")
        .send()
        .await
        .unwrap();

    assert_eq!(page.status(), 200);
    let next = page
        .headers()
        .get("X-Next-Token")
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(next, "MTc5NTY4NTQxMV9faTE");
    let running: i32 = page.headers()["x-total-running"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(running, 3);
    let ids: Vec<_> = page
        .into_inner()
        .into_iter()
        .map(|s| s.sandbox_id)
        .collect();
    assert_eq!(ids, ["i1", "i2"]);

    let request = server.take_one();
    assert_eq!(request.method, Method::GET);
    assert_eq!(request.path, "/v2/sandboxes");
    assert_eq!(
        request.query.as_deref(),
        Some(
            "limit=10\
             &metadata=sandbox_test_id%3Dtest_ab12%26user%3Da%252520b\
             &nextToken=abc\
             &order=asc\
             &startedAfter=2026-01-02T03%3A04%3A05Z\
             &state=running%2Cpaused\
             &template=base"
        )
    );
    // Decoded once, the server sees exactly the SDK's filter string.
    let pairs: Vec<(String, String)> =
        serde_urlencoded_pairs(request.query.as_deref().unwrap_or_default());
    assert!(pairs.contains(&(
        "metadata".to_owned(),
        "sandbox_test_id=test_ab12&user=a%2520b".to_owned()
    )));
    assert!(pairs.contains(&("state".to_owned(), "running,paused".to_owned())));
}

/// Splits and percent-decodes a query string the way a server does (`+` is a space).
fn serde_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[tokio::test]
async fn last_page_has_no_next_token() {
    let (server, addr) = Server::start().await;
    server.push(reply(200, json!([])));
    let page = client(addr).get_sandboxes_v2().send().await.unwrap();
    assert!(page.headers().get("x-next-token").is_none());
    assert!(page.into_inner().is_empty());
    let request = server.take_one();
    assert_eq!(request.query, None, "no filters, no query string");
}

#[tokio::test]
async fn create_v2_sends_the_idempotency_key() {
    let (server, addr) = Server::start().await;
    server.push(reply(201, sandbox_json()));
    client(addr)
        .post_sandboxes_v2()
        .idempotency_key("3f2a-retry-key")
        .body(types::NewSandboxV2::builder().template_id("base"))
        .send()
        .await
        .unwrap();
    let request = server.take_one();
    assert_eq!(request.path, "/v2/sandboxes");
    assert_eq!(request.header("idempotency-key"), Some("3f2a-retry-key"));
    assert_eq!(
        request.json(),
        json!({"templateID": "base", "timeout": 300, "autoPause": false, "autoPauseMemory": true})
    );
}

#[tokio::test]
async fn connect_accepts_200_and_201() {
    let (server, addr) = Server::start().await;
    let client = client(addr);
    for status in [200, 201] {
        server.push(reply(status, sandbox_json()));
        let response = client
            .post_sandbox_connect()
            .sandbox_id("iojbyrxp6ik2vhga55m7j")
            .body(types::ConnectSandbox::builder().timeout(300))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(response.into_inner().sandbox_id, "iojbyrxp6ik2vhga55m7j");
        let request = server.take_one();
        assert_eq!(request.path, "/sandboxes/iojbyrxp6ik2vhga55m7j/connect");
        assert_eq!(request.json(), json!({"timeout": 300}));
    }

    server.push(reply(201, sandbox_json()));
    client
        .post_sandbox_connect_v2()
        .sandbox_id("iojbyrxp6ik2vhga55m7j")
        .body(types::ConnectSandboxV2::builder().memory(Some(false)))
        .send()
        .await
        .unwrap();
    let request = server.take_one();
    assert_eq!(request.path, "/v2/sandboxes/iojbyrxp6ik2vhga55m7j/connect");
    assert_eq!(request.json(), json!({"timeout": 300, "memory": false}));
}

#[tokio::test]
async fn lifecycle_calls_paths_and_bodies() {
    let (server, addr) = Server::start().await;
    let client = client(addr);
    let id = "iojbyrxp6ik2vhga55m7j";

    server.push(empty(204));
    let killed = client.delete_sandbox().sandbox_id(id).send().await.unwrap();
    assert_eq!(killed.status(), 204);
    let request = server.take_one();
    assert_eq!(
        (request.method, request.path.as_str()),
        (Method::DELETE, "/sandboxes/iojbyrxp6ik2vhga55m7j")
    );
    assert!(request.body.is_empty());

    server.push(empty(204));
    client
        .post_sandbox_timeout()
        .sandbox_id(id)
        .body(types::SandboxTimeoutRequest::builder().timeout(30))
        .send()
        .await
        .unwrap();
    let request = server.take_one();
    assert_eq!(request.path, "/sandboxes/iojbyrxp6ik2vhga55m7j/timeout");
    assert_eq!(request.json(), json!({"timeout": 30}));

    server.push(empty(204));
    client
        .post_sandbox_pause()
        .sandbox_id(id)
        .body(types::SandboxPauseRequest::builder().memory(false))
        .send()
        .await
        .unwrap();
    let request = server.take_one();
    assert_eq!(request.path, "/sandboxes/iojbyrxp6ik2vhga55m7j/pause");
    assert_eq!(request.json(), json!({"memory": false}));

    server.push(empty(204));
    client
        .post_sandbox_refreshes()
        .sandbox_id(id)
        .body(types::SandboxRefreshRequest::builder().duration(Some(60)))
        .send()
        .await
        .unwrap();
    assert_eq!(server.take_one().json(), json!({"duration": 60}));

    server.push(reply(200, json!([])));
    client
        .get_sandbox_metrics()
        .sandbox_id(id)
        .start(1_795_685_000_i64)
        .end(1_795_685_400_i64)
        .send()
        .await
        .unwrap();
    let request = server.take_one();
    assert_eq!(request.path, "/sandboxes/iojbyrxp6ik2vhga55m7j/metrics");
    assert_eq!(
        request.query.as_deref(),
        Some("end=1795685400&start=1795685000")
    );

    server.push(reply(200, json!({"sandboxes": {}})));
    client
        .get_sandboxes_metrics()
        .sandbox_ids("i1,i2")
        .send()
        .await
        .unwrap();
    let request = server.take_one();
    assert_eq!(request.path, "/sandboxes/metrics");
    assert_eq!(request.query.as_deref(), Some("sandbox_ids=i1%2Ci2"));

    server.push(reply(200, json!({"logs": []})));
    client
        .get_sandbox_logs_v2()
        .sandbox_id(id)
        .cursor(5_i64)
        .limit(100_i32)
        .direction(types::LogsDirection::Backward)
        .level(types::LogLevel::Warn)
        .search("needle")
        .send()
        .await
        .unwrap();
    let request = server.take_one();
    assert_eq!(request.path, "/v2/sandboxes/iojbyrxp6ik2vhga55m7j/logs");
    assert_eq!(
        request.query.as_deref(),
        Some("cursor=5&direction=backward&level=warn&limit=100&search=needle")
    );
}

#[tokio::test]
async fn template_ids_are_percent_encoded_in_the_path() {
    let (server, addr) = Server::start().await;
    server.push(empty(204));
    // A snapshot ID as the SDKs pass it to delete_snapshot.
    client(addr)
        .delete_template()
        .template_id("team-slug/my snapshot:default")
        .send()
        .await
        .unwrap();
    let request = server.take_one();
    assert_eq!(request.method, Method::DELETE);
    assert_eq!(request.path, "/templates/team-slug%2Fmy%20snapshot:default");
}

#[tokio::test]
async fn documented_errors_are_typed_with_their_status() {
    let (server, addr) = Server::start().await;
    let client = client(addr);

    let not_found = json!({"code": 404, "message": "Sandbox \"nope\" doesn't exist or you don't have access to it"});
    server.push(reply(404, not_found.clone()));
    let err = client
        .delete_sandbox()
        .sandbox_id("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::NOT_FOUND));
    let Error::ErrorResponse(body) = err else {
        panic!("expected a typed error response, got {err:?}");
    };
    assert_eq!(body.status(), 404);
    assert_eq!(
        *body,
        types::Error {
            code: 404,
            message: "Sandbox \"nope\" doesn't exist or you don't have access to it".into(),
            error_code: None,
        }
    );
    server.take_one();

    server.push(reply(
        401,
        json!({"code": 401, "message": "Invalid API key"}),
    ));
    let err = client
        .post_sandboxes()
        .body(types::NewSandbox::builder().template_id("base"))
        .send()
        .await
        .unwrap_err();
    match err {
        Error::ErrorResponse(body) => {
            assert_eq!(body.status(), 401);
            assert_eq!(body.message, "Invalid API key");
        }
        other => panic!("expected a typed 401, got {other:?}"),
    }
    server.take_one();

    server.push(reply(
        409,
        json!({"code": 409, "message": "sandbox 'i1' is already paused"}),
    ));
    let err = client
        .post_sandbox_pause()
        .sandbox_id("i1")
        .send()
        .await
        .unwrap_err();
    match err {
        Error::ErrorResponse(body) => {
            assert_eq!((body.status().as_u16(), body.code), (409, 409));
        }
        other => panic!("expected a typed 409, got {other:?}"),
    }
    // Without a body set, pause sends upstream's default.
    assert_eq!(server.take_one().json(), json!({"memory": true}));
}

#[tokio::test]
async fn undocumented_statuses_keep_status_and_body() {
    let (server, addr) = Server::start().await;
    // POST /sandboxes documents no 429, but E2B answers it when the concurrency limit is hit.
    server.push(reply(
        429,
        json!({"code": 429, "message": "you have reached the maximum number of concurrent E2B sandboxes (20)"}),
    ));
    let err = client(addr)
        .post_sandboxes()
        .body(types::NewSandbox::builder().template_id("base"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::TOO_MANY_REQUESTS));
    let Error::UnexpectedResponse(response) = err else {
        panic!("expected UnexpectedResponse, got {err:?}");
    };
    let body: types::Error = response.json().await.unwrap();
    assert_eq!(body.code, 429);
    assert!(body.message.starts_with("you have reached the maximum"));
}

#[tokio::test]
async fn malformed_success_body_is_an_error_not_a_panic() {
    let (server, addr) = Server::start().await;
    server.push(reply(200, json!({"sandboxID": 5})));
    let err = client(addr)
        .get_sandbox()
        .sandbox_id("i1")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidResponsePayload(..)), "{err:?}");
}

#[tokio::test]
async fn missing_required_parameter_fails_before_sending() {
    let (server, addr) = Server::start().await;
    let err = client(addr).get_sandbox().send().await.unwrap_err();
    match err {
        Error::InvalidRequest(message) => assert_eq!(message, "sandbox_id was not initialized"),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    assert!(server.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn connection_refused_is_a_communication_error() {
    // Bind and drop a listener so the port is (almost certainly) closed.
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let err = client(addr)
        .get_sandbox()
        .sandbox_id("i1")
        .send()
        .await
        .unwrap_err();
    match err {
        Error::CommunicationError(e) => assert!(e.is_connect(), "{e:?}"),
        other => panic!("expected CommunicationError, got {other:?}"),
    }
}

/// The typed `{code, message}` of a call that must fail with `Error::ErrorResponse`.
fn typed(err: Error<types::Error>) -> (u16, types::Error) {
    match err {
        Error::ErrorResponse(body) => (body.status().as_u16(), body.into_inner()),
        other => panic!("expected a typed error response, got {other:?}"),
    }
}

#[tokio::test]
async fn non_json_error_bodies_keep_status_and_text() {
    let (server, addr) = Server::start().await;
    let client = client(addr);
    let get = || client.get_sandbox().sandbox_id("i1").send();

    // Go's default mux, in front of the API.
    server.push(raw(
        404,
        "text/plain; charset=utf-8",
        "404 page not found\n",
    ));
    let (status, body) = typed(get().await.unwrap_err());
    assert_eq!(status, 404);
    assert_eq!(
        body,
        types::Error {
            code: 404,
            message: "404 page not found".into(),
            error_code: None,
        }
    );

    // An empty 500: the reason phrase stands in for the missing text.
    server.push(raw(500, "text/plain", ""));
    let (status, body) = typed(get().await.unwrap_err());
    assert_eq!((status, body.code), (500, 500));
    assert_eq!(body.message, "Internal Server Error");

    // JSON without the documented fields: its `message` is kept.
    server.push(raw(
        401,
        "application/json",
        r#"{"message":"bad key","reason":7}"#,
    ));
    let (status, body) = typed(get().await.unwrap_err());
    assert_eq!((status, body.code), (401, 401));
    assert_eq!(body.message, "bad key");

    // A conforming body passes through untouched, `error_code` included.
    server.push(reply(
        500,
        json!({"code": 500, "message": "boom", "error_code": "internal_server_error"}),
    ));
    let (_, body) = typed(get().await.unwrap_err());
    assert_eq!(body.error_code.as_deref(), Some("internal_server_error"));

    // An undocumented status with an HTML body: still the status plus a JSON body to read.
    server.push(raw(
        502,
        "text/html",
        "<html><body>Bad Gateway</body></html>",
    ));
    let err = get().await.unwrap_err();
    let Error::UnexpectedResponse(response) = err else {
        panic!("expected UnexpectedResponse, got {err:?}");
    };
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(
        response.url().path().ends_with("/sandboxes/i1"),
        "{}",
        response.url()
    );
    let body: types::Error = response.json().await.unwrap();
    assert_eq!(body.code, 502);
    assert_eq!(body.message, "<html><body>Bad Gateway</body></html>");
}

#[tokio::test]
async fn the_proxy_502_body_reads_as_an_error() {
    let (server, addr) = Server::start().await;
    // E2B's proxy answers this for unknown or stopped sandboxes.
    server.push(reply(
        502,
        json!({"sandboxId": "i1", "message": "The sandbox was not found", "code": 502}),
    ));
    let err = client(addr)
        .get_sandbox()
        .sandbox_id("i1")
        .send()
        .await
        .unwrap_err();
    let Error::UnexpectedResponse(response) = err else {
        panic!("expected UnexpectedResponse, got {err:?}");
    };
    let body: types::Error = response.json().await.unwrap();
    assert_eq!(
        (body.code, body.message.as_str()),
        (502, "The sandbox was not found")
    );
}

#[tokio::test]
async fn oversized_error_bodies_are_cut_at_64_kib() {
    let (server, addr) = Server::start().await;
    let huge: &'static str = Box::leak("x".repeat(1 << 20).into_boxed_str());
    server.push(raw(500, "text/plain", huge));
    let (status, body) = typed(
        client(addr)
            .get_sandbox()
            .sandbox_id("i1")
            .send()
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 500);
    assert_eq!(body.message.len(), 64 * 1024);
}

#[tokio::test]
async fn deprecated_and_template_operations() {
    let (server, addr) = Server::start().await;
    let client = client(addr);

    server.push(reply(200, json!({"logs": [], "logEntries": []})));
    client
        .get_sandbox_logs()
        .sandbox_id("i1")
        .start(1_700_000_000_000_i64)
        .limit(50_i32)
        .send()
        .await
        .unwrap();
    let request = server.take_one();
    assert_eq!(request.path, "/sandboxes/i1/logs");
    assert_eq!(
        request.query.as_deref(),
        Some("limit=50&start=1700000000000")
    );

    server.push(reply(201, sandbox_json()));
    let resumed = client
        .post_sandbox_resume()
        .sandbox_id("i1")
        .body(types::ResumedSandbox::builder().timeout(60))
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 201);
    let request = server.take_one();
    assert_eq!(
        (&request.method, request.path.as_str()),
        (&Method::POST, "/sandboxes/i1/resume")
    );
    assert_eq!(request.json(), json!({"timeout": 60}));

    server.push(reply(200, json!([])));
    client
        .get_templates()
        .team_id("team-1")
        .send()
        .await
        .unwrap();
    let request = server.take_one();
    assert_eq!(request.path, "/templates");
    assert_eq!(request.query.as_deref(), Some("teamID=team-1"));

    server.push(Canned {
        status: 200,
        headers: vec![("x-next-token", "page-2")],
        body: Some(json!({
            "templateID": "t1", "public": false, "aliases": [], "names": [],
            "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
            "lastSpawnedAt": null, "spawnCount": 0, "builds": [],
        })),
        raw: None,
    });
    let template = client
        .get_template()
        .template_id("t1")
        .limit(std::num::NonZeroU32::new(5).unwrap())
        .next_token("page-1")
        .send()
        .await
        .unwrap();
    assert_eq!(template.headers()["x-next-token"], "page-2");
    assert_eq!(template.into_inner().template_id, "t1");
    let request = server.take_one();
    assert_eq!(request.path, "/templates/t1");
    assert_eq!(request.query.as_deref(), Some("limit=5&nextToken=page-1"));
}
