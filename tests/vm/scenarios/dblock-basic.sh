# shellcheck shell=dash
# dblock-basic: the dblock frontend on our dblock.ko with the ramdisk
# backend.  A clear error without the module; then /dev/db0 with the
# extensions (write cache, discard, write-zeroes): fio 4k randwrite with 4
# jobs and verify=crc32c (many requests in flight), trim and write-zeroes
# read back, mkfs.ext4 + fsck + checksum; the kernel sent FLUSH and DISCARD
# and the backend completed them; a second daemon wanting the same name gets
# a clear error; a clean stop removes the device.  Then the original ABI
# (extensions = false): write-through, and the same file system check.
# tools: fio mkfs.ext4 e2fsck blkdiscard
# (busybox has a blkdiscard applet without -z: the real one by its path)
# files: /etc/mke2fs.conf
# kmods: frontends/dblock/kmod/dblock.ko
# requires: plugins/blkserv-frontend-dblock.so plugins/blkserv-backend-ramdisk.so
# timeout: 480

run=$BLKSERV_TMP/run
mkdir -p "$run"
conf() { # conf FILE DEVICE-NAME FRONTEND-OPTIONS
	cat >"$1" <<-EOC
		plugin_dir = "$BLKSERV_PLUGIN_DIR"
		runtime_dir = "$run"
		device "$2" {
		  size = 256M
		  block_size = 4096
		  frontend "dblock" { $3 }
		  backend "ramdisk" { }
		}
	EOC
}
conf "$BLKSERV_TMP/db0.conf" db0 "threads = 4  timeout = 15"

# Without the module, start fails and says how to load it.
"$BLKSERVD" --config "$BLKSERV_TMP/db0.conf" >"$BLKSERV_TMP/nomod.log" 2>&1
check_eq "no module: blkservd exits 1" 1 "$?"
check "no module: the error says modprobe dblock" grep -q 'modprobe dblock' "$BLKSERV_TMP/nomod.log"

must "modprobe dblock" modprobe dblock
blkservd_start -w /dev/db0 "$BLKSERV_TMP/db0.conf" || exit 1
must "/dev/db0 appears" wait_for_blockdev /dev/db0
sys=/sys/block/db0
check_eq "/dev/db0 is 256 MiB" 268435456 "$(dev_size /dev/db0)"
check_eq "logical block size 4096" 4096 "$(cat $sys/queue/logical_block_size)"
check_eq "features granted" "flush fua discard write_zeroes" "$(cat $sys/dblock/features)"
check_eq "write cache advertised" "write back" "$(cat $sys/queue/write_cache)"
check_eq "FUA advertised" 1 "$(cat $sys/queue/fua)"
check "discard advertised" test "$(cat $sys/queue/discard_max_bytes)" -gt 0
check "write-zeroes advertised" test "$(cat $sys/queue/write_zeroes_max_bytes)" -gt 0
check "4 server threads wait in the kernel" wait_for 10 sh -c "[ \$(cat $sys/dblock/servers) = 4 ]"

check "fio 4k randwrite, 4 jobs, QD16, verify=crc32c" fio --name=verify --filename=/dev/db0 \
	--rw=randwrite --bs=4k --size=16M --offset_increment=32M --numjobs=4 \
	--iodepth=16 --ioengine=io_uring --direct=1 --group_reporting \
	--verify=crc32c --do_verify=1 --verify_fatal=1
check "fio 1M sequential write verify=crc32c" fio --name=big --filename=/dev/db0 --offset=128M \
	--rw=write --bs=1M --size=32M --iodepth=4 --ioengine=io_uring --direct=1 \
	--verify=crc32c --do_verify=1 --verify_fatal=1

