"""The modules a LinuxKit config loads: every way a config runs modprobe."""

from __future__ import annotations

import json

import pytest

from lkfirmware.errors import ConfigError
from lkfirmware.modprobe import (
    modprobe_modules,
    modules_in_script,
    modules_loaded_by,
    shell_commands,
)
from tests.conftest import SHARED


def onboot(*commands: object) -> str:
    """A config whose onboot entries run these commands (JSON arrays or strings)."""
    entries = "".join(
        f"  - name: step{n}\n    image: alpine\n    command: {json.dumps(command)}\n"
        for n, command in enumerate(commands)
    )
    return f"kernel:\n  image: k\nonboot:\n{entries}"


@pytest.mark.parametrize(
    ("command", "modules"),
    [
        (["modprobe", "brcmfmac"], ["brcmfmac"]),
        (["/sbin/modprobe", "brcmfmac"], ["brcmfmac"]),
        (["/usr/sbin/modprobe", "-q", "brcmfmac"], ["brcmfmac"]),
        (["modprobe", "-a", "brcmfmac", "btusb"], ["brcmfmac", "btusb"]),
        (["modprobe", "--all", "brcmfmac", "btusb"], ["brcmfmac", "btusb"]),
        (["modprobe", "-qa", "brcmfmac", "btusb"], ["brcmfmac", "btusb"]),
        (["modprobe", "brcmfmac", "-a", "btusb"], ["brcmfmac", "btusb"]),
        (["modprobe", "iwlwifi", "11n_disable=1", "swcrypto=1"], ["iwlwifi"]),
        (["modprobe", "-v", "iwlwifi", "power_save=0"], ["iwlwifi"]),
        (["modprobe", "brcmfmac", "-v"], ["brcmfmac"]),
        (["modprobe", "-C", "/etc/modprobe.d/wifi.conf", "brcmfmac"], ["brcmfmac"]),
        (["modprobe", "-C/etc/modprobe.d/wifi.conf", "brcmfmac"], ["brcmfmac"]),
        (["modprobe", "--config", "/etc/m.conf", "brcmfmac"], ["brcmfmac"]),
        (["modprobe", "--config=/etc/m.conf", "brcmfmac"], ["brcmfmac"]),
        (["modprobe", "-d", "/", "-S", "6.12.59", "brcmfmac"], ["brcmfmac"]),
        (["modprobe", "--set-version", "6.12.59", "brcmfmac"], ["brcmfmac"]),
        (["modprobe", "--verb", "brcmfmac"], ["brcmfmac"]),
        (["modprobe", "-a", "--", "brcmfmac", "-odd-name"], ["brcmfmac", "-odd-name"]),
        (["modprobe", "-r", "brcmfmac"], []),
        (["modprobe", "--remove", "brcmfmac"], []),
        (["modprobe", "-rv", "brcmfmac"], []),
        (["modprobe", "--rem", "brcmfmac"], []),
        (["modprobe", "--no-such-option", "brcmfmac"], []),
        (["modprobe", "brcmfmac", "-r"], []),
        (["modprobe", "-n", "brcmfmac"], []),
        (["modprobe", "--show-depends", "brcmfmac"], []),
        (["modprobe"], []),
        (["modprobe", "$MODULE"], []),
        (["/sbin/rmmod", "brcmfmac"], []),
        (["insmod-modprobe", "brcmfmac"], []),
        (["echo", "modprobe", "brcmfmac"], []),
    ],
)
def test_a_command_array(command: list[str], modules: list[str]) -> None:
    assert modules_loaded_by(onboot(command)) == modules


