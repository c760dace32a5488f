"""A small linux-firmware-like git repository, generated for the tests.

It has what the real one has that matters to lkfirmware: a WHENCE with several
drivers and licences, files below directories, quoted names with spaces and commas,
links (relative, into another directory, with backslash-escaped spaces), a link to a
directory, a ``RawFile:``, licence files, and one larger blob.  Links are not stored in
git, exactly as upstream.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

WHENCE = """\
WHENCE for the lkfirmware test repository.

--------------------------------------------------------------------------

Driver: brcmfmac - Broadcom 802.11n fullmac wireless LAN driver.

File: brcm/brcmfmac43602-pcie.bin
File: brcm/brcmfmac43602-pcie.ap.bin
Version: 7.35.177.61

Licence: Redistributable. See LICENCE.broadcom_bcm43xx for details.
SPDX-License-Identifier: LicenseRef-broadcom_bcm43xx

File: cypress/cyfmac43455-sdio.bin
Link: brcm/brcmfmac43455-sdio.bin -> ../cypress/cyfmac43455-sdio.bin
File: cypress/cyfmac43455-sdio.clm_blob
Link: brcm/brcmfmac43455-sdio.clm_blob -> ../cypress/cyfmac43455-sdio.clm_blob

Licence: Redistributable. See LICENCE.cypress for details.

File: "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt"
Link: brcm/brcmfmac43455-sdio.raspberrypi,5-model-b.txt -> brcmfmac43455-sdio.raspberrypi,4-model-b.txt
Link: brcm/brcmfmac43455-sdio.Raspberry\\ Pi\\ Foundation-Raspberry\\ Pi\\ 4\\ Model\\ B.txt -> brcmfmac43455-sdio.raspberrypi,4-model-b.txt
File: "brcm/brcmfmac43455-sdio.MINIX-NEO Z83-4.txt"

Licence: GPLv2. See GPL-2 for details.

--------------------------------------------------------------------------

Driver: r8169 - RealTek 8169/8168/8101 ethernet driver.

File: rtl_nic/rtl8168h-1.fw
File: rtl_nic/rtl8168h-2.fw
Version: 0.0.2
File: rtl_nic/rtl8125a-3.fw

Licence: Redistributable. See LICENCE.rtl_nic for details.

--------------------------------------------------------------------------

Driver: nouveau - NVIDIA GPU driver

File: nvidia/ad102/gsp/booter_load-570.144.bin
File: nvidia/ad102/gsp/gsp-570.144.bin
Link: nvidia/ad103 -> ad102

Licence: Redistributable. See LICENCE.nvidia for details.

--------------------------------------------------------------------------

Driver: amdgpu - AMD GPU driver

RawFile: amdgpu/psp_13_0_0_ta.bin
File: amdgpu/big_blob.bin

Licence: Redistributable. See LICENSE.amdgpu for details.
"""

LICENCE_FILES = (
    "LICENCE.broadcom_bcm43xx",
    "LICENCE.cypress",
    "GPL-2",
    "LICENCE.rtl_nic",
    "LICENCE.nvidia",
    "LICENSE.amdgpu",
)


def _content(path: str, size: int) -> bytes:
    """Deterministic, path-specific bytes (so a blob served for the wrong path is caught)."""
    seed = hashlib.sha256(path.encode()).digest()
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:size])


DEFAULT_SIZES: dict[str, int] = {
    "brcm/brcmfmac43602-pcie.bin": 635_449,
    "brcm/brcmfmac43602-pcie.ap.bin": 1_000,
    "cypress/cyfmac43455-sdio.bin": 70_000,
    "cypress/cyfmac43455-sdio.clm_blob": 2_700,
    "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt": 2_074,
    "brcm/brcmfmac43455-sdio.MINIX-NEO Z83-4.txt": 1_500,
    "rtl_nic/rtl8168h-1.fw": 4_000,
    "rtl_nic/rtl8168h-2.fw": 4_100,
    "rtl_nic/rtl8125a-3.fw": 3_800,
    "nvidia/ad102/gsp/booter_load-570.144.bin": 40_000,
    "nvidia/ad102/gsp/gsp-570.144.bin": 90_000,
    "amdgpu/psp_13_0_0_ta.bin": 5_000,
    "amdgpu/big_blob.bin": 3_000_000,
}


def git_blob_id(data: bytes) -> str:
    """The id git gives a blob with these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FirmwareRepo:
    """A generated repository: its work tree, its bare clone, and what it holds."""

    work: Path
    bare: Path
    commit: str
    tag: str
    files: dict[str, bytes] = field(default_factory=dict)
    """Every file stored in git (firmware, licences and WHENCE) by path."""
    links: dict[str, str] = field(default_factory=dict)
    """Every WHENCE link: name -> target as written."""

    @property
    def whence(self) -> bytes:
        return self.files["WHENCE"]

    @property
    def file_url(self) -> str:
        return self.bare.as_uri()


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` with a fixed identity and date; its output, stripped."""
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="lkfirmware tests",
        GIT_AUTHOR_EMAIL="tests@example.invalid",
        GIT_COMMITTER_NAME="lkfirmware tests",
        GIT_COMMITTER_EMAIL="tests@example.invalid",
        GIT_AUTHOR_DATE="2025-12-15T00:00:00Z",
        GIT_COMMITTER_DATE="2025-12-15T00:00:00Z",
    )
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_firmware_repo(
    root: Path, sizes: dict[str, int] | None = None, tag: str = "20251215"
) -> FirmwareRepo:
    """Create the repository below ``root`` (``root/work`` and ``root/bare.git``)."""
    work = root / "work"
    work.mkdir(parents=True)
    files: dict[str, bytes] = {"WHENCE": WHENCE.encode()}
    for path, size in (sizes or DEFAULT_SIZES).items():
        files[path] = _content(path, size)
    for name in LICENCE_FILES:
        files[name] = f"Licence text of {name}.\n".encode()
    for path, data in files.items():
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "linux-firmware test tree")
    git(work, "tag", tag)
    commit = git(work, "rev-parse", "HEAD")
    bare = root / "bare.git"
    git(root, "clone", "-q", "--bare", str(work), str(bare))
    git(bare, "config", "uploadpack.allowFilter", "true")
    git(bare, "config", "uploadpack.allowAnySHA1InWant", "true")
    links = {
        "brcm/brcmfmac43455-sdio.bin": "../cypress/cyfmac43455-sdio.bin",
        "brcm/brcmfmac43455-sdio.clm_blob": "../cypress/cyfmac43455-sdio.clm_blob",
        "brcm/brcmfmac43455-sdio.raspberrypi,5-model-b.txt": "brcmfmac43455-sdio.raspberrypi,4-model-b.txt",
        "brcm/brcmfmac43455-sdio.Raspberry Pi Foundation-Raspberry Pi 4 Model B.txt": "brcmfmac43455-sdio.raspberrypi,4-model-b.txt",
        "nvidia/ad103": "ad102",
    }
    return FirmwareRepo(work=work, bare=bare, commit=commit, tag=tag, files=files, links=links)
