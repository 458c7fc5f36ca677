# shellcheck shell=dash
# bench-kernel: not a test (bench/run runs it; it is not in vm_scenarios).
# Every kernel frontend that is built (nbd, ublk, dblock) x backend (ramdisk,
# file on a tmpfs file) x 1 and 2 queues/connections, against brd, nbdkit
# memory + nbd-client, and fio on the raw tmpfs file, with the same fio jobs
# (io_uring, O_DIRECT on block devices, 2 queues = 2 fio jobs).  One line per
# run on the results port: "BENCH-JSON TARGET QUEUES JOB {fio json}".
# bench/run writes a copy with runtime, jobs, the timeout and dblock.ko.
# tools: fio nbdkit nbd-client
# files: /usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-memory-plugin.so
# modules: nbd ublk_drv brd
# requires: daemon/blkservd plugins/blkserv-backend-ramdisk.so plugins/blkserv-backend-file.so
# memory: 2048
# timeout: 1500

runtime=${runtime:-4}
rounds=${rounds:-1}
[ -n "$jobs" ] || jobs="randread-4k-qd32|--rw=randread --bs=4k --iodepth=32
write-1m-qd8|--rw=write --bs=1M --iodepth=8"
size_mib=128
img=$BLKSERV_TMP/bench.img
run=$BLKSERV_TMP/run
mkdir -p "$run"

# emit_run TARGET QUEUES JOB JSON-FILE: one line, to the results port only
# (the console is slow and the line is long).
emit_run() {
	local line
	line="BENCH-JSON $1 $2 $3 $(tr -s ' \n\t' '   ' <"$4")"
	if [ -c "$BLKSERV_RESULTS" ]; then echo "$line" >>"$BLKSERV_RESULTS"; else echo "$line"; fi
}

# bench TARGET QUEUES FILENAME DIRECT: every job, QUEUES fio jobs each on
# its own part of the device.
bench() {
	local target="$1" q="$2" dev="$3" direct="$4" name args part
	part=$((size_mib / q))
	for _ in $(seq "$rounds"); do echo "$jobs"; done | while IFS='|' read -r name args; do
		[ -n "$name" ] || continue
		# shellcheck disable=SC2086 # a list of fio options
		fio --name=b --filename="$dev" --ioengine=io_uring --direct="$direct" \
			--numjobs="$q" --group_reporting --size="${part}M" --offset_increment="${part}M" \
			--time_based --runtime="$runtime" --lat_percentiles=1 --output-format=json $args \
			>"$BLKSERV_TMP/fio.json" 2>"$BLKSERV_TMP/fio.err" ||
			{ fail "$target q$q $name" "$(tail -n 3 "$BLKSERV_TMP/fio.err")"; continue; }
		emit_run "$target" "$q" "$name" "$BLKSERV_TMP/fio.json"
	done
	ok "$target q$q: $(echo "$jobs" | grep -c .) jobs"
}

# Reads must read data, not holes.
fill() {
	check "fill $1" fio --name=fill --filename="$1" --rw=write --bs=1M --iodepth=8 \
		--ioengine=io_uring --direct="${2:-1}" --size="${size_mib}M"
}

must "modprobe brd" modprobe brd rd_nr=1 rd_size=$((size_mib * 1024))
must "modprobe nbd" modprobe nbd nbds_max=4
fill /dev/ram0
bench brd 1 /dev/ram0 1
bench brd 2 /dev/ram0 1
echo 1 >/sys/block/ram0/device/delete 2>/dev/null; rmmod brd 2>/dev/null

must "fill the tmpfs file" fio --name=fill --filename="$img" --rw=write --bs=1M \
	--size="${size_mib}M" --ioengine=io_uring
bench rawfile 1 "$img" 0
bench rawfile 2 "$img" 0

# nbdkit memory + nbd-client on /dev/nbd3, one and two connections.
sock=$BLKSERV_TMP/nbdkit.sock
nbdkit --unix "$sock" --pidfile "$BLKSERV_TMP/nbdkit.pid" memory "${size_mib}M" >"$BLKSERV_TMP/nbdkit.log" 2>&1
must "nbdkit listens" wait_for 20 test -S "$sock"
for q in 1 2; do
	must "nbd-client -C $q" nbd-client -unix "$sock" /dev/nbd3 -block-size 4096 -connections "$q"
	must "/dev/nbd3 appears" wait_for_blockdev /dev/nbd3
	[ "$q" = 1 ] && fill /dev/nbd3
	bench nbdkit "$q" /dev/nbd3 1
	check "nbd-client -d" nbd-client -d /dev/nbd3
	wait_for 10 sh -c '! test -e /sys/block/nbd3/pid'
done
kill "$(cat "$BLKSERV_TMP/nbdkit.pid")"

# serve FRONTEND QUEUES RAM-DEV FILE-DEV RAM-SECTION FILE-SECTION READY...
serve() {
	local fe="$1" q="$2" ramdev="$3" filedev="$4" w
	cat >"$BLKSERV_TMP/bench.conf" <<-CONF
		plugin_dir = "$BLKSERV_PLUGIN_DIR"
		runtime_dir = "$run"
		device "ram" {
		  size = ${size_mib}M
		  block_size = 4096
		  $5
		  backend "ramdisk" { }
		}
		device "file" {
		  size = ${size_mib}M
		  block_size = 4096
		  $6
		  backend "file" { path = "$img" }
		}
	CONF
	shift 6
	w=""
	for p in "$@"; do w="$w -w $p"; done
	# shellcheck disable=SC2086 # a list of -w PATH
	blkservd_start $w "$BLKSERV_TMP/bench.conf" || return 1
	must "$fe q$q: $ramdev" wait_for_blockdev "$ramdev"
	must "$fe q$q: $filedev" wait_for_blockdev "$filedev"
	fill "$ramdev"
	bench "$fe-ramdisk" "$q" "$ramdev" 1
	bench "$fe-file" "$q" "$filedev" 1
	blkservd_stop 0
}

have() { [ -f "$BLKSERV_PLUGIN_DIR/blkserv-frontend-$1.so" ]; }

if have nbd; then
	for q in 1 2; do
		# /sys/block/nbdN/pid: configured (opening the node earlier would
		# make the kernel refuse the connect).
		serve nbd "$q" /dev/nbd0 /dev/nbd1 \
			"frontend \"nbd\" { index = 0  connections = $q }" \
			"frontend \"nbd\" { index = 1  connections = $q }" \
			/sys/block/nbd0/pid /sys/block/nbd1/pid
	done
else
	skip nbd "the nbd frontend is not built"
fi
if have ublk && modprobe ublk_drv; then
	for q in 1 2; do
		serve ublk "$q" /dev/ublkb0 /dev/ublkb1 \
			"frontend \"ublk\" { id = 0  queues = $q  recovery = false }" \
			"frontend \"ublk\" { id = 1  queues = $q  recovery = false }" \
			/dev/ublkb0 /dev/ublkb1
	done
else
	skip ublk "the ublk frontend is not built or ublk_drv is missing"
fi
# dblock has one kernel queue; "2 queues" is 2 fio jobs, and 16 server
# threads so that QD32 keeps many requests in flight.
if have dblock && modprobe dblock 2>/dev/null; then
	for q in 1 2; do
		serve dblock "$q" /dev/dbram /dev/dbfile \
			'frontend "dblock" { name = "dbram"  threads = 16 }' \
			'frontend "dblock" { name = "dbfile"  threads = 16 }' \
			/dev/dbram /dev/dbfile
	done
else
	skip dblock "the dblock frontend or dblock.ko is not built"
fi
