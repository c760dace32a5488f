"""The whole job in a few calls: plan, fetch, stage and write the config.

This is the layer the command line and Python build scripts use::

    import lkfirmware
    fetched = lkfirmware.fetch(["brcmfmac43602"])
    lkfirmware.add_to_config("linuxkit.yml", fetched)

Each step is its own module (``resolve``, ``fetch``, ``stage``, ``config``); this one
only wires them together and chooses defaults a LinuxKit user expects.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

from lkfirmware.errors import ConfigError, FetchError, UsageError
from lkfirmware.plan import FirmwareFile, FirmwareLink, Plan

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from lkfirmware.cache import Cache
    from lkfirmware.catalog import Catalog
    from lkfirmware.compress import CompressMethod
    from lkfirmware.config import ConfigChange, FilesEntry
    from lkfirmware.fetcher import CachedBlob, FetchResult
    from lkfirmware.modules import ModuleScan
    from lkfirmware.sources.base import BlobSource
    from lkfirmware.stage import StagedFile

SourceKind = Literal["plain", "git", "dir"]
LOCK_NAME = "lkfirmware.lock"
DEFAULT_DEST = "firmware"


class Fetched(NamedTuple):
    """A fetch together with the plan it came from (what staging and config need).

    ``blobs`` gives every firmware file's cached blob (path, location, size, sha256,
    git id), ``links`` the links, ``records()`` both as the ``--json`` records.
    """

    plan: Plan
    result: FetchResult
    warnings: tuple[str, ...] = ()

    @property
    def blobs(self) -> tuple[CachedBlob, ...]:
        return self.result.blobs

    @property
    def links(self) -> tuple[FirmwareLink, ...]:
        return self.result.links

    def records(self) -> list[dict[str, object]]:
        return self.result.records()


class ConfigUpdate(NamedTuple):
    """What :func:`add_to_config` did (or, with ``write=False``, would do)."""

    change: ConfigChange
    staged: tuple[StagedFile, ...]
    removed_files: tuple[Path, ...]
    dest: Path
    """The staging folder."""

    @property
    def changed(self) -> bool:
        return (
            self.change.changed
            or any(item.changed for item in self.staged)
            or bool(self.removed_files)
        )


# -- sources and catalogs ----------------------------------------------------------------


def open_cache(cache_dir: str | os.PathLike[str] | None = None) -> Cache:
    from lkfirmware.cache import Cache

    return Cache(Path(cache_dir) if cache_dir is not None else None)


def make_sources(
    source: SourceKind | None,
    mirrors: Sequence[str] | None,
    *,
    git_url: str | None,
    cache: Cache,
    offline: bool = False,
) -> list[BlobSource] | None:
    """The blob sources for ``--source``; None means plain mirrors (the fetcher's default).

    ``file://`` mirrors and plain folder paths are local trees whatever ``source`` says.
    """
    if source == "git":
        from lkfirmware.sources.git import GitSource, clone_dir_name, default_git_url

        url = git_url or default_git_url()
        return [GitSource(url, cache.area("git") / clone_dir_name(url), offline=offline)]
    from lkfirmware.sources.local import LocalTreeSource, local_root_from

    given = list(mirrors or [])
    folders = {mirror: local_root_from(mirror) for mirror in given}
    local = {mirror: root for mirror, root in folders.items() if root and root.is_dir()}
    if source == "dir" and (not given or len(local) < len(given)):
        missing = [mirror for mirror in given if mirror not in local] or ["(none given)"]
        raise UsageError(
            f"--source dir needs --mirror PATH naming a folder on this machine, not: "
            f"{', '.join(missing)}; give a linux-firmware checkout or a tree like /lib/firmware"
        )
    if not local:
        return None  # plain mirrors only: the fetcher builds them
    from lkfirmware.fetcher import build_sources

    remote = [mirror for mirror in given if mirror not in local]
    plain = iter(build_sources(remote)[0] if remote else [])
    return [LocalTreeSource(local[m]) if m in local else next(plain) for m in given]


def catalog_at(
    ref: str | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    source: SourceKind | None = None,
    git_url: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool = False,
) -> Catalog:
    """The catalog at ``ref``: the shipped one for its pinned commit, otherwise built from
    that ref's WHENCE (fetched from the same sources as blobs, and cached)."""
    from lkfirmware.catalog import load_catalog

    if ref is None or ref == load_catalog().ref:
        return load_catalog()
    cache = open_cache(cache_dir)
    sources = make_sources(source, mirrors, git_url=git_url, cache=cache, offline=offline)
    return _catalog_from(ref, sources, mirrors=mirrors, cache=cache, offline=offline)


def _catalog_from(
    ref: str | None,
    sources: Sequence[BlobSource] | None,
    *,
    mirrors: Sequence[str] | None,
    cache: Cache,
    offline: bool,
) -> Catalog:
    """:func:`catalog_at` with the sources and the cache the fetch itself will use."""
    from lkfirmware.catalog import Catalog, load_catalog
    from lkfirmware.fetcher import fetch_text

    shipped = load_catalog()
    if ref is None or ref == shipped.ref:
        return shipped
    text = fetch_text("WHENCE", ref, sources=sources, mirrors=mirrors, cache=cache, offline=offline)
    tree: dict[str, tuple[int | None, str]] = {}
    for item in sources or []:
        blob_ids = getattr(item, "blob_ids", None)  # a git tree names every blob, sizes aside
        if blob_ids is not None:
            tree.update((path, (None, oid)) for path, oid in blob_ids(ref).items())
        tree.update(item.known_ids(ref) or {})
    return Catalog.from_whence(
        text.decode("utf-8", errors="replace"),
        ref=ref,
        modules=shipped.modules,
        tree=tree,
        provenance={"linux_firmware_ref": ref, "kernel": shipped.provenance.get("kernel", "")},
    )


# -- planning ----------------------------------------------------------------------------


def kernel_requests(
    catalog: Catalog,
    *,
    scan: ModuleScan | None,
    modules: Sequence[str] | None,
    strict: bool = False,
) -> tuple[list[str], list[str]]:
    """Catalog names that modules request, and warnings for names the catalog lacks.

    With ``scan`` (a scanned kernel) the named modules -- or all of them when ``modules``
    is None -- and their dependencies are read from it; without, from the module data
    in the catalog (the kernel the driver map was generated from).
    """
    from lkfirmware.modules import KernelModule, ModuleScan, firmware_requests

    if scan is None:
        known = {
            name: KernelModule(name, "", mod.firmware, mod.depends)
            for name, mod in catalog.modules.items()
        }
        scan = ModuleScan(known, (), catalog.provenance.get("kernel"))
    pairs = firmware_requests(scan, modules)
    names: list[str] = []
    warnings: list[str] = []
    for module, request in pairs:
        found = catalog.expand(request)
        if found:
            names.extend(found)
        else:
            warnings.append(f"missing firmware {request} for module {module}")
    if warnings and strict:
        shown = "\n  ".join(warnings)
        raise FetchError(
            f"--strict: linux-firmware {catalog.ref[:12]} lacks what modules request:\n  {shown}"
        )
    return names, warnings


def plan(
    queries: Sequence[str] | str = (),
    *,
    board: str | None = None,
    all_boards: bool = False,
    catalog: Catalog | None = None,
    kernel: str | os.PathLike[str] | ModuleScan | None = None,
    modules: Sequence[str] | None = None,
    all_modules: bool = False,
    strict: bool = False,
) -> tuple[Plan, list[str]]:
    """Resolve queries, and the firmware a kernel's modules request, into one plan.

    ``modules`` names kernel modules (from ``kernel``, else from the catalog's module
    data) whose requests to add, with their dependencies; an empty list adds nothing.

    :returns: the plan and warnings (firmware that modules request and the catalog lacks).
    """
    from lkfirmware.catalog import load_catalog
    from lkfirmware.resolver import resolve

    catalog = catalog or load_catalog()
    queries = [queries] if isinstance(queries, str) else list(queries)
    requested: list[str] = []
    warnings: list[str] = []
    by_modules = modules is not None or all_modules
    if all_modules and kernel is None:
        raise UsageError("--all-modules needs --kernel PATH")
    if kernel is not None and not by_modules:
        raise UsageError("--kernel needs --modules a,b or --all-modules")
    if by_modules:
        scan = scan_kernel(kernel) if kernel is not None else None
        requested, warnings = kernel_requests(
            catalog, scan=scan, modules=None if all_modules else modules, strict=strict
        )
    if not queries and not requested:
        if by_modules:  # modules that request nothing the catalog has: an empty plan
            return Plan(ref=catalog.ref), warnings
        raise UsageError("nothing to fetch: give a query, or --kernel with --modules")
    result = resolve(queries, board=board, all_boards=all_boards, catalog=catalog, names=requested)
    return result, warnings


def scan_kernel(kernel: str | os.PathLike[str] | ModuleScan) -> ModuleScan:
    from lkfirmware.modules import ModuleScan, scan_modules

    if isinstance(kernel, ModuleScan):
        return kernel
    path = Path(kernel)
    if not path.exists():
        raise UsageError(
            f"{path}: no such file or folder (give lib/modules/VERSION, a kernel.tar or a module)"
        )
    scan = scan_modules(path)
    for problem in scan.problems:
        print(f"lkfirmware: warning: skipped {problem.path}: {problem.reason}", file=sys.stderr)
    return scan


# -- fetching ----------------------------------------------------------------------------


def fetch(
    queries: Sequence[str] | str = (),
    *,
    board: str | None = None,
    all_boards: bool = False,
    ref: str | None = None,
    mirrors: Sequence[str] | None = None,
    source: SourceKind | None = None,
    git_url: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    jobs: int = 8,
    offline: bool = False,
    lock: str | os.PathLike[str] | None = None,
    update_lock: bool = True,
    progress: bool | None = None,
    kernel: str | os.PathLike[str] | ModuleScan | None = None,
    modules: Sequence[str] | None = None,
    all_modules: bool = False,
    strict: bool = False,
    with_licences: bool = False,
) -> Fetched:
    """Resolve queries and download exactly the files they need into the shared cache.

    :param queries: drivers, modules, chips, paths or globs (see :func:`lkfirmware.resolve`).
    :param ref: linux-firmware tag or commit (default: the shipped catalog's pinned commit).
    :param mirrors: plain-blob mirror presets (``kernel.org``, ``gitlab``) or URL templates
        with ``{path}`` and ``{ref}``; ``file://`` URLs and folders are local trees.
    :param source: ``"plain"`` (default), ``"git"`` (partial clone) or ``"dir"``.
    :param lock: a lock file to verify against and extend (``lkfirmware.lock``);
        ``update_lock=False`` only verifies.
    :param kernel: a modules directory, LinuxKit ``kernel.tar`` or module file whose
        modules' requests to add (with ``modules`` or ``all_modules``).
    :returns: a :class:`Fetched`: ``.blobs`` lists each file's cached location,
        size and sha256; ``.links`` the links.
    :raises FetchError: a file no source has (exit 3); ``IntegrityError`` on a lock mismatch.

    Example::

        fetched = lkfirmware.fetch("brcmfmac43455", board="raspberrypi,4-model-b")
        for blob in fetched.blobs:
            print(blob.path, blob.location)
    """
    from lkfirmware.fetcher import build_sources, fetch_plan

    cache = open_cache(cache_dir)
    sources = make_sources(source, mirrors, git_url=git_url, cache=cache, offline=offline)
    session = None
    if sources is None:
        sources, session = build_sources(mirrors, jobs=jobs)
    try:
        catalog = _catalog_from(ref, sources, mirrors=mirrors, cache=cache, offline=offline)
        the_plan, warnings = plan(
            queries,
            board=board,
            all_boards=all_boards,
            catalog=catalog,
            kernel=kernel,
            modules=modules,
            all_modules=all_modules,
            strict=strict,
        )
        the_plan = the_plan._replace(ref=index_ref(the_plan.ref, sources))
        result = fetch_plan(
            the_plan,
            sources=sources,
            cache=cache,
            jobs=jobs,
            offline=offline,
            lock=Path(lock) if lock is not None else None,
            update_lock=update_lock,
            progress=progress,
        )
        if with_licences:
            result, missing = _add_licences(result, catalog, the_plan, sources, cache, offline)
            warnings += missing
    finally:
        if session is not None:
            session.close()
    return Fetched(the_plan, result, tuple(warnings))


def index_ref(ref: str, sources: Sequence[BlobSource]) -> str:
    """The ref under which the cache indexes what ``sources`` give.

    A local tree holds whatever version was installed there, not necessarily the
    linux-firmware ref asked for, so its blobs are indexed (and locked) under
    ``local:<folder>`` and never answer a later fetch of that ref from a mirror.
    """
    from lkfirmware.sources.local import LocalTreeSource

    folders = [str(s.root.resolve()) for s in sources if isinstance(s, LocalTreeSource)]
    return f"local:{','.join(folders)}" if folders else ref


def _add_licences(
    result: FetchResult,
    catalog: Catalog,
    the_plan: Plan,
    sources: Sequence[BlobSource],
    cache: Cache,
    offline: bool,
) -> tuple[FetchResult, list[str]]:
    """Fetch the licence files WHENCE names for the plan's files, best effort: WHENCE
    sometimes names a licence file the tree does not have."""
    from dataclasses import replace

    from lkfirmware.fetcher import fetch_plan

    warnings: list[str] = []
    fetched = {blob.path for blob in result.blobs}
    for name in catalog.licence_files([item.licence for item in the_plan.files]):
        if name in fetched:
            continue
        try:
            one = fetch_plan(
                Plan(ref=the_plan.ref, files=(FirmwareFile(name),)),
                sources=sources,
                cache=cache,
                offline=offline,
                progress=False,
            )
        except FetchError as error:
            warnings.append(f"licence file {name} not fetched: {error}")
            continue
        result = replace(
            result,
            blobs=result.blobs + one.blobs,
            downloaded_bytes=result.downloaded_bytes + one.downloaded_bytes,
            cached_bytes=result.cached_bytes + one.cached_bytes,
        )
    return result, warnings


# -- staging and the config --------------------------------------------------------------


def stage(
    fetched: Fetched,
    yml: Path,
    *,
    dest: str | os.PathLike[str] | None,
    absolute_sources: bool,
    compress: CompressMethod | None,
    write: bool,
) -> tuple[Path, list[StagedFile], list[FilesEntry]]:
    """Stage the blobs for the yml ``yml`` and describe them as ``files:`` entries.

    :returns: the staging folder, the staged files and the entries.
    """
    from lkfirmware.stage import files_entries, stage_blobs, stage_links

    folder = yml.resolve().parent
    destination = Path(dest) if dest is not None else folder / DEFAULT_DEST
    planned = {item.path: item for item in fetched.plan.files}
    # RawFile: entries, and licence texts (fetched beside the plan), stay uncompressed
    raw = {blob.path for blob in fetched.result.blobs}
    raw -= {path for path, item in planned.items() if not item.raw}
    staged = stage_blobs(fetched.result.blobs, destination, compress=compress, raw=raw, write=write)
    links = stage_links(fetched.result.links, compress=compress, raw=raw)
    entries = files_entries(staged, links, config_dir=folder, absolute_sources=absolute_sources)
    return destination, staged, entries


def add_to_config(
    config: str | os.PathLike[str],
    fetched: Fetched,
    *,
    dest: str | os.PathLike[str] | None = None,
    absolute_sources: bool = False,
    prune: bool = False,
    merge_duplicate_files: bool = False,
    compress: CompressMethod | None = None,
    write: bool = True,
) -> ConfigUpdate:
    """Stage fetched blobs and write their ``files:`` entries into a LinuxKit config.

    Only firmware entries change; every other byte of the file is kept.  Running it
    twice changes nothing the second time.

    :param dest: where blobs are staged (default ``firmware/`` beside the config).
    :param absolute_sources: write absolute ``source:`` paths instead of paths relative to
        the config's folder (linuxkit reads sources relative to its working directory).
    :param prune: remove ``/lib/firmware`` entries no longer resolved, and the files in
        ``dest`` that they pointed to (nothing else in ``dest`` is touched).
    :param compress: ``"xz"`` or ``"zstd"`` for kernels with ``CONFIG_FW_LOADER_COMPRESS``.
    :param write: False for ``--check`` / ``--dry-run``: compute, change nothing.
    """
    from lkfirmware.config import update_config
    from lkfirmware.stage import FIRMWARE_ROOT

    config_path = Path(config)
    if not config_path.is_file():
        raise UsageError(f"{config_path}: no such config file")
    prune_under = FIRMWARE_ROOT if prune else None

    def edit(entries: Sequence[FilesEntry], write: bool) -> ConfigChange:
        return update_config(
            config_path,
            entries,
            prune_under=prune_under,
            merge_duplicate_files=merge_duplicate_files,
            write=write,
        )

    def staging(write: bool) -> tuple[Path, list[StagedFile], list[FilesEntry]]:
        return stage(
            fetched,
            config_path,
            dest=dest,
            absolute_sources=absolute_sources,
            compress=compress,
            write=write,
        )

    with editing(config_path):
        # a read-only config is refused before anything is staged
        if write and is_read_only(config_path) and edit(staging(False)[2], False).changed:
            raise ConfigError(
                f"{config_path} is read-only; make it writable to let lkfirmware add "
                "its entries, or write them to a separate file with --output"
            )
        destination, staged, entries = staging(write)
        change = edit(entries, write)
        removed = _prune(config_path, change, destination, staged, prune=prune, write=write)
    return ConfigUpdate(change, tuple(staged), tuple(removed), destination)


def _prune(
    config_path: Path,
    change: ConfigChange,
    destination: Path,
    staged: Sequence[StagedFile],
    *,
    prune: bool,
    write: bool,
) -> list[Path]:
    from lkfirmware.config import entry_sources, normalise_path
    from lkfirmware.stage import prune_staged

    removed: list[Path] = []
    if prune and change.removed:
        sources = entry_sources(change.old_text, str(config_path))
        folder = config_path.resolve().parent
        dropped = [
            folder / os.path.expanduser(sources[key])
            for key in (normalise_path(path) for path in change.removed)
            if key in sources
        ]
        keep = [item.staged for item in staged]
        removed = prune_staged(destination, dropped, keep, write=write)
    return removed


def write_firmware_yml(
    output: str | os.PathLike[str],
    fetched: Fetched,
    *,
    dest: str | os.PathLike[str] | None = None,
    absolute_sources: bool = False,
    compress: CompressMethod | None = None,
    write: bool = True,
) -> ConfigUpdate:
    """Stage blobs and write a firmware-only yml (just ``files:``) to pass to
    ``linuxkit build`` beside the hand-written config, which stays untouched."""
    from lkfirmware.config import write_firmware_yml as write_yml

    output_path = Path(output)
    with editing(output_path):
        destination, staged, entries = stage(
            fetched,
            output_path,
            dest=dest,
            absolute_sources=absolute_sources,
            compress=compress,
            write=write,
        )
        change = write_yml(output_path, entries, write=write)
    return ConfigUpdate(change, tuple(staged), (), destination)


@contextmanager
def editing(yml: Path) -> Iterator[None]:
    """Hold the lock that serialises lkfirmware processes editing the same yml (and its
    staging folder): two `make -j` steps must not lose each other's entries.  The lock
    file lives in the temporary folder, not beside the user's config."""
    import hashlib
    import tempfile

    from filelock import FileLock

    key = hashlib.sha256(os.path.realpath(yml).encode()).hexdigest()[:32]
    with FileLock(os.path.join(tempfile.gettempdir(), f"lkfirmware-edit-{key}.lock")):
        yield


def is_read_only(path: Path) -> bool:
    """True when the file's permission bits allow no one to write it (root included:
    lkfirmware replaces files by rename, which would bypass them)."""
    import stat

    return not stat.S_IMODE(os.stat(path).st_mode) & 0o222


def check_config(config: str | os.PathLike[str], *, merge_duplicate_files: bool = False) -> None:
    """Raise :class:`ConfigError` now if ``config`` cannot be edited (invalid YAML,
    duplicate keys, ``files:`` not a list), so that nothing is downloaded in vain."""
    from lkfirmware.config import update_config

    path = Path(config)
    if not path.is_file():
        raise UsageError(f"{path}: no such config file")
    update_config(path, [], merge_duplicate_files=merge_duplicate_files, write=False)


def check_output(output: str | os.PathLike[str]) -> None:
    """Raise :class:`ConfigError` now if ``output`` exists and lkfirmware did not write it."""
    from lkfirmware.config import write_firmware_yml as write_yml

    write_yml(Path(output), [], write=False)


def pinned_ref(lock: str | os.PathLike[str]) -> str | None:
    """The linux-firmware ref a lock file pins (None without one, or for a local tree):
    a build with a lock file keeps fetching that ref after lkfirmware is upgraded."""
    from lkfirmware.lockfile import read_lock

    found = read_lock(Path(lock))
    if found is None or found.ref.startswith("local:"):
        return None
    return found.ref


def default_lock(config: str | os.PathLike[str] | None) -> Path | None:
    """``lkfirmware.lock`` beside the config, when there is one."""
    if config is None:
        return None
    return Path(config).resolve().parent / LOCK_NAME


def loaded_modules(config: str | os.PathLike[str]) -> list[str]:
    """The kernel modules a LinuxKit config loads with ``modprobe``."""
    from lkfirmware.modprobe import modules_loaded_by

    path = Path(config)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{path}: cannot read the config: {error.strerror}") from None
    return modules_loaded_by(text, where=str(path))


def sync_modules(
    config: str | os.PathLike[str],
    *,
    kernel: str | os.PathLike[str] | ModuleScan | None = None,
    catalog: Catalog | None = None,
) -> tuple[list[str], list[str]]:
    """The modules of ``config`` that have firmware to fetch, and notes on the others."""
    from lkfirmware.catalog import load_catalog, normalise_module

    names = loaded_modules(config)
    notes: list[str] = []
    if kernel is not None:
        scan = scan_kernel(kernel)
        known = {normalise_module(name) for name in scan.modules}
        where = f"kernel {scan.kernel_version or kernel}"
    else:
        catalog = catalog or load_catalog()
        known = set(catalog.modules)
        where = f"the catalog's kernel {catalog.provenance.get('kernel', '')}".rstrip()
    chosen = [name for name in names if normalise_module(name) in known]
    for name in names:
        if normalise_module(name) not in known:
            notes.append(f"{config} loads {name}: no firmware requests for it in {where}")
    return chosen, notes
