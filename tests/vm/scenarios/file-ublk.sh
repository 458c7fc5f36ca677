# shellcheck shell=dash
# file-ublk: the file backend behind the ublk frontend, three ways: a file on
# tmpfs, a file on an ext4 image (a loop-mounted image file), and the same
# with direct = true (O_DIRECT).  Each device: fio 4k randwrite verify=crc32c,
# the device's bytes equal the backing file's, trim and write-zeroes read back
# as zeros, mkfs.ext4 + e2fsck + checksum; after a daemon restart the file
# systems on the devices are still clean.
# tools: fio mkfs.ext4 e2fsck blkdiscard
# (util-linux blkdiscard by its path: busybox's applet lacks -z)
# files: /etc/mke2fs.conf
# modules: ublk_drv loop ext4
# requires: daemon/blkservd plugins/blkserv-frontend-ublk.so plugins/blkserv-backend-file.so
# memory: 1536
# timeout: 600

FE=ublk
node() { echo "/dev/ublkb$1"; }
ready() { node "$1"; } # the node appears when the device is live
frontend_section() { echo "frontend \"ublk\" { id = $1  queues = 1  depth = 64 }"; }
must "modprobe ublk_drv" modprobe ublk_drv

# shellcheck source=../parts/file-backend.sh
. /usr/lib/blkserv-test/parts/file-backend.sh
