"""``lkfirmware.lock``: the ref and the exact bytes of every firmware file fetched.

The format is JSON, written deterministically: fixed key order, paths sorted, one line
per file, a final newline.  JSON because the standard library both reads and writes it
(``tomllib`` only reads, and not on Python 3.10), it parses strictly, and one line per
file makes a review diff show exactly which files changed::

    {
      "lockfile-version": 1,
      "ref": "0ab00e43853070c76cb954da55dd1198cb811255",
      "files": {
        "brcm/brcmfmac43602-pcie.bin": {"size": 635449, "sha256": "...", "git_id": "..."}
      }
    }
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from lkfirmware.errors import IntegrityError
from lkfirmware.files import atomic_write

LOCK_NAME = "lkfirmware.lock"
VERSION = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_ID = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class LockedFile:
    """What the lock file pins for one firmware path."""

    size: int
    sha256: str
    git_id: str | None = None


@dataclass(frozen=True)
class LockFile:
    """A whole lock file: one ref and its files by path."""

    ref: str
    files: Mapping[str, LockedFile] = field(default_factory=lambda: MappingProxyType({}))

    def with_files(self, new: Mapping[str, LockedFile]) -> LockFile:
        """A copy with ``new`` files added (existing paths keep their recorded values)."""
        merged = dict(new)
        merged.update(self.files)
        return LockFile(self.ref, MappingProxyType(dict(sorted(merged.items()))))


def render_lock(lock: LockFile) -> str:
    """The text of ``lock``: the same input always gives the same bytes."""
    lines = [
        "{",
        f'  "lockfile-version": {VERSION},',
        f'  "ref": {json.dumps(lock.ref)},',
    ]
    items = sorted(lock.files.items())
    if not items:
        lines.append('  "files": {}')
    else:
        lines.append('  "files": {')
        for number, (path, entry) in enumerate(items):
            record: dict[str, object] = {"size": entry.size, "sha256": entry.sha256}
            if entry.git_id:
                record["git_id"] = entry.git_id
            comma = "," if number < len(items) - 1 else ""
            body = json.dumps(record, ensure_ascii=False)
            lines.append(f"    {json.dumps(path, ensure_ascii=False)}: {body}{comma}")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def parse_lock(text: str, where: str = LOCK_NAME) -> LockFile:
    """Parse the text of a lock file; :class:`IntegrityError` says what is wrong."""

    def bad(what: str) -> IntegrityError:
        return IntegrityError(
            f"lock file {where}: {what}; fix it, or delete it to record the files afresh"
        )

    try:
        data = json.loads(text)
    except ValueError as error:
        raise bad(f"not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise bad("the top level is not an object")
    if data.get("lockfile-version") != VERSION:
        raise bad(f"unsupported lockfile-version {data.get('lockfile-version')!r}")
    ref = data.get("ref")
    files = data.get("files")
    if not isinstance(ref, str) or not ref:
        raise bad('"ref" is missing or not a string')
    if not isinstance(files, dict):
        raise bad('"files" is missing or not an object')
    parsed: dict[str, LockedFile] = {}
    for path, record in files.items():
        if not isinstance(record, dict):
            raise bad(f"entry {path!r} is not an object")
        size, sha256, git_id = record.get("size"), record.get("sha256"), record.get("git_id")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise bad(f"entry {path!r} has no valid size")
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            raise bad(f"entry {path!r} has no valid sha256")
        if git_id is not None and (not isinstance(git_id, str) or not _GIT_ID.fullmatch(git_id)):
            raise bad(f"entry {path!r} has an invalid git_id")
        parsed[path] = LockedFile(size=size, sha256=sha256, git_id=git_id)
    return LockFile(ref, MappingProxyType(dict(sorted(parsed.items()))))


def read_lock(path: Path) -> LockFile | None:
    """The lock file at ``path``, or None when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return parse_lock(text, str(path))


def write_lock(path: Path, lock: LockFile) -> bool:
    """Write ``lock`` to ``path`` atomically; False (and no write) when unchanged.

    An existing file keeps its permissions; a symlink is written through.
    """
    text = render_lock(lock).encode("utf-8")
    if path.is_symlink():
        path = path.resolve()
    with contextlib.suppress(FileNotFoundError):
        if path.read_bytes() == text:
            return False
    atomic_write(path, text)  # an existing file keeps its permission bits
    return True
