#!/usr/bin/env bash
# Profile the worker under the bench's load:
# `bench/profile.sh perf|strace [SCENARIO] [SECONDS]` or `bench/profile.sh callgrind|heaptrack [SCENARIO]`.
#
#   perf   — `perf record -e cpu-clock` (a software timer: these VMs expose no hardware
#            counters) on the worker process; writes bench/out/perf-report.txt.
#   strace — `strace -c -f` on the worker process: syscalls by kind; writes
#            bench/out/strace.txt (strace slows the worker: counts are right, times are not).
#   callgrind — the worker runs under `valgrind --tool=callgrind` for the --quick size of the
#            scenario (instructions per function, ~50x slower); writes
#            bench/out/callgrind-report.txt.
#   heaptrack — the worker runs under heaptrack for the whole scenario (allocations by call
#            site, what was live at the peak); writes bench/out/heaptrack-report.txt. Use it on
#            inflight-2000-1s to see what each in-flight job keeps.
#
# Same isolation as run.sh: its own vhost and Redis prefix, deleted afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-perf}"
scenario="${2:-throughput-0ms}"
seconds="${3:-6}"

./scripts/services.sh >/dev/null
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p mensajero --bin mensajero
cargo build --release -p mensajero-bench

run_id="mensajero-bench-prof-$$"
out="bench/out"
mkdir -p "$out"
rm -f "$out/pids"
cleanup() {
  if [ -n "${bench_pid:-}" ] && kill -0 "$bench_pid" 2>/dev/null; then
    kill -INT "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  rabbitmqctl -q delete_vhost "$run_id" >/dev/null 2>&1 || true
  redis-cli -h 127.0.0.1 --scan --pattern "$run_id-*" | xargs -r -n 500 redis-cli -h 127.0.0.1 del >/dev/null || true
}
trap cleanup EXIT
rabbitmqctl -q add_vhost "$run_id"
rabbitmqctl -q set_permissions -p "$run_id" guest '.*' '.*' '.*'

wrapper=()
size=()
if [ "$mode" = callgrind ]; then
  wrapper=(--worker-wrapper "valgrind --tool=callgrind --callgrind-out-file=$out/callgrind.out")
  size=(--quick)
elif [ "$mode" = heaptrack ]; then
  rm -f "$out"/heaptrack.worker.*
  wrapper=(--worker-wrapper "heaptrack -o $out/heaptrack.worker")
fi
timeout 300 "$target/release/mensajero-bench" --only "$scenario" "${size[@]}" "${wrapper[@]}" \
  --amqp-url "amqp://guest:guest@127.0.0.1:5672/$run_id" --redis-prefix "$run_id" \
  --bin "$target/release/mensajero" --out "$out" > "$out/profile-table.md" &
bench_pid=$!

# The pids file gets the mock gateway first, then the worker(s).
worker=""
for _ in $(seq 600); do
  worker="$(sed -n 2p "$out/pids" 2>/dev/null || true)"
  [ -n "$worker" ] && break
  sleep 0.05
done
[ -n "$worker" ] || { echo "no worker started" >&2; exit 1; }

case "$mode" in
  perf)
    perf record -q -e cpu-clock -F 1999 -g -p "$worker" -o "$out/perf.data" -- sleep "$seconds" 2>/dev/null || true
    # Flat profiles (-g none): the release binary has no frame pointers, so call chains are
    # unreliable; self time by symbol and by shared object is what we read.
    perf report -i "$out/perf.data" --no-children --sort dso,symbol -g none --stdio 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | cut -c1-200 > "$out/perf-report.txt" || true
    perf report -i "$out/perf.data" --no-children --sort dso -g none --stdio 2>/dev/null \
      | grep -v '^#' | grep -v '^$' > "$out/perf-dso.txt" || true
    ;;
  strace)
    timeout "$((seconds + 5))" strace -c -f -p "$worker" -o "$out/strace.txt" 2>/dev/null &
    strace_pid=$!
    sleep "$seconds"
    kill -INT "$strace_pid" 2>/dev/null || true
    wait "$strace_pid" 2>/dev/null || true
    ;;
  callgrind)
    # The worker writes its profile when it exits at the end of the scenario.
    wait "$bench_pid"
    bench_pid=""
    callgrind_annotate "$out/callgrind.out" 2>/dev/null | head -80 | cut -c1-200 > "$out/callgrind-report.txt" || true
    callgrind_annotate --inclusive=yes "$out/callgrind.out" 2>/dev/null | head -80 | cut -c1-200 > "$out/callgrind-inclusive.txt" || true
    ;;
  heaptrack)
    wait "$bench_pid"
    bench_pid=""
    # The bench stopped the heaptrack wrapper, not the worker under it: stop the worker, and
    # let heaptrack finish writing its data before reading it.
    pkill -TERM -f -- "--config $out/$scenario-" 2>/dev/null || true
    for _ in $(seq 300); do
      pgrep -f heaptrack_interpret >/dev/null || break
      sleep 0.1
    done
    heaptrack_print -f "$out"/heaptrack.worker.* --print-peaks 1 --print-allocators 1 \
      --print-temporary 0 --print-leaks 0 --peak-limit 25 2>/dev/null \
      | cut -c1-220 > "$out/heaptrack-report.txt" || true
    ;;
  *) echo "mode is perf, strace, callgrind or heaptrack" >&2; exit 2 ;;
esac
if [ -n "$bench_pid" ]; then
  wait "$bench_pid"
  bench_pid=""
fi
cat "$out/profile-table.md"
