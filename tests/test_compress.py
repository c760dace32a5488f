"""Tests for lkfirmware.compress: round trips, kernel-compatible output, damaged input."""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import zstandard

from lkfirmware.compress import (
    COMPRESSED_SUFFIXES,
    CompressMethod,
    DecompressionError,
    compress_file,
    compressed_suffix,
    decompress_bytes,
    decompress_file,
    strip_compressed_suffix,
    suffix_for,
)

# Incompressible and compressible parts, more than one 1 MiB chunk in all.
PAYLOAD = os.urandom(300_000) + b"firmware " * 150_000 + bytes(range(256)) * 100

XZ_MAGIC = b"\xfd7zXZ\x00"
XZ_CHECK_CRC32 = 0x01


def compress_bytes(data: bytes, suffix: str) -> bytes:
    if suffix == ".xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64)
    if suffix == ".gz":
        return gzip.compress(data)
    return zstandard.ZstdCompressor(write_checksum=True).compress(data)


def xz_check_type(blob: bytes) -> int:
    """The check ID from an xz stream header (the low nibble of the second flags byte)."""
    assert blob[:6] == XZ_MAGIC
    assert blob[6] == 0x00
    header_check = blob[7] & 0x0F
    # The stream footer repeats the flags just before its magic "YZ".
    assert blob[-2:] == b"YZ"
    assert blob[-4:-2] == blob[6:8]
    return header_check


def test_suffix_helpers() -> None:
    assert COMPRESSED_SUFFIXES == (".xz", ".zst", ".gz")
    assert suffix_for("xz") == ".xz"
    assert suffix_for("zstd") == ".zst"
    with pytest.raises(ValueError, match="unknown compression method"):
        suffix_for("bz2")  # type: ignore[arg-type]
    assert compressed_suffix("a/b.ko.zst") == ".zst"
    assert compressed_suffix(Path("a/b.ko.gz")) == ".gz"
    assert compressed_suffix("a/b.ko") is None
    assert compressed_suffix("a/b.xzfoo") is None
    assert strip_compressed_suffix("fw/x.bin.xz") == "fw/x.bin"
    assert strip_compressed_suffix("fw/x.bin") == "fw/x.bin"


@pytest.mark.parametrize("suffix", COMPRESSED_SUFFIXES)
def test_decompress_bytes_round_trip(suffix: str) -> None:
    assert decompress_bytes(compress_bytes(PAYLOAD, suffix), suffix) == PAYLOAD


@pytest.mark.parametrize("suffix", COMPRESSED_SUFFIXES)
def test_decompress_bytes_reads_concatenated_streams(suffix: str) -> None:
    data = compress_bytes(b"first,", suffix) + compress_bytes(b"second", suffix)
    assert decompress_bytes(data, suffix) == b"first,second"


@pytest.mark.parametrize("suffix", COMPRESSED_SUFFIXES)
def test_decompress_file_round_trip(tmp_path: Path, suffix: str) -> None:
    src = tmp_path / f"blob.bin{suffix}"
    src.write_bytes(compress_bytes(PAYLOAD, suffix))
    dst = tmp_path / "out" / "blob.bin"
    decompress_file(src, dst)
    assert dst.read_bytes() == PAYLOAD
    assert [p.name for p in dst.parent.iterdir()] == ["blob.bin"]  # no temporary left


