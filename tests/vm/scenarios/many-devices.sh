# shellcheck shell=dash
# many-devices: one blkservd serves 9 devices across every frontend and
# backend at once:
#   nbd  x ramdisk, nbd x file, ublk x log, ublk x ramdisk, ublk x rbd,
#   dblock x file, dblock x log, nbd-export x ramdisk, nbd-export x log
# (the exports through the kernel's nbd-client on the Unix sockets; the rbd
# image in the one-node Ceph cluster run-scenario starts on the host for
# "# ceph:", created by the backend, with librbd's cache off so that fio's
# verify reads come from the OSD).  fio 4k randwrite verify=crc32c runs on
# all 9 at the same time and must pass on each; blkservctl lists 9 live
# devices.  Then a clean stop: exit status 0, and nothing left behind: no
# NBD device still connected, no ublk device (ids 0-2), no dblock device, no
# socket, no blkservd process.
# tools: fio nbd-client
# kmods: frontends/dblock/kmod/dblock.ko
# modules: nbd ublk_drv
# requires: daemon/blkservd plugins/blkserv-frontend-nbd.so plugins/blkserv-frontend-ublk.so plugins/blkserv-frontend-dblock.so plugins/blkserv-frontend-nbd-export.so plugins/blkserv-backend-ramdisk.so plugins/blkserv-backend-file.so plugins/blkserv-backend-log.so plugins/blkserv-backend-rbd.so
# ceph: rbd
# memory: 1536
# timeout: 600

run=$BLKSERV_TMP/run
data=$BLKSERV_TMP/data
conf=$BLKSERV_TMP/many.conf
cephconf=$BLKSERV_TMP/ceph.conf
mkdir -p "$run" "$data/l1" "$data/l2" "$data/l3"
# The harness's client config (one [global] section) plus: no client cache.
{
	cat "$BLKSERV_CEPH_CONF"
	echo "rbd_cache = false"
} >"$cephconf"
must "modprobe nbd" modprobe nbd nbds_max=4
must "modprobe ublk_drv" modprobe ublk_drv
must "modprobe dblock" modprobe dblock

# name frontend-section backend-section
dev() {
	cat <<EOF
device "$1" {
  size = 64M
  block_size = 4096
  frontend $2
  backend $3
}
EOF
}
{
	echo "plugin_dir = \"$BLKSERV_PLUGIN_DIR\""
	echo "runtime_dir = \"$run\""
	dev n1 '"nbd" { index = 0 }' '"ramdisk" { }'
	dev n2 '"nbd" { index = 1 }' "\"file\" { path = \"$data/n2.img\" }"
	dev u1 '"ublk" { id = 0  queues = 1 }' "\"log\" { dir = \"$data/l1\"  segment_size = 16M }"
	dev u2 '"ublk" { id = 1  queues = 1 }' '"ramdisk" { }'
	dev r1 '"ublk" { id = 2  queues = 1 }' "\"rbd\" { pool = \"$BLKSERV_CEPH_POOL\"  image = \"many-r1\"  conf = \"$cephconf\"  create = true }"
	dev d1 '"dblock" { threads = 2 }' "\"file\" { path = \"$data/d1.img\" }"
	dev d2 '"dblock" { threads = 2 }' "\"log\" { dir = \"$data/l2\"  segment_size = 16M }"
	dev e1 "\"nbd-export\" { unix = \"$run/e1.sock\" }" '"ramdisk" { }'
	dev e2 "\"nbd-export\" { unix = \"$run/e2.sock\" }" "\"log\" { dir = \"$data/l3\"  segment_size = 16M }"
} >"$conf"

# Opening (and creating) the rbd image is slow under TCG.
BLKSERVD_START_TIMEOUT=90 blkservd_start -w /sys/block/nbd0/pid -w /sys/block/nbd1/pid \
	-w /dev/ublkb0 -w /dev/ublkb1 -w /dev/ublkb2 -w /dev/d1 -w /dev/d2 \
	-w "$run/e1.sock" -w "$run/e2.sock" "$conf" || exit 1
must "nbd-client on e1" nbd-client -unix "$run/e1.sock" /dev/nbd2 -N e1 -block-size 4096
must "nbd-client on e2" nbd-client -unix "$run/e2.sock" /dev/nbd3 -N e2 -block-size 4096
devs="/dev/nbd0 /dev/nbd1 /dev/ublkb0 /dev/ublkb1 /dev/ublkb2 /dev/d1 /dev/d2 /dev/nbd2 /dev/nbd3"
for d in $devs; do
	must "$d appears" wait_for_blockdev "$d"
	check_eq "$d is 64 MiB" 67108864 "$(dev_size "$d")"
done
check_eq "blkservctl lists 9 devices" 9 "$($BLKSERVCTL --socket "$run/control.sock" list 2>/dev/null | grep -c -E '^(n1|n2|u1|u2|r1|d1|d2|e1|e2)\b')"

# fio with verify on all 9 at once.
pids=
for d in $devs; do
	name=$(basename "$d")
	(fio --name="$name" --filename="$d" --rw=randwrite --bs=4k --size=16M --iodepth=8 \
		--ioengine=libaio --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 \
		>"$BLKSERV_TMP/fio-$name.log" 2>&1
	echo $? >"$BLKSERV_TMP/fio-$name.rc") &
	pids="$pids $!"
done
# shellcheck disable=SC2086 # a list of pids; a bare wait would wait for blkservd too
wait $pids
for d in $devs; do
	name=$(basename "$d")
	rc=$(cat "$BLKSERV_TMP/fio-$name.rc")
	[ "$rc" = 0 ] || tail -20 "$BLKSERV_TMP/fio-$name.log"
	grep -E '^ +(READ|WRITE):' "$BLKSERV_TMP/fio-$name.log" | sed "s/^ */# $name: /"
	check_eq "$d: fio verify (9 devices at once)" 0 "$rc"
done
$BLKSERVCTL --socket "$run/control.sock" list 2>&1 | sed 's/^/# /'

# A clean stop leaves nothing behind.
check "nbd-client -d e1" nbd-client -d /dev/nbd2
check "nbd-client -d e2" nbd-client -d /dev/nbd3
blkservd_stop 0
check "no blkservd process" sh -c '! pidof blkservd'
for i in 0 1 2 3; do
	check "nbd$i is disconnected" sh -c "[ ! -e /sys/block/nbd$i/pid ] && [ \$(cat /sys/block/nbd$i/size) = 0 ]"
done
check "no ublk device left" sh -c '! ls /dev/ublkb* /dev/ublkc* 2>/dev/null | grep -q .'
check "no ublk device 2 (rbd) left" sh -c '[ ! -e /dev/ublkb2 ] && [ ! -e /dev/ublkc2 ] && [ ! -e /sys/block/ublkb2 ]'
check "no ublk device in sysfs" sh -c '! ls /sys/class/ublk-char 2>/dev/null | grep -q .'
check "no dblock device left" sh -c '[ ! -e /dev/d1 ] && [ ! -e /dev/d2 ] && [ ! -e /sys/block/d1 ] && [ ! -e /sys/block/d2 ]'
check "no export socket left" sh -c "[ ! -e $run/e1.sock ] && [ ! -e $run/e2.sock ]"
check "no control socket left" sh -c "[ ! -e $run/control.sock ]"
check "no stable name left" sh -c "[ -z \"\$(ls -A $run/names 2>/dev/null)\" ]"
ls -la "$run" | sed 's/^/# run: /'
