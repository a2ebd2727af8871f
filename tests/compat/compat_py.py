"""E2B's official Python SDK (any 2.x from PyPI) against e2b-local, one check per feature row.

Run by run.sh, which exports E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY, E2B_DOMAIN and
E2B_VOLUME_API_URL and
runs this in the namespace of a `serve --network nat` whose only uplink is run.sh's fake
internet (fake_internet.py: HTTP on 203.0.113.10 and .11, DNS a.test/b.test -> .10,
c.test -> .11).
Every check asserts values (stdout, exit codes, file bytes, ids), not only the absence of an
exception. Prints `PASS py-<version> <check>` / `FAIL ...` lines and a last line
`N passed, N failed`; exits 1 if any check failed.
"""

import asyncio
import importlib.metadata
import inspect
import json
import os
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid

from e2b import (
    AsyncSandbox,
    CommandExitException,
    FilesystemEventType,
    PtySize,
    Sandbox,
    SandboxException,
    SandboxQuery,
    SandboxState,
)
from e2b.sandbox.filesystem.filesystem import FileType, WriteEntry

VERSION = importlib.metadata.version("e2b")
LABEL = f"py-{VERSION}"
TAG = uuid.uuid4().hex[:10]
CHECKS = []
SKIP = "skip"  # a check returns this when the SDK version lacks the feature (not counted)


def check(fn):
    CHECKS.append(fn)
    return fn


def new_sandbox(**kw):
    kw.setdefault("timeout", 120)
    meta = dict(kw.pop("metadata", {}))
    meta.setdefault("compat", TAG)
    return Sandbox.create(metadata=meta, **kw)


def wait_until(pred, what, secs=15.0):
    deadline = time.time() + secs
    while True:
        value = pred()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- sandbox lifecycle -------------------------------------------------------------------


@check
def sandbox_create():
    sbx = new_sandbox(envs={"COMPAT_VAR": "v a l"}, metadata={"k": "v"})
    try:
        sid = sbx.sandbox_id
        assert isinstance(sid, str) and len(sid) > 0, sid
        r = sbx.commands.run("echo $COMPAT_VAR")
        assert r.stdout == "v a l\n" and r.exit_code == 0, (r.stdout, r.exit_code)
        info = sbx.get_info()
        assert info.sandbox_id == sid and info.template_id == "base", info
        assert info.metadata == {"k": "v", "compat": TAG}, info.metadata
    finally:
        sbx.kill()


@check
def sandbox_connect():
    sbx = new_sandbox()
    try:
        sbx.files.write("/tmp/connect.txt", "via first handle")
        other = Sandbox.connect(sbx.sandbox_id)
        assert other.sandbox_id == sbx.sandbox_id
        assert other.files.read("/tmp/connect.txt") == "via first handle"
        # Instance form of connect on an already running sandbox.
        same = sbx.connect()
        assert same.sandbox_id == sbx.sandbox_id
        assert same.commands.run("echo ok").stdout == "ok\n"
    finally:
        sbx.kill()


@check
def sandbox_list_filters_and_pages():
    tag = uuid.uuid4().hex[:8]
    made = [new_sandbox(metadata={"list": tag, "n": str(i)}) for i in range(3)]
    try:
        ids = sorted(s.sandbox_id for s in made)
        q = SandboxQuery(metadata={"list": tag})
        pager = Sandbox.list(query=q, limit=2)
        first = pager.next_items()
        assert len(first) == 2, first
        assert pager.has_next is True and pager.next_token, pager.next_token
        second = pager.next_items()
        assert len(second) == 1, second
        assert pager.has_next is False, pager.next_token
        got = sorted(s.sandbox_id for s in first + second)
        assert got == ids, (got, ids)
        # Two keys: only the sandbox matching both.
        only = Sandbox.list(query=SandboxQuery(metadata={"list": tag, "n": "1"})).next_items()
        assert [s.sandbox_id for s in only] == [made[1].sandbox_id], only
        assert only[0].metadata == {"list": tag, "n": "1", "compat": TAG}, only[0].metadata
        # State filter: paused ones are listed only when asked for.
        assert made[2].pause() is True
        running = Sandbox.list(query=SandboxQuery(metadata={"list": tag}, state=[SandboxState.RUNNING])).next_items()
        assert sorted(s.sandbox_id for s in running) == sorted([made[0].sandbox_id, made[1].sandbox_id]), running
        paused = Sandbox.list(query=SandboxQuery(metadata={"list": tag}, state=[SandboxState.PAUSED])).next_items()
        assert [s.sandbox_id for s in paused] == [made[2].sandbox_id], paused
        assert paused[0].state == SandboxState.PAUSED, paused[0].state
    finally:
        for s in made:
            Sandbox.kill(s.sandbox_id)
    assert Sandbox.list(query=SandboxQuery(metadata={"list": tag})).next_items() == []


@check
def sandbox_kill():
    sbx = new_sandbox()
    assert sbx.kill() is True
    assert sbx.is_running() is False
    assert Sandbox.kill(sbx.sandbox_id) is False  # 404 -> False
    with new_sandbox() as ctx:
        sid = ctx.sandbox_id
        assert ctx.is_running() is True
    # __exit__ killed it.
    assert Sandbox.kill(sid) is False


@check
def sandbox_set_timeout_and_get_info():
    sbx = new_sandbox(timeout=60)
    try:
        info = sbx.get_info()
        left = (info.end_at - info.started_at).total_seconds()
        assert 55 <= left <= 65, left
        sbx.set_timeout(200)
        info = sbx.get_info()
        left = (info.end_at - info.started_at).total_seconds()
        assert 195 <= left <= 205, left
        Sandbox.set_timeout(sbx.sandbox_id, 100)
        info = Sandbox.get_info(sbx.sandbox_id)
        left = (info.end_at - info.started_at).total_seconds()
        assert 95 <= left <= 105, left
        assert info.state == SandboxState.RUNNING, info.state
    finally:
        sbx.kill()


