#!/usr/bin/env bash
# Runs every snigate test: unit tests, the config checks and the process-level tests
# against real TLS clients and upstreams. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked --workspace --bins
cargo test --release --locked --workspace --all-targets
