#!/usr/bin/env bash
# Runs a command against `e2b-local serve` (host namespace, NAT networking) on a data
# directory, with the lines `serve` prints (E2B_API_URL, E2B_API_KEY, E2B_DOMAIN, ...)
# exported: for tests that need a server whose sandboxes reach the package registries (the
# embedded host has no networking), e.g. on a data directory where ci_template.sh built
# `code-interpreter-v1`.
#
#   tests/compat/with_ci_server.sh E2B_LOCAL_BIN DATA_DIR COMMAND [ARGS...]
#
# Exits with the command's status; the server is stopped on every path.
set -euo pipefail
BIN="$1"
DATA="$2"
shift 2
PID=""
stop() {
  [ -n "$PID" ] || return 0
  kill "$PID" 2>/dev/null || true
  for _ in $(seq 1 600); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
}
trap stop EXIT
# A sandbox address pool no other server's routes are in (as ci_template.sh picks it).
POOL=""
for n in $(seq 230 250); do
  if ! ip -4 route show | grep -q "^10\.$n\."; then
    POOL="10.$n.0.0/16"
    break
  fi
done
[ -n "$POOL" ] || { echo "no free sandbox address pool in 10.230-250.0.0/16"; exit 1; }
"$BIN" serve --listen 127.0.0.1:0 --data-dir "$DATA" --network-pool "$POOL" \
  >"$DATA/ci-server.out" 2>"$DATA/ci-server.err" &
PID=$!
for _ in $(seq 1 300); do
  grep -q '^export E2B_DOMAIN=' "$DATA/ci-server.out" 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q '^export E2B_DOMAIN=' "$DATA/ci-server.out" 2>/dev/null; then
  cat "$DATA/ci-server.out" "$DATA/ci-server.err" || true
  echo "e2b-local serve did not start"
  exit 1
fi
eval "$(grep '^export ' "$DATA/ci-server.out")"
status=0
"$@" || status=$?
stop
exit "$status"
