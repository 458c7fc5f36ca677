# shellcheck shell=dash
# faults-nbd: fault injection (a device's faults section, blkservd.conf(5))
# seen from the kernel NBD driver.  One daemon serves four devices:
#  - rerr: reads and writes of a range fail, some requests wait: dd gets EIO
#    (not a hang), the data around the range is intact, fio verify passes on
#    the rest of the device despite the delays;
#  - ext: ext4 on a device whose writes start failing (a trigger file): the
#    fsync fails, ext4 aborts its journal and goes read-only, nothing hangs,
#    umount works, e2fsck repairs it once the device is healthy;
#  - good: no faults; fio verify runs on it while ext fails and passes;
#  - flush: a failed flush stays failed (and FUA writes fail) after the
#    trigger is gone, while plain writes and reads go on.
# With the ublk frontend built, a fifth device shows ENOSPC passed through.
# Each fault is logged once with the device name.
# tools: mkfs.ext4 e2fsck fio
# files: /etc/mke2fs.conf
# modules: nbd ublk_drv
# requires: daemon/blkservd plugins/blkserv-frontend-nbd.so plugins/blkserv-backend-ramdisk.so
# timeout: 420

run=$BLKSERV_TMP/run
conf=$BLKSERV_TMP/faults.conf
ext_fail=$BLKSERV_TMP/ext.fail
flush_fail=$BLKSERV_TMP/flush.fail
mkdir -p "$run"
must "modprobe nbd" modprobe nbd nbds_max=4

ublk_dev=
if [ -f "$BLKSERV_PLUGIN_DIR/blkserv-frontend-ublk.so" ] && modprobe ublk_drv 2>/dev/null; then
	ublk_dev=/dev/ublkb0
	ublk_conf='device "nospc" {
  size = 16M
  block_size = 4096
  frontend "ublk" { id = 0  queues = 1 }
  backend "ramdisk" { }
  faults { enospc_after = 1M }
}'
fi

cat >"$conf" <<EOF
plugin_dir = "$BLKSERV_PLUGIN_DIR"
runtime_dir = "$run"
device "rerr" {
  size = 64M
  block_size = 4096
  frontend "nbd" { index = 0 }
  backend "ramdisk" { }
  faults {
    read_error_offset = 1M
    read_error_length = 4K
    write_error_offset = 8M
    write_error_length = 64K
    delay_ms = 20
    delay_every = 50
  }
}
device "ext" {
  size = 128M
  block_size = 4096
  frontend "nbd" { index = 1 }
  backend "ramdisk" { }
  faults {
    write_error_every = 1
    trigger = "$ext_fail"
  }
}
device "good" {
  size = 64M
  frontend "nbd" { index = 2 }
  backend "ramdisk" { }
}
device "flush" {
  size = 16M
  block_size = 4096
  frontend "nbd" { index = 3 }
  backend "ramdisk" { }
  faults {
    flush_error_after = 0
    trigger = "$flush_fail"
  }
}
${ublk_conf:-}
EOF
waits="-w /sys/block/nbd0/pid -w /sys/block/nbd1/pid -w /sys/block/nbd2/pid -w /sys/block/nbd3/pid"
[ -n "$ublk_dev" ] && waits="$waits -w $ublk_dev"
# shellcheck disable=SC2086 # $waits is a list of options
blkservd_start $waits "$conf" || exit 1
for i in 0 1 2 3; do
	must "/dev/nbd$i appears" wait_for_blockdev /dev/nbd$i
done
check "the log warns that fault injection is on, per device" \
	test "$(grep -c 'fault injection is on (for testing only' "$BLKSERVD_LOG")" -ge 3

# --- rerr: EIO by range, not a hang -------------------------------------------
dd if=/dev/urandom of="$BLKSERV_TMP/pattern" bs=1M count=4 2>/dev/null
must "write a pattern to nbd0 [0, 4M)" \
	dd if="$BLKSERV_TMP/pattern" of=/dev/nbd0 bs=1M count=4 oflag=direct
eio() { # what dd says must be an I/O error
	! "$@" 2>"$BLKSERV_TMP/dd.err" && grep -qiE 'I/O error|Input/output error' "$BLKSERV_TMP/dd.err"
}
for i in 1 2 3; do
	check "read of [1M, 1M+4K) gets EIO (try $i)" \
		eio dd if=/dev/nbd0 of=/dev/null bs=4096 skip=256 count=1 iflag=direct
done
check "a read of [1M-4K, 1M+8K), across the start of the range, gets EIO" \
	eio dd if=/dev/nbd0 of=/dev/null bs=12288 skip=85 count=1 iflag=direct
check_eq "[0, 1M) reads back intact" \
	"$(dd if="$BLKSERV_TMP/pattern" bs=4096 count=256 2>/dev/null | sha256sum)" \
	"$(dd if=/dev/nbd0 bs=4096 count=256 iflag=direct 2>/dev/null | sha256sum)"
check_eq "[1M+4K, 4M) reads back intact" \
	"$(dd if="$BLKSERV_TMP/pattern" bs=4096 skip=257 count=767 2>/dev/null | sha256sum)" \
	"$(dd if=/dev/nbd0 bs=4096 skip=257 count=767 iflag=direct 2>/dev/null | sha256sum)"
check "a write into [8M, 8M+64K) gets EIO" \
	eio dd if="$BLKSERV_TMP/pattern" of=/dev/nbd0 bs=4096 seek=2050 count=1 oflag=direct
