# syntax=docker/dockerfile:1

# --- build ---------------------------------------------------------------
FROM rust:1-bookworm AS builder

# cmake builds zlib-ng (libz-ng-sys, which pingora-core pulls in through flate2).
# pkg-config, the OpenSSL and zlib headers and make are for the Kafka client (librdkafka)
# that comes later.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev zlib1g-dev make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin snigate \
    && cp target/release/snigate /snigate

# --- run -----------------------------------------------------------------
FROM debian:bookworm-slim

COPY --from=builder /snigate /usr/local/bin/snigate

# The gateway runs as an unprivileged user. So that it can still listen on 443, the binary
# gets the one capability it needs (CAP_NET_BIND_SERVICE); setcap is removed again once used.
# Note: this does not work with --security-opt no-new-privileges (or Kubernetes'
# allowPrivilegeEscalation: false) or when NET_BIND_SERVICE is dropped from the container:
# in those setups listen on ports above 1023 instead.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libcap2-bin \
    && setcap cap_net_bind_service=+ep /usr/local/bin/snigate \
    && apt-get purge -y --auto-remove libcap2-bin \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 snigate \
    && useradd --system --uid 10001 --gid snigate --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin snigate \
    && mkdir -p /etc/snigate /run/snigate \
    && chown snigate:snigate /run/snigate

# The example config keeps its PID file and upgrade socket in /run/snigate. Its admin
# listener is bound to 127.0.0.1:9080; mount a config that binds 0.0.0.0:9080 to reach
# the admin port from outside the container.
COPY conf/snigate.yaml /etc/snigate/snigate.yaml

USER 10001:10001
EXPOSE 9092 443 9080
ENTRYPOINT ["snigate"]
CMD ["-c", "/etc/snigate/snigate.yaml"]
