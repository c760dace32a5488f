"""The config writer on generated edge cases: every byte outside firmware entries kept."""

from __future__ import annotations

import os
import random
import stat
import time
from pathlib import Path

import pytest

from lkfirmware.config import (
    ConfigChange,
    FilesEntry,
    double_quoted,
    edit_config_text,
    firmware_yml_text,
    linuxkit_problems,
    render_scalar,
    update_config,
    write_firmware_yml,
)
from lkfirmware.errors import ConfigError
from tests.config_checks import (
    assert_only_firmware_changed,
    assert_sound_edit,
    firmware,
    line_breaks,
    strict_load,
)

BIN = firmware("brcm/brcmfmac43602-pcie.bin")
LINK = firmware("brcm/brcmfmac43455-sdio.bin", link="../cypress/cyfmac43455-sdio.bin")
RPI = firmware("brcm/brcmfmac43455-sdio.Raspberry Pi Foundation-Raspberry Pi 4 Model B.txt")

BIN_BLOCK = (
    "  - path: /lib/firmware/brcm/brcmfmac43602-pcie.bin\n"
    "    source: firmware/brcm/brcmfmac43602-pcie.bin\n"
    '    mode: "0644"\n'
)

RICH = """\
# A config with everything a hand-written yml may hold.
kernel:
  image: linuxkit/kernel:6.12.59   # the stock kernel
  cmdline: 'console=tty0 console=ttyS0'

x-image: &alpine alpine:3.20
init:
  - linuxkit/init:b5506cc74a6812dc40982cacfd2f4328f8a4b12a
onboot:
  - name: modprobe
    image: *alpine
    command: ["modprobe", "-a", "brcmfmac"]   # flow list, kept as is
  - name: script
    image: *alpine
    command:
      - sh
      - -c
      - |
        modprobe btusb
        echo "loaded"   # not a YAML comment

files:
  # the shadow file
  - path: etc/shadow
    contents: >-
      root:x:0:0
    mode: "0600"
  - path: etc/motd
    contents: |+
      Welcome, ünïcode

  # a comment after the list
trust:
  org: [linuxkit]
"""


# --------------------------------------------------------------------------- preservation


def test_a_rich_config_keeps_every_byte() -> None:
    change = assert_sound_edit(RICH, [BIN])
    head, tail = RICH.split("\n  # a comment after the list\n")
    assert change.new_text == (
        head
        + "\n"
        + "  - path: lib/firmware/brcm/brcmfmac43602-pcie.bin\n"
        + "    source: firmware/brcm/brcmfmac43602-pcie.bin\n"
        + '    mode: "0644"\n'
        + "  # a comment after the list\n"
        + tail
    )


def test_kept_block_scalar_trailing_lines_stay_in_the_scalar() -> None:
    change = assert_sound_edit(RICH, [BIN])
    data = strict_load(change.new_text)
    assert data["files"][1]["contents"] == "Welcome, ünïcode\n\n"
    assert data["onboot"][1]["image"] == "alpine:3.20"


def test_document_markers_stay_around_the_document() -> None:
    text = "%YAML 1.2\n---\nkernel:\n  image: k\n...\n# after the end\n"
    change = assert_sound_edit(text, [BIN])
    assert change.new_text == (
        "%YAML 1.2\n---\nkernel:\n  image: k\nfiles:\n" + BIN_BLOCK + "...\n# after the end\n"
    )


def test_crlf_line_endings_are_kept_and_used() -> None:
    text = "kernel:\r\n  image: k # c\r\nfiles:\r\n  - path: etc/a\r\n    contents: a\r\n"
    change = assert_sound_edit(text, [BIN, LINK])
    assert line_breaks(change.new_text) == {"\r\n"}
    assert change.new_text.startswith(text)


def test_crlf_file_without_files_key() -> None:
    change = assert_sound_edit("kernel:\r\n  image: k\r\n", [BIN])
    assert line_breaks(change.new_text) == {"\r\n"}
    assert change.new_text == "kernel:\r\n  image: k\r\nfiles:\r\n" + BIN_BLOCK.replace(
        "\n", "\r\n"
    )


def test_bom_and_utf8_survive() -> None:
    text = "\ufeff# café ☕\nkernel:\n  image: k\n"
    change = assert_sound_edit(text, [BIN])
    assert change.new_text == text + "files:\n" + BIN_BLOCK


def test_missing_final_newline_is_not_added() -> None:
    change = assert_sound_edit("kernel:\n  image: k", [BIN])
    assert change.new_text == "kernel:\n  image: k\nfiles:\n" + BIN_BLOCK.rstrip("\n")


