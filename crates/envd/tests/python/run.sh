#!/usr/bin/env bash
# Runs the official E2B Python SDK (e2b==2.63.0) against a real envd on localhost:49983.
# Usage: crates/envd/tests/python/run.sh   (ENVD_BIN=/path/to/envd to skip the build)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../../.." && pwd)"
venv="$here/.venv"

if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import e2b, importlib.metadata as m; assert m.version("e2b") == "2.63.0"' 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'e2b==2.63.0'
fi

if [[ -z "${ENVD_BIN:-}" ]]; then
  (cd "$repo" && cargo build --quiet -p envd --bin envd)
  target="$(cd "$repo" && cargo metadata --format-version 1 --no-deps | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
  ENVD_BIN="$target/debug/envd"
fi

# The SDK in debug mode only talks to port 49983: refuse to run against someone else's server.
if ! "$venv/bin/python" - <<'EOF'
import socket, sys
for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    s = socket.socket(family, socket.SOCK_STREAM)
    # As envd does: TIME_WAIT leftovers of a previous run do not count as busy.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((addr, 49983))
    except OSError as e:
        if family == socket.AF_INET6 and e.errno == 99:  # no IPv6 loopback here
            continue
        print(f"port 49983 on {addr} is busy ({e}); stop whatever listens there first", file=sys.stderr)
        sys.exit(1)
    finally:
        s.close()
EOF
then
  exit 1
fi

# `localhost` may resolve to ::1 first: listen dual-stack where IPv6 exists.
listen=127.0.0.1
if "$venv/bin/python" -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null; then
  listen=::
fi
log="$(mktemp)"
"$ENVD_BIN" --listen "$listen" --port 49983 >"$log" 2>&1 &
envd_pid=$!
trap 'kill "$envd_pid" 2>/dev/null || true; wait "$envd_pid" 2>/dev/null || true; rm -f "$log"' EXIT

for _ in $(seq 1 100); do
  if "$venv/bin/python" -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:49983/health", timeout=1)' 2>/dev/null; then break; fi
  if ! kill -0 "$envd_pid" 2>/dev/null; then cat "$log" >&2; echo "envd exited early" >&2; exit 1; fi
  sleep 0.1
done

E2B_DEBUG=true "$venv/bin/python" "$here/oracle.py"
