"""Host-side checks of an NVMe test disk (a raw file with a GPT, written by
`scripts/mkimage --disk-out`) after the emulator has gone: vm_test.py --nvme
--expect-partition and bench/crash_durability.py.

The GPT is parsed here, independently of Keel's parser (kernel/storage/gpt):
primary header at LBA 1 (signature, header CRC32, entries CRC32), 128-byte entries,
names in UTF-16LE. Partitions are found by name.

An expectation for one partition (`--expect-partition NAME=SPEC`) is the partition's
bytes as mkimage wrote them (a copy of the raw file taken before the boot), with
items laid over them in order; the partition must then equal that, byte for byte, over
its whole length. SPEC is `untouched` or ITEM+ITEM+...; each ITEM is OFFSET:KIND[:ARGS]:

  OFFSET            bytes from the partition's start, K/M suffixes (1024s) allowed; a
                    leading "-" counts from the partition's end ("-4K": its last 4 KiB)
  file:PATH         the bytes of PATH (the provisioned image: its signature sector...)
  pattern[:C]       /init's 8 MiB disk pattern (scripts/linux/init.sh; keel.disk_tag=C)
  vblk:MIB:ROUND    the vblk guest's mode=io pattern over MIB MiB, round ROUND
                    (tests/guests/vblk.cpp, pattern(); the last round is what stays)
  fill:BYTE:LEN     LEN bytes of BYTE (0x.. or decimal)
  records:N         N durability records from record 0 (init.sh keel.records)

Whatever lies outside every partition (the protective MBR, both GPT headers and entry
arrays, gaps, the tail) must be exactly as mkimage wrote it (check_outside).
"""
import hashlib
import re
import struct
import zlib

SECTOR = 512


class GptError(Exception):
    pass


class Partition:
    def __init__(self, index, name, type_guid, guid, first, last):
        self.index, self.name, self.type_guid, self.guid = index, name, type_guid, guid
        self.first, self.last = first, last          # LBAs, inclusive

    @property
    def offset(self):
        return self.first * SECTOR

    @property
    def size(self):
        return (self.last - self.first + 1) * SECTOR

    def __repr__(self):
        return (f"partition {self.index + 1} {self.name!r}: LBA {self.first}..{self.last} "
                f"({self.size} bytes at {self.offset:#x}) guid {self.guid}")


def guid_str(b):
    d1, d2, d3 = struct.unpack_from("<IHH", b)
    return f"{d1:08x}-{d2:04x}-{d3:04x}-{b[8:10].hex()}-{b[10:16].hex()}"


