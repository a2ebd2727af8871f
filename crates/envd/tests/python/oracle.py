"""The official E2B Python SDK (e2b==2.63.0) as an oracle for envd.

Needs envd on http://localhost:49983 and E2B_DEBUG=true (the SDK then skips the control
plane). Run through run.sh. Ends with the line `N passed, N failed`.
"""

import asyncio
import os
import sys
import time
import traceback
import uuid

from e2b import (
    AsyncSandbox,
    CommandExitException,
    FileNotFoundException,
    FilesystemEventType,
    FileType,
    PtySize,
    Sandbox,
)

ROOT = f"/tmp/envd-oracle-{uuid.uuid4().hex[:8]}"
RESULTS = []


def check(name):
    def deco(fn):
        RESULTS.append((name, fn))
        return fn

    return deco


def eq(got, want, what=""):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


# ---------------------------------------------------------------- sync: commands


@check("sync commands.run foreground stdout/stderr/exit code")
def _(sbx):
    r = sbx.commands.run("echo hello; echo err >&2")
    eq(r.stdout, "hello\n", "stdout")
    eq(r.stderr, "err\n", "stderr")
    eq(r.exit_code, 0, "exit code")
    try:
        sbx.commands.run("echo before; exit 3")
        raise AssertionError("no CommandExitException")
    except CommandExitException as e:
        eq(e.exit_code, 3, "exit code")
        eq(e.stdout, "before\n", "stdout")
        eq(e.error, "exit status 3", "error")


@check("sync commands.run envs, cwd and callbacks")
def _(sbx):
    os.makedirs(ROOT, exist_ok=True)
    seen = []
    r = sbx.commands.run(
        "echo $FOO; pwd; echo $E2B_SANDBOX", envs={"FOO": "bar"}, cwd=ROOT, on_stdout=seen.append
    )
    eq(r.stdout, f"bar\n{ROOT}\ntrue\n", "stdout")
    eq("".join(seen), r.stdout, "callback output")


@check("sync commands background, list, connect, send_stdin, kill")
def _(sbx):
    h = sbx.commands.run("sleep 0.5; echo bg", background=True)
    eq(h.wait().stdout, "bg\n", "background output")

    h = sbx.commands.run("read x; echo got $x", background=True, stdin=True)
    pids = [p.pid for p in sbx.commands.list()]
    if h.pid not in pids:
        raise AssertionError(f"pid {h.pid} not in list {pids}")
    h2 = sbx.commands.connect(h.pid)
    sbx.commands.send_stdin(h.pid, "hi\n")
    r = h2.wait()
    eq(r.stdout, "got hi\n", "connected output")

    h = sbx.commands.run("sleep 30", background=True)
    eq(sbx.commands.kill(h.pid), True, "kill")
    try:
        h.wait()
        raise AssertionError("killed command did not raise")
    except CommandExitException as e:
        eq(e.exit_code, -1, "exit code")
        eq(e.error, "signal: killed", "error")
    eq(sbx.commands.kill(99999999), False, "kill unknown pid")


# ---------------------------------------------------------------- sync: pty


@check("sync pty create, send_stdin, resize, kill")
def _(sbx):
    import threading

    h = sbx.pty.create(PtySize(rows=24, cols=80))
    out = []
    waiter = threading.Thread(target=lambda: h.wait(on_pty=lambda b: out.append(bytes(b))))
    waiter.start()

    def wait_for(needle):
        for _ in range(200):
            if needle in b"".join(out).decode(errors="replace"):
                return
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not in {b''.join(out)!r}")

    sbx.pty.send_stdin(h.pid, b"stty size\n")
    wait_for("24 80")
    sbx.pty.resize(h.pid, PtySize(rows=40, cols=100))
    sbx.pty.send_stdin(h.pid, b"stty size; exit 0\n")
    waiter.join(timeout=20)
    wait_for("40 100")

    h = sbx.pty.create(PtySize(rows=24, cols=80))
    eq(sbx.pty.kill(h.pid), True, "pty kill")


# ---------------------------------------------------------------- sync: files


@check("sync files write, read, write_files, list, exists, get_info")
def _(sbx):
    d = f"{ROOT}/sync"
    info = sbx.files.write(f"{d}/a.txt", "hello")
    eq((info.path, info.name), (f"{d}/a.txt", "a.txt"), "write info")
    eq(sbx.files.read(f"{d}/a.txt"), "hello", "read text")
    eq(bytes(sbx.files.read(f"{d}/a.txt", format="bytes")), b"hello", "read bytes")
    infos = sbx.files.write_files(
        [{"path": f"{d}/b.txt", "data": "bee"}, {"path": f"{d}/sub/c.bin", "data": b"\x00\x01"}]
    )
    eq(sorted(i.path for i in infos), [f"{d}/b.txt", f"{d}/sub/c.bin"], "write_files")
    eq(bytes(sbx.files.read(f"{d}/sub/c.bin", format="bytes")), b"\x00\x01", "binary")
    names = [e.name for e in sbx.files.list(d)]
    eq(names, ["a.txt", "b.txt", "sub"], "list")
    deep = [e.name for e in sbx.files.list(d, depth=2)]
    eq(deep, ["a.txt", "b.txt", "sub", "c.bin"], "list depth 2")
    eq(sbx.files.exists(f"{d}/a.txt"), True, "exists")
    eq(sbx.files.exists(f"{d}/nope"), False, "not exists")
    gi = sbx.files.get_info(f"{d}/a.txt")
    eq((gi.type, gi.size, gi.permissions), (FileType.FILE, 5, "-rw-r--r--"), "get_info")
    try:
        sbx.files.read(f"{d}/nope")
        raise AssertionError("no FileNotFoundException")
    except FileNotFoundException:
        pass


