# shellcheck shell=dash
# upgrade-mounted: blkservctl upgrade with ext4 mounted on an nbd, a ublk and
# a dblock device (file backends), a writer on each that records a file only
# after its fsync returned, and fio verify=crc32c on a raw nbd device over
# the ramdisk (its memfd goes across the exec: no systemd here).  Two
# upgrades (the second by SIGUSR2), an upgrade to a binary that refuses the
# config (the undone upgrade, handed back to the old binary, is in the host
# test `upgrade` and in systemd-outlive).  Afterwards: same PID and /dev nodes, no error in the writers,
# fio or the kernel log, every recorded file intact, e2fsck clean.
# tools: mkfs.ext4 e2fsck fio
# files: /etc/mke2fs.conf
# modules: nbd ublk_drv ext4
# kmods: frontends/dblock/kmod/dblock.ko
# requires: daemon/blkservd daemon/blkservctl plugins/blkserv-frontend-nbd.so plugins/blkserv-frontend-ublk.so plugins/blkserv-frontend-dblock.so plugins/blkserv-backend-file.so plugins/blkserv-backend-ramdisk.so
# cmdline: sysctl.kernel.hung_task_timeout_secs=90
# timeout: 900

run=$BLKSERV_TMP/run
state=$BLKSERV_TMP/state
STOP=$state/stop
mkdir -p "$run" "$state"
conf=$BLKSERV_TMP/up.conf
for n in un uu ud; do truncate -s 128M "$BLKSERV_TMP/$n.img"; done
cat >"$conf" <<EOC
plugin_dir = "$BLKSERV_PLUGIN_DIR"
runtime_dir = "$run"
device "un" { size = 128M frontend "nbd" { index = 0 } backend "file" { path = "$BLKSERV_TMP/un.img" } }
device "uraw" { size = 64M frontend "nbd" { index = 1 } backend "ramdisk" { } }
device "uu" { size = 128M frontend "ublk" { id = 0 } backend "file" { path = "$BLKSERV_TMP/uu.img" } }
device "ud" { size = 128M block_size = 4096 frontend "dblock" { } backend "file" { path = "$BLKSERV_TMP/ud.img" } }
EOC
CTL="$BLKSERVCTL --socket $run/control.sock"
devs="/dev/nbd0 /dev/ublkb0 /dev/ud"

fio_loop() {
	local pass=0
	while [ ! -e "$STOP" ]; do
		pass=$((pass + 1))
		fio --name=up --filename=/dev/nbd1 --rw=randwrite --bs=4k --size=16M --iodepth=8 \
			--ioengine=libaio --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 \
			>"$state/fio.$pass" 2>&1 || echo "pass $pass failed" >>"$state/fio.err"
		echo "$pass" >"$state/fio.passes"
	done
}

records() { for n in un uu ud; do printf '%s-' "$(wc -l <"$state/$n.rec")"; done; }
_all_moved() { # records-before
	local i=1 before now
	for n in un uu ud; do
		before=$(echo "$1" | cut -d- -f$i)
		now=$(wc -l <"$state/$n.rec")
		[ "$now" -gt "$before" ] || return 1
		i=$((i + 1))
	done
}
generation() { $CTL --json version | sed 's/.*"generation":\([0-9]*\).*/\1/'; }

must "modprobe nbd" modprobe nbd nbds_max=4
must "modprobe ublk_drv" modprobe ublk_drv
must "modprobe dblock" modprobe dblock
BLKSERVD_START_TIMEOUT=60 blkservd_start -w /dev/ud "$conf" || exit 1
for d in $devs /dev/nbd1; do must "$d appears" wait_for_blockdev "$d" 30; done
for n in un uu ud; do
	case $n in un) d=/dev/nbd0 ;; uu) d=/dev/ublkb0 ;; ud) d=/dev/ud ;; esac
	must "$n: mkfs.ext4" mkfs.ext4 -q -F "$d"
	mkdir -p "$BLKSERV_TMP/m$n"
	must "$n: mount" mount -t ext4 "$d" "$BLKSERV_TMP/m$n"
	: >"$state/$n.rec"
	fsync_writer "$n" "$BLKSERV_TMP/m$n" &
done
fio_loop &
dmesg -c >/dev/null
sleep 3
pid=$BLKSERVD_PID

# upgrade HOW WANT: one upgrade, the same pid after it, every writer on.
upgrade_ok() {
	local what=$1 before gen
	shift
	before=$(records)
	gen=$(generation)
	check "$what" "$@"
	check "$what: the same pid" test "$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' <<EOF
$($CTL --json version)
EOF
)" = "$pid"
	check "$what: a new generation" test "$(generation)" -gt "$gen"
	check "$what: every writer goes on" wait_for 60 _all_moved "$before"
}
cp "$BLKSERVD" "$BLKSERV_TMP/blkservd-next"
upgrade_ok "upgrade to another binary" $CTL upgrade "$BLKSERV_TMP/blkservd-next"
check "the ramdisk's memfd went along" grep -q "uraw: ramdisk: kept the ramdisk contents" "$BLKSERVD_LOG"
check "nbd: a clean handover, no reconnect" grep -q "un: .*clean handover" "$BLKSERVD_LOG"
gen=$(generation)
kill -USR2 "$pid"
check "SIGUSR2 upgrades" wait_for 60 sh -c "test \"\$($CTL --json version | sed 's/.*\"generation\":\([0-9]*\).*/\1/')\" -gt $gen"
progress=$(records)
check "after SIGUSR2 every writer goes on" wait_for 60 _all_moved "$progress"

printf '#!/bin/sh\necho refused >&2\nexit 1\n' >"$BLKSERV_TMP/bad"
chmod 755 "$BLKSERV_TMP/bad"
check_fails "an upgrade to a binary that refuses the config fails" $CTL upgrade "$BLKSERV_TMP/bad"
check "...and the daemon still serves" _alive "$pid"

# The verdict.
touch "$STOP"
wait_for 120 sh -c "! pgrep -f 'fio --name=up' >/dev/null"
sleep 1
for n in un uu ud; do
	check "$n: the writer saw no error" writer_ok "$n"
done
check "fio verify passed every pass ($(cat "$state/fio.passes" 2>/dev/null) passes)" sh -c \
	"! test -s $state/fio.err || { cat $state/fio.err; false; }"
check "the kernel logged no I/O error" sh -c \
	"! dmesg | grep -E 'I/O error|Aborting journal|EXT4-fs error|Buffer I/O|shutting down sockets'"
check "no nbd connection was declared dead" sh -c "! dmesg | grep 'Dead connection'"
for n in un uu ud; do
	case $n in un) d=/dev/nbd0 ;; uu) d=/dev/ublkb0 ;; ud) d=/dev/ud ;; esac
	check "$n: every recorded file is intact" verify_records "$n" "$BLKSERV_TMP/m$n"
	must "$n: umount" umount "$BLKSERV_TMP/m$n"
	check "$n: e2fsck -fn clean" e2fsck -fn "$d"
done
blkservd_stop 0
