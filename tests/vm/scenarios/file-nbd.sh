# shellcheck shell=dash
# file-nbd: the file backend behind the kernel NBD frontend, three ways: a
# file on tmpfs, a file on an ext4 image (a loop-mounted image file), and the
# same with direct = true (O_DIRECT).  Each device: fio 4k randwrite
# verify=crc32c, the device's bytes equal the backing file's, trim and
# write-zeroes read back as zeros, mkfs.ext4 + e2fsck + checksum; after a
# daemon restart the file systems on the devices are still clean.
# tools: fio mkfs.ext4 e2fsck blkdiscard
# (util-linux blkdiscard by its path: busybox's applet lacks -z)
# files: /etc/mke2fs.conf
# modules: nbd loop ext4
# requires: daemon/blkservd plugins/blkserv-frontend-nbd.so plugins/blkserv-backend-file.so
# memory: 1536
# timeout: 600

FE=nbd
node() { echo "/dev/nbd$1"; }
# Configured (without opening /dev/nbdN: an open before the connect makes
# the kernel refuse it as "already in use").
ready() { echo "/sys/block/nbd$1/pid"; }
frontend_section() { echo "frontend \"nbd\" { index = $1 }"; }
must "modprobe nbd" modprobe nbd nbds_max=4

# shellcheck source=../parts/file-backend.sh
. /usr/lib/blkserv-test/parts/file-backend.sh
