# shellcheck shell=dash
# selftest-systemd: the systemd mode - a debootstrapped Debian with systemd
# as PID 1 booted from the same kernel - with brd and a filesystem on it.
# mode: systemd
# timeout: 300

check_eq "PID 1 is systemd" systemd "$(cat /proc/1/comm)"
check "the system is running (no failed units)" systemctl is-system-running --wait
check "the journal works" sh -c 'echo blkserv-journal-test | systemd-cat -t blkserv-test &&
	sleep 1 && journalctl -t blkserv-test | grep -q blkserv-journal-test'
must "modprobe brd" modprobe brd rd_nr=1 rd_size=65536
must "/dev/ram0 appears" wait_for_blockdev /dev/ram0
fs_roundtrip brd /dev/ram0 20
