#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# install-vm-helper.sh DIR STAMP FILE...: copy FILEs into DIR (the VM
# harness's BUILD/tests/vm/extra, which it puts into the guest's PATH).
set -eu
dir=$1 stamp=$2
shift 2
mkdir -p "$dir"
for f in "$@"; do
	cp -p "$f" "$dir/"
done
touch "$stamp"
