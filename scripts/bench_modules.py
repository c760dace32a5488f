#!/usr/bin/env python3
"""Benchmark: lkfirmware's module scanner against ``modinfo -F firmware`` once per module.

Usage::

    python scripts/bench_modules.py /tmp/kpkg/root/lib/modules/6.12.118+deb12-amd64 \
        [--repeat 3] [--pool thread|process|both] [--jobs N] [--modinfo-jobs N]

Getting a distribution kernel (outside the test suite; nothing downloaded is committed)::

    apt-get update && apt-cache search linux-image-6.12 | grep unsigned
    cd /tmp/kpkg && apt-get download linux-image-6.12.118+deb12-amd64-unsigned
    dpkg-deb -x linux-image-*.deb root && apt-get install -y kmod

The scanner reads every module of the directory (all ``.ko*``, plus the built-in drivers
of ``modules.builtin.modinfo``); ``modinfo`` is then run once per ``.ko.xz`` file, the way the
``linuxkit/firmware`` package selects firmware. For every module file the firmware list of
the scan must equal the lines ``modinfo`` prints (same names, same order); mismatches are
listed and make the script exit with status 1. Both times and the speedup are printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lkfirmware.modules import ModuleScan, scan_modules


def module_files(modules_dir: Path) -> list[str]:
    """Every ``.ko.xz`` below ``modules_dir``, relative and sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(modules_dir):
        dirnames.sort()
        for name in filenames:
            if name.endswith(".ko.xz"):
                found.append(os.path.relpath(os.path.join(dirpath, name), modules_dir))
    return sorted(found)


def warm_page_cache(modules_dir: Path, files: list[str]) -> None:
    """Read every file once so that neither side pays for the disk."""
    for rel in files:
        (modules_dir / rel).read_bytes()


def time_scan(
    modules_dir: Path, pool: str, jobs: int | None, repeat: int
) -> tuple[float, ModuleScan]:
    times = []
    scan = None
    for _ in range(repeat):
        start = time.perf_counter()
        scan = scan_modules(modules_dir, jobs=jobs, pool=pool)  # type: ignore[arg-type]
        times.append(time.perf_counter() - start)
    assert scan is not None
    return min(times), scan


def run_modinfo(modinfo: str, path: Path) -> list[str]:
    out = subprocess.run(
        [modinfo, "-F", "firmware", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return out.splitlines()


def time_modinfo(
    modinfo: str, modules_dir: Path, files: list[str], jobs: int
) -> tuple[float, dict[str, list[str]]]:
    start = time.perf_counter()
    if jobs == 1:
        outputs = [run_modinfo(modinfo, modules_dir / rel) for rel in files]
    else:
        with ThreadPoolExecutor(jobs) as executor:
            outputs = list(executor.map(lambda rel: run_modinfo(modinfo, modules_dir / rel), files))
    return time.perf_counter() - start, dict(zip(files, outputs, strict=True))


def compare(scan: ModuleScan, expected: dict[str, list[str]]) -> list[str]:
    by_path = {m.path: m for m in scan.modules.values() if not m.builtin}
    mismatches = []
    for rel, firmware in expected.items():
        module = by_path.get(rel)
        if module is None:
            reasons = [p.reason for p in scan.problems if p.path.endswith(rel)]
            mismatches.append(f"{rel}: not in the scan ({'; '.join(reasons) or 'no reason'})")
        elif list(module.firmware) != firmware:
            mismatches.append(f"{rel}: scan {list(module.firmware)} != modinfo {firmware}")
    return mismatches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules_dir", type=Path, help="lib/modules/<version> of a kernel")
    parser.add_argument("--repeat", type=int, default=3, help="scan runs; the best is kept")
    parser.add_argument("--pool", choices=["thread", "process", "both"], default="both")
    parser.add_argument("--jobs", type=int, default=None, help="scanner workers (default: CPUs)")
    parser.add_argument(
        "--modinfo-jobs",
        type=int,
        default=1,
        help="modinfo processes at a time (1 = one after another, as linuxkit/firmware does)",
    )
    args = parser.parse_args(argv)

    modinfo = shutil.which("modinfo") or next(
        (p for p in ("/sbin/modinfo", "/usr/sbin/modinfo") if os.path.exists(p)), None
    )
    if modinfo is None:
        print("modinfo not found: apt-get install -y kmod", file=sys.stderr)
        return 2
    modules_dir: Path = args.modules_dir
    files = module_files(modules_dir)
    if not files:
        print(f"no .ko.xz files below {modules_dir}", file=sys.stderr)
        return 2
    total = sum((modules_dir / rel).stat().st_size for rel in files)
    print(f"kernel modules: {len(files)} .ko.xz files, {total / 1e6:.1f} MB compressed")
    print(f"CPUs usable: {len(os.sched_getaffinity(0))}")
    warm_page_cache(modules_dir, files)

    pools = ["thread", "process"] if args.pool == "both" else [args.pool]
    scan_times: dict[str, float] = {}
    scan: ModuleScan | None = None
    for pool in pools:
        scan_times[pool], scan = time_scan(modules_dir, pool, args.jobs, args.repeat)
        print(
            f"scan_modules (pool={pool}, jobs={args.jobs or 'auto'}): "
            f"{scan_times[pool]:.2f} s (best of {args.repeat}); "
            f"{len(scan.modules)} modules incl. built-in, {len(scan.problems)} problems"
        )
    assert scan is not None

    modinfo_time, expected = time_modinfo(modinfo, modules_dir, files, args.modinfo_jobs)
    per_module_ms = 1000 * modinfo_time / len(files)
    print(
        f"modinfo -F firmware x {len(files)} (jobs={args.modinfo_jobs}): "
        f"{modinfo_time:.2f} s ({per_module_ms:.1f} ms per module)"
    )

    mismatches = compare(scan, expected)
    with_firmware = sum(1 for fw in expected.values() if fw)
    names = sum(len(fw) for fw in expected.values())
    print(f"modules requesting firmware: {with_firmware}; firmware names: {names}")
    if mismatches:
        print(f"MISMATCHES: {len(mismatches)}")
        for line in mismatches[:50]:
            print("  " + line)
    else:
        print(f"outputs identical for all {len(files)} modules")
    for pool, seconds in scan_times.items():
        print(f"speedup (pool={pool}): {modinfo_time / seconds:.1f}x")
    best_pool = min(scan_times, key=lambda p: scan_times[p])
    print(f"fastest pool: {best_pool}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
