#!/usr/bin/env bash
# Compatibility suite: E2B's official SDKs, unchanged from PyPI / npm, against `e2b-local serve`.
#
#   Python e2b==2.63.0 and e2b==2.45.1 (one venv each), JS e2b@2.51.0 (npm, Node >= 18)
#
# Needs root (sandboxes) and the PyPI / npm registries on the first run (the venvs and
# node_modules are cached under target/compat/, override with E2B_COMPAT_CACHE).
# Starts one server on a free loopback port with a fresh data directory, runs every SDK's
# checks (each prints PASS/FAIL lines), and ends with exactly one line `N passed, N failed`
# (totals over all SDKs). Exits non-zero if any check failed or an SDK run could not finish.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${E2B_COMPAT_CACHE:-$ROOT/target/compat}"
PY_VERSIONS=("2.63.0" "2.45.1")
JS_VERSION="2.51.0"
SUITE_TIMEOUT="${E2B_COMPAT_TIMEOUT:-600}"
mkdir -p "$CACHE"

total_pass=0
total_fail=0
finish() {
  echo "$total_pass passed, $total_fail failed"
  [ "$total_fail" -eq 0 ]
  exit $?
}
setup_failed() {
  echo "FAIL setup: $*"
  total_fail=$((total_fail + 1))
}

# --- the SDKs ----------------------------------------------------------------------------
for v in "${PY_VERSIONS[@]}"; do
  venv="$CACHE/py-$v"
  if ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('e2b') == '$v'" 2>/dev/null; then
    rm -rf "$venv"
    timeout 600 python3 -m venv "$venv" && timeout 600 "$venv/bin/pip" install -q "e2b==$v" ||
      setup_failed "could not install e2b==$v into $venv"
  fi
done
js="$CACHE/js"
if ! [ "$(node -p "require('$js/node_modules/e2b/package.json').version" 2>/dev/null)" = "$JS_VERSION" ]; then
  rm -rf "$js"
  mkdir -p "$js"
  printf '{"name":"e2b-compat","private":true,"type":"module"}\n' >"$js/package.json"
  (cd "$js" && timeout 600 npm install -q --no-audit --no-fund "e2b@$JS_VERSION" >/dev/null) ||
    setup_failed "could not npm install e2b@$JS_VERSION into $js"
fi

# --- the server --------------------------------------------------------------------------
(cd "$ROOT" && timeout 1800 cargo build -q -p e2b-local --bin e2b-local)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/e2b-local"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
DATA="$(mktemp -d /tmp/e2b-compat.XXXXXX)"
"$BIN" serve --network none --listen "127.0.0.1:$PORT" --data-dir "$DATA" >"$DATA/serve.out" 2>"$DATA/serve.err" &
PID=$!
cleanup() {
  kill "$PID" 2>/dev/null || true
  # SIGTERM kills every sandbox; don't wait forever for it.
  for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

for _ in $(seq 1 300); do
  grep -q '^export E2B_DOMAIN=' "$DATA/serve.out" 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q '^export E2B_DOMAIN=' "$DATA/serve.out" 2>/dev/null; then
  echo "e2b-local serve did not start:"
  cat "$DATA/serve.out" "$DATA/serve.err" || true
  setup_failed "e2b-local serve did not start"
  finish
fi
eval "$(grep '^export E2B_' "$DATA/serve.out")"
echo "# e2b-local on $E2B_API_URL (data: $DATA)"

# Runs one SDK's checks, echoes its output, adds its `N passed, N failed` line to the totals.
run_sdk() {
  local name="$1"
  shift
  local out="$DATA/$name.log" status=0
  echo "==> $name"
  timeout --kill-after=10 "$SUITE_TIMEOUT" "$@" >"$out" 2>&1 || status=$?
  # Everything but the SDK's own summary line (the script prints one overall).
  grep -v -E '^[0-9]+ passed, [0-9]+ failed$' "$out" || true
  local summary
  summary="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1 || true)"
  if [ -z "$summary" ]; then
    setup_failed "$name did not finish (exit status $status)"
    return
  fi
  local p f
  p="${summary%% passed*}"
  f="${summary#*, }"
  f="${f%% failed}"
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
  if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
    setup_failed "$name exited with status $status"
  fi
}

for v in "${PY_VERSIONS[@]}"; do
  if [ -x "$CACHE/py-$v/bin/python" ]; then
    run_sdk "python e2b==$v" "$CACHE/py-$v/bin/python" "$HERE/compat_py.py"
  fi
done
if [ -d "$js/node_modules/e2b" ]; then
  run_sdk "js e2b@$JS_VERSION" node "$HERE/compat_js.mjs" "$js/node_modules/e2b/dist/index.mjs"
fi

if [ "$total_fail" -ne 0 ]; then
  echo "--- server log (last 40 lines) ---"
  tail -n 40 "$DATA/serve.err" || true
fi
finish
