# shellcheck shell=dash
# ublk-stop-mounted: a stop (SIGTERM) with an ext4 mounted on each of three
# ublk devices is quick: the daemon exits within 10 s (it used to wait 30 s
# per mounted device in DEL_DEV, one after the other) and logs for each
# device what it did.  With recovery on, an in-use device is kept for the
# next daemon: the next start recovers all three, the files written before
# the stop are intact and e2fsck is clean.  With recovery off, the mounted
# devices are deleted without waiting for the users to let go.  Last, a
# ramdisk's data does not outlive a kill -9 here (no fd store): the next
# daemon must not resume the old device with empty data; it deletes it
# and adds a new one, saying so.
# tools: mkfs.ext4 e2fsck
# files: /etc/mke2fs.conf
# modules: ublk_drv
# requires: daemon/blkservd plugins/blkserv-frontend-ublk.so plugins/blkserv-backend-file.so plugins/blkserv-backend-ramdisk.so
# timeout: 600

run=$BLKSERV_TMP/run
mkdir -p "$run"
n=3

write_conf() {
	local i=0
	{
		echo "plugin_dir = \"$BLKSERV_PLUGIN_DIR\""
		echo "runtime_dir = \"$run\""
		while [ "$i" -lt "$n" ]; do
			cat <<EOF
device "m$i" {
  size = 64M
  block_size = 4096
  frontend "ublk" { id = $i  queues = 1  depth = 16  recovery = $2 }
  backend "file" { path = "$BLKSERV_TMP/m$i.img" }
}
EOF
			i=$((i + 1))
		done
	} >"$BLKSERV_TMP/$1.conf"
}
write_conf keep true
write_conf nokeep false

devs() {
	local i=0
	while [ "$i" -lt "$n" ]; do
		echo "/dev/ublkb$i"
		i=$((i + 1))
	done
}
waits() {
	for d in $(devs); do printf -- '-w %s ' "$d"; done
}
now() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# stop_timed NAME: SIGTERM, wait up to 60 s, check the daemon took < 10 s.
stop_timed() {
	local t0 t1 secs
	t0=$(now)
	kill -TERM "$BLKSERVD_PID"
	wait_for 60 _dead "$BLKSERVD_PID"
	t1=$(now)
	wait "$BLKSERVD_PID"
	check_eq "$1: the daemon exits with status 0" 0 "$?"
	BLKSERVD_PID=
	secs=$(elapsed "$t0" "$t1")
	log "$1: the daemon took $secs s to stop with $n mounted devices"
	check "$1: the stop took less than 10 s ($secs s)" awk -v s="$secs" 'BEGIN { exit !(s < 10) }'
}

must "modprobe ublk_drv" modprobe ublk_drv

# 1. recovery = true: mounted devices are kept for the next daemon.
# shellcheck disable=SC2046 # waits is a list of options
blkservd_start $(waits) "$BLKSERV_TMP/keep.conf" || exit 1
i=0
for d in $(devs); do
	must "mkfs.ext4 $d" mkfs.ext4 -q -F "$d"
	mkdir -p "$BLKSERV_TMP/mnt$i"
	must "mount $d" mount -t ext4 "$d" "$BLKSERV_TMP/mnt$i"
	must "write a file on $d" dd if=/dev/urandom of="$BLKSERV_TMP/mnt$i/f" bs=1M count=8 conv=fsync
	sha256sum <"$BLKSERV_TMP/mnt$i/f" >"$BLKSERV_TMP/sum$i"
	# Written, not synced: the page cache must reach the file at the stop.
	dd if=/dev/urandom of="$BLKSERV_TMP/mnt$i/g" bs=1M count=4 2>/dev/null
	sha256sum <"$BLKSERV_TMP/mnt$i/g" >"$BLKSERV_TMP/sumg$i"
	i=$((i + 1))
done
stop_timed "keep"
i=0
while [ "$i" -lt "$n" ]; do
	check "keep: device m$i logs that it is kept" grep -q "m$i.*left /dev/ublkb$i for the next daemon" "$BLKSERVD_LOG"
	check "keep: /dev/ublkb$i stays" test -b "/dev/ublkb$i"
	check "keep: the state file of m$i stays" test -f "$run/ublk-m$i.state"
	i=$((i + 1))
