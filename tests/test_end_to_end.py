"""The whole job through the command line, against a loopback mirror: resolve, fetch,
stage, write the config; again (a no-op); --check; --output; --ref; links; boards;
compression; licences; lock files; kernels; sources; failures with their exit statuses.

Each test reads like a session at a terminal: ``lk("fetch", "brcmfmac43602", *cfg)``.
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
from ruamel.yaml import YAML

from lkfirmware.catalog import load_catalog
from lkfirmware.cli import main
from lkfirmware.config import linuxkit_problems
from tests.conftest import SHARED
from tests.fwrepo import FirmwareRepo
from tests.kmodules import make_kernel_tar, make_module, module_fields, write_module
from tests.mirror_server import MirrorServer

PINNED = load_catalog().ref
SEED_FILE = "brcm/brcmfmac43602-pcie.bin"
PI4 = ("brcmfmac43455", "--board", "raspberrypi,4-model-b")
ROOT = Path(__file__).resolve().parents[1]


class Result(NamedTuple):
    code: int
    out: str
    err: str


Lk = Callable[..., Result]


@pytest.fixture
def server(mirror_server: MirrorServer, firmware_repo: FirmwareRepo) -> MirrorServer:
    """The test mirror, also serving the repo's files at the shipped catalog's pinned ref."""
    mirror_server.set_files(PINNED, firmware_repo.files)
    return mirror_server


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A LinuxKit project folder with a real config."""
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copyfile(SHARED / "corpus" / "minimal.yml", folder / "linuxkit.yml")
    return folder


@pytest.fixture
def config(project: Path) -> Path:
    return project / "linuxkit.yml"


@pytest.fixture
def lk(capsys: pytest.CaptureFixture[str]) -> Lk:
    """Run ``lkfirmware ARGS...`` in-process; its exit status, stdout and stderr."""

    def run(*argv: str) -> Result:
        code = main([str(arg) for arg in argv])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


@pytest.fixture
def cfg(config: Path, server: MirrorServer) -> tuple[str, ...]:
    """Options of a quiet fetch into ``config`` from the cgit-shaped mirror."""
    return ("--config", str(config), "--mirror", server.cgit, "--quiet")


@pytest.fixture
def tag(firmware_repo: FirmwareRepo) -> tuple[str, ...]:
    """Work at the generated repository's tag: its WHENCE is fetched and becomes the catalog."""
    return ("--ref", firmware_repo.tag)


def files_entries(config: Path) -> dict[str, dict[str, object]]:
    data = YAML(typ="safe").load(config.read_text())
    return {str(entry["path"]): dict(entry) for entry in data.get("files") or []}


def test_seed_entry_end_to_end(
    lk: Lk, cfg: tuple[str, ...], config: Path, project: Path, server: MirrorServer,
    firmware_repo: FirmwareRepo,
) -> None:  # fmt: skip
    before = config.read_text()
    result = lk("fetch", "brcmfmac43602", *cfg)
    assert (result.code, result.err) == (0, "")
    text = config.read_text()
    assert text.startswith(before)  # nothing else changed: the entry was appended
    assert files_entries(config)[f"/lib/firmware/{SEED_FILE}"] == {
        "path": f"/lib/firmware/{SEED_FILE}",
        "source": f"firmware/{SEED_FILE}",
        "mode": "0644",
    }
    assert 'mode: "0644"' in text
    staged = project / "firmware" / SEED_FILE
    assert staged.read_bytes() == firmware_repo.files[SEED_FILE]
    blob = json.loads(lk("fetch", "brcmfmac43602", *cfg[2:4], "--json").out)[0]["location"]
    assert os.path.samefile(staged, blob)  # hard-linked from the cache, not copied
    assert linuxkit_problems(text) == []
    lock = json.loads((project / "lkfirmware.lock").read_text())
    assert lock["ref"] == PINNED and SEED_FILE in lock["files"]
    assert server.count(SEED_FILE) == 1

    # Again: byte-identical, not rewritten, nothing downloaded.
    mtime = config.stat().st_mtime_ns
    assert lk("fetch", "brcmfmac43602", *cfg).code == 0
    assert config.read_text() == text and config.stat().st_mtime_ns == mtime
    assert server.count(SEED_FILE) == 1

    # --check is green; a deleted staged blob or a missing entry makes it red.
    assert lk("fetch", "brcmfmac43602", *cfg, "--check").code == 0
    staged.unlink()
    result = lk("fetch", "brcmfmac43602", *cfg, "--check")
    assert result.code == 1 and "would stage" in result.out
    assert not staged.exists()  # --check writes nothing
    result = lk("fetch", "rtl8168h", *cfg, "--check")
    assert result.code == 1
    assert "+  - path: /lib/firmware/rtl_nic/rtl8168h-2.fw" in result.out
    assert config.read_text() == text


