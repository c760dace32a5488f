"""Kernel modules: the firmware they request, read from their ELF ``.modinfo`` section.

A kernel module (``.ko``, possibly ``.ko.xz``, ``.ko.zst`` or ``.ko.gz``) carries a
``.modinfo`` ELF section of NUL-separated ``key=value`` strings; ``MODULE_FIRMWARE("x")``
becomes ``firmware=x`` there. :func:`scan_modules` reads that section from every module of
a kernel -- a ``lib/modules/<version>`` directory, a LinuxKit ``kernel.tar``, or one file --
in-process and in parallel, for any ELF class and byte order (an arm64 or big-endian kernel
is scanned on an x86_64 host exactly like a native one). No ``modinfo`` binary is needed.

Built-in drivers (``=y``) have no module file; when the kernel ships
``modules.builtin.modinfo`` their fields are read from it and they appear with
``builtin=True``.

A file that cannot be read (damaged, truncated, not ELF, no ``.modinfo``) becomes a
:class:`ScanProblem` naming it; the scan goes on.
"""

from __future__ import annotations

import os
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from lkfirmware.catalog import normalise_module
from lkfirmware.compress import compressed_suffix, decompress_bytes
from lkfirmware.errors import UsageError

if TYPE_CHECKING:
    import tarfile
    from concurrent.futures import Executor, Future

# tarfile, concurrent.futures and difflib are imported where they are used: importing this
# module (for the CLI) stays cheap.

__all__ = [
    "MODULE_SUFFIXES",
    "KernelModule",
    "ModuleScan",
    "ScanProblem",
    "firmware_requests",
    "is_module_file",
    "module_name_from_path",
    "read_modinfo",
    "scan_modules",
]

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
"""File names that are kernel modules."""

BUILTIN_MODINFO = "modules.builtin.modinfo"
BUILTIN_PATH = "(built-in)"
"""``KernelModule.path`` of a driver built into the kernel image."""

PoolKind = Literal["thread", "process"]


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class KernelModule:
    """One kernel module and what its ``.modinfo`` says.

    ``name`` is normalised (``-`` becomes ``_``, as the kernel does). ``path`` is the module
    file relative to ``lib/modules/<version>`` (or the file as given, for a single file;
    :data:`BUILTIN_PATH` for a built-in driver). ``firmware`` keeps the order and spelling of
    ``modinfo -F firmware`` (entries may be globs such as ``rtl_nic/rtl8125*``).
    """

    name: str
    path: str
    firmware: tuple[str, ...] = ()
    depends: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    vermagic: str | None = None
    builtin: bool = False


