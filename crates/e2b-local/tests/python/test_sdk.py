"""The official E2B Python SDK against e2b-local: every check asserts exact values.

Run through run.sh, which exports E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY and E2B_DOMAIN,
and E2B_LOCAL_EXPECT_ROOTLESS=1 when the server runs rootless without cgroups (pause answers
501, metrics report the host's CPUs and memory).
Prints one line per test and ends with `N passed, N failed`; exits 1 on any failure.
"""

import json
import os
import sys
import time
import traceback
import urllib.error
import urllib.request
import uuid

from e2b import Sandbox
from e2b import CommandExitException, SandboxException, SandboxQuery
from e2b import RateLimitException, SandboxNotRunningException, TimeoutException

TESTS = []
ROOTLESS = os.environ.get("E2B_LOCAL_EXPECT_ROOTLESS") == "1"


def test(fn):
    TESTS.append(fn)
    return fn


@test
def create_run_and_kill():
    sbx = Sandbox.create(timeout=60)
    try:
        assert len(sbx.sandbox_id) == 21 and sbx.sandbox_id.startswith("i"), sbx.sandbox_id
        r = sbx.commands.run("echo hi")
        assert r.stdout == "hi\n", repr(r.stdout)
        assert r.stderr == "" and r.exit_code == 0, (r.stderr, r.exit_code)
        # The default user is `user` (set through /init), with its home as cwd.
        r = sbx.commands.run("id -un; pwd")
        assert r.stdout == "user\n/home/user\n", repr(r.stdout)
        r = sbx.commands.run("whoami", user="root")
        assert r.stdout == "root\n", repr(r.stdout)
    finally:
        assert sbx.kill() is True
    assert sbx.is_running() is False
    # A second kill is a 404, which the SDK reports as False.
    assert Sandbox.kill(sbx.sandbox_id) is False


@test
def command_failure_and_env_vars():
    sbx = Sandbox.create(timeout=60, envs={"GREETING": "hello there"})
    try:
        r = sbx.commands.run("echo $GREETING")
        assert r.stdout == "hello there\n", repr(r.stdout)
        try:
            sbx.commands.run("echo oops >&2; exit 3")
            raise AssertionError("expected CommandExitException")
        except CommandExitException as e:
            assert e.exit_code == 3 and e.stderr == "oops\n", (e.exit_code, e.stderr)
    finally:
        sbx.kill()


@test
def files_write_read_list():
    sbx = Sandbox.create(timeout=60)
    try:
        info = sbx.files.write("/home/user/dir/a.txt", "alpha")
        assert info.path == "/home/user/dir/a.txt" and info.name == "a.txt", info
        assert sbx.files.read("/home/user/dir/a.txt") == "alpha"
        data = bytes(range(256)) * 64
        sbx.files.write("/home/user/dir/b.bin", data)
        assert bytes(sbx.files.read("/home/user/dir/b.bin", format="bytes")) == data
        names = sorted(e.name for e in sbx.files.list("/home/user/dir"))
        assert names == ["a.txt", "b.bin"], names
        assert sbx.files.exists("/home/user/dir/a.txt") is True
        assert sbx.files.exists("/home/user/nope") is False
        r = sbx.commands.run("stat -c %U /home/user/dir/a.txt")
        assert r.stdout == "user\n", repr(r.stdout)
    finally:
        sbx.kill()


@test
def list_and_metadata_filter():
    tag = uuid.uuid4().hex[:8]
    a = Sandbox.create(timeout=60, metadata={"suite": tag, "n": "1"})
    b = Sandbox.create(timeout=60, metadata={"suite": tag, "n": "2"})
    try:
        items = Sandbox.list(query=SandboxQuery(metadata={"suite": tag})).next_items()
        assert sorted(s.sandbox_id for s in items) == sorted([a.sandbox_id, b.sandbox_id]), items
        items = Sandbox.list(query=SandboxQuery(metadata={"suite": tag, "n": "2"})).next_items()
        assert [s.sandbox_id for s in items] == [b.sandbox_id], items
        assert items[0].metadata == {"suite": tag, "n": "2"}, items[0].metadata
        assert items[0].template_id == "base"
        info = a.get_info()
        assert info.sandbox_id == a.sandbox_id and info.metadata == {"suite": tag, "n": "1"}
    finally:
        a.kill()
        b.kill()
    items = Sandbox.list(query=SandboxQuery(metadata={"suite": tag})).next_items()
    assert items == [], items


