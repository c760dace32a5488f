"""Compressed files: kernel modules and firmware blobs as ``.xz``, ``.zst`` or ``.gz``.

Two directions:

* reading -- installed firmware trees and kernel module directories hold files compressed
  with xz, zstd or gzip; :func:`decompress_file` and :func:`decompress_bytes` pick the
  codec from the file suffix;
* writing -- kernels built with ``CONFIG_FW_LOADER_COMPRESS`` load ``<name>.xz`` or
  ``<name>.zst``; :func:`compress_file` writes them the way the kernel can read them (xz
  with the CRC32 integrity check, since the kernel's xz decoder accepts only CRC32 or none;
  zstd frames carrying their content size).

xz and gzip come from the standard library; zstd needs the ``zstandard`` package, which is
imported only when a zstd file is actually read or written.
"""

from __future__ import annotations

import gzip
import lzma
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal, Protocol

from lkfirmware.files import NEW_FILE_MODE, atomic_writer

__all__ = [
    "COMPRESSED_SUFFIXES",
    "CompressMethod",
    "DecompressionError",
    "compress_file",
    "compressed_suffix",
    "decompress_bytes",
    "decompress_file",
    "strip_compressed_suffix",
    "suffix_for",
]

COMPRESSED_SUFFIXES = (".xz", ".zst", ".gz")
"""File suffixes this module can decompress, in the kernel's order of preference."""

CompressMethod = Literal["xz", "zstd"]

_CHUNK = 1 << 20
XZ_PRESET = 6
"""xz preset used for firmware (the ``xz`` command's default)."""
ZSTD_LEVEL = 19
"""zstd level used for firmware: blobs are written once and read at every boot."""


class DecompressionError(ValueError):
    """A file or buffer that is not valid data for the codec its suffix names."""


def compressed_suffix(name: str | os.PathLike[str]) -> str | None:
    """Return the compression suffix of ``name`` (``.xz``, ``.zst``, ``.gz``) or None.

    >>> compressed_suffix("brcm/foo.bin.zst")
    '.zst'
    >>> compressed_suffix("e1000e.ko") is None
    True
    """
    text = os.fspath(name)
    for suffix in COMPRESSED_SUFFIXES:
        if text.endswith(suffix):
            return suffix
    return None


def strip_compressed_suffix(name: str) -> str:
    """Return ``name`` without its compression suffix, if it has one.

    >>> strip_compressed_suffix("kernel/drivers/net/e1000e.ko.xz")
    'kernel/drivers/net/e1000e.ko'
    """
    suffix = compressed_suffix(name)
    return name[: -len(suffix)] if suffix else name


def suffix_for(method: CompressMethod) -> str:
    """Return the file suffix the kernel expects for ``method``: ``.xz`` or ``.zst``.

    >>> suffix_for("zstd")
    '.zst'
    """
    if method == "xz":
        return ".xz"
    if method == "zstd":
        return ".zst"
    raise ValueError(f"unknown compression method {method!r}; use 'xz' or 'zstd'")


