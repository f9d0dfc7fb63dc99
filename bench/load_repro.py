#!/usr/bin/env python3
"""Run one ctest test several times at once, round after round, to reproduce a
failure that needs a loaded host (emulated CPUs starved of host time).

  bench/load_repro.py TEST [--build DIR] [--width K] [--rounds R]

TEST is a ctest name (e.g. vm.qemu.linux-nvme). Its command is taken from
`ctest --show-only=json-v1` and run K copies at a time, R rounds (the boot
tests keep their files in their own temporary directories, so copies do not
meet). Prints each run's
result and keeps the output of the failed ones. A development tool, not a test:
it measures how often something fails, not how long it takes.
"""
import argparse, json, os, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("test")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--width", type=int, default=3, help="copies at once (3 on 2 cores starves each)")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    info = json.loads(subprocess.run(["ctest", "--show-only=json-v1"], cwd=a.build, capture_output=True,
                                     text=True, check=True).stdout)
    tests = [t for t in info["tests"] if t["name"] == a.test]
    if not tests:
        print(f"no test {a.test!r} in {a.build}")
        return 2
    t = tests[0]
    cmd = t["command"]
    cwd = next((p["value"] for p in t.get("properties", []) if p["name"] == "WORKING_DIRECTORY"), a.build)
    out = tempfile.mkdtemp(prefix="keel-load-")
    failed = runs = 0
    for r in range(a.rounds):
        procs = []
        for k in range(a.width):
            log = os.path.join(out, f"r{r}-{k}.log")
            f = open(log, "w")
            procs.append((subprocess.Popen(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT), log, f, time.monotonic()))
        for p, log, f, t0 in procs:
            rc = p.wait()
            f.close()
            runs += 1
            if rc:
                failed += 1
            print(f"round {r} copy {log[-5]}: {'FAIL' if rc else 'ok'} ({time.monotonic() - t0:.0f} s){' ' + log if rc else ''}",
                  flush=True)
    print(f"{a.test}: {failed} of {runs} runs failed ({a.width} at a time); logs in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
