#!/usr/bin/env bash
# Run every Reach benchmark in turn; JSON under bench/out/, tables on stdout (and in
# bench/out/run_all.log). Each script starts what it needs on 127.0.0.1 (ports 7100-7199,
# PostgreSQL databases reach_bench and reach_bench_relay, a SQLite file under bench/out/) and
# stops it again.
#
#   bash bench/run_all.sh            # everything, full repetitions (about 50-60 minutes)
#   EXTRA=0 bash bench/run_all.sh    # only the five benchmarks (no latency/GC probes)
#   QUICK=1 bash bench/run_all.sh    # one repetition, short steps (a smoke run, ~10 minutes)
#   BENCH_SRC=worktree bash bench/run_all.sh   # measure the work tree instead of HEAD
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p bench/out
LOG=bench/out/run_all.log
: >"$LOG"

# Our own processes only: every script also cleans up after itself.
cleanup() { jobs -p | xargs -r kill 2>/dev/null || true; }
trap cleanup EXIT INT TERM

ulimit -n "$(ulimit -Hn)" || true
"$PY" -c 'import psutil' 2>/dev/null || { echo "installing the bench tools (psutil, py-spy, uvloop) ..."; "$PY" -m pip install --quiet psutil py-spy uvloop; }

QUICK="${QUICK:-0}"
if [[ "$QUICK" == 1 ]]; then
    RT=(--quick); CONN=(--sockets 1000 --hold 20); PUSH=(--reps 1 --messages 600); SYNC=(--reps 3); PROF=(--pyspy-seconds 10)
else
    RT=(); CONN=(); PUSH=(); SYNC=(); PROF=()
fi

step() {
    local name=$1; shift
    echo "=== [$(date +%H:%M:%S)] $name: $*" | tee -a "$LOG"
    timeout 3600 "$PY" -m "$@" 2>&1 | tee -a "$LOG"
}

step "1/5 round trip (the relay, the relay with one INSERT per bid, SQLite, PostgreSQL)" bench.bench_roundtrip "${RT[@]}"
step "2/5 idle sockets, memory, latency" bench.bench_connections "${CONN[@]}"
step "3/5 push throughput" bench.bench_push "${PUSH[@]}"
step "4/5 sync catch-up" bench.bench_sync "${SYNC[@]}"
step "5/5 profile" bench.profile_hotpaths "${PROF[@]}"
if [[ "${EXTRA:-1}" == 1 ]]; then
    # Evidence for RESULTS.md: where an unloaded POST waits, the push worker alone, and
    # garbage-collection pauses with 5,000 sockets (the service's policy, then CPython's defaults).
    step "extra: latency probe" bench.probe_latency
    step "extra: CPU per bid by process at 200 bids/s" bench.cpu_per_bid
    step "extra: push worker" bench.bench_worker
    step "extra: sockets with the GC probe" bench.bench_connections --gc-probe "${CONN[@]}"
    step "extra: sockets with the GC probe, CPython's defaults" bench.bench_connections \
        --gc-probe --gc-policy off --systems reach-pg "${CONN[@]}"
fi
echo "=== [$(date +%H:%M:%S)] done: bench/out/*.json, log in $LOG" | tee -a "$LOG"
