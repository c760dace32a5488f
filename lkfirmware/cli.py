"""The ``lkfirmware`` command line.

Each sub-command is a small function that parses nothing itself and imports what it
needs when it runs, so that ``lkfirmware resolve`` starts almost as fast as Python does.
Exit statuses: 0 ok, 1 ``--check`` found changes, 2 bad input, 3 fetch failed,
4 integrity failure (see :mod:`lkfirmware.errors`).
"""

from __future__ import annotations

import argparse
import json
import sys
from lkfirmware.errors import LkFirmwareError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TextIO

    Handler = Callable[[argparse.Namespace], int]


def _print_json(data: Any, out: TextIO | None = None) -> None:
    json.dump(data, out or sys.stdout, indent=2, ensure_ascii=False)
    (out or sys.stdout).write("\n")


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


# -- resolve / drivers -------------------------------------------------------------------


def _add_query_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "queries",
        nargs="*",
        metavar="QUERY",
        help="module or driver (brcmfmac), chip (brcmfmac43602), path or glob (rtl_nic/rtl8168*)",
    )
    parser.add_argument(
        "--board", help="board for board-specific files, e.g. raspberrypi,4-model-b"
    )
    parser.add_argument("--all-boards", action="store_true", help="take every board's files")


def cmd_resolve(args: argparse.Namespace) -> int:
    from lkfirmware.resolve import resolve

    plan = resolve(
        args.queries,
        board=args.board,
        all_boards=args.all_boards,
        catalog=_catalog(args),
    )
    for note in plan.notes:
        _note(note)
    if args.json:
        _print_json(plan.records())
        return 0
    lines = [link.path + " -> " + link.target for link in plan.links]
    lines += [item.path for item in plan.files]
    lines.sort()
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


def cmd_drivers(args: argparse.Namespace) -> int:
    import fnmatch

    catalog = _catalog(args)
    pattern = args.pattern
    rows = []
    for name in sorted(catalog.drivers, key=str.lower):
        driver = catalog.drivers[name]
        text = f"{name} {driver.description}".lower()
        if pattern and not (
            fnmatch.fnmatch(name.lower(), pattern.lower()) or pattern.lower() in text
        ):
            continue
        files = sum(1 for entry in driver.entries if catalog.has_file(entry))
        links = len(driver.entries) - files
        rows.append((name, files, links, driver.description))
    if args.json:
        _print_json(
            [{"driver": n, "files": f, "links": k, "description": d} for n, f, k, d in rows]
        )
        return 0
    if not rows:
        print(f"no driver matches {pattern!r}", file=sys.stderr)
        return 2
    width = max(len(row[0]) for row in rows)
    for name, files, links, description in rows:
        counts = f"{files} files" + (f", {links} links" if links else "")
        print(f"{name:<{width}}  {counts:<22}  {description}")
    return 0


def _catalog(args: argparse.Namespace) -> Any:
    """The catalog for ``--ref`` (fetched WHENCE) or the shipped one."""
    from lkfirmware.catalog import load_catalog

    ref = getattr(args, "ref", None)
    catalog = load_catalog()
    if ref is None or ref == catalog.ref:
        return catalog
    from lkfirmware.api import catalog_at

    return catalog_at(ref, **_source_options(args))


def _source_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "mirrors": getattr(args, "mirror", None) or None,
        "source": getattr(args, "source", None),
        "git_url": getattr(args, "git_url", None),
        "cache_dir": getattr(args, "cache_dir", None),
        "offline": getattr(args, "offline", False),
    }


# -- the parser --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lkfirmware",
        description="Put exactly the right Linux firmware into LinuxKit images.",
    )
    from lkfirmware import __version__

    parser.add_argument("--version", action="version", version=f"lkfirmware {__version__}")
    # An explicit prog keeps argparse from building a help formatter (and importing
    # shutil) on every start.
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", prog="lkfirmware")
    commands.required = True

    resolve = commands.add_parser(
        "resolve", help="list the firmware files and links that queries need"
    )
    _add_query_options(resolve)
    resolve.add_argument("--ref", help="linux-firmware ref (default: the catalog's pinned commit)")
    resolve.add_argument("--json", action="store_true", help="one JSON record per file and link")
    resolve.set_defaults(handler=cmd_resolve)

    drivers = commands.add_parser("drivers", help="list drivers with descriptions and file counts")
    drivers.add_argument("pattern", nargs="?", help="a glob or words to look for")
    drivers.add_argument("--json", action="store_true")
    drivers.set_defaults(handler=cmd_drivers)

    for register in _EXTRA_COMMANDS:
        register(commands)
    return parser


_EXTRA_COMMANDS: list[Callable[[Any], None]] = []  # filled below


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except LkFirmwareError as error:
        print(f"lkfirmware: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("lkfirmware: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