def read_gpt(path):
    """The partitions of the raw disk at path (primary GPT), checked: GptError if not sound."""
    with open(path, "rb") as f:
        head = f.read(SECTOR * 2)
        if len(head) < SECTOR * 2:
            raise GptError(f"{path}: shorter than two sectors")
        hdr = head[SECTOR:SECTOR * 2]
        if hdr[:8] != b"EFI PART":
            raise GptError(f"{path}: no GPT header at LBA 1 (signature {hdr[:8]!r})")
        (rev, hsize, hcrc, _, cur, backup, first_usable, last_usable) = struct.unpack_from("<IIIIQQQQ", hdr, 8)
        entries_lba, count, esize, ecrc = struct.unpack_from("<QIII", hdr, 72)
        if not 92 <= hsize <= SECTOR:
            raise GptError(f"{path}: header size {hsize}")
        check = bytearray(hdr[:hsize])
        check[16:20] = b"\0\0\0\0"
        if zlib.crc32(bytes(check)) != hcrc:
            raise GptError(f"{path}: header CRC32 mismatch")
        if esize < 128 or esize % 8 or count > 4096:
            raise GptError(f"{path}: {count} entries of {esize} bytes")
        f.seek(entries_lba * SECTOR)
        table = f.read(count * esize)
        if len(table) != count * esize or zlib.crc32(table) != ecrc:
            raise GptError(f"{path}: partition entry array CRC32 mismatch")
    parts = []
    for i in range(count):
        e = table[i * esize:(i + 1) * esize]
        if e[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        name = e[56:128].decode("utf-16-le").split("\0", 1)[0]
        if last < first or first < first_usable or last > last_usable:
            raise GptError(f"{path}: entry {i + 1} {name!r}: LBA {first}..{last} outside {first_usable}..{last_usable}")
        parts.append(Partition(i, name, guid_str(e[:16]), guid_str(e[16:32]), first, last))
    for a in parts:
        for b in parts:
            if a is not b and a.first <= b.last and b.first <= a.last:
                raise GptError(f"{path}: {a} overlaps {b}")
    return parts


def find(parts, name):
    hits = [p for p in parts if p.name == name]
    if len(hits) != 1:
        raise GptError(f"{len(hits)} partitions named {name!r} (have: {', '.join(p.name for p in parts)})")
    return hits[0]


def read_range(path, offset, size):
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise GptError(f"{path}: {size} bytes at {offset:#x} run past its end")
    return data


# ---- what the guests write

def linux_pattern(tag=""):
    """init.sh's pattern(): seq -w 0 1048575, lines starting with 0 start with the tag."""
    lines = [f"{i:07d}\n" for i in range(1048576)]
    if tag:
        lines = [tag + line[1:] if line[0] == "0" else line for line in lines]
    return "".join(lines).encode()


def vblk_pattern(mib, rnd):
    """tests/guests/vblk.cpp run_io: sector s, 32-bit word w of it (0..127), round r:
    u32(s * 0x9e3779b1) ^ (w << 16) ^ w ^ r * 0x5bd1e995, little-endian."""
    r = (rnd * 0x5BD1E995) & 0xFFFFFFFF
    words = [(w << 16) ^ w ^ r for w in range(128)]
    out = bytearray()
    for s in range(mib * 2048):
        h = (s * 0x9E3779B1) & 0xFFFFFFFF
        out += struct.pack("<128I", *[h ^ w for w in words])
    return bytes(out)


def record(n):
    """init.sh make_record N: 4096 bytes."""
    body = f"{'KEEL-REC ' + str(n):<63}\n".encode()
    body += "".join(f"{v}\n" for v in range((n + 1000) * 1000, (n + 1000) * 1000 + 1000)).encode()[:3968]
    md5 = hashlib.md5(body).hexdigest()
    return body + f"{'md5 ' + md5:<63}\n".encode()


REC_FIRST = 256   # init.sh REC_FIRST: records from 1 MiB, one per 4 KiB block


def count_records(data):
    """How many records, from record 0, are intact in a partition's bytes (init.sh's verify)."""
    n = 0
    while (REC_FIRST + n + 1) * 4096 <= len(data) and data[(REC_FIRST + n) * 4096:(REC_FIRST + n + 1) * 4096] == record(n):
        n += 1
    return n


# ---- expectations

def parse_offset(text, size):
    m = re.fullmatch(r"(-?)(0x[0-9a-fA-F]+|\d+)([KM]?)", text)
    if not m:
        raise GptError(f"bad offset {text!r}")
    v = int(m.group(2), 0) * {"": 1, "K": 1024, "M": 1 << 20}[m.group(3)]
    return size - v if m.group(1) else v


def expected_bytes(pristine, spec, subst=lambda s: s):
    """pristine (the partition as mkimage wrote it) with spec's items laid over it."""
    want = bytearray(pristine)
    if spec == "untouched":
        return bytes(want), ["untouched"]
    notes = []
    for item in spec.split("+"):
        fields = item.split(":")
        if len(fields) < 2:
            raise GptError(f"bad item {item!r} (OFFSET:KIND[:ARGS])")
        off = parse_offset(fields[0], len(want))
        kind, args = fields[1], fields[2:]
        if kind == "file":
            with open(subst(":".join(args)), "rb") as f:
                data = f.read()
        elif kind == "pattern":
            data = linux_pattern(args[0] if args else "")
        elif kind == "vblk":
            data = vblk_pattern(int(args[0]), int(args[1]))
        elif kind == "fill":
            data = bytes([int(args[0], 0)]) * parse_offset(args[1], 0)
        elif kind == "records":
            data = b"".join(record(n) for n in range(int(args[0])))
            off += REC_FIRST * 4096
        else:
            raise GptError(f"unknown kind {kind!r} in {item!r}")
        if off < 0 or off + len(data) > len(want):
            raise GptError(f"{item!r}: {len(data)} bytes at {off:#x} do not fit the partition ({len(want)} bytes)")
        want[off:off + len(data)] = data
        notes.append(f"{item} = {len(data)} bytes at {off:#x}")
    return bytes(want), notes


def describe_diff(got, want, base=0, limit=4):
    """First differing ranges of two equal-length byte strings, as text."""
    out, i, n = [], 0, len(got)
    diff_bytes = sum(1 for a, b in zip(got, want) if a != b) if n <= (64 << 20) else -1
    while i < n and len(out) < limit:
        if got[i] == want[i]:
            # skip equal stretches fast, 4 KiB at a time
            j = i + 4096
            if j <= n and got[i:j] == want[i:j]:
                i = j
                continue
            i += 1
            continue
        j = i
        while j < n and got[j] != want[j] and j - i < 1 << 20:
            j += 1
        out.append(f"{j - i} bytes at {base + i:#x}: got {got[i:i + 16].hex()} want {want[i:i + 16].hex()}")
        i = j
    return f"{diff_bytes} bytes differ; " + "; ".join(out)


def check_partition(raw, pristine, name, spec, subst=lambda s: s):
    """Returns a one-line report; raises GptError when the partition is not as expected."""
    parts = read_gpt(raw)
    p = find(parts, name)
    before = read_range(pristine, p.offset, p.size)
    got = read_range(raw, p.offset, p.size)
    want, notes = expected_bytes(before, spec, subst)
    if got != want:
        raise GptError(f"partition {name!r} ({p.size} bytes at {p.offset:#x}) is not as expected "
                       f"({', '.join(notes)}): " + describe_diff(got, want, 0))
    return f"partition {name!r}: {p.size} bytes at {p.offset:#x} exactly as expected ({', '.join(notes)})"


def check_outside(raw, pristine):
    """Every byte outside the partitions is as mkimage wrote it; the GPT still parses the same."""
    before, after = read_gpt(pristine), read_gpt(raw)
    if [(p.name, p.first, p.last, p.guid) for p in before] != [(p.name, p.first, p.last, p.guid) for p in after]:
        raise GptError("the partition table changed")
    with open(raw, "rb") as f:
        got = f.read()
    with open(pristine, "rb") as f:
        want = f.read()
    if len(got) != len(want):
        raise GptError(f"the disk's size changed: {len(want)} -> {len(got)} bytes")
    at = 0
    for p in sorted(after, key=lambda p: p.first) + [None]:
        end = p.offset if p else len(got)
        if got[at:end] != want[at:end]:
            raise GptError(f"bytes outside the partitions changed, between {at:#x} and {end:#x}: "
                           + describe_diff(got[at:end], want[at:end], at))
        if p:
            at = p.offset + p.size
    return f"outside the {len(after)} partitions: {len(got) - sum(p.size for p in after)} bytes unchanged"