def test_dry_run_prints_the_diff_and_changes_nothing(
    lk: Lk, cfg: tuple[str, ...], config: Path, project: Path
) -> None:
    before = config.read_bytes()
    result = lk("fetch", "rtl8168h", *cfg, "--dry-run")
    assert result.code == 0
    assert result.out.startswith("---") and "+files:" in result.out
    assert config.read_bytes() == before
    assert not (project / "firmware").exists()
    assert not (project / "lkfirmware.lock").exists()


def test_board_links_and_other_ref(
    lk: Lk, tag: tuple[str, ...], config: Path, project: Path, server: MirrorServer,
    firmware_repo: FirmwareRepo,
) -> None:  # fmt: skip
    """--ref takes the catalog from that ref's WHENCE, fetched from the mirror."""
    result = lk("fetch", *PI4, *tag, "--config", config, "--mirror", server.gitlab, "--quiet")
    assert result.code == 0, result.err
    entries = files_entries(config)
    assert entries["/lib/firmware/brcm/brcmfmac43455-sdio.bin"] == {
        "path": "/lib/firmware/brcm/brcmfmac43455-sdio.bin",
        "symlink": "../cypress/cyfmac43455-sdio.bin",
        "mode": "0644",
    }
    for blob in (
        "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt",
        "cypress/cyfmac43455-sdio.bin",
    ):
        assert entries[f"/lib/firmware/{blob}"]["source"] == f"firmware/{blob}"
        assert (project / "firmware" / blob).read_bytes() == firmware_repo.files[blob]
    # links are never downloaded
    assert not any("brcmfmac43455-sdio.bin" in path for path in server.paths_requested())
    assert server.count("WHENCE") == 1


def test_output_writes_a_firmware_only_yml(
    lk: Lk, config: Path, project: Path, server: MirrorServer
) -> None:
    before = config.read_bytes()
    output = project / "firmware.yml"
    result = lk("fetch", "rtl8168h", "brcmfmac43602", "--output", output, "--mirror", server.cgit)
    assert result.code == 0, result.err
    assert config.read_bytes() == before
    data = YAML(typ="safe").load(output.read_text())
    assert set(data) == {"files"}
    assert {entry["path"] for entry in data["files"]} == {
        "/lib/firmware/rtl_nic/rtl8168h-2.fw",
        f"/lib/firmware/{SEED_FILE}",
    }
    assert linuxkit_problems(output.read_text()) == []


def test_fetch_json_and_absolute_sources(
    lk: Lk, cfg: tuple[str, ...], config: Path, server: MirrorServer, firmware_repo: FirmwareRepo
) -> None:
    result = lk("fetch", "brcmfmac43602", "--mirror", server.cgit, "--json")
    assert result.code == 0
    (record,) = json.loads(result.out)
    assert record["path"] == SEED_FILE and record["size"] == len(firmware_repo.files[SEED_FILE])
    assert Path(record["location"]).read_bytes() == firmware_repo.files[SEED_FILE]

    assert lk("fetch", "brcmfmac43602", *cfg, "--absolute-sources").code == 0
    source = str(files_entries(config)[f"/lib/firmware/{SEED_FILE}"]["source"])
    assert os.path.isabs(source) and Path(source).read_bytes() == firmware_repo.files[SEED_FILE]


