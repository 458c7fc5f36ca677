#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon as a process: sd_notify readiness and status, reload (valid
and invalid), clean stop, all-or-nothing start, and the command-line
actions.  Needs no root: devices use the test frontend (no kernel device)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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
        # surrogateescape: a test may write bytes that are not UTF-8.
        with open(self.config, "w", errors="surrogateescape") as f:
            f.write(f'runtime_dir = "{self.tmp}/run"\nlock_memory = false\n' + text)

    def wait_for(self, key):
        """Collect notify messages until one contains KEY=...; return all."""
        seen = []
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                msg = self.sock.recv(4096).decode("utf-8", "replace")
            except socket.timeout:
                break
            seen.append(msg)
            if any(line.startswith(key + "=") for line in msg.splitlines()):
                return "\n".join(seen)
        return None

    def drain(self):
        """From now on read and drop the notify messages in a thread: a
        full queue (10 datagrams) would block the daemon's sd_notify, as
        many reloads and fd-store messages fill it."""
        def run():
            while True:
                try:
                    self.sock.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    return
        threading.Thread(target=run, daemon=True).start()

    def log(self):
        # A file object of its own: seeking the child's shared offset
        # would make it overwrite its own log.
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def stop(self, what):
        """SIGTERM; the exit must be clean (under ASan: no leak)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            rc = None
        check(f"{what}: the daemon stops cleanly (exit 0)", rc == 0, f"rc={rc}\n" + self.log()[-3000:])

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
                [os.path.join(FIXTURES, "blkserv-frontend-testfe.so"),
                 os.path.join(FIXTURES, "blkserv-backend-asyncmem.so")]:
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

        # Refused by the checks that used to wait for the device's open: a
        # duplicate option, a ramdisk without size; the old config stays.
        for bad, where in ((device("ram0", "count = 1\n count = 2"), "blkservd.conf:7: option 'count' is set twice"),
                           (device("ram0") + 'device "nosize" {\n  frontend "testfe" { socket = "/y" }\n'
                            '  backend "ramdisk" { }\n}\n', "blkservd.conf:11: device 'nosize': backend 'ramdisk'")):
            d.write_config(bad)
            d.proc.send_signal(signal.SIGHUP)
            msgs = d.wait_for("READY")
            check("a reload the validation refuses is logged with its line",
                  msgs is not None and d.log().count("reload failed") >= 2 and where in d.log(), d.log())
            check("a refused reload keeps the device", d.proc.poll() is None and
                  "Serving 1 device" in (msgs or ""), str(msgs))

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
    sock = os.path.join(tmp, "run", "control.sock")
    check("control socket is root-only", (os.stat(sock).st_mode & 0o777) == 0o600, oct(os.stat(sock).st_mode))
    rc, out = ctl(tmp, "list")
    check("blkservctl list", rc == 0 and "ram0" in out and "ramdisk" in out and "live" in out, out)
    rc, out = ctl(tmp, "--json", "list")
    devs = json.loads(out).get("devices", []) if rc == 0 else []
    check("blkservctl --json list", len(devs) == 1 and devs[0]["name"] == "ram0" and
          devs[0]["size"] == 1048576 and devs[0]["read_only"] is False, out)
    rc, out = ctl(tmp, "--json", "status", "ram0")
    st = json.loads(out).get("device", {}) if rc == 0 else {}
    check("blkservctl status shows capabilities",
          st.get("capabilities") == ["flush", "fua", "trim", "write_zeroes"], out)
    # testfe's start wrote and read 4 KiB once through the backend.
    rc, out = ctl(tmp, "--json", "stats", "ram0")
    stats = json.loads(out).get("stats", {}) if rc == 0 else {}
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


def strict_json(text):
    """Parse TEXT as strict JSON: no NaN/Infinity, exactly one value."""
    def refuse(const):
        raise ValueError("not JSON: " + const)
    return json.loads(text, parse_constant=refuse)


def parsed(tmp, *args):
    """Run blkservctl --json ARGS; (rc, the answer or None, output)."""
    p = subprocess.run([BLKSERVCTL, "--socket", os.path.join(tmp, "run", "control.sock"), "--json"] +
                       list(args), capture_output=True, text=True, timeout=30)
    try:
        return p.returncode, strict_json(p.stdout), p.stdout + p.stderr
    except ValueError as e:
        return p.returncode, None, f"{e}: {p.stdout!r} {p.stderr!r}"


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


# Names that look like JSON numbers, literals or yes/no to a guesser.
TRICKY_NAMES = ["nan", "0x1F", "1e5", "true", "yes", "007", "null", "42"]


def check_device_types(what, d, name):
    check(f"{what} of '{name}' has typed fields",
          isinstance(d, dict) and d.get("name") == name and isinstance(d.get("frontend"), str) and
          isinstance(d.get("backend"), str) and isinstance(d.get("kernel"), (str, type(None))) and
          is_int(d.get("size")) and is_int(d.get("block_size")) and isinstance(d.get("state"), str) and
          isinstance(d.get("read_only"), bool), str(d))


def check_stats_types(name, st):
    ops = st.get("ops", {}) if isinstance(st, dict) else {}
    ok = is_int(st.get("inflight")) and is_int(st.get("reads_mapped")) and \
        set(ops) == {"read", "write", "flush", "trim", "write_zeroes"}
    for o in ops.values():
        ok = ok and all(is_int(o.get(k)) for k in ("ops", "bytes", "errors")) and \
            all(isinstance(o.get(k), (int, float)) and not isinstance(o.get(k), bool)
                for k in ("mean_us", "p50_us", "p99_us", "p999_us"))
    check(f"stats of '{name}' has integer counters and numeric latencies", ok, str(st))


def test_json_types(tmp):
    """Every command with --json, on devices whose names and backend
    counters look like numbers: the output parses and the types hold."""
    asyncmem = ('device "am" {\n  size = 1M\n  frontend "testfe" { socket = "/x" }\n'
                '  backend "asyncmem" { }\n}\n')
    # Its kernel name is "unix:PATH": a quote, a backslash and two bytes
    # that are not UTF-8 (0xff 0xfe, which the answer shows as "??").
    os.mkdir(os.path.join(tmp, "\udcff\udcfe"))
    export = ('device "weird" {\n  size = 1M\n'
              f'  frontend "nbd-export" {{ unix = "{tmp}/\udcff\udcfe/a\\"b\\\\c.sock" }}\n'
              '  backend "ramdisk" { }\n}\n')
    d = Daemon(tmp, "".join(device(n) for n in TRICKY_NAMES) + asyncmem + export)
    try:
        check("the daemon with tricky names is ready", d.wait_for("READY") is not None, d.log())
        d.drain()
        rc, ans, out = parsed(tmp, "list")
        devs = ans.get("devices", []) if isinstance(ans, dict) else []
        check("--json list is strict JSON with ok:true", rc == 0 and ans is not None and ans.get("ok") is True, out)
        check("--json list names every device as a string",
              [x.get("name") for x in devs] == TRICKY_NAMES + ["am", "weird"], out)
        for x in devs:
            check_device_types("list entry", x, x.get("name"))
        check("a kernel name with a quote, a backslash and bytes that are not UTF-8 is a valid JSON string",
              devs[-1].get("kernel") == f'unix:{tmp}/??/a"b\\c.sock' if devs else False, out)
        for name in TRICKY_NAMES + ["am", "weird"]:
            rc, ans, out = parsed(tmp, "status", name)
            dev = ans.get("device") if isinstance(ans, dict) else None
            check(f"--json status {name} is strict JSON", rc == 0 and ans is not None and ans["ok"] is True, out)
            check_device_types("status", dev, name)
            check(f"status of '{name}': capabilities a list of strings, write_through a boolean",
                  isinstance(dev, dict) and isinstance(dev.get("capabilities"), list) and
                  all(isinstance(c, str) for c in dev["capabilities"]) and
                  isinstance(dev.get("write_through"), bool), out)
            rc, ans, out = parsed(tmp, "stats", name)
            check(f"--json stats {name} is strict JSON", rc == 0 and ans is not None and ans["ok"] is True, out)
            check_stats_types(name, ans.get("stats", {}) if isinstance(ans, dict) else {})
        rc, ans, out = parsed(tmp, "stats", "am")
        backend = ans["stats"]["backend"] if ans else {}
        expected = {"writes": 1, "flushes": 0, "hex": "0x1F", "nan": "nan", "exp": "1e5", "lead": "007",
                    "plus": "+5", "neg": -3, "negzero": "-0", "max": 18446744073709551615,
                    "over": "18446744073709551616", "quote": 'a"b\\c', "word": "true", "empty": ""}
        check("backend counters: integers only for plain decimal integers that fit, strings otherwise",
              backend == expected and all(type(backend[k]) is type(v) for k, v in expected.items()), str(backend))
        rc, out = ctl(tmp, "stats", "am")
        check("plain stats prints the backend's values as they are",
              rc == 0 and "backend.hex: 0x1F\n" in out and "backend.max: 18446744073709551615\n" in out and
              "backend.neg: -3\n" in out, out)
        rc, out = ctl(tmp, "list")
        check("plain list shows the tricky names", rc == 0 and all(
            any(line.split()[:1] == [n] for line in out.splitlines()) for n in TRICKY_NAMES), out)
        rc, ans, out = parsed(tmp, "stats", "nope")
        check("--json error: exit 1, strict JSON ok:false with an error string",
              rc == 1 and ans is not None and ans.get("ok") is False and
              ans.get("error") == "no device named 'nope'", out)
        rc, ans, out = parsed(tmp, "reload")
        check("--json reload: ok:true", rc == 0 and ans == {"ok": True}, out)
        test_protocol(tmp, d)
        d.stop("after the JSON tests")
    finally:
        d.close()


def raw(tmp, data, shut=True, timeout=10):
    """Send DATA on the control socket as it is; the answer, parsed (or the
    text if it is not JSON, None if the daemon closed without one)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(os.path.join(tmp, "run", "control.sock"))
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass
    chunks = []
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    except ConnectionResetError:
        pass
    s.close()
    text = b"".join(chunks).decode("utf-8", "replace")
    if not text:
        return None
    try:
        return strict_json(text)
    except ValueError:
        return text


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_protocol(tmp, d):
    """The daemon's side: bad requests get a JSON error naming what is wrong."""
    bad = [
        (b"list\n", "not valid JSON"),
        (b"\n", "not complete JSON"),
        (b'{"command":"list"\n', "not complete JSON"),
        (b"[1]\n", "not a JSON object"),
        (b'{"command":"list"} {"x":1}\n', "not valid JSON"),
        (b'{"command":5}\n', 'no "command" string'),
        (b'{"device":"nan"}\n', 'no "command" string'),
        (b'{"command":"frob"}\n', "unknown command 'frob'"),
        (b'{"command":"status"}\n', "command 'status' needs a \"device\""),
        (b'{"command":"list","device":"nan"}\n', "command 'list' takes no \"device\""),
        (b'{"command":"stats","device":5}\n', '"device" must be a string'),
        (b'{"command":"stats","device":"nan\\u0000x"}\n', "no device named 'nan'"),
        (b'{"command":"list\\u0000x"}\n', "unknown command 'list'"),
        (b'{"command":NaN}\n', 'no "command" string'),
        (b'{"command":"\xff"}\n', "not valid JSON"),
        (b'{"command":"list","x":' + b"[" * 100 + b"]" * 100 + b"}\n", "not valid JSON"),
        (b'{"command":"li\x00st"}\n', "NUL byte"),
    ]
    for req, why in bad:
        ans = raw(tmp, req)
        check(f"request {req[:40]!r} is refused with a JSON error ({why})",
              isinstance(ans, dict) and ans.get("ok") is False and isinstance(ans.get("error"), str) and
              why in ans["error"], str(ans))
    ans = raw(tmp, b'{"command":"list","later_option":1}')
    check("a request ended by the end of the stream, with a member no command uses, is served",
          isinstance(ans, dict) and ans.get("ok") is True and len(ans.get("devices", [])) == 10, str(ans))
    ans = raw(tmp, b'{"command":"stats","device":"0x1F"}\r\n')
    check("a CRLF line end is accepted", isinstance(ans, dict) and ans.get("ok") is True, str(ans))
    ans = raw(tmp, b'{"command":"list","pad":"' + b"x" * 5000 + b'"}\n')
    check("a request over 4096 bytes is refused",
          isinstance(ans, dict) and ans.get("ok") is False and "longer than 4096 bytes" in ans["error"], str(ans))
    # 256 MiB without a line end: the daemon reads 4 KiB, answers, closes.
    before = rss_kib(d.proc.pid)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(os.path.join(tmp, "run", "control.sock"))
    sent, chunk = 0, b"x" * (1 << 20)
    try:
        while sent < (256 << 20):
            s.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    s.close()
    after = rss_kib(d.proc.pid)
    check("a client sending 256 MiB without a line end is cut off early", sent < (16 << 20), f"sent {sent}")
    check("... and the daemon does not grow", after - before < 4096, f"RSS {before} -> {after} KiB")
    # A client that sends half a request and waits: dropped after 2 s, the
    # next one is served.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(os.path.join(tmp, "run", "control.sock"))
    s.sendall(b'{"command":')
    t0 = time.time()
    got = s.recv(4096)
    waited = time.time() - t0
    s.close()
    check("a client that stops mid-request is dropped after about 2 s", got == b"" and 1.5 < waited < 5,
          f"{got!r} after {waited:.1f} s")
    rc, ans, out = parsed(tmp, "list")
    check("the daemon still answers after the bad clients", rc == 0 and ans is not None and ans["ok"] is True, out)
    check("the daemon is still running", d.proc.poll() is None, d.log())


