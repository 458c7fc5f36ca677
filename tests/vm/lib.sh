# shellcheck shell=dash
# lib.sh - helpers for scenarios that run inside the test VM.
#
# The in-VM init sources this file and then runs the scenario in a subshell, so
# every function below is available to a scenario without sourcing anything.
# Plain POSIX sh plus `local`: it runs under busybox ash (initramfs mode) and
# dash (systemd mode). Checks run one after the other, not in the background.
#
# Result protocol (parsed by run-scenario on the host):
#   BLKSERV-CHECK ok NAME
#   BLKSERV-CHECK fail NAME: WHY
#   BLKSERV-CHECK skip NAME: WHY
#   BLKSERV-DONE status=N          written by blkserv_main when all is over
# Every line goes to the console (for people) and to the results channel
# ($BLKSERV_RESULTS, the VM's second serial port) for the runner, so kernel
# messages on the console can never garble a result line.
#
# Scenario API (see README.md for examples):
#   log MSG...                      informational line on the console
#   ok NAME / fail NAME WHY / skip NAME WHY
#   skip_all WHY                    the scenario cannot run here: skip, stop
#   check NAME CMD...               ok if CMD exits 0, else fail (+ its output)
#   check_fails NAME CMD...         ok if CMD exits non-zero
#   check_eq NAME EXPECTED ACTUAL   ok if the strings are equal
#   must NAME CMD...                like check, but a failure ends the scenario
#   wait_for SECONDS CMD...         poll CMD until it succeeds or time runs out
#   wait_for_blockdev DEV [SECONDS] until DEV is a block device of size > 0
#   dev_size DEV                    size of a block device in bytes
#   drop_caches DEV                 next reads of DEV reach the device
#   fs_roundtrip PREFIX DEV [MIB]   mkfs.ext4, write, fsck, remount, checksum
#   fio_verify PREFIX DEV [FIO-ARGS...]  fio write + verify=crc32c on DEV
#   blkservd_start [-w PATH]... CONFIG [ARGS...]   start the daemon
#   blkservd_stop [EXPECTED-STATUS] stop it (SIGTERM) and check its exit status
#   blkservd_log                    print the daemon's log

BLKSERV_RESULTS=${BLKSERV_RESULTS:-/dev/ttyS1}
BLKSERV_TMP=${BLKSERV_TMP:-/tmp/blkserv}
BLKSERVD=${BLKSERVD:-/usr/sbin/blkservd}
BLKSERVCTL=${BLKSERVCTL:-/usr/sbin/blkservctl}
BLKSERV_PLUGIN_DIR=${BLKSERV_PLUGIN_DIR:-/usr/lib/blkservd/plugins}
BLKSERVD_LOG=$BLKSERV_TMP/blkservd.log
export BLKSERV_RESULTS BLKSERV_TMP BLKSERVD BLKSERVCTL BLKSERV_PLUGIN_DIR BLKSERVD_LOG

# Every result line is also kept here so init can tell whether anything failed.
_blkserv_checks=$BLKSERV_TMP/checks
# Path of the output log of the check running now (dumped by the watchdog).
_blkserv_current=$BLKSERV_TMP/current-check

# --- reporting ---------------------------------------------------------------

_emit() {
	echo "$*"
	echo "$*" >>"$_blkserv_checks"
	# The results channel may be absent when someone runs a scenario by hand.
	if [ -c "$BLKSERV_RESULTS" ]; then
		echo "$*" >>"$BLKSERV_RESULTS"
	fi
}

# Check names and reasons are single line; ": " separates a name from a reason.
_oneline() {
	printf '%s' "$*" | tr '\n\r\t' '   '
}

log() {
	echo "# $*"
}

ok() {
	_emit "BLKSERV-CHECK ok $(_oneline "$1")"
}

fail() {
	_emit "BLKSERV-CHECK fail $(_oneline "$1"): $(_oneline "${2:-failed}")"
	return 1
}

