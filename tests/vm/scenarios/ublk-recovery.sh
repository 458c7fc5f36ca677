# shellcheck shell=dash
# ublk-recovery: kill -9 of the daemon while I/O runs, a restart recovers
# the same /dev/ublkb0 (START_USER_RECOVERY .. END_USER_RECOVERY), and no
# write is lost: fio verify=crc32c across the crash, and a mounted ext4 that
# keeps working through it (fsck clean, checksums).  The data lives in a file
# backend on tmpfs, which outlives the daemon.  Then: with recovery off, the
# DEAD device an old daemon left is deleted and re-added; a stale state file
# is ignored; a clean stop leaves nothing behind.
# tools: fio mkfs.ext4 e2fsck
# files: /etc/mke2fs.conf
# modules: ublk_drv
# requires: daemon/blkservd plugins/blkserv-frontend-ublk.so plugins/blkserv-backend-file.so
# timeout: 600

run=$BLKSERV_TMP/run
img=$BLKSERV_TMP/r0.img
mnt=$BLKSERV_TMP/mnt
mkdir -p "$run" "$mnt"

write_conf() {
	cat >"$BLKSERV_TMP/$1.conf" <<EOF
plugin_dir = "$BLKSERV_PLUGIN_DIR"
runtime_dir = "$run"
device "r0" {
  size = 128M
  block_size = 4096
  frontend "ublk" { queues = 2  depth = 32  recovery = $2 }
  backend "file" { path = "$img" }
}
EOF
}
write_conf recovery true
write_conf norecovery false

recovered_count() { grep -c 'recovered /dev/ublkb0' "$BLKSERVD_LOG"; }
_recovered_more() { [ "$(recovered_count)" -gt "$1" ]; }

# kill_and_recover NAME: kill -9 the daemon, check the kernel kept the
# device, start a new daemon and wait until it recovered the device.
kill_and_recover() {
	local before
	before=$(recovered_count)
	kill -KILL "$BLKSERVD_PID"
	wait "$BLKSERVD_PID" 2>/dev/null
	check "$1: /dev/ublkb0 stays while no daemon runs" test -b /dev/ublkb0
	check "$1: the state file stays" test -f "$run/ublk-r0.state"
	blkservd_start "$BLKSERV_TMP/recovery.conf" || exit 1
	must "$1: the new daemon recovers /dev/ublkb0" wait_for 60 _recovered_more "$before"
}

must "modprobe ublk_drv" modprobe ublk_drv
blkservd_start -w /dev/ublkb0 "$BLKSERV_TMP/recovery.conf" || exit 1
must "/dev/ublkb0 appears" wait_for_blockdev /dev/ublkb0

# 1. Raw device: fio writes and verifies across the crash.
fio --name=crash --filename=/dev/ublkb0 --rw=randwrite --bs=4k --size=96M \
	--iodepth=32 --ioengine=io_uring --direct=1 --numjobs=1 \
	--verify=crc32c --do_verify=1 --verify_fatal=1 >"$BLKSERV_TMP/fio.log" 2>&1 &
fio_pid=$!
must "fio: 500 writes completed before the kill" wait_writes 60 ublkb0 500
check "fio is still writing when the daemon is killed" kill -0 "$fio_pid"
kill_and_recover "fio"
wait "$fio_pid"
check_eq "fio verify=crc32c across the crash" 0 "$?"
tail -n 25 "$BLKSERV_TMP/fio.log"

# 2. A mounted ext4 keeps working through a crash under writes.
must "mkfs.ext4" mkfs.ext4 -q -F /dev/ublkb0
must "mount" mount -t ext4 /dev/ublkb0 "$mnt"
must "write a 16 MiB file" dd if=/dev/urandom of="$mnt/before" bs=1M count=16 conv=fsync
sum_before=$(sha256sum <"$mnt/before")
dd if=/dev/urandom of="$BLKSERV_TMP/during" bs=1M count=32 2>/dev/null
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
must "ext4: final umount" umount "$mnt"
blkservd_stop 0
check "clean stop: no /dev/ublkc* left" sh -c '! ls /dev/ublkc* 2>/dev/null | grep -q .'
check "clean stop: the state file is removed" test ! -e "$run/ublk-r0.state"

# 3. Without recovery a killed daemon leaves a DEAD device; the next one
# deletes it and adds a new one.
blkservd_start -w /dev/ublkb0 "$BLKSERV_TMP/norecovery.conf" || exit 1
kill -KILL "$BLKSERVD_PID"
wait "$BLKSERVD_PID" 2>/dev/null
check "no recovery: /dev/ublkb0 goes away" wait_for 40 sh -c '! test -b /dev/ublkb0'
check "no recovery: /dev/ublkc0 is left behind" test -c /dev/ublkc0
blkservd_start -w /dev/ublkb0 "$BLKSERV_TMP/norecovery.conf" || exit 1
check "no recovery: the DEAD device was deleted" grep -q 'is DEAD.*deleting it' "$BLKSERVD_LOG"
must "no recovery: the new device works" wait_for_blockdev /dev/ublkb0
fio_verify "no recovery" /dev/ublkb0
blkservd_stop 0

# 4. A state file whose device is gone is cleaned up.
printf 'dev_id=7\nqueues=2\ndepth=32\nmax_io_size=524288\nsize=134217728\nblock_size=4096\npid=1\n' \
	>"$run/ublk-r0.state"
blkservd_start -w /dev/ublkb0 "$BLKSERV_TMP/recovery.conf" || exit 1
check "stale state: reported as gone" grep -q 'device 7 of the state file is gone' "$BLKSERVD_LOG"
blkservd_stop 0
check "at the end: no /dev/ublkc* left" sh -c '! ls /dev/ublkc* 2>/dev/null | grep -q .'
check "at the end: no /dev/ublkb* left" sh -c '! ls /dev/ublkb* 2>/dev/null | grep -q .'
check "at the end: no state file left" test ! -e "$run/ublk-r0.state"
# The daemon log, for whoever reads the console.
blkservd_log
