//! OCI image bases against a real registry on loopback (Debian's `docker-registry`, started
//! by the test with its own config, once anonymous and once behind htpasswd basic auth),
//! holding an image the test makes and pushes itself: a static busybox root in a gzip'd
//! layer, and a zstd'd layer deleting a file of it through a whiteout and replacing a
//! directory through an opaque marker, with a config setting Env, User and WorkingDir.
//! A template is built from it with a RUN step and a sandbox of it checked file by file;
//! unknown tags, wrong passwords, bad references and unsupported logins fail as
//! documented. Needs root (and `docker-registry`, `busybox-static`, `apache2-utils`):
//! ignored unless run with `-- --ignored`.

mod support;

use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{TestServer, err, start};

/// A registry the test runs on 127.0.0.1, killed on drop.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `docker-registry` on a free loopback port, with basic auth for `login` when given.
fn registry(login: Option<(&str, &str)>) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut config = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
        dir.path().join("storage").display()
    );
    if let Some((user, password)) = login {
        let out = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .unwrap();
        assert!(out.status.success(), "htpasswd: {out:?}");
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, &out.stdout).unwrap();
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
            file.display()
        ));
    }
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config_path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("docker-registry (apt-get install docker-registry): {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry {
        child,
        addr,
        _dir: dir,
    }
}

/// A tar of `entries`: (path, kind, link target or contents, mode); `home/app` and
/// `opt/kept.txt` are owned by `app` (1000:1000), the rest by root.
fn tar(entries: &[(&str, tar::EntryType, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        let owner = if ["home/app", "opt/kept.txt"].contains(path) {
            1000
        } else {
            0
        };
        h.set_uid(owner);
        h.set_gid(owner);
        h.set_mtime(1_700_000_000);
        match kind {
            tar::EntryType::Symlink => {
                h.set_size(0);
                b.append_link(&mut h, path, std::str::from_utf8(data).unwrap())
                    .unwrap();
            }
            _ => {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, *data).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n";

/// The image's layers: a busybox root (gzip), with a broken loader and C library at the
/// host's paths, and a change over it (zstd).
fn layers() -> Vec<ImageLayer> {
    use tar::EntryType::{Directory as D, Regular as F, Symlink as L};
    let busybox = std::fs::read("/bin/busybox")
        .unwrap_or_else(|e| panic!("/bin/busybox (apt-get install busybox-static): {e}"));
    let applets = Command::new("/bin/busybox").arg("--list").output().unwrap();
    let applets: Vec<String> = String::from_utf8(applets.stdout)
        .unwrap()
        .lines()
        .filter(|a| *a != "busybox")
        .map(|a| format!("bin/{a}"))
        .collect();
    let mut root: Vec<(&str, tar::EntryType, &[u8], u32)> = vec![
        ("bin", D, b"", 0o755),
        ("bin/busybox", F, &busybox, 0o755),
        ("etc", D, b"", 0o755),
        ("etc/passwd", F, PASSWD, 0o644),
        ("etc/group", F, b"root:x:0:\napp:x:1000:\n", 0o644),
        ("etc/doomed", F, b"whited out\n", 0o644),
        ("home", D, b"", 0o755),
        ("opt", D, b"", 0o755),
        ("opt/old", D, b"", 0o755),
        ("opt/old/a.txt", F, b"a\n", 0o644),
        ("opt/old/b.txt", F, b"b\n", 0o644),
        ("opt/kept.txt", F, b"kept\n", 0o600),
        // A C library of its own that cannot run the server's executable (as an older
        // glibc cannot): envd must start on the host's loader and libraries anyway.
        ("lib64", D, b"", 0o755),
        ("lib64/ld-linux-x86-64.so.2", F, b"not a loader", 0o755),
        ("lib", D, b"", 0o755),
        ("lib/x86_64-linux-gnu", D, b"", 0o755),
        (
            "lib/x86_64-linux-gnu/libc.so.6",
            F,
            b"not a C library",
            0o755,
        ),
    ];
    for a in &applets {
        root.push((a, L, b"busybox", 0o777));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar(&root)).unwrap();
    let base = ImageLayer::new(
        gz.finish().unwrap(),
        "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        None,
    );
    let change = tar(&[
        ("etc/.wh.doomed", F, b"", 0o644),
        ("home/app", D, b"", 0o755),
        ("opt/old", D, b"", 0o755),
        ("opt/old/.wh..wh..opq", F, b"", 0o644),
        ("opt/old/new.txt", F, b"new\n", 0o644),
    ]);
    let zstd =
        ruzstd::encoding::compress_to_vec(&change[..], ruzstd::encoding::CompressionLevel::Fastest);
    let change = ImageLayer::new(
        zstd,
        "application/vnd.oci.image.layer.v1.tar+zstd".into(),
        None,
    );
    vec![base, change]
}

/// Pushes the test image, with `GREETING` and `User` in its config, to `reference` on the
/// loopback registry `addr`.
async fn push(addr: &str, reference: &str, (greeting, user): (&str, &str), auth: &RegistryAuth) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![addr.to_owned()]),
        ..ClientConfig::default()
    });
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin", format!("GREETING={greeting}")],
            "User": user,
            "WorkingDir": "/home/app"
        },
        "rootfs": {"type": "layers", "diff_ids": []}
    });
    let config = Config::oci_v1(serde_json::to_vec(&config).unwrap(), None);
    let reference: oci_client::Reference = reference.parse().unwrap();
    client
        .push(&reference, &layers(), config, auth, None)
        .await
        .unwrap_or_else(|e| panic!("pushing {reference}: {e}"));
}

