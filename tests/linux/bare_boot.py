#!/usr/bin/env python3
"""Boot Debian's kernel bare (no Keel) under QEMU TCG with Keel's test initramfs
and assert that its /init saw the CPUs and RAM QEMU gave it.

  bare_boot.py --kernel vmlinuz --initrd initrd.gz [--smp 2] [--mem 256] [--timeout 240]

The baseline for Keel's Linux guests: the same kernel and initramfs, booted by
QEMU's own loader (-kernel/-initrd). The emulator has a hard timeout and is
killed by its PID (harness.run).
"""
import argparse
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "boot"))
import harness  # noqa: E402

POWER_DOWN = re.compile(r"^(?:\[\s*[\d.]+\] )?reboot: Power down$", re.M)
PANIC = re.compile(r"Kernel panic - not syncing.*$", re.M)
INIT_LINE = re.compile(r"^KEEL-INIT cpus=(\d+) mem_kb=(\d+) uptime=([\d.]+)$", re.M)
CHECK_LINE = re.compile(r"^KEEL-INIT check=(\S+)(.*)$", re.M)


def command(kernel, initrd, log, smp, mem_mib, extra_append="", extra=()):
    append = f"console=ttyS0 keel.cpus={smp} keel.mem_mb={mem_mib} panic=-1"
    if extra_append:
        append += " " + extra_append
    return ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-machine", "q35",
            "-smp", str(smp), "-m", f"{mem_mib}M", "-kernel", kernel, "-initrd", initrd,
            "-append", append, "-display", "none", "-serial", f"file:{log}",
            "-no-reboot", "-nodefaults"] + list(extra)


def finished(text):
    """The guest is done: it powered off, or the kernel panicked (panic=-1 and
    -no-reboot then end QEMU; harness.run also re-reads the log when QEMU exits)."""
    return True if POWER_DOWN.search(text) or PANIC.search(text) else None


def boot(kernel, initrd, smp, mem_mib, timeout, extra_append="", extra=()):
    """Boot once; returns (serial text, wall seconds)."""
    for path in (kernel, initrd):
        if not os.path.isfile(path):
            raise harness.Failure(f"{path} is missing (build the linux_guest target)")
    with tempfile.TemporaryDirectory(prefix="keel-linux-") as tmp:
        log = os.path.join(tmp, "serial.log")
        cmd = command(kernel, initrd, log, smp, mem_mib, extra_append, extra)
        print(" ".join(f"'{c}'" if " " in c else c for c in cmd), flush=True)
        start = time.monotonic()
        _, text = harness.run(cmd, log, finished, timeout, cwd=tmp)
        return text, time.monotonic() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kernel", required=True)
    p.add_argument("--initrd", required=True)
    p.add_argument("--smp", type=int, default=2)
    p.add_argument("--mem", type=int, default=256, help="MiB")
    p.add_argument("--timeout", type=int, default=240)
    a = p.parse_args()

    text, wall = boot(a.kernel, a.initrd, a.smp, a.mem, a.timeout)
    ours = [l for l in text.splitlines() if l.startswith("KEEL-INIT") or PANIC.search(l)]
    print("\n".join(ours))
    print(f"wall time {wall:.1f} s")
    if PANIC.search(text):
        tail = "\n".join(text.splitlines()[-30:])
        raise harness.Failure(f"the kernel panicked:\n{tail}")
    if not INIT_LINE.search(text):
        tail = "\n".join(text.splitlines()[-30:])
        raise harness.Failure(f"/init never reported (no KEEL-INIT cpus=... line):\n{tail}")
    check = CHECK_LINE.search(text)
    if not check:
        raise harness.Failure("no KEEL-INIT check= line")
    if check.group(1) != "ok":
        raise harness.Failure(f"/init's check failed: {check.group(0)}")
    if not POWER_DOWN.search(text):
        raise harness.Failure("the guest did not power off")


if __name__ == "__main__":
    harness.main_wrapper(main)
