"""Blobs from a partial, shallow git clone of linux-firmware, kept and reused in the cache.

The clone is a bare repository in ``clone_dir`` set up as a partial clone of ``url``
(``--filter=blob:none``): a ref is fetched with ``--depth 1``, which brings one commit and
its trees but no file contents.  The trees already name every file's git blob id, so the
source can tell which files exist and what their bytes must hash to before any blob
arrives.  :meth:`GitSource.prepare` then fetches exactly the blobs a plan needs, by id,
in one batch (the request git itself makes when a partial clone lazily needs objects);
a later fetch of other files, at the same or another ref, transfers only the blobs the
clone does not hold yet.  There is no work tree and no checkout: blobs are read with
``git cat-file`` and verified against their ids while they are written out.

Git never fetches lazily behind the source's back: presence is checked with
``git rev-list --missing=print`` and only commands that read objects known to be present
are run, so every transfer goes through one locked, batched ``git fetch``.  A file lock in
``clone_dir`` serialises fetches, so threads and processes (parallel builds sharing one
cache) can use one clone together.

Git trees do not record file sizes: sizes are known only for blobs already in the clone
(see :meth:`GitSource.known_ids` and :func:`tree_listing`).

The server must allow filters (``uploadpack.allowFilter``; kernel.org, GitLab and GitHub
do).  One that does not makes git ignore the filter: the source still works, but the
first fetch of a ref brings every file at that ref, as a ``--depth 1`` clone would.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from lkfirmware.plan import FirmwareFile
from lkfirmware.sources.base import BlobMissing, SourceFailure

if TYPE_CHECKING:
    import git

__all__ = [
    "DEFAULT_GIT_URL",
    "GitSource",
    "TreeEntry",
    "clone_dir_name",
    "default_git_url",
    "follow_tree_links",
    "tree_blob_ids",
    "tree_listing",
]

DEFAULT_GIT_URL = "https://git.kernel.org/pub/scm/linux/kernel/git/firmware/linux-firmware.git"
"""The linux-firmware repository the git source clones unless told otherwise."""

GIT_URL_ENV = "LKFIRMWARE_GIT_URL"
"""Environment variable that replaces :data:`DEFAULT_GIT_URL`."""

_LOCK_NAME = "lkfirmware.lock"
_MARKER_NAME = "lkfirmware-clone"
_FULL_HEX = re.compile(r"[0-9a-fA-F]{40}")
_REF_NAME = re.compile(r"[A-Za-z0-9._+@/-]+")
_CHUNK = 1 << 20
_MAX_LINK_HOPS = 40

# Settings written into every clone: a partial clone of "origin" that never runs gc or
# maintenance on its own (a gc must not race with readers in other processes).
_CLONE_CONFIG = (
    ("core.repositoryformatversion", "1"),
    ("extensions.partialClone", "origin"),
    ("remote.origin.promisor", "true"),
    ("remote.origin.partialclonefilter", "blob:none"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("core.logAllRefUpdates", "false"),
    ("fetch.recurseSubmodules", "false"),
)
# Options for every git command the source runs; a transfer that stalls (under 1 kB/s for
# a minute) fails instead of hanging the build.
_GIT_OPTIONS = (
    "-c", "gc.auto=0", "-c", "maintenance.auto=false", "-c", "protocol.version=2",
    "-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=60",
)  # fmt: skip
# Never ask for credentials on a terminal: a build must fail, not hang.
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0"}


def default_git_url() -> str:
    """The git URL to clone: ``$LKFIRMWARE_GIT_URL`` if set, else :data:`DEFAULT_GIT_URL`."""
    return os.environ.get(GIT_URL_ENV, "").strip() or DEFAULT_GIT_URL


def clone_dir_name(url: str) -> str:
    """A folder name for the clone of ``url`` that is stable and safe on any filesystem.

    Example: ``clone_dir_name(DEFAULT_GIT_URL)`` gives ``"git-linux-firmware-"`` plus 16
    hex digits of the URL's sha256.
    """
    stem = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:40] or "repo"
    return f"git-{stem}-{hashlib.sha256(url.encode()).hexdigest()[:16]}"


class TreeEntry(NamedTuple):
    """One entry of ``git ls-tree -r``: a file, a symlink or a submodule."""

    mode: str
    """Git's file mode: ``100644``, ``100755``, ``120000`` (symlink), ``160000`` (submodule)."""
    kind: str
    """``blob`` or ``commit`` (a submodule)."""
    oid: str
    """The object id: for a file, its git blob id."""

    @property
    def is_link(self) -> bool:
        """True for a symlink stored in git (linux-firmware had them until 2020)."""
        return self.mode == "120000"

    @property
    def is_file(self) -> bool:
        """True for a regular file."""
        return self.kind == "blob" and not self.is_link


