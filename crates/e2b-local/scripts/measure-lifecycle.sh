#!/usr/bin/env bash
# Measures what issue 15 states, against an `e2b-local` binary (as root):
#   logs BYTES     a sandbox writes BYTES of "attacker line" lines straight into its stdout
#                  (/proc/2/fd/1); prints the server's peak RSS (VmHWM) before and after
#                  GET /sandboxes/{id}/logs?limit=10 and /v2/.../logs?limit=10&direction=backward,
#                  and the bytes kept on the host.
#   restart N      creates N sandboxes, SIGKILLs the server, restarts it and prints the time
#                  until it answers HTTP.
# E2B_LOCAL_BIN picks the binary (default: target/release/e2b-local, else target/debug).
# Usage: measure-lifecycle.sh logs 20000000 | measure-lifecycle.sh restart 200
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
BIN="${E2B_LOCAL_BIN:-$ROOT/target/release/e2b-local}"
[ -x "$BIN" ] || BIN="$ROOT/target/debug/e2b-local"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
DATA="$(mktemp -d /tmp/e2b-local-measure.XXXXXX)"
URL="http://127.0.0.1:$PORT"
PID=

serve() {
  "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" >"$DATA/serve.out" 2>>"$DATA/serve.err" &
  PID=$!
}
wait_listening() {
  until curl -s -o /dev/null "$URL/health"; do sleep 0.01; done
}
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$DATA"
}
trap cleanup EXIT
peak() { grep VmHWM "/proc/$PID/status" | awk '{print $2 / 1024 " MiB"}'; }

serve
wait_listening
KEY="$(sed -n 's/^export E2B_API_KEY=//p' "$DATA/serve.out")"
create() {
  curl -s -X POST -H "X-API-Key: $KEY" -H 'content-type: application/json' \
    -d '{"templateID":"base","secure":true,"timeout":3600}' "$URL/sandboxes"
}

case "${1:-}" in
  logs)
    BYTES="${2:?bytes}"
    SB="$(create)"
    ID="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["sandboxID"])' <<<"$SB")"
    TOKEN="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["envdAccessToken"])' <<<"$SB")"
    # One Connect envelope: Start `bash -c ...` as root.
    python3 -c "import json,struct,sys; b=json.dumps({'process':{'cmd':'/bin/bash','args':['-c','yes attacker line | head -c $BYTES > /proc/2/fd/1']}}).encode(); sys.stdout.buffer.write(b'\0'+struct.pack('>I',len(b))+b)" |
      curl -s -o /dev/null -X POST -H "E2b-Sandbox-Id: $ID" -H "E2b-Sandbox-Port: 49983" \
        -H "X-Access-Token: $TOKEN" -H "Authorization: Basic cm9vdDo=" \
        -H 'content-type: application/connect+json' --data-binary @- "$URL/process.Process/Start"
    echo "peak RSS before reading logs: $(peak)"
    curl -s -o /dev/null -w "v1 logs?limit=10: %{http_code}, %{size_download} B\n" -H "X-API-Key: $KEY" "$URL/sandboxes/$ID/logs?limit=10"
    curl -s -o /dev/null -w "v2 logs?limit=10&direction=backward: %{http_code}, %{size_download} B\n" -H "X-API-Key: $KEY" "$URL/v2/sandboxes/$ID/logs?limit=10&direction=backward"
    echo "peak RSS after: $(peak)"
    echo "log bytes on the host: $(cat "$DATA/logs/$ID.log" "$DATA/logs/$ID.log.1" 2>/dev/null | wc -c)"
    ;;
  restart)
    N="${2:?count}"
    CREATES=()
    for i in $(seq 1 "$N"); do
      create >/dev/null &
      CREATES+=($!)
      if (( i % 10 == 0 )); then wait "${CREATES[@]}"; CREATES=(); fi
    done
    [ ${#CREATES[@]} -eq 0 ] || wait "${CREATES[@]}"
    echo "alive before the crash: $(ls "$DATA/sandboxes" | wc -l)"
    kill -9 "$PID"; wait "$PID" 2>/dev/null || true
    START="$(date +%s%N)"
    serve
    wait_listening
    echo "restart with $N sandboxes alive: answering after $(( ($(date +%s%N) - START) / 1000000 )) ms"
    ;;
  *)
    echo "usage: $0 logs BYTES | restart N" >&2
    exit 2
    ;;
esac
