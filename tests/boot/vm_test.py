#!/usr/bin/env python3
"""Run guests under Keel: make an appliance image from a configuration (with
@GUESTS@ standing for the folder of the built test guests), boot it under QEMU
TCG (SVM) or Bochs (VMX), wait until Keel reports that every guest has ended
(and powered the machine off), then assert on the console.

  vm_test.py --config tests/vm/basic.toml --guests DIR --emulator qemu|bochs
             --expect-exit NAME=CODE (CODE: a number, or spin:N for the spin guest's result)
             --expect-line REGEX  --forbid-line REGEX  --expect-stats NAME
             --set KEY=VALUE (@KEY@ in the configuration stands for VALUE)
             --count-chars NAME=a:20000,b:20000 (exact counts of those characters in NAME's
               console lines, but for the guest's own report lines "word: ...")
             --expect-share NAME=FRACTION (run_us / (run_us + ready_us) of NAME's vCPU 0, from
               its last statistics line, is at least FRACTION)
             --expect-interleaved NAME1,NAME2,REGEX (the console lines of the two guests that match
               REGEX change hands at least 4 times: both really ran in turns)
             --reap (kill what still runs in the run's temporary folder afterwards: Bochs, when
               the run was stopped by --until or the timeout)
             --no-check (scripts/mkimage packs the configuration even though Keel refuses it)
             --expect-status N (QEMU: give it an isa-debug-exit device at 0xf4, tell Keel
               debug_exit=0xf4, run until QEMU leaves by itself and expect exit status N)
             --qemu-arg ARG (QEMU: one more argument, repeated for each, e.g. a device: the
               harness's own devices come first, so an intel-iommu given here is still found)
             --nvme [--nvme-size SIZE] (QEMU: scripts/mkimage --disk-out provisions a raw disk
               (--disk-size SIZE) with a GPT partition per `device = "gpt-name:NAME"` disk that
               has a `file`; QEMU gets it as an NVMe controller (serial keel-nvme0) on q35's PCIe,
               whose ECAM Keel finds by MCFG. After QEMU has gone: nothing outside the partitions
               changed (gpt_check.check_outside), and each
             --expect-partition NAME=SPEC holds (partition NAME, found by name in the GPT, is
               byte for byte what mkimage wrote with SPEC's items laid over it: tests/boot/gpt_check.py;
               @LINUX@ and @GUESTS@ in SPEC are replaced as in the configuration)
"""
import argparse
import os
import re
import shutil
import signal
import sys
import tempfile

import gpt_check
import harness

sys.path.insert(0, os.path.join(harness.ROOT, "tests", "guests"))