def test_a_block_scalar_at_an_unterminated_end_is_refused() -> None:
    """Appending after it would give the scalar a line break it does not have."""
    text = "files:\n  - path: etc/a\n    contents: |\n      no final line break"
    with pytest.raises(ConfigError, match="end without a line break"):
        edit_config_text(text, [BIN])
    assert_sound_edit(text + "\n", [BIN])


def test_anchors_and_aliases_are_kept() -> None:
    text = (
        'x-fw: &fw\n  path: /lib/firmware/a.bin\n  source: old/a.bin\n  mode: "0644"\n'
        "files:\n  - *fw\n  - path: etc/a\n    contents: a\n"
    )
    change = assert_sound_edit(text, [BIN])
    assert change.new_text == text + BIN_BLOCK
    assert strict_load(change.new_text)["files"][0]["source"] == "old/a.bin"


# --------------------------------------------------------------------------- indentation


@pytest.mark.parametrize(
    ("listing", "dash", "keys"),
    [
        ("files:\n- path: etc/a\n  contents: a\n", "- ", "  "),
        ("files:\n  - path: etc/a\n    contents: a\n", "  - ", "    "),
        ("files:\n    - path: etc/a\n      contents: a\n", "    - ", "      "),
        ("files:\n  -   path: etc/a\n      contents: a\n", "  -   ", "      "),
        ("files:\n - path: etc/a\n   contents: a\n", " - ", "   "),
    ],
    ids=["column-0", "indent-2", "indent-4", "dash-offset-4", "indent-1"],
)
def test_new_entries_follow_the_list_indentation(listing: str, dash: str, keys: str) -> None:
    change = assert_sound_edit("kernel:\n  image: k\n" + listing, [BIN])
    assert change.new_text.endswith(
        f"{dash}path: lib/firmware/brcm/brcmfmac43602-pcie.bin\n"
        f"{keys}source: firmware/brcm/brcmfmac43602-pcie.bin\n"
        f'{keys}mode: "0644"\n'
    )


@pytest.mark.parametrize(
    ("services", "dash", "keys"),
    [
        ("services:\n- name: a\n  image: b\n", "- ", "  "),
        ("services:\n    - name: a\n      image: b\n", "    - ", "      "),
        ("services:\n  -   name: a\n      image: b\n", "  -   ", "      "),
    ],
)
def test_a_new_files_list_follows_the_other_lists(services: str, dash: str, keys: str) -> None:
    change = assert_sound_edit(services, [BIN])
    assert change.new_text == services + (
        f"files:\n{dash}path: /lib/firmware/brcm/brcmfmac43602-pcie.bin\n"
        f"{keys}source: firmware/brcm/brcmfmac43602-pcie.bin\n"
        f'{keys}mode: "0644"\n'
    )


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["etc/a"], "lib/firmware/"),
        (["/etc/a"], "/lib/firmware/"),
        (["etc/a", "etc/b", "/lib/firmware/x.bin"], "/lib/firmware/"),
        (["/etc/a", "lib/firmware/x.bin"], "lib/firmware/"),
    ],
)
def test_new_paths_follow_the_path_style(paths: list[str], expected: str) -> None:
    items = "".join(f"  - path: {path}\n    contents: a\n" for path in paths)
    change = assert_sound_edit("files:\n" + items, [BIN])
    assert f"- path: {expected}brcm/brcmfmac43602-pcie.bin\n" in change.new_text


# --------------------------------------------------------------------------- empty lists


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("files: []", "files:"),
        ("files:", "files:"),
        ("files: ~", "files:"),
        ("files: null  # none yet", "files:  # none yet"),
        ("files: []  # none yet", "files:  # none yet"),
    ],
)
def test_an_empty_files_list_gets_items(line: str, kept: str) -> None:
    text = f"kernel:\n  image: k\n{line}\ntrust:\n  org: [a]\n"
    change = assert_sound_edit(text, [BIN])
    assert change.new_text == f"kernel:\n  image: k\n{kept}\n{BIN_BLOCK}trust:\n  org: [a]\n"


def test_no_files_key_appends_one_at_the_top_level() -> None:
    text = "kernel:\n  image: k\nservices:\n  - name: a\n    image: b\n# trailing comment\n"
    change = assert_sound_edit(text, [BIN, LINK])
    assert change.new_text == (
        "kernel:\n  image: k\nservices:\n  - name: a\n    image: b\n"
        + "files:\n"
        + BIN_BLOCK
        + "  - path: /lib/firmware/brcm/brcmfmac43455-sdio.bin\n"
        + "    symlink: ../cypress/cyfmac43455-sdio.bin\n"
        + '    mode: "0644"\n'
        + "# trailing comment\n"
    )


