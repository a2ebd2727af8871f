//! `/health`, `/init`, `/envs`, `/metrics`, access control and `/files`, against the real
//! binary.

mod common;

use std::os::unix::fs::MetadataExt as _;

use async_compression::tokio::bufread::{GzipDecoder, GzipEncoder};
use base64::Engine as _;
use common::{Envd, current_user, http, is_root, test_user};
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

async fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzipEncoder::new(data).read_to_end(&mut out).await.unwrap();
    out
}

async fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzipDecoder::new(data).read_to_end(&mut out).await.unwrap();
    out
}

fn sign(path: &str, op: &str, user: &str, token: &str, exp: Option<i64>) -> String {
    let mut raw = format!("{path}:{op}:{user}:{token}");
    if let Some(e) = exp {
        raw.push_str(&format!(":{e}"));
    }
    format!(
        "v1_{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(raw.as_bytes()))
    )
}

async fn json_error(r: reqwest::Response) -> (StatusCode, serde_json::Value) {
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap();
    (status, body)
}

#[tokio::test]
async fn health_init_envs_metrics_and_token_gate() {
    let envd = Envd::start(&["--sandbox-id", "itestsandbox"]);
    let c = http();
    let r = c.get(format!("{}/health", envd.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["cache-control"], "no-store");

    let r = c
        .post(format!("{}/init", envd.base))
        .json(&serde_json::json!({
            "envVars": {"FOO": "bar", "E2B_SANDBOX": "false"},
            "accessToken": "secret-token",
            "defaultUser": "root",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["x-envd-version"], "0.6.13");

    // The gate: /envs needs the token now.
    let r = c.get(format!("{}/envs", envd.base)).send().await.unwrap();
    let (status, body) = json_error(r).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        serde_json::json!({"code": 401, "message": "unauthorized access, please provide a valid access token or method signing if supported"})
    );
    // RPC paths too.
    let r = c
        .post(format!("{}/process.Process/List", envd.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Health stays open.
    let r = c.get(format!("{}/health", envd.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let r = c
        .get(format!("{}/envs", envd.base))
        .header("x-access-token", "secret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let envs: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        envs,
        serde_json::json!({"E2B_SANDBOX": "true", "E2B_SANDBOX_ID": "itestsandbox", "FOO": "bar"})
    );

    let r = c
        .get(format!("{}/metrics", envd.base))
        .header("x-access-token", "secret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let m: serde_json::Value = r.json().await.unwrap();
    for k in [
        "ts",
        "cpu_count",
        "cpu_used_pct",
        "mem_total",
        "mem_used",
        "mem_cache",
        "disk_used",
        "disk_total",
        "mem_total_mib",
        "mem_used_mib",
    ] {
        assert!(m.get(k).is_some(), "metrics lacks {k}: {m}");
    }
    assert!(m["mem_total"].as_u64().unwrap() > 0);

    // Re-init without the token is refused; with it, the token can be rotated.
    let r = c
        .post(format!("{}/init", envd.base))
        .json(&serde_json::json!({"accessToken": "other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .post(format!("{}/init", envd.base))
        .json(&serde_json::json!({"accessToken": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c
        .post(format!("{}/init", envd.base))
        .header("x-access-token", "secret-token")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // Token cleared: /envs is open again.
    let r = c.get(format!("{}/envs", envd.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn cors_preflight() {
    let envd = Envd::start(&[]);
    let r = http()
        .request(reqwest::Method::OPTIONS, format!("{}/files", envd.base))
        .header("origin", "https://example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "x-access-token")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://example.com"
    );
    assert_eq!(r.headers()["access-control-max-age"], "7200");
    assert!(
        r.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("x-access-token")
    );
}

#[tokio::test]
async fn files_upload_download_errors_gzip_and_ranges() {
    let envd = Envd::start(&[]);
    let c = http();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    let files = format!("{}/files", envd.base);

    // Raw upload, parents created.
    let target = format!("{root}/a/b/c.txt");
    let r = c
        .post(&files)
        .query(&[("path", &target)])
        .header("content-type", "application/octet-stream")
        .header("x-metadata-Owner", "alice")
        .body("hello world")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"path": target, "name": "c.txt", "type": "file", "metadata": {"owner": "alice"}}])
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"hello world");
    assert_eq!(
        xattr::get(&target, "user.e2b.owner").unwrap().as_deref(),
        Some(&b"alice"[..])
    );

    // Download, plain and gzip.
    let r = c
        .get(&files)
        .query(&[("path", &target)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-disposition"],
        "inline; filename=\"c.txt\""
    );
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.bytes().await.unwrap(), &b"hello world"[..]);
    let r = c
        .get(&files)
        .query(&[("path", &target)])
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(gunzip(&r.bytes().await.unwrap()).await, b"hello world");
    let r = c
        .get(&files)
        .query(&[("path", &target)])
        .header("accept-encoding", "br, identity;q=0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);

    // Ranges.
    let r = c
        .get(&files)
        .query(&[("path", &target)])
        .header("range", "bytes=6-")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 6-10/11");
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.bytes().await.unwrap(), &b"world"[..]);
    let r = c
        .get(&files)
        .query(&[("path", &target)])
        .header("range", "bytes=50-60")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["content-range"], "bytes */11");

    // Gzip upload.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let gz_target = format!("{root}/gz.bin");
    let r = c
        .post(&files)
        .query(&[("path", &gz_target)])
        .header("content-type", "application/octet-stream")
        .header("content-encoding", "gzip")
        .body(gzip(&big).await)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(std::fs::read(&gz_target).unwrap(), big);
    let r = c
        .post(&files)
        .query(&[("path", &gz_target)])
        .header("content-type", "application/octet-stream")
        .header("content-encoding", "gzip")
        .body("definitely not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Errors.
    let (s, b) = json_error(
        c.get(&files)
            .query(&[("path", format!("{root}/missing"))])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        b["message"],
        format!("path '{root}/missing' does not exist")
    );
    assert_eq!(b["code"], 404);
    let (s, b) = json_error(
        c.get(&files)
            .query(&[("path", &root)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["message"], format!("path '{root}' is a directory"));
    let (s, b) = json_error(
        c.post(&files)
            .header("content-type", "application/octet-stream")
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["message"],
        "path query parameter is required for raw body upload"
    );
    let (s, _) = json_error(
        c.post(&files)
            .query(&[("path", &root)])
            .header("content-type", "application/octet-stream")
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = json_error(
        c.post(&files)
            .query(&[("path", &target)])
            .header("content-type", "text/plain")
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, b) = json_error(
        c.get(&files)
            .query(&[
                ("path", &target),
                ("username", &"no-such-user-xyz".to_owned()),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .starts_with("error looking up user 'no-such-user-xyz'"),
        "{b}"
    );
    let (s, _) = json_error(
        c.post(&files)
            .query(&[("path", &target)])
            .header("content-type", "application/octet-stream")
            .header(
                "x-metadata-k",
                reqwest::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
            )
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

fn multipart_body(boundary: &str, parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, filename, data) in parts {
        b.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    b
}

#[tokio::test]
async fn files_multipart() {
    let envd = Envd::start(&[]);
    let c = http();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    let files = format!("{}/files", envd.base);
    let (p1, p2) = (format!("{root}/one.txt"), format!("{root}/sub/two.txt"));
    let body = multipart_body(
        "XyZ",
        &[
            ("file", &p1, b"first"),
            ("other", "/ignored", b"nope"),
            ("file", &p2, b"second"),
        ],
    );
    let r = c
        .post(&files)
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"path": p1, "name": "one.txt", "type": "file"},
            {"path": p2, "name": "two.txt", "type": "file"},
        ])
    );
    assert_eq!(std::fs::read(&p1).unwrap(), b"first");
    assert_eq!(std::fs::read(&p2).unwrap(), b"second");
    assert!(!std::path::Path::new("/ignored").exists());

    // Two parts with one path.
    let body = multipart_body("b", &[("file", &p1, b"a"), ("file", &p1, b"b")]);
    let (s, b) = json_error(
        c.post(&files)
            .header("content-type", "multipart/form-data; boundary=b")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("cannot upload multiple files to the same path")
    );

    // The path query overrides the part's filename.
    let p3 = format!("{root}/three.txt");
    let body = multipart_body("b", &[("file", "whatever.txt", b"third")]);
    let r = c
        .post(&files)
        .query(&[("path", &p3)])
        .header("content-type", "multipart/form-data; boundary=b")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(std::fs::read(&p3).unwrap(), b"third");

    // Malformed multipart.
    let (s, _) = json_error(
        c.post(&files)
            .header("content-type", "multipart/form-data; boundary=b")
            .body("--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nno end")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Relative filenames resolve against the user's home (root here).
    let rel = format!("envd-test-{}.txt", std::process::id());
    let body = multipart_body("b", &[("file", &rel, b"rel")]);
    let r = c
        .post(&files)
        .header("content-type", "multipart/form-data; boundary=b")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let expected_home = if is_root() { "/root".to_owned() } else { home };
    assert_eq!(v[0]["path"], format!("{expected_home}/{rel}"));
    std::fs::remove_file(format!("{expected_home}/{rel}")).unwrap();
}

#[tokio::test]
async fn files_signatures() {
    let envd = Envd::start(&[]);
    let c = http();
    let token = "tok123";
    let r = c
        .post(format!("{}/init", envd.base))
        .json(&serde_json::json!({"accessToken": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let dir = tempfile::tempdir().unwrap();
    let path = format!("{}/signed.txt", dir.path().to_str().unwrap());
    let files = format!("{}/files", envd.base);

    let upload = |q: Vec<(&'static str, String)>| {
        c.post(&files)
            .query(&q)
            .header("content-type", "application/octet-stream")
            .body("signed")
            .send()
    };
    // Missing signature.
    let (s, b) = json_error(upload(vec![("path", path.clone())]).await.unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        b,
        serde_json::json!({"code": 401, "message": "missing signature query parameter"})
    );
    // Invalid signature (signed for read, used for write).
    let (s, b) = json_error(
        upload(vec![
            ("path", path.clone()),
            ("signature", sign(&path, "read", "", token, None)),
        ])
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        b,
        serde_json::json!({"code": 401, "message": "invalid signature"})
    );
    // Valid write signature.
    let r = upload(vec![
        ("path", path.clone()),
        ("signature", sign(&path, "write", "", token, None)),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Valid read signature with a future expiration and a username (the tests' own: a non-root
    // envd acts only as itself).
    let exp = chrono::Utc::now().timestamp() + 60;
    let me = current_user();
    let r = c
        .get(&files)
        .query(&[
            ("path", path.clone()),
            ("username", me.clone()),
            ("signature", sign(&path, "read", &me, token, Some(exp))),
            ("signature_expiration", exp.to_string()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "signed");
    // Expired.
    let exp = chrono::Utc::now().timestamp() - 10;
    let (s, b) = json_error(
        c.get(&files)
            .query(&[
                ("path", path.clone()),
                ("signature", sign(&path, "read", "", token, Some(exp))),
                ("signature_expiration", exp.to_string()),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        b,
        serde_json::json!({"code": 401, "message": "signature is already expired"})
    );
    // Header token instead of a signature; a wrong one is refused.
    let r = c
        .get(&files)
        .query(&[("path", &path)])
        .header("x-access-token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (s, b) = json_error(
        c.get(&files)
            .query(&[("path", &path)])
            .header("x-access-token", "wrong")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        b,
        serde_json::json!({"code": 401, "message": "access token present in header but does not match"})
    );
}

#[tokio::test]
#[ignore = "needs root: mounts a tmpfs"]
async fn files_disk_full_is_507() {
    let envd = Envd::start(&[]);
    let c = http();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().to_str().unwrap().to_owned();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs", &mnt])
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
    let r = c
        .post(format!("{}/files", envd.base))
        .query(&[("path", format!("{mnt}/big.bin"))])
        .header("content-type", "application/octet-stream")
        .body(vec![7u8; 1024 * 1024])
        .send()
        .await
        .unwrap();
    let status = r.status();
    let b: serde_json::Value = r.json().await.unwrap();
    // The new file is removed again and the staged content freed.
    let left = std::fs::read_dir(&mnt).unwrap().count();
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    assert_eq!(left, 0);
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(b["code"], 507);
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .ends_with("not enough disk space available"),
        "{b}"
    );
}

#[tokio::test]
#[ignore = "needs root: creates a user"]
async fn files_as_another_user_are_owned_by_it() {
    let (name, uid, gid, home) = test_user();
    let envd = Envd::start(&[]);
    let c = http();
    let r = c
        .post(format!("{}/files", envd.base))
        .query(&[("path", "newdir/owned.txt"), ("username", &name)])
        .header("content-type", "application/octet-stream")
        .body("mine")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v[0]["path"], format!("{home}/newdir/owned.txt"));
    let md = std::fs::metadata(format!("{home}/newdir/owned.txt")).unwrap();
    assert_eq!((md.uid(), md.gid()), (uid, gid));
    let md = std::fs::metadata(format!("{home}/newdir")).unwrap();
    assert_eq!((md.uid(), md.gid()), (uid, gid));
    std::fs::remove_dir_all(format!("{home}/newdir")).unwrap();
}

#[tokio::test]
async fn large_upload_and_download_stream_with_bounded_memory() {
    let envd = Envd::start(&[]);
    let c = http();
    let dir = tempfile::tempdir().unwrap();
    let path = format!("{}/big.bin", dir.path().to_str().unwrap());
    const SIZE: usize = 256 * 1024 * 1024;
    let before = envd.rss_kib();
    let chunk = bytes::Bytes::from(vec![0x5a_u8; 1024 * 1024]);
    let stream = futures_util::stream::iter(
        (0..SIZE / chunk.len()).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let r = c
        .post(format!("{}/files", envd.base))
        .query(&[("path", &path)])
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), SIZE as u64);
    let mut r = c
        .get(format!("{}/files", envd.base))
        .query(&[("path", &path)])
        .send()
        .await
        .unwrap();
    let mut total = 0usize;
    while let Some(ch) = r.chunk().await.unwrap() {
        total += ch.len();
    }
    assert_eq!(total, SIZE);
    let after = envd.rss_kib();
    assert!(
        after < before + 64 * 1024,
        "envd RSS grew from {before} KiB to {after} KiB while streaming {SIZE} bytes"
    );
}

#[tokio::test]
async fn bad_input_gets_documented_errors() {
    let envd = Envd::start(&[]);
    let c = http();
    let post = |path: &str, body: &'static str| {
        c.post(format!("{}{path}", envd.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // A negative depth cannot be a uint32.
    let r = post(
        "/filesystem.Filesystem/ListDir",
        r#"{"path":"/tmp","depth":-1}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], "invalid_argument");
    // An unknown signal name.
    let r = post(
        "/process.Process/SendSignal",
        r#"{"process":{"pid":1},"signal":"SIGNAL_SIGINT"}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Not JSON at all.
    let r = post("/filesystem.Filesystem/Stat", "{{{").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // `~other` paths.
    let r = post("/filesystem.Filesystem/Stat", r#"{"path":"~nobody/x"}"#)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A huge header is refused by the HTTP layer, and envd keeps serving.
    let r = c
        .get(format!("{}/health", envd.base))
        .header("x-big", "a".repeat(512 * 1024))
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    let r = c.get(format!("{}/health", envd.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // A bad signature_expiration.
    let (s, b) = json_error(
        c.get(format!("{}/files", envd.base))
            .query(&[("path", "/etc/hostname"), ("signature_expiration", "soon")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["message"],
        "invalid signature_expiration 'soon': not an integer"
    );
}

/// Defect 9: paths no system call accepts are the client's error (400), not 500.
#[tokio::test]
async fn files_bad_paths_are_client_errors() {
    let envd = Envd::start(&[]);
    let c = http();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    let files = format!("{}/files", envd.base);
    let long = format!("{root}/{}", "n".repeat(300));
    let (s, b) = json_error(
        c.post(&files)
            .query(&[("path", &long)])
            .header("content-type", "application/octet-stream")
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    // Refused by the path check before any system call.
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["code"], 400, "{b}");
    // Through the errno mapping: a symlink loop is ELOOP, the client's to fix.
    let looped = format!("{root}/loop");
    std::os::unix::fs::symlink("loop", &looped).unwrap();
    let (s, b) = json_error(
        c.post(&files)
            .query(&[("path", &looped)])
            .header("content-type", "application/octet-stream")
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b,
        serde_json::json!({"code": 400, "message": format!("error opening {looped}: Too many levels of symbolic links (os error 40)")})
    );
    let (s, b) = json_error(
        c.get(&files)
            .query(&[("path", &looped)])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b,
        serde_json::json!({"code": 400, "message": format!("error checking path '{looped}': Too many levels of symbolic links (os error 40)")})
    );
    let nul = format!("{root}/a\0b");
    let (s, b) = json_error(
        c.post(&files)
            .query(&[("path", &nul)])
            .header("content-type", "application/octet-stream")
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["code"], 400);
    assert!(b["message"].as_str().unwrap().contains("NUL byte"), "{b}");
    // Nothing but the loop was created.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// Defect 12: an upload cut off part-way leaves the old file, and no temporary file.
#[tokio::test]
async fn interrupted_upload_keeps_the_old_file() {
    let envd = Envd::start(&[]);
    let c = http();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("keep.txt");
    std::fs::write(&target, b"old bytes").unwrap();
    let chunk = bytes::Bytes::from(vec![0x61_u8; 1024 * 1024]);
    // Three chunks, then the body breaks: the client aborts the request.
    let stream = futures_util::stream::iter((0..4).map(move |i| {
        if i < 3 {
            Ok(chunk.clone())
        } else {
            Err(std::io::Error::other("connection cut"))
        }
    }));
    let r = c
        .post(format!("{}/files", envd.base))
        .query(&[("path", target.to_str().unwrap())])
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    assert!(r.is_err() || r.is_ok_and(|r| r.status() == StatusCode::BAD_REQUEST));
    // envd notices the broken body on its own schedule.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::read_dir(dir.path()).unwrap().count() > 1 && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"old bytes");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["keep.txt"]);
}

/// Defect 12: replacing a file through a temporary keeps what writing it in place kept:
/// mode, other extended attributes, symlinks at the path, hard links.
#[tokio::test]
async fn upload_replaces_files_as_an_in_place_write_would() {
    use std::os::unix::fs::PermissionsExt as _;
    let envd = Envd::start(&[]);
    let c = http();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let upload = |path: std::path::PathBuf, body: &'static str| {
        c.post(format!("{}/files", envd.base))
            .query(&[("path", path.to_str().unwrap().to_owned())])
            .header("content-type", "application/octet-stream")
            .header("x-metadata-k", "new")
            .body(body)
            .send()
    };
    // Mode and attributes.
    let f = root.join("f.txt");
    std::fs::write(&f, b"old").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    xattr::set(&f, "user.other", b"kept").unwrap();
    xattr::set(&f, "user.e2b.stale", b"gone").unwrap();
    assert_eq!(
        upload(f.clone(), "new").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(std::fs::read(&f).unwrap(), b"new");
    assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o7777, 0o640);
    assert_eq!(
        xattr::get(&f, "user.other").unwrap().as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(xattr::get(&f, "user.e2b.stale").unwrap(), None);
    assert_eq!(
        xattr::get(&f, "user.e2b.k").unwrap().as_deref(),
        Some(&b"new"[..])
    );
    // A symlink at the path stays a symlink; its target gets the content.
    let real = root.join("real.txt");
    let link = root.join("link.txt");
    std::fs::write(&real, b"old").unwrap();
    std::os::unix::fs::symlink("real.txt", &link).unwrap();
    assert_eq!(
        upload(link.clone(), "via link").await.unwrap().status(),
        StatusCode::OK
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(&real).unwrap(), b"via link");
    // A dangling symlink gets its target created.
    let dangling = root.join("dangling");
    std::os::unix::fs::symlink("created.txt", &dangling).unwrap();
    assert_eq!(
        upload(dangling.clone(), "made").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(std::fs::read(root.join("created.txt")).unwrap(), b"made");
    // Hard links share the new content, in the same inode.
    let a = root.join("a.txt");
    let b = root.join("b.txt");
    std::fs::write(&a, b"old").unwrap();
    std::fs::hard_link(&a, &b).unwrap();
    let ino = std::fs::metadata(&a).unwrap().ino();
    assert_eq!(
        upload(a.clone(), "shared").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(std::fs::read(&b).unwrap(), b"shared");
    assert_eq!(std::fs::metadata(&a).unwrap().ino(), ino);
    assert_eq!(
        xattr::get(&b, "user.e2b.k").unwrap().as_deref(),
        Some(&b"new"[..])
    );
    // No temporary file is left anywhere.
    let mut names: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "a.txt",
            "b.txt",
            "created.txt",
            "dangling",
            "f.txt",
            "link.txt",
            "real.txt"
        ]
    );
}

/// Defect 12, ownership: an existing file of another user is given to the uploading user,
/// as the in-place write did.
#[tokio::test]
#[ignore = "needs root: creates a user"]
async fn upload_over_another_users_file_gives_it_to_the_uploader() {
    let (name, uid, gid, home) = test_user();
    let envd = Envd::start(&[]);
    let path = format!("{home}/replaced.txt");
    std::fs::write(&path, b"root's").unwrap();
    std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
    let r = http()
        .post(format!("{}/files", envd.base))
        .query(&[("path", path.as_str()), ("username", &name)])
        .header("content-type", "application/octet-stream")
        .body("mine")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let md = std::fs::metadata(&path).unwrap();
    assert_eq!((md.uid(), md.gid()), (uid, gid));
    assert_eq!(std::fs::read(&path).unwrap(), b"mine");
    std::fs::remove_file(&path).unwrap();
}