class NeedBlob(Exception):
    """Raised by a link reader when the blob holding a symlink's target is not local yet."""

    def __init__(self, oid: str) -> None:
        super().__init__(oid)
        self.oid = oid


def _normalise(parts: Iterable[str], whole: str) -> list[str]:
    """Resolve ``.`` and ``..`` in path parts; a path that leaves the tree is refused."""
    out: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                raise SourceFailure(f"{whole} leads outside the firmware tree")
            out.pop()
        else:
            out.append(part)
    return out


def follow_tree_links(
    path: str, entries: dict[str, TreeEntry], read_link: Callable[[str], str]
) -> str | None:
    """The path of the regular file that ``path`` names in a git tree, following symlinks.

    ``entries`` is a ``git ls-tree -r`` listing; ``read_link(oid)`` returns a symlink's
    target text (and may raise :class:`NeedBlob`).  Symlinks anywhere in the path are
    followed (a linked directory too), but never out of the tree: such a link, an
    absolute one, or a loop raises :class:`SourceFailure`.  Returns None when no regular
    file is there.

    Example: with ``nvidia/ad103`` a symlink to ``ad102``,
    ``follow_tree_links("nvidia/ad103/gsp/x.bin", entries, read)`` is
    ``"nvidia/ad102/gsp/x.bin"``.
    """
    found = entries.get(path)
    if found is not None and found.is_file:
        return path
    parts = _normalise(path.split("/"), path)
    hops = 0
    index = 0
    while index < len(parts):
        here = "/".join(parts[: index + 1])
        entry = entries.get(here)
        if entry is not None and entry.is_link:
            hops += 1
            if hops > _MAX_LINK_HOPS:
                raise SourceFailure(f"{path}: too many levels of symbolic links in the git tree")
            target = read_link(entry.oid)
            if target.startswith("/"):
                raise SourceFailure(f"{path}: {here} is a symlink to the absolute path {target}")
            parts = _normalise([*parts[:index], *target.split("/")], path) + parts[index + 1 :]
            index = 0
            continue
        if entry is not None and index < len(parts) - 1:
            return None  # a file (or submodule) used as a directory
        index += 1
    final = "/".join(parts)
    entry = entries.get(final)
    return final if entry is not None and entry.is_file else None


def _git_said(exc: Exception) -> str:
    """What git printed on stderr, without GitPython's decoration."""
    stderr = getattr(exc, "stderr", "") or ""
    text = stderr.strip()
    if text.startswith("stderr: '") and text.endswith("'"):
        text = text[len("stderr: '") : -1]
    text = " / ".join(line.strip() for line in text.splitlines() if line.strip())
    return text or str(exc).strip()


def _check_ref(ref: str) -> str:
    """Refuse ref names that git would not accept, or that could pass for options."""
    ref = ref.strip()
    if (
        not _REF_NAME.fullmatch(ref)
        or ref.startswith(("-", "/"))
        or ref.endswith(("/", ".", ".lock"))
        or ".." in ref
        or "//" in ref
        or "@{" in ref
    ):
        raise SourceFailure(f"{ref!r} is not a git tag, branch or commit id")
    return ref