@check("sync files rename, make_dir, remove")
def _(sbx):
    d = f"{ROOT}/sync2"
    sbx.files.write(f"{d}/a.txt", "x")
    info = sbx.files.rename(f"{d}/a.txt", f"{d}/moved/b.txt")
    eq(info.path, f"{d}/moved/b.txt", "rename")
    eq(sbx.files.make_dir(f"{d}/newdir"), True, "make_dir")
    eq(sbx.files.make_dir(f"{d}/newdir"), False, "make_dir existing")
    sbx.files.remove(f"{d}/moved")
    eq(sbx.files.exists(f"{d}/moved/b.txt"), False, "removed")
    sbx.files.remove(f"{d}/does-not-exist")


@check("sync files watch_dir (polling)")
def _(sbx):
    d = f"{ROOT}/watch-sync"
    sbx.files.make_dir(d)
    h = sbx.files.watch_dir(d, recursive=True)
    sbx.files.write(f"{d}/f.txt", "data")
    events = []
    for _ in range(50):
        events += h.get_new_events()
        if any(e.type == FilesystemEventType.WRITE for e in events):
            break
        time.sleep(0.1)
    h.stop()
    got = [(e.name, e.type) for e in events]
    # As upstream: create, chmod (the chown), write (the SDK's own test counts 3 events).
    eq(
        got,
        [
            ("f.txt", FilesystemEventType.CREATE),
            ("f.txt", FilesystemEventType.CHMOD),
            ("f.txt", FilesystemEventType.WRITE),
        ],
        "events of one upload",
    )


# ---------------------------------------------------------------- async


async def async_checks():
    sbx = await AsyncSandbox.create()

    r = await sbx.commands.run("echo async; exit 0")
    eq(r.stdout, "async\n", "async run")

    h = await sbx.commands.run("read x; echo got $x", background=True, stdin=True)
    await sbx.commands.send_stdin(h.pid, "yo\n")
    eq((await h.wait()).stdout, "got yo\n", "async background")

    h = await sbx.commands.run("read x; echo conn $x", background=True, stdin=True)
    if h.pid not in [p.pid for p in await sbx.commands.list()]:
        raise AssertionError("async list misses the process")
    h2 = await sbx.commands.connect(h.pid)
    await sbx.commands.send_stdin(h.pid, "ok\n")
    eq((await h2.wait()).stdout, "conn ok\n", "async connect")

    h = await sbx.commands.run("sleep 30", background=True)
    eq(await sbx.commands.kill(h.pid), True, "async kill")
    eq(await sbx.commands.kill(99999999), False, "async kill unknown")

    r = await sbx.commands.run("id -un", user="root")
    eq(r.stdout, "root\n", "explicit user (Basic auth)")

    h = await sbx.pty.create(PtySize(rows=24, cols=80), on_data=lambda b: None)
    eq(await sbx.pty.kill(h.pid), True, "async pty kill")

    out = []
    h = await sbx.pty.create(PtySize(rows=24, cols=80), on_data=lambda b: out.append(bytes(b)))
    await sbx.pty.resize(h.pid, PtySize(rows=30, cols=90))
    await asyncio.sleep(0.3)
    await sbx.pty.send_stdin(h.pid, b"stty size; exit 0\n")
    await h.wait()
    text = b"".join(out).decode(errors="replace")
    if "30 90" not in text:
        raise AssertionError(f"async pty output {text!r}")

    d = f"{ROOT}/async"
    await sbx.files.make_dir(d)
    events = []
    w = await sbx.files.watch_dir(d, on_event=events.append, recursive=True, include_entry=True)
    await sbx.files.write(f"{d}/x.txt", "async data")
    eq(await sbx.files.read(f"{d}/x.txt"), "async data", "async read")
    eq([e.name for e in await sbx.files.list(d)], ["x.txt"], "async list")
    for _ in range(50):
        if any(e.type == FilesystemEventType.WRITE for e in events):
            break
        await asyncio.sleep(0.1)
    await w.stop()
    got = [(e.name, e.type) for e in events]
    eq(got[0], ("x.txt", FilesystemEventType.CREATE), "async first watch event")
    if ("x.txt", FilesystemEventType.WRITE) not in got:
        raise AssertionError(f"async events {got}")
    info = await sbx.files.get_info(f"{d}/x.txt")
    eq(info.size, 10, "async get_info")
    infos = await sbx.files.write_files(
        [{"path": f"{d}/m1", "data": "1"}, {"path": f"{d}/deep/m2", "data": b"2"}]
    )
    eq(len(infos), 2, "async write_files")
    eq(await sbx.files.exists(f"{d}/deep/m2"), True, "async exists")
    moved = await sbx.files.rename(f"{d}/deep/m2", f"{d}/m3")
    eq(moved.name, "m3", "async rename")
    eq(await sbx.files.make_dir(f"{d}/deep"), False, "async make_dir existing")
    await sbx.files.remove(f"{d}/deep")
    eq(await sbx.files.exists(f"{d}/deep"), False, "async remove")


@check("async sandbox: commands, pty, files, watch_dir (streaming)")
def _(_sbx):
    asyncio.run(async_checks())


def main():
    sbx = Sandbox.create()
    passed = failed = 0
    for name, fn in RESULTS:
        try:
            fn(sbx)
            passed += 1
            print(f"ok   {name}")
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
    sbx.commands.run(f"rm -rf {ROOT}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
