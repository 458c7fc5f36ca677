# shellcheck shell=dash
# file-bench: not a test (bench/file.sh runs it with BENCH_VM=1).  The file
# backend on a tmpfs file behind the kernel frontends (ublk, nbd; whichever
# is built), against fio straight on the same file, in one VM run, with the
# same fio jobs (io_uring, one job, 5 s each; O_DIRECT on the block devices,
# buffered on the tmpfs file).  Each figure is reported as the check
# "PEER: WORKLOAD = VALUE" (IOPS for 4k, MiB/s for 1 MiB).
# tools: fio
# modules: nbd ublk_drv
# requires: daemon/blkservd plugins/blkserv-backend-file.so
# memory: 1536
# timeout: 420

run=$BLKSERV_TMP/run
img=$BLKSERV_TMP/bench.img
mkdir -p "$run"

bench() { # PEER TARGET DIRECT
	local peer="$1" target="$2" direct="$3" label args unit v
	for job in "4k randread QD32|--rw=randread --bs=4k --iodepth=32|iops" \
		"4k randwrite QD32|--rw=randwrite --bs=4k --iodepth=32|iops" \
		"1 MiB read QD8|--rw=read --bs=1M --iodepth=8|bw" \
		"1 MiB write QD8|--rw=write --bs=1M --iodepth=8|bw"; do
		label=${job%%|*}
		args=${job#*|}
		unit=${args#*|}
		args=${args%|*}
		# shellcheck disable=SC2086 # a list of fio options
		fio --name=b --filename="$target" --ioengine=io_uring --direct="$direct" --size=256M \
			--time_based --runtime=5 --ramp_time=1 --minimal $args >"$BLKSERV_TMP/fio.out" 2>&1
		# --minimal (terse v3): read iops field 8, read bw KiB/s 7; write 49, 48.
		case "$args" in
		*write*) v=$(awk -F';' -v u="$unit" '{ print (u == "iops") ? $49 : $48 / 1024 }' "$BLKSERV_TMP/fio.out") ;;
		*) v=$(awk -F';' -v u="$unit" '{ print (u == "iops") ? $8 : $7 / 1024 }' "$BLKSERV_TMP/fio.out") ;;
		esac
		ok "$peer: $label = $v"
	done
}

must "fill the tmpfs file" fio --name=fill --filename="$img" --rw=write --bs=1M --size=256M --ioengine=io_uring
bench fio-file "$img" 0

serve() { # FRONTEND-SECTION DEVICE READY-PATH PEER
	cat >"$BLKSERV_TMP/bench.conf" <<-CONF
		plugin_dir = "$BLKSERV_PLUGIN_DIR"
		runtime_dir = "$run"
		device "file0" {
		  block_size = 4096
		  $1
		  backend "file" { path = "$img" }
		}
	CONF
	blkservd_start -w "$3" "$BLKSERV_TMP/bench.conf" || return 1
	must "$2 appears" wait_for_blockdev "$2"
	bench "$4" "$2" 1
	blkservd_stop 0
}

if [ -f "$BLKSERV_PLUGIN_DIR/blkserv-frontend-ublk.so" ] && modprobe ublk_drv; then
	serve 'frontend "ublk" { id = 0  queues = 1 }' /dev/ublkb0 /dev/ublkb0 ublk
else
	skip ublk "the ublk frontend is not built or ublk_drv is missing"
fi
if [ -f "$BLKSERV_PLUGIN_DIR/blkserv-frontend-nbd.so" ] && modprobe nbd nbds_max=2; then
	# /sys/block/nbd0/pid: configured; opening /dev/nbd0 before that would
	# make the kernel refuse the connect ("already in use").
	serve 'frontend "nbd" { index = 0 }' /dev/nbd0 /sys/block/nbd0/pid nbd
else
	skip nbd "the nbd frontend is not built or the nbd module is missing"
fi
