#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# host-nbd-export.sh CHECK: the nbd-export frontend against NBD clients no
# one here wrote (libnbd-bin, qemu-utils, fio).  Starts blkservd from the
# build tree with a ramdisk (and a file-backed device) exported on a Unix
# socket and TCP, runs one CHECK, stops the daemon and checks it stopped
# cleanly.  Exit 0 pass, 1 fail, 77 skip (a tool is missing).
#   nbdinfo   size, flags, block sizes, read-only export
#   nbdcopy   random data in and out, same sha256 (Unix and TCP)
#   fio       fio's nbd engine: randwrite + verify=crc32c, ramdisk and file backend
#   qemu-img  qemu-img convert into the export, then qemu-img compare
#   clients   several clients at once, a malformed client, read-only writes refused
#   no-module the kernel frontend on a machine without the nbd module fails
#             cleanly, saying "modprobe nbd" (skipped where nbd is loaded)
set -euo pipefail

CHECK=${1:?usage: host-nbd-export.sh CHECK}
BLKSERVD=${BLKSERVD:?BLKSERVD is not set (run through meson test)}
BLKSERVCTL=${BLKSERVCTL:?BLKSERVCTL is not set (run through meson test)}
PLUGINS=${BLKSERV_PLUGIN_DIR:?BLKSERV_PLUGIN_DIR is not set}

TMP=$(mktemp -d /tmp/blkserv-nbd-host.XXXXXX)
DAEMON_PID=""
FAILED=0

