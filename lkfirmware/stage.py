"""Stage fetched blobs where ``linuxkit build`` can read them, and describe them as
``files:`` entries.

Blobs are placed under a destination folder (by default ``firmware/`` beside the
config) at their firmware paths -- ``firmware/brcm/brcmfmac43602-pcie.bin`` -- hard-linked
from the cache where the file system allows, copied otherwise.  Optionally they are
compressed for kernels built with ``CONFIG_FW_LOADER_COMPRESS``: then file and link
names carry the suffix, as linux-firmware's ``copy-firmware.sh --xz/--zstd`` does, and
``RawFile:`` entries stay uncompressed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from lkfirmware.cache import digest_file
from lkfirmware.compress import CompressMethod, suffix_for
from lkfirmware.errors import IntegrityError, UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from lkfirmware.config import FilesEntry
    from lkfirmware.fetcher import CachedBlob
    from lkfirmware.plan import FirmwareLink

FIRMWARE_ROOT = "/lib/firmware"


class StagedFile(NamedTuple):
    """A blob placed under the destination folder."""

    firmware_path: str
    """Its name below /lib/firmware, with a compression suffix when compressed."""
    staged: Path
    """The file under the destination folder."""
    blob: CachedBlob
    """The cached, verified blob it was made from."""
    changed: bool
    """True when staging created or replaced the file (or would, in a dry run)."""


class StagedLink(NamedTuple):
    """A WHENCE link, as it goes into the image (with the compression suffix if any)."""

    firmware_path: str
    target: str


def _suffix(compress: CompressMethod | None) -> str:
    """The name suffix of a staged file: none when it is not compressed."""
    return "" if compress is None else suffix_for(compress)


def is_current(staged: Path, blob: CachedBlob, compress: CompressMethod | None) -> bool:
    """True when ``staged`` already holds exactly ``blob`` (compressed as asked)."""
    try:
        info = staged.lstat()
    except FileNotFoundError:
        return False
    if not staged.is_file() or staged.is_symlink():
        return False
    if compress is None:
        linked = _same_file(staged, blob.location)
        if info.st_size == blob.size and digest_file(staged).sha256 == blob.sha256:
            return True
        if linked:  # the staged hard link was edited, and with it the cache's copy
            raise IntegrityError(
                f"{staged} was changed in place, and with it the cached blob it is a hard "
                f"link to ({blob.location}). Run `lkfirmware cache verify --repair`, then "
                "fetch again; to change a firmware file, copy it and point source: at the copy"
            )
        return False
    from lkfirmware.compress import decompress_bytes

    try:
        data = decompress_bytes(staged.read_bytes(), _suffix(compress))
    except ValueError:
        return False
    return len(data) == blob.size and hashlib.sha256(data).hexdigest() == blob.sha256


def _same_file(one: Path, other: Path) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False


def _place(blob: CachedBlob, staged: Path, compress: CompressMethod | None) -> None:
    """Put ``blob`` at ``staged`` atomically: hard link, else copy; or compress."""
    staged.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{staged.name}.", dir=staged.parent)
    os.close(handle)
    temp = Path(temporary)
    try:
        if compress is not None:
            from lkfirmware.compress import compress_file

            compress_file(blob.location, temp, compress)
        else:
            temp.unlink()
            try:
                os.link(blob.location, temp)
            except OSError:
                shutil.copyfile(blob.location, temp)
                os.chmod(temp, 0o644)
        os.replace(temp, staged)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def stage_blobs(
    blobs: Iterable[CachedBlob],
    dest: Path,
    *,
    compress: CompressMethod | None = None,
    raw: Iterable[str] = (),
    write: bool = True,
) -> list[StagedFile]:
    """Place every blob under ``dest`` at its firmware path.

    :param compress: ``"xz"`` or ``"zstd"`` to stage compressed copies (off by default:
        LinuxKit kernels load only uncompressed firmware).
    :param raw: firmware paths that must never be compressed (WHENCE ``RawFile:``).
    :param write: False to only report what would change (``--check``/``--dry-run``).
    """
    raw_paths = set(raw)
    staged: list[StagedFile] = []
    root = dest.resolve()
    for blob in blobs:
        method = None if blob.path in raw_paths else compress
        name = blob.path + _suffix(method)
        target = (dest / name).resolve()
        if root not in target.parents:
            raise UsageError(f"firmware path {name!r} would be staged outside {dest}")
        changed = not is_current(target, blob, method)
        if changed and write:
            _place(blob, target, method)
        staged.append(StagedFile(name, dest / name, blob, changed))
    return staged


def stage_links(
    links: Iterable[FirmwareLink],
    *,
    compress: CompressMethod | None = None,
    raw: Iterable[str] = (),
) -> list[StagedLink]:
    """WHENCE links as image symlinks; with compression, a link to a compressed file
    carries the same suffix on its name and target (directory links do not)."""
    raw_paths = set(raw)
    staged = []
    for link in links:
        suffix = "" if link.is_dir or link.resolved in raw_paths else _suffix(compress)
        staged.append(StagedLink(link.path + suffix, link.target + suffix))
    return staged


def prune_staged(
    dest: Path, dropped: Iterable[Path], keep: Iterable[Path], *, write: bool = True
) -> list[Path]:
    """Remove the staged files that dropped ``files:`` entries pointed to.

    Only files inside ``dest`` are touched, never one that is still staged (``keep``),
    and then only the folders below ``dest`` that this leaves empty: the staging folder
    may hold other things, and lkfirmware removes nothing it cannot name.
    """
    root = dest.resolve()
    wanted = {path.resolve() for path in keep}
    gone: list[Path] = []
    for path in dropped:
        target = path.resolve()
        if root in target.parents and target not in wanted and target.is_file():
            gone.append(path)
    if write:
        for path in gone:
            path.unlink()
            folder = path.resolve().parent
            while folder != root and root in folder.parents and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
    return gone


def files_entries(
    files: Iterable[StagedFile],
    links: Iterable[StagedLink],
    *,
    config_dir: Path,
    absolute_sources: bool = False,
) -> list[FilesEntry]:
    """The ``files:`` entries for staged files and links.

    ``source:`` is relative to ``config_dir`` -- linuxkit opens sources relative to its
    working directory, so ``linuxkit build`` must run there -- or absolute when asked.
    Regular files and links get ``mode: "0644"``, so that ``/lib`` and ``/lib/firmware``
    are never created ``0700`` by a default-mode entry.
    """
    from lkfirmware.config import FilesEntry

    entries = []
    for item in files:
        if absolute_sources:
            source = str(item.staged.resolve())
        else:
            source = os.path.relpath(item.staged.resolve(), config_dir.resolve())
        entries.append(FilesEntry(path=f"{FIRMWARE_ROOT}/{item.firmware_path}", source=source))
    for link in links:
        entries.append(
            FilesEntry(path=f"{FIRMWARE_ROOT}/{link.firmware_path}", symlink=link.target)
        )
    return entries
