#!/usr/bin/env bash
# The main job on the embedded default (run as root):
#   sudo scripts/demo.sh [OUTDIR]
# Builds a sample AWS/Xen-style Debian 12 cloud instance (a bare ext4 root filesystem,
# no bootloader, Xen console and devices), converts it with rehost into a VirtualBox
# OVA and a qcow2 that boot on their own, then proves the qcow2 boots under qemu.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$PWD/out}

bash scripts/setup.sh
instance=$(bash tests/fixtures/build-debian.sh)
cargo build --release -p rehost
mkdir -p "$out"
./target/release/rehost convert "$instance" -o "$out/debian12.ova" --target virtualbox
./target/release/rehost convert "$instance" -o "$out/debian12.qcow2" --target kvm
./target/release/rehost boot-test "$out/debian12.qcow2" --target kvm --password rehost
echo "demo: wrote $out/debian12.ova and $out/debian12.qcow2"
