"""Turn queries into a plan: which files and links a driver, chip, board or path needs.

A query is one of (tried in this order):

* a glob over firmware paths: ``rtl_nic/rtl8168*``;
* an exact firmware path or link name: ``brcm/brcmfmac43602-pcie.bin``;
* a kernel module or WHENCE driver name: ``brcmfmac``, ``iwlwifi``, ``r8169`` -- every file
  of that driver (its WHENCE sections, plus what the module and its dependencies request);
* a chip or firmware stem: ``brcmfmac43602``, ``rtl8168h`` -- exactly the names the kernel
  requests for that chip (``MODULE_FIRMWARE``), with board-specific files chosen by
  ``board``.

Board-specific files are those the kernel finds through a board glob such as
``brcm/brcmfmac*-sdio.*.txt``: ``brcm/<base>.<board>.<ext>``.
"""

from __future__ import annotations

import fnmatch
import posixpath
from itertools import chain

from lkfirmware.catalog import GLOB_CHARS, Catalog, ModuleRequests, load_catalog, normalise_module
from lkfirmware.errors import QueryError
from lkfirmware.plan import FirmwareFile, FirmwareLink, Plan

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

_STEM_SEPARATORS = "-._"


def is_board_glob(basename: str) -> bool:
    """True for a glob of board-specific files, ``<prefix>*<suffix>.*.<ext>``.

    >>> is_board_glob("brcmfmac*-sdio.*.txt"), is_board_glob("brcmfmac*-pcie.txt")
    (True, False)
    """
    head, middle, ext = basename.partition(".*.")
    return bool(middle) and head.count("*") == 1 and not any(c in ext for c in "*.?[")


class _Glob:
    """A glob with its literal head and tail, checked before the (compiled) pattern."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        wild = [i for i, char in enumerate(pattern) if char in GLOB_CHARS]
        self.head = pattern[: wild[0]]
        self.tail = pattern[wild[-1] + 1 :] if pattern[wild[-1]] != "[" else ""

    def matches(self, name: str) -> bool:
        return (
            name.startswith(self.head)
            and name.endswith(self.tail)
            and fnmatch.fnmatchcase(name, self.pattern)
        )


class _Requests:
    """Every name the catalog's modules request, split by kind."""

    def __init__(self) -> None:
        self.exact: set[str] = set()
        self.globs: list[_Glob] = []
        self.board_globs: list[_Glob] = []

    @classmethod
    def of(cls, modules: Iterable[ModuleRequests]) -> _Requests:
        requests = cls()
        names = set(chain.from_iterable(module.firmware for module in modules))
        globs = sorted(name for name in names if "*" in name or "?" in name or "[" in name)
        requests.exact = names.difference(globs)
        for name in globs:
            kind = (
                requests.board_globs if is_board_glob(posixpath.basename(name)) else requests.globs
            )
            kind.append(_Glob(name))
        return requests

    def requested(self, name: str) -> bool:
        return name in self.exact or any(glob.matches(name) for glob in self.globs)

    def board_of(self, name: str) -> tuple[str, str] | None:
        """(base, board) when ``name`` is a board-specific file, else None."""
        if not any(glob.matches(name) for glob in self.board_globs):
            return None
        directory, basename = posixpath.split(name)
        first, last = basename.find("."), basename.rfind(".")
        if first < 0 or last <= first:
            return None
        return posixpath.join(directory, basename[:first]), basename[first + 1 : last]


