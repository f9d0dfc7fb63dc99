#!/usr/bin/env python3
"""Self-test of tests/boot/gpt_check.py (the host-side checks of vm_test.py --nvme and
bench/crash_durability.py), on disks written here with a minimal GPT writer: no
emulator. The checks must accept exactly what a guest wrote and refuse one byte more,
one byte less, or a byte outside the partitions."""
import os
import shutil
import struct
import sys
import tempfile
import uuid
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt_check  # noqa: E402

MIB = 1 << 20


def write_gpt(path, size, parts):
    """parts: [(name, first_lba, data)]; a protective MBR, primary and backup GPT."""
    sectors = size // 512
    disk = bytearray(size)
    entries = bytearray(128 * 128)
    for i, (name, first, data) in enumerate(parts):
        last = first + (len(data) + 511) // 512 - 1
        e = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4").bytes_le + uuid.uuid4().bytes_le
        e += struct.pack("<QQQ", first, last, 0) + name.encode("utf-16-le").ljust(72, b"\0")
        entries[i * 128:(i + 1) * 128] = e
        disk[first * 512:first * 512 + len(data)] = data
    disk[446:462] = struct.pack("<BBBBBBBBII", 0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF, 1, min(sectors - 1, 0xFFFFFFFF))
    disk[510:512] = b"\x55\xaa"

    def header(cur, backup, entries_lba):
        h = bytearray(struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0, cur, backup, 34,
                                  sectors - 34, uuid.uuid4().bytes_le, entries_lba, 128, 128, zlib.crc32(entries)))
        h[16:20] = struct.pack("<I", zlib.crc32(h))
        return h
    disk[512:512 + 92] = header(1, sectors - 1, 2)
    disk[1024:1024 + len(entries)] = entries
    disk[(sectors - 33) * 512:(sectors - 1) * 512] = entries
    disk[(sectors - 1) * 512:(sectors - 1) * 512 + 92] = header(sectors - 1, 1, sectors - 33)
    with open(path, "wb") as f:
        f.write(disk)


def expect_fail(what, fn):
    try:
        fn()
    except gpt_check.GptError as e:
        print(f"ok: {what}: refused: {str(e)[:160]}")
        return
    raise SystemExit(f"FAIL: {what}: accepted")


def main():
    with tempfile.TemporaryDirectory(prefix="keel-gpt-") as tmp:
        web = os.path.join(tmp, "web.img")
        with open(web, "wb") as f:
            f.write(b"KEEL-NVME-WEB".ljust(16 * MIB, b"\0"))
        raw, pristine = os.path.join(tmp, "nvme.raw"), os.path.join(tmp, "pristine.raw")
        with open(web, "rb") as f:
            web_data = f.read()
        write_gpt(raw, 40 * MIB, [("web", 2048, web_data), ("db", 2048 + 16 * 2048, b"KEEL-NVME-DB".ljust(12 * MIB, b"\0")),
                                  ("vb", 2048 + 28 * 2048, bytes(6 * MIB))])
        shutil.copy(raw, pristine)
        parts = gpt_check.read_gpt(raw)
        print("\n".join(map(repr, parts)))
        assert [p.name for p in parts] == ["web", "db", "vb"] and parts[1].size == 12 * MIB
        web_p, db_p, vb_p = parts

        # What the guests "write".
        with open(raw, "r+b") as f:
            f.seek(web_p.offset + MIB)
            f.write(gpt_check.linux_pattern("w"))
            f.seek(db_p.offset + MIB)
            f.write(gpt_check.linux_pattern("d"))
            f.seek(vb_p.offset)
            f.write(gpt_check.vblk_pattern(4, 1))
            f.seek(db_p.offset + db_p.size - 4096)
            f.write(b"\xa5" * 4096)
        subst = lambda s: s.replace("@TMP@", tmp)  # noqa: E731
        print(gpt_check.check_partition(raw, pristine, "web", "0:file:@TMP@/web.img+1M:pattern:w", subst))
        print(gpt_check.check_partition(raw, pristine, "db", "1M:pattern:d+-4K:fill:0xa5:4K"))
        print(gpt_check.check_partition(raw, pristine, "vb", "0:vblk:4:1"))
        print(gpt_check.check_outside(raw, pristine))
        expect_fail("the other guest's tag", lambda: gpt_check.check_partition(raw, pristine, "web", "1M:pattern:d"))
        expect_fail("no tag", lambda: gpt_check.check_partition(raw, pristine, "web", "1M:pattern"))
        expect_fail("an earlier vblk round", lambda: gpt_check.check_partition(raw, pristine, "vb", "0:vblk:4:0"))
        expect_fail("db's last 4 KiB forgotten", lambda: gpt_check.check_partition(raw, pristine, "db", "1M:pattern:d"))
        expect_fail("untouched", lambda: gpt_check.check_partition(raw, pristine, "vb", "untouched"))
        expect_fail("no such partition", lambda: gpt_check.check_partition(raw, pristine, "nope", "untouched"))
        expect_fail("item past the end", lambda: gpt_check.check_partition(raw, pristine, "db", "-1K:fill:1:4K"))

        # One byte more, in the partition, between two, at the very end.
        for where, at in (("one byte after db's pattern", db_p.offset + MIB + 8 * MIB),
                          ("one byte in the gap before web", web_p.offset - 1)):
            shutil.copy(raw, raw + ".bad")
            with open(raw + ".bad", "r+b") as f:
                f.seek(at)
                f.write(b"\x01")
            if at >= db_p.offset:
                expect_fail(where, lambda: gpt_check.check_partition(raw + ".bad", pristine, "db", "1M:pattern:d+-4K:fill:0xa5:4K"))
            else:
                expect_fail(where, lambda: gpt_check.check_outside(raw + ".bad", pristine))
        shutil.copy(raw, raw + ".bad")
        with open(raw + ".bad", "r+b") as f:
            f.seek(vb_p.offset + vb_p.size + 100)   # after the last partition, before the backup GPT
            f.write(b"\x5a")
        expect_fail("a byte after the last partition", lambda: gpt_check.check_outside(raw + ".bad", pristine))
        with open(raw + ".bad", "r+b") as f:
            f.seek(512 + 16)
            f.write(b"\0\0\0\0")
        expect_fail("a broken header CRC", lambda: gpt_check.read_gpt(raw + ".bad"))

        # Records: count_records stops at the first torn one.
        data = bytes(MIB) + b"".join(gpt_check.record(n) for n in range(5)) + bytes(MIB)
        want, _ = gpt_check.expected_bytes(bytes(len(data)), "0:records:5")
        assert want == data
        assert gpt_check.count_records(data) == 5, gpt_check.count_records(data)
        torn = bytearray(data)
        torn[(256 + 3) * 4096 + 1000] ^= 1
        assert gpt_check.count_records(bytes(torn)) == 3
        print("ok: records: 5 intact, a torn fourth stops the count at 3")
    print("PASS")


if __name__ == "__main__":
    main()
