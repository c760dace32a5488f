"""The cache: layout, safety, index, texts, info, verify, prune, clear."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from lkfirmware.cache import (
    TAG_NAME,
    Cache,
    default_cache_dir,
    digest_file,
    is_immutable_ref,
)
from lkfirmware.errors import IntegrityError, UsageError
from lkfirmware.files import atomic_write
from tests.fwrepo import git_blob_id


def put(cache: Cache, ref: str, path: str, data: bytes) -> Path:
    """Admit ``data`` as ``path`` at ``ref`` the way the fetcher does."""
    temp = cache.incoming(hashlib.sha256(data).hexdigest()[:8])
    temp.write_bytes(data)
    entry = cache.admit(temp, digest_file(temp))
    cache.record(ref, path, entry)
    return entry.location


def test_default_dir_from_environment_or_platformdirs(tmp_path: Path) -> None:
    assert default_cache_dir({"LKFIRMWARE_CACHE_DIR": str(tmp_path)}) == tmp_path
    default = default_cache_dir({})
    assert default.name == "lkfirmware" and default.is_absolute()
    assert Cache(env={"LKFIRMWARE_CACHE_DIR": str(tmp_path / "x")}).root == tmp_path / "x"


def test_layout_tag_and_read_only_blobs(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    assert not cache.root.exists()  # nothing until something is written
    location = put(cache, "20251215", "brcm/a b,c.txt", b"firmware")
    sha = hashlib.sha256(b"firmware").hexdigest()
    assert location == cache.root / "blobs" / sha[:2] / sha
    assert location.read_bytes() == b"firmware"
    assert location.stat().st_mode & 0o222 == 0
    assert (
        (cache.root / TAG_NAME)
        .read_text()
        .startswith("Signature: 8a477f597d28d172789f06886806bc55")
    )
    entry = cache.by_ref_path("20251215", "brcm/a b,c.txt")
    assert entry is not None and entry.sha256 == sha and entry.size == 8
    assert entry.git_id == git_blob_id(b"firmware")
    assert cache.by_git_id(git_blob_id(b"firmware")) == entry
    assert cache.by_ref_path("20251215", "brcm/other") is None
    assert cache.by_ref_path("main", "brcm/a b,c.txt") is None


def test_the_same_content_is_stored_once(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    first = put(cache, "20251215", "a.bin", b"same")
    second = put(cache, "main", "b/c.bin", b"same")
    assert first == second
    assert cache.info().blobs == 1 and cache.info().entries == 2


def test_a_foreign_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "holiday.jpg").write_bytes(b"\xff\xd8")
    cache = Cache(tmp_path)
    with pytest.raises(UsageError, match="not an lkfirmware cache"):
        put(cache, "main", "a.bin", b"x")
    with pytest.raises(IntegrityError, match="left alone"):
        cache.clear()
    assert [p.name for p in tmp_path.iterdir()] == ["holiday.jpg"]
    assert Cache(tmp_path / "missing").clear() == 0


def test_texts_per_ref(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    assert cache.read_text("20251215", "WHENCE") is None
    cache.store_text("20251215", "WHENCE", b"one")
    cache.store_text("topic/x", "WHENCE", b"two")
    assert cache.read_text("20251215", "WHENCE") == b"one"
    assert cache.read_text("topic/x", "WHENCE") == b"two"
    assert cache.info().texts == 2


@pytest.mark.parametrize(
    ("ref", "immutable"),
    [
        ("0ab00e43853070c76cb954da55dd1198cb811255", True),
        ("0AB00E43853070C76CB954DA55DD1198CB811255", True),
        ("20251215", True),
        ("refs/tags/v1", True),
        ("main", False),
        ("0ab00e4", False),
        ("topic/20251215", False),
    ],
)
def test_immutable_refs(ref: str, immutable: bool) -> None:
    assert is_immutable_ref(ref) is immutable


def test_info_lines(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    put(cache, "20251215", "a.bin", b"a" * 2048)
    put(cache, "main", "b.bin", b"b")
    cache.incoming("partial").write_bytes(b"123")
    cache.area("git")
    (cache.root / "git" / "pack").write_bytes(b"p" * 10)
    info = cache.info()
    assert (info.blobs, info.blob_bytes, info.entries) == (2, 2049, 2)
    assert info.refs == (("20251215", 1), ("main", 1))
    assert (info.incomplete, info.incomplete_bytes, info.other_bytes) == (1, 3, 10)
    text = "\n".join(info.lines())
    assert "blobs: 2 (2.0 KiB)" in text and "incomplete downloads: 1" in text
    with pytest.raises(ValueError):
        cache.area("blobs")


def test_verify_finds_and_repairs_damage(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    good = put(cache, "20251215", "good.bin", b"good")
    bad = put(cache, "20251215", "bad.bin", b"bad!")
    put(cache, "20251215", "gone.bin", b"gone")
    assert cache.verify() == []

    os.chmod(bad, 0o644)
    bad.write_bytes(b"bad?")
    cache.blob_path(hashlib.sha256(b"gone").hexdigest()).unlink()
    problems = cache.verify()
    assert any("corrupted" in p and bad.name in p for p in problems)
    assert any("gone.bin at 20251215" in p and "missing" in p for p in problems)
    assert any("bad.bin at 20251215" in p for p in problems)
    assert not any("good.bin" in p for p in problems)

    assert cache.verify(repair=True) != []
    assert cache.verify() == []
    assert cache.by_ref_path("20251215", "good.bin") is not None
    assert cache.by_ref_path("20251215", "bad.bin") is None
    assert good.exists() and not bad.exists()


def test_prune_by_ref_and_age(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    put(cache, "20251215", "keep.bin", b"keep")
    put(cache, "20251215", "shared.bin", b"shared")
    put(cache, "main", "shared.bin", b"shared")
    put(cache, "main", "drop.bin", b"drop")
    cache.store_text("main", "WHENCE", b"w")
    cache.incoming("stale").write_bytes(b"partial")

    dry = cache.prune(keep_refs={"20251215"}, dry_run=True)
    assert (dry.entries, dry.texts, dry.blobs, dry.incomplete) == (2, 1, 1, 1)
    assert cache.info().entries == 4

    result = cache.prune(keep_refs={"20251215"})
    assert (result.entries, result.blobs) == (2, 1)
    assert result.freed_bytes == len(b"drop") + len(b"w") + len(b"partial")
    info = cache.info()
    assert (info.entries, info.blobs, info.texts, info.incomplete) == (2, 2, 0, 0)
    assert cache.by_git_id(git_blob_id(b"drop")) is None
    assert cache.by_ref_path("20251215", "shared.bin") is not None

    old = time.time() - 3600
    index_file = cache._index_file("20251215", "keep.bin")
    os.utime(index_file, (old, old))
    result = cache.prune(older_than=600)
    assert (result.entries, result.blobs) == (1, 1)
    assert cache.by_ref_path("20251215", "keep.bin") is None
    assert cache.verify() == []


def test_prune_keeps_a_download_in_progress(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.incoming("busy").write_bytes(b"partial")
    with cache.lock("busy"):
        assert cache.prune().incomplete == 0
    assert cache.prune().incomplete == 1


def test_clear_empties_but_keeps_the_tag(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    put(cache, "20251215", "a.bin", b"a" * 100)
    cache.area("git")
    assert cache.clear() >= 100
    assert [p.name for p in tmp_path.iterdir()] == [TAG_NAME]
    put(cache, "20251215", "a.bin", b"a")  # usable again
    assert cache.info().blobs == 1


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "file"
    atomic_write(target, b"one", mode=0o600)
    assert target.read_bytes() == b"one" and target.stat().st_mode & 0o777 == 0o600
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"one"
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_digest_file(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    path = tmp_path / "blob"
    path.write_bytes(data)
    digest = digest_file(path)
    assert digest.size == len(data)
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    assert digest.git_id == git_blob_id(data)


def test_an_unusable_folder_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(UsageError, match="--cache-dir"):
        Cache(blocker / "cache").ensure()


def test_a_record_without_git_id_keeps_the_known_one(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    put(cache, "20251215", "a.bin", b"data")
    found = cache.by_sha256(hashlib.sha256(b"data").hexdigest())
    assert found is not None and found.git_id is None
    cache.record("20251215", "a.bin", found)
    again = cache.by_ref_path("20251215", "a.bin")
    assert again is not None and again.git_id == git_blob_id(b"data")
