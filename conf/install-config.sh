#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# install-config.sh SOURCE TARGET: install SOURCE as TARGET unless it exists.
set -eu
target="${DESTDIR:-}$2"
if [ -e "$target" ]; then
	echo "keeping existing $target"
	exit 0
fi
install -D -m 0644 "$1" "$target"
