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

BOCHSRC = """\
megs: {mem}
cpu: model={model}, count={cpus}, ips=100000000, reset_on_triple_fault=0
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14
ata0-master: type=cdrom, path={iso}, status=inserted
boot: cdrom
com1: enabled=1, mode=file, dev={log}
display_library: term
log: {tmp}/bochs.log
panic: action=fatal
error: action=report
info: action=ignore
debug: action=ignore
clock: sync=none, time0=1
speaker: enabled=0
sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
"""


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
        rc = os.path.join(tmp, "bochsrc")
        with open(rc, "w") as f:
            f.write(BOCHSRC.format(mem=a.mem, model=a.model, cpus=a.cpus, iso=os.path.abspath(a.iso), log=log, tmp=tmp))
        dbg = os.path.join(tmp, "debugger")
        with open(dbg, "w") as f:
            f.write("c\n")
        cmd = ["bochs", "-q", "-f", rc, "-rc", dbg]

        def until(text):
            if harness.READY.search(text) or harness.EXCEPTION.search(text):
                return True
            return None
        _, text = harness.run(cmd, log, until, a.timeout, cwd=tmp, pty=True)
        print(text)
        harness.check_ready(text, a.cpus, a.mem)


if __name__ == "__main__":
    harness.main_wrapper(main)
