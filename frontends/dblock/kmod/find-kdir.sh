#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
# Print the kernel build directory to build dblock.ko against: $BLKSERV_KDIR,
# or the headers of the kernel the VM harness boots (tests/vm/run-scenario:
# $BLKSERV_VM_KERNEL, else the newest /boot/vmlinuz-*-cloud-amd64 whose
# modules are installed), or else the newest */lib/modules/*-cloud-amd64
# with a build directory.  On failure say why on stderr and exit 1.
set -u

has_build() {
	[ -f "/lib/modules/$1/build/Makefile" ]
}

if [ -n "${BLKSERV_KDIR:-}" ]; then
	[ -f "$BLKSERV_KDIR/Makefile" ] && echo "$BLKSERV_KDIR" && exit 0
	echo "BLKSERV_KDIR=$BLKSERV_KDIR has no Makefile" >&2
	exit 1
fi

vm_kernel=${BLKSERV_VM_KERNEL:-}
if [ -z "$vm_kernel" ]; then
	for image in $(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V); do
		ver=${image#/boot/vmlinuz-}
		[ -f "/lib/modules/$ver/modules.dep" ] && vm_kernel=$ver
	done
fi
if [ -n "$vm_kernel" ]; then
	if has_build "$vm_kernel"; then
		echo "/lib/modules/$vm_kernel/build"
		exit 0
	fi
	echo "no headers for the VM kernel $vm_kernel (install linux-headers-$vm_kernel)" >&2
	exit 1
fi

best=""
for dir in $(ls -d /lib/modules/*-cloud-amd64 2>/dev/null | sort -V); do
	ver=${dir#/lib/modules/}
	has_build "$ver" && best=$ver
done
if [ -n "$best" ]; then
	echo "/lib/modules/$best/build"
	exit 0
fi
echo "no /lib/modules/*-cloud-amd64/build (install linux-headers-cloud-amd64)" >&2
exit 1
