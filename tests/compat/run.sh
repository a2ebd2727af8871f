#!/usr/bin/env bash
# Compatibility suite: E2B's official SDKs, unchanged from PyPI / npm, against `e2b-local serve`.
#
#   Python e2b==2.63.0 and e2b==2.45.1 (one venv each), JS e2b@2.51.0 (npm, Node >= 18)
#   Code interpreter: Python e2b-code-interpreter==2.11.5 (sync and async), JS
#   @e2b/code-interpreter@2.8.0 (ci_py.py, ci_js.mjs), against code-interpreter-v1 sandboxes;
#   that template is built first in the host's namespace (ci_template.sh), or those checks are
#   skipped, saying so, when Debian's archive or PyPI does not answer.
#
# Needs root (sandboxes, network namespaces), iproute2, nsenter, nftables and conntrack, and
# the PyPI / npm registries on the first run (the venvs and node_modules are cached under
# target/compat/, override with E2B_COMPAT_CACHE). Those downloads and the build happen in
# the host's namespace, before anything else; everything after runs in namespaces this
# script makes, so no packet of the checks can leave this machine:
#
#   [ uplink netns: e2b-local serve --network nat, ]  198.51.100.2 ── 198.51.100.1  [ internet netns ]
#   [ the SDKs' checks (127.0.0.1 is the server)   ]  default route → .1              203.0.113.10:80, .11:80 HTTP
#                                                                                      203.0.113.53:53 DNS
#
# The internet namespace has no route anywhere else (its servers: fake_internet.py). Both
# namespaces and every process in them are removed on every exit path; a leftover
# namespace, or a sandbox the server left running after SIGTERM, counts as a failure. The server's sandboxes get NAT and E2B's egress rules in
# the uplink namespace and resolve names through e2b-local's forwarder to 203.0.113.53.
# Runs every SDK's checks (each prints PASS/FAIL lines) against one server with a fresh data
# directory and ends with exactly one line `N passed, N failed` (totals over all SDKs).
# Exits non-zero if any check failed or an SDK run could not finish.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${E2B_COMPAT_CACHE:-$ROOT/target/compat}"
PY_VERSIONS=("2.63.0" "2.45.1")
JS_VERSION="2.51.0"
CI_PY_VERSION="2.11.5"
CI_JS_VERSION="2.8.0"
SUITE_TIMEOUT="${E2B_COMPAT_TIMEOUT:-600}"
mkdir -p "$CACHE"

total_pass=0
total_fail=0
setup_failed() {
  echo "FAIL setup: $*"
  total_fail=$((total_fail + 1))
}

