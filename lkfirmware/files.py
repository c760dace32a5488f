"""Writing files so that a reader sees the old file or the new one, never a part.

Every file lkfirmware writes -- the user's config, the lock file, the cache's blobs
and index, decompressed and compressed copies -- goes through :func:`atomic_writer`:
a temporary file in the same folder, renamed into place only when writing succeeded.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from contextlib import contextmanager

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from typing import IO

NEW_FILE_MODE = 0o644


@contextmanager
def atomic_writer(path: Path, *, mode: int | None = None, sync: bool = True) -> Iterator[IO[bytes]]:
    """A binary stream that becomes ``path`` when the ``with`` block ends without error.

    :param mode: permission bits of the new file; None keeps those (and the owner) of
        the file it replaces, or ``0o644`` for a new one.
    :param sync: fsync the data and the folder, for files that must survive a crash
        (configs, lock files); the cache, which can refetch, skips it.

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    try:
        replaced: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        replaced = None
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{path.name[:40]}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            if sync:
                stream.flush()
                os.fsync(stream.fileno())
        if mode is None and replaced is not None:
            os.chmod(temporary, stat.S_IMODE(replaced.st_mode))
            _keep_owner(temporary, replaced)
        else:
            os.chmod(temporary, NEW_FILE_MODE if mode is None else mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    if sync:
        _fsync_folder(path.parent)


def atomic_write(path: Path, data: bytes, *, mode: int | None = None, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, mode=mode, sync=sync) as stream:
        stream.write(data)


def _keep_owner(path: str, replaced: os.stat_result) -> None:
    current = os.stat(path)
    if (current.st_uid, current.st_gid) != (replaced.st_uid, replaced.st_gid):
        with contextlib.suppress(PermissionError):
            os.chown(path, replaced.st_uid, replaced.st_gid)


def _fsync_folder(folder: Path) -> None:
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(handle)
    finally:
        os.close(handle)