# Trim and write-zeroes: the range reads back as zeros, the rest is intact.
dd if=/dev/urandom of="$BLKSERV_TMP/pattern" bs=1M count=4 2>/dev/null
must "write a 4 MiB pattern (fsync: a FLUSH)" dd if="$BLKSERV_TMP/pattern" of=/dev/db0 bs=1M oflag=direct conv=fsync
check "blkdiscard 1M..2M" blkdiscard -o 1048576 -l 1048576 /dev/db0
check "blkdiscard -z 2M..3M" /usr/sbin/blkdiscard -z -o 2097152 -l 1048576 /dev/db0
dd if=/dev/zero of="$BLKSERV_TMP/zero" bs=1M count=1 2>/dev/null
readback() { dd if=/dev/db0 bs=1M skip="$1" count=1 iflag=direct 2>/dev/null | sha256sum; }
pattern() { dd if="$BLKSERV_TMP/pattern" bs=1M skip="$1" count=1 2>/dev/null | sha256sum; }
zero=$(sha256sum <"$BLKSERV_TMP/zero")
check_eq "trimmed range reads zeros" "$zero" "$(readback 1)"
check_eq "write-zeroes range reads zeros" "$zero" "$(readback 2)"
check_eq "data before the ranges untouched" "$(pattern 0)" "$(readback 0)"
check_eq "data after the ranges untouched" "$(pattern 3)" "$(readback 3)"

fs_roundtrip dblock /dev/db0 20

stat_of() { sed -n "s/^$1 //p" $sys/dblock/stats; }
check "the kernel sent FLUSH requests" test "$(stat_of flush)" -gt 0
check "the kernel sent DISCARD requests" test "$(stat_of discard)" -gt 0
check "the kernel sent WRITE_ZEROES requests" test "$(stat_of write_zeroes)" -gt 0
check_eq "no request failed or timed out" "0 0" "$(stat_of errors) $(stat_of timeouts)"

# The same kernel name from a second daemon: a clear error, nothing broken.
mkdir -p "$BLKSERV_TMP/run2"
conf "$BLKSERV_TMP/taken.conf" other 'name = "db0"'
sed -i "s|$run|$BLKSERV_TMP/run2|" "$BLKSERV_TMP/taken.conf"
"$BLKSERVD" --config "$BLKSERV_TMP/taken.conf" >"$BLKSERV_TMP/taken.log" 2>&1
check_eq "name taken: the second daemon exits 1" 1 "$?"
check "name taken: the error says so" grep -q "name 'db0' is taken" "$BLKSERV_TMP/taken.log"
check "/dev/db0 still served" dd if=/dev/db0 of=/dev/null bs=1M count=1 iflag=direct

blkservd_stop 0
check "/dev/db0 removed" test ! -e /dev/db0 -a ! -e /dev/db0-ctl
served=$(grep -o 'served .*' "$BLKSERVD_LOG" | tail -n 1)
log "daemon: $served"
n_of() { echo "$served" | sed -n "s/.* \([0-9][0-9]*\) $1.*/\1/p"; }
check "flushes reached the backend" test "$(n_of flushes)" -gt 0
check "trims reached the backend" test "$(n_of trims)" -gt 0
check "write-zeroes reached the backend" test "$(n_of write-zeroes)" -gt 0
check "FUA writes reached the backend" test "$(echo "$served" | sed -n 's/.*(\([0-9]*\) FUA).*/\1/p')" -gt 0

# The original ABI on the same module: no write cache, so write-through.
: >"$BLKSERVD_LOG"
conf "$BLKSERV_TMP/orig.conf" db1 "extensions = false  threads = 2"
blkservd_start -w /dev/db1 "$BLKSERV_TMP/orig.conf" || exit 1
must "/dev/db1 appears" wait_for_blockdev /dev/db1
check_eq "original ABI: no features" none "$(cat /sys/block/db1/dblock/features)"
check_eq "original ABI: write through" "write through" "$(cat /sys/block/db1/queue/write_cache)"
check_eq "original ABI: no discard" 0 "$(cat /sys/block/db1/queue/discard_max_bytes)"
check "original ABI: the daemon asked for write-through" grep -q 'every write is made durable' "$BLKSERVD_LOG"
fs_roundtrip original /dev/db1 20
blkservd_stop 0
check "rmmod dblock" rmmod dblock