/// Requests a build of `name`; returns (template id, build id).
async fn request(t: &TestServer, name: &str) -> (String, String) {
    let r = t
        .post("/v3/templates", &json!({ "name": name }).to_string())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let v = r.json();
    (
        v["templateID"].as_str().unwrap().to_owned(),
        v["buildID"].as_str().unwrap().to_owned(),
    )
}

/// Starts a build and waits until it ends; returns the final status and its log messages.
async fn build(t: &TestServer, name: &str, start: Value) -> (Value, Vec<String>) {
    let (id, build) = request(t, name).await;
    let r = t
        .post(
            &format!("/v2/templates/{id}/builds/{build}"),
            &start.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = t
            .get(&format!("/templates/{id}/builds/{build}/status"))
            .await
            .json();
        if matches!(v["status"].as_str(), Some("ready" | "error")) {
            let logs = v["logEntries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["message"].as_str().unwrap().to_owned())
                .collect();
            return (v, logs);
        }
        assert!(Instant::now() < deadline, "build did not end: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `sh -c cmd` in sandbox `id` as `user` (the sandbox's default when `None`); returns
/// its stdout.
async fn run(t: &TestServer, id: &str, token: &str, user: Option<&str>, cmd: &str) -> String {
    let body = support::envelope(&json!({"process": {"cmd": "/bin/sh", "args": ["-c", cmd]}}));
    let mut req = t
        .envd(Method::POST, id, "/process.Process/Start")
        .header("X-Access-Token", token)
        .header("content-type", "application/connect+json");
    if let Some(u) = user {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{u}:"));
        req = req.header("Authorization", format!("Basic {basic}"));
    }
    let mut resp = req.body(body).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut raw = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        raw.extend_from_slice(&c);
    }
    let mut out = Vec::new();
    let mut rest = &raw[..];
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let msg: Value = serde_json::from_slice(&rest[5..5 + len]).unwrap();
        if let Some(s) = msg["event"]["data"]["stdout"].as_str() {
            out.extend(base64::engine::general_purpose::STANDARD.decode(s).unwrap());
        }
        rest = &rest[5 + len..];
    }
    String::from_utf8(out).unwrap()
}

fn oci_layers(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("layers"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("oci-"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: builds run in sandboxes (namespaces, mounts, cgroups); and docker-registry, busybox-static"]
async fn an_image_from_a_loopback_registry_is_a_template_base() {
    let reg = registry(None);
    let image = format!("{}/test/img:1", reg.addr);
    push(
        &reg.addr,
        &image,
        ("hello from the image", "app"),
        &RegistryAuth::Anonymous,
    )
    .await;
    let t = start().await;

    let steps = json!([{"type": "RUN", "args": ["echo built > made-by-run; id -un >> made-by-run"], "force": false}]);
    let (end, logs) = build(
        &t,
        "from-image",
        json!({"fromImage": image, "force": false, "steps": steps}),
    )
    .await;
    assert_eq!(end["status"], "ready", "{end} {logs:?}");
    assert!(
        logs.iter().any(
            |m| m.starts_with(&format!("Pulling image {image} (sha256:"))
                && m.ends_with("): 2 layers")
        ),
        "{logs:?}"
    );
    assert_eq!(
        logs.iter()
            .filter(|m| m.starts_with("Pulled layer sha256:"))
            .count(),
        2,
        "{logs:?}"
    );
    assert_eq!(oci_layers(t.dir.path()), 2);

    let sb = t
        .create(r#"{"templateID":"from-image","timeout":120}"#)
        .await;
    let sid = sb["sandboxID"].as_str().unwrap();
    let token = sb["envdAccessToken"].as_str().unwrap();
    // The config's user, workdir and env; the RUN step ran as that user there.
    let got = run(
        &t,
        sid,
        token,
        None,
        "id -un; pwd; echo \"$GREETING\"; cat made-by-run; stat -c '%U %a' made-by-run",
    )
    .await;
    assert_eq!(
        got,
        "app\n/home/app\nhello from the image\nbuilt\napp\napp 644\n"
    );
    // As root: the whiteout and the opaque directory applied, the rest of the lower layer kept.
    let got = run(
        &t,
        sid,
        token,
        Some("root"),
        "id -un; ls /etc/doomed 2>&1; ls /opt/old; cat /opt/old/new.txt /opt/kept.txt; \
         stat -c '%U:%G %a' /opt/kept.txt; echo written > /root/by-root; cat /root/by-root",
    )
    .await;
    assert_eq!(
        got,
        "root\nls: /etc/doomed: No such file or directory\nnew.txt\nnew\nkept\napp:app 600\nwritten\n"
    );
    // The host's extra CAs are trusted (the image has no bundle of its own) and pip and npm
    // are pointed at the bundle.
    let host_cas =
        e2b_local::template::trust::extra_cas(Path::new(e2b_local::template::trust::HOST_CA_DIR));
    let bundle = run(
        &t,
        sid,
        token,
        None,
        "cat /etc/ssl/certs/ca-certificates.crt",
    )
    .await;
    assert_eq!(bundle, host_cas);
    let settings = run(&t, sid, token, None, "cat /etc/pip.conf /etc/npmrc").await;
    if host_cas.is_empty() {
        assert_eq!(settings, "");
    } else {
        assert_eq!(
            settings,
            "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\ncafile=/etc/ssl/certs/ca-certificates.crt\n"
        );
    }
    // The files API reads and writes in the image's filesystem.
    let r = t
        .envd(
            Method::GET,
            sid,
            "/files?path=/opt/old/new.txt&username=root",
        )
        .header("X-Access-Token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "new\n");
    t.kill(sid).await;

    // The same image again: nothing is downloaded but its manifest.
    let (end, logs) = build(
        &t,
        "again",
        json!({"fromImage": image, "force": false, "steps": []}),
    )
    .await;
    assert_eq!(end["status"], "ready", "{end} {logs:?}");
    assert!(
        logs.iter()
            .any(|m| m.starts_with(&format!("Using image {image} (sha256:"))
                && m.ends_with("), pulled before")),
        "{logs:?}"
    );
    assert!(
        !logs.iter().any(|m| m.starts_with("Pulled layer")),
        "{logs:?}"
    );
    assert_eq!(oci_layers(t.dir.path()), 2);

    // Another image with the same layers (another config, a numeric user): its layers are
    // stored once.
    let other = format!("{}/test/other:1", reg.addr);
    push(
        &reg.addr,
        &other,
        ("hello from the other", "1000:1000"),
        &RegistryAuth::Anonymous,
    )
    .await;
    let (end, logs) = build(
        &t,
        "other",
        json!({"fromImage": other, "force": false, "steps": []}),
    )
    .await;
    assert_eq!(end["status"], "ready", "{end} {logs:?}");
    assert_eq!(
        logs.iter()
            .filter(|m| m.starts_with("Layer sha256:") && m.ends_with(" is already here"))
            .count(),
        2,
        "{logs:?}"
    );
    assert_eq!(oci_layers(t.dir.path()), 2);
    let sb = t.create(r#"{"templateID":"other","timeout":120}"#).await;
    let sid = sb["sandboxID"].as_str().unwrap();
    let token = sb["envdAccessToken"].as_str().unwrap();
    assert_eq!(
        run(&t, sid, token, None, "echo \"$GREETING\"; id -un").await,
        "hello from the other\napp\n"
    );
    t.kill(sid).await;

    // An unknown tag fails the build with the registry's answer.
    let missing = format!("{}/test/img:nope", reg.addr);
    let (end, _) = build(
        &t,
        "missing",
        json!({"fromImage": missing, "force": false, "steps": []}),
    )
    .await;
    assert_eq!(end["status"], "error");
    assert_eq!(
        end["reason"]["message"],
        format!(
            "pulling image '{missing}' from {}: the manifest: Registry error: url http://{}/v2/test/img/manifests/nope, envelope: OCI API errors: [OCI API error: manifest unknown]",
            reg.addr, reg.addr
        )
    );
    assert_eq!(end["reason"]["step"], "base");

    // So does a registry nobody answers on (port 1 of loopback is closed).
    let (end, _) = build(
        &t,
        "unreachable",
        json!({"fromImage": "127.0.0.1:1/test/img:1", "force": false, "steps": []}),
    )
    .await;
    assert_eq!(end["status"], "error");
    assert_eq!(
        end["reason"]["message"],
        "pulling image '127.0.0.1:1/test/img:1' from 127.0.0.1:1: the manifest: error sending request for url (http://127.0.0.1:1/v2/test/img/manifests/1): client error (Connect): tcp connect error: Connection refused (os error 111)"
    );

    // Bad input is a 400 at start.
    let (id, b) = request(&t, "bad").await;
    for (body, msg) in [
        (
            json!({"fromImage": "Not A Reference", "force": false, "steps": []}),
            "fromImage 'Not A Reference' is not a valid image reference: invalid reference format",
        ),
        (
            json!({"fromImage": image, "fromImageRegistry": {"type": "aws", "awsAccessKeyId": "a", "awsSecretAccessKey": "s", "awsRegion": "r"}, "force": false, "steps": []}),
            "fromImageRegistry: type 'aws' is not supported by e2b-local yet (use type 'registry' with a username and password)",
        ),
        (
            json!({"fromImage": image, "fromImageRegistry": {"type": "gcp", "serviceAccountJson": "{}"}, "force": false, "steps": []}),
            "fromImageRegistry: type 'gcp' is not supported by e2b-local yet (use type 'registry' with a username and password)",
        ),
        (
            json!({"fromTemplate": "base", "fromImageRegistry": {"type": "registry", "username": "u", "password": "p"}, "force": false, "steps": []}),
            "fromImageRegistry: the registry login is for fromImage, which is not given",
        ),
    ] {
        let r = t
            .post(&format!("/v2/templates/{id}/builds/{b}"), &body.to_string())
            .await;
        assert_eq!(
            (r.status, r.json()),
            (StatusCode::BAD_REQUEST, err(400, msg)),
            "{body}"
        );
    }

    // `serve --no-host-cas`: the image's own trust store and settings (it has none).
    let mut t = t;
    let dir = std::mem::replace(&mut t.dir, tempfile::tempdir().unwrap());
    t.shutdown().await;
    let t = support::start_with(dir, |b| b.trust_host_cas(false)).await;
    let sb = t
        .create(r#"{"templateID":"from-image","timeout":60}"#)
        .await;
    let (sid, token) = (
        sb["sandboxID"].as_str().unwrap(),
        sb["envdAccessToken"].as_str().unwrap(),
    );
    let got = run(
        &t,
        sid,
        token,
        None,
        "test -e /etc/ssl/certs/ca-certificates.crt || echo no bundle; test -e /etc/pip.conf || echo no pip.conf",
    )
    .await;
    assert_eq!(got, "no bundle\nno pip.conf\n");
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: builds run in sandboxes (namespaces, mounts, cgroups); and docker-registry, busybox-static, apache2-utils"]
async fn a_registry_login_is_used_and_a_wrong_password_fails_the_build() {
    let reg = registry(Some(("tester", "right")));
    let image = format!("{}/private/img:1", reg.addr);
    push(
        &reg.addr,
        &image,
        ("hello", "app"),
        &RegistryAuth::Basic("tester".into(), "right".into()),
    )
    .await;
    let t = start().await;
    let login =
        |password: &str| json!({"type": "registry", "username": "tester", "password": password});

    let (end, logs) = build(
        &t,
        "private",
        json!({"fromImage": image, "fromImageRegistry": login("right"), "force": false, "steps": []}),
    )
    .await;
    assert_eq!(end["status"], "ready", "{end} {logs:?}");

    for (name, registry) in [("wrong", Some(login("wrong"))), ("anonymous", None)] {
        let mut start = json!({"fromImage": image, "force": false, "steps": []});
        if let Some(r) = registry {
            start["fromImageRegistry"] = r;
        }
        let (end, _) = build(&t, name, start).await;
        assert_eq!(end["status"], "error", "{name}");
        assert_eq!(
            end["reason"]["message"],
            format!(
                "pulling image '{image}' from {}: the manifest: Not authorized: url http://{}/v2/private/img/manifests/1",
                reg.addr, reg.addr
            ),
            "{name}"
        );
    }
    t.shutdown().await;
}