check "a write right after the range works" \
	dd if="$BLKSERV_TMP/pattern" of=/dev/nbd0 bs=4096 seek=2064 count=16 oflag=direct
fio_verify "nbd0 [16M, 32M) with delays" /dev/nbd0 --offset=16M --size=16M

# --- ext: ext4 on a device whose writes start failing, good keeps serving --------
mkdir -p /mnt/ext
must "mkfs.ext4 on nbd1" mkfs.ext4 -q -F /dev/nbd1
must "mount nbd1 (errors=remount-ro)" mount -o errors=remount-ro /dev/nbd1 /mnt/ext
must "write 8 MiB and sync while healthy" \
	sh -c 'dd if=/dev/urandom of=/mnt/ext/a bs=1M count=8 2>/dev/null && sync'
fio --name=good --filename=/dev/nbd2 --rw=randwrite --bs=4k --size=32M --iodepth=16 \
	--ioengine=libaio --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 \
	>"$BLKSERV_TMP/good.log" 2>&1 &
good_pid=$!
: >"$ext_fail"
check_fails "writes start failing: write + fsync on ext4 fails" \
	dd if=/dev/urandom of=/mnt/ext/b bs=1M count=8 conv=fsync
# The journal aborts at its next commit (within 5 s); ext4 notices at its
# next change and, with errors=remount-ro, goes read-only.
check "jbd2 aborts the journal" wait_for 60 sh -c 'dmesg | grep -q "Aborting journal on device nbd1"'
check_fails "no new file on the failed ext4" touch /mnt/ext/c
# Since Linux 6.7 ext4 marks itself shut down rather than setting
# SB_RDONLY, so /proc/mounts still says rw: the kernel's word and failing
# writes are what show it.
check "the kernel remounts it read-only (errors=remount-ro)" \
	sh -c 'dmesg | grep -q "EXT4-fs (nbd1): Remounting filesystem read-only"'
check_fails "every later change fails too (mkdir)" mkdir /mnt/ext/d
check "umount works" umount /mnt/ext
rm -f "$ext_fail"
check "e2fsck repairs it once the device is healthy" sh -c 'e2fsck -fy /dev/nbd1; [ $? -lt 4 ]'
check "e2fsck finds it clean afterwards" e2fsck -fn /dev/nbd1
wait "$good_pid"
good_rc=$?
[ "$good_rc" = 0 ] || tail -20 "$BLKSERV_TMP/good.log"
check_eq "good: fio verify during the failure passes" 0 "$good_rc"

# --- flush: a failed flush stays failed ----------------------------------------
wr() { dd if="$BLKSERV_TMP/pattern" of=/dev/nbd3 bs=64k count=1 seek="$1" oflag=direct conv=fsync,notrunc; }
check "healthy: write + flush succeed" wr 0
: >"$flush_fail"
check_fails "the flush fails" wr 1
rm -f "$flush_fail"
check_fails "trigger gone: the next flush still fails" wr 2
check_fails "and the one after" wr 3
check_fails "a FUA write (O_DSYNC) fails too" \
	fio --name=fua --filename=/dev/nbd3 --rw=write --bs=64k --size=256k --offset=4M \
	--ioengine=psync --direct=1 --sync=dsync
check "plain writes still work" \
	dd if="$BLKSERV_TMP/pattern" of=/dev/nbd3 bs=64k count=4 seek=16 oflag=direct
check_eq "and read back" \
	"$(dd if="$BLKSERV_TMP/pattern" bs=64k count=4 2>/dev/null | sha256sum)" \
	"$(dd if=/dev/nbd3 bs=64k count=4 skip=16 iflag=direct 2>/dev/null | sha256sum)"

# --- nospc (ublk): ENOSPC passes through -------------------------------------
if [ -n "$ublk_dev" ]; then
	must "$ublk_dev appears" wait_for_blockdev "$ublk_dev"
	check "the first MiB is written" dd if="$BLKSERV_TMP/pattern" of="$ublk_dev" bs=64k count=16 oflag=direct
	nospc() { ! "$@" 2>"$BLKSERV_TMP/dd.err" && grep -qi 'no space' "$BLKSERV_TMP/dd.err"; }
	check "past 1 MiB written, writes get ENOSPC" \
		nospc dd if="$BLKSERV_TMP/pattern" of="$ublk_dev" bs=64k count=1 seek=32 oflag=direct
else
	skip "nospc: ENOSPC through ublk" "the ublk frontend or ublk_drv is missing"
fi

# --- the log --------------------------------------------------------------------
once() { check_eq "logged once: $1" 1 "$(grep -c "$1" "$BLKSERVD_LOG")"; }
once "rerr: fault injection: read of .* (read_error_offset/length)"
once "rerr: fault injection: write of .* (write_error_offset/length)"
once "rerr: fault injection: delaying"
# The first write-type request ext4 sends may be a WRITE_ZEROES (its lazy
# init) or a WRITE: either is the one logged.
once "ext: fault injection: write[-a-z]* of .* (write_error_every)"
once "flush: fault injection: flush of .* (flush_error_after)"
blkservd_stop 0
check "the stop reports the faults injected, per device" \
	grep -q "rerr: fault injection: [1-9][0-9]* errors injected" "$BLKSERVD_LOG"
grep "errors injected" "$BLKSERVD_LOG"
