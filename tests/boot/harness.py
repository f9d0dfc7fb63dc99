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


class Failure(Exception):
    pass


def parse_size(s):
    """'512M' / '6G' / '1024' (MiB) -> MiB."""
    m = re.fullmatch(r"(\d+)([MG]?)", s)
    if not m:
        raise ValueError(f"bad size {s}")
    n = int(m.group(1))
    return n * 1024 if m.group(2) == "G" else n


def make_image(kernel, cmdline, out, modules=()):
    cmd = [os.path.join(ROOT, "scripts", "mkimage"), "--kernel", kernel, "--cmdline", cmdline, "-o", out]
    for m in modules:
        cmd += ["--module", m]
    subprocess.run(cmd, check=True)
    return out


def run(cmd, log_path, until, timeout, cwd=None, pty=False):
    """Start cmd, poll log_path until until(text) returns non-None or timeout.
    Returns (result, text). The emulator is always killed (by its PID) before returning."""
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
                result = until(text)
                if result is not None:
                    break
            if proc.poll() is not None:
                time.sleep(0.2)
                if os.path.exists(log_path):
                    with open(log_path, "r", errors="replace") as f:
                        text = f.read().replace("\r", "")
                    result = until(text)
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
