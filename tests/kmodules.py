"""Test helper: tiny ELF kernel modules and module trees, built from scratch.

``make_module(...)`` returns the bytes of a relocatable ELF file with a ``.text``, a
``.modinfo`` (NUL-separated ``key=value`` strings, as the kernel's ``MODULE_INFO()`` makes
them), a ``.bss`` and a ``.shstrtab`` section, in either ELF class and byte order -- enough
for ``modinfo`` and for lkfirmware's scanner, and small enough to build hundreds per test.
``write_module`` stores one, compressed by its file suffix; ``make_modules_tree`` builds a
``lib/modules/<version>`` directory; ``make_kernel_tar`` packs it like a LinuxKit kernel.tar.
"""

from __future__ import annotations

import gzip
import io
import lzma
import struct
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import zstandard

ElfClass = Literal[32, 64]
ByteOrder = Literal["<", ">"]

# e_machine values of a few architectures the scanner must not care about.
EM_X86_64 = 62
EM_AARCH64 = 183
EM_RISCV = 243
EM_PPC64 = 21
EM_S390 = 22
EM_MIPS = 8
EM_ARM = 40

SHT_PROGBITS = 1
SHT_STRTAB = 3
SHT_NOBITS = 8
SHN_XINDEX = 0xFFFF


def modinfo_bytes(fields: Iterable[tuple[str, str]], padding: int = 0) -> bytes:
    """The ``.modinfo`` section for ``fields``; ``padding`` extra NULs after each entry."""
    return b"".join(f"{k}={v}".encode() + b"\0" * (1 + padding) for k, v in fields)


@dataclass(frozen=True)
class Section:
    name: str
    data: bytes
    sh_type: int = SHT_PROGBITS


@dataclass(frozen=True)
class ElfLayout:
    """Knobs for unusual but valid layouts."""

    headers_first: bool = False  # section header table right after the ELF header
    extended_numbering: bool = False  # e_shnum = 0 and e_shstrndx = SHN_XINDEX
    extra_sections: Sequence[Section] = field(default_factory=tuple)


def make_elf(
    sections: Sequence[Section],
    *,
    elf_class: ElfClass = 64,
    order: ByteOrder = "<",
    machine: int = EM_X86_64,
    layout: ElfLayout | None = None,
) -> bytes:
    """An ELF relocatable file with ``sections`` (plus the null section and ``.shstrtab``)."""
    layout = layout or ElfLayout()
    all_sections = [*sections, *layout.extra_sections]
    names = b"\0"
    name_offsets = []
    for section in [*all_sections, Section(".shstrtab", b"", SHT_STRTAB)]:
        name_offsets.append(len(names))
        names += section.name.encode() + b"\0"
    all_sections.append(Section(".shstrtab", names, SHT_STRTAB))

    ehsize, shentsize = (64, 64) if elf_class == 64 else (52, 40)
    shnum = len(all_sections) + 1
    table_size = shnum * shentsize

    offsets: list[int] = []
    position = ehsize + (table_size if layout.headers_first else 0)
    body = b""
    for section in all_sections:
        pad = (-position) % 8
        body += b"\0" * pad
        position += pad
        offsets.append(position)
        if section.sh_type != SHT_NOBITS:
            body += section.data
            position += len(section.data)
    pad = (-position) % 8
    body += b"\0" * pad
    position += pad
    shoff = ehsize if layout.headers_first else position

    word = "Q" if elf_class == 64 else "I"
    shdr = struct.Struct(order + f"II{word}{word}{word}{word}II{word}{word}")
    shnum_field = 0 if layout.extended_numbering else shnum
    shstrndx = len(all_sections)
    shstrndx_field = SHN_XINDEX if layout.extended_numbering else shstrndx
    table = shdr.pack(
        0, 0, 0, 0, 0,
        shnum if layout.extended_numbering else 0,  # sh_size of entry 0: real e_shnum
        shstrndx if layout.extended_numbering else 0,  # sh_link of entry 0: real e_shstrndx
        0, 0, 0,
    )  # fmt: skip
    for section, offset, name_at in zip(all_sections, offsets, name_offsets, strict=True):
        table += shdr.pack(name_at, section.sh_type, 0, 0, offset, len(section.data), 0, 0, 1, 0)

    ident = b"\x7fELF" + bytes([2 if elf_class == 64 else 1, 1 if order == "<" else 2, 1])
    ident = ident.ljust(16, b"\0")
    ehdr = ident + struct.pack(
        order + f"HHI{word}{word}{word}IHHHHHH",
        1,  # ET_REL
        machine,
        1,
        0,  # e_entry
        0,  # e_phoff
        shoff,
        0,  # e_flags
        ehsize,
        0,  # e_phentsize
        0,  # e_phnum
        shentsize,
        shnum_field,
        shstrndx_field,
    )
    assert len(ehdr) == ehsize
    if layout.headers_first:
        return ehdr + table + body
    return ehdr + body + table


def make_module(
    fields: Sequence[tuple[str, str]],
    *,
    elf_class: ElfClass = 64,
    order: ByteOrder = "<",
    machine: int = EM_X86_64,
    padding: int = 0,
    layout: ElfLayout | None = None,
) -> bytes:
    """A kernel module whose ``.modinfo`` holds ``fields`` in that order."""
    sections = [
        Section(".text", b"\x90" * 40),
        Section(".rodata", b"firmware=decoy.bin\0not modinfo\0"),
        Section(".modinfo", modinfo_bytes(fields, padding)),
        Section(".bss", b"\0" * 64, SHT_NOBITS),
    ]
    return make_elf(sections, elf_class=elf_class, order=order, machine=machine, layout=layout)


def compress_for(name: str, data: bytes) -> bytes:
    """Compress ``data`` the way a module named ``name`` is stored (by its suffix)."""
    if name.endswith(".xz"):
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)
    if name.endswith(".zst"):
        return zstandard.ZstdCompressor(level=3).compress(data)
    if name.endswith(".gz"):
        return gzip.compress(data)
    return data


def write_module(path: Path, data: bytes) -> Path:
    """Write module bytes to ``path``, compressed according to its suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(compress_for(path.name, data))
    return path


def module_fields(
    name: str,
    firmware: Sequence[str] = (),
    depends: Sequence[str] = (),
    aliases: Sequence[str] = (),
    version: str = "6.12.0-test",
) -> list[tuple[str, str]]:
    """``.modinfo`` fields in the order the kernel build writes them."""
    fields: list[tuple[str, str]] = [("license", "GPL"), ("description", f"{name} test driver")]
    fields += [("firmware", fw) for fw in firmware]
    fields += [("alias", a) for a in aliases]
    fields += [
        ("depends", ",".join(depends)),
        ("name", name),
        ("vermagic", f"{version} SMP preempt mod_unload "),
    ]
    return fields


def make_kernel_tar(modules_root: Path, dest: Path, compression: str = "") -> Path:
    """Pack ``modules_root`` (which holds ``lib/modules/...``) into a kernel.tar."""
    mode = f"w:{compression}" if compression else "w"
    with tarfile.open(dest, mode) as tar:  # type: ignore[call-overload]
        tar.add(modules_root / "lib", arcname="lib")
    return dest


def tar_bytes(members: dict[str, bytes]) -> bytes:
    """A tar archive of ``members`` (name -> content), for odd archives built in memory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()
