#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The rbd backend in the real daemon against a real one-node Ceph cluster
# (ceph-cluster.sh: one monitor, one memstore OSD, no auth, 127.0.0.1 only,
# started here and removed at exit), served through nbd-export to clients
# we did not write.  Checks, in order:
#   1. test-rbd's cluster cases (open, create, sizes, every op on a queue,
#      the exclusive lock) against this cluster;
#   2. nbdinfo sees flush, FUA, trim and zero;
#   3. nbdcopy of random data into the export reads back with `rbd export`
#      byte for byte; an image filled by `rbd import` reads back through the
#      export byte for byte;
#   4. fio (nbd engine) random writes of mixed sizes with flushes,
#      verify=crc32c;
#   5. flush, discard and write-zeroes reach librbd (its perf counters,
#      through the daemon's client admin socket) and the cluster (`rbd du`
#      shrinks after a discard); zeroed ranges read back as zeros;
#   6. a second daemon on the same image is refused (exclusive lock), and a
#      foreign writer (`rbd bench`) fails while the daemon serves it;
#   7. the cluster killed under a running fio: I/O errors, no hang (every
#      client command runs under a generous `timeout`, the daemon's is 5 s),
#      and the daemon still stops.
# Exit 77 when Ceph, a client tool, or a plugin is missing.
set -euo pipefail

BLKSERVD=${BLKSERVD:?run through meson test}
PLUGINS=${BLKSERV_PLUGIN_DIR:?run through meson test}
CEPH_CLUSTER=${CEPH_CLUSTER:?run through meson test}
skip() {
	echo "SKIP: $*"
	exit 77
}
why=$("$CEPH_CLUSTER" available) || skip "$why (Debian: ceph-mon ceph-osd ceph-common)"
for t in fio nbdinfo nbdcopy qemu-io python3 timeout; do
	command -v "$t" >/dev/null || skip "$t is not installed"
done
fio --enghelp 2>/dev/null | grep -qw nbd || skip "fio has no nbd engine"
[[ -f $PLUGINS/blkserv-backend-rbd.so ]] || skip "the rbd backend is not built (librbd-dev missing)"
[[ -f $PLUGINS/blkserv-frontend-nbd-export.so ]] || skip "nbd-export is not built"

TMP=$(mktemp -d /tmp/blkserv-rbd.XXXXXX)
CL=$TMP/ceph
PID=
cleanup() {
	set +e # clean up everything, whatever fails
	if [[ -n $PID ]]; then
		kill -KILL "$PID" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
	fi
	"$CEPH_CLUSTER" stop "$CL" || true
	rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	echo "---- daemon log"
	cat "$TMP/blkservd.log" 2>/dev/null || true
	exit 1
}
M=$((1 << 20))

