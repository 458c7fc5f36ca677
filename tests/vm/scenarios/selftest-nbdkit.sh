# shellcheck shell=dash
# selftest-nbdkit: the kernel NBD driver against a user-space server we did
# not write (nbdkit memory over a Unix socket, wired up by nbd-client), so the
# nbd scenarios of our own daemon have a known-good baseline.
# tools: mkfs.ext4 e2fsck fio nbdkit nbd-client
# files: /etc/mke2fs.conf /usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-memory-plugin.so
# modules: nbd
# timeout: 180

sock=$BLKSERV_TMP/nbdkit.sock

must "modprobe nbd" modprobe nbd nbds_max=2
nbdkit --foreground --unix "$sock" memory 256M >"$BLKSERV_TMP/nbdkit.log" 2>&1 &
must "nbdkit listens" wait_for 20 test -S "$sock"
must "nbd-client connects /dev/nbd0" nbd-client -unix "$sock" /dev/nbd0 -block-size 4096
must "/dev/nbd0 appears" wait_for_blockdev /dev/nbd0
check_eq "/dev/nbd0 is 256 MiB" 268435456 "$(dev_size /dev/nbd0)"

fio_verify nbd-raw /dev/nbd0
fs_roundtrip nbd /dev/nbd0 20

check "nbd-client -d" nbd-client -d /dev/nbd0
check_eq "/dev/nbd0 is gone after disconnect" 0 "$(dev_size /dev/nbd0 2>/dev/null || echo 0)"
