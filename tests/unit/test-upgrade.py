#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""In-place upgrade (blkservctl upgrade, SIGUSR2) as a process test: the
same PID executes the binary again and takes every device back with its
data (a ramdisk's memfd carried across the exec, a file backend), a binary
that refuses the config is never executed, and a new image that cannot
start a device hands everything back to the previous binary.  Needs no
root: the devices are NBD exports on Unix sockets, read and written with
nbdcopy (skipped without it)."""
import hashlib
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
failures = 0


def check(name, ok, detail=""):
    global failures
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + detail))
    if not ok:
        failures += 1


def config(tmp):
    return (f'runtime_dir = "{tmp}/run"\nlock_memory = false\n'
            f'device "ram0" {{ size = 16M frontend "nbd-export" {{ unix = "{tmp}/ram0.sock" }} '
            f'backend "ramdisk" {{ }} }}\n'
            f'device "f0" {{ frontend "nbd-export" {{ unix = "{tmp}/f0.sock" }} '
            f'backend "file" {{ path = "{tmp}/f0.img" }} }}\n')


class Daemon:
    def __init__(self, tmp, env_extra=None):
        self.tmp = tmp
        with open(os.path.join(tmp, "f0.img"), "wb") as f:
            f.truncate(16 << 20)
        self.conf = os.path.join(tmp, "blkservd.conf")
        with open(self.conf, "w") as f:
            f.write(config(tmp))
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(os.path.join(tmp, "notify.sock"))
        self.notify.settimeout(0.2)
        env = dict(os.environ, NOTIFY_SOCKET=os.path.join(tmp, "notify.sock"), **(env_extra or {}))
        self.log_path = os.path.join(tmp, "daemon.log")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen([BLKSERVD, "-c", self.conf, "--plugin-dir", PLUGINS],
                                     env=env, stderr=self.log_file)
        self.notes = []

    def drain_notify(self, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                self.notes.append(self.notify.recv(65536).decode(errors="replace"))
            except (socket.timeout, BlockingIOError):
                pass
        return "\n".join(self.notes)

    def wait_ready(self):
        deadline = time.time() + 20
        while time.time() < deadline:
            if os.path.exists(os.path.join(self.tmp, "run", "control.sock")) and \
                    ctl(self.tmp, "list")[0] == 0:
                return True
            time.sleep(0.1)
        return False

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.notify.close()
        self.log_file.close()


def ctl(tmp, *args):
    p = subprocess.run([BLKSERVCTL, "--socket", os.path.join(tmp, "run", "control.sock")] + list(args),
                       capture_output=True, text=True, timeout=180)
    return p.returncode, p.stdout + p.stderr


def version(tmp):
    import json
    rc, out = ctl(tmp, "--json", "version")
    v = json.loads(out) if rc == 0 else {}
    return {k: str(x) for k, x in v.items()}


def uri(tmp, name):
    return f"nbd+unix:///{name}?socket={tmp}/{name}.sock"


def write_random(tmp, name, size):
    data = os.urandom(size)
    src = os.path.join(tmp, name + ".data")
    with open(src, "wb") as f:
        f.write(data)
    subprocess.run(["nbdcopy", src, uri(tmp, name)], check=True, timeout=60)
    return hashlib.sha256(data).hexdigest()


def read_sha(tmp, name, size):
    p = subprocess.run(["nbdcopy", uri(tmp, name), "-"], capture_output=True, timeout=60)
    return hashlib.sha256(p.stdout[:size]).hexdigest() if p.returncode == 0 else "unreadable"


def verify(tmp, sums, what):
    for name, (size, digest) in sums.items():
        got = read_sha(tmp, name, size)
        check(f"{what}: {name} reads back what was written", got == digest, got)


def test_upgrade(tmp):
    d = Daemon(tmp)
    try:
        check("the daemon starts", d.wait_ready(), d.log())
        pid = d.proc.pid
        sums = {n: (4 << 20, write_random(tmp, n, 4 << 20)) for n in ("ram0", "f0")}
        check("first image is generation 0", version(tmp).get("generation") == "0", str(version(tmp)))

        rc, out = ctl(tmp, "upgrade")
        v = version(tmp)
        check("blkservctl upgrade succeeds", rc == 0 and "upgraded in place" in out, out + d.log())
        check("same PID after the upgrade", d.proc.poll() is None and v.get("pid") == str(pid), str(v))
        check("generation 1, upgrade done", v.get("generation") == "1" and v.get("upgrade") == "done", str(v))
        notes = d.drain_notify(1)
        check("systemd is told RELOADING=1 then READY=1 again",
              "RELOADING=1" in notes and notes.rfind("READY=1") > notes.find("RELOADING=1"), notes)
        check("the ramdisk's memory went along", "kept the ramdisk contents" in d.log(), d.log())
        verify(tmp, sums, "after an upgrade")

        rc, out = ctl(tmp, "upgrade", "/bin/false")
        check("a binary that refuses the config is not executed", rc == 1 and "refuses the running config" in out
              and version(tmp).get("generation") == "1", out)
        rc, out = ctl(tmp, "upgrade", os.path.join(tmp, "no-such-binary"))
        check("a missing binary is refused", rc == 1 and "cannot execute" in out, out)

        d.proc.send_signal(signal.SIGUSR2)
        deadline = time.time() + 20
        while time.time() < deadline and version(tmp).get("generation") != "2":
            time.sleep(0.1)
        check("SIGUSR2 upgrades too", version(tmp).get("generation") == "2", str(version(tmp)))
        verify(tmp, sums, "after SIGUSR2")

        d.proc.send_signal(signal.SIGTERM)
        check("a stop after upgrades exits 0", d.proc.wait(timeout=20) == 0, d.log())
    finally:
        d.close()


def test_fallback(tmp):
    d = Daemon(tmp, {"BLKSERV_TEST_UPGRADE_FAIL_DEVICE": "f0"})
    try:
        check("the daemon starts (fallback test)", d.wait_ready(), d.log())
        sums = {n: (1 << 20, write_random(tmp, n, 1 << 20)) for n in ("ram0", "f0")}
        rc, out = ctl(tmp, "upgrade")
        v = version(tmp)
        check("an upgrade whose new image fails a device reports it undone",
              rc == 1 and "upgrade undone" in out and "'f0'" in out, out)
        check("the previous binary serves again (same PID, generation 2)",
              d.proc.poll() is None and v.get("pid") == str(d.proc.pid) and v.get("generation") == "2" and
              v.get("upgrade") == "undone", str(v))
        rc, out = ctl(tmp, "list")
        check("both devices are live again", rc == 0 and out.count(" live") == 2, out)
        verify(tmp, sums, "after an undone upgrade")
        log = d.log()
        check("the journal says why", "handing the devices back to the previous binary" in log, log)
    finally:
        d.close()


if not shutil.which("nbdcopy"):
    print("nbdcopy (libnbd-bin) is not installed: skipped")
    sys.exit(77)
for test in (test_upgrade, test_fallback):
    with tempfile.TemporaryDirectory() as tmp:
        test(tmp)
sys.exit(1 if failures else 0)
