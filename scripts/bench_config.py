#!/usr/bin/env python3
"""Benchmark the config writer: add 200 firmware entries to a 2,000-line LinuxKit config.

Target (issue 4): under 1 s.  Prints the line count of the generated config, then the
best and median wall time of ``update_config`` (read, parse, edit, re-check, atomic
write) for the first run that adds the entries, and for a second run that finds nothing
to do.

    python scripts/bench_config.py [--lines 2000] [--entries 200] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lkfirmware.config import FilesEntry, update_config

SERVICE = """\
  # service {n}: a comment line, then the entry
  - name: service-{n}
    image: linuxkit/service-{n}:{sha}   # pinned
    capabilities:
      - CAP_NET_ADMIN
    binds: ["/var/run:/var/run", "/etc/service-{n}:/etc/service-{n}"]
    command: ["/usr/bin/service-{n}", "--flag", "value-{n}"]
"""

FILE = """\
  - path: etc/service-{n}/config
    contents: |
      key = value-{n}
      other = "quoted {n}"
    mode: "0600"
"""


def generated_config(lines: int) -> str:
    """A LinuxKit config of about ``lines`` lines, in the styles real configs mix."""
    head = (
        'kernel:\n  image: linuxkit/kernel:6.12.59\n  cmdline: "console=tty0"\n'
        "init:\n  - linuxkit/init:b5506cc74a6812dc40982cacfd2f4328f8a4b12a\n"
        "services:\n"
    )
    services: list[str] = []
    files: list[str] = []
    total = head.count("\n") + 2
    n = 0
    while total < lines:
        services.append(SERVICE.format(n=n, sha=f"{n:040x}"))
        files.append(FILE.format(n=n))
        total += SERVICE.count("\n") + FILE.count("\n")
        n += 1
    return head + "".join(services) + "files:\n" + "".join(files) + "trust:\n  org: []\n"


def firmware_entries(count: int) -> list[FilesEntry]:
    """``count`` firmware entries, one in five a link."""
    entries = []
    for n in range(count):
        path = f"/lib/firmware/vendor{n % 7}/chip{n}-fw.bin"
        if n % 5 == 4:
            entries.append(FilesEntry(path, symlink=f"chip{n - 1}-fw.bin"))
        else:
            entries.append(FilesEntry(path, source=f"firmware/vendor{n % 7}/chip{n}-fw.bin"))
    return entries


def timed(config: Path, original: str, entries: list[FilesEntry], reset: bool) -> float:
    if reset:
        config.write_text(original, encoding="utf-8")
    start = time.perf_counter()
    update_config(config, entries)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--entries", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    original = generated_config(args.lines)
    entries = firmware_entries(args.entries)
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "linuxkit.yml"
        first = [timed(config, original, entries, reset=True) for _ in range(args.repeat)]
        again = [timed(config, original, entries, reset=False) for _ in range(args.repeat)]
        final = config.read_text(encoding="utf-8")
    print(
        f"config: {original.count(chr(10))} lines; adding {len(entries)} entries "
        f"-> {final.count(chr(10))} lines"
    )
    print(
        f"add {len(entries)} entries: best {min(first):.3f} s, "
        f"median {statistics.median(first):.3f} s (target < 1 s)"
    )
    print(f"second run (no-op):  best {min(again):.3f} s, median {statistics.median(again):.3f} s")


if __name__ == "__main__":
    main()
