"""data/driver_map.json is what scripts/update_driver_map.py makes, deterministically;
and the script reads a linux-firmware git repository too (sizes and blob ids)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lkfirmware.catalog import Catalog, default_map_path, load_catalog
from lkfirmware.resolver import resolve
from scripts.update_driver_map import main as update_map
from tests.conftest import SHARED
from tests.fwrepo import FirmwareRepo, git_blob_id

ROOT = Path(__file__).resolve().parents[1]
PINNED = "0ab00e43853070c76cb954da55dd1198cb811255"


def test_committed_map_is_regenerated_byte_for_byte(tmp_path: Path) -> None:
    whence = SHARED / "linux-firmware" / "WHENCE"
    modinfo = SHARED / "kernel" / "modinfo-6.12.117-amd64.json"
    if not (whence.exists() and modinfo.exists()):
        pytest.skip("shared/ is not beside the checkout")
    output = tmp_path / "driver_map.json"
    argv = [
        "--whence",
        str(whence),
        "--ref",
        PINNED,
        "--modinfo",
        str(modinfo),
        "--output",
        str(output),
    ]
    assert update_map(argv) == 0
    assert output.read_bytes() == (ROOT / "data" / "driver_map.json").read_bytes()
    again = tmp_path / "again.json"
    assert update_map([*argv[:-1], str(again)]) == 0
    assert again.read_bytes() == output.read_bytes()


def test_shipped_map_loads_and_records_provenance() -> None:
    catalog = load_catalog()
    assert Path(default_map_path()).is_file()
    assert catalog.provenance["linux_firmware_commit"] == PINNED
    assert len(list(catalog.file_paths())) == 4540 + 111
    assert len(catalog.links) == 2603
    assert catalog.module("brcmfmac") is not None


def map_from_git(repo: str, ref: str, output: Path) -> Catalog:
    assert update_map(["--git", repo, "--ref", ref, "--output", str(output)]) == 0
    return Catalog.from_map(json.loads(output.read_text()))


def test_map_from_a_local_repository_has_sizes_and_blob_ids(
    firmware_repo: FirmwareRepo, tmp_path: Path
) -> None:
    catalog = map_from_git(str(firmware_repo.bare), firmware_repo.tag, tmp_path / "map.json")
    assert catalog.provenance["linux_firmware_commit"] == firmware_repo.commit
    path = "brcm/brcmfmac43602-pcie.bin"
    item = catalog.file(path)
    assert item is not None
    assert (item.size, item.git_id) == (
        len(firmware_repo.files[path]),
        git_blob_id(firmware_repo.files[path]),
    )
    assert resolve(path, catalog=catalog).files[0].git_id == item.git_id


def test_map_from_a_git_url_has_blob_ids(firmware_repo: FirmwareRepo, tmp_path: Path) -> None:
    catalog = map_from_git(firmware_repo.file_url, firmware_repo.commit, tmp_path / "map.json")
    for path in ("brcm/brcmfmac43602-pcie.bin", "amdgpu/big_blob.bin"):
        item = catalog.file(path)
        assert item is not None
        assert (item.size, item.git_id) == (None, git_blob_id(firmware_repo.files[path]))
    assert catalog.links["nvidia/ad103"] == "ad102"


def test_unknown_map_format_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "map.json"
    bad.write_text(json.dumps({"format": 99, "sections": []}))
    from lkfirmware.errors import UsageError

    with pytest.raises(UsageError, match="regenerate it"):
        load_catalog(bad)
