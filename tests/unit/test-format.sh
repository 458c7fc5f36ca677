#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Every C file git tracks is as clang-format writes it with the tree's
# .clang-format, but the kernel module's (kernel style, by hand).  To fix:
#   clang-format -i FILE
# usage: test-format.sh SOURCE-ROOT
set -u
cd "$1" || exit 1
if ! command -v clang-format >/dev/null; then
	echo "clang-format is not installed (apt-get install clang-format): skipped"
	exit 77
fi
if ! files=$(git ls-files '*.c' '*.h' 2>/dev/null) || [ -z "$files" ]; then
	echo "not a git checkout: skipped"
	exit 77
fi
bad=0 count=0
while read -r f; do
	case $f in frontends/dblock/kmod/*) continue ;; esac
	count=$((count + 1))
	if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
		echo "not formatted: $f (clang-format -i $f)"
		bad=$((bad + 1))
	fi
done <<<"$files"
echo "$count files checked, $bad not formatted"
[ "$bad" = 0 ]
