#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Write the seed corpus of fuzz-dblock into corpus/dblock/: struct
dblock_operation images as the kernel module fills them (little-endian;
see frontends/dblock/kmod/dblock-abi.h and fuzz-dblock.c)."""
import os
import struct

READ, WRITE, EXIT, BLOCK = 41, 42, 8086, 40
DISCARD, FLUSH, ZEROES = 43, 44, 45
FUA, NOUNMAP = 1, 2
OP_SIZE = 4152


def op(code, segs=(), flags=0, total=None, nseg=None, op_id=0x1234):
    if total is None:
        total = sum(length for _, length in segs)
    size = total if code == WRITE else 0
    b = struct.pack("<II", 7, 0) + struct.pack("<IIQII", code, flags, size, 0, 0)
    b += struct.pack("<QII", total, len(segs) if nseg is None else nseg, 0)
    meta = b"".join(struct.pack("<QQ", s, length) for s, length in segs)
    b += meta.ljust(256 * 16, b"\0")
    b += struct.pack("<iI", 0, op_id)
    assert len(b) == OP_SIZE
    return b


def pages(start, n):
    return [(start + i * 4096, 4096) for i in range(n)]


def seeds():
    return {
        "read-4k": op(READ, pages(0, 1)),
        "write-read": op(WRITE, pages(4096, 2), FUA) + op(READ, pages(4096, 2)),
        "flush-discard-zeroes": op(FLUSH) + op(DISCARD, [(8192, 8192)]) + op(ZEROES, [(0, 4096)], NOUNMAP),
        "exit": op(EXIT),
        "block-then-unknown": op(BLOCK) + op(99, pages(0, 1)),
        "too-many-segments": op(READ, pages(0, 1), nseg=300),
        "total-mismatch": op(WRITE, pages(0, 2), total=4096),
        "out-of-range": op(READ, [(2**64 - 4096, 4096)]) + op(WRITE, [(1 << 20, 4096)]),
        "read-1m": op(READ, pages(0, 256)),
        "non-contiguous": op(WRITE, [(0, 4096), (65536, 4096), (69632, 512)]),
        "zero-length-segment": op(READ, [(0, 0), (0, 4096)]),
        "discard-two-ranges": op(DISCARD, [(0, 4096), (8192, 4096)]),
        "short": op(READ, pages(0, 1))[:60],
    }


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "dblock")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