cleanup() {
	if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -KILL "$DAEMON_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

skip() {
	echo "SKIP: $*"
	exit 77
}
fail() {
	echo "FAIL: $*"
	FAILED=1
}
ok() { echo "ok: $*"; }
need() {
	for t in "$@"; do
		command -v "$t" >/dev/null || skip "$t is not installed"
	done
}

# A TCP port nothing listens on (best effort: the kernel picks one).
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

PORT=$(free_port)
SOCK=$TMP/ram0.sock
RO_SOCK=$TMP/ro.sock
FILE_SOCK=$TMP/file0.sock
URI="nbd+unix:///ram0?socket=$SOCK"
TCP_URI="nbd://127.0.0.1:$PORT/ram0"
RO_URI="nbd+unix:///ro?socket=$RO_SOCK"
FILE_URI="nbd+unix:///file0?socket=$FILE_SOCK"

start_daemon() {
	truncate -s 128M "$TMP/file0.img"
	cat >"$TMP/blkservd.conf" <<EOF
plugin_dir = "$PLUGINS"
runtime_dir = "$TMP/run"
device "ram0" {
  size = 256M
  block_size = 512
  frontend "nbd-export" {
    unix = "$SOCK"
    tcp = "127.0.0.1:$PORT"
  }
  backend "ramdisk" { }
}
device "ro" {
  size = 16M
  frontend "nbd-export" {
    unix = "$RO_SOCK"
    read_only = true
  }
  backend "ramdisk" { }
}
device "file0" {
  block_size = 4096
  frontend "nbd-export" { unix = "$FILE_SOCK" }
  backend "file" { path = "$TMP/file0.img" }
}
EOF
	"$BLKSERVD" -c "$TMP/blkservd.conf" >"$TMP/daemon.log" 2>&1 &
	DAEMON_PID=$!
	for _ in $(seq 100); do
		[[ -S $SOCK && -S $RO_SOCK && -S $FILE_SOCK ]] && return 0
		kill -0 "$DAEMON_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$TMP/daemon.log"
	echo "FAIL: blkservd did not start"
	exit 1
}

stop_daemon() {
	kill -TERM "$DAEMON_PID"
	for _ in $(seq 100); do
		kill -0 "$DAEMON_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$DAEMON_PID" 2>/dev/null; then
		fail "blkservd did not stop within 10 s of SIGTERM"
		return
	fi
	wait "$DAEMON_PID" && ok "blkservd stopped cleanly" || fail "blkservd exited with $?"
	DAEMON_PID=""
	[[ ! -e $SOCK ]] && ok "socket removed at stop" || fail "$SOCK left behind"
}

info_field() { # URI FIELD
	nbdinfo "$1" | awk -v f="$2" '$1 == f":" { print $2 }'
}

expect_eq() { # WHAT WANT GOT
	[[ $2 == "$3" ]] && ok "$1 = $3" || fail "$1: want '$2', got '$3'"
}
expect_true() { # WHAT COMMAND...
	local what=$1
	shift
	"$@" && ok "$what" || fail "$what: '$*' is false"
}

check_nbdinfo() {
	need nbdinfo
	expect_eq "export-size" 268435456 "$(info_field "$URI" export-size)"
	expect_eq "export-size over tcp" 268435456 "$(info_field "$TCP_URI" export-size)"
	for f in can_flush can_fua can_trim can_zero can_multi_conn; do
		expect_eq "$f" true "$(info_field "$URI" $f)"
	done
	expect_eq "is_read_only" false "$(info_field "$URI" is_read_only)"
	expect_eq "is_rotational" false "$(info_field "$URI" is_rotational)"
	expect_eq "block_size_minimum" 512 "$(info_field "$URI" block_size_minimum)"
	expect_eq "block_size_maximum" 33554432 "$(info_field "$URI" block_size_maximum)"
	expect_eq "default export size" 268435456 \
		"$(info_field "nbd+unix:///?socket=$SOCK" export-size)"
	expect_eq "read-only export is_read_only" true "$(info_field "$RO_URI" is_read_only)"
	expect_eq "read-only export can_trim" false "$(info_field "$RO_URI" can_trim)"
	nbdinfo --list "nbd+unix:///?socket=$SOCK" | grep -q 'export="ram0"' &&
		ok "nbdinfo --list names ram0" || fail "nbdinfo --list does not name ram0"
	if nbdinfo "nbd+unix:///nosuch?socket=$SOCK" >/dev/null 2>&1; then
		fail "an unknown export name was accepted"
	else
		ok "an unknown export name is refused"
	fi
}

roundtrip() { # URI SIZE_MIB LABEL
	head -c "$(($2 << 20))" /dev/urandom >"$TMP/in.img"
	nbdcopy "$TMP/in.img" "$1"
	nbdcopy "$1" "$TMP/out.img"
	truncate -s "$(($2 << 20))" "$TMP/out.img"
	expect_eq "$3 sha256" "$(sha256sum <"$TMP/in.img")" "$(sha256sum <"$TMP/out.img")"
}

check_nbdcopy() {
	need nbdcopy
	roundtrip "$URI" 64 "nbdcopy unix"
	roundtrip "$TCP_URI" 32 "nbdcopy tcp"
	roundtrip "$FILE_URI" 32 "nbdcopy file backend"
	# Several connections of one client at once (CAN_MULTI_CONN).
	head -c 200M /dev/urandom >"$TMP/big.img"
	nbdcopy --connections=4 --requests=32 "$TMP/big.img" "$URI"
	nbdcopy --connections=4 "$URI" "$TMP/big.out"
	truncate -s 200M "$TMP/big.out"
	expect_eq "nbdcopy 4 connections sha256" "$(sha256sum <"$TMP/big.img")" "$(sha256sum <"$TMP/big.out")"
	# nbdcopy's big reads of the ramdisk went out with sendfile (the
	# sha256s above say they were right); the file backend has no file
	# range to offer.
	expect_true "ramdisk reads sent from its memfd" [ "$(reads_mapped ram0)" -gt 0 ]
	expect_eq "file backend reads not mapped" 0 "$(reads_mapped file0)"
}

reads_mapped() { # DEVICE
	"$BLKSERVCTL" --socket "$TMP/run/control.sock" stats "$1" | sed -n 's/^reads_mapped: //p'
}

fio_verify() { # LABEL URI BS IODEPTH SIZE [extra...]
	local label=$1 uri=$2 bs=$3 qd=$4 size=$5
	shift 5
	if fio --name="$label" --ioengine=nbd --uri="$uri" --rw=randwrite --bs="$bs" \
		--iodepth="$qd" --size="$size" --verify=crc32c --do_verify=1 --verify_fatal=1 \
		"$@" --output="$TMP/fio-$label.log" >/dev/null 2>&1 &&
		grep -q 'err= 0' "$TMP/fio-$label.log"; then
		ok "fio $label randwrite verify=crc32c"
	else
		cat "$TMP/fio-$label.log" 2>/dev/null || true
		fail "fio $label"
	fi
}

check_fio() {
	need fio
	fio --enghelp 2>/dev/null | grep -qw nbd || skip "fio has no nbd engine"
	fio_verify ram-4k "$URI" 4k 32 64m
	fio_verify ram-mixed "$URI" 4k-1m 8 128m --bsrange=4k-1m
	fio_verify tcp "$TCP_URI" 64k 16 64m
	fio_verify file "$FILE_URI" 4k 32 32m
	fio_verify two-clients "$URI" 16k 16 32m --numjobs=2 --offset_increment=64m
}

check_qemu_img() {
	need qemu-img
	head -c 48M /dev/urandom >"$TMP/q.img"
	qemu-img convert -n -f raw -O raw "$TMP/q.img" "$URI"
	if qemu-img compare -f raw -F raw "$TMP/q.img" "$URI" >"$TMP/cmp.log" 2>&1 ||
		grep -q 'Images are identical' "$TMP/cmp.log"; then
		ok "qemu-img compare after convert"
	else
		cat "$TMP/cmp.log"
		fail "qemu-img compare"
	fi
	# Change one byte: compare must notice.  Flip its bits rather than
	# write a constant, which random data already holds once in 256 runs.
	local old_byte
	old_byte=$(od -An -tu1 -j12345 -N1 "$TMP/q.img" | tr -d ' ')
	printf "\\$(printf '%03o' $((old_byte ^ 255)))" |
		dd of="$TMP/q.img" bs=1 seek=12345 conv=notrunc status=none
	qemu-img compare -f raw -F raw "$TMP/q.img" "$URI" >"$TMP/cmp.log" 2>&1 || true
	if grep -q 'Content mismatch' "$TMP/cmp.log"; then
		ok "qemu-img compare sees a changed sector"
	else
		fail "qemu-img compare missed a difference"
	fi
}

check_clients() {
	need fio qemu-io nbdcopy
	# A client breaking the protocol is cut off; the others go on.
	fio --name=many --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=16 --size=16m \
		--numjobs=4 --offset_increment=32m --verify=crc32c --do_verify=1 --verify_fatal=1 \
		--output="$TMP/fio-many.log" >/dev/null 2>&1 &
	local fio_pid=$!
	for _ in 1 2 3; do
		python3 - "$SOCK" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.recv(18)
s.sendall(b"\0\0\0\x01" + b"NOTMAGIC" + b"\0" * 8)
s.settimeout(5)
assert s.recv(100) == b"", "server did not hang up"
EOF
	done && ok "malformed clients are disconnected" || fail "a malformed client was not disconnected"
	if wait "$fio_pid" && grep -q 'err= 0' "$TMP/fio-many.log"; then
		ok "4 clients at once, verify=crc32c"
	else
		cat "$TMP/fio-many.log"
		fail "4 clients at once"
	fi
	# Read-only: writes fail, reads work.
	qemu-io -f raw -c 'write -P 0x55 0 4k' "$RO_URI" >"$TMP/qio.log" 2>&1 || true
	if grep -qiE 'error|denied|read-only|not permitted' "$TMP/qio.log"; then
		ok "write to a read-only export refused"
	else
		fail "write to a read-only export was not refused"
	fi
	qemu-io -f raw -r -c 'read -P 0 0 64k' "$RO_URI" | grep -q 'read 65536/65536' &&
		ok "read from the read-only export" || fail "read from the read-only export"
}

# The kernel frontend where the nbd module is missing: a clean failure.
check_no_module() {
	if [[ -e /sys/module/nbd || -e /dev/nbd0 ]]; then
		skip "the nbd module is loaded here (the VM scenarios test the kernel frontend)"
	fi
	cat >"$TMP/kernel.conf" <<EOF
plugin_dir = "$PLUGINS"
runtime_dir = "$TMP/run"
device "k0" {
  size = 64M
  frontend "nbd" { connections = 2 }
  backend "ramdisk" { }
}
EOF
	local rc=0
	timeout 30 "$BLKSERVD" -c "$TMP/kernel.conf" >"$TMP/kernel.log" 2>&1 || rc=$?
	cat "$TMP/kernel.log"
	[[ $rc == 1 ]] && ok "blkservd exits 1" || fail "blkservd exited $rc, not 1"
	grep -q "run 'modprobe nbd'" "$TMP/kernel.log" && ok "the error says: modprobe nbd" ||
		fail "the error does not say what to do"
	exit $FAILED
}

[[ $CHECK == no-module ]] && check_no_module
start_daemon
case $CHECK in
nbdinfo) check_nbdinfo ;;
nbdcopy) check_nbdcopy ;;
fio) check_fio ;;
qemu-img) check_qemu_img ;;
clients) check_clients ;;
*)
	echo "unknown check $CHECK"
	exit 2
	;;
esac
stop_daemon
# Sanitizer reports, failed assertions, crashes (the daemon says "built with
# AddressSanitizer" at start, which is fine).
if grep -qE 'ERROR: |runtime error|LeakSanitizer|Assertion|ended while|cannot send' "$TMP/daemon.log"; then
	cat "$TMP/daemon.log"
	fail "errors in the daemon log"
fi
exit $FAILED
