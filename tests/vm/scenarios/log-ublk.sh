# shellcheck shell=dash
# log-ublk: the log backend behind the kernel's ublk driver, its segments on
# ext4 on a virtio disk.  mkfs.ext4 + fsck + checksums on the device; fio
# 4k randwrite verify=crc32c across a kill -9 of the daemon (ublk user
# recovery: the new daemon replays the log and serves the same /dev/ublkb0);
# blocks written with fsync before and during a kill -9 read back; an ext4
# mounted through a kill -9, fsck clean and files intact; after a clean
# stop, blkserv-log verify finds the log sound, and a restart from the
# checkpoint serves the same file system.
# tools: fio mkfs.ext4 e2fsck
# files: /etc/mke2fs.conf
# modules: ublk_drv ext4 virtio_blk
# requires: daemon/blkservd plugins/blkserv-frontend-ublk.so plugins/blkserv-backend-log.so
# disk: 1024
# timeout: 900

run=$BLKSERV_TMP/run
logfs=/mnt/logfs
mnt=$BLKSERV_TMP/mnt
conf=$BLKSERV_TMP/log.conf
mkdir -p "$run" "$mnt" "$logfs"
cat >"$conf" <<CONF
plugin_dir = "$BLKSERV_PLUGIN_DIR"
runtime_dir = "$run"
device "l0" {
  size = 256M
  block_size = 4096
  frontend "ublk" { queues = 2  depth = 32  recovery = true }
  backend "log" {
    dir = "$logfs/l0"
    segment_size = 16M
    compact_threshold = 40
    checkpoint_interval = 64M
  }
}
CONF

recovered_count() { grep -c 'recovered /dev/ublkb0' "$BLKSERVD_LOG"; }
_recovered_more() { [ "$(recovered_count)" -gt "$1" ]; }
replayed_count() { grep -c "log $logfs/l0: .* replayed" "$BLKSERVD_LOG"; }

# kill_and_recover NAME: kill -9 the daemon; a new one replays the log and
# takes /dev/ublkb0 over.
kill_and_recover() {
	local before replays
	before=$(recovered_count)
	replays=$(replayed_count)
	kill -KILL "$BLKSERVD_PID"
	wait "$BLKSERVD_PID" 2>/dev/null
	check "$1: /dev/ublkb0 stays while no daemon runs" test -b /dev/ublkb0
	blkservd_start "$conf" || exit 1
	must "$1: the new daemon recovers /dev/ublkb0" wait_for 90 _recovered_more "$before"
	check "$1: the new daemon replayed the log" test "$(replayed_count)" -gt "$replays"
	grep "log $logfs/l0: " "$BLKSERVD_LOG" | tail -n 1
}

modprobe virtio_blk 2>/dev/null
must "the virtio disk appears" wait_for_blockdev "$BLKSERV_DISK"
must "mkfs.ext4 on the virtio disk" mkfs.ext4 -q -F "$BLKSERV_DISK"
must "mount the virtio disk" mount -t ext4 "$BLKSERV_DISK" "$logfs"
must "modprobe ublk_drv" modprobe ublk_drv
blkservd_start -w /dev/ublkb0 "$conf" || exit 1
must "/dev/ublkb0 appears" wait_for_blockdev /dev/ublkb0
check_eq "/dev/ublkb0 is 256 MiB" 268435456 "$(dev_size /dev/ublkb0)"
check_eq "volatile write cache advertised" "write back" "$(cat /sys/block/ublkb0/queue/write_cache)"
check "discard advertised" test "$(cat /sys/block/ublkb0/queue/discard_max_bytes)" -gt 0

# 1. A file system on the log: mkfs, write, fsck clean, checksums.
fs_roundtrip log /dev/ublkb0 24

# 2. fio writes and verifies across a kill -9.
fio --name=crash --filename=/dev/ublkb0 --rw=randwrite --bs=4k --size=64M \
	--iodepth=32 --ioengine=io_uring --direct=1 --numjobs=1 \
	--verify=crc32c --do_verify=1 --verify_fatal=1 >"$BLKSERV_TMP/fio.log" 2>&1 &
fio_pid=$!
must "fio: 500 writes completed before the kill" wait_writes 60 ublkb0 500
check "fio is still writing when the daemon is killed" kill -0 "$fio_pid"
kill_and_recover "fio"
wait "$fio_pid"
check_eq "fio verify=crc32c across the kill -9" 0 "$?"
tail -n 12 "$BLKSERV_TMP/fio.log"

