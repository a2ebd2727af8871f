#!/usr/bin/env bash
# The official Python SDK (e2b==2.63.0 from PyPI, in a venv) against `e2b-local serve`.
# Needs root (sandboxes). Creates its venv, starts the server on a free port with a fresh
# data directory, runs test_sdk.py and ends with `N passed, N failed`.
# E2B_LOCAL_PY_AS_USER=<user>: the server runs as that user, rootless (the user is created
# with a subordinate id range if missing; needs newuidmap from the uidmap package).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../../.." && pwd)"
VENV="${E2B_LOCAL_PY_VENV:-$ROOT/target/e2b-local-py-venv}"
SDK_VERSION="2.63.0"

if ! "$VENV/bin/python" -c "import e2b, importlib.metadata as m; assert m.version('e2b') == '$SDK_VERSION'" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "e2b==$SDK_VERSION"
fi

(cd "$ROOT" && cargo build -q -p e2b-local --bin e2b-local)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/e2b-local"

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
DATA="$(mktemp -d /tmp/e2b-local-py.XXXXXX)"
AS_USER="${E2B_LOCAL_PY_AS_USER:-}"
if [ -n "$AS_USER" ]; then
  id -u "$AS_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$AS_USER"
  if ! grep -q "^$AS_USER:" /etc/subuid 2>/dev/null || ! grep -q "^$AS_USER:" /etc/subgid 2>/dev/null; then
    usermod --add-subuids 400000-465535 --add-subgids 400000-465535 "$AS_USER"
  fi
  chown "$AS_USER:" "$DATA"
  # The user must be able to run the binary: copy it when the checkout is not reachable.
  if ! setpriv --reuid "$AS_USER" --regid "$AS_USER" --init-groups test -x "$BIN"; then
    cp "$BIN" "$DATA/e2b-local" && chmod 755 "$DATA/e2b-local" && BIN="$DATA/e2b-local"
  fi
  # The server writes its data dir as the user; the logs stay root's.
  mkdir "$DATA/data" && chown "$AS_USER:" "$DATA/data"
  setpriv --reuid "$AS_USER" --regid "$AS_USER" --init-groups \
    env -i HOME="$(getent passwd "$AS_USER" | cut -d: -f6)" PATH=/usr/local/bin:/usr/bin:/bin \
    "$BIN" serve --network none --listen "127.0.0.1:$PORT" --data-dir "$DATA/data" >"$DATA/serve.out" 2>"$DATA/serve.err" &
  export E2B_LOCAL_EXPECT_ROOTLESS=1
else
  "$BIN" serve --network none --listen "127.0.0.1:$PORT" --data-dir "$DATA" >"$DATA/serve.out" 2>"$DATA/serve.err" &
fi
PID=$!
cleanup() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

for _ in $(seq 1 300); do
  grep -q '^export E2B_DOMAIN=' "$DATA/serve.out" 2>/dev/null && break
  if ! kill -0 "$PID" 2>/dev/null; then break; fi
  sleep 0.1
done
if ! grep -q '^export E2B_DOMAIN=' "$DATA/serve.out" 2>/dev/null; then
  echo "e2b-local serve did not start:" >&2
  cat "$DATA/serve.out" "$DATA/serve.err" >&2 || true
  echo "0 passed, 1 failed"
  exit 1
fi
eval "$(grep '^export E2B_' "$DATA/serve.out")"
# For the tests that start a server of their own.
export E2B_LOCAL_BIN="$BIN"

status=0
"$VENV/bin/python" "$HERE/test_sdk.py" || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server log ---" >&2
  tail -n 50 "$DATA/serve.err" >&2 || true
fi
exit "$status"
