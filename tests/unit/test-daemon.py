#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon as a process: sd_notify readiness and status, reload (valid
and invalid), clean stop, all-or-nothing start, and the command-line
actions.  Needs no root: devices use the test frontend (no kernel device)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BLKSERVD = sys.argv[1]
BLKSERVCTL = sys.argv[2]
PLUGINS = os.environ["BLKSERV_TEST_PLUGIN_DIR"]
FIXTURES = os.environ["BLKSERV_TEST_FIXTURE_DIR"]
failures = 0


def check(name, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + detail))
    if not ok:
        failures += 1


def device(name, extra=""):
    return (f'device "{name}" {{\n  size = 1M\n'
            f'  frontend "testfe" {{ socket = "/x"\n {extra} }}\n'
            f'  backend "ramdisk" {{ }}\n}}\n')


class Daemon:
    def __init__(self, tmp, config_text):
        self.tmp = tmp
        self.config = os.path.join(tmp, "blkservd.conf")
        self.write_config(config_text)
        self.sock_path = os.path.join(tmp, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)
        self.sock.settimeout(10)
        env = dict(os.environ, NOTIFY_SOCKET=self.sock_path)
        self.stderr_path = os.path.join(tmp, "stderr.log")
        self.stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            [BLKSERVD, "-c", self.config, "--plugin-dir", plugin_dir(tmp)],
            env=env, stderr=self.stderr)

    def write_config(self, text):
        with open(self.config, "w") as f:
            f.write(f'runtime_dir = "{self.tmp}/run"\nlock_memory = false\n' + text)

    def wait_for(self, key):
        """Collect notify messages until one contains KEY=...; return all."""
        seen = []
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            seen.append(msg)
            if any(line.startswith(key + "=") for line in msg.splitlines()):
                return "\n".join(seen)
        return None

    def log(self):
        # A file object of its own: seeking the child's shared offset
        # would make it overwrite its own log.
        with open(self.stderr_path) as f:
            return f.read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()
        self.stderr.close()


def plugin_dir(tmp):
    d = os.path.join(tmp, "plugins")
    if not os.path.isdir(d):
        os.mkdir(d, 0o755)
        for src in [os.path.join(PLUGINS, f) for f in os.listdir(PLUGINS)] + \
                [os.path.join(FIXTURES, "blkserv-frontend-testfe.so")]:
            if src.endswith(".so"):
                shutil.copy(src, d)
                os.chmod(os.path.join(d, os.path.basename(src)), 0o755)
    return d


def test_lifecycle(tmp):
    d = Daemon(tmp, device("ram0"))
    try:
        msgs = d.wait_for("READY")
        check("READY=1 is sent", msgs is not None and "READY=1" in msgs, d.log())
        check("STATUS names the device", msgs is not None and
              "ram0 (testfe testfe, ramdisk)" in msgs, str(msgs))

        test_blkservctl(tmp)
        check("blkservctl reload notifies READY=1 again", d.wait_for("READY") is not None)

        d.write_config(device("ram0") + "device \"broken\" {\n  size = 12Q\n}\n")
        d.proc.send_signal(signal.SIGHUP)
        msgs = d.wait_for("READY")
        check("reload sends RELOADING=1 then READY=1",
              msgs is not None and "RELOADING=1" in msgs and "READY=1" in msgs, str(msgs))
        check("invalid reload is logged with its line",
              "reload failed" in d.log() and "blkservd.conf:10:" in d.log(), d.log())
        check("invalid reload keeps the daemon running", d.proc.poll() is None)

        d.write_config(device("ram0") + device("ram1"))
        d.proc.send_signal(signal.SIGHUP)
        msgs = d.wait_for("READY")
        check("reload adds a device", msgs is not None and "Serving 2 devices" in msgs and
              "ram1" in msgs, str(msgs))

        d.write_config(device("ram1"))
        d.proc.send_signal(signal.SIGHUP)
        msgs = d.wait_for("READY")
        check("reload removes a device", msgs is not None and "Serving 1 device:" in msgs and
              "ram0" not in msgs.split("READY=1")[-1], str(msgs))

        d.proc.send_signal(signal.SIGTERM)
        msgs = d.wait_for("STOPPING")
        check("SIGTERM sends STOPPING=1", msgs is not None)
        check("clean stop exits 0", d.proc.wait(timeout=10) == 0, d.log())
        check("stop is logged per device", "ram1: stopped" in d.log(), d.log())
    finally:
        d.close()


