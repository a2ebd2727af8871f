//! E2B's template build API against an in-process server with real build sandboxes: every
//! endpoint with exact status codes and bodies, a multi-step build checked file by file
//! from inside a sandbox of it, the cache, a failing step, tags, delete, bad input and a
//! restart in the middle of a build. Needs root: ignored unless run with `-- --ignored`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{TestServer, err, start, start_with, stdout_of};

/// A `.tar.gz` of `files` (relative path, content, mode) as the SDKs upload a COPY's files.
fn archive(files: &[(&str, &str, u32)]) -> Vec<u8> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    for (rel, body, mode) in files {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let out = dir.path().join("out.tar.gz");
    let names: Vec<&str> = files.iter().map(|f| f.0).collect();
    let st = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(dir.path())
        .args(&names)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read(out).unwrap()
}

/// Uploads `body` as the files `hash` of template `id` through the link the API gives.
async fn upload(t: &TestServer, id: &str, hash: &str, body: Vec<u8>) {
    let r = t.get(&format!("/templates/{id}/files/{hash}")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let link = r.json();
    assert_eq!(link["present"], false);
    let url = link["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/template-files/{hash}?expires=", t.url)),
        "{url}"
    );
    let put = t.http.put(url).body(body).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let again = t.get(&format!("/templates/{id}/files/{hash}")).await.json();
    assert_eq!(again["present"], true);
}

