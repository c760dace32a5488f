"""The contract between the fetcher and the places blobs come from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from lkfirmware.plan import FirmwareFile


class BlobMissing(Exception):
    """The source answered, and does not have this file at this ref (e.g. HTTP 404)."""


class SourceFailure(Exception):
    """The source could not be asked, or answered badly (connection error, 5xx, bad bytes)."""


class BlobSource(Protocol):
    """One place to get blobs from.

    The fetcher calls :meth:`prepare` once with every file it still needs, then
    :meth:`retrieve` for each of them (possibly from several threads), and verifies and
    moves what was written into the cache itself.  A source never writes into the cache.
    """

    label: str
    """Says where the blobs come from, for messages (a URL template, a git URL, a folder)."""

    def prepare(self, files: Sequence[FirmwareFile], ref: str) -> None:
        """Batch work before single retrievals (a git source fetches all blobs at once)."""
        ...

    def retrieve(self, file: FirmwareFile, ref: str, into: Path) -> None:
        """Write the bytes of ``file`` at ``ref`` into the new file ``into``.

        Raises :class:`BlobMissing` when the source does not have the file, and
        :class:`SourceFailure` for anything that another source might do better.
        """
        ...

    def known_ids(self, ref: str) -> dict[str, tuple[int, str]] | None:
        """Size and git blob id of every file at ``ref``, when the source knows them."""
        ...
