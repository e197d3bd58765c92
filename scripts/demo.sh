#!/usr/bin/env bash
# The demo: start RabbitMQ and Redis if needed, run a worker with the built-in mock gateway,
# enqueue one sample job of every message type, and print outcomes as they arrive.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/services.sh
cargo build --quiet
bin=target/debug/mensajero
config=config/demo.toml
# A fresh dedupe namespace per run, so running the demo again sends again instead of
# reporting every job as a duplicate of the previous run's.
export MENSAJERO__REDIS__PREFIX="mensajero-demo-$(date +%s)"
log=$(mktemp -t mensajero-demo.XXXXXX.log)

$bin --config $config topology >/dev/null
# Watch first, so no event is missed; stop after 5 s without one.
$bin --config $config outcomes --idle 5s &
watcher=$!
$bin --config $config --log-format json run 2>"$log" &
worker=$!
trap 'kill $worker $watcher 2>/dev/null || true' EXIT

sleep 1
echo "--- outcomes as they arrive (routing key, job id, attempt, detail)"
$bin --config $config enqueue --file examples/jobs.jsonl | tail -n 1 | sed 's/^/--- enqueued examples\/jobs.jsonl: /' 
wait $watcher || true
kill -TERM $worker
wait $worker || true
echo "--- worker stopped cleanly; its JSON log is in $log"
