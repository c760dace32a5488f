"""The resolver against the shipped catalog (the real WHENCE and a real 6.12 kernel)."""

from __future__ import annotations

import pytest

from lkfirmware.catalog import Catalog, ModuleRequests, load_catalog
from lkfirmware.errors import QueryError
from lkfirmware.plan import Plan
from lkfirmware.resolver import resolve
from tests.fwrepo import WHENCE


def file_paths(plan: Plan) -> list[str]:
    return [item.path for item in plan.files]


def link_pairs(plan: Plan) -> dict[str, str]:
    return {link.path: link.target for link in plan.links}


def test_chip_brcmfmac43602_is_exactly_the_seed_file() -> None:
    plan = resolve("brcmfmac43602")
    assert file_paths(plan) == ["brcm/brcmfmac43602-pcie.bin"]
    assert plan.links == ()
    assert plan.notes == ()
    item = plan.files[0]
    assert item.drivers == ("brcmfmac",)
    assert item.licence == "LICENCE.broadcom_bcm43xx"


def test_chip_with_board_gives_links_targets_and_the_board_nvram() -> None:
    plan = resolve("brcmfmac43455", board="raspberrypi,4-model-b")
    assert link_pairs(plan) == {
        "brcm/brcmfmac43455-sdio.bin": "../cypress/cyfmac43455-sdio.bin",
        "brcm/brcmfmac43455-sdio.clm_blob": "../cypress/cyfmac43455-sdio.clm_blob",
    }
    assert file_paths(plan) == [
        "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt",
        "cypress/cyfmac43455-sdio.bin",
        "cypress/cyfmac43455-sdio.clm_blob",
    ]


def test_chip_without_board_says_so_and_lists_boards() -> None:
    plan = resolve("brcmfmac43455")
    assert "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt" not in file_paths(plan)
    (note,) = plan.notes
    assert "--board" in note
    assert "raspberrypi,4-model-b" in note
    assert "pine64,pinebook-pro" in note


def test_board_by_dmi_name_with_spaces_comes_back_as_a_link() -> None:
    dmi = "Raspberry Pi Foundation-Raspberry Pi 4 Model B"
    plan = resolve("brcmfmac43455", board=dmi)
    links = link_pairs(plan)
    assert links[f"brcm/brcmfmac43455-sdio.{dmi}.txt"] == (
        "brcmfmac43455-sdio.raspberrypi,4-model-b.txt"
    )
    assert "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt" in file_paths(plan)


def test_unknown_board_lists_the_boards() -> None:
    with pytest.raises(QueryError, match="raspberrypi,4-model-b"):
        resolve("brcmfmac43455", board="no-such-board")


def test_all_boards() -> None:
    plan = resolve("brcmfmac43455", all_boards=True)
    txt = [p for p in file_paths(plan) if p.endswith(".txt")]
    assert "brcm/brcmfmac43455-sdio.AW-CM256SM.txt" in txt
    assert "brcm/brcmfmac43455-sdio.MINIX-NEO Z83-4.txt" in txt


def test_chip_stem_takes_only_what_the_kernel_requests() -> None:
    # linux-firmware has rtl8168h-1.fw and -2.fw; r8169 requests only -2.
    assert file_paths(resolve("rtl8168h")) == ["rtl_nic/rtl8168h-2.fw"]
    assert "rtl_nic/rtl8168h-1.fw" in file_paths(resolve("rtl_nic/rtl8168*"))


def test_exact_path_and_glob() -> None:
    assert file_paths(resolve("brcm/brcmfmac43602-pcie.bin")) == ["brcm/brcmfmac43602-pcie.bin"]
    assert file_paths(resolve("/lib/firmware/brcm/brcmfmac43602-pcie.bin")) == [
        "brcm/brcmfmac43602-pcie.bin"
    ]
    plan = resolve("rtl_nic/rtl8168*")
    assert file_paths(plan) and all(p.startswith("rtl_nic/rtl8168") for p in file_paths(plan))


def test_a_path_below_a_directory_link() -> None:
    plan = resolve("nvidia/ad103/gsp/booter_load-535.113.01.bin")
    assert file_paths(plan) == ["nvidia/ad102/gsp/booter_load-535.113.01.bin"]
    (link,) = plan.links
    assert (link.path, link.target, link.is_dir) == ("nvidia/ad103", "ad102", True)


def test_iwlwifi_driver_has_files_under_intel_and_top_level_links() -> None:
    plan = resolve("iwlwifi")
    assert file_paths(plan) and all(p.startswith("intel/iwlwifi/") for p in file_paths(plan))
    links = link_pairs(plan)
    assert links["iwlwifi-cc-a0-77.ucode"] == "intel/iwlwifi/iwlwifi-cc-a0-77.ucode"
    assert all("/" not in name for name in links)


def test_module_query_follows_dependencies() -> None:
    # iwlmvm requests nothing itself; it depends on iwlwifi, which does.
    assert "iwlwifi-cc-a0-77.ucode" in link_pairs(resolve("iwlmvm"))