def test_nothing_to_do_changes_nothing() -> None:
    change = edit_config_text("files: []  # empty\n", [])
    assert not change.changed
    assert change.diff() == ""


# --------------------------------------------------------------------------- updates


def test_an_existing_entry_is_updated_in_place() -> None:
    text = (
        "files:\n"
        "  - path: lib/firmware/brcm/brcmfmac43602-pcie.bin   # keep me\n"
        "    source: old/place.bin  # old\n"
        "    mode: 0644\n"
        "    optional: true\n"
        "  - path: etc/a\n"
        "    contents: a\n"
    )
    change = assert_sound_edit(text, [BIN])
    assert change.updated == (BIN.path,)
    assert not change.added
    assert change.new_text == text.replace("old/place.bin", BIN.source or "").replace(
        "mode: 0644", 'mode: "0644"'
    )


def test_missing_values_are_added_to_an_entry() -> None:
    text = "files:\n  - path: /lib/firmware/brcm/brcmfmac43602-pcie.bin\n  - path: etc/a\n"
    text += "    contents: a\n"
    change = assert_sound_edit(text, [BIN])
    assert change.new_text == "files:\n" + BIN_BLOCK + "  - path: etc/a\n    contents: a\n"


def test_an_entry_already_right_is_left_alone() -> None:
    text = (
        "files:\n  - path: /lib/firmware/brcm/brcmfmac43602-pcie.bin\n"
        "    mode: '0644'\n    source: \"firmware/brcm/brcmfmac43602-pcie.bin\"\n"
    )
    change = edit_config_text(text, [BIN])
    assert not change.changed
    assert change.updated == ()


def test_a_file_becomes_a_link_and_back() -> None:
    text = "files:\n" + BIN_BLOCK.replace("43602-pcie", "43455-sdio")
    to_link = assert_sound_edit(text, [LINK])
    assert to_link.new_text == (
        "files:\n  - path: /lib/firmware/brcm/brcmfmac43455-sdio.bin\n"
        '    mode: "0644"\n    symlink: ../cypress/cyfmac43455-sdio.bin\n'
    )
    back = firmware("brcm/brcmfmac43455-sdio.bin")
    assert strict_load(assert_sound_edit(to_link.new_text, [back]).new_text)["files"] == [
        {"path": back.path, "mode": "0644", "source": back.source}
    ]


def test_a_contradicting_key_on_the_dash_line_rewrites_the_entry() -> None:
    text = "files:\n  - contents: old\n    path: /lib/firmware/x.bin\n    uid: 0\n"
    entry = FilesEntry("/lib/firmware/x.bin", source="firmware/x.bin")
    change = assert_sound_edit(text, [entry])
    assert change.new_text == (
        "files:\n  - path: /lib/firmware/x.bin\n    uid: 0\n"
        '    source: firmware/x.bin\n    mode: "0644"\n'
    )


def test_a_flow_mapping_entry_is_rewritten_as_a_block() -> None:
    text = "files:\n  - {path: /lib/firmware/x.bin, source: a}  # flow\n  - path: etc/a\n"
    text += "    contents: a\n"
    entry = FilesEntry("/lib/firmware/x.bin", source="firmware/x.bin")
    change = assert_sound_edit(text, [entry])
    assert change.new_text.startswith(
        "files:\n  - path: /lib/firmware/x.bin\n    source: firmware/x.bin\n"
        '    mode: "0644"  # flow\n'
    )


def test_a_duplicated_firmware_entry_is_made_one() -> None:
    text = (
        "files:\n"
        + BIN_BLOCK
        + "  - path: etc/a\n    contents: a\n"
        + BIN_BLOCK.replace("/lib", "lib")
    )
    change = assert_sound_edit(text, [BIN])
    assert change.removed == ("lib/firmware/brcm/brcmfmac43602-pcie.bin",)
    assert change.new_text == "files:\n" + BIN_BLOCK + "  - path: etc/a\n    contents: a\n"


def test_new_entries_keep_the_given_order() -> None:
    names = [f"fw/{letter}.bin" for letter in "qwertyuiop"]
    change = assert_sound_edit("files: []\n", [firmware(name) for name in names])
    assert [e["path"] for e in strict_load(change.new_text)["files"]] == [
        f"/lib/firmware/{name}" for name in names
    ]


def test_different_entries_for_one_path_are_refused() -> None:
    with pytest.raises(ValueError, match="two different files entries"):
        edit_config_text("files: []\n", [BIN, FilesEntry("lib/" + BIN.key[4:], symlink="x")])


