# syntax=docker/dockerfile:1
# hookgate: the gateway, the flow consumer and the console in one small, non-root image.
#
#   docker build -t hookgate .
#   docker run -p 8080:8080 -v $PWD/hookgate.toml:/etc/hookgate/hookgate.toml hookgate
#
# The image carries config/hookgate.example.toml as /etc/hookgate/hookgate.toml, so the
# default command starts and says which secrets it is missing; mount your own config
# over it. The consumer: `--entrypoint hookgate-consumer … run --config FILE`; the
# console: `--entrypoint hookgate-console … run --config FILE`.
#
# Base images are pinned to a release (bump them deliberately; .dockerignore keeps
# target/ and .git/ out of the build context).

# Build stage: the Rust toolchain plus what librdkafka's bundled build needs
# (a C toolchain, cmake-free configure, perl for the vendored OpenSSL).
FROM rust:1.95.0-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential perl python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and target/ are BuildKit cache mounts: a rebuild after a source change
# compiles only hookgate's own crates, not its dependencies again.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p hookgate -p hookgate-consumer -p hookgate-console \
 && mkdir -p /out \
 && cp target/release/hookgate target/release/hookgate-consumer target/release/hookgate-console /out/ \
 && strip /out/hookgate /out/hookgate-consumer /out/hookgate-console

# Runtime stage: glibc, CA certificates for TLS to the brokers, nothing else.
FROM debian:12.12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin hookgate
COPY --from=build /out/hookgate /out/hookgate-consumer /out/hookgate-console /usr/local/bin/
COPY config/hookgate.example.toml /etc/hookgate/hookgate.toml
USER 10001
# The admin listener (health, readiness, metrics) listens on all interfaces in the
# container, so that an orchestrator's probes and a Prometheus scrape can reach it;
# publish 9091 only to them.
ENV HOOKGATE_ADMIN__LISTEN=0.0.0.0:9091
EXPOSE 8080 9091
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/hookgate", "healthcheck", "--admin", "127.0.0.1:9091"]
ENTRYPOINT ["/usr/local/bin/hookgate"]
CMD ["run", "--config", "/etc/hookgate/hookgate.toml"]
