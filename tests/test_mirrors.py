"""Mirror templates: presets, the environment, validation, and URL encoding."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from lkfirmware.errors import UsageError
from lkfirmware.mirrors import PRESETS, blob_url, mirror_templates

CGIT = "https://cgit.example/linux-firmware.git/plain/{path}?h={ref}"
GITLAB = PRESETS["gitlab"]


def test_default_is_kernel_org() -> None:
    assert mirror_templates(None, env={}) == [PRESETS["kernel.org"]]
    assert mirror_templates([], env={}) == [PRESETS["kernel.org"]]
    assert PRESETS["kernel.org"] == (
        "https://git.kernel.org/pub/scm/linux/kernel/git/firmware/linux-firmware.git"
        "/plain/{path}?h={ref}"
    )


def test_presets_and_templates_in_order_without_duplicates() -> None:
    given = ["gitlab", CGIT, "kernel.org", "gitlab"]
    assert mirror_templates(given, env={}) == [GITLAB, CGIT, PRESETS["kernel.org"]]


def test_environment_separated_by_commas_or_whitespace() -> None:
    env = {"LKFIRMWARE_MIRRORS": f" gitlab,{CGIT}\n  kernel.org ,, "}
    assert mirror_templates(None, env=env) == [GITLAB, CGIT, PRESETS["kernel.org"]]
    # --mirror wins over the environment.
    assert mirror_templates([CGIT], env=env) == [CGIT]
    assert mirror_templates(None, env={"LKFIRMWARE_MIRRORS": "  "}) == [PRESETS["kernel.org"]]


@pytest.mark.parametrize(
    ("template", "complaint"),
    [
        ("https://example.org/firmware/", "no {path}"),
        ("https://example.org/{ref}/{name}", "unknown placeholder"),
        ("/lib/firmware", "not an http(s) URL"),
        ("file:///lib/firmware/{path}", "not an http(s) URL"),
        ("kernel-org", "not an http(s) URL"),
    ],
)
def test_bad_templates_are_refused(template: str, complaint: str) -> None:
    with pytest.raises(UsageError) as caught:
        mirror_templates([template], env={})
    assert complaint in str(caught.value)
    assert template in str(caught.value)
    assert "kernel.org" in str(caught.value)  # the message lists the presets


def test_bad_environment_names_the_variable() -> None:
    with pytest.raises(UsageError, match="LKFIRMWARE_MIRRORS"):
        mirror_templates(None, env={"LKFIRMWARE_MIRRORS": "gitlab nonsense"})


@pytest.mark.parametrize(
    ("path", "encoded"),
    [
        ("brcm/brcmfmac43602-pcie.bin", "brcm/brcmfmac43602-pcie.bin"),
        (
            "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt",
            "brcm/brcmfmac43455-sdio.raspberrypi%2C4-model-b.txt",
        ),
        (
            "brcm/brcmfmac43455-sdio.MINIX-NEO Z83-4.txt",
            "brcm/brcmfmac43455-sdio.MINIX-NEO%20Z83-4.txt",
        ),
        ("a/b#c?d&e=f+g%h;i.bin", "a/b%23c%3Fd%26e%3Df%2Bg%25h%3Bi.bin"),
        ("intel/Grüße ü.bin", "intel/Gr%C3%BC%C3%9Fe%20%C3%BC.bin"),
        ("x/a:b@c~d_e.f", "x/a%3Ab%40c~d_e.f"),
    ],
)
def test_paths_are_encoded_per_segment(path: str, encoded: str) -> None:
    assert blob_url(GITLAB, path, "20251215") == (
        f"https://gitlab.com/kernel-firmware/linux-firmware/-/raw/20251215/{encoded}"
    )
    url = blob_url(CGIT, path, "20251215")
    parts = urlsplit(url)
    # What a server decodes is exactly the path and the ref.
    assert unquote(parts.path.removeprefix("/linux-firmware.git/plain/")) == path
    assert parse_qs(parts.query) == {"h": ["20251215"]}


def test_refs_are_encoded_and_keep_slashes() -> None:
    url = blob_url(CGIT, "a.bin", "topic/a&b=c #1")
    assert url.endswith("plain/a.bin?h=topic/a%26b%3Dc%20%231")
    assert parse_qs(urlsplit(url).query) == {"h": ["topic/a&b=c #1"]}
    assert blob_url(GITLAB, "a.bin", "topic/x").endswith("/-/raw/topic/x/a.bin")


@pytest.mark.parametrize("path", ["", "/abs.bin", "a/../../etc/passwd", "a//b", "./a", "a/"])
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(UsageError):
        blob_url(GITLAB, path, "main")


@pytest.mark.parametrize("ref", ["", "../main", "a//b"])
def test_unsafe_refs_are_refused(ref: str) -> None:
    with pytest.raises(UsageError):
        blob_url(GITLAB, "a.bin", ref)
