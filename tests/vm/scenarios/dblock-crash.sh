# shellcheck shell=dash
# dblock-crash: the dblock device outlives a crashed daemon.  An ext4 on
# /dev/dc0 (file backend on tmpfs) has a writer that writes numbered files,
# fsyncs each and records its checksum only after the fsync returned.  The
# daemon is killed (-9) mid-write; a new daemon takes over the same device
# (no "name taken"), and is killed too during its takeover (a crash loop);
# a third takes over and serves the I/O that waited.  Afterwards: no I/O
# error in the writer or the kernel log, every recorded file has its
# checksum, e2fsck is clean.  A stop with the file system mounted keeps the
# device (KEEP_DEVICE: the threads detach) and the next daemon takes it
# over; a stop with nothing mounted removes it.  Last, a ramdisk's data is
# new after a kill -9: the next daemon removes the old device, loudly, and
# creates a new one.
# tools: mkfs.ext4 e2fsck
# files: /etc/mke2fs.conf
# kmods: frontends/dblock/kmod/dblock.ko
# requires: daemon/blkservd plugins/blkserv-frontend-dblock.so plugins/blkserv-backend-file.so plugins/blkserv-backend-ramdisk.so
# timeout: 600

run=$BLKSERV_TMP/run
img=$BLKSERV_TMP/dc0.img
mnt=$BLKSERV_TMP/mnt
rec=$BLKSERV_TMP/recorded
werr=$BLKSERV_TMP/writer.err
stopfile=$BLKSERV_TMP/writer.stop
mkdir -p "$run" "$mnt" "$BLKSERV_TMP/src"
conf=$BLKSERV_TMP/dc0.conf
cat >"$conf" <<EOC
plugin_dir = "$BLKSERV_PLUGIN_DIR"
runtime_dir = "$run"
device "dc0" {
  size = 128M
  block_size = 4096
  frontend "dblock" { threads = 4  timeout = 120 }
  backend "file" { path = "$img" }
}
EOC

taken_over() { grep -c 'dc0: dblock: taking over /dev/dc0' "$BLKSERVD_LOG"; }
_taken_more() { [ "$(taken_over)" -gt "$1" ]; }
serving() { grep -c 'dc0: dblock: serving /dev/dc0' "$BLKSERVD_LOG"; }
_serving_more() { [ "$(serving)" -gt "$1" ]; }
recorded() { wc -l <"$rec"; }
_recorded_more() { [ "$(recorded)" -gt "$1" ]; }

# The writer: file N gets 64 KiB of random data; its sha256 is recorded
# only after dd's fsync returned.  It stops at the first error.
writer() {
	local i=0 sum
	: >"$rec"
	while [ ! -e "$stopfile" ]; do
		i=$((i + 1))
		dd if=/dev/urandom of="$BLKSERV_TMP/src/cur" bs=64k count=1 2>/dev/null
		sum=$(sha256sum <"$BLKSERV_TMP/src/cur")
		if ! dd if="$BLKSERV_TMP/src/cur" of="$mnt/f$i" bs=64k conv=fsync 2>"$BLKSERV_TMP/dd.err"; then
			{
				echo "writer: file $i failed:"
				cat "$BLKSERV_TMP/dd.err"
			} >>"$werr"
			return 1
		fi
		echo "f$i $sum" >>"$rec"
	done
}

must "modprobe dblock" modprobe dblock
blkservd_start -w /dev/dc0 "$conf" || exit 1
must "/dev/dc0 appears" wait_for_blockdev /dev/dc0
check "the state file is written" test -f "$run/dblock-dc0.state"
must "mkfs.ext4" mkfs.ext4 -q -F /dev/dc0
must "mount" mount -t ext4 /dev/dc0 "$mnt"
dmesg -c >/dev/null
: >"$werr"
writer &
wpid=$!
must "the writer records files" wait_for 30 _recorded_more 20

# 1. kill -9 mid-write; a new daemon takes over the device.
kill -KILL "$BLKSERVD_PID"
wait "$BLKSERVD_PID" 2>/dev/null
at_kill=$(recorded)
check "kill 1: /dev/dc0 stays" test -b /dev/dc0
check "kill 1: the state file stays" test -f "$run/dblock-dc0.state"
# No daemon for 3 s: the writer's I/O waits in the kernel.
sleep 3
check "kill 1: the writer waits, it does not fail" _alive "$wpid"
check "kill 1: no file is recorded while no daemon runs" test "$(recorded)" -le "$((at_kill + 1))"
before=$(taken_over)
blkservd_start "$conf" || exit 1
check "kill 1: the new daemon takes over /dev/dc0" wait_for 30 _taken_more "$before"
check "kill 1: no 'name taken' error" sh -c '! grep -q "is taken" '"$BLKSERVD_LOG"
check "kill 1: the writer goes on" wait_for 30 _recorded_more "$((at_kill + 10))"

