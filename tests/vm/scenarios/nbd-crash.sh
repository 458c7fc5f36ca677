# shellcheck shell=dash
# nbd-crash: the kernel nbd device outlives the daemon.  ext4 mounted on
# /dev/nbdN (file backend, index picked by the kernel) with a writer that
# fsyncs numbered files and records each only after its fsync returned, and
# fio verify=crc32c on a raw /dev/nbd5 (2 connections); kill -9 of the
# daemon mid-write, a new daemon takes the same devices over with
# NBD_CMD_RECONFIGURE (no fd store here: no systemd); then a crash loop (three
# daemons killed 0.1-0.6 s after their start, during their takeover, then
# one recovers).  After:
# the same /dev/nbdN, no I/O error in the writer, fio or the kernel log,
# every recorded file intact, e2fsck clean; the longest stall the writer saw
# is reported.  A state file that names a device connected as something else
# is ignored, and a clean stop disconnects and removes the state.  A ramdisk
# device (its data does not outlive the daemon) is not taken over but
# replaced.  A request that outlives the kernel's timeout on a live daemon
# (a fault delay) gets its connection reconnected by the daemon itself, and
# the write is resent and lands.
# tools: mkfs.ext4 e2fsck fio
# files: /etc/mke2fs.conf
# modules: nbd ext4
# requires: daemon/blkservd plugins/blkserv-frontend-nbd.so plugins/blkserv-backend-file.so
# memory: 1536
# timeout: 900
# (a write in flight at a crash waits for the 30 s request timeout: more than
# the harness's 20 s hung-task limit)
# cmdline: sysctl.kernel.hung_task_timeout_secs=90

run=$BLKSERV_TMP/run
mnt=$BLKSERV_TMP/mnt
rec=$BLKSERV_TMP/written
mkdir -p "$run" "$mnt"
must "modprobe nbd" modprobe nbd nbds_max=8
must "image f0" truncate -s 256M "$BLKSERV_TMP/f0.img"
must "image r1" truncate -s 128M "$BLKSERV_TMP/r1.img"

conf=$BLKSERV_TMP/crash.conf
cat >"$conf" <<EOF
plugin_dir = "$BLKSERV_PLUGIN_DIR"
runtime_dir = "$run"
device "f0" {
  block_size = 4096
  frontend "nbd" { }
  backend "file" { path = "$BLKSERV_TMP/f0.img" }
}
device "r1" {
  block_size = 4096
  frontend "nbd" { index = 5  connections = 2 }
  backend "file" { path = "$BLKSERV_TMP/r1.img" }
}
device "slow" {
  size = 32M
  block_size = 4096
  frontend "nbd" { index = 6  timeout = 2 }
  backend "ramdisk" { }
  faults { delay_ms = 5000  trigger = "$BLKSERV_TMP/slow-on" }
}
EOF

# The /dev/nbdN connected as $1 (its backend identifier).
nbd_of() {
	local d
	for d in /sys/block/nbd*; do
		if [ "$(cat "$d/backend" 2>/dev/null)" = "$1" ]; then
			echo "/dev/${d##*/}"
			return 0
		fi
	done
	return 1
}

takeovers() { grep -c "$1: .*\(reconnected\|resumed\) /dev/nbd" "$BLKSERVD_LOG"; }
_taken_over() { [ "$(takeovers f0)" -gt "$1" ] && [ "$(takeovers r1)" -gt "$2" ]; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }

# The writer: numbered 64 KiB files, each fsynced; its name and checksum
# are recorded (on tmpfs) only once the fsync returned.
writer() {
	local i=0 t0 t1
	: >"$rec"
	: >"$BLKSERV_TMP/writer.err"
	: >"$BLKSERV_TMP/writer.lat"
	while [ ! -e "$BLKSERV_TMP/stop-writer" ]; do
		head -c 65536 /dev/urandom >"$BLKSERV_TMP/chunk"
		t0=$(uptime_s)
		if dd if="$BLKSERV_TMP/chunk" of="$mnt/f$i" bs=64k conv=fsync 2>"$BLKSERV_TMP/dd.err"; then
			t1=$(uptime_s)
			echo "$(sha256sum <"$BLKSERV_TMP/chunk" | cut -d' ' -f1) f$i" >>"$rec"
			echo "$t0 $t1" >>"$BLKSERV_TMP/writer.lat"
		else
			echo "write of f$i failed: $(cat "$BLKSERV_TMP/dd.err")" >>"$BLKSERV_TMP/writer.err"
		fi
		i=$((i + 1))
	done
}