@pytest.mark.parametrize(
    "arguments",
    [
        {"path": "/lib/firmware/a"},
        {"path": "/lib/firmware/a", "source": "a", "symlink": "b"},
        {"path": "/", "source": "a"},
        {"path": "/lib/firmware/a", "source": "a", "mode": "644x"},
    ],
)
def test_malformed_entries_are_refused(arguments: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        FilesEntry(**arguments)


# --------------------------------------------------------------------------- prune


def test_prune_removes_stale_firmware_and_nothing_else() -> None:
    text = (
        "files:\n"
        '  - path: lib/firmware\n    directory: true\n    mode: "0755"\n'
        '  - path: /lib/firmware/old/stale.bin  # stale\n    source: x\n    mode: "0644"\n'
        "  # keep this comment\n"
        "  - path: etc/a\n    contents: |\n      a\n"
        "  - path: /lib/firmware/old/other.bin\n    source: y\n"
        "  - path: /lib/firmwarex/not-below.bin\n    source: z\n"
    )
    change = assert_sound_edit(text, [BIN], prune_under="/lib/firmware/")
    assert change.removed == ("/lib/firmware/old/stale.bin", "/lib/firmware/old/other.bin")
    assert change.new_text == (
        "files:\n"
        '  - path: lib/firmware\n    directory: true\n    mode: "0755"\n'
        "  # keep this comment\n"
        "  - path: etc/a\n    contents: |\n      a\n"
        "  - path: /lib/firmwarex/not-below.bin\n    source: z\n" + BIN_BLOCK
    )


def test_without_prune_other_firmware_stays() -> None:
    text = 'files:\n  - path: /lib/firmware/keep.bin\n    source: k\n    mode: "0644"\n'
    assert assert_sound_edit(text, [BIN]).new_text == text + BIN_BLOCK


def test_prune_can_empty_the_list() -> None:
    text = 'files:\n  - path: /lib/firmware/old.bin\n    source: k\n    mode: "0644"\ntrust: {}\n'
    change = edit_config_text(text, [], prune_under="/lib/firmware")
    assert change.new_text == "files:\ntrust: {}\n"
    assert linuxkit_problems(change.new_text) == []


# --------------------------------------------------------------------------- quoting


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("lib/firmware/brcm/a b,c.txt", "lib/firmware/brcm/a b,c.txt"),
        ("brcmfmac43455-sdio.raspberrypi,4-model-b.txt", None),
        ("../cypress/cyfmac43455-sdio.bin", None),
        ("~/firmware/a.bin", None),
        ("8086-0b2c.bin", None),
        ("a: b", '"a: b"'),
        ("a #b", '"a #b"'),
        ("#a", '"#a"'),
        ("*a", '"*a"'),
        ("&a", '"&a"'),
        ("!a", '"!a"'),
        ("- a", '"- a"'),
        ("'a'", "\"'a'\""),
        ('"a"', '"\\"a\\""'),
        ("a\\b", "a\\b"),
        (" a", '" a"'),
        ("a ", '"a "'),
        ("", '""'),
        ("yes", '"yes"'),
        ("Off", '"Off"'),
        ("~", '"~"'),
        ("null", '"null"'),
        ("0644", '"0644"'),
        ("1e3", '"1e3"'),
        ("0x1F", '"0x1F"'),
        ("1:20", '"1:20"'),
        ("2024-01-02", '"2024-01-02"'),
        (".inf", '".inf"'),
        ("a\tb", '"a\\tb"'),
        ("a\nb", '"a\\nb"'),
        ("a\x01b", '"a\\x01b"'),
        ("a:", '"a:"'),
    ],
)
def test_values_are_quoted_only_when_yaml_needs_it(value: str, written: str | None) -> None:
    assert render_scalar(value) == (written if written is not None else value)
    assert _reads_back(render_scalar(value)) == value


def _reads_back(rendered: str, version: tuple[int, int] | None = None) -> object:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    if version is not None:
        yaml.version = version
    return yaml.load(f"key: {rendered}\n")["key"]


def test_random_values_read_back_as_the_same_string() -> None:
    rng = random.Random(4)
    alphabet = "ab01 -_.,:#/'\"\\~!&*?|>{}[]%@`=+<\té\u2028\x7f\ufeff"
    for _ in range(1500):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
        rendered = render_scalar(value)
        for version in ((1, 1), (1, 2)):
            assert _reads_back(rendered, version) == value, (value, rendered)


def test_double_quoted_escapes_astral_and_controls() -> None:
    value = "a\U0001f600\x00\x85\u2028\\"
    assert _reads_back(double_quoted(value)) == value


