#!/usr/bin/env python3
"""Boot Debian's kernel bare (no Keel) under QEMU TCG with Keel's test initramfs,
twice at once, the two guests' virtio-net devices joined by a QEMU socket netdev
(127.0.0.1 only: one listens, the other connects), and assert on /init's network
checks (scripts/linux/init.sh):

  bare_net.py --kernel vmlinuz --initrd initrd.gz [--timeout 400] [--no-isolated]

  server: keel.mac=S keel.peer=C keel.tcp=server
  client: keel.mac=C keel.peer=S keel.unreachable=I keel.tcp=client:S
Both must print "net mac ok", "net ping <peer> ok", the server "net tcp ok bytes=4194304
md5=<the pattern's>", the client "net tcp sent ok md5=<same>" and "net isolated I ok"
(I is on no wire of theirs), then "net done", then power off.

Then (unless --no-isolated) a third guest alone, its own socket netdev listening with
nobody connecting: keel.mac=I keel.unreachable=S keel.unreachable=C keel.stay: both
"net isolated ... ok", "net done", then "staying up", and it must still be up a few
seconds later (it is killed then).

Never more than two emulators at once; each has a hard timeout and is killed by its
PID (its session). Prints each guest's wall time from start to "KEEL-INIT net done".
"""
import argparse
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "boot"))
import harness  # noqa: E402

SERVER_MAC = "02:00:00:00:00:01"   # link-local fe80::ff:fe00:1 (EUI-64's first group is 0)
CLIENT_MAC = "52:54:00:00:00:02"   # fe80::5054:ff:fe00:2
ISOLATED_MAC = "02:00:00:00:00:03"
POWER_DOWN = re.compile(r"^(?:\[\s*[\d.]+\] )?reboot: Power down$", re.M)
PANIC = re.compile(r"Kernel panic - not syncing.*$", re.M)
NET_DONE = re.compile(r"^KEEL-INIT net done$", re.M)
STAYING = re.compile(r"^KEEL-INIT staying up$", re.M)


def pattern_md5():
    """md5 of the 4 MiB /init sends: seq -w 0 1048575 | head -c 4M (8-byte lines)."""
    data = "".join(f"{i:07d}\n" for i in range(1048576)).encode()[:4 << 20]
    return hashlib.md5(data).hexdigest()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(kernel, initrd, log, mac, netdev, words, mem_mib=256):
    append = f"console=ttyS0 keel.cpus=1 keel.mem_mb={mem_mib} panic=-1 {words}"
    return ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", f"{mem_mib}M",
            "-nodefaults", "-display", "none", "-no-reboot", "-serial", f"file:{log}",
            "-kernel", kernel, "-initrd", initrd, "-append", append,
            "-device", f"virtio-net-pci,netdev=n0,mac={mac},disable-legacy=on",
            "-netdev", f"socket,id=n0,{netdev}"]


class Guest:
    def __init__(self, name, cmd, log):
        self.name, self.log = name, log
        print(f"{name}: " + " ".join(f"'{c}'" if " " in c else c for c in cmd), flush=True)
        self.start = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.net_done = None   # seconds from start to "KEEL-INIT net done"
        self.text = ""

    def poll(self):
        if os.path.exists(self.log):
            with open(self.log, "r", errors="replace") as f:
                self.text = f.read().replace("\r", "")
        if self.net_done is None and NET_DONE.search(self.text):
            self.net_done = time.monotonic() - self.start
        return self.proc.poll()

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            err = b""
        self.err = err.decode(errors="replace")

    def lines(self):
        return [l for l in self.text.splitlines() if l.startswith("KEEL-INIT") or PANIC.search(l)]


