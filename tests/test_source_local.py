"""The local-tree source: a linux-firmware checkout, or an installed /lib/firmware."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lkfirmware.compress import compress_file
from lkfirmware.plan import FirmwareFile
from lkfirmware.sources.base import BlobMissing, SourceFailure
from lkfirmware.sources.local import LocalTreeSource, local_root_from
from tests.fwrepo import FirmwareRepo, git_blob_id

# How copy-firmware.sh would have installed some of the files of the test repository.
ZSTD = ("cypress/cyfmac43455-sdio.bin", "nvidia/ad102/gsp/gsp-570.144.bin", "amdgpu/big_blob.bin")
XZ = ("cypress/cyfmac43455-sdio.clm_blob", "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt")


def fetched(source: LocalTreeSource, path: str, tmp: Path, ref: str = "20251215") -> bytes:
    into = tmp / "out.bin"
    source.retrieve(FirmwareFile(path), ref, into)
    data = into.read_bytes()
    into.unlink()
    return data


@pytest.fixture(scope="module")
def installed(firmware_repo: FirmwareRepo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An installed firmware tree: some files .zst or .xz, WHENCE links as real symlinks."""
    root = tmp_path_factory.mktemp("installed") / "lib" / "firmware"
    suffixes: dict[str, str] = {}
    for path, data in firmware_repo.files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if path in ZSTD or path in XZ:
            suffix = ".zst" if path in ZSTD else ".xz"
            compress_file(
                target, target.with_name(target.name + suffix), "zstd" if suffix == ".zst" else "xz"
            )
            target.unlink()
            suffixes[path] = suffix
    for link, written in firmware_repo.links.items():
        resolved = os.path.normpath(os.path.join(os.path.dirname(link), written))
        suffix = suffixes.get(resolved, "")  # link names get their target's suffix
        (root / (link + suffix)).symlink_to(written + suffix)
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(b"not firmware")
    (root / "evil").mkdir()
    (root / "evil" / "relative.bin").symlink_to("../../outside/secret.bin")
    (root / "evil" / "absolute.bin").symlink_to(outside / "secret.bin")
    (root / "evil" / "dir").symlink_to("../../outside")
    (root / "evil" / "dangling.bin").symlink_to("nothing-here.bin")
    (root / "broken.fw.xz").write_bytes(b"this is not xz data")
    return root


def test_installed_tree_with_compressed_files_and_symlinks(
    firmware_repo: FirmwareRepo, installed: Path, tmp_path: Path
) -> None:
    source = LocalTreeSource(installed)
    source.prepare([], "20251215")
    for path, data in firmware_repo.files.items():  # plain, .zst and .xz, spaces and commas
        assert fetched(source, path, tmp_path) == data, path
    assert (installed / "amdgpu" / "big_blob.bin.zst").is_file()
    for link, written in firmware_repo.links.items():
        if link == "nvidia/ad103":
            continue
        target = os.path.normpath(os.path.join(os.path.dirname(link), written))
        assert fetched(source, link, tmp_path) == firmware_repo.files[target], link
    via_dir_link = "nvidia/ad103/gsp/gsp-570.144.bin"  # a directory symlink, then .zst
    assert (
        fetched(source, via_dir_link, tmp_path)
        == firmware_repo.files["nvidia/ad102/gsp/gsp-570.144.bin"]
    )
    assert source.known_ids("20251215") is None  # an installed tree has no git ids


def test_the_ref_is_ignored(firmware_repo: FirmwareRepo, installed: Path, tmp_path: Path) -> None:
    source = LocalTreeSource(installed)
    path = "rtl_nic/rtl8168h-2.fw"
    for ref in ("20251215", "main", "0" * 40, "no-such-tag"):
        assert fetched(source, path, tmp_path, ref) == firmware_repo.files[path]


@pytest.mark.parametrize("path", ["evil/relative.bin", "evil/absolute.bin", "evil/dir/secret.bin",
                                  "../outside/secret.bin", "/etc/hostname"])  # fmt: skip
def test_links_and_paths_out_of_the_tree_are_refused(
    installed: Path, tmp_path: Path, path: str
) -> None:
    source = LocalTreeSource(installed)
    with pytest.raises(SourceFailure, match=r"refusing .* outside"):
        source.retrieve(FirmwareFile(path), "20251215", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_damaged_and_absent(
    firmware_repo: FirmwareRepo, installed: Path, tmp_path: Path
) -> None:
    source = LocalTreeSource(installed)
    for path in ("evil/dangling.bin", "no/such.fw", "brcm"):
        with pytest.raises(BlobMissing, match=r"is not in .* \(nor .zst, .xz or .gz\)"):
            source.retrieve(FirmwareFile(path), "x", tmp_path / "out")
    with pytest.raises(SourceFailure, match=r"cannot read broken\.fw"):
        source.retrieve(FirmwareFile("broken.fw"), "x", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    bare = LocalTreeSource(firmware_repo.bare)
    with pytest.raises(SourceFailure, match=r"is a bare git repository.* --source git"):
        bare.retrieve(FirmwareFile("GPL-2"), "x", tmp_path / "out")
    gone = LocalTreeSource(tmp_path / "nowhere")
    with pytest.raises(SourceFailure, match="does not exist"):
        gone.prepare([FirmwareFile("a")], "x")
    with pytest.raises(SourceFailure, match="does not exist"):
        gone.retrieve(FirmwareFile("a"), "x", tmp_path / "out")


def test_a_checkout_with_its_git_ids(firmware_repo: FirmwareRepo, tmp_path: Path) -> None:
    checkout = tmp_path / "linux-firmware"
    shutil.copytree(firmware_repo.work, checkout, symlinks=True)
    source = LocalTreeSource(checkout)
    for path, data in firmware_repo.files.items():
        assert fetched(source, path, tmp_path) == data
    with pytest.raises(BlobMissing):  # WHENCE links do not exist in a checkout
        fetched(source, "brcm/brcmfmac43455-sdio.bin", tmp_path)
    expected = {p: (len(d), git_blob_id(d)) for p, d in firmware_repo.files.items()}
    assert source.known_ids("whatever") == expected

    plain = tmp_path / "plain"
    shutil.copytree(firmware_repo.work, plain, ignore=shutil.ignore_patterns(".git"))
    assert LocalTreeSource(plain).known_ids("x") is None
    assert fetched(LocalTreeSource(plain), "GPL-2", tmp_path) == firmware_repo.files["GPL-2"]
    assert LocalTreeSource(checkout / "rtl_nic").known_ids("x") is None  # not the top


def test_local_root_from() -> None:
    assert local_root_from("file:///lib/firmware") == Path("/lib/firmware")
    assert local_root_from("file://localhost/usr/lib/firmware/") == Path("/usr/lib/firmware")
    assert local_root_from("file:///srv/linux%20firmware") == Path("/srv/linux firmware")
    assert local_root_from("file:///srv/fw/{path}") == Path("/srv/fw")
    assert local_root_from("/lib/firmware") == Path("/lib/firmware")
    assert local_root_from("./fw") == Path("fw")
    assert local_root_from("~/linux-firmware") == Path.home() / "linux-firmware"
    for remote in (
        "https://git.kernel.org/pub/scm/linux/kernel/git/firmware/linux-firmware.git/plain/{path}?h={ref}",
        "https://gitlab.com/kernel-firmware/linux-firmware/-/raw/{ref}/{path}",
        "file:///srv/{ref}/{path}",
        "file://otherhost/srv/fw",
        "ssh://host/fw",
        "",
    ):
        assert local_root_from(remote) is None, remote
