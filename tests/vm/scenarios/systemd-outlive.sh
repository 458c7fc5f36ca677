# shellcheck shell=dash
# systemd-outlive: devices outlive the daemon under systemd.  ext4 is
# mounted on an nbd (file backend), a ublk (ramdisk) and a dblock (log)
# device, each with a writer that fsyncs numbered files and records one only
# after its fsync returned, and fio verify=crc32c runs on a raw nbd device
# (ramdisk), through: systemctl restart three times, an in-place upgrade to
# another binary, kill -9 of MainPID, a crash loop (killed again while it
# takes the devices back), an upgrade to a binary that refuses the config
# and one whose new image fails a device (handed back), and systemctl stop
# with mounted devices (kept) and start again.  Afterwards: no I/O error
# in the writers, fio or the kernel log, every recorded file verified, fsck
# clean, the same /dev nodes.
# mode: systemd
# modules: nbd ublk_drv
# kmods: frontends/dblock/kmod/dblock.ko
# requires: daemon/blkservd daemon/blkservctl plugins/blkserv-frontend-nbd.so plugins/blkserv-frontend-ublk.so plugins/blkserv-frontend-dblock.so plugins/blkserv-backend-ramdisk.so plugins/blkserv-backend-file.so plugins/blkserv-backend-log.so tests/vm/extra/systemd/blkservd.service
# timeout: 1500
# A write in flight at a kill -9 of an nbd device waits for its 30 s request
# timeout, past the harness's 20 s hung-task limit.
# cmdline: sysctl.kernel.hung_task_timeout_secs=90

state=/root/outlive
mkdir -p "$state" /srv/blkserv
STOP=$state/stop


write_config() {
	cat >/etc/blkservd.conf <<EOF
plugin_dir = "$BLKSERV_PLUGIN_DIR"
device "nf" {
	size = 256M
	frontend "nbd" { }
	backend "file" { path = "/srv/blkserv/nf.img" }
}
device "raw" {
	size = 128M
	frontend "nbd" { }
	backend "ramdisk" { }
}
device "ur" {
	size = 256M
	frontend "ublk" { queues = 2 }
	backend "ramdisk" { }
}
device "dl" {
	size = 256M
	block_size = 4096
	frontend "dblock" { }
	backend "log" { dir = "/srv/blkserv/dl.log" }
}
EOF
}

main_pid() { systemctl show -p MainPID --value blkservd; }
restarted() { # old pid
	[ "$(main_pid)" != "$1" ] && [ "$(main_pid)" != 0 ] && systemctl is-active -q blkservd
}
nodes() { for n in nf raw ur dl; do printf '%s ' "$(readlink -f /dev/blkserv/$n)"; done; }
journal_has() { # SINCE PATTERN: the unit's journal since epoch SINCE has it
	journalctl -b -u blkservd --no-pager --since "@$1" 2>/dev/null | grep -q "$2"
}

# fio passes on the raw device until told to stop; a failed pass is kept.
fio_loop() {
	local pass=0
	while [ ! -e "$STOP" ]; do
		pass=$((pass + 1))
		fio --name=outlive --filename=/dev/blkserv/raw --rw=randwrite --bs=4k --size=16M \
			--iodepth=8 --ioengine=libaio --direct=1 --verify=crc32c --do_verify=1 \
			--verify_fatal=1 --output="$state/fio.$pass" >/dev/null 2>&1 ||
			echo "pass $pass failed" >>"$state/fio.err"
		echo "$pass" >"$state/fio.passes"
	done
}

writers_progress() { # the writers' record counts, one word
	local n out=""
	for n in nf ur dl; do out="$out$(wc -l <"$state/$n.rec" 2>/dev/null || echo 0)-"; done
	echo "$out"
}

# Every writer recorded at least one file after the event.
writers_moved() { # progress-before
	local now
	now=$(writers_progress)
	[ "$now" != "$1" ] || return 1
	for n in nf ur dl; do
		[ "$(wc -l <"$state/$n.rec")" -gt "$(echo "$1" | tr - '\n' | sed -n "$(
			case $n in nf) echo 1 ;; ur) echo 2 ;; dl) echo 3 ;; esac)p")" ] || return 1
	done
}

must "install the unit and udev rule" install_blkservd_unit
must "modprobe dblock" modprobe dblock
truncate -s 256M /srv/blkserv/nf.img
write_config
start_service() {
	systemctl start blkservd && return 0
	systemctl status --no-pager blkservd
	journalctl -b -u blkservd --no-pager | tail -25
	return 1
}
must "systemctl start blkservd" start_service
for n in nf raw ur dl; do
	must "/dev/blkserv/$n appears" wait_for 60 test -b "/dev/blkserv/$n"
done
before_nodes=$(nodes)
for n in nf ur dl; do
	must "$n: mkfs.ext4" mkfs.ext4 -q -F "/dev/blkserv/$n"
	mkdir -p "/mnt/$n"
	must "$n: mount" mount -t ext4 "/dev/blkserv/$n" "/mnt/$n"
	: >"$state/$n.rec"
	fsync_writer "$n" "/mnt/$n" &
done
fio_loop &
dmesg -C
sleep 5