def run_until(guests, done, timeout):
    """Poll until done() is true, every emulator has exited, or timeout; then kill them all."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            time.sleep(0.2)
            exited = [g.poll() is not None for g in guests]
            if done():
                break
            if all(exited):
                time.sleep(0.2)
                for g in guests:
                    g.poll()
                break
    finally:
        for g in guests:
            g.kill()
            g.poll()


def expect(guest, lines, problems):
    got = guest.lines()
    for want in lines:
        if want not in got:
            problems.append(f"{guest.name}: no line '{want}'")
    for l in got:
        if " fail" in l or PANIC.search(l):
            problems.append(f"{guest.name}: {l}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kernel", required=True)
    p.add_argument("--initrd", required=True)
    p.add_argument("--timeout", type=int, default=400, help="seconds, per run")
    p.add_argument("--no-isolated", action="store_true", help="skip the third guest")
    a = p.parse_args()
    a.kernel, a.initrd = os.path.abspath(a.kernel), os.path.abspath(a.initrd)
    for path in (a.kernel, a.initrd):
        if not os.path.isfile(path):
            raise harness.Failure(f"{path} is missing")
    md5 = pattern_md5()
    problems = []
    with tempfile.TemporaryDirectory(prefix="keel-linux-net-") as tmp:
        port = free_port()
        slog, clog = os.path.join(tmp, "server.log"), os.path.join(tmp, "client.log")
        server = Guest("server", command(a.kernel, a.initrd, slog, SERVER_MAC,
                                         f"listen=127.0.0.1:{port}",
                                         f"keel.mac={SERVER_MAC} keel.peer={CLIENT_MAC} keel.tcp=server"), slog)
        time.sleep(1)   # the listening end first
        client = Guest("client", command(a.kernel, a.initrd, clog, CLIENT_MAC,
                                         f"connect=127.0.0.1:{port}",
                                         f"keel.mac={CLIENT_MAC} keel.peer={SERVER_MAC} "
                                         f"keel.unreachable={ISOLATED_MAC} keel.tcp=client:{SERVER_MAC}"), clog)
        guests = [server, client]
        run_until(guests, lambda: all(POWER_DOWN.search(g.text) or PANIC.search(g.text) for g in guests),
                  a.timeout)
        for g in guests:
            print("\n".join(g.lines()))
            print(f"{g.name}: net done after {g.net_done:.1f} s" if g.net_done is not None
                  else f"{g.name}: no 'net done'")
        expect(server, ["KEEL-INIT check=ok", "KEEL-INIT net mac ok", f"KEEL-INIT net ping {CLIENT_MAC} ok",
                        f"KEEL-INIT net tcp ok bytes={4 << 20} md5={md5}", "KEEL-INIT net done"], problems)
        expect(client, ["KEEL-INIT check=ok", "KEEL-INIT net mac ok", f"KEEL-INIT net ping {SERVER_MAC} ok",
                        f"KEEL-INIT net isolated {ISOLATED_MAC} ok", f"KEEL-INIT net tcp sent ok md5={md5}",
                        "KEEL-INIT net done"], problems)
        for g in guests:
            if not POWER_DOWN.search(g.text):
                problems.append(f"{g.name} did not power off; log tail:\n" + "\n".join(g.text.splitlines()[-20:])
                                + f"\nstderr: {g.err[-1000:]}")

        if not a.no_isolated:
            ilog = os.path.join(tmp, "isolated.log")
            lone = Guest("isolated", command(a.kernel, a.initrd, ilog, ISOLATED_MAC,
                                             f"listen=127.0.0.1:{free_port()}",
                                             f"keel.mac={ISOLATED_MAC} keel.unreachable={SERVER_MAC} "
                                             f"keel.unreachable={CLIENT_MAC} keel.stay"), ilog)
            staying = []

            def stayed():
                if not STAYING.search(lone.text):
                    return False
                if not staying:
                    staying.append(time.monotonic())
                return time.monotonic() - staying[0] > 5   # still up 5 s later?
            run_until([lone], stayed, a.timeout)
            print("\n".join(lone.lines()))
            print(f"isolated: net done after {lone.net_done:.1f} s" if lone.net_done is not None
                  else "isolated: no 'net done'")
            expect(lone, ["KEEL-INIT check=ok", "KEEL-INIT net mac ok", f"KEEL-INIT net isolated {SERVER_MAC} ok",
                          f"KEEL-INIT net isolated {CLIENT_MAC} ok", "KEEL-INIT net done",
                          "KEEL-INIT staying up"], problems)
            if POWER_DOWN.search(lone.text) or PANIC.search(lone.text) or "powering off" in lone.text:
                problems.append("isolated: keel.stay, yet it powered off (or panicked)")
            elif not staying or time.monotonic() - staying[0] < 5:
                problems.append("isolated: did not stay up 5 s after 'staying up'")
    if problems:
        raise harness.Failure("\n".join(problems))


if __name__ == "__main__":
    harness.main_wrapper(main)