def test_compressed_staging(
    lk: Lk, cfg: tuple[str, ...], tag: tuple[str, ...], config: Path, project: Path,
    firmware_repo: FirmwareRepo,
) -> None:  # fmt: skip
    result = lk("fetch", *PI4, *tag, *cfg, "--compress", "xz")
    assert result.code == 0, result.err
    entries = files_entries(config)
    link = entries["/lib/firmware/brcm/brcmfmac43455-sdio.bin.xz"]
    assert link["symlink"] == "../cypress/cyfmac43455-sdio.bin.xz"
    assert "/lib/firmware/cypress/cyfmac43455-sdio.bin" not in entries
    staged = project / "firmware" / "cypress" / "cyfmac43455-sdio.bin.xz"
    with lzma.open(staged) as stream:
        assert stream.read() == firmware_repo.files["cypress/cyfmac43455-sdio.bin"]
    assert staged.read_bytes()[6:8] == b"\x00\x01"  # stream flags: CRC32 check
    mtime = config.stat().st_mtime_ns
    assert lk("fetch", *PI4, *tag, *cfg, "--compress", "xz", "--check").code == 0
    assert config.stat().st_mtime_ns == mtime


def test_raw_files_stay_uncompressed(
    lk: Lk, cfg: tuple[str, ...], tag: tuple[str, ...], config: Path
) -> None:
    result = lk("fetch", "amdgpu/psp_13_0_0_ta.bin", "amdgpu/big_blob.bin", *tag, *cfg,
                "--compress", "zstd")  # fmt: skip
    assert result.code == 0, result.err
    entries = files_entries(config)
    assert "/lib/firmware/amdgpu/psp_13_0_0_ta.bin" in entries  # RawFile: as it is
    assert "/lib/firmware/amdgpu/big_blob.bin.zst" in entries


def test_with_licences(
    lk: Lk, cfg: tuple[str, ...], config: Path, project: Path, firmware_repo: FirmwareRepo
) -> None:
    result = lk("fetch", "brcmfmac43602", "--with-licences", *cfg)
    assert result.code == 0, result.err
    entry = files_entries(config)["/lib/firmware/LICENCE.broadcom_bcm43xx"]
    licence = firmware_repo.files["LICENCE.broadcom_bcm43xx"]
    assert (project / str(entry["source"])).read_bytes() == licence


def test_missing_everywhere_exits_3_and_writes_nothing(
    lk: Lk, cfg: tuple[str, ...], config: Path, project: Path, server: MirrorServer
) -> None:
    before = config.read_bytes()
    result = lk("fetch", "iwlwifi-cc-a0", *cfg, "--mirror", server.gitlab)
    assert result.code == 3
    assert "intel/iwlwifi/iwlwifi-cc-a0-77.ucode" in result.err and PINNED in result.err
    assert config.read_bytes() == before
    assert not (project / "firmware").exists()


def test_lock_mismatch_exits_4(lk: Lk, cfg: tuple[str, ...], config: Path, project: Path) -> None:
    assert lk("fetch", "brcmfmac43602", *cfg).code == 0
    lock = project / "lkfirmware.lock"
    data = json.loads(lock.read_text())
    data["files"][SEED_FILE]["sha256"] = "0" * 64
    lock.write_text(json.dumps(data))
    before = config.read_bytes()
    result = lk("fetch", "brcmfmac43602", *cfg, "--cache-dir", project / "fresh-cache")
    assert result.code == 4, result.err
    assert config.read_bytes() == before
    locked = lock.read_bytes()
    result = lk("fetch", "brcmfmac43602", *cfg, "--check", "--cache-dir", project / "cache-3")
    assert result.code == 4, result.err  # --check verifies against the lock file too
    assert lock.read_bytes() == locked


def test_unknown_query_exits_2(lk: Lk, config: Path) -> None:
    result = lk("fetch", "brcmfmac4345", "--config", config)
    assert result.code == 2 and "brcmfmac43455" in result.err


