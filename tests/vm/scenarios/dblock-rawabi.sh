# shellcheck shell=dash
# dblock-rawabi: a program written for the original dblock ABI (its own
# struct declarations, raw ioctl numbers) works unchanged with our module:
# create/destroy validation and error codes, serving with 4 threads (fio
# with 4 jobs and verify=crc32c, mkfs.ext4 + fsck), a signal to a blocked
# server (EINTR, op 40, the signal delivered), destroy waking every blocked
# thread (8086, then ENOENT), a new server (the -ctl node opened again)
# serves the read a dead server held, the DETACH extension makes a server
# leave with the device kept, a request with no server fails at the timeout,
# and rmmod destroys devices still present.
# tools: fio mkfs.ext4 e2fsck
# files: /etc/mke2fs.conf
# kmods: frontends/dblock/kmod/dblock.ko
# requires: tests/vm/extra/dblock-rawabi
# timeout: 420

must "modprobe dblock" modprobe dblock
check "struct sizes of the original ABI" dblock-rawabi sizes
check "create/destroy limits and error codes" dblock-rawabi limits

dblock-rawabi serve raw0 32768 4 >"$BLKSERV_TMP/serve.log" 2>&1 &
server=$!
must "/dev/raw0 appears" wait_for_blockdev /dev/raw0
check_eq "/dev/raw0 is 128 MiB" 134217728 "$(dev_size /dev/raw0)"
check "fio 4k randwrite, 4 jobs, verify=crc32c" fio --name=verify --filename=/dev/raw0 \
	--rw=randwrite --bs=4k --size=16M --offset_increment=32M --numjobs=4 \
	--iodepth=16 --ioengine=io_uring --direct=1 --group_reporting \
	--verify=crc32c --do_verify=1 --verify_fatal=1
fs_roundtrip rawabi /dev/raw0 20
check "destroy /dev/raw0 by name" dblock-rawabi destroy raw0
check "the server's threads all exit" wait_for 10 _dead "$server"
wait "$server"
check_eq "the server saw 8086 or ENOENT on every thread" 0 "$?"
cat "$BLKSERV_TMP/serve.log"

check "create w0" dblock-rawabi create w0 1024 30
check "a signal interrupts a blocked server and is delivered" dblock-rawabi signal w0
check "destroy wakes 8 blocked servers" dblock-rawabi wake w0 8

check "create re0" dblock-rawabi create re0 1024 30
check "a new server gets the read a dead one held; DETACH leaves the device" dblock-rawabi reattach re0
check "destroy re0" dblock-rawabi destroy re0

check "create t0 with a 3 s timeout and no server" dblock-rawabi create t0 1024 3
check_fails "a read with no server fails" timeout 15 dd if=/dev/t0 of=/dev/null bs=4k count=1 iflag=direct
check "create left0 and leave it" dblock-rawabi create left0 1024 30
check "rmmod with devices present" rmmod dblock
check "every device is gone" sh -c '! ls /dev/t0 /dev/left0 /dev/left0-ctl 2>/dev/null | grep -q .'
