"""The shared, content-addressed blob cache.

Layout below the cache root (``default_cache_dir()``)::

    CACHEDIR.TAG                      marks the folder so backup tools skip it
    blobs/<sha256[:2]>/<sha256>       verified blob contents, read-only
    index/<ref>/<h[:2]>/<h>.json      (ref, path) -> sha256, size, git_id (h = sha256 of path)
    ids/<git_id[:2]>/<git_id>         git blob id -> sha256, shared by every ref
    texts/<ref>/<path>                small texts such as WHENCE at a ref
    tmp/<key>.incomplete              downloads in progress (kept so they can resume)
    locks/<key>.lock                  per-blob locks: one process downloads, others wait
    git/                              room for the git source's partial clone

Correctness comes from writing every file to a temporary name on the same file system
and renaming it into place after verification; the per-blob locks only avoid doing the
same download twice.  Index files are tiny and written independently, so processes
sharing one cache never contend on a single index file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from lkfirmware.errors import IntegrityError, UsageError
from lkfirmware.files import atomic_write

if TYPE_CHECKING:
    from filelock import FileLock

ENV_CACHE_DIR = "LKFIRMWARE_CACHE_DIR"
TAG_NAME = "CACHEDIR.TAG"
TAG_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by lkfirmware.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)
_HEX40 = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_DATE_TAG = re.compile(r"\d{8}(\.\d+)?")
_CHUNK = 1 << 20
_AREAS = ("blobs", "index", "ids", "texts", "tmp", "locks")
_OWN_NAMES = frozenset({TAG_NAME, *_AREAS, "git"})


def default_cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``LKFIRMWARE_CACHE_DIR`` when set, else platformdirs' user cache dir for lkfirmware."""
    given = env.get(ENV_CACHE_DIR, "").strip()
    if given:
        return Path(given).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("lkfirmware", appauthor=False))


def is_immutable_ref(ref: str) -> bool:
    """True for refs whose contents never change: a full commit id or a tag.

    linux-firmware's tags are dates (``20251215``); ``refs/tags/...`` is a tag too.
    Anything else is treated as a branch and looked up again when online.
    """
    return bool(
        _HEX40.fullmatch(ref.lower()) or _DATE_TAG.fullmatch(ref) or ref.startswith("refs/tags/")
    )


def git_blob_id_of(data: bytes) -> str:
    """The git blob id of ``data`` (sha1 of ``blob <size>\\0<data>``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Digest:
    """What a file's bytes hash to."""

    size: int
    sha256: str
    git_id: str


