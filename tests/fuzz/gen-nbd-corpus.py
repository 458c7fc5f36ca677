#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Write the seed corpus of fuzz-nbd into corpus/nbd/: one mode byte, then
what an NBD client sends (see the comment at the top of fuzz-nbd.c)."""
import os
import struct

OPTS_MAGIC = 0x49484156454F5054
REQ_MAGIC = 0x25609513
EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED = 1, 2, 3, 6, 7, 8
READ, WRITE, DISC, FLUSH, TRIM, ZEROES = 0, 1, 2, 3, 4, 6
FUA, NO_HOLE, DF = 1, 2, 4


def opt(code, data=b""):
    return struct.pack(">QII", OPTS_MAGIC, code, len(data)) + data


def go_data(name=b"fuzz", infos=(0, 1, 3)):
    return struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos)) + \
        b"".join(struct.pack(">H", i) for i in infos)


def req(cmd, off=0, length=0, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, off, length) + payload


def io_mix():
    data = bytes(range(256)) * 16  # 4 KiB
    return (req(WRITE, 0, 4096, payload=data, cookie=1) +
            req(READ, 0, 4096, cookie=2) +
            req(WRITE, 8192, 4096, FUA, payload=data, cookie=3) +
            req(FLUSH, cookie=4) +
            req(TRIM, 4096, 4096, cookie=5) +
            req(ZEROES, 65536, 8192, NO_HOLE, cookie=6) +
            req(READ, 0, 8192, DF, cookie=7) +
            req(DISC, cookie=8))


def seeds():
    hello = struct.pack(">I", 3)
    return {
        "kernel-io": b"\x01" + io_mix(),
        "kernel-read-only": b"\x03" + io_mix(),
        "kernel-unaligned": b"\x05" + req(WRITE, 1, 3, payload=b"abc") + req(READ, 1, 3, cookie=2),
        "kernel-bad-magic": b"\x01" + b"\x00" * 28,
        "kernel-huge-length": b"\x01" + req(READ, 0, 0xFFFFFFFF) + req(WRITE, 0, 0x02000200),
        "kernel-out-of-range": b"\x01" + req(READ, (1 << 20) - 512, 4096) + req(WRITE, 2**64 - 512, 512, payload=b"x" * 512),
        "kernel-unknown-cmd": b"\x01" + req(99, 0, 512) + req(READ, 0, 512, 0xFF),
        "kernel-truncated-write": b"\x01" + req(WRITE, 0, 65536, payload=b"y" * 1000),
        "kernel-truncated-header": b"\x01" + req(READ, 0, 512)[:17],
        "hs-go-structured": b"\x00" + hello + opt(STRUCTURED) + opt(GO, go_data()) + io_mix(),
        "hs-go-simple": b"\x00" + hello + opt(GO, go_data(b"")) + io_mix(),
        "hs-export-name": b"\x00" + hello + opt(EXPORT_NAME, b"fuzz") + io_mix(),
        "hs-export-name-zeroes": b"\x00" + struct.pack(">I", 1) + opt(EXPORT_NAME, b"") + req(READ, 0, 512),
        "hs-list-info-abort": b"\x00" + hello + opt(LIST) + opt(INFO, go_data(b"nope")) + opt(99, b"zz") + opt(ABORT),
        "hs-bad-client-flags": b"\x00" + struct.pack(">I", 0xFF),
        "hs-bad-opt-magic": b"\x00" + hello + b"NOTAMAGIC" + b"\x00" * 8,
        "hs-huge-option": b"\x00" + hello + struct.pack(">QII", OPTS_MAGIC, GO, 0xFFFFFFF0),
        "hs-go-bad-lengths": b"\x00" + hello + opt(GO, struct.pack(">I", 1000) + b"fuzz" + b"\x00\x05"),
        "hs-structured-ro": b"\x02" + hello + opt(STRUCTURED) + opt(STRUCTURED, b"x") + opt(GO, go_data()) +
        req(WRITE, 0, 512, payload=b"z" * 512) + req(READ, 0, 512, DF),
    }


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "nbd")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
