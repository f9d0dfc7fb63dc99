#!/usr/bin/env python3
"""Cost of a virtio-blk request under Keel: VM exits and emulated instructions per
4 KiB sequential read, at queue depth 1 and 32.

Boots an appliance with the `vblk` test guest in `mode=bench` (a polling
virtio-blk driver: QD requests offered, one notify per batch, refilled as they
complete) on a 16 MiB RAM disk, under QEMU TCG with -icount shift=0 (SVM path):
one emulated instruction per virtual ns, and the guest's TSC follows virtual time,
so the figures are deterministic. Each depth runs twice, with `count=N` and with
`count=0`; exits are the difference of Keel's `keel: stats` lines (so device
set-up, console output and the guest's end are not counted), instructions are the
guest's TSC across its request loop (everything: the guest's own work, the exits
and the device model). Not a timed test: run it by hand.

  bench/vblk_cost.py [--count N] [--build DIR]
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
name = "vblk"
kernel = "{guests}/vblk.elf"
cmdline = "mode=bench qd={qd} count={count}"
memory = "8M"

[[guest.disk]]
file = "{disk}"
"""


def boot(build, tmp, qd, count):
    config = os.path.join(tmp, "keel.toml")
    with open(config, "w") as f:
        f.write(CONFIG.format(guests=os.path.join(build, "tests", "guests"), qd=qd, count=count,
                              disk=os.path.join(tmp, "disk.img")))
    image = os.path.join(tmp, "bench.iso")
    harness.run_mkimage([config, "--kernel", os.path.join(build, "keel.elf"), "-o", image])
    log = os.path.join(tmp, "serial.log")
    cmd = harness.qemu_command(image, tmp, log, smp=1, mem="256M", extra=["-icount", "shift=0"])
    done = re.compile(r"^keel: all guests have ended", re.M)
    _, text = harness.run(cmd, log, lambda t: True if done.search(t) else None, 600, cwd=tmp)
    bench = re.search(r"vblk: bench qd=(\d+) requests=(\d+) errors=(\d+) tsc=(\d+)", text, re.M)
    stats = re.search(r"^keel: stats vblk vcpu=0 .*exits=(\d+)([^\r\n]*)", text, re.M)
    disk = re.search(r"^keel: stats vblk disk=0 requests=(\d+)", text, re.M)
    if not bench or not stats or not disk or int(bench.group(2)) != count or int(bench.group(3)):
        sys.exit(f"vblk qd={qd} count={count} did not report its figures:\n" + text[-3000:])
    reasons = dict((k, int(v)) for k, v in re.findall(r" (\w+)=(\d+)", stats.group(2)))
    return int(stats.group(1)), reasons.get("npf", 0), int(bench.group(4)), int(disk.group(1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--count", type=int, default=8192)
    p.add_argument("--build", default=os.environ.get("KEEL_BUILD", os.path.join(ROOT, "build")))
    a = p.parse_args()
    print(f"virtio-blk 4 KiB sequential reads, SVM (QEMU TCG, -icount shift=0), {a.count} requests per depth")
    print(f"{'queue depth':>11} {'exits/request':>14} {'MMIO exits/request':>19} {'instructions/request':>21}")
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as tmp:
        with open(os.path.join(tmp, "disk.img"), "wb") as f:
            f.truncate(16 << 20)
        for qd in (1, 32):
            exits, npf, tsc, reqs = boot(a.build, tmp, qd, a.count)
            exits0, npf0, _, reqs0 = boot(a.build, tmp, qd, 0)
            n = reqs - reqs0
            if n != a.count:
                sys.exit(f"qd={qd}: Keel counted {n} requests, the guest {a.count}")
            print(f"{qd:>11} {(exits - exits0) / n:>14.3f} {(npf - npf0) / n:>19.3f} {tsc / n:>21.0f}")


if __name__ == "__main__":
    main()
