//! The Rust `Template` against the official Python SDK 2.63: the same templates must give
//! the same build steps (type, args, force, files hash) and the same files hashes, so both
//! SDKs share the server's build cache. The expected values come from
//! `tests/data/template_vectors.py` (see there to regenerate them).

use std::collections::BTreeMap;
use std::path::Path;

use e2b::template::{
    AptInstallOptions, CopyItem, CopyOptions, GcpServiceAccount, GitCloneOptions, MakeDirOptions,
    MoveOptions, NodeInstallOptions, PipInstallOptions, RemoveOptions, Template, wait_for_file,
    wait_for_port, wait_for_process, wait_for_timeout, wait_for_url,
};
use serde_json::Value;

mod template_support;

use template_support::{make_tree, vectors};

const DOCKERFILE: &str = r#"ARG VERSION=1
FROM python:3.12 AS build
ENV PATH="/opt/bin:$PATH" MODE=prod
ARG PLAIN
RUN pip install \
    flask
RUN ["echo", "exec form", "$HOME"]
COPY --chown=user:user --chmod=0755 app/run.sh /usr/local/bin/run.sh
COPY app/main.py app/data /srv/
ADD app/data/config.json /etc/app.json
WORKDIR /srv
USER user
EXPOSE 8000
LABEL a=b
ENTRYPOINT ["python", "-m"]
CMD ["http.server", "8000"]
"#;

fn templates(ctx: &Path) -> BTreeMap<&'static str, Template> {
    let t = || {
        Template::new()
            .file_context_path(ctx)
            .file_ignore_patterns(["*.tmp"])
    };
    let user = |u: &str| Some(u.to_owned());
    let every_step = t()
        .from_template("base")
        .copy("app/main.py", "/app/main.py")
        .copy_with(
            "app",
            "/app",
            CopyOptions {
                user: user("user"),
                mode: Some(0o755),
                ..Default::default()
            },
        )
        .copy_with(
            "app/*.py",
            "/py/",
            CopyOptions {
                force_upload: true,
                ..Default::default()
            },
        )
        .copy(".", "/ctx")
        .copy_with(
            "**/*.json",
            "/json/",
            CopyOptions {
                resolve_symlinks: Some(true),
                ..Default::default()
            },
        )
        .copy_with(
            "dirlink",
            "/dl",
            CopyOptions {
                resolve_symlinks: Some(true),
                ..Default::default()
            },
        )
        .copy("link_to_main", "/l")
        .copy("broken_link", "/b")
        .copy_items([
            CopyItem {
                src: vec!["app/run.sh".into()],
                dest: "/bin/run.sh".into(),
                options: CopyOptions {
                    mode: Some(0o700),
                    ..Default::default()
                },
            },
            CopyItem {
                src: vec!["app/data".into(), ".hidden".into()],
                dest: "/d".into(),
                options: CopyOptions {
                    user: user("root"),
                    ..Default::default()
                },
            },
        ])
        .set_envs([("A", "1"), ("B", "two words")])
        .set_envs(Vec::<(String, String)>::new())
        .set_workdir("/app")
        .set_user("root")
        .run_cmd("echo hi")
        .run_cmds(["a", "b"], Some("user"))
        .apt_install(["curl", "git"])
        .apt_install_with(
            ["vim"],
            AptInstallOptions {
                no_install_recommends: true,
                fix_missing: true,
            },
        )
        .pip_install(["numpy"])
        .pip_install(Vec::<String>::new())
        .pip_install_with(["requests"], PipInstallOptions { global: false })
        .npm_install(["express"])
        .npm_install_with(
            ["typescript"],
            NodeInstallOptions {
                global: true,
                dev: false,
            },
        )
        .npm_install_with(
            Vec::<String>::new(),
            NodeInstallOptions {
                global: false,
                dev: true,
            },
        )
        .bun_install_with(
            ["hono"],
            NodeInstallOptions {
                global: false,
                dev: true,
            },
        )
        .bun_install_with(
            Vec::<String>::new(),
            NodeInstallOptions {
                global: true,
                dev: false,
            },
        )
        .git_clone_with(
            "https://github.com/e2b-dev/e2b.git",
            GitCloneOptions {
                path: Some("/src/e2b".into()),
                branch: Some("main".into()),
                depth: Some(1),
                user: user("user"),
            },
        )
        .git_clone("https://example.com/y z.git")
        .remove(["/tmp/x"])
        .remove_with(
            ["/a b", "/c"],
            RemoveOptions {
                force: true,
                recursive: true,
                user: user("root"),
            },
        )
        .rename("/a", "/b")
        .rename_with(
            "/c d",
            "/e",
            MoveOptions {
                force: true,
                user: user("user"),
            },
        )
        .make_dir(["/data"])
        .make_dir_with(
            ["/x", "/y"],
            MakeDirOptions {
                mode: Some(0o700),
                user: user("root"),
            },
        )
        .make_symlink("/usr/bin/python3", "/usr/bin/python")
        .make_symlink_with(
            "/a",
            "/b",
            MoveOptions {
                force: true,
                user: user("root"),
            },
        )
        .skip_cache()
        .run_cmd("date")
        .copy("app/main.py", "/forced.py")
        .set_start_cmd("python -m http.server 8000", wait_for_port(8000));
    let base = || t().from_template("base");
    BTreeMap::from([
        ("every_step", every_step),
        (
            "registry",
            t().from_image_with_credentials("ghcr.io/acme/app:1", "me", "s3cret")
                .run_cmd("true"),
        ),
        (
            "aws",
            t().from_aws_registry(
                "1.dkr.ecr.eu-west-1.amazonaws.com/a:1",
                "AKIA",
                "sk",
                "eu-west-1",
            ),
        ),
        (
            "gcp",
            t().from_gcp_registry(
                "us-docker.pkg.dev/p/r/a:1",
                GcpServiceAccount::File("gcp.json".into()),
            ),
        ),
        ("dockerfile", t().from_dockerfile(DOCKERFILE)),
        (
            "dockerfile_shell_cmd",
            t().from_dockerfile("FROM node:20\nCMD npm start\n"),
        ),
        (
            "skip_cache_before_base",
            t().skip_cache().from_debian_image(None).run_cmd("true"),
        ),
        ("base_image", t().from_base_image()),
        ("debian", t().from_debian_image(Some("bookworm"))),
        ("ubuntu", t().from_ubuntu_image(None)),
        ("fedora", t().from_fedora_image(None)),
        ("alpine", t().from_alpine_image(None)),
        ("arch", t().from_arch_image(None)),
        ("python", t().from_python_image(None)),
        ("node", t().from_node_image(Some("22"))),
        ("bun", t().from_bun_image(None)),
        (
            "wait_for_url",
            base().set_ready_cmd(wait_for_url("http://localhost:3000/health?a=1&b=2", 200)),
        ),
        (
            "wait_for_url_201",
            base().set_ready_cmd(wait_for_url("http://localhost/", 201)),
        ),
        (
            "wait_for_process",
            base().set_ready_cmd(wait_for_process("my daemon")),
        ),
        (
            "wait_for_file",
            base().set_ready_cmd(wait_for_file("/tmp/ready file")),
        ),
        (
            "wait_for_timeout_short",
            base().set_ready_cmd(wait_for_timeout(500)),
        ),
        (
            "wait_for_timeout",
            base().set_start_cmd("./serve", wait_for_timeout(5500)),
        ),
        ("ready_string", base().set_ready_cmd("test -e /ok")),
    ])
}

