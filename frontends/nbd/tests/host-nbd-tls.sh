#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# host-nbd-tls.sh CHECK: the nbd-export frontend with TLS, between two
# "hosts" made of network namespaces joined by a veth pair: blkservd runs in
# one (10.99.77.1), libnbd's nbdinfo/nbdcopy in the other (10.99.77.2).
# The addresses exist only inside the two namespaces.  Everything is removed
# on exit, failed or not.  Exit 0 pass, 1 fail, 77 skip (not root, no ip,
# no certtool/psktool/nbdinfo/nbdcopy).
#   x509  tls = require with certificates: nbdinfo and nbdcopy over nbds://
#         (data in and out, same sha256); a plain nbd:// client is refused
#         and gets no data; a client whose CA does not match, and one with no
#         client certificate (tls_ca is set), are refused
#   psk   tls = require with a PSK file: nbdcopy over nbds:// with the key
#         works; a wrong key and a plain client are refused
#   allow tls = allow: both a plain and a TLS client are served, and see the
#         same data
set -euo pipefail

CHECK=${1:?usage: host-nbd-tls.sh x509|psk|allow}
BLKSERVD=${BLKSERVD:?BLKSERVD is not set (run through meson test)}
PLUGINS=${BLKSERV_PLUGIN_DIR:?BLKSERV_PLUGIN_DIR is not set}

skip() {
	echo "SKIP: $*"
	exit 77
}
[[ $(id -u) == 0 ]] || skip "needs root (network namespaces)"
for t in ip certtool psktool nbdinfo nbdcopy sha256sum; do
	command -v "$t" >/dev/null || skip "$t is not installed"
done

TAG=bsv$$
SRV=$TAG-s
CLI=$TAG-c
SRV_IP=10.99.77.1
CLI_IP=10.99.77.2
PORT=10809
TMP=$(mktemp -d /tmp/blkserv-nbd-tls.XXXXXX)
DAEMON_PID=""
FAILED=0

cleanup() {
	if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -KILL "$DAEMON_PID" 2>/dev/null || true
	fi
	# Deleting a namespace deletes its end of the veth, and so the pair.
	ip netns del "$SRV" 2>/dev/null || true
	ip netns del "$CLI" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	FAILED=1
}
ok() { echo "ok: $*"; }

# ---- two hosts ---------------------------------------------------------------
make_hosts() {
	ip netns add "$SRV" || skip "cannot create network namespaces"
	ip netns add "$CLI"
	# Created inside the server namespace: nothing ever appears in the
	# initial one.
	ip -n "$SRV" link add veth0 type veth peer name veth1 netns "$CLI"
	ip -n "$SRV" addr add "$SRV_IP/24" dev veth0
	ip -n "$CLI" addr add "$CLI_IP/24" dev veth1
	for ns in "$SRV" "$CLI"; do
		ip -n "$ns" link set lo up
	done
	ip -n "$SRV" link set veth0 up
	ip -n "$CLI" link set veth1 up
	ip netns exec "$CLI" ping -c1 -W5 "$SRV_IP" >/dev/null 2>&1 || {
		# Some images lack ping; the client's first connection tells.
		true
	}
}
on_client() { ip netns exec "$CLI" "$@"; }

# ---- credentials -------------------------------------------------------------
make_ca() { # DIR NAME
	certtool --generate-privkey --key-type=ecdsa --outfile "$1/ca-key.pem" 2>/dev/null
	cat >"$1/ca.info" <<EOF
cn = $2
ca
cert_signing_key
expiration_days = 2
EOF
	certtool --generate-self-signed --load-privkey "$1/ca-key.pem" --template "$1/ca.info" \
		--outfile "$1/ca-cert.pem" 2>/dev/null
}

make_cert() { # CA-DIR OUT-PREFIX TEMPLATE-LINES
	certtool --generate-privkey --key-type=ecdsa --outfile "$2-key.pem" 2>/dev/null
	printf '%s\n' "$3" "expiration_days = 2" >"$2.info"
	certtool --generate-certificate --load-privkey "$2-key.pem" --load-ca-certificate "$1/ca-cert.pem" \
		--load-ca-privkey "$1/ca-key.pem" --template "$2.info" --outfile "$2-cert.pem" 2>/dev/null
}

make_x509() {
	mkdir -p "$TMP/pki" "$TMP/client" "$TMP/other"
	make_ca "$TMP/pki" "blkservd test CA"
	make_cert "$TMP/pki" "$TMP/pki/server" "$(printf 'cn = blkservd test server\nip_address = %s\ntls_www_server\nencryption_key\nsigning_key' "$SRV_IP")"
	# libnbd's tls-certificates directory: ca-cert.pem, client-cert.pem, client-key.pem.
	cp "$TMP/pki/ca-cert.pem" "$TMP/client/"
	make_cert "$TMP/pki" "$TMP/client/client" "$(printf 'cn = blkservd test client\ntls_www_client\nencryption_key\nsigning_key')"
	# Another CA the server's certificate does not chain to.
	make_ca "$TMP/other" "some other CA"
}

make_psk() {
	psktool -u alice -p "$TMP/keys.psk" >/dev/null 2>&1
	psktool -u alice -p "$TMP/wrong.psk" >/dev/null 2>&1
	grep -q '^alice:' "$TMP/keys.psk" || { echo "FAIL: psktool wrote no key"; exit 1; }
	chmod 600 "$TMP/keys.psk" "$TMP/wrong.psk"
}