@check
def sandbox_pause_resume_is_running():
    sbx = new_sandbox()
    try:
        sbx.files.write("/home/user/keep.txt", "kept across pause")
        assert sbx.is_running() is True
        assert sbx.pause() is True
        assert sbx.is_running() is False
        assert Sandbox.get_info(sbx.sandbox_id).state == SandboxState.PAUSED
        resumed = Sandbox.connect(sbx.sandbox_id)
        assert resumed.is_running() is True
        assert resumed.files.read("/home/user/keep.txt") == "kept across pause"
        assert resumed.commands.run("echo back").stdout == "back\n"
        assert Sandbox.get_info(sbx.sandbox_id).state == SandboxState.RUNNING
    finally:
        sbx.kill()


@check
def sandbox_lifecycle_auto_resume():
    sbx = new_sandbox(lifecycle={"on_timeout": "pause", "auto_resume": True})
    try:
        info = Sandbox.get_info(sbx.sandbox_id)
        assert info.lifecycle == {"on_timeout": "pause", "auto_resume": True}, info.lifecycle
        sbx.files.write("/home/user/a.txt", "woken")
        assert sbx.pause() is True
        assert Sandbox.get_info(sbx.sandbox_id).state == SandboxState.PAUSED
        # The next envd call resumes it and is served.
        assert sbx.commands.run("cat /home/user/a.txt").stdout == "woken"
        assert Sandbox.get_info(sbx.sandbox_id).state == SandboxState.RUNNING
    finally:
        sbx.kill()


@check
def sandbox_pause_filesystem_only_is_a_new_boot():
    sbx = new_sandbox()
    try:
        boot_id = "/proc/sys/kernel/random/boot_id"
        first = sbx.files.read(boot_id)
        sbx.files.write("/home/user/f.txt", "files kept")
        sbx.commands.run("sleep 1000", background=True)
        assert sbx.pause(keep_memory=False) is True
        assert Sandbox.get_info(sbx.sandbox_id).state == SandboxState.PAUSED
        resumed = Sandbox.connect(sbx.sandbox_id)
        assert resumed.files.read(boot_id) != first
        assert resumed.files.read("/home/user/f.txt") == "files kept"
        assert resumed.commands.run("pgrep -x sleep || echo none").stdout == "none\n"
    finally:
        sbx.kill()


@check
def sandbox_metrics_are_a_series():
    from datetime import datetime, timezone

    sbx = new_sandbox()
    try:
        # One sample at the create, then one every 5 s.
        samples = wait_until(lambda: len(sbx.get_metrics()) >= 2 and sbx.get_metrics(), "two samples", 12)
        first, second = samples[0].timestamp, samples[1].timestamp
        assert 4 <= (second - first).total_seconds() <= 6, (first, second)
        # `end` is a whole second: the first sample's second holds only it.
        only = sbx.get_metrics(start=first, end=first.replace(microsecond=0))
        assert [m.timestamp for m in only] == [first], only
        before = (datetime(1999, 1, 1, tzinfo=timezone.utc), datetime(2000, 1, 1, tzinfo=timezone.utc))
        assert sbx.get_metrics(start=before[0], end=before[1]) == []
    finally:
        sbx.kill()


@check
def sandbox_get_host():
    sbx = new_sandbox()
    try:
        sbx.commands.run("mkdir -p /tmp/www && echo port-ok > /tmp/www/index.html")
        sbx.commands.run("cd /tmp/www && exec python3 -m http.server 8123 --bind 127.0.0.1", background=True)
        host = sbx.get_host(8123)
        assert host == f"8123-{sbx.sandbox_id}.{os.environ['E2B_DOMAIN']}", host
        url = os.environ["E2B_SANDBOX_URL"] + "/index.html"

        def fetch():
            try:
                req = urllib.request.Request(url, headers={"Host": host})
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return resp.read()
            except urllib.error.HTTPError as e:
                assert e.code == 502, e.code
                return None

        assert wait_until(fetch, "port 8123 to open") == b"port-ok\n"
    finally:
        sbx.kill()


