#!/usr/bin/env python3
"""scripts/mkimage checks a configuration with keel-config-check (Keel's own parser) before
packing it: a good one makes an image; a syntax error, a bad value and a missing or badly
sized file each stop it with a non-zero status and a message naming the line, and so do more
files than Keel takes as boot modules; no image is written; --no-check packs a refused one anyway.
A host PCI function passed through twice, or Keel's management_nic given to a guest, is a warning
naming both lines (Keel refuses only that guest at boot), not a refusal: the image is made.
--disk-out writes a disk with a GPT of one partition per gpt-name disk, checked here with a GPT
reader of the test's own; its refusals write neither the disk nor the image.

  mkimage_test.py --checker build/keel-config-check --kernel build/keel.elf
"""
import argparse
import os
import re
import struct
import subprocess
import sys
import tempfile
import uuid
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MKIMAGE = os.path.join(ROOT, "scripts", "mkimage")

GOOD = """\
[keel]
on_idle = "poweroff"

[[guest]]
name = "a"
kernel = "guest.elf"
initrd = "sub/initrd.gz"
modules = ["mod.bin", "guest.elf"]
memory = "8M"

[[guest.disk]]
file = "disk.img"
"""

# [[guest.pci]]: b asks for a's function (in its short form), c for Keel's management NIC.
PCI = """\
[keel]
on_idle = "poweroff"
management_nic = "0000:00:03.0"

[[guest]]
name = "a"
kernel = "guest.elf"
memory = "8M"

[[guest.pci]]
device = "0000:00:04.0"

[[guest]]
name = "b"
kernel = "guest.elf"
memory = "8M"

[[guest.pci]]
device = "00:04.0"

[[guest]]
name = "c"
kernel = "guest.elf"
memory = "8M"

[[guest.pci]]
device = "00:03.0"
"""
PCI_WARNINGS = [
    r'^keel-config-check: \S+ line 18: warning: device 0000:00:04\.0 is already given to guest "a" \(line 10\); '
    r'Keel will refuse guest "b"$',
    r"^keel-config-check: \S+ line 26: warning: device 0000:00:03\.0 is Keel's management_nic \(line 3\); "
    r'Keel will refuse guest "c"$',
]

# (name, configuration, the line that must be on stderr)
REFUSED = [
    ("syntax error", GOOD.replace('name = "a"', "name = a"),
     r'^keel: keel\.toml line 5: name: unexpected value "a" \(strings need double quotes\); no guests started$'),
    ("bad value", GOOD.replace('memory = "8M"', 'memory = "lots"'),
     r'^keel: keel\.toml line 9: memory: expected a size such as "64M"; no guests started$'),
    ("missing kernel", GOOD.replace('kernel = "guest.elf"', 'kernel = "missing.elf"'),
     r'^keel-config-check: \S+ line 6: guest "a": kernel "missing\.elf" \(\S+/missing\.elf\): no such file$'),
    ("missing module", GOOD.replace('"mod.bin"', '"nomod.bin"'),
     r'^keel-config-check: \S+ line 8: guest "a": module "nomod\.bin" \(\S+/nomod\.bin\): no such file$'),
    ("missing disk", GOOD.replace('file = "disk.img"', 'file = "nodisk.img"'),
     r'^keel-config-check: \S+ line 11: guest "a": disk 0 "nodisk\.img" \(\S+\): no such file$'),
    ("badly sized disk", GOOD.replace('file = "disk.img"', 'file = "odd.img"'),
     r'^keel-config-check: \S+ line 11: guest "a": disk 0 "odd\.img" \(\S+\): 1000 bytes, not a non-zero multiple of 512'),
    ("bad pci address", PCI.replace('device = "00:04.0"', 'device = "00:20.0"'),
     r'^keel: keel\.toml line 19: device: "00:20\.0": device number above 1f; no guests started$'),
    ("sriov pf is the management nic",
     PCI.replace('management_nic = "0000:00:03.0"', 'management_nic = "0000:00:03.0"\nsriov = ["00:03.0:2"]'),
     r"^keel: keel\.toml line 4: sriov: physical function 0000:00:03\.0 is Keel's management_nic \(line 3\); "
     r"no guests started$"),
]


