"""The WHENCE parser on the real index and on small malformed ones."""

from __future__ import annotations

import pytest

from lkfirmware.errors import WhenceError
from lkfirmware.whence import parse_whence
from tests.conftest import SHARED

REAL_WHENCE = SHARED / "linux-firmware" / "WHENCE"


@pytest.fixture(scope="module")
def real_whence_text() -> str:
    if not REAL_WHENCE.exists():
        pytest.skip(f"{REAL_WHENCE} is not here")
    return REAL_WHENCE.read_text(encoding="utf-8")


def test_real_whence_parses_with_the_published_counts(real_whence_text: str) -> None:
    whence = parse_whence(real_whence_text)
    regular = [f for f in whence.files.values() if not f.raw]
    raw = [f for f in whence.files.values() if f.raw]
    assert (len(regular), len(raw), len(whence.links)) == (4540, 111, 2603)


def test_real_whence_directory_links_and_spaces(real_whence_text: str) -> None:
    whence = parse_whence(real_whence_text)
    directory_links = [name for name in whence.links if whence.resolve(name) not in whence.files]
    assert len(directory_links) == 16
    assert whence.resolve("nvidia/ad103") == "nvidia/ad102"
    assert whence.resolve("nvidia/ad103/gsp/booter_load-535.113.01.bin") == (
        "nvidia/ad102/gsp/booter_load-535.113.01.bin"
    )
    dmi = "brcm/brcmfmac43455-sdio.Raspberry Pi Foundation-Raspberry Pi 4 Model B.txt"
    assert whence.resolve(dmi) == "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt"
    assert "brcm/brcmfmac43455-sdio.MINIX-NEO Z83-4.txt" in whence.files


def test_real_whence_licences_and_drivers(real_whence_text: str) -> None:
    whence = parse_whence(real_whence_text)
    bcm = whence.files["brcm/brcmfmac43602-pcie.bin"]
    assert bcm.licence is not None
    assert bcm.licence.files == ("LICENCE.broadcom_bcm43xx",)
    assert bcm.licence.spdx == "LicenseRef-LICENCE.broadcom_bcm43xx"
    assert whence.drivers_of(bcm.section) == ("brcmfmac",)
    cypress = whence.files["cypress/cyfmac43455-sdio.bin"]
    assert cypress.licence is not None and cypress.licence.files == ("LICENCE.cypress",)
    # one section with four drivers
    multi = [s for s in whence.sections if len(s.drivers) > 1]
    assert [name for name, _ in multi[0].drivers] == ["cx231xx", "cx23418", "cx23885", "cx23840"]


SMALL = """\
Driver: good - A good driver
(continued description)

File: a/one.bin
Version: 1.0
File: "a/two words.bin"
RawFile: a/raw.bin
Link: b/alias.bin -> ../a/one.bin
Link: b/spaced\\ name.bin -> ../a/two\\ words.bin
Link: chain.bin -> b/alias.bin
Link: adir -> a

License: Redistributable. See LICENSE.good and NOTICE.good for details.
SPDX-License-Identifier: LicenseRef-good
---------------------------------------------------------------------------
Driver: other - no licence
File: c/three.bin
"""


def test_small_whence_every_construct() -> None:
    whence = parse_whence(SMALL)
    assert set(whence.files) == {"a/one.bin", "a/two words.bin", "a/raw.bin", "c/three.bin"}
    assert whence.files["a/raw.bin"].raw
    assert whence.files["a/one.bin"].version == "1.0"
    assert whence.sections[0].drivers == [("good", "A good driver (continued description)")]
    assert whence.resolve("b/spaced name.bin") == "a/two words.bin"
    assert whence.resolve("chain.bin") == "a/one.bin"
    assert whence.resolve("adir/raw.bin") == "a/raw.bin"
    licence = whence.files["a/one.bin"].licence
    assert licence is not None
    assert licence.files == ("LICENSE.good", "NOTICE.good")
    assert licence.spdx == "LicenseRef-good"
    assert whence.links["b/alias.bin"].licence == licence
    assert whence.files["c/three.bin"].licence is None


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("File: /etc/passwd\n", 3, "absolute path"),
        ("File: ../outside.bin\n", 3, "outside the firmware root"),
        ("File: a/../../x.bin\n", 3, "outside the firmware root"),
        ("Link: x.bin -> ../../etc/passwd\n", 3, "outside the firmware root"),
        ("Link: a/x.bin -> /etc/passwd\n", 3, "absolute target"),
        ("Link: a/x.bin -> missing.bin\n", 3, "does not declare"),
        ("File: a/one.bin\n", 3, "declared twice (first at line 2)"),
        ("Link: a/one.bin -> a/one.bin\n", 3, "declared twice"),
        ("Link: loop1 -> loop2\nLink: loop2 -> loop1\n", 3, "too many levels"),
        ("Link: a/x.bin without arrow\n", 3, "without ' -> '"),
    ],
)
def test_malformed_whence_is_rejected_with_the_line(body: str, line: int, words: str) -> None:
    text = "Driver: d - test\nFile: a/one.bin\n" + body
    with pytest.raises(WhenceError) as caught:
        parse_whence(text, where="WHENCE")
    assert f"WHENCE:{line}:" in str(caught.value)
    assert words in str(caught.value)


def test_link_escaping_through_a_directory_link_is_rejected() -> None:
    text = "File: a/x.bin\nLink: up -> .\nLink: a/esc.bin -> ../up/../../x.bin\n"
    with pytest.raises(WhenceError, match="outside the firmware root"):
        parse_whence(text)
