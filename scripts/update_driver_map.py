#!/usr/bin/env python3
"""Regenerate data/driver_map.json, the catalog lkfirmware ships.

Sources of the firmware index (one of):
  --whence FILE            a WHENCE file
  --whence-url URL         a WHENCE at a URL ({ref} in it is replaced by --ref)
  --git URL_OR_PATH        a linux-firmware git repository: WHENCE at --ref, and every
                           file's size and git blob id from its tree (no blob is downloaded)
Sources of kernel module data (optional, one of):
  --modinfo FILE           JSON as in shared/kernel/modinfo-*.json
  --modules PATH           a modules directory, kernel.tar or module file (scanned in-process)

The committed map is made with:
  python scripts/update_driver_map.py --whence ../shared/linux-firmware/WHENCE \\
      --ref 0ab00e43853070c76cb954da55dd1198cb811255 \\
      --modinfo ../shared/kernel/modinfo-6.12.117-amd64.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lkfirmware.catalog import (  # noqa: E402
    Catalog,
    ModuleRequests,
    dump_map,
    modules_from_modinfo,
    modules_needing_firmware,
    normalise_module,
)
from lkfirmware.errors import LkFirmwareError  # noqa: E402


def whence_from_url(url: str, ref: str) -> str:
    import requests

    response = requests.get(url.replace("{ref}", ref), timeout=60)
    response.raise_for_status()
    return response.text


def whence_and_tree_from_git(
    url: str, ref: str
) -> tuple[str, dict[str, tuple[int | None, str]], str]:
    """WHENCE text, the tree listing and the commit of ``ref`` in a linux-firmware repo.

    A local repository is read in place with ``git ls-tree -r -l`` (sizes and blob ids,
    nothing downloaded).  A URL gets a partial clone without blobs: blob ids come from
    its tree; sizes are not recorded (git trees carry no sizes; the blob ids alone
    verify every download, sizes included).
    """
    if Path(url).is_dir():
        return _from_local_repository(Path(url), ref)
    from lkfirmware.plan import FirmwareFile
    from lkfirmware.sources.git import GitSource

    with tempfile.TemporaryDirectory(prefix="lkfirmware-map-") as work:
        source = GitSource(url, Path(work) / "clone")
        commit = source.resolve_ref(ref)
        ids = source.blob_ids(ref)
        whence = FirmwareFile("WHENCE", git_id=ids["WHENCE"])
        source.prepare([whence], ref)
        source.retrieve(whence, ref, Path(work) / "WHENCE")
        text = (Path(work) / "WHENCE").read_text(encoding="utf-8")
    return text, {path: (None, oid) for path, oid in ids.items()}, commit


def _from_local_repository(
    repo: Path, ref: str
) -> tuple[str, dict[str, tuple[int | None, str]], str]:
    import git

    runner = git.Git(str(repo))
    commit = runner.rev_parse(f"{ref}^{{commit}}")
    tree: dict[str, tuple[int | None, str]] = {}
    listing = runner.ls_tree("-r", "-l", "-z", "--full-tree", commit, strip_newline_in_stdout=False)
    for record in listing.split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        mode, kind, oid, size = meta.split()
        if kind == "blob" and not mode.startswith("12"):  # regular files, not symlinks
            tree[path] = (int(size), oid)
    text = runner.show(f"{commit}:WHENCE")
    return text, tree, commit


def modules_from_scan(path: Path) -> tuple[dict[str, ModuleRequests], str | None]:
    from lkfirmware.modules import scan_modules

    scan = scan_modules(path)
    for problem in scan.problems:
        print(f"warning: {problem.path}: {problem.reason}", file=sys.stderr)
    modules = {
        normalise_module(name): ModuleRequests(
            normalise_module(name),
            module.firmware,
            tuple(normalise_module(d) for d in module.depends),
        )
        for name, module in scan.modules.items()
    }
    return modules, scan.kernel_version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    index = parser.add_mutually_exclusive_group(required=True)
    index.add_argument("--whence", type=Path)
    index.add_argument("--whence-url")
    index.add_argument("--git")
    parser.add_argument("--ref", required=True, help="linux-firmware ref (tag or commit)")
    kernel = parser.add_mutually_exclusive_group()
    kernel.add_argument("--modinfo", type=Path)
    kernel.add_argument("--modules", type=Path)
    parser.add_argument("--output", type=Path, default=ROOT / "data" / "driver_map.json")
    args = parser.parse_args(argv)

    provenance = {"linux_firmware_ref": args.ref}
    tree: dict[str, tuple[int | None, str]] = {}
    if args.whence:
        text = args.whence.read_text(encoding="utf-8")
        provenance["whence_source"] = args.whence.name
    elif args.whence_url:
        text = whence_from_url(args.whence_url, args.ref)
        provenance["whence_source"] = args.whence_url
    else:
        text, tree, commit = whence_and_tree_from_git(args.git, args.ref)
        provenance["whence_source"] = f"git {args.git}"
        provenance["linux_firmware_commit"] = commit
    if len(args.ref) == 40 and "linux_firmware_commit" not in provenance:
        provenance["linux_firmware_commit"] = args.ref
    provenance["whence_sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()

    modules: dict[str, ModuleRequests] = {}
    if args.modinfo:
        data = json.loads(args.modinfo.read_text(encoding="utf-8"))
        modules = modules_from_modinfo(data)
        provenance["kernel"] = str(data.get("kernel", args.modinfo.name))
    elif args.modules:
        modules, version = modules_from_scan(args.modules)
        provenance["kernel"] = version or args.modules.name
    try:
        catalog = Catalog.from_whence(
            text,
            ref=args.ref,
            modules=modules_needing_firmware(modules),
            tree=tree,
            provenance=provenance,
        )
    except LkFirmwareError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    output = dump_map(catalog.to_map())
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_name(args.output.name + ".tmp")
    temporary.write_text(output, encoding="utf-8")
    os.replace(temporary, args.output)
    print(
        f"{args.output}: {sum(1 for _ in catalog.file_paths())} files, {len(catalog.links)} links, "
        f"{len(catalog.drivers)} drivers, {len(catalog.modules)} modules"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
