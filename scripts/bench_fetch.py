#!/usr/bin/env python3
"""Fetch benchmark against a loopback plain-blob mirror with a per-request latency.

Measures, with the test suite's mirror (tests/mirror_server.py) on 127.0.0.1:

1. bytes transferred / bytes needed for a cold fetch (body bytes, and body plus
   response headers); target at most 1.02;
2. a cold fetch of N files (default 40) with ``jobs=8`` against the same files fetched
   one by one (``jobs=1``, and one ``fetch_plan`` call per file), at a per-request
   latency (default 50 ms); target at least 5x faster;
3. a warm-cache fetch of the same files (median of several runs; no request is made);
4. the peak resident memory of a separate process that downloads one large blob
   (default 200 MB, verified by sha256 and git blob id); target at most 100 MB;
5. with ``--git``, the git source's transfer for one driver against a full clone
   (from scripts/bench_git_source.py).

Run: ``python scripts/bench_fetch.py [--files 40] [--latency 0.05] [--jobs 8]
[--big-mb 200] [--git] [--json]``.  Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lkfirmware.cache import Cache, git_blob_id_of  # noqa: E402
from lkfirmware.fetcher import fetch_plan  # noqa: E402
from lkfirmware.plan import FirmwareFile, Plan  # noqa: E402
from tests.mirror_server import MirrorServer  # noqa: E402

REF = "20251215"
TARGETS = {"ratio": 1.02, "speedup": 5.0, "peak_rss_mb": 100.0}

_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    sys.path.insert(0, sys.argv[1])
    from lkfirmware.cache import Cache
    from lkfirmware.fetcher import fetch_plan
    from lkfirmware.plan import FirmwareFile, Plan
    cache_dir, template, ref, path, size, git_id = sys.argv[2:8]
    plan = Plan(ref, files=(FirmwareFile(path, size=int(size), git_id=git_id),))
    import requests, urllib3, filelock  # what a fetch imports, before the baseline
    def high_water_kb():
        # VmHWM is this process image's peak RSS (ru_maxrss would include the parent's
        # peak from before exec).
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    before = high_water_kb()
    started = time.perf_counter()
    result = fetch_plan(plan, mirrors=[template], cache=Cache(cache_dir), jobs=1, progress=False)
    seconds = time.perf_counter() - started
    peak = high_water_kb()
    assert result.blobs[0].size == int(size) and result.blobs[0].git_id == git_id
    print(json.dumps({"baseline_kb": before, "peak_kb": peak, "seconds": seconds}))
    """
)


def make_files(count: int, min_size: int, max_size: int, seed: int = 1) -> dict[str, bytes]:
    """``count`` firmware-like files of random (incompressible) bytes and sizes."""
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    for number in range(count):
        size = rng.randint(min_size, max_size)
        files[f"vendor{number % 5}/chip {number},rev-{number}.bin"] = rng.randbytes(size)
    return files


def plan_of(files: dict[str, bytes]) -> Plan:
    return Plan(
        REF,
        files=tuple(
            FirmwareFile(path, size=len(data), git_id=git_blob_id_of(data))
            for path, data in sorted(files.items())
        ),
    )


def _serve(spec: dict[str, Any], conn: Connection) -> None:
    """Run the mirror in its own process (as a real mirror is) and answer commands."""
    files: dict[str, bytes] = spec.get("files") or {}
    big = int(spec.get("big_bytes", 0))
    if big:
        files = {"amdgpu/big blob.bin": os.urandom(big)}
    with MirrorServer({REF: files}, latency=float(spec["latency"])) as server:
        conn.send({"cgit": server.cgit, "plan": plan_of(files)})
        while True:
            command = conn.recv()
            if command == "stats":
                conn.send((server.bytes_sent(), server.wire_bytes(), len(server.requests)))
            elif command == "reset":
                server.reset_counts()
                conn.send(None)
            else:
                return


class RemoteMirror:
    """A :class:`MirrorServer` in a child process, so it does not share our GIL."""

    def __init__(self, **spec: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(spec, child), daemon=True)
        self._process.start()
        hello = self._conn.recv()
        self.cgit: str = hello["cgit"]
        self.plan: Plan = hello["plan"]

    def stats(self) -> tuple[int, int, int]:
        self._conn.send("stats")
        body, wire, count = self._conn.recv()
        return int(body), int(wire), int(count)

    def reset(self) -> None:
        self._conn.send("reset")
        self._conn.recv()

    def close(self) -> None:
        self._conn.send("stop")
        self._process.join(timeout=10)

    def __enter__(self) -> RemoteMirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def timed_fetch(plan: Plan, template: str, cache_dir: Path, jobs: int) -> float:
    started = time.perf_counter()
    fetch_plan(plan, mirrors=[template], cache=Cache(cache_dir), jobs=jobs, progress=False)
    return time.perf_counter() - started