echo "starting a one-node Ceph cluster"
"$CEPH_CLUSTER" start "$CL" || {
	rc=$?
	tail -n 20 "$CL"/log/*.log 2>/dev/null || true
	[[ $rc == 77 ]] && skip "Ceph programs missing"
	fail "the cluster did not start"
}
CONF=$CL/ceph.conf
rbd_() { timeout 120 rbd -c "$CONF" "$@"; }

# 1. The unit test's cluster cases.
if [[ -n ${BLKSERV_RBD_UNIT_TEST:-} ]]; then
	BLKSERV_RBD_TEST_CONF=$CONF timeout 300 "$BLKSERV_RBD_UNIT_TEST" >"$TMP/unit.log" 2>&1 ||
		{ cat "$TMP/unit.log"; fail "test-rbd against the cluster"; }
	grep -q SKIPPED "$TMP/unit.log" && { cat "$TMP/unit.log"; fail "test-rbd skipped a cluster case"; }
	echo "ok: test-rbd against the cluster"
fi

# The daemon's client gets an admin socket (perf counters); everything else
# is the cluster's config.
sed "s|^admin_socket =\$|admin_socket = $TMP/client.asok|" "$CONF" >"$TMP/daemon-ceph.conf"
head -c $((64 * M)) /dev/urandom >"$TMP/in.img"
head -c $((32 * M)) /dev/urandom >"$TMP/imported.img"
rbd_ create --size 64M rbd/written
rbd_ import --no-progress "$TMP/imported.img" rbd/imported

rbd_section() {
	cat <<-EOF
		  backend "rbd" {
		    pool = "rbd"  image = "$1"  conf = "$TMP/daemon-ceph.conf"  timeout = 5  $2
		  }
	EOF
}
cat >"$TMP/conf" <<EOF
plugin_dir = "$PLUGINS"
runtime_dir = "$TMP/run"
device "written" {
  block_size = 4096
  frontend "nbd-export" { unix = "$TMP/written.sock" }
$(rbd_section written "")
}
device "imported" {
  frontend "nbd-export" { unix = "$TMP/imported.sock" }
$(rbd_section imported "")
}
device "created" {
  size = 64M
  block_size = 512
  frontend "nbd-export" { unix = "$TMP/created.sock" }
$(rbd_section created "create = true")
}
EOF
"$BLKSERVD" -c "$TMP/conf" >"$TMP/blkservd.log" 2>&1 &
PID=$!
for _ in $(seq 300); do
	[[ -S $TMP/written.sock && -S $TMP/imported.sock && -S $TMP/created.sock ]] && break
	kill -0 "$PID" 2>/dev/null || fail "the daemon exited"
	sleep 0.1
done
[[ -S $TMP/created.sock ]] || fail "the daemon did not start"
uri() { echo "nbd+unix:///$1?socket=$TMP/$1.sock"; }

# 2. Capabilities.
info=$(timeout 60 nbdinfo "$(uri written)")
for cap in can_flush can_fua can_trim can_zero; do
	grep -q "$cap: true" <<<"$info" || fail "nbdinfo says no $cap"
done
grep -q "export-size: $((64 * M))" <<<"$info" || fail "wrong size: $info"
echo "ok: capabilities"

# 3. Both directions, byte for byte.
timeout 120 nbdcopy "$TMP/in.img" "$(uri written)" || fail "nbdcopy into the export"
rbd_ export --no-progress rbd/written "$TMP/out.img" >/dev/null
cmp "$TMP/in.img" "$TMP/out.img" || fail "rbd export differs from what nbdcopy wrote"
timeout 120 nbdcopy "$(uri imported)" "$TMP/read.img" || fail "nbdcopy from the export"
cmp "$TMP/imported.img" "$TMP/read.img" || fail "the export differs from what rbd import wrote"
echo "ok: nbdcopy -> rbd export and rbd import -> nbdcopy, byte for byte"

# 4. fio verify (512-byte block device: unaligned-to-4k requests too).
timeout 300 fio --name=verify --ioengine=nbd --uri="$(uri created)" --size=48M --rw=randwrite \
	--bsrange=512-256k --blockalign=512 --iodepth=16 --fsync=32 \
	--verify=crc32c --do_verify=1 --verify_fatal=1 >"$TMP/fio.log" 2>&1 ||
	{ cat "$TMP/fio.log"; fail "fio verify"; }
echo "ok: fio verify=crc32c"

# 5. Flush, discard and write-zeroes reach librbd and the cluster.
counter() { # counter NAME: librbd's perf counter NAME for image "written"
	timeout 60 ceph --admin-daemon "$TMP/client.asok" perf dump | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(v.get(sys.argv[1], 0) for k, v in d.items() if k.startswith("librbd-") and k.endswith("-rbd-written")))
' "$1"
}
used() { rbd_ du --format json rbd/written | python3 -c 'import json,sys; print(json.load(sys.stdin)["images"][0]["used_size"])'; }
flush0=$(counter flush) discard0=$(counter discard) ws0=$(counter ws)
used0=$(used)
timeout 60 qemu-io -f raw "$(uri written)" \
	-c "discard 0 $((16 * M))" \
	-c "write -z $((20 * M)) $((2 * M))" \
	-c "flush" \
	-c "read -P 0 $((20 * M)) $((2 * M))" >"$TMP/qemu-io.log" 2>&1 ||
	{ cat "$TMP/qemu-io.log"; fail "qemu-io discard/zero/flush"; }
! grep -Eqi 'fail|error' "$TMP/qemu-io.log" || { cat "$TMP/qemu-io.log"; fail "discard/zero/flush"; }
flush1=$(counter flush) discard1=$(counter discard) ws1=$(counter ws)
used1=$(used)
((flush1 > flush0)) || fail "no flush reached librbd ($flush0 -> $flush1)"
((discard1 > discard0)) || fail "no discard reached librbd ($discard0 -> $discard1)"
((ws1 > ws0)) || fail "no write-zeroes reached librbd ($ws0 -> $ws1)"
((used1 < used0)) || fail "rbd du did not shrink after a 16 MiB discard ($used0 -> $used1)"
# The bytes around the zeroed range are still what nbdcopy wrote.
timeout 60 nbdcopy "$(uri written)" "$TMP/after.img" || fail "nbdcopy after discard"
cmp -n $((4 * M)) -i $((16 * M)) "$TMP/in.img" "$TMP/after.img" || fail "data beside the trim changed"
cmp -i $((22 * M)) "$TMP/in.img" "$TMP/after.img" || fail "data after the zeroed range changed"
echo "ok: flush, discard, write-zeroes reach the cluster (rbd du $used0 -> $used1 bytes)"

# 6. The exclusive lock.
sed -e "s|$TMP/written.sock|$TMP/second.sock|" -e "s|\"$TMP/run\"|\"$TMP/run2\"|" \
	-e '/^device "imported"/,$d' "$TMP/conf" >"$TMP/conf2"
if timeout 120 "$BLKSERVD" -c "$TMP/conf2" >"$TMP/second.log" 2>&1; then
	fail "a second daemon served the same image"
fi
grep -q "exclusive lock" "$TMP/second.log" || { cat "$TMP/second.log"; fail "second daemon: no lock error"; }
if rbd_ bench --io-type write --io-total 64K --io-size 4K rbd/written >"$TMP/bench.log" 2>&1; then
	fail "rbd bench wrote to an image the daemon holds exclusively"
fi
echo "ok: exclusive lock (second daemon refused: $(grep -o 'cannot take[^:]*' "$TMP/second.log" | head -1))"

# 7. Kill the cluster under a running fio.
timeout 300 fio --name=dead --ioengine=nbd --uri="$(uri created)" --size=48M --rw=randrw \
	--bs=4k --iodepth=8 --fsync=8 --time_based --runtime=120 >"$TMP/fio-dead.log" 2>&1 &
FIO=$!
sleep 3
kill -0 $FIO 2>/dev/null || { cat "$TMP/fio-dead.log"; fail "fio ended before the cluster was killed"; }
"$CEPH_CLUSTER" kill "$CL"
start=$SECONDS
rc=0
wait $FIO || rc=$?
[[ $rc == 124 ]] && fail "fio hung after the cluster died"
[[ $rc != 0 ]] || { cat "$TMP/fio-dead.log"; fail "fio saw no error with the cluster dead"; }
echo "ok: fio failed $((SECONDS - start)) s after the cluster died (exit $rc)"
rc=0
# (At 17 MiB: data nbdcopy wrote.  A trimmed range would read as zeros
# from librbd's object map without asking the cluster.)
timeout 120 qemu-io -f raw "$(uri written)" -c "read $((17 * M)) 4k" >"$TMP/dead-read.log" 2>&1 || rc=$?
[[ $rc == 124 ]] && fail "a read hung with the cluster dead"
grep -q 'read failed' "$TMP/dead-read.log" || { cat "$TMP/dead-read.log"; fail "a read did not fail"; }
rc=0
timeout 120 qemu-io -f raw "$(uri written)" -c "write $((17 * M)) 4k" -c flush >"$TMP/dead-flush.log" 2>&1 || rc=$?
[[ $rc == 124 ]] && fail "a write and flush hung with the cluster dead"
grep -q 'flush failed\|write failed' "$TMP/dead-flush.log" ||
	{ cat "$TMP/dead-flush.log"; fail "write + flush did not fail"; }
grep -q "rbd rbd/.*failed: Connection timed out" "$TMP/blkservd.log" || fail "no timeout logged"
echo "ok: dead cluster: reads and flushes fail (timed out), nothing hangs"

start=$SECONDS
kill -TERM "$PID"
rc=0
timeout 300 tail --pid="$PID" -f /dev/null || fail "the daemon did not stop with the cluster dead"
wait "$PID" || rc=$?
PID=
! grep -q 'Sanitizer' "$TMP/blkservd.log" "$TMP/second.log" || fail "a sanitizer reported an error"
echo "ok: the daemon stopped in $((SECONDS - start)) s with the cluster dead (exit $rc: the final flush failed)"
echo "PASS"
