#!/usr/bin/env bash
# Installs everything rehost and its tests need on a fresh Debian 12 machine (run as root).
# qemu-utils here comes from bookworm-backports, so qemu-system-x86 (and a matching
# grub-pc-bin) must come from there too: the suite is added from the machine's own
# Debian source, so no host name is written into this repository.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (loop devices, mounts and apt need it)" >&2
  exit 1
fi

backports=/etc/apt/sources.list.d/rehost-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -z "$uri" ]; then
    uri=$(awk '/^deb / && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  fi
  if [ -z "$uri" ]; then
    echo "setup.sh: found no Debian source to derive bookworm-backports from" >&2
    exit 1
  fi
  cat >"$backports" <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  e2fsprogs util-linux fdisk debootstrap busybox-static cpio zstd lz4 xz-utils gzip \
  openssh-server openssh-client docker-registry curl ca-certificates python3 \
  build-essential pkg-config openssl time
# qemu-system-x86 and GRUB from backports, matching the installed qemu-utils.
apt-get install -y -qq --no-install-recommends -t bookworm-backports \
  qemu-system-x86 qemu-utils grub-pc-bin grub-common seabios ipxe-qemu

# The registry package starts a service on install; tests start their own.
systemctl disable --now docker-registry >/dev/null 2>&1 || true

if command -v rustup >/dev/null 2>&1; then
  rustup target add wasm32-wasip2
fi
echo "setup.sh: done"
