#!/usr/bin/env bash
# Native disk-format writers vs qemu-img convert, side by side: wall time, output size,
# peak RSS, on a 4 GiB-apparent and a 64 GiB-apparent ext4 disk holding the same
# ~1.3 GiB of /usr (binaries, libraries, docs: partly compressible, like a root fs).
#
# usage: bench/formats.sh            (as root; needs qemu-utils, e2fsprogs, time)
#   BENCH_DIR=/var/tmp/rehost-bench  where the disks are built (once) and outputs go
#   THREADS=0                        compression threads for ours (0 = all cores)
#   WRITE_FORMAT=path                use this write_format binary instead of building it
#   REPEAT=3                         runs per command (the fastest counts)
#   NICE=-10                         niceness of both tools, so other load on a shared
#                                    machine skews the comparison less
#   RT=1                             run both under SCHED_FIFO (chrt -f 10) instead: steady
#                                    numbers on a busy machine, but other work nearly
#                                    stops while ours compresses on every core
# The disks are kept for later runs; outputs are deleted after each measurement.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bench_dir=${BENCH_DIR:-/var/tmp/rehost-bench}
threads=${THREADS:-0}
repeat=${REPEAT:-3}
niceness=${NICE:--10}
if [ "${RT:-0}" = 1 ]; then
  priority=(chrt -f 10)
else
  priority=(nice -n "$niceness")
fi
mkdir -p "$bench_dir"

for tool in qemu-img mke2fs /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "formats.sh: $tool is missing (run scripts/setup.sh)" >&2; exit 1; }
done

# 1. The test disks: an ext4 filesystem filled from /usr, at two apparent sizes.
build_disk() { # NAME SIZE
  local disk=$bench_dir/$1.raw
  [ -s "$disk" ] && return
  if [ ! -d "$bench_dir/tree" ]; then
    echo "== copying part of /usr into $bench_dir/tree"
    rm -rf "$bench_dir/tree.tmp"
    mkdir -p "$bench_dir/tree.tmp"
    (cd / && tar -cf - usr/bin usr/sbin usr/lib/x86_64-linux-gnu usr/share/doc usr/share/man usr/include) |
      tar -C "$bench_dir/tree.tmp" -xf -
    mv "$bench_dir/tree.tmp" "$bench_dir/tree"
  fi
  echo "== building $disk ($2 ext4)"
  rm -f "$disk.tmp"
  mke2fs -q -t ext4 -L bench -d "$bench_dir/tree" "$disk.tmp" "$2" >/dev/null
  mv "$disk.tmp" "$disk"
}
build_disk disk4g 4G
build_disk disk64g 64G
rm -rf "$bench_dir/tree"

# 2. The bench binary (release build of host/examples/write_format.rs).
ours=${WRITE_FORMAT:-}
if [ -z "$ours" ]; then
  echo "== building the write_format example (release)"
  (cd "$repo" && cargo build -q --release -p rehost --example write_format)
  ours=$(cd "$repo" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples/write_format
fi

# 3. Measurements. Each command runs REPEAT times; a row shows the fastest run's wall
# and CPU (user + sys) seconds, and the highest peak RSS. On a busy machine, CPU time
# is the steadier comparison.
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

# measure OUTPUT CMD... : prints "wall cpu rss_kib bytes" and removes the output.
measure() {
  local out=$1 best_wall="" best_cpu="" rss=0 wall user sys peak bytes
  shift
  for _ in $(seq "$repeat"); do
    rm -f "$out"
    "${priority[@]}" /usr/bin/time -f '%e %U %S %M' -o "$bench_dir/time.txt" "$@" >/dev/null
    read -r wall user sys peak <"$bench_dir/time.txt"
    bytes=$(stat -c %s "$out")
    if [ -z "$best_wall" ] || awk -v a="$wall" -v b="$best_wall" 'BEGIN { exit !(a < b) }'; then
      best_wall=$wall
      best_cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    fi
    [ "$peak" -gt "$rss" ] && rss=$peak
  done
  rm -f "$out"
  echo "$best_wall $best_cpu $rss $bytes"
}

row() { # DISK LABEL QEMU_ARGS OUR_FORMAT
  local disk=$bench_dir/$1.raw qw qc qrss qbytes ow oc orss obytes
  # shellcheck disable=SC2086
  read -r qw qc qrss qbytes < <(measure "$bench_dir/q.out" qemu-img convert -f raw $3 "$disk" "$bench_dir/q.out")
  read -r ow oc orss obytes < <(measure "$bench_dir/o.out" "$ours" "$4" "$disk" "$bench_dir/o.out" "$threads")
  printf '%-8s %-17s %7s %7s %6sx %7s %7s %6sx %9s %9s %6s %7s %7s\n' "$1" "$2" \
    "$qw" "$ow" "$(ratio "$qw" "$ow")" "$qc" "$oc" "$(ratio "$qc" "$oc")" \
    "$(mib "$qbytes")" "$(mib "$obytes")" "$(ratio "$obytes" "$qbytes")" \
    "$(mib $((qrss * 1024)))" "$(mib $((orss * 1024)))"
}

echo "== $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); data in the disks:" \
  "$(du -h "$bench_dir/disk4g.raw" | cut -f1) (4 GiB disk), $(du -h "$bench_dir/disk64g.raw" | cut -f1) (64 GiB disk)"
# Warm the page cache with the source data (reads data extents only).
for d in disk4g disk64g; do
  "$ours" raw "$bench_dir/$d.raw" "$bench_dir/warm.out" >/dev/null && rm -f "$bench_dir/warm.out"
done
printf '%-8s %-17s %7s %7s %7s %7s %7s %7s %9s %9s %6s %7s %7s\n' disk format \
  "qemu s" "ours s" faster "qemu cpu" "ours cpu" "less" "qemu MiB" "ours MiB" size "qemu RSS" "ours RSS"
for disk in disk4g disk64g; do
  row "$disk" raw "-O raw" raw
  row "$disk" qcow2 "-O qcow2" qcow2
  row "$disk" qcow2-compressed "-c -O qcow2" qcow2-compressed
  row "$disk" vmdk-stream "-O vmdk -o subformat=streamOptimized" vmdk
  row "$disk" vdi "-O vdi" vdi
done
echo "(best of $repeat runs under '${priority[*]}'; faster/less = qemu / ours; size = ours / qemu bytes; RSS = peak resident MiB;"
echo " page cache warm, no fsync on either side, as qemu-img convert's default cache=unsafe)"