def digest_file(path: Path) -> Digest:
    """Size, sha256 and git blob id of the file at ``path``, read once in 1 MiB chunks."""
    with path.open("rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        sha256 = hashlib.sha256()
        sha1 = hashlib.sha1(b"blob %d\0" % size)
        read = 0
        while chunk := stream.read(_CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
            read += len(chunk)
    if read != size:
        raise OSError(f"{path} changed while it was being read")
    return Digest(size=size, sha256=sha256.hexdigest(), git_id=sha1.hexdigest())


@dataclass(frozen=True)
class CacheEntry:
    """One blob in the cache, as the index knows it."""

    sha256: str
    size: int
    git_id: str | None
    location: Path


@dataclass(frozen=True)
class CacheInfo:
    """What ``lkfirmware cache info`` shows."""

    root: Path
    blobs: int
    blob_bytes: int
    entries: int
    refs: tuple[tuple[str, int], ...]
    """Every ref with index entries, and how many."""
    texts: int
    incomplete: int
    incomplete_bytes: int
    other_bytes: int
    """Bytes in other areas (e.g. the git source's clone)."""

    def lines(self) -> list[str]:
        """Human-readable summary, one fact a line."""
        out = [
            f"cache: {self.root}",
            f"blobs: {self.blobs} ({human_size(self.blob_bytes)})",
            f"index entries: {self.entries} in {len(self.refs)} ref(s)",
        ]
        out += [f"  {ref}: {count}" for ref, count in self.refs]
        out.append(f"texts: {self.texts}")
        if self.incomplete:
            out.append(
                f"incomplete downloads: {self.incomplete} ({human_size(self.incomplete_bytes)})"
            )
        if self.other_bytes:
            out.append(f"other (git clone etc.): {human_size(self.other_bytes)}")
        return out


@dataclass(frozen=True)
class PruneResult:
    """What :meth:`Cache.prune` removed (or would remove, with ``dry_run``)."""

    entries: int
    texts: int
    blobs: int
    incomplete: int
    freed_bytes: int


def human_size(size: int) -> str:
    """Bytes for people: 635449 -> "620.6 KiB"."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _ref_dir(ref: str) -> str:
    name = quote(ref, safe="")
    if len(name) > 150:
        name = "h-" + hashlib.sha256(ref.encode()).hexdigest()
    return name


def _path_hash(path: str) -> str:
    return hashlib.sha256(path.encode("utf-8")).hexdigest()


class Cache:
    """A cache folder shared by every lkfirmware process of a user (or a CI runner).

    ``root`` defaults to :func:`default_cache_dir`.  Nothing is created until something
    is written.  A folder that is not empty and has no ``CACHEDIR.TAG`` is refused, so a
    mistyped ``--cache-dir`` never turns a user's folder into a cache (or clears it).
    """

    def __init__(self, root: Path | str | None = None, env: Mapping[str, str] = os.environ):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir(env)
        self._ready = False

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r})"

    # -- layout ---------------------------------------------------------------------

    @property
    def blobs_dir(self) -> Path:
        return self.root / "blobs"

    def blob_path(self, sha256: str) -> Path:
        """Where the blob with this sha256 lives (whether or not it is there)."""
        return self.blobs_dir / sha256[:2] / sha256

    def area(self, name: str) -> Path:
        """A private folder below the root for another part of lkfirmware (``git``)."""
        if name in _AREAS or "/" in name or name.startswith("."):
            raise ValueError(f"{name!r} is not a free cache area name")
        self.ensure()
        path = self.root / name
        path.mkdir(exist_ok=True)
        return path

    def ensure(self) -> None:
        """Create the root and its ``CACHEDIR.TAG`` (refusing a foreign, non-empty folder)."""
        if self._ready:
            return
        try:
            self._create()
        except OSError as error:
            raise UsageError(
                f"cannot use {self.root} as the lkfirmware cache: {error.strerror or error}; "
                f"choose another folder with --cache-dir or LKFIRMWARE_CACHE_DIR"
            ) from error
        self._ready = True

    def _create(self) -> None:
        tag = self.root / TAG_NAME
        if not tag.exists():
            # Another process or thread may be creating this cache right now: only names
            # that are not lkfirmware's own make the folder foreign.
            if self.root.is_dir() and any(
                child.name not in _OWN_NAMES and not child.name.startswith(f".{TAG_NAME}.")
                for child in self.root.iterdir()
            ):
                raise UsageError(
                    f"cache folder {self.root} is not empty and is not an lkfirmware cache "
                    f"(it has no {TAG_NAME}); choose a new or empty folder with --cache-dir "
                    f"or LKFIRMWARE_CACHE_DIR"
                )
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write(tag, TAG_TEXT.encode(), sync=False)
        for sub in _AREAS:
            (self.root / sub).mkdir(exist_ok=True)

    def incoming(self, key: str) -> Path:
        """The resumable temporary file for a download identified by ``key``."""
        self.ensure()
        return self.root / "tmp" / f"{key}.incomplete"

    def lock(self, key: str, timeout: float = -1) -> FileLock:
        """A per-blob inter-process lock (a :class:`filelock.FileLock`, not yet acquired)."""
        from filelock import FileLock

        self.ensure()
        return FileLock(str(self.root / "locks" / f"{key}.lock"), timeout=timeout)

    # -- blobs and the index ---------------------------------------------------------

    def _index_file(self, ref: str, path: str) -> Path:
        digest = _path_hash(path)
        return self.root / "index" / _ref_dir(ref) / digest[:2] / f"{digest}.json"

    def _id_file(self, git_id: str) -> Path:
        return self.root / "ids" / git_id[:2] / git_id

    def _entry_for(self, sha256: str, git_id: str | None) -> CacheEntry | None:
        location = self.blob_path(sha256)
        try:
            size = location.stat().st_size
        except OSError:
            return None
        return CacheEntry(sha256=sha256, size=size, git_id=git_id, location=location)

    def by_sha256(self, sha256: str) -> CacheEntry | None:
        """The cached blob with this sha256, or None."""
        return self._entry_for(sha256.lower(), None)

    def by_git_id(self, git_id: str) -> CacheEntry | None:
        """The cached blob with this git blob id, or None."""
        try:
            sha256 = self._id_file(git_id.lower()).read_text().strip()
        except OSError:
            return None
        if not _HEX40.fullmatch(sha256):
            return None
        return self._entry_for(sha256, git_id.lower())

    def by_ref_path(self, ref: str, path: str) -> CacheEntry | None:
        """The blob the index records for ``path`` at ``ref``, or None."""
        index_file = self._index_file(ref, path)
        try:
            record = json.loads(index_file.read_bytes())
            sha256 = str(record["sha256"])
            git_id = record.get("git_id")
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if record.get("path") != path:
            return None
        entry = self._entry_for(sha256, str(git_id) if git_id else None)
        if entry is not None and entry.size != record.get("size"):
            return None
        return entry

    def touch(self, ref: str, path: str) -> None:
        """Mark the index entry of ``path`` at ``ref`` as used now (for ``prune``)."""
        with contextlib.suppress(OSError):
            os.utime(self._index_file(ref, path))

    def admit(self, temp: Path, digest: Digest) -> CacheEntry:
        """Move a verified download into ``blobs/`` (the caller checked ``digest``)."""
        self.ensure()
        target = self.blob_path(digest.sha256)
        if target.exists() and target.stat().st_size == digest.size:
            temp.unlink(missing_ok=True)
        else:
            with temp.open("rb") as stream:
                os.fsync(stream.fileno())
            os.chmod(temp, 0o444)
            try:
                os.replace(temp, target)
            except FileNotFoundError:
                target.parent.mkdir(exist_ok=True)
                os.replace(temp, target)
        id_file = self._id_file(digest.git_id)
        if not id_file.exists():
            atomic_write(id_file, digest.sha256.encode(), sync=False)
        return CacheEntry(digest.sha256, digest.size, digest.git_id, target)

    def record(self, ref: str, path: str, entry: CacheEntry) -> None:
        """Record that ``path`` at ``ref`` is the blob ``entry`` (no rewrite if unchanged)."""
        self.ensure()
        index_file = self._index_file(ref, path)
        git_id = entry.git_id
        try:
            old = index_file.read_bytes()
        except OSError:
            old = b""
        if git_id is None and old:
            # Found by sha256 alone: keep the git id an earlier record knows.
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                record = json.loads(old)
                if record.get("sha256") == entry.sha256:
                    git_id = record.get("git_id")
        data = json.dumps(
            {"path": path, "sha256": entry.sha256, "size": entry.size, "git_id": git_id},
            sort_keys=True,
        ).encode()
        if old == data:
            with contextlib.suppress(OSError):
                os.utime(index_file)
            return
        atomic_write(index_file, data, sync=False)
        if entry.git_id and not self._id_file(entry.git_id).exists():
            atomic_write(self._id_file(entry.git_id), entry.sha256.encode(), sync=False)

    # -- texts ----------------------------------------------------------------------

    def _text_file(self, ref: str, path: str) -> Path:
        return self.root / "texts" / _ref_dir(ref) / quote(path, safe="")

    def read_text(self, ref: str, path: str) -> bytes | None:
        """A cached text (such as WHENCE) of ``path`` at ``ref``, or None."""
        try:
            return self._text_file(ref, path).read_bytes()
        except OSError:
            return None

    def store_text(self, ref: str, path: str, data: bytes) -> Path:
        """Cache a text of ``path`` at ``ref`` (atomically) and return where it is."""
        self.ensure()
        target = self._text_file(ref, path)
        atomic_write(target, data, sync=False)
        return target

    # -- maintenance ----------------------------------------------------------------

    def _index_files(self) -> Iterator[tuple[str, Path]]:
        index = self.root / "index"
        if not index.is_dir():
            return
        for ref_dir in sorted(index.iterdir()):
            for item in sorted(ref_dir.glob("*/*.json")):
                yield unquote(ref_dir.name), item

    def _blob_files(self) -> Iterator[Path]:
        if self.blobs_dir.is_dir():
            yield from sorted(p for p in self.blobs_dir.glob("*/*") if p.is_file())

    def _text_files(self) -> Iterator[tuple[str, Path]]:
        texts = self.root / "texts"
        if texts.is_dir():
            for ref_dir in sorted(texts.iterdir()):
                for item in sorted(ref_dir.iterdir()):
                    yield unquote(ref_dir.name), item

    def _incomplete_files(self) -> list[Path]:
        tmp = self.root / "tmp"
        return sorted(tmp.glob("*.incomplete")) if tmp.is_dir() else []

    def info(self) -> CacheInfo:
        """Counts and sizes of what the cache holds."""
        blobs = list(self._blob_files())
        refs: dict[str, int] = {}
        for ref, _ in self._index_files():
            refs[ref] = refs.get(ref, 0) + 1
        incomplete = self._incomplete_files()
        other = 0
        if self.root.is_dir():
            for child in self.root.iterdir():
                if child.is_dir() and child.name not in (
                    "blobs",
                    "index",
                    "ids",
                    "texts",
                    "tmp",
                    "locks",
                ):
                    other += sum(p.stat().st_size for p in child.rglob("*") if p.is_file())
        return CacheInfo(
            root=self.root,
            blobs=len(blobs),
            blob_bytes=sum(p.stat().st_size for p in blobs),
            entries=sum(refs.values()),
            refs=tuple(sorted(refs.items())),
            texts=sum(1 for _ in self._text_files()),
            incomplete=len(incomplete),
            incomplete_bytes=sum(p.stat().st_size for p in incomplete),
            other_bytes=other,
        )

    def verify(self, *, repair: bool = False) -> list[str]:
        """Re-hash every blob and check the index; return the problems found.

        With ``repair``, corrupted blobs and index entries that point nowhere are removed
        (the next fetch downloads them again).
        """
        problems: list[str] = []
        digests: dict[str, Digest] = {}
        for blob in self._blob_files():
            rel = blob.relative_to(self.root)
            try:
                digest = digest_file(blob)
            except OSError as error:
                problems.append(f"{rel}: unreadable ({error})")
                continue
            if digest.sha256 != blob.name or blob.parent.name != blob.name[:2]:
                problems.append(f"{rel}: content hashes to sha256 {digest.sha256} (corrupted)")
                if repair:
                    blob.unlink(missing_ok=True)
                continue
            digests[digest.sha256] = digest
        for ref, index_file in self._index_files():
            rel = index_file.relative_to(self.root)
            try:
                record = json.loads(index_file.read_bytes())
                path, sha256 = str(record["path"]), str(record["sha256"])
                size, git_id = int(record["size"]), record.get("git_id")
            except (OSError, ValueError, KeyError, TypeError):
                problems.append(f"{rel}: unreadable index entry")
                if repair:
                    index_file.unlink(missing_ok=True)
                continue
            where = f"{path} at {ref}"
            found = digests.get(sha256)
            if found is None:
                problems.append(f"{where}: blob {sha256} is missing")
            elif found.size != size:
                problems.append(f"{where}: index says {size} bytes, blob has {found.size}")
            elif git_id and found.git_id != git_id:
                problems.append(f"{where}: index says git id {git_id}, blob has {found.git_id}")
            else:
                continue
            if repair:
                index_file.unlink(missing_ok=True)
        ids = self.root / "ids"
        for id_file in sorted(ids.glob("*/*")) if ids.is_dir() else []:
            try:
                sha256 = id_file.read_text().strip()
            except OSError:
                sha256 = ""
            found = digests.get(sha256)
            if found is None or found.git_id != id_file.name:
                problems.append(
                    f"{id_file.relative_to(self.root)}: git id maps to a missing or different blob"
                )
                if repair:
                    id_file.unlink(missing_ok=True)
        return problems

    def prune(
        self,
        *,
        keep_refs: Collection[str] | None = None,
        older_than: float | None = None,
        dry_run: bool = False,
    ) -> PruneResult:
        """Remove what is no longer needed and return what went.

        Index entries and texts of refs not in ``keep_refs`` (when given) and entries not
        used for ``older_than`` seconds (when given) go first; then every blob that no
        remaining index entry names, and incomplete downloads that no process holds.
        Do not prune while other processes fetch into the same cache.
        """
        now = time.time()

        def stale(ref: str, item: Path) -> bool:
            if keep_refs is not None and ref not in keep_refs:
                return True
            return older_than is not None and now - item.stat().st_mtime > older_than

        entries = texts = blobs = incomplete = freed = 0
        wanted: set[str] = set()
        for ref, index_file in list(self._index_files()):
            if stale(ref, index_file):
                entries += 1
                if not dry_run:
                    index_file.unlink(missing_ok=True)
                continue
            try:
                wanted.add(str(json.loads(index_file.read_bytes())["sha256"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        for ref, text_file in list(self._text_files()):
            if stale(ref, text_file):
                texts += 1
                freed += text_file.stat().st_size
                if not dry_run:
                    text_file.unlink(missing_ok=True)
        removed: set[str] = set()
        for blob in list(self._blob_files()):
            if blob.name not in wanted:
                blobs += 1
                freed += blob.stat().st_size
                removed.add(blob.name)
                if not dry_run:
                    blob.unlink(missing_ok=True)
        ids = self.root / "ids"
        if not dry_run and ids.is_dir():
            for id_file in ids.glob("*/*"):
                try:
                    if id_file.read_text().strip() in removed:
                        id_file.unlink(missing_ok=True)
                except OSError:
                    continue
        from filelock import Timeout

        for partial in self._incomplete_files():
            try:
                with self.lock(partial.name.removesuffix(".incomplete"), timeout=0):
                    incomplete += 1
                    freed += partial.stat().st_size
                    if not dry_run:
                        partial.unlink(missing_ok=True)
            except (Timeout, OSError):
                continue
        if not dry_run:
            self._remove_empty_dirs()
        return PruneResult(entries, texts, blobs, incomplete, freed)

    def _remove_empty_dirs(self) -> None:
        for area in ("blobs", "index", "ids", "texts"):
            base = self.root / area
            if not base.is_dir():
                continue
            for folder in sorted((p for p in base.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    folder.rmdir()

    def clear(self) -> int:
        """Remove everything the cache holds (keeping the tagged root); return bytes freed.

        Refuses (:class:`IntegrityError`) a non-empty folder without ``CACHEDIR.TAG``.
        """
        if not self.root.is_dir():
            return 0
        if not (self.root / TAG_NAME).is_file():
            if any(self.root.iterdir()):
                raise IntegrityError(
                    f"{self.root} has no {TAG_NAME}: it is not an lkfirmware cache, "
                    f"so it is left alone"
                )
            return 0
        freed = 0
        for child in self.root.iterdir():
            if child.name == TAG_NAME:
                continue
            if child.is_dir() and not child.is_symlink():
                freed += sum(p.stat().st_size for p in child.rglob("*") if p.is_file())
                _make_writable(child)
                shutil.rmtree(child)
            else:
                freed += child.lstat().st_size
                child.unlink()
        self._ready = False
        return freed


def _make_writable(folder: Path) -> None:
    # Blobs are read-only files; their folders stay writable, so rmtree works.  Only
    # folders someone made read-only need fixing.
    for sub in [folder, *(p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink())]:
        mode = sub.stat().st_mode
        if not mode & 0o200:
            os.chmod(sub, mode | 0o700)
