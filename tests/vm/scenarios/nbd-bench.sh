# shellcheck shell=dash
# nbd-bench: not a test (bench/nbd.sh runs it with BENCH_VM=1).  The kernel
# NBD frontend with a ramdisk against nbdkit memory + nbd-client on the same
# kernel, with the same fio jobs (io_uring, O_DIRECT, one job, 5 s each).
# Prints "BENCH-ROW SERVER|WORKLOAD|VALUE" lines (IOPS for 4k, MiB/s for 1 MiB).
# tools: fio nbdkit nbd-client
# files: /usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-memory-plugin.so
# modules: nbd
# requires: daemon/blkservd plugins/blkserv-frontend-nbd.so plugins/blkserv-backend-ramdisk.so
# memory: 1536
# timeout: 300

run=$BLKSERV_TMP/run
mkdir -p "$run"
must "modprobe nbd" modprobe nbd nbds_max=4

bench() { # SERVER DEV
	local server="$1" dev="$2" label args unit v
	must "$server: fill" fio --name=fill --filename="$dev" --rw=write --bs=1M --iodepth=8 \
		--ioengine=io_uring --direct=1 --size=256M
	for job in "4k randread QD32|--rw=randread --bs=4k --iodepth=32|iops" \
		"4k randwrite QD32|--rw=randwrite --bs=4k --iodepth=32|iops" \
		"1 MiB read QD8|--rw=read --bs=1M --iodepth=8|bw" \
		"1 MiB write QD8|--rw=write --bs=1M --iodepth=8|bw"; do
		label=${job%%|*}
		args=${job#*|}
		unit=${args#*|}
		args=${args%|*}
		# shellcheck disable=SC2086 # a list of fio options
		fio --name=b --filename="$dev" --ioengine=io_uring --direct=1 --size=256M \
			--time_based --runtime=5 --ramp_time=1 --minimal $args >"$BLKSERV_TMP/fio.out" 2>&1
		# --minimal (terse v3): read iops field 8, read bw KiB/s 7; write 49, 48.
		case "$args" in
		*write*) v=$(awk -F';' -v u="$unit" '{ print (u == "iops") ? $49 : $48 / 1024 }' "$BLKSERV_TMP/fio.out") ;;
		*) v=$(awk -F';' -v u="$unit" '{ print (u == "iops") ? $8 : $7 / 1024 }' "$BLKSERV_TMP/fio.out") ;;
		esac
		echo "BENCH-ROW $server|$label|$v"
		ok "$server: $label = $v"
	done
}

# nbdkit memory + nbd-client
sock=$BLKSERV_TMP/nbdkit.sock
nbdkit --unix "$sock" memory 1G >"$BLKSERV_TMP/nbdkit.log" 2>&1
must "nbdkit listens" wait_for 20 test -S "$sock"
must "nbd-client connects /dev/nbd0" nbd-client -unix "$sock" /dev/nbd0 -block-size 4096
must "/dev/nbd0 appears" wait_for_blockdev /dev/nbd0
bench nbdkit /dev/nbd0
check "nbd-client -d" nbd-client -d /dev/nbd0

# blkservd
cat >"$BLKSERV_TMP/bench.conf" <<CONF
plugin_dir = "$BLKSERV_PLUGIN_DIR"
runtime_dir = "$run"
device "ram0" {
  size = 1G
  block_size = 4096
  frontend "nbd" { index = 1 }
  backend "ramdisk" { }
}
CONF
blkservd_start "$BLKSERV_TMP/bench.conf" || exit 1
must "/dev/nbd1 appears" wait_for_blockdev /dev/nbd1
bench blkservd /dev/nbd1
blkservd_stop 0
