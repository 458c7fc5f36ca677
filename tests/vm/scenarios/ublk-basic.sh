# shellcheck shell=dash
# ublk-basic: the ublk frontend with the ramdisk backend on ublk_drv.
# A clear error without the module; then /dev/ublkb0 with 2 queues: fio
# 4k randwrite QD32 verify=crc32c on both queues, trim and write-zeroes read
# back, mkfs.ext4 + fsck + checksum; a clean stop leaves no ublk node and no
# state file behind.
# tools: fio mkfs.ext4 e2fsck blkdiscard
# (util-linux blkdiscard by its path: busybox runs its own applet, which lacks -z)
# files: /etc/mke2fs.conf
# modules: ublk_drv
# requires: daemon/blkservd plugins/blkserv-frontend-ublk.so plugins/blkserv-backend-ramdisk.so
# timeout: 420

run=$BLKSERV_TMP/run
conf=$BLKSERV_TMP/ublk.conf
mkdir -p "$run"
cat >"$conf" <<EOF
plugin_dir = "$BLKSERV_PLUGIN_DIR"
runtime_dir = "$run"
device "u0" {
  size = 256M
  block_size = 4096
  frontend "ublk" { queues = 2  depth = 64 }
  backend "ramdisk" { }
}
EOF

# Without the driver, start fails and says what to do.
if [ -e /dev/ublk-control ]; then
	skip "error without ublk_drv" "ublk_drv is built in"
else
	"$BLKSERVD" --config "$conf" >"$BLKSERV_TMP/nomod.log" 2>&1
	check_eq "no ublk_drv: blkservd exits 1" 1 "$?"
	check "no ublk_drv: the error says modprobe ublk_drv" grep -q 'modprobe ublk_drv' "$BLKSERV_TMP/nomod.log"
fi

must "modprobe ublk_drv" modprobe ublk_drv
blkservd_start -w /dev/ublkb0 "$conf" || exit 1
must "/dev/ublkb0 appears" wait_for_blockdev /dev/ublkb0
check_eq "/dev/ublkb0 is 256 MiB" 268435456 "$(dev_size /dev/ublkb0)"
check_eq "logical block size 4096" 4096 "$(cat /sys/block/ublkb0/queue/logical_block_size)"
check_eq "2 hardware queues" 2 "$(ls -d /sys/block/ublkb0/mq/* | wc -l)"
check "the state file exists" test -f "$run/ublk-u0.state"
check "discard is advertised" test "$(cat /sys/block/ublkb0/queue/discard_max_bytes)" -gt 0
check "write-zeroes is advertised" test "$(cat /sys/block/ublkb0/queue/write_zeroes_max_bytes)" -gt 0

# Two jobs on the two vCPUs, so both hardware queues carry I/O.
check "fio 4k randwrite QD32, 2 jobs, verify=crc32c" fio --name=verify --filename=/dev/ublkb0 \
	--rw=randwrite --bs=4k --size=24M --offset_increment=32M --numjobs=2 \
	--iodepth=32 --ioengine=io_uring --direct=1 --group_reporting \
	--verify=crc32c --do_verify=1 --verify_fatal=1
# Trim and write-zeroes: the range reads back as zeros, the rest is intact.
dd if=/dev/urandom of="$BLKSERV_TMP/pattern" bs=1M count=4 2>/dev/null
must "write a 4 MiB pattern" dd if="$BLKSERV_TMP/pattern" of=/dev/ublkb0 bs=1M oflag=direct conv=fsync
check "blkdiscard 1M..2M" /usr/sbin/blkdiscard -o 1048576 -l 1048576 /dev/ublkb0
check "blkdiscard -z 2M..3M" /usr/sbin/blkdiscard -z -o 2097152 -l 1048576 /dev/ublkb0
dd if=/dev/zero of="$BLKSERV_TMP/zero" bs=1M count=1 2>/dev/null
readback() { dd if=/dev/ublkb0 bs=1M skip="$1" count=1 iflag=direct 2>/dev/null | sha256sum; }
pattern() { dd if="$BLKSERV_TMP/pattern" bs=1M skip="$1" count=1 2>/dev/null | sha256sum; }
zero=$(sha256sum <"$BLKSERV_TMP/zero")
check_eq "trimmed range reads zeros" "$zero" "$(readback 1)"
check_eq "write-zeroes range reads zeros" "$zero" "$(readback 2)"
check_eq "data before the ranges untouched" "$(pattern 0)" "$(readback 0)"
check_eq "data after the ranges untouched" "$(pattern 3)" "$(readback 3)"

fs_roundtrip ublk /dev/ublkb0 20

# A reload that changes the device restarts it, but not while it is in use
# (check_idle): first mounted, then not.
_log_has() { grep -q "$1" "$BLKSERVD_LOG"; }
must "mount for the reload" mount -t ext4 /dev/ublkb0 "$BLKSERV_TMP/mnt"
sed -i 's/depth = 64/depth = 32/' "$conf"
kill -HUP "$BLKSERVD_PID"
check "reload keeps a mounted device" wait_for 20 _log_has 'is open: not restarting'
check_eq "still 64 tags while mounted" 64 "$(cat /sys/block/ublkb0/mq/0/nr_tags)"
must "umount" umount "$BLKSERV_TMP/mnt"
kill -HUP "$BLKSERVD_PID"
check "reload restarts the idle device" wait_for 20 _log_has 'restarting (config changed)'
check "the restarted device is back" wait_for 20 sh -c '[ "$(cat /sys/block/ublkb0/mq/0/nr_tags 2>/dev/null)" = 32 ]'
must "/dev/ublkb0 is back" wait_for_blockdev /dev/ublkb0
fio_verify "after the reload" /dev/ublkb0 --size=8M

blkservd_stop 0
check "no /dev/ublkc* left" sh -c '! ls /dev/ublkc* 2>/dev/null | grep -q .'
check "no /dev/ublkb* left" sh -c '! ls /dev/ublkb* 2>/dev/null | grep -q .'
check "the state file is removed" test ! -e "$run/ublk-u0.state"
check "the daemon logged the driver features" grep -q 'ublk_drv features' "$BLKSERVD_LOG"
# Two jobs on two vCPUs: both hardware queues must have carried requests.
check "both queues served requests" grep -Eq 'served per queue: [1-9][0-9]* [1-9]' "$BLKSERVD_LOG"
# The daemon log, for whoever reads the console.
blkservd_log
