#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/outlive.sh BUILD-DIR: the I/O pause each way of replacing the daemon
# causes, per kernel frontend, in one VM with systemd as PID 1 (Debian's
# 6.12 cloud kernel under qemu TCG, through tests/vm/run-scenario).
#
# For each frontend (nbd, ublk, dblock; each over the ramdisk) fio writes
# 4k blocks at QD1 (libaio, O_DIRECT) for BENCH_RUNTIME seconds while,
# BENCH_RUNTIME/3 seconds in, one event replaces the daemon:
#   upgrade   blkservctl upgrade (re-exec in place, same PID)
#   restart   systemctl restart blkservd
#   crash     kill -9 of MainPID (systemd restarts it after RestartSec=1s)
# The pause is the longest single request latency fio saw (clat max), next
# to the longest with no event in the same run (the baseline): a user
# notices the difference.  Prints a Markdown table; also fio's errors (any
# is a failure of the run).
#   BENCH_RUNTIME=15  seconds of fio per measurement
set -euo pipefail
source "$(dirname "$(readlink -f "$0")")/lib.sh"

bench_init outlive "${1:?usage: bench/outlive.sh BUILD-DIR}"
RUNTIME=${BENCH_RUNTIME:-15}
[[ -f $BUILD/frontends/dblock/kmod/dblock.ko ]] && DBLOCK=1 || DBLOCK=0

{
	cat <<EOF
# shellcheck shell=dash
# mode: systemd
# modules: nbd ublk_drv
EOF
	[[ $DBLOCK == 1 ]] && echo "# kmods: frontends/dblock/kmod/dblock.ko"
	cat <<EOF
# requires: daemon/blkservd daemon/blkservctl plugins/blkserv-backend-ramdisk.so tests/vm/extra/systemd/blkservd.service
# timeout: 1500
# cmdline: sysctl.kernel.hung_task_timeout_secs=90
runtime=$RUNTIME
dblock=$DBLOCK
EOF
	cat <<'EOF'
install_blkservd_unit
[ "$dblock" = 1 ] && must "modprobe dblock" modprobe dblock
{
	echo "plugin_dir = \"$BLKSERV_PLUGIN_DIR\""
	echo 'device "nbd" { size = 128M frontend "nbd" { } backend "ramdisk" { } }'
	echo 'device "ublk" { size = 128M frontend "ublk" { } backend "ramdisk" { } }'
	[ "$dblock" = 1 ] && echo 'device "dblock" { size = 128M block_size = 4096 frontend "dblock" { } backend "ramdisk" { } }'
} >/etc/blkservd.conf
must "systemctl start blkservd" systemctl start blkservd
frontends="nbd ublk"
[ "$dblock" = 1 ] && frontends="$frontends dblock"
for f in $frontends; do must "/dev/blkserv/$f appears" wait_for 60 test -b "/dev/blkserv/$f"; done

main_pid() { systemctl show -p MainPID --value blkservd; }

# measure FRONTEND EVENT: one fio run with EVENT a third of the way in;
# "PAUSE-JSON FRONTEND EVENT {fio json}" on the results port.
measure() {
	local f=$1 ev=$2 out=$BLKSERV_TMP/fio-$1-$2.json line
	fio --name=pause --filename="/dev/blkserv/$f" --rw=randwrite --bs=4k --iodepth=1 \
		--ioengine=libaio --direct=1 --size=64M --time_based --runtime="$runtime" \
		--output-format=json --output="$out" >/dev/null 2>&1 &
	local fio=$!
	sleep $((runtime / 3))
	case $ev in
	upgrade) $BLKSERVCTL upgrade >/dev/null 2>&1 ;;
	restart) systemctl restart blkservd ;;
	crash) kill -9 "$(main_pid)" ;;
	none) ;;
	esac
	wait "$fio"
	# The host reads fio's JSON (long: to the results port only).
	line="PAUSE-JSON $f $ev $(tr -s ' \n\t' '   ' <"$out")"
	if [ -c "$BLKSERV_RESULTS" ]; then echo "$line" >>"$BLKSERV_RESULTS"; else echo "$line"; fi
	wait_for 60 systemctl is-active -q blkservd
	for d in $frontends; do wait_for 60 test -b "/dev/blkserv/$d"; done
	sleep 2
}

for f in $frontends; do
	for ev in none upgrade restart crash; do
		measure "$f" "$ev"
	done
done
ok "measured"
EOF
} >"$TMP/bench-outlive.sh"

echo "load before: $(bench_load)" >&2
echo "running the benchmark VM (about $((RUNTIME * 12 / 60 + 3)) minutes under TCG)..." >&2
results=$(bench_run_vm "$TMP/bench-outlive.sh") || exit 1
grep -q '^PAUSE-JSON ' "$results" || { echo "bench/outlive.sh: the VM reported no figures" >&2; exit 1; }
echo "load after: $(bench_load)" >&2

python3 - "$results" <<'PY'
import json, sys
pause, errors = {}, {}
for line in open(sys.argv[1], errors="replace"):
    if not line.startswith("PAUSE-JSON "):
        continue
    _, f, ev, text = line.rstrip("\r\n").split(" ", 3)
    job = json.loads(text[text.index("{"):])["jobs"][0]
    pause[f, ev] = job["write"]["clat_ns"]["max"] / 1e6
    errors[f, ev] = job["error"]
print("| frontend | longest request, no event (ms) | upgrade (ms) | restart (ms) | crash (ms) | fio errors |")
print("|---|---|---|---|---|---|")
for f in ("nbd", "ublk", "dblock"):
    if (f, "none") not in pause:
        continue
    cells = [f"{pause.get((f, e), float('nan')):.1f}" for e in ("none", "upgrade", "restart", "crash")]
    errs = sum(errors.get((f, e), 1) != 0 for e in ("none", "upgrade", "restart", "crash"))
    print(f"| {f} | " + " | ".join(cells) + f" | {errs} |")
sys.exit(1 if any(errors.values()) else 0)
PY
