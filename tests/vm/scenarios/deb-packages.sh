# shellcheck shell=dash
# deb-packages: blkservd as Debian users get it. The packages built by
# tools/build-deb (BUILD/deb) are installed with apt-get install ./...deb
# (no meson install, no build tree in the guest); DKMS builds dblock.ko
# against the installed linux-headers of the running kernel. The unit,
# enabled and started by the postinst on the packaged /etc/blkservd.conf,
# then gets a ublk, an nbd and a dblock device (file backends) with ext4
# mounted through systemctl reload. A second build with a higher version
# (BUILD/deb-upgrade) is installed over it while writers fsync files on
# every file system: the daemon is upgraded in place (same PID, not
# stopped), no I/O error, every recorded file verified, fsck clean. Then
# apt-get purge leaves no unit, no enablement link, no module and no
# /etc/blkservd.conf, and the data files the config named are untouched.
# mode: systemd
# debs: deb deb-upgrade
# packages: linux-image-@KVER@ linux-headers-@KVER@ dkms pkgconf libc6-dev librbd1 librados2
# timeout: 1500

state=/root/deb
mkdir -p "$state" /srv/blkserv
STOP=$state/stop
PKGS="blkservd blkservd-plugin-rbd libblkserv-plugin-dev dblock-dkms"
DEVS="ub nb db"
export DEBIAN_FRONTEND=noninteractive

version_of() { ls "$BLKSERV_DEBS/$1"/blkservd_*.deb | sed 's|.*/blkservd_||; s|_.*||'; }
V1=$(version_of deb)
V2=$(version_of deb-upgrade)
log "packages: $V1, upgrade to $V2"

