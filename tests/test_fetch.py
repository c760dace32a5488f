"""The fetcher against a loopback mirror: fallback, faults, cache, lock file, processes."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import socket
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from lkfirmware.cache import Cache
from lkfirmware.errors import FetchError, IntegrityError, UsageError
from lkfirmware.fetcher import fetch_plan, fetch_text
from lkfirmware.lockfile import LockedFile, LockFile, read_lock, render_lock, write_lock
from lkfirmware.mirrors import PRESETS
from lkfirmware.plan import FirmwareFile, FirmwareLink, Plan
from lkfirmware.sources.base import BlobMissing, SourceFailure
from lkfirmware.sources.git import GitSource, clone_dir_name
from lkfirmware.sources.plain import CHUNK, HttpSettings, PlainMirrorSource
from tests.fwrepo import FirmwareRepo, git_blob_id
from tests.mirror_server import MirrorServer

FAST = HttpSettings(retries=2, backoff=0.0, jitter=0.0, read_timeout=5.0, resume_attempts=2)
BIG = "amdgpu/big_blob.bin"
NVRAM = "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt"
SPACED = "brcm/brcmfmac43455-sdio.MINIX-NEO Z83-4.txt"
RTL = "rtl_nic/rtl8168h-1.fw"
PRESET_GITLAB = PRESETS["gitlab"]


def firmware_paths(repo: FirmwareRepo) -> list[str]:
    """Every firmware file of the repository (not WHENCE, not the licences)."""
    return sorted(p for p in repo.files if "/" in p)


def make_plan(
    repo: FirmwareRepo,
    paths: Iterable[str] | None = None,
    *,
    ref: str | None = None,
    ids: bool = True,
    links: bool = False,
) -> Plan:
    """A plan by hand, as the resolver would give it (sizes and ids from the tree)."""
    files = tuple(
        FirmwareFile(
            path,
            size=len(repo.files[path]) if ids else None,
            git_id=git_blob_id(repo.files[path]) if ids else None,
        )
        for path in (firmware_paths(repo) if paths is None else paths)
    )
    plan_links: tuple[FirmwareLink, ...] = ()
    if links:
        plan_links = tuple(
            FirmwareLink(name, target, _resolve(name, target), is_dir=name == "nvidia/ad103")
            for name, target in sorted(repo.links.items())
        )
    return Plan(ref=ref or repo.tag, files=files, links=plan_links)


def _resolve(name: str, target: str) -> str:
    parts = name.split("/")[:-1]
    for part in target.split("/"):
        if part == "..":
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def assert_intact(repo: FirmwareRepo, result: Any) -> None:
    for blob in result.blobs:
        data = blob.location.read_bytes()
        assert data == repo.files[blob.path], blob.path
        assert blob.sha256 == hashlib.sha256(data).hexdigest()
        assert blob.size == len(data)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- the happy path, both URL shapes ---------------------------------------------------


@pytest.mark.parametrize("shape", ["cgit", "gitlab"])
def test_fetches_every_file_once_in_both_url_shapes(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path, shape: str
) -> None:
    plan = make_plan(firmware_repo, links=True)
    template = getattr(mirror_server, shape)
    result = fetch_plan(plan, mirrors=[template], cache=Cache(tmp_path / "c"), progress=False)

    assert [b.path for b in result.blobs] == [f.path for f in plan.files]
    assert_intact(firmware_repo, result)
    assert all(b.downloaded for b in result.blobs)
    assert result.downloaded_bytes == sum(len(firmware_repo.files[f.path]) for f in plan.files)
    assert result.cached_bytes == 0
    for item in plan.files:
        assert mirror_server.count(item.path) == 1
    assert {r.shape for r in mirror_server.requests} == {shape}
    # Names with spaces and commas arrive decoded, exactly.
    assert SPACED in mirror_server.paths_requested()
    assert NVRAM in mirror_server.paths_requested()


def test_links_are_never_requested_and_come_back_as_records(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    targets = ["cypress/cyfmac43455-sdio.bin", "cypress/cyfmac43455-sdio.clm_blob", NVRAM]
    plan = make_plan(firmware_repo, targets, links=True)
    result = fetch_plan(plan, mirrors=[mirror_server.cgit], cache=Cache(tmp_path / "c"))

    assert mirror_server.paths_requested() == set(targets)
    assert not mirror_server.paths_requested() & set(firmware_repo.links)
    records = {r["path"]: r for r in result.records()}
    link = records["brcm/brcmfmac43455-sdio.bin"]
    assert link["kind"] == "link"
    assert link["target"] == "../cypress/cyfmac43455-sdio.bin"
    assert link["location"] == str(result.blobs[0].location)
    assert records["nvidia/ad103"]["is_dir"] is True
    assert records["nvidia/ad103"]["location"] is None
    assert records[NVRAM]["kind"] == "file"
    json.dumps(result.records())  # JSON-ready


def test_a_link_path_on_the_mirror_is_a_404(mirror_server: MirrorServer, tmp_path: Path) -> None:
    plan = Plan("main", files=(FirmwareFile("brcm/brcmfmac43455-sdio.bin"),))
    with pytest.raises(FetchError):
        fetch_plan(plan, mirrors=[mirror_server.cgit], cache=Cache(tmp_path / "c"))


# -- the cache -------------------------------------------------------------------------


def test_second_fetch_is_served_from_the_cache(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    plan = make_plan(firmware_repo)
    cache = Cache(tmp_path / "c")
    first = fetch_plan(plan, mirrors=[mirror_server.cgit], cache=cache)
    before = len(mirror_server.requests)
    second = fetch_plan(plan, mirrors=[mirror_server.cgit], cache=cache)

    assert len(mirror_server.requests) == before
    assert not any(b.downloaded for b in second.blobs)
    assert second.downloaded_bytes == 0
    assert second.cached_bytes == first.downloaded_bytes
    assert [b.location for b in second.blobs] == [b.location for b in first.blobs]
    assert_intact(firmware_repo, second)


def test_a_blob_known_by_id_is_shared_between_refs(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    cache = Cache(tmp_path / "c")
    fetch_plan(make_plan(firmware_repo, [RTL]), mirrors=[mirror_server.cgit], cache=cache)
    result = fetch_plan(
        make_plan(firmware_repo, [RTL], ref=firmware_repo.commit),
        mirrors=[mirror_server.cgit],
        cache=cache,
    )
    assert mirror_server.count(RTL) == 1
    assert not result.blobs[0].downloaded


def test_without_ids_tags_are_cached_and_branches_are_asked_again(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    cache = Cache(tmp_path / "c")
    tag_plan = make_plan(firmware_repo, [RTL], ids=False)
    branch_plan = make_plan(firmware_repo, [RTL], ids=False, ref="main")
    for _ in range(2):
        fetch_plan(tag_plan, mirrors=[mirror_server.cgit], cache=cache)
    assert mirror_server.count(RTL) == 1
    for _ in range(2):
        fetch_plan(branch_plan, mirrors=[mirror_server.cgit], cache=cache)
    assert mirror_server.count(RTL) == 3
    # Offline, the branch's last known blob is used.
    result = fetch_plan(branch_plan, cache=cache, offline=True)
    assert mirror_server.count(RTL) == 3
    assert result.blobs[0].location.read_bytes() == firmware_repo.files[RTL]


def test_offline_lists_every_missing_file_and_asks_nobody(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    cache = Cache(tmp_path / "c")
    fetch_plan(make_plan(firmware_repo, [RTL]), mirrors=[mirror_server.cgit], cache=cache)
    mirror_server.reset_counts()
    plan = make_plan(firmware_repo, [RTL, NVRAM, SPACED])
    with pytest.raises(FetchError) as caught:
        fetch_plan(plan, mirrors=[mirror_server.cgit], cache=cache, offline=True)
    message = str(caught.value)
    assert caught.value.exit_code == 3
    assert NVRAM in message and SPACED in message and "--offline" in message
    assert RTL not in message.split("cache")[-1]
    assert mirror_server.requests == []
    ok = fetch_plan(make_plan(firmware_repo, [RTL]), cache=cache, offline=True)
    assert ok.blobs[0].location.read_bytes() == firmware_repo.files[RTL]


# -- mirrors in order ------------------------------------------------------------------


def test_falls_back_on_404(
    firmware_repo: FirmwareRepo, tmp_path: Path, mirror_server: MirrorServer
) -> None:
    partial = {p: d for p, d in firmware_repo.files.items() if p != NVRAM}
    with MirrorServer({firmware_repo.tag: partial}) as first:
        plan = make_plan(firmware_repo, [RTL, NVRAM])
        result = fetch_plan(
            plan, mirrors=[first.gitlab, mirror_server.cgit], cache=Cache(tmp_path / "c")
        )
    assert_intact(firmware_repo, result)
    assert first.count(NVRAM) == 1 and mirror_server.count(NVRAM) == 1
    assert first.count(RTL) == 1 and mirror_server.count(RTL) == 0


def test_falls_back_on_5xx_after_retries(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    with MirrorServer.from_repo(firmware_repo) as first:
        first.fail(RTL, status=503, times=None)
        result = fetch_plan(
            make_plan(firmware_repo, [RTL]),
            mirrors=[first.cgit, mirror_server.cgit],
            cache=Cache(tmp_path / "c"),
            settings=FAST,
        )
    assert first.count(RTL, status=503) == FAST.retries + 1
    assert mirror_server.count(RTL) == 1
    assert_intact(firmware_repo, result)


def test_falls_back_on_connection_errors(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/plain/{{path}}?h={{ref}}"
    result = fetch_plan(
        make_plan(firmware_repo, [RTL, SPACED]),
        mirrors=[dead, mirror_server.gitlab],
        cache=Cache(tmp_path / "c"),
        settings=FAST,
    )
    assert_intact(firmware_repo, result)


def test_an_unreachable_mirror_is_not_asked_again_in_the_same_fetch(
    firmware_repo: FirmwareRepo, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/plain/{{path}}?h={{ref}}"
    with pytest.raises(FetchError) as caught:
        fetch_plan(
            make_plan(firmware_repo, [RTL, NVRAM, SPACED]),
            mirrors=[dead],
            cache=Cache(tmp_path / "c"),
            settings=FAST,
            jobs=1,
        )
    message = str(caught.value)
    assert message.count("cannot connect") == 3  # once as the cause, twice quoted
    assert message.count("not tried, the mirror was unreachable") == 2


def test_missing_everywhere_names_file_ref_and_mirrors(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    plan = Plan(firmware_repo.tag, files=(FirmwareFile("brcm/no-such-file.bin"),))
    cache = Cache(tmp_path / "c")
    with pytest.raises(FetchError) as caught:
        fetch_plan(plan, mirrors=[mirror_server.cgit, mirror_server.gitlab], cache=cache)
    message = str(caught.value)
    assert caught.value.exit_code == 3
    assert "brcm/no-such-file.bin" in message
    assert firmware_repo.tag in message
    assert mirror_server.cgit in message and mirror_server.gitlab in message
    assert mirror_server.count("brcm/no-such-file.bin") == 2
    assert cache.info().blobs == 0
    assert not list((cache.root / "tmp").glob("*"))


# -- faults ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_transient_errors_are_retried(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path, status: int
) -> None:
    mirror_server.fail(RTL, status=status, times=2)
    result = fetch_plan(
        make_plan(firmware_repo, [RTL]),
        mirrors=[mirror_server.cgit],
        cache=Cache(tmp_path / "c"),
        settings=FAST,
    )
    assert mirror_server.count(RTL) == 3
    assert_intact(firmware_repo, result)


def test_a_dropped_connection_resumes_with_range(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    size = len(firmware_repo.files[BIG])
    mirror_server.drop(BIG, after=1_000_000)
    result = fetch_plan(
        make_plan(firmware_repo, [BIG]),
        mirrors=[mirror_server.cgit],
        cache=Cache(tmp_path / "c"),
        settings=FAST,
    )
    assert_intact(firmware_repo, result)
    first, second = (r for r in mirror_server.requests if r.path == BIG)
    assert (first.range, first.sent) == (None, 1_000_000)
    # Resumed where the written part ends (urllib3 drops the last, incomplete read).
    assert second.status == 206 and second.range is not None
    start = int(second.range.removeprefix("bytes=").rstrip("-"))
    assert 1_000_000 - CHUNK < start <= 1_000_000
    assert second.sent == size - start


def test_a_dropped_connection_without_range_support_starts_again(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    mirror_server.allow_range = False
    mirror_server.drop(BIG, after=500_000)
    result = fetch_plan(
        make_plan(firmware_repo, [BIG]),
        mirrors=[mirror_server.cgit],
        cache=Cache(tmp_path / "c"),
        settings=FAST,
    )
    assert_intact(firmware_repo, result)
    assert [r.status for r in mirror_server.requests] == [200, 200]


def test_an_interrupted_download_resumes_in_the_next_run(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    cache = Cache(tmp_path / "c")
    plan = make_plan(firmware_repo, [BIG])
    mirror_server.drop(BIG, after=700_000, times=None)
    once = HttpSettings(retries=0, backoff=0.0, jitter=0.0, resume_attempts=0)
    with pytest.raises(FetchError) as caught:
        fetch_plan(plan, mirrors=[mirror_server.cgit], cache=cache, settings=once)
    assert "dropped" in str(caught.value)
    partials = list((cache.root / "tmp").glob("*.incomplete"))
    assert len(partials) == 1
    kept = partials[0].stat().st_size
    assert 700_000 - CHUNK < kept <= 700_000
    assert cache.info().blobs == 0 and cache.by_ref_path(plan.ref, BIG) is None

    mirror_server.clear_faults()
    result = fetch_plan(plan, mirrors=[mirror_server.cgit], cache=cache, settings=once)
    assert_intact(firmware_repo, result)
    resumed = mirror_server.requests[-1]
    assert (resumed.status, resumed.range) == (206, f"bytes={kept}-")
    assert resumed.sent == len(firmware_repo.files[BIG]) - kept
    assert not list((cache.root / "tmp").glob("*.incomplete"))


def test_a_body_cut_short_every_time_never_enters_the_cache(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    cache = Cache(tmp_path / "c")
    mirror_server.allow_range = False
    mirror_server.drop(NVRAM, after=100, times=None)
    with pytest.raises(FetchError):
        fetch_plan(
            make_plan(firmware_repo, [NVRAM], ids=False),
            mirrors=[mirror_server.cgit],
            cache=cache,
            settings=FAST,
        )
    assert cache.info().blobs == 0
    assert cache.by_ref_path(firmware_repo.tag, NVRAM) is None


def test_a_flipped_byte_is_refused_and_the_next_mirror_used(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    cache = Cache(tmp_path / "c")
    with MirrorServer.from_repo(firmware_repo) as bad:
        bad.corrupt(NVRAM)
        result = fetch_plan(
            make_plan(firmware_repo, [NVRAM]), mirrors=[bad.cgit, mirror_server.cgit], cache=cache
        )
    assert_intact(firmware_repo, result)
    assert cache.info().blobs == 1
    assert cache.verify() == []


def test_a_flipped_byte_everywhere_is_an_integrity_error(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    cache = Cache(tmp_path / "c")
    mirror_server.corrupt(NVRAM)
    with pytest.raises(IntegrityError) as caught:
        fetch_plan(make_plan(firmware_repo, [NVRAM]), mirrors=[mirror_server.cgit], cache=cache)
    assert caught.value.exit_code == 4
    assert NVRAM in str(caught.value) and "git blob id" in str(caught.value)
    assert cache.info().blobs == 0
    assert not list((cache.root / "tmp").glob("*"))


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/octet-stream"])
@pytest.mark.parametrize("ids", [True, False])
def test_an_html_page_with_status_200_never_enters_the_cache(
    firmware_repo: FirmwareRepo,
    mirror_server: MirrorServer,
    tmp_path: Path,
    content_type: str,
    ids: bool,
) -> None:
    cache = Cache(tmp_path / "c")
    with MirrorServer.from_repo(firmware_repo) as portal:
        portal.html(RTL, content_type=content_type)
        with pytest.raises(FetchError) as caught:
            fetch_plan(make_plan(firmware_repo, [RTL], ids=ids), mirrors=[portal.cgit], cache=cache)
        assert "HTML" in str(caught.value)
        assert cache.info().blobs == 0
        result = fetch_plan(
            make_plan(firmware_repo, [RTL], ids=ids),
            mirrors=[portal.cgit, mirror_server.cgit],
            cache=cache,
        )
    assert_intact(firmware_repo, result)


def test_a_size_other_than_the_catalogs_is_refused_before_the_body(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    files = dict(firmware_repo.files)
    files[RTL] = files[RTL] + b"extra"
    mirror_server.set_files(firmware_repo.tag, files)
    with pytest.raises(FetchError) as caught:
        fetch_plan(
            make_plan(firmware_repo, [RTL]), mirrors=[mirror_server.cgit], cache=Cache(tmp_path)
        )
    assert "expected" in str(caught.value)


def test_a_slow_answer_times_out_and_is_retried(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    impatient = HttpSettings(retries=3, backoff=0.0, jitter=0.0, read_timeout=0.5)
    mirror_server.slow(RTL, delay=1.5)
    mirror_server.slow(BIG, delay=1.5, in_body=True)
    result = fetch_plan(
        make_plan(firmware_repo, [RTL, BIG]),
        mirrors=[mirror_server.cgit],
        cache=Cache(tmp_path / "c"),
        settings=impatient,
    )
    assert_intact(firmware_repo, result)
    # The timed-out first answers are logged once the server finishes sleeping.
    deadline = time.monotonic() + 5
    while len(mirror_server.requests) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mirror_server.count(RTL) >= 2
    big = [r for r in mirror_server.requests if r.path == BIG]
    half = len(firmware_repo.files[BIG]) // 2
    resumed = [r for r in big if r.range is not None]  # the second half came with Range
    assert resumed and all(r.status == 206 for r in resumed)
    first = min(int(str(r.range).removeprefix("bytes=").rstrip("-")) for r in resumed)
    assert half - CHUNK < first <= half


def test_latency_does_not_serialise_parallel_downloads(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    """Counted at the server, not timed: with a 0.2 s answer time, downloads overlap."""
    mirror_server.latency = 0.2
    plan = make_plan(firmware_repo, [p for p in firmware_paths(firmware_repo) if p != BIG])
    fetch_plan(plan, mirrors=[mirror_server.cgit], cache=Cache(tmp_path / "c"), jobs=4)
    assert mirror_server.most_in_flight == 4
    mirror_server.reset_counts()
    fetch_plan(plan, mirrors=[mirror_server.cgit], cache=Cache(tmp_path / "d"), jobs=1)
    assert mirror_server.most_in_flight == 1


# -- other sources through the protocol -------------------------------------------------


class MemorySource:
    """A non-resumable source from a dict, with optional tree ids."""

    def __init__(
        self, files: dict[str, bytes], ids: dict[str, tuple[int, str]] | None = None
    ) -> None:
        self.files = files
        self.ids = ids
        self.label = "memory"
        self.asked: list[str] = []
        self.prepared: list[list[str]] = []

    def prepare(self, files: Sequence[FirmwareFile], ref: str) -> None:
        self.prepared.append([f.path for f in files])

    def retrieve(self, file: FirmwareFile, ref: str, into: Path) -> None:
        self.asked.append(file.path)
        if file.path not in self.files:
            raise BlobMissing(f"memory: no {file.path}")
        if file.path == "boom":
            raise SourceFailure("memory: boom")
        into.write_bytes(self.files[file.path])

    def known_ids(self, ref: str) -> dict[str, tuple[int, str]] | None:
        return self.ids


def test_sources_are_batched_in_order(firmware_repo: FirmwareRepo, tmp_path: Path) -> None:
    first = MemorySource({RTL: firmware_repo.files[RTL]})
    second = MemorySource(dict(firmware_repo.files))
    plan = make_plan(firmware_repo, [RTL, NVRAM, SPACED])
    result = fetch_plan(plan, sources=[first, second], cache=Cache(tmp_path / "c"))
    assert_intact(firmware_repo, result)
    assert first.prepared == [[RTL, NVRAM, SPACED]]
    assert second.prepared == [[NVRAM, SPACED]]
    assert sorted(second.asked) == sorted([NVRAM, SPACED])


def test_ids_from_the_source_tree_verify_what_it_serves(
    firmware_repo: FirmwareRepo, tmp_path: Path
) -> None:
    data = firmware_repo.files[RTL]
    bad = bytearray(data)
    bad[10] ^= 0xFF
    tree = {RTL: (len(data), git_blob_id(data))}
    source = MemorySource({RTL: bytes(bad)}, ids=tree)
    cache = Cache(tmp_path / "c")
    with pytest.raises(IntegrityError) as caught:
        fetch_plan(make_plan(firmware_repo, [RTL], ids=False), sources=[source], cache=cache)
    assert "memory" in str(caught.value)
    assert cache.info().blobs == 0

    disagreeing = MemorySource({RTL: data}, ids={RTL: (len(data), "0" * 40)})
    with pytest.raises(IntegrityError):
        fetch_plan(make_plan(firmware_repo, [RTL]), sources=[disagreeing], cache=cache)


def test_bad_jobs(firmware_repo: FirmwareRepo, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        fetch_plan(make_plan(firmware_repo, [RTL]), sources=[], cache=Cache(tmp_path), jobs=0)


def test_progress_bar_by_bytes(
    firmware_repo: FirmwareRepo,
    mirror_server: MirrorServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fetch_plan(
        make_plan(firmware_repo, [BIG]),
        mirrors=[mirror_server.cgit],
        cache=Cache(tmp_path / "c"),
        progress=True,
    )
    err = capsys.readouterr().err
    assert "fetching 1 file(s)" in err and "2.86M" in err
    fetch_plan(
        make_plan(firmware_repo, [RTL]),
        mirrors=[mirror_server.cgit],
        cache=Cache(tmp_path / "d"),
        progress=False,
    )
    assert capsys.readouterr().err == ""


# -- the lock file ---------------------------------------------------------------------


def test_the_lock_file_records_and_grows(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    lock = tmp_path / "lkfirmware.lock"
    cache = Cache(tmp_path / "c")
    fetch_plan(
        make_plan(firmware_repo, [RTL]), mirrors=[mirror_server.cgit], cache=cache, lock=lock
    )
    pinned = read_lock(lock)
    assert pinned is not None and pinned.ref == firmware_repo.tag
    data = firmware_repo.files[RTL]
    assert pinned.files[RTL] == LockedFile(
        len(data), hashlib.sha256(data).hexdigest(), git_blob_id(data)
    )
    fetch_plan(
        make_plan(firmware_repo, [RTL, SPACED]),
        mirrors=[mirror_server.cgit],
        cache=cache,
        lock=lock,
    )
    text = lock.read_text()
    assert set(json.loads(text)["files"]) == {RTL, SPACED}
    stamp = lock.stat().st_mtime_ns
    fetch_plan(make_plan(firmware_repo, [SPACED]), cache=cache, lock=lock, offline=True)
    assert lock.read_text() == text and lock.stat().st_mtime_ns == stamp


def test_a_lock_mismatch_fails_loudly_and_writes_nothing(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    lock = tmp_path / "lkfirmware.lock"
    fetch_plan(
        make_plan(firmware_repo, [RTL, NVRAM]),
        mirrors=[mirror_server.cgit],
        cache=Cache(tmp_path / "first"),
        lock=lock,
    )
    pinned = read_lock(lock)
    assert pinned is not None
    files = dict(pinned.files)
    files[NVRAM] = LockedFile(files[NVRAM].size, "ab" * 32, None)
    write_lock(lock, LockFile(pinned.ref, files))
    before = lock.read_bytes()

    cache = Cache(tmp_path / "second")
    with pytest.raises(IntegrityError) as caught:
        fetch_plan(
            make_plan(firmware_repo, [RTL, NVRAM, SPACED], ids=False),
            mirrors=[mirror_server.cgit],
            cache=cache,
            lock=lock,
        )
    assert NVRAM in str(caught.value) and "lock file" in str(caught.value)
    assert lock.read_bytes() == before
    assert cache.by_ref_path(firmware_repo.tag, NVRAM) is None
    nvram_sha = hashlib.sha256(firmware_repo.files[NVRAM]).hexdigest()
    assert cache.by_sha256(nvram_sha) is None


def test_a_lock_that_contradicts_the_catalog_stops_before_any_request(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    lock = tmp_path / "lkfirmware.lock"
    data = firmware_repo.files[RTL]
    lock_text = render_lock(
        LockFile(
            firmware_repo.tag, {RTL: LockedFile(len(data) + 1, hashlib.sha256(data).hexdigest())}
        )
    )
    lock.write_text(lock_text)
    with pytest.raises(IntegrityError) as caught:
        fetch_plan(
            make_plan(firmware_repo, [RTL]),
            mirrors=[mirror_server.cgit],
            cache=Cache(tmp_path / "c"),
            lock=lock,
        )
    assert "catalog" in str(caught.value) and "lock file" in str(caught.value)
    assert mirror_server.requests == []
    assert lock.read_text() == lock_text

    with pytest.raises(IntegrityError) as caught:
        fetch_plan(make_plan(firmware_repo, [RTL], ref="main"), cache=Cache(tmp_path), lock=lock)
    assert "pins ref" in str(caught.value)


# -- texts (WHENCE at a ref) -----------------------------------------------------------


def test_fetch_text_caches_tags_and_refreshes_branches(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    cache = Cache(tmp_path / "c")
    for _ in range(2):
        assert (
            fetch_text("WHENCE", firmware_repo.tag, mirrors=[mirror_server.cgit], cache=cache)
            == firmware_repo.whence
        )
    assert mirror_server.count("WHENCE") == 1
    for _ in range(2):
        fetch_text("WHENCE", "main", mirrors=[mirror_server.cgit], cache=cache)
    assert mirror_server.count("WHENCE") == 3
    assert fetch_text("WHENCE", "main", cache=cache, offline=True) == firmware_repo.whence
    assert mirror_server.count("WHENCE") == 3
    with pytest.raises(FetchError, match="--offline"):
        fetch_text("WHENCE", firmware_repo.commit, cache=cache, offline=True)
    with pytest.raises(FetchError) as caught:
        fetch_text("WHENCE", "no-such-branch", mirrors=[mirror_server.cgit], cache=cache)
    assert "no-such-branch" in str(caught.value) and mirror_server.cgit in str(caught.value)


def test_fetch_text_refuses_an_html_page(mirror_server: MirrorServer, tmp_path: Path) -> None:
    mirror_server.html("WHENCE", times=None)
    cache = Cache(tmp_path / "c")
    with pytest.raises(FetchError, match="HTML"):
        fetch_text("WHENCE", "main", mirrors=[mirror_server.cgit], cache=cache)
    assert cache.read_text("main", "WHENCE") is None


# -- several processes on one cache ----------------------------------------------------


def _fetch_in_process(
    cache_dir: str, plan: Plan, template: str, barrier: Any, results: Any
) -> None:
    try:
        barrier.wait(timeout=60)
        result = fetch_plan(
            plan, mirrors=[template], cache=Cache(cache_dir), jobs=4, progress=False
        )
    except Exception as error:
        results.put(f"{type(error).__name__}: {error}")
        raise
    results.put([(b.path, str(b.location), b.downloaded) for b in result.blobs])


def test_four_processes_share_one_cache(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    mirror_server.latency = 0.05
    plan = make_plan(firmware_repo)
    context = multiprocessing.get_context("spawn")
    workers = 4
    barrier = context.Barrier(workers)
    results = context.Queue()
    processes = [
        context.Process(
            target=_fetch_in_process,
            args=(str(tmp_path / "shared"), plan, mirror_server.cgit, barrier, results),
        )
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    outputs = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert [o for o in outputs if isinstance(o, str)] == []
    assert [p.exitcode for p in processes] == [0] * workers

    for item in plan.files:
        assert mirror_server.count(item.path) == 1, item.path
    downloaded = [path for output in outputs for path, _, fresh in output if fresh]
    assert sorted(downloaded) == sorted(f.path for f in plan.files)
    for output in outputs:
        for path, location, _ in output:
            assert Path(location).read_bytes() == firmware_repo.files[path]
    assert Cache(tmp_path / "shared").verify() == []


# -- the environment: proxies, mirrors ---------------------------------------------------


def test_proxy_variables_are_honoured(
    firmware_repo: FirmwareRepo,
    mirror_server: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The loopback server doubles as a forward proxy: the mirror's host is never resolved.
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name)
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, mirror_server.base)
    result = fetch_plan(
        make_plan(firmware_repo, [SPACED]),
        mirrors=["http://mirror.invalid/plain/{path}?h={ref}"],
        cache=Cache(tmp_path / "c"),
        settings=FAST,
    )
    assert_intact(firmware_repo, result)
    assert mirror_server.count(SPACED) == 1


def test_mirrors_from_the_environment(
    firmware_repo: FirmwareRepo,
    mirror_server: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LKFIRMWARE_MIRRORS", f"{mirror_server.gitlab}, {mirror_server.cgit}")
    result = fetch_plan(make_plan(firmware_repo, [RTL]), cache=Cache(tmp_path / "c"))
    assert_intact(firmware_repo, result)
    assert [r.shape for r in mirror_server.requests] == ["gitlab"]


# -- the git source fills the same cache -------------------------------------------------


def test_the_git_source_fills_the_same_cache(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    cache = Cache(tmp_path / "c")
    url = firmware_repo.file_url
    source = GitSource(url, cache.area("git") / clone_dir_name(url))
    dead = f"http://127.0.0.1:{closed_port()}/-/raw/{{ref}}/{{path}}"
    plan = make_plan(firmware_repo, [RTL, SPACED, NVRAM], ids=False, links=True)
    result = fetch_plan(plan, sources=[PlainMirrorSource(dead, settings=FAST), source], cache=cache)
    assert_intact(firmware_repo, result)
    # The tree's ids were learnt and recorded: a plain mirror is not needed any more.
    again = fetch_plan(
        make_plan(firmware_repo, [RTL, SPACED, NVRAM]), mirrors=[mirror_server.cgit], cache=cache
    )
    assert not any(b.downloaded for b in again.blobs)
    assert mirror_server.requests == []
    assert (
        fetch_text("WHENCE", firmware_repo.tag, sources=[source], cache=cache)
        == firmware_repo.whence
    )


# -- HTTP settings -----------------------------------------------------------------------


def test_http_settings_from_the_environment() -> None:
    settings = HttpSettings.from_env(
        {
            "LKFIRMWARE_HTTP_RETRIES": "7",
            "LKFIRMWARE_HTTP_BACKOFF": "0.25",
            "LKFIRMWARE_HTTP_TIMEOUT": "3",
        }
    )
    assert (settings.retries, settings.backoff, settings.jitter) == (7, 0.25, 0.25)
    assert (settings.connect_timeout, settings.read_timeout) == (3.0, 3.0)
    assert HttpSettings.from_env({}) == HttpSettings()
    for bad in ({"LKFIRMWARE_HTTP_RETRIES": "2.5"}, {"LKFIRMWARE_HTTP_TIMEOUT": "soon"}):
        with pytest.raises(UsageError, match="LKFIRMWARE_HTTP_"):
            HttpSettings.from_env(bad)


def test_one_session_retries_with_backoff_and_jitter() -> None:
    import inspect

    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    from lkfirmware.sources.plain import make_session

    session = make_session(HttpSettings(retries=3, backoff=0.5, jitter=0.2), pool_size=8)
    adapter = session.get_adapter("https://mirror.example/")
    assert isinstance(adapter, HTTPAdapter)
    retry = adapter.max_retries
    assert isinstance(retry, Retry)
    assert (retry.total, retry.connect, retry.read, retry.status) == (3, 3, 3, 3)
    assert {429, 500, 502, 503, 504} <= set(retry.status_forcelist or ())
    assert 501 not in (retry.status_forcelist or ())
    assert retry.backoff_factor == 0.5
    if "backoff_jitter" in inspect.signature(Retry.__init__).parameters:
        assert retry.backoff_jitter == 0.2
    assert session.trust_env  # proxy variables apply
    source = PlainMirrorSource(PRESET_GITLAB, session=session)
    assert source.session is session


# -- a branch that moves during a download ------------------------------------------------


def moved(repo: FirmwareRepo, path: str) -> dict[str, bytes]:
    files = dict(repo.files)
    files[path] = bytes(b ^ 0x5A for b in files[path])
    return files


@pytest.mark.parametrize("etags", [True, False])
def test_a_resume_never_mixes_two_versions_of_a_branch(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path, etags: bool
) -> None:
    new = moved(firmware_repo, BIG)
    mirror_server.etags = etags
    mirror_server.drop(BIG, after=1_000_000, then=lambda: mirror_server.set_files("main", new))
    plan = make_plan(firmware_repo, [BIG], ids=False, ref="main")
    result = fetch_plan(plan, mirrors=[mirror_server.cgit], cache=Cache(tmp_path), settings=FAST)
    assert result.blobs[0].location.read_bytes() == new[BIG]
    # With an ETag the resume carries If-Range and the server sends the whole new file;
    # without one, a branch is not resumed at all.
    first, second = mirror_server.requests
    assert (first.status, second.status) == (200, 200)
    assert (second.range is not None) is etags


def test_a_partial_download_of_a_branch_is_not_resumed_in_a_later_run(
    firmware_repo: FirmwareRepo, mirror_server: MirrorServer, tmp_path: Path
) -> None:
    cache = Cache(tmp_path)
    plan = make_plan(firmware_repo, [BIG], ids=False, ref="main")
    once = HttpSettings(retries=0, backoff=0.0, jitter=0.0, resume_attempts=0)
    mirror_server.drop(BIG, after=1_000_000)
    with pytest.raises(FetchError):
        fetch_plan(plan, mirrors=[mirror_server.cgit], cache=cache, settings=once)
    assert list((cache.root / "tmp").glob("*.incomplete"))
    new = moved(firmware_repo, BIG)
    mirror_server.set_files("main", new)
    result = fetch_plan(plan, mirrors=[mirror_server.cgit], cache=cache, settings=once)
    assert result.blobs[0].location.read_bytes() == new[BIG]
    assert mirror_server.requests[-1].range is None
