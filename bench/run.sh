#!/usr/bin/env bash
# The benchmark suite in one command: `bench/run.sh` (under ~10 minutes) or
# `bench/run.sh --quick` (about a minute). Any other arguments go to mensajero-bench
# (e.g. `--only throughput-0ms`).
#
# `bench/run.sh --cluster` compares one broker with a three-node cluster in the same sitting:
# three replicas on the default RabbitMQ, then three on the local cluster
# (`scripts/cluster.sh up rabbit`, Redis unchanged), alternated over 3 rounds by default
# (`--rounds N`, `--only` to pick other scenarios). It starts the cluster when it is not up and
# then stops it at the end; a cluster that was already up is left up.
#
# Loopback only. Starts RabbitMQ/Redis when missing (scripts/services.sh), never stops them,
# and works in a RabbitMQ vhost and under a Redis key prefix of its own, both deleted on exit
# (also on failure or Ctrl-C), so it can share the services with other people's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=""
cluster=""
args=()
for a in "$@"; do
  case "$a" in
    --quick) quick="--quick" ;;
    --cluster) cluster=1 ;;
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

cluster_started=""

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
  if [ -n "$cluster" ]; then
    ./scripts/cluster.sh rabbitmqctl 1 -q delete_vhost "$vhost" >/dev/null 2>&1 || true
    if [ -n "$cluster_started" ]; then ./scripts/cluster.sh down rabbit >&2 || true; fi
  fi
  # The bench deletes each scenario's keys itself; this catches an interrupted run.
  redis-cli -h 127.0.0.1 --scan --pattern "$run_id-*" | xargs -r -n 500 redis-cli -h 127.0.0.1 del >/dev/null || true
}
trap cleanup EXIT
rabbitmqctl -q add_vhost "$vhost"
rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*'

# The broker's own process, so its CPU per job is not mixed with other nodes' (a local
# cluster's nodes are beam.smp too); the bench falls back to every beam.smp without it.
pid_args=()
default_pid=$(rabbitmqctl -q eval 'os:getpid().' 2>/dev/null | tr -dc '0-9' || true)
if [ -n "$default_pid" ]; then pid_args+=(--rabbitmq-pids "$default_pid"); fi

if [ -n "$cluster" ]; then
  # Three nodes up: reuse them and leave them up. None: start them here, stop them on exit.
  # Some: `up` refuses, and this run fails without stopping what it did not start.
  if [ "$(./scripts/cluster.sh status | grep -cE '^ +c[0-9]@localhost +up ' || true)" -eq 0 ]; then
    cluster_started=1
  fi
  ./scripts/cluster.sh up rabbit >&2
  ./scripts/cluster.sh rabbitmqctl 1 -q add_vhost "$vhost"
  ./scripts/cluster.sh rabbitmqctl 1 -q set_permissions -p "$vhost" guest '.*' '.*' '.*'
  # `up` writes the nodes' URLs (default vhost "/"); ours replaces it.
  urls=$(./scripts/cluster.sh env | sed -n 's/^\(export \)\{0,1\}MENSAJERO_CLUSTER_AMQP_URLS=//p' |
    sed "s#/%2f#/$vhost#g")
  [ -n "$urls" ] || { echo "scripts/cluster.sh env gave no MENSAJERO_CLUSTER_AMQP_URLS" >&2; exit 1; }
  cluster_pids=$(./scripts/cluster.sh status | awk '/^ +c[0-9]@localhost +up +pid / {print $4}' | paste -sd,)
  pid_args+=(--cluster-amqp-urls "$urls" --cluster-rabbitmq-pids "$cluster_pids")
  case " ${args[*]-} " in *" --only"*) ;; *) args+=(--only scale-0ms-x3,scale-0ms-x3-cluster) ;; esac
  case " ${args[*]-} " in *" --rounds"*) ;; *) args+=(--rounds 3) ;; esac
fi

{
  echo "date:     $(date -Is)"
  echo "commit:   $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "nproc:    $(nproc)"
  echo "load:     $(uptime)"
  echo "rabbitmq: $(rabbitmqctl -q version 2>/dev/null || echo unknown)"
  if [ -n "$cluster" ]; then echo "cluster:  $urls (beam pids $cluster_pids; default node's $default_pid)"; fi
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
    "${pid_args[@]}" "${args[@]}" | tee "$out/table.md"
echo "load after: $(uptime)" | tee -a "$out/machine.txt" >&2
