#!/usr/bin/env python3
"""Crash durability of a guest's disk on Keel's NVMe drive (issue 12): a write that a
guest saw acknowledged and flushed must survive the machine dying right after.

Each run: an appliance with one Debian guest on the NVMe partition "rec"
(tests/vm/linux_crash.toml; the raw disk provisioned by scripts/mkimage --disk-out,
QEMU's NVMe controller on it) whose /init writes numbered, checksummed 4 KiB records,
each written O_DIRECT and fsync'd (a virtio-blk FLUSH, which Keel must turn into an NVMe
Flush) before it prints `KEEL-REC N` (scripts/linux/init.sh keel.records). Once record
TARGET has been printed (TARGET drawn in [--min, --max]) and a random delay more (0 to
--delay seconds) has passed, QEMU is SIGKILLed: mid-write, mid-flush or between records.
The last number printed, L, is read from the serial log; QEMU's trace of the NVMe I/O
commands it received (pci_nvme_io_cmd), in order, must hold at least L+1 Writes each followed
by a Flush (each acknowledged record's write, then its flush, reached the controller). Then:
  - the host reads the partition from the raw disk (tests/boot/gpt_check.py): records
    0..L must all be intact (the checksummed record, exactly as init.sh makes it);
  - Keel boots again on the same raw disk with keel.verify_records=vda:L+1: the guest reads
    them back through Keel and prints its own verdict (`KEEL-REC verify vda ok intact=M`);
  - nothing outside the partitions changed.
A record lost is one of 0..L that either check does not find. The seeded RNG makes
the targets and delays repeatable (QEMU's timing is not); the seed is printed.

  bench/crash_durability.py [--runs 20] [--seed S] [--min 3] [--max 60] [--delay 1.0]
                            [--build DIR | --kernel keel.elf --linux DIR] [--timeout 400] [--bare]

--bare: the same guest bare under QEMU with QEMU's own virtio-blk on a partition-sized raw
file, no Keel: the baseline of the method (and what can run before Keel has NVMe disks).
Exit status 0 only if every run lost nothing. Every emulator run has a hard timeout and is
killed by its own PID (tests/boot/harness.py).
"""
import argparse
import os
import random
import re
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "boot"))
sys.path.insert(0, os.path.join(ROOT, "tests", "linux"))
import bare_boot  # noqa: E402
import gpt_check  # noqa: E402
import harness  # noqa: E402

CONFIG = os.path.join(ROOT, "tests", "vm", "linux_crash.toml")
ENDED = re.compile(r"^keel: all guests have ended", re.M)


