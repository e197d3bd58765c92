# syntax=docker/dockerfile:1
#
# mensajero worker image. Two stages:
#   build   — compiles the release binary; dependencies are built first against a dummy crate
#             so that editing src/ does not recompile the whole dependency tree.
#   runtime — debian:bookworm-slim with CA certificates (gateways are HTTPS) and curl (the
#             HEALTHCHECK: the binary has no HTTP client of its own for that), running as a
#             non-root user.
#
#   docker build -t mensajero .
#   docker run --rm -e MENSAJERO__AMQP__URL=amqp://… -e MENSAJERO__REDIS__URL=redis://… mensajero
#   docker run --rm -p 8090:8090 mensajero mock-gateway --listen 0.0.0.0:8090

ARG RUST_VERSION=1
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src

# 1. Dependencies only. A dummy lib + bin with the real manifest and lock file: this layer
#    stays cached until Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
# The workspace also names the benchmark crate: cargo needs its manifest (and a stub source)
# to load the workspace, though only the worker is built (it is the only default member).
COPY bench/Cargo.toml bench/Cargo.toml
RUN mkdir src bench/src \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > bench/src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src

# 2. The crate itself. `config/default.toml` is compiled in (include_str!), so it must be
#    present at build time. COPY keeps the files' own mtimes, which can be older than the
#    dummy build's outputs: touch them so cargo rebuilds the crate rather than shipping the
#    dummy binary.
COPY src ./src
COPY config ./config
RUN find src -name '*.rs' -exec touch {} + \
 && cargo build --release --locked \
 && strip target/release/mensajero

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin mensajero
COPY --from=build /src/target/release/mensajero /usr/local/bin/mensajero
# The built-in defaults (also compiled into the binary) and the demo, for reference and for
# `--config /etc/mensajero/demo.toml`. Mount your own file and point MENSAJERO_CONFIG at it.
COPY config/ /etc/mensajero/
WORKDIR /etc/mensajero
USER 10001:10001
# Logs: JSON lines on stderr whenever stderr is not a terminal (`--log-format auto`, the
# default), so containers log JSON; RUST_LOG=debug etc. changes the level (default info).
# [http] listen: /metrics, /healthz, /readyz, /webhooks/{channel}.
EXPOSE 8080
# /healthz answers while the process is alive; /readyz (503 until RabbitMQ and Redis are
# connected) is for load balancers and Kubernetes readiness, not for restarting a container.
# It assumes the default [http] listen port; the mock-gateway command listens elsewhere, so
# compose overrides this check for that service.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:8080/healthz || exit 1
# The worker drains in-flight jobs on SIGTERM within [worker] shutdown_grace (30 s): give
# `docker stop` more than that (`docker stop -t 40`, compose `stop_grace_period`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["mensajero"]
CMD ["run"]
