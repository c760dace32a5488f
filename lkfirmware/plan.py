"""The plan: which firmware files and links one request needs.

Records are named tuples: immutable, typed, and cheap to import (the CLI's start-up
path avoids :mod:`dataclasses`, which pulls in :mod:`inspect`).

The resolver turns queries into a :class:`Plan`; the fetcher downloads the plan's files
(never its links, which exist only in WHENCE); the stager and the config writer turn
the fetched files and the links into LinuxKit ``files:`` entries.
"""

from __future__ import annotations

from typing import NamedTuple


class Licence(NamedTuple):
    """One WHENCE ``Licence:`` line: its text, the licence files it names, its SPDX id."""

    text: str
    files: tuple[str, ...] = ()
    spdx: str | None = None

    @property
    def key(self) -> str:
        """A short, stable name: the first licence file it names, else its text."""
        return self.files[0] if self.files else self.text


class FirmwareFile(NamedTuple):
    """A regular file of linux-firmware (a WHENCE ``File:`` or ``RawFile:``)."""

    path: str
    """Path below the firmware root, e.g. ``brcm/brcmfmac43602-pcie.bin``."""
    drivers: tuple[str, ...] = ()
    """The WHENCE drivers whose section declares the file."""
    licence: str | None = None
    """The licence file that WHENCE names for it, e.g. ``LICENCE.broadcom_bcm43xx``."""
    raw: bool = False
    """True for ``RawFile:`` entries, which must never be compressed."""
    size: int | None = None
    """Size in bytes, when the catalog knows it."""
    git_id: str | None = None
    """The git blob id (sha1 of ``blob <size>\\0<data>``), when the catalog knows it."""


class FirmwareLink(NamedTuple):
    """A WHENCE ``Link:``: a symlink that exists only in the index, not in git."""

    path: str
    """The link's own path below the firmware root, e.g. ``brcm/brcmfmac43455-sdio.bin``."""
    target: str
    """The target as WHENCE writes it, relative to the link's directory."""
    resolved: str
    """The final path the link points to below the root (a file, or a directory)."""
    is_dir: bool = False
    """True when the link points at a directory (``nvidia/ad103 -> ad102``)."""
    drivers: tuple[str, ...] = ()
    """The WHENCE drivers whose section declares the link."""


class Plan(NamedTuple):
    """Everything one request needs, at one linux-firmware ref."""

    ref: str
    files: tuple[FirmwareFile, ...] = ()
    links: tuple[FirmwareLink, ...] = ()
    notes: tuple[str, ...] = ()
    """Human-readable remarks, e.g. that a chip needs a board file and none was chosen."""

    def records(self) -> list[dict[str, object]]:
        """One JSON-ready record per file and link, sorted by path (``--json`` output)."""
        records: list[dict[str, object]] = []
        for item in self.files:
            records.append(
                {
                    "path": item.path,
                    "kind": "rawfile" if item.raw else "file",
                    "drivers": list(item.drivers),
                    "licence": item.licence,
                    "size": item.size,
                    "git_id": item.git_id,
                }
            )
        for link in self.links:
            records.append(
                {
                    "path": link.path,
                    "kind": "link",
                    "target": link.target,
                    "resolved": link.resolved,
                    "is_dir": link.is_dir,
                    "drivers": list(link.drivers),
                }
            )
        return sorted(records, key=lambda record: str(record["path"]))

    def file(self, path: str) -> FirmwareFile | None:
        """The planned regular file at ``path``, or None."""
        for item in self.files:
            if item.path == path:
                return item
        return None