def measure_transfer(args: argparse.Namespace, scratch: Path) -> dict[str, float]:
    files = make_files(args.files, args.min_kb * 1024, args.max_kb * 1024)
    needed = sum(len(data) for data in files.values())
    out: dict[str, float] = {"files": len(files), "needed_bytes": needed}
    with RemoteMirror(files=files, latency=args.latency) as server:
        plan = server.plan
        # Warm up: imports and the first connection are not what is measured.
        timed_fetch(Plan(REF, files=plan.files[:1]), server.cgit, scratch / "w", 1)
        server.reset()
        out["cold_parallel_s"] = timed_fetch(plan, server.cgit, scratch / "a", args.jobs)
        body, wire, count = server.stats()
        out["body_bytes"], out["wire_bytes"], out["requests"] = body, wire, count
        out["ratio_body"] = body / needed
        out["ratio_wire"] = wire / needed

        out["cold_jobs1_s"] = timed_fetch(plan, server.cgit, scratch / "b", 1)
        started = time.perf_counter()
        for item in plan.files:
            single = Plan(REF, files=(item,))
            fetch_plan(
                single, mirrors=[server.cgit], cache=Cache(scratch / "c"), jobs=1, progress=False
            )
        out["cold_separate_calls_s"] = time.perf_counter() - started

        server.reset()
        warm = [timed_fetch(plan, server.cgit, scratch / "a", args.jobs) for _ in range(5)]
        out["warm_s"] = statistics.median(warm)
        out["warm_requests"] = server.stats()[2]
    out["speedup_vs_jobs1"] = out["cold_jobs1_s"] / out["cold_parallel_s"]
    out["speedup_vs_separate_calls"] = out["cold_separate_calls_s"] / out["cold_parallel_s"]
    return out


def measure_memory(args: argparse.Namespace, scratch: Path) -> dict[str, float]:
    size = int(args.big_mb * 1_000_000)
    with RemoteMirror(big_bytes=size, latency=0.0) as server:
        item = server.plan.files[0]
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                _CHILD,
                str(ROOT),
                str(scratch / "big"),
                server.cgit,
                REF,
                item.path,
                str(item.size),
                str(item.git_id),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    report = json.loads(child.stdout.strip().splitlines()[-1])
    return {
        "big_mb": args.big_mb,
        "big_seconds": report["seconds"],
        "baseline_rss_mb": report["baseline_kb"] / 1024,
        "peak_rss_mb": report["peak_kb"] / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--min-kb", type=int, default=16, help="smallest file, KiB")
    parser.add_argument("--max-kb", type=int, default=256, help="largest file, KiB")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--big-mb", type=float, default=200.0, help="0 skips the memory test")
    parser.add_argument("--git", action="store_true", help="also run the git-source figure")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    os.environ.setdefault("no_proxy", "127.0.0.1,localhost")

    with tempfile.TemporaryDirectory(prefix="lkfw-bench-fetch-") as scratch_dir:
        scratch = Path(scratch_dir)
        result: dict[str, float] = measure_transfer(args, scratch)
        if args.big_mb > 0:
            result.update(measure_memory(args, scratch))
    if args.git:
        sys.path.insert(0, str(ROOT / "scripts"))
        from bench_git_source import measure_git_transfer  # type: ignore[import-not-found]

        git = measure_git_transfer()
        result["git_source_vs_full_clone"] = git["ratio_full"]

    misses = []
    if result["ratio_wire"] > TARGETS["ratio"]:
        misses.append("bytes ratio")
    if result["speedup_vs_jobs1"] < TARGETS["speedup"]:
        misses.append("parallel speed-up")
    if "peak_rss_mb" in result and result["peak_rss_mb"] > TARGETS["peak_rss_mb"]:
        misses.append("peak memory")

    if args.json:
        print(json.dumps({k: round(v, 4) for k, v in result.items()}, indent=2))
    else:
        r = result
        print(
            f"loopback mirror, {int(r['files'])} files, {r['needed_bytes'] / 1e6:.2f} MB, "
            f"{args.latency * 1000:.0f} ms per request, jobs={args.jobs}"
        )
        print(
            f"  bytes transferred / needed: {r['ratio_body']:.4f} (bodies), "
            f"{r['ratio_wire']:.4f} (with headers; target <= {TARGETS['ratio']})"
        )
        print(
            f"  cold, jobs={args.jobs}: {r['cold_parallel_s']:.3f} s;  jobs=1: "
            f"{r['cold_jobs1_s']:.3f} s ({r['speedup_vs_jobs1']:.1f}x);  one call per file: "
            f"{r['cold_separate_calls_s']:.3f} s ({r['speedup_vs_separate_calls']:.1f}x)"
            f"  (target >= {TARGETS['speedup']}x)"
        )
        print(
            f"  warm cache: {r['warm_s'] * 1000:.1f} ms (median of 5, "
            f"{int(r['warm_requests'])} requests)"
        )
        if "peak_rss_mb" in r:
            print(
                f"  {r['big_mb']:.0f} MB blob in a separate process: peak RSS "
                f"{r['peak_rss_mb']:.1f} MB (after imports {r['baseline_rss_mb']:.1f} MB; "
                f"target <= {TARGETS['peak_rss_mb']:.0f} MB), {r['big_seconds']:.2f} s"
            )
        if "git_source_vs_full_clone" in r:
            print(
                f"  git source, one driver / full clone: {r['git_source_vs_full_clone']:.2%} "
                f"(target <= 5%)"
            )
        print("targets met" if not misses else f"targets missed: {', '.join(misses)}")
    return 1 if misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
