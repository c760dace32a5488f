"""`lkfirmware resolve` and `lkfirmware drivers`, in-process and as an installed command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lkfirmware.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_resolve_prints_the_seed_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "resolve", "brcmfmac43602") == (0, "brcm/brcmfmac43602-pcie.bin\n", "")


def test_resolve_board_prints_links_with_targets(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "resolve", "brcmfmac43455", "--board", "raspberrypi,4-model-b")
    assert code == 0
    assert out.splitlines() == [
        "brcm/brcmfmac43455-sdio.bin -> ../cypress/cyfmac43455-sdio.bin",
        "brcm/brcmfmac43455-sdio.clm_blob -> ../cypress/cyfmac43455-sdio.clm_blob",
        "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt",
        "cypress/cyfmac43455-sdio.bin",
        "cypress/cyfmac43455-sdio.clm_blob",
    ]


def test_resolve_missing_board_goes_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "resolve", "brcmfmac43455")
    assert code == 0
    assert "cypress/cyfmac43455-sdio.bin" in out
    assert err.startswith("note: brcm/brcmfmac43455-sdio needs a board-specific NVRAM file")


def test_resolve_json_records(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "resolve", "brcmfmac43455", "--board", "raspberrypi,4-model-b", "--json"
    )
    records = {r["path"]: r for r in json.loads(out)}
    assert code == 0
    link = records["brcm/brcmfmac43455-sdio.bin"]
    assert (link["kind"], link["target"], link["resolved"]) == (
        "link",
        "../cypress/cyfmac43455-sdio.bin",
        "cypress/cyfmac43455-sdio.bin",
    )
    blob = records["cypress/cyfmac43455-sdio.bin"]
    assert (blob["kind"], blob["drivers"], blob["licence"]) == (
        "file",
        ["brcmfmac"],
        "LICENCE.cypress",
    )
    assert set(blob) >= {"size", "git_id"}


def test_unknown_query_exits_2_with_suggestions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "resolve", "brcmfmac4345")
    assert (code, out) == (2, "")
    assert "brcmfmac43455" in err


def test_drivers_lists_descriptions_and_counts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "drivers", "brcm*")
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("brcmfmac "))
    assert "74 files, 62 links" in line
    assert "Broadcom 802.11n fullmac" in line
    assert run(capsys, "drivers", "zzz-nothing")[0] == 2


def test_resolve_does_not_import_heavy_libraries(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from lkfirmware.cli import main\n"
        "assert main(['resolve', 'brcmfmac43602']) == 0\n"
        "heavy = {'requests', 'git', 'ruamel', 'ruamel.yaml', 'tqdm', 'filelock', 'urllib3'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines()[-1] == "[]"


def test_installed_command_works_from_another_directory(tmp_path: Path) -> None:
    """The console script of this environment, run outside the checkout (CI installs
    the package non-editable, so this is the wheel's copy of the driver map)."""
    command = shutil.which("lkfirmware", path=str(Path(sys.executable).parent))
    if command is None:
        pytest.skip("lkfirmware is not installed in this environment")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LKFIRMWARE_DRIVER_MAP")}
    result = subprocess.run(
        [command, "resolve", "brcmfmac43602"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert (result.returncode, result.stdout) == (0, "brcm/brcmfmac43602-pcie.bin\n"), result.stderr
