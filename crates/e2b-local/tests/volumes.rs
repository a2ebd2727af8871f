//! Volumes against an in-process server with real sandboxes: `/volumes` with exact statuses
//! and bodies, `volumeMounts` shared by two sandboxes, the content API (every operation,
//! its token, paths that try to leave the volume), a full volume (ENOSPC inside, 507
//! through the API, usable again after a delete), and data kept across kill, restart and a
//! SIGKILLed server (whose paused sandbox comes back with its mount). Needs root: ignored unless run with `-- --ignored`.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{TestServer, err, start, start_with, stdout_of};

/// `{"code": "<status>", "message": m}`: the content API's error body.
fn content_err(code: u16, message: &str) -> Value {
    json!({"code": code.to_string(), "message": message})
}

/// Creates volume `name`; returns `(id, token)`.
async fn create_volume(t: &TestServer, name: &str) -> (String, String) {
    let r = t
        .post("/volumes", &json!({ "name": name }).to_string())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let v = r.json();
    assert_eq!(v["name"], name);
    assert!(v.get("domain").is_none(), "{v}");
    let id = v["volumeID"].as_str().unwrap().to_owned();
    let token = v["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64, "{token}");
    (id, token)
}

/// A content API request to `url` (its base) for volume `id`.
fn content(
    http: &reqwest::Client,
    url: &str,
    method: Method,
    id: &str,
    op: &str,
    token: &str,
    query: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    http.request(method, format!("{url}/volumecontent/{id}/{op}"))
        .bearer_auth(token)
        .query(query)
}

/// Sends `req`; returns the status and the body as JSON (`null` when empty).
async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
    };
    (status, body)
}

/// Reads a file of a volume through the content API.
async fn read(t: &TestServer, id: &str, token: &str, path: &str) -> (StatusCode, Vec<u8>) {
    let r = content(
        &t.http,
        &t.url,
        Method::GET,
        id,
        "file",
        token,
        &[("path", path)],
    )
    .send()
    .await
    .unwrap();
    (r.status(), r.bytes().await.unwrap().to_vec())
}

/// Writes a file of a volume through the content API; returns the status and body.
async fn write(
    t: &TestServer,
    id: &str,
    token: &str,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    send(
        content(
            &t.http,
            &t.url,
            Method::PUT,
            id,
            "file",
            token,
            &[("path", path)],
        )
        .header("content-type", "application/octet-stream")
        .body(body),
    )
    .await
}

/// Creates a sandbox with `mounts`; returns `(id, envd token)`.
async fn sandbox_with(t: &TestServer, mounts: Value) -> (String, String) {
    let sb = t
        .create(&json!({"templateID": "base", "timeout": 300, "volumeMounts": mounts}).to_string())
        .await;
    (
        sb["sandboxID"].as_str().unwrap().to_owned(),
        sb["envdAccessToken"].as_str().unwrap().to_owned(),
    )
}

