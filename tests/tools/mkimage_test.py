#!/usr/bin/env python3
"""scripts/mkimage checks a configuration with keel-config-check (Keel's own parser) before
packing it: a good one makes an image; a syntax error, a bad value and a missing or badly
sized file each stop it with a non-zero status and a message naming the line, and so do more
files than Keel takes as boot modules; no image is written; --no-check packs a refused one anyway.

  mkimage_test.py --checker build/keel-config-check --kernel build/keel.elf
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

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
]


class Failure(Exception):
    pass


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

        # Bad arguments: status 2, before anything is done.
        for args in (["--frobnicate"], [good, "-o"], [good, "--kernel"]):
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
