//! Fuzzing the real envd over loopback: `/files` queries, paths and multipart bodies, `/init`
//! bodies, and Connect RPCs with arbitrary JSON, binary and enveloped bodies. After every case
//! envd must still answer `/health`; client garbage must get a 4xx with a clear body, never a
//! 5xx; and envd's memory must stay bounded.
//!
//! envd runs as an unprivileged test user, so fuzzed paths and commands cannot touch the
//! system; that needs root. Bounded for CI; `PROPTEST_CASES=20000 cargo test -p envd
//! --all-features --test fuzz -- --include-ignored` is the longer run (see the README).

mod common;

use bytes::BytesMut;
use common::{Envd, http, test_user};
use e2b_envd::envelope::{FLAG_END_STREAM, encode_with};
use e2b_envd::signature::{self, Operation};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::Value;

const TOKEN: &str = "fuzz-token";

/// envd's RSS after a fuzz run stays under this. It measured 10–12 MiB after the CI runs; a
/// leak of a few KiB per request, or a buffer kept at the 64 MiB message limit, would cross it.
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// `PROPTEST_CASES` when set (the longer run), else `ci_cases`.
fn config(ci_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One envd as the unprivileged test user, its work directory and an HTTP client.
struct Target {
    envd: Envd,
    /// The work directory, owned by the test user; every fuzzed path stays inside it.
    root: String,
    _dir: tempfile::TempDir,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// A response, read whole.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Target {
    fn start() -> Self {
        let (name, uid, gid, _) = test_user();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let root = dir.path().to_str().unwrap().to_owned();
        // Copying the binary and executing it while another thread forks fails with
        // ETXTBSY (the child holds the copy open for writing), so the tests start in turn.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let envd = {
            let _turn = STARTING
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Envd::start_as(uid, gid, &["--default-user", &name, "--workdir", &root])
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = http();
        let target = Self {
            envd,
            root,
            _dir: dir,
            client,
            rt,
        };
        let init = target.send(
            "POST",
            "/init",
            &[("content-type", b"application/json".to_vec())],
            serde_json::to_vec(&serde_json::json!({"accessToken": TOKEN})).unwrap(),
        );
        assert_eq!(init.status, 204, "{init:?}");
        target
    }

    /// Where this target's relative paths land in the test user's home.
    fn home_dir(&self) -> std::path::PathBuf {
        let unique = self.root.rsplit('/').next().unwrap_or_default();
        std::path::Path::new(&test_user().3).join(unique)
    }

    fn send(&self, method: &str, path: &str, headers: &[(&str, Vec<u8>)], body: Vec<u8>) -> Reply {
        self.rt.block_on(async {
            let mut request = self
                .client
                .request(method.parse().unwrap(), format!("{}{path}", self.envd.base))
                .timeout(std::time::Duration::from_secs(20))
                .body(body);
            for (name, value) in headers {
                request = request.header(*name, value.as_slice());
            }
            let response = request.send().await.expect("envd answered");
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            let body = response.bytes().await.expect("body read").to_vec();
            Reply {
                status,
                content_type,
                body,
            }
        })
    }

    /// envd still serves: a fuzz case must never kill or wedge it.
    fn assert_alive(&self) -> Result<(), TestCaseError> {
        let health = self.send("GET", "/health", &[], Vec::new());
        prop_assert_eq!(health.status, 204, "envd stopped serving: {:?}", health);
        Ok(())
    }
}

/// A plain-HTTP error: 4xx (507 is disk full, a server fact) with `{code: status, message}`.
fn check_http_reply(reply: &Reply) -> Result<(), TestCaseError> {
    prop_assert!(
        reply.status < 500 || reply.status == 507,
        "server error for client input: {:?} {}",
        reply,
        String::from_utf8_lossy(&reply.body)
    );
    if reply.status >= 400 {
        let body: Value = serde_json::from_slice(&reply.body).map_err(|e| {
            TestCaseError::fail(format!(
                "error body is not JSON ({e}): {:?} {}",
                reply,
                String::from_utf8_lossy(&reply.body)
            ))
        })?;
        prop_assert_eq!(&body["code"], &Value::from(reply.status), "{}", body);
        prop_assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error without a message: {}",
            body
        );
    }
    Ok(())
}