def _zstd_frames(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decompress a sequence of zstd frames fed in ``chunks``; yield the output pieces.

    Unlike ``zstandard``'s stream reader, a stream cut short (even inside the checksum) is an
    error here, not a silently shorter output.
    """
    import zstandard

    dobj = zstandard.ZstdDecompressor().decompressobj()
    pending = False  # the current frame has received input but is not complete
    for chunk in chunks:
        while chunk:
            out = dobj.decompress(chunk)
            pending = True
            if out:
                yield out
            if not dobj.eof:
                break
            chunk = dobj.unused_data
            dobj = zstandard.ZstdDecompressor().decompressobj()
            pending = False
    if pending:
        raise DecompressionError("zstd data ends inside a frame (truncated)")


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _read_chunks(stream: _Readable) -> Iterator[bytes]:
    while chunk := stream.read(_CHUNK):
        yield chunk


def _check_suffix(suffix: str) -> str:
    if suffix not in COMPRESSED_SUFFIXES:
        raise ValueError(
            f"unknown compression suffix {suffix!r}; expected one of "
            + ", ".join(COMPRESSED_SUFFIXES)
        )
    return suffix


def _codec_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the data is damaged", whatever the codec."""
    errors: list[type[BaseException]] = [lzma.LZMAError, EOFError, OSError, zlib.error]
    try:
        import zstandard
    except ImportError:  # pragma: no cover - depends on the environment
        pass
    else:
        errors.append(zstandard.ZstdError)
    return tuple(errors)


def _xz_decompress(data: bytes) -> bytes:
    """``lzma.decompress`` without its final copy when there is one stream (the usual case)."""
    decoder = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    out = decoder.decompress(data)
    if not decoder.eof:
        raise DecompressionError("xz data ends inside a stream (truncated)")
    if decoder.unused_data.strip(b"\0"):  # more streams (stream padding is NUL bytes)
        return out + lzma.decompress(decoder.unused_data, format=lzma.FORMAT_XZ)
    return out


def decompress_bytes(data: bytes, suffix: str) -> bytes:
    """Decompress ``data``, compressed with the codec of ``suffix`` (``.xz``/``.zst``/``.gz``).

    Concatenated xz streams, gzip members and zstd frames are all read.
    Raises :class:`DecompressionError` (a ``ValueError``) on damaged or truncated data.

    >>> decompress_bytes(gzip.compress(b"firmware"), ".gz")
    b'firmware'
    """
    _check_suffix(suffix)
    if not data:
        raise DecompressionError(f"empty input is not {suffix} data")
    try:
        if suffix == ".xz":
            return _xz_decompress(data)
        if suffix == ".gz":
            return gzip.decompress(data)
        return b"".join(_zstd_frames([data]))
    except DecompressionError:
        raise
    except _codec_errors() as exc:
        raise DecompressionError(f"damaged {suffix} data: {exc}") from exc


def _decompressed_chunks(src: Path) -> Iterator[bytes]:
    """Yield the decompressed content of ``src`` in bounded chunks, by its suffix."""
    suffix = compressed_suffix(src)
    if suffix is None:
        raise ValueError(
            f"{src}: not a compressed file name (expected a suffix among "
            + ", ".join(COMPRESSED_SUFFIXES)
            + ")"
        )
    if src.stat().st_size == 0:
        raise DecompressionError(f"empty file is not {suffix} data")
    if suffix == ".zst":
        with open(src, "rb") as raw:
            yield from _zstd_frames(_read_chunks(raw))
        return
    opener = lzma.open if suffix == ".xz" else gzip.open
    with opener(src, "rb") as reader:
        yield from _read_chunks(reader)


def decompress_file(src: Path, dst: Path) -> None:
    """Decompress ``src`` into ``dst``, choosing the codec from the suffix of ``src``.

    Streams in chunks (memory stays bounded whatever the file size) and writes ``dst``
    atomically: on any error ``dst`` is left as it was. Raises :class:`DecompressionError`
    on damaged data and ``ValueError`` if ``src`` has no known compression suffix.

    Example: ``decompress_file(Path("/lib/firmware/rtl_nic/rtl8168h-2.fw.zst"),
    Path("out/rtl8168h-2.fw"))``.
    """
    src = Path(src)
    dst = Path(dst)
    try:
        with atomic_writer(dst, mode=NEW_FILE_MODE) as out:
            for chunk in _decompressed_chunks(src):
                out.write(chunk)
    except DecompressionError as exc:
        raise DecompressionError(f"{src}: {exc}") from exc
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except _codec_errors() as exc:
        raise DecompressionError(f"{src}: damaged {compressed_suffix(src)} data: {exc}") from exc


def compress_file(
    src: Path, dst: Path, method: CompressMethod, *, level: int | None = None
) -> None:
    """Compress ``src`` into ``dst`` in a form the kernel's firmware loader accepts.

    ``method="xz"`` writes an xz stream with the CRC32 check (the kernel rejects CRC64 and
    SHA-256) and a plain LZMA2 filter; ``method="zstd"`` writes one zstd frame that records
    its content size and a checksum. ``level`` overrides the xz preset (0-9, default
    :data:`XZ_PRESET`) or the zstd level (1-22, default :data:`ZSTD_LEVEL`). ``dst`` is written
    atomically; the caller chooses its name (see :func:`suffix_for`).

    Example: ``compress_file(Path("fw.bin"), Path("fw.bin.xz"), "xz")``.
    """
    src = Path(src)
    dst = Path(dst)
    suffix_for(method)  # validates the method
    if method == "xz":
        import shutil

        preset = XZ_PRESET if level is None else level
        with (
            open(src, "rb") as raw,
            atomic_writer(dst, mode=NEW_FILE_MODE) as out,
            lzma.LZMAFile(
                out, "wb", format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=preset
            ) as xz_writer,
        ):
            shutil.copyfileobj(raw, xz_writer, _CHUNK)
        return
    import zstandard

    cctx = zstandard.ZstdCompressor(
        level=ZSTD_LEVEL if level is None else level,
        write_checksum=True,
        write_content_size=True,
    )
    with open(src, "rb") as raw, atomic_writer(dst, mode=NEW_FILE_MODE) as out:
        size = os.fstat(raw.fileno()).st_size
        cctx.copy_stream(raw, out, size=size, read_size=_CHUNK, write_size=_CHUNK)
