#!/usr/bin/env python3
"""The management console on Keel's serial line, driven as an operator would.

Boots an appliance of two busy guests ("a" and "b": the heartbeat guest,
beating forever; b beats back to back, so it is always in a run of exits that
Keel's backend handles without its run loop, and stop/pause must still reach
it) under QEMU TCG, with the serial line on a UNIX socket (QEMU
waits for the test to connect), and types commands into it:

  list               both guests running
  stop a             a stops (by the operator); list says so
  stats b, twice     b's exit counters grow in between
  pause b / resume b b's counters stand still while paused, then grow again
  start a            a is built again and runs (its first line again, starts=2)
  4 KiB of garbage   one error line, nothing executed
  bad commands       one error line each
  list               Keel still answers; both running

  console_test.py --kernel keel.elf --guests DIR [--timeout S]
"""
import argparse
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import harness

CONFIG = """\
[keel]
on_idle = "halt"

[[guest]]
name = "a"
kernel = "{guests}/heartbeat.elf"
cmdline = "beats=0 spin=20000"
memory = "4M"

[[guest]]
name = "b"
kernel = "{guests}/heartbeat.elf"
cmdline = "beats=0 spin=0"
memory = "4M"
"""


class Console:
    def __init__(self, sock_path, log_path, proc, deadline):
        self.log_path, self.proc, self.deadline = log_path, proc, deadline
        self.buf = bytearray()
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(sock_path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                self.check()
                time.sleep(0.1)
        self.sock.setblocking(False)
        self.seen = 0   # where the next wait starts reading

    def text(self):
        # What came out of the serial line so far (QEMU waits for this connection before it
        # starts, so nothing is lost). Read from the socket itself: the chardev's logfile
        # repeats bytes whose write to the socket was retried.
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    break
                self.buf += d
        except BlockingIOError:
            pass
        with open(self.log_path, "wb") as f:
            f.write(self.buf)
        return self.buf.decode(errors="replace").replace("\r", "")

    def check(self):
        if self.proc.poll() is not None:
            raise harness.Failure(f"QEMU exited (rc={self.proc.returncode})")
        if time.monotonic() > self.deadline:
            raise harness.Failure("timed out")

    def wait(self, pattern, what):
        """The first whole line matching pattern after the last one waited for; returns its match."""
        rx = re.compile(pattern, re.M)
        while True:
            t = self.text()
            t = t[:t.rfind("\n") + 1]
            m = rx.search(t, self.seen)
            if m:
                self.seen = m.end()
                return m
            if harness.EXCEPTION.search(t):
                raise harness.Failure("Keel took an exception")
            try:
                self.check()
            except harness.Failure as e:
                raise harness.Failure(f"{e} waiting for {what} ({pattern!r})")
            time.sleep(0.1)

    def send(self, line):
        data = line.encode() if isinstance(line, str) else line
        self.sock.setblocking(True)
        self.sock.sendall(data)
        self.sock.setblocking(False)

    def command(self, line, pattern, what):
        self.send(line + "\r\n")
        self.wait(rf"^keel: > {re.escape(line)}$", f"the echo of {line!r}")
        return self.wait(pattern, what)


def exits(console, name):
    m = console.command(f"stats {name}", rf"^keel: stats {name} vcpu=0 cpu=\d+ run_us=(\d+) ready_us=\d+ run_pct=[\d.]+ ready_pct=[\d.]+ exits=(\d+)",
                        f"{name}'s statistics")
    return int(m.group(1)), int(m.group(2))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kernel", required=True)
    p.add_argument("--guests", required=True)
    p.add_argument("--timeout", type=int, default=240)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="keel-console-") as tmp:
        config = os.path.join(tmp, "keel.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(guests=os.path.abspath(a.guests)))
        image = os.path.join(tmp, "appliance.iso")
        harness.run_mkimage([config, "--kernel", a.kernel, "-o", image])
        log, sock = os.path.join(tmp, "serial.log"), os.path.join(tmp, "serial.sock")
        cmd = harness.qemu_command(image, tmp, log, smp=2, mem="256M")
        i = cmd.index("-serial")
        cmd[i:i + 2] = ["-chardev", f"socket,id=con,path={sock},server=on,wait=on",
                        "-serial", "chardev:con"]
        proc = subprocess.Popen(cmd, cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        ok = False
        try:
            c = Console(sock, log, proc, time.monotonic() + a.timeout)
            for g in "ab":   # in either order: each search starts at the top
                c.seen = 0
                c.wait(rf"^\[{g}\] heartbeat: port=", f"guest {g} running")
            c.seen = 0
            c.command("list", r"^keel: guest a state=running vcpus=1 cpus=\d memory_mib=4 uptime_ms=\d+ starts=1 "
                      r"restarts=0$", "a running")
            c.wait(r"^keel: guest b state=running ", "b running")

            c.command("stop a", r"^keel: guest a stopped: by the operator$", "a stopped")
            c.command("list", r"^keel: guest a state=stopped ", "a listed as stopped")
            c.wait(r"^keel: guest b state=running ", "b still running")
            c.command("stop a", r"^keel: console: guest a is stopped$", "a second stop refused")

            run1, ex1 = exits(c, "b")
            time.sleep(1)
            run2, ex2 = exits(c, "b")
            print(f"b: exits {ex1} -> {ex2}, run_us {run1} -> {run2}")
            if not (ex2 > ex1 and run2 > run1):
                raise harness.Failure(f"b's counters did not grow: exits {ex1} -> {ex2}, run_us {run1} -> {run2}")

            c.command("pause b", r"^keel: guest b paused by the operator$", "b paused")
            c.command("list", r"^keel: guest b state=paused ", "b listed as paused")
            time.sleep(0.3)   # its vCPU parks at its next exit (a tick at the latest)
            run3, ex3 = exits(c, "b")
            time.sleep(1)
            run4, ex4 = exits(c, "b")
            print(f"b paused: exits {ex3} -> {ex4}, run_us {run3} -> {run4}")
            if ex4 != ex3 or run4 != run3:
                raise harness.Failure(f"b ran while paused: exits {ex3} -> {ex4}, run_us {run3} -> {run4}")
            c.command("resume b", r"^keel: guest b resumed by the operator$", "b resumed")
            time.sleep(0.5)
            run5, ex5 = exits(c, "b")
            if not ex5 > ex4:
                raise harness.Failure(f"b did not run again after resume: exits {ex4} -> {ex5}")

            c.command("start a", r"^keel: guest a: restarting \(the operator started it, start 2\)$", "a starting")
            c.wait(r"^\[a\] heartbeat: port=", "a running again")
            c.command("list", r"^keel: guest a state=running .* starts=2 restarts=0$", "a listed as running again")

            rnd = random.Random(14)
            junk = bytes(b if b not in (10, 13) else 0x41 for b in (rnd.randrange(256) for _ in range(4096)))
            c.send(junk + b"\r\n")
            c.wait(r"^keel: console: (line too long \(at most \d+ bytes\)|control characters in line): ignored$",
                   "the garbage refused")
            c.send(b"A" * 4096 + b"\n")
            c.wait(r"^keel: console: line too long \(at most 120 bytes\): ignored$", "the long line refused")
            c.command("frobnicate", r"^keel: console: unknown command \(try help\)$", "an unknown command")
            c.command("stop", r"^keel: console: which guest\? \(try list\)$", "a missing guest name")
            c.command("stop nosuch", r"^keel: console: no guest named 'nosuch' \(try list\)$", "an unknown guest")
            c.command("help", r"^keel:   resume GUEST ", "help")
            c.command("log warn", r"^keel: console: log level warn$", "log level")
            c.command("list", r"^keel: guest a state=running ", "Keel still answering")
            c.wait(r"^keel: guest b state=running ", "b running at the end")
            ok = True
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if os.path.exists(log):
                with open(log, errors="replace") as f:
                    text = f.read().replace("\r", "")
                lines = text.splitlines()
                print("\n".join(lines[-80:] if ok else lines[-150:]))
    print("console: PASS")


if __name__ == "__main__":
    try:
        main()
    except harness.Failure as e:
        print(f"FAIL: {e}")
        sys.exit(1)
