"""The official E2B Python SDK's side of `cargo run --release -p bench`.

Runs the same operations as the Rust side against the server named by E2B_API_URL,
E2B_SANDBOX_URL, E2B_API_KEY and E2B_DOMAIN, and prints one JSON object on stdout:
{"<measure>": [seconds, ...], ...}. Argument: iteration counts as JSON.
"""

import asyncio
import json
import sys
import time

from e2b import AsyncSandbox, Sandbox
from e2b.sandbox.filesystem.filesystem import WriteEntry


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    n = json.loads(sys.argv[1])
    out = {}

    samples = []
    for _ in range(n["create"]):
        t = time.perf_counter()
        sbx = Sandbox.create(timeout=120)
        samples.append(time.perf_counter() - t)
        sbx.kill()
    out["create"] = samples

    samples = []
    for _ in range(n["create"]):
        t = time.perf_counter()
        sbx = Sandbox.create(timeout=120)
        r = sbx.commands.run("true")
        samples.append(time.perf_counter() - t)
        assert r.exit_code == 0
        sbx.kill()
    out["create_first_command"] = samples

    sbx = Sandbox.create(timeout=300)
    try:
        sbx.commands.run("true")
        out["run_true"] = [timed(lambda: sbx.commands.run("true")) for _ in range(n["run_true"])]

        blob = bytes(range(256)) * (64 * 1024 * 1024 // 256)
        up, down = [], []
        for i in range(n["big"]):
            up.append(timed(lambda: sbx.files.write("/tmp/big.bin", blob)))
            got = []
            down.append(timed(lambda: got.append(sbx.files.read("/tmp/big.bin", format="bytes"))))
            assert len(got[0]) == len(blob)
        out["upload_64mib"] = up
        out["download_64mib"] = down

        samples = []
        for i in range(n["small_files"]):
            entries = [WriteEntry(path=f"/tmp/small{i}/f{j}.txt", data=f"file {j}") for j in range(1000)]
            samples.append(timed(lambda: sbx.files.write_files(entries)))
        out["write_1000_files"] = samples
    finally:
        sbx.kill()

    async def concurrent():
        async def one():
            t = time.perf_counter()
            s = await AsyncSandbox.create(timeout=120)
            return time.perf_counter() - t, s

        results = await asyncio.gather(*[one() for _ in range(50)])
        for _, s in results:
            await s.kill()
        return [d for d, _ in results]

    samples = []
    for _ in range(n["concurrent_rounds"]):
        samples.extend(asyncio.run(concurrent()))
    out["concurrent_50_creates"] = samples

    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
