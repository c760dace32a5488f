"""The git source: a partial, shallow clone that fetches exactly the blobs asked for."""

from __future__ import annotations

import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest

from lkfirmware.plan import FirmwareFile
from lkfirmware.sources.base import BlobMissing, SourceFailure
from lkfirmware.sources.git import (
    DEFAULT_GIT_URL,
    GitSource,
    TreeEntry,
    clone_dir_name,
    default_git_url,
    follow_tree_links,
    tree_blob_ids,
    tree_listing,
)
from tests.fwrepo import FirmwareRepo, git, git_blob_id, make_firmware_repo

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"rtl_nic/rtl8168h-1.fw": 4_000, "rtl_nic/rtl8168h-2.fw": 4_100, "a b/c,d.bin": 900}


def present_blobs(clone: Path, commit: str) -> set[str]:
    """Blob ids of the commit's tree that are in the clone (asks git, fetches nothing)."""
    listing = git(clone, "ls-tree", "-r", "--full-tree", commit)
    blobs = {line.split()[2] for line in listing.splitlines() if line.split()[1] == "blob"}
    missing = git(clone, "rev-list", "--objects", "--missing=print", "--no-object-names", commit)
    return blobs - {line[1:] for line in missing.split() if line.startswith("?")}


def pack_bytes(clone: Path) -> int:
    return sum(p.stat().st_size for p in (clone / "objects" / "pack").glob("*.pack"))


def packed_object_ids(clone: Path) -> list[str]:
    """Every object id in every pack, duplicates kept."""
    ids: list[str] = []
    for index in (clone / "objects" / "pack").glob("*.idx"):
        with index.open("rb") as stream:
            out = subprocess.run(
                ["git", "show-index"], stdin=stream, capture_output=True, text=True, check=True
            ).stdout
        ids += [line.split()[1] for line in out.splitlines()]
    return ids


def firmware(repo: FirmwareRepo, path: str) -> FirmwareFile:
    return FirmwareFile(path, size=len(repo.files[path]), git_id=git_blob_id(repo.files[path]))


def fetch_bytes(source: GitSource, item: FirmwareFile, ref: str, tmp: Path) -> bytes:
    into = tmp / "out.bin"
    source.retrieve(item, ref, into)
    data = into.read_bytes()
    into.unlink()
    return data


