# shellcheck shell=dash
# systemd-restart-ublk: systemctl restart under load keeps ublk devices.
# ext4 is mounted on two ublk devices with two queues each, one over the
# ramdisk (its memfd kept in systemd's fd store), one over a file; a writer
# on each fsyncs numbered files and records one only after its fsync
# returned.  Eight restarts: each finishes within 30 s with the same device
# nodes, no task hangs in the kernel, every writer goes on; afterwards no
# write failed, every recorded file is intact and e2fsck is clean.
# mode: systemd
# modules: ublk_drv
# requires: daemon/blkservd daemon/blkservctl plugins/blkserv-frontend-ublk.so plugins/blkserv-backend-ramdisk.so plugins/blkserv-backend-file.so tests/vm/extra/systemd/blkservd.service
# timeout: 900

state=/root/restart
mkdir -p "$state" /srv/blkserv
STOP=$state/stop
rounds=${BLKSERV_RESTART_ROUNDS:-8}
cat >/etc/blkservd.conf <<CONF
plugin_dir = "$BLKSERV_PLUGIN_DIR"
device "ur" {
	size = 256M
	frontend "ublk" { queues = 2 }
	backend "ramdisk" { }
}
device "uf" {
	size = 256M
	frontend "ublk" { queues = 2 }
	backend "file" { path = "/srv/blkserv/uf.img" }
}
CONF
truncate -s 256M /srv/blkserv/uf.img

count() { wc -l <"$state/$1.rec"; }
moved() { [ "$(count ur)" -gt "$1" ] && [ "$(count uf)" -gt "$2" ]; }
nodes() { for n in ur uf; do printf '%s ' "$(readlink -f /dev/blkserv/$n)"; done; }

must "install the unit and udev rule" install_blkservd_unit
must "systemctl start blkservd" systemctl start blkservd
for n in ur uf; do
	must "/dev/blkserv/$n appears" wait_for 60 test -b "/dev/blkserv/$n"
	must "$n: mkfs.ext4" mkfs.ext4 -q -F "/dev/blkserv/$n"
	mkdir -p "/mnt/$n"
	must "$n: mount" mount -t ext4 "/dev/blkserv/$n" "/mnt/$n"
	: >"$state/$n.rec"
	fsync_writer "$n" "/mnt/$n" &
done
before=$(nodes)
sleep 3
i=1
while [ "$i" -le "$rounds" ]; do
	a=$(count ur) b=$(count uf)
	check "restart $i within 30 s" timeout 30 systemctl restart blkservd || break
	check "restart $i: the unit is active" systemctl is-active -q blkservd
	check "restart $i: every writer goes on" wait_for 60 moved "$a" "$b"
	check_eq "restart $i: the same /dev nodes" "$before" "$(nodes)"
	sleep 1
	i=$((i + 1))
done
touch "$STOP"
wait
for n in ur uf; do
	check "$n: the writer saw no error" writer_ok "$n"
	check "$n: every recorded file is intact" verify_records "$n" "/mnt/$n"
	must "$n: umount" umount "/mnt/$n"
	check "$n: e2fsck -fn clean" e2fsck -fn "/dev/blkserv/$n"
done
check "the kernel logged no I/O error" sh -c "! dmesg | grep -E 'I/O error|Aborting journal|EXT4-fs error|Buffer I/O'"
must "systemctl stop blkservd" systemctl stop blkservd
