#!/usr/bin/env bash
# Make sure RabbitMQ and Redis answer on their default local ports, installing and starting
# them when missing (Debian/Ubuntu, as root). Idempotent: does nothing when both are up.
# Mirrors shared/SERVICES.md so a fresh machine needs nothing by hand.
set -euo pipefail

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "services.sh: $1 needs root (run with sudo)" >&2
    exit 1
  fi
}

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  need_root "installing redis-server"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
if ! command -v rabbitmq-server >/dev/null; then
  need_root "installing rabbitmq-server"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
fi

if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
if ! rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
  rabbitmq-server -detached
fi

for _ in $(seq 90); do
  if rabbitmq-diagnostics -q check_running >/dev/null 2>&1 && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
    echo "services: RabbitMQ on 127.0.0.1:5672 and Redis on 127.0.0.1:6379 are up"
    exit 0
  fi
  sleep 1
done
echo "services: RabbitMQ or Redis did not come up in 90 s" >&2
exit 1
