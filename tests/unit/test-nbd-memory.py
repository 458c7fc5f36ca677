#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The request-payload budgets and the handshake allowance of nbd-export.

1. Slow readers: clients send many 32 MiB reads and never read a reply.
   The daemon must stop reading them instead of growing: its VmHWM may
   grow by at most what blkservd.conf(5) promises (request_memory, plus
   one request per connection that holds nothing else) and, for a single
   connection, by client_memory.  Meanwhile a good client on the same
   export writes and reads back verified data without an error.
2. Idle handshakes: 24 connections that never send a byte of their
   handshake, then a good client: it must be served within 2 s (the
   oldest pending handshakes make room for it).

The device is a file backend on a temporary file, so a read fills its
buffer (a ramdisk read may go out with sendfile and touch no buffer).

usage: test-nbd-memory.py BLKSERVD   (BLKSERV_TEST_PLUGIN_DIR: the plugins)
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from importlib import import_module  # noqa: E402

bad = import_module("test-nbd-bad-clients")
Failure, handshake, request, reply, connect = (bad.Failure, bad.handshake, bad.request, bad.reply,
                                               bad.connect)

MiB = 1 << 20
SIZE = 256 * MiB
MAX_REQ = 32 * MiB
CLIENT_MEMORY = 64 * MiB
REQUEST_MEMORY = 128 * MiB
# Allocator and thread overhead beyond the payloads (measured: a few MiB).
SLACK = 24 * MiB


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise Failure(f"no {field} in /proc/{pid}/status")


def slow_reader(path, name, nreads):
    """Sends @nreads 32 MiB reads and never reads a byte of the replies."""
    s = handshake(path, name)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for i in range(nreads):
        request(s, bad.CMD_READ, (i * MAX_REQ) % SIZE, MAX_REQ, i + 1)
    return s


def good_io(path, name, rounds=20):
    """Writes and reads back 1 MiB blocks; returns the seconds it took."""
    t0 = time.monotonic()
    s = handshake(path, name)
    for i in range(rounds):
        data = os.urandom(MiB)
        off = (i % 8) * MiB
        request(s, bad.CMD_WRITE, off, MiB, 2 * i + 1, data)
        if reply(s, 2 * i + 1)[0]:
            raise Failure(f"a good client's write at {off} failed")
        request(s, bad.CMD_READ, off, MiB, 2 * i + 2)
        err, back = reply(s, 2 * i + 2, MiB)
        if err or back != data:
            raise Failure(f"a good client's read-back at {off} differs (error {err})")
    request(s, bad.CMD_DISC, 0, 0, 0)
    s.close()
    return time.monotonic() - t0


def settle(pid):
    """Wait until the daemon's RSS stops growing (the reads are done)."""
    last = -1
    for _ in range(50):
        time.sleep(0.2)
        rss = status(pid, "VmRSS")
        if rss == last:
            return
        last = rss


def test_slow_readers(pid, sock, nconns):
    base = status(pid, "VmRSS")
    conns = [slow_reader(sock, b"d0", 64) for _ in range(nconns)]
    settle(pid)
    secs = good_io(sock, b"d0")
    hwm = status(pid, "VmHWM")
    grown = hwm - base
    if nconns == 1:
        bound = CLIENT_MEMORY
    else:
        bound = REQUEST_MEMORY + (nconns + 1) * MAX_REQ
    print(f"{nconns} slow reader(s) x 64 reads of 32 MiB: VmHWM grew by {grown / MiB:.0f} MiB "
          f"(bound {bound / MiB:.0f} MiB + {SLACK / MiB:.0f} slack); a good client's 20 verified "
          f"1 MiB write+read pairs took {secs:.2f} s")
    for s in conns:
        s.close()
    if grown > bound + SLACK:
        raise Failure(f"the daemon grew by {grown / MiB:.0f} MiB, over its budget of {bound / MiB:.0f} MiB")
    if secs > 10:
        raise Failure(f"the good client was slowed down: {secs:.1f} s")


def greeted(s):
    """The server sent its greeting: the connection holds a place."""
    try:
        return len(bad.recv_exact(s, 18)) == 18
    except (EOFError, OSError):
        return False


def test_idle_handshakes(sock, n):
    idle = [connect(sock, 5) for _ in range(n)]
    held = sum(greeted(s) for s in idle)
    if held < 16:
        raise Failure(f"only {held} of {n} idle connections got a greeting: the test proves nothing")
    t0 = time.monotonic()
    try:
        good_io(sock, b"d0", rounds=2)
    except (EOFError, OSError) as e:
        raise Failure(f"{n} idle handshakes locked a good client out: {type(e).__name__}: {e}")
    took = time.monotonic() - t0
    print(f"{n} idle connections ({held} greeted, none sends a handshake): a good client was served "
          f"in {took:.2f} s")
    for s in idle:
        s.close()
    if took > 2:
        raise Failure(f"{n} idle handshakes held a good client off for {took:.1f} s")


def main():
    blkservd = sys.argv[1]
    plugins = os.environ.get("BLKSERV_TEST_PLUGIN_DIR", "")
    for p in ("blkserv-frontend-nbd-export.so", "blkserv-backend-file.so"):
        if not os.path.exists(os.path.join(plugins, p)):
            print(f"SKIP: {p} is not built")
            return 77
    tmp = tempfile.mkdtemp(prefix="blkserv-memory-")
    sock = os.path.join(tmp, "d0.sock")
    img = os.path.join(tmp, "d0.img")
    with open(img, "wb") as f:
        f.truncate(SIZE)
    conf = os.path.join(tmp, "blkservd.conf")
    with open(conf, "w") as f:
        f.write(f'plugin_dir = "{plugins}"\nruntime_dir = "{tmp}/run"\nlock_memory = false\n'
                f'request_memory = {REQUEST_MEMORY}\n'
                f'device "d0" {{\n  size = {SIZE}\n  block_size = 512\n'
                f'  frontend "nbd-export" {{ unix = "{sock}"  max_clients = 16  client_memory = {CLIENT_MEMORY} }}\n'
                f'  backend "file" {{ path = "{img}" }}\n}}\n')
    log = open(os.path.join(tmp, "blkservd.log"), "w+")
    daemon = subprocess.Popen([blkservd, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            if os.path.exists(sock) or daemon.poll() is not None:
                break
            time.sleep(0.05)
        if daemon.poll() is not None:
            raise Failure("blkservd exited at start")
        good_io(sock, b"d0", rounds=2)  # warm: threads, rings, buffers
        test_slow_readers(daemon.pid, sock, 1)
        settle(daemon.pid)
        test_slow_readers(daemon.pid, sock, 8)
        time.sleep(1.5)  # the closed clients are reaped (they held places)
        test_idle_handshakes(sock, 24)
        if daemon.poll() is not None:
            raise Failure("blkservd died")
        daemon.send_signal(signal.SIGTERM)
        if daemon.wait(30) != 0:
            raise Failure(f"blkservd exited with {daemon.returncode} at stop")
        print("blkservd stopped cleanly")
        return 0
    except Failure as e:
        print(f"FAIL: {e}")
        return 1
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.seek(0)
        text = log.read()
        print("---- blkservd log (last 30 lines)")
        print("\n".join(text.splitlines()[-30:]))
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main())
