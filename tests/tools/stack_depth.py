#!/usr/bin/env python3
"""The deepest stack Keel's code can reach, from its disassembly, against its CPU stacks.

Every CPU runs on one CPU_STACK_SIZE stack (guarded below): the boot CPU from
boot_continue, the others from ap_entry, both into the scheduler (cpu_loop), and an interrupt or exception taken on
the way (trap_common) nests on top. For each root this walks the direct-call
graph (call and tail jmp to a symbol), charges each function its prologue's
pushes, its `sub $N, %rsp` and the return address, and reports the deepest
path. It asks for that depth plus the deepest trap to stay within
--budget (a fraction of the stack).

A static bound, and a lower one: calls through a register (virtual calls into
the backends and device models, through the retpoline thunks) are not
followed, nor is recursion. That is what the budget's margin is for; a path
that grows past it is a stack overflow waiting for the first virtual call
deep enough.

  stack_depth.py --elf keel.elf --stack-size 16384 [--budget 0.6] [--show N]
"""
import argparse, re, subprocess, sys

# (ap_entry reaches the scheduler through a pointer: cpu_loop is a root of its own.)
ROOTS = ["_ZN12_GLOBAL__N_113boot_continueEv", "ap_entry", "_ZN2hv8cpu_loopEv"]
TRAP = "trap_common"


def parse(elf):
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", elf], capture_output=True, text=True,
                         check=True).stdout
    fns, cur = {}, None
    for line in dis.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            cur = fns.setdefault(m.group(1), {"frame": 8, "calls": set(), "n": 0, "sub": False})
            continue
        if cur is None or not line.strip():
            continue
        cur["n"] += 1
        if cur["n"] <= 32:   # the prologue: pushes and one stack adjustment
            if re.search(r"\spush\s", line):
                cur["frame"] += 8
            m = re.search(r"\ssub\s+\$0x([0-9a-f]+),%rsp", line)
            if m and not cur["sub"]:
                cur["frame"] += int(m.group(1), 16)
                cur["sub"] = True
        m = re.search(r"\s(call|jmp)\s+[0-9a-f]+ <([^>+]+)>", line)
        if m:
            cur["calls"].add(m.group(2))
    return fns


def deepest(fns, root):
    memo = {}
    sys.setrecursionlimit(20000)

    def walk(fn, on_path):
        if fn in memo:
            return memo[fn]
        if fn in on_path or fn not in fns:
            return 0, []
        on_path.add(fn)
        best = (0, [])
        for callee in fns[fn]["calls"]:
            if callee == fn:
                continue
            d = walk(callee, on_path)
            if d[0] > best[0]:
                best = d
        on_path.discard(fn)
        r = (fns[fn]["frame"] + best[0], [(fns[fn]["frame"], fn)] + best[1])
        memo[fn] = r
        return r

    return walk(root, set())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--elf", required=True)
    ap.add_argument("--stack-size", type=int, required=True)
    ap.add_argument("--budget", type=float, default=0.6)
    ap.add_argument("--show", type=int, default=12, help="functions of each deepest path to print")
    a = ap.parse_args()
    fns = parse(a.elf)
    missing = [r for r in ROOTS + [TRAP] if r not in fns]
    if missing:
        print("FAIL: not in the image:", ", ".join(missing))
        return 1
    trap, trap_path = deepest(fns, TRAP)
    limit = int(a.stack_size * a.budget)
    worst = 0
    for root in ROOTS:
        depth, path = deepest(fns, root)
        worst = max(worst, depth)
        print(f"{root}: {depth} bytes (+ {trap} for a trap taken there: {depth + trap})")
        for frame, fn in path[:a.show]:
            print(f"    {frame:6d}  {fn[:110]}")
    print(f"{TRAP}: {trap} bytes")
    if len(fns) < 100 or trap <= 8:
        print("FAIL: the disassembly looks wrong")
        return 1
    if worst + trap > limit:
        print(f"FAIL: {worst + trap} bytes may be in use, over the budget of {limit} "
              f"({a.budget:.0%} of the {a.stack_size}-byte stack)")
        return 1
    print(f"ok: at most {worst + trap} bytes seen of a budget of {limit} ({a.stack_size}-byte stacks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
