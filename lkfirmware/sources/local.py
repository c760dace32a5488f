"""Blobs from a folder on this machine: a linux-firmware checkout or an installed tree.

Two kinds of folder work:

* a linux-firmware checkout (or an unpacked release tarball), where files are stored
  as they are in git and links exist only in WHENCE;
* an installed firmware tree such as ``/lib/firmware`` or ``/usr/lib/firmware``, where
  ``copy-firmware.sh`` may have compressed files (``name.xz``, ``name.zst``) and made the
  WHENCE links real symlinks (directory links too).

A file is looked up under its own name first, then with a compression suffix, and
compressed files are decompressed on the way out.  Symlinks are followed, but only
within the folder: one that leads outside it is refused.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lkfirmware.plan import FirmwareFile
from lkfirmware.sources.base import BlobMissing, SourceFailure

__all__ = ["LOOKUP_SUFFIXES", "LocalTreeSource", "local_root_from"]

LOOKUP_SUFFIXES = ("", ".zst", ".xz", ".gz")
"""Suffixes tried for each file, in order: as is, then compressed as the kernel would look."""


def local_root_from(mirror: str) -> Path | None:
    """The folder a mirror names, or None when it is not on this machine.

    Accepts a ``file://`` URL (``file:///lib/firmware``, percent-encoding allowed), a
    ``file://`` template whose last segment is ``{path}`` (``file:///srv/fw/{path}``), or a
    plain path (``/lib/firmware``, ``~/src/linux-firmware``, ``./fw``).  Other URLs
    (``https://...``) and templates that contain ``{ref}`` give None: a folder holds one
    version only.

    Example: ``local_root_from("file:///usr/lib/firmware")`` is ``Path("/usr/lib/firmware")``.
    """
    text = mirror.strip()
    if not text or "{ref}" in text:
        return None
    if text.endswith("{path}"):
        text = text.removesuffix("{path}")
        if not text.endswith("/"):
            return None
    if "{" in text:
        return None
    parts = urlsplit(text)
    if parts.scheme.lower() == "file":
        if parts.netloc not in ("", "localhost"):
            return None
        return Path(unquote(parts.path) or "/")
    if "://" in text or (parts.scheme and len(parts.scheme) > 1):
        return None  # http(s), ssh, git@host:... and friends
    return Path(text).expanduser()


def _is_git_checkout(root: Path) -> bool:
    return (root / ".git").exists()


def _is_bare_repository(root: Path) -> bool:
    return (root / "HEAD").is_file() and (root / "objects").is_dir() and (root / "refs").is_dir()


class LocalTreeSource:
    """Blobs from a folder: a linux-firmware checkout or an installed firmware tree.

    The ref is ignored: a folder holds one version of linux-firmware, whatever ref the
    plan names (the fetcher verifies sizes and git ids from the catalog, so a folder at
    another version is caught there).  For a git checkout, :meth:`known_ids` reports the
    ids at its ``HEAD``; for any other folder it returns None.

    Example::

        source = LocalTreeSource(Path("/lib/firmware"))
        source.retrieve(FirmwareFile("rtl_nic/rtl8168h-2.fw"), "ignored", Path("out.fw"))
    """

    label: str

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()
        self.label = f"folder {self.root}"
        self._ids: dict[str, tuple[int, str]] | None = None
        self._ids_read = False
        self._mutex = threading.Lock()

    def _real_root(self) -> Path:
        if not self.root.is_dir():
            raise SourceFailure(f"the firmware folder {self.root} does not exist")
        if _is_bare_repository(self.root):
            raise SourceFailure(
                f"{self.root} is a bare git repository, not a firmware folder: use "
                f"--source git --git-url {self.root.resolve().as_uri()}"
            )
        return self.root.resolve()

    def prepare(self, files: Sequence[FirmwareFile], ref: str) -> None:
        """Check that the folder exists; there is nothing to fetch ahead of time."""
        self._real_root()

    def locate(self, path: str) -> tuple[Path, str] | None:
        """Where ``path`` is stored: the name found in the folder and its compression suffix.

        The name is ``root/path`` or ``root/path`` plus ``.zst``, ``.xz`` or ``.gz`` (the
        suffix returned, ``""`` for none), tried in that order; None if there is none.
        Symlinks are followed; a path or link that leads out of the folder raises
        :class:`SourceFailure`.
        """
        root = self._real_root()
        for suffix in LOOKUP_SUFFIXES:
            candidate = root / (path + suffix)
            if not os.path.lexists(candidate):
                continue
            real = Path(os.path.realpath(candidate))
            if real != root and root not in real.parents:
                raise SourceFailure(
                    f"refusing {path}: {candidate} leads to {real}, outside {self.root}"
                )
            if real.is_file():
                return candidate, suffix
        return None

    def retrieve(self, file: FirmwareFile, ref: str, into: Path) -> None:
        """Write the bytes of ``file`` into ``into``, decompressing ``.xz``/``.zst``/``.gz``.

        ``ref`` is ignored (see the class).  Raises :class:`BlobMissing` when the folder
        has no such file, and :class:`SourceFailure` when it cannot be read.
        """
        found = self.locate(file.path)
        if found is None:
            raise BlobMissing(f"{file.path} is not in {self.root} (nor .zst, .xz or .gz)")
        name, suffix = found
        from lkfirmware.compress import DecompressionError, decompress_file

        try:
            if suffix:
                decompress_file(name, Path(into))
            else:
                shutil.copyfile(name, into)
        except (DecompressionError, OSError) as exc:
            raise SourceFailure(f"cannot read {file.path} from {name}: {exc}") from exc

    def known_ids(self, ref: str) -> dict[str, tuple[int, str]] | None:
        """Size and git blob id of every file at the checkout's ``HEAD``, else None.

        Only for a folder that is the top of a complete git checkout (``git ls-tree -r -l
        HEAD``); a partial clone would download every blob to answer, so it gives None,
        as do plain folders and installed trees.  ``ref`` is ignored.
        """
        with self._mutex:
            if not self._ids_read:
                self._ids = self._read_ids()
                self._ids_read = True
            return self._ids

    def _read_ids(self) -> dict[str, tuple[int, str]] | None:
        if not _is_git_checkout(self.root):
            return None
        try:
            import git
        except ImportError:
            return None
        runner = git.Git(str(self.root))
        try:
            partial = runner.execute(
                ["git", "config", "--get", "extensions.partialClone"],
                with_exceptions=False,
            )
            if partial.strip():
                return None
            top = runner.execute(["git", "rev-parse", "--show-toplevel"])
            if Path(top.strip()).resolve() != self.root.resolve():
                return None
            out: bytes = runner.execute(
                ["git", "ls-tree", "-r", "-l", "-z", "--full-tree", "HEAD"],
                stdout_as_string=False,
            )
        except (git.GitCommandError, OSError):
            return None
        ids: dict[str, tuple[int, str]] = {}
        for record in out.split(b"\0"):
            info, _, raw_path = record.partition(b"\t")
            fields = info.decode(errors="replace").split()
            if len(fields) != 4 or fields[0] in ("120000", "160000") or fields[1] != "blob":
                continue
            ids[raw_path.decode("utf-8", "surrogateescape")] = (int(fields[3]), fields[2])
        return ids
