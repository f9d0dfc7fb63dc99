#!/usr/bin/env python3
"""Run one of Keel's test guests bare under QEMU TCG (no Keel) and check its
serial output and exit code: a sanity check of the guest itself.

  qemu_bare.py --kernel hello.elf [--append "code=5"] [--mem 128M] [--cpu max] [--smp 2]
               (--expect-exit 0x2a | --expect-spin N | --any-exit) [--expect-line REGEX]...
               [--count-chars a:N,b:N] [--scratch-file PATH:SIZE]... [--qemu-arg=ARG]...

QEMU's -kernel loads Multiboot v1 ELF32 kernels; isa-debug-exit at 0xf4 makes
QEMU exit with status ((code << 1) | 1) & 0xff, so only the low 7 bits of the
guest's exit code are checked. Every run has a hard timeout.

--qemu-arg=ARG adds one argument to QEMU's command line (repeatable; write it with '='
when ARG starts with '-'), e.g. an NVMe controller on a raw file that --scratch-file
PATH:SIZE creates before each run (zero-filled, SIZE in bytes with an optional K/M suffix):
    --scratch-file nvme.img:16M --qemu-arg=-drive --qemu-arg=file=nvme.img,if=none,format=raw,id=nvm0
    --qemu-arg=-device --qemu-arg=nvme,serial=keel0,drive=nvm0
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import spin_expected  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kernel", required=True)
    p.add_argument("--append", default="")
    p.add_argument("--mem", default="128M")
    p.add_argument("--timeout", type=int, default=60)
    p.add_argument("--qemu", default="qemu-system-x86_64")
    p.add_argument("--cpu", default="", help="QEMU -cpu model (default: QEMU's own, qemu64)")
    p.add_argument("--smp", type=int, default=1)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--expect-exit", type=lambda s: int(s, 0))
    g.add_argument("--expect-spin", type=lambda s: int(s, 0), help="spin's iterations: expect its exit code")
    g.add_argument("--any-exit", action="store_true")
    p.add_argument("--expect-line", action="append", default=[])
    p.add_argument("--count-chars", default="", metavar="C:N,C:N",
                   help="exact counts of those characters, not counting the guest's report lines ('word: ...')")
    p.add_argument("--qemu-arg", action="append", default=[], metavar="ARG",
                   help="one more QEMU argument (repeatable; --qemu-arg=-device when it starts with '-')")
    p.add_argument("--scratch-file", action="append", default=[], metavar="PATH:SIZE",
                   help="(re)create PATH as SIZE zero bytes (K/M suffix) before the run")
    a = p.parse_args()

    for item in a.scratch_file:
        path, size = item.rsplit(":", 1)
        mult = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:].upper(), 1)
        nbytes = int(size[:-1] if mult > 1 else size, 0) * mult
        with open(path, "wb") as f:
            f.truncate(nbytes)

    cmd = [a.qemu, "-accel", "tcg", "-m", a.mem, "-nodefaults", "-display", "none", "-monitor", "none",
           "-serial", "stdio", "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
           "-kernel", a.kernel]
    if a.cpu:
        cmd += ["-cpu", a.cpu]
    if a.smp > 1:
        cmd += ["-smp", str(a.smp)]
    cmd += a.qemu_arg
    if a.append:
        cmd += ["-append", a.append]
    print(" ".join(cmd))
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=a.timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        print(out)
        print(f"FAIL: timed out after {a.timeout}s", file=sys.stderr)
        return 1
    out = r.stdout.decode(errors="replace").replace("\r", "")
    print(out)
    if r.stderr:
        print(r.stderr.decode(errors="replace"), file=sys.stderr)

    errors = []
    name = os.path.splitext(os.path.basename(a.kernel))[0]
    if not re.search(rf"^{re.escape(name)}: start$", out, re.M):
        errors.append(f"no '{name}: start' line")
    for rx in a.expect_line:
        if not re.search(rx, out, re.M):
            errors.append(f"no line matches {rx!r}")
    if r.returncode & 1 == 0:
        errors.append(f"QEMU exited with {r.returncode}: the guest did not use the debug-exit port")
    want = a.expect_exit
    if a.expect_spin is not None:
        want = spin_expected.expected_exit_code(a.expect_spin)
    if want is not None and r.returncode != ((want << 1) | 1) & 0xFF:
        errors.append(f"QEMU exit status {r.returncode}, expected {((want << 1) | 1) & 0xFF} (guest code {want:#x})")
    if a.count_chars:
        lines = [line for line in out.splitlines() if not re.match(r"^[\w-]+: ", line)]
        for item in a.count_chars.split(","):
            ch, n = item.split(":", 1)
            got = sum(line.count(ch) for line in lines)
            print(f"count-chars {ch!r}: {got} (want {int(n, 0)})")
            if got != int(n, 0):
                errors.append(f"{got} characters {ch!r} instead of {int(n, 0)}")
    if re.search(r"unexpected exception", out):
        errors.append("the guest took an unexpected exception")
    if errors:
        for e in errors:
            print(f"FAIL: {e}", file=sys.stderr)
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