def test_kernel_modules_and_sync(
    lk: Lk, cfg: tuple[str, ...], tag: tuple[str, ...], config: Path, tmp_path: Path
) -> None:
    modules = tmp_path / "root" / "lib" / "modules" / "6.12.0-test"
    brcmfmac = module_fields(
        "brcmfmac",
        firmware=["brcm/brcmfmac43602-pcie.bin", "brcm/brcmfmac4350-pcie.bin"],
        depends=["brcmutil"],
    )
    write_module(modules / "kernel" / "brcmfmac.ko.xz", make_module(brcmfmac))
    write_module(modules / "kernel" / "brcmutil.ko.zst", make_module(module_fields("brcmutil")))
    r8169 = module_fields("r8169", firmware=["rtl_nic/rtl8168h-2.fw"])
    write_module(modules / "kernel" / "r8169.ko", make_module(r8169))

    result = lk("modules", modules)
    assert result.code == 0
    assert "brcmfmac  (depends: brcmutil)\n    brcm/brcmfmac43602-pcie.bin\n" in result.out

    config.write_text(
        config.read_text().replace(
            "onboot:\n",
            "onboot:\n"
            "  - name: modprobe\n"
            "    image: linuxkit/modprobe:v1\n"
            '    command: ["modprobe", "-a", "brcmfmac", "btusb"]\n'
            "  - name: nic\n"
            "    image: linuxkit/modprobe:v1\n"
            '    command: ["/bin/sh", "-c", "modprobe r8169 && echo ok"]\n',
            1,
        )
    )
    sync = ("sync", config, "--kernel", modules, *tag, *cfg[2:])
    result = lk(*sync)
    # brcmfmac4350-pcie.bin is not in the generated repository: a warning, not an error
    assert result.code == 0, result.err
    assert "missing firmware brcm/brcmfmac4350-pcie.bin for module brcmfmac" in result.err
    assert "btusb" in result.err
    assert set(files_entries(config)) == {
        f"/lib/firmware/{SEED_FILE}",
        "/lib/firmware/rtl_nic/rtl8168h-2.fw",
    }
    assert lk(*sync, "--check").code == 0
    assert lk(*sync, "--strict").code == 3

    # The config stops loading the modules: sync --prune takes their firmware out.
    text = config.read_text()
    config.write_text(text.replace('"brcmfmac", "btusb"', '"btusb"').replace("r8169", "e1000"))
    result = lk(*sync, "--prune")
    assert result.code == 0, result.err
    assert "loads no module that needs firmware" in result.err
    assert files_entries(config) == {}

    # fetch --kernel --modules: the named module and its dependencies
    result = lk("fetch", "--kernel", modules, "--modules", "r8169", *tag, *cfg[2:4], "--json")
    assert result.code == 0
    assert [record["path"] for record in json.loads(result.out)] == ["rtl_nic/rtl8168h-2.fw"]


def test_cache_commands(lk: Lk, project: Path, server: MirrorServer) -> None:
    assert lk("fetch", "brcmfmac43602", "--mirror", server.cgit, "--quiet").code == 0
    result = lk("cache", "info")
    assert result.code == 0 and "blobs: 1" in result.out
    assert lk("cache", "verify").code == 0
    result = lk("cache", "prune", "--keep-ref", "another-ref", "--dry-run")
    assert result.code == 0 and "would free" in result.out
    assert "blobs: 1" in lk("cache", "info").out
    assert lk("cache", "prune", "--keep-ref", "another-ref").code == 0
    assert "blobs: 0" in lk("cache", "info").out
    assert lk("fetch", "brcmfmac43602", "--mirror", server.cgit, "--quiet").code == 0
    assert lk("cache", "clear").code == 0
    assert "blobs: 0" in lk("cache", "info").out
    result = lk("fetch", "brcmfmac43602", "--offline", "--quiet")
    assert result.code == 3 and SEED_FILE in result.err


def test_git_source_end_to_end(
    lk: Lk, tag: tuple[str, ...], config: Path, project: Path, firmware_repo: FirmwareRepo
) -> None:
    git = ("--source", "git", "--git-url", firmware_repo.file_url, "--config", config, "--quiet")
    result = lk("fetch", *PI4, *tag, *git)
    assert result.code == 0, result.err
    blob = "cypress/cyfmac43455-sdio.bin"
    assert (project / "firmware" / blob).read_bytes() == firmware_repo.files[blob]
    assert "/lib/firmware/brcm/brcmfmac43455-sdio.bin" in files_entries(config)
    mtime = config.stat().st_mtime_ns
    assert lk("fetch", *PI4, *tag, *git).code == 0
    assert config.stat().st_mtime_ns == mtime


