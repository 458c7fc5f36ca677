#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/nbd.sh BUILD-DIR [ROUNDS]: the nbd-export frontend against
# `nbdkit memory`, both over a Unix socket, driven by the same fio jobs
# (fio's nbd engine, one connection): 4k randread and randwrite at QD32,
# 1 MiB sequential read and write at QD8, and 4 MiB read and write at QD32
# (128 MiB in flight, over the export's default client_memory of 64M: what
# the payload budget costs a client that wants more).  Each job runs ROUNDS
# times (default 3) alternating the two servers; the best round of each
# counts.  Prints a Markdown table with the ratio blkservd / nbdkit (> 1:
# blkservd is faster)
# and each server's CPU time per operation (the lowest of the rounds).
#
# With BENCH_VM=1 it also runs the VM part (tests/vm/scenarios/nbd-bench.sh):
# the kernel NBD frontend against nbdkit memory + nbd-client on the same
# kernel, fio io_uring O_DIRECT on /dev/nbdN.  Slow (qemu TCG), so opt-in.
set -euo pipefail
source "$(dirname "$(readlink -f "$0")")/lib.sh"

bench_init nbd "${1:?usage: bench/nbd.sh BUILD-DIR [ROUNDS]}"
ROUNDS=${2:-3}
RUNTIME=${BENCH_RUNTIME:-5}
bench_need fio nbdkit python3
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "bench/nbd.sh: fio has no nbd engine" >&2; exit 1; }

# ---- the servers -------------------------------------------------------------
cat >"$TMP/blkservd.conf" <<CONF
plugin_dir = "$BUILD/plugins"
runtime_dir = "$TMP/run"
device "ram0" {
  size = 1G
  block_size = 512
  frontend "nbd-export" { unix = "$TMP/blkservd.sock" }
  backend "ramdisk" { }
}
CONF
declare -A PID
"$BUILD/daemon/blkservd" -c "$TMP/blkservd.conf" >"$TMP/blkservd.log" 2>&1 &
PID[blkservd]=$!
nbdkit --foreground --unix "$TMP/nbdkit.sock" memory 1G >"$TMP/nbdkit.log" 2>&1 &
PID[nbdkit]=$!
BENCH_PIDS+=("${PID[blkservd]}" "${PID[nbdkit]}")
bench_wait_socket "$TMP/blkservd.sock"
bench_wait_socket "$TMP/nbdkit.sock"

declare -A URI=(
	[blkservd]="nbd+unix:///ram0?socket=$TMP/blkservd.sock"
	[nbdkit]="nbd+unix:///?socket=$TMP/nbdkit.sock"
)

