# syntax=docker/dockerfile:1
#
# snigate's container image: a stripped binary on Debian slim, run as an unprivileged user
# with every capability dropped (Kubernetes' restricted profile). It listens on 9092
# (Kafka), 8443 (REST and Schema Registry; the load balancer maps 443 to it) and 9080
# (admin: /metrics, /health, /ready, /routes).
#
#   docker build --build-arg SNIGATE_COMMIT="$(git rev-parse --short=12 HEAD)" -t snigate .
#   docker run --rm --stop-timeout 40 --read-only --cap-drop ALL \
#     --tmpfs /run/snigate:uid=10001 --tmpfs /var/lib/snigate:uid=10001 \
#     -e PKC_ENDPOINT=pkc-….confluent.cloud:9092 -e CLOUD_KEY=… -e CLOUD_SECRET=… \
#     -p 9092:9092 -p 443:8443 -p 9080:9080 snigate
#
# PKAC_ENDPOINT and SCHEMA_REGISTRY_ENDPOINT (REST, Schema Registry) are optional.
# --stop-timeout covers the drain on `docker stop` (grace_period_seconds is 25 s in
# conf/prod.yaml; Docker's default is 10 s).

# --- build ---------------------------------------------------------------
FROM rust:1-bookworm AS builder

# cmake builds zlib-ng (for pingora-core); pkg-config, the OpenSSL and zlib headers and make
# are for the Kafka client (librdkafka).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev zlib1g-dev make \
    && rm -rf /var/lib/apt/lists/*

# The commit, for snigate_build_info (the build context has no .git).
ARG SNIGATE_COMMIT=unknown
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p snigate --bin snigate \
    && strip --strip-all -o /snigate target/release/snigate

# --- run -----------------------------------------------------------------
FROM debian:bookworm-slim

# Debian's security updates replace package versions, so they are not pinned here.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 snigate \
    && useradd --system --uid 10001 --gid snigate --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin snigate \
    && install -d -o snigate -g snigate -m 0750 /run/snigate /var/lib/snigate

COPY --from=builder /snigate /usr/local/bin/snigate
COPY conf/prod.yaml /etc/snigate/snigate.yaml

ENV HTTPS_PORT=8443 \
    ADMIN_ADDRESS=0.0.0.0
USER 10001:10001
EXPOSE 9092 8443 9080
ENTRYPOINT ["/usr/local/bin/snigate"]
CMD ["-c", "/etc/snigate/snigate.yaml"]
