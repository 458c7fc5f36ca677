#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/file.sh BUILD-DIR [ROUNDS]: the file backend served by the nbd-export
# frontend, against two peers measured in the same run on the same file:
#   - fio io_uring straight on the file (the ceiling: no protocol at all),
#   - nbdkit's file plugin over a Unix socket (the same protocol path as ours).
# blkservd and nbdkit are driven by fio's nbd engine (one connection).  Jobs:
# 4k randread/randwrite QD32, 1 MiB read/write QD8, each in page-cache mode
# (blkservd direct = false, nbdkit cache=default, fio --direct=0) and O_DIRECT
# mode (direct = true, nbdkit cache=none, fio --direct=1).  Each
# job runs ROUNDS times (default 2), alternating the three; the best round
# counts.  Prints Markdown tables with ratios (> 1: blkservd is faster).
#
# With BENCH_VM=1 it also runs tests/vm/scenarios/file-bench.sh: in one VM
# (qemu TCG), fio O_DIRECT on /dev/ublkb0 and /dev/nbd0 served by the file
# backend from a tmpfs file, against fio straight on that file.
#
# BENCH_DIR: where the 1 GiB file lives (default /var/tmp: a real disk file
# system; tmpfs has no O_DIRECT before Linux 6.6).  BENCH_RUNTIME: seconds per
# run (default 5).  Not part of the test suite.
set -euo pipefail
source "$(dirname "$(readlink -f "$0")")/lib.sh"

bench_init file "${1:?usage: bench/file.sh BUILD-DIR [ROUNDS]}"
ROUNDS=${2:-2}
RUNTIME=${BENCH_RUNTIME:-5}
DIR=${BENCH_DIR:-/var/tmp}
bench_need fio nbdkit python3
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "bench/file.sh: fio has no nbd engine" >&2; exit 1; }
[[ -f $BUILD/plugins/blkserv-frontend-nbd-export.so ]] ||
	{ echo "bench/file.sh: the nbd-export frontend is not built in $BUILD" >&2; exit 1; }

IMG=$(mktemp "$DIR/blkserv-bench-file.XXXXXX.img")
trap '_bench_cleanup; rm -f "$IMG"' EXIT

# Write the whole file once, so no mode measures block allocation.
fio --name=fill --filename="$IMG" --size=1G --rw=write --bs=1M --iodepth=8 \
	--ioengine=io_uring --direct=1 >/dev/null

# start_servers DIRECT(true|false): blkservd and nbdkit on the file.
start_servers() {
	local direct=$1 cache=default
	[[ $direct == true ]] && cache=none
	cat >"$TMP/blkservd.conf" <<-CONF
		plugin_dir = "$BUILD/plugins"
		runtime_dir = "$TMP/run"
		device "file0" {
		  block_size = 4096
		  frontend "nbd-export" { unix = "$TMP/blkservd.sock" }
		  backend "file" { path = "$IMG"  direct = $direct }
		}
	CONF
	rm -f "$TMP/blkservd.sock" "$TMP/nbdkit.sock"
	"$BUILD/daemon/blkservd" -c "$TMP/blkservd.conf" >"$TMP/blkservd.log" 2>&1 &
	BENCH_PIDS+=($!)
	# nbdkit's cache=none is not O_DIRECT (it evicts the page cache after
	# each request); its plugin has no O_DIRECT, so it is the closest peer.
	nbdkit --foreground --unix "$TMP/nbdkit.sock" file "$IMG" cache="$cache" \
		>"$TMP/nbdkit.log" 2>&1 &
	BENCH_PIDS+=($!)
	bench_wait_socket "$TMP/blkservd.sock"
	bench_wait_socket "$TMP/nbdkit.sock"
}

stop_servers() {
	for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	BENCH_PIDS=()
}

# run_fio PEER DIRECT(0|1) JOB-ARGS...: prints IOPS and MiB/s of the job.
run_fio() {
	local peer=$1 direct=$2
	shift 2
	local target
	case $peer in
	fio) target=(--ioengine=io_uring --filename="$IMG" --direct="$direct") ;;
	blkservd) target=(--ioengine=nbd --uri="nbd+unix:///file0?socket=$TMP/blkservd.sock") ;;
	nbdkit) target=(--ioengine=nbd --uri="nbd+unix:///?socket=$TMP/nbdkit.sock") ;;
	esac
	fio --name=bench "${target[@]}" --size=1G --time_based --runtime="$RUNTIME" \
		--ramp_time=1 --output-format=json "$@" >"$TMP/fio.json" 2>"$TMP/fio.err" ||
		{ cat "$TMP/fio.err" >&2; exit 1; }
	python3 - "$TMP/fio.json" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index("{"):])["jobs"][0]  # fio may print notes first