# CPU time (user + system, clock ticks) the server process used so far.
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# fio JOB-ARGS... on SERVER; prints IOPS, MiB/s and the server's CPU
# microseconds per operation (a measure the other load on the machine
# disturbs less than throughput).
run_fio() {
	local server=$1 t0 t1
	shift
	t0=$(cpu_ticks "${PID[$server]}")
	fio --name=bench --ioengine=nbd --uri="${URI[$server]}" --size=256M \
		--time_based --runtime="$RUNTIME" --ramp_time=1 --output-format=json "$@" \
		>"$TMP/fio.json" 2>"$TMP/fio.err" || { cat "$TMP/fio.err" >&2; exit 1; }
	t1=$(cpu_ticks "${PID[$server]}")
	python3 - "$TMP/fio.json" "$((t1 - t0))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index("{"):])["jobs"][0]  # fio may print notes first
d = j["read"] if j["read"]["io_bytes"] else j["write"]
ops = d["total_ios"] or 1
# The ramp second is not in total_ios but is in the CPU time: count it too.
ops_all = ops * (1 + 1 / float(j["job_runtime"] / 1000 or 1))
cpu_us = int(sys.argv[2]) / float(sys.argv[3]) * 1e6
print("%.0f %.1f %.1f" % (d["iops"], d["bw_bytes"] / 2**20, cpu_us / ops_all))
PY
}

# Both servers hold the same data before anything reads it.
for s in blkservd nbdkit; do
	fio --name=fill --ioengine=nbd --uri="${URI[$s]}" --size=256M --rw=write --bs=1M \
		--iodepth=8 >/dev/null
done

JOBS=(
	"4k randread QD32|--rw=randread --bs=4k --iodepth=32|iops"
	"4k randwrite QD32|--rw=randwrite --bs=4k --iodepth=32|iops"
	"1 MiB read QD8|--rw=read --bs=1M --iodepth=8|mib"
	"1 MiB write QD8|--rw=write --bs=1M --iodepth=8|mib"
	# 128 MiB of payload in flight: over client_memory (64M), so these
	# show what the budget costs a client that asks for more.
	"4 MiB read QD32|--rw=read --bs=4M --iodepth=32|mib"
	"4 MiB write QD32|--rw=write --bs=4M --iodepth=32|mib"
)

echo "## NBD export vs nbdkit memory (host, fio nbd engine over a Unix socket, best of $ROUNDS x ${RUNTIME}s)"
echo
echo "| workload | nbdkit memory | blkservd nbd-export | ratio | server CPU/op nbdkit | blkservd |"
echo "|---|---|---|---|---|---|"
for job in "${JOBS[@]}"; do
	IFS='|' read -r label args unit <<<"$job"
	declare -A best=([blkservd]=0 [nbdkit]=0) cpu=([blkservd]=1e9 [nbdkit]=1e9)
	for _ in $(seq "$ROUNDS"); do
		for s in nbdkit blkservd; do
			# shellcheck disable=SC2086 # args is a list of fio options
			read -r iops mib us <<<"$(run_fio $s $args)"
			v=$([[ $unit == iops ]] && echo "$iops" || echo "$mib")
			best[$s]=$(python3 -c "print(max(float('${best[$s]}'), float('$v')))")
			cpu[$s]=$(python3 -c "print(min(float('${cpu[$s]}'), float('$us')))")
		done
	done
	python3 - "$label" "$unit" "${best[nbdkit]}" "${best[blkservd]}" "${cpu[nbdkit]}" "${cpu[blkservd]}" <<'PY'
import sys
label, unit = sys.argv[1], sys.argv[2]
kit, ours, kit_us, our_us = (float(v) for v in sys.argv[3:7])
fmt = (lambda v: "%.1fk IOPS" % (v / 1000)) if unit == "iops" else (lambda v: "%.0f MiB/s" % v)
print("| %s | %s | %s | %.2f | %.1f us | %.1f us |" % (label, fmt(kit), fmt(ours), ours / kit if kit else 0,
                                                     kit_us, our_us))
PY
done
echo

if [[ ${BENCH_VM:-0} == 1 ]]; then
	echo "## Kernel NBD in a VM (qemu TCG): blkservd nbd frontend vs nbdkit memory + nbd-client"
	echo
	"$SRC/tests/vm/run-scenario" --build-root "$BUILD" --source-root "$SRC" nbd-bench >"$TMP/vm.log" 2>&1 || {
		tail -n 40 "$TMP/vm.log" >&2
		echo "bench/nbd.sh: the VM part failed" >&2
		exit 1
	}
	# The scenario prints its rows on the VM console.
	grep -ao 'BENCH-ROW .*' "$BUILD/tests/vm/run/nbd-bench/console.log" | sed 's/^BENCH-ROW //' | tr -d '\r' | python3 -c '
import sys
rows = {}
for line in sys.stdin:
    server, label, value = line.rstrip("\n").split("|")
    rows.setdefault(label, {})[server] = float(value)
print("| workload | nbdkit memory + nbd-client | blkservd nbd | ratio |")
print("|---|---|---|---|")
for label, r in rows.items():
    kit, ours = r.get("nbdkit", 0), r.get("blkservd", 0)
    f = (lambda v: "%.1fk IOPS" % (v / 1000)) if "4k" in label else (lambda v: "%.0f MiB/s" % v)
    print("| %s | %s | %s | %.2f |" % (label, f(kit), f(ours), ours / kit if kit else 0))
'
fi
