"""The whole job through the command line, against a loopback mirror: resolve, fetch,
stage, write the config; again (a no-op); --check; --output; --ref; links; boards;
compression; licences; lock files; failures with their exit statuses."""

from __future__ import annotations

import json
import lzma
import os
import shutil
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from lkfirmware.catalog import load_catalog
from lkfirmware.cli import main
from lkfirmware.config import linuxkit_problems
from tests.conftest import SHARED
from tests.fwrepo import FirmwareRepo
from tests.kmodules import make_module, module_fields, write_module
from tests.mirror_server import MirrorServer

PINNED = load_catalog().ref
SEED_FILE = "brcm/brcmfmac43602-pcie.bin"


@pytest.fixture
def server(mirror_server: MirrorServer, firmware_repo: FirmwareRepo) -> MirrorServer:
    """The test mirror, also serving the repo's files at the shipped catalog's pinned ref."""
    mirror_server.set_files(PINNED, firmware_repo.files)
    return mirror_server


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A LinuxKit project folder with the seed's config, and a private cache."""
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(SHARED / "corpus" / "minimal.yml", folder / "linuxkit.yml")
    monkeypatch.setenv("LKFIRMWARE_CACHE_DIR", str(tmp_path / "cache"))
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def files_entries(config: Path) -> dict[str, dict[str, object]]:
    data = YAML(typ="safe").load(config.read_text())
    return {str(entry["path"]): dict(entry) for entry in data.get("files") or []}