# kill_and_take_over NAME: kill -9 the daemon; a new one takes both over.
kill_and_take_over() {
	local f0 r1
	f0=$(takeovers f0)
	r1=$(takeovers r1)
	kill -KILL "$BLKSERVD_PID"
	wait "$BLKSERVD_PID" 2>/dev/null
	check "$1: the state files stay" test -f "$run/nbd-f0.state" -a -f "$run/nbd-r1.state"
	check "$1: $dev stays configured" test -e "/sys/block/${dev#/dev/}/pid"
	blkservd_start "$conf" || exit 1
	must "$1: the new daemon takes $dev and /dev/nbd5 over" wait_for 120 _taken_over "$f0" "$r1"
}

dmesg -c >/dev/null
blkservd_start "$conf" || exit 1
must "/dev/nbd5 appears" wait_for_blockdev /dev/nbd5
# f0's device is the kernel's choice (usually /dev/nbd0).
_f0_connected() { dev=$(nbd_of f0); }
must "f0 is connected" wait_for 20 _f0_connected
must "$dev appears" wait_for_blockdev "$dev"
check "the state file records it" grep -q "^index=${dev#/dev/nbd}\$" "$run/nbd-f0.state"
must "mkfs.ext4" mkfs.ext4 -q -F "$dev"
must "mount" mount -t ext4 "$dev" "$mnt"

writer &
writer_pid=$!
fio --name=crash --filename=/dev/nbd5 --rw=randwrite --bs=4k --size=64M \
	--iodepth=16 --ioengine=libaio --direct=1 --numjobs=1 \
	--verify=crc32c --do_verify=1 --verify_fatal=1 >"$BLKSERV_TMP/fio.log" 2>&1 &
fio_pid=$!
sleep 4
check "the writer is writing when the daemon is killed" test -s "$rec"
check "fio is writing when the daemon is killed" kill -0 "$fio_pid"
t_kill=$(uptime_s)
kill_and_take_over "crash"
t_back=$(uptime_s)
log "first takeover done $(awk "BEGIN { print $t_back - $t_kill }") s after the kill"
check "the ramdisk device is replaced, not taken over" \
	grep -q "slow: nbd: cannot take /dev/nbd6 of the previous daemon over: the backend's data did not survive" \
	"$BLKSERVD_LOG"
check "the ramdisk device is connected again" wait_for 20 test -e /sys/block/nbd6/pid
sleep 3

# Crash loop: the next daemon dies during its takeover, a third recovers.
f0=$(takeovers f0)
r1=$(takeovers r1)
kill -KILL "$BLKSERVD_PID"
wait "$BLKSERVD_PID" 2>/dev/null
# Three daemons killed at different moments of their start or takeover.
for delay in 0.1 0.3 0.6; do
	blkservd_start "$conf" || exit 1
	sleep "$delay"
	kill -KILL "$BLKSERVD_PID"
	wait "$BLKSERVD_PID" 2>/dev/null
	log "crash loop: a daemon killed $delay s after its start ($(takeovers f0) takeovers of f0 done, $f0 before)"
done
f0=$(takeovers f0)
r1=$(takeovers r1)
blkservd_start "$conf" || exit 1
must "crash loop: a third daemon takes both over" wait_for 120 _taken_over "$f0" "$r1"
sleep 5

touch "$BLKSERV_TMP/stop-writer"
wait "$writer_pid"
wait "$fio_pid"
check_eq "fio verify=crc32c across the crashes" 0 "$?"
tail -n 12 "$BLKSERV_TMP/fio.log"
check_eq "the writer saw no error" "" "$(cat "$BLKSERV_TMP/writer.err")"
log "writer: $(wc -l <"$rec") files written and fsynced; longest fsynced write:" \
	"$(awk '{ d = $2 - $1; if (d > m) m = d } END { print m }' "$BLKSERV_TMP/writer.lat") s"