@pytest.mark.parametrize(
    ("command", "modules"),
    [
        (["sh", "-c", "modprobe brcmfmac"], ["brcmfmac"]),
        (["/bin/sh", "-c", "modprobe brcmfmac && wpa_supplicant -B"], ["brcmfmac"]),
        (["bash", "-ec", "modprobe a; modprobe -a b c"], ["a", "b", "c"]),
        (["sh", "-e", "-c", "modprobe a || true"], ["a"]),
        (["sh", "-o", "pipefail", "-c", "modprobe a | tee log"], ["a"]),
        (["sh", "-c", "modprobe a &\nmodprobe b\n"], ["a", "b"]),
        (["sh", "-c", "modprobe -r old; modprobe new"], ["new"]),
        (["sh", "-c", "modprobe a 2>&1 >/dev/null; modprobe b > /tmp/log"], ["a", "b"]),
        (["sh", "-c", "modprobe a &> /dev/null"], ["a"]),
        (["sh", "-c", "# modprobe commented\nmodprobe real # modprobe trailing"], ["real"]),
        (["sh", "-c", "echo 'modprobe quoted; still echo'; modprobe 'after'"], ["after"]),
        (["sh", "-c", 'echo "a && modprobe no"'], []),
        (["sh", "-c", "if ! modprobe m1; then modprobe m2; fi"], ["m1", "m2"]),
        (["sh", "-c", "(modprobe sub) && { modprobe grouped; }"], ["sub", "grouped"]),
        (["sh", "-c", "exec env -i PATH=/sbin busybox modprobe w"], ["w"]),
        (["sh", "-c", "X=1 /sbin/modprobe -q x p=1"], ["x"]),
        (["sh", "-c", "modprobe \\\n  continued"], ["continued"]),
        (["sh", "-c", "sh -c 'modprobe nested'"], ["nested"]),
        (["sh", "-c", "for m in a b; do modprobe $m; done"], []),
        (["sh", "-c", "modprobe 'unbalanced"], []),
        (["sh", "script.sh", "modprobe"], []),
        (["sh", "-c"], []),
        (["env", "modprobe", "viaenv"], ["viaenv"]),
        (["busybox", "modprobe", "viabusybox"], ["viabusybox"]),
        ("modprobe fromstring && true", ["fromstring"]),
    ],
)
def test_a_shell_script(command: list[str] | str, modules: list[str]) -> None:
    assert modules_loaded_by(onboot(command)) == modules


def test_services_and_onboot_in_first_seen_order_without_duplicates() -> None:
    text = """\
init:
  - linuxkit/modprobe:v1          # images: never commands
onboot:
  - name: one
    image: linuxkit/modprobe:v1
    command: ["modprobe", "-a", "brcmfmac", "btusb"]
services:
  - name: two
    image: alpine
    command:
      - /bin/sh
      - -c
      - |
        modprobe btusb
        modprobe iwlwifi
  - name: three
    image: alpine
    command: [modprobe, brcmfmac]
  - name: no-command
    image: linuxkit/getty:v1
kernel:
  image: k
  cmdline: "modprobe.blacklist=nouveau"
"""
    assert modules_loaded_by(text) == ["brcmfmac", "btusb", "iwlwifi"]


def test_the_seed_with_its_duplicate_keys() -> None:
    seed = (SHARED / "corpus" / "wifi-seed.yml").read_text(encoding="utf-8")
    assert modules_loaded_by(seed) == ["<driver>"]


@pytest.mark.parametrize("name", ["docker-for-mac.yml", "getty.yml", "minimal.yml", "sshd.yml"])
def test_corpus_configs_without_modprobe(name: str) -> None:
    text = (SHARED / "corpus" / name).read_text(encoding="utf-8")
    assert modules_loaded_by(text) == []


def test_duplicate_sections_and_aliases() -> None:
    text = """\
x-load: &load ["modprobe", "-a", "e1000e", "r8169"]
onboot:
  - name: a
    image: alpine
    command: *load
onboot:
  - name: b
    image: alpine
    command: ["modprobe", "igb"]
"""
    assert modules_loaded_by(text) == ["e1000e", "r8169", "igb"]


@pytest.mark.parametrize("text", ["", "# nothing\n", "- a\n", "onboot: none\n", "onboot:\n"])
def test_configs_that_load_nothing(text: str) -> None:
    assert modules_loaded_by(text) == []


def test_invalid_yaml_names_the_file() -> None:
    with pytest.raises(ConfigError, match=r"my\.yml:3:1: invalid YAML"):
        modules_loaded_by("onboot:\n  - [\n", where="my.yml")


def test_the_building_blocks() -> None:
    assert modprobe_modules(["-a", "x", "y"]) == ["x", "y"]
    assert modprobe_modules(["-w", "100", "-r", "x"]) == []
    assert modules_in_script("modprobe a;modprobe b") == ["a", "b"]
    assert shell_commands("a && b || c | d; e\nf & g") == [
        "a ",
        " b ",
        " c ",
        " d",
        " e",
        "f ",
        " g",
    ]
