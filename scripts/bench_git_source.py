#!/usr/bin/env python3
"""How many bytes the git source transfers for one driver, against a full clone.

Generates a linux-firmware-like repository (many drivers, a few MB of incompressible
firmware each, a few releases that update some files), serves it as a ``file://`` bare
repository with ``uploadpack.allowFilter``, and counts the bytes ``git upload-pack``
sends (a wrapper between git and upload-pack counts them; this is the pack plus the
protocol around it, exactly what would cross the network).  Then it fetches one
driver's files through :class:`lkfirmware.sources.git.GitSource`, and compares with a
full ``git clone``, a ``--depth 1`` clone, and the same driver through a
``--filter=blob:none --sparse`` clone with a sparse checkout.

Run: ``python scripts/bench_git_source.py [--drivers 40] [--mb 3] [--releases 3]``.
The fetch benchmark imports :func:`measure_git_transfer`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lkfirmware.plan import FirmwareFile
from lkfirmware.sources.git import GitSource

TARGET_RATIO = 0.05
"""The issue's target: one driver through the git source costs at most 5% of a clone."""

_COUNTER = """\
import os, sys
total = 0
while True:
    data = os.read(0, 1 << 16)
    if not data:
        break
    total += len(data)
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]
with open(sys.argv[1], "a") as log:
    log.write(f"{total}\\n")
"""

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_AUTHOR_DATE": "2025-12-15T00:00:00Z",
    "GIT_COMMITTER_DATE": "2025-12-15T00:00:00Z",
}


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **_GIT_ENV, **(env or {})},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def make_bench_repo(
    root: Path, drivers: int, files_per_driver: int, bytes_per_driver: int, releases: int
) -> tuple[Path, str, dict[str, list[str]]]:
    """Build the repository; return its bare path, the newest tag and each driver's files.

    Every release after the first rewrites one file in every fourth driver, as
    linux-firmware updates some drivers at each tag.  Bytes are deterministic random
    (firmware barely compresses).
    """
    rng = random.Random(20251215)
    work = root / "work"
    work.mkdir(parents=True)
    _git(work, "init", "-q", "-b", "main")
    owned: dict[str, list[str]] = {}
    size = max(1, bytes_per_driver // files_per_driver)
    whence = ["WHENCE for the git source benchmark.", ""]
    for d in range(drivers):
        name = f"drv{d:03d}"
        whence += ["-" * 70, "", f"Driver: {name} - benchmark driver {d}", ""]
        owned[name] = []
        for i in range(files_per_driver):
            path = f"vendor{d % 7}/{name}/fw-{i} rev{d % 3}.bin"
            owned[name].append(path)
            whence.append(f'File: "{path}"')
            target = work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(rng.randbytes(size))
        whence += ["", f"Licence: Redistributable. See LICENCE.vendor{d % 7} for details.", ""]
    for v in range(7):
        (work / f"LICENCE.vendor{v}").write_text(f"Licence of vendor {v}.\n" * 40)
    (work / "WHENCE").write_text("\n".join(whence) + "\n")
    tag = ""
    for release in range(releases):
        if release:
            for d in range(release % 4, drivers, 4):
                (work / owned[f"drv{d:03d}"][release % files_per_driver]).write_bytes(
                    rng.randbytes(size)
                )
        _git(work, "-c", "core.compression=1", "add", "-A")
        _git(work, "commit", "-q", "-m", f"release {release}")
        tag = f"2025{release + 1:02d}01"
        _git(work, "tag", tag)
    bare = root / "linux-firmware.git"
    _git(root, "clone", "-q", "--bare", str(work), str(bare))
    _git(bare, "config", "uploadpack.allowFilter", "true")
    _git(bare, "config", "uploadpack.allowAnySHA1InWant", "true")
    # Packed like a server's repository; random bytes neither compress nor delta.
    _git(bare, "-c", "pack.compression=1", "repack", "-q", "-a", "-d", "--window=0")
    return bare, tag, owned


class WireCounter:
    """Counts the bytes ``git upload-pack`` sends, through a wrapper script."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / "sent.log"
        counter = folder / "counter.py"
        counter.write_text(_COUNTER)
        self.wrapper = folder / "upload-pack"
        self.wrapper.write_text(
            "#!/bin/bash\n"
            f'git upload-pack "$@" | {shlex.quote(sys.executable)} '
            f"{shlex.quote(str(counter))} {shlex.quote(str(self.log))}\n"
            "exit ${PIPESTATUS[0]}\n"
        )
        self.wrapper.chmod(self.wrapper.stat().st_mode | stat.S_IXUSR)

    def take(self) -> int:
        """Bytes sent since the last call."""
        if not self.log.exists():
            return 0
        total = sum(int(line) for line in self.log.read_text().split())
        self.log.unlink()
        return total

    @contextmanager
    def for_every_git(self) -> Iterator[None]:
        """Make every git run by this process (GitPython too) use the counting wrapper."""
        saved = {
            k: os.environ.get(k)
            for k in ("GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0")
        }
        os.environ.update(
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0="remote.origin.uploadpack",
            GIT_CONFIG_VALUE_0=str(self.wrapper),
        )
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _pack_bytes(git_dir: Path) -> int:
    return sum(p.stat().st_size for p in (git_dir / "objects" / "pack").glob("*.pack"))


def measure_git_transfer(
    drivers: int = 40,
    files_per_driver: int = 8,
    bytes_per_driver: int = 3_000_000,
    releases: int = 3,
    work_dir: Path | None = None,
) -> dict[str, float]:
    """Bytes the git source transfers for one driver, and for a full clone of the same repo.

    Returns a dict with (all byte counts are what ``git upload-pack`` sent):
    ``needed`` (the driver's file sizes), ``git_source`` (one driver into a fresh clone
    dir: ls-remote, commit and trees at depth 1, the blobs), ``git_source_next_driver``
    (a second driver into the same clone dir), ``sparse_checkout`` (the same driver
    through ``git clone --filter=blob:none --depth 1 --sparse`` and a sparse checkout),
    ``full_clone``, ``shallow_clone`` (``--depth 1``), the ratios ``ratio_full``
    (git_source / full_clone; target at most 0.05) and ``ratio_shallow``, ``overhead``
    (git_source / needed) and the seconds each took.
    """
    with tempfile.TemporaryDirectory(prefix="lkfw-bench-git-", dir=work_dir) as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        bare, tag, owned = make_bench_repo(
            root / "repo", drivers, files_per_driver, bytes_per_driver, releases
        )
        made = time.perf_counter() - started
        url = bare.as_uri()
        counter = WireCounter(root / "counter")
        names = sorted(owned)
        first, second = names[len(names) // 2], names[len(names) // 2 + 1]
        files = [FirmwareFile(p) for p in owned[first]]
        needed = sum((root / "repo" / "work" / p).stat().st_size for p in owned[first])
        out = root / "out"
        out.mkdir()
        result: dict[str, float] = {
            "drivers": drivers,
            "files_per_driver": files_per_driver,
            "releases": releases,
            "needed": needed,
            "seconds_make_repo": round(made, 2),
        }
        with counter.for_every_git():
            counter.take()
            clone = root / "source-clone"
            started = time.perf_counter()
            source = GitSource(url, clone)
            source.prepare(files, tag)
            for index, item in enumerate(files):
                source.retrieve(item, tag, out / str(index))
            result["seconds_git_source"] = round(time.perf_counter() - started, 3)
            result["git_source"] = counter.take()
            result["git_source_pack_bytes"] = _pack_bytes(clone)

            again = GitSource(url, clone)
            again.prepare([FirmwareFile(p) for p in owned[second]], tag)
            result["git_source_next_driver"] = counter.take()

            sparse = root / "sparse"
            started = time.perf_counter()
            _git(
                root,
                "clone",
                "-q",
                "--filter=blob:none",
                "--depth=1",
                "--no-checkout",
                "--sparse",
                "--branch",
                tag,
                f"--upload-pack={counter.wrapper}",
                url,
                str(sparse),
            )
            _git(sparse, "sparse-checkout", "set", "--no-cone", *owned[first])
            _git(sparse, "checkout", "-q", tag)
            result["seconds_sparse_checkout"] = round(time.perf_counter() - started, 3)
            result["sparse_checkout"] = counter.take()

        started = time.perf_counter()
        _git(
            root,
            "clone",
            "-q",
            "--bare",
            f"--upload-pack={counter.wrapper}",
            url,
            str(root / "full.git"),
        )
        result["seconds_full_clone"] = round(time.perf_counter() - started, 3)
        result["full_clone"] = counter.take()
        _git(
            root,
            "clone",
            "-q",
            "--bare",
            "--depth=1",
            "--branch",
            tag,
            f"--upload-pack={counter.wrapper}",
            url,
            str(root / "shallow.git"),
        )
        result["shallow_clone"] = counter.take()

        result["ratio_full"] = round(result["git_source"] / result["full_clone"], 5)
        result["ratio_shallow"] = round(result["git_source"] / result["shallow_clone"], 5)
        result["overhead"] = round(result["git_source"] / needed, 5)
        return result


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print it; exit 1 if the ratio misses the target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drivers", type=int, default=40)
    parser.add_argument("--files", type=int, default=8, help="files per driver")
    parser.add_argument("--mb", type=float, default=3.0, help="MB of firmware per driver")
    parser.add_argument("--releases", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    result = measure_git_transfer(args.drivers, args.files, int(args.mb * 1_000_000), args.releases)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        mb = 1_000_000
        print(
            f"repository: {args.drivers} drivers x {args.files} files, {args.mb} MB per "
            f"driver, {args.releases} releases (made in {result['seconds_make_repo']} s)"
        )
        rows = [
            ("bytes the driver needs", "needed", None),
            ("git source, one driver (fresh clone dir)", "git_source", "seconds_git_source"),
            ("git source, a second driver (same dir)", "git_source_next_driver", None),
            (
                "blob:none --sparse clone + sparse checkout",
                "sparse_checkout",
                "seconds_sparse_checkout",
            ),
            ("full git clone", "full_clone", "seconds_full_clone"),
            ("git clone --depth 1", "shallow_clone", None),
        ]
        for label, key, seconds in rows:
            timing = f"  ({result[seconds]} s)" if seconds else ""
            print(f"  {label:<44} {result[key] / mb:10.3f} MB{timing}")
        print(f"  git source / full clone:    {result['ratio_full']:.2%} (target <= 5%)")
        print(f"  git source / depth-1 clone: {result['ratio_shallow']:.2%}")
        print(f"  git source / bytes needed:  {result['overhead']:.4f}")
    return 0 if result["ratio_full"] <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
