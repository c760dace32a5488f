"""The Python API a build script uses: lkfirmware.resolve / fetch / add_to_config."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import lkfirmware
from tests.conftest import SHARED
from tests.fwrepo import FirmwareRepo
from tests.mirror_server import MirrorServer


def test_public_names_survive_importing_every_module() -> None:
    import lkfirmware.api
    import lkfirmware.cache
    import lkfirmware.catalog
    import lkfirmware.config
    import lkfirmware.fetcher
    import lkfirmware.modules
    import lkfirmware.plan
    import lkfirmware.resolver
    import lkfirmware.stage

    for name in lkfirmware.__all__:
        value = getattr(lkfirmware, name)
        assert not isinstance(value, type(lkfirmware)), f"lkfirmware.{name} is a module"
    assert [f.path for f in lkfirmware.resolve("brcmfmac43602").files] == [
        "brcm/brcmfmac43602-pcie.bin"
    ]
    assert lkfirmware.resolve("rtl8168h").files[0].path == "rtl_nic/rtl8168h-2.fw"


def test_fetch_then_add_to_config(
    mirror_server: MirrorServer,
    firmware_repo: FirmwareRepo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LKFIRMWARE_CACHE_DIR", str(tmp_path / "cache"))
    config = tmp_path / "linuxkit.yml"
    shutil.copyfile(SHARED / "corpus" / "sshd.yml", config)
    fetched = lkfirmware.fetch(
        ["brcmfmac43455"],
        board="raspberrypi,4-model-b",
        ref=firmware_repo.tag,
        mirrors=[mirror_server.gitlab],
        progress=False,
    )
    assert fetched.blobs == fetched.result.blobs and len(fetched.links) == 2
    assert {record["path"] for record in fetched.records()} >= {"brcm/brcmfmac43455-sdio.bin"}
    paths = sorted(blob.path for blob in fetched.blobs)
    assert paths == [
        "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt",
        "cypress/cyfmac43455-sdio.bin",
        "cypress/cyfmac43455-sdio.clm_blob",
    ]
    for blob in fetched.result.blobs:
        assert blob.location.read_bytes() == firmware_repo.files[blob.path]
    check = lkfirmware.add_to_config(config, fetched, write=False)
    assert check.changed and not (tmp_path / "firmware").exists()
    update = lkfirmware.add_to_config(config, fetched)
    assert len(update.change.added) == 5
    again = lkfirmware.add_to_config(config, fetched)
    assert not again.changed


def test_a_catalog_from_a_git_ref_knows_every_blob_id(
    firmware_repo: FirmwareRepo, tmp_path: Path
) -> None:
    from lkfirmware.api import catalog_at
    from tests.fwrepo import git_blob_id

    catalog = catalog_at(
        firmware_repo.tag, source="git", git_url=firmware_repo.file_url, cache_dir=tmp_path
    )
    item = catalog.file("amdgpu/big_blob.bin")
    assert item is not None
    assert item.git_id == git_blob_id(firmware_repo.files["amdgpu/big_blob.bin"])