def test_reload_report(tmp):
    """A reload reports every device that did not start (and goes on with
    the others), and warns about a device kept because it is open."""
    held = 'busy = true\n'
    d = Daemon(tmp, device("ram0") + device("held", held))
    try:
        check("reload test daemon is ready", d.wait_for("READY") is not None, d.log())
        d.drain()
        nbd_export = ('device "nosock" {\n  size = 1M\n'
                      f'  frontend "nbd-export" {{ unix = "{tmp}/missing/dir/sock" }}\n'
                      '  backend "ramdisk" { }\n}\n')
        d.write_config(device("ram0") + device("held", held + 'label = "changed"\n') +
                       device("bad", "fail_start = true") + nbd_export + device("ram1"))
        rc, out = ctl(tmp, "reload")
        check("a reload with devices that fail to start exits 1", rc == 1, out)
        check("... names each with the plugin's message",
              "bad: testfe: failing start as configured" in out and
              "nosock: " in out and "No such file or directory" in out, out)
        check("... and warns that the open device was not restarted",
              "warning: held: is open: not restarting it on reload" in out, out)
        rc, ans, out = parsed(tmp, "reload")
        failed = {f.get("device"): f.get("error") for f in ans.get("failed", [])} if ans else {}
        check("--json reload: ok:false, an error, and the failed devices with their reasons",
              rc == 1 and ans is not None and ans.get("ok") is False and isinstance(ans.get("error"), str) and
              set(failed) == {"bad", "nosock"} and all(isinstance(v, str) and v for v in failed.values()), out)
        check("--json reload: the open device is a warning",
              ans is not None and [w.get("device") for w in ans.get("warnings", [])] == ["held"] and
              "is open" in ans["warnings"][0].get("warning", ""), out)
        rc, ans, out = parsed(tmp, "list")
        names = sorted(x["name"] for x in ans.get("devices", [])) if ans else []
        check("the devices that could start run, the daemon too",
              names == ["held", "ram0", "ram1"] and d.proc.poll() is None, out)
        d.write_config(device("ram0") + device("held", held + 'label = "changed"\n') + device("ram1"))
        rc, out = ctl(tmp, "reload")
        check("a reload that only keeps an open device exits 3 with the warning",
              rc == 3 and "warning: held: is open" in out and "failed" not in out, out)
        d.write_config(device("ram0") + device("ram1"))
        rc, out = ctl(tmp, "reload")
        check("an open device gone from the config is kept with a warning",
              rc == 3 and "warning: held: is open: not removing it" in out, out)
        d.write_config(device("ram0") + device("held", held) + device("ram1"))
        rc, ans, out = parsed(tmp, "reload")
        check("a reload that does everything: exit 0, {\"ok\": true}", rc == 0 and ans == {"ok": True}, out)
        d.stop("after the reload reports")
    finally:
        d.close()


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
        stats = json.loads(out).get("stats", {}).get("backend", {}) if rc == 0 else {}
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
        stats = json.loads(out).get("stats", {}).get("backend", {}) if rc == 0 else {}
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
    # What the daemon used to refuse only at start, or accept with another meaning.
    bad = [
        (device("ram0", "count = 1\n count = 2"), "check.conf:5: option 'count' is set twice (first on line 4)"),
        (device("a").replace("ramdisk\" { }", "file\" { path = \"/tmp\" }"),
         "check.conf:5: device 'a': backend 'file' option 'path': /tmp is a directory"),
        ('device "a" {\n  size = 1M\n  frontend "nbd-export" { tcp = ":65536" }\n  backend "ramdisk" { }\n}\n',
         "check.conf:3: device 'a': frontend 'nbd-export' option 'tcp': the port of ':65536' must be a number"),
        ('device "a" {\n  size = 1M\n  frontend "nbd-export" { unix = "/run/s" tls = "maybe" }\n'
         '  backend "ramdisk" { }\n}\n', "check.conf:3: option 'tls' of frontend 'nbd-export' expects one of"),
        ('device "a" {\n  size = 1M\n  frontend "nbd-export" { unix = "/run/s" }\n  backend "ramdisk" { }\n}\n'
         'device "b" {\n  size = 1M\n  frontend "nbd-export" { unix = "/run/s" }\n  backend "ramdisk" { }\n}\n',
         "check.conf:8: device 'b': frontend 'nbd-export' option 'unix': the unix socket /run/s is already used"),
        ("# a comment\n# another\nlog_level = loud\n", "check.conf:3: option 'log_level'"),
    ]
    for text, message in bad:
        with open(conf, "w") as f:
            f.write(text)
        rc, out = run(["--check-config", "-c", conf, "--plugin-dir", pdir])
        check("--check-config refuses: " + message, rc == 1 and message in out and "valid" not in out, out)
    rc, out = run(["--check-config", "-c", tmp, "--plugin-dir", pdir])
    check("--check-config of a directory says so", rc == 1 and "is a directory, not a config file" in out, out)
    rc, out = run(["--list-plugins", "--plugin-dir", pdir])
    check("--list-plugins lists ramdisk and testfe", rc == 0 and "ramdisk" in out and "testfe" in out, out)
    rc, out = run(["--help-plugin", "testfe", "--plugin-dir", pdir])
    check("--help-plugin shows types, defaults, required", rc == 0 and "socket" in out and
          "required" in out and "default 1M" in out, out)
    rc, out = run(["--help-plugin", "log", "--plugin-dir", pdir])
    check("--help-plugin shows ranges", rc == 0 and "default 64M (64K..1T)" in out, out)
    rc, out = run(["--help-plugin", "nosuch", "--plugin-dir", pdir])
    check("--help-plugin of an unknown plugin fails", rc == 1 and "no plugin named 'nosuch'" in out, out)
    rc, out = run(["--dump-plugin", "ramdisk", "--plugin-dir", pdir])
    facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    check("--dump-plugin prints the ABI facts of a backend",
          rc == 0 and facts.get("kind") == "backend" and facts.get("abi_version") == "1" and
          facts.get("has_read") == "1" and facts.get("has_scrub") == "0" and
          facts.get("struct_size") == facts.get("host_struct_size"), out)
    rc, out = run(["--dump-plugin", "testfe", "--plugin-dir", pdir])
    check("--dump-plugin of a frontend", rc == 0 and "kind=frontend" in out and "has_start=1" in out, out)
    # A plugin built before option_checks and validate: a shorter struct
    # loads, and what lies beyond it reads as absent.
    rc, out = run(["--dump-plugin", "oldabi", "--plugin-dir", os.environ["BLKSERV_TEST_FIXTURE_DIR"]])
    facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    check("--dump-plugin of an older, shorter plugin struct",
          rc == 0 and int(facts.get("struct_size", "0")) < int(facts.get("host_struct_size", "0")) and
          facts.get("has_validate") == "0" and facts.get("has_read") == "1", out)
    rc, out = run(["--dump-plugin", "nosuch", "--plugin-dir", pdir])
    check("--dump-plugin of an unknown plugin fails", rc == 1 and "no plugin named 'nosuch'" in out, out)
    rc, out = run(["--help-plugin", "ramdisk", "--dump-plugin", "ramdisk", "--plugin-dir", pdir])
    check("two actions are refused", rc == 2 and "cannot be given together" in out, out)
    rc, out = run(["--check-config", "--check-config", "-c", conf, "--plugin-dir", pdir])
    check("an action given twice is refused", rc == 2 and "--check-config is given twice" in out, out)
    rc, out = run(["--bogus"])
    check("an unknown argument exits 2", rc == 2, out)


TESTS = (test_lifecycle, test_json_types, test_reload_report, test_failed_start, test_command_line, test_scrub)
for test in [t for t in TESTS if not os.environ.get("ONLY") or t.__name__ == os.environ["ONLY"]]:
    with tempfile.TemporaryDirectory() as tmp:
        test(tmp)
sys.exit(1 if failures else 0)
