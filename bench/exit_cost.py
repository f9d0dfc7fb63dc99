#!/usr/bin/env python3
"""Exit round-trip cost under Keel, in emulated instructions.

Boots an appliance with the `exitstorm` test guest (a CPUID loop, an
`in al, 0x80` loop and an APIC EOI loop, each instruction between two RDTSCs;
then IPIs between its two vCPUs, both on one CPU: the ICR write that sends one,
and a ping-pong round trip) under
  - QEMU TCG with -icount shift=0 (1 virtual ns per emulated instruction, and
    the TSC follows virtual time: the figures are deterministic), SVM path;
  - Bochs (TSC ~ 1 per instruction with clock sync=none), VMX path;
and prints the cycles per exit the guest measured (the RDTSC pair's own
cost, also printed, is subtracted). Not a timed test: run it by hand.

  bench/exit_cost.py [--count N] [--build DIR] [--only qemu|bochs]
"""
import argparse
import os
import re
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "boot"))
import harness  # noqa: E402

CONFIG = """\
[keel]
on_idle = "poweroff"

[[guest]]
name = "exitstorm"
kernel = "{guests}/exitstorm.elf"
cmdline = "count={count} ipi={ipis}"
memory = "4M"
cpus = 2
pin = [0, 0]
"""


def measure(emulator, build, count):
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as tmp:
        config = os.path.join(tmp, "keel.toml")
        with open(config, "w") as f:
            f.write(CONFIG.format(guests=os.path.join(build, "tests", "guests"), count=count, ipis=max(1, count // 20)))
        image = os.path.join(tmp, "bench.iso")
        harness.run_mkimage([config, "--kernel", os.path.join(build, "keel.elf"), "-o", image])
        log = os.path.join(tmp, "serial.log")
        if emulator == "qemu":
            cmd = harness.qemu_command(image, tmp, log, smp=1, mem="256M", extra=["-icount", "shift=0"])
        else:
            cmd = harness.bochs_command(image, tmp, log, cpus=1, mem_mib=128)
        done = re.compile(r"^keel: all guests have ended", re.M)
        _, text = harness.run(cmd, log, lambda t: True if done.search(t) else None, 900, cwd=tmp,
                              pty=emulator == "bochs")
    over = int(re.search(r"rdtsc overhead=(\d+)", text).group(1))
    m = re.search(r"cpuid cycles/exit=(\d+) pio cycles/exit=(\d+) mmio cycles/exit=(\d+)", text)
    ipi = re.search(r"ipi send cycles/exit=(\d+) ipi round trip cycles=(\d+)", text)
    if not m or not ipi:
        sys.exit("exitstorm did not report its figures:\n" + text[-3000:])
    stats = "\n    ".join(re.findall(r"^keel: stats exitstorm .*$", text, re.M))
    return (int(m.group(1)) - over, int(m.group(2)) - over, int(m.group(3)) - over, int(ipi.group(1)) - over,
            int(ipi.group(2)) - over, over, stats)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--count", type=int, default=100000)
    p.add_argument("--build", default=os.environ.get("KEEL_BUILD", os.path.join(ROOT, "build")))
    p.add_argument("--only", choices=("qemu", "bochs"), help="one emulator only")
    a = p.parse_args()
    print(f"exit round trip, emulated instructions per exit (count={a.count}; rdtsc pair subtracted)")
    print(f"{'path':<28} {'CPUID':>8} {'port I/O':>9} {'APIC EOI':>9} {'IPI send':>9} {'IPI ping-pong':>14} "
          f"{'rdtsc pair':>11}")
    for emulator, label in (("qemu", "SVM (QEMU TCG, icount)"), ("bochs", "VMX (Bochs skylake-x)")):
        if a.only and emulator != a.only:
            continue
        cpuid, pio, mmio, send, trip, over, stats = measure(emulator, a.build, a.count)
        print(f"{label:<28} {cpuid:>8} {pio:>9} {mmio:>9} {send:>9} {trip:>14} {over:>11}")
        print(f"    {stats}")


if __name__ == "__main__":
    main()