skip() {
	_emit "BLKSERV-CHECK skip $(_oneline "$1"): $(_oneline "${2:-skipped}")"
}

skip_all() {
	skip "${BLKSERV_SCENARIO:-scenario}" "$*"
	exit 0
}

# --- checks ------------------------------------------------------------------

_seconds_since() {
	awk -v t0="$1" '{ printf "%.2f", $1 - t0 }' /proc/uptime
}

# check NAME CMD...: run CMD with its output captured; on failure print the
# last lines of that output and report the exit status.
check() {
	local name="$1" log rc t0
	shift
	log="$BLKSERV_TMP/check.$$.log"
	echo "$log" >"$_blkserv_current"
	echo "== $name"
	t0=$(cut -d' ' -f1 /proc/uptime)
	if "$@" >"$log" 2>&1; then
		rc=0
	else
		rc=$?
	fi
	: >"$_blkserv_current"
	echo "   took $(_seconds_since "$t0") s"
	if [ "$rc" = 0 ]; then
		rm -f "$log"
		ok "$name"
		return 0
	fi
	echo "---- output of: $* (last 30 lines)"
	tail -n 30 "$log"
	echo "----"
	rm -f "$log"
	fail "$name" "exit status $rc from: $*"
}

# check_fails NAME CMD...: for negative tests, CMD must exit non-zero.
check_fails() {
	local name="$1"
	shift
	echo "== $name (must fail)"
	if "$@" >"$BLKSERV_TMP/check.$$.log" 2>&1; then
		fail "$name" "succeeded but should have failed: $*"
	else
		ok "$name"
	fi
}

check_eq() {
	if [ "$2" = "$3" ]; then
		ok "$1"
	else
		fail "$1" "expected '$2', got '$3'"
	fi
}

# must NAME CMD...: a step later checks depend on; if it fails, stop here.
must() {
	check "$@" || exit 1
}

# --- waiting and devices -----------------------------------------------------

# wait_for SECONDS CMD...: poll every 0.1 s; return 1 if time runs out.
wait_for() {
	local tries=$(($1 * 10))
	shift
	while ! "$@" >/dev/null 2>&1; do
		tries=$((tries - 1))
		[ "$tries" -gt 0 ] || return 1
		sleep 0.1
	done
}

dev_size() {
	blockdev --getsize64 "$1"
}

# writes_done DISK: the writes DISK (ublkb0, not /dev/...) has completed
# (field 5 of /sys/block/DISK/stat).
writes_done() {
	awk '{ print $5 }' "/sys/block/$1/stat"
}

# wait_writes SECONDS DISK N: wait until DISK has completed N more writes
# than when called, so a writer started in the background is known to be
# writing (not merely started, nor already done) when a scenario kills the
# daemon under it.
wait_writes() {
	local base
	base=$(writes_done "$2")
	wait_for "$1" _writes_beyond "$2" $((base + $3))
}

_writes_beyond() {
	[ "$(writes_done "$1")" -ge "$2" ]
}

_blockdev_ready() {
	[ -b "$1" ] && [ "$(blockdev --getsize64 "$1" 2>/dev/null || echo 0)" -gt 0 ]
}

wait_for_blockdev() {
	wait_for "${2:-20}" _blockdev_ready "$1"
}

# Make the next read of DEV come from the device, not from the page cache.
drop_caches() {
	sync
	blockdev --flushbufs "$1" 2>/dev/null
	echo 3 >/proc/sys/vm/drop_caches
}

# --- data assertions ---------------------------------------------------------