# 2. A crash loop: kill the next daemon during its takeover, a third one
# takes over.
kill -KILL "$BLKSERVD_PID"
wait "$BLKSERVD_PID" 2>/dev/null
before=$(taken_over)
"$BLKSERVD" --config "$conf" >>"$BLKSERVD_LOG" 2>&1 &
BLKSERVD_PID=$!
wait_for 30 _taken_more "$before"
kill -KILL "$BLKSERVD_PID"
wait "$BLKSERVD_PID" 2>/dev/null
check "crash loop: the killed daemon had started the takeover" _taken_more "$before"
at_kill=$(recorded)
before=$(serving)
blkservd_start "$conf" || exit 1
check "crash loop: the third daemon serves /dev/dc0" wait_for 30 _serving_more "$before"
check "crash loop: the writer goes on" wait_for 30 _recorded_more "$((at_kill + 10))"

# 3. A stop with the file system mounted keeps the device.
kill -TERM "$BLKSERVD_PID"
check "stop: the daemon exits within 10 s" wait_for 10 _dead "$BLKSERVD_PID"
wait "$BLKSERVD_PID"
check_eq "stop: exit status 0" 0 "$?"
check "stop: the daemon says it left /dev/dc0" grep -q 'dc0: dblock: left /dev/dc0 .* for the next daemon' "$BLKSERVD_LOG"
check "stop: /dev/dc0 stays" test -b /dev/dc0
check "stop: the writer waits" _alive "$wpid"
at_kill=$(recorded)
before=$(taken_over)
blkservd_start "$conf" || exit 1
check "stop: the next daemon takes over /dev/dc0" wait_for 30 _taken_more "$before"
check "stop: the writer goes on" wait_for 30 _recorded_more "$((at_kill + 10))"

touch "$stopfile"
check "the writer ends" wait_for 60 _dead "$wpid"
wait "$wpid"
check_eq "the writer saw no error" 0 "$?"
check "the writer's stderr is empty" test ! -s "$werr"
log "the writer recorded $(recorded) files"
check "no I/O error in the kernel log" sh -c '! dmesg | grep -iE "I/O error|EXT4-fs (error|warning)|failing it with EIO|Buffer I/O"'
dmesg | grep -i dblock | tail -n 10
log "requests a dead daemon held, queued again for the next: $(sed -n 's/^requeued //p' /sys/block/dc0/dblock/stats)"

must "umount" umount "$mnt"
drop_caches /dev/dc0
check "e2fsck -fn clean" e2fsck -fn /dev/dc0
must "mount again" mount -t ext4 /dev/dc0 "$mnt"
bad=0
while read -r name sum; do
	[ "$(sha256sum <"$mnt/$name")" = "$sum" ] || {
		bad=$((bad + 1))
		log "$name: checksum differs"
	}
done <"$rec"
check_eq "every recorded file has its checksum" 0 "$bad"
must "final umount" umount "$mnt"
blkservd_stop 0
check "a stop with nothing mounted removes /dev/dc0" test ! -e /dev/dc0
check "and its state file" test ! -e "$run/dblock-dc0.state"

# 4. A ramdisk's data is new after a kill -9: no takeover.
cat >"$BLKSERV_TMP/rd.conf" <<EOC
plugin_dir = "$BLKSERV_PLUGIN_DIR"
runtime_dir = "$run"
device "rd" {
  size = 64M
  block_size = 4096
  frontend "dblock" { name = "drd"  threads = 2  timeout = 30 }
  backend "ramdisk" { }
}
EOC
blkservd_start -w /dev/drd "$BLKSERV_TMP/rd.conf" || exit 1
yes blkserv | head -c 1048576 >"$BLKSERV_TMP/pattern"
must "ramdisk: write a pattern" dd if="$BLKSERV_TMP/pattern" of=/dev/drd bs=4k oflag=direct
old_handle=$(cat /sys/block/drd/dblock/handle_id)
kill -KILL "$BLKSERVD_PID"
wait "$BLKSERVD_PID" 2>/dev/null
check "ramdisk: /dev/drd stays after kill -9" test -b /dev/drd
blkservd_start "$BLKSERV_TMP/rd.conf" || exit 1
check "ramdisk: the old device is not resumed, said loudly" wait_for 30 \
	grep -q "rd: dblock: the backend's data is new.*/dev/drd of the previous daemon.*must not be resumed" "$BLKSERVD_LOG"
must "ramdisk: the new /dev/drd appears" wait_for_blockdev /dev/drd
check "ramdisk: it is a new device" test "$(cat /sys/block/drd/dblock/handle_id)" != "$old_handle"
check "ramdisk: it reads zeros, not a stale cache" sh -c \
	'dd if=/dev/drd bs=4k count=256 iflag=direct 2>/dev/null | cmp -s - /dev/zero -n 1048576'
blkservd_stop 0
blkservd_log