# Two disks on GPT partitions that --disk-out provisions (web in guest a, db in guest b), a packed
# disk, and two on devices it does not provision (a partition by number, a partition by GUID).
DEVICES = """\
[keel]
on_idle = "poweroff"

[[guest]]
name = "a"
kernel = "guest.elf"
memory = "8M"

[[guest.disk]]
device = "gpt-name:web"
file = "web.img"

[[guest.disk]]
file = "disk.img"

[[guest.disk]]
device = "nvme0n1p2"

[[guest]]
name = "b"
kernel = "guest.elf"
memory = "8M"

[[guest.disk]]
device = "gpt-name:db"
file = "sub/db.img"

[[guest.disk]]
device = "gpt-guid:0fc63daf-8483-4772-8e79-3d69d8477de4"
readonly = true
"""
DEVICES_LIST = ["gpt-name:web\tweb.img\t9", "nvme0n1p2\t\t16", "gpt-name:db\tsub/db.img\t24",
                "gpt-guid:0fc63daf-8483-4772-8e79-3d69d8477de4\t\t28"]
# The files: web 1.5 MiB (a 2 MiB partition), db 4 KiB (1 MiB), each of its own bytes.
WEB_SIZE, DB_SIZE = 3 * 512 * 1024, 4096

# (name, configuration, extra arguments, the line that must be on stderr)
DISK_REFUSED = [
    ("gpt-name without file", DEVICES.replace('file = "web.img"\n', ""), [],
     r'^mkimage: \S+ line 9: disk "gpt-name:web" has no file to write into its partition \(--disk-out\)$'),
    ("same gpt-name twice",
     DEVICES.replace('device = "gpt-name:db"\nfile = "sub/db.img"',
                     'device = "gpt-name:web"\nfile = "sub/db.img"\nreadonly = true')
            .replace('file = "web.img"', 'file = "web.img"\nreadonly = true'),
     [], r'^mkimage: \S+ line 25: disk "gpt-name:web": a partition of that name is already provisioned '
         r'from line 9 \(--disk-out writes one per name\)$'),
    ("missing file", DEVICES.replace('file = "web.img"', 'file = "noweb.img"'), [],
     r'^keel-config-check: \S+ line 9: guest "a": disk 0 \(gpt-name:web\) "noweb\.img" \(\S+\): no such file$'),
    ("badly sized file", DEVICES.replace('file = "web.img"', 'file = "odd.img"'), [],
     r'^keel-config-check: \S+ line 9: guest "a": disk 0 \(gpt-name:web\) "odd\.img" \(\S+\): 1000 bytes, '
     r'not a non-zero multiple of 512'),
    ("disk too small", DEVICES, ["--disk-size", "3M"],
     r'^gptdisk: disk size "3M" \(3145728 bytes\) is too small: the partitions and the GPT need 4211200 bytes'),
]

LINUX_DATA = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
MIB = 1 << 20


class Failure(Exception):
    pass


def check_header(disk, lba, last):
    """The GPT header at `lba` and its entries: fields and CRCs. Returns (header fields, entries)."""
    h = disk[lba * 512:(lba + 1) * 512]
    (sig, rev, size, crc, _, my, alt, first_usable, last_usable, _, entries_lba, count, entry_size,
     entries_crc) = struct.unpack_from("<8sIIIIQQQQ16sQIII", h)
    where = f"GPT header at LBA {lba}"
    if sig != b"EFI PART" or rev != 0x00010000 or size != 92:
        raise Failure(f"{where}: signature {sig!r}, revision {rev:#x}, size {size}")
    if zlib.crc32(h[:16] + b"\0\0\0\0" + h[20:92]) != crc:
        raise Failure(f"{where}: header CRC32 is wrong")
    if my != lba or alt != (last if lba == 1 else 1):
        raise Failure(f"{where}: MyLBA {my}, AlternateLBA {alt}")
    if entry_size != 128 or count * entry_size % 512:
        raise Failure(f"{where}: {count} entries of {entry_size} bytes")
    entries = disk[entries_lba * 512:entries_lba * 512 + count * entry_size]
    if zlib.crc32(entries) != entries_crc:
        raise Failure(f"{where}: entries CRC32 is wrong")
    # The entries beside their header, outside the usable LBAs: after LBA 1, or before the last.
    entries_end = entries_lba + count * entry_size // 512
    if not 1 < first_usable <= last_usable < last:
        raise Failure(f"{where}: usable LBAs {first_usable}..{last_usable}")
    if (entries_lba != 2 or entries_end > first_usable) if lba == 1 else \
            (entries_lba <= last_usable or entries_end != last):
        raise Failure(f"{where}: entries at LBA {entries_lba}..{entries_end - 1}")
    return (first_usable, last_usable, count, entry_size), entries


