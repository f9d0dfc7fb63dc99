#!/usr/bin/env python3
"""Write a raw disk file with a GUID Partition Table holding one partition per image:
scripts/mkimage --disk-out runs it (Python's standard library only).

  gptdisk.py OUT SIZE NAME FILE [NAME FILE]...

OUT is written whole (created, or replaced: size and contents). SIZE is the disk's size
("256M", "1G", "1048576"; units K, M, G, T of 1024) or "" for what the partitions need.
Each partition, in the order given: named NAME (1..36 ASCII characters), of type Linux
filesystem data, starting on a 1 MiB boundary, FILE's size rounded up to 1 MiB, holding
FILE (the rest zero). Blocks of 512 bytes; a protective MBR, the primary header at LBA 1
and its 128 entries at LBA 2, the backup entries and header at the end of the disk.
Prints the layout, a line a partition. Exit 1 with a message and OUT untouched when FILE is missing or not a multiple of 512
bytes, or SIZE is too small; 2 on bad usage.
"""
import os
import re
import struct
import sys
import uuid
import zlib

BLOCK = 512
MIB = 1 << 20
ENTRIES, ENTRY_SIZE = 128, 128
ENTRY_BLOCKS = ENTRIES * ENTRY_SIZE // BLOCK          # 32
LINUX_DATA = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
NAME_UNITS = 36


class Refused(Exception):
    pass


def parse_size(text):
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", text, re.I)
    if not m:
        raise Refused(f'disk size "{text}": expected a size such as "256M"')
    n = int(m.group(1)) << (10 * " KMGT".index(m.group(2).upper() or " "))
    if n % BLOCK:
        raise Refused(f'disk size "{text}": {n} bytes, not a multiple of {BLOCK}')
    return n


def header(my, alternate, first_usable, last_usable, disk_guid, entries_lba, entries_crc):
    fields = struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x00010000, 92, 0, 0, my, alternate,
                         first_usable, last_usable, disk_guid.bytes_le, entries_lba, ENTRIES, ENTRY_SIZE,
                         entries_crc)
    crc = zlib.crc32(fields)
    fields = fields[:16] + struct.pack("<I", crc) + fields[20:]
    return fields + bytes(BLOCK - len(fields))


def main(argv):
    if len(argv) < 3 or len(argv) % 2 != 1:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    out, size_text, pairs = argv[1], argv[2], list(zip(argv[3::2], argv[4::2]))
    if len(pairs) > ENTRIES:
        raise Refused(f"{len(pairs)} partitions; a GPT of {ENTRIES} entries holds at most {ENTRIES}")

    # The layout: partitions from 1 MiB on, each rounded up to 1 MiB.
    parts, lba = [], MIB // BLOCK
    for name, path in pairs:
        if not 1 <= len(name) <= NAME_UNITS or not name.isascii() or not name.isprintable():
            raise Refused(f'partition name "{name}": 1..{NAME_UNITS} printable ASCII characters')
        try:
            size = os.stat(path).st_size
        except OSError as e:
            raise Refused(f'"{name}": {path}: {e.strerror}')
        if size == 0 or size % BLOCK:
            raise Refused(f'"{name}": {path}: {size} bytes, not a non-zero multiple of {BLOCK}')
        blocks = -(-size // MIB) * MIB // BLOCK
        parts.append((name, path, lba, lba + blocks - 1))
        lba += blocks
    # The backup entries and header after the last partition: the disk needs that much.
    need = (lba + ENTRY_BLOCKS + 1) * BLOCK
    if size_text:
        total = parse_size(size_text)
        if total < need:
            raise Refused(f'disk size "{size_text}" ({total} bytes) is too small: the partitions and '
                          f"the GPT need {need} bytes ({-(-need // MIB)} MiB)")
    else:
        total = -(-need // MIB) * MIB
    last = total // BLOCK - 1

    entries = bytearray(ENTRIES * ENTRY_SIZE)
    for i, (name, _, first, end) in enumerate(parts):
        entries[i * ENTRY_SIZE:(i + 1) * ENTRY_SIZE] = struct.pack(
            "<16s16sQQQ72s", LINUX_DATA.bytes_le, uuid.uuid4().bytes_le, first, end, 0,
            name.encode("utf-16-le"))
    entries_crc = zlib.crc32(entries)
    disk_guid = uuid.uuid4()
    first_usable, last_usable = 2 + ENTRY_BLOCKS, last - ENTRY_BLOCKS - 1

    mbr = bytearray(BLOCK)
    # One record of type 0xEE from LBA 1 over the whole disk (or as much as 32 bits say).
    mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1,
                               min(last, 0xFFFFFFFF))
    mbr[510:512] = b"\x55\xaa"

    with open(out, "wb") as f:
        f.truncate(total)      # sparse where nothing is written: zeros
        f.write(mbr)
        f.write(header(1, last, first_usable, last_usable, disk_guid, 2, entries_crc))
        f.write(entries)
        for _, path, first, _ in parts:
            f.seek(first * BLOCK)
            with open(path, "rb") as src:
                while chunk := src.read(MIB):
                    f.write(chunk)
        f.seek((last - ENTRY_BLOCKS) * BLOCK)
        f.write(entries)
        f.write(header(last, 1, first_usable, last_usable, disk_guid, last - ENTRY_BLOCKS, entries_crc))
    # The layout on stdout, a line a partition.
    for i, (name, _, first, end) in enumerate(parts):
        print(f'partition {i + 1} "{name}": LBA {first}..{end} ({(end - first + 1) * BLOCK // MIB} MiB)')
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Refused as e:
        print(f"gptdisk: {e}", file=sys.stderr)
        sys.exit(1)
