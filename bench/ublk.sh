#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/ublk.sh BUILD-DIR: the ublk frontend against its peers, in one VM
# (Debian's 6.12 cloud kernel under qemu TCG, through tests/vm/run-scenario):
#   brd           the kernel's own RAM disk (the ceiling)
#   ublk+ramdisk  blkservd: frontend ublk (2 queues), backend ramdisk
#   ublk+file     blkservd: frontend ublk (2 queues), backend file on tmpfs
#                 (asynchronous on the queue's io_uring; cf. "ublksrv loop on tmpfs")
#   nbd+ramdisk   blkservd: frontend nbd (kernel NBD, 2 connections), backend ramdisk
# Workloads (fio, io_uring, O_DIRECT, one job, time based): 4k randread and
# randwrite at QD32, 1 MiB sequential read and write at QD8.  Prints a
# Markdown table with ratios.  Under TCG absolute numbers mean little; the
# ratios, measured in the same VM run, are what count.
#   BENCH_RUNTIME=5   seconds per workload
#   BENCH_ROUNDS=2    rounds; the best of each is reported
set -euo pipefail
source "$(dirname "$(readlink -f "$0")")/lib.sh"

bench_init ublk "${1:?usage: bench/ublk.sh BUILD-DIR}"
RUNTIME=${BENCH_RUNTIME:-5}
ROUNDS=${BENCH_ROUNDS:-2}
for p in frontend-ublk frontend-nbd backend-ramdisk backend-file; do
	[[ -f $BUILD/plugins/blkserv-$p.so ]] || { echo "no plugin blkserv-$p.so in $BUILD/plugins" >&2; exit 1; }
done

# The scenario that runs in the VM: one line "BENCH target workload iops MiB/s" per run.
cat >"$TMP/bench-ublk.sh" <<EOF
# shellcheck shell=dash
# tools: fio
# modules: ublk_drv nbd brd
# memory: 2048
# timeout: 900
runtime=$RUNTIME
rounds=$ROUNDS
EOF
cat >>"$TMP/bench-ublk.sh" <<'EOF'
conf=$BLKSERV_TMP/bench.conf
mkdir -p "$BLKSERV_TMP/run"
cat >"$conf" <<CONF
plugin_dir = "$BLKSERV_PLUGIN_DIR"
runtime_dir = "$BLKSERV_TMP/run"
device "u0" {
  size = 256M
  block_size = 4096
  frontend "ublk" { queues = 2 }
  backend "ramdisk" { }
}
device "f0" {
  size = 256M
  block_size = 4096
  frontend "ublk" { queues = 2  id = 1 }
  backend "file" { path = "/dev/shm/bench.img" }
}
device "n0" {
  size = 256M
  block_size = 4096
  frontend "nbd" { connections = 2  index = 0 }
  backend "ramdisk" { }
}
CONF
must "modprobe brd" modprobe brd rd_nr=1 rd_size=262144
must "modprobe ublk_drv" modprobe ublk_drv
must "modprobe nbd" modprobe nbd nbds_max=1
blkservd_start -w /dev/ublkb0 "$conf" || exit 1
must "/dev/nbd0 is up" wait_for_blockdev /dev/nbd0
must "/dev/ublkb0 is up" wait_for_blockdev /dev/ublkb0
must "/dev/ublkb1 is up" wait_for_blockdev /dev/ublkb1

# fio terse v3: field 7/8 read KiB/s and IOPS, 48/49 the same for writes.
bench() {
	local target="$1" dev="$2" name="$3" rw="$4" bs="$5" qd="$6" line
	line=$(fio --name="$name" --filename="$dev" --rw="$rw" --bs="$bs" --iodepth="$qd" \
		--ioengine=io_uring --direct=1 --numjobs=1 --time_based --runtime="$runtime" \
		--size=256M --output-format=terse --terse-version=3 2>&1 | tail -n 1)
	echo "$line" | awk -F';' -v t="$target" -v w="$name" -v rw="$rw" '
		{ r = (rw ~ /read/) ? 0 : 41
		  printf "BENCH %s %s %d %.1f\n", t, w, $(8 + r), $(7 + r) / 1024 }' >"$BLKSERV_TMP/bench.line"
	_emit "$(cat "$BLKSERV_TMP/bench.line")"
}

targets="brd:/dev/ram0 ublk:/dev/ublkb0 ublkfile:/dev/ublkb1 nbd:/dev/nbd0"
# Fill every device (reads then read data, not holes) at QD32, which also
# warms the per-tag buffers of the user-space servers.
for target in $targets; do
	check "${target%%:*}: fill" fio --name=fill --filename="${target#*:}" --rw=write --bs=1M \
		--iodepth=32 --ioengine=io_uring --direct=1 --size=256M
done
# The host is shared: run the targets back to back for each workload, and
# every workload in $rounds rounds (the runner keeps the best), so that a
# busy moment does not land on one target only.
for round in $(seq "$rounds"); do
	for w in randread-4k:randread:4k:32 randwrite-4k:randwrite:4k:32 read-1m:read:1M:8 write-1m:write:1M:8; do
		IFS=: read -r name rw bs qd <<W
$w
W
		for target in $targets; do
			bench "${target%%:*}" "${target#*:}" "$name" "$rw" "$bs" "$qd"
		done
	done
done
blkservd_stop 0
EOF

echo "running the benchmark VM ($ROUNDS rounds of $RUNTIME s per workload and target; several minutes under TCG)..." >&2
results=$(bench_run_vm "$TMP/bench-ublk.sh") || exit 1
grep -q '^BENCH ' "$results" || { echo "bench/ublk.sh: the VM reported no figures" >&2; exit 1; }

tr -d '\r' <"$results" | awk '
	$1 == "BENCH" {
		if ($4 > iops[$2, $3]) iops[$2, $3] = $4
		if ($5 > mib[$2, $3]) mib[$2, $3] = $5
		seen[$3] = 1
	}
	function val(t, w) { return (w ~ /4k/) ? iops[t, w] : mib[t, w] }
	function ratio(a, b) { return (b > 0) ? sprintf("%.2f", a / b) : "-" }
	END {
		split("randread-4k randwrite-4k read-1m write-1m", order, " ")
		printf "| workload | unit | brd | ublk+ramdisk | ublk+file (tmpfs) | nbd+ramdisk | ublk/brd | ublk/nbd | ublk+file/brd | ublk+file/nbd |\n"
		printf "|---|---|---|---|---|---|---|---|---|---|\n"
		for (i = 1; i <= 4; i++) {
			w = order[i]
			if (!seen[w]) continue
			unit = (w ~ /4k/) ? "IOPS" : "MiB/s"
			printf "| %s QD%s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", w, (w ~ /4k/) ? 32 : 8, unit,
				val("brd", w), val("ublk", w), val("ublkfile", w), val("nbd", w),
				ratio(val("ublk", w), val("brd", w)), ratio(val("ublk", w), val("nbd", w)),
				ratio(val("ublkfile", w), val("brd", w)), ratio(val("ublkfile", w), val("nbd", w))
		}
	}'