def test_local_tree_source_end_to_end(
    lk: Lk, config: Path, project: Path, firmware_repo: FirmwareRepo, tmp_path: Path
) -> None:
    """An installed tree with compressed files."""
    tree = tmp_path / "lib-firmware"
    for path, data in firmware_repo.files.items():
        target = tree / (path + ".xz")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(lzma.compress(data, check=lzma.CHECK_CRC32))
    local = ("--source", "dir", "--mirror", tree)
    result = lk("fetch", "rtl8168h", "brcmfmac43602", *local, "--config", config, "--quiet")
    assert result.code == 0, result.err
    for path in ("rtl_nic/rtl8168h-2.fw", SEED_FILE):
        assert (project / "firmware" / path).read_bytes() == firmware_repo.files[path]
    result = lk("fetch", "r8169", "--source", "dir", "--mirror", tmp_path / "nowhere")
    assert result.code == 2 and "nowhere" in result.err


def test_mirrors_from_the_environment(
    lk: Lk, project: Path, server: MirrorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LKFIRMWARE_MIRRORS", server.gitlab)
    result = lk("fetch", "rtl8168h", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)[0]["path"] == "rtl_nic/rtl8168h-2.fw"
    assert server.count("rtl_nic/rtl8168h-2.fw") == 1


def test_kernel_tar_and_the_example_makefile(
    lk: Lk, cfg: tuple[str, ...], config: Path, server: MirrorServer, tmp_path: Path,
    firmware_repo: FirmwareRepo,
) -> None:  # fmt: skip
    root = tmp_path / "kernel"
    modules = root / "lib" / "modules" / "6.12.59-linuxkit"
    r8169 = module_fields("r8169", firmware=["rtl_nic/rtl8168h-2.fw"], version="6.12.59-linuxkit")
    write_module(modules / "kernel" / "r8169.ko.gz", make_module(r8169))
    kernel_tar = make_kernel_tar(root, tmp_path / "kernel.tar")
    result = lk("fetch", "--kernel", kernel_tar, "--all-modules", *cfg)
    assert result.code == 0, result.err
    assert "/lib/firmware/rtl_nic/rtl8168h-2.fw" in files_entries(config)

    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    work = tmp_path / "wifi"
    shutil.copytree(ROOT / "examples" / "wifi", work)
    variables = [
        f"LKFIRMWARE={sys.executable} -m lkfirmware",
        f"FIRMWARE=brcmfmac43602 --mirror {server.cgit}",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for target in ("firmware", "check"):
        done = subprocess.run([make, "-C", work, target, *variables], env=env, capture_output=True)
        assert done.returncode == 0, done.stderr
    assert (work / "firmware" / SEED_FILE).read_bytes() == firmware_repo.files[SEED_FILE]
    assert f"/lib/firmware/{SEED_FILE}" in files_entries(work / "linuxkit.yml")


def test_prune_drops_entries_and_staged_files_no_longer_resolved(
    lk: Lk, cfg: tuple[str, ...], config: Path, project: Path
) -> None:
    assert lk("fetch", "brcmfmac43602", "rtl8168h", *cfg).code == 0
    assert len(files_entries(config)) == 2
    result = lk("fetch", "rtl8168h", *cfg, "--prune")
    assert result.code == 0, result.err
    assert set(files_entries(config)) == {"/lib/firmware/rtl_nic/rtl8168h-2.fw"}
    assert not (project / "firmware" / SEED_FILE).exists()
    assert (project / "firmware" / "rtl_nic" / "rtl8168h-2.fw").is_file()


def test_the_seed_sample_with_two_files_keys(lk: Lk, cfg: tuple[str, ...], config: Path) -> None:
    shutil.copyfile(SHARED / "corpus" / "wifi-seed.yml", config)
    before = config.read_bytes()
    result = lk("fetch", "brcmfmac43602", *cfg)
    assert result.code == 2
    assert "files" in result.err and "25" in result.err and "26" in result.err
    assert config.read_bytes() == before
    result = lk("fetch", "brcmfmac43602", *cfg[:-1], "--merge-duplicate-files")
    assert result.code == 0, result.err
    text = config.read_text()
    assert text.count("\nfiles:") == 1
    entries = files_entries(config)  # loads: no duplicate key left
    assert entries[f"/lib/firmware/{SEED_FILE}"]["mode"] == "0644"
    assert "/lib/firmware/<firmware>" in entries  # the user's own entry stays
    assert "/lib/firmware/<firmware> has no mode" in result.err  # ... and is risky
    assert linuxkit_problems(text) == []


def test_invalid_yaml_exits_2_with_line_and_column_before_any_download(
    lk: Lk, cfg: tuple[str, ...], config: Path, server: MirrorServer
) -> None:
    config.write_text("kernel:\n  image: [unclosed\nfiles: []\n")
    before = config.read_bytes()
    result = lk("fetch", "brcmfmac43602", *cfg)
    assert result.code == 2
    assert f"{config}:3:6: invalid YAML" in result.err
    assert config.read_bytes() == before
    assert server.requests == []


def test_driver_map_from_a_whence_url(server: MirrorServer, tmp_path: Path) -> None:
    from lkfirmware.catalog import Catalog
    from scripts.update_driver_map import main as update_map

    output = tmp_path / "map.json"
    url = server.gitlab.replace("{path}", "WHENCE")
    assert update_map(["--whence-url", url, "--ref", PINNED, "--output", str(output)]) == 0
    catalog = Catalog.from_map(json.loads(output.read_text()))
    assert catalog.links["nvidia/ad103"] == "ad102"
    assert catalog.provenance["whence_source"] == url


def test_prune_touches_nothing_it_did_not_stage(
    lk: Lk, server: MirrorServer, config: Path, project: Path
) -> None:
    """Even with the project folder as --dest, --prune removes only what dropped
    entries pointed to."""
    mine = project / "README.md"
    mine.write_text("my notes\n")
    local = ("--config", config, "--mirror", server.cgit, "--quiet", "--dest", project)
    assert lk("fetch", "brcmfmac43602", "rtl8168h", *local).code == 0
    assert (project / SEED_FILE).is_file()
    result = lk("fetch", "rtl8168h", *local, "--prune", "--dry-run")
    assert result.code == 0 and result.out.count("would remove") == 1
    assert lk("fetch", "rtl8168h", *local, "--prune").code == 0
    assert not (project / SEED_FILE).exists() and not (project / "brcm").exists()
    assert mine.read_text() == "my notes\n" and config.is_file()
    assert (project / "lkfirmware.lock").is_file()
    assert (project / "rtl_nic" / "rtl8168h-2.fw").is_file()


def test_a_local_tree_does_not_answer_for_a_linux_firmware_ref(
    lk: Lk, server: MirrorServer, tmp_path: Path, firmware_repo: FirmwareRepo
) -> None:
    tree = tmp_path / "installed"
    (tree / "rtl_nic").mkdir(parents=True)
    (tree / "rtl_nic" / "rtl8168h-2.fw").write_bytes(b"another version\n")
    result = lk("fetch", "rtl8168h", "--source", "dir", "--mirror", tree, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)[0]["size"] == len(b"another version\n")
    result = lk("fetch", "rtl8168h", "--mirror", server.cgit, "--json")
    assert result.code == 0, result.err
    location = json.loads(result.out)[0]["location"]
    assert Path(location).read_bytes() == firmware_repo.files["rtl_nic/rtl8168h-2.fw"]


def test_an_edited_hard_link_is_caught(lk: Lk, cfg: tuple[str, ...], project: Path) -> None:
    assert lk("fetch", "brcmfmac43602", *cfg).code == 0
    staged = project / "firmware" / SEED_FILE
    staged.chmod(0o644)
    with staged.open("r+b") as stream:  # an edit in place, as `dd conv=notrunc` does
        stream.seek(100)
        stream.write(b"X")
    result = lk("fetch", "brcmfmac43602", *cfg, "--check")
    assert result.code == 4 and "cache verify --repair" in result.err
    assert lk("cache", "verify").code == 4
    assert lk("cache", "verify", "--repair").code == 0
    staged.unlink()
    assert lk("fetch", "brcmfmac43602", *cfg).code == 0
    assert lk("fetch", "brcmfmac43602", *cfg, "--check").code == 0


def test_a_read_only_config_is_refused(
    lk: Lk, cfg: tuple[str, ...], config: Path, project: Path
) -> None:
    config.chmod(0o444)
    before = config.read_bytes()
    result = lk("fetch", "brcmfmac43602", *cfg)
    assert result.code == 2 and "read-only" in result.err
    assert config.read_bytes() == before and not (project / "firmware").exists()
    config.chmod(0o644)
    assert lk("fetch", "brcmfmac43602", *cfg).code == 0
    config.chmod(0o444)  # up to date: nothing to write, so no complaint
    assert lk("fetch", "brcmfmac43602", *cfg).code == 0


def test_parallel_fetches_into_one_config_lose_nothing(
    config: Path, server: MirrorServer, firmware_repo: FirmwareRepo
) -> None:
    """As `make -j` would run them: four processes, four files, one linuxkit.yml."""
    paths = [
        "rtl_nic/rtl8168h-1.fw",
        "rtl_nic/rtl8125a-3.fw",
        "nvidia/ad102/gsp/gsp-570.144.bin",
        "brcm/brcmfmac43602-pcie.ap.bin",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    options = ["--ref", firmware_repo.tag, "--config", str(config), "--mirror", server.cgit]
    runs = [
        subprocess.Popen([sys.executable, "-m", "lkfirmware", "fetch", path, *options, "--quiet"],
                         env=env, stderr=subprocess.PIPE)
        for path in paths
    ]  # fmt: skip
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    assert set(files_entries(config)) == {f"/lib/firmware/{path}" for path in paths}


def test_options_that_need_a_yml_and_an_early_output_check(
    lk: Lk, project: Path, server: MirrorServer
) -> None:
    result = lk("fetch", "brcmfmac43602", "--dest", project / "x", "--compress", "xz")
    assert result.code == 2 and "--dest, --compress only apply" in result.err
    mine = project / "firmware.yml"
    mine.write_text("files: []\n")  # hand-written: not lkfirmware's to overwrite
    result = lk("fetch", "brcmfmac43602", "--output", mine, "--mirror", server.cgit)
    assert result.code == 2 and server.requests == []
    assert lk("cache", "prune", "--older-than-days", "-1").code == 2


def test_the_lock_file_keeps_its_ref(
    lk: Lk, config: Path, server: MirrorServer, firmware_repo: FirmwareRepo
) -> None:
    """A build with a lock file keeps its linux-firmware ref without --ref."""
    local = ("--config", config, "--mirror", server.cgit, "--quiet")
    assert lk("fetch", "rtl8168h", "--ref", firmware_repo.tag, *local).code == 0
    assert lk("fetch", "brcmfmac43602", *local).code == 0
    lock = json.loads((config.parent / "lkfirmware.lock").read_text())
    assert lock["ref"] == firmware_repo.tag and SEED_FILE in lock["files"]


def test_licences_stay_uncompressed(
    lk: Lk, cfg: tuple[str, ...], config: Path, tag: tuple[str, ...]
) -> None:
    result = lk("fetch", "brcmfmac43602", *tag, *cfg, "--with-licences", "--compress", "xz")
    assert result.code == 0, result.err
    entries = files_entries(config)
    assert f"/lib/firmware/{SEED_FILE}.xz" in entries
    assert "/lib/firmware/LICENCE.broadcom_bcm43xx" in entries


def test_switching_compression_replaces_the_entries(
    lk: Lk, cfg: tuple[str, ...], config: Path, tag: tuple[str, ...]
) -> None:
    for compress in (("--compress", "xz"), ("--compress", "zstd"), ()):
        result = lk("fetch", *PI4, *tag, *cfg, *compress)
        assert result.code == 0, result.err
        suffix = {"xz": ".xz", "zstd": ".zst"}[compress[1]] if compress else ""
        assert sorted(files_entries(config)) == sorted(
            f"/lib/firmware/{path}{suffix}"
            for path in (
                "brcm/brcmfmac43455-sdio.bin",
                "brcm/brcmfmac43455-sdio.clm_blob",
                "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt",
                "cypress/cyfmac43455-sdio.bin",
                "cypress/cyfmac43455-sdio.clm_blob",
            )
        )
