#!/usr/bin/env bash
# The demo: start RabbitMQ and Redis if needed, run a worker and a mock gateway, enqueue one
# sample job of every message type, and print outcomes as they arrive: queued → sent →
# delivered → read, from the gateway's (simulated, signed) webhooks; then the customer's answer
# to the button message comes back as an inbound event carrying that job's metadata.
#
# Usage: scripts/demo.sh [mock|waspy|whaapy|wazzup|seven|meta]
#   mock (default): the in-process simulator. Any other: the demo channel speaks that gateway's
#   real API to `mensajero mock-gateway`, which answers and sends receipts in its format; types
#   that gateway cannot express fail as unsupported_message_type, naming it.
set -euo pipefail
cd "$(dirname "$0")/.."

provider="${1:-mock}"
case "$provider" in
  mock|waspy|whaapy|wazzup|seven|meta) ;;
  *) echo "usage: $0 [mock|waspy|whaapy|wazzup|seven|meta]" >&2; exit 2 ;;
esac

./scripts/services.sh
cargo build --quiet
bin=target/debug/mensajero
config=config/demo.toml
export MENSAJERO__CHANNELS__DEMO__PROVIDER="$provider"
# The demo's digits sender suits every format but Wazzup's, whose channelId is a UUID.
if [ "$provider" = wazzup ]; then
  export MENSAJERO__CHANNELS__DEMO__SENDER="e0629e11-0f67-4567-92a9-2237e91ec1b9"
fi
# Made-up credentials: the demo gateway checks they are present, the worker signs and checks
# receipts with the secret. Real ones come from your environment, never from files.
export DEMO_GATEWAY_KEY="demo-key-not-secret"
export DEMO_WEBHOOK_SECRET="demo-webhook-secret"
# A fresh dedupe namespace per run, so running the demo again sends again instead of
# reporting every job as a duplicate of the previous run's.
export MENSAJERO__REDIS__PREFIX="mensajero-demo-$(date +%s)"
# Its own exchanges and queues, deleted at the end: a job the demo left waiting (a retry
# parked in a delay queue) must not turn up in your next run or in a real deployment's queues.
export MENSAJERO__AMQP__PREFIX="mensajero-demo"
log=$(mktemp -t mensajero-demo.XXXXXX.log)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  $bin --config $config topology --delete >/dev/null 2>&1 || true
  # This run's dedupe and receipt records (scripts/services.sh runs Redis on the default port).
  redis-cli -h 127.0.0.1 --scan --pattern "$MENSAJERO__REDIS__PREFIX:*" \
    | xargs -r -n 500 redis-cli -h 127.0.0.1 del >/dev/null 2>&1 || true
}
trap cleanup EXIT

if [ "$provider" != mock ]; then
  $bin mock-gateway --listen 127.0.0.1:8090 --latency 40ms \
    --receipts-url http://127.0.0.1:8080/webhooks/demo --delivered-after 1s --read-after 2s \
    --reply-after 3s \
    --webhook-secret-env DEMO_WEBHOOK_SECRET >/dev/null 2>>"$log" &
  pids+=($!)
fi
$bin --config $config topology >/dev/null
# Watch first, so no event is missed; stop after 5 s without one.
$bin --config $config outcomes --idle 5s &
watcher=$!
pids+=($watcher)
# Customers' answers, as the CRM would get them: the button reply carries its job's metadata.
# (The whole event is one JSON line; with jq installed only the interesting part is shown.)
show_reply() {
  if command -v jq >/dev/null; then
    jq -c --unbuffered '{reply: .reply.title, answers_job: .context.job_id, metadata: .context.metadata}'
  else
    cat
  fi
}
$bin --config $config inbound --type reply --idle 8s 2>/dev/null | show_reply \
  | sed -u 's/^/inbound reply.demo          /' &
inbound=$!
pids+=($inbound)
$bin --config $config --log-format json run 2>>"$log" &
worker=$!
pids+=($worker)

for _ in $(seq 50); do
  curl -fs http://127.0.0.1:8080/readyz >/dev/null 2>&1 && break
  sleep 0.2
done
echo "--- gateway format: $provider; outcomes as they arrive (routing key, job id, attempt, detail)"
$bin --config $config enqueue --file examples/jobs.jsonl | tail -n 1 | sed 's/^/--- enqueued examples\/jobs.jsonl: /'
wait $watcher || true
wait $inbound || true
kill -TERM $worker
wait $worker || true
echo "--- worker stopped cleanly; its JSON log is in $log"
