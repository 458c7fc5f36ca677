#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/dblock.sh BUILD-DIR: the dblock frontend against its peers, in one VM
# (Debian's 6.12 cloud kernel under qemu TCG, through tests/vm/run-scenario):
#   brd              the kernel's own RAM disk (the ceiling)
#   dblock+ramdisk   blkservd: frontend dblock (our dblock.ko, 4 threads), backend ramdisk
#   dblock16+ramdisk the same with 16 server threads
#   ublk+ramdisk     blkservd: frontend ublk (2 queues), backend ramdisk; left
#                    out when the ublk frontend is not built
# Workloads (fio, io_uring, O_DIRECT, one job, time based): 4k randread and
# randwrite at QD32, 1 MiB sequential read and write at QD8.  Prints a
# Markdown table with ratios.  Under TCG absolute numbers mean little; the
# ratios, measured in the same VM run, are what count.
#   BENCH_RUNTIME=5   seconds per workload
#   BENCH_ROUNDS=2    rounds; the best of each is reported
set -euo pipefail
source "$(dirname "$(readlink -f "$0")")/lib.sh"

bench_init dblock "${1:?usage: bench/dblock.sh BUILD-DIR}"
RUNTIME=${BENCH_RUNTIME:-5}
ROUNDS=${BENCH_ROUNDS:-2}
for f in plugins/blkserv-frontend-dblock.so plugins/blkserv-backend-ramdisk.so frontends/dblock/kmod/dblock.ko; do
	[[ -f $BUILD/$f ]] || { echo "no $BUILD/$f: build first (dblock.ko needs the kernel headers)" >&2; exit 1; }
done
UBLK=0
[[ -f $BUILD/plugins/blkserv-frontend-ublk.so ]] && UBLK=1

# The scenario that runs in the VM: one line "BENCH target workload iops MiB/s" per run.
cat >"$TMP/bench-dblock.sh" <<EOF
# shellcheck shell=dash
# tools: fio
# modules: brd ublk_drv
# kmods: frontends/dblock/kmod/dblock.ko
# memory: 2048
# timeout: 900
runtime=$RUNTIME
rounds=$ROUNDS
ublk=$UBLK
EOF
cat >>"$TMP/bench-dblock.sh" <<'EOF'
conf=$BLKSERV_TMP/bench.conf
mkdir -p "$BLKSERV_TMP/run"
device() { # NAME FRONTEND-SECTION
	cat <<CONF
device "$1" {
  size = 256M
  block_size = 4096
  $2
  backend "ramdisk" { }
}
CONF
}
{
	echo "plugin_dir = \"$BLKSERV_PLUGIN_DIR\""
	echo "runtime_dir = \"$BLKSERV_TMP/run\""
	device db4 'frontend "dblock" { threads = 4 }'
	device db16 'frontend "dblock" { threads = 16 }'
	[ "$ublk" = 1 ] && device u0 'frontend "ublk" { queues = 2 }'
} >"$conf"
targets="brd:/dev/ram0 dblock:/dev/db4 dblock16:/dev/db16"
must "modprobe brd" modprobe brd rd_nr=1 rd_size=262144
must "modprobe dblock" modprobe dblock
if [ "$ublk" = 1 ]; then
	must "modprobe ublk_drv" modprobe ublk_drv
	targets="$targets ublk:/dev/ublkb0"
fi
blkservd_start -w /dev/db4 -w /dev/db16 "$conf" || exit 1
for target in $targets; do
	must "${target#*:} is up" wait_for_blockdev "${target#*:}"
done

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

# Fill every device, so that reads read data and not holes.
for target in $targets; do
	check "${target%%:*}: fill" fio --name=fill --filename="${target#*:}" --rw=write --bs=1M \
		--iodepth=8 --ioengine=io_uring --direct=1 --size=256M
done
# Targets back to back for each workload, in rounds (the best is kept), so
# that a busy moment of the shared host does not land on one target only.
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
results=$(bench_run_vm "$TMP/bench-dblock.sh") || exit 1
grep -q '^BENCH ' "$results" || { echo "bench/dblock.sh: the VM reported no figures" >&2; exit 1; }

tr -d '\r' <"$results" | awk -v ublk="$UBLK" '
	$1 == "BENCH" {
		if ($4 > iops[$2, $3]) iops[$2, $3] = $4
		if ($5 > mib[$2, $3]) mib[$2, $3] = $5
		seen[$3] = 1
	}
	function val(t, w) { return (w ~ /4k/) ? iops[t, w] : mib[t, w] }
	function ratio(a, b) { return (b > 0) ? sprintf("%.2f", a / b) : "-" }
	END {
		split("randread-4k randwrite-4k read-1m write-1m", order, " ")
		printf "| workload | unit | brd | dblock+ramdisk | dblock16+ramdisk | ublk+ramdisk | dblock/brd | dblock16/brd | dblock/ublk |\n"
		printf "|---|---|---|---|---|---|---|---|---|\n"
		for (i = 1; i <= 4; i++) {
			w = order[i]
			if (!seen[w]) continue
			unit = (w ~ /4k/) ? "IOPS" : "MiB/s"
			u = ublk ? val("ublk", w) : "-"
			printf "| %s QD%s | %s | %s | %s | %s | %s | %s | %s | %s |\n", w, (w ~ /4k/) ? 32 : 8, unit,
				val("brd", w), val("dblock", w), val("dblock16", w), u,
				ratio(val("dblock", w), val("brd", w)), ratio(val("dblock16", w), val("brd", w)),
				ublk ? ratio(val("dblock", w), val("ublk", w)) : "-"
		}
	}'
