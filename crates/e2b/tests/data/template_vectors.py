"""Makes tests/data/template_vectors.json: what the official Python SDK 2.63 produces for
templates using every builder method, and its files hashes over a fixed directory tree.
`tests/template_vectors.rs` builds the same tree and templates with the Rust SDK and must
produce the same values, so both SDKs share the server's build cache.

Regenerate (from the workspace root) with:

    target/compat/py-2.63.0/bin/python crates/e2b/tests/data/template_vectors.py \
        > crates/e2b/tests/data/template_vectors.json

The tree below must stay equal to `make_tree` in `tests/template_vectors.rs`.
"""

import json
import os
import sys
import tempfile

from e2b import (
    Template,
    wait_for_file,
    wait_for_port,
    wait_for_process,
    wait_for_timeout,
    wait_for_url,
)
from e2b.template.utils import calculate_files_hash, get_all_files_in_path

# (path, kind, content or link target, mode); directories and files are chmod-ed so the
# hashed st_mode does not depend on the umask.
TREE = [
    ("app", "dir", None, 0o755),
    ("app/data", "dir", None, 0o700),
    ("ignored_dir", "dir", None, 0o755),
    (".hidden", "dir", None, 0o750),
    ("empty", "dir", None, 0o755),
    (".dockerignore", "file", "*.log\n# a comment\nignored_dir/\n!ignored_dir/keep.txt\n", 0o644),
    ("app/main.py", "file", "print('hi')\n", 0o644),
    ("app/run.sh", "file", "#!/bin/sh\necho run\n", 0o755),
    ("app/data/config.json", "file", '{"a": 1}\n', 0o600),
    ("app/debug.log", "file", "nested logs are not matched by *.log\n", 0o644),
    ("root.log", "file", "ignored\n", 0o644),
    ("notes.tmp", "file", "ignored by the template's own pattern\n", 0o644),
    ("ignored_dir/skip.txt", "file", "skipped\n", 0o644),
    ("ignored_dir/keep.txt", "file", "re-included\n", 0o644),
    (".hidden/secret", "file", "dot files are copied\n", 0o400),
    ("gcp.json", "file", '{"type": "service_account"}', 0o644),
    ("link_to_main", "symlink", "app/main.py", None),
    ("broken_link", "symlink", "does/not/exist", None),
    ("dirlink", "symlink", "app", None),
]


def make_tree(root):
    for path, kind, content, mode in TREE:
        full = os.path.join(root, path)
        if kind == "dir":
            os.makedirs(full, exist_ok=True)
        elif kind == "file":
            with open(full, "w") as f:
                f.write(content)
        else:
            os.symlink(content, full)
        if mode is not None:
            os.chmod(full, mode)


