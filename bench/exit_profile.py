#!/usr/bin/env python3
"""Where Keel's SVM exit path spends its instructions, per exit, under QEMU TCG.

Boots the exitstorm guest (CPUID, port I/O, APIC EOI loops and IPIs, as
bench/exit_cost.py does) with QEMU's `-d in_asm,exec,nochain` restricted to
Keel's text (boot-time code such as TSC calibration left out), splits the trace
into segments between two VMRUNs, classifies each segment by the set of
functions it ran (one class per kind of exit) and prints, per class, the
average instructions per function. A development tool, not a test.

  bench/exit_profile.py [BUILD_DIR [COUNT [TRACE|- [CLASSES]]]]
     TRACE: analyse an earlier run's trace file instead of booting ("-": boot);
     CLASSES (e.g. "pio,cpuid"): also print instruction counts per address for those classes
"""
import os, re, subprocess, sys, tempfile, collections, bisect
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "boot"))
import harness
build = sys.argv[1] if len(sys.argv) > 1 else ROOT + "/build"
count = int(sys.argv[2]) if len(sys.argv) > 2 else 300
elf = os.path.join(build, "keel.elf")
syms = []
for line in subprocess.run(["nm", "-nC", elf], capture_output=True, text=True).stdout.splitlines():
    p = line.split(" ", 2)
    if len(p) == 3 and p[1] in "tTwW":
        syms.append((int(p[0], 16), p[2]))
addrs = [a for a, _ in syms]
def sym(a):
    i = bisect.bisect_right(addrs, a) - 1
    return syms[i][1] if i >= 0 else "?"
dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", elf], capture_output=True, text=True).stdout
_m = re.search(r"\.text\s+PROGBITS\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", subprocess.run(["readelf","-SW",elf],capture_output=True,text=True).stdout)
TEXT = "0x%s+0x%s" % (_m.group(1).lstrip("0"), _m.group(2).lstrip("0"))
_skip = [(a, syms[i+1][0]) for i, (a, n) in enumerate(syms[:-1]) if n.startswith("time::calibrate_tsc") or n.startswith("time::delay_us") or n == "memset" or n.startswith("PageTable<")]
_lo = int(_m.group(1), 16); _hi = _lo + int(_m.group(2), 16)
_r = []; _cur = _lo
for a, b in sorted(_skip):
    if a > _cur: _r.append((_cur, a))
    _cur = max(_cur, b)
_r.append((_cur, _hi))
TEXT = ",".join("0x%x..0x%x" % (a, b - 1) for a, b in _r)
vmrun = [int(m.group(1), 16) for m in re.finditer(r"^([0-9a-f]+):\s+vmrun", dis, re.M)]
CONFIG = f"""[keel]
on_idle = "poweroff"
[[guest]]
name = "exitstorm"
kernel = "{build}/tests/guests/exitstorm.elf"
cmdline = "count={count} ipi={max(1,count//10)}"
memory = "4M"
cpus = 2
pin = [0, 0]
"""
tmp = tempfile.mkdtemp(prefix="keel-prof-")
open(tmp + "/k.toml", "w").write(CONFIG)
harness.run_mkimage([tmp + "/k.toml", "--kernel", elf, "-o", tmp + "/b.iso"])
log = tmp + "/serial.log"
trace = tmp + "/trace.log"
cmd = harness.qemu_command(tmp + "/b.iso", tmp, log, smp=1, mem="256M",
      extra=["-icount", "shift=0", "-d", "in_asm,exec,nochain", "-dfilter", TEXT, "-D", trace])
done = re.compile(r"^keel: all guests have ended", re.M)
if len(sys.argv) > 3 and sys.argv[3] != "-": trace = sys.argv[3]
else: harness.run(cmd, log, lambda t: True if done.search(t) else None, 900, cwd=tmp)
tb = {}
cur = None
segs = []
asegs = []
aseg = collections.Counter()
seg = collections.Counter()
# A translated block is known by its host address (the Trace line's first field): with -icount,
# QEMU also translates shorter blocks at the same guest address (instruction budgets) and goes
# on running the full one it has cached, so a block's address alone would name the wrong one.
# The first Trace after an IN: listing is the block just translated.
tbh = {}
fresh = None
tre = re.compile(r"^Trace \d+: (0x[0-9a-f]+) \[[0-9a-f]+/([0-9a-f]+)/")
with open(trace, errors="replace") as f:
    for line in f:
        if line.startswith("IN:"):
            cur = []; continue
        if cur is not None:
            m = re.match(r"^0x([0-9a-f]+):", line)
            if m:
                cur.append(int(m.group(1), 16)); continue
            if cur:
                tb[cur[0]] = cur
                fresh = cur
            cur = None
        m = tre.match(line)
        if m:
            host, pc = m.group(1), int(m.group(2), 16)
            if fresh is not None and fresh[0] == pc:
                tbh[host] = fresh
            fresh = None
            for a in tbh.get(host) or tb.get(pc, [pc]):
                seg[sym(a)] += 1
                aseg[a] += 1
                if a in vmrun:
                    segs.append(seg); asegs.append(aseg); seg = collections.Counter(); aseg = collections.Counter()
def kind(s):
    k = set(s)
    if any("cpuid" in x.lower() for x in k): return "cpuid"
    # CPUID answered from the profile's fixed leaves calls nothing but the next-RIP decode
    # (which HLT and MSR exits call too, but those go through the run loop or the MSR code).
    if any("decode_next_rip" in x for x in k) and not any("cpu_loop" in x or "msr" in x.lower() for x in k):
        return "cpuid"
    # Handled in the backend loop calling nothing at all: port I/O to an unclaimed port (0x80).
    if all(x.startswith(("svm::(anonymous namespace)::SvmVcpu::enter(", "svm_run", "rsb_fill")) for x in k):
        return "inline-io"
    if any("port_in" in x or "port_out" in x for x in k): return "pio"
    if any("send_ipi" in x for x in k): return "ipi-send"
    if any("mmio" in x.lower() for x in k): return "mmio"
    if any("ipi" in x.lower() or "icr" in x.lower() for x in k): return "ipi"
    return "other"
groups = collections.defaultdict(list)
for s in segs:
    if sum(s.values()) < 20000 and len(segs) > 0: groups[kind(s)].append(s)
for k, ss in groups.items():
    tot = collections.Counter()
    for s in ss: tot.update(s)
    n = len(ss)
    tots=sorted(sum(s.values()) for s in ss)
    print(f"== {k}: {n} exits, {sum(tot.values())/n:.0f} insns/exit, median {tots[n//2]}")
    for name, c in tot.most_common(25):
        print(f"   {c/n:7.1f}  {name}")
print("trace:", trace)

classes = sys.argv[4].split(",") if len(sys.argv) > 4 else []
for k in classes:
    idx = [i for i, s in enumerate(segs) if kind(s) == k and sum(s.values()) < 20000]
    tot = collections.Counter()
    for i in idx: tot.update(asegs[i])
    n = len(idx) or 1
    print("== per address", k, n)
    for a in sorted(tot):
        print("  %x %6.1f %s" % (a, tot[a]/n, sym(a)[:50]))
