#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench/report.py RESULTS META CPU-REPORT OUTDIR: bench/run's report.

RESULTS: "PART TARGET QUEUES JOB IOPS MIB/S MEAN-us P99-us CPU-us/op" lines
(several rounds: the best of each figure is kept).  META: KEY=VALUE lines.
CPU-REPORT: bench/cpu-cost's table (may be missing).  Writes
OUTDIR/performance.md, OUTDIR/performance-data.txt and, with gnuplot,
OUTDIR/performance.png.
"""
import os
import shutil
import subprocess
import sys

JOBS = ["randread-4k-qd1", "randread-4k-qd32", "randwrite-4k-qd1", "randwrite-4k-qd32",
        "read-1m-qd8", "write-1m-qd8"]
LABEL = {
    "nbdkit-memory": "nbdkit memory", "export-ramdisk": "**blkservd nbd-export + ramdisk**",
    "nbdkit-file": "nbdkit file", "export-file": "**blkservd nbd-export + file**",
    "fio-file": "fio on the file",
    "brd": "brd", "nbdkit": "nbdkit memory + nbd-client", "rawfile": "fio on the tmpfs file",
    "nbd-ramdisk": "**nbd + ramdisk**", "ublk-ramdisk": "**ublk + ramdisk**",
    "dblock-ramdisk": "**dblock + ramdisk**", "nbd-file": "**nbd + file**",
    "ublk-file": "**ublk + file**", "dblock-file": "**dblock + file**",
}


def is_iops(job):
    return "4k" in job


def load(path):
    """{(part, target, q, job): (iops, mib, mean, p99, cpu)}, best round kept."""
    best = {}
    for line in open(path):
        f = line.split()
        if len(f) != 9:
            continue
        key = tuple(f[:4])
        row = (float(f[4]), float(f[5]), float(f[6]), float(f[7]), f[8])
        v = row[0] if is_iops(f[3]) else row[1]
        old = best.get(key)
        if old is None or v > (old[0] if is_iops(f[3]) else old[1]):
            best[key] = row
    return best


def value(res, part, target, q, job):
    row = res.get((part, target, q, job))
    if row is None:
        return None
    return row[0] if is_iops(job) else row[1]


def ratio(a, b):
    return "%.2f" % (a / b) if a and b else "-"


def fmt_rows(res, part, targets, peers, out):
    """One table: a row per job, queue count and target; a ratio column per peer."""
    heads = ["job", "queues", "target", "IOPS", "MiB/s", "lat mean µs", "lat p99 µs"]
    if part == "host":
        heads.append("server CPU µs/req")
    heads += ["× " + LABEL[p] for p in peers]
    out.append("| " + " | ".join(heads) + " |")
    out.append("|" + "---|" * len(heads))
    for job in JOBS:
        for q in ("1", "2"):
            for t in targets:
                row = res.get((part, t, q, job))
                if row is None:
                    continue
                cells = [job, q, LABEL[t], "%.0f" % row[0], "%.1f" % row[1], "%.0f" % row[2],
                         "%.0f" % row[3]]
                if part == "host":
                    cells.append(row[4])
                mine = value(res, part, t, q, job)
                cells += ["" if p == t else ratio(mine, value(res, part, p, q, job)) for p in peers]
                out.append("| " + " | ".join(cells) + " |")
    out.append("")


def targets_section(res, meta, out):
    out.append("## Targets")
    out.append("")
    out.append("| target | measured | verdict |")
    out.append("|---|---|---|")
    # export >= 1.0x nbdkit on every job
    rs = [(value(res, "host", "export-ramdisk", q, j) or 0) / value(res, "host", "nbdkit-memory", q, j)
          for j in JOBS for q in "12" if value(res, "host", "nbdkit-memory", q, j)]
    rsf = [(value(res, "host", "export-file", q, j) or 0) / value(res, "host", "nbdkit-file", q, j)
           for j in JOBS for q in "12" if value(res, "host", "nbdkit-file", q, j)]
    if rs:
        worst = min(rs + rsf)
        out.append("| nbd-export ≥ 1.0× nbdkit on every job | ramdisk vs memory: %.2f–%.2f×; file vs file: %s | %s |"
                   % (min(rs), max(rs), "%.2f–%.2f×" % (min(rsf), max(rsf)) if rsf else "-",
                      "met" if worst >= 1.0 else "**missed** (worst %.2f×)" % worst))
    # ublk >= 2x nbd on 4k random
    ur = []
    for j in JOBS[:4]:
        for q in "12":
            for b in ("ramdisk", "file"):
                u, n = value(res, "vm", "ublk-" + b, q, j), value(res, "vm", "nbd-" + b, q, j)
                if u and n:
                    ur.append((u / n, "%s %s q%s" % (b, j, q)))
    if ur:
        lo = min(ur)
        out.append("| ublk ≥ 2× the nbd frontend on 4k random jobs (VM) | %.2f–%.2f× (lowest: %s) | %s |"
                   % (lo[0], max(ur)[0], lo[1], "met" if lo[0] >= 2 else "**missed**"))
    # ramdisk bandwidth per core within 2x of memcpy
    mc = float(meta.get("memcpy_mib", 0) or 0)
    per_core = []
    for j in ("read-1m-qd8", "write-1m-qd8"):
        row = res.get(("host", "export-ramdisk", "1", j))
        if row and row[4] not in ("-", "0.0") and float(row[4]) > 0:
            # CPU µs per 1 MiB request -> MiB per CPU second
            per_core.append((1e6 / float(row[4]), j))
    if per_core and mc:
        lo = min(per_core)
        out.append("| ramdisk bandwidth per daemon core within 2× of memcpy (%.0f MiB/s, 1 MiB chunks, one core) "
                   "| nbd-export + ramdisk: %s MiB per CPU-second | %s |"
                   % (mc, ", ".join("%s %.0f" % (j, v) for v, j in per_core),
                      "met" if lo[0] * 2 >= mc else "**missed** (%.1f× below memcpy)" % (mc / lo[0])))
    out.append("")


def chart(res, outdir, out):
    gp = shutil.which("gnuplot")
    if not gp:
        print("bench/report.py: gnuplot is not installed: no chart (apt-get install gnuplot-nox)",
              file=sys.stderr)
        return
    panels = [
        ("host", "Host: nbd-export ÷ nbdkit (same backend kind)",
         [("ramdisk q1", "export-ramdisk", "nbdkit-memory", "1"),
          ("ramdisk q2", "export-ramdisk", "nbdkit-memory", "2"),
          ("file q1", "export-file", "nbdkit-file", "1"), ("file q2", "export-file", "nbdkit-file", "2")]),
        ("vm1", "VM, ramdisk, 1 queue: ÷ brd",
         [(n, t, "brd", "1") for n, t in (("nbdkit+nbd-client", "nbdkit"), ("blkservd nbd", "nbd-ramdisk"),
                                         ("blkservd ublk", "ublk-ramdisk"), ("blkservd dblock", "dblock-ramdisk"))]),
        ("vm2", "VM, ramdisk, 2 queues: ÷ brd",
         [(n, t, "brd", "2") for n, t in (("nbdkit+nbd-client", "nbdkit"), ("blkservd nbd", "nbd-ramdisk"),
                                         ("blkservd ublk", "ublk-ramdisk"), ("blkservd dblock", "dblock-ramdisk"))]),
        ("vmf", "VM, file backend on tmpfs: ÷ fio on the file",
         [("nbd q1", "nbd-file", "rawfile", "1"), ("ublk q1", "ublk-file", "rawfile", "1"),
          ("dblock q1", "dblock-file", "rawfile", "1"), ("ublk q2", "ublk-file", "rawfile", "2")]),
    ]
    tmp = os.path.join(outdir, ".chart")
    os.makedirs(tmp, exist_ok=True)
    script = ['set terminal pngcairo size 1400,1000 font "DejaVu Sans,10"',
              'set output "%s"' % os.path.join(outdir, "performance.png"),
              'set multiplot layout 2,2 title "blkservd vs peers (bars: ratio, higher is better; line: 1.0)" font ",13"',
              'set style data histograms', 'set style histogram clustered gap 1',
              'set style fill solid 0.85 border -1', 'set boxwidth 0.9', 'set logscale y 2',
              'set datafile missing "-"', 'set key outside below horizontal font ",9"', 'set grid ytics',
              'set xtics rotate by 25 right font ",9"', 'set ylabel "ratio (log scale)"',
              'set format y "%.3g"', 'set xrange [-0.6:%.1f]' % (len(JOBS) - 0.4)]
    drawn = 0
    for name, title, series in panels:
        rows = []
        for j in JOBS:
            cells = []
            for _, t, peer, q in series:
                a, b = value(res, "vm" if name != "host" else "host", t, q, j), \
                    value(res, "vm" if name != "host" else "host", peer, q, j)
                cells.append("%.3f" % (a / b) if a and b else "-")
            rows.append(j + " " + " ".join(cells))
        if all(r.split()[1:] == ["-"] * len(series) for r in rows):
            script.append('set multiplot next' if drawn else 'unset key')
            continue
        data = os.path.join(tmp, name + ".dat")
        with open(data, "w") as f:
            f.write("job " + " ".join('"%s"' % s[0] for s in series) + "\n")
            f.write("\n".join(rows) + "\n")
        script.append('set title "%s"' % title)
        script.append("plot for [i=2:%d] '%s' using i:xtic(1) title columnhead, 1 with lines lw 2 lc rgb 'black' notitle"
                      % (len(series) + 1, data))
        drawn += 1
    script.append("unset multiplot")
    r = subprocess.run([gp], input="\n".join(script) + "\n", text=True, capture_output=True)
    shutil.rmtree(tmp, ignore_errors=True)
    if r.returncode != 0:
        print("bench/report.py: gnuplot failed: " + r.stderr, file=sys.stderr)
        return
    out.append("![ratios of blkservd to its peers](performance.png)")
    out.append("")


def main():
    results, metafile, cpufile, outdir = sys.argv[1:5]
    res = load(results)
    meta = dict(l.rstrip("\n").split("=", 1) for l in open(metafile) if "=" in l)
    out = ["<!-- SPDX-License-Identifier: LGPL-2.1-or-later -->",
           "<!-- Generated by bench/run; do not edit by hand. -->", "",
           "# blkservd performance", ""]
    out.append("Measured by `bench/run` on %s (commit %s, build type %s), fio %s s per run, best of %s round(s); "
               "the whole run took %s min." % (meta.get("date"), meta.get("commit"), meta.get("buildtype"),
                                               meta.get("runtime"), meta.get("rounds"), meta.get("minutes")))
    out.append("")
    out.append("- Machine: %s, %s cores, kernel %s. **Shared** with other engineers' builds and VMs: load average "
               "(1/5/15 min, 2 cores: above 2 means waiting for a CPU) %s at the start, %s after the host part, %s after the VM part, %s at the end."
               % (meta.get("cpu"), meta.get("cores"), meta.get("kernel"), meta.get("load_start"),
                  meta.get("load_after_host", "-"), meta.get("load_after_vm", "-"), meta.get("load_end")))
    out.append("- Host part: fio's nbd engine over Unix sockets (2 queues = 2 fio jobs = 2 connections); the file is "
               "on %s (page cache, `direct = false`)." % meta.get("file_fs", "ext4 under /var/tmp"))
    out.append("- VM part: kernel %s under **qemu TCG** (software emulation, no KVM), 2 vCPUs; fio io_uring, "
               "O_DIRECT; 2 queues = a 2-queue device (ublk `queues`, nbd `connections`; dblock has one kernel "
               "queue and 16 threads) and 2 fio jobs. TCG makes every absolute VM figure small and noisy: compare "
               "ratios measured in this run, never with numbers from other machines." % meta.get("vm_kernel", "-"))
    out.append("- Single-core memcpy (bench/memcpy.c, 1 MiB chunks, 256 MiB areas): %s MiB/s." % meta.get("memcpy_mib"))
    out.append("- Latency: fio's total latency (submission + completion) per request, mean and 99th percentile "
               "(`--lat_percentiles=1`).")
    out.append("")
    targets_section(res, meta, out)
    if os.path.exists(os.path.join(outdir, "performance-notes.md")):
        out.append("Why a target is missed, with the profiles: [performance-notes.md](performance-notes.md) "
                   "(written by hand), with the I/O pause of an upgrade, a restart and a crash "
                   "(`bench/outlive.sh`).")
        out.append("")
    chart(res, outdir, out)
    out.append("## Host: nbd-export (no kernel module)")
    out.append("")
    out.append("Ramdisk backend vs `nbdkit memory`:")
    out.append("")
    fmt_rows(res, "host", ["nbdkit-memory", "export-ramdisk"], ["nbdkit-memory"], out)
    out.append("File backend vs `nbdkit file` and fio (io_uring, buffered) on the same file:")
    out.append("")
    fmt_rows(res, "host", ["fio-file", "nbdkit-file", "export-file"], ["fio-file", "nbdkit-file"], out)
    out.append("## VM: kernel frontends")
    out.append("")
    out.append("Ramdisk backend vs brd and nbdkit memory + nbd-client:")
    out.append("")
    fmt_rows(res, "vm", ["brd", "nbdkit", "nbd-ramdisk", "ublk-ramdisk", "dblock-ramdisk"],
             ["brd", "nbdkit", "nbd-ramdisk"], out)
    out.append("File backend (a tmpfs file in the VM) vs fio on that file:")
    out.append("")
    fmt_rows(res, "vm", ["rawfile", "nbd-file", "ublk-file", "dblock-file"], ["rawfile", "nbd-file"], out)
    out.append("## CPU cost per request (callgrind, instructions)")
    out.append("")
    if os.path.exists(cpufile) and os.path.getsize(cpufile):
        out.append("`bench/cpu-cost`: blkservd under callgrind serving N then 2N fio requests; the difference "
                   "divided by N. Stable on a loaded machine, unlike times; compared with `bench/cpu-baseline.txt`.")
        out.append("")
        out += open(cpufile).read().rstrip("\n").split("\n")
    else:
        out.append("(not measured in this run)")
    out.append("")
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "performance.md"), "w") as f:
        f.write("\n".join(out))
    with open(os.path.join(outdir, "performance-data.txt"), "w") as f:
        f.write("# SPDX-License-Identifier: LGPL-2.1-or-later\n")
        f.write("# bench/run raw figures: PART TARGET QUEUES JOB IOPS MIB/S MEAN-us P99-us SERVER-CPU-us/req\n")
        f.write(open(results).read())


if __name__ == "__main__":
    main()