# Everything this script starts or makes, removed by cleanup() on every exit path.
UPNS="e2bc-up-$$"      # the server's namespace, where the checks run too
INETNS="e2bc-inet-$$"  # the fake internet
DATA=""
PID=""    # e2b-local serve
FIPID=""  # fake_internet.py
CHILD=""  # the SDK run in progress
LEAKED="" # sandboxes the server left behind (reap_sandboxes)
made_netns=()
SLOW_STOP="" # set when a process needed SIGKILL
stop_pid() { # SIGTERM, up to $2 tenths of a second to exit, then SIGKILL
  local pid="$1" tenths="$2"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 "$tenths"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    SLOW_STOP="$pid"
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
# What a stopped server left of its sandboxes (it should leave nothing): kills the
# processes of each sandbox of this run's data directory (by its cgroup, `e2b-local/<id>`
# on cgroup v1 or v2), unmounts what is mounted under the data directory and removes those
# cgroups. Prints the ids of the sandboxes that still had processes or mounts.
reap_sandboxes() {
  [ -n "$DATA" ] && [ -d "$DATA/sandboxes" ] || return 0
  local dir id f p m procs left=()
  for dir in "$DATA"/sandboxes/*/; do
    [ -d "$dir" ] || continue
    id="$(basename "$dir")"
    for f in /sys/fs/cgroup/e2b-local/"$id"/cgroup.procs /sys/fs/cgroup/*/e2b-local/"$id"/cgroup.procs; do
      procs="$(cat "$f" 2>/dev/null || true)" # (cgroup files have size 0: read them)
      [ -n "$procs" ] || continue
      left+=("$id")
      for p in $procs; do kill -9 "$p" 2>/dev/null || true; done
    done
    grep -q " $dir" /proc/mounts && left+=("$id")
  done
  [ "${#left[@]}" -gt 0 ] || return 0
  sleep 0.5
  awk -v d="$DATA/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  for id in $(printf '%s\n' "${left[@]}" | sort -u); do
    echo "$id"
    rmdir /sys/fs/cgroup/e2b-local/"$id" /sys/fs/cgroup/*/e2b-local/"$id" 2>/dev/null || true
  done
}
cleanup() {
  # The server first (SIGTERM kills its sandboxes; don't wait forever for it), then an
  # interrupted SDK run: a create the client drops mid-way can leave e2b-local a sandbox
  # it does not track. What the server leaves anyway is reaped and reported.
  local started=$SECONDS
  stop_pid "$PID" 600
  [ -z "$PID" ] || echo "# e2b-local shut down in $((SECONDS - started)) s" >&2
  [ -z "$SLOW_STOP" ] || LEAKED="$LEAKED e2b-local needed SIGKILL after 60 s"
  PID=""
  stop_pid "$CHILD" 50 # an SDK run (timeout passes the SIGTERM on)
  CHILD=""
  local leaked
  leaked="$(reap_sandboxes)"
  [ -z "$leaked" ] || LEAKED="$leaked"
  stop_pid "$FIPID" 20
  FIPID=""
  local ns
  for ns in "${made_netns[@]}"; do
    # Whatever is still inside (nothing, normally) goes before its namespace does.
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns delete "$ns" 2>/dev/null || true
  done
  made_netns=()
  if [ -n "$DATA" ]; then
    # A server that did not finish its shutdown leaves its disks mounted (reported above).
    local m
    for m in $(awk -v d="$DATA/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
      umount -l "$m" || true
    done
    rm -rf "$DATA"
  fi
  DATA=""
}
finish() {
  local keep_log="${1:-}"
  if [ -n "$keep_log" ] && [ -n "$DATA" ]; then
    echo "--- server log (last 40 lines) ---"
    tail -n 40 "$DATA/serve.err" || true
  fi
  cleanup
  local left
  left="$(ip netns list | grep -E "^($UPNS|$INETNS)( |\$)" || true)"
  [ -z "$left" ] || setup_failed "namespaces left after clean-up: $left"
  [ -z "$LEAKED" ] || setup_failed "e2b-local left sandboxes running after SIGTERM (reaped): $(echo $LEAKED)"
  echo "$total_pass passed, $total_fail failed"
  [ "$total_fail" -eq 0 ]
  exit $?
}
on_exit() {
  cleanup
  [ -z "$LEAKED" ] || echo "e2b-local left sandboxes running after SIGTERM (reaped): $(echo $LEAKED)" >&2
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the SDKs ----------------------------------------------------------------------------
for v in "${PY_VERSIONS[@]}"; do
  "$HERE/py-sdk-venv.sh" "$v" "$CACHE/py-$v" || setup_failed "could not install e2b==$v into $CACHE/py-$v"
done
js="$CACHE/js"
if ! [ "$(node -p "require('$js/node_modules/e2b/package.json').version" 2>/dev/null)" = "$JS_VERSION" ]; then
  rm -rf "$js"
  mkdir -p "$js"
  printf '{"name":"e2b-compat","private":true,"type":"module"}\n' >"$js/package.json"
  (cd "$js" && timeout 600 npm install -q --no-audit --no-fund "e2b@$JS_VERSION" >/dev/null) ||
    setup_failed "could not npm install e2b@$JS_VERSION into $js"
fi
"$HERE/ci-sdk-venv.sh" "$CI_PY_VERSION" "$CACHE/ci-py-$CI_PY_VERSION" ||
  setup_failed "could not install e2b-code-interpreter==$CI_PY_VERSION into $CACHE/ci-py-$CI_PY_VERSION"
ci_js="$CACHE/ci-js"
if ! [ "$(node -p "require('$ci_js/node_modules/@e2b/code-interpreter/package.json').version" 2>/dev/null)" = "$CI_JS_VERSION" ]; then
  rm -rf "$ci_js"
  mkdir -p "$ci_js"
  printf '{"name":"e2b-compat-ci","private":true,"type":"module"}\n' >"$ci_js/package.json"
  (cd "$ci_js" && timeout 600 npm install -q --no-audit --no-fund "@e2b/code-interpreter@$CI_JS_VERSION" "e2b@$JS_VERSION" >/dev/null) ||
    setup_failed "could not npm install @e2b/code-interpreter@$CI_JS_VERSION into $ci_js"
fi

# --- the server --------------------------------------------------------------------------
if ! (cd "$ROOT" && timeout 1800 cargo build -q -p e2b-local --bin e2b-local); then
  setup_failed "cargo build -p e2b-local failed"
  finish
fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/e2b-local"
DATA="$(mktemp -d /tmp/e2b-compat.XXXXXX)"

# --- the code interpreter's template, in the host's namespace (see ci_template.sh) -------
CI_TEMPLATE=""
ci_status=0
"$HERE/ci_template.sh" "$BIN" "$DATA" || ci_status=$?
case "$ci_status" in
  0) CI_TEMPLATE=built ;;
  2) echo "# the code interpreter's checks are skipped: its template could not be built here" ;;
  *) setup_failed "building the code-interpreter-v1 template (host namespace) failed" ;;
esac

# --- the fake internet (see the header) --------------------------------------------------
# Enter a namespace with nsenter --net only: `ip netns exec` remounts /sys, which hides the
# cgroup hierarchy the server needs.
in_ns() {
  local ns="$1"
  shift
  nsenter --net="/run/netns/$ns" "$@"
}
make_fake_internet() {
  ip netns add "$UPNS" || return 1
  made_netns+=("$UPNS")
  ip netns add "$INETNS" || return 1
  made_netns+=("$INETNS")
  local up="vcu$$" inet="vci$$" a
  ip link add "$up" netns "$UPNS" type veth peer name "$inet" netns "$INETNS" &&
    ip -n "$UPNS" link set lo up &&
    ip -n "$UPNS" addr add 198.51.100.2/24 dev "$up" &&
    ip -n "$UPNS" link set "$up" up &&
    ip -n "$UPNS" route add default via 198.51.100.1 &&
    ip -n "$INETNS" link set lo up &&
    ip -n "$INETNS" addr add 198.51.100.1/24 dev "$inet" &&
    ip -n "$INETNS" link set "$inet" up || return 1
  for a in 203.0.113.10 203.0.113.11 203.0.113.53; do
    ip -n "$INETNS" addr add "$a/32" dev lo || return 1
  done
}
if ! make_fake_internet; then
  setup_failed "could not make the fake internet's namespaces (needs root and iproute2)"
  finish
fi
in_ns "$INETNS" python3 "$HERE/fake_internet.py" >"$DATA/internet.out" 2>"$DATA/internet.err" &
FIPID=$!
for _ in $(seq 1 100); do
  grep -qx ready "$DATA/internet.out" 2>/dev/null && break
  kill -0 "$FIPID" 2>/dev/null || break
  sleep 0.1
done
if ! grep -qx ready "$DATA/internet.out" 2>/dev/null; then
  cat "$DATA/internet.err" || true
  setup_failed "the fake internet's servers did not start"
  finish
fi

PORT=3000 # the uplink namespace is new: nothing else listens in it
in_ns "$UPNS" "$BIN" serve --network nat --dns-upstream 203.0.113.53 \
  --listen "127.0.0.1:$PORT" --data-dir "$DATA" >"$DATA/serve.out" 2>"$DATA/serve.err" &
PID=$!
for _ in $(seq 1 300); do
  # The last export line: once it is there, all are (the volume content API's URL too).
  grep -q '^export E2B_VOLUME_API_URL=' "$DATA/serve.out" 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q '^export E2B_VOLUME_API_URL=' "$DATA/serve.out" 2>/dev/null; then
  echo "e2b-local serve did not start:"
  cat "$DATA/serve.out" "$DATA/serve.err" || true
  setup_failed "e2b-local serve did not start"
  finish
fi
eval "$(grep '^export E2B_' "$DATA/serve.out")"
echo "# e2b-local on $E2B_API_URL in netns $UPNS, fake internet in $INETNS (data: $DATA)"

# Runs one SDK's checks, echoes its output, adds its `N passed, N failed` line to the totals.
run_sdk() {
  local name="$1"
  shift
  local out="$DATA/$name.log" status=0
  echo "==> $name"
  # In the background and waited for, so that a signal to this script is handled at once
  # (cleanup() stops it) rather than after the SDK run.
  timeout --kill-after=10 "$SUITE_TIMEOUT" "$@" >"$out" 2>&1 &
  CHILD=$!
  wait "$CHILD" || status=$?
  CHILD=""
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
    run_sdk "python e2b==$v" nsenter --net="/run/netns/$UPNS" "$CACHE/py-$v/bin/python" "$HERE/compat_py.py"
  fi
done
if [ -d "$js/node_modules/e2b" ]; then
  run_sdk "js e2b@$JS_VERSION" nsenter --net="/run/netns/$UPNS" node "$HERE/compat_js.mjs" "$js/node_modules/e2b/dist/index.mjs"
fi

if [ -n "$CI_TEMPLATE" ]; then
  if [ -x "$CACHE/ci-py-$CI_PY_VERSION/bin/python" ]; then
    run_sdk "python e2b-code-interpreter==$CI_PY_VERSION" nsenter --net="/run/netns/$UPNS" \
      "$CACHE/ci-py-$CI_PY_VERSION/bin/python" "$HERE/ci_py.py"
  fi
  if [ -d "$ci_js/node_modules/@e2b/code-interpreter" ]; then
    run_sdk "js code-interpreter@$CI_JS_VERSION" nsenter --net="/run/netns/$UPNS" \
      node "$HERE/ci_js.mjs" "$ci_js/node_modules/@e2b/code-interpreter/dist/index.mjs"
  fi
fi

if [ "$total_fail" -ne 0 ]; then
  finish with-log
fi
finish
