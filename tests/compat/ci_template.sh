#!/usr/bin/env bash
# Builds the `code-interpreter-v1` template into a data directory, in the host's network
# namespace: the template comes from Debian's archive and PyPI, which run.sh's checks (in
# namespaces without internet) cannot reach. A built template stays in the data directory,
# so the server run.sh starts afterwards on the same directory has it.
#
#   tests/compat/ci_template.sh E2B_LOCAL_BIN DATA_DIR
#
# Starts `e2b-local serve` on a free port of 127.0.0.1, creates one code-interpreter-v1
# sandbox (the server answers 503 while it builds the template), kills it, stops the server.
# Exit status: 0 built, 2 skipped (a registry did not answer; says so), 1 failed.
set -euo pipefail
BIN="$1"
DATA="$2"
TEMPLATE="code-interpreter-v1"
BUILD_TIMEOUT="${E2B_COMPAT_CI_BUILD_TIMEOUT:-3000}"
mkdir -p "$DATA"

# Asked through their ordinary clients (apt, pip), as scripts/test does.
if ! timeout 120 apt-get update -qq >/dev/null 2>&1; then
  echo "skipped: Debian's package archive did not answer; the $TEMPLATE template cannot be built"
  exit 2
fi
if ! timeout 120 python3 -m pip download --no-deps --quiet -d "$(mktemp -d)" e2b-charts==1.0.0 >/dev/null 2>&1; then
  echo "skipped: PyPI did not answer; the $TEMPLATE template cannot be built"
  exit 2
fi

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

# Other e2b-local servers may run in the host's namespace: a sandbox address pool none of
# their routes is in.
POOL=""
for n in $(seq 230 250); do
  if ! ip -4 route show | grep -q "^10\.$n\."; then
    POOL="10.$n.0.0/16"
    break
  fi
done
[ -n "$POOL" ] || { echo "no free sandbox address pool in 10.230-250.0.0/16"; exit 1; }
"$BIN" serve --listen 127.0.0.1:0 --data-dir "$DATA" --network-pool "$POOL" \
  >"$DATA/ci-build.out" 2>"$DATA/ci-build.err" &
PID=$!
for _ in $(seq 1 300); do
  grep -q '^export E2B_DOMAIN=' "$DATA/ci-build.out" 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q '^export E2B_DOMAIN=' "$DATA/ci-build.out" 2>/dev/null; then
  cat "$DATA/ci-build.out" "$DATA/ci-build.err" || true
  echo "e2b-local serve (host namespace) did not start"
  exit 1
fi
API_URL="$(sed -n 's/^export E2B_API_URL=//p' "$DATA/ci-build.out")"
API_KEY="$(sed -n 's/^export E2B_API_KEY=//p' "$DATA/ci-build.out")"

echo "# building $TEMPLATE (host namespace, $API_URL; up to $BUILD_TIMEOUT s)"
started=$SECONDS
while :; do
  code="$(curl -s -m 600 -o "$DATA/ci-build.create" -w '%{http_code}' -X POST "$API_URL/v2/sandboxes" \
    -H "X-API-Key: $API_KEY" -H 'Content-Type: application/json' \
    -d "{\"templateID\":\"$TEMPLATE\",\"timeout\":60}" || true)"
  [ "$code" = 201 ] && break
  if [ "$code" != 503 ] || [ $((SECONDS - started)) -ge "$BUILD_TIMEOUT" ]; then
    echo "creating a $TEMPLATE sandbox answered $code after $((SECONDS - started)) s: $(head -c 2000 "$DATA/ci-build.create" 2>/dev/null)"
    tail -n 40 "$DATA/ci-build.err" || true
    exit 1
  fi
  sleep 5
done
id="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sandboxID"])' "$DATA/ci-build.create")"
curl -s -m 60 -o /dev/null -X DELETE "$API_URL/sandboxes/$id" -H "X-API-Key: $API_KEY" || true
echo "# $TEMPLATE built in $((SECONDS - started)) s"