@pytest.mark.parametrize("suffix", COMPRESSED_SUFFIXES)
@pytest.mark.parametrize("damage", ["truncated", "flipped", "empty", "garbage"])
def test_damaged_input_is_an_error(tmp_path: Path, suffix: str, damage: str) -> None:
    good = compress_bytes(PAYLOAD, suffix)
    if damage == "truncated":
        bad = good[: len(good) - 3]  # cut inside the trailer/checksum
    elif damage == "flipped":
        mid = len(good) // 2
        bad = good[:mid] + bytes([good[mid] ^ 0xFF]) + good[mid + 1 :]
    elif damage == "empty":
        bad = b""
    else:
        bad = b"<html>not found</html>"
    with pytest.raises(DecompressionError):
        decompress_bytes(bad, suffix)
    src = tmp_path / f"blob{suffix}"
    src.write_bytes(bad)
    dst = tmp_path / "blob"
    dst.write_bytes(b"previous")
    with pytest.raises(DecompressionError, match="blob"):
        decompress_file(src, dst)
    assert dst.read_bytes() == b"previous"  # untouched on failure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob", f"blob{suffix}"]


def test_decompress_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="suffix"):
        decompress_bytes(b"", ".bz2")
    src = tmp_path / "x.bin"
    src.write_bytes(b"plain")
    with pytest.raises(ValueError, match="not a compressed file name"):
        decompress_file(src, tmp_path / "y")


def test_decompress_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        decompress_file(tmp_path / "nope.xz", tmp_path / "nope")


@pytest.mark.parametrize("method", ["xz", "zstd"])
def test_compress_file_round_trip(tmp_path: Path, method: CompressMethod) -> None:
    src = tmp_path / "fw.bin"
    src.write_bytes(PAYLOAD)
    dst = tmp_path / ("fw.bin" + suffix_for(method))
    compress_file(src, dst, method, level=1)
    blob = dst.read_bytes()
    assert len(blob) < len(PAYLOAD)
    assert decompress_bytes(blob, dst.suffix) == PAYLOAD
    out = tmp_path / "back.bin"
    decompress_file(dst, out)
    assert out.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["fw.bin", dst.name, "back.bin"])


def test_xz_output_uses_crc32_check(tmp_path: Path) -> None:
    src = tmp_path / "fw.bin"
    src.write_bytes(b"\x00\x01" * 1000)
    compress_file(src, tmp_path / "fw.bin.xz", "xz")
    assert xz_check_type((tmp_path / "fw.bin.xz").read_bytes()) == XZ_CHECK_CRC32
    # The helper would notice another check: the standard library's default is CRC64.
    assert xz_check_type(lzma.compress(b"x")) == 0x04


def test_zstd_output_records_content_size_and_checksum(tmp_path: Path) -> None:
    src = tmp_path / "fw.bin"
    src.write_bytes(PAYLOAD)
    compress_file(src, tmp_path / "fw.bin.zst", "zstd", level=3)
    params = zstandard.get_frame_parameters((tmp_path / "fw.bin.zst").read_bytes())
    assert params.content_size == len(PAYLOAD)
    assert params.has_checksum


def test_compress_empty_file(tmp_path: Path) -> None:
    src = tmp_path / "empty.bin"
    src.write_bytes(b"")
    for method in ("xz", "zstd"):
        dst = tmp_path / ("empty.bin" + suffix_for(method))
        compress_file(src, dst, method)
        assert decompress_bytes(dst.read_bytes(), dst.suffix) == b""


def test_compress_failure_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        compress_file(tmp_path / "missing", tmp_path / "missing.xz", "xz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("method", "tool"), [("xz", "xz"), ("zstd", "zstd")])
def test_command_line_tools_accept_output(
    tmp_path: Path, method: CompressMethod, tool: str
) -> None:
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} is not installed")
    src = tmp_path / "fw.bin"
    src.write_bytes(PAYLOAD)
    dst = tmp_path / ("fw.bin" + suffix_for(method))
    compress_file(src, dst, method, level=1)
    subprocess.run([exe, "-t", "-q", str(dst)], check=True)
    if tool == "xz":
        listing = subprocess.run(
            [exe, "--robot", "--list", str(dst)], check=True, capture_output=True, text=True
        ).stdout
        assert "\tCRC32\t" in listing
    out = subprocess.run([exe, "-dc", str(dst)], check=True, capture_output=True).stdout
    assert out == PAYLOAD