# 3. Blocks written with fsync (each one flushed), a kill -9 in the middle:
# every block whose dd returned reads back.
dd if=/dev/urandom of="$BLKSERV_TMP/blocks" bs=64k count=96 2>/dev/null
: >"$BLKSERV_TMP/done"
(
	i=0
	while [ $i -lt 96 ]; do
		dd if="$BLKSERV_TMP/blocks" of=/dev/ublkb0 bs=64k skip=$i seek=$((2048 + i)) count=1 \
			oflag=direct conv=fsync,notrunc 2>/dev/null || exit 1
		echo $i >>"$BLKSERV_TMP/done"
		i=$((i + 1))
	done
) &
dd_pid=$!
must "fsync blocks: 8 flushed before the kill" wait_for 60 sh -c "[ \$(wc -l <'$BLKSERV_TMP/done') -ge 8 ]"
check "fsync blocks: the writer is still writing when the daemon is killed" kill -0 "$dd_pid"
kill_and_recover "fsync blocks"
wait "$dd_pid"
check_eq "fsync blocks: every write completes" 0 "$?"
drop_caches /dev/ublkb0
bad=0
for i in $(cat "$BLKSERV_TMP/done"); do
	a=$(dd if="$BLKSERV_TMP/blocks" bs=64k skip="$i" count=1 2>/dev/null | sha256sum)
	b=$(dd if=/dev/ublkb0 bs=64k skip=$((2048 + i)) count=1 iflag=direct 2>/dev/null | sha256sum)
	[ "$a" = "$b" ] || bad=$((bad + 1))
done
check_eq "fsync blocks: all $(wc -l <"$BLKSERV_TMP/done") flushed blocks read back" 0 "$bad"

# 4. A mounted ext4 through a kill -9 under writes.
must "mkfs.ext4" mkfs.ext4 -q -F /dev/ublkb0
must "mount" mount -t ext4 /dev/ublkb0 "$mnt"
must "write a 16 MiB file" dd if=/dev/urandom of="$mnt/before" bs=1M count=16 conv=fsync
sum_before=$(sha256sum <"$mnt/before")
dd if=/dev/urandom of="$BLKSERV_TMP/during" bs=1M count=24 2>/dev/null
sum_during=$(sha256sum <"$BLKSERV_TMP/during")
# oflag=direct: 64 KiB at a time reaches the device while dd runs, so the
# kill below comes while it writes.
dd if="$BLKSERV_TMP/during" of="$mnt/during" bs=64k oflag=direct conv=fsync 2>"$BLKSERV_TMP/dd.log" &
dd_pid=$!
must "ext4: 4 writes of the file completed before the kill" wait_writes 60 ublkb0 4
check "ext4: dd is still writing when the daemon is killed" kill -0 "$dd_pid"
kill_and_recover "ext4"
wait "$dd_pid"
check_eq "ext4: the write in progress completes" 0 "$?"
must "ext4: umount" umount "$mnt"
drop_caches /dev/ublkb0
check "ext4: e2fsck -fn clean" e2fsck -fn /dev/ublkb0
must "ext4: mount again" mount -t ext4 /dev/ublkb0 "$mnt"
check_eq "ext4: file written before the crash intact" "$sum_before" "$(sha256sum <"$mnt/before")"
check_eq "ext4: file written during the crash intact" "$sum_during" "$(sha256sum <"$mnt/during")"
must "ext4: umount" umount "$mnt"
blkservd_stop 0

# 5. Offline: the log is sound; a restart starts from the clean stop's
# checkpoint and serves the same file system.
if command -v blkserv-log >/dev/null; then
	check "blkserv-log verify: sound" blkserv-log verify "$logfs/l0"
	blkserv-log stats "$logfs/l0" | tail -n 12
else
	skip "blkserv-log verify" "blkserv-log is not in the VM (BUILD/tests/vm/extra)"
fi
ls -l "$logfs/l0"
blkservd_start -w /dev/ublkb0 "$conf" || exit 1
must "restart: /dev/ublkb0" wait_for_blockdev /dev/ublkb0
check "restart: nothing to replay after a clean stop" \
	grep -q "replayed 0 record(s) (0 bytes) after the checkpoint" "$BLKSERVD_LOG"
check "restart: e2fsck -fn clean" e2fsck -fn /dev/ublkb0
must "restart: mount" mount -t ext4 /dev/ublkb0 "$mnt"
check_eq "restart: file intact" "$sum_during" "$(sha256sum <"$mnt/during")"
must "restart: umount" umount "$mnt"
blkservd_stop 0
umount "$logfs"