def check_disk(path, files, size):
    """The disk at `path` is `size` bytes with a valid GPT (primary and backup, the same) holding
    one partition per (name, file) in `files`, in order: of type Linux data, aligned to 1 MiB, the
    file's size rounded up to 1 MiB, holding the file and zeros after it."""
    with open(path, "rb") as f:
        disk = f.read()
    if len(disk) != size:
        raise Failure(f"{path}: {len(disk)} bytes, expected {size}")
    last = len(disk) // 512 - 1
    if disk[510:512] != b"\x55\xaa" or disk[446 + 4] != 0xEE:
        raise Failure(f"{path}: no protective MBR")
    primary, entries = check_header(disk, 1, last)
    backup, backup_entries = check_header(disk, last, last)
    if primary != backup or entries != backup_entries:
        raise Failure(f"{path}: the backup GPT is not the primary's copy")
    first_usable, last_usable, count, entry_size = primary
    used = [entries[i * entry_size:(i + 1) * entry_size] for i in range(count)]
    used = [e for e in used if e[:16] != bytes(16)]
    if len(used) != len(files):
        raise Failure(f"{path}: {len(used)} partitions, expected {len(files)}")
    end = first_usable - 1
    for e, (name, file) in zip(used, files):
        ptype, _, first, lastlba, _, raw = struct.unpack_from("<16s16sQQQ72s", e)
        got = raw.decode("utf-16-le").rstrip("\0")
        with open(file, "rb") as f:
            data = f.read()
        where = f"{path}: partition {got!r}"
        if got != name or uuid.UUID(bytes_le=ptype) != LINUX_DATA:
            raise Failure(f"{where}: expected {name!r} of type Linux data, got type {uuid.UUID(bytes_le=ptype)}")
        if first % (MIB // 512) or first <= end or lastlba > last_usable:
            raise Failure(f"{where}: LBA {first}..{lastlba} is not aligned, after LBA {end} and usable")
        if (lastlba - first + 1) * 512 != -(-len(data) // MIB) * MIB:
            raise Failure(f"{where}: {lastlba - first + 1} blocks for a file of {len(data)} bytes")
        part = disk[first * 512:(lastlba + 1) * 512]
        if part[:len(data)] != data or part[len(data):].count(0) != len(part) - len(data):
            raise Failure(f"{where}: does not hold {file} and zeros")
        end = lastlba


def run(cmd, env):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    print(f"$ {' '.join(cmd)}\n  -> {r.returncode}")
    for line in (r.stdout + r.stderr).splitlines():
        print(f"  | {line}")
    return r


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--checker", required=True)
    p.add_argument("--kernel", required=True)
    a = p.parse_args()
    env = dict(os.environ, KEEL_CONFIG_CHECK=a.checker)

    with tempfile.TemporaryDirectory(prefix="keel-tools-") as tmp:
        os.mkdir(os.path.join(tmp, "sub"))
        for name, size in [("guest.elf", 100), ("sub/initrd.gz", 10), ("mod.bin", 1), ("disk.img", 4096),
                           ("odd.img", 1000)]:
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(b"\x5a" * size)
        # The disks on partitions, of bytes that can be told apart and found in an image.
        for name, size, tag in [("web.img", WEB_SIZE, b"WEB-DISK"), ("sub/db.img", DB_SIZE, b"DB-DISK!")]:
            with open(os.path.join(tmp, name), "wb") as f:
                f.write((tag + os.urandom(8)) * (size // 16))

        def config(name, text):
            path = os.path.join(tmp, name + ".toml")
            with open(path, "w") as f:
                f.write(text)
            return path

        # A good configuration: the checker lists each file once, in order; mkimage packs them.
        good = config("good", GOOD)
        r = run([a.checker, "--list", good], env)
        if r.returncode != 0 or r.stdout.split() != ["guest.elf", "sub/initrd.gz", "mod.bin", "disk.img"]:
            raise Failure(f"keel-config-check --list on a good configuration: status {r.returncode}, "
                          f"output {r.stdout!r}")
        image = os.path.join(tmp, "good.iso")
        r = run([MKIMAGE, good, "--kernel", a.kernel, "-o", image], env)
        if r.returncode != 0 or not os.path.getsize(image):
            raise Failure("mkimage refused a good configuration")

        for i, (what, text, message) in enumerate(REFUSED):
            conf = config(f"bad{i}", text)
            r = run([a.checker, conf], env)
            if r.returncode != 1:
                raise Failure(f"{what}: keel-config-check exited {r.returncode}, expected 1")
            image = os.path.join(tmp, f"bad{i}.iso")
            r = run([MKIMAGE, conf, "--kernel", a.kernel, "-o", image], env)
            if r.returncode == 0:
                raise Failure(f"{what}: mkimage exited 0")
            if not re.search(message, r.stderr, re.M):
                raise Failure(f"{what}: no line matching {message!r} in mkimage's messages")
            if os.path.exists(image):
                raise Failure(f"{what}: mkimage wrote {image} all the same")

        # PCI passthrough conflicts: warnings with both lines, status 0, the image made.
        pcicfg = config("pci", PCI)
        r = run([a.checker, "--list", pcicfg], env)
        if r.returncode != 0 or r.stdout.split() != ["guest.elf"]:
            raise Failure(f"keel-config-check --list with pci conflicts: status {r.returncode}, output {r.stdout!r}")
        for message in PCI_WARNINGS:
            if not re.search(message, r.stderr, re.M):
                raise Failure(f"keel-config-check with pci conflicts: no line matching {message!r}")
        if len(r.stderr.splitlines()) != len(PCI_WARNINGS):
            raise Failure(f"keel-config-check with pci conflicts: other messages: {r.stderr!r}")
        image = os.path.join(tmp, "pci.iso")
        r = run([MKIMAGE, pcicfg, "--kernel", a.kernel, "-o", image], env)
        if r.returncode != 0 or not os.path.getsize(image):
            raise Failure(f"mkimage refused a configuration with pci conflicts (status {r.returncode})")
        for message in PCI_WARNINGS:
            if not re.search(message, r.stderr, re.M):
                raise Failure(f"mkimage with pci conflicts: no line matching {message!r}")
        # --list-devices (which mkimage --disk-out runs after --list) does not repeat them.
        r = run([a.checker, "--list-devices", pcicfg], env)
        if r.returncode != 0 or r.stdout or r.stderr:
            raise Failure(f"keel-config-check --list-devices with pci conflicts: status {r.returncode}, "
                          f"output {r.stdout!r}, messages {r.stderr!r}")
        # Without conflicts, no warning.
        r = run([a.checker, config("pcigood", PCI.replace('"00:04.0"', '"00:04.1"').replace('"00:03.0"', '"00:05.0"'))],
                env)
        if r.returncode != 0 or r.stderr:
            raise Failure(f"keel-config-check without pci conflicts: status {r.returncode}, messages {r.stderr!r}")

        # More files than GRUB can hand Keel as boot modules (64, the configuration one of them):
        # 8 guests of a kernel and 8 modules each, all different, are 72 files.
        many = "[keel]\non_idle = \"poweroff\"\n"
        for gi in range(8):
            names = [f"many/g{gi}-{k}.bin" for k in range(9)]
            many += (f'\n[[guest]]\nname = "g{gi}"\nkernel = "{names[0]}"\nmemory = "4M"\n'
                     f'modules = [{", ".join(chr(34) + n + chr(34) for n in names[1:])}]\n')
            for n in names:
                os.makedirs(os.path.join(tmp, "many"), exist_ok=True)
                with open(os.path.join(tmp, n), "wb") as f:
                    f.write(b"\x5a")
        conf = config("many", many)
        message = r"^keel-config-check: \S+: 72 files and the configuration make 73 boot modules; Keel takes at most 64$"
        r = run([a.checker, conf], env)
        if r.returncode != 1 or not re.search(message, r.stderr, re.M):
            raise Failure(f"73 boot modules: keel-config-check exited {r.returncode}, expected 1 and {message!r}")
        image = os.path.join(tmp, "many.iso")
        r = run([MKIMAGE, conf, "--kernel", a.kernel, "-o", image], env)
        if r.returncode == 0 or os.path.exists(image):
            raise Failure("73 boot modules: mkimage did not refuse them")

        # --no-check packs what Keel refuses (the tests of its refusals need that).
        image = os.path.join(tmp, "nocheck.iso")
        r = run([MKIMAGE, config("nocheck", REFUSED[1][1]), "--no-check", "--kernel", a.kernel, "-o", image], env)
        if r.returncode != 0 or not os.path.getsize(image):
            raise Failure("mkimage --no-check did not pack a refused configuration")

        # --disk-out: keel-config-check lists the disks on devices; mkimage packs the others and
        # writes the gpt-name ones into a disk, with a note for each of the rest.
        devices = config("devices", DEVICES)
        r = run([a.checker, "--list-devices", devices], env)
        if r.returncode != 0 or r.stdout.splitlines() != DEVICES_LIST:
            raise Failure(f"keel-config-check --list-devices: status {r.returncode}, output {r.stdout!r}")
        r = run([a.checker, "--list", devices], env)
        if r.returncode != 0 or r.stdout.split() != ["guest.elf", "disk.img"]:
            raise Failure(f"keel-config-check --list with disks on devices: output {r.stdout!r}")
        web, db = os.path.join(tmp, "web.img"), os.path.join(tmp, "sub", "db.img")
        for size_args, size in (([], 5 * MIB), (["--disk-size", "256M"], 256 * MIB)):
            image, disk = os.path.join(tmp, "devices.iso"), os.path.join(tmp, "devices.disk")
            r = run([MKIMAGE, devices, "--kernel", a.kernel, "-o", image, "--disk-out", disk] + size_args, env)
            if r.returncode != 0:
                raise Failure(f"mkimage --disk-out {' '.join(size_args)}: status {r.returncode}")
            for note in ("nvme0n1p2", "gpt-guid:0fc63daf-8483-4772-8e79-3d69d8477de4"):
                if not re.search(rf'^mkimage: note: \S+ line \d+: disk "{note}" is not provisioned by --disk-out',
                                 r.stderr, re.M):
                    raise Failure(f"mkimage --disk-out: no note about {note}")
            check_disk(disk, [("web", web), ("db", db)], size)
            with open(image, "rb") as f:
                iso = f.read()
            if b"WEB-DISK" in iso or b"DB-DISK!" in iso:
                raise Failure("mkimage --disk-out packed a disk on a device into the image")
            # The image's modules: the configuration, the kernel and the packed disk only.
            r = run(["osirrox", "-indev", image, "-extract", "/boot/grub/grub.cfg", os.path.join(tmp, "grub.cfg")],
                    env)
            with open(os.path.join(tmp, "grub.cfg")) as f:
                mods = re.findall(r"^\s*module2 \S+ (.*)$", f.read(), re.M)
            os.unlink(os.path.join(tmp, "grub.cfg"))
            if mods != ["keel.toml", "guest.elf", "disk.img"]:
                raise Failure(f"mkimage --disk-out: the image's modules are {mods}")
            os.unlink(disk)
        # Without --disk-out nothing of that is asked: the same configuration with its files gone packs.
        image = os.path.join(tmp, "nofiles.iso")
        r = run([MKIMAGE, config("nofiles", DISK_REFUSED[0][1].replace("sub/db.img", "nodb.img")),
                 "--kernel", a.kernel, "-o", image], env)
        if r.returncode != 0 or "--disk-out" in r.stderr:
            raise Failure("mkimage without --disk-out looked at the disks on devices")
        for i, (what, text, args, message) in enumerate(DISK_REFUSED):
            conf = config(f"baddisk{i}", text)
            image, disk = os.path.join(tmp, f"baddisk{i}.iso"), os.path.join(tmp, f"baddisk{i}.disk")
            r = run([MKIMAGE, conf, "--kernel", a.kernel, "-o", image, "--disk-out", disk] + args, env)
            if r.returncode != 1:
                raise Failure(f"--disk-out, {what}: mkimage exited {r.returncode}, expected 1")
            if not re.search(message, r.stderr, re.M):
                raise Failure(f"--disk-out, {what}: no line matching {message!r} in mkimage's messages")
            if os.path.exists(image) or os.path.exists(disk) or any(".partial." in n for n in os.listdir(tmp)):
                raise Failure(f"--disk-out, {what}: mkimage wrote a disk or an image all the same")

        # Bad arguments: status 2, before anything is done.
        for args in (["--frobnicate"], [good, "-o"], [good, "--kernel"], [good, "-o", "x.iso", "--disk-size", "1G"],
                     [good, "-o", "x.iso", "--disk-out"], ["--kernel", a.kernel, "-o", "x.iso", "--disk-out", "d"],
                     [good, "-o", "x.iso", "--disk-out", "/dev/null"]):
            r = run([MKIMAGE] + args, env)
            if r.returncode != 2:
                raise Failure(f"mkimage {' '.join(args)}: status {r.returncode}, expected 2")
    print("tools.mkimage: PASS")


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        sys.exit(1)
