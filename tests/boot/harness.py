"""Shared pieces of Keel's boot tests: run an emulator with a hard timeout,
watch the serial log it writes, kill it by its own PID, assert on the log."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

READY = re.compile(r"^keel: ready cpus=(\d+) ram=(\d+)\b.*$", re.M)
EXCEPTION = re.compile(r"^keel: EXCEPTION .*$", re.M)


OVMF_CODE = "/usr/share/OVMF/OVMF_CODE.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS.fd"

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


class Failure(Exception):
    pass


def qemu_command(image, tmp, log, smp=1, mem="512M", firmware="bios", media="cd", extra=(), accel="tcg"):
    """QEMU TCG (AMD model with SVM) booting a GRUB image; serial console to log."""
    cmd = ["qemu-system-x86_64", "-accel", accel, "-cpu", "max", "-machine", "q35",
           "-smp", str(smp), "-m", mem, "-display", "none", "-monitor", "none",
           "-serial", f"file:{log}", "-no-reboot", "-nodefaults"]
    if firmware == "uefi":
        vars_copy = os.path.join(tmp, "vars.fd")
        with open(OVMF_VARS, "rb") as src, open(vars_copy, "wb") as dst:
            dst.write(src.read())
        cmd += ["-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,file={vars_copy}"]
    if media == "cd":
        cmd += ["-drive", f"file={image},media=cdrom,if=none,id=cd,readonly=on",
                "-device", "ide-cd,drive=cd,bootindex=0"]
    else:
        cmd += ["-drive", f"if=none,id=stick,format=raw,file={image},snapshot=on",
                "-device", "qemu-xhci,id=xhci", "-device", "usb-storage,bus=xhci.0,drive=stick,bootindex=0"]
    return cmd + list(extra)


def bochs_command(image, tmp, log, cpus=1, mem_mib=256, model="corei7_skylake_x"):
    """Bochs (Intel model with VMX, EPT, VPID) booting a GRUB image from CD; serial console to log."""
    rc = os.path.join(tmp, "bochsrc")
    with open(rc, "w") as f:
        f.write(BOCHSRC.format(mem=mem_mib, model=model, cpus=cpus, iso=os.path.abspath(image), log=log, tmp=tmp))
    dbg = os.path.join(tmp, "debugger")
    with open(dbg, "w") as f:
        f.write("c\n")
    return ["bochs", "-q", "-f", rc, "-rc", dbg]


def parse_size(s):
    """'512M' / '6G' / '1024' (MiB) -> MiB."""
    m = re.fullmatch(r"(\d+)([MG]?)", s)
    if not m:
        raise ValueError(f"bad size {s}")
    n = int(m.group(1))
    return n * 1024 if m.group(2) == "G" else n


def run_mkimage(args):
    r = subprocess.run([os.path.join(ROOT, "scripts", "mkimage")] + list(args), capture_output=True, text=True)
    if r.returncode:
        raise Failure(f"mkimage failed: {r.stderr}")


def make_image(kernel, cmdline, out, modules=()):
    args = ["--kernel", kernel, "--cmdline", cmdline, "-o", out]
    for m in modules:
        args += ["--module", m]
    run_mkimage(args)
    return out


def run(cmd, log_path, until, timeout, cwd=None, pty=False, status=None):
    """Start cmd, poll log_path until until(text) returns non-None or timeout.
    Returns (result, text). The emulator is always killed (by its PID) before returning.
    With a dict as status, the emulator leaving on its own also ends the run (result True
    if until has nothing to say then), and status["rc"] is its exit status (None if killed)."""
    if pty:
        # Debian's Bochs stops in its debugger: give it a pseudo-terminal via script(1).
        cmd = ["script", "-qfec", " ".join(cmd), "/dev/null"]
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + timeout
    text, result = "", None
    try:
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if os.path.exists(log_path):
                with open(log_path, "r", errors="replace") as f:
                    text = f.read().replace("\r", "")
                # Complete lines only while the emulator writes: a line caught half written
                # ("ram=24" of "ram=247 ...") must not match a pattern ending at `$`.
                text = text[:text.rfind("\n") + 1]
                result = until(text)
                if result is not None:
                    break
            if proc.poll() is not None:
                time.sleep(0.2)
                if os.path.exists(log_path):
                    with open(log_path, "r", errors="replace") as f:
                        text = f.read().replace("\r", "")
                    result = until(text)
                if status is not None:
                    status["rc"] = proc.returncode
                    if result is None:
                        result = True
                break
    finally:
        if proc.poll() is None:
            # Kill the whole session the emulator runs in (script(1) and its child too).
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            err = b""
    if result is None:
        tail = "\n".join(text.splitlines()[-40:])
        raise Failure(f"timed out after {timeout}s (or the emulator exited: rc={proc.returncode}).\n"
                      f"--- serial log tail ---\n{tail}\n--- emulator stderr ---\n{err.decode(errors='replace')[-2000:]}")
    return result, text


def check_ready(text, cpus, mem_mib):
    m = READY.search(text)
    if not m:
        raise Failure("no ready line")
    got_cpus, ram = int(m.group(1)), int(m.group(2))
    print(m.group(0))
    if got_cpus != cpus:
        raise Failure(f"expected cpus={cpus}, got {got_cpus}")
    # Firmware, the PCI hole and Keel's own image take some; most RAM must be under the allocator.
    low = mem_mib * 0.85 - 64
    if not (low <= ram <= mem_mib):
        raise Failure(f"ram={ram} MiB is not consistent with -m {mem_mib}M (expected {low:.0f}..{mem_mib})")
    wx = re.search(r"^keel: wx-check mappings=(\d+) violations=(\d+)$", text, re.M)
    if not wx:
        raise Failure("no W^X audit line")
    if int(wx.group(2)) != 0 or int(wx.group(1)) == 0:
        raise Failure(f"W^X audit failed: {wx.group(0)}")
    if EXCEPTION.search(text):
        raise Failure("an exception was reported")
    errors = re.findall(r"^keel: .*(?:\berror\b|failed|violation:).*$", text, re.M | re.I)
    if errors:
        raise Failure(f"Keel reported errors: {errors[:3]}")


def main_wrapper(fn):
    try:
        fn()
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
    print("PASS")
