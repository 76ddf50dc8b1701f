#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine and runs every test (run as root):
#   sudo scripts/test.sh
# Installs the packages and the wasm32-wasip2 target, builds (or reuses) the cached
# fixtures under /var/cache/rehost-fixtures, then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
# The slow fixture is built once and cached outside the repository.
bash tests/fixtures/build-debian.sh >/dev/null
bash tests/fixtures/build-centos5.sh >/dev/null

cargo build --workspace --all-targets
# Loop-device and qemu tests coordinate through locks; two threads fit two cores.
cargo test --workspace -- --test-threads=2