# event NAME CMD...: run it, then the unit is active again and every
# writer makes progress within 90 s.
event() {
	local name=$1 progress
	shift
	progress=$(writers_progress)
	check "$name" "$@"
	check "$name: the unit is active" wait_for 60 systemctl is-active -q blkservd
	check "$name: every writer goes on" wait_for 90 writers_moved "$progress"
	check_eq "$name: the same /dev nodes" "$before_nodes" "$(nodes)"
}

t0=$(date +%s)
for i in 1 2 3; do
	event "systemctl restart ($i)" systemctl restart blkservd
done
check "the restarts kept the devices" journal_has "$t0" 'systemd is restarting the unit: keeping every device'

cp "$BLKSERVD" /usr/local/sbin/blkservd-next
pid=$(main_pid)
event "blkservctl upgrade to another binary" $BLKSERVCTL upgrade /usr/local/sbin/blkservd-next
check_eq "the upgrade kept MainPID" "$pid" "$(main_pid)"
check "blkservctl version: generation 1, done" sh -c "$BLKSERVCTL --json version | grep -q '\"upgrade\":\"done\"'"

printf '#!/bin/sh\necho "this binary refuses everything" >&2\nexit 1\n' >/usr/local/sbin/blkservd-bad
chmod 755 /usr/local/sbin/blkservd-bad
check_fails "an upgrade to a binary that refuses the config fails" $BLKSERVCTL upgrade /usr/local/sbin/blkservd-bad
check_eq "that changed nothing (MainPID)" "$pid" "$(main_pid)"

pid=$(main_pid)
event "kill -9 of MainPID" kill -9 "$pid"
check "systemd restarted the daemon" restarted "$pid"

# A crash loop: killed again while it takes the devices back.
pid=$(main_pid)
kill -9 "$pid"
wait_for 60 restarted "$pid"
pid2=$(main_pid)
kill -9 "$pid2"
event "crash loop: the third daemon takes the devices back" wait_for 60 restarted "$pid2"

# An upgrade whose new image cannot start a device hands everything back.
mkdir -p /etc/systemd/system/blkservd.service.d
printf '[Service]\nEnvironment=BLKSERV_TEST_UPGRADE_FAIL_DEVICE=dl\n' >/etc/systemd/system/blkservd.service.d/fail.conf
systemctl daemon-reload
event "restart with the test hook" systemctl restart blkservd
pid=$(main_pid)
check_fails "an upgrade whose new image fails device dl is undone" $BLKSERVCTL upgrade
check_eq "the previous binary serves again (MainPID)" "$pid" "$(main_pid)"
check "blkservctl version says undone" sh -c "$BLKSERVCTL --json version | grep -q '\"upgrade\":\"undone\"'"
rm /etc/systemd/system/blkservd.service.d/fail.conf
systemctl daemon-reload
progress=$(writers_progress)
check "after the undone upgrade every writer goes on" wait_for 90 writers_moved "$progress"

# The writers stop; the ramdisk-backed ur is checked and unmounted (its
# data would not outlive a stop); the kernel log so far must be clean.
touch "$STOP"
wait
rm -f "$STOP"
check "ur: every recorded file is intact" verify_records ur /mnt/ur
must "ur: umount" umount /mnt/ur
check "ur: e2fsck -fn clean" e2fsck -fn /dev/blkserv/ur
check "the kernel logged no I/O error or dead connection" sh -c \
	"! dmesg | grep -E 'I/O error|Aborting journal|EXT4-fs error|Buffer I/O|shutting down sockets'"

# systemctl stop with nf and dl mounted: within 30 s, both kept (said per
# device), the idle ones removed; a start takes the kept ones over.
t0=$(date +%s)
check "systemctl stop with mounted devices finishes within 30 s" timeout 30 systemctl stop blkservd
check "stop says nf is kept" journal_has "$t0" 'nf: .*in use (mounted?): not removing it'
check "stop says dl is kept" journal_has "$t0" 'dl: .*in use (mounted?): not removing it'
check "the idle ramdisk device ur is removed" sh -c '! test -e /dev/blkserv/ur'
must "systemctl start takes the kept devices over" start_service
for n in nf dl; do
	check "$n: the file system works after stop and start" \
		dd if=/dev/urandom of="/mnt/$n/after-start" bs=64k count=4 conv=fsync
done

# The verdict.
for n in nf ur dl; do
	check "$n: the writer saw no error" writer_ok "$n"
done
check "fio verify passed every pass ($(cat "$state/fio.passes" 2>/dev/null) passes)" sh -c \
	"! test -s $state/fio.err || { cat $state/fio.err; false; }"
# The stop removed the idle nbd device raw on purpose ("shutting down
# sockets" for it is expected); the kept nf must not have been shut down.
nf_disk=$(basename "$(readlink -f /dev/blkserv/nf)")
check "still no I/O error in the kernel log, and $nf_disk (nf) never shut down" sh -c \
	"! dmesg | grep -E 'I/O error|Aborting journal|EXT4-fs error|Buffer I/O|$nf_disk: shutting down sockets'"
for n in nf dl; do
	check "$n: every recorded file is intact" verify_records "$n" "/mnt/$n"
	must "$n: umount" umount "/mnt/$n"
	check "$n: e2fsck -fn clean" e2fsck -fn "/dev/blkserv/$n"
done
must "systemctl stop blkservd" systemctl stop blkservd
