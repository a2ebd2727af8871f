//! The `debian` template, built with mmdebstrap from Debian's package archive, as `base`
//! (`serve --base debian`): what E2B's base image offers holds in its sandboxes. Needs root
//! and Debian's package archive; `scripts/test` runs it when the archive answers.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use support::{err, start_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and Debian's package archive (scripts/test runs it when the archive answers)"]
async fn debian_as_base_has_what_e2b_base_has() {
    let t = start_with(tempfile::tempdir().unwrap(), |b| b.debian_base(true)).await;
    // Built in the background from start-up; creates get 503 until then.
    let first = t
        .post("/sandboxes", r#"{"templateID":"base","timeout":600}"#)
        .await;
    assert_eq!(
        (first.status, first.json()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            err(
                503,
                "template 'debian' is being built from Debian's package archive (a few minutes on first use); retry in a moment"
            )
        )
    );
    let deadline = Instant::now() + Duration::from_secs(1200);
    let sb = loop {
        let r = t
            .post("/sandboxes", r#"{"templateID":"base","timeout":600}"#)
            .await;
        if r.status == StatusCode::CREATED {
            break r.json();
        }
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
        assert!(
            Instant::now() < deadline,
            "debian was not built in 20 minutes"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let (id, token) = (
        sb["sandboxID"].as_str().unwrap(),
        sb["envdAccessToken"].as_str().unwrap(),
    );
    let script = "id -un; sudo -n id -un; python -c 'import sys; print(sys.version_info[0])'; \
        for c in pip node npm git curl; do command -v $c; done; \
        . /etc/os-release; echo $VERSION_CODENAME; pwd; \
        python -c 'import ssl; print(ssl.get_default_verify_paths().openssl_cafile)'; \
        grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-certificates.crt | sed 's/^[1-9][0-9]*$/certs/'";
    assert_eq!(
        support::stdout_of(&t, id, token, script).await,
        "user\nroot\n3\n/usr/bin/pip\n/usr/bin/node\n/usr/bin/npm\n/usr/bin/git\n/usr/bin/curl\n\
         bookworm\n/home/user\n/usr/lib/ssl/cert.pem\ncerts\n"
    );
    // The host's extra CAs are in the template's trust store.
    for entry in std::fs::read_dir(e2b_local::template::trust::HOST_CA_DIR)
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".crt") {
            let linked = t
                .dir
                .path()
                .join("templates/debian/root/etc/ssl/certs")
                .join(format!("{stem}.pem"));
            assert!(linked.exists(), "{} missing", linked.display());
        }
    }
    t.kill(id).await;
    // `debian` is a template of its own too, listed once built.
    let listed = t.get("/templates").await.json();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["names"][0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["base", "debian"]);
    t.shutdown().await;
}
