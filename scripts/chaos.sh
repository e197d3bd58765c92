#!/usr/bin/env bash
# The long fault campaigns: every scenario of tests/it/chaos.rs with 5,000 jobs across 3 worker
# processes (release build), one scenario at a time, each printing one line:
#   jobs, faults injected, lost, duplicated, out of order, what the gateway saw, time.
# Usage: scripts/chaos.sh [jobs] [nextest filter…]   (default 5000 jobs; the suite runs the same code with 300)
# The cluster campaigns (cluster_* in tests/it/chaos.rs and tests/it/cluster.rs) start and stop
# the local clusters of scripts/cluster.sh themselves; `scripts/chaos.sh 5000 -E "test(/cluster_/)"`
# runs only them.
# Loopback only; every campaign is bounded in time (15 min) and cleans up after itself.
# It includes one real RabbitMQ restart (rabbitmqctl stop_app/start_app): run it on a machine
# whose broker nothing else is using at the time.
set -euo pipefail
cd "$(dirname "$0")/.."
export CHAOS_JOBS="${1:-5000}"
# --no-capture shows each scenario's line as it finishes (and runs them one at a time, so
# they do not compete for the two cores); the worker processes log warnings only.
exec ./scripts/test.sh --release --profile chaos --test it --run-ignored all --no-capture "${@:2}"