/// Requests a build of `name`; returns (template id, build id).
async fn request(t: &TestServer, body: &str) -> (String, String) {
    let r = t.post("/v3/templates", body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let v = r.json();
    (
        v["templateID"].as_str().unwrap().to_owned(),
        v["buildID"].as_str().unwrap().to_owned(),
    )
}

/// Starts a build and waits until it ends; returns the final status and every log entry.
async fn build(t: &TestServer, id: &str, build: &str, start: Value) -> (Value, Vec<Value>) {
    let r = t
        .post(
            &format!("/v2/templates/{id}/builds/{build}"),
            &start.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let mut logs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = t
            .get(&format!(
                "/templates/{id}/builds/{build}/status?logsOffset={}",
                logs.len()
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let v = r.json();
        let page = v["logEntries"].as_array().unwrap().clone();
        let drained = page.is_empty();
        logs.extend(page);
        if matches!(v["status"].as_str(), Some("ready" | "error")) && drained {
            return (v, logs);
        }
        assert!(Instant::now() < deadline, "build did not end: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn messages(logs: &[Value]) -> Vec<String> {
    logs.iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

/// After a restart's recovery: no sandbox directory and no layer is left.
async fn assert_nothing_left(t: &TestServer, data: &Path) {
    t.server().manager().recovered().await;
    assert_eq!(
        std::fs::read_dir(data.join("sandboxes")).unwrap().count(),
        0
    );
    assert_eq!(layer_count(data), 0);
}

fn layer_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("layers")).unwrap().count()
}

const HASH_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const HASH_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn steps(hash: &str) -> Value {
    json!({
        "fromTemplate": "base",
        "force": false,
        "startCmd": "echo started > /tmp/started; exec sleep infinity",
        "readyCmd": "test -f /tmp/started",
        "steps": [
            {"type": "COPY", "args": ["app", "/app/", "", ""], "force": false, "filesHash": hash},
            {"type": "COPY", "args": ["top.txt", "/home/user/top.txt", "root", "0600"], "force": false, "filesHash": hash},
            {"type": "ENV", "args": ["A", "1", "B", "two words"], "force": false},
            {"type": "WORKDIR", "args": ["/srv/work"], "force": false},
            {"type": "RUN", "args": ["echo out; echo err >&2; id -un > whoami; pwd > where; echo \"$A/$B\" > env"], "force": false},
            {"type": "RUN", "args": ["touch /etc/built-as-root", "root"], "force": false},
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: builds run in sandboxes (namespaces, mounts, cgroups)"]
async fn a_multi_step_build_is_what_its_sandboxes_see_and_is_cached() {
    let t = start().await;
    let r = t
        .post("/v3/templates", r#"{"name":"app","tags":["v1"]}"#)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let v = r.json();
    let id = v["templateID"].as_str().unwrap().to_owned();
    let b1 = v["buildID"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 20);
    assert!(uuid_like(&b1), "{b1}");
    assert_eq!(
        v,
        json!({"templateID": id, "buildID": b1, "aliases": ["app"], "names": ["app"], "tags": ["v1"], "public": false})
    );
    let files = [
        ("app/main.py", "print('hi')\n", 0o755),
        ("app/sub/x.txt", "x\n", 0o644),
        ("top.txt", "top\n", 0o644),
    ];
    upload(&t, &id, HASH_A, archive(&files)).await;

    let (end, logs) = build(&t, &id, &b1, steps(HASH_A)).await;
    assert_eq!(end["status"], "ready", "{end} {logs:?}");
    assert_eq!(end["reason"], Value::Null);
    let msgs = messages(&logs);
    assert!(
        msgs.contains(&"out".to_owned()) && msgs.contains(&"err".to_owned()),
        "{msgs:?}"
    );
    let out_entry = logs.iter().find(|e| e["message"] == "out").unwrap();
    assert_eq!(out_entry["step"], "5");
    assert_eq!(out_entry["level"], "info");
    // Started builds cannot be started again.
    let r = t
        .post(
            &format!("/v2/templates/{id}/builds/{b1}"),
            &steps(HASH_A).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.json(),
        err(409, &format!("build {b1} was already started"))
    );

    // A sandbox of the template: files, owners, modes, env, user, workdir, start command.
    let sb = t.create(r#"{"templateID":"app:v1","timeout":120}"#).await;
    let sid = sb["sandboxID"].as_str().unwrap();
    let token = sb["envdAccessToken"].as_str().unwrap();
    assert_eq!(sb["templateID"], "app:v1");
    let got = stdout_of(
        &t,
        sid,
        token,
        "stat -c '%n %U:%G %a' /app/main.py /app/sub/x.txt /home/user/top.txt /srv/work; \
         cat /srv/work/whoami /srv/work/where /srv/work/env /app/main.py; \
         echo \"$A|$B|$(pwd)|$(id -un)\"; cat /tmp/started; ls /etc/built-as-root; \
         ls -a / | grep -c e2b-build",
    )
    .await;
    assert_eq!(
        got,
        "/app/main.py user:user 755\n/app/sub/x.txt user:user 644\n/home/user/top.txt root:root 600\n/srv/work user:user 755\n\
         user\n/srv/work\n1/two words\nprint('hi')\n\
         1|two words|/srv/work|user\nstarted\n/etc/built-as-root\n0\n"
    );
    t.kill(sid).await;

    // The same build again runs no step.
    let layers = layer_count(t.dir.path());
    assert_eq!(layers, 5, "one layer per COPY, WORKDIR and RUN");
    // No layer keeps what every sandbox gets at start, nor a part for a target the step did
    // not change (only `/` changed here).
    for layer in std::fs::read_dir(t.dir.path().join("layers")).unwrap() {
        let layer = layer.unwrap().path();
        let parts: Vec<String> = std::fs::read_dir(&layer)
            .unwrap()
            .map(|p| p.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(parts, ["rootfs"], "{}", layer.display());
        for f in ["etc/hostname", "etc/hosts", "etc/resolv.conf"] {
            assert!(
                !layer.join("rootfs").join(f).exists(),
                "{f} in {}",
                layer.display()
            );
        }
    }
    let (_, b2) = request(&t, r#"{"name":"app"}"#).await;
    let (end, logs) = build(&t, &id, &b2, steps(HASH_A)).await;
    assert_eq!(end["status"], "ready");
    let cached = messages(&logs)
        .iter()
        .filter(|m| m.starts_with("CACHED ["))
        .count();
    assert_eq!(cached, 5, "{logs:?}");
    assert_eq!(layer_count(t.dir.path()), layers);

    // Other files: the steps from that COPY on run again, the ones before it do not.
    let changed = [
        ("app/main.py", "print('changed')\n", 0o755),
        ("app/sub/x.txt", "x\n", 0o644),
        ("top.txt", "top\n", 0o644),
    ];
    upload(&t, &id, HASH_B, archive(&changed)).await;
    let mut s = steps(HASH_A);
    s["steps"][1]["filesHash"] = json!(HASH_B);
    let (_, b3) = request(&t, r#"{"name":"app"}"#).await;
    let (end, logs) = build(&t, &id, &b3, s).await;
    assert_eq!(end["status"], "ready");
    let msgs = messages(&logs);
    assert!(
        msgs.iter().any(|m| m.starts_with("CACHED [1/6] COPY")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.starts_with("[2/6] COPY")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.starts_with("[5/6] RUN")), "{msgs:?}");
    assert_eq!(layer_count(t.dir.path()), layers + 4);

    // `name` alone is the default tag; v1 still points at the first build.
    let r = t.get(&format!("/templates/{id}/tags")).await;
    let tags: Vec<(String, String)> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["tag"].as_str().unwrap().to_owned(),
                x["buildID"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        tags,
        [
            ("default".to_owned(), b3.clone()),
            ("v1".to_owned(), b1.clone())
        ]
    );
    t.shutdown().await;
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.split('-').map(str::len).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: builds run in sandboxes (namespaces, mounts, cgroups)"]
async fn failures_bad_input_tags_aliases_and_delete() {
    let t = start().await;
    // Bad requests name what is wrong.
    for (body, msg) in [
        (
            r#"{"name":"Bad Name"}"#,
            "name 'Bad Name': a template name is 1 to 64 characters of a-z, 0-9, '.', '_' and '-'",
        ),
        (r#"{"name":"base"}"#, "name 'base' is the built-in template"),
        (
            r#"{"name":"ok","tags":["no spaces"]}"#,
            "tag 'no spaces': a tag is 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'",
        ),
        (r#"{"tags":["x"]}"#, "name is required"),
    ] {
        let r = t.post("/v3/templates", body).await;
        assert_eq!(
            (r.status, r.json()),
            (StatusCode::BAD_REQUEST, err(400, msg)),
            "{body}"
        );
    }
    let (id, b) = request(&t, r#"{"name":"lib"}"#).await;
    let start_path = format!("/v2/templates/{id}/builds/{b}");
    for (body, msg) in [
        (json!({"fromTemplate": "base", "force": false, "steps": [{"type": "FROM", "args": ["x"], "force": false}]}),
         "steps[0] (FROM): unknown step type 'FROM' (expected RUN, COPY, ENV, WORKDIR or USER)".to_owned()),
        (json!({"fromTemplate": "base", "force": false, "steps": [{"type": "COPY", "args": ["a", "/a"], "force": false, "filesHash": HASH_A}]}),
         format!("steps[0] (COPY): the files {HASH_A} were never uploaded (GET /templates/{{templateID}}/files/{HASH_A} gives the upload link)")),
        (json!({"fromTemplate": "base", "force": false, "steps": [{"type": "COPY", "args": ["../x", "/a"], "force": false, "filesHash": HASH_A}]}),
         "steps[0] (COPY): source '../x' is outside the build context (it must be a relative path without '..')".to_owned()),
        (json!({"fromImage": "Not A Reference", "force": false, "steps": []}),
         "fromImage 'Not A Reference' is not a valid image reference: invalid reference format".to_owned()),
        (json!({"fromTemplate": "nope", "force": false, "steps": []}), "template 'nope' not found".to_owned()),
    ] {
        let r = t.post(&start_path, &body.to_string()).await;
        let code = if msg.contains("not found") { 404 } else { 400 };
        assert_eq!(r.json(), err(code, &msg), "{body}");
    }
    let r = t.get(&format!("/templates/{id}/files/xyz")).await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::BAD_REQUEST,
            err(
                400,
                "hash 'xyz' is not a files hash (64 lowercase hex digits)"
            )
        )
    );
    let r = t
        .http
        .put(format!(
            "{}/template-files/{HASH_A}?expires=99999999999&signature=00",
            t.url
        ))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A failing step fails the build with its exit code and stderr; no tag moves to it.
    let (end, logs) = build(
        &t,
        &id,
        &b,
        json!({"fromTemplate": "base", "force": false, "steps": [
            {"type": "RUN", "args": ["echo fine"], "force": false},
            {"type": "RUN", "args": ["echo boom >&2; exit 3"], "force": false},
            {"type": "RUN", "args": ["echo never"], "force": false},
        ]}),
    )
    .await;
    assert_eq!(end["status"], "error");
    assert_eq!(
        end["reason"]["message"],
        "the step failed with exit code 3: boom"
    );
    assert_eq!(end["reason"]["step"], "2");
    assert!(!messages(&logs).contains(&"never".to_owned()));
    let r = t
        .post("/sandboxes", r#"{"templateID":"lib","timeout":60}"#)
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::BAD_REQUEST,
            err(400, "template 'lib' has no successful build yet")
        )
    );

    // A good build, then a template built on it.
    let (_, b) = request(&t, r#"{"name":"lib"}"#).await;
    let (end, _) = build(
        &t,
        &id,
        &b,
        json!({"fromTemplate": "base", "force": false, "steps": [
        {"type": "RUN", "args": ["echo lib > /lib.txt", "root"], "force": false}]}),
    )
    .await;
    assert_eq!(end["status"], "ready");
    let (app, ab) = request(&t, r#"{"name":"app2"}"#).await;
    let (end, _) = build(
        &t,
        &app,
        &ab,
        json!({"fromTemplate": "lib", "force": false, "steps": [
        {"type": "RUN", "args": ["cat /lib.txt > /app.txt", "root"], "force": false}]}),
    )
    .await;
    assert_eq!(end["status"], "ready");

    // Tags and aliases.
    let r = t
        .post("/templates/tags", r#"{"target":"lib","tags":["prod"]}"#)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json(), json!({"buildID": b, "tags": ["prod"]}));
    let r = t.get("/templates/aliases/lib").await;
    assert_eq!(r.json(), json!({"templateID": id, "public": false}));
    let r = t.get("/templates/aliases/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = t
        .call(
            Method::DELETE,
            "/templates/tags",
            Some(r#"{"name":"lib","tags":["prod"]}"#),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = t
        .call(
            Method::DELETE,
            "/templates/tags",
            Some(r#"{"name":"lib","tags":["prod"]}"#),
        )
        .await;
    assert_eq!(r.json(), err(400, "template 'lib' has no tag 'prod'"));
    let listed = t.get("/templates").await.json();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["names"][0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["base", "app2", "lib"]);

    // Delete: refused while another template stands on it; layers go with the last user.
    let r = t.call(Method::DELETE, "/templates/lib", None).await;
    assert_eq!(
        (r.status, r.json()),
        (
            StatusCode::CONFLICT,
            err(409, "template 'lib' cannot be deleted: app2 built on it")
        )
    );
    let r = t
        .call(Method::DELETE, &format!("/templates/{app}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = t.call(Method::DELETE, "/templates/lib", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(layer_count(t.dir.path()), 0);
    let r = t.get("/templates/lib").await;
    assert_eq!(r.json(), err(404, "template 'lib' not found"));
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: builds run in sandboxes (namespaces, mounts, cgroups)"]
async fn builds_cut_by_a_shutdown_or_a_crash_fail_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let t = start_with(dir, |b| b).await;
    let (id, b) = request(&t, r#"{"name":"slow"}"#).await;
    let r = t
        .post(
            &format!("/v2/templates/{id}/builds/{b}"),
            &json!({"fromTemplate": "base", "force": false, "steps": [
                {"type": "RUN", "args": ["touch /half; sleep 60"], "force": false}]})
            .to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // Wait until the step runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(path.join("sandboxes")).map_or(0, Iterator::count) == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let TestServer { server, dir, .. } = t;
    server.unwrap().shutdown().await;
    let t = start_with(dir, |b| b).await;
    let v = t
        .get(&format!("/templates/{id}/builds/{b}/status"))
        .await
        .json();
    assert_eq!(v["status"], "error");
    assert_eq!(
        v["reason"]["message"],
        "the server shut down during the build"
    );
    assert_nothing_left(&t, &path).await;
    let TestServer { server, dir, .. } = t;
    server.unwrap().shutdown().await;

    // The same with a crash: `serve` is SIGKILLed while its build step runs.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_e2b-local"))
        .args([
            "serve",
            "--network",
            "none",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--cgroup-parent", support::CGROUP_PARENT, "--data-dir"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let key = e2b_local::state::Store::open(&path)
        .unwrap()
        .api_key()
        .unwrap();
    let http = support::http();
    let call = |method: Method, p: &str, body: Value| {
        http.request(method, format!("{url}{p}"))
            .header("x-api-key", &key)
            .json(&body)
            .send()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let created = loop {
        if let Ok(r) = call(Method::POST, "/v3/templates", json!({"name": "slow"})).await {
            break r.json::<Value>().await.unwrap();
        }
        assert!(Instant::now() < deadline, "serve did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let b2 = created["buildID"].as_str().unwrap().to_owned();
    let r = call(
        Method::POST,
        &format!("/v2/templates/{id}/builds/{b2}"),
        json!({"fromTemplate": "base", "force": false, "steps": [
            {"type": "RUN", "args": ["touch /half; sleep 60"], "force": false}]}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    while std::fs::read_dir(path.join("sandboxes")).map_or(0, Iterator::count) == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serve.kill().unwrap();
    serve.wait().unwrap();
    let t = start_with(dir, |b| b).await;
    let v = t
        .get(&format!("/templates/{id}/builds/{b2}/status"))
        .await
        .json();
    assert_eq!(v["status"], "error");
    assert_eq!(
        v["reason"]["message"],
        "the server restarted during the build"
    );
    assert_nothing_left(&t, &path).await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn base_has_passwordless_sudo_and_python_where_the_host_has_them() {
    let t = start().await;
    let sb = t.create(r#"{"templateID":"base","timeout":60}"#).await;
    let (id, token) = (
        sb["sandboxID"].as_str().unwrap(),
        sb["envdAccessToken"].as_str().unwrap(),
    );
    if Path::new("/usr/bin/sudo").exists() {
        let got = stdout_of(&t, id, token, "id -un; sudo -n id -un").await;
        assert_eq!(got, "user\nroot\n");
    }
    if Path::new("/usr/bin/python3").exists() && !Path::new("/usr/bin/python").exists() {
        let got = stdout_of(
            &t,
            id,
            token,
            "python -c 'import sys; print(sys.version_info[0])'",
        )
        .await;
        assert_eq!(got, "3\n");
    }
    t.kill(id).await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: builds run in sandboxes (namespaces, mounts, cgroups)"]
async fn concurrent_builds_and_deleting_a_template_in_use() {
    let t = start().await;
    let run_steps = |word: &str| {
        json!({"fromTemplate": "base", "force": false, "steps": [
            {"type": "RUN", "args": [format!("echo {word} > /word; sleep 0.3"), "root"], "force": false},
            {"type": "RUN", "args": ["cat /word > /copy", "root"], "force": false},
        ]})
    };
    // Two templates, and two builds of one template, at once.
    let (a, a1) = request(&t, r#"{"name":"alpha"}"#).await;
    let (_, a2) = request(&t, r#"{"name":"alpha","tags":["second"]}"#).await;
    let (b, b1) = request(&t, r#"{"name":"beta"}"#).await;
    let (ra, ra2, rb) = tokio::join!(
        build(&t, &a, &a1, run_steps("one")),
        build(&t, &a, &a2, run_steps("two")),
        build(&t, &b, &b1, run_steps("three")),
    );
    for (end, logs) in [&ra, &ra2, &rb] {
        assert_eq!(end["status"], "ready", "{end} {logs:?}");
    }
    for (template, want) in [("alpha", "one"), ("alpha:second", "two"), ("beta", "three")] {
        let sb = t
            .create(&json!({"templateID": template, "timeout": 60}).to_string())
            .await;
        let (id, token) = (
            sb["sandboxID"].as_str().unwrap(),
            sb["envdAccessToken"].as_str().unwrap(),
        );
        assert_eq!(
            stdout_of(&t, id, token, "cat /word /copy").await,
            format!("{want}\n{want}\n")
        );
        t.kill(id).await;
    }

    // Deleting a template whose sandbox runs: the sandbox keeps its files; the layers go
    // once nothing uses them (at the next start).
    let sb = t.create(r#"{"templateID":"beta","timeout":60}"#).await;
    let (id, token) = (
        sb["sandboxID"].as_str().unwrap().to_owned(),
        sb["envdAccessToken"].as_str().unwrap().to_owned(),
    );
    let before = layer_count(t.dir.path());
    let r = t.call(Method::DELETE, "/templates/beta", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        stdout_of(&t, &id, &token, "cat /word /copy").await,
        "three\nthree\n"
    );
    assert_eq!(layer_count(t.dir.path()), before);
    let r = t
        .post("/sandboxes", r#"{"templateID":"beta","timeout":60}"#)
        .await;
    assert_eq!(r.json(), err(404, "template 'beta' not found"));
    t.kill(&id).await;
    let TestServer { server, dir, .. } = t;
    server.unwrap().shutdown().await;
    let t = start_with(dir, |b| b).await;
    assert_eq!(layer_count(t.dir.path()), before - 2);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: builds run in sandboxes (namespaces, mounts, cgroups)"]
async fn a_template_deeper_than_one_page_of_mount_options_starts() {
    let t = start().await;
    // 70 layers of ~100-byte paths: well past mount(2)'s 4 KiB of overlay options.
    let steps: Vec<Value> = (0..70)
        .map(|i| json!({"type": "RUN", "args": [format!("echo {i} > /f-{i}"), "root"], "force": false}))
        .collect();
    let (id, b) = request(&t, r#"{"name":"deep"}"#).await;
    let (end, _) = build(
        &t,
        &id,
        &b,
        json!({"fromTemplate": "base", "force": false, "steps": steps}),
    )
    .await;
    assert_eq!(end["status"], "ready", "{end}");
    let sb = t.create(r#"{"templateID":"deep","timeout":60}"#).await;
    let (sid, token) = (
        sb["sandboxID"].as_str().unwrap(),
        sb["envdAccessToken"].as_str().unwrap(),
    );
    assert_eq!(
        stdout_of(&t, sid, token, "cat /f-0 /f-35 /f-69").await,
        "0\n35\n69\n"
    );
    t.kill(sid).await;
    t.shutdown().await;
}
