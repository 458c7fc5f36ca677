# shellcheck shell=dash
# nbd-basic: the kernel NBD frontend with ramdisks.  Three devices: one with
# an index the kernel picks (netlink), one with 2 connections at a fixed
# index, one configured through the ioctl fallback.  Checks what the kernel
# was told (size, block size, flags, backend name), a file system round trip
# (mkfs.ext4, write, umount, e2fsck clean, checksum after remount), fio 4k
# randwrite QD16 with verify=crc32c over 2 connections (and 1 MiB, whose
# reads are sent from the ramdisk's memfd), trim and write-zeroes,
# and that a clean stop leaves no /dev/nbdN connected.
# tools: mkfs.ext4 e2fsck fio blkdiscard
# files: /etc/mke2fs.conf
# modules: nbd ext4
# requires: daemon/blkservd plugins/blkserv-frontend-nbd.so plugins/blkserv-backend-ramdisk.so
# memory: 1024
# timeout: 420

run=$BLKSERV_TMP/run
conf=$BLKSERV_TMP/nbd.conf
mkdir -p "$run"
must "modprobe nbd" modprobe nbd nbds_max=4

cat >"$conf" <<EOF
plugin_dir = "$BLKSERV_PLUGIN_DIR"
runtime_dir = "$run"
device "auto" {
  size = 256M
  block_size = 4096
  frontend "nbd" { }
  backend "ramdisk" { }
}
device "multi" {
  size = 128M
  block_size = 4096
  frontend "nbd" {
    index = 3
    connections = 2
  }
  backend "ramdisk" { }
}
device "legacy" {
  size = 64M
  block_size = 512
  frontend "nbd" {
    index = 2
    control = "ioctl"
  }
  backend "ramdisk" { }
}
EOF

# The /dev/nbdN whose backend identifier is $1 (the device name).
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

# Another process holds /dev/nbd3 open for a moment when the daemon starts
# (as udev's blkid probing does): the kernel refuses a connect with EBUSY
# while it is open, and the daemon must wait for it, not fail.
sh -c "exec 3</dev/nbd3; touch $BLKSERV_TMP/held; sleep 2" &
holder=$!
must "another process holds /dev/nbd3 open" wait_for 10 test -e "$BLKSERV_TMP/held"
blkservd_start "$conf" || exit 1
must "multi is /dev/nbd3" wait_for_blockdev /dev/nbd3
check "the daemon waited for /dev/nbd3 while it was held open" \
	grep -q "multi: nbd: waited [0-9]* ms for /dev/nbd3: another process had it open" "$BLKSERVD_LOG"
wait "$holder"
must "legacy is /dev/nbd2" wait_for_blockdev /dev/nbd2
must "auto got a device" wait_for 20 nbd_of auto
auto=$(nbd_of auto)
log "auto is $auto"
must "$auto is ready" wait_for_blockdev "$auto"
check "the log names $auto" grep -q "connected $auto (netlink" "$BLKSERVD_LOG"
check "legacy was configured with ioctls" grep -q "connected /dev/nbd2 (ioctl" "$BLKSERVD_LOG"

# ---- what the kernel was told ------------------------------------------------
sys=/sys/block/${auto#/dev/}
check_eq "auto: 256 MiB" 268435456 "$(dev_size "$auto")"
check_eq "auto: logical block size" 4096 "$(cat "$sys/queue/logical_block_size")"
check_eq "auto: write cache (FLUSH advertised)" "write back" "$(cat "$sys/queue/write_cache")"
check_eq "auto: not rotational" 0 "$(cat "$sys/queue/rotational")"
check "auto: discard advertised" test "$(cat "$sys/queue/discard_max_bytes")" -gt 0
check "auto: write zeroes advertised" test "$(cat "$sys/queue/write_zeroes_max_bytes")" -gt 0
check "auto: a server pid" test -s "$sys/pid"
check_eq "multi: 2 hardware queues" 2 "$(ls /sys/block/nbd3/mq | wc -l)"
check_eq "multi: backend" multi "$(cat /sys/block/nbd3/backend)"
check_eq "legacy: 64 MiB" 67108864 "$(dev_size /dev/nbd2)"
check_eq "legacy: logical block size" 512 "$(cat /sys/block/nbd2/queue/logical_block_size)"

# ---- data ---------------------------------------------------------------------
fs_roundtrip nbd-auto "$auto" 20
fio_verify nbd-multi /dev/nbd3 --size=16M --numjobs=2 --offset_increment=48M
fio_verify nbd-legacy /dev/nbd2 --size=8M
# Reads of 64 KiB and more leave the daemon with sendfile from the
# ramdisk's memfd; fio's verify checks what the kernel got.
fio_verify nbd-multi-1m /dev/nbd3 --size=32M --offset=64M --bs=1M --iodepth=4
reads_mapped=$($BLKSERVCTL --socket "$run/control.sock" stats multi | sed -n 's/^reads_mapped: //p')
log "multi: $reads_mapped reads sent from the memfd"
check "multi: big reads were sent from the ramdisk's memfd" test "${reads_mapped:-0}" -gt 0

zero1m=$(dd if=/dev/zero bs=1M count=1 2>/dev/null | sha256sum)
dev_mib() { dd if="$1" bs=1M skip="$2" count=1 iflag=direct 2>/dev/null | sha256sum; }
check "multi: blkdiscard 100M..101M" /usr/sbin/blkdiscard -o 104857600 -l 1048576 /dev/nbd3
check "multi: blkdiscard -z 101M..102M" /usr/sbin/blkdiscard -z -o 105906176 -l 1048576 /dev/nbd3
check_eq "multi: zeroed range reads zeros" "$zero1m" "$(dev_mib /dev/nbd3 101)"
check "multi: discard of the whole device" /usr/sbin/blkdiscard /dev/nbd3

# ---- a clean stop -------------------------------------------------------------
blkservd_stop 0
check_eq "nothing was in use at stop" 0 "$(grep -c 'still in use' "$BLKSERVD_LOG")"
for dev in "$auto" /dev/nbd3 /dev/nbd2; do
	sys=/sys/block/${dev#/dev/}
	check "$dev: no server pid after stop" test ! -e "$sys/pid"
	check_eq "$dev: size 0 after stop" 0 "$(cat "$sys/size")"
done
check "the log says each was disconnected" test "$(grep -c 'disconnected /dev/nbd' "$BLKSERVD_LOG")" = 3
check "no error in the daemon log" sh -c "! grep -i 'error\|ended while' '$BLKSERVD_LOG'"

# ---- and again: the devices are reusable -----------------------------------------
blkservd_start "$conf" || exit 1
must "multi is back" wait_for_blockdev /dev/nbd3
check "a fresh ramdisk reads zeros" test "$(dev_mib /dev/nbd3 0)" = "$zero1m"
blkservd_stop 0
check_eq "/dev/nbd3: size 0 after the second stop" 0 "$(cat /sys/block/nbd3/size)"
