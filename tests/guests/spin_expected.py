#!/usr/bin/env python3
"""The exit code of Keel's `spin` test guest for `iterations=N`.

The guest computes, mod 2**32, starting from state=1, sum=0, N times:
    state = state * 1664525 + 1013904223
    sum   = sum * 31 + state
and exits with (sum & 0xff) | 0x100. The step is affine in (state, sum), so
N steps are one 3x3 matrix power mod 2**32: O(log N), instant for any N.

    spin_expected.py N            prints the exit code (decimal) and the checksum
    spin_expected.py N --code     prints only the exit code, as 0x...
    spin_expected.py --self-test  compares with the plain loop for small N
Importable: expected_checksum(n), expected_exit_code(n).
"""
import sys

MASK = 0xFFFFFFFF
A, C, K = 1664525, 1013904223, 31
DEFAULT_ITERATIONS = 50_000_000


def _mul(x, y):
    return [[sum(x[i][k] * y[k][j] for k in range(3)) & MASK for j in range(3)] for i in range(3)]


def expected_checksum(n):
    if not 0 <= n < 2**32:
        raise ValueError("iterations must be in [0, 2**32)")
    step = [[A, 0, C], [A, K, C], [0, 0, 1]]       # (state, sum, 1) -> next
    acc = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    while n:
        if n & 1:
            acc = _mul(step, acc)
        step = _mul(step, step)
        n >>= 1
    state0, sum0 = 1, 0
    return (acc[1][0] * state0 + acc[1][1] * sum0 + acc[1][2]) & MASK


def expected_exit_code(n):
    return (expected_checksum(n) & 0xFF) | 0x100


def _loop(n):
    state, s = 1, 0
    for _ in range(n):
        state = (state * A + C) & MASK
        s = (s * K + state) & MASK
    return s


def main(argv):
    if argv[1:2] == ["--self-test"]:
        for n in list(range(0, 70)) + [1000, 4097, 100003]:
            assert expected_checksum(n) == _loop(n), n
        print("ok")
        return 0
    n = int(argv[1], 0) if len(argv) > 1 else DEFAULT_ITERATIONS
    if "--code" in argv[2:]:
        print(hex(expected_exit_code(n)))
    else:
        print(f"iterations={n} checksum=0x{expected_checksum(n):08x} exit code={expected_exit_code(n)} "
              f"({expected_exit_code(n)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
