# shellcheck shell=dash
# pressure-writeback: memory pressure and heavy writeback onto devices that
# blkservd serves.  ext4 on a kernel NBD device and on a ublk device (file
# backend on a virtio disk: buffered for nbd, O_DIRECT for ublk); a memory
# hog (an unswappable tmpfs file) takes most of the guest's free RAM while
# both file systems get large buffered writes (no O_DIRECT) and sync.  The
# writeback must go through blkservd, which must not deadlock: no hung task
# (the harness fails on "blocked for more than 20 seconds"), every write
# and sync ends within its time limit, the data reads back and e2fsck is
# clean.  Checked, not assumed: the daemon's memory is locked (VmLck) and
# every thread serving a queue is an IO_FLUSHER: PR_SET_IO_FLUSHER sets
# PF_MEMALLOC_NOIO (0x00080000) and PF_LOCAL_THROTTLE (0x00100000) in the
# task flags (include/linux/sched.h of 6.12), the 9th field of
# /proc/PID/task/TID/stat.
# tools: mkfs.ext4 e2fsck
# files: /etc/mke2fs.conf
# modules: nbd ublk_drv ext4 virtio_blk
# requires: daemon/blkservd plugins/blkserv-frontend-nbd.so plugins/blkserv-frontend-ublk.so plugins/blkserv-backend-file.so
# disk: 1400
# memory: 1024
# timeout: 600

run=$BLKSERV_TMP/run
conf=$BLKSERV_TMP/pressure.conf
backing=/backing
mkdir -p "$run" "$backing" /mnt/pn /mnt/pu /hog
must "modprobe nbd" modprobe nbd nbds_max=2
must "modprobe ublk_drv" modprobe ublk_drv
modprobe virtio_blk 2>/dev/null
must "the virtio disk appears" wait_for_blockdev "$BLKSERV_DISK"
must "mkfs.ext4 on the virtio disk" mkfs.ext4 -q -F "$BLKSERV_DISK"
must "mount it" mount "$BLKSERV_DISK" "$backing"

cat >"$conf" <<EOF
plugin_dir = "$BLKSERV_PLUGIN_DIR"
runtime_dir = "$run"
lock_memory = true
device "pn" {
  size = 512M
  block_size = 4096
  frontend "nbd" { index = 0  connections = 2 }
  backend "file" { path = "$backing/nbd.img" }
}
device "pu" {
  size = 512M
  block_size = 4096
  frontend "ublk" { id = 0  queues = 2  depth = 64 }
  backend "file" { path = "$backing/ublk.img"  direct = true }
}
EOF
blkservd_start -w /sys/block/nbd0/pid -w /dev/ublkb0 "$conf" || exit 1
must "/dev/nbd0 appears" wait_for_blockdev /dev/nbd0
must "/dev/ublkb0 appears" wait_for_blockdev /dev/ublkb0
pid=$BLKSERVD_PID

# --- memory locked, I/O threads marked IO_FLUSHER -------------------------------
vmlck=$(awk '/^VmLck:/ { print $2 }' "/proc/$pid/status")
log "blkservd VmLck: ${vmlck:-?} kB"
check "the daemon's memory is locked (VmLck > 0)" test "${vmlck:-0}" -gt 0
io_flusher=$((0x00080000 | 0x00100000))
flushers=0
for task in /proc/"$pid"/task/*; do
	flags=$(sed 's/.*) //' "$task/stat" | cut -d' ' -f7)
	marked=no
	[ $((flags & io_flusher)) -eq "$io_flusher" ] && marked=yes && flushers=$((flushers + 1))
	log "thread ${task##*/} ($(cat "$task/comm")): flags $(printf '%#x' "$flags"), IO_FLUSHER $marked"
done
# One thread per queue: 2 NBD connections + 2 ublk queues.
check "every queue thread is IO_FLUSHER (PF_MEMALLOC_NOIO|PF_LOCAL_THROTTLE): 4 expected, $flushers found" \
	test "$flushers" -ge 4
main_flags=$(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f7)
log "main thread flags $(printf '%#x' "$main_flags")"

