"""lkfirmware.lock: deterministic text, strict parsing, atomic and minimal writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lkfirmware.errors import IntegrityError
from lkfirmware.lockfile import LockedFile, LockFile, parse_lock, read_lock, render_lock, write_lock

SHA_A = "a" * 64
SHA_B = "b" * 64
GIT_A = "1" * 40


def sample() -> LockFile:
    return LockFile(
        "20251215",
        {
            "rtl_nic/rtl8168h-1.fw": LockedFile(4000, SHA_B),
            "brcm/brcmfmac43455-sdio.MINIX-NEO Z83-4.txt": LockedFile(1500, SHA_A, GIT_A),
        },
    )


def test_render_is_deterministic_sorted_and_one_line_per_file() -> None:
    text = render_lock(sample())
    assert text == (
        "{\n"
        '  "lockfile-version": 1,\n'
        '  "ref": "20251215",\n'
        '  "files": {\n'
        f'    "brcm/brcmfmac43455-sdio.MINIX-NEO Z83-4.txt": {{"size": 1500, "sha256": "{SHA_A}",'
        f' "git_id": "{GIT_A}"}},\n'
        f'    "rtl_nic/rtl8168h-1.fw": {{"size": 4000, "sha256": "{SHA_B}"}}\n'
        "  }\n"
        "}\n"
    )
    json.loads(text)
    assert parse_lock(text) == LockFile(sample().ref, dict(sorted(sample().files.items())))
    assert render_lock(parse_lock(text)) == text


def test_empty_lock_is_valid_json() -> None:
    text = render_lock(LockFile("main"))
    assert json.loads(text) == {"lockfile-version": 1, "ref": "main", "files": {}}


def test_with_files_adds_and_never_overrides() -> None:
    lock = sample().with_files(
        {"rtl_nic/rtl8168h-1.fw": LockedFile(1, SHA_A), "new.bin": LockedFile(2, SHA_A)}
    )
    assert lock.files["rtl_nic/rtl8168h-1.fw"] == LockedFile(4000, SHA_B)
    assert lock.files["new.bin"] == LockedFile(2, SHA_A)
    assert list(lock.files) == sorted(lock.files)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("{", "not valid JSON"),
        ("[]", "not an object"),
        ('{"lockfile-version": 2, "ref": "x", "files": {}}', "lockfile-version"),
        ('{"lockfile-version": 1, "files": {}}', '"ref"'),
        ('{"lockfile-version": 1, "ref": "x"}', '"files"'),
        ('{"lockfile-version": 1, "ref": "x", "files": {"a": 1}}', "'a'"),
        ('{"lockfile-version": 1, "ref": "x", "files": {"a": {"size": -1}}}', "size"),
        (
            '{"lockfile-version": 1, "ref": "x", "files": {"a": {"size": 1, "sha256": "zz"}}}',
            "sha256",
        ),
        (
            '{"lockfile-version": 1, "ref": "x", "files": {"a": {"size": 1, "sha256": "'
            + SHA_A
            + '", "git_id": "short"}}}',
            "git_id",
        ),
    ],
)
def test_malformed_locks_are_integrity_errors(text: str, complaint: str) -> None:
    with pytest.raises(IntegrityError) as caught:
        parse_lock(text, "my.lock")
    assert complaint in str(caught.value) and "my.lock" in str(caught.value)


def test_write_is_atomic_minimal_and_keeps_permissions(tmp_path: Path) -> None:
    path = tmp_path / "lkfirmware.lock"
    assert read_lock(path) is None
    assert write_lock(path, sample()) is True
    assert read_lock(path) == parse_lock(render_lock(sample()))
    assert path.stat().st_mode & 0o777 == 0o644
    os.chmod(path, 0o600)
    stamp = path.stat().st_mtime_ns
    assert write_lock(path, sample()) is False
    assert path.stat().st_mtime_ns == stamp
    assert write_lock(path, sample().with_files({"x.bin": LockedFile(1, SHA_A)})) is True
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["lkfirmware.lock"]


def test_a_symlinked_lock_is_written_through(tmp_path: Path) -> None:
    real = tmp_path / "real.lock"
    write_lock(real, LockFile("main"))
    link = tmp_path / "lkfirmware.lock"
    link.symlink_to(real.name)
    write_lock(link, sample())
    assert link.is_symlink()
    assert read_lock(real) == read_lock(link) == parse_lock(render_lock(sample()))
