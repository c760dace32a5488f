"""Write firmware ``files:`` entries into a LinuxKit yml, changing nothing else.

The user's config is edited surgically: ruamel.yaml parses the text into events, which
:func:`parse_yaml` turns into a small tree of :class:`YamlNode` that knows where every
node starts and ends in the text.  The new bytes are computed by splicing text at those
positions, never by re-dumping the document, so comments, blank lines, key order,
quoting, flow lists, block scalars, anchors, document markers, CRLF line endings and a
BOM all survive.  Only the firmware entries that change are touched.

Every edit is checked before it is returned: the new text is parsed again, each wanted
entry must read back as meant, and every other key and entry must read back exactly as
before; otherwise :class:`~lkfirmware.errors.ConfigError` is raised and nothing is
written.  Two shapes are refused rather than guessed at: a ``files:`` list written in flow
style (``files: [{path: ...}]``, other than ``[]``), and a block scalar right at the end of
a file without a final line break, which anything appended after it would change.

Example::

    >>> entry = FilesEntry("/lib/firmware/brcm/brcmfmac43602-pcie.bin",
    ...                    source="firmware/brcm/brcmfmac43602-pcie.bin")
    >>> change = edit_config_text("kernel:\\n  image: k\\n", [entry])
    >>> print(change.new_text, end="")
    kernel:
      image: k
    files:
      - path: /lib/firmware/brcm/brcmfmac43602-pcie.bin
        source: firmware/brcm/brcmfmac43602-pcie.bin
        mode: "0644"
"""

from __future__ import annotations

import bisect
import difflib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lkfirmware.errors import ConfigError
from lkfirmware.files import atomic_write

FILES_KEY = "files"
"""The top-level key of a LinuxKit config that lists the files of the image."""

FIRMWARE_DIR = "lib/firmware/"
"""Where firmware lives in the image, as a normalised ``files:`` path prefix."""

FILES_ENTRY_KEYS = frozenset(
    {"path", "directory", "symlink", "contents", "source", "metadata", "optional", "mode"}
    | {"uid", "gid"}
)
"""Keys LinuxKit's schema allows in a ``files:`` entry (``additionalProperties: false``)."""

FIRMWARE_YML_HEADER = (
    "# Firmware for a LinuxKit image, written by lkfirmware; edits are overwritten.\n"
    "# Pass it to linuxkit beside your config: linuxkit build linuxkit.yml THIS-FILE.yml\n"
)

_CONTENT_KEYS = ("symlink", "source", "contents", "metadata", "directory")
_STR_TAG = "tag:yaml.org,2002:str"
_OCTAL_MODE = re.compile(r"[0-7]{1,4}")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class FilesEntry:
    """One ``files:`` entry that lkfirmware manages: a firmware file or a link.

    A regular file has ``source`` (the staged file, as it must appear in the yml); a link
    has ``symlink`` (the link text, verbatim).  ``mode`` is always written double-quoted.
    """

    path: str
    """Path in the image, e.g. ``/lib/firmware/brcm/brcmfmac43602-pcie.bin``."""
    source: str | None = None
    symlink: str | None = None
    mode: str = "0644"

    def __post_init__(self) -> None:
        if not normalise_path(self.path):
            raise ValueError(f"files entry with an empty path: {self!r}")
        if (self.source is None) == (self.symlink is None):
            raise ValueError(f"files entry {self.path}: give exactly one of source or symlink")
        if not _OCTAL_MODE.fullmatch(self.mode):
            raise ValueError(f"files entry {self.path}: mode {self.mode!r} is not octal")

    @property
    def key(self) -> str:
        """The path as LinuxKit compares it: one leading ``/`` stripped."""
        return normalise_path(self.path)

    def content_pairs(self) -> tuple[tuple[str, str], ...]:
        """The entry's keys besides ``path``, in the order they are written."""
        if self.symlink is not None:
            return (("symlink", self.symlink), ("mode", self.mode))
        assert self.source is not None
        return (("source", self.source), ("mode", self.mode))


@dataclass(frozen=True)
class ConfigChange:
    """What an edit did (or would do) to one config: old and new text and the paths."""

    path: Path | None
    old_text: str
    new_text: str
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """True when the new text differs from the old."""
        return self.old_text != self.new_text

    def diff(self) -> str:
        """A unified diff from the old to the new text, named after :attr:`path`."""
        name = str(self.path) if self.path is not None else "<config>"
        lines = difflib.unified_diff(
            split_lines(self.old_text), split_lines(self.new_text), name, name
        )
        return "".join(_terminated(line) for line in lines)