/// A Connect error body: a known code and, for client garbage, no 5xx other than
/// `unimplemented` (envd's documented code for an unknown selector, input or signal).
fn check_connect_error(status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(body);
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| TestCaseError::fail(format!("error body is not JSON ({e}): {text}")))?;
    // The access-token gate is plain HTTP in front of the RPCs, as in E2B.
    if status == 401 && parsed["code"] == 401 {
        return Ok(());
    }
    let code = parsed["code"].as_str().unwrap_or_default();
    let known = e2b_envd::Code::from_wire(code)
        .ok_or_else(|| TestCaseError::fail(format!("unknown Connect code: {text}")))?;
    prop_assert!(
        !matches!(known, e2b_envd::Code::Internal | e2b_envd::Code::Unknown),
        "server error for client input (HTTP {}): {}",
        status,
        text
    );
    prop_assert!(
        parsed["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without a message: {}",
        text
    );
    Ok(())
}

/// A unary RPC's reply: 200, or a Connect error.
fn check_unary_reply(reply: &Reply) -> Result<(), TestCaseError> {
    if reply.status == 200 {
        return Ok(());
    }
    check_connect_error(reply.status, &reply.body)
}

/// A streaming RPC's reply: 200 with envelopes whose end-of-stream error (if any) is a
/// client-side code, or a Connect error for a request refused before streaming.
fn check_streaming_reply(reply: &Reply) -> Result<(), TestCaseError> {
    if reply.status != 200 || !reply.content_type.starts_with("application/connect+") {
        return check_connect_error(reply.status, &reply.body);
    }
    let mut decoder = e2b_envd::envelope::EnvelopeDecoder::new(
        e2b_envd::DEFAULT_MAX_MESSAGE_SIZE,
        e2b_envd::Code::Internal,
    );
    decoder.push(&reply.body);
    let mut ended = false;
    while let Some(envelope) = decoder
        .next_envelope()
        .map_err(|e| TestCaseError::fail(format!("malformed response stream: {e}")))?
    {
        prop_assert!(!ended, "frames after the end of the stream");
        if envelope.is_end_stream() {
            ended = true;
            let end: Value = serde_json::from_slice(&envelope.data).map_err(|e| {
                TestCaseError::fail(format!("end-of-stream frame is not JSON: {e}"))
            })?;
            if let Some(error) = end.get("error") {
                check_connect_error(200, &serde_json::to_vec(error).unwrap())?;
            }
        }
    }
    prop_assert!(ended, "stream without an end-of-stream frame");
    decoder
        .finish()
        .map_err(|e| TestCaseError::fail(format!("truncated response stream: {e}")))?;
    Ok(())
}

/// Path components: ordinary, empty, dots, a name over NAME_MAX, NUL and other control bytes,
/// non-ASCII.
fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9._-]{1,12}",
        1 => Just(String::new()),
        1 => Just(".".to_owned()),
        2 => Just("..".to_owned()),
        1 => Just("a".repeat(300)),
        1 => Just("nul\0byte".to_owned()),
        1 => "[\\x01-\\x1f\"'%?#&= ]{1,4}",
        1 => "\\PC{1,6}",
    ]
}

/// A path absolute inside the work directory `root`, or relative (to the test user's home).
/// Paths that `..` would take out of their directory are dropped: envd is fuzzed, not the
/// machine it runs on.
fn path_in(root: String) -> impl Strategy<Value = String> {
    (any::<bool>(), proptest::collection::vec(component(), 0..5)).prop_filter_map(
        "escapes the work directory",
        move |(absolute, parts)| {
            let mut depth = 0i32;
            for part in &parts {
                match part.as_str() {
                    ".." => depth -= 1,
                    "" | "." => {}
                    _ => depth += 1,
                }
                if depth < 0 {
                    return None;
                }
            }
            let relative = parts.join("/");
            Some(if absolute {
                format!("{root}/{relative}")
            } else {
                // Relative paths resolve in the test user's home, shared by the tests running
                // in parallel: each keeps to a directory named after its work directory.
                let unique = root.rsplit('/').next().unwrap_or_default();
                format!("{unique}/{relative}")
            })
        },
    )
}

