#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
# build-kmod.sh SRCDIR OUTDIR KDIR OUTPUT: build dblock.ko with Kbuild in a
# copy of the sources under OUTDIR (Kbuild writes next to its sources, and
# the source tree stays clean), warnings as errors, and copy it to OUTPUT.
set -eu
src=$1 out=$2 kdir=$3 output=$4
work=$out/kbuild
mkdir -p "$work"
# cp -p keeps the times, so Kbuild rebuilds only what changed.
for f in Kbuild dblock-abi.h dblock.h dblock-main.c dblock-dev.c dblock-io.c dblock-sysfs.c; do
	cmp -s "$src/$f" "$work/$f" 2>/dev/null || cp -p "$src/$f" "$work/$f"
done
if ! make -s -C "$kdir" M="$work" DBLOCK_WERROR=y modules >"$out/kbuild.log" 2>&1; then
	cat "$out/kbuild.log" >&2
	echo "dblock.ko: the kernel build failed (log: $out/kbuild.log)" >&2
	exit 1
fi
if grep -q 'warning:' "$out/kbuild.log"; then
	cat "$out/kbuild.log" >&2
	exit 1
fi
cp "$work/dblock.ko" "$output"
