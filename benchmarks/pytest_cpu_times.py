"""pytest plugin: CPU seconds per test (this process plus the subprocesses it waited for).

Wall-clock ``--durations`` depend on what else the machine runs; CPU time does not, so this is
how the suite's cost is measured on a shared machine. Writes one JSON line per test phase to
``$SFNET_TEST_CPU_LOG`` (one file per xdist worker, suffixed with the worker id)::

    SFNET_TEST_CPU_LOG=/tmp/cpu.jsonl python -m pytest -p benchmarks.pytest_cpu_times -n 2
    python benchmarks/pytest_cpu_times.py /tmp/cpu.jsonl*      # the 40 costliest tests
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections import defaultdict

import pytest


def _cpu() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    path = os.environ.get("SFNET_TEST_CPU_LOG")
    t0, start = _cpu(), time.time()
    yield
    if path:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        record = {
            "test": item.nodeid,
            "cpu_s": round(_cpu() - t0, 2),
            "start": round(start, 2),  # wall clock (s since the epoch): the worker's timeline
            "wall_s": round(time.time() - start, 2),
        }
        with open(f"{path}.{worker}", "a") as f:
            f.write(json.dumps(record) + "\n")


def main() -> None:
    per_test: dict[str, float] = defaultdict(float)
    spans: dict[tuple[str, str], list[float]] = {}  # (log file, test file) -> [start, end]
    for name in sys.argv[1:]:
        with open(name) as f:
            for line in f:
                rec = json.loads(line)
                per_test[rec["test"]] += rec["cpu_s"]
                if "start" in rec:
                    span = spans.setdefault((name, rec["test"].split("::")[0]), [1e99, 0.0])
                    span[0] = min(span[0], rec["start"])
                    span[1] = max(span[1], rec["start"] + rec["wall_s"])
    per_file: dict[str, float] = defaultdict(float)
    for test, s in per_test.items():
        per_file[test.split("::")[0]] += s
    print(f"total {sum(per_test.values()):.0f} CPU s over {len(per_test)} tests")
    for test, s in sorted(per_test.items(), key=lambda kv: -kv[1])[:40]:
        print(f"{s:8.1f}  {test}")
    print("per file:")
    for f, s in sorted(per_file.items(), key=lambda kv: -kv[1])[:25]:
        print(f"{s:8.1f}  {f}")
    if spans:  # each worker's files in the order it ran them, wall seconds from the first test
        t0 = min(start for start, _ in spans.values())
        print("timeline (start - end, wall s):")
        for (log, f), (a, b) in sorted(spans.items(), key=lambda kv: (kv[0][0], kv[1][0])):
            print(f"  {log.rsplit('.', 1)[-1]:>5} {a - t0:6.0f} - {b - t0:4.0f}  {f}")


if __name__ == "__main__":
    main()