class Run:
    def __init__(self, a, tmp):
        self.a, self.tmp = a, tmp
        self.raw = os.path.join(tmp, "nvme.raw")
        self.log = os.path.join(tmp, "serial.log")
        self.trace = os.path.join(tmp, "nvme-trace.log")
        self.prefix = "" if a.bare else r"\[rec\] "

    def image(self, mode, provision):
        """Keel: an appliance for the guest in `mode`; the raw disk only when provision."""
        with open(CONFIG) as f:
            text = f.read().replace("@LINUX@", os.path.abspath(self.a.linux)).replace("@RECMODE@", mode)
        config = os.path.join(self.tmp, "keel.toml")
        with open(config, "w") as f:
            f.write(text)
        image = os.path.join(self.tmp, "appliance.iso")
        harness.run_mkimage([config, "--kernel", self.a.kernel, "-o", image]
                            + (["--disk-out", self.raw] if provision else []))
        return image

    def boot(self, mode, until, provision=False):
        if os.path.exists(self.log):
            os.remove(self.log)
        if self.a.bare:
            if provision:
                shutil.copyfile(os.path.join(self.a.linux, "nvme-rec.img"), self.raw)
            cmd = bare_boot.command(os.path.join(self.a.linux, "vmlinuz"), os.path.join(self.a.linux, "initrd.gz"),
                                    self.log, 1, 256, mode,
                                    ["-drive", f"file={self.raw},if=none,format=raw,id=d0",
                                     "-device", "virtio-blk-pci,drive=d0"])
        else:
            image = self.image(mode, provision)
            if provision:   # what mkimage wrote: nothing outside the partitions may change
                shutil.copyfile(self.raw, os.path.join(self.tmp, "nvme.pristine"))
            cmd = harness.qemu_command(image, self.tmp, self.log, 1, "1G", extra=[
                "-drive", f"file={self.raw},if=none,format=raw,id=nvm0", "-device", "nvme,serial=keel-nvme0,drive=nvm0",
                # Every NVMe I/O command QEMU's controller receives (opcode 0: Flush, 1: Write).
                "-D", self.trace, "-trace", "pci_nvme_io_cmd"])
        _, text = harness.run(cmd, self.log, until, self.a.timeout, cwd=self.tmp)
        return text

    def nvme_commands(self):
        """(flushes, writes, write-then-flush pairs) the NVMe controller received, from QEMU's
        trace, in order: a pair is a Write followed by a Flush before the next pair began."""
        with open(self.trace, errors="replace") as f:
            opcodes = re.findall(r"pci_nvme_io_cmd .*opc 0x([0-9a-f]+)", f.read())
        pairs, wrote = 0, False
        for op in opcodes:
            if op == "1":
                wrote = True
            elif op == "0" and wrote:
                pairs, wrote = pairs + 1, False
        return opcodes.count("0"), opcodes.count("1"), pairs

    def partition(self):
        if self.a.bare:
            with open(self.raw, "rb") as f:
                return f.read()
        p = gpt_check.find(gpt_check.read_gpt(self.raw), "rec")
        return gpt_check.read_range(self.raw, p.offset, p.size)

    def printed(self, text):
        text = text[:text.rfind("\n") + 1]    # whole lines only
        got = [int(n) for n in re.findall(rf"^{self.prefix}KEEL-REC (\d+)$", text, re.M)]
        if got != list(range(len(got))):
            raise harness.Failure(f"records printed out of order: {got[:20]}...")
        return len(got) - 1

    def crash(self, target, delay):
        """Boots the writer; kills QEMU `delay` s after record `target` was printed. Returns L."""
        seen = []
        fail = re.compile(rf"^{self.prefix}KEEL-REC (fail .*|done \d+)$", re.M)

        def until(text):
            if fail.search(text) or harness.EXCEPTION.search(text):
                return True
            if not seen and self.printed(text) >= target:
                seen.append(time.monotonic())
            return True if seen and time.monotonic() >= seen[0] + delay else None
        text = self.boot(f"keel.records=vda:{self.a.records}", until, provision=True)
        m = fail.search(text)
        if m and m.group(1).startswith("fail"):
            raise harness.Failure(f"the writer failed: {m.group(0)}")
        if harness.EXCEPTION.search(text):
            raise harness.Failure("Keel took an exception")
        # The log once more, now that QEMU is gone (a line may have been completed meanwhile).
        with open(self.log, errors="replace") as f:
            return self.printed(f.read().replace("\r", "")), bool(m)

    def verify(self, want):
        rx = re.compile(rf"^{self.prefix}KEEL-REC verify vda (ok|fail) intact=(\d+) want=(\d+)(.*)$", re.M)

        def until(text):
            if self.a.bare:
                return bare_boot.finished(text)
            return True if ENDED.search(text) or harness.EXCEPTION.search(text) else None
        text = self.boot(f"keel.verify_records=vda:{want}", until)
        m = rx.search(text)
        if not m:
            tail = "\n".join(text.splitlines()[-30:])
            raise harness.Failure(f"the verifying boot printed no verdict:\n{tail}")
        return int(m.group(2)), m.group(0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--min", type=int, default=3, help="fewest records before the kill")
    p.add_argument("--max", type=int, default=60, help="most records before the kill")
    p.add_argument("--delay", type=float, default=1.0, help="a random delay up to this many seconds after the target")
    p.add_argument("--records", type=int, default=500, help="how many records the guest would write if never killed")
    p.add_argument("--build", default=os.environ.get("KEEL_BUILD", os.path.join(ROOT, "build")))
    p.add_argument("--kernel", default=None)
    p.add_argument("--linux", default=None)
    p.add_argument("--timeout", type=int, default=400, help="seconds per boot")
    p.add_argument("--bare", action="store_true", help="no Keel: QEMU's own virtio-blk (the method's baseline)")
    a = p.parse_args()
    a.kernel = os.path.abspath(a.kernel or os.path.join(a.build, "keel.elf"))
    a.linux = os.path.abspath(a.linux or os.path.join(a.build, "linux"))
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 32)
    rng = random.Random(a.seed)
    print(f"crash durability: {a.runs} runs, seed {a.seed}, kill after record {a.min}..{a.max} + 0..{a.delay} s, "
          f"{'bare QEMU virtio-blk' if a.bare else 'Keel on QEMU NVMe'}", flush=True)
    total_acked = total_lost = 0
    bad = []
    for i in range(a.runs):
        target, delay = rng.randint(a.min, a.max), round(rng.uniform(0, a.delay), 3)
        with tempfile.TemporaryDirectory(prefix="keel-crash-") as tmp:
            r = Run(a, tmp)
            last, finished = r.crash(target, delay)
            flushes, writes, pairs = (None, None, None) if a.bare else r.nvme_commands()
            pristine = os.path.join(tmp, "nvme.pristine")
            acked = last + 1
            host = gpt_check.count_records(r.partition())
            guest, verdict = r.verify(acked)
            if not a.bare:
                try:
                    gpt_check.check_outside(r.raw, pristine)
                except gpt_check.GptError as e:
                    raise harness.Failure(f"run {i + 1}: {e}")
            lost = max(acked - host, acked - guest, 0)
            nvme = ""
            if flushes is not None:
                # Each acknowledged record was written, then flushed: at least that many NVMe
                # Writes and Flushes reached the controller before the kill.
                nvme = f", NVMe commands before the kill: {writes} writes, {flushes} flushes, {pairs} flushes after a write"
                if pairs < acked:
                    nvme += f" (FEWER than the {acked} records acknowledged)"
                    bad.append(i + 1)
            total_acked += acked
            total_lost += lost
            print(f"run {i + 1}: kill {delay} s after record {target}{' (writer had finished)' if finished else ''}: "
                  f"last printed {last}, intact on the disk {host} (host), {guest} (guest), lost {lost}{nvme}: {verdict}",
                  flush=True)
            if (lost or guest < host or host < acked) and i + 1 not in bad:
                bad.append(i + 1)
    print(f"crash durability: {a.runs} runs, seed {a.seed}: {total_acked} records acknowledged, {total_lost} lost"
          + (f" (runs {bad})" if bad else ""))
    if bad:
        raise harness.Failure(f"acknowledged records lost in runs {bad} (seed {a.seed})")


if __name__ == "__main__":
    harness.main_wrapper(main)
