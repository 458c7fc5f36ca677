#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The metrics endpoint against real clients: promtool checks the
exposition under load, a real Prometheus server (Debian's package, on
loopback, its data in a temporary directory) scrapes the daemon while fio
writes, and its query API must give a request rate within 10 % of what fio
measured and a sane latency quantile.  Then unfriendly clients (wrong path,
wrong method, huge headers, a client that never finishes its request, 1000
connections) get an error or are dropped while a fio verify=crc32c on the
device goes on without error.

usage: test-metrics-prometheus.py BLKSERVD   (exit 77: skipped)
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

failures = 0


def check(what, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else ": " + str(detail)[:2000]))
    if not ok:
        failures += 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, cond, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if cond():
                return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    print("timed out waiting for " + what)
    return False


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def raw_request(port, data, timeout=5):
    """Send @data, return the status line (or '' if the server closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        try:
            reply = s.recv(4096).decode(errors="replace")
        except (ConnectionResetError, socket.timeout):
            return ""
    return reply.split("\r\n", 1)[0]


def fio(uri, args, runtime):
    return subprocess.Popen(
        ["fio", "--name=m", "--ioengine=nbd", "--uri=" + uri, "--bs=4k", "--iodepth=8",
         "--size=64M", "--time_based", "--runtime=%d" % runtime, "--output-format=json"] + args,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def prom_query(prom, query, at):
    url = "http://%s/api/v1/query?%s" % (prom, urllib.parse.urlencode({"query": query, "time": "%.3f" % at}))
    _, body = http_get(url)
    result = json.loads(body)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def main():
    blkservd = sys.argv[1]
    for tool in ("prometheus", "promtool", "fio"):
        if not shutil.which(tool):
            print("%s is not installed (tools/install-deps): skipped" % tool)
            return 77
    tmp = tempfile.mkdtemp(prefix="blkserv-metrics-")
    mport, pport = free_port(), free_port()
    sock = os.path.join(tmp, "ram0.sock")
    uri = "nbd+unix:///ram0?socket=" + sock
    conf = os.path.join(tmp, "blkservd.conf")
    with open(conf, "w") as f:
        f.write('plugin_dir = "%s"\nruntime_dir = "%s/run"\nlock_memory = false\n'
                'metrics {\n  tcp = "127.0.0.1:%d"\n  max_connections = 8\n}\n'
                'device "ram0" {\n  size = 256M\n  frontend "nbd-export" { unix = "%s" }\n'
                '  backend "ramdisk" { }\n}\n' % (os.environ["BLKSERV_TEST_PLUGIN_DIR"], tmp, mport, sock))
    log = open(os.path.join(tmp, "blkservd.log"), "w")
    daemon = subprocess.Popen([blkservd, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    prometheus = None
    try:
        url = "http://127.0.0.1:%d/metrics" % mport
        check("the endpoint answers", wait_for("the endpoint", lambda: http_get(url)[0] == 200))

        # promtool on the exposition while fio writes.
        load = fio(uri, ["--rw=randwrite"], 4)
        time.sleep(2)
        _, text = http_get(url)
        lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        check("promtool check metrics passes under load", lint.returncode == 0, lint.stdout + lint.stderr)
        load.wait()

        # A real Prometheus scraping every second while fio writes.
        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: blkservd\n"
                    "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % mport)
        prometheus = subprocess.Popen(
            ["prometheus", "--config.file=" + os.path.join(tmp, "prometheus.yml"),
             "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"), "--web.listen-address=127.0.0.1:%d" % pport],
            stdout=open(os.path.join(tmp, "prometheus.log"), "w"), stderr=subprocess.STDOUT)
        prom = "127.0.0.1:%d" % pport
        check("prometheus is ready", wait_for("prometheus", lambda: http_get("http://%s/-/ready" % prom)[0] == 200,
                                              timeout=60))
        check("prometheus scrapes blkservd",
              wait_for("a scrape", lambda: prom_query(prom, 'up{job="blkservd"}', time.time()) == 1, timeout=30))
        start = time.time()
        run = fio(uri, ["--rw=randwrite"], 24)
        out, _ = run.communicate()
        end = time.time()
        check("fio ran", run.returncode == 0, out[-2000:])
        fio_iops = json.loads(out[out.index("{"):])["jobs"][0]["write"]["iops"]
        time.sleep(3)  # the last scrapes
        # The rate over the middle of the run, where fio ran steadily.
        at = start + 18
        rate = prom_query(prom, 'rate(blkservd_requests_total{device="ram0",op="write"}[12s])', at)
        check("rate() of the request counter is within 10%% of fio's IOPS (fio %.0f, prometheus %s)" %
              (fio_iops, rate), rate is not None and abs(rate - fio_iops) <= 0.1 * fio_iops)
        p99 = prom_query(prom, 'histogram_quantile(0.99, rate(blkservd_request_duration_seconds_bucket'
                         '{device="ram0",op="write"}[12s]))', at)
        check("the p99 write latency is sane (%s s)" % p99, p99 is not None and 0 < p99 < 1)
        up = prom_query(prom, 'blkservd_device_up{device="ram0",frontend="nbd-export",backend="ramdisk"}', at)
        check("blkservd_device_up is 1 with its labels", up == 1)
        print("fio %.0f IOPS over %.1f s; prometheus rate %s; p99 %s s" % (fio_iops, end - start, rate, p99))

        # Unfriendly clients, next to a fio verify on the device.
        verify = fio(uri, ["--rw=randwrite", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1"], 15)
        check("a wrong path is 404", raw_request(mport, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            "HTTP/1.1 404"))
        check("a GET with a body is 400",
              raw_request(mport, b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
              .startswith("HTTP/1.1 400"))
        check("a POST is 405", raw_request(mport, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
              .startswith("HTTP/1.1 405"))
        huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n"
        status = raw_request(mport, huge)
        check("a 64 KiB header is refused (%r)" % status, status == "" or status.split(" ")[1] in ("413", "431", "400"))
        slow = socket.create_connection(("127.0.0.1", mport))
        slow.sendall(b"GET /metr")  # and never more
        deaf = socket.create_connection(("127.0.0.1", mport))
        deaf.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 4)  # and never reads a reply
        t0 = time.time()
        code, _ = http_get(url)
        check("clients that never finish or never read do not block others (%.2f s)" % (time.time() - t0),
              code == 200 and time.time() - t0 < 3)
        many = []
        for _ in range(1000):
            try:
                many.append(socket.create_connection(("127.0.0.1", mport), timeout=2))
            except OSError:
                break
        print("%d connections opened" % len(many))
        for s in many:
            s.close()
        slow.close()
        deaf.close()
        check("after 1000 connections the endpoint answers",
              wait_for("the endpoint after the flood", lambda: http_get(url)[0] == 200, timeout=15))
        out, _ = verify.communicate()
        check("fio verify=crc32c passed next to them", verify.returncode == 0, out[-2000:])
        check("the daemon is still running", daemon.poll() is None)
    finally:
        if prometheus:
            prometheus.terminate()
            prometheus.wait()
        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(timeout=60)
        check("blkservd stops with exit 0", rc == 0, rc)
        log.close()
        if failures:
            print(open(os.path.join(tmp, "blkservd.log")).read()[-3000:])
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d failure(s)" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
