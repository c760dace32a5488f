"""Checks that every config edit must pass (used by test_config*.py).

An edit is sound when: the firmware was added, the result parses again with duplicate
keys rejected, the unified diff changes only lines of firmware entries (and the
``files:`` key), a second run changes nothing, and LinuxKit's rules on ``files:`` entries
hold (checked twice: by ``linuxkit_problems`` and independently from ruamel's load).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from lkfirmware.config import (
    FILES_ENTRY_KEYS,
    ConfigChange,
    FilesEntry,
    YamlNode,
    edit_config_text,
    linuxkit_problems,
    normalise_path,
    parse_yaml,
    split_lines,
)

FIRMWARE = "lib/firmware/"
HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def strict_load(text: str) -> Any:
    """Load with ruamel's round-trip loader; duplicate keys raise."""
    from ruamel.yaml import YAML

    return YAML(typ="rt").load(text)


def assert_obeys_linuxkit(text: str) -> None:
    """LinuxKit's rules on files: entries, by linuxkit_problems and by a plain load."""
    assert linuxkit_problems(text) == []
    data = strict_load(text)
    for entry in data.get("files") or []:
        assert isinstance(entry, dict), entry
        assert set(entry) <= FILES_ENTRY_KEYS, entry
        assert isinstance(entry.get("path"), str) and entry["path"], entry
        if "mode" in entry:
            assert isinstance(entry["mode"], str), f"unquoted mode in {entry}"
            assert re.fullmatch(r"[0-7]{3,4}", entry["mode"]), entry


def firmware_lines(text: str) -> set[int]:
    """1-based numbers of the lines that belong to firmware entries or to a files: key."""
    root = parse_yaml(text)
    assert root is not None
    lines = split_lines(text)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    number = _line_number(starts)
    found: set[int] = set()
    for key, files in root.pairs_named("files"):
        found.add(key.line)
        for item in files.items:
            path = _path_of(item)
            if path is not None and normalise_path(path).startswith(FIRMWARE):
                found.update(range(number(item.start), number(max(item.end - 1, item.start)) + 1))
    return found


def _line_number(starts: list[int]) -> Any:
    import bisect

    return lambda index: bisect.bisect_right(starts, index)


def _path_of(item: YamlNode) -> str | None:
    node = item.resolved()
    path = node.get("path") if node.kind == "map" else None
    return path.scalar() if path is not None else None


def changed_lines(diff: str) -> tuple[set[int], set[int]]:
    """Old line numbers removed and new line numbers added by a unified diff."""
    removed: set[int] = set()
    added: set[int] = set()
    old = new = 0
    for line in diff.splitlines():
        hunk = HUNK.match(line)
        if hunk:
            old, new = int(hunk.group(1)), int(hunk.group(3))
        elif line.startswith(("---", "+++")) and not old and not new:
            continue
        elif line.startswith("-"):
            removed.add(old)
            old += 1
        elif line.startswith("+"):
            added.add(new)
            new += 1
        elif line.startswith(" "):
            old += 1
            new += 1
    return removed, added


def assert_only_firmware_changed(change: ConfigChange) -> None:
    """Only firmware entries (and the files: key line) differ between old and new text.

    Two checks: the text outside firmware entries is identical, byte for byte; and every
    line the unified diff marks as removed or added is a line of a firmware entry, by
    content, or is shown removed and added verbatim (difflib may align identical lines
    either side of a changed entry).
    """
    old_lines, new_lines = split_lines(change.old_text), split_lines(change.new_text)
    old_firmware, new_firmware = firmware_lines(change.old_text), firmware_lines(change.new_text)
    assert _outside(old_lines, old_firmware) == _outside(new_lines, new_firmware), change.diff()
    removed, added = changed_lines(change.diff())
    assert removed or added or not change.changed
    if old_lines and not old_lines[-1].endswith(("\n", "\r")) and len(old_lines) in removed:
        # The unterminated last line got a line break, nothing else.
        same = [n for n in sorted(added) if new_lines[n - 1].rstrip("\r\n") == old_lines[-1]]
        if same:
            removed.discard(len(old_lines))
            added.discard(same[0])
    allowed_old = {old_lines[n - 1].rstrip("\r\n") for n in old_firmware}
    allowed_new = {new_lines[n - 1].rstrip("\r\n") for n in new_firmware}
    removed_text = Counter(old_lines[n - 1].rstrip("\r\n") for n in removed)
    added_text = Counter(new_lines[n - 1].rstrip("\r\n") for n in added)
    assert set(removed_text - added_text) <= allowed_old, change.diff()
    assert set(added_text - removed_text) <= allowed_new, change.diff()


def _outside(lines: list[str], firmware: set[int]) -> list[str]:
    """The lines outside firmware entries; the last one compared without its break."""
    kept = [line for number, line in enumerate(lines, start=1) if number not in firmware]
    if kept:
        kept[-1] = kept[-1].rstrip("\r\n")
    return kept


def assert_sound_edit(text: str, entries: Sequence[FilesEntry], **options: Any) -> ConfigChange:
    """Edit ``text`` and check every property an edit must have; return the change."""
    change = edit_config_text(text, entries, **options)
    strict_load(change.new_text)
    assert_obeys_linuxkit(change.new_text)
    if options.get("merge_duplicate_files"):
        # Merging moves whole entries; past the merge, only firmware may change.
        merged = edit_config_text(text, [], **options).new_text
        assert_only_firmware_changed(ConfigChange(None, merged, change.new_text))
    else:
        assert_only_firmware_changed(change)
    written_files = strict_load(change.new_text).get("files") or []
    listed = {normalise_path(e["path"]): e for e in written_files}
    for entry in entries:
        written = listed[entry.key]
        assert written.get("source") == entry.source
        assert written.get("symlink") == entry.symlink
        assert written["mode"] == entry.mode
    again = edit_config_text(change.new_text, entries, **options)
    assert not again.changed, again.diff()
    assert again.new_text == change.new_text
    assert not (again.added or again.updated or again.removed)
    return change


def line_breaks(text: str) -> set[str]:
    """The kinds of line break a text uses."""
    return set(re.findall(r"\r\n|\r(?!\n)|(?<!\r)\n", text))


def firmware(name: str, *, link: str | None = None) -> FilesEntry:
    """A firmware entry for ``name`` below /lib/firmware, staged under firmware/."""
    path = f"/lib/firmware/{name}"
    if link is not None:
        return FilesEntry(path, symlink=link)
    return FilesEntry(path, source=f"firmware/{name}")
