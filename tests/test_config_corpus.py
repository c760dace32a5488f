"""Every yml of the shared corpus goes through add, update, prune and a second run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lkfirmware.config import FilesEntry, edit_config_text
from lkfirmware.errors import ConfigError
from tests.config_checks import assert_sound_edit, firmware, strict_load
from tests.conftest import SHARED

CORPUS = sorted((SHARED / "corpus").glob("*.yml"))
NEEDS_MERGE = {"wifi-seed.yml"}

ENTRIES = [
    firmware("brcm/brcmfmac43602-pcie.bin"),
    firmware("cypress/cyfmac43455-sdio.bin"),
    firmware("brcm/brcmfmac43455-sdio.bin", link="../cypress/cyfmac43455-sdio.bin"),
    firmware("brcm/brcmfmac43455-sdio.Raspberry Pi Foundation-Raspberry Pi 4 Model B.txt"),
]


def test_the_corpus_is_there() -> None:
    names = {path.name for path in CORPUS}
    assert {"wifi-seed.yml", "minimal.yml", "docker-for-mac.yml"} <= names


def options_for(config: Path) -> dict[str, Any]:
    return {"merge_duplicate_files": config.name in NEEDS_MERGE, "where": str(config)}


@pytest.mark.parametrize("config", CORPUS, ids=lambda path: path.name)
def test_firmware_is_added(config: Path) -> None:
    text = config.read_text(encoding="utf-8")
    change = assert_sound_edit(text, ENTRIES, **options_for(config))
    assert change.added == tuple(entry.path for entry in ENTRIES)
    assert change.new_text.startswith(text.split("files:")[0])
    files = strict_load(change.new_text)["files"]
    assert [entry["path"].lstrip("/") for entry in files[-4:]] == [entry.key for entry in ENTRIES]


@pytest.mark.parametrize("config", CORPUS, ids=lambda path: path.name)
def test_firmware_is_updated_in_place(config: Path) -> None:
    options = options_for(config)
    first = edit_config_text(config.read_text(encoding="utf-8"), ENTRIES, **options).new_text
    moved = [FilesEntry(e.path, source=f"staged/{e.key}") if e.source else e for e in ENTRIES]
    change = assert_sound_edit(first, moved, **options)
    assert change.updated == tuple(e.path for e in ENTRIES if e.source)
    assert not change.added
    assert len(change.new_text.splitlines()) == len(first.splitlines())


@pytest.mark.parametrize("config", CORPUS, ids=lambda path: path.name)
def test_prune_removes_only_unwanted_firmware(config: Path) -> None:
    options = options_for(config)
    first = edit_config_text(config.read_text(encoding="utf-8"), ENTRIES, **options).new_text
    change = assert_sound_edit(first, ENTRIES[:1], prune_under="/lib/firmware", **options)
    kept = [entry["path"] for entry in strict_load(change.new_text)["files"]]
    assert ENTRIES[0].path.lstrip("/") in [path.lstrip("/") for path in kept]
    assert not [path for path in kept if "lib/firmware/" in path and "43602" not in path]
    assert len(kept) == len(strict_load(first)["files"]) - len(change.removed)


def test_the_seed_is_refused_without_merging() -> None:
    seed = SHARED / "corpus" / "wifi-seed.yml"
    with pytest.raises(ConfigError, match=r"duplicate key 'files'.*line 25.*line 26"):
        edit_config_text(seed.read_text(encoding="utf-8"), ENTRIES, where=str(seed))


def test_the_seed_merged_gets_the_seed_entry() -> None:
    """The seed's own example: brcmfmac43602 ends up as the entry the seed shows."""
    seed = (SHARED / "corpus" / "wifi-seed.yml").read_text(encoding="utf-8")
    change = assert_sound_edit(seed, ENTRIES[:1], merge_duplicate_files=True)
    expected = seed.splitlines(keepends=True)
    second_files_key = expected.index("files:\n") + 1
    assert expected.pop(second_files_key) == "files:\n"
    at = expected.index("trust:\n")
    expected[at:at] = [
        "  - path: /lib/firmware/brcm/brcmfmac43602-pcie.bin\n",
        "    source: firmware/brcm/brcmfmac43602-pcie.bin\n",
        '    mode: "0644"\n',
    ]
    assert change.new_text == "".join(expected)
