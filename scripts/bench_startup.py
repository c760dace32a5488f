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


def median_seconds(command: list[str], runs: int, cwd: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)  # warm up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    command = shutil.which("lkfirmware", path=str(Path(sys.executable).parent))
    if command is None:
        print("lkfirmware is not installed next to this Python; run pip install . first")
        return 2
    with tempfile.TemporaryDirectory() as cwd:
        floor = median_seconds([sys.executable, "-c", "pass"], args.runs, cwd)
        resolve = median_seconds([command, "resolve", "brcmfmac43602"], args.runs, cwd)
        help_ = median_seconds([command, "--version"], args.runs, cwd)
    print(f"python -c pass                    {floor * 1000:7.1f} ms (median of {args.runs})")
    print(f"lkfirmware --version              {help_ * 1000:7.1f} ms")
    print(f"lkfirmware resolve brcmfmac43602  {resolve * 1000:7.1f} ms")
    ratio = resolve / floor
    verdict = "met" if ratio <= 3 else "NOT met"
    print(f"ratio resolve / python            {ratio:7.2f}x  (target <= 3x: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
