#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/rbd.sh BUILD-DIR [ROUNDS]: the rbd backend served by the nbd-export
# frontend, against two peers measured in the same run on the same image of
# a throwaway one-node Ceph cluster (backends/rbd/tests/ceph-cluster.sh: one
# monitor, one memstore OSD, 127.0.0.1, no auth):
#   - rbd bench: librbd driven by Ceph's own tool, no NBD at all (the
#     ceiling for any librbd client on this cluster);
#   - qemu-nbd with qemu's rbd block driver (rbd:POOL/IMAGE:conf=...) over a
#     Unix socket: the same protocol path as ours (qemu-block-extra).
# blkservd and qemu-nbd are driven by fio's nbd engine (one connection); both
# use librbd's default cache (qemu-nbd --cache=writeback sets rbd_cache=true;
# ours follows ceph.conf, default on).  The image (1 GiB) is written whole
# first, so reads hit real objects.  Jobs: 4k randread/randwrite QD32, 1 MiB
# read/write QD8; each runs ROUNDS times (default 2) alternating the three
# (only one client holds the image at a time: ours takes the exclusive lock);
# the best round counts.  Prints a Markdown table with ratios (> 1: blkservd
# is faster).  BENCH_RUNTIME: seconds per fio run (default 5); rbd bench
# runs a fixed amount of I/O sized to take about as long.  Not part of the
# test suite.
set -euo pipefail

BUILD=$(readlink -f "${1:?usage: bench/rbd.sh BUILD-DIR [ROUNDS]}")
ROUNDS=${2:-2}
RUNTIME=${BENCH_RUNTIME:-5}
SRC=$(dirname "$(readlink -f "$0")")/..
CEPH_CLUSTER=$SRC/backends/rbd/tests/ceph-cluster.sh
die() {
	echo "bench/rbd.sh: $*" >&2
	exit 1
}
for t in fio qemu-nbd python3 rbd; do
	command -v $t >/dev/null || die "$t is not installed"
