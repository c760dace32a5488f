from __future__ import annotations

from pathlib import Path

import pytest

from tests.fwrepo import FirmwareRepo, make_firmware_repo

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def firmware_repo(tmp_path_factory: pytest.TempPathFactory) -> FirmwareRepo:
    """One generated linux-firmware-like repository for the whole session (read-only)."""
    return make_firmware_repo(tmp_path_factory.mktemp("linux-firmware"))