def test_seed_entry_end_to_end(
    server: MirrorServer,
    project: Path,
    firmware_repo: FirmwareRepo,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = project / "linuxkit.yml"
    before = config.read_text()
    code, _, err = run(
        capsys,
        "fetch",
        "brcmfmac43602",
        "--config",
        str(config),
        "--mirror",
        server.cgit,
        "--quiet",
    )
    assert code == 0, err
    text = config.read_text()
    assert text.startswith(before)  # nothing else changed: the entry was appended
    entry = files_entries(config)[f"/lib/firmware/{SEED_FILE}"]
    assert entry == {
        "path": f"/lib/firmware/{SEED_FILE}",
        "source": f"firmware/{SEED_FILE}",
        "mode": "0644",
    }
    assert 'mode: "0644"' in text
    staged = project / "firmware" / SEED_FILE
    assert staged.read_bytes() == firmware_repo.files[SEED_FILE]
    assert linuxkit_problems(text) == []
    lock = json.loads((project / "lkfirmware.lock").read_text())
    assert lock["ref"] == PINNED and SEED_FILE in json.dumps(lock)
    assert server.count(SEED_FILE) == 1

    # Again: byte-identical, not rewritten, nothing downloaded.
    mtime = config.stat().st_mtime_ns
    assert (
        run(
            capsys,
            "fetch",
            "brcmfmac43602",
            "--config",
            str(config),
            "--mirror",
            server.cgit,
            "--quiet",
        )[0]
        == 0
    )
    assert config.read_text() == text and config.stat().st_mtime_ns == mtime
    assert server.count(SEED_FILE) == 1

    # --check is green; a deleted staged blob or a missing entry makes it red.
    assert (
        run(
            capsys,
            "fetch",
            "brcmfmac43602",
            "--config",
            str(config),
            "--mirror",
            server.cgit,
            "--check",
        )[0]
        == 0
    )
    staged.unlink()
    code, out, _ = run(
        capsys,
        "fetch",
        "brcmfmac43602",
        "--config",
        str(config),
        "--mirror",
        server.cgit,
        "--check",
    )
    assert code == 1 and "would stage" in out
    assert not staged.exists()  # --check writes nothing
    code, out, _ = run(
        capsys, "fetch", "rtl8168h", "--config", str(config), "--mirror", server.cgit, "--check"
    )
    assert code == 1
    assert "+  - path: /lib/firmware/rtl_nic/rtl8168h-2.fw" in out
    assert config.read_text() == text


def test_dry_run_prints_the_diff_and_changes_nothing(
    server: MirrorServer, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project / "linuxkit.yml"
    before = config.read_bytes()
    code, out, _ = run(
        capsys, "fetch", "rtl8168h", "--config", str(config), "--mirror", server.gitlab, "--dry-run"
    )
    assert code == 0
    assert out.startswith("---") and "+files:" in out
    assert config.read_bytes() == before
    assert not (project / "firmware").exists()
    assert not (project / "lkfirmware.lock").exists()


def test_board_links_and_other_ref(
    server: MirrorServer,
    project: Path,
    firmware_repo: FirmwareRepo,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--ref takes the catalog from that ref's WHENCE, fetched from the mirror."""
    config = project / "linuxkit.yml"
    code, _, err = run(
        capsys,
        "fetch",
        "brcmfmac43455",
        "--board",
        "raspberrypi,4-model-b",
        "--ref",
        firmware_repo.tag,
        "--config",
        str(config),
        "--mirror",
        server.gitlab,
        "--quiet",
    )
    assert code == 0, err
    entries = files_entries(config)
    assert entries["/lib/firmware/brcm/brcmfmac43455-sdio.bin"] == {
        "path": "/lib/firmware/brcm/brcmfmac43455-sdio.bin",
        "symlink": "../cypress/cyfmac43455-sdio.bin",
        "mode": "0644",
    }
    nvram = "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt"
    assert entries[f"/lib/firmware/{nvram}"]["source"] == f"firmware/{nvram}"
    assert (project / "firmware" / nvram).read_bytes() == firmware_repo.files[nvram]
    blob = "cypress/cyfmac43455-sdio.bin"
    assert (project / "firmware" / blob).read_bytes() == firmware_repo.files[blob]
    # links are never downloaded
    assert not any("brcmfmac43455-sdio.bin" in path for path in server.paths_requested())
    assert server.count("WHENCE") == 1


def test_output_writes_a_firmware_only_yml(
    server: MirrorServer, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project / "linuxkit.yml"
    before = config.read_bytes()
    output = project / "firmware.yml"
    code, _, err = run(
        capsys,
        "fetch",
        "rtl8168h",
        "brcmfmac43602",
        "--output",
        str(output),
        "--mirror",
        server.cgit,
        "--quiet",
    )
    assert code == 0, err
    assert config.read_bytes() == before
    data = YAML(typ="safe").load(output.read_text())
    assert set(data) == {"files"}
    assert {entry["path"] for entry in data["files"]} == {
        "/lib/firmware/rtl_nic/rtl8168h-2.fw",
        f"/lib/firmware/{SEED_FILE}",
    }
    assert linuxkit_problems(output.read_text()) == []


def test_fetch_json_and_absolute_sources(
    server: MirrorServer,
    project: Path,
    firmware_repo: FirmwareRepo,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "fetch", "brcmfmac43602", "--mirror", server.cgit, "--json")
    assert code == 0
    (record,) = json.loads(out)
    assert record["path"] == SEED_FILE and record["size"] == len(firmware_repo.files[SEED_FILE])
    assert Path(record["location"]).read_bytes() == firmware_repo.files[SEED_FILE]

    config = project / "linuxkit.yml"
    assert (
        run(
            capsys,
            "fetch",
            "brcmfmac43602",
            "--config",
            str(config),
            "--absolute-sources",
            "--mirror",
            server.cgit,
            "--quiet",
        )[0]
        == 0
    )
    source = files_entries(config)[f"/lib/firmware/{SEED_FILE}"]["source"]
    assert os.path.isabs(str(source)) and Path(str(source)).is_file()


def test_compressed_staging(
    server: MirrorServer,
    project: Path,
    firmware_repo: FirmwareRepo,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = project / "linuxkit.yml"
    code, _, err = run(
        capsys,
        "fetch",
        "brcmfmac43455",
        "--board",
        "raspberrypi,4-model-b",
        "--ref",
        firmware_repo.tag,
        "--config",
        str(config),
        "--compress",
        "xz",
        "--mirror",
        server.cgit,
        "--quiet",
    )
    assert code == 0, err
    entries = files_entries(config)
    link = entries["/lib/firmware/brcm/brcmfmac43455-sdio.bin.xz"]
    assert link["symlink"] == "../cypress/cyfmac43455-sdio.bin.xz"
    staged = project / "firmware" / "cypress" / "cyfmac43455-sdio.bin.xz"
    with lzma.open(staged) as stream:
        assert stream.read() == firmware_repo.files["cypress/cyfmac43455-sdio.bin"]
    assert staged.read_bytes()[6:8] == b"\x00\x01"  # stream flags: CRC32 check
    assert "/lib/firmware/cypress/cyfmac43455-sdio.bin" not in entries
    mtime = config.stat().st_mtime_ns
    assert (
        run(
            capsys,
            "fetch",
            "brcmfmac43455",
            "--board",
            "raspberrypi,4-model-b",
            "--ref",
            firmware_repo.tag,
            "--config",
            str(config),
            "--compress",
            "xz",
            "--mirror",
            server.cgit,
            "--check",
        )[0]
        == 0
    )
    assert config.stat().st_mtime_ns == mtime


def test_raw_files_stay_uncompressed(
    server: MirrorServer,
    project: Path,
    firmware_repo: FirmwareRepo,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = project / "linuxkit.yml"
    code, _, err = run(
        capsys,
        "fetch",
        "amdgpu/psp_13_0_0_ta.bin",
        "--ref",
        firmware_repo.tag,
        "--config",
        str(config),
        "--compress",
        "zstd",
        "--mirror",
        server.cgit,
        "--quiet",
    )
    assert code == 0, err
    assert "/lib/firmware/amdgpu/psp_13_0_0_ta.bin" in files_entries(config)


def test_with_licences(
    server: MirrorServer,
    project: Path,
    firmware_repo: FirmwareRepo,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = project / "linuxkit.yml"
    code, _, err = run(
        capsys,
        "fetch",
        "brcmfmac43602",
        "--with-licences",
        "--config",
        str(config),
        "--mirror",
        server.cgit,
        "--quiet",
    )
    assert code == 0, err
    entry = files_entries(config)["/lib/firmware/LICENCE.broadcom_bcm43xx"]
    assert (project / str(entry["source"])).read_bytes() == (
        firmware_repo.files["LICENCE.broadcom_bcm43xx"]
    )


def test_missing_everywhere_exits_3_and_writes_nothing(
    server: MirrorServer, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project / "linuxkit.yml"
    before = config.read_bytes()
    code, _, err = run(
        capsys,
        "fetch",
        "iwlwifi-cc-a0",
        "--config",
        str(config),
        "--mirror",
        server.cgit,
        "--mirror",
        server.gitlab,
        "--quiet",
    )
    assert code == 3
    assert "intel/iwlwifi/iwlwifi-cc-a0-77.ucode" in err and PINNED in err
    assert config.read_bytes() == before
    assert not (project / "firmware").exists()


def test_lock_mismatch_exits_4(
    server: MirrorServer, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project / "linuxkit.yml"
    assert (
        run(
            capsys,
            "fetch",
            "brcmfmac43602",
            "--config",
            str(config),
            "--mirror",
            server.cgit,
            "--quiet",
        )[0]
        == 0
    )
    lock = project / "lkfirmware.lock"
    data = json.loads(lock.read_text())
    for record in data["files"].values() if isinstance(data["files"], dict) else data["files"]:
        record["sha256"] = "0" * 64
    lock.write_text(json.dumps(data))
    before = config.read_bytes()
    code, _, err = run(
        capsys,
        "fetch",
        "brcmfmac43602",
        "--config",
        str(config),
        "--mirror",
        server.cgit,
        "--quiet",
        "--cache-dir",
        str(project / "c2"),
    )
    assert code == 4, err
    assert config.read_bytes() == before


def test_unknown_query_exits_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "fetch", "brcmfmac4345", "--config", str(project / "linuxkit.yml"))
    assert code == 2 and "brcmfmac43455" in err


def test_kernel_modules_and_sync(
    server: MirrorServer,
    project: Path,
    tmp_path: Path,
    firmware_repo: FirmwareRepo,
    capsys: pytest.CaptureFixture[str],
) -> None:
    modules = tmp_path / "root" / "lib" / "modules" / "6.12.0-test"
    write_module(
        modules / "kernel" / "brcmfmac.ko.xz",
        make_module(
            module_fields(
                "brcmfmac",
                firmware=["brcm/brcmfmac43602-pcie.bin", "brcm/brcmfmac4350-pcie.bin"],
                depends=["brcmutil"],
            )
        ),
    )
    write_module(modules / "kernel" / "brcmutil.ko.zst", make_module(module_fields("brcmutil")))
    write_module(
        modules / "kernel" / "r8169.ko",
        make_module(module_fields("r8169", firmware=["rtl_nic/rtl8168h-2.fw"])),
    )

    code, out, _ = run(capsys, "modules", str(modules))
    assert code == 0
    assert "brcmfmac  (depends: brcmutil)\n    brcm/brcmfmac43602-pcie.bin\n" in out

    config = project / "linuxkit.yml"
    text = config.read_text().replace(
        "onboot:\n",
        "onboot:\n  - name: modprobe\n    image: linuxkit/modprobe:v1\n"
        '    command: ["modprobe", "-a", "brcmfmac", "btusb"]\n'
        "  - name: nic\n    image: linuxkit/modprobe:v1\n"
        '    command: ["/bin/sh", "-c", "modprobe r8169 && echo ok"]\n',
        1,
    )
    config.write_text(text)
    code, _, err = run(
        capsys,
        "sync",
        str(config),
        "--kernel",
        str(modules),
        "--ref",
        firmware_repo.tag,
        "--mirror",
        server.cgit,
        "--quiet",
    )
    # brcmfmac4350-pcie.bin is not in the test mirror's catalog: a warning, not an error
    assert code == 0, err
    assert "missing firmware brcm/brcmfmac4350-pcie.bin for module brcmfmac" in err
    assert "btusb" in err
    paths = set(files_entries(config))
    assert paths == {f"/lib/firmware/{SEED_FILE}", "/lib/firmware/rtl_nic/rtl8168h-2.fw"}
    tag = ["--ref", firmware_repo.tag]
    assert (
        run(
            capsys,
            "sync",
            str(config),
            "--kernel",
            str(modules),
            *tag,
            "--mirror",
            server.cgit,
            "--check",
        )[0]
        == 0
    )
    assert (
        run(
            capsys,
            "sync",
            str(config),
            "--kernel",
            str(modules),
            *tag,
            "--mirror",
            server.cgit,
            "--strict",
            "--quiet",
        )[0]
        == 3
    )

    # fetch --kernel --modules: the named module and its dependencies
    code, out, _ = run(
        capsys,
        "fetch",
        "--kernel",
        str(modules),
        "--modules",
        "r8169",
        *tag,
        "--mirror",
        server.cgit,
        "--json",
    )
    assert code == 0
    assert [r["path"] for r in json.loads(out)] == ["rtl_nic/rtl8168h-2.fw"]


def test_cache_commands(
    server: MirrorServer, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "fetch", "brcmfmac43602", "--mirror", server.cgit, "--quiet")[0] == 0
    code, out, _ = run(capsys, "cache", "info")
    assert code == 0 and "blobs: 1" in out
    assert run(capsys, "cache", "verify")[0] == 0
    assert run(capsys, "cache", "clear")[0] == 0
    assert "blobs: 0" in run(capsys, "cache", "info")[1]
    code, _, err = run(capsys, "fetch", "brcmfmac43602", "--offline", "--quiet")
    assert code == 3 and SEED_FILE in err


def test_git_source_end_to_end(
    project: Path, firmware_repo: FirmwareRepo, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project / "linuxkit.yml"
    argv = ["fetch", "brcmfmac43455", "--board", "raspberrypi,4-model-b", "--source", "git",
            "--git-url", firmware_repo.file_url, "--ref", firmware_repo.tag,
            "--config", str(config), "--quiet"]  # fmt: skip
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    blob = "cypress/cyfmac43455-sdio.bin"
    assert (project / "firmware" / blob).read_bytes() == firmware_repo.files[blob]
    assert "/lib/firmware/brcm/brcmfmac43455-sdio.bin" in files_entries(config)
    mtime = config.stat().st_mtime_ns
    assert run(capsys, *argv)[0] == 0
    assert config.stat().st_mtime_ns == mtime


def test_local_tree_source_end_to_end(
    project: Path,
    firmware_repo: FirmwareRepo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An installed tree: compressed files and real symlinks."""
    tree = tmp_path / "lib-firmware"
    for path, data in firmware_repo.files.items():
        target = tree / (path + ".xz")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(lzma.compress(data, check=lzma.CHECK_CRC32))
    config = project / "linuxkit.yml"
    code, _, err = run(capsys, "fetch", "rtl8168h", "brcmfmac43602", "--source", "dir",
                       "--mirror", str(tree), "--config", str(config), "--quiet")  # fmt: skip
    assert code == 0, err
    for path in ("rtl_nic/rtl8168h-2.fw", SEED_FILE):
        assert (project / "firmware" / path).read_bytes() == firmware_repo.files[path]
    code, _, err = run(capsys, "fetch", "r8169", "--source", "dir", "--mirror",
                       str(tmp_path / "nowhere"))  # fmt: skip
    assert code == 2 and "nowhere" in err


def test_mirrors_from_the_environment(
    server: MirrorServer,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LKFIRMWARE_MIRRORS", server.gitlab)
    code, out, err = run(capsys, "fetch", "rtl8168h", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["path"] == "rtl_nic/rtl8168h-2.fw"
    assert server.count("rtl_nic/rtl8168h-2.fw") == 1


def test_kernel_tar_and_the_example_makefile(
    server: MirrorServer,
    project: Path,
    tmp_path: Path,
    firmware_repo: FirmwareRepo,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.kmodules import make_kernel_tar

    root = tmp_path / "kernel"
    modules = root / "lib" / "modules" / "6.12.59-linuxkit"
    write_module(
        modules / "kernel" / "r8169.ko.gz",
        make_module(
            module_fields("r8169", firmware=["rtl_nic/rtl8168h-2.fw"], version="6.12.59-linuxkit")
        ),
    )
    kernel_tar = make_kernel_tar(root, tmp_path / "kernel.tar")
    config = project / "linuxkit.yml"
    code, _, err = run(capsys, "fetch", "--kernel", str(kernel_tar), "--all-modules",
                       "--config", str(config), "--mirror", server.cgit, "--quiet")  # fmt: skip
    assert code == 0, err
    assert "/lib/firmware/rtl_nic/rtl8168h-2.fw" in files_entries(config)

    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    example = Path(__file__).resolve().parents[1] / "examples" / "wifi"
    work = tmp_path / "wifi"
    shutil.copytree(example, work)
    import subprocess
    import sys

    lkfirmware = f"{sys.executable} -m lkfirmware"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    firmware = f"brcmfmac43602 --mirror {server.cgit}"
    for target in ("firmware", "check"):
        result = subprocess.run(
            [make, "-C", str(work), target, f"LKFIRMWARE={lkfirmware}", f"FIRMWARE={firmware}"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert (work / "firmware" / SEED_FILE).read_bytes() == firmware_repo.files[SEED_FILE]
    assert f"/lib/firmware/{SEED_FILE}" in files_entries(work / "linuxkit.yml")
