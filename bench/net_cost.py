#!/usr/bin/env python3
"""Cost of virtio-net under Keel: VM exits per packet and emulated instructions
per byte of a bulk TCP transfer between two Linux guests on one network.

Boots two Debian guests (the Linux test guest, scripts/linux/init.sh) on one
CPU under QEMU TCG with -icount shift=0 (SVM path): one emulated instruction per
virtual ns, and the TSC, by which Keel accounts each vCPU's run time, follows
virtual time, so the figures are deterministic up to the guests' own timers.
Two runs: in the first `db` pings `web` and sends it 4 MiB over TCP, in the
second it only pings. From Keel's `keel: stats` lines of both guests:
  exits/packet             = (exits(run 1) - exits(run 2)) / (packets(run 1) - packets(run 2))
  Keel instructions/byte   = (NIC service time(run 1) - (run 2)) / 4 MiB: Keel's virtio-net
                             path (transmit notifies: popping, switching, the copy into the
                             receiver, its interrupt), the NICs' service_us
  workload instructions/byte = (vCPU run time(run 1) - (run 2)) / 4 MiB: everything the
                             transfer costs: both guests' TCP/IP stacks and drivers, and
                             /init's own work (generating the 4 MiB pattern with seq, md5sum
                             on both sides), plus Keel
where packets count each frame once (the senders' tx_packets) and run time is
the vCPUs' time in the guest and in Keel's exit handling (not idle time).
Not a timed test: run it by hand (a few minutes).

  bench/net_cost.py [--build DIR]
"""
import argparse
import os
import re
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "boot"))
import harness  # noqa: E402

GUEST = """
[[guest]]
name = "{name}"
kernel = "{linux}/vmlinuz"
initrd = "{linux}/initrd.gz"
cmdline = "console=ttyS0 quiet keel.cpus=1 keel.mem_mb=128 {args} panic=-1"
memory = "128M"

[[guest.nic]]
network = "lan"
mac = "{mac}"
"""
WEB, DB = "02:4b:45:00:00:01", "02:4b:45:00:00:02"
BYTES = 4 << 20


def boot(build, tmp, tcp):
    linux = os.path.join(build, "linux")
    config = os.path.join(tmp, "keel.toml")
    with open(config, "w") as f:
        f.write('[keel]\non_idle = "poweroff"\n\n[[network]]\nname = "lan"\n')
        f.write(GUEST.format(name="web", linux=linux, mac=WEB,
                             args=f"keel.mac={WEB} keel.peer={DB} keel.linger=5" + (" keel.tcp=server" if tcp else "")))
        f.write(GUEST.format(name="db", linux=linux, mac=DB,
                             args=f"keel.mac={DB} keel.peer={WEB} keel.linger=5" + (f" keel.tcp=client:{WEB}" if tcp else "")))
    image = os.path.join(tmp, "bench.iso")
    harness.run_mkimage([config, "--kernel", os.path.join(build, "keel.elf"), "-o", image])
    log = os.path.join(tmp, "serial.log")
    cmd = harness.qemu_command(image, tmp, log, smp=1, mem="512M", extra=["-icount", "shift=0"])
    done = re.compile(r"^keel: all guests have ended", re.M)
    _, text = harness.run(cmd, log, lambda t: True if done.search(t) else None, 1200, cwd=tmp)
    if "fail" in " ".join(re.findall(r"KEEL-INIT [^\r\n]*", text)) or not done.search(text):
        sys.exit(f"run with tcp={tcp} failed:\n" + text[-4000:])
    exits = run_us = packets = service_us = 0
    for g in ("web", "db"):
        m = re.search(rf"^keel: stats {g} vcpu=0 cpu=\d+ run_us=(\d+) ready_us=\d+ run_pct=[\d.]+ ready_pct=[\d.]+ exits=(\d+)", text, re.M)
        n = re.search(rf"^keel: stats {g} nic=0 tx_packets=(\d+) tx_bytes=(\d+).* service_us=(\d+)", text, re.M)
        if not m or not n:
            sys.exit(f"no stats for {g}:\n" + text[-4000:])
        run_us += int(m.group(1))
        exits += int(m.group(2))
        packets += int(n.group(1))
        service_us += int(n.group(3))
    return exits, packets, run_us, service_us


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", default=os.environ.get("KEEL_BUILD", os.path.join(ROOT, "build")))
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as tmp:
        e1, p1, t1, s1 = boot(a.build, tmp, True)
        e0, p0, t0, s0 = boot(a.build, tmp, False)
    print("virtio-net bulk TCP (4 MiB, web <- db, IPv6 link-local), SVM (QEMU TCG, -icount shift=0, 1 CPU)")
    print(f"  packets {p1 - p0} (both directions), exits {e1 - e0}, NIC service {s1 - s0} us, run time {t1 - t0} us")
    print(f"  exits/packet {(e1 - e0) / (p1 - p0):.3f}   Keel instructions/byte {(s1 - s0) * 1000 / BYTES:.1f}"
          f"   workload instructions/byte {(t1 - t0) * 1000 / BYTES:.1f}")


if __name__ == "__main__":
    main()
