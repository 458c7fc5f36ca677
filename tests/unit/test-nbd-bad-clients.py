#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Bad NBD clients against the nbd-export frontend of a real blkservd.

While good clients write and read back verified data on two exports, bad
clients connect to the same exports and send garbage instead of a
handshake, bad option magic, options and requests with huge lengths, bad
request magic, unknown commands, a write whose payload never comes, half a
request header, a flood of big reads they never read, or they vanish
mid-request.  The daemon must keep serving the good clients without a
single error, accept new clients afterwards, and stop cleanly.

usage: test-nbd-bad-clients.py BLKSERVD   (BLKSERV_TEST_PLUGIN_DIR: the plugins)
"""
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

OPTS_MAGIC = 0x49484156454F5054
INIT_MAGIC = 0x4E42444D41474943
REQ_MAGIC = 0x25609513
REPLY_MAGIC = 0x67446698
OPT_EXPORT_NAME, OPT_GO = 1, 7
REP_ACK, REP_INFO = 1, 3
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
SIZE = 64 << 20


class Failure(Exception):
    pass


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def connect(path, timeout=30):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def handshake(path, name):
    """A fixed-newstyle client: OPT_GO for @name, simple replies."""
    s = connect(path)
    magic, opts, flags = struct.unpack(">QQH", recv_exact(s, 18))
    if magic != INIT_MAGIC or opts != OPTS_MAGIC:
        raise Failure("bad greeting")
    s.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    s.sendall(struct.pack(">QII", OPTS_MAGIC, OPT_GO, len(data)) + data)
    while True:
        magic, opt, rep, length = struct.unpack(">QIII", recv_exact(s, 20))
        payload = recv_exact(s, length) if length else b""
        if rep == REP_ACK:
            return s
        if rep != REP_INFO:
            raise Failure(f"OPT_GO refused: reply {rep:#x} {payload!r}")


def request(s, cmd, offset, length, cookie, payload=b""):
    s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, cmd, cookie, offset, length) + payload)


def reply(s, cookie, read_len=0):
    magic, error, got = struct.unpack(">IIQ", recv_exact(s, 16))
    if magic != REPLY_MAGIC or got != cookie:
        raise Failure(f"bad reply: magic {magic:#x} cookie {got} (wanted {cookie})")
    data = recv_exact(s, read_len) if read_len and not error else b""
    return error, data


class GoodClient(threading.Thread):
    """Writes and reads back random blocks until told to stop."""

    def __init__(self, path, name, region):
        super().__init__(daemon=True)
        self.path, self.export, self.region = path, name, region
        self.stop = threading.Event()
        self.ops = 0
        self.error = None

    def run(self):
        try:
            s = handshake(self.path, self.export)
            rng = random.Random(self.region)
            cookie = 0
            while not self.stop.is_set():
                off = self.region + rng.randrange(0, 1024) * 4096
                data = rng.randbytes(4096 * rng.randint(1, 16))
                cookie += 1
                request(s, CMD_WRITE, off, len(data), cookie, data)
                if reply(s, cookie)[0]:
                    raise Failure(f"write at {off} failed")
                cookie += 1
                request(s, CMD_READ, off, len(data), cookie)
                err, back = reply(s, cookie, len(data))
                if err or back != data:
                    raise Failure(f"read-back at {off} differs (error {err})")
                self.ops += 2
            cookie += 1
            request(s, CMD_FLUSH, 0, 0, cookie)
            if reply(s, cookie)[0]:
                raise Failure("flush failed")
            request(s, CMD_DISC, 0, 0, 0)
            s.close()
        except Exception as e:  # reported by the main thread
            self.error = f"{type(e).__name__}: {e}"


def closed_soon(s):
    """The server closes the connection (reads end) within the timeout."""
    try:
        while s.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def bad_clients(path, name):
    """Each returns a description; raises Failure if the server misbehaves."""
    rng = random.Random(7)

    def garbage_greeting():
        s = connect(path, 10)
        recv_exact(s, 18)
        s.sendall(rng.randbytes(4096))
        if not closed_soon(s):
            raise Failure("garbage instead of client flags: not closed")

    def bad_option_magic():
        s = connect(path, 10)
        recv_exact(s, 18)
        s.sendall(struct.pack(">I", 3) + b"NOTMAGIC" + struct.pack(">II", OPT_GO, 4) + b"abcd")
        if not closed_soon(s):
            raise Failure("bad option magic: not closed")

    def huge_option():
        s = connect(path, 10)
        recv_exact(s, 18)
        s.sendall(struct.pack(">I", 3) + struct.pack(">QII", OPTS_MAGIC, OPT_GO, 0xFFFFFFFF) + b"x" * 100)
        if not closed_soon(s):
            raise Failure("a 4 GiB option: not closed")

    def gone_in_handshake():
        s = connect(path, 10)
        recv_exact(s, 18)
        s.sendall(struct.pack(">I", 3) + struct.pack(">QII", OPTS_MAGIC, OPT_GO, 200) + b"y" * 20)
        s.close()

    def bad_request_magic():
        s = handshake(path, name)
        s.sendall(rng.randbytes(28))
        if not closed_soon(s):
            raise Failure("bad request magic: not closed")

    def huge_read():
        s = handshake(path, name)
        request(s, CMD_READ, 0, 0xFFFFFFFF, 1)
        err, _ = reply(s, 1)
        if err == 0:
            raise Failure("a 4 GiB read succeeded")
        request(s, CMD_READ, 0, 4096, 2)  # the stream is still in step
        err, _ = reply(s, 2, 4096)
        if err:
            raise Failure(f"a read after the refused one failed ({err})")
        s.close()

    def huge_write():
        s = handshake(path, name)
        request(s, CMD_WRITE, 0, 0xFFFFFFF0, 1, b"z" * 65536)
        s.close()  # the server must not wait for 4 GiB or allocate it

    def out_of_range():
        s = handshake(path, name)
        request(s, CMD_READ, SIZE - 512, 4096, 1)
        err, _ = reply(s, 1)
        request(s, CMD_WRITE, 2**64 - 4096, 4096, 2, b"w" * 4096)
        err2, _ = reply(s, 2)
        if not err or not err2:
            raise Failure("out-of-range requests succeeded")
        s.close()

    def unknown_command():
        s = handshake(path, name)
        request(s, 77, 0, 512, 1)
        err, _ = reply(s, 1)
        if not err:
            raise Failure("an unknown command succeeded")
        s.close()

    def write_payload_never_comes():
        s = handshake(path, name)
        request(s, CMD_WRITE, 8192, 65536, 1, b"p" * 1000)
        s.close()

    def half_a_header():
        s = handshake(path, name)
        s.sendall(struct.pack(">IHHQ", REQ_MAGIC, 0, CMD_READ, 5))
        s.close()

    def read_flood_never_read():
        s = handshake(path, name)
        for i in range(64):
            request(s, CMD_READ, 0, 1 << 20, i + 1)
        time.sleep(0.2)
        s.close()

    def reset_mid_request():
        s = handshake(path, name)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        request(s, CMD_WRITE, 0, 1 << 20, 1, b"r" * 4096)
        s.close()

    def export_name_unknown():
        s = connect(path, 10)
        recv_exact(s, 18)
        s.sendall(struct.pack(">I", 1) + struct.pack(">QII", OPTS_MAGIC, OPT_EXPORT_NAME, 4) + b"nope")
        if not closed_soon(s):
            raise Failure("an unknown export name: not closed")

    return [garbage_greeting, bad_option_magic, huge_option, gone_in_handshake, bad_request_magic,
            huge_read, huge_write, out_of_range, unknown_command, write_payload_never_comes,
            half_a_header, read_flood_never_read, reset_mid_request, export_name_unknown]


def main():
    blkservd = sys.argv[1]
    plugins = os.environ.get("BLKSERV_TEST_PLUGIN_DIR", "")
    if not os.path.exists(os.path.join(plugins, "blkserv-frontend-nbd-export.so")):
        print("SKIP: the nbd-export frontend is not built")
        return 77
    tmp = tempfile.mkdtemp(prefix="blkserv-bad-clients-")
    socks = [os.path.join(tmp, f"d{i}.sock") for i in range(2)]
    conf = os.path.join(tmp, "blkservd.conf")
    with open(conf, "w") as f:
        f.write(f'plugin_dir = "{plugins}"\nruntime_dir = "{tmp}/run"\nlock_memory = false\n')
        for i, sock in enumerate(socks):
            f.write(f'device "d{i}" {{\n  size = {SIZE}\n  block_size = 512\n'
                    f'  frontend "nbd-export" {{ unix = "{sock}"  max_clients = 64  handshake_timeout = 5 }}\n'
                    f'  backend "ramdisk" {{ }}\n}}\n')
    log = open(os.path.join(tmp, "blkservd.log"), "w+")
    daemon = subprocess.Popen([blkservd, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            if all(os.path.exists(s) for s in socks) or daemon.poll() is not None:
                break
            time.sleep(0.05)
        if daemon.poll() is not None:
            raise Failure("blkservd exited at start")
        good = [GoodClient(socks[0], b"d0", 0), GoodClient(socks[0], b"d0", 16 << 20),
                GoodClient(socks[1], b"d1", 0)]
        for g in good:
            g.start()
        bad = bad_clients(socks[0], b"d0") + bad_clients(socks[1], b"d1")
        for round_ in range(3):
            for b in bad:
                b()
        print(f"{3 * len(bad)} bad clients sent away")
        time.sleep(0.5)
        for g in good:
            g.stop.set()
        for g in good:
            g.join(60)
            if g.is_alive() or g.error:
                raise Failure(f"a good client was disturbed: {g.error or 'it hangs'}")
        print(f"good clients: {sum(g.ops for g in good)} verified requests, no error")
        # New clients are still welcome.
        after = GoodClient(socks[1], b"d1", 32 << 20)
        after.start()
        time.sleep(0.3)
        after.stop.set()
        after.join(30)
        if after.error or after.ops == 0:
            raise Failure(f"a new client after the bad ones failed: {after.error}")
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
        print("---- blkservd log (last 40 lines)")
        print("\n".join(text.splitlines()[-40:]))
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main())