@dataclass(frozen=True)
class ScanProblem:
    """A file the scan skipped, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class ModuleScan:
    """Every module found under one kernel, plus the files that could not be read."""

    modules: Mapping[str, KernelModule] = field(default_factory=lambda: MappingProxyType({}))
    problems: tuple[ScanProblem, ...] = ()
    kernel_version: str | None = None

    def module(self, name: str) -> KernelModule | None:
        """Return the module called ``name`` (``-`` and ``_`` are the same), or None."""
        return self.modules.get(normalise_module(name))


# --------------------------------------------------------------------------- names


def is_module_file(name: str) -> bool:
    """True if ``name`` ends like a kernel module file (``.ko`` or ``.ko`` + compression)."""
    return name.endswith(MODULE_SUFFIXES)


def module_name_from_path(path: str | os.PathLike[str]) -> str:
    """Return the module name a file name implies: ``snd-hda-intel.ko.xz`` -> ``snd_hda_intel``.

    >>> module_name_from_path("kernel/drivers/net/wireless/intel/iwlwifi/iwlwifi.ko.zst")
    'iwlwifi'
    """
    base = os.path.basename(os.fspath(path))
    suffix = compressed_suffix(base)
    if suffix:
        base = base[: -len(suffix)]
    if base.endswith(".ko"):
        base = base[:-3]
    return normalise_module(base)


# --------------------------------------------------------------------------- ELF

_ELF_MAGIC = b"\x7fELF"
_SHN_XINDEX = 0xFFFF
_SHT_NOBITS = 8
# Offsets of e_shoff and of (e_shentsize, e_shnum, e_shstrndx) in the ELF header.
_EHDR = {1: (0x20, "I", 0x2E, 0x34), 2: (0x28, "Q", 0x3A, 0x40)}
# sh_name, sh_type, sh_offset, sh_size, sh_link from a section header.
_SHDR = {1: ("I I 4x 4x I I I", 40), 2: ("I I 8x 8x Q Q I", 64)}


def _modinfo_section(data: bytes) -> memoryview:
    """Return the bytes of the ``.modinfo`` section of the ELF file ``data``.

    Works for ELFCLASS32 and ELFCLASS64 in either byte order, using only the section header
    table (what ``modinfo`` does). Raises ``ValueError`` saying what is wrong.
    """
    size = len(data)
    if size < 16 or data[:4] != _ELF_MAGIC:
        raise ValueError("not an ELF file")
    elf_class, elf_data = data[4], data[5]
    if elf_class not in _EHDR:
        raise ValueError(f"unknown ELF class {elf_class}")
    if elf_data == 1:
        order = "<"
    elif elf_data == 2:
        order = ">"
    else:
        raise ValueError(f"unknown ELF byte order {elf_data}")
    shoff_at, shoff_fmt, counts_at, ehdr_size = _EHDR[elf_class]
    if size < ehdr_size:
        raise ValueError(f"truncated ELF header ({size} bytes)")
    (shoff,) = struct.unpack_from(order + shoff_fmt, data, shoff_at)
    shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, counts_at)
    shdr_fmt, shdr_min = _SHDR[elf_class]
    shdr = struct.Struct(order + shdr_fmt)
    if shoff == 0:
        raise ValueError("no section header table")
    if shentsize < shdr_min:
        raise ValueError(f"section header entry size {shentsize} is too small")

    def header(index: int) -> tuple[int, int, int, int, int]:
        at = shoff + index * shentsize
        if at + shdr_min > size:
            raise ValueError(
                f"truncated: section header {index} at offset {at} is beyond the end "
                f"of the file ({size} bytes)"
            )
        values: tuple[int, int, int, int, int] = shdr.unpack_from(data, at)
        return values

    if shnum == 0 or shstrndx == _SHN_XINDEX:  # extended numbering: real values in entry 0
        _name, _type, _offset, size0, link0 = header(0)
        shnum = shnum or size0
        if shstrndx == _SHN_XINDEX:
            shstrndx = link0
    if shoff + shnum * shentsize > size:
        raise ValueError(
            f"truncated: the section header table ends at offset {shoff + shnum * shentsize}, "
            f"beyond the end of the file ({size} bytes)"
        )
    if not 0 < shstrndx < shnum:
        raise ValueError(f"section name table index {shstrndx} out of range")
    _name, _type, str_off, str_size, _link = header(shstrndx)
    if str_off + str_size > size:
        raise ValueError("truncated: the section name table is beyond the end of the file")
    view = memoryview(data)
    names = view[str_off : str_off + str_size]
    wanted = b".modinfo\0"
    for index in range(1, shnum):
        name_at, sh_type, offset, sec_size, _link = header(index)
        if names[name_at : name_at + len(wanted)] != wanted:
            continue
        if sh_type == _SHT_NOBITS:
            return view[0:0]
        if offset + sec_size > size:
            raise ValueError(
                f"truncated: the .modinfo section ends at offset {offset + sec_size}, "
                f"beyond the end of the file ({size} bytes)"
            )
        return view[offset : offset + sec_size]
    raise ValueError("no .modinfo section (not a kernel module?)")


def _parse_modinfo_strings(raw: bytes) -> dict[str, list[str]]:
    info: dict[str, list[str]] = {}
    for entry in raw.split(b"\0"):
        if not entry:
            continue  # padding between entries
        key, sep, value = entry.partition(b"=")
        if not sep:
            continue
        info.setdefault(key.decode("utf-8", "replace"), []).append(value.decode("utf-8", "replace"))
    return info


def read_modinfo(data: bytes) -> dict[str, list[str]]:
    """Return the ``.modinfo`` fields of an (uncompressed) kernel module, in file order.

    Each key maps to all its values, in the order ``modinfo -F key`` prints them.
    Raises ``ValueError`` if ``data`` is not ELF, is truncated or has no ``.modinfo``.

    >>> info = read_modinfo(Path("e1000e.ko").read_bytes())  # doctest: +SKIP
    >>> info["depends"]  # doctest: +SKIP
    ['']
    """
    try:
        section = _modinfo_section(data)
    except struct.error as exc:  # a bounds check missed: still "damaged", never a crash
        raise ValueError(f"damaged ELF file: {exc}") from exc
    return _parse_modinfo_strings(bytes(section))


def _split_depends(values: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        out.extend(normalise_module(d) for d in value.split(",") if d)
    return tuple(out)


def _module_from_info(info: Mapping[str, list[str]], path: str, builtin: bool) -> KernelModule:
    names = info.get("name")
    name = normalise_module(names[0]) if names and names[0] else module_name_from_path(path)
    vermagic = info.get("vermagic")
    return KernelModule(
        name=name,
        path=path,
        firmware=tuple(info.get("firmware", ())),
        depends=_split_depends(info.get("depends", ())),
        aliases=tuple(info.get("alias", ())),
        vermagic=vermagic[0] if vermagic else None,
        builtin=builtin,
    )


# --------------------------------------------------------------------------- workers

# A worker's answer: the module, or the reason it could not be read.
_Outcome = tuple[KernelModule | None, str | None]


def _parse_module(data: bytes, name: str, rel: str) -> _Outcome:
    """Decompress (by the suffix of ``name``) and parse one module file's bytes."""
    try:
        suffix = compressed_suffix(name)
        if suffix is not None:
            data = decompress_bytes(data, suffix)
        info = read_modinfo(data)
    except ValueError as exc:  # DecompressionError is a ValueError
        return None, str(exc)
    return _module_from_info(info, rel, builtin=False), None