def test_a_path_with_spaces_and_commas_is_written_plain() -> None:
    change = assert_sound_edit("files: []\n", [RPI, firmware("x/a: b.bin")])
    assert (
        "- path: /lib/firmware/brcm/brcmfmac43455-sdio.Raspberry Pi Foundation-Raspberry"
        " Pi 4 Model B.txt\n" in change.new_text
    )
    assert '- path: "/lib/firmware/x/a: b.bin"\n' in change.new_text


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ("kernel:\n  image: [k\n", ":3:1:"),
        ("kernel:\n  image: k\n cmdline: x\n", ":3:2:"),
        ("files:\n  - path: a\n   - b\n", ":3:4:"),
        ("kernel: *nothing\n", ":1:"),
        ("a: 1\n---\nb: 2\n", ": holds 2 YAML documents"),
        ("a: \x01\n", ":1:4:"),
    ],
)
def test_invalid_yaml_is_refused_with_line_and_column(text: str, place: str) -> None:
    with pytest.raises(ConfigError) as raised:
        edit_config_text(text, [BIN], where="my.yml")
    assert f"my.yml{place}" in str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("files: {path: a}\n", "'files:' (line 1) is a mapping, not a list"),
        ("files: text\n", "is a scalar 'text', not a list"),
        ("- a\n- b\n", "the top level is a list, not a mapping"),
        ("just text\n", "the top level is a scalar"),
        ("# only a comment\n", "the top level is empty"),
        ("{kernel: {image: k}}\n", "flow mapping"),
        ("files: [{path: etc/a, contents: a}]\n", "flow list"),
    ],
)
def test_unsupported_shapes_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        edit_config_text(text, [BIN])


def test_duplicate_keys_name_the_key_and_both_lines() -> None:
    text = "kernel:\n  image: k\nonboot:\n  - name: a\n    image: b\n    image: c\n"
    with pytest.raises(
        ConfigError,
        match=r"duplicate key 'image' \(first at line 5, again at "
        r"line 6\)",
    ):
        edit_config_text(text, [BIN], merge_duplicate_files=True)


def test_duplicate_files_keys_suggest_merging() -> None:
    text = "files:\n  - path: etc/a\n    contents: a\nkernel:\n  image: k\nfiles: []\n"
    with pytest.raises(ConfigError, match=r"'files' .*line 1.*line 6.*--merge-duplicate-files"):
        edit_config_text(text, [BIN])


# --------------------------------------------------------------------------- merging


def test_merging_lists_apart_moves_the_items_under_the_first() -> None:
    text = (
        "files:\n  - path: etc/a\n    contents: a\n"
        "kernel:\n  image: k\n"
        "files:   # second\n    # its comment\n    - path: etc/b\n      contents: |\n        b\n"
        "trust: {}\n"
    )
    change = assert_sound_edit(text, [BIN], merge_duplicate_files=True)
    assert change.new_text == (
        "files:\n  - path: etc/a\n    contents: a\n"
        "  # its comment\n  - path: etc/b\n    contents: |\n      b\n"
        + BIN_BLOCK.replace("/lib", "lib")
        + "kernel:\n  image: k\n"
        "trust: {}\n"
    )


def test_merging_into_an_empty_first_list() -> None:
    text = "files: []\nkernel:\n  image: k\nfiles:\n- path: etc/b\n  contents: b\n"
    change = assert_sound_edit(text, [], merge_duplicate_files=True)
    assert change.new_text == "files:\n- path: etc/b\n  contents: b\nkernel:\n  image: k\n"


def test_merging_three_lists() -> None:
    text = "files:\nfiles:\n  - path: etc/a\n    contents: a\nfiles:\n  - path: etc/b\n"
    text += "    contents: b\n"
    change = assert_sound_edit(text, [BIN], merge_duplicate_files=True)
    assert change.new_text == (
        "files:\n  - path: etc/a\n    contents: a\n  - path: etc/b\n    contents: b\n"
        + BIN_BLOCK.replace("/lib", "lib")
    )


# --------------------------------------------------------------------------- the checks


