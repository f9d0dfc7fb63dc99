#!/usr/bin/env python3
"""Boot Keel from a GRUB image under QEMU TCG and assert on the serial console.

  qemu_boot.py --iso keel.iso --firmware bios|uefi --media cd|usb --smp N --mem 512M
  qemu_boot.py --kernel keel.elf --cmdline "debug_fault=pf" --expect-fault pf ...
"""
import argparse
import os
import re
import tempfile

import harness

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iso")
    p.add_argument("--kernel")
    p.add_argument("--cmdline", default="")
    p.add_argument("--firmware", choices=["bios", "uefi"], default="bios")
    p.add_argument("--media", choices=["cd", "usb"], default="cd")
    p.add_argument("--smp", type=int, default=1)
    p.add_argument("--mem", default="512M")
    p.add_argument("--timeout", type=int, default=120)
    p.add_argument("--expect-fault", help="expect this exception report (e.g. '#PF') and a clean halt")
    p.add_argument("--expect-line", action="append", default=[], help="a regex some console line must match")
    p.add_argument("--until", help="a regex that ends the run (default: the ready line)")
    a = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="keel-qemu-") as tmp:
        image = a.iso
        if a.kernel:
            image = harness.make_image(a.kernel, a.cmdline, os.path.join(tmp, "test.iso"))
        log = os.path.join(tmp, "serial.log")
        cmd = harness.qemu_command(image, tmp, log, a.smp, a.mem, a.firmware, a.media)
        print(" ".join(cmd))

        if a.expect_fault:
            def until(text):
                return True if re.search(r"^keel: cpu \d+ halted$", text, re.M) else None
            _, text = harness.run(cmd, log, until, a.timeout)
            print(text)
            report = re.search(r"^keel: EXCEPTION (\S+) .*vector=(\d+) error=0x[0-9a-f]+ cpu=0$", text, re.M)
            if not report or report.group(1) != a.expect_fault:
                raise harness.Failure(f"expected an exception report for {a.expect_fault}")
            for reg in ("rip=", "cr2=", "rax=", "r15="):
                if reg not in text:
                    raise harness.Failure(f"report lacks {reg}")
            if harness.READY.search(text):
                raise harness.Failure("Keel went on to the ready line after the exception")
            return

        end = re.compile(a.until, re.M) if a.until else harness.READY

        def until(text):
            if end.search(text) or harness.EXCEPTION.search(text):
                return True
            return None
        _, text = harness.run(cmd, log, until, a.timeout)
        print(text)
        harness.check_ready(text, a.smp, harness.parse_size(a.mem))
        if harness.EXCEPTION.search(text):
            raise harness.Failure("Keel took an exception")
        for pattern in a.expect_line:
            if not re.search(pattern, text, re.M):
                raise harness.Failure(f"no console line matches {pattern!r}")


if __name__ == "__main__":
    harness.main_wrapper(main)