def test_driver_query_r8169_and_brcmfmac() -> None:
    assert "rtl_nic/rtl8168h-1.fw" in file_paths(resolve("r8169"))
    brcm = resolve("brcmfmac")
    assert "brcm/brcmfmac43602-pcie.ap.bin" in file_paths(brcm)
    assert "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt" in file_paths(brcm)


def test_driver_with_board_drops_other_boards() -> None:
    plan = resolve("brcmfmac", board="raspberrypi,4-model-b")
    txt = [p for p in file_paths(plan) if ".txt" in p]
    assert "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt" in txt
    assert "brcm/brcmfmac43455-sdio.AW-CM256SM.txt" not in txt


def test_unknown_names_suggest_close_ones() -> None:
    with pytest.raises(QueryError) as caught:
        resolve("brcmfmac4345")
    assert "brcmfmac43455" in str(caught.value)
    with pytest.raises(QueryError, match="Did you mean: r8169"):
        resolve("r8196")
    with pytest.raises(QueryError):
        resolve("no/such/file.bin")
    with pytest.raises(QueryError):
        resolve("nosuch*glob")


def test_catalog_built_from_a_generated_whence() -> None:
    modules = {
        "brcmfmac": ModuleRequests(
            "brcmfmac",
            (
                "brcm/brcmfmac*-sdio.*.txt",
                "brcm/brcmfmac43455-sdio.bin",
                "brcm/brcmfmac43602-pcie.bin",
            ),
        )
    }
    catalog = Catalog.from_whence(WHENCE, ref="test", modules=modules)
    plan = resolve("brcmfmac43455", board="raspberrypi,5-model-b", catalog=catalog)
    assert link_pairs(plan)["brcm/brcmfmac43455-sdio.raspberrypi,5-model-b.txt"] == (
        "brcmfmac43455-sdio.raspberrypi,4-model-b.txt"
    )
    assert plan.ref == "test"


def test_shipped_map_provenance() -> None:
    catalog = load_catalog()
    assert catalog.ref == "0ab00e43853070c76cb954da55dd1198cb811255"
    assert catalog.provenance["whence_sha256"] == (
        "5e7440383ee4a672a6dcfb228dc1f45cd679a0fb505e9808b543a58bd559eefd"
    )
    assert catalog.provenance["kernel"] == "6.12.117+deb13-amd64"


def test_names_from_a_kernel_keep_only_the_chosen_boards_files() -> None:
    catalog = load_catalog()
    requested = catalog.expand("brcm/brcmfmac*-sdio.*.txt") + catalog.expand(
        "brcm/brcmfmac43455-sdio.bin"
    )
    assert len(requested) > 20  # every board's NVRAM matches the module's glob
    plain = resolve([], names=requested, catalog=catalog)
    assert not any(p.endswith(".txt") for p in file_paths(plain))
    assert "cypress/cyfmac43455-sdio.bin" in file_paths(plain)
    (note,) = plain.notes
    assert "--board" in note and "brcm/brcmfmac43455-sdio" in note
    pi4 = resolve([], names=requested, catalog=catalog, board="raspberrypi,4-model-b")
    assert [p for p in file_paths(pi4) if p.endswith(".txt")] == [
        "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt"
    ]
    every = resolve([], names=requested, catalog=catalog, all_boards=True)
    assert len([p for p in file_paths(every) if p.endswith(".txt")]) > 20


def test_a_misspelled_board_is_an_error_for_drivers_and_kernels_too() -> None:
    with pytest.raises(QueryError, match="raspberrypi,4-model-b"):
        resolve("brcmfmac", board="raspberrypi,4-model-bb")
    catalog = load_catalog()
    with pytest.raises(QueryError, match="no board-specific file"):
        resolve([], names=catalog.expand("brcm/brcmfmac*-sdio.*.txt"), board="nope")
    assert resolve("r8169", board="nope").files  # no board files at all: nothing to choose


def test_a_directory_link_brings_the_links_inside_the_directory() -> None:
    plan = resolve("nvidia/ad103")
    links = link_pairs(plan)
    assert links["nvidia/ad103"] == "ad102"
    assert links["nvidia/ad102/gsp/gsp-570.144.bin"] == "../../ga102/gsp/gsp-570.144.bin"
    assert "nvidia/ga102/gsp/gsp-570.144.bin" in file_paths(plan)
    assert "nvidia/ad102/gsp/booter_load-535.113.01.bin" in file_paths(plan)


def test_chip_stems_ignore_case_when_nothing_matches_exactly() -> None:
    assert file_paths(resolve("RTL8168H")) == ["rtl_nic/rtl8168h-2.fw"]
    assert file_paths(resolve("BRCMFMAC43602")) == ["brcm/brcmfmac43602-pcie.bin"]


def test_paths_are_normalised() -> None:
    for spelling in ("./brcm/brcmfmac43602-pcie.bin", "brcm//brcmfmac43602-pcie.bin"):
        assert file_paths(resolve(spelling)) == ["brcm/brcmfmac43602-pcie.bin"]