done
why=$("$CEPH_CLUSTER" available) || die "$why"
fio --enghelp 2>/dev/null | grep -qw nbd || die "fio has no nbd engine"
[[ -f $BUILD/plugins/blkserv-frontend-nbd-export.so ]] || die "the nbd-export frontend is not built in $BUILD"
[[ -f $BUILD/plugins/blkserv-backend-rbd.so ]] || die "the rbd backend is not built in $BUILD (librbd-dev)"
ls /usr/lib/*/qemu/block-rbd.so >/dev/null 2>&1 || die "qemu has no rbd driver (install qemu-block-extra)"

TMP=$(mktemp -d /tmp/blkserv-bench-rbd.XXXXXX)
CL=$TMP/ceph
PID=
cleanup() {
	set +e # clean up everything, whatever fails
	if [[ -n $PID ]]; then
		kill "$PID" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
	fi
	"$CEPH_CLUSTER" stop "$CL" || true
	rm -rf "$TMP"
}
trap cleanup EXIT

CEPH_MEMSTORE_BYTES=$((3 << 30)) "$CEPH_CLUSTER" start "$CL" || die "the Ceph cluster did not start"
CONF=$CL/ceph.conf
IMAGE=rbd/bench
rbd -c "$CONF" create --size 1G $IMAGE
rbd -c "$CONF" bench --io-type write --io-pattern seq --io-size 4M --io-threads 4 --io-total 1G $IMAGE >/dev/null

wait_socket() {
	for _ in $(seq 300); do
		[[ -S $1 ]] && return 0
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$TMP/server.log" >&2
	die "$1 did not appear"
}

# start_server blkservd|qemu-nbd
start_server() {
	rm -f "$TMP/server.sock"
	case $1 in
	blkservd)
		cat >"$TMP/blkservd.conf" <<-CONF
			plugin_dir = "$BUILD/plugins"
			runtime_dir = "$TMP/run"
			device "rbd0" {
			  block_size = 4096
			  frontend "nbd-export" { unix = "$TMP/server.sock" }
			  backend "rbd" { pool = "rbd"  image = "bench"  conf = "$CONF" }
			}
		CONF
		"$BUILD/daemon/blkservd" -c "$TMP/blkservd.conf" >"$TMP/server.log" 2>&1 &
		;;
	qemu-nbd)
		qemu-nbd -f raw --cache=writeback --persistent --shared=4 --socket="$TMP/server.sock" -x rbd0 \
			"rbd:$IMAGE:conf=$CONF" >"$TMP/server.log" 2>&1 &
		;;
	esac
	PID=$!
	wait_socket "$TMP/server.sock"
}

stop_server() {
	kill "$PID" 2>/dev/null || true
	wait "$PID" 2>/dev/null || true
	PID=
}

# fio_job ARGS...: prints IOPS and MiB/s of the job through the socket.
fio_job() {
	fio --name=bench --ioengine=nbd --uri="nbd+unix:///rbd0?socket=$TMP/server.sock" --size=1G \
		--time_based --runtime="$RUNTIME" --ramp_time=1 --output-format=json "$@" \
		>"$TMP/fio.json" 2>"$TMP/fio.err" || { cat "$TMP/fio.err" >&2; die "fio failed"; }
	python3 - "$TMP/fio.json" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index("{"):])["jobs"][0]  # fio may print notes first
d = j["read"] if j["read"]["io_bytes"] else j["write"]
print("%.0f %.1f" % (d["iops"], d["bw_bytes"] / 2**20))
PY
}

# rbd_bench TYPE PATTERN SIZE THREADS TOTAL: prints IOPS and MiB/s.
rbd_bench() {
	rbd -c "$CONF" bench --io-type "$1" --io-pattern "$2" --io-size "$3" --io-threads "$4" \
		--io-total "$5" $IMAGE >"$TMP/rbd-bench.log" 2>&1 || { cat "$TMP/rbd-bench.log" >&2; die "rbd bench failed"; }
	# "elapsed: 5   ops: 51200   ops/sec: 10160.4   bytes/sec: 40 MiB/s"
	python3 - "$TMP/rbd-bench.log" "$3" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"elapsed:\s*\S+\s+ops:\s*(\d+)\s+ops/sec:\s*([\d.]+)", text)
size = {"4K": 4096, "1M": 1 << 20}[sys.argv[2]]
iops = float(m.group(2))
print("%.0f %.1f" % (iops, iops * size / 2**20))
PY
}

# label | fio args | rbd bench type pattern size threads | unit
JOBS=(
	"4k randread QD32|--rw=randread --bs=4k --iodepth=32|read rand 4K 32|iops"
	"4k randwrite QD32|--rw=randwrite --bs=4k --iodepth=32|write rand 4K 32|iops"
	"1 MiB read QD8|--rw=read --bs=1M --iodepth=8|read seq 1M 8|mib"
	"1 MiB write QD8|--rw=write --bs=1M --iodepth=8|write seq 1M 8|mib"
)

# The amount rbd bench moves: what blkservd did in RUNTIME seconds (at
# least 16 MiB), so the three run about as long.
bench_total() {
	local mib=$1
	python3 -c "print('%dM' % max(16, int(float('$mib') * $RUNTIME)))"
}

echo "## rbd backend: one-node Ceph (memstore OSD, 127.0.0.1), 1 GiB image, best of $ROUNDS x ${RUNTIME}s"
echo
echo "| workload | rbd bench (librbd, no NBD) | qemu-nbd rbd driver (nbd) | blkservd rbd (nbd-export) | blkservd / rbd bench | blkservd / qemu-nbd |"
echo "|---|---|---|---|---|---|"
for job in "${JOBS[@]}"; do
	IFS='|' read -r label args rb unit <<<"$job"
	declare -A best=([bench]=0 [qemu]=0 [ours]=0)
	for _ in $(seq "$ROUNDS"); do
		start_server blkservd
		# shellcheck disable=SC2086 # args is a list of fio options
		read -r iops mib <<<"$(fio_job $args)"
		stop_server
		ours_mib=$mib
		v=$([[ $unit == iops ]] && echo "$iops" || echo "$mib")
		best[ours]=$(python3 -c "print(max(float('${best[ours]}'), float('$v')))")
		start_server qemu-nbd
		# shellcheck disable=SC2086
		read -r iops mib <<<"$(fio_job $args)"
		stop_server
		v=$([[ $unit == iops ]] && echo "$iops" || echo "$mib")
		best[qemu]=$(python3 -c "print(max(float('${best[qemu]}'), float('$v')))")
		# shellcheck disable=SC2086 # rb is "type pattern size threads"
		read -r iops mib <<<"$(rbd_bench $rb "$(bench_total "$ours_mib")")"
		v=$([[ $unit == iops ]] && echo "$iops" || echo "$mib")
		best[bench]=$(python3 -c "print(max(float('${best[bench]}'), float('$v')))")
	done
	python3 - "$label" "$unit" "${best[bench]}" "${best[qemu]}" "${best[ours]}" <<'PY'
import sys
label, unit = sys.argv[1], sys.argv[2]
bench, qemu, ours = (float(v) for v in sys.argv[3:6])
fmt = (lambda v: "%.1fk IOPS" % (v / 1000)) if unit == "iops" else (lambda v: "%.0f MiB/s" % v)
r = lambda a, b: "%.2f" % (a / b) if b else "-"
print("| %s | %s | %s | %s | %s | %s |" % (label, fmt(bench), fmt(qemu), fmt(ours), r(ours, bench), r(ours, qemu)))
PY
done
