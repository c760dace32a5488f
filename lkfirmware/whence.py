"""Parse linux-firmware's WHENCE index.

WHENCE is free text with a few line-oriented directives; this module reads every
construct the real file uses (see ``shared/linux-firmware/README.md``):

* sections separated by a line of dashes, each with one or more ``Driver:`` lines;
* ``File:`` and ``RawFile:`` (names optionally in double quotes, spaces allowed);
* ``Link: name -> target`` (target relative to the link's directory, spaces escaped
  with backslashes);
* ``Version:``, ``Info:``, ``Source:`` after the file they describe;
* ``Licence:`` / ``License:`` ending a group of files, with the licence files it names,
  and ``SPDX-License-Identifier:``.

:func:`parse_whence` returns a :class:`Whence`; it rejects, with the line number,
anything that could escape the firmware root, links whose targets do not exist, and
files declared twice.  Links, chains of links and files below directory links resolve
with :meth:`Whence.resolve`.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from lkfirmware.errors import WhenceError
from lkfirmware.links import leaves_root, link_destination, resolve_links
from lkfirmware.plan import Licence

_SECTION_RULE = re.compile(r"^-{20,}\s*$")
_DIRECTIVE = re.compile(
    r"^(Driver|File|RawFile|Link|Version|Info|Source|Licence|License|SPDX-License-Identifier):"
    r"[ \t]*(.*?)\s*$"
)
_LICENCE_FILE = re.compile(r"\b((?:LICEN[CS]E|NOTICE)[\w.+-]*\w|GPL-[0-9][\w.]*\w|GPL-[0-9])")


@dataclass
class Section:
    """The text between two dash lines: drivers and the entries they own."""

    drivers: list[tuple[str, str]] = field(default_factory=list)
    """(name, description) of each ``Driver:`` line."""
    line: int = 0


@dataclass
class WhenceFile:
    """A ``File:`` or ``RawFile:`` entry."""

    path: str
    line: int
    section: int
    raw: bool = False
    licence: Licence | None = None
    version: str | None = None


@dataclass
class WhenceLink:
    """A ``Link:`` entry: ``path`` is the link, ``target`` as written (relative)."""

    path: str
    target: str
    line: int
    section: int
    licence: Licence | None = None


@dataclass
class Whence:
    """A parsed WHENCE: sections, files and links, in file order."""

    sections: list[Section]
    files: dict[str, WhenceFile]
    links: dict[str, WhenceLink]

    def drivers_of(self, section: int) -> tuple[str, ...]:
        """The driver names of section ``section``."""
        return tuple(name for name, _ in self.sections[section].drivers)

    def resolve(self, path: str) -> str:
        """The path that ``path`` names once every link in it is followed.

        Works for links, chains of links, and files below a directory link
        (``nvidia/ad103/gsp/x.bin`` -> ``nvidia/ad102/gsp/x.bin``).  Raises
        ``KeyError`` when the result is neither a file nor a directory of files.
        """
        final = resolve_links(path, {name: link.target for name, link in self.links.items()})
        if final in self.files or _is_directory(final, self.files):
            return final
        raise KeyError(path)


def _is_directory(path: str, files: dict[str, WhenceFile] | set[str]) -> bool:
    prefix = path.rstrip("/") + "/"
    return any(name.startswith(prefix) for name in files)


def _unquote_name(text: str) -> str:
    """A File:/RawFile: name: strip one pair of double quotes."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1]
    return text


def _unescape_link_name(text: str) -> str:
    """A Link: name or target: quotes stripped, backslash escapes undone."""
    text = _unquote_name(text)
    return re.sub(r"\\(.)", r"\1", text)


def _split_link(value: str) -> tuple[str, str] | None:
    match = re.match(r"^(.*?)\s+->\s+(.*)$", value)
    if not match:
        return None
    return _unescape_link_name(match.group(1)), _unescape_link_name(match.group(2))


def _path_problem(path: str) -> str | None:
    """Why ``path`` is not a safe name below the firmware root, or None."""
    if not path:
        return "empty name"
    if path.startswith("/"):
        return f"absolute path {path!r} (names are relative to the firmware root)"
    normal = posixpath.normpath(path)
    if leaves_root(normal):
        return f"{path!r} leads outside the firmware root"
    if normal != path or path.endswith("/"):
        return f"{path!r} is not a normal path (expected {normal!r})"
    return None


def _licence_from(text: str) -> Licence:
    files: list[str] = []
    for match in _LICENCE_FILE.finditer(text):
        name = match.group(1)
        if name not in files:
            files.append(name)
    return Licence(text=text, files=tuple(files))


