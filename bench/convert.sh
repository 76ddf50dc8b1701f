#!/usr/bin/env bash
# rehost convert vs the seed's manual procedure (scripted with modern tools) vs
# qemu-img convert alone, side by side in one run, on the same Debian cloud fixture,
# with the same fixes on both sides (target kvm: no package installs).
#
# usage: sudo bench/convert.sh          (needs scripts/setup.sh done; builds rehost --release)
#   BENCH_DIR=/var/tmp/rehost-bench-convert   work directory (outputs deleted after each run)
#   RUNS=3                                    runs per command (the median is reported)
#
# Each command runs RUNS times (default 3). Reported: the median wall time, the peak
# RSS (/usr/bin/time -v), the output size; then the targets:
# rehost <= 0.5x the manual procedure; the same data in a 64 GiB-apparent image within
# 1.2x of the 2 GiB one; rehost's peak RSS under 200 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BENCH_DIR:-/var/tmp/rehost-bench-convert}
mkdir -p "$dir"

cargo build --release -p rehost >&2
rehost=${CARGO_TARGET_DIR:-$PWD/target}/release/rehost
small=$(bash tests/fixtures/build-debian.sh)

# The same data in a 64 GiB-apparent filesystem (grown on the bare file, which is safe).
big=$dir/debian12-cloud-64g.ext4
if [ ! -f "$big" ] || [ "$big" -ot "$small" ]; then
  cp --sparse=always "$small" "$big.tmp"
  e2fsck -fy "$big.tmp" >/dev/null || true
  resize2fs "$big.tmp" 64G >/dev/null 2>&1
  mv "$big.tmp" "$big"
fi