installed_version() { dpkg-query -W -f '${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null; }
main_pid() { systemctl show -p MainPID --value blkservd; }
# Every package in state "ii" at version $1.
all_at() {
	local p
	for p in $PKGS; do
		[ "$(installed_version "$p")" = "ii  $1" ] || { echo "$p: $(installed_version "$p")"; return 1; }
	done
}

# apt-get install ./*.deb from one build (no -dbgsym: run-scenario leaves
# them out), its output kept in $state/apt-NAME.log.
apt_install() { # DIR NAME
	apt-get install -y --no-install-recommends "$BLKSERV_DEBS/$1"/*.deb >"$state/apt-$2.log" 2>&1
	local rc=$?
	tail -n 40 "$state/apt-$2.log"
	return $rc
}

dkms_installed() { # VERSION
	dkms status dblock 2>&1 | tee "$state/dkms.status" | grep -q "^dblock/$1, $(uname -r), [^:]*: installed"
}

ram0_answers() { nbdinfo --size 'nbd+unix:///ram0?socket=/run/blkservd/ram0.sock'; }

# ---- install ---------------------------------------------------------------
t0=$(date +%s)
must "apt-get install ./${V1} packages" apt_install deb install
log "installed (DKMS build included) in $(($(date +%s) - t0)) s"
check "every package installed at $V1" all_at "$V1"
check_eq "the unit is enabled" enabled "$(systemctl is-enabled blkservd)"
check "/etc/blkservd.conf is a conffile" sh -c 'dpkg-query -W -f "\${Conffiles}" blkservd | grep -q " /etc/blkservd.conf "'
check "DKMS built and installed dblock/$V1 for $(uname -r)" dkms_installed "$V1"
check "dblock.ko is in updates/dkms" sh -c 'modinfo -n dblock | grep -q "/updates/dkms/dblock.ko"'
check "the SDK compiles a plugin with pkg-config" sh -c '
	printf "#include <blkserv/blkserv-plugin.h>\nint main(void) { return 0; }\n" >/tmp/sdk.c &&
	$(command -v gcc || command -v gcc-12) -c -o /tmp/sdk.o $(pkg-config --cflags blkserv-plugin) /tmp/sdk.c &&
	test -d "$(pkg-config --variable=plugindir blkserv-plugin)"'

# ---- the packaged default config ------------------------------------------
must "systemctl start blkservd (packaged config)" systemctl start blkservd
check_eq "the unit is active" active "$(systemctl is-active blkservd)"
check "the default ram0 export answers (1 GiB)" sh -c "[ \"\$(nbdinfo --size 'nbd+unix:///ram0?socket=/run/blkservd/ram0.sock')\" = 1073741824 ]"
check "blkservctl list shows ram0" sh -c 'blkservctl list | grep -q ram0'

# ---- three kernel devices through reload ------------------------------------
unit_log() { # COMMAND...: run it; on failure show the unit's journal
	"$@" && return 0
	journalctl -b -u blkservd --no-pager | tail -n 25
	return 1
}
must "modprobe dblock (the DKMS module)" modprobe dblock
# DeviceAllow=block-* is resolved when the unit starts: a driver loaded
# later (dblock, just built) needs a restart (which keeps ram0) to be
# allowed; after a reboot modules are loaded before the unit starts.
must "systemctl restart blkservd (dblock allowed)" unit_log systemctl restart blkservd
for n in $DEVS; do truncate -s 256M "/srv/blkserv/$n.img"; done
cat >>/etc/blkservd.conf <<'EOF'

device "ub" {
	size = 256M
	frontend "ublk" { queues = 2 }
	backend "file" { path = "/srv/blkserv/ub.img" }
}
device "nb" {
	size = 256M
	frontend "nbd" { }
	backend "file" { path = "/srv/blkserv/nb.img" }
}
device "db" {
	size = 256M
	block_size = 4096
	frontend "dblock" { }
	backend "file" { path = "/srv/blkserv/db.img" }
}
EOF
must "blkservd --check-config (three devices added)" blkservd --check-config
must "systemctl reload blkservd" unit_log systemctl reload blkservd
appears() { # NAME
	wait_for 120 test -b "/dev/blkserv/$1" && return 0
	blkservctl list
	journalctl -b -u blkservd --no-pager | tail -n 25
	ls -l /dev/blkserv/ /sys/block/
	return 1
}
for n in $DEVS; do
	must "/dev/blkserv/$n appears" appears "$n"
done
pid=$(main_pid)

# writer NAME DIR: numbered 64 KiB files, each recorded (with its sha256)
# only after dd's fsync returned; an error is recorded as such (dd
# status=none: its transfer report on stderr is not an error).
writer() {
	local name=$1 dir=$2 n=0 src=$state/$1.src
	while [ ! -e "$STOP" ]; do
		n=$((n + 1))
		head -c 65536 /dev/urandom >"$src"
		if dd if="$src" of="$dir/f$n" bs=65536 conv=fsync status=none 2>>"$state/$name.err"; then
			echo "f$n $(sha256sum <"$src" | cut -d' ' -f1)" >>"$state/$name.rec"
		else
			echo "write of f$n failed" >>"$state/$name.err"
		fi
		sleep 0.2
	done
}
records() { wc -l <"$state/$1.rec" 2>/dev/null || echo 0; }
verify_records() { # NAME DIR
	local name=$1 dir=$2 f sum bad=0 count=0
	while read -r f sum; do
		count=$((count + 1))
		[ "$(sha256sum <"$dir/$f" | cut -d' ' -f1)" = "$sum" ] || { echo "$f differs"; bad=$((bad + 1)); }
	done <"$state/$name.rec"
	echo "$name: $count recorded files, $bad differ"
	[ "$count" -gt 0 ] && [ "$bad" = 0 ]
}

for n in $DEVS; do
	must "$n: mkfs.ext4" mkfs.ext4 -q -F "/dev/blkserv/$n"
	mkdir -p "/mnt/$n"
	must "$n: mount" mount -t ext4 "/dev/blkserv/$n" "/mnt/$n"
	: >"$state/$n.rec"
	writer "$n" "/mnt/$n" &
done
dmesg -C
sleep 3

# ---- package upgrade with the file systems mounted and written ---------------
before=""
for n in $DEVS; do before="$before $(records "$n")"; done
t0=$(date +%s)
check "apt-get install ./${V2} packages (upgrade)" apt_install deb-upgrade upgrade
log "upgraded (DKMS build included) in $(($(date +%s) - t0)) s"
check "every package upgraded to $V2" all_at "$V2"
check "the postinst upgraded the daemon in place" grep -q "upgraded in place" "$state/apt-upgrade.log"
check_eq "the same MainPID (never stopped)" "$pid" "$(main_pid)"
check_eq "the unit is active" active "$(systemctl is-active blkservd)"
check_eq "systemd did not restart it (NRestarts)" 0 "$(systemctl show -p NRestarts --value blkservd)"
check "the daemon runs the new binary (not a deleted file)" sh -c "! readlink /proc/$pid/exe | grep -q deleted"
check "blkservctl version: upgrade done" sh -c 'blkservctl --json version | grep -q "\"upgrade\":\"done\""'
check "DKMS built dblock/$V2" dkms_installed "$V2"
check "DKMS removed dblock/$V1" sh -c "! dkms status dblock | grep -q '^dblock/$V1,'"
check "no failed unit" sh -c '[ -z "$(systemctl list-units --state=failed --no-legend)" ] || { systemctl list-units --state=failed; exit 1; }'
writers_moved() {
	local i=1 n b
	for n in $DEVS; do
		i=$((i + 1))
		b=$(echo "$before" | cut -d' ' -f"$i")
		[ "$(records "$n")" -gt "$((b + 5))" ] || return 1
	done
}
check "every writer went on through the upgrade" wait_for 60 writers_moved
check "the default ram0 export still answers" ram0_answers

touch "$STOP"
wait
for n in $DEVS; do
	check "$n: no write error" sh -c "[ ! -s $state/$n.err ] || { cat $state/$n.err; exit 1; }"
	drop_caches "/dev/blkserv/$n"
	check "$n: every recorded file reads back" verify_records "$n" "/mnt/$n"
done
check "no I/O error in the kernel log" sh -c '! dmesg | grep -Ei "i/o error|blk_update_request|EXT4-fs error|Buffer I/O"'
for n in $DEVS; do
	must "$n: umount" umount "/mnt/$n"
	check "$n: fsck clean" e2fsck -fn "/dev/blkserv/$n"
done

# ---- purge -----------------------------------------------------------------
sync
for n in $DEVS; do sha256sum "/srv/blkserv/$n.img" >>"$state/data.sha256"; done
t0=$(date +%s)
must "apt-get purge" sh -c "apt-get purge -y $PKGS >$state/apt-purge.log 2>&1 || { tail -n 40 $state/apt-purge.log; exit 1; }"
log "purged in $(($(date +%s) - t0)) s"
not_known() { # nothing of the packages left, not even config files
	local p
	for p in $PKGS; do
		case $(dpkg-query -W -f '${Status}' "$p" 2>/dev/null) in
		"" | *not-installed) ;;
		*) echo "$p: $(dpkg-query -W -f '${Status}' "$p")"; return 1 ;;
		esac
	done
}
check "no package left (not even config files)" not_known
check "the unit is stopped" sh -c '! systemctl is-active -q blkservd'
check "no unit file" sh -c '[ ! -e /lib/systemd/system/blkservd.service ] && ! systemctl cat blkservd >/dev/null 2>&1'
check "no enablement link" sh -c '[ -z "$(find /etc/systemd/system -name "blkservd*" 2>/dev/null)" ]'
check "no /etc/blkservd.conf" test ! -e /etc/blkservd.conf
check "no udev rule, no modules-load.d file" sh -c '[ ! -e /lib/udev/rules.d/60-blkservd.rules ] && [ ! -e /usr/lib/modules-load.d/blkservd.conf ]'
check "no /dev/blkserv link" sh -c '[ -z "$(ls -A /dev/blkserv 2>/dev/null)" ]'
check "no dblock module on disk" sh -c '[ -z "$(find /lib/modules /usr/lib/modules -name "dblock.ko*" 2>/dev/null)" ] && ! modinfo dblock >/dev/null 2>&1'
check "dblock unloads: the stop removed its idle device" rmmod dblock
check "no nbd, ublk or dblock device left" sh -c '[ -z "$(ls /sys/block | grep -E "^(ublkb|dblock)")" ] && [ ! -e /sys/block/db ] && ! grep -qv "^0$" /sys/block/nbd*/size'
check "DKMS knows no dblock" sh -c '[ -z "$(dkms status dblock 2>/dev/null)" ] && [ ! -e /var/lib/dkms/dblock ]'
check "no /usr/src/dblock-*" sh -c '! ls -d /usr/src/dblock-* 2>/dev/null'
check "the data files are untouched" sha256sum -c "$state/data.sha256"
