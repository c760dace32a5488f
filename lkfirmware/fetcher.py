"""Fetch a plan's firmware files into the cache, verified, each downloaded once.

For every planned file the fetcher works out what the bytes must be (:class:`Expected`:
size and git blob id from the catalog or the source's tree, sha256 from the lock file),
takes the blob from the cache when it is there, and otherwise asks the sources in order:
each source gets every file still missing (``prepare`` once, then ``retrieve`` in
parallel), and a file it cannot deliver (missing, failed, wrong bytes) goes on to the
next source.  Downloads go to ``tmp/<key>.incomplete`` in the cache, are hashed, checked
and only then renamed into ``blobs/``; a per-blob lock makes concurrent processes wait
for each other instead of downloading the same blob twice.  Links are never downloaded:
``plan.links`` are carried through to the result.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lkfirmware.cache import (
    Cache,
    CacheEntry,
    Digest,
    digest_file,
    git_blob_id_of,
    is_immutable_ref,
)
from lkfirmware.errors import FetchError, IntegrityError, UsageError
from lkfirmware.lockfile import LockedFile, LockFile, read_lock, write_lock
from lkfirmware.plan import FirmwareFile, FirmwareLink, Plan
from lkfirmware.sources.base import BlobMissing, BlobSource, SourceFailure

if TYPE_CHECKING:
    import requests

    from lkfirmware.sources.plain import HttpSettings


@dataclass(frozen=True)
class CachedBlob:
    """One firmware file, in the cache."""

    path: str
    """The firmware path, e.g. ``brcm/brcmfmac43602-pcie.bin``."""
    location: Path
    """The blob in the cache (read-only; hard-link or copy it, never edit it)."""
    size: int
    sha256: str
    git_id: str | None
    downloaded: bool
    """True when this fetch downloaded it, False when it came from the cache."""


@dataclass(frozen=True)
class FetchResult:
    """Everything one fetch produced, in plan order."""

    ref: str
    blobs: tuple[CachedBlob, ...]
    links: tuple[FirmwareLink, ...]
    downloaded_bytes: int
    cached_bytes: int

    def blob(self, path: str) -> CachedBlob | None:
        """The fetched file at ``path``, or None."""
        for item in self.blobs:
            if item.path == path:
                return item
        return None

    def records(self) -> list[dict[str, object]]:
        """One JSON-ready record per file and per link (what ``--json`` prints).

        File: ``path, kind="file", location, size, sha256, git_id, downloaded``.
        Link: ``path, kind="link", target, resolved, is_dir`` and the location, size,
        sha256 and git_id of the file it resolves to (None for a directory link).
        """
        out: list[dict[str, object]] = []
        for item in self.blobs:
            out.append(
                {
                    "path": item.path,
                    "kind": "file",
                    "location": str(item.location),
                    "size": item.size,
                    "sha256": item.sha256,
                    "git_id": item.git_id,
                    "downloaded": item.downloaded,
                }
            )
        by_path = {item.path: item for item in self.blobs}
        for link in self.links:
            target = None if link.is_dir else by_path.get(link.resolved)
            out.append(
                {
                    "path": link.path,
                    "kind": "link",
                    "target": link.target,
                    "resolved": link.resolved,
                    "is_dir": link.is_dir,
                    "location": str(target.location) if target else None,
                    "size": target.size if target else None,
                    "sha256": target.sha256 if target else None,
                    "git_id": target.git_id if target else None,
                }
            )
        return out


@dataclass(frozen=True)
class Expected:
    """What the bytes of one file must be, and who says so (for error messages)."""

    size: int | None = None
    git_id: str | None = None
    sha256: str | None = None
    origins: Mapping[str, str] = field(default_factory=dict)
    """For each known field, where it came from: ``catalog``, ``lock file``, a source."""

    def merged(self, other: Expected, path: str) -> Expected:
        """Both expectations together; :class:`IntegrityError` when they disagree."""
        values: dict[str, Any] = {}
        origins = dict(self.origins)
        for name in ("size", "git_id", "sha256"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is not None and theirs is not None and mine != theirs:
                raise IntegrityError(
                    f"{path}: the {self.origins[name]} says {name} {mine}, the "
                    f"{other.origins[name]} says {theirs}; one of them is out of date "
                    f"(update the lock file or the catalog, or choose the matching --ref)"
                )
            values[name] = mine if mine is not None else theirs
            if mine is None and theirs is not None:
                origins[name] = other.origins[name]
        return Expected(origins=origins, **values)


def expected_from(
    file: FirmwareFile | None = None,
    locked: LockedFile | None = None,
    known: tuple[int, str] | None = None,
    known_origin: str = "source",
) -> Expected:
    """The :class:`Expected` bytes of a file from the catalog, the lock and a source tree."""
    result = Expected()
    path = file.path if file is not None else "file"
    if file is not None:
        result = _expected("catalog", size=file.size, git_id=file.git_id)
    if locked is not None:
        lock = _expected("lock file", size=locked.size, git_id=locked.git_id, sha256=locked.sha256)
        result = result.merged(lock, path)
    if known is not None:
        result = result.merged(_expected(known_origin, size=known[0], git_id=known[1]), path)
    return result


def _expected(
    origin: str, *, size: int | None, git_id: str | None, sha256: str | None = None
) -> Expected:
    values = {"size": size, "git_id": git_id, "sha256": sha256}
    origins = {name: origin for name, value in values.items() if value is not None}
    return Expected(size=size, git_id=git_id, sha256=sha256, origins=origins)


def check_digest(digest: Digest, expected: Expected) -> str | None:
    """Why ``digest`` is not the expected blob, or None when it is."""
    for name in ("size", "git_id", "sha256"):
        want = getattr(expected, name)
        got = getattr(digest, name)
        if want is not None and want != got:
            label = "git blob id" if name == "git_id" else name
            return f"{label} is {got}, the {expected.origins.get(name, 'expected')} says {want}"
    return None


def _entry_matches(entry: CacheEntry, expected: Expected) -> bool:
    if expected.size is not None and entry.size != expected.size:
        return False
    if expected.sha256 is not None and entry.sha256 != expected.sha256:
        return False
    return not (expected.git_id and entry.git_id and entry.git_id != expected.git_id)


def lookup(
    cache: Cache, ref: str, path: str, expected: Expected, *, offline: bool
) -> tuple[CacheEntry, bool] | None:
    """The cached blob for ``path`` at ``ref`` and whether the index already says so.

    By sha256 (lock file), then git blob id (catalog or tree), then the (ref, path)
    index -- the last only for immutable refs, or offline: a branch may have moved.
    """
    if expected.sha256:
        entry = cache.by_sha256(expected.sha256)
        if entry is not None and _entry_matches(entry, expected):
            return _with_git_id(entry, expected), False
    if expected.git_id:
        entry = cache.by_git_id(expected.git_id)
        if entry is not None and _entry_matches(entry, expected):
            return entry, False
    if offline or is_immutable_ref(ref):
        entry = cache.by_ref_path(ref, path)
        if entry is not None and _entry_matches(entry, expected):
            return entry, True
    return None


def _with_git_id(entry: CacheEntry, expected: Expected) -> CacheEntry:
    if entry.git_id or not expected.git_id:
        return entry
    return CacheEntry(entry.sha256, entry.size, expected.git_id, entry.location)


def blob_key(ref: str, path: str, expected: Expected) -> str:
    """The name of a download's lock and temporary file: the same blob, the same key."""
    if expected.git_id:
        return f"git-{expected.git_id}"
    if expected.sha256:
        return f"sha-{expected.sha256}"
    return "ref-" + hashlib.sha256(f"{ref}\0{path}".encode()).hexdigest()[:40]


