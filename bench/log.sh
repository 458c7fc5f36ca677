#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/log.sh BUILD-DIR: the log backend against the file backend on the same
# file system, both driven by BUILD/backends/log/log-bench (the daemon core's
# queue API, no frontend: what is measured is the backend).  Prints Markdown
# tables:
#   1. writes: sequential 1 MiB, random 4 KiB, random 4 KiB with a flush every
#      16 writes; QD 8 (the file backend is asynchronous; the log backend
#      serves synchronously, so QD changes nothing for it); ratio log/file
#      (> 1: the log is faster);
#   2. recovery: start time after a crash with a 1 GiB log and no checkpoint
#      (full replay), after a clean stop (checkpoint), with a 64 MiB tail after
#      a checkpoint, and with a 2 GiB log and periodic checkpoints;
#   3. write amplification after random 4 KiB overwrites of 4x a 256 MiB
#      device with compaction at two thresholds (counted once compaction
#      has caught up), and the log's size then.
#   1c. verified reads (warm page cache, QD 1): the log against the file
#      backend, 4 KiB random and 1 MiB sequential reads of data written in
#      4 KiB and in 1 MiB requests, with the default max_record_size (64K)
#      and with 0 (one record per write, the default before 64K);
#   1d. max_record_size: the default (64K) against 0 (the old default) in
#      the same run, ratio new/old (> 1: the default is faster): 1 MiB
#      sequential writes, and 4 KiB random and 1 MiB sequential reads of
#      data written in 1 MiB requests;
#   1b. the same jobs through the nbd-export frontend with fio's nbd engine,
#      when both exist (BENCH_RUNTIME seconds each, default 5);
# BENCH_ONLY=max_record runs table 1d alone.
# BENCH_DIR: where the data goes (default /var/tmp).  Caches are dropped
# before each recovery when /proc/sys/vm/drop_caches is writable (root);
# otherwise the table says "warm".  Not part of the test suite.
set -euo pipefail

BUILD=$(readlink -f "${1:?usage: bench/log.sh BUILD-DIR}")
DIR=${BENCH_DIR:-/var/tmp}
BENCH=$BUILD/backends/log/log-bench
[[ -x $BENCH ]] || { echo "bench/log.sh: $BENCH is not built" >&2; exit 1; }
for p in log file; do
	[[ -f $BUILD/plugins/blkserv-backend-$p.so ]] ||
		{ echo "bench/log.sh: the $p backend is not built in $BUILD" >&2; exit 1; }
done

