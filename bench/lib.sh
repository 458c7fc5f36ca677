# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/lib.sh: what the benchmark scripts share.  Sourced (bash) by
# bench/run and the per-plugin scripts; no side effects until a function is
# called.
#
#   bench_init NAME BUILD   BUILD (absolute), SRC, TMP (removed at exit) and
#                           the cleanup of every pid added to BENCH_PIDS
#   bench_need TOOL...      exit 1 when a tool is missing
#   bench_wait_socket PATH  until PATH is a socket (10 s), else exit 1
#   bench_fio_summary JSON  "IOPS MiB/s MEAN-us P99-us" of fio's JSON output
#                           (bench/fio-summary.py)
#   bench_run_vm FILE       boot one VM with the scenario FILE; prints the
#                           path of its results.log; on failure the VM output
#   bench_load              the host's load averages, "1.2 3.4 5.6"
#   BENCH_JOBS              the fixed fio jobs of bench/run: NAME|ARGS|UNIT

# The fixed jobs: 4k random at QD1 and QD32, 1 MiB sequential at QD8.  The
# unit is what the chart and the ratios use (iops or mib).
# shellcheck disable=SC2034 # used by the scripts that source this file
BENCH_JOBS=(
	"randread-4k-qd1|--rw=randread --bs=4k --iodepth=1|iops"
	"randread-4k-qd32|--rw=randread --bs=4k --iodepth=32|iops"
	"randwrite-4k-qd1|--rw=randwrite --bs=4k --iodepth=1|iops"
	"randwrite-4k-qd32|--rw=randwrite --bs=4k --iodepth=32|iops"
	"read-1m-qd8|--rw=read --bs=1M --iodepth=8|mib"
	"write-1m-qd8|--rw=write --bs=1M --iodepth=8|mib"
)

bench_init() {
	BENCH_NAME=$1
	BUILD=$(readlink -f "$2")
	SRC=$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")
	[[ -x $BUILD/daemon/blkservd ]] || { echo "$BENCH_NAME: no $BUILD/daemon/blkservd: build first" >&2; exit 1; }
	TMP=$(mktemp -d "/tmp/blkserv-bench-$BENCH_NAME.XXXXXX")
	BENCH_PIDS=()
	trap _bench_cleanup EXIT
}

_bench_cleanup() {
	local p
	for p in "${BENCH_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}

bench_need() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null || { echo "$BENCH_NAME: $t is not installed" >&2; exit 1; }
	done
}

bench_wait_socket() {
	local _
	for _ in $(seq 100); do
		[[ -S $1 ]] && return 0
		sleep 0.1
	done
	echo "$BENCH_NAME: $1 did not appear" >&2
	cat "$TMP"/*.log >&2 2>/dev/null || true
	exit 1
}

# fio may print notes before the JSON; with group_reporting jobs[0] is the
# sum of every job.  Latency: total (submission + completion; with
# --lat_percentiles=1 its percentiles too, else the completion's), in
# microseconds: a synchronous engine path completes in the submission.
bench_fio_summary() {
	python3 "$SRC/bench/fio-summary.py" "$1"
}

bench_run_vm() {
	local file=$1 name rc=0
	name=$(basename "$file" .sh)
	"$SRC/tests/vm/run-scenario" --build-root "$BUILD" --source-root "$SRC" "$file" \
		>"$TMP/vm-$name.out" 2>&1 || rc=$?
	if [[ $rc != 0 ]]; then
		tail -n 60 "$TMP/vm-$name.out" >&2
		echo "$BENCH_NAME: the benchmark VM $name failed (status $rc)" >&2
		return 1
	fi
	echo "$BUILD/tests/vm/run/$name/results.log"
}

bench_load() {
	cut -d' ' -f1-3 /proc/loadavg
}