@test
def is_running_and_timeout():
    sbx = Sandbox.create(timeout=60)
    try:
        assert sbx.is_running() is True
        sbx.set_timeout(120)
        info = sbx.get_info()
        left = (info.end_at - info.started_at).total_seconds()
        assert 115 <= left <= 125, left
    finally:
        sbx.kill()
    assert sbx.is_running() is False


@test
def signed_url_download_and_upload_with_urllib():
    sbx = Sandbox.create(timeout=60)
    try:
        sbx.files.write("/home/user/signed.txt", "signed content")
        url = sbx.download_url("/home/user/signed.txt")
        assert "signature=" in url, url
        with urllib.request.urlopen(url) as resp:
            assert resp.status == 200
            assert resp.read() == b"signed content"
        # An expired signature is refused by envd with its exact body.
        expired = sbx.download_url("/home/user/signed.txt", use_signature_expiration=-10)
        try:
            urllib.request.urlopen(expired)
            raise AssertionError("expected 401")
        except urllib.error.HTTPError as e:
            assert e.code == 401, e.code
            assert json.loads(e.read()) == {"code": 401, "message": "signature is already expired"}
        # Upload through a signed URL (multipart, field `file`).
        up = sbx.upload_url("/home/user/up.txt")
        boundary = "b0undary"
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"up.txt\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\nuploaded!\r\n--{boundary}--\r\n"
        ).encode()
        req = urllib.request.Request(
            up, data=body, method="POST",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 200
        assert sbx.files.read("/home/user/up.txt") == "uploaded!"
    finally:
        sbx.kill()


@test
def killed_sandbox_is_reported_not_running():
    sbx = Sandbox.create(timeout=60)
    sid = sbx.sandbox_id
    Sandbox.kill(sid)
    try:
        sbx.commands.run("echo hi")
        raise AssertionError("expected an exception")
    except SandboxException as e:
        assert "was not found" in str(e) or "timeout" in str(e).lower(), str(e)
    try:
        Sandbox.connect(sid)
        raise AssertionError("expected not found")
    except SandboxException as e:
        assert "404" in str(e) or "not found" in str(e).lower(), str(e)


@test
def pause_and_connect_resume():
    sbx = Sandbox.create(timeout=60)
    try:
        sbx.files.write("/home/user/keep.txt", "kept")
        if ROOTLESS:
            try:
                sbx.pause()
                raise AssertionError("expected 501")
            except SandboxException as e:
                assert str(e) == (
                    f"501: pausing sandbox {sbx.sandbox_id}: pause needs the cgroup freezer, "
                    "which is unavailable in rootless mode without a delegated cgroup "
                    "(run e2b-local as root to pause sandboxes)"
                ), str(e)
            assert sbx.is_running() is True
            assert sbx.files.read("/home/user/keep.txt") == "kept"
            return
        assert sbx.pause() is True
        assert sbx.is_running() is False
        assert sbx.pause() is False  # 409: already paused
        again = Sandbox.connect(sbx.sandbox_id, timeout=60)
        assert again.is_running() is True
        assert again.files.read("/home/user/keep.txt") == "kept"
        assert again.commands.run("echo back").stdout == "back\n"
    finally:
        sbx.kill()


@test
def user_port_through_get_host_and_metrics():
    sbx = Sandbox.create(timeout=60)
    try:
        sbx.commands.run("mkdir -p /tmp/www && echo port-ok > /tmp/www/index.html")
        sbx.commands.run(
            "cd /tmp/www && exec python3 -m http.server 8000 --bind 127.0.0.1",
            background=True,
        )
        host = sbx.get_host(8000)
        assert host == f"8000-{sbx.sandbox_id}.{os.environ['E2B_DOMAIN']}", host
        # *.localhost may not resolve here: connect to the server, route by the Host header.
        url = os.environ["E2B_SANDBOX_URL"] + "/index.html"
        deadline = time.time() + 20
        while True:
            try:
                req = urllib.request.Request(url, headers={"Host": host})
                with urllib.request.urlopen(req) as resp:
                    body = resp.read()
                break
            except urllib.error.HTTPError as e:
                assert e.code == 502, e.code
                assert json.loads(e.read())["message"] == "The sandbox is running but port is not open"
                assert time.time() < deadline, "port 8000 never opened"
                time.sleep(0.1)
        assert body == b"port-ok\n", body
        # The series since the create (one sample at the create, then one every 5 s).
        metrics = sbx.get_metrics()[-1:]
        assert len(metrics) == 1, metrics
        if ROOTLESS:
            # No cgroup limits: the host's CPUs and memory.
            with open("/proc/meminfo") as f:
                total = next(int(l.split()[1]) for l in f if l.startswith("MemTotal:")) * 1024
            assert metrics[0].cpu_count == os.cpu_count(), metrics[0]
            assert metrics[0].mem_total == total and metrics[0].mem_used > 0, metrics[0]
        else:
            assert metrics[0].cpu_count == 2 and metrics[0].mem_used > 0, metrics[0]
            assert metrics[0].mem_total == 512 * 1024 * 1024, metrics[0]
    finally:
        sbx.kill()


@test
def killed_mid_command_is_reported_as_killed():
    # The proxy drops the stream when the sandbox is killed; the SDK sees a transport
    # failure, probes /health, gets the 502 "not found" and says the sandbox is gone.
    sbx = Sandbox.create(timeout=60)
    h = sbx.commands.run("sleep 60", background=True)
    assert sbx.kill() is True
    try:
        h.wait()
        raise AssertionError("expected SandboxNotRunningException")
    except SandboxNotRunningException as e:
        assert isinstance(e, TimeoutException)
        assert str(e).endswith(
            ": The sandbox was killed or reached its end of life while the request was in flight."
        ), str(e)


@test
def creates_past_the_capacity_are_rate_limited():
    # A second server of one sandbox at most (run.sh exports its binary).
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [os.environ["E2B_LOCAL_BIN"], "serve", "--listen", "127.0.0.1:0",
             "--data-dir", data, "--max-sandboxes", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        try:
            env = {}
            for line in proc.stdout:
                if line.startswith("export "):
                    k, v = line[len("export "):].strip().split("=", 1)
                    env[k] = v
                if line.startswith("export E2B_DOMAIN="):
                    break
            opts = dict(api_key=env["E2B_API_KEY"], api_url=env["E2B_API_URL"],
                        sandbox_url=env["E2B_SANDBOX_URL"], domain=env["E2B_DOMAIN"])
            sbx = Sandbox.create(timeout=60, **opts)
            try:
                try:
                    Sandbox.create(timeout=60, **opts)
                    raise AssertionError("expected RateLimitException")
                except RateLimitException as e:
                    assert str(e) == (
                        "429: Rate limit exceeded, please try again later. - you have reached the "
                        "maximum number of concurrent E2B sandboxes (1) (e2b-local serve "
                        "--max-sandboxes)"
                    ), str(e)
            finally:
                sbx.kill()
            # The slot is free again.
            Sandbox.create(timeout=60, **opts).kill()
        finally:
            proc.terminate()
            proc.wait()


def main():
    passed = failed = 0
    for fn in TESTS:
        try:
            fn()
            passed += 1
            print(f"PASS {fn.__name__}", flush=True)
        except Exception:  # noqa: BLE001 - report every failure and keep going
            failed += 1
            print(f"FAIL {fn.__name__}", flush=True)
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