def ctl(tmp, *args):
    p = subprocess.run([BLKSERVCTL, "--socket", os.path.join(tmp, "run", "control.sock")] + list(args),
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


def test_blkservctl(tmp):
    import json
    sock = os.path.join(tmp, "run", "control.sock")
    check("control socket is root-only", (os.stat(sock).st_mode & 0o777) == 0o600, oct(os.stat(sock).st_mode))
    rc, out = ctl(tmp, "list")
    check("blkservctl list", rc == 0 and "ram0" in out and "ramdisk" in out and "live" in out, out)
    rc, out = ctl(tmp, "--json", "list")
    devs = json.loads(out) if rc == 0 else []
    check("blkservctl --json list", len(devs) == 1 and devs[0]["name"] == "ram0" and
          devs[0]["size"] == 1048576 and devs[0]["read_only"] is False, out)
    rc, out = ctl(tmp, "--json", "status", "ram0")
    st = json.loads(out) if rc == 0 else {}
    check("blkservctl status shows capabilities", st.get("capabilities") == "flush,fua,trim,write_zeroes", out)
    # testfe's start wrote and read 4 KiB once through the backend.
    rc, out = ctl(tmp, "--json", "stats", "ram0")
    stats = json.loads(out) if rc == 0 else {}
    ops = stats.get("ops", {})
    check("blkservctl stats counts the I/O done", ops.get("write", {}).get("ops") == 1 and
          ops.get("write", {}).get("bytes") == 4096 and ops.get("read", {}).get("ops") == 1 and
          stats.get("inflight") == 0 and stats.get("backend", {}).get("allocated_bytes", 0) >= 4096, out)
    rc, out = ctl(tmp, "stats", "nope")
    check("blkservctl names an unknown device", rc == 1 and "no device named 'nope'" in out, out)
    rc, out = ctl(tmp, "frobnicate")
    check("blkservctl refuses an unknown command", rc == 2, out)
    rc, out = ctl(tmp, "reload")
    check("blkservctl reload", rc == 0, out)


def test_failed_start(tmp):
    d = Daemon(tmp, device("good") + device("bad", "fail_start = true"))
    try:
        rc = d.proc.wait(timeout=10)
        log = d.log()
        check("a failing device makes the daemon exit 1", rc == 1, f"rc={rc}")
        check("the failing device is named", "bad: frontend 'testfe' failed to start" in log, log)
        check("devices already started are stopped again", "good: stopped" in log, log)
        msgs = d.wait_for("ERRNO")
        check("systemd is told why (ERRNO=)", msgs is not None and "Failed to start" in msgs, str(msgs))
    finally:
        d.close()


def log_device(name, logdir):
    return (f'device "{name}" {{\n  size = 1M\n'
            f'  frontend "testfe" {{ socket = "/x" }}\n'
            f'  backend "log" {{ dir = "{logdir}" }}\n}}\n')


def last_write_record(logdir):
    """(segment file, header offset, payload length) of the newest WRITE
    record (format.h: 4 KiB segment header, 64-byte record headers)."""
    import struct
    found = None
    for name in sorted(f for f in os.listdir(logdir) if f.startswith("seg-")):
        with open(os.path.join(logdir, name), "rb") as f:
            data = f.read()
        pos = 4096
        while pos + 64 <= len(data):
            magic, _ver, rtype = struct.unpack_from("<IHH", data, pos)
            plen = struct.unpack_from("<Q", data, pos + 32)[0]
            if magic != 0x43524c42:
                break
            if rtype == 1:
                found = (os.path.join(logdir, name), pos, plen)
            pos += 64 + plen
    return found


def test_scrub(tmp):
    logdir = os.path.join(tmp, "log")
    d = Daemon(tmp, log_device("lg", logdir) + device("ram0"))
    try:
        check("daemon with a log device starts", d.wait_for("READY") is not None, d.log())
        rc, out = ctl(tmp, "scrub", "lg")
        check("blkservctl scrub of an intact log: clean, exit 0", rc == 0 and "scrub of lg: clean" in out, out)
        rc, out = ctl(tmp, "--json", "scrub", "lg", "--status")
        import json
        st = json.loads(out) if rc == 0 else {}
        check("blkservctl scrub --status --json", st.get("state") == "clean" and st.get("errors") == 0 and
              st.get("done_bytes", 0) > 0 and st.get("done_bytes") == st.get("total_bytes"), out)
        rc, out = ctl(tmp, "--json", "stats", "lg")
        stats = json.loads(out).get("backend", {}) if rc == 0 else {}
        check("the scrub's result is in the backend stats", stats.get("scrub_last_result") == "clean" and
              stats.get("scrub_errors") == 0 and stats.get("scrub_bytes", 0) > 0, out)
        rc, out = ctl(tmp, "scrub", "ram0")
        check("a backend without scrub: a clear error", rc == 1 and "backend ramdisk cannot scrub" in out, out)
        rc, out = ctl(tmp, "scrub", "nope")
        check("scrub of an unknown device", rc == 1 and "no device named 'nope'" in out, out)
        rc, out = ctl(tmp, "scrub")
        check("scrub needs a device name", rc == 2, out)

        # Damage testfe's record (written by this run) behind the daemon's back.
        rec = last_write_record(logdir)
        check("the log holds testfe's write", rec is not None and rec[2] == 4096, str(rec))
        if rec:
            with open(rec[0], "r+b") as f:
                f.seek(rec[1] + 64 + 77)
                b = f.read(1)
                f.seek(rec[1] + 64 + 77)
                f.write(bytes([b[0] ^ 0x10]))
        rc, out = ctl(tmp, "scrub", "lg")
        check("scrub of a damaged log: corrupt, exit 3", rc == 3 and "scrub of lg: corrupt" in out and
              "1 error(s)" in out, out)
        seg = os.path.basename(rec[0]) if rec else "?"
        want = f"{seg}: corrupt record at offset {rec[1] if rec else '?'}"
        check("the journal names segment and offset", want in d.log(), d.log())
        check("the journal has the scrub's summary", "1 corrupt record(s) with live data" in d.log(), d.log())
        rc, out = ctl(tmp, "--json", "stats", "lg")
        stats = json.loads(out).get("backend", {}) if rc == 0 else {}
        check("stats after a corrupt scrub", stats.get("scrub_last_result") == "corrupt" and
              stats.get("scrub_errors") == 1 and stats.get("checksum_errors") == 1, out)
        rc, out = ctl(tmp, "scrub", "lg", "--no-wait")
        check("scrub --no-wait returns at once", rc == 0 and "scrub of lg:" in out, out)
        d.proc.send_signal(signal.SIGTERM)
        check("stop while a scrub may run exits 0", d.proc.wait(timeout=20) == 0, d.log())
    finally:
        d.close()


def run(args):
    p = subprocess.run([BLKSERVD] + args, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


def test_command_line(tmp):
    pdir = plugin_dir(tmp)
    conf = os.path.join(tmp, "check.conf")
    with open(conf, "w") as f:
        f.write(device("ram0"))
    rc, out = run(["--check-config", "-c", conf, "--plugin-dir", pdir])
    check("--check-config accepts a valid file", rc == 0 and "valid, 1 device" in out, out)
    with open(conf, "w") as f:
        f.write(device("ram0").replace("size = 1M", "size = 1M\n  sise = 2M"))
    rc, out = run(["--check-config", "-c", conf, "--plugin-dir", pdir])
    check("--check-config rejects with file and line", rc == 1 and "check.conf:3:" in out
          and "sise" in out, out)
    rc, out = run(["--list-plugins", "--plugin-dir", pdir])
    check("--list-plugins lists ramdisk and testfe", rc == 0 and "ramdisk" in out and "testfe" in out, out)
    rc, out = run(["--help-plugin", "testfe", "--plugin-dir", pdir])
    check("--help-plugin shows types, defaults, required", rc == 0 and "socket" in out and
          "required" in out and "default 1M" in out, out)
    rc, out = run(["--help-plugin", "nosuch", "--plugin-dir", pdir])
    check("--help-plugin of an unknown plugin fails", rc == 1 and "no plugin named 'nosuch'" in out, out)
    rc, out = run(["--bogus"])
    check("an unknown argument exits 2", rc == 2, out)


for test in (test_lifecycle, test_failed_start, test_command_line, test_scrub):
    with tempfile.TemporaryDirectory() as tmp:
        test(tmp)
sys.exit(1 if failures else 0)