class _Parser:
    def __init__(self, where: str) -> None:
        self.where = where
        self.sections: list[Section] = [Section(line=1)]
        self.files: dict[str, WhenceFile] = {}
        self.links: dict[str, WhenceLink] = {}
        self.errors: list[str] = []
        self.group: list[WhenceFile | WhenceLink] = []
        self.last_licence: tuple[Licence, list[WhenceFile | WhenceLink]] | None = None
        self.last_file: WhenceFile | None = None
        self.continuing_driver = False
        self.declared_at: dict[str, int] = {}

    def error(self, line: int, message: str) -> None:
        self.errors.append(f"{self.where}:{line}: {message}")

    def feed(self, number: int, line: str) -> None:
        if _SECTION_RULE.match(line):
            self.close_group()
            self.sections.append(Section(line=number))
            self.last_file = None
            self.continuing_driver = False
            return
        match = _DIRECTIVE.match(line)
        if not match:
            self.continue_driver(line)
            return
        self.continuing_driver = False
        key, value = match.group(1), match.group(2)
        handler = getattr(self, "on_" + key.replace("-", "_").lower())
        handler(number, value)

    def continue_driver(self, line: str) -> None:
        section = self.sections[-1]
        if self.continuing_driver and line.strip() and section.drivers:
            name, description = section.drivers[-1]
            section.drivers[-1] = (name, f"{description} {line.strip()}".strip())
        else:
            self.continuing_driver = False

    def on_driver(self, number: int, value: str) -> None:
        if " - " in value:
            name, description = value.split(" - ", 1)
        else:
            name, description = value, ""
        name = name.strip()
        short = name.split()[0] if name else ""
        if not short:
            self.error(number, "Driver: line without a name")
            return
        self.sections[-1].drivers.append((short, (description or value).strip()))
        self.continuing_driver = True

    def declare(self, number: int, path: str) -> bool:
        problem = _path_problem(path)
        if problem:
            self.error(number, problem)
            return False
        if path in self.declared_at:
            self.error(
                number, f"{path!r} is declared twice (first at line {self.declared_at[path]})"
            )
            return False
        self.declared_at[path] = number
        return True

    def on_file(self, number: int, value: str, raw: bool = False) -> None:
        path = _unquote_name(value)
        if not self.declare(number, path):
            return
        entry = WhenceFile(path=path, line=number, section=len(self.sections) - 1, raw=raw)
        self.files[path] = entry
        self.group.append(entry)
        self.last_file = entry

    def on_rawfile(self, number: int, value: str) -> None:
        self.on_file(number, value, raw=True)

    def on_link(self, number: int, value: str) -> None:
        parts = _split_link(value)
        if parts is None:
            self.error(number, f"Link: without ' -> ': {value!r}")
            return
        name, target = parts
        if target.startswith("/"):
            self.error(number, f"link {name!r} has an absolute target {target!r}")
            return
        if not self.declare(number, name):
            return
        destination = link_destination(name, target)
        if leaves_root(destination):
            self.error(number, f"link {name!r} -> {target!r} leads outside the firmware root")
            return
        entry = WhenceLink(name, target, number, len(self.sections) - 1)
        self.links[name] = entry
        self.group.append(entry)

    def on_version(self, number: int, value: str) -> None:
        if self.last_file is not None and self.last_file.version is None:
            self.last_file.version = value

    def on_info(self, number: int, value: str) -> None:
        """Free-form information about the last file; not needed by lkfirmware."""

    def on_source(self, number: int, value: str) -> None:
        """Where the last file's source is; not needed by lkfirmware."""

    def on_licence(self, number: int, value: str) -> None:
        licence = _licence_from(value)
        for entry in self.group:
            entry.licence = licence
        self.last_licence = (licence, self.group)
        self.group = []

    on_license = on_licence

    def on_spdx_license_identifier(self, number: int, value: str) -> None:
        if self.last_licence is None:
            return
        licence, group = self.last_licence
        with_spdx = Licence(licence.text, licence.files, value)
        for entry in group:
            entry.licence = with_spdx
        self.last_licence = None

    def close_group(self) -> None:
        self.group = []
        self.last_licence = None

    def check_links(self) -> None:
        targets = {name: link.target for name, link in self.links.items()}
        file_names = set(self.files)
        for name, link in self.links.items():
            try:
                final = resolve_links(name, targets)
            except ValueError as error:
                self.error(link.line, f"link {name!r}: {error}")
                continue
            if final not in file_names and not _is_directory(final, file_names):
                self.error(
                    link.line,
                    f"link {name!r} -> {link.target!r} points at {final!r}, "
                    "which WHENCE does not declare",
                )


def parse_whence(text: str, where: str = "WHENCE") -> Whence:
    """Parse WHENCE text; raise :class:`WhenceError` listing every problem by line.

    >>> w = parse_whence("Driver: x - y\\n\\nFile: a/b.bin\\nLink: c.bin -> a/b.bin\\n")
    >>> w.resolve("c.bin")
    'a/b.bin'
    """
    parser = _Parser(where)
    for number, line in enumerate(text.splitlines(), start=1):
        parser.feed(number, line)
    parser.check_links()
    if parser.errors:
        shown = "\n  ".join(parser.errors[:20])
        more = f"\n  ... and {len(parser.errors) - 20} more" if len(parser.errors) > 20 else ""
        raise WhenceError(
            f"{where} is malformed ({len(parser.errors)} problem(s)):\n  {shown}{more}\n"
            "Fix the index, or use a linux-firmware ref whose WHENCE is valid."
        )
    return Whence(sections=parser.sections, files=parser.files, links=parser.links)
