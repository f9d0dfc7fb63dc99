#!/usr/bin/env python3
"""mkdisk.py OUT SIGNATURE BYTES: a raw disk image of BYTES bytes that starts
with SIGNATURE (ASCII) and is zero after it. The Linux test guest's /init checks
the signature (keel.disk=, keel.disk_ro=)."""
import sys

out, sig, size = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
if size % 512 or size < len(sig):
    sys.exit(f"mkdisk: {size} bytes: not a whole number of sectors holding the signature")
with open(out, "wb") as f:
    f.write(sig + bytes(size - len(sig)))
