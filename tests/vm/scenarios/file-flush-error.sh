# shellcheck shell=dash
# file-flush-error: a failed fdatasync is permanent ("fsyncgate").  The file
# backend serves a device-mapper device over a RAM disk (brd) through the
# kernel NBD frontend (ublk when nbd is not built).  Data goes to the daemon's
# page cache; then the mapping is switched to the dm "error" target, so the
# writeback of the next FLUSH fails.  That flush must fail, and so must every
# later one after the mapping is healthy again (the kernel reports a lost
# write only once: a retried fdatasync would succeed), until the device is
# restarted.  Plain reads go on.  The failure is logged once, with the
# device name.  Then the same with a FUA write (RWF_DSYNC) instead of a flush:
# its failure may have used up the kernel's one report, so it fails later
# flushes too.
# tools: dmsetup fio
# modules: dm_mod brd nbd ublk_drv
# requires: daemon/blkservd plugins/blkserv-backend-file.so
# timeout: 300

export DM_DISABLE_UDEV=1
run=$BLKSERV_TMP/run
conf=$BLKSERV_TMP/flush.conf
mkdir -p "$run"
if [ -f "$BLKSERV_PLUGIN_DIR/blkserv-frontend-nbd.so" ]; then
	must "modprobe nbd" modprobe nbd nbds_max=2
	fe='frontend "nbd" { index = 0 }'
	dev=/dev/nbd0
	ready=/sys/block/nbd0/pid # opening /dev/nbd0 before the connect would fail it
elif [ -f "$BLKSERV_PLUGIN_DIR/blkserv-frontend-ublk.so" ]; then
	must "modprobe ublk_drv" modprobe ublk_drv
	fe='frontend "ublk" { id = 0  queues = 1 }'
	dev=/dev/ublkb0
	ready=/dev/ublkb0
else
	skip_all "neither the nbd nor the ublk frontend is built"
fi

sectors=131072 # 64 MiB
must "modprobe brd" modprobe brd rd_nr=1 rd_size=65536
must "modprobe dm_mod" modprobe dm_mod
table() { dmsetup suspend flaky && dmsetup load flaky --table "$1" && dmsetup resume flaky; }
must "dmsetup create flaky (linear over /dev/ram0)" \
	dmsetup create flaky --noudevsync --table "0 $sectors linear /dev/ram0 0"
dmsetup mknodes flaky 2>/dev/null
must "/dev/mapper/flaky exists" test -b /dev/mapper/flaky

cat >"$conf" <<EOF
plugin_dir = "$BLKSERV_PLUGIN_DIR"
runtime_dir = "$run"
device "flaky0" {
  block_size = 4096
  $fe
  backend "file" { path = "/dev/mapper/flaky" }
}
EOF
blkservd_start -w "$ready" "$conf" || exit 1
must "$dev appears" wait_for_blockdev "$dev"
check_eq "$dev is 64 MiB (the block device's size)" 67108864 "$(dev_size "$dev")"

dd if=/dev/urandom of="$BLKSERV_TMP/pattern" bs=1M count=2 2>/dev/null
wr() { dd if="$BLKSERV_TMP/pattern" of="$dev" bs=1M count=1 seek="$1" oflag=direct conv=fsync,notrunc; }
check "healthy: write + flush succeed" wr 0

must "switch the mapping to the error target" table "0 $sectors error"
check_fails "broken: write + flush fails" wr 1
must "switch the mapping back to linear" table "0 $sectors linear /dev/ram0 0"
check_fails "healed: the next flush still fails" wr 2
check_fails "healed: and the one after" wr 3
check "reads still work" dd if="$dev" of=/dev/null bs=1M count=1 iflag=direct
check_eq "the failure is logged once" 1 "$(grep -c 'every later flush and FUA write' "$BLKSERVD_LOG")"
check "the log names the device and the path" grep -q 'device flaky0: fdatasync of /dev/mapper/flaky failed' "$BLKSERVD_LOG"

# The stop's own fdatasync must not pretend either.
kill -TERM "$BLKSERVD_PID"
must "blkservd exits after SIGTERM" wait_for 20 _dead "$BLKSERVD_PID"
wait "$BLKSERVD_PID"
check_eq "a stop that cannot sync exits 1" 1 "$?"
BLKSERVD_PID=
check "the stop says it did not sync" grep -q 'not syncing /dev/mapper/flaky at stop' "$BLKSERVD_LOG"

# A restarted device starts clean.
blkservd_start -w "$ready" "$conf" || exit 1
must "$dev appears again" wait_for_blockdev "$dev"
check "restarted: write + flush succeed" wr 4
check_eq "restarted: the data written before the failure is there" \
	"$(dd if="$BLKSERV_TMP/pattern" bs=1M count=1 2>/dev/null | sha256sum)" \
	"$(dd if="$dev" bs=1M count=1 iflag=direct 2>/dev/null | sha256sum)"

# A FUA write (O_DIRECT|O_DSYNC on the block device) to the broken mapping.
fua() {
	fio --name=fua --filename="$dev" --rw=write --bs=64k --size=1M --offset="$1" \
		--ioengine=psync --direct=1 --sync=dsync
}
must "switch the mapping to the error target again" table "0 $sectors error"
check_fails "broken: a FUA write fails" fua 8M
must "switch the mapping back to linear again" table "0 $sectors linear /dev/ram0 0"
check_fails "healed: the next flush after the failed FUA write fails" wr 5
check "the log says the FUA write failed" grep -q 'FUA write (RWF_DSYNC) of /dev/mapper/flaky failed' "$BLKSERVD_LOG"
# The final sync cannot succeed either: the daemon says so and exits 1.
blkservd_stop 1
check "the stop failure is logged" grep -q 'could not make its data durable at stop' "$BLKSERVD_LOG"
dmsetup remove flaky
