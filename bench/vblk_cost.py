#!/usr/bin/env python3
"""Cost of a virtio-blk request under Keel: VM exits and emulated instructions per
4 KiB request, and the IOPS that makes in emulated time, at queue depth 1 and 32,
for each backend: a RAM disk (a packed image) and a partition of Keel's NVMe drive
(QEMU's `-device nvme` on a raw file, `device = "gpt-name:bench"`).

Boots an appliance with the `vblk` test guest in `mode=bench` (a polling
virtio-blk driver: QD requests offered, one notify per batch, refilled as they
complete) on a 16 MiB disk, under QEMU TCG with -icount shift=0 (SVM path): one
emulated instruction per virtual ns, and the guest's TSC follows virtual time.
Each case runs twice, with `count=N` and with `count=0`; exits are the
difference of Keel's `keel: stats` lines (so device set-up, console output and
the guest's end are not counted), instructions are the guest's TSC across its
request loop (everything: the guest's own work, the exits, the device model and,
on NVMe, Keel polling the controller). IOPS = requests per emulated second.

The RAM figures are deterministic. The NVMe ones are not quite: QEMU completes
the controller's commands on its own thread, while Keel's polling loop keeps
executing (and counting) instructions, so they depend on the host's speed a little.

  bench/vblk_cost.py [--count N] [--build DIR] [--backend ram|nvme|both]
                     [--pattern seq|rand|both] [--op read|write|both]
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
cmdline = "mode=bench qd={qd} count={count} rand={rand} write={write}"
memory = "8M"

[[guest.disk]]
{disk}
"""


def boot(build, tmp, backend, qd, count, rand, write):
    config = os.path.join(tmp, "keel.toml")
    disk_img = os.path.join(tmp, "disk.img")
    disk = f'file = "{disk_img}"' if backend == "ram" else f'device = "gpt-name:bench"\nfile = "{disk_img}"'
    with open(config, "w") as f:
        f.write(CONFIG.format(guests=os.path.join(build, "tests", "guests"), qd=qd, count=count,
                              rand=int(rand), write=int(write), disk=disk))
    image = os.path.join(tmp, "bench.iso")
    args = [config, "--kernel", os.path.join(build, "keel.elf"), "-o", image]
    extra = ["-icount", "shift=0"]
    if backend == "nvme":
        raw = os.path.join(tmp, "nvme.raw")
        args += ["--disk-out", raw]
        extra += ["-drive", f"file={raw},if=none,format=raw,id=nvm0",
                  "-device", "nvme,serial=keel-bench,drive=nvm0"]
    os.environ.setdefault("KEEL_BUILD", build)
    harness.run_mkimage(args)
    log = os.path.join(tmp, "serial.log")
    cmd = harness.qemu_command(image, tmp, log, smp=1, mem="256M", extra=extra)
    done = re.compile(r"^keel: all guests have ended", re.M)
    _, text = harness.run(cmd, log, lambda t: True if done.search(t) else None, 900, cwd=tmp)
    bench = re.search(r"vblk: bench qd=(\d+) requests=(\d+) errors=(\d+) tsc=(\d+)", text, re.M)
    stats = re.search(r"^keel: stats vblk vcpu=0 .*exits=(\d+)([^\r\n]*)", text, re.M)
    disk = re.search(r"^keel: stats vblk disk=0 requests=(\d+)", text, re.M)
    if not bench or not stats or not disk or int(bench.group(2)) != count or int(bench.group(3)):
        sys.exit(f"vblk {backend} qd={qd} count={count} did not report its figures:\n" + text[-3000:])
    reasons = dict((k, int(v)) for k, v in re.findall(r" (\w+)=(\d+)", stats.group(2)))
    return int(stats.group(1)), reasons.get("npf", 0), int(bench.group(4)), int(disk.group(1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--count", type=int, default=8192)
    p.add_argument("--build", default=os.environ.get("KEEL_BUILD", os.path.join(ROOT, "build")))
    p.add_argument("--backend", choices=["ram", "nvme", "both"], default="both")
    p.add_argument("--pattern", choices=["seq", "rand", "both"], default="rand")
    p.add_argument("--op", choices=["read", "write", "both"], default="both")
    a = p.parse_args()
    a.build = os.path.abspath(a.build)
    pick = lambda v, both: both if v == "both" else [v]  # noqa: E731
    print(f"virtio-blk 4 KiB requests, SVM (QEMU TCG, -icount shift=0), {a.count} requests per case")
    print(f"{'backend':>7} {'pattern':>7} {'op':>5} {'qd':>3} {'exits/req':>10} {'MMIO exits/req':>15} "
          f"{'instructions/req':>17} {'IOPS (emulated)':>16}")
    for backend in pick(a.backend, ["ram", "nvme"]):
        for pattern in pick(a.pattern, ["seq", "rand"]):
            for op in pick(a.op, ["read", "write"]):
                for qd in (1, 32):
                    with tempfile.TemporaryDirectory(prefix="keel-bench-") as tmp:
                        with open(os.path.join(tmp, "disk.img"), "wb") as f:
                            f.truncate(16 << 20)
                        rand, write = pattern == "rand", op == "write"
                        exits, npf, tsc, reqs = boot(a.build, tmp, backend, qd, a.count, rand, write)
                        exits0, npf0, _, reqs0 = boot(a.build, tmp, backend, qd, 0, rand, write)
                    n = reqs - reqs0
                    if n != a.count:
                        sys.exit(f"{backend} qd={qd}: Keel counted {n} requests, the guest {a.count}")
                    print(f"{backend:>7} {pattern:>7} {op:>5} {qd:>3} {(exits - exits0) / n:>10.3f} "
                          f"{(npf - npf0) / n:>15.3f} {tsc / n:>17.0f} {n / (tsc / 1e9):>16.0f}", flush=True)


if __name__ == "__main__":
    main()
