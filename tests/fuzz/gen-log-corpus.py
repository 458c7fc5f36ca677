#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Write the seed corpus of fuzz-log-recover into corpus/log-recover/.

Each seed is one flags byte followed by segment files (see the comment at the
top of fuzz-log-recover.c).  The "raw" seeds carry real checksums; the
"compact" ones let the harness make the header and fix the checksums, which
is where the fuzzer spends most of its time.
"""
import os
import struct
import sys

POLY = 0x82F63B78
TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ (POLY if c & 1 else 0)
    TABLE.append(c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = (crc >> 8) ^ TABLE[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


UUID = bytes(range(16))
DEV_SIZE = 1 << 20
BLOCK = 512
WRITE, TRIM, ZERO, CKPT, SYNC = 1, 2, 3, 4, 5


def seg_header(seg_id, first_seq, flags=0, compact=False):
    h = b"BLKSLOG1" + struct.pack("<II16sQQQIIQ", 1, flags, UUID, seg_id, first_seq, DEV_SIZE, BLOCK, 0,
                                  1700000000000000000)
    if compact:
        return h
    h = h.ljust(4092, b"\0")
    return h + struct.pack("<I", crc32c(h))


def record(rtype, seq, seg, off=0, length=0, payload=b"", synced=0):
    h = struct.pack("<IHHQQQQQQ", 0x43524C42, 1, rtype, seq, off, length, len(payload), seg, synced)
    h += struct.pack("<I", crc32c(h))
    h += struct.pack("<I", crc32c(h, crc32c(payload)))
    return h + payload


def checkpoint(seq, seg, extents):
    payload = struct.pack("<Q", len(extents)).ljust(64, b"\0")
    for e in extents:
        payload += struct.pack("<QQQQ", *e)
    return record(CKPT, seq, seg, 0, len(extents), payload)


def segment1(compact=False):
    data = bytes((i * 7) & 0xFF for i in range(BLOCK))
    return (seg_header(1, 1, compact=compact) +
            record(WRITE, 1, 1, 0, BLOCK, data) +
            record(WRITE, 2, 1, 4096, BLOCK, data[::-1]) +
            record(SYNC, 3, 1, synced=2) +
            record(TRIM, 4, 1, 0, 1024, synced=2) +
            record(ZERO, 5, 1, 8192, 4096, synced=2))


def segment2(compact=False):
    # A checkpoint segment: the index after segment1, then one more write.
    foff = 4096 + 64 + BLOCK + 64  # the second write's payload in segment 1
    ckpt = checkpoint(6, 2, [(0, 1024, 1, 2**64 - 1), (4096, BLOCK, 1, foff), (8192, 4096, 1, 2**64 - 1)])
    return (seg_header(2, 6, flags=1, compact=compact) + ckpt +
            record(WRITE, 7, 2, 512, BLOCK, b"\xab" * BLOCK, synced=5))


def seeds():
    s1, s2 = segment1(), segment2()
    torn = s1[:-30]
    corrupt = bytearray(s1)
    corrupt[4096 + 64 + 10] ^= 0xFF  # payload of the first write
    corrupt += record(SYNC, 6, 1, synced=6)
    c1, c2 = segment1(True), segment2(True)
    fix = 0x01 | 0x02 | 0x20 | 0x40
    return {
        "empty": b"\x00",
        "raw-one-segment": b"\x00" + s1,
        "raw-two-segments": b"\x08" + s1 + s2,
        "raw-torn-tail": b"\x00" + torn,
        "raw-corrupt-flushed": b"\x00" + bytes(corrupt),
        "raw-corrupt-cut": b"\x04" + bytes(corrupt),
        "raw-missing-segment": b"\x20" + s1 + seg_header(3, 40) + record(SYNC, 40, 3),
        "raw-read-only-torn": b"\x10" + s1 + s2[:4700],
        "raw-bad-header": b"\x00" + s1[:100] + b"\x00" * 3996,
        "compact-one": bytes([fix]) + c1,
        "compact-two": bytes([fix | 0x08]) + c1 + c2,
        "compact-two-cut": bytes([fix | 0x04]) + c1 + c2[:200],
        "compact-ckpt-only": bytes([fix]) + c2,
    }


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "log-recover")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds())} seeds to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
