#!/usr/bin/env bash
# Installs what building and testing snigate need on a Debian/Ubuntu machine, if missing:
# the build tools for Pingora and librdkafka, and the real TLS and Kafka clients the tests
# drive. Safe to run again; it does nothing when everything is there.
set -euo pipefail

packages=(build-essential cmake pkg-config make libssl-dev zlib1g-dev openssl curl kcat iproute2 ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install a Rust toolchain (https://rustup.rs) and run again" >&2
  exit 1
fi
echo "setup: ok ($(cargo --version))"
