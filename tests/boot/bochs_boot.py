#!/usr/bin/env python3
"""Boot Keel's GRUB image under Bochs (Intel model with VMX, EPT, VPID) and
assert the ready line on the serial console.

Debian's Bochs has no headless display and stops in its debugger, so it runs
under a pseudo-terminal with the 'term' display and a debugger script of 'c'.
"""
import argparse
import os
import tempfile

import harness

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iso", required=True)
    p.add_argument("--model", default="corei7_skylake_x")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--mem", type=int, default=256, help="MiB")
    p.add_argument("--timeout", type=int, default=300)
    a = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="keel-bochs-") as tmp:
        log = os.path.join(tmp, "serial.log")
        cmd = harness.bochs_command(a.iso, tmp, log, a.cpus, a.mem, a.model)

        def until(text):
            if harness.READY.search(text) or harness.EXCEPTION.search(text):
                return True
            return None
        _, text = harness.run(cmd, log, until, a.timeout, cwd=tmp, pty=True)
        print(text)
        harness.check_ready(text, a.cpus, a.mem)


if __name__ == "__main__":
    harness.main_wrapper(main)