runs=${RUNS:-3}
declare -A WALL RSS SIZE
# measure NAME OUT CMD...: runs CMD $runs times under /usr/bin/time (caches dropped and
# OUT removed before each), records the median wall seconds, the peak RSS and OUT's size.
measure() {
  local name=$1 out=$2; shift 2
  local log=$dir/time.log walls=() rss=0 r
  for ((i = 0; i < runs; i++)); do
    rm -f "$out"
    sync; echo 3 >/proc/sys/vm/drop_caches
    /usr/bin/time -v -o "$log" "$@" >"$dir/$name.out" 2>&1 || { cat "$dir/$name.out" >&2; echo "bench: $name failed" >&2; exit 1; }
    walls+=("$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$log")")
    r=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$log")
    ((r > rss)) && rss=$r
  done
  WALL[$name]=$(printf '%s\n' "${walls[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  RSS[$name]=$rss
  SIZE[$name]=$(du -h --apparent-size "$out" | cut -f1)
  rm -f "$out"
  printf '%-24s median %6.1f s of %s   peak %4s MiB   output %s\n' \
    "$name" "${WALL[$name]}" "${walls[*]}" "$rss" "${SIZE[$name]}" >&2
}

# The seed's STEP 1 + 2 by hand, with today's tools: sfdisk, dd conv=sparse, resize2fs
# on an offset loop, the same guest fixes in a chroot, GRUB, then qemu-img to qcow2.
manual() {
  local src=$1 out=$2 raw=$dir/manual.raw mnt=$dir/mnt
  local fs_bytes size uuid loop
  fs_bytes=$(stat -c %s "$src")
  size=$((fs_bytes + (1 << 30) + (1 << 20)))
  rm -f "$raw"; qemu-img create -q -f raw "$raw" "$size"
  echo 'start=2048, type=83, bootable' | sfdisk -q "$raw"
  dd if="$src" of="$raw" bs=4M seek=1M oflag=seek_bytes conv=sparse,notrunc status=none
  loop=$(losetup --find --show --offset $((2048 * 512)) --sizelimit $((size - 2048 * 512)) "$raw")
  e2fsck -fy "$loop" >/dev/null || true
  resize2fs "$loop" >/dev/null 2>&1
  uuid=$(blkid -s UUID -o value "$loop")
  mkdir -p "$mnt"; mount "$loop" "$mnt"
  sed -i "s|^/dev/xvda1|UUID=$uuid|" "$mnt/etc/fstab"
  sed -i 's|^\(.*169\.254\.169\.254.*\)$|: # disabled off-cloud: \1|' "$mnt/etc/rc.local"
  rm -f "$mnt/etc/systemd/system/getty.target.wants/serial-getty@hvc0.service"
  ln -sf /lib/systemd/system/serial-getty@.service "$mnt/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"
  printf 'virtio_pci\nvirtio_blk\next4\n' >>"$mnt/etc/initramfs-tools/modules"
  for d in dev proc sys; do mount --bind /$d "$mnt/$d"; done
  chroot "$mnt" update-initramfs -u >/dev/null 2>&1
  for d in sys proc dev; do umount "$mnt/$d"; done
  mkdir -p "$mnt/boot/grub"
  kver=$(ls "$mnt/boot" | sed -n 's/^vmlinuz-//p' | sort -V | tail -1)
  cat >"$mnt/boot/grub/grub.cfg" <<CFG
set timeout=3
menuentry "Debian" { linux /boot/vmlinuz-$kver root=UUID=$uuid ro console=ttyS0,115200; initrd /boot/initrd.img-$kver; }
CFG
  umount "$mnt"; losetup -d "$loop"
  # grub-install cannot map an offset loop to a disk partition here (no partition
  # scanning), so install the way the reference sheet does: grub-mkimage + boot.img.
  grub-mkimage -O i386-pc -d /usr/lib/grub/i386-pc -p '(hd0,msdos1)/boot/grub' -o "$dir/core.img" \
    biosdisk part_msdos ext2 normal linux
  dd if="$dir/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none
  dd if=/usr/lib/grub/i386-pc/boot.img of="$raw" bs=440 count=1 conv=notrunc status=none
  qemu-img convert -O qcow2 "$raw" "$out"
  rm -f "$raw"
}
export -f manual; export dir

# rehost skips update-initramfs when the initrd already packs the target's drivers
# (Debian's cloud initrd has virtio); the manual procedure always rebuilds it. This
# pipeline file makes rehost rebuild it too, for the like-for-like row.
always=$dir/rebuild-always.toml
printf '[fixer.debian-cloud2kvm]\nrebuild_initrd = "always"\n' >"$always"

for img in "$small" "$big"; do
  tag=$( [ "$img" = "$small" ] && echo 2g || echo 64g )
  out=$dir/out-$tag.qcow2
  measure "rehost-$tag" "$out" "$rehost" convert "$img" -o "$out" --target kvm
  measure "rehost-always-$tag" "$out" "$rehost" convert "$img" -o "$out" \
    --target kvm --config "$always"
  measure "manual-$tag" "$out" bash -c "manual '$img' '$out'"
  measure "qemu-img-$tag" "$out" qemu-img convert -O qcow2 "$img" "$out"
done

r2=${WALL[rehost-2g]} m2=${WALL[manual-2g]} r64=${WALL[rehost-64g]} m64=${WALL[manual-64g]}
echo
ratio() { awk "BEGIN{printf \"%.2f\", $1/$2}"; }
echo "| image | rehost | rehost, initrd always rebuilt | manual (seed, modern tools) | qemu-img convert alone | rehost / manual | always-rebuilt / manual |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for tag in 2g 64g; do
  r=${WALL[rehost-$tag]} a=${WALL[rehost-always-$tag]} m=${WALL[manual-$tag]}
  echo "| $tag apparent | $r s, ${RSS[rehost-$tag]} MiB | $a s, ${RSS[rehost-always-$tag]} MiB | $m s | ${WALL[qemu-img-$tag]} s | $(ratio "$r" "$m")x | $(ratio "$a" "$m")x |"
done
echo
echo "targets: rehost/manual <= 0.5x; rehost 64g/2g = $(ratio "$r64" "$r2")x (<= 1.2x); peak RSS < 200 MiB"