def _scan_file(path: str, rel: str) -> _Outcome:
    """Worker: read, decompress and parse one module file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    return _parse_module(data, path, rel)


def _scan_bytes(data: bytes, name: str, rel: str) -> _Outcome:
    """Worker: decompress and parse a module read from an archive."""
    return _parse_module(data, name, rel)


def _default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _make_executor(jobs: int, pool: PoolKind) -> Executor:
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    if pool == "process":
        return ProcessPoolExecutor(max_workers=jobs)
    return ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="lkfirmware-scan")


def _run_bounded(
    executor: Executor,
    tasks: Iterable[tuple[str, Callable[..., _Outcome], tuple[object, ...]]],
    window: int,
) -> Iterator[tuple[str, _Outcome]]:
    """Submit ``tasks`` (display name, function, args) keeping at most ``window`` pending.

    Results come back in submission order, so the scan's output does not depend on timing;
    the window bounds memory when the task arguments are whole files.
    """
    pending: deque[tuple[str, Future[_Outcome]]] = deque()
    for display, func, args in tasks:
        pending.append((display, executor.submit(func, *args)))
        if len(pending) >= window:
            head, fut = pending.popleft()
            yield head, fut.result()
    while pending:
        head, fut = pending.popleft()
        yield head, fut.result()


# --------------------------------------------------------------------------- locating


def _looks_like_modules_dir(path: Path) -> bool:
    return (
        (path / "kernel").is_dir()
        or (path / "modules.order").is_file()
        or (path / "modules.dep").is_file()
        or (path / BUILTIN_MODINFO).is_file()
    )


def _modules_dir(path: Path) -> Path:
    """Find ``lib/modules/<version>`` for a directory the user gave."""
    if _looks_like_modules_dir(path):
        return path
    for base in (path / "lib" / "modules", path / "usr" / "lib" / "modules", path):
        if not base.is_dir():
            continue
        versions = sorted(p for p in base.iterdir() if p.is_dir() and _looks_like_modules_dir(p))
        if len(versions) == 1:
            return versions[0]
        if len(versions) > 1:
            raise UsageError(
                f"{base} holds modules of several kernels ("
                + ", ".join(v.name for v in versions)
                + f"); give one of them, e.g. {versions[-1]}"
            )
    return path  # a plain directory of module files


def _version_from_dir(modules_dir: Path) -> str | None:
    if modules_dir.parent.name == "modules" and _looks_like_modules_dir(modules_dir):
        return modules_dir.name
    return None


def _version_from_vermagic(modules: Iterable[KernelModule]) -> str | None:
    counts: dict[str, int] = {}
    for mod in modules:
        if mod.vermagic:
            release = mod.vermagic.split()[0]
            counts[release] = counts.get(release, 0) + 1
    if not counts:
        return None
    return max(sorted(counts), key=lambda r: counts[r])


def _parse_builtin_modinfo(raw: bytes) -> list[KernelModule]:
    """Parse ``modules.builtin.modinfo``: ``module.key=value`` strings, NUL-separated."""
    per_module: dict[str, dict[str, list[str]]] = {}
    for entry in raw.split(b"\0"):
        if not entry:
            continue
        text = entry.decode("utf-8", "replace")
        dotted, sep, value = text.partition("=")
        module, dot, key = dotted.partition(".")
        if not sep or not dot or not module:
            continue
        per_module.setdefault(module, {}).setdefault(key, []).append(value)
    return [
        _module_from_info({"name": [module], **fields}, BUILTIN_PATH, builtin=True)
        for module, fields in per_module.items()
    ]


def _tar_module_root(member: str) -> tuple[str, str] | None:
    """Split a tar member ``[./][usr/]lib/modules/<ver>/<rest>`` into (version, rest)."""
    parts = PurePosixPath(member).parts
    if parts and parts[0] in (".", "/"):
        parts = parts[1:]
    if parts[:1] == ("usr",):
        parts = parts[1:]
    if len(parts) >= 4 and parts[0] == "lib" and parts[1] == "modules":
        return parts[2], "/".join(parts[3:])
    return None


# --------------------------------------------------------------------------- scanning


class _Collector:
    """Gathers worker outcomes into modules and problems."""

    def __init__(self) -> None:
        self.modules: dict[str, KernelModule] = {}
        self.problems: list[ScanProblem] = []

    def add(self, display: str, outcome: _Outcome) -> None:
        module, reason = outcome
        if module is None:
            self.problems.append(ScanProblem(display, reason or "unreadable"))
            return
        other = self.modules.get(module.name)
        if other is None:
            self.modules[module.name] = module
            return
        # depmod's default search order: updates/ before the kernel's own modules.
        keep, drop = (
            (module, other)
            if module.path.startswith("updates/") and not other.path.startswith("updates/")
            else (other, module)
        )
        self.modules[module.name] = keep
        self.problems.append(
            ScanProblem(drop.path, f"duplicate module {module.name!r}; using {keep.path}")
        )

    def add_builtin(self, modules: Iterable[KernelModule]) -> None:
        for module in modules:
            self.modules.setdefault(module.name, module)

    def result(self, version: str | None) -> ModuleScan:
        ordered = dict(sorted(self.modules.items()))
        if version is None:
            version = _version_from_vermagic(m for m in ordered.values() if not m.builtin)
        return ModuleScan(
            modules=MappingProxyType(ordered),
            problems=tuple(sorted(self.problems, key=lambda p: p.path)),
            kernel_version=version,
        )


def _scan_directory(path: Path, jobs: int, pool: PoolKind) -> ModuleScan:
    root = _modules_dir(path)
    files: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):  # does not follow build/, source/
        dirnames.sort()
        for filename in sorted(filenames):
            if is_module_file(filename):
                full = os.path.join(dirpath, filename)
                files.append((full, os.path.relpath(full, root).replace(os.sep, "/")))
    collector = _Collector()
    if files:
        with _make_executor(min(jobs, len(files)), pool) as executor:
            tasks = ((full, _scan_file, (full, rel)) for full, rel in files)
            for display, outcome in _run_bounded(executor, tasks, window=max(64, jobs * 16)):
                collector.add(display, outcome)
    builtin = root / BUILTIN_MODINFO
    if builtin.is_file():
        collector.add_builtin(_parse_builtin_modinfo(builtin.read_bytes()))
    return collector.result(_version_from_dir(root))


def _scan_tar(path: Path, jobs: int, pool: PoolKind) -> ModuleScan:
    import tarfile

    collector = _Collector()
    versions: set[str] = set()
    builtin_raw: dict[str, bytes] = {}
    try:
        archive = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed below
    except (tarfile.TarError, OSError) as exc:
        raise UsageError(f"{path}: cannot read as a tar archive: {exc}") from exc

    def tasks() -> Iterator[tuple[str, Callable[..., _Outcome], tuple[object, ...]]]:
        try:
            for member in archive:
                if not (member.isfile() or member.islnk()):
                    continue
                located = _tar_module_root(member.name)
                base = os.path.basename(member.name)
                display = f"{path}:{member.name}"
                if located is None:
                    if is_module_file(base):  # a module outside lib/modules/<version>
                        yield from _tar_task(archive, member, display, member.name)
                    continue
                version, rel = located
                versions.add(version)
                if rel == BUILTIN_MODINFO:
                    builtin_raw[version] = _tar_read(archive, member)
                elif is_module_file(base):
                    yield from _tar_task(archive, member, display, rel)
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            # A damaged archive: keep what was read, say where it stopped.
            collector.problems.append(ScanProblem(str(path), f"archive is damaged: {exc}"))

    with archive, _make_executor(jobs, pool) as executor:
        for display, outcome in _run_bounded(executor, tasks(), window=max(32, jobs * 8)):
            collector.add(display, outcome)
    if len(versions) > 1:
        raise UsageError(
            f"{path} holds modules of several kernels ({', '.join(sorted(versions))}); "
            "lkfirmware scans one kernel at a time"
        )
    version = next(iter(versions), None)
    if version is not None and version in builtin_raw:
        collector.add_builtin(_parse_builtin_modinfo(builtin_raw[version]))
    return collector.result(version)


def _tar_read(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    extracted = archive.extractfile(member)
    if extracted is None:
        return b""
    with extracted:
        return extracted.read()


def _tar_task(
    archive: tarfile.TarFile, member: tarfile.TarInfo, display: str, rel: str
) -> Iterator[tuple[str, Callable[..., _Outcome], tuple[object, ...]]]:
    rel = rel.removeprefix("./")
    yield display, _scan_bytes, (_tar_read(archive, member), member.name, rel)


def scan_modules(path: Path, *, jobs: int | None = None, pool: PoolKind = "thread") -> ModuleScan:
    """Read the ``.modinfo`` of every kernel module under ``path``.

    ``path`` is one of:

    * a modules directory ``lib/modules/<version>``, or a root (image, package extract)
      that contains exactly one ``lib/modules/<version>`` (or ``usr/lib/modules/...``);
    * a LinuxKit ``kernel.tar`` (a tar of ``lib/modules/...``, possibly gzip/xz/bzip2
      compressed), read member by member in memory;
    * a single module file (``.ko``, ``.ko.xz``, ``.ko.zst``, ``.ko.gz``).

    Files are decompressed and parsed by ``jobs`` workers (default: the usable CPUs), in
    threads (the codecs release the GIL) or, with ``pool="process"``, in processes.
    Unreadable files are listed in ``ModuleScan.problems``; they never stop the scan.
    Raises :class:`~lkfirmware.errors.UsageError` if ``path`` is none of the above.

    Example::

        scan = scan_modules(Path("/lib/modules/6.12.118+deb12-amd64"))
        scan.module("iwlwifi").firmware[:2]
        # ('iwlwifi-100-5.ucode', 'iwlwifi-1000-5.ucode')
    """
    path = Path(path)
    workers = jobs if jobs is not None else _default_jobs()
    if workers < 1:
        raise UsageError(f"jobs must be at least 1, not {workers}")
    if path.is_dir():
        return _scan_directory(path, workers, pool)
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory (expected modules or kernel.tar)")
    if is_module_file(path.name):
        collector = _Collector()
        collector.add(str(path), _scan_file(str(path), str(path)))
        return collector.result(None)
    import tarfile

    try:
        is_tar = tarfile.is_tarfile(path)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from exc
    if is_tar:
        return _scan_tar(path, workers, pool)
    raise UsageError(
        f"{path}: neither a modules directory, a kernel.tar nor a module file "
        f"({', '.join(MODULE_SUFFIXES)})"
    )


# --------------------------------------------------------------------------- requests


def _dependency_closure(scan: ModuleScan, names: Iterable[str]) -> list[KernelModule]:
    """The named modules and, transitively, what they depend on; named ones first."""
    seen: set[str] = set()
    order: list[KernelModule] = []
    queue = deque(names)
    while queue:
        module = scan.modules.get(queue.popleft())
        if module is None or module.name in seen:
            continue  # a dependency that is not in the scan has no firmware to add
        seen.add(module.name)
        order.append(module)
        queue.extend(module.depends)
    return order


def firmware_requests(scan: ModuleScan, names: Iterable[str] | None) -> list[tuple[str, str]]:
    """List ``(module, firmware name)`` pairs that the kernel may request.

    ``names`` selects modules (``-`` or ``_`` spelling); their dependencies are followed
    transitively. ``None`` takes every module of the scan, in name order. Firmware names are
    as the module wrote them (globs included), each pair once, in ``modinfo`` order.
    Raises :class:`~lkfirmware.errors.UsageError` for a name the scan does not know, with
    close names as suggestions.

    >>> scan = ModuleScan({"a": KernelModule("a", "a.ko", ("x.bin",), ("b",)),
    ...                    "b": KernelModule("b", "b.ko", ("y.bin",))})
    >>> firmware_requests(scan, ["a"])
    [('a', 'x.bin'), ('b', 'y.bin')]
    """
    if names is None:
        selected = list(scan.modules.values())
    else:
        wanted = [normalise_module(n) for n in names]
        unknown = [n for n in wanted if n not in scan.modules]
        if unknown:
            raise UsageError(_unknown_modules_message(scan, unknown))
        selected = _dependency_closure(scan, wanted)
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for module in selected:
        for firmware in module.firmware:
            pair = (module.name, firmware)
            if pair not in seen:
                seen.add(pair)
                pairs.append(pair)
    return pairs


def _unknown_modules_message(scan: ModuleScan, unknown: list[str]) -> str:
    import difflib

    where = f"kernel {scan.kernel_version}" if scan.kernel_version else "the scanned modules"
    lines = []
    for name in unknown:
        close = difflib.get_close_matches(name, list(scan.modules), n=5, cutoff=0.6)
        hint = f" (did you mean: {', '.join(close)}?)" if close else ""
        lines.append(f"unknown module {name!r} in {where}{hint}")
    lines.append("run 'lkfirmware modules PATH' to list the modules of that kernel")
    return "\n".join(lines)
