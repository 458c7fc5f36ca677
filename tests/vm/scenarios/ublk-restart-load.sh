# shellcheck shell=dash
# ublk-restart-load: planned stops under load.  ext4 is mounted on a ublk
# device with two queues (file backend), a writer fsyncs numbered files and
# records each only after its fsync returned, and fio writes and verifies a
# file on the same file system.  Ten times: SIGTERM (the device is in use,
# so it is kept), a new daemon recovers it.  Each recovery must finish
# within 20 s, the daemon must never sit in the kernel waiting for the
# device's mutex (a hung task fails the run), and afterwards no write failed,
# fio's verify passed, every recorded file is intact and e2fsck is clean.
# tools: fio mkfs.ext4 e2fsck
# files: /etc/mke2fs.conf
# modules: ublk_drv
# requires: daemon/blkservd plugins/blkserv-frontend-ublk.so plugins/blkserv-backend-file.so
# timeout: 900

run=$BLKSERV_TMP/run
mnt=$BLKSERV_TMP/mnt
state=$BLKSERV_TMP/state
STOP=$state/stop
mkdir -p "$run" "$mnt" "$state"
conf=$BLKSERV_TMP/blkservd.conf
cat >"$conf" <<EOF
plugin_dir = "$BLKSERV_PLUGIN_DIR"
runtime_dir = "$run"
device "ul" {
  size = 256M
  block_size = 4096
  frontend "ublk" { id = 0  queues = 2 }
  backend "file" { path = "$BLKSERV_TMP/ul.img" }
}
EOF
rounds=${BLKSERV_RESTART_ROUNDS:-10}

now() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
recovered_count() { grep -c "recovered /dev/ublkb0" "$BLKSERVD_LOG"; }
recovered_more() { [ "$(recovered_count)" -gt "$1" ]; }

must "modprobe ublk_drv" modprobe ublk_drv
blkservd_start -w /dev/ublkb0 "$conf" || exit 1
must "mkfs.ext4 /dev/ublkb0" mkfs.ext4 -q -F /dev/ublkb0
must "mount /dev/ublkb0" mount -t ext4 /dev/ublkb0 "$mnt"
: >"$state/ul.rec"
fsync_writer ul "$mnt" &
writer_pid=$!
fio --name=load --filename="$mnt/fio" --rw=randwrite --bs=4k --size=32M --ioengine=psync \
	--fsync=16 --time_based --runtime=3600 --verify=crc32c --verify_backlog=256 --verify_fatal=1 \
	>"$state/fio.log" 2>&1 &
fio_pid=$!

i=1
while [ "$i" -le "$rounds" ]; do
	sleep 2
	before=$(recovered_count)
	t0=$(now)
	kill -TERM "$BLKSERVD_PID"
	if ! wait_for 30 _dead "$BLKSERVD_PID"; then
		fail "round $i: the daemon stops" "still running 30 s after SIGTERM"
		break
	fi
	wait "$BLKSERVD_PID"
	check_eq "round $i: the daemon exits with status 0" 0 "$?"
	BLKSERVD_PID=
	check "round $i: the mounted device is kept" test -b /dev/ublkb0
	blkservd_start "$conf" || break
	if ! check "round $i: the new daemon recovers /dev/ublkb0" wait_for 60 recovered_more "$before"; then
		break
	fi
	t1=$(now)
	secs=$(elapsed "$t0" "$t1")
	log "round $i: stop and recovery took $secs s"
	check "round $i: stop and recovery within 20 s ($secs s)" awk -v s="$secs" 'BEGIN { exit !(s < 20) }'
	check "round $i: fio is still running" kill -0 "$fio_pid"
	i=$((i + 1))
done

touch "$STOP"
wait "$writer_pid"
kill -INT "$fio_pid" 2>/dev/null
wait "$fio_pid"
check "fio verify=crc32c passed across the restarts" sh -c "grep -q 'err= 0' '$state/fio.log' && ! grep -qiE 'bad magic|bad header|verify failed|mismatch|io_u error' '$state/fio.log' || { tail -20 '$state/fio.log'; false; }"
check "no write of the writer failed" writer_ok ul
must "umount" umount "$mnt"
drop_caches /dev/ublkb0
check "e2fsck -fn clean" e2fsck -fn /dev/ublkb0
must "mount again" mount -t ext4 /dev/ublkb0 "$mnt"
check "every recorded file is intact" verify_records ul "$mnt"
must "final umount" umount "$mnt"
check "no I/O error in the kernel log" sh -c '! dmesg | grep -iE "I/O error|EXT4-fs error" | grep -q ublk'
blkservd_stop 0
