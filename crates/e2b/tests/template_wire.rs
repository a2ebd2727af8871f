//! The requests `Template` sends, against a fake build API on 127.0.0.1 that answers as
//! E2B's does (`openapi/e2b-api.yml`): create, upload links and uploads, start, status
//! polling with log offsets, aliases and tags; and the errors it maps.

mod template_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use e2b::ConnectionConfig;
use e2b::template::{BuildOptions, BuildStatus, CopyOptions, LogEntry, LogLevel, Template};
use serde_json::{Value, json};
use template_support::{make_tree, vectors};

/// How many log entries the fake build writes.
const BUILD_LOGS: usize = 150;

#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Default)]
struct Fake {
    base: String,
    requests: Vec<Recorded>,
    /// Files hashes the server already has.
    present: BTreeSet<String>,
    uploads: BTreeMap<String, Bytes>,
    status_polls: usize,
    /// The failed step and message, for a build that fails.
    failure: Option<(String, String)>,
    /// A status and message every create answers with, instead of 202.
    create_error: Option<(u16, String)>,
}

type Shared = Arc<Mutex<Fake>>;

async fn start() -> (Shared, ConnectionConfig) {
    let fake: Shared = Arc::default();
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    fake.lock().unwrap().base = base.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let config = ConnectionConfig::new()
        .with_api_key("e2b_0123abcd")
        .with_api_url(&base);
    (fake, config)
}

fn entry(i: usize) -> Value {
    json!({
        "timestamp": "2026-01-01T00:00:00Z",
        "level": if i.is_multiple_of(2) { "info" } else { "debug" },
        "message": format!("\u{1b}[32mline {i}\u{1b}[0m"),
        "step": "1",
    })
}

fn error(status: u16, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"code": status, "message": message})),
    )
        .into_response()
}

async fn handle(State(fake): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let recorded = Recorded {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts.headers.clone(),
        body: body.clone(),
    };
    let mut fake = fake.lock().unwrap();
    fake.requests.push(recorded.clone());
    let path: Vec<&str> = recorded.path.trim_start_matches('/').split('/').collect();
    match (parts.method.as_str(), path.as_slice()) {
        ("POST", ["v3", "templates"]) => {
            if let Some((status, message)) = fake.create_error.clone() {
                return error(status, &message);
            }
            let request: Value = serde_json::from_slice(&body).unwrap();
            let name = request["name"].as_str().unwrap().to_owned();
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({
                    "templateID": "tpl1",
                    "buildID": "bld1",
                    "public": false,
                    "names": [name],
                    "tags": request["tags"].as_array().cloned().unwrap_or_default(),
                    "aliases": [],
                })),
            )
                .into_response()
        }
        ("GET", ["templates", "tpl1", "files", hash]) => {
            let present = fake.present.contains(*hash);
            (
                StatusCode::CREATED,
                axum::Json(json!({
                    "present": present,
                    "url": format!("{}/upload/{hash}", fake.base),
                    "headers": {"x-upload-token": "tok", "content-length": "1"},
                })),
            )
                .into_response()
        }
        ("PUT", ["upload", hash]) => {
            let hash = (*hash).to_owned();
            fake.present.insert(hash.clone());
            fake.uploads.insert(hash, body);
            StatusCode::OK.into_response()
        }
        ("POST", ["v2", "templates", "tpl1", "builds", "bld1"]) => {
            StatusCode::ACCEPTED.into_response()
        }
        ("GET", ["templates", "tpl1", "builds", "bld1", "status"]) => {
            fake.status_polls += 1;
            let offset: usize = recorded
                .query
                .split('&')
                .find_map(|kv| kv.strip_prefix("logsOffset="))
                .map(|v| v.parse().unwrap())
                .unwrap_or(0);
            // Building for two polls, then done with the logs not yet all read.
            let done = fake.status_polls > 2;
            let status = match (&fake.failure, done) {
                (_, false) => "building",
                (None, true) => "ready",
                (Some(_), true) => "error",
            };
            let available = if done { BUILD_LOGS } else { 40 };
            let entries: Vec<Value> = (offset..available.min(offset + 100)).map(entry).collect();
            let mut info = json!({
                "templateID": "tpl1",
                "buildID": "bld1",
                "status": status,
                "logs": [],
                "logEntries": entries,
            });
            if let (Some((step, message)), true) = (&fake.failure, done) {
                info["reason"] = json!({"message": message, "step": step, "logEntries": []});
            }
            axum::Json(info).into_response()
        }
        ("GET", ["templates", "aliases", alias]) => match *alias {
            "mine" => axum::Json(json!({"templateID": "tpl1", "public": false})).into_response(),
            "theirs" => error(403, "not yours"),
            "broken" => error(500, "database down"),
            _ => error(404, "no such alias"),
        },
        ("POST", ["templates", "tags"]) => {
            let request: Value = serde_json::from_slice(&body).unwrap();
            (
                StatusCode::CREATED,
                axum::Json(json!({
                    "tags": request["tags"],
                    "buildID": "6f1e7e52-3f0a-4bde-9d0c-5d0c9b0e3c11",
                })),
            )
                .into_response()
        }
        ("DELETE", ["templates", "tags"]) => StatusCode::NO_CONTENT.into_response(),
        ("GET", ["templates", "tpl1", "tags"]) => axum::Json(json!([{
            "tag": "v1",
            "buildID": "6f1e7e52-3f0a-4bde-9d0c-5d0c9b0e3c11",
            "createdAt": "2026-01-02T03:04:05Z",
        }]))
        .into_response(),
        _ => error(404, "no such route"),
    }
}