/// Percent-encodes every byte outside unreserved characters, so the exact bytes reach envd.
fn escape(value: &[u8]) -> String {
    value
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A query value: escaped exactly, or raw with percent-escapes that are not UTF-8 or not
/// escapes at all.
fn query_value(value: String) -> impl Strategy<Value = String> {
    prop_oneof![
        30 => Just(escape(value.as_bytes())),
        1 => Just(format!("{}%ff%fe", escape(value.as_bytes()))),
        1 => Just(format!("{}%", escape(value.as_bytes()))),
        1 => Just(format!("%zz{}", escape(value.as_bytes()))),
        1 => Just(format!("{}%00", escape(value.as_bytes()))),
    ]
}

/// A `/files` query: path, username, signature and expiration, each maybe absent, duplicated
/// or garbage; a third of the signatures are valid for the path.
fn files_query(root: String, write: bool) -> impl Strategy<Value = (String, bool)> {
    let username = prop_oneof![
        Just(None),
        Just(Some(test_user().0)),
        Just(Some("root".to_owned())),
        "\\PC{0,10}".prop_map(Some),
    ];
    let expiration = prop_oneof![
        3 => Just(None),
        3 => Just(Some("4102444800".to_owned())),
        1 => Just(Some("1".to_owned())),
        1 => "-?[0-9]{0,20}".prop_map(Some),
        1 => "\\PC{0,6}".prop_map(Some),
    ];
    (
        proptest::option::of(path_in(root)),
        username,
        expiration,
        0..3u8,
        "\\PC{0,50}",
        any::<bool>(),
    )
        .prop_flat_map(
            move |(path, username, expiration, signature_kind, garbage, with_token)| {
                let operation = if write {
                    Operation::Write
                } else {
                    Operation::Read
                };
                let signature = match signature_kind {
                    0 => None,
                    1 => Some(signature::sign(
                        path.as_deref().unwrap_or_default(),
                        operation,
                        username.as_deref().unwrap_or_default(),
                        TOKEN,
                        expiration.as_deref().and_then(|e| e.parse().ok()),
                    )),
                    _ => Some(garbage),
                };
                let pairs: Vec<(&'static str, String)> = [
                    ("path", path),
                    ("username", username),
                    ("signature", signature),
                    ("signature_expiration", expiration),
                ]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
                let values: Vec<_> = pairs.iter().map(|(_, v)| query_value(v.clone())).collect();
                let keys: Vec<&'static str> = pairs.iter().map(|(k, _)| *k).collect();
                (
                    values,
                    Just(keys),
                    Just(with_token),
                    proptest::bool::weighted(0.1),
                )
            },
        )
        .prop_map(|(values, keys, with_token, duplicate_first)| {
            let mut query: Vec<String> = keys
                .iter()
                .zip(&values)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if duplicate_first && let Some(first) = query.first().cloned() {
                query.push(first);
            }
            (format!("/files?{}", query.join("&")), with_token)
        })
}

fn token_header(with_token: bool) -> Vec<(&'static str, Vec<u8>)> {
    if with_token {
        vec![("x-access-token", TOKEN.as_bytes().to_vec())]
    } else {
        Vec::new()
    }
}

/// A multipart body: parts with arbitrary names, filenames and headers, maybe truncated, with
/// the declared boundary maybe not the one used.
fn multipart(root: String) -> impl Strategy<Value = (String, Vec<u8>)> {
    let part = (
        prop_oneof![Just("file".to_owned()), "\\PC{0,6}"],
        proptest::option::of(path_in(root)),
        proptest::collection::vec(("[A-Za-z-]{1,10}", "[ -~]{0,20}"), 0..2),
        proptest::collection::vec(any::<u8>(), 0..64),
    );
    (
        "[A-Za-z0-9'()+_,./:=?-]{1,40}",
        proptest::bool::weighted(0.1),
        proptest::collection::vec(part, 0..4),
        proptest::bool::weighted(0.2),
        any::<usize>(),
        prop_oneof![
            6 => Just("multipart/form-data; boundary=\"".to_owned()),
            1 => Just("multipart/form-data; boundary=".to_owned()),
            1 => Just("multipart/form-data".to_owned()),
            1 => Just("multipart/form-data; boundary=\"unterminated".to_owned()),
            1 => Just("multipart/mixed; boundary=".to_owned()),
        ],
    )
        .prop_map(
            |(boundary, declared_other, parts, truncate, cut, content_type)| {
                let mut body = Vec::new();
                for (name, filename, headers, data) in parts {
                    body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                    let mut disposition = format!("form-data; name=\"{name}\"");
                    if let Some(filename) = filename {
                        disposition.push_str(&format!("; filename=\"{filename}\""));
                    }
                    body.extend_from_slice(b"Content-Disposition: ");
                    body.extend_from_slice(disposition.as_bytes());
                    body.extend_from_slice(b"\r\n");
                    for (k, v) in headers {
                        body.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
                    }
                    body.extend_from_slice(b"\r\n");
                    body.extend_from_slice(&data);
                    body.extend_from_slice(b"\r\n");
                }
                body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
                if truncate {
                    body.truncate(cut % (body.len() + 1));
                }
                let declared = if declared_other {
                    "other-boundary".to_owned()
                } else {
                    boundary
                };
                // The boundary may hold characters a header parameter must quote.
                let content_type = if content_type.ends_with('=') {
                    format!("{content_type}{declared}")
                } else if content_type.ends_with('"') {
                    format!("{content_type}{declared}\"")
                } else {
                    content_type
                };
                (content_type, body)
            },
        )
}

/// Starts an envd, runs `cases` cases of the strategy `strategy(root)` makes (`root` being
/// envd's work directory) against `check`, checking after each that envd is alive, and at the
/// end that its memory is bounded.
fn fuzz<S: Strategy>(
    cases: u32,
    strategy: impl FnOnce(String) -> S,
    check: impl Fn(&Target, S::Value) -> Result<(), TestCaseError>,
) {
    let target = Target::start();
    let strategy = strategy(target.root.clone());
    let mut runner = TestRunner::new(config(cases));
    let result = runner.run(&strategy, |value| {
        check(&target, value)?;
        target.assert_alive()
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let _ = std::fs::remove_dir_all(target.home_dir());
    let rss = target.envd.rss_kib();
    assert!(
        rss < RSS_BOUND_KIB,
        "envd's RSS is {rss} KiB after fuzzing, over {RSS_BOUND_KIB} KiB"
    );
}

#[test]
#[ignore = "needs root: runs envd as an unprivileged test user"]
fn files_download_queries() {
    fuzz(
        1000,
        |root| files_query(root, false),
        |target, (query, with_token)| {
            let reply = target.send("GET", &query, &token_header(with_token), Vec::new());
            check_http_reply(&reply)
        },
    );
}

#[test]
#[ignore = "needs root: runs envd as an unprivileged test user"]
fn files_raw_uploads() {
    let strategy = |root: String| {
        (
            files_query(root, true),
            proptest::collection::vec(any::<u8>(), 0..256),
            prop_oneof![
                6 => Just("application/octet-stream".to_owned()),
                1 => Just(String::new()),
                1 => "[ -~]{0,30}",
            ],
            proptest::collection::vec(("[A-Za-z0-9-]{0,12}", "[ -~]{0,30}"), 0..3),
        )
    };
    fuzz(
        1000,
        strategy,
        |target, ((query, with_token), body, content_type, metadata)| {
            let mut headers = token_header(with_token);
            if !content_type.is_empty() {
                headers.push(("content-type", content_type.into_bytes()));
            }
            let metadata: Vec<(String, Vec<u8>)> = metadata
                .into_iter()
                .map(|(k, v)| (format!("x-metadata-{k}"), v.into_bytes()))
                .collect();
            for (k, v) in &metadata {
                headers.push((k.as_str(), v.clone()));
            }
            let reply = target.send("POST", &query, &headers, body);
            check_http_reply(&reply)
        },
    );
}

#[test]
#[ignore = "needs root: runs envd as an unprivileged test user"]
fn files_multipart_uploads() {
    let strategy = |root: String| (any::<bool>(), multipart(root));
    fuzz(
        1000,
        strategy,
        |target, (with_path, (content_type, body))| {
            let query = if with_path {
                format!(
                    "/files?path={}",
                    escape(format!("{}/mp.bin", target.root).as_bytes())
                )
            } else {
                "/files".to_owned()
            };
            let mut headers = token_header(true);
            headers.push(("content-type", content_type.into_bytes()));
            let reply = target.send("POST", &query, &headers, body);
            check_http_reply(&reply)
        },
    );
}

/// Field names of envd's request messages, so generated objects reach the typed parsers.
const FIELD_NAMES: &[&str] = &[
    "process",
    "cmd",
    "args",
    "envs",
    "cwd",
    "pty",
    "size",
    "rows",
    "cols",
    "tag",
    "stdin",
    "selector",
    "pid",
    "input",
    "signal",
    "path",
    "depth",
    "source",
    "destination",
    "recursive",
    "watcherId",
    "username",
    "start",
    "data",
    "keepalive",
];

/// Any JSON value; strings are mostly paths inside the work directory, object keys mostly
/// envd's field names.
fn json_value(root: String) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (0u64..70).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        path_in(root).prop_map(Value::String),
        "[0-9-]{1,22}".prop_map(Value::String),
        "SIGNAL_[A-Z]{0,8}".prop_map(Value::String),
        "[A-Za-z0-9+/=]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        let key = prop_oneof![
            4 => proptest::sample::select(FIELD_NAMES).prop_map(str::to_owned),
            1 => "\\PC{0,6}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((key, inner), 0..5)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A JSON object with envd's field names as keys: what reaches the typed parsers.
fn json_object(root: String) -> impl Strategy<Value = Value> {
    proptest::collection::vec(
        (
            proptest::sample::select(FIELD_NAMES).prop_map(str::to_owned),
            json_value(root),
        ),
        0..5,
    )
    .prop_map(|fields| Value::Object(fields.into_iter().collect()))
}

/// Process commands that end at once whatever their arguments, or do not exist: the fuzz
/// probes the parsers, not what programs do.
fn safe_start(value: Value) -> Value {
    let mut value = value;
    if let Some(process) = value.get_mut("process").and_then(Value::as_object_mut)
        && process.get("cmd").is_some_and(Value::is_string)
    {
        let cmd = if process.len() % 2 == 0 {
            "true"
        } else {
            "no-such-command-fuzz"
        };
        process.insert("cmd".to_owned(), Value::from(cmd));
    }
    value
}

/// Unary RPCs fuzzed; those that remove or move are left out, as their paths could name the
/// test user's home.
const UNARY: &[&str] = &[
    "/process.Process/List",
    "/process.Process/Update",
    "/process.Process/SendInput",
    "/process.Process/SendSignal",
    "/process.Process/CloseStdin",
    "/filesystem.Filesystem/Stat",
    "/filesystem.Filesystem/ListDir",
    "/filesystem.Filesystem/MakeDir",
    "/filesystem.Filesystem/CreateWatcher",
    "/filesystem.Filesystem/GetWatcherEvents",
    "/filesystem.Filesystem/RemoveWatcher",
];

/// Streaming RPCs fuzzed: server-streaming, and `StreamInput`, the one client-streaming RPC.
const STREAMING: &[&str] = &[
    "/process.Process/Start",
    "/process.Process/Connect",
    "/process.Process/StreamInput",
    "/filesystem.Filesystem/WatchDir",
];

/// A body for an RPC: an arbitrary JSON value, arbitrary bytes, or the binary encoding of an
/// arbitrary JSON value that decoded.
fn rpc_body(root: String) -> impl Strategy<Value = (bool, Vec<u8>)> {
    prop_oneof![
        6 => json_object(root.clone()).prop_map(|v| (true, serde_json::to_vec(&safe_start(v)).unwrap())),
        1 => json_value(root).prop_map(|v| (true, serde_json::to_vec(&v).unwrap())),
        1 => proptest::collection::vec(any::<u8>(), 0..128).prop_map(|b| (true, b)),
        1 => proptest::collection::vec(any::<u8>(), 0..128).prop_map(|b| (false, b)),
    ]
}

#[test]
#[ignore = "needs root: runs envd as an unprivileged test user"]
fn unary_rpcs() {
    let strategy = |root: String| {
        (
            proptest::sample::select(UNARY),
            rpc_body(root),
            prop_oneof![6 => Just(None), 1 => "[0-9a-z]{0,6}".prop_map(Some)],
            prop_oneof![6 => Just(None), 1 => "\\PC{0,12}".prop_map(Some)],
        )
    };
    fuzz(
        1500,
        strategy,
        |target, (path, (json, body), timeout, user)| {
            let mut headers = token_header(true);
            let content_type = if json {
                "application/json"
            } else {
                "application/proto"
            };
            headers.push(("content-type", content_type.as_bytes().to_vec()));
            if let Some(timeout) = timeout {
                headers.push(("connect-timeout-ms", timeout.into_bytes()));
            }
            if let Some(user) = user {
                use base64::Engine as _;
                let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:"));
                headers.push(("authorization", format!("Basic {basic}").into_bytes()));
            }
            let reply = target.send("POST", path, &headers, body);
            check_unary_reply(&reply)?;
            // A client removes the watchers it made: each holds one of the user's inotify
            // instances (128 by default), and they would run out over the cases.
            let created: Option<Value> = serde_json::from_slice(&reply.body).ok();
            if let Some(id) = created.as_ref().and_then(|v| v["watcherId"].as_str()) {
                let remove = target.send(
                    "POST",
                    "/filesystem.Filesystem/RemoveWatcher",
                    &[
                        ("x-access-token", TOKEN.as_bytes().to_vec()),
                        ("content-type", b"application/json".to_vec()),
                    ],
                    serde_json::to_vec(&serde_json::json!({"watcherId": id})).unwrap(),
                );
                prop_assert_eq!(remove.status, 200, "{:?}", remove);
            }
            Ok(())
        },
    );
}

#[test]
#[ignore = "needs root: runs envd as an unprivileged test user"]
fn streaming_rpcs() {
    let frame = |root: String| {
        prop_oneof![
            6 => rpc_body(root).prop_map(|(_, b)| (0u8, b)),
            1 => Just((FLAG_END_STREAM, b"{}".to_vec())),
            1 => (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..16)),
        ]
    };
    let strategy = |root: String| {
        (
            proptest::sample::select(STREAMING),
            proptest::collection::vec(frame(root), 0..3),
            proptest::bool::weighted(0.15),
            any::<usize>(),
            proptest::option::weighted(0.1, any::<u32>()),
        )
    };
    fuzz(
        600,
        strategy,
        |target, (path, frames, truncate, cut, declared_len)| {
            let mut body = BytesMut::new();
            for (flags, payload) in frames {
                encode_with(&mut body, flags, |b| {
                    b.extend_from_slice(&payload);
                    Ok::<(), ()>(())
                })
                .unwrap();
            }
            let mut body = body.to_vec();
            if truncate {
                body.truncate(cut % (body.len() + 1));
            }
            // A prefix declaring any length, up to 4 GiB, with nothing after it.
            if let Some(len) = declared_len {
                body.push(0);
                body.extend_from_slice(&len.to_be_bytes());
            }
            let mut headers = token_header(true);
            headers.push(("content-type", b"application/connect+json".to_vec()));
            // A watch on a real directory streams until the deadline.
            headers.push(("connect-timeout-ms", b"300".to_vec()));
            let reply = target.send("POST", path, &headers, body);
            check_streaming_reply(&reply)
        },
    );
}

/// Runs `true` through `Start` with `token`, checking it starts and ends without an error.
fn start_true(target: &Target, token: Option<&str>) -> Result<(), TestCaseError> {
    let mut body = BytesMut::new();
    encode_with(&mut body, 0, |b| {
        serde_json::to_writer(
            bytes::BufMut::writer(b),
            &serde_json::json!({"process": {"cmd": "true"}}),
        )
    })
    .unwrap();
    let mut headers = vec![("content-type", b"application/connect+json".to_vec())];
    if let Some(token) = token {
        headers.push(("x-access-token", token.as_bytes().to_vec()));
    }
    let reply = target.send("POST", "/process.Process/Start", &headers, body.to_vec());
    prop_assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let text = String::from_utf8_lossy(&reply.body);
    prop_assert!(
        text.contains(r#""end":"#) && !text.contains(r#""error":"#),
        "a process no longer starts: {}",
        text
    );
    Ok(())
}

/// `/init` bodies: environment variables with any names and values, tokens, odd fields and
/// non-objects. Whatever `/init` accepts, processes must still start afterwards; what would
/// break them must be refused.
#[test]
#[ignore = "needs root: runs envd as an unprivileged test user"]
fn init_bodies() {
    let name = test_user().0;
    let strategy = move |root: String| {
        let env_name = prop_oneof![
            4 => "[A-Z_][A-Z0-9_]{0,6}",
            1 => Just(String::new()),
            1 => "\\PC{1,6}",
            1 => Just("A=B".to_owned()),
            1 => Just("A\0B".to_owned()),
        ];
        let env_value = prop_oneof![4 => "\\PC{0,10}", 1 => Just("x\0y".to_owned())];
        let env_vars = proptest::collection::btree_map(env_name, env_value, 0..4)
            .prop_map(|vars| serde_json::to_value(vars).unwrap());
        let body = (
            proptest::option::weighted(
                0.8,
                prop_oneof![4 => env_vars, 1 => json_value(root.clone())],
            ),
            proptest::option::weighted(
                0.5,
                prop_oneof![
                    4 => "t-[a-z0-9]{1,8}".prop_map(Value::String),
                    1 => Just(Value::String(String::new())),
                    1 => json_value(root.clone()),
                ],
            ),
            proptest::option::weighted(0.2, Just(Value::String(name.clone()))),
            proptest::option::weighted(
                0.2,
                prop_oneof![
                    Just(Value::String(root)),
                    Just(Value::String(String::new()))
                ],
            ),
            proptest::option::weighted(
                0.2,
                prop_oneof![
                    Just(Value::String("2026-01-01T00:00:00Z".to_owned())),
                    json_value(String::new())
                ],
            ),
        )
            .prop_map(|(env_vars, token, user, workdir, timestamp)| {
                let fields = [
                    ("envVars", env_vars),
                    ("accessToken", token),
                    ("defaultUser", user),
                    ("defaultWorkdir", workdir),
                    ("timestamp", timestamp),
                ];
                let object: serde_json::Map<String, Value> = fields
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
                    .collect();
                serde_json::to_vec(&object).unwrap()
            });
        (
            prop_oneof![
                8 => body,
                1 => proptest::collection::vec(any::<u8>(), 0..32),
            ],
            proptest::bool::weighted(0.9),
        )
    };
    // The token the last accepted `/init` left; `Target::start` set the first.
    let token = std::cell::RefCell::new(Some(TOKEN.to_owned()));
    fuzz(300, strategy, |target, (body, with_token)| {
        let mut headers = vec![("content-type", b"application/json".to_vec())];
        if with_token && let Some(token) = token.borrow().as_deref() {
            headers.push(("x-access-token", token.as_bytes().to_vec()));
        }
        let reply = target.send("POST", "/init", &headers, body.clone());
        check_http_reply(&reply)?;
        if reply.status == 204 {
            let sent: Value = serde_json::from_slice(&body).unwrap_or_default();
            *token.borrow_mut() = sent["accessToken"].as_str().map(str::to_owned);
        }
        start_true(target, token.borrow().as_deref())
    });
}

// Failures the fuzz found, kept as plain cases. They need no root: envd runs as the caller,
// on paths in a fresh temporary directory.

/// Starts an envd as the caller and makes a temporary directory with a file `f` in it.
fn plain_target() -> (Envd, tempfile::TempDir, reqwest::Client) {
    let envd = Envd::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    (envd, dir, http())
}

async fn files_error(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_nul_byte_in_a_files_path_is_a_400() {
    let (envd, dir, c) = plain_target();
    let path = format!("{}/a\0b", dir.path().display());
    let (status, body) = files_error(
        c.get(format!("{}/files", envd.base))
            .query(&[("path", &path)]),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        format!(
            "path '{}/a\\0b' is invalid: it contains a NUL byte",
            dir.path().display()
        )
    );
    let (status, _) = files_error(
        c.post(format!("{}/files", envd.base))
            .query(&[("path", &path)])
            .header("content-type", "application/octet-stream")
            .body("x"),
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_file_name_over_255_bytes_is_a_400() {
    let (envd, dir, c) = plain_target();
    let path = format!("{}/{}", dir.path().display(), "a".repeat(300));
    let (status, body) = files_error(
        c.post(format!("{}/files", envd.base))
            .query(&[("path", &path)])
            .header("content-type", "application/octet-stream")
            .body("x"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .ends_with("a file name in it is longer than 255 bytes"),
        "{body}"
    );
    let rpc = c
        .post(format!("{}/filesystem.Filesystem/Stat", envd.base))
        .json(&serde_json::json!({"path": path}))
        .send()
        .await
        .unwrap();
    assert_eq!(rpc.status(), 400);
    let body: Value = rpc.json().await.unwrap();
    assert_eq!(body["code"], "invalid_argument");
}

#[tokio::test]
async fn a_file_in_the_path_is_a_client_error() {
    let (envd, dir, c) = plain_target();
    let through_file = format!("{}/f/x", dir.path().display());
    let (status, body) = files_error(
        c.get(format!("{}/files", envd.base))
            .query(&[("path", &through_file)]),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["message"],
        format!("path '{through_file}' does not exist")
    );

    let (status, body) = files_error(
        c.post(format!("{}/files", envd.base))
            .query(&[("path", format!("{through_file}/y"))])
            .header("content-type", "application/octet-stream")
            .body("x"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["message"],
        format!(
            "error ensuring directories: path is a file: {}/f",
            dir.path().display()
        )
    );

    let rpc = |method: &str, body: Value| {
        c.post(format!("{}/filesystem.Filesystem/{method}", envd.base))
            .json(&body)
            .send()
    };
    let stat = rpc("Stat", serde_json::json!({"path": through_file}))
        .await
        .unwrap();
    assert_eq!(stat.status(), 404);
    let make_dir = rpc(
        "MakeDir",
        serde_json::json!({"path": format!("{through_file}/y")}),
    )
    .await
    .unwrap();
    assert_eq!(make_dir.status(), 400);
    let body: Value = make_dir.json().await.unwrap();
    assert_eq!(body["code"], "invalid_argument");
}

#[tokio::test]
async fn init_refuses_what_would_lock_the_sandbox() {
    let (envd, _dir, c) = plain_target();
    for (vars, named) in [
        (serde_json::json!({"A\u{0}B": "1"}), r#""A\0B""#),
        (serde_json::json!({"A=B": "1"}), r#""A=B""#),
        (serde_json::json!({"": "1"}), r#""""#),
        (serde_json::json!({"OK": "x\u{0}y"}), r#""OK""#),
    ] {
        let (status, body) = files_error(
            c.post(format!("{}/init", envd.base))
                .json(&serde_json::json!({"envVars": vars})),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            body["message"],
            format!(
                "invalid envVars entry {named}: a name must be non-empty without '=' or NUL, a value without NUL"
            )
        );
    }
    for token in ["with space", "t\u{e9}", "tab\t"] {
        let (status, body) = files_error(
            c.post(format!("{}/init", envd.base))
                .json(&serde_json::json!({"accessToken": token})),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            body["message"],
            "access token must be printable ASCII without spaces, as it is sent in a header"
        );
    }
    // Nothing was applied: no token is needed, and processes still start.
    let mut frame = BytesMut::new();
    encode_with(&mut frame, 0, |b| {
        b.extend_from_slice(br#"{"process":{"cmd":"true"}}"#);
        Ok::<(), ()>(())
    })
    .unwrap();
    let started = c
        .post(format!("{}/process.Process/Start", envd.base))
        .header("content-type", "application/connect+json")
        .body(frame.to_vec())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        started.contains(r#""end":"#) && !started.contains(r#""error":"#),
        "{started}"
    );
}

/// Not a failure found but the bound under the fuzz's RSS check: a unary body is refused once
/// it passes the message limit, before more of it is buffered.
#[tokio::test]
async fn an_oversized_unary_body_is_refused_without_buffering_it() {
    let (envd, _dir, c) = plain_target();
    let before = envd.rss_kib();
    // 96 MiB of JSON whitespace: over the 64 MiB limit, sent in 1 MiB chunks.
    let chunks = futures_util::stream::iter(
        (0..96).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1 << 20]))),
    );
    let reply = c
        .post(format!("{}/filesystem.Filesystem/Stat", envd.base))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    let reply = reply.expect("envd answers before the body ends");
    assert_eq!(reply.status(), 429);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["code"], "resource_exhausted", "{body}");
    let grown = envd.rss_kib().saturating_sub(before);
    assert!(
        grown < 80 * 1024,
        "envd grew by {grown} KiB for one request"
    );
    let health = c.get(format!("{}/health", envd.base)).send().await.unwrap();
    assert_eq!(health.status(), 204);
}

#[tokio::test]
async fn a_malformed_stream_input_message_is_invalid_argument() {
    let (envd, _dir, c) = plain_target();
    let mut frame = BytesMut::new();
    encode_with(&mut frame, 0, |b| {
        b.extend_from_slice(b"null");
        Ok::<(), ()>(())
    })
    .unwrap();
    let reply = c
        .post(format!("{}/process.Process/StreamInput", envd.base))
        .header("content-type", "application/connect+json")
        .body(frame.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let body = reply.bytes().await.unwrap();
    let mut decoder = e2b_envd::envelope::EnvelopeDecoder::new(1 << 20, e2b_envd::Code::Internal);
    decoder.push(&body);
    let end = decoder.next_envelope().unwrap().unwrap();
    assert!(end.is_end_stream());
    let end: Value = serde_json::from_slice(&end.data).unwrap();
    assert_eq!(end["error"]["code"], "invalid_argument", "{end}");
    assert!(
        end["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("error reading input stream: invalid JSON for "),
        "{end}"
    );
}
