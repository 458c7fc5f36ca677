#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The ABI surface, read from the binaries' dynamic symbol tables:
#  - blkservd exports only functions the SDK header declares (blkserv_*),
#    besides what the toolchain puts there (_start, _edata, versioned copies
#    of library data such as stderr@GLIBC_2.2.5);
#  - every plugin exports exactly its entry point, blkserv_backend_init or
#    blkserv_frontend_init, and none of the helpers of common/ it links;
#  - no plugin needs from the daemon anything but blkserv_* (a plugin that
#    calls another daemon function loads in the unit tests, which export
#    everything, and fails in blkservd).
# usage: test-symbols.sh BLKSERVD PLUGIN_DIR SDK_HEADER
set -euo pipefail
daemon=$1 plugins=$2 header=$3
fail=0

command -v nm >/dev/null || { echo "nm (binutils) is not installed"; exit 77; }

# The toolchain's own symbols, which every executable has, and those of the
# sanitizer runtimes an ASan/UBSan build links in (the daemon defines them,
# instrumented plugins use them).
toolchain='^(_start|_init|_fini|_edata|_end|__bss_start|_IO_stdin_used|__data_start|data_start|__dso_handle|_fp_hw)$'
sanitizer='^__(asan|ubsan|lsan|sanitizer)_'

while read -r sym; do
	if [[ $sym == *@* ]] || [[ $sym =~ $toolchain ]] || [[ $sym =~ $sanitizer ]]; then
		continue
	fi
	if [[ $sym != blkserv_* ]] || ! grep -qw -- "$sym" "$header"; then
		echo "blkservd exports $sym, which is not in the SDK ($header)"
		fail=1
	fi
done < <(nm -D --defined-only "$daemon" | awk '{print $3}')

# Everything the daemon defines (its full symbol table, not only .dynsym).
daemon_all=$(nm --defined-only "$daemon" | awk '{print $3}' | sort -u)
count=0
for so in "$plugins"/*.so; do
	count=$((count + 1))
	name=$(basename "$so")
	exports=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -Ev "$toolchain" || true)
	case $name in
	blkserv-backend-*) want=blkserv_backend_init ;;
	blkserv-frontend-*) want=blkserv_frontend_init ;;
	*) echo "$name: not a plugin name"; fail=1; continue ;;
	esac
	if [ "$exports" != "$want" ]; then
		echo "$name exports [$(echo $exports)], want only $want"
		fail=1
	fi
	needs=$(nm -D --undefined-only "$so" | awk '{print $2}' | sed 's/@.*//' | sort -u |
		comm -12 - <(echo "$daemon_all") | grep -v '^blkserv_' | grep -Ev "$sanitizer" || true)
	if [ -n "$needs" ]; then
		echo "$name needs daemon symbols outside the SDK: $(echo $needs)"
		fail=1
	fi
done
if [ "$count" -eq 0 ]; then
	echo "no plugins in $plugins"
	exit 1
fi
[ $fail -eq 0 ] && echo "blkservd and $count plugins export only the SDK and their entry points"
exit $fail