def expected_code(spec):
    if spec.startswith("spin:"):
        import spin_expected
        return spin_expected.expected_exit_code(int(spec[5:]))
    return int(spec, 0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--guests", required=True)
    p.add_argument("--linux", default="", help="folder with vmlinuz and initrd*.gz (stands for @LINUX@)")
    p.add_argument("--kernel", required=True)
    p.add_argument("--emulator", choices=["qemu", "bochs"], default="qemu")
    p.add_argument("--smp", type=int, default=2)
    p.add_argument("--mem", default="512M")
    p.add_argument("--timeout", type=int, default=300)
    p.add_argument("--expect-exit", action="append", default=[])
    p.add_argument("--expect-line", action="append", default=[])
    p.add_argument("--forbid-line", action="append", default=[])
    p.add_argument("--expect-stats", action="append", default=[])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="replace @KEY@ in the configuration by VALUE")
    p.add_argument("--expect-count", action="append", default=[], metavar="N:REGEX",
                   help="exactly N console lines match REGEX")
    p.add_argument("--count-chars", action="append", default=[], metavar="NAME=C:N,C:N")
    p.add_argument("--expect-share", action="append", default=[], metavar="NAME=FRACTION")
    p.add_argument("--expect-interleaved", action="append", default=[], metavar="NAME1,NAME2,REGEX")
    p.add_argument("--until", default=r"^keel: all guests have ended", help="regex that ends the run")
    p.add_argument("--keel-cmdline", default="", help="Keel's own command line in the image")
    p.add_argument("--icount", action="store_true",
                   help="QEMU: -icount shift=0, time follows emulated instructions (deterministic timers, "
                        "whatever else loads the host; use with --smp 1)")
    p.add_argument("--tcg-single", action="store_true",
                   help="QEMU: one host thread for all emulated CPUs (-accel tcg,thread=single), for the tests "
                        "QEMU 7.2's multi-threaded TCG fails under extreme host load (see tests/vm/CMakeLists.txt)")
    p.add_argument("--reap", action="store_true",
                   help="after the run, kill what still runs in its temporary folder: Bochs under script(1) "
                        "is a session of its own, which harness.run's kill leaves running when it stops a "
                        "run itself (--until, timeout)")
    p.add_argument("--no-check", action="store_true",
                   help="scripts/mkimage --no-check: pack a configuration Keel refuses (tests of its refusals)")
    p.add_argument("--expect-status", type=int, default=None, metavar="N",
                   help="QEMU only: an isa-debug-exit device at port 0xf4 (Keel: debug_exit=0xf4); the run "
                        "lasts until QEMU leaves by itself, whose exit status must be N (a code C written "
                        "to the device gives 2*C+1; ACPI power-off gives 0)")
    p.add_argument("--qemu-arg", action="append", default=[], metavar="ARG",
                   help="QEMU only: one more argument for QEMU (e.g. --qemu-arg=-device --qemu-arg=edu)")
    p.add_argument("--nvme", action="store_true",
                   help="QEMU: a raw disk provisioned by mkimage --disk-out, as an NVMe controller")
    p.add_argument("--nvme-size", default=None, metavar="SIZE", help="mkimage --disk-size SIZE (implies --nvme)")
    p.add_argument("--nvme-guest-owned", action="store_true",
                   help="the NVMe controller is passed through to a guest: its disk is the guest's, not checked "
                        "after the run (implies --nvme)")
    p.add_argument("--nvme-sriov", type=int, default=0, metavar="VFS",
                   help="the NVMe controller is an SR-IOV PF (QEMU: an nvme-subsys, VFS virtual functions with "
                        "2 queues and 1 interrupt each); its namespace 1 is the provisioned disk (the PF's "
                        "alone), namespace k+1 a 16 MiB disk for VF k, detached, starting with KEEL-VFk "
                        "(implies --nvme)")
    p.add_argument("--nvme-addr", default=None, metavar="SLOT",
                   help="the NVMe controller at this device number of q35's root bus, e.g. 0x4 (implies --nvme)")
    p.add_argument("--expect-partition", action="append", default=[], metavar="NAME=SPEC",
                   help="after the run, GPT partition NAME of the NVMe disk is exactly SPEC (tests/boot/gpt_check.py)")
    a = p.parse_args()
    if a.expect_status is not None and a.emulator != "qemu":
        p.error("--expect-status needs --emulator qemu")
    if a.nvme_size or a.expect_partition or a.nvme_addr or a.nvme_guest_owned or a.nvme_sriov:
        a.nvme = True
    if a.nvme and a.emulator != "qemu":
        p.error("--nvme needs --emulator qemu")

    def subst(text):
        text = text.replace("@GUESTS@", os.path.abspath(a.guests))
        return text.replace("@LINUX@", os.path.abspath(a.linux)) if a.linux else text

    with tempfile.TemporaryDirectory(prefix="keel-vm-") as tmp:
        with open(a.config) as f:
            text = subst(f.read())
            for kv in a.set:
                key, value = kv.split("=", 1)
                text = text.replace(f"@{key}@", value)
        config = os.path.join(tmp, "keel.toml")
        with open(config, "w") as f:
            f.write(text)
        image = os.path.join(tmp, "appliance.iso")
        cmdline = a.keel_cmdline
        if a.expect_status is not None:
            cmdline = (cmdline + " debug_exit=0xf4").strip()
        nvme_raw = os.path.join(tmp, "nvme.raw")
        nvme_args = []
        if a.nvme:
            nvme_args = ["--disk-out", nvme_raw] + (["--disk-size", a.nvme_size] if a.nvme_size else [])
        harness.run_mkimage([config, "--kernel", a.kernel, "--cmdline", cmdline, "-o", image]
                            + (["--no-check"] if a.no_check else []) + nvme_args)
        if a.nvme:
            # What mkimage wrote, to compare with after the run.
            pristine = os.path.join(tmp, "nvme.pristine")
            shutil.copyfile(nvme_raw, pristine)
            try:
                print("\n".join(map(repr, gpt_check.read_gpt(pristine))))
            except gpt_check.GptError as e:
                raise harness.Failure(f"mkimage --disk-out wrote no sound GPT: {e}")
        log = os.path.join(tmp, "serial.log")
        if a.emulator == "qemu":
            extra = ["-icount", "shift=0"] if a.icount else []
            if a.expect_status is not None:
                extra += ["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
            if a.nvme:
                extra += nvme_qemu_args(nvme_raw, a.nvme_addr, a.nvme_sriov, tmp)
            cmd = harness.qemu_command(image, tmp, log, a.smp, a.mem, extra=extra + a.qemu_arg,
                                       accel="tcg,thread=single" if a.tcg_single else "tcg")
        else:
            cmd = harness.bochs_command(image, tmp, log, a.smp, harness.parse_size(a.mem))

        until = re.compile(a.until, re.M)

        def done(text):
            # Only whole lines: a line still being written must not end the run, or the checks
            # would read its first half (a stats line cut after "vcpu=0 " failed a share check).
            text = text[:text.rfind("\n") + 1]
            if harness.EXCEPTION.search(text):
                return True
            if a.expect_status is None and until.search(text):
                return True
            return None   # with --expect-status: until QEMU leaves by itself
        status = {} if a.expect_status is not None else None
        try:
            _, text = harness.run(cmd, log, done, a.timeout, cwd=tmp, pty=a.emulator == "bochs", status=status)
        finally:
            if a.reap or a.emulator == "bochs":   # script(1) gives Bochs its own session: kill it by PID
                reap(tmp)
        print(text)
        # The emulator has gone (harness.run killed it or it left): what the disk holds now is
        # what Keel had written to the NVMe controller (QEMU's writes reach the file before it
        # completes a command; the host's page cache outlives QEMU).
        if a.nvme and not a.nvme_guest_owned:
            check_nvme(nvme_raw, pristine, a.expect_partition, subst)

    if harness.EXCEPTION.search(text):
        raise harness.Failure("Keel took an exception")
    if a.expect_status is not None:
        rc = status.get("rc")
        print(f"QEMU exit status: {rc} (want {a.expect_status})")
        if rc != a.expect_status:
            raise harness.Failure(f"QEMU exited with status {rc}, expected {a.expect_status}")
    for spec in a.expect_exit:
        name, code = spec.split("=", 1)
        want = expected_code(code)
        m = re.search(rf"^keel: guest {re.escape(name)} exited code=(\d+)$", text, re.M)
        if not m:
            raise harness.Failure(f"guest {name} did not exit")
        if int(m.group(1)) != want:
            raise harness.Failure(f"guest {name} exited with {m.group(1)}, expected {want}")
    for pattern in a.expect_line:
        if not re.search(pattern, text, re.M):
            raise harness.Failure(f"no console line matches {pattern!r}")
    for spec in a.expect_count:
        want, _, pattern = spec.partition(":")
        got = len(re.findall(pattern, text, re.M))
        if got != int(want):
            raise harness.Failure(f"{got} console lines match {pattern!r}, expected {want}")
    for pattern in a.forbid_line:
        m = re.search(pattern, text, re.M)
        if m:
            raise harness.Failure(f"forbidden line: {m.group(0)!r}")
    for name in a.expect_stats:
        m = re.search(rf"^keel: stats {re.escape(name)} vcpu=0 cpu=\d+ run_us=(\d+) ready_us=(\d+) run_pct=[\d.]+ ready_pct=[\d.]+ exits=(\d+)(.*)$",
                      text, re.M)
        if not m or int(m.group(1)) == 0 or int(m.group(3)) == 0:
            raise harness.Failure(f"no per-vCPU statistics for {name}")
    for spec in a.count_chars:
        check_char_counts(text, spec)
    for spec in a.expect_share:
        check_share(text, spec)
    for spec in a.expect_interleaved:
        check_interleaved(text, spec)


def nvme_qemu_args(raw, addr=None, vfs=0, tmp=None):
    """QEMU's NVMe controller on the raw disk (q35: PCIe with an MCFG-described ECAM); with vfs,
    an SR-IOV PF in an NVM subsystem (QEMU 7.2 wants one) whose namespace 1 is the PF's alone
    (shared=off) and namespace k+1 is VF k's, detached until Keel attaches it."""
    at = f",addr={addr}" if addr else ""
    if not vfs:
        return ["-drive", f"file={raw},if=none,format=raw,id=nvm0", "-device", f"nvme,serial=keel-nvme0,drive=nvm0{at}"]
    args = ["-drive", f"file={raw},if=none,format=raw,id=nvm0", "-device", "nvme-subsys,id=nvmesubsys0,nqn=keel",
            "-device", f"nvme,id=nvme0,serial=keel-nvme0,subsys=nvmesubsys0{at},sriov_max_vfs={vfs},"
                       f"sriov_vq_flexible={2 * vfs},sriov_vi_flexible={vfs}",
            "-device", "nvme-ns,drive=nvm0,bus=nvme0,nsid=1,shared=off"]
    for k in range(1, vfs + 1):
        path = os.path.join(tmp, f"vf{k}.raw")
        with open(path, "wb") as f:
            f.write(f"KEEL-VF{k}".encode().ljust(512, b"\0"))
            f.truncate(16 << 20)
        args += ["-drive", f"file={path},if=none,format=raw,id=nvm{k}",
                 "-device", f"nvme-ns,drive=nvm{k},bus=nvme0,nsid={k + 1},detached=on"]
    return args


def check_nvme(raw, pristine, specs, subst):
    try:
        print(gpt_check.check_outside(raw, pristine))
        for spec in specs:
            name, what = spec.split("=", 1)
            print(gpt_check.check_partition(raw, pristine, name, what, subst))
    except gpt_check.GptError as e:
        raise harness.Failure(f"NVMe disk: {e}")


def reap(tmp):
    """Kill (by PID) the processes whose working folder is this run's temporary folder: only
    the emulator this run started can be there."""
    real = os.path.realpath(tmp)
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd in (real, real + " (deleted)"):
            try:
                os.kill(int(pid), signal.SIGKILL)
                print(f"reaped process {pid} left in {tmp}")
            except OSError:
                pass


def check_char_counts(text, spec):
    """NAME=a:20000,b:20000: exactly that many of each character in the guest's console
    lines ("[NAME] ..."), not counting its own report lines ("word: ...")."""
    name, counts = spec.split("=", 1)
    want = {}
    for item in counts.split(","):
        ch, n = item.split(":", 1)
        if len(ch) != 1:
            raise harness.Failure(f"--count-chars: {ch!r} is not one character")
        want[ch] = int(n, 0)
    got = dict.fromkeys(want, 0)
    lines = 0
    for line in re.findall(rf"^\[{re.escape(name)}\] (.*)$", text, re.M):
        if re.match(r"^[\w-]+: ", line):
            continue
        lines += 1
        for ch in want:
            got[ch] += line.count(ch)
    print(f"count-chars {name}: {lines} lines, " + ", ".join(f"{c!r}: {got[c]} (want {want[c]})" for c in want))
    bad = [f"{c!r}: {got[c]} instead of {want[c]}" for c in want if got[c] != want[c]]
    if bad:
        raise harness.Failure(f"guest {name}'s console output lost or gained characters: " + ", ".join(bad))


def check_share(text, spec):
    """NAME=FRACTION: the guest's vCPU 0 ran at least FRACTION of the time it was runnable
    (run_us / (run_us + ready_us), from its last statistics line)."""
    name, fraction = spec.split("=", 1)
    m = re.findall(rf"^keel: stats {re.escape(name)} vcpu=0 cpu=\d+ run_us=(\d+) ready_us=(\d+) ", text, re.M)
    if not m:
        raise harness.Failure(f"no per-vCPU statistics for {name}")
    run, ready = (int(x) for x in m[-1])
    share = run / (run + ready) if run + ready else 0.0
    print(f"share {name}: run_us={run} ready_us={ready} share={share:.3f} (want >= {float(fraction)})")
    if share < float(fraction):
        raise harness.Failure(f"guest {name} got {share:.3f} of its CPU (run_us={run} ready_us={ready}), "
                              f"expected at least {float(fraction)}")


def check_interleaved(text, spec, at_least=4):
    """NAME1,NAME2,REGEX: among the two guests' console lines matching REGEX, the guest
    that printed changes at least `at_least` times (they were switched while working)."""
    n1, n2, pattern = spec.split(",", 2)
    rx = re.compile(pattern)
    owners = []
    for m in re.finditer(r"^\[([\w-]+)\] (.*)$", text, re.M):
        if m.group(1) in (n1, n2) and rx.search(m.group(2)):
            owners.append(m.group(1))
    switches = sum(1 for x, y in zip(owners, owners[1:]) if x != y)
    print(f"interleaved {n1},{n2}: {len(owners)} lines matching {pattern!r}, {switches} changes of hands")
    if switches < at_least:
        raise harness.Failure(f"guests {n1} and {n2} did not run in turns: their lines matching {pattern!r} "
                              f"change hands {switches} times (expected at least {at_least})")


if __name__ == "__main__":
    harness.main_wrapper(main)
