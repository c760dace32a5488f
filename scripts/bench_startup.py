#!/usr/bin/env python3
"""How long `lkfirmware resolve brcmfmac43602` takes to start and answer, against
`python -c pass` (the floor any Python command pays).  Target: at most 3x.

Run it with the interpreter of an environment where lkfirmware is installed (pip install .),
so that byte-code is compiled as users get it:

    .venv/bin/python scripts/bench_startup.py [--runs 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timings(commands: dict[str, list[str]], runs: int, cwd: str) -> dict[str, list[float]]:
    """Wall times of each command, the commands interleaved run by run so that a
    noisy neighbour slows all of them alike."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for command in commands.values():  # warm up the page cache
        subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    for _ in range(runs):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    command = shutil.which("lkfirmware", path=str(Path(sys.executable).parent))
    if command is None:
        print("lkfirmware is not installed next to this Python; run pip install . first")
        return 2
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "lkfirmware --version": [command, "--version"],
        "lkfirmware resolve brcmfmac43602": [command, "resolve", "brcmfmac43602"],
    }
    with tempfile.TemporaryDirectory() as cwd:
        times = timings(commands, args.runs, cwd)
    floor = times["python -c pass"]
    print(f"{'':34} {'median':>8} {'best':>8}   ({args.runs} runs each, interleaved)")
    for name, values in times.items():
        median, best = statistics.median(values) * 1000, min(values) * 1000
        print(f"{name:34} {median:6.1f}ms {best:6.1f}ms")
    resolve = times["lkfirmware resolve brcmfmac43602"]
    by_median = statistics.median(resolve) / statistics.median(floor)
    by_best = min(resolve) / min(floor)
    verdict = "met" if by_median <= 3 else "NOT met"
    print(f"ratio resolve / python: {by_median:.2f}x by median, {by_best:.2f}x best against best")
    print(f"target <= 3x by median: {verdict}")
    if by_median > 3:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