TMP=$(mktemp -d "$DIR/blkserv-bench-log.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
# log-bench needs a frontend section; it never starts it.  One socket path
# per device: the config refuses two devices on one.
frontend() {
	if [[ -f $BUILD/plugins/blkserv-frontend-nbd-export.so ]]; then
		echo 'frontend "nbd-export" { unix = "'"$TMP/unused-$1.sock"'" }'
	else
		echo 'frontend "ublk" { }'
	fi
}

# conf SIZE LOG-OPTIONS: a config with device "log" and device "file".
conf() {
	cat >"$TMP/bench.conf" <<-CONF
		plugin_dir = "$BUILD/plugins"
		runtime_dir = "$TMP/run"
		device "log" {
		  size = $1
		  block_size = 4096
		  $(frontend log)
		  backend "log" {
		    dir = "$TMP/log"
		    $2
		  }
		}
		device "file" {
		  size = $1
		  block_size = 4096
		  $(frontend file)
		  backend "file" { path = "$TMP/file.img" }
		}
	CONF
}

run() { "$BENCH" "$TMP/bench.conf" "$@" 2>/dev/null; }
stat_of() { sed -n "s/^$1=//p"; }
fresh() { rm -rf "$TMP/log" "$TMP/file.img"; }
drop_caches() {
	sync
	if echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then echo cold; else echo warm; fi
}
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

# What the default max_record_size buys and costs, against the old default
# (one record per write), each measured BENCH_REPEAT times (default 3),
# old and new interleaved so load changes hit both; the median is shown.
median() { python3 -c "import statistics,sys; print(statistics.median(map(float, sys.argv[1:])))" "$@"; }
max_record_table() {
	echo
	echo "## max_record_size: default (64K) vs 0 (one record per write, the old default); 1 MiB writes of 256 MiB"
	echo
	echo "| workload | 0: MiB/s | 64K: MiB/s | 64K/0 |"
	echo "|---|---|---|---|"
	local -A mr_w mr_rr mr_sr
	local o n mr job
	for _ in $(seq "${BENCH_REPEAT:-3}"); do
		for mr in 0 64K; do
			fresh
			conf 256M "max_record_size = $mr"
			mr_w[$mr]+=" $(run log write seq 1048576 268435456 8 0 | head -1 | awk '{print $2}')"
			mr_rr[$mr]+=" $(run log read rand 4096 33554432 1 | head -1 | awk '{print $2}')"
			mr_sr[$mr]+=" $(run log read seq 1048576 1073741824 1 | head -1 | awk '{print $2}')"
		done
	done
	for job in "seq 1M write:mr_w" "rand 4k read:mr_rr" "seq 1M read:mr_sr"; do
		declare -n arr=${job#*:}
		# shellcheck disable=SC2086 # lists of figures
		o=$(median ${arr[0]}) n=$(median ${arr[64K]})
		echo "| ${job%:*} | $o | $n | $(ratio "$n" "$o") |"
		unset -n arr
	done
}
# BENCH_ONLY=max_record: that table alone.
if [[ ${BENCH_ONLY:-} == max_record ]]; then
	max_record_table
	exit 0
fi

echo "## log backend vs file backend ($(uname -r), $DIR: $(df -T "$DIR" | awk 'NR==2 {print $2}'))"
echo
echo "| workload | file MiB/s | log MiB/s | log/file |"
echo "|---|---|---|---|"
conf 1G ""
while read -r name mode bs total flush; do
	fresh
	f=$(run file write "$mode" "$bs" "$total" 8 "$flush" | head -1 | awk '{print $2}')
	fresh
	l=$(run log write "$mode" "$bs" "$total" 8 "$flush" | head -1 | awk '{print $2}')
	echo "| $name | $f | $l | $(ratio "$l" "$f") |"
done <<-JOBS
	seq-1M 	seq 1048576 536870912 0
	rand-4k rand 4096 67108864 0
	rand-4k-flush16 rand 4096 16777216 16
JOBS

# Reads: every log read checks the checksum of each whole record it uses.
echo
echo "## reads (QD 1, warm page cache; the log verifies every record it reads)"
echo
echo "| data written as | read | file MiB/s | log MiB/s | log/file |"
echo "|---|---|---|---|---|"
while read -r wbs opts rmode rbs rtotal; do
	fresh
	[[ $opts == - ]] && opts=""
	conf 256M "$opts"
	run file write seq "$wbs" 268435456 8 0 >/dev/null
	run log write seq "$wbs" 268435456 8 0 >/dev/null
	f=$(run file read "$rmode" "$rbs" "$rtotal" 1 | head -1 | awk '{print $2}')
	l=$(run log read "$rmode" "$rbs" "$rtotal" 1 | head -1 | awk '{print $2}')
	echo "| $wbs-byte writes ${opts:+($opts)} | $rmode $rbs | $f | $l | $(ratio "$l" "$f") |"
done <<-JOBS
	4096 - rand 4096 268435456
	4096 - seq 1048576 1073741824
	1048576 - seq 1048576 1073741824
	1048576 max_record_size=0 seq 1048576 1073741824
	1048576 max_record_size=0 rand 4096 16777216
	1048576 - rand 4096 67108864
JOBS

max_record_table
conf 1G ""

# The same through the NBD export and fio's nbd engine, when both exist: the
# path a client sees (one connection; fio keeps QD requests in flight).
nbd_table() {
	local p
	fresh
	cat >"$TMP/nbd.conf" <<-CONF
		plugin_dir = "$BUILD/plugins"
		runtime_dir = "$TMP/run"
		device "log" {
		  size = 1G
		  block_size = 4096
		  frontend "nbd-export" { unix = "$TMP/log.sock" }
		  backend "log" { dir = "$TMP/log" }
		}
		device "file" {
		  size = 1G
		  block_size = 4096
		  frontend "nbd-export" { unix = "$TMP/file.sock" }
		  backend "file" { path = "$TMP/file.img" }
		}
	CONF
	"$BUILD/daemon/blkservd" -c "$TMP/nbd.conf" >"$TMP/blkservd.log" 2>&1 &
	p=$!
	for _ in $(seq 100); do [[ -S $TMP/log.sock && -S $TMP/file.sock ]] && break; sleep 0.1; done
	echo
	echo "## through the NBD export (fio nbd engine, one connection, ${RUNTIME}s each)"
	echo
	echo "| workload | file MiB/s | log MiB/s | log/file |"
	echo "|---|---|---|---|"
	while IFS='|' read -r name args; do
		local f l
		# shellcheck disable=SC2086 # args is a list of fio options
		f=$(nbd_fio file $args)
		# shellcheck disable=SC2086
		l=$(nbd_fio log $args)
		echo "| $name | $f | $l | $(ratio "$l" "$f") |"
	done <<-JOBS
		1 MiB write QD8|--rw=write --bs=1M --iodepth=8
		4k randwrite QD32|--rw=randwrite --bs=4k --iodepth=32
		4k randwrite QD32, fsync every 16|--rw=randwrite --bs=4k --iodepth=32 --fsync=16
	JOBS
	kill "$p"
	wait "$p" || true
}
nbd_fio() { # DEVICE FIO-ARGS...: MiB/s written
	local dev=$1
	shift
	fio --name=bench --ioengine=nbd --uri="nbd+unix:///$dev?socket=$TMP/$dev.sock" --size=1G \
		--time_based --runtime="$RUNTIME" --output-format=json "$@" >"$TMP/fio.json" 2>/dev/null
	python3 -c "import json,sys; t=open(sys.argv[1]).read(); j=json.loads(t[t.index('{'):])['jobs'][0]; \
print('%.1f' % (j['write']['bw_bytes'] / 2**20))" "$TMP/fio.json"
}
RUNTIME=${BENCH_RUNTIME:-5}
if [[ -f $BUILD/plugins/blkserv-frontend-nbd-export.so && -x $BUILD/daemon/blkservd ]] &&
	fio --enghelp 2>/dev/null | grep -qw nbd; then
	nbd_table
else
	echo
	echo "(no NBD export table: needs the nbd-export frontend and fio with its nbd engine)"
fi

echo
echo "## recovery time (1 GiB device, 1 MiB writes)"
echo
echo "| log | replayed | start time | per GiB of log | cache |"
echo "|---|---|---|---|---|"
recovery() { # LABEL: open after whatever is in $TMP/log
	local c out t b
	c=$(drop_caches)
	out=$(run log open)
	t=$(echo "$out" | head -1)
	b=$(echo "$out" | stat_of log_bytes)
	r=$(echo "$out" | stat_of recovery_replayed_bytes)
	echo "| $1 | $((r >> 20)) MiB | ${t} s | $(python3 -c "print(f'{$t / ($b / 2**30):.3f} s')") | $c |"
}
fresh
conf 1G "checkpoint_interval = 0"
BLKSERV_BENCH_CRASH=1 run log write seq 1048576 1073741824 1 >/dev/null
recovery "1 GiB, crash, no checkpoint"
run log open >/dev/null                       # replays, then a clean stop: checkpoint
recovery "1 GiB, clean stop (checkpoint)"
BLKSERV_BENCH_CRASH=1 run log write seq 1048576 67108864 1 >/dev/null
recovery "1 GiB + 64 MiB tail after the checkpoint, crash"
conf 2G ""
fresh
BLKSERV_BENCH_CRASH=1 run log write seq 1048576 2147483648 1 >/dev/null
recovery "2 GiB, crash, checkpoint every 256 MiB"
fresh
conf 1G "checkpoint_interval = 0"
BLKSERV_BENCH_CRASH=1 run log write rand 4096 268435456 1 >/dev/null
recovery "256 MiB of random 4 KiB writes, crash, no checkpoint"
run log open >/dev/null
recovery "the same after a clean stop (checkpoint)"

echo
echo "## write amplification: 256 MiB device filled, then 1 GiB of random 4 KiB overwrites"
echo
echo "| compact_threshold | client bytes | disk bytes | write amplification | log size at end | compactions |"
echo "|---|---|---|---|---|---|"
for th in 50 25; do
	fresh
	conf 256M "segment_size = 16M
compact_threshold = $th"
	out=$(run log write seq 1048576 268435456 1; BLKSERV_BENCH_SETTLE=1 run log write rand 4096 1073741824 1)
	c=$(echo "$out" | stat_of client_write_bytes | paste -sd+ | bc)
	d=$(echo "$out" | stat_of disk_write_bytes | paste -sd+ | bc)
	s=$(echo "$out" | stat_of log_bytes | tail -1)
	n=$(echo "$out" | stat_of compactions | paste -sd+ | bc)
	echo "| $th % | $((c >> 20)) MiB | $((d >> 20)) MiB | $(ratio "$d" "$c") | $((s >> 20)) MiB | $n |"
done
