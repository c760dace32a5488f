"""The plan: which firmware files and links one request needs.

The resolver turns queries into a :class:`Plan`; the fetcher downloads the plan's files
(never its links, which exist only in WHENCE); the stager and the config writer turn
the fetched files and the links into LinuxKit ``files:`` entries.

The records here are small value objects built on :class:`Record`: slotted classes
with value equality, hashing and ``_replace``.  They sit on the start-up path of every
``lkfirmware`` command, where ``typing.NamedTuple`` and ``dataclasses`` would cost
milliseconds of imports and class creation (``exec``) before any work is done.  Treat
them as immutable.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, TypeVar

    R = TypeVar("R", bound="Record")


class Record:
    """A value object whose fields are its ``__slots__``."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def _replace(self: R, **changes: Any) -> R:
        """A copy with some fields changed (as ``NamedTuple._replace``)."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return type(self)(**values)


class Licence(Record):
    """One WHENCE ``Licence:`` line: its text, the licence files it names, its SPDX id."""

    __slots__ = ("text", "files", "spdx")

    def __init__(self, text: str, files: tuple[str, ...] = (), spdx: str | None = None) -> None:
        self.text = text
        self.files = files
        self.spdx = spdx

    @property
    def key(self) -> str:
        """A short, stable name: the first licence file it names, else its text."""
        return self.files[0] if self.files else self.text


class FirmwareFile(Record):
    """A regular file of linux-firmware (a WHENCE ``File:`` or ``RawFile:``).

    ``path`` is below the firmware root (``brcm/brcmfmac43602-pcie.bin``); ``drivers``
    are the WHENCE drivers whose section declares it; ``licence`` is the licence file
    WHENCE names for it (``LICENCE.broadcom_bcm43xx``); ``raw`` marks ``RawFile:``
    entries, which must never be compressed; ``size`` and ``git_id`` (sha1 of
    ``blob <size>\\0<data>``) are given when the catalog knows them.
    """

    __slots__ = ("path", "drivers", "licence", "raw", "size", "git_id")

    def __init__(
        self,
        path: str,
        drivers: tuple[str, ...] = (),
        licence: str | None = None,
        raw: bool = False,
        size: int | None = None,
        git_id: str | None = None,
    ) -> None:
        self.path = path
        self.drivers = drivers
        self.licence = licence
        self.raw = raw
        self.size = size
        self.git_id = git_id


class FirmwareLink(Record):
    """A WHENCE ``Link:``: a symlink that exists only in the index, not in git.

    ``path`` is the link's own path (``brcm/brcmfmac43455-sdio.bin``); ``target`` is
    written as in WHENCE, relative to the link's directory; ``resolved`` is the final
    file or directory below the root; ``is_dir`` marks a link to a directory
    (``nvidia/ad103 -> ad102``); ``drivers`` own the WHENCE section of the link.
    """

    __slots__ = ("path", "target", "resolved", "is_dir", "drivers")

    def __init__(
        self,
        path: str,
        target: str,
        resolved: str,
        is_dir: bool = False,
        drivers: tuple[str, ...] = (),
    ) -> None:
        self.path = path
        self.target = target
        self.resolved = resolved
        self.is_dir = is_dir
        self.drivers = drivers


class Plan(Record):
    """Everything one request needs, at one linux-firmware ref.

    ``notes`` are remarks for the user, e.g. that a chip needs a board file and none
    was chosen.
    """

    __slots__ = ("ref", "files", "links", "notes")

    def __init__(
        self,
        ref: str,
        files: tuple[FirmwareFile, ...] = (),
        links: tuple[FirmwareLink, ...] = (),
        notes: tuple[str, ...] = (),
    ) -> None:
        self.ref = ref
        self.files = files
        self.links = links
        self.notes = notes

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