def build_sources(
    mirrors: Sequence[str] | None,
    *,
    settings: HttpSettings | None = None,
    jobs: int = 8,
) -> tuple[list[BlobSource], requests.Session]:
    """Plain-mirror sources for ``mirrors`` (see :func:`mirror_templates`), one session."""
    from lkfirmware.mirrors import mirror_templates
    from lkfirmware.sources.plain import HttpSettings, PlainMirrorSource, make_session

    settings = settings or HttpSettings.from_env()
    templates = mirror_templates(mirrors)
    session = make_session(settings, pool_size=jobs)
    sources: list[BlobSource] = [
        PlainMirrorSource(template, session=session, settings=settings) for template in templates
    ]
    return sources, session


@dataclass(frozen=True)
class _Outcome:
    blob: CachedBlob | None = None
    kind: str = ""
    """"missing", "failed" or "bad" when ``blob`` is None."""
    reason: str = ""


class _Progress:
    """A tqdm bar by bytes (or nothing), safe to update from worker threads."""

    def __init__(self, enabled: bool, total: int | None, count: int) -> None:
        self._bar: Any = None
        self._lock = threading.Lock()
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=f"fetching {count} file(s)",
                file=sys.stderr,
                leave=False,
            )

    def __call__(self, amount: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(amount)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _retrieve(
    source: BlobSource,
    file: FirmwareFile,
    ref: str,
    into: Path,
    progress: Callable[[int], None],
) -> bool:
    """Run ``source.retrieve``; True when the source reported progress itself."""
    if getattr(source, "reports_progress", False):
        source.retrieve(file, ref, into, progress=progress)  # type: ignore[call-arg]
        return True
    source.retrieve(file, ref, into)
    return False


def _fetch_one(
    cache: Cache,
    source: BlobSource,
    file: FirmwareFile,
    ref: str,
    expected: Expected,
    progress: Callable[[int], None],
) -> _Outcome:
    key = blob_key(ref, file.path, expected)
    # The file handed to the source carries what is known, so it can refuse early.
    wanted = file._replace(size=expected.size, git_id=expected.git_id)
    with cache.lock(key):
        found = lookup(cache, ref, file.path, expected, offline=False)
        if found is not None:
            entry, _ = found
            cache.record(ref, file.path, entry)
            return _Outcome(_cached(file.path, entry, downloaded=False))
        partial = cache.incoming(key)
        resumable = bool(getattr(source, "resumable", False))
        if not (expected.git_id or expected.sha256 or is_immutable_ref(ref)):
            # A branch may have moved since an earlier run left this partial download, and
            # without an id nothing would notice a mix of old and new bytes.
            partial.unlink(missing_ok=True)
        for _ in range(2):
            if not resumable:
                partial.unlink(missing_ok=True)
            resumed = partial.exists() and partial.stat().st_size > 0
            try:
                reported = _retrieve(source, wanted, ref, partial, progress)
            except BlobMissing as error:
                return _Outcome(kind="missing", reason=str(error) or source.label)
            except SourceFailure as error:
                if not resumable:
                    partial.unlink(missing_ok=True)
                return _Outcome(kind="failed", reason=str(error) or source.label)
            except Exception as error:  # a source's bug must not stop the other sources
                partial.unlink(missing_ok=True)
                return _Outcome(kind="failed", reason=f"{source.label}: {error!r}")
            if not partial.is_file():
                return _Outcome(kind="failed", reason=f"{source.label}: wrote nothing")
            try:
                digest = digest_file(partial)
                problem = check_digest(digest, expected)
                if problem is None:
                    if not reported:
                        progress(digest.size)
                    entry = cache.admit(partial, digest)
                    cache.record(ref, file.path, entry)
                    return _Outcome(_cached(file.path, entry, downloaded=True))
            except OSError as error:
                partial.unlink(missing_ok=True)
                raise FetchError(
                    f"cannot store {file.path} in the cache {cache.root}: "
                    f"{error.strerror or error}; free some space or choose another --cache-dir"
                ) from error
            partial.unlink(missing_ok=True)
            if not resumed:
                return _Outcome(kind="bad", reason=f"{source.label} served wrong bytes: {problem}")
            # The bad bytes may have come from the earlier, interrupted attempt: once more
            # from scratch.
        return _Outcome(kind="bad", reason=f"{source.label} served wrong bytes: {problem}")


def _cached(path: str, entry: CacheEntry, *, downloaded: bool) -> CachedBlob:
    return CachedBlob(
        path=path,
        location=entry.location,
        size=entry.size,
        sha256=entry.sha256,
        git_id=entry.git_id,
        downloaded=downloaded,
    )


_LISTED_FAILURES = 10
"""Files whose every failed attempt is shown; the rest are named on one line."""


def _failure_message(
    ref: str, reasons: Mapping[str, list[str]], labels: Iterable[str], integrity: bool
) -> str:
    lines = [
        f"could not fetch {len(reasons)} firmware file(s) at ref {ref}"
        + (" with the expected contents:" if integrity else ":")
    ]
    shown = list(reasons.items())[:_LISTED_FAILURES]
    for path, why in shown:
        lines.append(f"  {path}")
        lines += [f"    - {reason}" for reason in why] or ["    - no source was tried"]
    if len(reasons) > len(shown):
        rest = list(reasons)[len(shown) :]
        lines.append(f"  ... and {len(rest)} more: {', '.join(rest)}")
    lines.append(f"sources tried, in order: {', '.join(labels) or 'none'}")
    if integrity:
        lines.append(
            "Nothing was written for these files. If the lock file is right, a mirror is "
            "serving bad data: try another --mirror; if the lock file is out of date, "
            "delete its entries for these files."
        )
    else:
        lines.append(
            "Check the ref and the file names, or add a mirror with --mirror or LKFIRMWARE_MIRRORS."
        )
    return "\n".join(lines)


def fetch_plan(
    plan: Plan,
    *,
    sources: Sequence[BlobSource] | None = None,
    mirrors: Sequence[str] | None = None,
    cache: Cache | None = None,
    jobs: int = 8,
    offline: bool = False,
    lock: Path | None = None,
    update_lock: bool = True,
    progress: bool | None = None,
    settings: HttpSettings | None = None,
) -> FetchResult:
    """Put every file of ``plan`` into the cache, verified, and say where each one is.

    ``sources`` are tried in order for each missing file; without them, plain mirrors
    from ``mirrors`` (preset names or URL templates; see
    :func:`lkfirmware.mirrors.mirror_templates`).  ``jobs`` downloads run in parallel.
    ``offline`` uses only the cache.  ``lock`` names a lock file: its entries must match
    (else :class:`IntegrityError`, writing nothing), and new files are added to it
    unless ``update_lock`` is False (``--check``, ``--dry-run``: verify only).
    ``progress`` shows a bar on stderr (default: when stderr is a terminal).
    ``settings`` tunes retries and timeouts of plain mirrors.

    Raises :class:`FetchError` (exit 3) naming each file that no source had, with the
    ref and the sources tried, or listing what ``offline`` could not find.

    Example::

        plan = Plan(ref="20251215", files=(FirmwareFile("brcm/brcmfmac43602-pcie.bin"),))
        result = fetch_plan(plan, mirrors=["gitlab"])
        print(result.blobs[0].location)
    """
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, not {jobs}")
    cache = cache if cache is not None else Cache()
    lock_data = read_lock(lock) if lock is not None else None
    if lock_data is not None and lock_data.ref != plan.ref:
        raise IntegrityError(
            f"lock file {lock} pins ref {lock_data.ref}, but this fetch is at ref {plan.ref}; "
            f"pass --ref {lock_data.ref}, or delete the lock file to pin the new ref"
        )
    locked = lock_data.files if lock_data is not None else {}

    files: list[FirmwareFile] = []
    seen: set[str] = set()
    for item in plan.files:
        if item.path not in seen:
            seen.add(item.path)
            files.append(item)
    expected = {item.path: expected_from(item, locked.get(item.path)) for item in files}

    results: dict[str, CachedBlob] = {}
    misses: list[FirmwareFile] = []
    for item in files:
        found = lookup(cache, plan.ref, item.path, expected[item.path], offline=offline)
        if found is None:
            misses.append(item)
            continue
        entry, indexed = found
        if indexed:
            cache.touch(plan.ref, item.path)
        else:
            cache.record(plan.ref, item.path, entry)
        results[item.path] = _cached(item.path, entry, downloaded=False)

    if misses and offline:
        listing = "\n".join(f"  {item.path}" for item in misses)
        raise FetchError(
            f"--offline: {len(misses)} firmware file(s) at ref {plan.ref} are not in the "
            f"cache {cache.root}:\n{listing}\nRun the same fetch once without --offline."
        )

    if misses:
        session: requests.Session | None = None
        if sources is None:
            sources, session = build_sources(mirrors, settings=settings, jobs=jobs)
        try:
            results.update(
                _download(cache, list(sources), misses, plan.ref, expected, jobs, progress)
            )
        finally:
            if session is not None:
                session.close()

    blobs = tuple(results[item.path] for item in files)
    if lock is not None and update_lock:
        _update_lock(cache, lock, plan.ref, blobs)
    return FetchResult(
        ref=plan.ref,
        blobs=blobs,
        links=tuple(plan.links),
        downloaded_bytes=sum(b.size for b in blobs if b.downloaded),
        cached_bytes=sum(b.size for b in blobs if not b.downloaded),
    )


def _download(
    cache: Cache,
    sources: list[BlobSource],
    misses: list[FirmwareFile],
    ref: str,
    expected: dict[str, Expected],
    jobs: int,
    progress: bool | None,
) -> dict[str, CachedBlob]:
    """Ask each source in turn for the files still missing; raise if some stay missing."""
    done: dict[str, CachedBlob] = {}
    reasons: dict[str, list[str]] = {item.path: [] for item in misses}
    integrity: set[str] = set()
    pending = list(misses)
    sizes = [expected[item.path].size for item in misses]
    total = sum(s for s in sizes if s is not None) if None not in sizes else None
    enabled = sys.stderr.isatty() if progress is None else progress
    bar = _Progress(enabled, total, len(misses))
    try:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="lkfirmware-fetch") as pool:
            for source in sources:
                if not pending:
                    break
                try:
                    source.prepare(pending, ref)
                    known = source.known_ids(ref) or {}
                except (BlobMissing, SourceFailure) as error:
                    for item in pending:
                        reasons[item.path].append(str(error) or source.label)
                    continue
                runnable: list[FirmwareFile] = []
                for item in pending:
                    if item.path in known:
                        try:
                            expected[item.path] = expected[item.path].merged(
                                expected_from(known=known[item.path], known_origin=source.label),
                                item.path,
                            )
                        except IntegrityError as error:
                            reasons[item.path].append(str(error))
                            integrity.add(item.path)
                            continue
                    runnable.append(item)
                outcomes = pool.map(
                    lambda item, source=source: _fetch_one(
                        cache, source, item, ref, expected[item.path], bar
                    ),
                    runnable,
                )
                for item, outcome in zip(runnable, outcomes, strict=True):
                    if outcome.blob is not None:
                        done[item.path] = outcome.blob
                    else:
                        reasons[item.path].append(outcome.reason)
                        if outcome.kind == "bad":
                            integrity.add(item.path)
                pending = [item for item in pending if item.path not in done]
    finally:
        bar.close()
    if pending:
        failed = {item.path: reasons[item.path] for item in pending}
        labels = [source.label for source in sources]
        if integrity & failed.keys():
            raise IntegrityError(_failure_message(ref, failed, labels, integrity=True))
        raise FetchError(_failure_message(ref, failed, labels, integrity=False))
    return done


