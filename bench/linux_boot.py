#!/usr/bin/env python3
"""Virtual time for Debian's kernel to reach Keel's test /init, booted bare
(QEMU's own -kernel/-initrd loader, no Keel) under QEMU TCG with -icount.

With -icount shift=0 one emulated instruction is one virtual ns and the guest's
clocks follow virtual time, so the figures are the same on a fast or a slow
host. It reports, for the same boot:
  - /proc/uptime as /init read it first thing (on the KEEL-INIT line);
  - the kernel's printk timestamp on "Run /init as init process";
  - the wall time the run took (host-dependent, for information).
Not a test (no assertions): the baseline for Linux under Keel. Reference from
the steering notes: bare, 1 vCPU, /init at 2.00 s virtual.

  bench/linux_boot.py [--build DIR] [--smp 1] [--mem 256] [--icount shift=0] [--runs 1] [--append ARGS]

Of the ~1.75 s, ~0.74 s is the crypto self-tests (late initcall crypto_algapi_init);
`--append cryptomgr.notests` skips them.

Needs the linux_guest target built (it is built here if its outputs are missing).
"""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "boot"))
sys.path.insert(0, os.path.join(ROOT, "tests", "linux"))
import harness  # noqa: E402
import bare_boot  # noqa: E402

RUN_INIT = re.compile(r"^\[\s*([\d.]+)\] Run /init as init process$", re.M)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--build", default=os.environ.get("KEEL_BUILD", os.path.join(ROOT, "build")))
    p.add_argument("--smp", type=int, default=1)
    p.add_argument("--mem", type=int, default=256, help="MiB")
    p.add_argument("--icount", default="shift=0", help="QEMU's -icount option")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--append", default="", help="more kernel command line (e.g. cryptomgr.notests)")
    p.add_argument("--timeout", type=int, default=600)
    p.add_argument("--keel", action="store_true",
                   help="also boot the same kernel and initramfs as a Keel guest (SVM under the same QEMU) and compare")
    a = p.parse_args()

    kernel = os.path.join(a.build, "linux", "vmlinuz")
    initrd = os.path.join(a.build, "linux", "initrd.gz")
    if not (os.path.isfile(kernel) and os.path.isfile(initrd)):
        subprocess.run(["cmake", "--build", a.build, "--target", "linux_guest"], check=True)
    with open(os.path.join(a.build, "linux", "version")) as f:
        release = f.read().strip()

    print(f"Debian {release} bare under QEMU TCG -icount {a.icount}: smp={a.smp} mem={a.mem}M"
          + (f" append: {a.append}" if a.append else ""))
    print(f"{'run':>3} {'/init uptime (s)':>17} {'printk Run /init (s)':>21} {'wall (s)':>9}  KEEL-INIT")
    for run in range(1, a.runs + 1):
        text, wall = bare_boot.boot(kernel, initrd, a.smp, a.mem, a.timeout,
                                    extra_append=("printk.time=1 " + a.append).strip(), extra=["-icount", a.icount])
        init = bare_boot.INIT_LINE.search(text)
        check = bare_boot.CHECK_LINE.search(text)
        printk = RUN_INIT.search(text)
        uptime = init.group(3) if init else "-"
        at = printk.group(1) if printk else "-"
        status = check.group(0) if check else "no KEEL-INIT check line"
        print(f"{run:>3} {uptime:>17} {at:>21} {wall:>9.1f}  {status}", flush=True)
    if a.keel:
        keel_boot(a, release, uptime)


KEEL_CONFIG = """\
[keel]
on_idle = "poweroff"

[[guest]]
name = "linux"
kernel = "{kernel}"
initrd = "{initrd}"
cmdline = "console=ttyS0 keel.cpus={smp} keel.mem_mb={mem} printk.time=1 {append}"
memory = "{mem}M"
cpus = {smp}
pin = [0]
"""


def keel_boot(a, release, bare_uptime):
    """The same kernel as a Keel guest: the guest's /proc/uptime at /init (virtual time under
    -icount, exits included) against the bare figure, and Keel's own memory for the guest."""
    import re
    import tempfile
    kernel = os.path.join(a.build, "linux", "vmlinuz")
    initrd = os.path.join(a.build, "linux", "initrd.gz")
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as tmp:
        config = os.path.join(tmp, "keel.toml")
        with open(config, "w") as f:
            f.write(KEEL_CONFIG.format(kernel=kernel, initrd=initrd, smp=a.smp, mem=a.mem, append=a.append))
        image = os.path.join(tmp, "bench.iso")
        harness.run_mkimage([config, "--kernel", os.path.join(a.build, "keel.elf"), "-o", image])
        log = os.path.join(tmp, "serial.log")
        cmd = harness.qemu_command(image, tmp, log, smp=1, mem=f"{a.mem + 512}M", extra=["-icount", a.icount])
        done = re.compile(r"^keel: all guests have ended", re.M)
        _, text = harness.run(cmd, log, lambda t: True if done.search(t) else None, a.timeout, cwd=tmp)
    init = bare_boot.INIT_LINE.search(text.replace("[linux] ", ""))
    overhead = re.search(r"^keel: guest linux: .*keel_overhead_kib=(\d+)", text, re.M)
    stats = re.search(r"^keel: stats linux vcpu=0 .*$", text, re.M)
    uptime = init.group(3) if init else "-"
    print(f"Keel guest (SVM, nested in the same TCG): /init uptime {uptime} s", flush=True)
    if init and bare_uptime not in ("-", None):
        print(f"ratio Keel/bare: {float(uptime) / float(bare_uptime):.3f}")
    if overhead:
        print(f"Keel's memory for the guest beyond its RAM: {overhead.group(1)} KiB")
    if stats:
        print(stats.group(0))


if __name__ == "__main__":
    try:
        main()
    except harness.Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