check "the writer wrote files after the crashes" test "$(wc -l <"$rec")" -gt 10

# Same device, no second one.
check_eq "still $dev" "$dev" "$(nbd_of f0)"
check "no other nbd device connected as f0" sh -c \
	"test \$(cat /sys/block/nbd*/backend 2>/dev/null | grep -c '^f0\$') = 1"
dmesg >"$BLKSERV_TMP/dmesg.log"
# (nbd6, the ramdisk, is disconnected at each takeover: not checked here.)
for bad in "I/O error" "Aborting journal" "EXT4-fs error" "nbd[05]: shutting down sockets" \
	"nbd[05]: Connection timed out$"; do
	check "kernel log: no '$bad'" sh -c "! grep -q '$bad' '$BLKSERV_TMP/dmesg.log'"
done
log "kernel log: $(grep -c 'Dead connection' "$BLKSERV_TMP/dmesg.log") 'Dead connection' (I/O held while no daemon ran)," \
	"$(grep -c 'reconnected socket' "$BLKSERV_TMP/dmesg.log") 'reconnected socket'," \
	"$(grep -c 'Connection timed out, retrying' "$BLKSERV_TMP/dmesg.log") 'Connection timed out, retrying'"

must "umount" umount "$mnt"
drop_caches "$dev"
check "e2fsck -fn clean" e2fsck -fn "$dev"
must "mount again" mount -t ext4 "$dev" "$mnt"
bad=0
while read -r sum name; do
	[ "$(sha256sum <"$mnt/$name" | cut -d' ' -f1)" = "$sum" ] || { bad=$((bad + 1)); log "$name differs"; }
done <"$rec"
check_eq "every recorded file intact ($(wc -l <"$rec") files)" 0 "$bad"
must "final umount" umount "$mnt"

# A request the daemon takes longer for than the kernel's timeout (2 s):
# the kernel declares the connection dead; the daemon finishes the request,
# reconnects, and the resent write lands.
head -c 4096 /dev/urandom >"$BLKSERV_TMP/slow.blk"
touch "$BLKSERV_TMP/slow-on"
dd if="$BLKSERV_TMP/slow.blk" of=/dev/nbd6 bs=4k conv=fsync 2>"$BLKSERV_TMP/slow.err" &
dd_pid=$!
sleep 4
rm -f "$BLKSERV_TMP/slow-on"
wait "$dd_pid"
check_eq "slow: the write outliving the timeout completes" 0 "$?"
check "slow: the daemon reconnected the connection" wait_for 20 \
	grep -q "slow: nbd: reconnected nbd connection 0 of /dev/nbd6" "$BLKSERVD_LOG"
drop_caches /dev/nbd6
check_eq "slow: the write landed" "$(sha256sum <"$BLKSERV_TMP/slow.blk")" \
	"$(dd if=/dev/nbd6 bs=4k count=1 2>/dev/null | sha256sum)"
check "slow: no connection was given up" sh -c "! grep -q 'I/O will fail' '$BLKSERVD_LOG'"

# A clean stop disconnects; a state file naming a device that is not
# connected as ours is ignored.
blkservd_stop 0
check "clean stop: $dev disconnected" test ! -e "/sys/block/${dev#/dev/}/pid"
check "clean stop: the state files are removed" test ! -e "$run/nbd-f0.state" -a ! -e "$run/nbd-r1.state"
printf 'index=3\nconnections=1\nsize=268435456\nblock_size=4096\nflags=0\nbackend=f0\nhandover=clean\npid=1\n' \
	>"$run/nbd-f0.state"
blkservd_start "$conf" || exit 1
must "stale state: f0 is connected" wait_for 20 _f0_connected
check "stale state: reported" grep -q 'nbd3 of the state file is no longer connected' "$BLKSERVD_LOG"
blkservd_stop 0
blkservd_log
