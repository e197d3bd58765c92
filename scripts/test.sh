#!/usr/bin/env bash
# Run the whole test suite against real RabbitMQ and Redis (started here when missing).
# Usage: scripts/test.sh [extra cargo-nextest / cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/services.sh
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
