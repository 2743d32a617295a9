#!/usr/bin/env python3
"""Counts test cases in meson testlog.json files and prints "N passed, N failed".

A Criterion executable reports its cases ("Tested: X | Passing: Y | Failing: Z"); a Python
unittest file reports "Ran N tests" and "FAILED (failures=a, errors=b)". Any other test counts
as one case. A test whose process failed counts at least one failure, whatever it printed.
Exits non-zero when anything failed or nothing ran.
"""
import json
import re
import sys

passed = failed = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        print(f"count_tests: {e}")
        failed += 1
        continue
    for line in lines:
        t = json.loads(line)
        out = (t.get("stdout") or "") + (t.get("stderr") or "")
        ok = t.get("result") in ("OK", "EXPECTEDFAIL")
        p = f = None
        m = re.findall(r"Tested: (\d+) \| Passing: (\d+) \| Failing: (\d+) \| Crashing: (\d+)", out)
        if m:
            tested, passing, failing, crashing = map(int, m[-1])
            p, f = passing, tested - passing
        else:
            m = re.findall(r"^Ran (\d+) tests?", out, re.M)
            if m:
                ran = int(m[-1])
                fm = re.findall(r"FAILED \(([^)]*)\)", out)
                nf = sum(int(x) for x in re.findall(r"(?:failures|errors)=(\d+)", fm[-1])) if fm else 0
                p, f = ran - nf, nf
        if p is None:
            p, f = (1, 0) if ok else (0, 1)
        if not ok and f == 0:
            f = 1
        passed += p
        failed += f
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or passed == 0 else 0)
