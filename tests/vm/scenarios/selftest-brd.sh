# shellcheck shell=dash
# selftest-brd: the harness itself, on the kernel's RAM disk (brd) - proves
# module loading, the tools and the data checks with none of our code.
# tools: mkfs.ext4 e2fsck
# files: /etc/mke2fs.conf
# modules: brd
# timeout: 120

must "modprobe brd" modprobe brd rd_nr=1 rd_size=65536
must "/dev/ram0 appears" wait_for_blockdev /dev/ram0
check_eq "/dev/ram0 is 64 MiB" 67108864 "$(dev_size /dev/ram0)"
fs_roundtrip brd /dev/ram0 20
