"""E2B's official code-interpreter SDK for Python (`e2b-code-interpreter`, PyPI) against
e2b-local's `code-interpreter-v1` sandboxes: every check once with `AsyncSandbox` and once
with the sync `Sandbox` (its calls moved to a thread, so that a check can do two things at
once the same way for both).

Run by run.sh, which exports E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY and E2B_DOMAIN, after
the template was built in the host's namespace (the checks run without internet).
Every check asserts values. Prints `PASS ci-py-<version>-<sync|async> <check>` / `FAIL ...`
lines and a last line `N passed, N failed`; exits 1 if any check failed.
"""

import asyncio
import base64
import importlib.metadata
import inspect
import struct
import sys
import time
import traceback
import uuid
import zlib

from e2b import NotFoundException, TimeoutException
from e2b_code_interpreter import AsyncSandbox, Sandbox

VERSION = importlib.metadata.version("e2b-code-interpreter")
TAG = uuid.uuid4().hex[:10]
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


async def call(fn, *args, **kwargs):
    """Calls an SDK method, sync or async: on a thread (a sync call blocks there, an async
    one only makes its coroutine), then awaits what an async one made."""
    result = await asyncio.to_thread(fn, *args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


async def new_sandbox(kind):
    return await call(kind.create, timeout=300, metadata={"compat": TAG})


def png_size(data):
    """(width, height) of a PNG whose every IDAT inflates to its rows (8-bit samples)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind}"
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color = ihdr[:4]
    assert depth == 8, depth
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    assert len(zlib.decompress(idat)) == height * (1 + width * channels)
    return width, height


@check
async def stdout_and_stderr_stream_in_order(sbx):
    seen = []
    ex = await call(
        sbx.run_code,
        "import sys, time\nprint('one', flush=True)\ntime.sleep(0.5)\n"
        "print('two', file=sys.stderr, flush=True)\ntime.sleep(0.5)\nprint('three')",
        on_stdout=lambda m: seen.append((m.line, m.error)),
        on_stderr=lambda m: seen.append((m.line, m.error)),
    )
    assert seen == [("one\n", False), ("two\n", True), ("three\n", False)], seen
    assert ex.logs.stdout == ["one\n", "three\n"], ex.logs
    assert ex.logs.stderr == ["two\n"], ex.logs
    assert ex.error is None and ex.results == [], ex


@check
async def main_result_state_and_execution_count(sbx):
    ex = await call(sbx.run_code, "1+1")
    assert ex.text == "2", ex
    assert len(ex.results) == 1 and ex.results[0].is_main_result, ex.results
    assert list(ex.results[0].formats()) == ["text"], list(ex.results[0].formats())
    first = ex.execution_count
    assert isinstance(first, int), first
    await call(sbx.run_code, "x = 40\nimport math")
    ex = await call(sbx.run_code, "x + 2, math.floor(2.5)")
    assert ex.text == "(42, 2)", ex
    assert ex.execution_count == first + 2, (first, ex.execution_count)


@check
async def matplotlib_figure_is_a_png(sbx):
    ex = await call(
        sbx.run_code,
        "import matplotlib.pyplot as plt\nplt.figure(figsize=(4, 3), dpi=100)\n"
        "plt.plot([1, 2, 3], [1, 4, 9])\nplt.title('Squares')\nplt.show()",
    )
    assert ex.error is None, ex.error
    figures = [r for r in ex.results if r.png]
    assert len(figures) == 1, ex.results
    width, height = png_size(base64.b64decode(figures[0].png))
    assert 100 < width <= 400 and 100 < height <= 300, (width, height)
    assert not figures[0].is_main_result
    assert "png" in list(figures[0].formats())


@check
async def matplotlib_figure_has_chart_data(sbx):
    ex = await call(
        sbx.run_code,
        "import matplotlib.pyplot as plt\nplt.figure()\n"
        "plt.bar(['a', 'b'], [3, 5], label='units')\nplt.title('Units')\nplt.show()",
    )
    charts = [r.chart for r in ex.results if r.chart is not None]
    assert len(charts) == 1, [list(r.formats()) for r in ex.results]
    assert charts[0].type.value == "bar", charts[0].type
    assert charts[0].title == "Units", charts[0].title
    assert [(e.label, e.value) for e in charts[0].elements] == [("a", 3), ("b", 5)], [
        (e.label, e.value) for e in charts[0].elements
    ]


@check
async def pandas_dataframe_is_html(sbx):
    ex = await call(
        sbx.run_code,
        "import pandas as pd\npd.DataFrame({'city': ['Oslo', 'Lima'], 'temp': [3, 19]})",
    )
    assert len(ex.results) == 1, ex.results
    result = ex.results[0]
    assert result.is_main_result
    assert "<table" in result.html and "<td>Oslo</td>" in result.html, result.html
    assert "Lima" in result.text, result.text


@check
async def exception_has_name_value_traceback(sbx):
    errors = []
    ex = await call(
        sbx.run_code,
        "def divide(a, b):\n    return a / b\nprint('before')\ndivide(1, 0)",
        on_error=errors.append,
    )
    assert ex.error.name == "ZeroDivisionError", ex.error
    assert ex.error.value == "division by zero", ex.error
    assert "divide" in ex.error.traceback, ex.error.traceback
    assert errors == [ex.error], errors
    assert ex.logs.stdout == ["before\n"], ex.logs


@check
async def timeout_interrupts_and_the_next_run_works(sbx):
    await call(sbx.run_code, "kept = 'still here'")
    started = time.time()
    try:
        await call(
            sbx.run_code,
            "import time\nfor i in range(600):\n    time.sleep(0.1)",
            timeout=2,
        )
        raise AssertionError("no timeout")
    except TimeoutException as e:
        assert "Execution timed out" in str(e), str(e)
    assert time.time() - started < 15, time.time() - started
    started = time.time()
    ex = await call(sbx.run_code, "kept")
    assert ex.text == "still here", ex
    assert time.time() - started < 20, time.time() - started


@check
async def contexts_are_isolated_and_restart_clears_state(sbx):
    a = await call(sbx.create_code_context)
    b = await call(sbx.create_code_context, cwd="/tmp")
    assert a.language == "python" and a.cwd == "/home/user", a
    assert b.cwd == "/tmp" and a.id != b.id, (a, b)
    await call(sbx.run_code, "secret = 'a'", context=a)
    ex = await call(sbx.run_code, "secret", context=b)
    assert ex.error.name == "NameError", ex
    ex = await call(sbx.run_code, "import os; os.getcwd()", context=b)
    assert ex.text == "/tmp", ex
    ex = await call(sbx.run_code, "secret")
    assert ex.error.name == "NameError", ex
    ids = [c.id for c in await call(sbx.list_code_contexts)]
    assert a.id in ids and b.id in ids, ids
    assert (await call(sbx.run_code, "secret", context=a)).text == "a"
    await call(sbx.restart_code_context, a)
    ex = await call(sbx.run_code, "secret", context=a)
    assert ex.error.name == "NameError", ex
    await call(sbx.remove_code_context, b.id)
    ids = [c.id for c in await call(sbx.list_code_contexts)]
    assert b.id not in ids, ids
    try:
        await call(sbx.run_code, "1", context=b)
        raise AssertionError("ran in a removed context")
    except NotFoundException:
        pass
    try:
        await call(sbx.restart_code_context, "no-such-context")
        raise AssertionError("restarted a context that does not exist")
    except NotFoundException:
        pass


@check
async def env_vars_are_per_run(sbx):
    ex = await call(
        sbx.run_code,
        "import os; os.environ.get('RUN_VAR')",
        envs={"RUN_VAR": "only this run"},
    )
    assert ex.text == "only this run", ex
    ex = await call(sbx.run_code, "import os; os.environ.get('RUN_VAR')")
    assert ex.text is None, ex
    ex = await call(
        sbx.run_code, 'echo "$RUN_VAR"', language="bash", envs={"RUN_VAR": "bash too"}
    )
    assert "".join(ex.logs.stdout) == "bash too\n", ex.logs


@check
async def bash_context_keeps_its_shell_state(sbx):
    ctx = await call(sbx.create_code_context, language="bash", cwd="/tmp")
    assert ctx.language == "bash", ctx
    await call(sbx.run_code, "GREETING=hello; cd /etc", context=ctx)
    ex = await call(sbx.run_code, 'echo "$GREETING from $(pwd)"', context=ctx)
    assert "".join(ex.logs.stdout) == "hello from /etc\n", ex.logs
    try:
        await call(sbx.run_code, "1", language="python", context=ctx)
        raise AssertionError("language and context together")
    except Exception as e:
        assert type(e).__name__ == "InvalidArgumentException", repr(e)


@check
async def kernel_killed_from_outside_is_a_clear_error(sbx):
    await call(sbx.run_code, "lost = 1")
    started = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()

    def first_line(m):
        if not started.done():
            loop.call_soon_threadsafe(
                lambda: started.done() or started.set_result(m.line)
            )

    running = asyncio.ensure_future(
        call(
            sbx.run_code,
            "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)",
            on_stdout=first_line,
        )
    )
    pid = (await asyncio.wait_for(started, 60)).strip()
    await call(sbx.commands.run, f"kill -9 {pid}", user="root")
    ex = await asyncio.wait_for(running, 30)
    assert ex.error is not None and ex.error.name == "ContextRestarting", ex.error
    ex = await call(sbx.run_code, "lost")
    assert ex.error.name == "NameError", ex
    assert (await call(sbx.run_code, "1+1")).text == "2"


async def run_all(kind, label):
    passed = failed = 0
    sbx = None
    try:
        sbx = await new_sandbox(kind)
    except Exception:
        print(f"FAIL {label} create")
        traceback.print_exc(file=sys.stdout)
        return 0, 1
    try:
        for fn in CHECKS:
            try:
                await fn(sbx)
                passed += 1
                print(f"PASS {label} {fn.__name__}", flush=True)
            except Exception:
                failed += 1
                print(f"FAIL {label} {fn.__name__}", flush=True)
                traceback.print_exc(file=sys.stdout)
    finally:
        try:
            await call(sbx.kill)
        except Exception:
            pass
    return passed, failed


async def main():
    passed = failed = 0
    for kind, label in ((AsyncSandbox, "async"), (Sandbox, "sync")):
        p, f = await run_all(kind, f"ci-py-{VERSION}-{label}")
        passed, failed = passed + p, failed + f
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
