#!/usr/bin/env bash
# Run the whole test suite against real RabbitMQ and Redis (started here when missing).
# Usage: scripts/test.sh [extra cargo-nextest / cargo test arguments]
#
# Against the local broker, the run gets a vhost of its own that is deleted afterwards
# whatever happens, so a crashed or killed run leaves no queues behind (each quorum queue is
# a Raft group; leftovers slow the broker for every later run). Set AMQP_URL to use another
# broker as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/services.sh
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

if [ -z "${AMQP_URL:-}" ] && command -v rabbitmqctl >/dev/null 2>&1; then
  vhost="mensajero-test-$(date +%s)-$$"
  rabbitmqctl -q add_vhost "$vhost" >/dev/null
  rabbitmqctl -q set_permissions -p "$vhost" guest ".*" ".*" ".*" >/dev/null
  trap 'rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true' EXIT
  export AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$vhost"
  echo "tests use vhost $vhost (deleted afterwards)"
fi
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