def normalise_path(path: str) -> str:
    """A ``files:`` path as LinuxKit compares it: exactly one leading ``/`` stripped."""
    return path[1:] if path.startswith("/") else path


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` with their line breaks; only CR, LF and CRLF break lines."""
    lines: list[str] = []
    start = 0
    for match in _LINE_BREAK.finditer(text):
        lines.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        lines.append(text[start:])
    return lines


def _terminated(line: str) -> str:
    if line.endswith(("\n", "\r")):
        return line
    return line + "\n\\ No newline at end of file\n"


# --------------------------------------------------------------------------- the YAML tree


@dataclass(eq=False)
class YamlNode:
    """A node of a parsed YAML document with its position in the text.

    ``start``/``end`` are character offsets: ``start`` includes an anchor or tag, ``end`` is
    just after the node's last character of content (block scalars: their last non-blank
    character, unless kept with ``+``).  Mappings keep every pair, duplicates included.
    """

    kind: str
    """``map``, ``seq``, ``scalar`` or ``alias``."""
    start: int
    end: int
    line: int
    """1-based line of ``start``."""
    flow: bool = False
    value: str = ""
    style: str | None = None
    """Scalar style: None (plain), ``'``, ``"``, ``|`` or ``>``."""
    tag: str | None = None
    pairs: list[tuple[YamlNode, YamlNode]] = field(default_factory=list)
    items: list[YamlNode] = field(default_factory=list)
    target: YamlNode | None = None
    """For an alias: the anchored node."""

    def resolved(self) -> YamlNode:
        """The node itself, or the anchored node an alias points to."""
        return self.target.resolved() if self.target is not None else self

    def scalar(self) -> str | None:
        """The scalar's text (through an alias), or None for a collection."""
        node = self.resolved()
        return node.value if node.kind == "scalar" else None

    def is_null(self) -> bool:
        """True for an empty value, ``~`` or ``null`` written plain and untagged."""
        node = self.resolved()
        return (
            node.kind == "scalar"
            and node.style is None
            and node.tag is None
            and (node.value in ("", "~", "null", "Null", "NULL"))
        )

    def get(self, key: str) -> YamlNode | None:
        """The value of the first pair whose key is ``key`` (mappings only)."""
        for pair_key, value in self.pairs:
            if pair_key.scalar() == key:
                return value
        return None

    def pairs_named(self, key: str) -> list[tuple[YamlNode, YamlNode]]:
        """Every pair whose key is ``key``, duplicates included."""
        return [pair for pair in self.pairs if pair[0].scalar() == key]


def parse_yaml(text: str, where: str = "<config>") -> YamlNode | None:
    """Parse one YAML document into a :class:`YamlNode` tree, without judging duplicates.

    Returns None for an empty document.  Raises :class:`ConfigError` (with ``where``, line
    and column) for invalid YAML, several documents, or an alias to an unknown anchor.
    """
    events = _yaml_events(text, where)
    documents = sum(1 for event in events if type(event).__name__ == "DocumentStartEvent")
    if documents > 1:
        raise ConfigError(
            f"{where}: holds {documents} YAML documents; a LinuxKit config is one document"
        )
    builder = _TreeBuilder(text, where)
    stream = iter(events)
    for event in stream:
        if type(event).__name__ == "DocumentStartEvent":
            return builder.document(stream)
    return None


def _yaml_events(text: str, where: str) -> list[Any]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        return list(YAML(typ="rt").parse(text))
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
        problem = error.problem or error.context or "syntax error"
        context = f" ({error.context})" if error.context and error.problem else ""
        raise ConfigError(
            f"{where}:{line}:{column}: invalid YAML: {problem}{context}; "
            "fix it and run again (the file was not changed)"
        ) from None
    except YAMLError as error:
        position = getattr(error, "position", None)
        place = _place(text, position) if isinstance(position, int) else ""
        reason = str(error).splitlines()[0]
        raise ConfigError(
            f"{where}{place}: invalid YAML: {reason}; fix it and run again "
            "(the file was not changed)"
        ) from None


def _place(text: str, index: int) -> str:
    index = max(0, min(index, len(text)))
    line = len(_LINE_BREAK.findall(text, 0, index)) + 1
    last_break = max(text.rfind("\n", 0, index), text.rfind("\r", 0, index))
    return f":{line}:{index - last_break}"


class _TreeBuilder:
    """Turns ruamel.yaml events into :class:`YamlNode` objects with text positions."""

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        self.anchors: dict[str, YamlNode] = {}

    def document(self, events: Iterator[Any]) -> YamlNode | None:
        event = next(events)
        if type(event).__name__ == "DocumentEndEvent":
            return None
        return self.node(event, events)

    def node(self, event: Any, events: Iterator[Any]) -> YamlNode:
        kind = type(event).__name__
        if kind == "ScalarEvent":
            node = self.scalar(event)
        elif kind == "AliasEvent":
            node = self.alias(event)
        elif kind == "MappingStartEvent":
            node = self.mapping(event, events)
        elif kind == "SequenceStartEvent":
            node = self.sequence(event, events)
        else:  # pragma: no cover - the parser guarantees a node here
            raise ConfigError(f"{self.where}: unexpected YAML event {kind}")
        anchor = getattr(event, "anchor", None)
        if anchor and kind != "AliasEvent":
            self.anchors[anchor] = node
        return node

    def _base(self, kind: str, event: Any) -> YamlNode:
        return YamlNode(
            kind=kind,
            start=event.start_mark.index,
            end=event.end_mark.index,
            line=event.start_mark.line + 1,
            tag=getattr(event, "tag", None),
        )

    def scalar(self, event: Any) -> YamlNode:
        node = self._base("scalar", event)
        node.value = event.value
        node.style = event.style
        if node.style in ("|", ">"):
            node.end = _block_scalar_end(self.text, node.start, node.end)
        return node

    def alias(self, event: Any) -> YamlNode:
        node = self._base("alias", event)
        node.target = self.anchors.get(event.anchor)
        if node.target is None:
            raise ConfigError(
                f"{self.where}:{node.line}: invalid YAML: alias *{event.anchor} names no "
                "anchor defined before it; fix it and run again (the file was not changed)"
            )
        return node

    def mapping(self, event: Any, events: Iterator[Any]) -> YamlNode:
        node = self._base("map", event)
        node.flow = bool(event.flow_style)
        for key_event in events:
            if type(key_event).__name__ == "MappingEndEvent":
                node.end = key_event.end_mark.index if node.flow else node.end
                break
            key = self.node(key_event, events)
            value = self.node(next(events), events)
            if not node.flow:
                _place_empty_value(self.text, key, value)
            node.pairs.append((key, value))
        if not node.flow and node.pairs:
            node.end = max(node.pairs[-1][0].end, node.pairs[-1][1].end)
        return node

    def sequence(self, event: Any, events: Iterator[Any]) -> YamlNode:
        node = self._base("seq", event)
        node.flow = bool(event.flow_style)
        for item_event in events:
            if type(item_event).__name__ == "SequenceEndEvent":
                node.end = item_event.end_mark.index if node.flow else node.end
                break
            node.items.append(self.node(item_event, events))
        if not node.flow and node.items:
            node.end = node.items[-1].end
        return node


def _block_scalar_end(text: str, start: int, end: int) -> int:
    """End of a block scalar's content: its trailing blank lines belong to it only if kept."""
    header = text[start : _line_end(text, start)].split(" #", 1)[0]
    if "+" in header.rsplit("|", 1)[-1].rsplit(">", 1)[-1]:
        return end
    while end > start and text[end - 1] in " \t\r\n":
        end -= 1
    return end


def _place_empty_value(text: str, key: YamlNode, value: YamlNode) -> None:
    """Put an empty value (``files:`` with nothing after it) right after its colon."""
    if value.kind != "scalar" or value.value or value.style or value.start != value.end:
        return
    index = key.end
    while index < len(text) and text[index] in " \t":
        index += 1
    if index < len(text) and text[index] == ":":
        value.start = value.end = index + 1
        value.line = key.line


def duplicate_keys(root: YamlNode | None) -> list[tuple[str, int, int]]:
    """Every duplicate mapping key in the tree: (key, first line, duplicate's line)."""
    found: list[tuple[str, int, int]] = []
    for node in _walk(root):
        seen: dict[str, int] = {}
        for key, _value in node.pairs:
            name = key.scalar()
            if name is None or name == "<<":
                continue
            if name in seen:
                found.append((name, seen[name], key.line))
            else:
                seen[name] = key.line
    return found


def _walk(root: YamlNode | None) -> Iterator[YamlNode]:
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        yield node
        for key, value in reversed(node.pairs):
            stack.extend((value, key))
        stack.extend(reversed(node.items))


# --------------------------------------------------------------------------- text helpers


class _Lines:
    """Line starts of a text, for columns and line ends by offset."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0] + [match.end() for match in _LINE_BREAK.finditer(text)]

    def start_of(self, index: int) -> int:
        return self.starts[bisect.bisect_right(self.starts, index) - 1]

    def column(self, index: int) -> int:
        """Columns from the line's start; a BOM before the first line takes none."""
        start = self.start_of(index)
        bom = start == 0 and index > 0 and self.text.startswith("\ufeff")
        return index - start - bom

    def next_start(self, index: int) -> int:
        """The start of the line after the one holding ``index`` (or the text's end)."""
        following = bisect.bisect_right(self.starts, index)
        return self.starts[following] if following < len(self.starts) else len(self.text)

    def end_after(self, index: int) -> int:
        """The offset after the line break that ends the line where content ends at index."""
        if index > 0 and self.text[index - 1] in "\r\n":
            return index
        following = bisect.bisect_right(self.starts, index)
        return self.starts[following] if following < len(self.starts) else len(self.text)


def _line_end(text: str, index: int) -> int:
    match = _LINE_BREAK.search(text, index)
    return match.start() if match else len(text)


def newline_of(text: str) -> str:
    """The line break the text uses (its first one), ``\\n`` when it has none."""
    match = _LINE_BREAK.search(text)
    return match.group() if match else "\n"


def _value_replacement(text: str, node: YamlNode, value: str) -> _Edit:
    """Replace a value, keeping its anchor (aliases elsewhere may use it), dropping a tag."""
    properties = text[node.start : _content_start(text, node)].split()
    anchors = [word + " " for word in properties if word.startswith("&")]
    return _Edit(node.start, node.end, "".join(anchors) + value)


def _content_start(text: str, node: YamlNode) -> int:
    """Where a node's content begins, after its anchor and tag."""
    index = node.start
    while index < node.end and text[index] in "&!":
        while index < len(text) and text[index] not in " \t\r\n":
            index += 1
        while index < len(text) and text[index] in " \t\r\n":
            index += 1
    return index


@dataclass(frozen=True)
class _Edit:
    """Replace text[start:end] with ``text``; an insertion has start == end."""

    start: int
    end: int
    text: str


def _apply_edits(text: str, edits: Sequence[_Edit]) -> str:
    ordered = sorted(edits, key=lambda edit: (edit.start, edit.end))
    parts: list[str] = []
    position = 0
    for edit in ordered:
        if edit.start < position:
            raise ConfigError(f"internal error: overlapping edits at offset {edit.start}")
        parts.append(text[position : edit.start])
        parts.append(edit.text)
        position = edit.end
    parts.append(text[position:])
    return "".join(parts)


# --------------------------------------------------------------------------- scalars


_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")
_FLOW_INDICATORS = frozenset(",[]{}")
_SPECIAL_WORDS = frozenset(
    ["~", "null", "true", "false", "yes", "no", "on", "off", "y", "n", "=", "<<"]
)
# Numbers and timestamps as YAML 1.1 or 1.2 resolvers read them (a superset of both).
_NUMBER_LIKE = re.compile(
    r"[-+]?(?:0b[01_]+|0o?[0-7_]+|0x[0-9a-fA-F_]+"
    r"|[0-9][0-9_]*(?::[0-5]?[0-9])*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?"
    r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF))"
    r"|\.(?:nan|NaN|NAN)"
    r"|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt \t].*)?"
)


def render_scalar(value: str, *, flow: bool = False) -> str:
    """``value`` as a YAML scalar: plain when YAML reads it back as the same string,
    double-quoted with escapes otherwise (both YAML 1.1 and 1.2 readers agree)."""
    return double_quoted(value) if _needs_quotes(value, flow) else value


def _needs_quotes(value: str, flow: bool) -> bool:
    if not value or value != value.strip(" ") or value[0] in _INDICATORS:
        return True
    if any(not char.isprintable() or char in "\u2028\u2029\ufeff" for char in value):
        return True
    if ": " in value or value.endswith(":") or " #" in value or "\t" in value:
        return True
    if flow and any(char in _FLOW_INDICATORS for char in value):
        return True
    return not _plain_is_string(value)


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


def double_quoted(value: str) -> str:
    """``value`` as a double-quoted YAML scalar, escaping what must be escaped."""
    out = ['"']
    for char in value:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif not char.isprintable() or char in "\u2028\u2029\ufeff\x85":
            out.append(_escape(ord(char)))
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _escape(code: int) -> str:
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _plain_is_string(value: str) -> bool:
    """Whether a plain scalar with this text reads as a string (not null, bool, number)."""
    special = value.lower() in _SPECIAL_WORDS or _NUMBER_LIKE.fullmatch(value)
    return bool(value) and not special


# --------------------------------------------------------------------------- list style


@dataclass(frozen=True)
class ListStyle:
    """How the config writes ``files:`` items: where the dash goes, where keys go."""

    dash_indent: int = 2
    """Columns from the ``files:`` key to an item's dash."""
    key_offset: int = 2
    """Columns from the dash to the item's keys."""
    leading_slash: bool | None = None
    """Whether paths start with ``/``; None: keep each entry's own style."""


def _item_dash_column(text: str, lines: _Lines, item: YamlNode) -> int | None:
    index = item.start - 1
    while index >= 0 and text[index] in " \t":
        index -= 1
    return lines.column(index) if index >= 0 and text[index] == "-" else None


def _item_key_column(lines: _Lines, item: YamlNode) -> int | None:
    if item.kind != "map" or item.flow or not item.pairs:
        return None
    return lines.column(item.pairs[0][0].start)


def _sequence_style(text: str, lines: _Lines, key: YamlNode, seq: YamlNode) -> ListStyle | None:
    """The item layout of one block sequence of mappings, relative to its key."""
    for item in seq.items:
        dash = _item_dash_column(text, lines, item)
        key_column = _item_key_column(lines, item)
        if dash is not None and key_column is not None and key_column > dash:
            return ListStyle(dash - lines.column(key.start), key_column - dash)
    return None


def _infer_style(text: str, lines: _Lines, root: YamlNode, files: YamlNode | None) -> ListStyle:
    """The ``files:`` layout: the list's own, else the config's other top-level lists."""
    candidates = [(k, v) for k, v in root.pairs if v.kind == "seq" and not v.flow and v.items]
    if files is not None:
        candidates = [pair for pair in candidates if pair[1] is files] + candidates
    for key, seq in candidates:
        style = _sequence_style(text, lines, key, seq)
        if style is not None:
            return replace(style, leading_slash=_path_style(files))
    dash = ListStyle().dash_indent
    for key, seq in candidates:
        column = _item_dash_column(text, lines, seq.items[0])
        if column is not None:
            dash = column - lines.column(key.start)
            break
    return ListStyle(dash_indent=dash, leading_slash=_path_style(files))


def _path_style(files: YamlNode | None) -> bool | None:
    """Leading ``/`` or not: as the firmware entries have it, else most entries; None: any."""
    paths = [path for _item, path in _existing_entries(files)]
    firmware = [path for path in paths if normalise_path(path).startswith(FIRMWARE_DIR)]
    for group in (firmware, paths):
        slashed = sum(1 for path in group if path.startswith("/"))
        if group:
            return slashed * 2 >= len(group)
    return None


def _existing_entries(files: YamlNode | None) -> list[tuple[YamlNode, str]]:
    """The items of a ``files:`` list that are mappings with a scalar path, and the path."""
    if files is None or files.kind != "seq":
        return []
    found = []
    for item in files.items:
        node = item.resolved()
        path = node.get("path") if node.kind == "map" else None
        text = path.scalar() if path is not None else None
        if text is not None:
            found.append((item, text))
    return found


# --------------------------------------------------------------------------- rendering


def _image_path(entry: FilesEntry, style: ListStyle) -> str:
    if style.leading_slash is None:
        return entry.path
    return ("/" if style.leading_slash else "") + entry.key


def _value_text(key: str, value: str) -> str:
    return double_quoted(value) if key == "mode" else render_scalar(value)


def _entry_block(entry: FilesEntry, path: str, dash_column: int, key_offset: int, nl: str) -> str:
    """A new block-list item for ``entry``, each line ended with ``nl``."""
    dash = " " * dash_column + "-" + " " * (key_offset - 1)
    indent = " " * (dash_column + key_offset)
    lines = [f"{dash}path: {render_scalar(path)}"]
    lines += [f"{indent}{key}: {_value_text(key, value)}" for key, value in entry.content_pairs()]
    return nl.join(lines) + nl


def firmware_yml_text(entries: Sequence[FilesEntry]) -> str:
    """A firmware-only LinuxKit yml: a header comment and a ``files:`` list, nothing else.

    Pass it beside the hand-written config: ``linuxkit build linuxkit.yml firmware.yml``
    appends the ``files:`` lists.  Paths are written as given.
    """
    wanted = _unique_entries(entries)
    if not wanted:
        return FIRMWARE_YML_HEADER + "files: []\n"
    body = "".join(_entry_block(entry, entry.path, 2, 2, "\n") for entry in wanted)
    return FIRMWARE_YML_HEADER + "files:\n" + body


def _unique_entries(entries: Sequence[FilesEntry]) -> list[FilesEntry]:
    by_key: dict[str, FilesEntry] = {}
    for entry in entries:
        earlier = by_key.setdefault(entry.key, entry)
        if earlier != entry:
            raise ValueError(f"two different files entries for {entry.path}: {earlier}, {entry}")
    return list(by_key.values())


# --------------------------------------------------------------------------- editing


def edit_config_text(
    text: str,
    entries: Sequence[FilesEntry],
    *,
    prune_under: str | None = None,
    merge_duplicate_files: bool = False,
    where: str = "<config>",
) -> ConfigChange:
    """Add or update ``entries`` in the ``files:`` list of a LinuxKit config's text.

    Pure: no I/O.  Entries whose normalised path is already listed are updated in place
    (only the values that differ); new ones are appended in the given order, in the list's
    own indentation and path style.  With ``prune_under`` (e.g. ``/lib/firmware``), listed
    entries below that directory that are not in ``entries`` are removed.  Everything else
    is kept byte for byte.  Raises :class:`ConfigError` for invalid YAML, duplicate keys
    (unless ``merge_duplicate_files`` and the duplicates are top-level ``files:`` lists,
    which are then merged into the first), a top level that is not a mapping, or a
    ``files:`` that is not a list.

    >>> edit_config_text("files: []\\n", [FilesEntry("lib/firmware/a.bin", symlink="b.bin")]
    ...                  ).new_text
    'files:\\n  - path: lib/firmware/a.bin\\n    symlink: b.bin\\n    mode: "0644"\\n'
    """
    wanted = _unique_entries(entries)
    root = _parse_config(text, where, allow_duplicate_files=merge_duplicate_files)
    work = text
    if len(root.pairs_named(FILES_KEY)) > 1:
        work = _merge_files_lists(text, root, where)
        root = _checked_merge(root, work, where)
    editor = _FilesEditor(work, root, where)
    new_text = editor.apply(wanted, prune_under)
    if new_text != work:
        pruned = {normalise_path(path) for path in editor.removed}
        _check_result(root, new_text, [*wanted], pruned, where)
    return ConfigChange(
        None, text, new_text, tuple(editor.added), tuple(editor.updated), tuple(editor.removed)
    )


def _parse_config(text: str, where: str, *, allow_duplicate_files: bool) -> YamlNode:
    root = parse_yaml(text, where)
    if root is None or root.kind != "map":
        what = "empty" if root is None else f"a {_kind_name(root)}, not a mapping"
        raise ConfigError(
            f"{where}: the top level is {what}; a LinuxKit config is a mapping "
            "(kernel:, init:, files:, ...). For a firmware-only yml use --output instead"
        )
    for key, first, again in duplicate_keys(root):
        top_files = key == FILES_KEY and again in [k.line for k, _ in root.pairs_named(key)]
        if allow_duplicate_files and top_files:
            continue
        hint = " or pass --merge-duplicate-files" if top_files else ""
        raise ConfigError(
            f"{where}:{again}: duplicate key '{key}' (first at line {first}, again at line "
            f"{again}); LinuxKit rejects duplicate keys: merge them into one{hint} "
            "(the file was not changed)"
        )
    for files_key, value in root.pairs_named(FILES_KEY):
        if not (value.is_null() or value.resolved().kind == "seq"):
            raise ConfigError(
                f"{where}:{value.line}: '{FILES_KEY}:' (line {files_key.line}) is a "
                f"{_kind_name(value)}, not a list; LinuxKit wants a list of entries "
                "(the file was not changed)"
            )
    return root


def _kind_name(node: YamlNode) -> str:
    node = node.resolved()
    return {"map": "mapping", "seq": "list"}.get(node.kind, f"scalar {node.value!r}")


class _FilesEditor:
    """Plans the edits of one config's top-level ``files:`` list and applies them."""

    def __init__(self, text: str, root: YamlNode, where: str) -> None:
        self.text = text
        self.root = root
        self.where = where
        self.lines = _Lines(text)
        self.nl = newline_of(text)
        pair = next(iter(root.pairs_named(FILES_KEY)), None)
        self.files_key = pair[0] if pair else None
        self.files = pair[1] if pair else None
        self.style = _infer_style(text, self.lines, root, self.files)
        self.edits: list[_Edit] = []
        self.added: list[str] = []
        self.updated: list[str] = []
        self.removed: list[str] = []

    def apply(self, wanted: Sequence[FilesEntry], prune_under: str | None) -> str:
        if (wanted or prune_under is not None) and self._files_is_flow():
            raise self._flow_list_error()
        existing = _existing_entries(self.files)
        first_item: dict[str, YamlNode] = {}
        for item, path in existing:
            first_item.setdefault(normalise_path(path), item)
        new_entries: list[FilesEntry] = []
        for entry in wanted:
            listed = first_item.get(entry.key)
            if listed is None:
                new_entries.append(entry)
            elif self._update(listed, entry):
                self.updated.append(entry.path)
        self._remove_extra(existing, first_item, {entry.key for entry in wanted}, prune_under)
        if new_entries:
            self._append(new_entries)
        return _apply_edits(self.text, self.edits)

    # -- removing

    def _remove_extra(
        self,
        existing: list[tuple[YamlNode, str]],
        first_item: dict[str, YamlNode],
        wanted_keys: set[str],
        prune_under: str | None,
    ) -> None:
        prefix = _prune_prefix(prune_under)
        wanted_firmware = {_uncompressed(key) for key in wanted_keys}
        for item, path in existing:
            key = normalise_path(path)
            duplicate = key in wanted_keys and first_item[key] is not item
            pruned = prefix is not None and key.startswith(prefix) and key not in wanted_keys
            # the same firmware staged with another compression (or none): one must go
            variant = key not in wanted_keys and _uncompressed(key) in wanted_firmware
            folder = item.resolved().get("directory") is not None  # never a firmware file
            if duplicate or ((pruned or variant) and not folder):
                self._remove_item(item)
                self.removed.append(path)

    def _remove_item(self, item: YamlNode) -> None:
        start = self.lines.start_of(item.start)
        self.edits.append(_Edit(start, self.lines.end_after(item.end), ""))

    # -- updating

    def _update(self, item: YamlNode, entry: FilesEntry) -> bool:
        """Edit one existing entry to match ``entry``; False when it already does."""
        node = item
        if node.kind != "map" or node.flow or self._conflict_on_first_line(node, entry):
            return self._rewrite(item, entry)
        edits = [self._remove_pair(*pair) for pair in _conflicting_pairs(node, entry)]
        missing = []
        for key, value in entry.content_pairs():
            current = node.get(key)
            if current is None:
                missing.append(f"{key}: {_value_text(key, value)}")
            elif not _value_matches(current, key, value):
                edits.append(_value_replacement(self.text, current, _value_text(key, value)))
        if missing:
            indent = " " * self.lines.column(node.pairs[0][0].start)
            block = "".join(f"{indent}{line}{self.nl}" for line in missing)
            edits.append(self._insertion(node.end, block))
        self.edits.extend(edits)
        return bool(edits)

    def _conflict_on_first_line(self, node: YamlNode, entry: FilesEntry) -> bool:
        """A key to drop on the dash line cannot be cut out as a line of its own."""
        first_line = node.pairs[0][0].line
        return any(key.line == first_line for key, _ in _conflicting_pairs(node, entry))

    def _remove_pair(self, key: YamlNode, value: YamlNode) -> _Edit:
        start = self.lines.start_of(key.start)
        return _Edit(start, self.lines.end_after(max(key.end, value.end)), "")

    def _rewrite(self, item: YamlNode, entry: FilesEntry) -> bool:
        """Replace an entry written in an unusual shape (flow, alias) by a block entry."""
        node = item.resolved()
        path_node = node.get("path") if node.kind == "map" else None
        assert path_node is not None
        indent = " " * self.lines.column(item.start)
        lines = [f"path: {self._single_line(path_node)}"]
        for key, value in node.pairs:
            name = key.scalar()
            if name in ("optional", "uid", "gid") and "\n" not in self._raw(value):
                lines.append(f"{name}: {self._raw(value)}")
        lines += [f"{key}: {_value_text(key, value)}" for key, value in entry.content_pairs()]
        body = (self.nl + indent).join(lines)
        start = item.start if item.kind == "alias" else _content_start(self.text, item)
        self.edits.append(_Edit(start, item.end, body))
        return True

    def _raw(self, node: YamlNode) -> str:
        return self.text[node.start : node.end]

    def _single_line(self, node: YamlNode) -> str:
        raw = self._raw(node)
        if "\n" in raw or "\r" in raw or node.kind == "alias":
            return render_scalar(node.scalar() or "")
        return raw

    # -- appending

    def _append(self, entries: Sequence[FilesEntry]) -> None:
        if self.files is None or self.files_key is None:
            self._append_files_key(entries)
            return
        seq = self.files
        key_column = self.lines.column(self.files_key.start)
        if seq.kind == "seq" and seq.items:
            dash = _item_dash_column(self.text, self.lines, seq.items[0])
            column = dash if dash is not None else key_column + self.style.dash_indent
            self.edits.append(self._insertion(seq.end, self._blocks(entries, column)))
            return
        # files: [] / files: ~ / files: (empty): drop the value, list the entries below.
        if self.files.end > self.files.start:
            self.edits.append(_Edit(_colon_end(self.text, self.files_key), self.files.end, ""))
        column = key_column + self.style.dash_indent
        end = max(self.files_key.end, self.files.end)
        self.edits.append(self._insertion(end, self._blocks(entries, column)))

    def _append_files_key(self, entries: Sequence[FilesEntry]) -> None:
        if self.root.flow:
            raise ConfigError(
                f"{self.where}: the top level is a flow mapping ({{...}}); write it as a "
                "block mapping so that a files: list can be added (the file was not changed)"
            )
        column = self.lines.column(self.root.pairs[0][0].start)
        blocks = self._blocks(entries, column + self.style.dash_indent)
        text = f"{' ' * column}{FILES_KEY}:{self.nl}{blocks}"
        self.edits.append(self._insertion(self.root.end, text))

    def _blocks(self, entries: Sequence[FilesEntry], dash_column: int) -> str:
        self.added.extend(entry.path for entry in entries)
        return "".join(
            _entry_block(
                entry, _image_path(entry, self.style), dash_column, self.style.key_offset, self.nl
            )
            for entry in entries
        )

    def _insertion(self, content_end: int, block: str) -> _Edit:
        """Insert whole lines after the line where content ends at ``content_end``."""
        at = self.lines.end_after(content_end)
        if at == len(self.text) and self.text and not self.text.endswith(("\n", "\r")):
            block = self.nl + block[: -len(self.nl)]
        return _Edit(at, at, block)

    def _files_is_flow(self) -> bool:
        files = self.files
        return files is not None and (files.kind == "alias" or (files.flow and bool(files.items)))

    def _flow_list_error(self) -> ConfigError:
        line = self.files.line if self.files is not None else 0
        return ConfigError(
            f"{self.where}:{line}: '{FILES_KEY}:' is written as a flow list [...] or an alias; "
            "lkfirmware edits block lists (one '- path: ...' item per line): rewrite it as a "
            "block list (the file was not changed)"
        )


def _conflicting_pairs(node: YamlNode, entry: FilesEntry) -> list[tuple[YamlNode, YamlNode]]:
    """The pairs of an existing entry that contradict what ``entry`` is (file or link)."""
    keep = {key for key, _ in entry.content_pairs()}
    return [
        (key, value)
        for key, value in node.pairs
        if key.scalar() in _CONTENT_KEYS and key.scalar() not in keep
    ]


def _colon_end(text: str, key: YamlNode) -> int:
    """The offset just after the ``:`` that follows a block mapping key."""
    index = key.end
    while index < len(text) and text[index] in " \t":
        index += 1
    return index + 1


def _value_matches(node: YamlNode, key: str, value: str) -> bool:
    """Whether an existing value already reads as the string ``value`` (a mode: quoted)."""
    target = node.resolved()
    if target.kind != "scalar" or target.value != value or target.tag not in (None, _STR_TAG):
        return False
    if key == "mode":
        return target.style in ("'", '"')
    return target.style is not None or target.tag == _STR_TAG or _plain_is_string(value)


def _uncompressed(key: str) -> str:
    """A firmware path without the compression suffix the kernel would also try."""
    for suffix in (".xz", ".zst"):
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def _prune_prefix(prune_under: str | None) -> str | None:
    if prune_under is None:
        return None
    prefix = normalise_path(prune_under).rstrip("/")
    return prefix + "/" if prefix else ""


# --------------------------------------------------------------------------- merging


def _merge_files_lists(text: str, root: YamlNode, where: str) -> str:
    """Move the items of every later top-level ``files:`` list under the first one."""
    lines = _Lines(text)
    nl = newline_of(text)
    pairs = root.pairs_named(FILES_KEY)
    for _key, value in pairs:
        _refuse_flow_merge(value, where)
    first_key, first = pairs[0]
    edits: list[_Edit] = []
    chunks: list[str] = []
    for key, value in pairs[1:]:
        end = _list_end(text, lines, key, value)
        edits.append(_Edit(lines.start_of(key.start), end, ""))
        chunk = text[lines.end_after(key.end) : end]
        if chunk and not chunk.endswith(("\n", "\r")):
            chunk += nl
        chunks.append(_shift_lines(chunk, _merge_shift(text, lines, first_key, first, key, value)))
    merged = "".join(chunks)
    if merged.strip():
        if not (first.kind == "seq" and first.items) and first.end > first.start:
            edits.append(_Edit(_colon_end(text, first_key), first.end, ""))
        at = _list_end(text, lines, first_key, first)
        last = pairs[-1][1]
        if last.end and text[last.end - 1] in "\r\n":
            at = _after_blank_lines(text, lines, at)  # a kept |+ scalar would take them
        if at == len(text) and not text.endswith(("\n", "\r")):
            merged = nl + merged[: -len(nl)]
        edits.append(_Edit(at, at, merged))
    return _apply_edits(text, edits)


def _list_end(text: str, lines: _Lines, key: YamlNode, value: YamlNode) -> int:
    """Where a top-level list ends: after its last item and the comment lines indented
    below its key that follow it (trailing blank lines stay outside)."""
    end = lines.end_after(max(key.end, value.end))
    key_column = lines.column(key.start)
    position = end
    while position < len(text):
        following = lines.next_start(position)
        line = text[position:following]
        stripped = line.lstrip(" ")
        if stripped.startswith("#") and len(line) - len(stripped) > key_column:
            end = following
        elif stripped.strip():
            break
        position = following
    return end


def _after_blank_lines(text: str, lines: _Lines, position: int) -> int:
    while position < len(text) and not text[position : lines.next_start(position)].strip():
        position = lines.next_start(position)
    return position


def _checked_merge(original: YamlNode, merged_text: str, where: str) -> YamlNode:
    """Parse the merged text; its one files: list must hold every original item, intact."""
    refusal = (
        f"{where}: cannot merge the '{FILES_KEY}:' lists automatically without changing an "
        "entry; merge them by hand (the file was not changed)"
    )
    try:
        merged = _parse_config(merged_text, where, allow_duplicate_files=False)
    except ConfigError:
        raise ConfigError(refusal) from None
    expected = [
        _signature(item)
        for _key, value in original.pairs_named(FILES_KEY)
        for item in (value.items if value.kind == "seq" else [])
    ]
    files = merged.get(FILES_KEY)
    found = [_signature(item) for item in (files.items if files is not None else [])]
    others = [
        (_signature(key), _signature(value))
        for key, value in original.pairs
        if key.scalar() != FILES_KEY
    ]
    kept = [
        (_signature(key), _signature(value))
        for key, value in merged.pairs
        if key.scalar() != FILES_KEY
    ]
    if found != expected or kept != others:
        raise ConfigError(refusal)
    return merged


def _signature(node: YamlNode) -> tuple[object, ...]:
    """A node's content, independent of where and how it is written."""
    node = node.resolved()
    if node.kind == "seq":
        return ("seq", tuple(_signature(item) for item in node.items))
    if node.kind == "map":
        return ("map", tuple((_signature(k), _signature(v)) for k, v in node.pairs))
    return ("scalar", node.value, node.tag, node.style is None)


def _refuse_flow_merge(value: YamlNode, where: str) -> None:
    if value.kind == "alias" or (value.flow and value.items):
        raise ConfigError(
            f"{where}:{value.line}: cannot merge a '{FILES_KEY}:' list written in flow "
            "style [...] or as an alias; merge the lists by hand (the file was not changed)"
        )


def _merge_shift(
    text: str, lines: _Lines, first_key: YamlNode, first: YamlNode, key: YamlNode, value: YamlNode
) -> int:
    """Columns to move a later list's items so that they line up with the first list."""
    if value.kind != "seq" or not value.items:
        return 0
    dash = _item_dash_column(text, lines, value.items[0])
    if dash is None:
        return 0
    if first.kind == "seq" and first.items:
        first_dash = _item_dash_column(text, lines, first.items[0])
        return (first_dash - dash) if first_dash is not None else 0
    return lines.column(first_key.start) - lines.column(key.start)


def _shift_lines(chunk: str, shift: int) -> str:
    if shift == 0:
        return chunk
    out = []
    for line in split_lines(chunk):
        if not line.strip():
            out.append(line)
        elif shift > 0:
            out.append(" " * shift + line)
        else:
            spaces = len(line) - len(line.lstrip(" "))
            out.append(line[min(spaces, -shift) :])
    return "".join(out)


# --------------------------------------------------------------------------- self-check


def _check_result(
    before: YamlNode, new_text: str, wanted: Sequence[FilesEntry], pruned: set[str], where: str
) -> None:
    """Parse the edited text again: every wanted entry must read back as meant, and
    everything else (other keys, other entries) must read back exactly as before."""
    try:
        after = _parse_config(new_text, where, allow_duplicate_files=False)
    except ConfigError as error:
        raise ConfigError(f"internal error, the edit would break the config: {error}") from None
    listed: dict[str, YamlNode] = {}
    for item, path in _existing_entries(after.get(FILES_KEY)):
        listed.setdefault(normalise_path(path), item.resolved())
    for entry in wanted:
        node = listed.get(entry.key)
        for key, value in entry.content_pairs():
            current = node.get(key) if node is not None else None
            if current is None or not _value_matches(current, key, value):
                raise ConfigError(
                    f"internal error: {where}: entry {entry.path} would not read back as "
                    f"{key}: {value!r}; the file was not changed, please report this"
                )
    touched = {entry.key for entry in wanted} | pruned
    if _untouched(before, touched) != _untouched(after, touched):
        raise ConfigError(
            f"{where}: writing the firmware entries here would change how other content "
            "reads (a block scalar next to the edit: does the file end without a line "
            "break?); adjust the file by hand and run again (the file was not changed)"
        )


def _untouched(root: YamlNode, touched: set[str]) -> list[object]:
    """Signatures of the top-level keys and the files: entries an edit must leave alone
    (all but those whose normalised path is in ``touched``: updated or pruned)."""
    others: list[object] = [
        (_signature(key), _signature(value))
        for key, value in root.pairs
        if key.scalar() != FILES_KEY
    ]
    files = root.get(FILES_KEY)
    for item in files.items if files is not None and files.kind == "seq" else []:
        path = _path_key(item)
        if path is None or path not in touched:
            others.append(_signature(item))
    return others


def _path_key(item: YamlNode) -> str | None:
    node = item.resolved()
    path = node.get("path") if node.kind == "map" else None
    text = path.scalar() if path is not None else None
    return normalise_path(text) if text is not None else None


# --------------------------------------------------------------------------- files on disk


def update_config(
    config: Path,
    entries: Sequence[FilesEntry],
    *,
    prune_under: str | None = None,
    merge_duplicate_files: bool = False,
    write: bool = True,
) -> ConfigChange:
    """Edit the config file ``config`` as :func:`edit_config_text` does, atomically.

    With ``write=False`` nothing is written (for ``--check`` and ``--dry-run``).  The file is
    rewritten only when its text changes, through a temporary file in the same directory,
    fsync and rename, keeping its permission bits; a symlinked config is edited through
    the link.  On any error the file is left untouched.
    """
    target = Path(os.path.realpath(config))
    raw = _read_config(config, target)
    text = _decode(raw, config)
    change = edit_config_text(
        text,
        entries,
        prune_under=prune_under,
        merge_duplicate_files=merge_duplicate_files,
        where=str(config),
    )
    change = replace(change, path=config)
    if write and change.changed:
        if target.read_bytes() != raw:
            raise ConfigError(f"{config}: changed by someone else while being edited; run again")
        atomic_write(target, change.new_text.encode("utf-8"))
    return change


def _read_config(config: Path, target: Path) -> bytes:
    try:
        return target.read_bytes()
    except OSError as error:
        raise ConfigError(f"{config}: cannot read the config: {error.strerror}") from None


def _decode(raw: bytes, config: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{config}: not UTF-8 (byte {error.start}); LinuxKit configs are UTF-8 text"
        ) from None


def write_firmware_yml(
    path: Path, entries: Sequence[FilesEntry], *, write: bool = True
) -> ConfigChange:
    """Write (or with ``write=False`` only compare) a firmware-only yml at ``path``.

    The file is fully generated by :func:`firmware_yml_text`; it is rewritten only when its
    text changes.  An existing file that lkfirmware did not write is refused.
    """
    target = Path(os.path.realpath(path))
    old_text = _decode(target.read_bytes(), path) if target.exists() else ""
    if old_text and not old_text.startswith(FIRMWARE_YML_HEADER.splitlines()[0]):
        raise ConfigError(
            f"{path}: exists and was not written by lkfirmware; refusing to overwrite it "
            "(choose another --output, or use --config to edit a hand-written config)"
        )
    new_text = firmware_yml_text(entries)
    old, new = _listed_entries(old_text), _listed_entries(new_text)
    change = ConfigChange(
        path,
        old_text,
        new_text,
        added=tuple(path_ for key, (path_, _) in new.items() if key not in old),
        updated=tuple(
            path_ for key, (path_, body) in new.items() if old.get(key, (0, body))[1] != body
        ),
        removed=tuple(path_ for key, (path_, _) in old.items() if key not in new),
    )
    if write and change.changed:
        atomic_write(target, new_text.encode("utf-8"))
    return change


def _listed_entries(text: str) -> dict[str, tuple[str, str]]:
    """Normalised path -> (path, the entry's text) for the entries of a firmware-only yml."""
    if not text:
        return {}
    root = parse_yaml(text)
    files = root.get(FILES_KEY) if root is not None and root.kind == "map" else None
    return {
        normalise_path(path): (path, text[item.start : item.end])
        for item, path in _existing_entries(files)
    }


# --------------------------------------------------------------------------- LinuxKit rules


def linuxkit_problems(text: str) -> list[str]:
    """What LinuxKit would reject in a config's ``files:`` entries, one message per problem.

    Checks: the YAML parses; no duplicate keys anywhere; the top level is a mapping;
    ``files:`` is a list of mappings; each entry has a ``path``, only known keys, a
    ``mode`` that is a quoted octal string, boolean ``directory``/``optional``, and no
    forbidden combination (source+contents, source+metadata, directory+contents,
    symlink+source; a regular file needs contents, source or metadata).  An empty list
    means LinuxKit's checks pass.
    """
    try:
        root = parse_yaml(text)
    except ConfigError as error:
        return [str(error)]
    problems = [
        f"line {again}: duplicate key '{key}' (first at line {first})"
        for key, first, again in duplicate_keys(root)
    ]
    if root is None or root.kind != "map":
        return [*problems, "the top level is not a mapping"]
    for _key, files in root.pairs_named(FILES_KEY):
        problems += _files_list_problems(files)
    return problems


def _files_list_problems(files: YamlNode) -> list[str]:
    node = files.resolved()
    if files.is_null():
        return []
    if node.kind != "seq":
        return [f"line {files.line}: files: is not a list"]
    problems: list[str] = []
    for item in node.items:
        problems += _entry_problems(item)
    return problems


def _entry_problems(item: YamlNode) -> list[str]:
    node = item.resolved()
    where = f"line {item.line}"
    if node.kind != "map":
        return [f"{where}: files entry is not a mapping"]
    keys = {key.scalar(): value for key, value in node.pairs}
    problems = [
        f"{where}: unknown key '{name}' in files entry"
        for name in keys
        if name not in FILES_ENTRY_KEYS
    ]
    if keys.get("path") is None or not keys["path"].scalar():
        problems.append(f"{where}: files entry without a path")
    mode = keys.get("mode")
    if mode is not None and not _is_quoted_octal(mode):
        problems.append(f'{where}: mode must be a quoted octal string such as "0644"')
    for flag in ("directory", "optional"):
        if flag in keys and keys[flag].scalar() not in ("true", "false"):
            problems.append(f"{where}: {flag} must be true or false")
    present: set[str] = {
        name for name in ("symlink", "source", "contents", "metadata") if name in keys
    }
    if "directory" in keys and keys["directory"].scalar() == "true":
        present.add("directory")
    for first, second in (
        ("source", "contents"),
        ("source", "metadata"),
        ("directory", "contents"),
        ("symlink", "source"),
    ):
        if first in present and second in present:
            problems.append(f"{where}: files entry cannot have both {first} and {second}")
    if not present:
        problems.append(f"{where}: files entry needs contents, source or metadata")
    return problems


def _is_quoted_octal(node: YamlNode) -> bool:
    target = node.resolved()
    quoted = target.style in ("'", '"') or target.tag == _STR_TAG
    return target.kind == "scalar" and quoted and bool(_OCTAL_MODE.fullmatch(target.value))


def default_mode_warnings(text: str, where: str = "<config>") -> list[str]:
    """Entries below ``/lib`` that have no ``mode``: LinuxKit gives them ``0600`` and, when
    one of them is the first to need ``/lib`` or ``/lib/firmware``, creates that folder
    ``0700`` -- and the kernel's firmware loader cannot read below it.  One message each."""
    root = parse_yaml(text, where)
    files = root.get(FILES_KEY) if root is not None and root.kind == "map" else None
    warnings = []
    for item, path in _existing_entries(files):
        entry = item.resolved()
        if normalise_path(path).startswith("lib/") and entry.get("mode") is None:
            if entry.get("directory") is not None:
                continue
            warnings.append(
                f"{where}:{item.line}: {path} has no mode: LinuxKit makes it 0600 and may "
                f'create /lib as 0700; add mode: "0644"'
            )
    return warnings


def entry_sources(text: str, where: str = "<config>") -> dict[str, str]:
    """The ``source:`` of every ``files:`` entry that has one, by normalised path."""
    root = parse_yaml(text, where)
    files = root.get(FILES_KEY) if root is not None and root.kind == "map" else None
    sources = {}
    for item, path in _existing_entries(files):
        source = item.resolved().get("source")
        value = source.scalar() if source is not None else None
        if value:
            sources[normalise_path(path)] = value
    return sources
