# shellcheck shell=dash
# dblock-file: the dblock frontend with the file backend on tmpfs.  Trim
# reaches the file (blkdiscard punches holes: the file takes less space) and
# FLUSH reaches it (the kernel's and the daemon's counts); the file system
# check passes.  Then the daemon is killed with I/O in flight: that I/O
# fails within the device timeout (no hang), and rmmod removes the device
# the dead daemon left behind.
# tools: fio mkfs.ext4 e2fsck blkdiscard
# files: /etc/mke2fs.conf
# kmods: frontends/dblock/kmod/dblock.ko
# requires: plugins/blkserv-frontend-dblock.so plugins/blkserv-backend-file.so
# timeout: 360

run=$BLKSERV_TMP/run
img=$BLKSERV_TMP/db0.img
mkdir -p "$run"
cat >"$BLKSERV_TMP/db0.conf" <<EOC
plugin_dir = "$BLKSERV_PLUGIN_DIR"
runtime_dir = "$run"
device "db0" {
  size = 128M
  block_size = 4096
  frontend "dblock" { threads = 4  timeout = 5 }
  backend "file" { path = "$img" }
}
EOC
sys=/sys/block/db0
stat_of() { sed -n "s/^$1 //p" $sys/dblock/stats; }
kib_used() { du -k "$img" | cut -f1; }

must "modprobe dblock" modprobe dblock
blkservd_start -w /dev/db0 "$BLKSERV_TMP/db0.conf" || exit 1
must "/dev/db0 appears" wait_for_blockdev /dev/db0
check_eq "file backend: write cache and discard" "flush fua discard write_zeroes" "$(cat $sys/dblock/features)"

# Trim: write 32 MiB, discard 16 MiB of it, the file shrinks by about that.
must "write 32 MiB" dd if=/dev/urandom of=/dev/db0 bs=1M count=32 oflag=direct conv=fsync
before=$(kib_used)
check "blkdiscard 8M..24M" blkdiscard -o 8388608 -l 16777216 /dev/db0
after=$(kib_used)
log "image uses $before KiB before the discard, $after KiB after"
check "the discard punched holes in the file" test "$((before - after))" -ge 16000
check "the discarded range reads zeros" sh -c \
	'dd if=/dev/db0 bs=1M skip=8 count=16 iflag=direct 2>/dev/null | cmp -s - /dev/zero -n 16777216'

flushes=$(stat_of flush)
check "fsync on /dev/db0 sends a FLUSH" sh -c 'dd if=/dev/zero of=/dev/db0 bs=4k count=1 seek=100 conv=fsync 2>/dev/null'
check "the kernel sent it" test "$(stat_of flush)" -gt "$flushes"
fio_verify dblock-file /dev/db0 --numjobs=2 --offset_increment=32M --size=8M
fs_roundtrip dblock-file /dev/db0 16

blkservd_stop 0
served=$(grep -o 'served .*' "$BLKSERVD_LOG" | tail -n 1)
log "daemon: $served"
check "flushes reached the file backend" test "$(echo "$served" | sed -n 's/.* \([0-9][0-9]*\) flushes.*/\1/p')" -gt 0
check "trims reached the file backend" test "$(echo "$served" | sed -n 's/.* \([0-9][0-9]*\) trims.*/\1/p')" -gt 0

# Kill the daemon while a writer has requests in flight: they fail with EIO
# within the timeout (5 s) instead of hanging.
blkservd_start -w /dev/db0 "$BLKSERV_TMP/db0.conf" || exit 1
must "/dev/db0 is back" wait_for_blockdev /dev/db0
# The writer loops until a write fails.
(while dd if=/dev/zero of=/dev/db0 bs=64k count=256 oflag=direct 2>"$BLKSERV_TMP/dd.err"; do :; done) &
writer=$!
sleep 2
check "the writer is running before the kill" _alive "$writer"
t0=$(cut -d' ' -f1 /proc/uptime)
kill -KILL "$BLKSERVD_PID"
check "the writer ends within 15 s of the kill" wait_for 15 _dead "$writer"
t1=$(cut -d' ' -f1 /proc/uptime)
wait "$writer"
log "the writer ended $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s after the kill: $(tail -n 3 "$BLKSERV_TMP/dd.err" | tr '\n' ' ')"
check "the write failed with EIO" grep -qiE 'i/o error|input/output error' "$BLKSERV_TMP/dd.err"
check "the kernel timed requests out" test "$(stat_of timeouts)" -gt 0
check_fails "reads fail too, within the timeout" timeout 15 dd if=/dev/db0 of=/dev/null bs=4k count=1 iflag=direct
check "the device is left behind" test -b /dev/db0
check "rmmod dblock with the device present" rmmod dblock
check "/dev/db0 is gone" test ! -e /dev/db0 -a ! -e /dev/db0-ctl
