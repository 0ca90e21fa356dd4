#!/usr/bin/env bash
# Instruction profile of the edge and the agent with valgrind's callgrind (perf's hardware
# counters are not available on this kind of VM). Counts are deterministic, so they hold on a
# busy machine where CPU seconds do not.
# Usage: loadtest/callgrind.sh [BIN_DIR] [OUT_DIR]   (BIN_DIR holds warren-edge, warren and
# warren-loadtest; default $CARGO_TARGET_DIR/release). Prints instructions per request.
set -euo pipefail
B=$(realpath "${1:-${CARGO_TARGET_DIR:-target}/release}")   # absolute: the script changes directory
LT=${LOADTEST:-$B/warren-loadtest}
D=${2:-$(mktemp -d /tmp/warren-callgrind.XXXX)}
mkdir -p "$D"; cd "$D"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
free_port() { python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"; }
"$LT" origin --listen 127.0.0.1:0 > origin.log 2>&1 & PIDS+=($!)
for _ in $(seq 1 50); do grep -q listening origin.log && break; sleep 0.1; done
OPORT=$(awk '{print $4}' origin.log); OPORT=${OPORT##*:}
EP=$(free_port)
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$D/cg.edge" "$B/warren-edge" --listen 127.0.0.1:$EP --token T > edge.log 2>&1 & EPID=$!; PIDS+=($EPID)
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$EP) 2>/dev/null && break; sleep 0.2; done
valgrind --tool=callgrind --callgrind-out-file="$D/cg.agent" "$B/warren" http "$OPORT" --local-host 127.0.0.1 \
  --edge "http://127.0.0.1:$EP" --token T --subdomain bench --json > agent.out 2> agent.err & APID=$!; PIDS+=($APID)
for _ in $(seq 1 150); do grep -q tunnel_ready agent.out 2>/dev/null && break; sleep 0.2; done
run() { "$LT" --scenarios "$1" --duration "$2" --target-url 127.0.0.1:$EP --target-host bench.localhost:$EP --json "$3" 2>/dev/null >/dev/null; }
run ka_1k 2 warm.json
for s in ka_1k ka_1m; do
  callgrind_control -z $EPID >/dev/null; callgrind_control -z $APID >/dev/null
  run $s 10 $s.json
  callgrind_control -d $s $EPID >/dev/null; callgrind_control -d $s $APID >/dev/null
  sleep 1
  n=$(python3 -c "import json;print([r for r in json.load(open('$s.json'))['rows'] if r['target']=='warren'][0]['requests'])")
  for who in edge agent; do
    f=$(ls -t cg.$who.* | head -1)
    ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1);print $1}')
    echo "$s $who: $n requests, $ir instructions, $((ir / (n>0?n:1))) per request ($f)"
  done
done
echo "profiles in $D (callgrind_annotate --inclusive=yes FILE | less)"