# fs_roundtrip PREFIX DEV [MIB]: the standard filesystem data check.
# mkfs.ext4 -> mount -> write MIB random MiB and hash them -> umount ->
# e2fsck -fn must be clean -> drop caches -> mount again -> same hash.
# Needs the tools mkfs.ext4 and e2fsck and the file /etc/mke2fs.conf.
fs_roundtrip() {
	local p="$1" dev="$2" mib="${3:-20}" mnt="$BLKSERV_TMP/mnt" sum
	mkdir -p "$mnt"
	must "$p: mkfs.ext4" mkfs.ext4 -q -F "$dev"
	must "$p: mount" mount -t ext4 "$dev" "$mnt"
	must "$p: write $mib MiB" dd if=/dev/urandom of="$mnt/data" bs=1M count="$mib" conv=fsync
	sum=$(sha256sum <"$mnt/data")
	must "$p: umount" umount "$mnt"
	drop_caches "$dev"
	check "$p: e2fsck -fn clean" e2fsck -fn "$dev"
	drop_caches "$dev"
	must "$p: mount again" mount -t ext4 "$dev" "$mnt"
	check_eq "$p: sha256 after remount" "$sum" "$(sha256sum <"$mnt/data")"
	must "$p: final umount" umount "$mnt"
}

# fio_verify PREFIX DEV [FIO-ARGS...]: 16 MiB of 4k random writes at queue
# depth 16, O_DIRECT via libaio (io_uring verify reads are 2-3x slower on nbd under TCG), each block checksummed (crc32c) and read
# back; later FIO-ARGS override the defaults. Needs the tool fio.
fio_verify() {
	local p="$1" dev="$2"
	shift 2
	check "$p: fio randwrite verify=crc32c" fio --name=verify \
		--filename="$dev" --rw=randwrite --bs=4k --size=16M \
		--iodepth=16 --ioengine=libaio --direct=1 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 "$@"
}

# --- the daemon --------------------------------------------------------------

# install_blkservd_unit: (systemd mode) the build's unit, udev rule and
# modules-load file, with the build's paths (prefix /usr/local) made the
# VM's.
install_blkservd_unit() {
	local extra=$BLKSERV_EXTRA/systemd
	sed "s|^ExecStart=.*|ExecStart=$BLKSERVD --config /etc/blkservd.conf|; s|^ExecStartPre=/.*blkservd |ExecStartPre=$BLKSERVD --config /etc/blkservd.conf |" \
		"$extra/blkservd.service" >/etc/systemd/system/blkservd.service &&
		cp "$extra/60-blkservd.rules" /etc/udev/rules.d/ &&
		cp "$extra/modules-load.conf" /etc/modules-load.d/blkservd.conf &&
		systemctl restart systemd-modules-load &&
		udevadm control --reload && systemctl daemon-reload
}

_alive() {
	[ -r "/proc/$1/stat" ] && [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)" != Z ]
}

_dead() {
	! _alive "$1"
}

_all_exist() {
	local path
	for path in "$@"; do
		[ -e "$path" ] || return 1
	done
}

# blkservd_start [-w PATH]... CONFIG [ARGS...]: start $BLKSERVD --config CONFIG
# in the background (it must stay in the foreground, as under systemd), with
# its output in $BLKSERVD_LOG; then wait up to $BLKSERVD_START_TIMEOUT (20) s
# for every PATH to exist (a device node, the control socket, ...). Reports
# the check "blkservd start"; returns 1 if the daemon died or timed out.
blkservd_start() {
	local waits="" config
	while [ "${1:-}" = -w ]; do
		waits="$waits $2"
		shift 2
	done
	config="$1"
	shift
	echo "== blkservd --config $config $*" | tee -a "$BLKSERVD_LOG"
	"$BLKSERVD" --config "$config" "$@" >>"$BLKSERVD_LOG" 2>&1 &
	BLKSERVD_PID=$!
	# shellcheck disable=SC2086 # $waits is a list of paths
	if ! wait_for "${BLKSERVD_START_TIMEOUT:-20}" _started "$BLKSERVD_PID" $waits; then
		fail "blkservd start" "not ready after ${BLKSERVD_START_TIMEOUT:-20} s (waiting for:$waits)"
		return 1
	fi
	if _dead "$BLKSERVD_PID"; then
		wait "$BLKSERVD_PID"
		fail "blkservd start" "exited with status $? during start; log: $(tail -n 3 "$BLKSERVD_LOG")"
		BLKSERVD_PID=
		return 1
	fi
	ok "blkservd start"
}

