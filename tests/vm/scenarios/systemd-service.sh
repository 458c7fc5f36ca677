# shellcheck shell=dash
# systemd-service: blkservd as users run it: systemctl start/reload/stop,
# sd_notify status, /dev/blkserv/NAME links, journal fields, blkservctl,
# and a kill -9 that systemd recovers from with ramdisk data and the ublk
# device intact.
# mode: systemd
# modules: nbd ublk_drv
# requires: daemon/blkservd daemon/blkservctl plugins/blkserv-frontend-nbd.so plugins/blkserv-frontend-ublk.so plugins/blkserv-backend-ramdisk.so tests/vm/extra/systemd/blkservd.service
# timeout: 600


write_config() { # extra device sections on stdin
	{
		cat <<EOF
plugin_dir = "$BLKSERV_PLUGIN_DIR"
device "nb" {
	size = 256M
	block_size = 4096
	frontend "nbd" { }
	backend "ramdisk" { }
}
device "ub" {
	size = 256M
	block_size = 4096
	frontend "ublk" { queues = 2 }
	backend "ramdisk" { }
}
EOF
		cat
	} >/etc/blkservd.conf
}


status_names_devices() {
	status=$(systemctl show -p StatusText --value blkservd)
	case "$status" in *"nb (nbd /dev/nbd"*) ;; *) echo "$status"; return 1 ;; esac
	case "$status" in *"ub (ublk /dev/ublkb"*) ;; *) echo "$status"; return 1 ;; esac
}

main_pid() { systemctl show -p MainPID --value blkservd; }

restarted() { # old pid
	[ "$(main_pid)" != "$1" ] && [ "$(main_pid)" != 0 ] && systemctl is-active -q blkservd
}

must "install the unit and udev rule" install_blkservd_unit
write_config </dev/null
start_service() {
	systemctl start blkservd && return 0
	systemctl status --no-pager blkservd
	journalctl -b -u blkservd --no-pager | tail -25
	return 1
}

must "systemctl start blkservd" start_service
check_eq "the unit is active" active "$(systemctl is-active blkservd)"
check "STATUS= names both devices" status_names_devices
# /dev/blkserv/NAME appears (udev under TCG on a loaded host can take long:
# up to 60 s); if not, what the daemon and udev know.
link_appears() {
	wait_for 60 test -b "/dev/blkserv/$1" && return 0
	echo "block devices: $(ls /sys/block | tr '\n' ' ')"
	ls -l /dev/blkserv/ /run/blkservd/names/ 2>&1
	# Is udev still busy with an event (a probe stuck on the device)?
	ls -l /run/udev/queue 2>&1
	for b in /sys/block/ublkb* /sys/block/nbd0; do
		echo "${b##*/}: inflight $(cat "$b/inflight" 2>/dev/null)"
		udevadm info --query=all "/dev/${b##*/}" 2>&1 | grep -E 'S:|DEVLINKS|BLKSERV|ID_FS' || true
	done
	$BLKSERVCTL stats "$1" 2>&1 | tail -4
	ps -eo pid,stat,wchan:30,etime,args | grep -E 'udev|blkid|blkservd' | grep -v grep
	for p in $(pgrep -f systemd-udevd); do
		echo "-- /proc/$p/stack"
		cat "/proc/$p/stack" 2>&1 | head -12
	done
	journalctl -b -u systemd-udevd --no-pager | tail -20
	journalctl -b -u blkservd --no-pager | tail -12
	return 1
}
must "/dev/blkserv/nb appears" link_appears nb
must "/dev/blkserv/ub appears" link_appears ub
# The links must not depend on udev's timing: the daemon asked udev to
# look at each device again once its name was recorded (the unit keeps
# /sys/devices/virtual/block writable for that).
check "the daemon could ask udev for the links" sh -c \
	"! journalctl -b -u blkservd | grep 'cannot ask udev\|cannot record the name'"
fs_roundtrip nbd-link /dev/blkserv/nb 20
check "journalctl BLKSERV_DEVICE=nb finds its lines" sh -c 'journalctl -b BLKSERV_DEVICE=nb | grep -q "serving nbd"'
check "the journal entries carry the frontend" sh -c 'journalctl -b BLKSERV_DEVICE=ub -o verbose | grep -q BLKSERV_FRONTEND=ublk'
check "blkservctl stats counts the I/O just done" sh -c \
	"$BLKSERVCTL --json stats nb | grep -Eq '\"write\": *[{] *\"ops\": *[1-9]'"

# Reload: an added device appears; a broken file changes nothing.
write_config <<'EOF'
device "added" {
	size = 64M
	frontend "nbd" { }
	backend "ramdisk" { }
}
EOF
must "systemctl reload blkservd" systemctl reload blkservd
check "the added device appears" wait_for 20 test -b /dev/blkserv/added
check "blkservctl lists it" sh -c "$BLKSERVCTL list | grep -q '^added '"
printf 'device "broken" {\n\tsize = 12Q\n}\n' >>/etc/blkservd.conf
systemctl reload blkservd
check_eq "a broken reload keeps the unit active" active "$(systemctl is-active blkservd)"
check "the broken line is logged" sh -c 'journalctl -b -u blkservd | grep -q "reload failed.*blkservd.conf:2[0-9]:"'
check "the old devices still serve" sh -c "$BLKSERVCTL list | grep -q '^ub ' && test -b /dev/blkserv/nb"

# kill -9: systemd restarts the daemon; the ramdisk comes back from the fd
# store and the ublk device is recovered in place.
write_config </dev/null
systemctl reload blkservd
must "write a pattern to the ublk device" sh -c \
	'head -c 4194304 /dev/urandom >pattern && dd if=pattern of=/dev/blkserv/ub bs=1M oflag=direct conv=fsync 2>/dev/null'
ublk_before=$(readlink -f /dev/blkserv/ub)
pid=$(main_pid)
kill -9 "$pid"
check "systemd restarts the daemon" wait_for 60 restarted "$pid"
check_eq "the ublk device is the same one" "$ublk_before" "$(readlink -f /dev/blkserv/ub)"
check "the ublk data survived" sh -c \
	'dd if=/dev/blkserv/ub of=readback bs=1M count=4 iflag=direct 2>/dev/null && cmp pattern readback'

must "systemctl stop blkservd" systemctl stop blkservd
check "no /dev/blkserv link is left" sh -c '! ls /dev/blkserv/* 2>/dev/null'
check "no /dev/ublkc* is left" sh -c '! ls /dev/ublkc* 2>/dev/null'
check "no nbd device is connected" sh -c 'for p in /sys/block/nbd*/pid; do [ -e "$p" ] && exit 1; done; exit 0'