done
check "keep: the file systems still see their files" test -e "$BLKSERV_TMP/mnt0/f"
# shellcheck disable=SC2046
blkservd_start $(waits) "$BLKSERV_TMP/keep.conf" || exit 1
i=0
while [ "$i" -lt "$n" ]; do
	check "keep: m$i recovered" wait_for 60 grep -q "m$i.*recovered /dev/ublkb$i" "$BLKSERVD_LOG"
	i=$((i + 1))
done
i=0
for d in $(devs); do
	m=$BLKSERV_TMP/mnt$i
	check "keep: $d: a write after the restart" dd if=/dev/urandom of="$m/h" bs=1M count=2 conv=fsync
	must "keep: umount $d" umount "$m"
	drop_caches "$d"
	check "keep: $d: e2fsck -fn clean" e2fsck -fn "$d"
	must "keep: mount $d again" mount -t ext4 "$d" "$m"
	check_eq "keep: $d: the synced file is intact" "$(cat "$BLKSERV_TMP/sum$i")" "$(sha256sum <"$m/f")"
	check_eq "keep: $d: the unsynced file is intact" "$(cat "$BLKSERV_TMP/sumg$i")" "$(sha256sum <"$m/g")"
	must "keep: final umount $d" umount "$m"
	i=$((i + 1))
done
check "keep: no I/O error in the kernel log" sh -c '! dmesg | grep -iE "I/O error|EXT4-fs error" | grep -q ublk'
blkservd_stop 0
check "keep: a stop with nothing mounted removes the devices" sh -c '! ls /dev/ublkc* 2>/dev/null | grep -q .'

# 2. recovery = false: the mounted devices are deleted, without waiting
# for their users.
# shellcheck disable=SC2046
blkservd_start $(waits) "$BLKSERV_TMP/nokeep.conf" || exit 1
i=0
for d in $(devs); do
	must "nokeep: mkfs.ext4 $d" mkfs.ext4 -q -F "$d"
	must "nokeep: mount $d" mount -t ext4 "$d" "$BLKSERV_TMP/mnt$i"
	i=$((i + 1))
done
stop_timed "nokeep"
i=0
while [ "$i" -lt "$n" ]; do
	check "nokeep: m$i logs that it is deleted while in use" \
		grep -q "m$i.*/dev/ublkb$i is in use" "$BLKSERVD_LOG"
	umount "$BLKSERV_TMP/mnt$i" 2>/dev/null
	i=$((i + 1))
done
check "nokeep: after the umounts no /dev/ublkc* is left" wait_for 20 sh -c '! ls /dev/ublkc* 2>/dev/null | grep -q .'
check "nokeep: no state file left" sh -c '! ls '"$run"'/ublk-*.state 2>/dev/null | grep -q .'

# 3. A ramdisk's data is new after a kill -9: no resume.
cat >"$BLKSERV_TMP/ram.conf" <<EOF
plugin_dir = "$BLKSERV_PLUGIN_DIR"
runtime_dir = "$run"
device "rd" {
  size = 64M
  block_size = 4096
  frontend "ublk" { id = 5  queues = 1  depth = 16  recovery = true }
  backend "ramdisk" { }
}
EOF
blkservd_start -w /dev/ublkb5 "$BLKSERV_TMP/ram.conf" || exit 1
yes blkserv | head -c 1048576 >"$BLKSERV_TMP/pattern"
must "ramdisk: write a pattern" dd if="$BLKSERV_TMP/pattern" of=/dev/ublkb5 bs=4k oflag=direct
kill -KILL "$BLKSERVD_PID"
wait "$BLKSERVD_PID" 2>/dev/null
check "ramdisk: the device stays after kill -9" test -c /dev/ublkc5
blkservd_start -w /dev/ublkb5 "$BLKSERV_TMP/ram.conf" || exit 1
check "ramdisk: the old device is not resumed, said loudly" wait_for 30 \
	grep -q "rd: ublk: the backend's data is new.*device 5 of the previous daemon.*must not be resumed" "$BLKSERVD_LOG"
check "ramdisk: no recovery was attempted" sh -c '! grep -q "rd: ublk: recovered" '"$BLKSERVD_LOG"
_added_twice() { [ "$(grep -c 'rd: ublk: added device 5' "$BLKSERVD_LOG")" -ge 2 ]; }
must "ramdisk: a new device is added" wait_for 30 _added_twice
must "ramdisk: the new device appears" wait_for_blockdev /dev/ublkb5
check "ramdisk: the new device reads zeros, not a stale cache" sh -c \
	'dd if=/dev/ublkb5 bs=4k count=256 2>/dev/null | cmp -s - /dev/zero -n 1048576'
blkservd_stop 0
blkservd_log