fn requests(fake: &Shared) -> Vec<Recorded> {
    fake.lock().unwrap().requests.clone()
}

fn context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path());
    dir
}

/// Entry names of a gzipped tar, as the Python SDK's relative paths (`.` for the root,
/// no trailing slash).
fn archive_names(gzipped: &[u8]) -> Vec<String> {
    let mut tar = Vec::new();
    flate2_decode(gzipped, &mut tar);
    let mut archive = tar::Archive::new(tar.as_slice());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            match name.trim_end_matches('/') {
                "." | "" => ".".to_owned(),
                other => other.to_owned(),
            }
        })
        .collect()
}

fn flate2_decode(gzipped: &[u8], out: &mut Vec<u8>) {
    flate2::read::GzDecoder::new(gzipped)
        .read_to_end(out)
        .unwrap();
}

#[tokio::test]
async fn build_uploads_missing_files_starts_and_follows_all_logs() {
    let (fake, config) = start().await;
    let ctx = context();
    let template = Template::new()
        .file_context_path(ctx.path())
        .from_template("base")
        .copy(".", "/ctx")
        .copy("app/main.py", "/main.py")
        .copy_with(
            "app/run.sh",
            "/run.sh",
            CopyOptions {
                force_upload: true,
                gzip: Some(false),
                ..Default::default()
            },
        )
        .set_envs([("A", "1")])
        .run_cmd("echo hi")
        .set_start_cmd("./serve", "true");
    let expected: Value = serde_json::from_str(&template.to_json().unwrap()).unwrap();
    let hashes: Vec<String> = expected["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["filesHash"].as_str().map(str::to_owned))
        .collect();
    // The server already has the second and third copies' files.
    fake.lock().unwrap().present = hashes[1..].iter().cloned().collect();

    let logs: Arc<Mutex<Vec<LogEntry>>> = Arc::default();
    let sink = logs.clone();
    let info = template
        .build(
            "my-app:v1",
            BuildOptions::new()
                .config(config.clone())
                .tags(["extra"])
                .cpu_count(2)
                .memory_mb(1024)
                .on_build_logs(move |entry| sink.lock().unwrap().push(entry)),
        )
        .await
        .unwrap();
    assert_eq!(info.template_id, "tpl1");
    assert_eq!(info.build_id, "bld1");
    assert_eq!(info.name, "my-app:v1");
    assert_eq!(info.tags, ["extra"]);

    let all = requests(&fake);
    let create = &all[0];
    assert_eq!(
        (create.method.as_str(), create.path.as_str()),
        ("POST", "/v3/templates")
    );
    assert_eq!(create.headers["x-api-key"], "e2b_0123abcd");
    assert_eq!(
        serde_json::from_slice::<Value>(&create.body).unwrap(),
        json!({"name": "my-app:v1", "tags": ["extra"], "cpuCount": 2, "memoryMB": 1024})
    );
    // One link per COPY; the missing files and the forced upload are PUT, in step order.
    let sequence: Vec<String> = all
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .take(7)
        .collect();
    assert_eq!(
        sequence,
        [
            "POST /v3/templates".to_owned(),
            format!("GET /templates/tpl1/files/{}", hashes[0]),
            format!("PUT /upload/{}", hashes[0]),
            format!("GET /templates/tpl1/files/{}", hashes[1]),
            format!("GET /templates/tpl1/files/{}", hashes[2]),
            format!("PUT /upload/{}", hashes[2]),
            "POST /v2/templates/tpl1/builds/bld1".to_owned(),
        ]
    );
    let upload = all.iter().find(|r| r.method == Method::PUT).unwrap();
    assert_eq!(upload.headers["x-upload-token"], "tok");
    // Our Content-Length, not the one the API listed.
    assert_eq!(
        upload.headers["content-length"].to_str().unwrap(),
        upload.body.len().to_string()
    );
    assert!(upload.headers.get("transfer-encoding").is_none());
    let want_entries: Vec<String> =
        serde_json::from_value(vectors()["archive_entries"]["."].clone()).unwrap();
    assert_eq!(archive_names(&upload.body), want_entries);
    // gzip: false sends a plain tar.
    let plain = fake.lock().unwrap().uploads[&hashes[2]].clone();
    let names: Vec<String> = tar::Archive::new(plain.as_ref())
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect();
    assert_eq!(names, ["app/run.sh"]);

    // The start request is to_json's document, without the SDK-only forceUpload.
    let start = all
        .iter()
        .find(|r| r.path == "/v2/templates/tpl1/builds/bld1")
        .unwrap();
    let mut want = expected.clone();
    for step in want["steps"].as_array_mut().unwrap() {
        step.as_object_mut().unwrap().remove("forceUpload");
    }
    assert_eq!(serde_json::from_slice::<Value>(&start.body).unwrap(), want);

    // Polls advance logsOffset by what they received and drain the tail after `ready`.
    let offsets: Vec<String> = all
        .iter()
        .filter(|r| r.path.ends_with("/status"))
        .map(|r| r.query.clone())
        .collect();
    assert_eq!(
        offsets,
        [
            "logsOffset=0",
            "logsOffset=40",
            "logsOffset=40",
            "logsOffset=140",
            "logsOffset=150"
        ]
    );
    let logs = logs.lock().unwrap();
    let messages: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
    let server: Vec<String> = (0..BUILD_LOGS).map(|i| format!("line {i}")).collect();
    let mut want_messages = vec![
        "Build started".to_owned(),
        "Requesting build for template: my-app:v1 with tags: extra".to_owned(),
        "Template created with ID: tpl1, Build ID: bld1".to_owned(),
        "Uploaded '.'".to_owned(),
        "Skipping upload of 'app/main.py', already cached".to_owned(),
        "Uploaded 'app/run.sh'".to_owned(),
        "All file uploads completed".to_owned(),
        "Starting building...".to_owned(),
        "Waiting for logs...".to_owned(),
    ];
    want_messages.extend(server);
    want_messages.push("Build finished".to_owned());
    assert_eq!(messages, want_messages);
    assert_eq!(logs[0].level, LogLevel::Debug);
    assert_eq!(logs[9].level, LogLevel::Info);
    assert_eq!(logs[10].level, LogLevel::Debug);
    assert_eq!(
        logs[9].to_string(),
        "[2026-01-01T00:00:00+00:00] [info] line 0"
    );
}

#[tokio::test]
async fn a_failed_build_names_its_step_after_draining_the_logs() {
    let (fake, config) = start().await;
    fake.lock().unwrap().failure = Some(("2".into(), "exit status 1: no such file".into()));
    let template = Template::new()
        .from_template("base")
        .set_workdir("/app")
        .run_cmd("cat /missing");
    let seen = Arc::new(Mutex::new(0usize));
    let counter = seen.clone();
    let err = template
        .build(
            "broken",
            BuildOptions::new()
                .config(config)
                .on_build_logs(move |_| *counter.lock().unwrap() += 1),
        )
        .await
        .unwrap_err();
    assert!(err.is_build(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "build failed in step 2 (RUN cat /missing): exit status 1: no such file"
    );
    // 6 SDK entries before the server's 150, and "Build finished" after them.
    assert_eq!(*seen.lock().unwrap(), 6 + BUILD_LOGS + 1);
}

#[tokio::test]
async fn create_errors_are_mapped() {
    let (fake, config) = start().await;
    let template = Template::new().from_template("base").run_cmd("true");
    fake.lock().unwrap().create_error = Some((400, "invalid name 'a b'".into()));
    let err = template
        .build("a b", BuildOptions::new().config(config.clone()))
        .await
        .unwrap_err();
    assert!(err.is_build());
    assert_eq!(err.to_string(), "400: invalid name 'a b'");
    assert_eq!(err.http_status(), Some(400));
    fake.lock().unwrap().create_error = Some((401, "Invalid API key".into()));
    let err = template
        .build_in_background("t", BuildOptions::new().config(config))
        .await
        .unwrap_err();
    assert!(err.is_authentication());
    assert_eq!(
        err.to_string(),
        "401: Unauthorized, please check your credentials. - Invalid API key"
    );
}

#[tokio::test]
async fn bad_templates_fail_before_any_request() {
    let (fake, config) = start().await;
    let ctx = context();
    let build = |template: Template| {
        let config = config.clone();
        async move {
            template
                .build("t", BuildOptions::new().config(config))
                .await
                .unwrap_err()
        }
    };
    let err = build(Template::new().copy("../etc/passwd", "/x")).await;
    assert!(err.is_template());
    assert_eq!(
        err.to_string(),
        "Invalid source path \"../etc/passwd\": path escapes the context directory. The path \
         must stay within the context directory."
    );
    let err = build(Template::new().from_image_with_credentials("img", "me", "")).await;
    assert!(err.is_invalid_argument());
    assert_eq!(
        err.to_string(),
        "Both username and password are required when providing registry credentials"
    );
    let err = build(Template::new().from_dockerfile("FROM a\nFROM b\n")).await;
    assert_eq!(
        err.to_string(),
        "invalid Dockerfile: Multi-stage Dockerfiles are not supported"
    );
    let err = build(Template::new().add_mcp_server(["github"])).await;
    assert_eq!(
        err.to_string(),
        "MCP servers can only be added to mcp-gateway template"
    );
    let err = Template::new()
        .from_template("base")
        .build("", BuildOptions::new().config(config.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "Name must be provided");
    let err = Template::new()
        .from_template("base")
        .build(
            "t",
            BuildOptions::new().config(config.clone()).memory_mb(64),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "memory_mb must be at least 128 MiB, got 64"
    );
    assert!(requests(&fake).is_empty(), "{:?}", requests(&fake));

    // A COPY that matches nothing is found while hashing, after the create.
    let missing = Template::new()
        .file_context_path(ctx.path())
        .copy("nope/*.txt", "/x");
    let err = missing.to_json().unwrap_err();
    assert!(err.is_template());
    assert_eq!(
        err.to_string(),
        format!(
            "No files found in {}",
            ctx.path().join("nope/*.txt").display()
        )
    );
}

#[tokio::test]
async fn status_aliases_and_tags() {
    let (fake, config) = start().await;
    let info = e2b::BuildInfo {
        template_id: "tpl1".into(),
        build_id: "bld1".into(),
        name: "t".into(),
        tags: vec![],
    };
    let status = Template::get_build_status(&config, &info, 30)
        .await
        .unwrap();
    assert_eq!(status.status, BuildStatus::Building);
    assert_eq!(status.log_entries.len(), 10);
    assert_eq!(status.log_entries[0].message, "line 30");
    assert_eq!(status.reason, None);
    assert_eq!(requests(&fake)[0].query, "logsOffset=30");

    assert!(Template::exists(&config, "mine").await.unwrap());
    assert!(Template::alias_exists(&config, "theirs").await.unwrap());
    assert!(!Template::exists(&config, "nobody").await.unwrap());
    let err = Template::exists(&config, "broken").await.unwrap_err();
    assert!(err.is_template());
    assert_eq!(err.to_string(), "500: database down");

    let assigned = Template::assign_tags(&config, "my-app:v1", ["prod", "stable"])
        .await
        .unwrap();
    assert_eq!(assigned.build_id, "6f1e7e52-3f0a-4bde-9d0c-5d0c9b0e3c11");
    assert_eq!(assigned.tags, ["prod", "stable"]);
    Template::remove_tags(&config, "my-app", ["stable"])
        .await
        .unwrap();
    let tags = Template::get_tags(&config, "tpl1").await.unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0].tag, "v1");
    assert_eq!(tags[0].created_at.to_rfc3339(), "2026-01-02T03:04:05+00:00");

    let all = requests(&fake);
    let bodies: Vec<(String, Value)> = all
        .iter()
        .filter(|r| r.path == "/templates/tags")
        .map(|r| {
            (
                r.method.to_string(),
                serde_json::from_slice(&r.body).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        bodies,
        [
            (
                "POST".to_owned(),
                json!({"target": "my-app:v1", "tags": ["prod", "stable"]})
            ),
            (
                "DELETE".to_owned(),
                json!({"name": "my-app", "tags": ["stable"]})
            ),
        ]
    );
}

#[test]
fn the_blocking_twin_builds_the_same_way() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (fake, config) = runtime.block_on(start());
    let template = e2b::blocking::Template::new()
        .from_template("base")
        .run_cmd("echo hi");
    let info = template
        .build("blocking", BuildOptions::new().config(config))
        .unwrap();
    assert_eq!(info.template_id, "tpl1");
    let paths: Vec<String> = requests(&fake).iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths[0], "/v3/templates");
    assert_eq!(paths[1], "/v2/templates/tpl1/builds/bld1");
    assert!(paths[2..].iter().all(|p| p.ends_with("/status")));
}