d = j["read"] if j["read"]["io_bytes"] else j["write"]
print("%.0f %.1f" % (d["iops"], d["bw_bytes"] / 2**20))
PY
}

JOBS=(
	"4k randread QD32|--rw=randread --bs=4k --iodepth=32|iops"
	"4k randwrite QD32|--rw=randwrite --bs=4k --iodepth=32|iops"
	"1 MiB read QD8|--rw=read --bs=1M --iodepth=8|mib"
	"1 MiB write QD8|--rw=write --bs=1M --iodepth=8|mib"
)

# table DIRECT(true|false)
table() {
	local direct=$1 fio_direct=0 label args unit iops mib v
	[[ $direct == true ]] && fio_direct=1
	start_servers "$direct"
	echo "## file backend, direct = $direct (host, $(df -T "$DIR" | awk 'NR==2 { print $2 }') file, best of $ROUNDS x ${RUNTIME}s)"
	echo
	echo "| workload | fio io_uring on the file | nbdkit file (nbd) | blkservd file (nbd-export) | blkservd / fio | blkservd / nbdkit |"
	echo "|---|---|---|---|---|---|"
	for job in "${JOBS[@]}"; do
		IFS='|' read -r label args unit <<<"$job"
		declare -A best=([fio]=0 [nbdkit]=0 [blkservd]=0)
		for _ in $(seq "$ROUNDS"); do
			for peer in fio nbdkit blkservd; do
				# shellcheck disable=SC2086 # args is a list of fio options
				read -r iops mib <<<"$(run_fio $peer $fio_direct $args)"
				v=$([[ $unit == iops ]] && echo "$iops" || echo "$mib")
				best[$peer]=$(python3 -c "print(max(float('${best[$peer]}'), float('$v')))")
			done
		done
		python3 - "$label" "$unit" "${best[fio]}" "${best[nbdkit]}" "${best[blkservd]}" <<'PY'
import sys
label, unit = sys.argv[1], sys.argv[2]
fio, kit, ours = (float(v) for v in sys.argv[3:6])
fmt = (lambda v: "%.1fk IOPS" % (v / 1000)) if unit == "iops" else (lambda v: "%.0f MiB/s" % v)
r = lambda a, b: "%.2f" % (a / b) if b else "-"
print("| %s | %s | %s | %s | %s | %s |" % (label, fmt(fio), fmt(kit), fmt(ours), r(ours, fio), r(ours, kit)))
PY
	done
	echo
	stop_servers
}

table false
table true

if [[ ${BENCH_VM:-0} == 1 ]]; then
	echo "## In a VM (qemu TCG): file backend on a tmpfs file behind ublk and nbd vs fio on the file"
	echo
	"$SRC/tests/vm/run-scenario" --build-root "$BUILD" --source-root "$SRC" file-bench >"$TMP/vm.log" 2>&1 || {
		tail -n 40 "$TMP/vm.log" >&2
		echo "bench/file.sh: the VM part failed" >&2
		exit 1
	}
	# The scenario reports each figure as a check: "ok PEER: WORKLOAD = VALUE".
	sed -n 's/^BLKSERV-CHECK ok \([a-z-]*\): \(.*\) = \([0-9.]*\)$/\1|\2|\3/p' "$TMP/vm.log" | python3 -c '
import sys
rows = {}
for line in sys.stdin:
    peer, label, value = line.rstrip("\n").split("|")
    rows.setdefault(label, {})[peer] = float(value)
print("| workload | fio on the tmpfs file | blkservd ublk | blkservd nbd | ublk / fio | nbd / fio |")
print("|---|---|---|---|---|---|")
for label, r in rows.items():
    f = (lambda v: "%.1fk IOPS" % (v / 1000)) if "4k" in label else (lambda v: "%.0f MiB/s" % v)
    base = r.get("fio-file", 0)
    cell = lambda p: f(r[p]) if p in r else "-"
    ratio = lambda p: "%.2f" % (r[p] / base) if p in r and base else "-"
    print("| %s | %s | %s | %s | %s | %s |" % (label, f(base), cell("ublk"), cell("nbd"), ratio("ublk"), ratio("nbd")))
'
	echo
fi