def test_the_diff_check_catches_a_change_outside_firmware() -> None:
    text = "kernel:\n  image: k  # comment\nfiles: []\n"
    good = edit_config_text(text, [BIN])
    bad = ConfigChange(None, text, good.new_text.replace("# comment", "# changed"))
    assert_only_firmware_changed(good)
    with pytest.raises(AssertionError):
        assert_only_firmware_changed(bad)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("path: a\n    contents: a\n    mode: 0644", "mode must be a quoted octal"),
        ('path: a\n    contents: a\n    mode: "rw"', "mode must be a quoted octal"),
        ("path: a\n    contents: a\n    owner: me", "unknown key 'owner'"),
        ("contents: a", "without a path"),
        ("path: a\n    source: a\n    contents: b", "both source and contents"),
        ("path: a\n    symlink: a\n    source: b", "both symlink and source"),
        ("path: a\n    directory: true\n    contents: b", "both directory and contents"),
        ("path: a", "needs contents, source or metadata"),
        ("path: a\n    directory: yes-please", "directory must be true or false"),
        ("path: a\n    contents: a\n    path: b", "duplicate key 'path'"),
    ],
)
def test_linuxkit_problems_finds_what_linuxkit_rejects(entry: str, problem: str) -> None:
    problems = linuxkit_problems(f"files:\n  - {entry}\n")
    assert any(problem in text for text in problems), problems


def test_linuxkit_problems_accepts_good_entries() -> None:
    text = "files:\n  - path: a\n    directory: true\n    mode: '0755'\n  - path: b\n"
    text += "    metadata: yaml\n    uid: 1\n    gid: 1\n    optional: false\n"
    assert linuxkit_problems(text) == []


# --------------------------------------------------------------------------- files on disk


def test_update_config_writes_atomically_and_keeps_permissions(tmp_path: Path) -> None:
    config = tmp_path / "linuxkit.yml"
    config.write_bytes(b"kernel:\n  image: k\n")
    config.chmod(0o640)
    change = update_config(config, [BIN])
    assert change.path == config
    assert config.read_bytes() == b"kernel:\n  image: k\nfiles:\n" + BIN_BLOCK.encode()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert [path.name for path in tmp_path.iterdir()] == ["linuxkit.yml"]


def test_a_second_run_does_not_rewrite_the_file(tmp_path: Path) -> None:
    config = tmp_path / "linuxkit.yml"
    config.write_text("kernel:\n  image: k\n")
    update_config(config, [BIN, LINK])
    past = time.time() - 1000
    os.utime(config, (past, past))
    inode = config.stat().st_ino
    change = update_config(config, [BIN, LINK])
    assert not change.changed
    assert config.stat().st_mtime == past
    assert config.stat().st_ino == inode


def test_a_symlinked_config_is_edited_through_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real" / "linuxkit.yml"
    real.parent.mkdir()
    real.write_text("kernel:\n  image: k\n")
    link = tmp_path / "linuxkit.yml"
    link.symlink_to(Path("real") / "linuxkit.yml")
    update_config(link, [BIN])
    assert link.is_symlink()
    assert os.readlink(link) == str(Path("real") / "linuxkit.yml")
    assert real.read_text().endswith(BIN_BLOCK)
    assert sorted(path.name for path in real.parent.iterdir()) == ["linuxkit.yml"]


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "linuxkit.yml"
    config.write_text("kernel:\n  image: k\n")
    change = update_config(config, [BIN], write=False)
    assert change.changed
    assert config.read_text() == "kernel:\n  image: k\n"
    diff = change.diff()
    assert diff.startswith(f"--- {config}\n+++ {config}\n@@ -1,2 +1,6 @@\n")
    assert '+    mode: "0644"\n' in diff


@pytest.mark.parametrize(
    "content",
    [b"kernel: [\n", b"files:\nfiles:\n", b"files: x\n", b"kernel: \xff\n"],
    ids=["invalid", "duplicate", "not-a-list", "not-utf8"],
)
def test_a_refused_config_is_untouched(tmp_path: Path, content: bytes) -> None:
    config = tmp_path / "linuxkit.yml"
    config.write_bytes(content)
    past = time.time() - 1000
    os.utime(config, (past, past))
    with pytest.raises(ConfigError, match=str(config)):
        update_config(config, [BIN])
    assert config.read_bytes() == content
    assert config.stat().st_mtime == past
    assert [path.name for path in tmp_path.iterdir()] == ["linuxkit.yml"]