# ---- the daemon --------------------------------------------------------------
start_daemon() { # FRONTEND-TLS-LINES
	cat >"$TMP/blkservd.conf" <<EOF
plugin_dir = "$PLUGINS"
runtime_dir = "$TMP/run"
device "ram0" {
  size = 64M
  block_size = 512
  frontend "nbd-export" {
    tcp = "$SRV_IP:$PORT"
$1
  }
  backend "ramdisk" { }
}
EOF
	ip netns exec "$SRV" "$BLKSERVD" -c "$TMP/blkservd.conf" >"$TMP/daemon.log" 2>&1 &
	DAEMON_PID=$!
	for _ in $(seq 100); do
		grep -q "listening on" "$TMP/daemon.log" && return 0
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
}

# ---- checks ------------------------------------------------------------------
# Random data in through URI-IN, out through URI-OUT, compared.
copy_round_trip() { # URI-IN URI-OUT WHAT
	head -c 16M /dev/urandom >"$TMP/in.bin"
	if ! on_client nbdcopy "$TMP/in.bin" "$1" 2>"$TMP/err"; then
		cat "$TMP/err"
		fail "$3: nbdcopy into the export"
		return
	fi
	rm -f "$TMP/out.bin"
	if ! on_client nbdcopy "$2" "$TMP/out.bin" 2>"$TMP/err"; then
		cat "$TMP/err"
		fail "$3: nbdcopy out of the export"
		return
	fi
	# The export is 64M: compare the part written.
	if [[ $(sha256sum <"$TMP/in.bin") == $(head -c 16M "$TMP/out.bin" | sha256sum) ]]; then
		ok "$3: 16 MiB through TLS and back, same sha256"
	else
		fail "$3: data read back differs"
	fi
}

expect_tls() { # URI WHAT
	if on_client nbdinfo --is tls "$1" 2>"$TMP/err"; then
		ok "$2: nbdinfo sees a TLS connection"
	else
		cat "$TMP/err"
		fail "$2: nbdinfo over TLS"
	fi
}

expect_refused() { # URI WHAT
	if on_client nbdinfo --size "$1" >"$TMP/out" 2>"$TMP/err"; then
		fail "$2: was served (size $(cat "$TMP/out"))"
	elif [[ -s $TMP/out ]]; then
		fail "$2: refused, but printed $(cat "$TMP/out")"
	else
		ok "$2: refused ($(head -c 160 "$TMP/err" | tr '\n' ' '))"
	fi
}

# A plain client must not even learn the size, let alone data.
expect_plain_refused() {
	expect_refused "nbd://$SRV_IP:$PORT/ram0" "plain client under tls = require"
	if on_client nbdcopy "nbd://$SRV_IP:$PORT/ram0" "$TMP/leak.bin" 2>/dev/null; then
		fail "a plain nbdcopy read data"
	elif [[ -s $TMP/leak.bin ]]; then
		fail "a plain nbdcopy got $(stat -c %s "$TMP/leak.bin") bytes"
	else
		ok "plain nbdcopy under tls = require: refused, no data"
	fi
}

check_x509() {
	make_x509
	start_daemon "    tls = \"require\"
    tls_certificate = \"$TMP/pki/server-cert.pem\"
    tls_key = \"$TMP/pki/server-key.pem\"
    tls_ca = \"$TMP/pki/ca-cert.pem\""
	local uri="nbds://$SRV_IP:$PORT/ram0?tls-certificates=$TMP/client"
	expect_tls "$uri" "x509"
	copy_round_trip "$uri" "$uri" "x509"
	expect_plain_refused
	mkdir -p "$TMP/stranger"
	cp "$TMP/other/ca-cert.pem" "$TMP/stranger/"
	expect_refused "nbds://$SRV_IP:$PORT/ram0?tls-certificates=$TMP/stranger" \
		"client trusting another CA (and without a client certificate)"
	mkdir -p "$TMP/nocert"
	cp "$TMP/pki/ca-cert.pem" "$TMP/nocert/"
	expect_refused "nbds://$SRV_IP:$PORT/ram0?tls-certificates=$TMP/nocert" \
		"client without a certificate while tls_ca is set"
	stop_daemon
}

check_psk() {
	make_psk
	start_daemon "    tls = \"require\"
    tls_psk_file = \"$TMP/keys.psk\""
	local uri="nbds://alice@$SRV_IP:$PORT/ram0?tls-psk-file=$TMP/keys.psk"
	expect_tls "$uri" "psk"
	copy_round_trip "$uri" "$uri" "psk"
	expect_refused "nbds://alice@$SRV_IP:$PORT/ram0?tls-psk-file=$TMP/wrong.psk" "wrong PSK"
	expect_plain_refused
	stop_daemon
}

check_allow() {
	make_psk
	start_daemon "    tls = \"allow\"
    tls_psk_file = \"$TMP/keys.psk\""
	local tls="nbds://alice@$SRV_IP:$PORT/ram0?tls-psk-file=$TMP/keys.psk"
	local plain="nbd://$SRV_IP:$PORT/ram0"
	expect_tls "$tls" "allow"
	copy_round_trip "$plain" "$tls" "allow (written plain, read with TLS)"
	stop_daemon
}

make_hosts
case $CHECK in
x509) check_x509 ;;
psk) check_psk ;;
allow) check_allow ;;
*)
	echo "unknown check $CHECK"
	exit 2
	;;
esac
if [[ $FAILED != 0 ]]; then
	echo "--- daemon log"
	cat "$TMP/daemon.log"
	exit 1
fi
exit 0