# The daemon is ready (every path exists) or gave up (exited).
_started() {
	local pid="$1"
	shift
	_dead "$pid" || _all_exist "$@"
}

# blkservd_stop [EXPECTED-STATUS]: SIGTERM, then the daemon has 20 s to exit
# with EXPECTED-STATUS (default 0). Reports the check "blkservd stop".
blkservd_stop() {
	local want="${1:-0}" rc
	[ -n "${BLKSERVD_PID:-}" ] || {
		fail "blkservd stop" "blkservd_start was not called"
		return 1
	}
	kill -TERM "$BLKSERVD_PID" 2>/dev/null
	if ! wait_for 20 _dead "$BLKSERVD_PID"; then
		kill -KILL "$BLKSERVD_PID" 2>/dev/null
		fail "blkservd stop" "still running 20 s after SIGTERM"
		return 1
	fi
	wait "$BLKSERVD_PID"
	rc=$?
	BLKSERVD_PID=
	check_eq "blkservd stop" "exit status $want" "exit status $rc"
}

blkservd_log() {
	echo "---- $BLKSERVD_LOG"
	cat "$BLKSERVD_LOG" 2>/dev/null
	echo "----"
}

# --- writers that prove what was acknowledged survives ----------------------

# fsync_writer NAME DIR: until the file $STOP exists, write numbered 64 KiB
# files into DIR; each is recorded in $state/NAME.rec with its sha256 only
# after dd's fsync returned.  A failed write goes to $state/NAME.err with
# dd's message (dd's transfer report on success is not an error).
fsync_writer() {
	local name=$1 dir=$2 n=0 src=$state/$1.src
	while [ ! -e "$STOP" ]; do
		n=$((n + 1))
		head -c 65536 /dev/urandom >"$src"
		if dd if="$src" of="$dir/f$n" bs=65536 conv=fsync 2>"$state/$name.dd"; then
			echo "f$n $(sha256sum <"$src" | cut -d' ' -f1)" >>"$state/$name.rec"
		else
			{ echo "write of f$n failed:"; cat "$state/$name.dd"; } >>"$state/$name.err"
		fi
	done
}

# verify_records NAME DIR: every file fsync_writer recorded has its sha256,
# and there is at least one.
verify_records() {
	local name=$1 dir=$2 f sum bad=0 count=0
	while read -r f sum; do
		count=$((count + 1))
		[ "$(sha256sum <"$dir/$f" | cut -d' ' -f1)" = "$sum" ] || { echo "$f differs"; bad=$((bad + 1)); }
	done <"$state/$name.rec"
	echo "$name: $count recorded files, $bad differ"
	[ "$count" -gt 0 ] && [ "$bad" = 0 ]
}

# writer_ok NAME: fsync_writer saw no failed write (prints them if it did).
writer_ok() {
	! test -s "$state/$1.err" || { cat "$state/$1.err"; false; }
}

# --- driving a scenario (used by init, not by scenarios) ---------------------

# Print what helps to debug a failure: the check running now, blocked tasks,
# the kernel log and the daemon log.
blkserv_diagnose() {
	echo "==== BLKSERV diagnostics: $*"
	if [ -s "$_blkserv_current" ] && [ -f "$(cat "$_blkserv_current")" ]; then
		echo "---- output of the check running last (tail)"
		tail -n 30 "$(cat "$_blkserv_current")"
	fi
	if [ "${2:-}" = blocked ]; then
		echo "---- user-space processes"
		# shellcheck disable=SC2009 # busybox pgrep cannot list; drop kthreads
		ps | grep -v ' \[.*\]$'
		# sysrq-w: stack traces of tasks in D state, into the kernel log.
		echo w >/proc/sysrq-trigger 2>/dev/null
		sleep 1
	fi
	# With blocked tasks, all of sysrq-w's stacks: the task holding the
	# lock the others wait for can be any of them.
	local lines=80
	[ "${2:-}" = blocked ] && lines=400
	echo "---- kernel messages since the scenario started (last $lines)"
	dmesg | awk -v t0="${_blkserv_t0:-0}" \
		'{ t = substr($0, 2, index($0, "]") - 2) + 0 } t >= t0' | tail -n "$lines"
	[ "${2:-}" = blocked ] && _blkserv_blk_state
	[ -f "$BLKSERVD_LOG" ] && blkservd_log
	if command -v journalctl >/dev/null 2>&1; then
		echo "---- journal of blkservd (last 60)"
		journalctl -b -u blkservd --no-pager 2>/dev/null | tail -n 60
	fi
	echo "==== end of diagnostics"
}

