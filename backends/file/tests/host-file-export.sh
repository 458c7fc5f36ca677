#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The file backend in the real daemon, through the nbd-export frontend, with
# clients we did not write (host suite; no root, no VM).  Two devices: page
# cache (block_size 4096) and O_DIRECT (block_size 512, so requests of any
# 512-byte alignment arrive).  Checks: capabilities as nbdinfo sees them; fio
# (nbd engine) random writes of mixed sizes with flushes, verify=crc32c;
# trim and write-zeroes (qemu-io) read back as zeros; qemu-img compare of the
# export with the backing file; a clean stop.  Exit 77 when a tool is missing.
set -euo pipefail

BLKSERVD=${BLKSERVD:?run through meson test}
PLUGINS=${BLKSERV_PLUGIN_DIR:?run through meson test}
for t in fio nbdinfo qemu-io qemu-img; do
	command -v "$t" >/dev/null || { echo "SKIP: $t is not installed"; exit 77; }
done
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "SKIP: fio has no nbd engine"; exit 77; }
[[ -f $PLUGINS/blkserv-frontend-nbd-export.so ]] || { echo "SKIP: nbd-export is not built"; exit 77; }

TMP=$(mktemp -d /var/tmp/blkserv-file-export.XXXXXX) # a disk file system: O_DIRECT
PID=
cleanup() {
	[[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	echo "---- daemon log"
	cat "$TMP/blkservd.log"
	exit 1
}

cat >"$TMP/conf" <<EOF
plugin_dir = "$PLUGINS"
runtime_dir = "$TMP/run"
device "cached" {
  size = 64M
  block_size = 4096
  frontend "nbd-export" { unix = "$TMP/cached.sock" }
  backend "file" { path = "$TMP/cached.img" }
}
device "direct" {
  size = 64M
  block_size = 512
  frontend "nbd-export" { unix = "$TMP/direct.sock" }
  backend "file" { path = "$TMP/direct.img"  direct = true }
}
EOF
"$BLKSERVD" -c "$TMP/conf" >"$TMP/blkservd.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
	[[ -S $TMP/cached.sock && -S $TMP/direct.sock ]] && break
	sleep 0.1
done
[[ -S $TMP/direct.sock ]] || fail "the daemon did not start"

for dev in cached direct; do
	uri="nbd+unix:///$dev?socket=$TMP/$dev.sock"
	bs=4096
	[[ $dev == direct ]] && bs=512
	info=$(nbdinfo "$uri")
	for cap in can_flush can_fua can_trim can_zero; do
		grep -q "$cap: true" <<<"$info" || fail "$dev: nbdinfo says no $cap"
	done
	fio --name=verify --ioengine=nbd --uri="$uri" --size=48M --rw=randwrite \
		--bsrange=$bs-128k --blockalign=$bs --iodepth=16 --fsync=32 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 >"$TMP/fio.log" 2>&1 ||
		{ cat "$TMP/fio.log"; fail "$dev: fio verify"; }
	# Trim 1 MiB at 50M and zero (FUA) 1 MiB + 1 KiB at 52M - 512: both read
	# as zeros, the bytes around them are intact.
	M=$((1 << 20))
	qemu-io -f raw "$uri" \
		-c "write -P 0x5a $((50 * M)) $((4 * M))" \
		-c "discard $((50 * M)) $M" \
		-c "write -z -f $((52 * M - 512)) $((M + 1024))" \
		-c "flush" \
		-c "read -P 0 $((50 * M)) $M" \
		-c "read -P 0 $((52 * M - 512)) $((M + 1024))" \
		-c "read -P 0x5a $((51 * M)) $((M - 512))" \
		-c "read -P 0x5a $((53 * M + 512)) $((M - 512))" >"$TMP/qemu-io.log" 2>&1 ||
		{ cat "$TMP/qemu-io.log"; fail "$dev: qemu-io"; }
	! grep -Eqi 'fail|error' "$TMP/qemu-io.log" || { cat "$TMP/qemu-io.log"; fail "$dev: trim/zero"; }
	qemu-img compare -f raw -F raw "$TMP/$dev.img" "$uri" >"$TMP/cmp.log" 2>&1 ||
		{ cat "$TMP/cmp.log"; fail "$dev: the export differs from the backing file"; }
	echo "ok: $dev"
done

kill -TERM "$PID"
wait "$PID" || fail "the daemon exited with status $?"
PID=
grep -q 'fdatasync.*failed' "$TMP/blkservd.log" && fail "a flush failed"
echo "PASS"