def test_a_failed_rename_leaves_the_config_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "linuxkit.yml"
    config.write_text("kernel:\n  image: k\n")

    def broken(source: str, target: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk on fire"):
        update_config(config, [BIN])
    assert config.read_text() == "kernel:\n  image: k\n"
    assert [path.name for path in tmp_path.iterdir()] == ["linuxkit.yml"]


def test_a_missing_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        update_config(tmp_path / "nope.yml", [BIN])


# --------------------------------------------------------------------------- firmware-only yml


def test_firmware_yml_is_just_files() -> None:
    text = firmware_yml_text([BIN, LINK, RPI])
    data = strict_load(text)
    assert list(data) == ["files"]
    assert [entry["path"] for entry in data["files"]] == [BIN.path, LINK.path, RPI.path]
    assert data["files"][1] == {"path": LINK.path, "symlink": LINK.symlink, "mode": "0644"}
    assert linuxkit_problems(text) == []
    assert linuxkit_problems(firmware_yml_text([])) == []


def test_write_firmware_yml_is_idempotent(tmp_path: Path) -> None:
    output = tmp_path / "firmware.yml"
    first = write_firmware_yml(output, [BIN, LINK])
    assert first.added == (BIN.path, LINK.path)
    past = time.time() - 1000
    os.utime(output, (past, past))
    again = write_firmware_yml(output, [BIN, LINK])
    assert not again.changed
    assert output.stat().st_mtime == past
    third = write_firmware_yml(output, [BIN, firmware("brcm/brcmfmac43455-sdio.bin")])
    assert (third.added, third.updated, third.removed) == ((), (LINK.path,), ())
    assert write_firmware_yml(output, [BIN]).removed == (LINK.path,)


def test_write_firmware_yml_refuses_a_hand_written_file(tmp_path: Path) -> None:
    output = tmp_path / "linuxkit.yml"
    output.write_text("kernel:\n  image: k\n")
    with pytest.raises(ConfigError, match="not written by lkfirmware"):
        write_firmware_yml(output, [BIN])
    assert output.read_text() == "kernel:\n  image: k\n"


# --------------------------------------------------------------------------- generated configs


def _random_entry(rng: random.Random, path: str, layout: tuple[int, int], owned: bool) -> str:
    """One files: item for ``path`` in a random shape (invalid shapes only if owned)."""
    dash, offset = layout
    head, pad = " " * dash + "-" + " " * (offset - 1), " " * (dash + offset)
    shapes = ["file", "link", "contents", "comment", "kept", "directory", "no-mode", "anchor"]
    shape = rng.choice(shapes + (["flow", "unquoted", "tagged"] if owned else []))
    path = rng.choice([path, "/" + path])
    if shape == "flow":
        return f"{head}{{path: {path}, source: old/x}}{rng.choice(['', '  # flow'])}\n"
    first = f"{head}&a{rng.randint(0, 9**6)} path: {path}" if shape == "anchor" else None
    lines = [first or f"{head}path: {path}" + rng.choice(["", "  # c"])]
    lines += {
        "file": [f"{pad}source: staged/{path[-6:]}", f'{pad}mode: "0644"'],
        "link": [f"{pad}symlink: target.bin", f"{pad}mode: '0644'"],
        "contents": [f"{pad}contents: |", f"{pad}  line1", f"{pad}  line2"],
        "comment": [f"{pad}# inner comment", f"{pad}source: x"],
        "kept": [f'{pad}mode: "0600"', f"{pad}contents: |+", f"{pad}  kept", ""],
        "directory": [f"{pad}directory: true", f'{pad}mode: "0755"'],
        "no-mode": [f"{pad}source: x  # inline"],
        "anchor": [f"{pad}source: x", f'{pad}mode: "0644"'],
        "unquoted": [f"{pad}source: x", f"{pad}mode: 0644"],
        "tagged": [f"{pad}source: !!str x", f"{pad}mode: !!str 0644"],
    }[shape]
    if rng.random() < 0.3:
        lines.append(rng.choice(["", f"{pad}# after", "# column 0"]))
    return "\n".join(lines) + "\n"


def _random_config(rng: random.Random, paths: list[str], owned: set[str]) -> str:
    layout = (rng.choice([0, 2, 4]), rng.choice([2, 2, 4]))
    files = rng.choice(["", "files:\n", "files: []  # none\n", "files: ~\n", "block", "block"])
    if files == "block":
        items = (_random_entry(rng, path, layout, path in owned) for path in paths)
        files = "files:" + rng.choice(["", "  # firmware and more"]) + "\n" + "".join(items)
    dash, offset = layout
    onboot = (
        f"onboot:\n{' ' * dash}-{' ' * (offset - 1)}name: modprobe\n"
        f'{" " * (dash + offset)}command: ["modprobe", "-a", "brcmfmac"]  # load\n'
    )
    tail = rng.choice(["", "trust:\n  org: [linuxkit]\n", "# the end\n", "...\n", "\n\n# c\n"])
    body = ["kernel:\n  image: k  # kernel\n", onboot, files]
    if rng.random() < 0.5:
        body[1], body[2] = body[2], body[1]
    text = rng.choice(["", "---\n", "%YAML 1.2\n---\n"]) + "".join(body) + tail
    if tail and rng.random() < 0.15:
        text = text.rstrip("\n")  # (a block scalar right at an unterminated end is refused)
    text = text.replace("\n", rng.choice(["\n", "\n", "\r\n", "\r"]))
    return rng.choice(["", "", "\ufeff"]) + text


def _random_wanted(rng: random.Random, paths: list[str]) -> list[FilesEntry]:
    pool = [path for path in paths if path.startswith("lib/firmware/")]
    pool += ["lib/firmware/new/a.bin", "lib/firmware/x/a b, c.txt", "lib/firmware/x/q: r.bin"]
    wanted = []
    for path in rng.sample(pool, rng.randint(0, len(pool))):
        name = path.removeprefix("lib/firmware/")
        if rng.random() < 0.3:
            wanted.append(FilesEntry("/" + path, symlink="../t/" + name))
        else:
            wanted.append(FilesEntry("/" + path, source="firmware/" + name))
    return wanted


@pytest.mark.parametrize("chunk", range(4))
def test_generated_configs_edit_soundly(chunk: int) -> None:
    """Random mixes of every feature above: each edit passes every check."""
    for seed in range(chunk * 60, chunk * 60 + 60):
        rng = random.Random(seed)
        paths = [f"lib/firmware/d{rng.randint(0, 3)}/f{n}.bin" for n in range(rng.randint(1, 5))]
        paths = [*dict.fromkeys(paths), "etc/conf"]
        wanted = _random_wanted(rng, paths)
        text = _random_config(rng, paths, {entry.key for entry in wanted})
        prune = rng.choice([None, None, "/lib/firmware"])
        try:
            assert_sound_edit(text, wanted, prune_under=prune)
        except BaseException:
            print(f"seed {seed}: {text!r} {wanted} prune={prune}")
            raise


def _random_files_list(rng: random.Random, tag: str) -> str:
    count = rng.randint(0, 3)
    if count == 0:
        return rng.choice(["files:\n", "files: []\n", "files: ~  # none\n"])
    layout = (rng.choice([0, 2, 4]), rng.choice([2, 4]))
    items = "".join(_random_entry(rng, f"etc/{tag}{n}", layout, False) for n in range(count))
    return "files:" + rng.choice(["", "  # c"]) + "\n" + rng.choice(["", "  # lead\n"]) + items


@pytest.mark.parametrize("chunk", range(2))
def test_generated_duplicate_lists_merge_in_order(chunk: int) -> None:
    """Two files: lists anywhere: one list after merging, every item intact, in order."""
    for seed in range(chunk * 60, chunk * 60 + 60):
        rng = random.Random(seed)
        first, second = _random_files_list(rng, "a"), _random_files_list(rng, "b")
        onboot = "onboot:\n  - name: x\n    image: y\n"
        middle = [first, onboot, second] if rng.random() < 0.5 else [first, second, onboot]
        text = "kernel:\n  image: k\n" + "".join(middle) + rng.choice(["", "# end\n"])
        text = text.replace("\n", rng.choice(["\n", "\r\n"]))
        wanted = [BIN] if rng.random() < 0.7 else []
        try:
            change = assert_sound_edit(text, wanted, merge_duplicate_files=True)
            merged = strict_load(change.new_text).get("files") or []
            expected = [
                *(strict_load(first).get("files") or []),
                *(strict_load(second).get("files") or []),
            ]
            assert [dict(item) for item in merged[: len(expected)]] == expected
            assert len(merged) == len(expected) + len(wanted)
        except BaseException:
            print(f"seed {seed}: {text!r}")
            raise


def test_a_merge_that_would_change_an_entry_is_refused() -> None:
    text = "files:\n  - path: etc/a\n    contents: a\nfiles:\n  - path: etc/b\n    contents: |\n"
    text += "      no final line break\nkernel:\n  image: k\n"
    assert edit_config_text(text, [], merge_duplicate_files=True).changed
    with pytest.raises(ConfigError, match="cannot merge the 'files:' lists automatically"):
        edit_config_text(
            text.replace("\nkernel:\n  image: k\n", ""), [], merge_duplicate_files=True
        )


def test_prune_keeps_directory_entries() -> None:
    text = (
        "files:\n"
        "  - path: /lib/firmware/brcm\n"
        "    directory: true\n"
        '    mode: "0755"\n'
        "  - path: /lib/firmware/old.bin\n"
        "    source: firmware/old.bin\n"
        '    mode: "0644"\n'
    )
    wanted = [FilesEntry("/lib/firmware/brcm/new.bin", source="firmware/brcm/new.bin")]
    change = edit_config_text(text, wanted, prune_under="/lib/firmware")
    assert change.removed == ("/lib/firmware/old.bin",)
    assert "path: /lib/firmware/brcm\n    directory: true" in change.new_text