@check
def sandbox_upload_url_download_url():
    sbx = new_sandbox()
    try:
        sbx.files.write("/home/user/signed.txt", "signed content")
        url = sbx.download_url("/home/user/signed.txt")
        assert "signature=" in url, url
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200 and resp.read() == b"signed content"
        up = sbx.upload_url("/home/user/up.txt")
        boundary = "compatb0undary"
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"up.txt\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\nuploaded!\r\n--{boundary}--\r\n"
        ).encode()
        req = urllib.request.Request(
            up, data=body, method="POST", headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
        assert sbx.files.read("/home/user/up.txt") == "uploaded!"
        bad = url.replace("signature=", "signature=x")
        try:
            urllib.request.urlopen(bad, timeout=10)
            raise AssertionError("a tampered signature was accepted")
        except urllib.error.HTTPError as e:
            assert e.code in (401, 502), e.code
    finally:
        sbx.kill()


@check
def sandbox_get_metrics():
    sbx = new_sandbox()
    try:
        sbx.commands.run("true")
        samples = wait_until(lambda: sbx.get_metrics(), "a metrics sample")
        for m in samples:
            assert m.cpu_count >= 1 and m.mem_total > 0 and 0 < m.mem_used <= m.mem_total, m
            assert m.disk_total > 0, m
    finally:
        sbx.kill()


@check
def git_via_commands():
    sbx = new_sandbox()
    try:
        repo = "/home/user/repo"
        sbx.git.init(repo, initial_branch="main")
        sbx.files.write(f"{repo}/README", "hello git\n")
        st = sbx.git.status(repo)
        assert st.current_branch == "main", st
        assert [(f.name, f.status) for f in st.file_status] == [("README", "untracked")], st.file_status
        sbx.git.add(repo)
        sbx.git.commit(repo, "first commit", author_name="Compat", author_email="compat@example.com")
        r = sbx.commands.run(f"git -C {repo} log --format='%s|%an'")
        assert r.stdout == "first commit|Compat\n", r.stdout
        assert sbx.git.status(repo).file_status == []
    finally:
        sbx.kill()


# --- commands ----------------------------------------------------------------------------


@check
def commands_run_foreground():
    sbx = new_sandbox()
    try:
        out, err = [], []
        r = sbx.commands.run(
            "echo out; echo err >&2; pwd; echo $X",
            cwd="/tmp",
            envs={"X": "from-envs"},
            on_stdout=out.append,
            on_stderr=err.append,
        )
        assert r.exit_code == 0 and r.stdout == "out\n/tmp\nfrom-envs\n", (r.exit_code, r.stdout)
        assert r.stderr == "err\n", r.stderr
        assert "".join(out) == r.stdout and "".join(err) == r.stderr, (out, err)
        assert sbx.commands.run("whoami", user="root").stdout == "root\n"
        try:
            sbx.commands.run("echo bad >&2; exit 7")
            raise AssertionError("expected CommandExitException")
        except CommandExitException as e:
            assert e.exit_code == 7 and e.stderr == "bad\n", (e.exit_code, e.stderr)
    finally:
        sbx.kill()


@check
def commands_run_background_and_connect():
    sbx = new_sandbox()
    try:
        h = sbx.commands.run("sleep 0.3; echo first; sleep 0.3; echo second", background=True)
        assert isinstance(h.pid, int) and h.pid > 0, h.pid
        other = sbx.commands.connect(h.pid)
        assert other.pid == h.pid
        r = other.wait()
        assert r.exit_code == 0 and "second\n" in r.stdout, (r.exit_code, r.stdout)
        r0 = h.wait()
        assert r0.stdout == "first\nsecond\n", r0.stdout
    finally:
        sbx.kill()


@check
def commands_list_and_kill():
    sbx = new_sandbox()
    try:
        h = sbx.commands.run("sleep 300", background=True, envs={"MARK": "yes"}, cwd="/tmp")
        procs = {p.pid: p for p in sbx.commands.list()}
        assert h.pid in procs, procs
        p = procs[h.pid]
        assert p.cmd == "/bin/bash" and "sleep 300" in " ".join(p.args), (p.cmd, p.args)
        assert p.cwd == "/tmp" and p.envs.get("MARK") == "yes", (p.cwd, p.envs)
        assert sbx.commands.kill(h.pid) is True
        try:
            h.wait()
            raise AssertionError("a killed command exited successfully")
        except CommandExitException as e:
            assert e.exit_code != 0, e.exit_code
        assert h.pid not in [q.pid for q in sbx.commands.list()]
        assert sbx.commands.kill(h.pid) is False
    finally:
        sbx.kill()


@check
def commands_send_stdin_close_stdin():
    sbx = new_sandbox()
    try:
        h = sbx.commands.run("cat", background=True, stdin=True)
        sbx.commands.send_stdin(h.pid, "hello ")
        sbx.commands.send_stdin(h.pid, "stdin\n")
        sbx.commands.close_stdin(h.pid)
        r = h.wait()
        assert r.exit_code == 0 and r.stdout == "hello stdin\n", (r.exit_code, r.stdout)
    finally:
        sbx.kill()


@check
def commands_stream_input():
    from e2b.sandbox_sync.commands.command import Commands

    if not hasattr(Commands, "stream_input"):
        return SKIP
    sbx = new_sandbox()
    try:
        h2 = sbx.commands.run("cat", background=True, stdin=True)
        chunks = [b"abc", "def", b"\n" * 5]
        sbx.commands.stream_input(h2.pid, iter(chunks))
        sbx.commands.close_stdin(h2.pid)
        r2 = h2.wait()
        assert r2.exit_code == 0 and r2.stdout == "abcdef\n\n\n\n\n", repr(r2.stdout)
    finally:
        sbx.kill()


# --- pty ---------------------------------------------------------------------------------


@check
def pty_create_connect_send_resize_kill():
    sbx = new_sandbox()
    try:
        buf = bytearray()
        lock = threading.Lock()
        h = sbx.pty.create(PtySize(rows=24, cols=80), envs={"PS1": "$ "})

        def pump():
            def on_pty(data):
                with lock:
                    buf.extend(data)

            try:
                h.wait(on_pty=on_pty)
            except CommandExitException:
                pass

        t = threading.Thread(target=pump, daemon=True)
        t.start()

        def seen(s):
            with lock:
                return s.encode() in bytes(buf)

        sbx.pty.send_stdin(h.pid, b"stty size; echo mark-$((40+2))\n")
        wait_until(lambda: seen("mark-42"), "first pty output")
        assert seen("24 80"), bytes(buf)
        sbx.pty.resize(h.pid, PtySize(rows=30, cols=100))
        sbx.pty.send_stdin(h.pid, b"stty size; echo mark-$((40+3))\n")
        wait_until(lambda: seen("mark-43"), "pty output after resize")
        assert seen("30 100"), bytes(buf)
        # A second client attaches to the same terminal and sees its output.
        buf2 = bytearray()
        h2 = sbx.pty.connect(h.pid)
        assert h2.pid == h.pid

        def pump2():
            try:
                h2.wait(on_pty=buf2.extend)
            except CommandExitException:
                pass

        t2 = threading.Thread(target=pump2, daemon=True)
        t2.start()
        sbx.pty.send_stdin(h.pid, b"echo mark-$((40+4))\n")
        wait_until(lambda: b"mark-44" in bytes(buf2), "output on the connected pty handle")
        assert sbx.pty.kill(h.pid) is True
        t.join(10)
        t2.join(10)
        assert not t.is_alive() and not t2.is_alive(), "pty stream did not end after kill"
        assert h.pid not in [p.pid for p in sbx.commands.list()]
    finally:
        sbx.kill()


# --- files -------------------------------------------------------------------------------


@check
def files_read_write():
    sbx = new_sandbox()
    try:
        info = sbx.files.write("/home/user/d/a.txt", "alpha\n")
        assert info.path == "/home/user/d/a.txt" and info.name == "a.txt", info
        assert sbx.files.read("/home/user/d/a.txt") == "alpha\n"
        data = bytes(range(256)) * 257
        sbx.files.write("/home/user/d/b.bin", data)
        assert bytes(sbx.files.read("/home/user/d/b.bin", format="bytes")) == data
        r = sbx.commands.run("md5sum < /home/user/d/b.bin; stat -c %s:%U /home/user/d/b.bin")
        import hashlib

        assert r.stdout == f"{hashlib.md5(data).hexdigest()}  -\n{len(data)}:user\n", r.stdout
        sbx.files.write("/home/user/d/a.txt", "overwritten")
        assert sbx.files.read("/home/user/d/a.txt") == "overwritten"
    finally:
        sbx.kill()


@check
def files_write_files():
    sbx = new_sandbox()
    try:
        entries = [WriteEntry(path=f"/home/user/many/f{i}.txt", data=f"content {i}") for i in range(5)]
        entries.append(WriteEntry(path="/home/user/many/sub/bin", data=b"\x00\x01\xff"))
        infos = sbx.files.write_files(entries)
        assert sorted(i.path for i in infos) == sorted(e["path"] for e in entries), infos
        for i in range(5):
            assert sbx.files.read(f"/home/user/many/f{i}.txt") == f"content {i}"
        assert bytes(sbx.files.read("/home/user/many/sub/bin", format="bytes")) == b"\x00\x01\xff"
    finally:
        sbx.kill()


@check
def files_list_exists_get_info():
    sbx = new_sandbox()
    try:
        sbx.files.write("/home/user/ls/one.txt", "12345")
        sbx.files.write("/home/user/ls/sub/two.txt", "x")
        top = sorted((e.name, e.type) for e in sbx.files.list("/home/user/ls"))
        assert top == [("one.txt", FileType.FILE), ("sub", FileType.DIR)], top
        deep = sorted(e.path for e in sbx.files.list("/home/user/ls", depth=2))
        assert deep == ["/home/user/ls/one.txt", "/home/user/ls/sub", "/home/user/ls/sub/two.txt"], deep
        assert sbx.files.exists("/home/user/ls/one.txt") is True
        assert sbx.files.exists("/home/user/ls/none") is False
        info = sbx.files.get_info("/home/user/ls/one.txt")
        assert info.name == "one.txt" and info.type == FileType.FILE and info.size == 5, info
        assert info.path == "/home/user/ls/one.txt" and info.owner == "user", info
        dinfo = sbx.files.get_info("/home/user/ls/sub")
        assert dinfo.type == FileType.DIR, dinfo
    finally:
        sbx.kill()


@check
def files_remove_rename_make_dir():
    sbx = new_sandbox()
    try:
        assert sbx.files.make_dir("/home/user/md/a/b") is True
        assert sbx.files.make_dir("/home/user/md/a/b") is False  # already exists
        assert sbx.files.get_info("/home/user/md/a/b").type == FileType.DIR
        sbx.files.write("/home/user/md/a/b/f.txt", "moving")
        moved = sbx.files.rename("/home/user/md/a/b/f.txt", "/home/user/md/g.txt")
        assert moved.path == "/home/user/md/g.txt" and moved.name == "g.txt", moved
        assert sbx.files.exists("/home/user/md/a/b/f.txt") is False
        assert sbx.files.read("/home/user/md/g.txt") == "moving"
        sbx.files.remove("/home/user/md/g.txt")
        assert sbx.files.exists("/home/user/md/g.txt") is False
        sbx.files.remove("/home/user/md/a")
        assert sbx.files.exists("/home/user/md/a") is False
        assert [e.name for e in sbx.files.list("/home/user/md")] == []
    finally:
        sbx.kill()


@check
def files_watch_dir_sync_polling():
    sbx = new_sandbox()
    try:
        sbx.files.make_dir("/home/user/w")
        w = sbx.files.watch_dir("/home/user/w")
        sbx.files.write("/home/user/w/new.txt", "hello")
        sbx.commands.run("rm /home/user/w/new.txt")
        events = []

        def got_remove():
            events.extend(w.get_new_events())
            return any(e.type == FilesystemEventType.REMOVE and e.name == "new.txt" for e in events)

        wait_until(got_remove, "a remove event")
        kinds = {e.type for e in events if e.name == "new.txt"}
        assert FilesystemEventType.CREATE in kinds or FilesystemEventType.WRITE in kinds, events
        w.stop()
    finally:
        sbx.kill()


@check
def files_watch_dir_async_streaming():
    async def run():
        sbx = await AsyncSandbox.create(timeout=120, metadata={"compat": TAG})
        try:
            await sbx.files.make_dir("/home/user/aw")
            events = []
            handle = await sbx.files.watch_dir("/home/user/aw", on_event=events.append, recursive=True)
            await sbx.files.write("/home/user/aw/x.txt", "data")
            await sbx.files.rename("/home/user/aw/x.txt", "/home/user/aw/y.txt")
            deadline = time.time() + 15
            while not any(e.name == "y.txt" for e in events):
                assert time.time() < deadline, f"no event for y.txt: {events}"
                await asyncio.sleep(0.05)
            assert any(e.name == "x.txt" and e.type in (FilesystemEventType.CREATE, FilesystemEventType.WRITE) for e in events), events
            await handle.stop()
            # The async SDK's commands: callbacks and exit code.
            out = []
            r = await sbx.commands.run("echo async-ok", on_stdout=out.append)
            assert r.stdout == "async-ok\n" and "".join(out) == "async-ok\n", (r.stdout, out)
        finally:
            await sbx.kill()

    asyncio.run(asyncio.wait_for(run(), 60))


# --- networking (against run.sh's fake internet) -----------------------------------------
SERVER_A = "203.0.113.10"  # HTTP; a.test and b.test
SERVER_B = "203.0.113.11"  # HTTP; c.test
HAS_NETWORK = "network" in inspect.signature(Sandbox.create).parameters
HAS_UPDATE_NETWORK = hasattr(Sandbox, "update_network")
# What get_info() reports for a sandbox created without allow_internet_access: 2.45.x sends
# its default True, later versions send nothing (and the server reports nothing).
DEFAULT_ALLOW_INTERNET = inspect.signature(Sandbox.create).parameters["allow_internet_access"].default


def sdk_sends_allow_public_traffic():
    """Whether this SDK's create body carries `allowPublicTraffic: true` when `network` is
    given without it (the client model's default in 2.45.x), so get_info() reports it back."""
    from e2b.api.client.models import SandboxNetworkConfig

    return SandboxNetworkConfig().allow_public_traffic is True


def created_network(**fields):
    """get_info().network of a sandbox created with network=fields, as this SDK reports it."""
    if sdk_sends_allow_public_traffic():
        fields["allow_public_traffic"] = True
    return fields


def sh(sbx, cmd, user=None):
    """(exit code, stdout, stderr) of `cmd` in the sandbox."""
    kw = {"user": user} if user else {}
    try:
        r = sbx.commands.run(cmd, timeout=30, **kw)
        return r.exit_code, r.stdout, r.stderr
    except CommandExitException as e:
        return e.exit_code, e.stdout, e.stderr


def fetch_json(sbx, url, *curl_args, user=None):
    """What the fake internet's HTTP server saw of a GET of url from the sandbox."""
    args = " ".join(curl_args)
    code, out, err = sh(sbx, f"curl -sS --max-time 5 {args} {url}", user=user)
    assert code == 0 and err == "", (url, code, out, err)
    return json.loads(out)


def assert_reaches(sbx, url, server, host, user=None):
    seen = fetch_json(sbx, url, user=user)
    assert (seen["server"], seen["host"], seen["path"]) == (server, host, "/"), (url, seen)


def assert_refused(sbx, url, user=None):
    """A connection to url (http://HOST/) is refused at once (curl exit 7), not left to time out."""
    host = url.split("/")[2]
    code, out, err = sh(sbx, f"curl -sS --max-time 5 {url}", user=user)
    assert code == 7 and out == "", (url, code, out, err)
    assert err.startswith(f"curl: (7) Failed to connect to {host} port 80 after "), (url, err)


def assert_proxy_denies(sbx, url, name, addr):
    """The egress proxy answers 403 with its reason; the fake internet's server never answers."""
    code, out, err = sh(sbx, f"curl -sS --max-time 5 -w '\\n%{{http_code}}' {url}")
    assert code == 0 and err == "", (url, code, out, err)
    body, status = out.rsplit("\n", 1)
    assert status == "403", (url, out)
    assert body.startswith(f"e2b-local egress proxy: access to {name} ({addr}) is denied"), (url, body)


@check
def network_allow_internet_access_false():
    sbx = new_sandbox(allow_internet_access=False)
    try:
        for user in (None, "root"):
            assert_refused(sbx, f"http://{SERVER_A}/", user=user)
        # Names still resolve (the gateway's resolver), the connection is refused.
        assert sh(sbx, "getent hosts a.test") == (0, f"{SERVER_A:<15} a.test\n", ""), sh(sbx, "getent hosts a.test")
        assert_refused(sbx, "http://a.test/")
        info = sbx.get_info()
        assert info.allow_internet_access is False, info.allow_internet_access
        assert getattr(info, "network", None) is None, info.network
        assert Sandbox.get_info(sbx.sandbox_id).allow_internet_access is False
        # The sandbox next to it is not affected.
        other = new_sandbox()
        try:
            assert_reaches(other, f"http://{SERVER_A}/", SERVER_A, SERVER_A)
        finally:
            other.kill()
    finally:
        sbx.kill()


@check
def network_default_reaches_the_internet_by_address_and_name():
    sbx = new_sandbox()
    try:
        assert sh(sbx, "cat /etc/resolv.conf") == (0, "nameserver 10.219.0.1\n", "")
        for user in (None, "root"):
            assert_reaches(sbx, f"http://{SERVER_A}/", SERVER_A, SERVER_A, user=user)
            assert_reaches(sbx, "http://a.test/", SERVER_A, "a.test", user=user)
        assert_reaches(sbx, "http://c.test/", SERVER_B, "c.test")
        code, out, err = sh(sbx, "curl -sS --max-time 5 http://nope.test/")
        assert code == 6 and "Could not resolve host: nope.test" in err, (code, out, err)
        info = sbx.get_info()
        assert info.allow_internet_access is DEFAULT_ALLOW_INTERNET, info.allow_internet_access
        assert getattr(info, "network", None) is None, info.network
    finally:
        sbx.kill()


@check
def network_deny_out_address():
    if not HAS_NETWORK:
        return SKIP
    sbx = new_sandbox(network={"deny_out": [SERVER_A]})
    try:
        assert_refused(sbx, f"http://{SERVER_A}/")
        assert_refused(sbx, "http://a.test/")
        assert_reaches(sbx, f"http://{SERVER_B}/", SERVER_B, SERVER_B)
        assert_reaches(sbx, "http://c.test/", SERVER_B, "c.test")
        assert sbx.get_info().network == created_network(deny_out=[SERVER_A]), sbx.get_info().network
    finally:
        sbx.kill()


@check
def network_allow_out_domain_beats_deny_all():
    if not HAS_NETWORK:
        return SKIP
    sbx = new_sandbox(network={"allow_out": ["a.test"], "deny_out": ["0.0.0.0/0"]})
    try:
        assert_reaches(sbx, "http://a.test/", SERVER_A, "a.test")
        # b.test has a.test's address but is not an allowed name: the proxy refuses it.
        assert_proxy_denies(sbx, "http://b.test/", "b.test", SERVER_A)
        # Neither a name nor an address allowOut holds.
        assert_proxy_denies(sbx, f"http://{SERVER_B}/", SERVER_B, SERVER_B)
        assert_proxy_denies(sbx, "http://c.test/", "c.test", SERVER_B)
        info = sbx.get_info()
        assert info.network == created_network(allow_out=["a.test"], deny_out=["0.0.0.0/0"]), info.network
    finally:
        sbx.kill()


@check
def network_update_network():
    if not HAS_UPDATE_NETWORK:
        return SKIP
    sbx = new_sandbox()
    try:
        url = f"http://{SERVER_A}/"
        assert_reaches(sbx, url, SERVER_A, SERVER_A)
        assert sbx.update_network({"deny_out": ["0.0.0.0/0"]}) is None
        assert_refused(sbx, url)
        assert sbx.get_info().network == {"deny_out": ["0.0.0.0/0"]}, sbx.get_info().network
        # By id; an empty update clears every rule.
        assert Sandbox.update_network(sbx.sandbox_id, {}) is None
        assert_reaches(sbx, url, SERVER_A, SERVER_A)
        assert sbx.get_info().network == {}, sbx.get_info().network
        # Replace-all: a domain allowed over a deny-all, then allow_internet_access=False.
        Sandbox.update_network(sbx.sandbox_id, {"allow_out": ["c.test"], "deny_out": ["0.0.0.0/0"]})
        assert_reaches(sbx, "http://c.test/", SERVER_B, "c.test")
        assert_proxy_denies(sbx, "http://a.test/", "a.test", SERVER_A)
        info = Sandbox.get_info(sbx.sandbox_id)
        assert info.network == {"allow_out": ["c.test"], "deny_out": ["0.0.0.0/0"]}, info.network
        sbx.update_network({"allow_internet_access": False})
        assert_refused(sbx, "http://c.test/")
        info = sbx.get_info()
        assert info.allow_internet_access is False and info.network == {}, (info.allow_internet_access, info.network)
        # A missing sandbox.
        try:
            Sandbox.update_network("inope", {})
            raise AssertionError("update_network of a missing sandbox succeeded")
        except SandboxException as e:
            assert type(e).__name__ == "SandboxNotFoundException", type(e)
            assert str(e) == "Sandbox inope not found", str(e)
    finally:
        sbx.kill()


# Keeps one HTTP/1.1 connection to 203.0.113.10 open, a GET on it every 0.1 s; logs each
# status to /tmp/live.log, and `cut <error>` when the connection breaks (3 s without an
# answer included). Never reconnects.
LIVE_PY = """
import http.client, sys, time
c = http.client.HTTPConnection("203.0.113.10", 80, timeout=3)
log = open("/tmp/live.log", "a", buffering=1)
for i in range(150):
    try:
        c.request("GET", "/live%d" % i)
        r = c.getresponse()
        r.read()
        log.write("%d\\n" % r.status)
    except Exception as e:
        log.write("cut %s\\n" % type(e).__name__)
        sys.exit(0)
    time.sleep(0.1)
log.write("never-cut\\n")
"""


@check
def network_update_network_cuts_a_live_connection():
    if not HAS_UPDATE_NETWORK:
        return SKIP
    sbx = new_sandbox()
    try:
        sbx.files.write("/tmp/live.py", LIVE_PY)
        h = sbx.commands.run("exec python3 /tmp/live.py", background=True)

        def log():
            return sbx.files.read("/tmp/live.log") if sbx.files.exists("/tmp/live.log") else ""

        wait_until(lambda: log().count("200\n") >= 3, "three answers on the live connection")
        sbx.update_network({"deny_out": ["0.0.0.0/0"]})
        r = h.wait()
        assert r.exit_code == 0, r
        lines = log().splitlines()
        assert len(lines) >= 4 and set(lines[:-1]) == {"200"}, lines
        assert lines[-1].startswith("cut "), lines
    finally:
        sbx.kill()


@check
def network_invalid_entries_are_400s_naming_them():
    if not HAS_NETWORK:
        return SKIP
    tag = uuid.uuid4().hex[:8]
    cases = [
        ({"deny_out": ["example.com"]}, 'network: denyOut entry "example.com" '),
        ({"allow_out": ["300.1.1.1"]}, 'network: allowOut entry "300.1.1.1" '),
    ]

    def assert_400(e, prefix):
        # The SDK maps a 400 with a message to SandboxException itself ("<status>: <message>").
        assert type(e) is SandboxException, type(e)
        assert str(e).startswith(f"400: {prefix}"), str(e)
        assert getattr(e, "status_code", 400) == 400, e.status_code

    for network, prefix in cases:
        try:
            new_sandbox(network=network, metadata={"invalid": tag})
            raise AssertionError(f"created a sandbox with {network}")
        except SandboxException as e:
            assert_400(e, prefix)
    assert Sandbox.list(query=SandboxQuery(metadata={"invalid": tag})).next_items() == []
    if not HAS_UPDATE_NETWORK:
        return
    sbx = new_sandbox()
    try:
        for network, prefix in cases:
            try:
                sbx.update_network(network)
                raise AssertionError(f"update_network took {network}")
            except SandboxException as e:
                assert_400(e, prefix)
        # The refused updates changed nothing.
        assert_reaches(sbx, f"http://{SERVER_A}/", SERVER_A, SERVER_A)
        assert getattr(sbx.get_info(), "network", None) is None
    finally:
        sbx.kill()


@check
def network_header_rule_reaches_the_server_not_the_sandbox():
    if not HAS_NETWORK:
        return SKIP
    token = f"tok-{uuid.uuid4().hex}"
    rules = {"a.test": [{"transform": {"headers": {"X-Secret": "s3", "X-Compat-Token": token}}}]}
    sbx = new_sandbox(network={"allow_out": ["a.test"], "deny_out": ["0.0.0.0/0"], "rules": rules})
    try:
        for user in (None, "root"):
            seen = fetch_json(sbx, "http://a.test/", "-H 'X-Secret: mine'", user=user)
            assert seen["host"] == "a.test" and seen["server"] == SERVER_A, seen
            assert seen["headers"]["x-secret"] == "s3", seen["headers"]
            assert seen["headers"]["x-compat-token"] == token, seen["headers"]
        # Nothing of the rule inside the sandbox: environment, any process's environment or
        # command line, files. The script names what it looks for in two quoted halves, so
        # its own command line (which it reads too) holds neither the token nor the name.
        half = len(token) // 2
        code, out, err = sh(
            sbx,
            "env; for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\\0' '\\n' < $f; echo; done 2>/dev/null; "
            f"grep -rsIil -e 'x-sec''ret' -e '{token[:half]}''{token[half:]}' /etc /home /tmp /run /root /opt "
            "| sed 's/^/MAT''CH:/'",
            user="root",
        )
        assert code == 0, (code, err)
        assert "HOME=/" in out, out[:500]  # the listing did run
        assert token not in out and "x-secret" not in out.lower() and "MATCH:" not in out, out
        assert not any(line.split("=", 1)[-1] == "s3" for line in out.splitlines()), out
        info = sbx.get_info()
        assert info.network == created_network(allow_out=["a.test"], deny_out=["0.0.0.0/0"], rules=rules), info.network
    finally:
        sbx.kill()


# --- fork and snapshots ------------------------------------------------------------------


def fork_api():
    """Whether this SDK version has fork and snapshots."""
    return hasattr(Sandbox, "fork") and hasattr(Sandbox, "create_snapshot")


@check
def fork_sees_the_files_diverges_and_leaves_the_source():
    if not fork_api():
        return SKIP
    sbx = new_sandbox(timeout=300)
    try:
        sbx.files.write("/home/user/state.txt", "prepared")
        before = sbx.get_info()
        forks = sbx.fork(count=2, timeout=120)
        assert len(forks) == 2, forks
        try:
            for i, fork in enumerate(forks):
                assert isinstance(fork, Sandbox), fork
                assert fork.sandbox_id != sbx.sandbox_id
                assert fork.files.read("/home/user/state.txt") == "prepared"
                fork.files.write("/home/user/state.txt", f"fork {i}")
            assert forks[0].commands.run("cat /home/user/state.txt").stdout == "fork 0"
            assert forks[1].files.read("/home/user/state.txt") == "fork 1"
            assert sbx.files.read("/home/user/state.txt") == "prepared"
            after = sbx.get_info()
            assert after.sandbox_id == before.sandbox_id and after.end_at == before.end_at, (before, after)
            assert after.state == SandboxState.RUNNING, after.state
        finally:
            for fork in forks:
                if isinstance(fork, Sandbox):
                    fork.kill()
        try:
            sbx.fork(count=0)
        except Exception as e:  # noqa: BLE001 - the SDK or the server refuses it
            assert "count must be" in str(e), str(e)
        else:
            raise AssertionError("a fork count of 0 must be refused")
    finally:
        sbx.kill()
    from e2b.exceptions import NotFoundException

    try:
        Sandbox.fork(sbx.sandbox_id)
    except NotFoundException as e:
        assert sbx.sandbox_id in str(e), str(e)
    else:
        raise AssertionError("forking a killed sandbox must raise SandboxNotFoundException")


@check
def snapshot_create_start_list_delete():
    if not fork_api():
        return SKIP
    sbx = new_sandbox()
    name = f"compat-snap-{LABEL}-{TAG}".replace("_", "-").replace(".", "-")
    try:
        sbx.files.write("/home/user/snap.txt", "snapped")
        info = sbx.create_snapshot(name=name)
        assert info.snapshot_id == f"{name}:default", info
        assert list(info.names) == [f"{name}:default"], info
        copy = new_sandbox(template=info.snapshot_id)
        try:
            assert copy.files.read("/home/user/snap.txt") == "snapped"
        finally:
            copy.kill()
        mine = sbx.list_snapshots().next_items()
        assert [s.snapshot_id for s in mine] == [info.snapshot_id], mine
        named = Sandbox.list_snapshots(name=name).next_items()
        assert [s.snapshot_id for s in named] == [info.snapshot_id], named
        assert Sandbox.delete_snapshot(info.snapshot_id) is True
        assert Sandbox.delete_snapshot(info.snapshot_id) is False
        assert sbx.list_snapshots().next_items() == []
    finally:
        sbx.kill()


# --- templates -------------------------------------------------------------------------


def template_api():
    """The SDK's Template builder, or None when this version has none."""
    try:
        from e2b import Template
    except ImportError:
        return None
    return Template


@check
def template_build_copy_env_run_start_ready():
    Template = template_api()
    if Template is None:
        return SKIP
    import tempfile

    ctx = tempfile.mkdtemp()
    with open(os.path.join(ctx, "hello.txt"), "w") as f:
        f.write("hello from the context\n")
    name = f"compat-{LABEL}-{TAG}".replace("_", "-")
    t = (
        Template(file_context_path=ctx)
        .from_template("base")
        .copy("hello.txt", "/home/user/hello.txt")
        .set_envs({"COMPAT": "yes"})
        # TAG makes the step this run's own: other SDK runs on this server share the cache.
        .run_cmd(f"echo built-by-$(whoami) > /home/user/built.txt && echo step-output # {TAG}")
        .set_start_cmd("echo started > /tmp/started; sleep infinity", "test -f /tmp/started")
    )
    logs = []
    info = Template.build(t, name, on_build_logs=lambda e: logs.append(e.message))
    assert info.name == name and len(info.template_id) == 20, info
    assert "step-output" in logs, logs
    assert Template.exists(name) is True
    sbx = new_sandbox(template=name)
    try:
        r = sbx.commands.run("cat hello.txt built.txt /tmp/started; echo $COMPAT; whoami; pwd")
        assert r.stdout == "hello from the context\nbuilt-by-user\nstarted\nyes\nuser\n/home/user\n", r.stdout
    finally:
        sbx.kill()
    # Built again unchanged: every step is a cache hit.
    logs.clear()
    Template.build(t, name, on_build_logs=lambda e: logs.append(e.message))
    assert sum(m.startswith("CACHED [") for m in logs) == 2, logs


@check
def template_build_failure_names_the_step():
    Template = template_api()
    if Template is None:
        return SKIP
    from e2b.exceptions import BuildException

    t = Template().from_template("base").run_cmd("echo fine").run_cmd("echo boom >&2; exit 7")
    try:
        Template.build(t, f"compat-fail-{TAG}")
    except BuildException as e:
        assert str(e) == "the step failed with exit code 7: boom", str(e)
    else:
        raise AssertionError("a failing step must fail the build")
    assert Template.exists("compat-missing-" + TAG) is False


# --- volumes -----------------------------------------------------------------------------


def volume_api():
    """The SDK's Volume class, or None when this version has none."""
    try:
        from e2b import Volume
    except ImportError:
        return None
    return Volume


def volume_name(what):
    # Volume names are letters, digits, '_' and '-'.
    return f"compat-{LABEL}-{what}-{TAG}".replace(".", "-")


@check
def volume_create_list_get_connect_destroy():
    Volume = volume_api()
    if Volume is None:
        return SKIP
    from e2b import VolumeException, VolumeNotFoundException

    assert os.environ["E2B_VOLUME_API_URL"] == os.environ["E2B_API_URL"], os.environ["E2B_VOLUME_API_URL"]
    name = volume_name("crud")
    vol = Volume.create(name)
    try:
        assert vol.name == name and len(vol.token) == 64, (vol.name, vol.token)
        assert any(v.volume_id == vol.volume_id and v.name == name for v in Volume.list())
        info = Volume.get_info(vol.volume_id)
        assert (info.volume_id, info.name, info.token, info.domain) == (vol.volume_id, name, vol.token, None), info
        again = Volume.connect(vol.volume_id)
        assert (again.name, again.token) == (name, vol.token)
        try:
            Volume.create(name)
        except VolumeException as e:
            assert str(e) == f"409: a volume named '{name}' already exists", str(e)
        else:
            raise AssertionError("a duplicate name must be refused")
        try:
            Volume.create("a/b")
        except VolumeException as e:
            assert str(e) == "400: invalid volume name \"a/b\": use 1 to 255 letters, digits, '_' and '-'", str(e)
        else:
            raise AssertionError("a name with '/' must be refused")
        try:
            Volume.get_info("missing-" + TAG)
        except VolumeNotFoundException as e:
            assert str(e) == f"Volume missing-{TAG} not found", str(e)
        else:
            raise AssertionError("an unknown volume must be VolumeNotFoundException")
    finally:
        assert Volume.destroy(vol.volume_id) is True
    assert Volume.destroy(vol.volume_id) is False


@check
def volume_files_read_write_list_stat_remove():
    Volume = volume_api()
    if Volume is None:
        return SKIP
    import datetime
    import io

    from e2b import VolumeException, VolumeFileType, VolumePathNotFoundException

    vol = Volume.create(volume_name("files"))
    try:
        try:
            vol.write_file("/dir/a.txt", "alpha")
        except VolumePathNotFoundException as e:
            assert str(e) == "Path /dir/a.txt not found", str(e)
        else:
            raise AssertionError("a missing parent without force must be VolumePathNotFoundException")
        st = vol.write_file("/dir/a.txt", "alpha", force=True)
        assert (st.name, st.type, st.path, st.size, st.mode, st.uid, st.gid) == (
            "a.txt", VolumeFileType.FILE, "/dir/a.txt", 5, 0o644, 1000, 1000), st
        assert isinstance(st.mtime, datetime.datetime) and st.mtime.tzinfo is not None, st.mtime
        assert vol.read_file("/dir/a.txt") == "alpha"
        assert vol.read_file("/dir/a.txt", format="bytes") == b"alpha"
        assert b"".join(vol.read_file("/dir/a.txt", format="stream")) == b"alpha"
        data = bytes(range(256)) * 4096  # 1 MiB, streamed from a file object
        st = vol.write_file("/dir/b.bin", io.BytesIO(data), mode=0o600)
        assert (st.size, st.mode) == (len(data), 0o600), st
        assert vol.read_file("/dir/b.bin", format="bytes") == data
        d = vol.make_dir("/dir/sub")
        assert (d.type, d.mode) == (VolumeFileType.DIRECTORY, 0o755), d
        try:
            vol.make_dir("/dir/sub")
        except VolumeException as e:
            assert str(e) == "409: path '/dir/sub' already exists", str(e)
        else:
            raise AssertionError("making an existing directory must fail without force")
        assert vol.make_dir("/dir/sub", force=True).path == "/dir/sub"
        assert [e.path for e in vol.list("/", depth=2)] == ["/dir", "/dir/a.txt", "/dir/b.bin", "/dir/sub"]
        assert [e.name for e in vol.list("/dir")] == ["a.txt", "b.bin", "sub"]
        assert vol.exists("/dir/sub") and not vol.exists("/nope")
        st = vol.update_metadata("/dir/a.txt", mode=0o640, uid=0)
        assert (st.mode, st.uid, st.gid) == (0o640, 0, 1000), st
        assert vol.get_info("/dir/b.bin").size == len(data)
        vol.remove("/dir/sub")
        assert not vol.exists("/dir/sub")
        try:
            vol.read_file("/nope")
        except VolumePathNotFoundException as e:
            assert str(e) == "Path /nope not found", str(e)
        else:
            raise AssertionError("reading a missing file must be VolumePathNotFoundException")
        try:
            vol.read_file("/../etc/passwd")
        except VolumeException as e:
            assert str(e) == "400: invalid path '/../etc/passwd': '..' is not allowed in a volume path", str(e)
        else:
            raise AssertionError("'..' must be refused")
        forged = Volume(vol.volume_id, vol.name, token="wrong")
        try:
            forged.list("/")
        except Exception as e:  # noqa: BLE001 - the class is checked below
            assert type(e).__name__ == "AuthenticationException", repr(e)
            assert str(e) == f"401: Unauthorized, please check your credentials. - invalid token for volume '{vol.volume_id}'", str(e)
        else:
            raise AssertionError("a wrong token must be refused")
    finally:
        Volume.destroy(vol.volume_id)


@check
def volume_mounts_shared_by_two_sandboxes():
    Volume = volume_api()
    if Volume is None:
        return SKIP
    from e2b import VolumeException

    name = volume_name("shared")
    vol = Volume.create(name)
    try:
        a = new_sandbox(volume_mounts={"/mnt/shared": vol})
        b = new_sandbox(volume_mounts={"/home/user/data": name})
        try:
            r = a.commands.run("echo from-a > /mnt/shared/note && stat -c '%U %a' /mnt/shared")
            assert r.stdout == "user 755\n", r.stdout
            assert b.commands.run("cat /home/user/data/note").stdout == "from-a\n"
            assert vol.read_file("/note") == "from-a\n"
            vol.write_file("/from-api.txt", "api")
            assert a.commands.run("cat /mnt/shared/from-api.txt").stdout == "api"
            assert a.get_info().volume_mounts == [{"name": name, "path": "/mnt/shared"}], a.get_info().volume_mounts
            try:
                Volume.destroy(vol.volume_id)
            except VolumeException as e:
                both = ", ".join(sorted([a.sandbox_id, b.sandbox_id]))
                assert str(e) == f"409: volume '{name}' is mounted by sandboxes {both}; kill them first", str(e)
            else:
                raise AssertionError("destroying a mounted volume must be refused")
        finally:
            a.kill()
            b.kill()
        try:
            new_sandbox(volume_mounts={"/mnt/x": "missing-" + TAG})
        except SandboxException as e:
            assert str(e) == f"400: volumeMounts[0].name: volume 'missing-{TAG}' not found", str(e)
        else:
            raise AssertionError("an unknown volume must be refused")
    finally:
        assert Volume.destroy(vol.volume_id) is True


def main():
    passed = failed = 0
    for fn in CHECKS:
        try:
            if fn() == SKIP:
                print(f"SKIP {LABEL} {fn.__name__} (not in this SDK version)", flush=True)
                continue
            passed += 1
            print(f"PASS {LABEL} {fn.__name__}", flush=True)
        except Exception:  # noqa: BLE001 - report every failure and keep going
            failed += 1
            print(f"FAIL {LABEL} {fn.__name__}", flush=True)
            traceback.print_exc(file=sys.stdout)
    # Leftovers of this run (a failed check may skip its kill).
    try:
        for s in Sandbox.list(query=SandboxQuery(metadata={"compat": TAG})).next_items():
            Sandbox.kill(s.sandbox_id)
    except Exception:  # noqa: BLE001 - cleanup only
        pass
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
