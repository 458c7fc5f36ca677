#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench/fio-summary.py JSON-FILE | --lines FILE

JSON-FILE: fio's JSON output (fio may print notes before it); prints
"IOPS MiB/s MEAN-us P99-us" of jobs[0] (the sum of every job with
group_reporting), the direction that moved data.  Latency is the total
(submission + completion): a synchronous path (brd, a page-cache hit)
completes inside the submission, where the completion latency alone would
show almost nothing.  P99 is the total's with --lat_percentiles=1, else the
completion's.

--lines FILE: "BENCH-JSON TARGET QUEUES JOB {json}" lines (bench-kernel's
results port); prints "vm TARGET QUEUES JOB IOPS MiB/s MEAN P99 -" lines.
"""
import json
import sys


def summary(text):
    j = json.loads(text[text.index("{"):])["jobs"][0]
    d = j["read"] if j["read"]["io_bytes"] else j["write"]
    lat = d.get("lat_ns", {})
    pct = lat.get("percentile") or d.get("clat_ns", {}).get("percentile", {})
    return "%.0f %.1f %.1f %.1f" % (d["iops"], d["bw_bytes"] / 2**20, lat.get("mean", 0) / 1000,
                                    pct.get("99.000000", 0) / 1000)


def main():
    if sys.argv[1] == "--lines":
        for line in open(sys.argv[2], errors="replace"):
            parts = line.rstrip("\r\n").split(" ", 4)
            if len(parts) != 5 or parts[0] != "BENCH-JSON":
                continue
            try:
                print("vm %s %s %s %s -" % (parts[1], parts[2], parts[3], summary(parts[4])))
            except (ValueError, KeyError):
                print("fio-summary: unreadable figures for %s q%s %s" % tuple(parts[1:4]), file=sys.stderr)
        return
    print(summary(open(sys.argv[1]).read()))


if __name__ == "__main__":
    main()
