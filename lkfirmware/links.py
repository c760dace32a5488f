"""Following WHENCE links: relative targets, chains, and paths below directory links."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

MAX_LINK_DEPTH = 40


def link_destination(link: str, target: str) -> str:
    """Where ``target``, relative to the directory of ``link``, points below the root.

    >>> link_destination("brcm/a.bin", "../cypress/b.bin")
    'cypress/b.bin'
    """
    return posixpath.normpath(posixpath.join(posixpath.dirname(link), target))


def leaves_root(path: str) -> bool:
    """True when a normalised relative path climbs above the firmware root."""
    return path == ".." or path.startswith("../")


def resolve_links(path: str, links: Mapping[str, str]) -> str:
    """Follow links (name -> target as written) in every component of ``path``.

    Raises ``ValueError`` on a cycle, a chain that is too long, or a path that leaves
    the root.

    >>> resolve_links("nvidia/ad103/gsp/x.bin", {"nvidia/ad103": "ad102"})
    'nvidia/ad102/gsp/x.bin'
    """
    for _ in range(MAX_LINK_DEPTH):
        parts = path.split("/")
        for end in range(len(parts), 0, -1):
            prefix = "/".join(parts[:end])
            if prefix in links:
                path = link_destination(prefix, links[prefix])
                if parts[end:]:
                    path = posixpath.join(path, *parts[end:])
                if leaves_root(path):
                    raise ValueError(f"{prefix} leads outside the firmware root")
                break
        else:
            return path
    raise ValueError(f"{path}: too many levels of links (a cycle?)")
