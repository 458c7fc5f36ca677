# shellcheck shell=dash
# parts/file-backend.sh: the body of file-nbd.sh and file-ublk.sh (sourced):
# the file backend behind one kernel frontend, three ways (a file on tmpfs,
# on a loop-mounted ext4 image, and with direct = true).  The scenario sets
# FE and defines node N (the device node), ready N (the path that exists
# when device N is live) and frontend_section N (its frontend section).
run=$BLKSERV_TMP/run
conf=$BLKSERV_TMP/file.conf
tmpfs=$BLKSERV_TMP/tmpfs
ext4=$BLKSERV_TMP/ext4
mkdir -p "$run" "$tmpfs" "$ext4"
must "mount a tmpfs" mount -t tmpfs -o size=600M tmpfs "$tmpfs"
must "make a 320 MiB ext4 image" mkfs.ext4 -q -F "$tmpfs/ext4.img" 320M
must "loop-mount the ext4 image" mount -t ext4 -o loop "$tmpfs/ext4.img" "$ext4"

# name  path  options
set -- \
	tmpfs "$tmpfs/disk.img" "" \
	ext4 "$ext4/disk.img" "" \
	direct "$ext4/direct.img" "direct = true"
{
	echo "plugin_dir = \"$BLKSERV_PLUGIN_DIR\""
	echo "runtime_dir = \"$run\""
	i=0
	while [ $# -gt 0 ]; do
		echo "device \"$1\" {"
		echo "  size = 128M"
		echo "  block_size = 4096"
		echo "  $(frontend_section $i)"
		echo "  backend \"file\" { path = \"$2\"  $3 }"
		echo "}"
		i=$((i + 1))
		shift 3
	done
} >"$conf"
cat "$conf"

blkservd_start -w "$(ready 0)" -w "$(ready 1)" -w "$(ready 2)" "$conf" || exit 1
for i in 0 1 2; do
	must "$(node $i) appears" wait_for_blockdev "$(node $i)"
done
check "the files were created sparse" test "$(du -k "$tmpfs/disk.img" | cut -f1)" -lt 4096

zero1m=$(dd if=/dev/zero bs=1M count=1 2>/dev/null | sha256sum)
dev_mib() { dd if="$1" bs=1M skip="$2" count="${3:-1}" iflag=direct 2>/dev/null | sha256sum; }
file_mib() { dd if="$1" bs=1M skip="$2" count="${3:-1}" 2>/dev/null | sha256sum; }

check_device() {
	local name="$1" dev="$2" file="$3"
	check_eq "$name: 128 MiB" 134217728 "$(dev_size "$dev")"
	fio_verify "$FE-file-$name" "$dev"
	check_eq "$name: the device's first 16 MiB are the file's" \
		"$(file_mib "$file" 0 16)" "$(dev_mib "$dev" 0 16)"
	check "$name: blkdiscard 1M..2M" /usr/sbin/blkdiscard -o 1048576 -l 1048576 "$dev"
	check "$name: blkdiscard -z 2M..3M" /usr/sbin/blkdiscard -z -o 2097152 -l 1048576 "$dev"
	check_eq "$name: trimmed range reads zeros" "$zero1m" "$(dev_mib "$dev" 1)"
	check_eq "$name: zeroed range reads zeros" "$zero1m" "$(dev_mib "$dev" 2)"
	check_eq "$name: zeroed range is zeros in the file" "$zero1m" "$(file_mib "$file" 2)"
	fs_roundtrip "$FE-file-$name" "$dev" 20
}

check_device tmpfs "$(node 0)" "$tmpfs/disk.img"
check_device ext4 "$(node 1)" "$ext4/disk.img"
check_device direct "$(node 2)" "$ext4/direct.img"
check "no flush failed" sh -c "! grep -q 'fdatasync.*failed' '$BLKSERVD_LOG'"

# A second daemon (its own runtime directory) must not serve the same files.
mkdir -p "$run-2"
sed "s|^runtime_dir = .*|runtime_dir = \"$run-2\"|" "$conf" >"$conf-2"
"$BLKSERVD" --config "$conf-2" >"$BLKSERV_TMP/second.log" 2>&1
check_eq "a second daemon on the same files exits 1" 1 "$?"
check "it says the file is in use" grep -q 'is in use' "$BLKSERV_TMP/second.log"

blkservd_stop 0
# What was flushed is in the files: serve them again and check.
blkservd_start -w "$(ready 0)" -w "$(ready 1)" -w "$(ready 2)" "$conf" || exit 1
for i in 0 1 2; do
	wait_for_blockdev "$(node $i)"
	check "restart: e2fsck -fn clean on $(node $i)" e2fsck -fn "$(node $i)"
done
blkservd_stop 0
must "umount the ext4 image" umount "$ext4"
check "the ext4 image under the files is clean" e2fsck -fn "$tmpfs/ext4.img"
