from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fwrepo import FirmwareRepo, make_firmware_repo
from tests.mirror_server import MirrorServer

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def firmware_repo(tmp_path_factory: pytest.TempPathFactory) -> FirmwareRepo:
    """One generated linux-firmware-like repository for the whole session (read-only)."""
    return make_firmware_repo(tmp_path_factory.mktemp("linux-firmware"))


@pytest.fixture
def mirror_server(
    firmware_repo: FirmwareRepo, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MirrorServer]:
    """A loopback plain-blob mirror of ``firmware_repo`` (cgit and GitLab URL shapes).

    Fresh per test: no faults, no latency, request counts at zero.  Proxy variables
    are told to leave 127.0.0.1 alone, and HTTP retries back off for milliseconds only.
    """
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("LKFIRMWARE_HTTP_BACKOFF", "0.01")
    monkeypatch.setenv("LKFIRMWARE_HTTP_TIMEOUT", "5")
    with MirrorServer.from_repo(firmware_repo) as server:
        yield server


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own blob cache, never the user's (a test may set another)."""
    cache = tmp_path / "lkfirmware-cache"
    monkeypatch.setenv("LKFIRMWARE_CACHE_DIR", str(cache))
    return cache
