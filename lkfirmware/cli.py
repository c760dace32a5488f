"""The ``lkfirmware`` command line.

Sub-commands: ``resolve``, ``drivers``, ``fetch``, ``sync``, ``modules``, ``cache``.
Each handler imports what it needs when it runs, and only the invoked sub-command's
options are built, so that ``lkfirmware resolve`` starts almost as fast as Python does.

Exit statuses: 0 ok, 1 ``--check`` found changes, 2 bad input, 3 fetch failed,
4 integrity failure (see :mod:`lkfirmware.errors`).
"""

from __future__ import annotations

import argparse
import os
import sys

from lkfirmware.errors import EXIT_CHECK_FAILED, LkFirmwareError, UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from lkfirmware.api import ConfigUpdate, Fetched
    from lkfirmware.catalog import Catalog

    Handler = Callable[[argparse.Namespace], int]


def _print_json(data: object) -> None:
    import json

    json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"lkfirmware: warning: {message}", file=sys.stderr)


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, told the terminal width so that it does not import shutil:
    argparse builds one for every ``add_argument`` call, and start-up time matters."""

    width: int | None = None

    def __init__(self, prog: str) -> None:
        if _HelpFormatter.width is None:
            try:
                columns = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(2).columns
            except (ValueError, OSError):
                columns = 80
            _HelpFormatter.width = max(columns - 2, 40)
        super().__init__(prog, width=_HelpFormatter.width)


# -- options shared by several commands --------------------------------------------------


def _query_options(parser: argparse.ArgumentParser, *, queries: bool = True) -> None:
    if queries:
        parser.add_argument(
            "queries",
            nargs="*",
            metavar="QUERY",
            help="module or driver (brcmfmac), chip (brcmfmac43602), path or glob",
        )
    parser.add_argument("--board", help="board for board-specific files: raspberrypi,4-model-b")
    parser.add_argument("--all-boards", action="store_true", help="take every board's files")
    parser.add_argument("--ref", help="linux-firmware tag or commit (default: the pinned commit)")


def _source_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where blobs come from")
    group.add_argument(
        "--mirror",
        action="append",
        metavar="URL",
        help="plain-blob mirror: kernel.org, gitlab, a URL template with {path} and {ref}, "
        "or a folder / file:// URL (repeat to fall back; env LKFIRMWARE_MIRRORS)",
    )
    group.add_argument("--source", choices=("plain", "git", "dir"), help="default: plain")
    group.add_argument("--git-url", help="repository for --source git (env LKFIRMWARE_GIT_URL)")
    group.add_argument("--cache-dir", help="shared blob cache (env LKFIRMWARE_CACHE_DIR)")
    group.add_argument("--jobs", type=int, default=8, help="parallel downloads (default 8)")
    group.add_argument("--offline", action="store_true", help="use only the cache")
    group.add_argument("--lock", help="lock file (default: lkfirmware.lock beside the config)")
    group.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    group.add_argument("--json", action="store_true", help="per-file JSON records")


def _kernel_options(parser: argparse.ArgumentParser, *, modules: bool = True) -> None:
    group = parser.add_argument_group("kernel")
    group.add_argument("--kernel", help="modules dir (lib/modules/VERSION), kernel.tar or .ko")
    if modules:
        group.add_argument("--modules", help="comma-separated modules whose firmware to add")
        group.add_argument("--all-modules", action="store_true", help="every module's firmware")
    group.add_argument("--strict", action="store_true", help="missing firmware is an error")
    group.add_argument("--with-licences", action="store_true", help="add the licence files")
    group.add_argument(
        "--compress",
        choices=("xz", "zstd"),
        help="stage compressed firmware (kernels with CONFIG_FW_LOADER_COMPRESS only)",
    )


def _output_options(parser: argparse.ArgumentParser, *, config: bool = True) -> None:
    group = parser.add_argument_group("LinuxKit config")
    if config:
        target = group.add_mutually_exclusive_group()
        target.add_argument("--config", help="linuxkit yml to add files: entries to")
        target.add_argument("--output", help="write a firmware-only yml (just files:)")
    group.add_argument("--dest", help="where to stage blobs (default: firmware/ beside the yml)")
    group.add_argument(
        "--absolute-sources", action="store_true", help="absolute source: paths in the yml"
    )
    group.add_argument("--prune", action="store_true", help="drop firmware no longer resolved")
    group.add_argument("--check", action="store_true", help="exit 1 and show a diff if stale")
    group.add_argument("--dry-run", action="store_true", help="show the diff, change nothing")
    group.add_argument(
        "--merge-duplicate-files",
        action="store_true",
        help="merge two top-level files: keys into one (LinuxKit rejects duplicates)",
    )


# -- resolve / drivers -------------------------------------------------------------------


def _catalog(args: argparse.Namespace) -> Catalog:
    """The catalog for ``--ref`` (that ref's WHENCE) or the shipped one."""
    from lkfirmware.catalog import load_catalog

    ref = getattr(args, "ref", None)
    catalog = load_catalog()
    if ref is None or ref == catalog.ref:
        return catalog
    from lkfirmware.api import catalog_at

    return catalog_at(
        ref,
        mirrors=getattr(args, "mirror", None),
        source=getattr(args, "source", None),
        git_url=getattr(args, "git_url", None),
        cache_dir=getattr(args, "cache_dir", None),
        offline=getattr(args, "offline", False),
    )


def cmd_resolve(args: argparse.Namespace) -> int:
    from lkfirmware.resolver import resolve

    plan = resolve(
        args.queries, board=args.board, all_boards=args.all_boards, catalog=_catalog(args)
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
    pattern = (args.pattern or "").lower()
    rows = []
    for name in sorted(catalog.drivers, key=str.lower):
        driver = catalog.drivers[name]
        text = f"{name} {driver.description}".lower()
        if pattern and not (fnmatch.fnmatch(name.lower(), pattern) or pattern in text):
            continue
        files = sum(1 for entry in driver.entries if catalog.has_file(entry))
        rows.append((name, files, len(driver.entries) - files, driver.description))
    if args.json:
        _print_json(
            [{"driver": n, "files": f, "links": k, "description": d} for n, f, k, d in rows]
        )
        return 0
    if not rows:
        print(f"lkfirmware: no driver matches {args.pattern!r}", file=sys.stderr)
        return 2
    width = max(len(row[0]) for row in rows)
    for name, files, links, description in rows:
        counts = f"{files} files" + (f", {links} links" if links else "")
        print(f"{name:<{width}}  {counts:<22}  {description}")
    return 0


# -- fetch / sync ------------------------------------------------------------------------


def _modules_list(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [name.strip() for name in text.split(",") if name.strip()]


def _fetch(args: argparse.Namespace, queries: Sequence[str], kernel: Any = None) -> Fetched:
    from lkfirmware.api import default_lock, fetch, pinned_ref

    config = getattr(args, "config", None) or getattr(args, "output", None)
    lock = args.lock or default_lock(config)
    if args.ref is None and lock is not None:
        args.ref = pinned_ref(lock)
    fetched = fetch(
        queries,
        board=args.board,
        all_boards=args.all_boards,
        ref=args.ref,
        mirrors=args.mirror,
        source=args.source,
        git_url=args.git_url,
        cache_dir=args.cache_dir,
        jobs=args.jobs,
        offline=args.offline,
        lock=lock,
        update_lock=not (args.dry_run or args.check),
        progress=False if args.quiet or args.json else None,
        kernel=kernel if kernel is not None else args.kernel,
        modules=getattr(args, "module_names", None),
        all_modules=getattr(args, "all_modules", False),
        strict=args.strict,
        with_licences=args.with_licences,
    )
    for note in fetched.plan.notes:
        _note(note)
    for warning in fetched.warnings:
        _warn(warning)
    return fetched


def _short_ref(ref: str) -> str:
    """A commit id shortened as git does; tags, branches and local:<folder> in full."""
    is_commit = len(ref) == 40 and all(c in "0123456789abcdef" for c in ref.lower())
    return ref[:12] if is_commit else ref


def _report_fetch(args: argparse.Namespace, fetched: Fetched) -> None:
    from lkfirmware.cache import human_size

    result = fetched.result
    if args.json:
        _print_json(result.records())
        return
    if not (getattr(args, "config", None) or getattr(args, "output", None)):
        for blob in result.blobs:
            print(f"{blob.path}\t{blob.size}\t{blob.location}")
        for link in result.links:
            print(f"{link.path} -> {link.target}")
    if not args.quiet:
        count = len(result.blobs)
        total = result.downloaded_bytes + result.cached_bytes
        print(
            f"{count} file(s), {len(result.links)} link(s) at {_short_ref(result.ref)}: "
            f"{human_size(total)}; downloaded {human_size(result.downloaded_bytes)}, "
            f"from the cache {human_size(result.cached_bytes)}",
            file=sys.stderr,
        )


def _write(args: argparse.Namespace, fetched: Fetched, config: str | None) -> int:
    """Stage and write the config or firmware yml; handle --check and --dry-run."""
    from lkfirmware import api

    write = not (args.check or args.dry_run)
    options: dict[str, Any] = {
        "dest": args.dest,
        "absolute_sources": args.absolute_sources,
        "compress": args.compress,
        "write": write,
    }
    update: ConfigUpdate
    if getattr(args, "output", None):
        update = api.write_firmware_yml(args.output, fetched, **options)
    elif config:
        update = api.add_to_config(
            config,
            fetched,
            prune=args.prune,
            merge_duplicate_files=args.merge_duplicate_files,
            **options,
        )
    else:
        return 0
    change = update.change
    stale = [item.staged for item in update.staged if item.changed]
    if args.check or args.dry_run:
        sys.stdout.write(change.diff())
        for path in stale:
            print(f"would stage {path}")
        for path in update.removed_files:
            print(f"would remove {path}")
        if args.check and update.changed:
            print(
                f"lkfirmware: {change.path} or its staged firmware is out of date", file=sys.stderr
            )
            return EXIT_CHECK_FAILED
        return 0
    if config and change.new_text:
        from lkfirmware.config import default_mode_warnings

        for warning in default_mode_warnings(change.new_text, str(change.path)):
            _warn(warning)
    if not args.quiet:
        if change.changed:
            print(
                f"{change.path}: {len(change.added)} added, {len(change.updated)} updated, "
                f"{len(change.removed)} removed",
                file=sys.stderr,
            )
        else:
            print(f"{change.path}: up to date", file=sys.stderr)
        if stale:
            print(f"staged {len(stale)} file(s) under {update.dest}", file=sys.stderr)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    if args.check and args.dry_run:
        raise UsageError("--check and --dry-run do not go together; choose one")
    if (args.check or args.dry_run) and not (args.config or args.output):
        raise UsageError("--check and --dry-run need --config or --output")
    if args.modules and not args.kernel:
        raise UsageError("--modules needs --kernel PATH (use queries for the catalog's modules)")
    writing = {"--dest": args.dest, "--prune": args.prune, "--compress": args.compress,
               "--absolute-sources": args.absolute_sources,
               "--merge-duplicate-files": args.merge_duplicate_files}  # fmt: skip
    if not (args.config or args.output):
        given = [option for option, value in writing.items() if value]
        if given:
            raise UsageError(f"{', '.join(given)} only apply with --config or --output")
    elif args.output and (args.prune or args.merge_duplicate_files):
        raise UsageError("--prune and --merge-duplicate-files apply to --config, not --output")
    args.module_names = _modules_list(args.modules)
    from lkfirmware.api import check_config, check_output

    if args.config:
        check_config(args.config, merge_duplicate_files=args.merge_duplicate_files)
    if args.output:
        check_output(args.output)
    fetched = _fetch(args, args.queries)
    _report_fetch(args, fetched)
    return _write(args, fetched, args.config)


def cmd_sync(args: argparse.Namespace) -> int:
    from lkfirmware.api import scan_kernel, sync_modules

    if args.check and args.dry_run:
        raise UsageError("--check and --dry-run do not go together; choose one")
    from lkfirmware.api import check_config

    check_config(args.config_file, merge_duplicate_files=args.merge_duplicate_files)
    kernel = scan_kernel(args.kernel) if args.kernel else None
    names, notes = sync_modules(args.config_file, kernel=kernel)
    for note in notes:
        _note(note)
    if not names:
        print(f"{args.config_file}: loads no module that needs firmware", file=sys.stderr)
        if not args.prune:  # with --prune, firmware entries left from before go
            return 0
    args.module_names, args.all_modules = names, False
    args.config, args.output = args.config_file, None
    fetched = _fetch(args, [], kernel=kernel)
    _report_fetch(args, fetched)
    return _write(args, fetched, args.config_file)


# -- modules / cache ---------------------------------------------------------------------


def cmd_modules(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lkfirmware.api import scan_kernel

    scan = scan_kernel(Path(args.path))
    modules = sorted(scan.modules.values(), key=lambda m: m.name)
    if args.firmware_only:
        modules = [m for m in modules if m.firmware]
    if args.json:
        _print_json(
            {
                "kernel": scan.kernel_version,
                "modules": {
                    m.name: {
                        "path": m.path,
                        "firmware": list(m.firmware),
                        "depends": list(m.depends),
                        "builtin": m.builtin,
                    }
                    for m in modules
                },
                "problems": [{"path": p.path, "reason": p.reason} for p in scan.problems],
            }
        )
        return 0
    for module in modules:
        depends = f"  (depends: {', '.join(module.depends)})" if module.depends else ""
        print(f"{module.name}{depends}")
        for firmware in module.firmware:
            print(f"    {firmware}")
    with_firmware = sum(1 for m in scan.modules.values() if m.firmware)
    print(
        f"{len(scan.modules)} modules, {with_firmware} request firmware"
        + (f"; {len(scan.problems)} file(s) skipped" if scan.problems else ""),
        file=sys.stderr,
    )
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from lkfirmware.api import open_cache
    from lkfirmware.cache import human_size

    cache = open_cache(args.cache_dir)
    if args.action == "info":
        info = cache.info()
        print("\n".join(info.lines()))
        return 0
    if args.action == "verify":
        problems = cache.verify(repair=args.repair)
        for problem in problems:
            print(problem)
        print(f"{len(problems)} problem(s) in {cache.root}", file=sys.stderr)
        return 4 if problems and not args.repair else 0
    if args.action == "prune":
        days = args.older_than_days
        if days is not None and days < 0:
            raise UsageError(f"--older-than-days must not be negative, not {days}")
        result = cache.prune(
            keep_refs=args.keep_ref or None,
            older_than=days * 86400 if days is not None else None,
            dry_run=args.dry_run,
        )
        verb = "would free" if args.dry_run else "freed"
        print(
            f"{verb} {human_size(result.freed_bytes)}: {result.blobs} blob(s), "
            f"{result.entries} index entries, {result.texts} text(s), "
            f"{result.incomplete} incomplete download(s)"
        )
        return 0
    removed = cache.clear()
    print(f"cleared {cache.root}: freed {human_size(removed)}")
    return 0


# -- the parser --------------------------------------------------------------------------


def _configure_resolve(parser: argparse.ArgumentParser) -> None:
    _query_options(parser)
    parser.add_argument("--json", action="store_true", help="one JSON record per file and link")


def _configure_drivers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", help="a glob, or words of the description")
    parser.add_argument("--json", action="store_true")


def _configure_fetch(parser: argparse.ArgumentParser) -> None:
    _query_options(parser)
    _source_options(parser)
    _kernel_options(parser)
    _output_options(parser)


def _configure_sync(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config_file", metavar="CONFIG", help="the linuxkit yml to sync")
    _query_options(parser, queries=False)
    _source_options(parser)
    _kernel_options(parser, modules=False)
    _output_options(parser, config=False)


def _configure_modules(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="lib/modules/VERSION, kernel.tar or .ko")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--firmware-only", action="store_true", help="only modules that request firmware"
    )


def _configure_cache(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("info", "verify", "prune", "clear"))
    parser.add_argument("--cache-dir", help="the cache (env LKFIRMWARE_CACHE_DIR)")
    parser.add_argument("--repair", action="store_true", help="verify: drop damaged entries")
    parser.add_argument("--keep-ref", action="append", help="prune: keep only these refs")
    parser.add_argument("--older-than-days", type=float, help="prune: entries unused this long")
    parser.add_argument("--dry-run", action="store_true", help="prune: only say what would go")


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {
    "resolve": ("list the firmware files and links that queries need", _configure_resolve,
                cmd_resolve),
    "drivers": ("list drivers with descriptions and file counts", _configure_drivers,
                cmd_drivers),
    "fetch": ("download firmware into the cache; stage it and write a LinuxKit yml",
              _configure_fetch, cmd_fetch),
    "sync": ("fetch the firmware of the modules a LinuxKit yml loads, and write it in",
             _configure_sync, cmd_sync),
    "modules": ("list a kernel's modules with the firmware they request", _configure_modules,
                cmd_modules),
    "cache": ("inspect, verify, prune or clear the blob cache", _configure_cache, cmd_cache),
}  # fmt: skip


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; when ``argv`` names a command, only that command's options are built."""
    from lkfirmware import __version__

    parser = argparse.ArgumentParser(
        prog="lkfirmware",
        description="Put exactly the right Linux firmware into LinuxKit images.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lkfirmware {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", prog="lkfirmware")
    commands.required = True
    chosen = next((arg for arg in argv or () if not arg.startswith("-")), None)
    # Every command is listed for `lkfirmware --help` and for a mistyped command; when a
    # known command is given, only its parser is built (each costs start-up time).
    names = [chosen] if chosen in COMMANDS else list(COMMANDS)
    for name in names:
        summary, configure, handler = COMMANDS[name]
        sub = commands.add_parser(
            name, help=summary, description=summary, formatter_class=_HelpFormatter
        )
        sub.set_defaults(handler=handler)
        if name == chosen:
            configure(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(arguments).parse_args(arguments)
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