def test_only_the_requested_blobs_arrive(firmware_repo: FirmwareRepo, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    source = GitSource(firmware_repo.file_url, clone)
    commit = source.resolve_ref(firmware_repo.tag)
    assert commit == firmware_repo.commit
    assert present_blobs(clone, commit) == set()  # commit and trees only
    assert len(source.blob_ids(firmware_repo.tag)) == len(firmware_repo.files)

    first = [firmware(firmware_repo, p) for p in ("rtl_nic/rtl8168h-1.fw", "GPL-2")]
    source.prepare(first, firmware_repo.tag)
    assert present_blobs(clone, commit) == {f.git_id for f in first}
    before = pack_bytes(clone)

    third = firmware(firmware_repo, "nvidia/ad102/gsp/gsp-570.144.bin")  # 90 kB
    source.prepare([*first, third], firmware_repo.tag)
    assert present_blobs(clone, commit) == {f.git_id for f in [*first, third]}
    added = pack_bytes(clone) - before
    assert 90_000 <= added < 90_000 + 2_000  # exactly that blob, random bytes do not shrink
    assert pack_bytes(clone) < 200_000  # the 3 MB blob and the 635 kB one never came

    for item in [*first, third]:
        assert (
            fetch_bytes(source, item, firmware_repo.tag, tmp_path) == firmware_repo.files[item.path]
        )
    assert not (clone / "config").read_text().count("worktree")  # no checkout anywhere


def test_a_later_source_reuses_the_clone(firmware_repo: FirmwareRepo, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    item = firmware(firmware_repo, "cypress/cyfmac43455-sdio.bin")
    GitSource(firmware_repo.file_url, clone).prepare([item], firmware_repo.tag)
    packs = pack_bytes(clone)
    again = GitSource(firmware_repo.file_url, clone)
    again.prepare([item], firmware_repo.tag)
    assert fetch_bytes(again, item, firmware_repo.tag, tmp_path) == firmware_repo.files[item.path]
    assert pack_bytes(clone) == packs  # nothing transferred again


@pytest.mark.parametrize("kind", ["tag", "commit", "branch", "full ref", "upper-case commit"])
def test_refs(firmware_repo: FirmwareRepo, tmp_path: Path, kind: str) -> None:
    ref = {
        "tag": firmware_repo.tag,
        "commit": firmware_repo.commit,
        "branch": "main",
        "full ref": f"refs/tags/{firmware_repo.tag}",
        "upper-case commit": firmware_repo.commit.upper(),
    }[kind]
    source = GitSource(firmware_repo.file_url, tmp_path / "clone")
    assert source.resolve_ref(ref) == firmware_repo.commit
    item = firmware(firmware_repo, "rtl_nic/rtl8125a-3.fw")
    source.prepare([item], ref)
    assert fetch_bytes(source, item, ref, tmp_path) == firmware_repo.files[item.path]


def test_unknown_and_invalid_refs(firmware_repo: FirmwareRepo, tmp_path: Path) -> None:
    source = GitSource(firmware_repo.file_url, tmp_path / "clone")
    with pytest.raises(BlobMissing, match="no tag or branch named 'v999'"):
        source.resolve_ref("v999")
    with pytest.raises(SourceFailure, match=r"git said: .*not our ref 0000"):
        source.resolve_ref("0" * 40)
    for bad in ("--upload-pack=touch /tmp/x", "a..b", "main:other", "x y", ""):
        with pytest.raises(SourceFailure, match="is not a git tag, branch or commit id"):
            source.resolve_ref(bad)


def test_missing_paths_and_names_with_spaces(firmware_repo: FirmwareRepo, tmp_path: Path) -> None:
    source = GitSource(firmware_repo.file_url, tmp_path / "clone")
    tag = firmware_repo.tag
    odd = [
        "brcm/brcmfmac43455-sdio.MINIX-NEO Z83-4.txt",
        "brcm/brcmfmac43455-sdio.raspberrypi,4-model-b.txt",
    ]
    items = [firmware(firmware_repo, p) for p in odd]
    missing = [FirmwareFile("brcm/brcmfmac43455-sdio.bin"), FirmwareFile("brcm"), FirmwareFile("")]
    source.prepare([*items, *missing], tag)  # missing files do not stop the batch
    for item in items:
        assert fetch_bytes(source, item, tag, tmp_path) == firmware_repo.files[item.path]
    for item in missing:  # a WHENCE link (not in git), a directory, nothing
        with pytest.raises(BlobMissing, match=f"is not a file in .* at {tag}"):
            source.retrieve(item, tag, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_damaged_blob_in_the_clone_is_refused(firmware_repo: FirmwareRepo, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    source = GitSource(firmware_repo.file_url, clone)
    source.resolve_ref(firmware_repo.tag)
    item = firmware(firmware_repo, "rtl_nic/rtl8168h-2.fw")
    assert item.git_id is not None
    good = firmware_repo.files[item.path]
    bad = bytes([good[0] ^ 1]) + good[1:]  # one flipped bit, same size
    loose = clone / "objects" / item.git_id[:2] / item.git_id[2:]
    loose.parent.mkdir(parents=True, exist_ok=True)
    loose.write_bytes(zlib.compress(b"blob %d\0" % len(bad) + bad))
    fresh = GitSource(firmware_repo.file_url, clone)  # sees the damaged object as present
    with pytest.raises(SourceFailure, match=f"damaged data for blob {item.git_id}"):
        fresh.retrieve(item, firmware_repo.tag, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_catalog_id_that_disagrees_with_the_tree(
    firmware_repo: FirmwareRepo, tmp_path: Path
) -> None:
    source = GitSource(firmware_repo.file_url, tmp_path / "clone")
    item = FirmwareFile("rtl_nic/rtl8168h-2.fw", git_id="1" * 40)
    with pytest.raises(SourceFailure, match="catalog expects 1111"):
        source.retrieve(item, firmware_repo.tag, tmp_path / "out")


def test_known_ids_blob_ids_and_tree_listing(firmware_repo: FirmwareRepo, tmp_path: Path) -> None:
    expected = {p: (len(d), git_blob_id(d)) for p, d in firmware_repo.files.items()}
    source = GitSource(firmware_repo.file_url, tmp_path / "clone")
    assert source.blob_ids("main") == {p: i for p, (_, i) in expected.items()}
    assert source.known_ids("main") == {}  # sizes need blobs, none fetched yet
    item = firmware(firmware_repo, "amdgpu/psp_13_0_0_ta.bin")
    source.prepare([item], "main")
    assert source.known_ids("main") == {item.path: expected[item.path]}

    ids_only = tree_blob_ids(firmware_repo.file_url, firmware_repo.tag, tmp_path / "ids")
    assert ids_only == {p: i for p, (_, i) in expected.items()}
    assert present_blobs(tmp_path / "ids", firmware_repo.commit) == set()
    assert tree_listing(firmware_repo.file_url, firmware_repo.tag, tmp_path / "all") == expected


def test_offline_uses_only_the_clone(firmware_repo: FirmwareRepo, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    fetched = firmware(firmware_repo, "rtl_nic/rtl8168h-1.fw")
    other = firmware(firmware_repo, "rtl_nic/rtl8168h-2.fw")
    with pytest.raises(SourceFailure, match="offline"):
        GitSource(firmware_repo.file_url, clone, offline=True).resolve_ref("main")
    GitSource(firmware_repo.file_url, clone).prepare([fetched], "main")
    offline = GitSource(firmware_repo.file_url, clone, offline=True)
    assert offline.resolve_ref("main") == firmware_repo.commit
    assert fetch_bytes(offline, fetched, "main", tmp_path) == firmware_repo.files[fetched.path]
    with pytest.raises(SourceFailure, match=r"1 blob\(s\) are not in the git clone .*\(offline\)"):
        offline.retrieve(other, "main", tmp_path / "out")


def test_tags_stay_put_and_branches_move(tmp_path: Path) -> None:
    repo = make_firmware_repo(tmp_path / "repo", sizes=SMALL, tag="v1")
    git(repo.work, "tag", "-a", "v1-annotated", "-m", "an annotated tag")
    (repo.work / "rtl_nic" / "rtl8168h-1.fw").write_bytes(b"new firmware\n" * 100)
    git(repo.work, "commit", "-q", "-am", "update rtl8168h-1")
    git(repo.work, "tag", "v2")
    git(repo.work, "push", "-q", str(repo.bare), "main", "v1-annotated", "v2")
    second = git(repo.work, "rev-parse", "HEAD")
    clone = tmp_path / "clone"

    source = GitSource(repo.file_url, clone)
    assert source.resolve_ref("v1-annotated") == repo.commit
    assert source.resolve_ref("v1") == repo.commit
    assert source.resolve_ref("main") == second
    item = FirmwareFile("rtl_nic/rtl8168h-1.fw")
    assert fetch_bytes(source, item, "v1", tmp_path) == repo.files[item.path]
    assert fetch_bytes(source, item, "v2", tmp_path) == b"new firmware\n" * 100
    unchanged = FirmwareFile("rtl_nic/rtl8168h-2.fw")
    source.prepare([unchanged], "v1")
    packs = pack_bytes(clone)
    source.prepare([unchanged], "v2")  # same blob at both tags: nothing new to transfer
    assert pack_bytes(clone) == packs

    (repo.work / "GPL-2").write_text("changed\n")
    git(repo.work, "commit", "-q", "-am", "third")
    git(repo.work, "push", "-q", str(repo.bare), "main")
    third = git(repo.work, "rev-parse", "HEAD")
    assert source.resolve_ref("main") == second  # one source, one answer
    assert GitSource(repo.file_url, clone).resolve_ref("main") == third  # looked up again
    assert GitSource(repo.file_url, clone, offline=True).resolve_ref("main") == third

    gone = GitSource((tmp_path / "nowhere.git").as_uri(), clone)
    assert gone.resolve_ref("v1-annotated") == repo.commit  # tags need no network
    assert gone.resolve_ref(second) == second  # nor do commits already fetched
    with pytest.raises(SourceFailure, match="does not appear to be a git repository"):
        gone.resolve_ref("main")  # branches do; git's own words explain the failure


def test_symlinks_stored_in_git_are_followed_inside_the_tree(tmp_path: Path) -> None:
    work = tmp_path / "old"
    (work / "cypress").mkdir(parents=True)
    (work / "nvidia" / "ad102").mkdir(parents=True)
    (work / "cypress" / "fw.bin").write_bytes(b"cypress firmware")
    (work / "nvidia" / "ad102" / "gsp.bin").write_bytes(b"gsp")
    (work / "brcm").mkdir()
    (work / "brcm" / "fw.bin").symlink_to("../cypress/fw.bin")
    (work / "nvidia" / "ad103").symlink_to("ad102")
    (work / "brcm" / "evil.bin").symlink_to("../../outside.bin")
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "old-style tree with symlinks")
    bare = tmp_path / "old.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    git(bare, "config", "uploadpack.allowFilter", "true")

    source = GitSource(bare.as_uri(), tmp_path / "clone")
    files = [FirmwareFile("brcm/fw.bin"), FirmwareFile("nvidia/ad103/gsp.bin")]
    source.prepare(files, "main")
    assert fetch_bytes(source, files[0], "main", tmp_path) == b"cypress firmware"
    assert fetch_bytes(source, files[1], "main", tmp_path) == b"gsp"
    with pytest.raises(SourceFailure, match="leads outside the firmware tree"):
        source.retrieve(FirmwareFile("brcm/evil.bin"), "main", tmp_path / "out")


def test_follow_tree_links_refuses_loops_and_absolute_links() -> None:
    entries = {
        "a": TreeEntry("120000", "blob", "1" * 40),
        "b": TreeEntry("120000", "blob", "2" * 40),
        "abs": TreeEntry("120000", "blob", "3" * 40),
        "dir/file": TreeEntry("100644", "blob", "4" * 40),
    }
    targets = {"1" * 40: "b", "2" * 40: "a", "3" * 40: "/lib/firmware/x"}
    with pytest.raises(SourceFailure, match="too many levels"):
        follow_tree_links("a", entries, targets.__getitem__)
    with pytest.raises(SourceFailure, match="absolute path"):
        follow_tree_links("abs", entries, targets.__getitem__)
    assert follow_tree_links("dir/./file", entries, targets.__getitem__) == "dir/file"
    assert follow_tree_links("dir/file/x", entries, targets.__getitem__) is None


def test_threads_share_one_clone(firmware_repo: FirmwareRepo, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    paths = [p for p in firmware_repo.files if p != "amdgpu/big_blob.bin"]
    shared = GitSource(firmware_repo.file_url, clone)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            source = shared if index % 2 else GitSource(firmware_repo.file_url, clone)
            for path in paths[index::3] + paths[:4]:  # overlapping, no prepare()
                into = tmp_path / f"t{index}-{path.replace('/', '_')}"
                source.retrieve(firmware(firmware_repo, path), "main", into)
                assert into.read_bytes() == firmware_repo.files[path]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ids = packed_object_ids(clone)
    assert len(ids) == len(set(ids))  # every object arrived once
    assert present_blobs(clone, firmware_repo.commit) == {
        git_blob_id(firmware_repo.files[p]) for p in paths
    }


WORKER = """
import sys
from pathlib import Path
from lkfirmware.plan import FirmwareFile
from lkfirmware.sources.git import GitSource
from tests.fwrepo import git_blob_id, make_firmware_repo
url, clone, ref, out = sys.argv[1:5]
paths = sys.argv[5:]
source = GitSource(url, Path(clone))
files = [FirmwareFile(p) for p in paths]
source.prepare(files, ref)
for i, item in enumerate(files):
    target = Path(out) / str(i)
    source.retrieve(item, ref, target)
    print(item.path, git_blob_id(target.read_bytes()))
"""


def test_processes_share_one_clone(firmware_repo: FirmwareRepo, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    paths = sorted(firmware_repo.files)
    runs = []
    for index in range(4):
        out = tmp_path / f"out{index}"
        out.mkdir()
        chosen = paths[index % 2 :: 2]  # two different sets, each asked for twice
        runs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER,
                    firmware_repo.file_url,
                    str(clone),
                    firmware_repo.tag,
                    str(out),
                    *chosen,
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for run in runs:
        stdout, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
        for line in stdout.splitlines():
            path, got = line.rsplit(" ", 1)
            assert got == git_blob_id(firmware_repo.files[path])
        assert len(stdout.splitlines()) in (len(paths[0::2]), len(paths[1::2]))
    ids = packed_object_ids(clone)
    assert len(ids) == len(set(ids))  # four processes, every object transferred once
    assert len(present_blobs(clone, firmware_repo.commit)) == len(paths)


def test_git_url_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LKFIRMWARE_GIT_URL", raising=False)
    assert default_git_url() == DEFAULT_GIT_URL
    monkeypatch.setenv("LKFIRMWARE_GIT_URL", "https://gitlab.com/kernel-firmware/linux-firmware")
    assert default_git_url() == "https://gitlab.com/kernel-firmware/linux-firmware"
    name = clone_dir_name(DEFAULT_GIT_URL)
    assert name.startswith("git-linux-firmware-") and "/" not in name
    assert clone_dir_name(DEFAULT_GIT_URL + "/") != clone_dir_name("file:///x/linux-firmware")
    with pytest.raises(SourceFailure, match="is not a git URL"):
        GitSource("--upload-pack=x", Path("unused"))