# The block layer's view of the devices (debugfs): requests started but
# not completed, and what waits on the requeue list.  Every disk but the
# VM's own virtio disks: a dblock disk has whatever name its config gives.
_blkserv_blk_state() {
	local d f out
	[ -d /sys/kernel/debug/block ] || mount -t debugfs none /sys/kernel/debug 2>/dev/null
	for d in /sys/kernel/debug/block/*; do
		case ${d##*/} in vd* | loop* | ram*) continue ;; esac
		[ -d "$d" ] || continue
		# debugfs files have no size: read each, print what is not empty.
		for f in "$d"/state "$d"/requeue_list "$d"/hctx*/busy "$d"/hctx*/dispatch "$d"/hctx*/state \
			"$d"/hctx*/tags; do
			[ -e "$f" ] || continue
			out=$(head -n 20 "$f" 2>/dev/null)
			[ -n "$out" ] && printf -- '---- %s\n%s\n' "$f" "$out"
		done
	done
}

_kernel_problem() {
	dmesg | grep -E -m1 -f "${BLKSERV_KERNEL_PROBLEMS:-/etc/blkserv/kernel-problems}"
}

_uptime() {
	cut -d. -f1 /proc/uptime
}

# blkserv_main SCENARIO-FILE WATCHDOG-SECONDS: run the scenario in a subshell,
# watch it, report, write the final marker. Fails the scenario when it
# outlives the watchdog or the kernel logs an oops, BUG, hung task, ...
blkserv_main() {
	local file="$1" watchdog="$2" pid deadline problem="" timed_out="" status=0 rc
	mkdir -p "$BLKSERV_TMP"
	: >"$_blkserv_checks"
	_blkserv_t0=$(cut -d' ' -f1 /proc/uptime)
	_emit "BLKSERV-BOOTED uptime=$_blkserv_t0"
	deadline=$(($(_uptime) + watchdog))

	(
		cd "$BLKSERV_TMP" || exit 1
		# shellcheck disable=SC1090 # the scenario is chosen at run time
		. "$file"
	) &
	pid=$!
	while _alive "$pid"; do
		problem=$(_kernel_problem) && break
		if [ "$(_uptime)" -ge "$deadline" ]; then
			timed_out=1
			break
		fi
		sleep 0.5
	done
	[ -n "$problem" ] || [ -n "$timed_out" ] || problem=$(_kernel_problem) || true

	if [ -n "$problem" ]; then
		sleep 2 # let the kernel finish printing its report
		fail kernel "$problem"
		blkserv_diagnose "kernel problem" blocked
		status=1
	elif [ -n "$timed_out" ]; then
		fail watchdog "scenario still running after $watchdog s"
		blkserv_diagnose "watchdog expired" blocked
		status=1
	else
		wait "$pid"
		rc=$?
		if [ "$rc" != 0 ] && ! grep -q '^BLKSERV-CHECK fail' "$_blkserv_checks"; then
			fail scenario "exited with status $rc"
		fi
		if ! grep -q '^BLKSERV-CHECK' "$_blkserv_checks"; then
			fail scenario "reported no checks"
		fi
		if grep -q '^BLKSERV-CHECK fail' "$_blkserv_checks"; then
			blkserv_diagnose "a check failed"
			status=1
		fi
	fi
	_emit "BLKSERV-DONE status=$status"
}