/// Every field of a stat but the times, which are checked to parse.
fn stat_fields(v: &Value) -> Value {
    for t in ["atime", "mtime", "ctime"] {
        let s = v[t].as_str().unwrap_or_else(|| panic!("{t} in {v}"));
        chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{t} {s}: {e}"));
    }
    let mut v = v.clone();
    for t in ["atime", "mtime", "ctime"] {
        v.as_object_mut().unwrap().remove(t);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: volumes are ext4 images on loop devices"]
async fn volumes_are_created_listed_got_and_deleted_with_e2bs_statuses() {
    let t = start().await;
    let r = t.get("/volumes").await;
    assert_eq!((r.status, r.json()), (StatusCode::OK, json!([])));
    let (a, token_a) = create_volume(&t, "data").await;
    let (b, _) = create_volume(&t, "Other_1-x").await;
    let r = t.post("/volumes", r#"{"name": "data"}"#).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json(), err(409, "a volume named 'data' already exists"));
    for bad in ["a/b", "..", "", "a b", "dot.name"] {
        let r = t
            .post("/volumes", &json!({ "name": bad }).to_string())
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            r.json(),
            err(
                400,
                &format!("invalid volume name {bad:?}: use 1 to 255 letters, digits, '_' and '-'")
            ),
        );
    }
    let r = t.post("/volumes", r#"{"name": "x", "size": 1}"#).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json(),
        err(
            400,
            "unknown field `size` in request body (expected one of: name)"
        )
    );
    let r = t.get("/volumes").await;
    assert_eq!(
        r.json(),
        json!([{"volumeID": a, "name": "data"}, {"volumeID": b, "name": "Other_1-x"}])
    );
    for key in [a.as_str(), "data"] {
        let r = t.get(&format!("/volumes/{key}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.json(),
            json!({"volumeID": a, "name": "data", "token": token_a})
        );
    }
    let r = t.get("/volumes/nope").await;
    assert_eq!(
        (r.status, r.json()),
        (StatusCode::NOT_FOUND, err(404, "volume 'nope' not found"))
    );
    let r = t
        .call_with(Method::GET, "/volumes", None, &[("x-api-key", "wrong")])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // The content API takes the volume's token, not the API key.
    let root = [("path", "/")];
    let (s, body) = send(content(
        &t.http,
        &t.url,
        Method::GET,
        &a,
        "dir",
        &token_a,
        &root,
    ))
    .await;
    assert_eq!((s, body), (StatusCode::OK, json!([])));
    let (s, body) = send(
        t.http
            .get(format!("{}/volumecontent/{a}/dir", t.url))
            .query(&root)
            .header("x-api-key", &t.key),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        content_err(
            401,
            "missing volume token: send `Authorization: Bearer <token>` with the token of GET /volumes/{volumeID}"
        )
    );
    let (s, body) = send(content(
        &t.http,
        &t.url,
        Method::GET,
        &a,
        "dir",
        "wrong",
        &root,
    ))
    .await;
    assert_eq!(
        (s, body),
        (
            StatusCode::UNAUTHORIZED,
            content_err(401, &format!("invalid token for volume '{a}'"))
        )
    );
    let (s, body) = send(content(
        &t.http,
        &t.url,
        Method::GET,
        &b,
        "dir",
        &token_a,
        &root,
    ))
    .await;
    assert_eq!(
        (s, body),
        (
            StatusCode::UNAUTHORIZED,
            content_err(401, &format!("invalid token for volume '{b}'"))
        )
    );

    let r = t.call(Method::DELETE, &format!("/volumes/{b}"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = t.call(Method::DELETE, "/volumes/data", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = t.call(Method::DELETE, "/volumes/data", None).await;
    assert_eq!(
        (r.status, r.json()),
        (StatusCode::NOT_FOUND, err(404, "volume 'data' not found"))
    );
    let (s, body) = send(content(
        &t.http,
        &t.url,
        Method::GET,
        &a,
        "dir",
        &token_a,
        &root,
    ))
    .await;
    assert_eq!(
        (s, body),
        (
            StatusCode::NOT_FOUND,
            content_err(404, &format!("volume '{a}' not found"))
        )
    );
    assert_eq!(
        std::fs::read_dir(t.dir.path().join("volumes"))
            .unwrap()
            .count(),
        0
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: volumes are ext4 images on loop devices"]
async fn the_content_api_lists_makes_stats_updates_reads_writes_and_removes() {
    let t = start().await;
    let (id, token) = create_volume(&t, "files").await;
    let call = |method: Method, op: &str, query: &[(&str, &str)]| {
        content(&t.http, &t.url, method, &id, op, &token, query)
    };
    // A file whose parents are missing: 404 without force.
    let (s, body) = write(&t, &id, &token, "/a/b/hello.txt", b"hi".to_vec()).await;
    assert_eq!(
        (s, body),
        (
            StatusCode::NOT_FOUND,
            content_err(404, "path '/a/b/hello.txt' does not exist in the volume")
        )
    );
    let (s, body) = send(
        call(
            Method::PUT,
            "file",
            &[
                ("path", "/a/b/hello.txt"),
                ("force", "true"),
                ("mode", "416"),
            ],
        )
        .body("hello volume"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(
        stat_fields(&body),
        json!({"name": "hello.txt", "type": "file", "path": "/a/b/hello.txt", "size": 12,
               "mode": 0o640, "uid": 1000, "gid": 1000})
    );
    assert_eq!(
        read(&t, &id, &token, "a/b/hello.txt").await,
        (StatusCode::OK, b"hello volume".to_vec())
    );
    // Overwritten whole; an explicit owner is kept.
    let (s, body) = send(
        call(
            Method::PUT,
            "file",
            &[("path", "/a/b/hello.txt"), ("uid", "0"), ("gid", "0")],
        )
        .body("short"),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        (
            body["size"].clone(),
            body["uid"].clone(),
            body["mode"].clone()
        ),
        (json!(5), json!(0), json!(0o640))
    );
    assert_eq!(read(&t, &id, &token, "/a/b/hello.txt").await.1, b"short");

    let (s, body) = send(call(
        Method::POST,
        "dir",
        &[("path", "/a/c"), ("mode", "448")],
    ))
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(
        stat_fields(&body),
        json!({"name": "c", "type": "directory", "path": "/a/c", "size": 4096, "mode": 0o700, "uid": 1000, "gid": 1000})
    );
    let (s, body) = send(call(Method::POST, "dir", &[("path", "/a/c")])).await;
    assert_eq!(
        (s, body),
        (
            StatusCode::CONFLICT,
            content_err(409, "path '/a/c' already exists")
        )
    );
    let (s, _) = send(call(
        Method::POST,
        "dir",
        &[("path", "/a/c"), ("force", "true")],
    ))
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, body) = send(call(Method::POST, "dir", &[("path", "/x/y")])).await;
    assert_eq!(
        (s, body),
        (
            StatusCode::NOT_FOUND,
            content_err(404, "path '/x/y' does not exist in the volume")
        )
    );

    let (s, body) = send(call(Method::GET, "dir", &[("path", "/")])).await;
    assert_eq!(s, StatusCode::OK);
    let paths = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(paths(&body), ["/a"]);
    let (_, body) = send(call(Method::GET, "dir", &[("path", "/"), ("depth", "3")])).await;
    assert_eq!(paths(&body), ["/a", "/a/b", "/a/b/hello.txt", "/a/c"]);
    let (s, body) = send(call(Method::GET, "dir", &[("path", "/a/b/hello.txt")])).await;
    assert_eq!(
        (s, body),
        (
            StatusCode::BAD_REQUEST,
            content_err(400, "path '/a/b/hello.txt' is not a directory")
        )
    );
    let (s, body) = send(call(Method::GET, "dir", &[("path", "/"), ("depth", "0")])).await;
    assert_eq!(
        (s, body),
        (
            StatusCode::BAD_REQUEST,
            content_err(400, "depth 0 is out of range: give 1 to 64")
        )
    );
    let (s, body) = send(call(Method::GET, "dir", &[])).await;
    assert_eq!(
        (s, body),
        (
            StatusCode::BAD_REQUEST,
            content_err(400, "missing query parameter `path`")
        )
    );

    let (s, body) = send(call(Method::GET, "path", &[("path", "/a")])).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (body["type"].clone(), body["mode"].clone()),
        (json!("directory"), json!(0o755))
    );
    let (s, body) = send(
        call(Method::PATCH, "path", &[("path", "/a/b/hello.txt")])
            .json(&json!({"mode": 0o600, "uid": 1000})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["mode"].clone(),
            body["uid"].clone(),
            body["gid"].clone()
        ),
        (json!(0o600), json!(1000), json!(0))
    );
    let (s, body) =
        send(call(Method::PATCH, "path", &[("path", "/a")]).json(&json!({"mode": 70000}))).await;
    assert_eq!(
        (s, body),
        (
            StatusCode::BAD_REQUEST,
            content_err(
                400,
                "mode 70000 is not a permission mode (at most 0o7777 = 4095)"
            )
        )
    );

    // Paths never leave the volume: `..` is refused, and `/etc/passwd` is the volume's.
    for bad in ["/../etc/passwd", "a/../../x"] {
        let (s, body) = read(&t, &id, &token, bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            content_err(
                400,
                &format!("invalid path '{bad}': '..' is not allowed in a volume path")
            )
        );
    }
    let (s, body) = read(&t, &id, &token, "/etc/passwd").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        content_err(404, "path '/etc/passwd' does not exist in the volume")
    );
    let (s, body) = read(&t, &id, &token, "/a").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        content_err(400, "path '/a' is not a regular file")
    );

    let (s, body) = send(call(Method::DELETE, "path", &[("path", "/")])).await;
    assert_eq!(
        (s, body),
        (
            StatusCode::BAD_REQUEST,
            content_err(400, "invalid path '/': the volume's root cannot be removed")
        )
    );
    let (s, body) = send(call(Method::DELETE, "path", &[("path", "/a")])).await;
    assert_eq!((s, body), (StatusCode::NO_CONTENT, Value::Null));
    let (s, body) = send(call(Method::DELETE, "path", &[("path", "/a")])).await;
    assert_eq!(
        (s, body),
        (
            StatusCode::NOT_FOUND,
            content_err(404, "path '/a' does not exist in the volume")
        )
    );
    let (s, body) = send(call(Method::GET, "path", &[("path", "/a/b/hello.txt")])).await;
    assert_eq!(
        (s, body),
        (
            StatusCode::NOT_FOUND,
            content_err(404, "path '/a/b/hello.txt' does not exist in the volume")
        )
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: sandboxes and volumes"]
async fn two_sandboxes_share_a_volume_and_deleting_it_is_refused_while_mounted() {
    let t = start().await;
    let (id, token) = create_volume(&t, "shared").await;
    let (a, ta) = sandbox_with(&t, json!([{"name": "shared", "path": "/mnt/shared"}])).await;
    let (b, tb) = sandbox_with(&t, json!([{"name": "shared", "path": "/home/user/data"}])).await;
    let (c, tc) = sandbox_with(&t, json!([])).await;

    // Written by `user` in one, read in the other and through the API.
    let out = stdout_of(&t, &a, &ta, "id -un; stat -c '%U %a' /mnt/shared; echo from-a > /mnt/shared/note && cat /mnt/shared/note").await;
    assert_eq!(out, "user\nuser 755\nfrom-a\n");
    assert_eq!(
        stdout_of(
            &t,
            &b,
            &tb,
            "cat /home/user/data/note; echo from-b >> /home/user/data/note"
        )
        .await,
        "from-a\n"
    );
    assert_eq!(
        read(&t, &id, &token, "/note").await,
        (StatusCode::OK, b"from-a\nfrom-b\n".to_vec())
    );
    let (s, _) = write(&t, &id, &token, "/api.txt", b"from the api".to_vec()).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        stdout_of(
            &t,
            &a,
            &ta,
            "cat /mnt/shared/api.txt; echo; echo more >> /mnt/shared/api.txt && echo appended"
        )
        .await,
        "from the api\nappended\n"
    );
    assert_eq!(
        stdout_of(&t, &c, &tc, "ls /mnt/shared /home/user/data 2>&1 | head -2")
            .await
            .lines()
            .count(),
        2
    );

    // The mounts are reported.
    let d = t.get(&format!("/sandboxes/{a}")).await.json();
    assert_eq!(
        d["volumeMounts"],
        json!([{"name": "shared", "path": "/mnt/shared"}])
    );
    let listed = t.get("/v2/sandboxes").await.json();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sandboxID"] == b.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        entry["volumeMounts"],
        json!([{"name": "shared", "path": "/home/user/data"}])
    );
    let d = t.get(&format!("/sandboxes/{c}")).await.json();
    assert!(d.get("volumeMounts").is_none_or(|m| m == &json!([])), "{d}");

    // Links a sandbox leaves in the volume do not lead the content API out of it.
    let out = stdout_of(&t, &a, &ta, "ln -s / /mnt/shared/root && ln -s ../../../etc /mnt/shared/up && mkdir /mnt/shared/d && ln -s ../note /mnt/shared/d/ok && echo linked").await;
    assert_eq!(out, "linked\n");
    for escaping in ["/root/etc/passwd", "/up/passwd"] {
        let (s, body) = read(&t, &id, &token, escaping).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{escaping}");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            content_err(
                400,
                &format!("path '{escaping}' leads out of the volume (through a symbolic link)")
            )
        );
        let (s, _) = write(&t, &id, &token, escaping, b"x".to_vec()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{escaping}");
    }
    assert_eq!(
        read(&t, &id, &token, "/d/ok").await,
        (StatusCode::OK, b"from-a\nfrom-b\n".to_vec())
    );
    let (s, body) = send(content(
        &t.http,
        &t.url,
        Method::GET,
        &id,
        "path",
        &token,
        &[("path", "/root")],
    ))
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (body["type"].clone(), body["target"].clone()),
        (json!("symlink"), json!("/"))
    );

    // Deleting it while mounted is refused, naming the sandboxes.
    let mut both = [a.clone(), b.clone()];
    both.sort();
    let r = t.call(Method::DELETE, "/volumes/shared", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.json(),
        err(
            409,
            &format!(
                "volume 'shared' is mounted by sandboxes {}; kill them first",
                both.join(", ")
            )
        )
    );
    t.kill(&a).await;
    let r = t
        .call(Method::DELETE, &format!("/volumes/{id}"), None)
        .await;
    assert_eq!(
        r.json(),
        err(
            409,
            &format!("volume 'shared' is mounted by sandboxes {b}; kill them first")
        )
    );
    t.kill(&b).await;
    let r = t
        .call(Method::DELETE, &format!("/volumes/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    t.kill(&c).await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: sandboxes and volumes"]
async fn bad_volume_mounts_get_400_naming_the_entry() {
    let t = start().await;
    create_volume(&t, "v1").await;
    create_volume(&t, "v2").await;
    let cases = [
        (
            json!([{"name": "nope", "path": "/mnt/x"}]),
            "volumeMounts[0].name: volume 'nope' not found",
        ),
        (
            json!([{"name": "v1", "path": "mnt/x"}]),
            "volumeMounts[0].path \"mnt/x\" is not an absolute path",
        ),
        (
            json!([{"name": "v1", "path": "/"}]),
            "volumeMounts[0].path \"/\" is the sandbox's root",
        ),
        (
            json!([{"name": "v1", "path": "/mnt/../etc"}]),
            "volumeMounts[0].path \"/mnt/../etc\" must not contain '.' or '..'",
        ),
        (
            json!([{"name": "v1", "path": "/mnt/a"}, {"name": "v2", "path": "/mnt/a/b"}]),
            "volumeMounts[1].path \"/mnt/a/b\" overlaps volumeMounts[0].path \"/mnt/a\"",
        ),
        (
            json!([{"name": "v1", "path": "/mnt/a"}, {"name": "../v2", "path": "/mnt/b"}]),
            "volumeMounts[1].name \"../v2\" is not a volume name (letters, digits, '_' and '-')",
        ),
    ];
    for (mounts, message) in cases {
        let body = json!({"templateID": "base", "timeout": 60, "volumeMounts": mounts}).to_string();
        let r = t.post("/sandboxes", &body).await;
        assert_eq!(
            (r.status, r.json()),
            (StatusCode::BAD_REQUEST, err(400, message)),
            "{mounts}"
        );
    }
    let r = t.get("/v2/sandboxes").await;
    assert_eq!(r.json(), json!([]));
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: sandboxes and volumes"]
async fn an_upload_cut_off_part_way_leaves_the_old_file_and_nothing_else() {
    use tokio::io::AsyncWriteExt as _;
    let t = start_with(tempfile::tempdir().unwrap(), |b| b.volume_mib(32)).await;
    let (id, token) = create_volume(&t, "cut").await;
    let (s, body) = write(&t, &id, &token, "/keep", b"v1".to_vec()).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    // A client that promises 1 MB, sends 100 bytes and goes away.
    let addr = t.url.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /volumecontent/{id}/file?path=/keep HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&[b'x'; 100]).await.unwrap();
    conn.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(conn);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        read(&t, &id, &token, "/keep").await,
        (StatusCode::OK, b"v1".to_vec())
    );
    let (s, listed) = send(content(
        &t.http,
        &t.url,
        Method::GET,
        &id,
        "dir",
        &token,
        &[("path", "/"), ("depth", "1")],
    ))
    .await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with(".e2b-write")),
        "{names:?}"
    );
    assert!(names.contains(&"keep"), "{names:?}");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: sandboxes and volumes"]
async fn a_full_volume_gives_enospc_and_507_and_is_usable_again_after_a_delete() {
    let t = start_with(tempfile::tempdir().unwrap(), |b| b.volume_mib(32)).await;
    let (id, token) = create_volume(&t, "small").await;
    let (s, body) = write(&t, &id, &token, "/keep", b"v1".to_vec()).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (sb, st) = sandbox_with(&t, json!([{"name": "small", "path": "/data"}])).await;
    let out = stdout_of(&t, &sb, &st, "dd if=/dev/zero of=/data/big bs=1M count=64 2>&1 | grep -o 'No space left on device' | head -1; df -m /data | tail -1 | awk '{print $2}'").await;
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("No space left on device"), "{out}");
    let total: u64 = lines.next().unwrap().parse().unwrap();
    assert!((20..=32).contains(&total), "{out}");
    let (s, body) = write(&t, &id, &token, "/more.bin", vec![7u8; 8 << 20]).await;
    assert_eq!(
        (s, body),
        (
            StatusCode::INSUFFICIENT_STORAGE,
            content_err(507, "not enough space in the volume to write '/more.bin'")
        )
    );
    // The failed write left nothing behind.
    let (s, _) = send(content(
        &t.http,
        &t.url,
        Method::GET,
        &id,
        "path",
        &token,
        &[("path", "/more.bin")],
    ))
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // An overwrite that does not fit leaves the old file as it was.
    let (s, body) = write(&t, &id, &token, "/keep", vec![7u8; 8 << 20]).await;
    assert_eq!(
        (s, body),
        (
            StatusCode::INSUFFICIENT_STORAGE,
            content_err(507, "not enough space in the volume to write '/keep'")
        )
    );
    assert_eq!(
        read(&t, &id, &token, "/keep").await,
        (StatusCode::OK, b"v1".to_vec())
    );
    // The sandbox's host disk is untouched: its own writes still work.
    assert_eq!(
        stdout_of(&t, &sb, &st, "echo ok > /home/user/ok && cat /home/user/ok").await,
        "ok\n"
    );
    // Deleting gives the space back, through either side.
    let (s, _) = send(content(
        &t.http,
        &t.url,
        Method::DELETE,
        &id,
        "path",
        &token,
        &[("path", "/big")],
    ))
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = write(&t, &id, &token, "/more.bin", vec![7u8; 8 << 20]).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(stdout_of(&t, &sb, &st, "dd if=/dev/zero of=/data/again bs=1M count=4 2>/dev/null && stat -c %s /data/again /data/more.bin").await, "4194304\n8388608\n");
    t.kill(&sb).await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: sandboxes, volumes and a SIGKILLed server"]
async fn volume_data_survives_kill_restart_and_a_crashed_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let t = start_with(dir, |b| b).await;
    let (id, token) = create_volume(&t, "keep").await;
    let (sb, st) = sandbox_with(&t, json!([{"name": "keep", "path": "/keep"}])).await;
    assert_eq!(
        stdout_of(
            &t,
            &sb,
            &st,
            "echo written-in-a-sandbox > /keep/s.txt && echo ok"
        )
        .await,
        "ok\n"
    );
    t.kill(&sb).await;
    assert_eq!(
        read(&t, &id, &token, "/s.txt").await,
        (StatusCode::OK, b"written-in-a-sandbox\n".to_vec())
    );

    // A clean restart: unmounted at shutdown, mounted again at start.
    let TestServer { server, dir, .. } = t;
    server.unwrap().shutdown().await;
    assert!(!is_mount_point(
        &path.join("volumes").join(&id).join("disk")
    ));
    let t = start_with(dir, |b| b).await;
    assert_eq!(
        read(&t, &id, &token, "/s.txt").await,
        (StatusCode::OK, b"written-in-a-sandbox\n".to_vec())
    );
    let (sb, st) = sandbox_with(&t, json!([{"name": "keep", "path": "/keep"}])).await;
    assert_eq!(
        stdout_of(&t, &sb, &st, "cat /keep/s.txt").await,
        "written-in-a-sandbox\n"
    );
    t.kill(&sb).await;
    let TestServer { server, dir, .. } = t;
    server.unwrap().shutdown().await;

    // A crash: `serve` is SIGKILLed right after a write through the content API.
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
    let http = support::http();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let put = content(
            &http,
            &url,
            Method::PUT,
            &id,
            "file",
            &token,
            &[("path", "/crash.txt")],
        )
        .body("before the crash")
        .send()
        .await;
        if let Ok(r) = put {
            assert_eq!(r.status(), StatusCode::CREATED);
            break;
        }
        assert!(Instant::now() < deadline, "serve did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A paused sandbox with the volume mounted: the next start restores it with its mount.
    let key = e2b_local::state::Store::open(&path)
        .unwrap()
        .api_key()
        .unwrap();
    let created: Value = http
        .post(format!("{url}/sandboxes"))
        .header("x-api-key", &key)
        .json(&json!({"templateID": "base", "timeout": 300, "volumeMounts": [{"name": "keep", "path": "/keep"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paused = created["sandboxID"].as_str().unwrap().to_owned();
    let paused_token = created["envdAccessToken"].as_str().unwrap().to_owned();
    let r = http
        .post(format!("{url}/sandboxes/{paused}/pause"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    serve.kill().unwrap();
    serve.wait().unwrap();
    // The crashed server's mount is still there; the next start keeps using it.
    assert!(is_mount_point(&path.join("volumes").join(&id).join("disk")));
    let t = start_with(dir, |b| b).await;
    assert_eq!(
        read(&t, &id, &token, "/crash.txt").await,
        (StatusCode::OK, b"before the crash".to_vec())
    );
    assert_eq!(
        read(&t, &id, &token, "/s.txt").await.1,
        b"written-in-a-sandbox\n"
    );
    let r = t.get("/volumes").await;
    assert_eq!(r.json(), json!([{"volumeID": id, "name": "keep"}]));
    t.server().manager().recovered().await;
    let d = t.get(&format!("/sandboxes/{paused}")).await.json();
    assert_eq!(
        (d["state"].clone(), d["volumeMounts"].clone()),
        (json!("paused"), json!([{"name": "keep", "path": "/keep"}]))
    );
    let r = t.call(Method::DELETE, "/volumes/keep", None).await;
    assert_eq!(
        r.json(),
        err(
            409,
            &format!("volume 'keep' is mounted by sandboxes {paused}; kill them first")
        )
    );
    let r = t
        .post(
            &format!("/sandboxes/{paused}/connect"),
            r#"{"timeout": 60}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        stdout_of(&t, &paused, &paused_token, "cat /keep/crash.txt").await,
        "before the crash"
    );
    t.kill(&paused).await;
    let r = t.call(Method::DELETE, "/volumes/keep", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(!path.join("volumes").join(&id).exists());
    // Nothing holds the deleted volume's image while the server runs on.
    let held: Vec<String> = std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("loop/backing_file")).ok())
        .filter(|backing| backing.contains(&id))
        .collect();
    assert!(held.is_empty(), "{held:?}");
    t.shutdown().await;
}

/// Whether `p` is a mount point in this (the host's) mount namespace.
fn is_mount_point(p: &std::path::Path) -> bool {
    let p = p.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&p))
}