def templates(ctx):
    t = lambda: Template(file_context_path=ctx, file_ignore_patterns=["*.tmp"])
    every_step = (
        t()
        .from_template("base")
        .copy("app/main.py", "/app/main.py")
        .copy("app", "/app", user="user", mode=0o755)
        .copy("app/*.py", "/py/", force_upload=True)
        .copy(".", "/ctx")
        .copy("**/*.json", "/json/", resolve_symlinks=True)
        .copy("dirlink", "/dl", resolve_symlinks=True)
        .copy("link_to_main", "/l")
        .copy("broken_link", "/b")
        .copy_items(
            [
                {"src": "app/run.sh", "dest": "/bin/run.sh", "mode": 0o700},
                {"src": ["app/data", ".hidden"], "dest": "/d", "user": "root"},
            ]
        )
        .set_envs({"A": "1", "B": "two words"})
        .set_envs({})
        .set_workdir("/app")
        .set_user("root")
        .run_cmd("echo hi")
        .run_cmd(["a", "b"], user="user")
        .apt_install(["curl", "git"])
        .apt_install("vim", no_install_recommends=True, fix_missing=True)
        .pip_install(["numpy"])
        .pip_install()
        .pip_install("requests", g=False)
        .npm_install(["express"])
        .npm_install("typescript", g=True)
        .npm_install(dev=True)
        .bun_install(["hono"], dev=True)
        .bun_install(g=True)
        .git_clone(
            "https://github.com/e2b-dev/e2b.git", "/src/e2b", branch="main", depth=1, user="user"
        )
        .git_clone("https://example.com/y z.git")
        .remove("/tmp/x")
        .remove(["/a b", "/c"], force=True, recursive=True, user="root")
        .rename("/a", "/b")
        .rename("/c d", "/e", force=True, user="user")
        .make_dir("/data")
        .make_dir(["/x", "/y"], mode=0o700, user="root")
        .make_symlink("/usr/bin/python3", "/usr/bin/python")
        .make_symlink("/a", "/b", user="root", force=True)
        .skip_cache()
        .run_cmd("date")
        .copy("app/main.py", "/forced.py")
        .set_start_cmd("python -m http.server 8000", wait_for_port(8000))
    )
    dockerfile = """\
ARG VERSION=1
FROM python:3.12 AS build
ENV PATH="/opt/bin:$PATH" MODE=prod
ARG PLAIN
RUN pip install \\
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
"""
    return {
        "every_step": every_step,
        "registry": t().from_image("ghcr.io/acme/app:1", "me", "s3cret").run_cmd("true"),
        "aws": t().from_aws_registry("1.dkr.ecr.eu-west-1.amazonaws.com/a:1", "AKIA", "sk", "eu-west-1"),
        "gcp": t().from_gcp_registry("us-docker.pkg.dev/p/r/a:1", "gcp.json"),
        "dockerfile": t().from_dockerfile(dockerfile),
        "dockerfile_shell_cmd": t().from_dockerfile("FROM node:20\nCMD npm start\n"),
        "skip_cache_before_base": t().skip_cache().from_debian_image().run_cmd("true"),
        "base_image": t().from_base_image(),
        "debian": t().from_debian_image("bookworm"),
        "ubuntu": t().from_ubuntu_image(),
        "fedora": t().from_fedora_image(),
        "alpine": t().from_alpine_image(),
        "arch": t().from_arch_image(),
        "python": t().from_python_image(),
        "node": t().from_node_image("22"),
        "bun": t().from_bun_image(),
        "wait_for_url": t().from_template("base").set_ready_cmd(wait_for_url("http://localhost:3000/health?a=1&b=2")),
        "wait_for_url_201": t().from_template("base").set_ready_cmd(wait_for_url("http://localhost/", 201)),
        "wait_for_process": t().from_template("base").set_ready_cmd(wait_for_process("my daemon")),
        "wait_for_file": t().from_template("base").set_ready_cmd(wait_for_file("/tmp/ready file")),
        "wait_for_timeout_short": t().from_template("base").set_ready_cmd(wait_for_timeout(500)),
        "wait_for_timeout": t().from_template("base").set_start_cmd("./serve", wait_for_timeout(5500)),
        "ready_string": t().from_template("base").set_ready_cmd("test -e /ok"),
    }


# (src, dest, ignore patterns, resolve_symlinks): calculate_files_hash's own results.
HASH_CASES = [
    ("app/main.py", "/app/main.py", [], False),
    ("app", "/app", [], False),
    (".", "/ctx", [], False),
    (".", "/ctx", ["*.log", "ignored_dir/", "!ignored_dir/keep.txt"], False),
    ("**", "/all", ["app/data"], False),
    ("**/*.py", "/py", [], False),
    ("app/*", "/a", ["!app/debug.log", "app/*.log"], False),
    ("*", "/top", ["{ctx}/app", "/elsewhere"], False),
    ("dirlink", "/dl", [], True),
    ("dirlink", "/dl", [], False),
    ("link_to_main", "/l", [], True),
    ("broken_link", "/b", [], True),
    ("./app/../app/run.sh", "/r", [], False),
    ("empty", "/e", [], False),
]


def main():
    with tempfile.TemporaryDirectory() as root:
        ctx = os.path.join(root, "ctx")
        os.mkdir(ctx)
        make_tree(ctx)
        # calculate_files_hash gets its ignore patterns as arguments: hash a tree without a
        # .dockerignore, as a Rust template (which always reads one) must see it.
        bare = os.path.join(root, "bare")
        os.mkdir(bare)
        make_tree(bare)
        os.remove(os.path.join(bare, ".dockerignore"))
        out = {
            "templates": {
                name: json.loads(Template.to_json(tpl)) for name, tpl in templates(ctx).items()
            },
            "files_hashes": [
                {
                    "src": src,
                    "dest": dest,
                    "ignore": ignore,
                    "resolve_symlinks": resolve,
                    "hash": calculate_files_hash(
                        src, dest, bare, [p.format(ctx=bare) for p in ignore], resolve, None
                    ),
                }
                for src, dest, ignore, resolve in HASH_CASES
            ],
            # Template.to_dockerfile of the templates that have a base image.
            "dockerfiles": {
                name: Template.to_dockerfile(tpl)
                for name, tpl in templates(ctx).items()
                if tpl._template._base_template is None
            },
            # What each COPY source puts in the upload archive, relative to the context.
            "archive_entries": {
                src: [
                    os.path.relpath(f, ctx)
                    for f in get_all_files_in_path(
                        src, ctx, ["*.log", "ignored_dir/", "!ignored_dir/keep.txt"], True
                    )
                ]
                for src in [".", "app", "**/*.py", "dirlink"]
            },
        }
        json.dump(out, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
