#!/usr/bin/env bash
# CPU flame graphs of the edge and the agent under one load-test scenario: perf samples both
# processes (cpu-clock: this kind of VM has no hardware counters; DWARF call graphs: release
# binaries carry debug info, not frame pointers), inferno folds the stacks and draws the SVGs.
# Kernel time is included (the `_[k]` frames), so the graph shows system calls beside our code.
#
# Usage: loadtest/flamegraph.sh [BIN_DIR] [SCENARIO] [SECONDS] [OUT_DIR]
#   BIN_DIR holds warren-edge, warren and warren-loadtest (default $CARGO_TARGET_DIR/release);
#   SCENARIO is a warren-loadtest scenario (default ka_1k); SECONDS of sampling (default 5).
# Needs perf (Debian: apt-get install linux-perf) and inferno
#   (cargo install --locked --root ~/.cache/warren-tools inferno).
# Writes OUT_DIR/{edge,agent}.svg and .folded; prints each process's kernel share and the
# functions with the most samples of their own.
set -euo pipefail
B=$(realpath "${1:-${CARGO_TARGET_DIR:-target}/release}")   # absolute: the script changes directory
SCENARIO=${2:-ka_1k}
SECS=${3:-5}
D=${4:-$(mktemp -d /tmp/warren-flamegraph.XXXX)}
LT=${LOADTEST:-$B/warren-loadtest}
for f in warren-edge warren warren-loadtest; do
  [ -x "$B/$f" ] || { echo "$B/$f not found: build it with 'cargo build --release -p warren-edge -p warren-cli -p warren-loadtest' or pass the directory that holds it" >&2; exit 2; }
done
command -v perf >/dev/null || { echo "perf not found: install it (Debian: apt-get install linux-perf)" >&2; exit 2; }
PATH="$PATH:$HOME/.cache/warren-tools/bin"
command -v inferno-collapse-perf >/dev/null || {
  echo "inferno not found: install it with 'cargo install --locked --root ~/.cache/warren-tools inferno'" >&2; exit 2; }
case "$SECS" in ''|*[!0-9]*) echo "SECONDS must be a whole number of seconds, got '$SECS'" >&2; exit 2;; esac

mkdir -p "$D"; cd "$D"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
free_port() { python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"; }
"$LT" origin --listen 127.0.0.1:0 > origin.log 2>&1 & PIDS+=($!)
for _ in $(seq 1 50); do grep -q listening origin.log && break; sleep 0.1; done
OPORT=$(awk '{print $4}' origin.log); OPORT=${OPORT##*:}
EP=$(free_port)
RUST_LOG=warn "$B/warren-edge" --listen 127.0.0.1:$EP --token T > edge.log 2>&1 & EPID=$!; PIDS+=($EPID)
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$EP) 2>/dev/null && break; sleep 0.1; done
"$B/warren" http "$OPORT" --local-host 127.0.0.1 --edge "http://127.0.0.1:$EP" --token T \
  --subdomain bench --json > agent.out 2> agent.err & APID=$!; PIDS+=($APID)
for _ in $(seq 1 150); do grep -q tunnel_ready agent.out 2>/dev/null && break; sleep 0.1; done
grep -q tunnel_ready agent.out || { echo "the agent did not come up; see $D/agent.err" >&2; exit 1; }
"$LT" --scenarios "$SCENARIO" --duration 1 --target-url 127.0.0.1:$EP \
  --target-host bench.localhost:$EP > warm.log 2>&1   # warm-up
# The load test runs the scenario against its own origin directly first, then through the
# tunnel: sampling (system-wide, so that short runs between sleeps are not under-sampled as
# per-process cpu-clock sampling does) starts when the direct part is done.
"$LT" --scenarios "$SCENARIO" --duration "$SECS" --target-url 127.0.0.1:$EP \
  --target-host bench.localhost:$EP --json run.json > run.log 2>&1 & LOAD=$!; PIDS+=($LOAD)
for _ in $(seq 1 $((SECS * 100 + 3000))); do
  grep -Eq "^ +$SCENARIO +direct" run.log && break
  kill -0 $LOAD 2>/dev/null || break
  sleep 0.01
done
grep -Eq "^ +$SCENARIO +direct" run.log || { echo "the load test did not get past the direct run; see $D/run.log" >&2; exit 1; }
perf record -q -e cpu-clock -F ${FREQ:-499} --call-graph ${CALLGRAPH:-dwarf,16384} -a -o perf.data \
  -- sleep "$SECS" 2> perf.err || { echo "perf record failed; see $D/perf.err" >&2; exit 1; }
wait $LOAD || { echo "the load test failed; see $D/run.log" >&2; exit 1; }
grep -E "^ +$SCENARIO " run.log || true
for who in edge agent; do
  pid=$EPID; [ $who = agent ] && pid=$APID
  perf script -i perf.data --pid "$pid" 2>/dev/null | inferno-collapse-perf --all > $who.folded
  inferno-flamegraph --title "warren $who, $SCENARIO, ${SECS} s" < $who.folded > $who.svg
  awk -v who=$who -v secs="$SECS" '
    { n = $NF; total += n; line = $0; sub(/ [0-9]+$/, "", line);
      k = split(line, frames, ";"); leaf = frames[k]; self[leaf] += n;
      if (leaf ~ /_\[k\]$/) kernel += n }
    END {
      if (total == 0) { print who ": no samples"; exit }
      # Weights are cpu-clock periods in nanoseconds.
      printf "%s: %.2f s of CPU sampled (%.0f %% of a core), %.0f %% in the kernel; most time of its own:\n", who, total / 1e9, 100 * total / 1e9 / secs, 100 * kernel / total
      for (f in self) printf "%8.1f %%  %s\n", 100 * self[f] / total, f | "sort -rn | head -12"
    }' $who.folded
  # Where the time went by system call (on loopback the sender's call also runs the receiver's
  # TCP processing), user space, or the kernel outside system calls (interrupts, scheduling).
  echo "  by system call:"
  awk '{ n = $NF; total += n; line = $0; sub(/ [0-9]+$/, "", line);
      k = split(line, f, ";"); m = "user space";
      for (i = 1; i < k; i++) if (f[i] == "do_syscall_64_[k]") {
        m = f[i + 1]; sub(/_\[k\]$/, "", m); sub(/^__x64_sys_/, "", m); sub(/^do_|^ksys_/, "", m);
        m = "system call " m; break }
      if (m == "user space" && line ~ /_\[k\]/) m = "kernel outside system calls";
      by[m] += n }
    END { if (total > 0) for (m in by) printf "%8.1f %%  %s\n", 100 * by[m] / total, m | "sort -rn | head -8" }' $who.folded
  echo
done
echo "flame graphs: $D/edge.svg $D/agent.svg (folded stacks beside them)"