class GitSource:
    """Blobs from a partial (``blob:none``), shallow, checkout-free clone kept in ``clone_dir``.

    ``GitSource(url, clone_dir)`` does no work until asked.  The fetcher calls
    :meth:`prepare` with every file it needs (one batched ``git fetch`` of their blobs),
    then :meth:`retrieve` for each (from any thread).  Refs are tags, branches, full
    commit ids or full ref names; a tag or commit, once fetched, is answered from the
    clone without the network, a branch is looked up again by every new ``GitSource``
    unless ``offline`` is true.  With ``offline=True`` nothing is fetched at all and what
    the clone lacks raises :class:`SourceFailure`.

    Example::

        source = GitSource(default_git_url(), cache_dir / clone_dir_name(url))
        source.prepare(plan.files, plan.ref)
        for item in plan.files:
            source.retrieve(item, plan.ref, tmp / item.path.replace("/", "_"))
    """

    label: str

    def __init__(self, url: str, clone_dir: Path, *, offline: bool = False) -> None:
        url = url.strip()
        if not url or url.startswith("-"):
            raise SourceFailure(f"{url!r} is not a git URL")
        self.url = url
        self.clone_dir = Path(clone_dir)
        self.offline = offline
        self.label = f"git {url}"
        self._mutex = threading.RLock()
        self._file_lock: Any = None
        self._ready = False
        self._commits: dict[str, str] = {}
        self._trees: dict[str, dict[str, TreeEntry]] = {}
        self._present: set[str] = set()

    # -- running git -------------------------------------------------------------------

    def _git(self) -> git.Git:
        try:
            import git
        except ImportError as exc:  # GitPython imports fine only when git can be run
            raise SourceFailure(f"the git source needs the git program: {exc}") from exc
        return git.Git(str(self.clone_dir))

    def _command(self, args: Sequence[str]) -> list[str]:
        import git

        program = str(git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git")
        return [program, *_GIT_OPTIONS, f"--git-dir={self.clone_dir}", *args]

    def _run(self, args: Sequence[str], *, what: str, stdin: bytes | None = None) -> bytes:
        """Run git in the clone and return its stdout; failures raise SourceFailure."""
        runner = self._git()
        import git

        try:
            if stdin is None:
                out: bytes = runner.execute(
                    self._command(args), stdout_as_string=False, env=_GIT_ENV
                )
                return out
            with tempfile.TemporaryFile() as feed:
                feed.write(stdin)
                feed.seek(0)
                out = runner.execute(
                    self._command(args), istream=feed, stdout_as_string=False, env=_GIT_ENV
                )
                return out
        except git.GitCommandError as exc:
            raise SourceFailure(f"{what} ({self.url}): git said: {_git_said(exc)}") from exc
        except (git.GitCommandNotFound, OSError) as exc:
            raise SourceFailure(f"{what}: could not run git: {exc}") from exc

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the clone's file lock (reentrant; excludes other threads and processes)."""
        from filelock import FileLock

        with self._mutex:
            if self._file_lock is None:
                self.clone_dir.mkdir(parents=True, exist_ok=True)
                self._file_lock = FileLock(str(self.clone_dir / _LOCK_NAME))
        with self._file_lock:
            yield

    def _ensure_clone(self) -> None:
        """Create the partial clone in ``clone_dir`` (once), pointing ``origin`` at the URL."""
        if self._ready:
            return
        marker = self.clone_dir / _MARKER_NAME
        with self._locked():
            if not marker.is_file():
                self._run(["init", "--quiet", "--bare"], what=f"git init in {self.clone_dir}")
                for key, value in (*_CLONE_CONFIG, ("remote.origin.url", self.url)):
                    self._run(["config", key, value], what=f"git config in {self.clone_dir}")
                marker.write_text(self.url + "\n", encoding="utf-8")
            elif marker.read_text(encoding="utf-8").strip() != self.url:
                self._run(
                    ["config", "remote.origin.url", self.url], what=f"git config {self.clone_dir}"
                )
                marker.write_text(self.url + "\n", encoding="utf-8")
        self._ready = True

    # -- refs --------------------------------------------------------------------------

    def _local_refs(self) -> dict[str, str]:
        """Every ref in the clone with the object it names (reads no objects)."""
        out = self._run(
            ["for-each-ref", "--format=%(objectname) %(refname)", "refs/lkfirmware/"],
            what="git for-each-ref",
        )
        refs: dict[str, str] = {}
        for line in out.decode("utf-8", "surrogateescape").splitlines():
            oid, _, name = line.partition(" ")
            refs[name] = oid
        return refs

    def _peel(self, local_ref: str) -> str:
        """The commit a local ref points at (its objects are in the clone)."""
        out = self._run(
            ["rev-parse", "--verify", "--quiet", f"{local_ref}^{{commit}}"],
            what=f"git rev-parse {local_ref}",
        )
        return out.decode().strip()

    def _fetch_ref(self, remote: str, local_ref: str, ref: str) -> str:
        """Fetch one commit (and its trees, no blobs) at depth 1; return the commit id."""
        if self.offline:
            raise SourceFailure(
                f"{ref} is not in the git clone at {self.clone_dir}, and fetching is off (offline)"
            )
        self._run(
            [
                "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                "--recurse-submodules=no", "--depth=1", "--filter=blob:none",
                "origin", f"+{remote}:{local_ref}",
            ],
            what=f"git fetch of {ref}",
        )  # fmt: skip
        commit = self._peel(local_ref)
        self._run(
            ["update-ref", f"refs/lkfirmware/commits/{commit}", commit],
            what="git update-ref",
        )
        return commit

    def _ls_remote(self, patterns: Sequence[str], ref: str) -> dict[str, str]:
        out = self._run(["ls-remote", "origin", *patterns], what=f"git ls-remote for {ref}")
        found: dict[str, str] = {}
        for line in out.decode("utf-8", "surrogateescape").splitlines():
            oid, _, name = line.partition("\t")
            found[name.strip()] = oid.strip()
        return found

    def resolve_ref(self, ref: str) -> str:
        """The commit id that ``ref`` names, fetching the commit and its trees if needed.

        ``ref`` is a tag (``20251215``), a branch (``main``), a full 40-hex commit id or a
        full ref name (``refs/tags/20251215``).  Tags and commits already fetched are
        answered from the clone; branches are looked up with ``git ls-remote`` (once per
        ``GitSource``).  Raises :class:`BlobMissing` when the remote has no such tag or
        branch, and :class:`SourceFailure` when git fails (with what git said).
        """
        ref = _check_ref(ref)
        with self._mutex:
            known = self._commits.get(ref)
        if known is not None:
            return known
        self._ensure_clone()
        commit = self._resolve(ref)
        with self._mutex:
            self._commits[ref] = commit
        return commit

    def _resolve(self, ref: str) -> str:
        if _FULL_HEX.fullmatch(ref):
            wanted = ref.lower()
            local_ref = f"refs/lkfirmware/commits/{wanted}"
            if local_ref in self._local_refs():
                return self._peel(local_ref)
            with self._locked():
                if local_ref in self._local_refs():
                    return self._peel(local_ref)
                return self._fetch_ref(wanted, local_ref, ref)

        if ref.startswith("refs/") or ref == "HEAD":
            candidates = [(ref, ref.startswith("refs/tags/"))]
        else:
            candidates = [(f"refs/tags/{ref}", True), (f"refs/heads/{ref}", False)]

        def local_name(remote: str) -> str:
            return "refs/lkfirmware/" + remote.removeprefix("refs/")

        local = self._local_refs()
        for remote, immutable in candidates:
            if local_name(remote) in local and (immutable or self.offline):
                return self._peel(local_name(remote))
        if self.offline:
            raise SourceFailure(
                f"{ref} is not in the git clone at {self.clone_dir}, and fetching is off (offline)"
            )
        advertised = self._ls_remote([remote for remote, _ in candidates], ref)
        for remote, _immutable in candidates:
            if remote not in advertised:
                continue
            tip = advertised.get(f"{remote}^{{}}", advertised[remote])
            with self._locked():
                local = self._local_refs()
                have = local.get(local_name(remote))
                if have is not None and f"refs/lkfirmware/commits/{tip}" in local:
                    if have != advertised[remote]:
                        self._run(
                            ["update-ref", local_name(remote), advertised[remote]],
                            what="git update-ref",
                        )
                    return tip
                return self._fetch_ref(remote, local_name(remote), ref)
        raise BlobMissing(f"{self.url} has no tag or branch named {ref!r} (git ls-remote)")

    # -- trees and blobs ---------------------------------------------------------------

    def _tree(self, commit: str) -> dict[str, TreeEntry]:
        """Every file of the commit's tree (``git ls-tree -r``; reads no blobs)."""
        with self._mutex:
            cached = self._trees.get(commit)
        if cached is not None:
            return cached
        out = self._run(
            ["ls-tree", "-r", "-z", "--full-tree", commit], what=f"git ls-tree {commit}"
        )
        entries: dict[str, TreeEntry] = {}
        for record in out.split(b"\0"):
            if not record:
                continue
            info, _, raw_path = record.partition(b"\t")
            mode, kind, oid = info.decode().split(" ")
            entries[raw_path.decode("utf-8", "surrogateescape")] = TreeEntry(mode, kind, oid)
        self._refresh_present(commit)
        with self._mutex:
            self._trees[commit] = entries
        return entries

    def _refresh_present(self, commit: str) -> None:
        """Note which objects of the commit are in the clone (without fetching any)."""
        out = self._run(
            ["rev-list", "--objects", "--missing=print", "--no-object-names", commit],
            what=f"git rev-list {commit}",
        )
        present = {line for line in out.decode().split() if line and not line.startswith("?")}
        with self._mutex:
            self._present |= present

    def _is_present(self, oid: str) -> bool:
        with self._mutex:
            return oid in self._present

    def _fetch_blobs(self, oids: Iterable[str], commit: str) -> None:
        """Fetch the blobs the clone lacks, in one ``git fetch`` under the file lock."""
        wanted = {oid for oid in oids if not self._is_present(oid)}
        if not wanted:
            return
        with self._locked():
            self._refresh_present(commit)  # another process may have fetched them meanwhile
            wanted = {oid for oid in wanted if not self._is_present(oid)}
            if not wanted:
                return
            if self.offline:
                raise SourceFailure(
                    f"{len(wanted)} blob(s) are not in the git clone at {self.clone_dir}, "
                    "and fetching is off (offline)"
                )
            self._run(
                [
                    "-c", "fetch.negotiationAlgorithm=noop",
                    "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                    "--recurse-submodules=no", "--filter=blob:none", "--stdin", "origin",
                ],
                what=f"git fetch of {len(wanted)} blob(s)",
                stdin="".join(f"{oid}\n" for oid in sorted(wanted)).encode(),
            )  # fmt: skip
            self._refresh_present(commit)
        lost = sorted(oid for oid in wanted if not self._is_present(oid))
        if lost:
            raise SourceFailure(
                f"git fetch from {self.url} did not deliver blob(s) {', '.join(lost[:5])}"
            )

    def _read_link(self, oid: str) -> str:
        """A symlink's target text (its blob must be present)."""
        if not self._is_present(oid):
            raise NeedBlob(oid)
        out = self._run(["cat-file", "blob", oid], what=f"git cat-file {oid}")
        return out.decode("utf-8", "surrogateescape")

    def _locate(self, path: str, commit: str, entries: dict[str, TreeEntry]) -> str | None:
        """Follow symlinks stored in git, fetching the blobs that hold their targets."""
        for _ in range(_MAX_LINK_HOPS + 1):
            try:
                return follow_tree_links(path, entries, self._read_link)
            except NeedBlob as need:
                self._fetch_blobs([need.oid], commit)
        raise SourceFailure(f"{path}: too many levels of symbolic links in the git tree")

    def prepare(self, files: Sequence[FirmwareFile], ref: str) -> None:
        """Fetch the blobs of all ``files`` at ``ref`` that the clone lacks, in one batch.

        Files that are not in the tree are skipped here (:meth:`retrieve` reports them).
        Symlinks stored in git (old refs) are followed; their own small blobs come first.
        """
        commit = self.resolve_ref(ref)
        entries = self._tree(commit)
        for _ in range(_MAX_LINK_HOPS + 1):
            wanted: set[str] = set()
            links_pending = False
            for item in files:
                try:
                    final = follow_tree_links(item.path, entries, self._read_link)
                except NeedBlob as need:
                    wanted.add(need.oid)
                    links_pending = True
                    continue
                except SourceFailure:
                    continue  # retrieve() reports it for this file
                if final is not None:
                    wanted.add(entries[final].oid)
            self._fetch_blobs(wanted, commit)
            if not links_pending:
                return

    def retrieve(self, file: FirmwareFile, ref: str, into: Path) -> None:
        """Write the blob of ``file`` at ``ref`` into ``into``, verified against its git id.

        Raises :class:`BlobMissing` if the path is not a file in the tree at ``ref``, and
        :class:`SourceFailure` if the bytes do not hash to the tree's blob id (or to
        ``file.git_id``, when the catalog gives one that differs from the tree).
        """
        commit = self.resolve_ref(ref)
        entries = self._tree(commit)
        final = self._locate(file.path, commit, entries)
        if final is None:
            raise BlobMissing(
                f"{file.path} is not a file in {self.url} at {ref} (commit {commit[:12]})"
            )
        oid = entries[final].oid
        if file.git_id is not None and file.git_id.lower() != oid:
            raise SourceFailure(
                f"{file.path} at {ref} is blob {oid} in {self.url}, but the catalog "
                f"expects {file.git_id}"
            )
        self._fetch_blobs([oid], commit)
        self._write_blob(oid, Path(into), file.path)

    def _write_blob(self, oid: str, into: Path, path: str) -> None:
        """Stream the blob to ``into`` while hashing it; a wrong hash raises SourceFailure.

        ``git cat-file --batch`` gives the size before the bytes, so the git id (the sha1
        of ``blob <size>\\0`` and the bytes) is computed in the same single pass.
        """
        import git

        runner = self._git()
        digest = hashlib.sha1(usedforsecurity=False)
        size = -1
        try:
            with tempfile.TemporaryFile() as feed:
                feed.write(f"{oid}\n".encode())
                feed.seek(0)
                process = runner.execute(
                    self._command(["cat-file", "--batch"]),
                    istream=feed,
                    as_process=True,
                    env=_GIT_ENV,
                )
                header = process.stdout.readline().decode(errors="replace").split()
                if len(header) == 3 and header[1] == "blob" and header[2].isdigit():
                    size = int(header[2])
                    digest.update(b"blob %d\0" % size)
                    left = size
                    with into.open("wb") as out:
                        while left > 0:
                            chunk = process.stdout.read(min(_CHUNK, left))
                            if not chunk:
                                break
                            digest.update(chunk)
                            out.write(chunk)
                            left -= len(chunk)
                process.stdout.read()
                process.wait()
        except git.GitCommandError as exc:
            into.unlink(missing_ok=True)
            raise SourceFailure(
                f"reading {path} (blob {oid}) from {self.clone_dir}: git said: {_git_said(exc)}"
            ) from exc
        if size < 0:
            into.unlink(missing_ok=True)
            raise SourceFailure(
                f"{path}: blob {oid} cannot be read from the git clone at {self.clone_dir} "
                f"(git cat-file said {' '.join(header)!r})"
            )
        got = digest.hexdigest()
        if got != oid:
            into.unlink(missing_ok=True)
            raise SourceFailure(
                f"{path}: the git clone at {self.clone_dir} holds damaged data for blob {oid} "
                f"(it hashes to {got}); delete that folder to fetch it again"
            )

    # -- what the tree says ------------------------------------------------------------

    def blob_ids(self, ref: str) -> dict[str, str]:
        """The git blob id of every regular file at ``ref`` (no blob is downloaded)."""
        entries = self._tree(self.resolve_ref(ref))
        return {path: entry.oid for path, entry in entries.items() if entry.is_file}

    def _sizes(self, oids: Iterable[str]) -> dict[str, int]:
        """Sizes of blobs present in the clone (``git cat-file --batch-check``)."""
        present = sorted({oid for oid in oids if self._is_present(oid)})
        if not present:
            return {}
        out = self._run(
            ["cat-file", "--batch-check=%(objectname) %(objectsize)"],
            what="git cat-file --batch-check",
            stdin="".join(f"{oid}\n" for oid in present).encode(),
        )
        sizes: dict[str, int] = {}
        for line in out.decode().splitlines():
            oid, _, size = line.partition(" ")
            if size.isdigit():
                sizes[oid] = int(size)
        return sizes

    def known_ids(self, ref: str) -> dict[str, tuple[int, str]] | None:
        """Size and git blob id of the files at ``ref`` whose blobs are in the clone.

        Git trees carry blob ids but not sizes, and a blob's size is known only once the
        blob is here, so this covers the files already fetched (after :meth:`prepare`,
        every file it was given).  :meth:`blob_ids` gives the ids of all files.
        """
        entries = self._tree(self.resolve_ref(ref))
        files = {path: entry.oid for path, entry in entries.items() if entry.is_file}
        sizes = self._sizes(files.values())
        return {path: (sizes[oid], oid) for path, oid in files.items() if oid in sizes}

    def all_ids(self, ref: str) -> dict[str, tuple[int, str]]:
        """Size and git blob id of every file at ``ref``, fetching the blobs the clone lacks.

        Sizes need the blobs, so the first call transfers the whole tree at ``ref`` (one
        batch); later calls, at this or a newer ref, transfer only blobs not fetched yet.
        """
        commit = self.resolve_ref(ref)
        files = self.blob_ids(ref)
        self._fetch_blobs(files.values(), commit)
        sizes = self._sizes(files.values())
        return {path: (sizes[oid], oid) for path, oid in files.items()}


def tree_blob_ids(url: str, ref: str, work_dir: Path) -> dict[str, str]:
    """The git blob id of every file of ``url`` at ``ref``, without downloading any blob.

    ``work_dir`` holds the partial clone (reused by later calls).
    Example: ``tree_blob_ids(DEFAULT_GIT_URL, "20251215", Path("~/.cache/lkfw-map"))``.
    """
    return GitSource(url, work_dir).blob_ids(ref)


def tree_listing(url: str, ref: str, work_dir: Path) -> dict[str, tuple[int, str]]:
    """Size and git blob id of every file of ``url`` at ``ref``, for the driver map.

    Git trees record blob ids but not sizes, so this downloads the blobs of ``ref`` into
    the partial clone in ``work_dir`` once (one batched fetch); keep ``work_dir`` between
    runs and a newer ref transfers only the blobs that changed.  Use
    :func:`tree_blob_ids` when the ids alone are enough (no blob is downloaded).
    Example: ``tree_listing(DEFAULT_GIT_URL, "20251215", Path("build/lkfw-clone"))``.
    """
    return GitSource(url, work_dir).all_ids(ref)