class _Resolver:
    def __init__(self, catalog: Catalog, board: str | None, all_boards: bool) -> None:
        self.catalog = catalog
        self.board = board
        self.all_boards = all_boards
        self.requests = _Requests.of(catalog.modules.values())
        self.names: dict[str, None] = {}
        self.notes: list[str] = []

    def add(self, names: Iterable[str]) -> None:
        for name in names:
            self.names.setdefault(name, None)

    def query(self, text: str) -> None:
        query = text.strip().lstrip("/")
        if query.startswith("lib/firmware/"):
            query = query[len("lib/firmware/") :]
        if not query:
            raise QueryError("an empty query names no firmware")
        if not GLOB_CHARS.isdisjoint(query):
            matches = self.catalog.expand(query)
            if not matches:
                raise QueryError(f"no firmware path matches the glob {text!r}")
            self.add(self.keep_board(matches))
        elif "/" in query or query in self.catalog.links or self.catalog.has_file(query):
            query = posixpath.normpath(query)  # ./brcm/x.bin, brcm//x.bin
            if self.catalog.final_path(query) is None:
                raise QueryError(self.unknown(query, "no firmware file or link is named"))
            self.add([query])
        elif self.catalog.driver(query) is not None or self.catalog.module(query) is not None:
            self.add(self.keep_board(self.driver_names(query)))
        else:
            self.add(self.chip_names(query))

    # -- drivers and modules -------------------------------------------------------------

    def driver_names(self, name: str) -> list[str]:
        names: list[str] = []
        driver = self.catalog.driver(name)
        if driver is not None:
            names.extend(driver.entries)
        for module in self.module_closure(name):
            for request in module.firmware:
                names.extend(self.catalog.expand(request))
        return names

    def module_closure(self, name: str) -> list[ModuleRequests]:
        """The module and, transitively, the modules it depends on."""
        found: dict[str, ModuleRequests] = {}
        pending = [normalise_module(name)]
        while pending:
            current = pending.pop()
            module = self.catalog.modules.get(current)
            if module is None or current in found:
                continue
            found[current] = module
            pending.extend(module.depends)
        return list(found.values())

    def keep_board(self, names: Iterable[str], *, unchosen: str = "keep") -> list[str]:
        """Drop other boards' files when a board was chosen.  With no board chosen,
        ``unchosen="drop"`` drops every board's files and says so in a note (what a
        kernel requests through a board glob is only ever one board's file)."""
        if self.all_boards or (self.board is None and unchosen == "keep"):
            return list(names)
        kept: list[str] = []
        skipped: dict[str, set[str]] = {}
        chosen_found = False
        for name in names:
            board = self.requests.board_of(name)
            if board is None or board[1] == self.board:
                kept.append(name)
                chosen_found = chosen_found or board is not None
            else:
                skipped.setdefault(board[0], set()).add(board[1])
        if self.board is not None and skipped and not chosen_found:
            boards = ", ".join(sorted(set().union(*skipped.values())))
            raise QueryError(
                f"no board-specific file is for board {self.board!r}. Boards: {boards}"
            )
        if self.board is None and skipped:
            bases = ", ".join(sorted(skipped))
            self.notes.append(
                f"board-specific files of {len(skipped)} chip(s) left out ({bases}); "
                "choose one with --board BOARD, or take them all with --all-boards"
            )
        return kept

    # -- chips ---------------------------------------------------------------------------

    def chip_candidates(self, stem: str) -> list[str]:
        """Names whose file name is ``stem`` or starts with it and a separator; when
        none is written so, the same ignoring case (``RTL8168H``)."""
        names = self.catalog.names()
        found = _named_after(stem, [name for name in names if stem in name])
        if not found:
            low = stem.lower()
            found = _named_after(low, [n for n in names if low in n.lower()], fold=True)
        return found

    def chip_names(self, stem: str) -> list[str]:
        candidates = self.chip_candidates(stem)
        if not candidates:
            raise QueryError(self.unknown(stem, "no driver, module, chip or firmware is named"))
        general: list[str] = []
        boards: dict[str, dict[str, list[str]]] = {}
        for name in candidates:
            board = self.requests.board_of(name)
            if board is None:
                general.append(name)
            else:
                boards.setdefault(board[0], {}).setdefault(board[1], []).append(name)
        requested = [name for name in general if self.requests.requested(name)]
        if not requested:
            requested = general
            self.notes.append(
                f"{stem}: no module of kernel {self.catalog.provenance.get('kernel', '?')} "
                f"requests these files by name; giving every file named {stem}*"
            )
        chosen = list(requested)
        for base, by_board in sorted(boards.items()):
            chosen.extend(self.board_files(base, by_board, requested))
        return chosen

    def board_files(
        self, base: str, by_board: dict[str, list[str]], general: Sequence[str]
    ) -> list[str]:
        available = ", ".join(sorted(by_board))
        if self.all_boards:
            return [name for names in by_board.values() for name in names]
        if self.board is not None:
            if self.board in by_board:
                return by_board[self.board]
            if any(name.endswith(".txt") for names in by_board.values() for name in names):
                raise QueryError(
                    f"{base} has no file for board {self.board!r}.\n"
                    f"Boards with files for it: {available}"
                )
            return []
        needs_nvram = any(n.endswith(".txt") for names in by_board.values() for n in names)
        if needs_nvram and f"{base}.txt" not in general:
            self.notes.append(
                f"{base} needs a board-specific NVRAM file ({base}.<board>.txt) and no board "
                f"was chosen; pass --board BOARD (or --all-boards). Boards: {available}"
            )
        return []

    # -- messages ------------------------------------------------------------------------

    def unknown(self, query: str, what: str) -> str:
        import difflib

        pool = set(self.catalog.drivers) | set(self.catalog.modules)
        if "/" in query:
            pool = set(self.catalog.names())
        else:
            pool |= {_stem_of(posixpath.basename(name)) for name in self.catalog.names()}
        close = difflib.get_close_matches(query, sorted(pool), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return (
            f"{what} {query!r} in linux-firmware {self.catalog.ref[:12] or '(unknown ref)'}."
            f"{hint} `lkfirmware drivers PATTERN` lists drivers."
        )

    # -- the plan ------------------------------------------------------------------------

    def plan(self) -> Plan:
        files: dict[str, FirmwareFile] = {}
        links: dict[str, FirmwareLink] = {}
        pending, seen = list(self.names), set(self.names)
        while pending:
            name = pending.pop()
            for link in self.catalog.links_on_the_way(name):
                links[link.path] = link
            final = self.catalog.final_path(name)
            item = self.catalog.file(final) if final is not None else None
            if item is not None:
                files[item.path] = item
            elif final is not None:  # a directory: its files, and the links inside it
                below = [n for n in self.catalog.names_below(final) if n not in seen]
                seen.update(below)
                pending.extend(below)
        return Plan(
            ref=self.catalog.ref,
            files=tuple(files[p] for p in sorted(files)),
            links=tuple(links[p] for p in sorted(links)),
            notes=tuple(self.notes),
        )


def _named_after(stem: str, names: list[str], *, fold: bool = False) -> list[str]:
    """The names whose file name is ``stem``, or ``stem`` and a separator and more."""
    found = []
    for name in names:
        basename = name.rpartition("/")[2]
        basename = basename.lower() if fold else basename
        if basename.startswith(stem) and (
            len(basename) == len(stem) or basename[len(stem)] in _STEM_SEPARATORS
        ):
            found.append(name)
    return found


def _stem_of(basename: str) -> str:
    """``brcmfmac43455`` for ``brcmfmac43455-sdio.bin``: up to the first ``-`` or ``.``."""
    cut = [i for i in (basename.find("-"), basename.find(".")) if i >= 0]
    return basename[: min(cut)] if cut else basename


def resolve(
    queries: Sequence[str] | str,
    *,
    board: str | None = None,
    all_boards: bool = False,
    catalog: Catalog | None = None,
    names: Iterable[str] = (),
) -> Plan:
    """The firmware files and links that ``queries`` need.

    :param queries: module or driver names, chip stems, paths or globs.
    :param board: the board whose board-specific files to take (a devicetree
        ``compatible`` with ``/`` as ``-``, e.g. ``raspberrypi,4-model-b``, or a DMI name).
    :param all_boards: take every board's files.
    :param catalog: the catalog to use; the shipped driver map by default.
    :param names: catalog names found elsewhere (e.g. what a kernel's modules request,
        globs expanded); board-specific files among them are kept only for ``board``
        (or all of them with ``all_boards``).
    :returns: a :class:`~lkfirmware.plan.Plan`; its ``notes`` say what the user may
        still have to choose.
    :raises QueryError: for a query that matches nothing (with close names).

    >>> [f.path for f in resolve("brcmfmac43602").files]
    ['brcm/brcmfmac43602-pcie.bin']
    """
    if isinstance(queries, str):
        queries = [queries]
    names = list(names)
    if not queries and not names:
        raise QueryError("no query given: name a driver, chip, firmware path or glob")
    resolver = _Resolver(catalog or load_catalog(), board, all_boards)
    for query in queries:
        resolver.query(query)
    resolver.add(resolver.keep_board(names, unchosen="drop"))
    return resolver.plan()
