"""Tests for lkfirmware.modules: .modinfo from tiny generated ELF modules, trees and tars."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from lkfirmware.errors import UsageError
from lkfirmware.modules import (
    BUILTIN_PATH,
    KernelModule,
    ModuleScan,
    firmware_requests,
    module_name_from_path,
    read_modinfo,
    scan_modules,
)
from tests.kmodules import (
    EM_AARCH64,
    EM_ARM,
    EM_MIPS,
    EM_PPC64,
    EM_RISCV,
    EM_S390,
    ByteOrder,
    ElfClass,
    ElfLayout,
    Section,
    make_elf,
    make_kernel_tar,
    make_module,
    module_fields,
    tar_bytes,
    write_module,
)

VERSION = "6.12.0-test"
ELF_KINDS: list[tuple[ElfClass, ByteOrder, int]] = [
    (64, "<", EM_AARCH64),  # arm64
    (64, "<", EM_RISCV),  # riscv64
    (64, ">", EM_S390),  # s390x: 64-bit big-endian
    (64, ">", EM_PPC64),  # ppc64 big-endian
    (32, "<", EM_ARM),  # armhf
    (32, ">", EM_MIPS),  # 32-bit big-endian mips
]
KIND_IDS = ["arm64", "riscv64", "s390x", "ppc64", "armhf", "mips"]

BRCM_FIRMWARE = [
    "brcm/brcmfmac43455-sdio.bin",
    "brcm/brcmfmac43455-sdio.*.txt",  # a glob, kept as written
    "brcm/brcmfmac43455-sdio.clm_blob",
    "brcm/brcmfmac4356-pcie.bin",
]


# --------------------------------------------------------------------------- read_modinfo


@pytest.mark.parametrize(("elf_class", "order", "machine"), ELF_KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("padding", [0, 7])
def test_read_modinfo_every_class_and_byte_order(
    elf_class: ElfClass, order: ByteOrder, machine: int, padding: int
) -> None:
    fields = module_fields(
        "brcmfmac", BRCM_FIRMWARE, ["cfg80211", "brcmutil"], ["sdio:c*v02D0d4345*"]
    )
    data = make_module(fields, elf_class=elf_class, order=order, machine=machine, padding=padding)
    info = read_modinfo(data)
    assert info["firmware"] == BRCM_FIRMWARE
    assert info["depends"] == ["cfg80211,brcmutil"]
    assert info["name"] == ["brcmfmac"]
    assert info["alias"] == ["sdio:c*v02D0d4345*"]
    assert info["vermagic"] == [f"{VERSION} SMP preempt mod_unload "]
    assert list(info) == [
        "license",
        "description",
        "firmware",
        "alias",
        "depends",
        "name",
        "vermagic",
    ]


@pytest.mark.parametrize("layout", ["headers_first", "extended_numbering"])
@pytest.mark.parametrize("elf_class", [32, 64])
def test_read_modinfo_unusual_layouts(layout: str, elf_class: ElfClass) -> None:
    shape = ElfLayout(**{layout: True})  # type: ignore[arg-type]
    data = make_module(module_fields("m", ["x.bin"]), elf_class=elf_class, order=">", layout=shape)
    assert read_modinfo(data)["firmware"] == ["x.bin"]


def test_read_modinfo_only_reads_the_modinfo_section() -> None:
    # .rodata of make_module holds "firmware=decoy.bin"; a string search would find it.
    info = read_modinfo(make_module(module_fields("m", ["real.bin"])))
    assert info["firmware"] == ["real.bin"]
    # A section named like .modinfo but longer is not .modinfo.
    lookalike = make_elf([Section(".modinfo.extra", b"firmware=no.bin\0")])
    with pytest.raises(ValueError, match=r"no \.modinfo section"):
        read_modinfo(lookalike)


def test_read_modinfo_keeps_values_with_equals_and_skips_bare_words() -> None:
    raw = make_elf([Section(".modinfo", b"parm=mode:a=b\0junk\0\0\0firmware=f.bin\0")])
    assert read_modinfo(raw) == {"parm": ["mode:a=b"], "firmware": ["f.bin"]}


def test_read_modinfo_empty_and_nobits_section() -> None:
    assert read_modinfo(make_elf([Section(".modinfo", b"")])) == {}
    assert read_modinfo(make_elf([Section(".modinfo", b"\0" * 8, sh_type=8)])) == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not an ELF file"),
        (b"\x7fELF", "not an ELF file"),
        (b"#!/bin/sh\necho not a module\n", "not an ELF file"),
        (b"\x7fELF\x03\x01\x01" + bytes(60), "unknown ELF class 3"),
        (b"\x7fELF\x02\x03\x01" + bytes(60), "unknown ELF byte order 3"),
        (b"\x7fELF\x02\x01\x01" + bytes(20), "truncated ELF header"),
        (b"\x7fELF\x02\x01\x01" + bytes(100), "no section header table"),
    ],
)
def test_read_modinfo_rejects_non_modules(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_modinfo(data)


@pytest.mark.parametrize("elf_class", [32, 64])
def test_read_modinfo_truncated_anywhere_is_a_value_error(elf_class: ElfClass) -> None:
    data = make_module(module_fields("m", ["x.bin"]), elf_class=elf_class)
    for cut in range(len(data)):
        with pytest.raises(ValueError):
            read_modinfo(data[:cut])


def test_read_modinfo_random_damage_never_crashes() -> None:
    rng = random.Random(5)
    originals = [
        make_module(module_fields("m", ["x.bin"]), elf_class=c, order=o)
        for c in (32, 64)
        for o in ("<", ">")
    ]
    outcomes = {"read": 0, "rejected": 0}
    for _ in range(3000):
        data = bytearray(rng.choice(originals))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(16, len(data))] = rng.randrange(256)
        try:
            read_modinfo(bytes(data))
        except ValueError:
            outcomes["rejected"] += 1
        else:
            outcomes["read"] += 1
    # Any other exception fails the test; both outcomes must have happened.
    assert outcomes["rejected"] > 100 and outcomes["read"] > 100, outcomes


def test_module_name_from_path() -> None:
    assert module_name_from_path("a/snd-hda-intel.ko.zst") == "snd_hda_intel"
    assert module_name_from_path("e1000e.ko") == "e1000e"
    assert module_name_from_path(Path("x/r8169.ko.gz")) == "r8169"


# --------------------------------------------------------------------------- trees


def build_tree(root: Path) -> Path:
    """lib/modules/<VERSION> with modules of every compression, damaged files, built-ins."""
    moddir = root / "lib" / "modules" / VERSION
    kernel = moddir / "kernel" / "drivers"
    write_module(
        kernel / "net/wireless/brcm80211/brcmfmac/brcmfmac.ko.xz",
        make_module(
            module_fields("brcmfmac", BRCM_FIRMWARE, ["brcmutil", "cfg80211"]),
            elf_class=64,
            order="<",
            machine=EM_AARCH64,
        ),
    )
    write_module(
        kernel / "net/wireless/brcm80211/brcmutil/brcmutil.ko.zst",
        make_module(module_fields("brcmutil", [], []), elf_class=32, order=">", machine=EM_MIPS),
    )
    write_module(
        kernel / "net/wireless/cfg80211.ko.gz",
        make_module(module_fields("cfg80211", ["regulatory.db", "regulatory.db.p7s"], ["rfkill"])),
    )
    write_module(
        kernel / "net/rfkill.ko", make_module(module_fields("rfkill"), elf_class=32, order="<")
    )
    write_module(
        kernel / "net/ethernet/realtek/r8169.ko.xz",
        make_module(
            module_fields("r8169", ["rtl_nic/rtl8168h-2.fw", "rtl_nic/rtl8125*.fw"], ["realtek"]),
            elf_class=64,
            order=">",
        ),
    )
    # No name= field: the name comes from the file name, dashes normalised.
    fields = [f for f in module_fields("realtek", ["rtl_nic/phy.fw"]) if f[0] != "name"]
    write_module(kernel / "net/phy/realtek-phy.ko.zst", make_module(fields))
    # Damaged: xz garbage; not ELF; truncated ELF; a zstd file cut short.
    (kernel / "broken").mkdir()
    (kernel / "broken/garbage.ko.xz").write_bytes(b"\xfd7zXZ\x00 this is not xz")
    (kernel / "broken/script.ko").write_bytes(b"#!/bin/sh\n")
    good = make_module(module_fields("cut", ["cut.bin"]))
    (kernel / "broken/truncated.ko").write_bytes(good[: len(good) - 30])
    zst = kernel / "broken/short.ko.zst"
    write_module(zst, make_module(module_fields("short", ["short.bin"])))
    zst.write_bytes(zst.read_bytes()[:-6])
    # Not modules: ignored without a word.
    (moddir / "modules.order").write_text("kernel/drivers/net/rfkill.ko\n")
    (kernel / "README.txt").write_text("not a module")
    # Built-in drivers.
    (moddir / "modules.builtin.modinfo").write_bytes(
        b"i915.firmware=i915/skl_dmc_ver1_27.bin\0i915.license=GPL\0"
        b"i915.firmware=i915/kbl_dmc_ver1_04.bin\0e1000e.license=GPL\0"
    )
    # depmod's build/ and source/ links point outside: never followed.
    outside = root / "headers"
    write_module(outside / "stray.ko", make_module(module_fields("stray", ["stray.bin"])))
    (moddir / "build").symlink_to(outside, target_is_directory=True)
    return moddir


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tree(tmp_path_factory.mktemp("kernel"))


EXPECTED_MODULES = [
    "brcmfmac",
    "brcmutil",
    "cfg80211",
    "e1000e",
    "i915",
    "r8169",
    "realtek_phy",
    "rfkill",
]
EXPECTED_PROBLEMS = ["garbage.ko.xz", "script.ko", "short.ko.zst", "truncated.ko"]


def check_tree_scan(scan: ModuleScan) -> None:
    assert sorted(scan.modules) == EXPECTED_MODULES
    assert scan.kernel_version == VERSION
    brcm = scan.modules["brcmfmac"]
    assert brcm.firmware == tuple(BRCM_FIRMWARE)
    assert brcm.depends == ("brcmutil", "cfg80211")
    assert brcm.path == "kernel/drivers/net/wireless/brcm80211/brcmfmac/brcmfmac.ko.xz"
    assert brcm.vermagic == f"{VERSION} SMP preempt mod_unload "
    assert not brcm.builtin
    assert scan.modules["brcmutil"].depends == ()
    assert scan.modules["r8169"].firmware == ("rtl_nic/rtl8168h-2.fw", "rtl_nic/rtl8125*.fw")
    assert scan.modules["realtek_phy"].path == "kernel/drivers/net/phy/realtek-phy.ko.zst"
    i915 = scan.modules["i915"]
    assert i915.builtin and i915.path == BUILTIN_PATH
    assert i915.firmware == ("i915/skl_dmc_ver1_27.bin", "i915/kbl_dmc_ver1_04.bin")
    assert [Path(p.path.split(":")[-1]).name for p in scan.problems] == EXPECTED_PROBLEMS
    reasons = {Path(p.path).name: p.reason for p in scan.problems}
    assert "not an ELF file" in reasons["script.ko"]
    assert "truncated" in reasons["truncated.ko"]
    assert "truncated" in reasons["short.ko.zst"]
    assert "xz" in reasons["garbage.ko.xz"]


@pytest.mark.parametrize("jobs", [1, 3])
def test_scan_modules_directory(tree: Path, jobs: int) -> None:
    scan = scan_modules(tree, jobs=jobs)
    check_tree_scan(scan)
    assert all(str(tree) in p.path for p in scan.problems)  # named with their full path
    assert scan.module("realtek-phy") is scan.modules["realtek_phy"]
    assert scan.module("nope") is None


def test_scan_modules_from_image_root(tree: Path) -> None:
    check_tree_scan(scan_modules(tree.parents[2]))  # the directory holding lib/modules
    check_tree_scan(scan_modules(tree.parent))  # lib/modules itself


def test_scan_modules_process_pool_matches_threads(tree: Path) -> None:
    assert scan_modules(tree, jobs=2, pool="process") == scan_modules(tree, jobs=2)


def test_scan_modules_several_kernels_is_a_usage_error(tmp_path: Path) -> None:
    for version in ("6.1.0", "6.12.0"):
        write_module(
            tmp_path / "lib/modules" / version / "kernel/a.ko", make_module(module_fields("a"))
        )
    with pytest.raises(UsageError, match=r"several kernels \(6\.1\.0, 6\.12\.0\)"):
        scan_modules(tmp_path)
    assert sorted(scan_modules(tmp_path / "lib/modules/6.1.0").modules) == ["a"]


def test_scan_modules_plain_directory_takes_version_from_vermagic(tmp_path: Path) -> None:
    write_module(tmp_path / "x.ko.xz", make_module(module_fields("x", version="6.6.6-arm64")))
    write_module(tmp_path / "sub/y.ko", make_module(module_fields("y", version="6.6.6-arm64")))
    scan = scan_modules(tmp_path)
    assert sorted(scan.modules) == ["x", "y"]
    assert scan.modules["y"].path == "sub/y.ko"
    assert scan.kernel_version == "6.6.6-arm64"


def test_scan_modules_duplicate_names_prefer_updates(tmp_path: Path) -> None:
    write_module(tmp_path / "kernel/a.ko", make_module(module_fields("a", ["old.bin"])))
    write_module(tmp_path / "updates/a.ko.xz", make_module(module_fields("a", ["new.bin"])))
    scan = scan_modules(tmp_path)
    assert scan.modules["a"].firmware == ("new.bin",)
    assert [(p.path, "duplicate" in p.reason) for p in scan.problems] == [("kernel/a.ko", True)]


@pytest.mark.parametrize("suffix", [".ko", ".ko.xz", ".ko.zst", ".ko.gz"])
def test_scan_single_file(tmp_path: Path, suffix: str) -> None:
    path = write_module(
        tmp_path / f"snd-foo{suffix}",
        make_module(module_fields("snd_foo", ["a.bin", "b.bin"]), elf_class=32, order=">"),
    )
    scan = scan_modules(path)
    assert list(scan.modules) == ["snd_foo"]
    assert scan.modules["snd_foo"].firmware == ("a.bin", "b.bin")
    assert scan.modules["snd_foo"].path == str(path)
    assert scan.kernel_version == VERSION


def test_scan_single_damaged_file_is_a_problem_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.ko.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    scan = scan_modules(path)
    assert scan.modules == {}
    assert [p.path for p in scan.problems] == [str(path)]


def test_scan_modules_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        scan_modules(tmp_path / "missing")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(UsageError, match="neither a modules directory"):
        scan_modules(other)
    with pytest.raises(UsageError, match="jobs"):
        scan_modules(tmp_path, jobs=0)


# --------------------------------------------------------------------------- kernel.tar


@pytest.mark.parametrize("compression", ["", "gz", "xz"])
def test_scan_kernel_tar(tree: Path, tmp_path: Path, compression: str) -> None:
    tar = make_kernel_tar(
        tree.parents[2],
        tmp_path / f"kernel.tar{'.' + compression if compression else ''}",
        compression,
    )
    before = sorted(tmp_path.rglob("*"))
    scan = scan_modules(tar, jobs=2)
    check_tree_scan(scan)
    assert all(p.path.startswith(f"{tar}:lib/modules/{VERSION}/") for p in scan.problems)
    assert "stray" not in scan.modules  # the build/ symlink is a link member, not followed
    assert sorted(tmp_path.rglob("*")) == before  # nothing unpacked to disk
    assert scan == scan_modules(tar, jobs=1)


def test_scan_kernel_tar_with_dot_prefix_and_stray_modules(tmp_path: Path) -> None:
    tar = tmp_path / "kernel.tar"
    tar.write_bytes(
        tar_bytes(
            {
                f"./lib/modules/{VERSION}/kernel/a.ko": make_module(module_fields("a", ["a.fw"])),
                f"./lib/modules/{VERSION}/kernel/b.ko": b"\x7fELF broken",
                "boot/extra.ko": make_module(module_fields("extra", ["e.fw"])),
                "boot/kernel": b"\0" * 100,
            }
        )
    )
    scan = scan_modules(tar)
    assert sorted(scan.modules) == ["a", "extra"]
    assert scan.modules["a"].path == "kernel/a.ko"
    assert scan.modules["extra"].path == "boot/extra.ko"
    assert scan.kernel_version == VERSION
    assert [p.path for p in scan.problems] == [f"{tar}:./lib/modules/{VERSION}/kernel/b.ko"]


def test_scan_truncated_kernel_tar_keeps_what_it_read(tmp_path: Path) -> None:
    first = make_module(module_fields("a", ["a.fw"]))
    second = make_module(module_fields("b", ["b.fw"])) + bytes(4096)
    data = tar_bytes({f"lib/modules/{VERSION}/a.ko": first, f"lib/modules/{VERSION}/b.ko": second})
    tar = tmp_path / "kernel.tar"
    tar.write_bytes(data[: 512 + len(first) + 512 + 2048 + 512])  # cut inside b.ko
    scan = scan_modules(tar)
    assert "a" in scan.modules
    assert any("damaged" in p.reason and p.path == str(tar) for p in scan.problems)


def test_scan_tar_of_several_kernels_is_a_usage_error(tmp_path: Path) -> None:
    tar = tmp_path / "kernel.tar"
    tar.write_bytes(
        tar_bytes(
            {f"lib/modules/{v}/a.ko": make_module(module_fields("a")) for v in ("1.0", "2.0")}
        )
    )
    with pytest.raises(UsageError, match="several kernels"):
        scan_modules(tar)


# --------------------------------------------------------------------------- requests


def test_firmware_requests_follow_depends_transitively(tree: Path) -> None:
    scan = scan_modules(tree)
    assert firmware_requests(scan, ["brcmfmac"]) == [("brcmfmac", fw) for fw in BRCM_FIRMWARE] + [
        ("cfg80211", "regulatory.db"),
        ("cfg80211", "regulatory.db.p7s"),
    ]
    # r8169 -> realtek (named realtek_phy by its file): no such module, so nothing more.
    assert firmware_requests(scan, ["r8169"]) == [
        ("r8169", "rtl_nic/rtl8168h-2.fw"),
        ("r8169", "rtl_nic/rtl8125*.fw"),
    ]
    assert firmware_requests(scan, ["realtek-phy"]) == [("realtek_phy", "rtl_nic/phy.fw")]
    assert firmware_requests(scan, ["rfkill", "brcmutil"]) == []
    assert firmware_requests(scan, ["i915"])[0] == ("i915", "i915/skl_dmc_ver1_27.bin")


def test_firmware_requests_for_every_module(tree: Path) -> None:
    pairs = firmware_requests(scan_modules(tree), None)
    assert [m for m, _ in pairs] == sorted(m for m, _ in pairs)
    assert len(pairs) == len(BRCM_FIRMWARE) + 2 + 2 + 2 + 1
    assert ("realtek_phy", "rtl_nic/phy.fw") in pairs


def test_firmware_requests_cycles_and_duplicates() -> None:
    scan = ModuleScan(
        {
            "a": KernelModule("a", "a.ko", ("x.bin", "x.bin", "y.bin"), ("b",)),
            "b": KernelModule("b", "b.ko", ("z.bin",), ("a", "missing")),
        }
    )
    assert firmware_requests(scan, ["b", "a"]) == [
        ("b", "z.bin"),
        ("a", "x.bin"),
        ("a", "y.bin"),
    ]


def test_firmware_requests_unknown_module_suggests_close_names(tree: Path) -> None:
    scan = scan_modules(tree)
    with pytest.raises(UsageError) as error:
        firmware_requests(scan, ["brcmfmac", "brcmfmc", "zzz"])
    message = str(error.value)
    assert "unknown module 'brcmfmc'" in message and "did you mean: brcmfmac" in message
    assert "unknown module 'zzz'" in message and VERSION in message
    assert "'brcmfmac'" not in message.replace("did you mean: brcmfmac", "")


# --------------------------------------------------------------------------- modinfo


@pytest.mark.skipif(shutil.which("modinfo") is None, reason="modinfo (kmod) is not installed")
@pytest.mark.parametrize(("elf_class", "order", "machine"), ELF_KINDS, ids=KIND_IDS)
def test_firmware_matches_modinfo(
    tmp_path: Path, elf_class: ElfClass, order: ByteOrder, machine: int
) -> None:
    modinfo = shutil.which("modinfo")
    assert modinfo is not None
    for suffix in (".ko", ".ko.xz"):
        path = write_module(
            tmp_path / f"brcmfmac{suffix}",
            make_module(
                module_fields("brcmfmac", BRCM_FIRMWARE, ["cfg80211"]),
                elf_class=elf_class,
                order=order,
                machine=machine,
                padding=3,
            ),
        )
        printed = subprocess.run(
            [modinfo, "-F", "firmware", str(path)], check=True, capture_output=True, text=True
        ).stdout.splitlines()
        assert printed == BRCM_FIRMWARE
        assert list(scan_modules(path).modules["brcmfmac"].firmware) == printed
