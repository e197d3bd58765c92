#!/usr/bin/env bash
# The benchmark suite in one command: `bench/run.sh` (under ~10 minutes) or
# `bench/run.sh --quick` (about a minute). Any other arguments go to mensajero-bench
# (e.g. `--only throughput-0ms`).
#
# Loopback only. Starts RabbitMQ/Redis when missing (scripts/services.sh), never stops them,
# and works in a RabbitMQ vhost and under a Redis key prefix of its own, both deleted on exit
# (also on failure or Ctrl-C), so it can share the services with other people's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=""
args=()
for a in "$@"; do
  case "$a" in
    --quick) quick="--quick" ;;
    *) args+=("$a") ;;
  esac
done

./scripts/services.sh

target="${CARGO_TARGET_DIR:-target}"
# Release builds: a debug worker would measure the compiler's defaults, not mensajero.
cargo build --release -p mensajero --bin mensajero
cargo build --release -p mensajero-bench

run_id="mensajero-bench-$$"
vhost="$run_id"
out="bench/out"
mkdir -p "$out"
rm -f "$out/pids"

cleanup() {
  # Only the processes this run started (their pids are recorded as they start); a pid
  # that is gone or reused by a process of another command is left alone.
  if [ -f "$out/pids" ]; then
    while read -r pid; do
      if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "$out/\|mock-gateway --listen 127.0.0.1"; then
        kill -TERM "$pid" 2>/dev/null || true
      fi
    done < "$out/pids"
    rm -f "$out/pids"
  fi
  rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
  # The bench deletes each scenario's keys itself; this catches an interrupted run.
  redis-cli -h 127.0.0.1 --scan --pattern "$run_id-*" | xargs -r -n 500 redis-cli -h 127.0.0.1 del >/dev/null || true
}
trap cleanup EXIT
rabbitmqctl -q add_vhost "$vhost"
rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*'

{
  echo "date:     $(date -Is)"
  echo "commit:   $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "nproc:    $(nproc)"
  echo "load:     $(uptime)"
  echo "rabbitmq: $(rabbitmqctl -q version 2>/dev/null || echo unknown)"
  echo "redis:    $(redis-server --version | awk '{print $3}')"
  free -h
} | tee "$out/machine.txt" >&2

# Hard bound on the whole run, whatever happens inside.
if [ -n "$quick" ]; then limit=300; else limit=900; fi
timeout --signal=INT --kill-after=30 "$limit" \
  "$target/release/mensajero-bench" $quick \
    --amqp-url "amqp://guest:guest@127.0.0.1:5672/$vhost" \
    --redis-url "redis://127.0.0.1:6379" \
    --redis-prefix "$run_id" \
    --bin "$target/release/mensajero" \
    --out "$out" \
    "${args[@]}" | tee "$out/table.md"
echo "load after: $(uptime)" | tee -a "$out/machine.txt" >&2
