# Placeholder until the operations issue: a correct multi-stage build of the worker.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 mensajero
COPY --from=build /src/target/release/mensajero /usr/local/bin/mensajero
USER mensajero
EXPOSE 8080
ENTRYPOINT ["mensajero"]
CMD ["run"]