def _update_lock(cache: Cache, lock: Path, ref: str, blobs: Sequence[CachedBlob]) -> None:
    """Add new files to the lock file; a concurrent writer's entries are kept."""
    key = "lockfile-" + hashlib.sha256(str(lock.absolute()).encode()).hexdigest()[:40]
    with cache.lock(key):
        current = read_lock(lock) or LockFile(ref)
        if current.ref != ref:
            raise IntegrityError(
                f"lock file {lock} now pins ref {current.ref} (changed by another process); "
                f"this fetch is at ref {ref}"
            )
        ours: dict[str, LockedFile] = {}
        for blob in blobs:
            pinned = current.files.get(blob.path)
            if pinned is not None and pinned.sha256 != blob.sha256:
                raise IntegrityError(
                    f"lock file {lock} pins {blob.path} at sha256 {pinned.sha256}, "
                    f"but the fetched blob is {blob.sha256}"
                )
            if pinned is None:
                ours[blob.path] = LockedFile(blob.size, blob.sha256, blob.git_id)
        if ours or not lock.exists():
            write_lock(lock, current.with_files(ours))


def fetch_text(
    path: str,
    ref: str,
    *,
    sources: Sequence[BlobSource] | None = None,
    mirrors: Sequence[str] | None = None,
    cache: Cache | None = None,
    offline: bool = False,
    settings: HttpSettings | None = None,
) -> bytes:
    """The bytes of a small text file (such as ``WHENCE``) at ``ref``, cached.

    A commit or tag is fetched once and then always read from the cache; a branch is
    fetched again each time unless ``offline``.  Raises :class:`FetchError` when no
    source has it, or ``offline`` and it is not cached.
    """
    cache = cache if cache is not None else Cache()
    cached = cache.read_text(ref, path)
    if cached is not None and (offline or is_immutable_ref(ref)):
        return cached
    if offline:
        raise FetchError(
            f"--offline: {path} at ref {ref} is not in the cache {cache.root}; "
            f"run once without --offline to fetch it"
        )
    session: requests.Session | None = None
    if sources is None:
        sources, session = build_sources(mirrors, settings=settings, jobs=1)
    key = "text-" + hashlib.sha256(f"{ref}\0{path}".encode()).hexdigest()[:40]
    reasons: list[str] = []
    try:
        with cache.lock(key):
            again = cache.read_text(ref, path)
            if again is not None and is_immutable_ref(ref):
                return again
            temp = cache.incoming(key)
            for source in sources:
                temp.unlink(missing_ok=True)
                file = FirmwareFile(path)
                try:
                    source.prepare([file], ref)
                    source.retrieve(file, ref, temp)
                    known = (source.known_ids(ref) or {}).get(path)
                except (BlobMissing, SourceFailure) as error:
                    reasons.append(str(error) or source.label)
                    continue
                data = temp.read_bytes()
                temp.unlink(missing_ok=True)
                if known is not None and (len(data), git_blob_id_of(data)) != known:
                    reasons.append(f"{source.label} served wrong bytes for {path}")
                    continue
                cache.store_text(ref, path, data)
                return data
    finally:
        if session is not None:
            session.close()
    hint = (
        "\nA copy from an earlier fetch is cached: pass --offline to use it."
        if cached is not None
        else ""
    )
    lines = "\n".join(f"  - {reason}" for reason in reasons)
    labels = ", ".join(source.label for source in sources)
    raise FetchError(
        f"could not fetch {path} at ref {ref}:\n{lines}\nsources tried, in order: {labels}{hint}"
    )
