#!/usr/bin/env python3
"""Write a gzip'd newc cpio archive (a Linux initramfs) from a list in the
format of the kernel's usr/gen_init_cpio, read from a file or stdin:

    dir   <name> <mode> <uid> <gid>
    file  <name> <location> <mode> <uid> <gid>
    slink <name> <target> <mode> <uid> <gid>
    nod   <name> <mode> <uid> <gid> <c|b> <maj> <min>

Modes are octal. No cpio(1), no root, no fakeroot: ownership and device nodes
are written as given. Reproducible: every mtime is SOURCE_DATE_EPOCH (default
0), inodes are numbered in order, and the gzip header carries no name or time.

    mkcpio.py LIST OUT.gz        (LIST may be '-')
"""
import gzip
import os
import stat
import sys

MTIME = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


class Writer:
    def __init__(self, out):
        self.out = out
        self.ino = 300000  # away from 0 and small numbers, as gen_init_cpio does
        self.pos = 0

    def _write(self, b):
        self.out.write(b)
        self.pos += len(b)

    def _pad(self):
        if self.pos % 4:
            self._write(b"\0" * (4 - self.pos % 4))

    def entry(self, name, mode, uid=0, gid=0, data=b"", nlink=1, rdev=(0, 0)):
        name_b = name.encode() + b"\0"
        self.ino += 1
        fields = [self.ino, mode, uid, gid, nlink, MTIME, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0]
        self._write(b"070701" + b"".join(b"%08X" % f for f in fields))
        self._write(name_b)
        self._pad()
        self._write(data)
        self._pad()

    def trailer(self):
        self.ino = -1  # the trailer's inode is 0
        self.entry("TRAILER!!!", 0)


def parse(lines, w):
    seen = set()
    for n, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        f = line.split()
        kind, name = f[0], f[1].lstrip("/")
        if not name or name in seen:
            raise SystemExit(f"mkcpio: line {n}: empty or repeated name {f[1]!r}")
        seen.add(name)
        try:
            if kind == "dir":
                w.entry(name, stat.S_IFDIR | int(f[2], 8), int(f[3]), int(f[4]), nlink=2)
            elif kind == "file":
                with open(f[2], "rb") as src:
                    data = src.read()
                w.entry(name, stat.S_IFREG | int(f[3], 8), int(f[4]), int(f[5]), data=data)
            elif kind == "slink":
                w.entry(name, stat.S_IFLNK | int(f[3], 8), int(f[4]), int(f[5]), data=f[2].encode())
            elif kind == "nod":
                t = {"c": stat.S_IFCHR, "b": stat.S_IFBLK}[f[5]]
                w.entry(name, t | int(f[2], 8), int(f[3]), int(f[4]), rdev=(int(f[6]), int(f[7])))
            else:
                raise SystemExit(f"mkcpio: line {n}: unknown entry type {kind!r}")
        except (IndexError, KeyError, ValueError) as e:
            raise SystemExit(f"mkcpio: line {n}: malformed entry {line!r} ({e})")


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src, out = sys.argv[1:]
    lines = sys.stdin.readlines() if src == "-" else open(src).readlines()
    tmp = out + ".tmp"
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        w = Writer(gz)
        parse(lines, w)
        w.trailer()
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