#[test]
fn every_builder_method_gives_the_python_sdks_json() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    make_tree(&ctx);
    let expected = vectors();
    let expected = expected["templates"].as_object().unwrap();
    let ours = templates(&ctx);
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (name, template) in &ours {
        let json: Value = serde_json::from_str(&template.to_json().unwrap()).unwrap();
        let want = &expected[*name];
        if let (Some(got), Some(want_steps)) = (json["steps"].as_array(), want["steps"].as_array())
        {
            for (i, (g, w)) in got.iter().zip(want_steps).enumerate() {
                assert_eq!(g, w, "template {name}, step {i}");
            }
        }
        assert_eq!(&json, want, "template {name}");
    }
}

#[test]
fn files_hashes_are_the_python_sdks() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    make_tree(&ctx);
    // calculate_files_hash is given the patterns only (no .dockerignore): move it away.
    std::fs::remove_file(ctx.join(".dockerignore")).unwrap();
    let vectors = vectors();
    for case in vectors["files_hashes"].as_array().unwrap() {
        let src = case["src"].as_str().unwrap();
        let ignore: Vec<String> = case["ignore"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().replace("{ctx}", ctx.to_str().unwrap()))
            .collect();
        let template = Template::new()
            .file_context_path(&ctx)
            .file_ignore_patterns(ignore)
            .copy_with(
                src,
                case["dest"].as_str().unwrap(),
                CopyOptions {
                    resolve_symlinks: case["resolve_symlinks"].as_bool(),
                    ..Default::default()
                },
            );
        let json: Value = serde_json::from_str(&template.to_json().unwrap()).unwrap();
        assert_eq!(json["steps"][0]["filesHash"], case["hash"], "{case}");
    }
}

#[test]
fn dockerfiles_are_the_python_sdks() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    make_tree(&ctx);
    let vectors = vectors();
    let expected = vectors["dockerfiles"].as_object().unwrap();
    for (name, template) in templates(&ctx) {
        match expected.get(name) {
            Some(want) => assert_eq!(
                template.to_dockerfile().unwrap(),
                want.as_str().unwrap(),
                "template {name}"
            ),
            // Built on another template: only the build API can build it.
            None => {
                let err = template.to_dockerfile().unwrap_err();
                assert!(err.is_template(), "template {name}: {err:?}");
                assert!(
                    err.to_string()
                        .starts_with("Cannot convert template built from another template"),
                    "template {name}: {err}"
                );
            }
        }
    }
}