# --- file systems -----------------------------------------------------------------
must "mkfs.ext4 on nbd0" mkfs.ext4 -q -F /dev/nbd0
must "mkfs.ext4 on ublkb0" mkfs.ext4 -q -F /dev/ublkb0
must "mount nbd0" mount /dev/nbd0 /mnt/pn
must "mount ublkb0" mount /dev/ublkb0 /mnt/pu
dd if=/dev/urandom of="$BLKSERV_TMP/chunk" bs=1M count=16 2>/dev/null

# --- the hog: most of the free memory in an unswappable tmpfs file ----------------
avail=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
hog=$((avail - 140))
log "MemAvailable ${avail} MiB: the hog takes ${hog} MiB"
must "mount the hog's tmpfs" mount -t tmpfs -o size="${hog}M" tmpfs /hog
check "the hog fills ${hog} MiB" sh -c "dd if=/dev/zero of=/hog/fill bs=1M count=$hog 2>/dev/null; test \$(du -m /hog/fill | cut -f1) -ge $((hog - 8))"
log "$(grep -E '^(MemFree|MemAvailable|Dirty|Writeback|Mlocked):' /proc/meminfo | tr -s ' ' | tr '\n' ' ')"

# --- heavy writeback on both devices at once, under the hog ------------------------
echo 40 >/proc/sys/vm/dirty_ratio
echo 10 >/proc/sys/vm/dirty_background_ratio
cat >"$BLKSERV_TMP/writer.sh" <<'EOF2'
# writer DIR CHUNK: 20 x 16 MiB files, buffered (no O_DIRECT), then sync
i=0
while [ $i -lt 20 ]; do
	cat "$2" >"$1/f$i" || exit 1
	i=$((i + 1))
done
sync
EOF2
(timeout 400 sh "$BLKSERV_TMP/writer.sh" /mnt/pn "$BLKSERV_TMP/chunk"; echo $? >"$BLKSERV_TMP/pn.rc") &
wpn=$!
(timeout 400 sh "$BLKSERV_TMP/writer.sh" /mnt/pu "$BLKSERV_TMP/chunk"; echo $? >"$BLKSERV_TMP/pu.rc") &
wpu=$!
# While they run, keep reclaim busy: drop caches now and then.
t=0
while kill -0 "$wpn" 2>/dev/null || kill -0 "$wpu" 2>/dev/null; do
	sleep 5
	t=$((t + 5))
	echo 1 >/proc/sys/vm/drop_caches
	log "t=${t}s $(grep -E '^(MemFree|Dirty|Writeback):' /proc/meminfo | tr -s ' ' | tr '\n' ' ')"
done
wait "$wpn" "$wpu"
check_eq "nbd0: 320 MiB written and synced under pressure" 0 "$(cat "$BLKSERV_TMP/pn.rc")"
check_eq "ublkb0: 320 MiB written and synced under pressure" 0 "$(cat "$BLKSERV_TMP/pu.rc")"
check "a full sync ends" timeout 120 sync
check "blkservd is still alive" kill -0 "$pid"

# --- the data is there --------------------------------------------------------------
want=$(sha256sum <"$BLKSERV_TMP/chunk")
rm -f /hog/fill
must "umount nbd0" umount /mnt/pn
must "umount ublkb0" umount /mnt/pu
check "e2fsck nbd0 clean" e2fsck -fn /dev/nbd0
check "e2fsck ublkb0 clean" e2fsck -fn /dev/ublkb0
drop_caches /dev/nbd0
drop_caches /dev/ublkb0
must "mount nbd0 again" mount /dev/nbd0 /mnt/pn
must "mount ublkb0 again" mount /dev/ublkb0 /mnt/pu
same() { for f in "$1"/f*; do [ "$(sha256sum <"$f")" = "$want" ] || return 1; done; }
check "nbd0: every file reads back" same /mnt/pn
check "ublkb0: every file reads back" same /mnt/pu
umount /mnt/pn
umount /mnt/pu
blkservd_stop 0
