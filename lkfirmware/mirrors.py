"""Plain-blob mirrors: URL templates with ``{path}`` and ``{ref}``, and their presets.

A mirror serves one linux-firmware file at one ref per URL, e.g. cgit's
``.../plain/<path>?h=<ref>`` or GitLab's ``.../-/raw/<ref>/<path>``.  Mirrors come from
the command line (``--mirror``, a preset name or a template), else from the environment
(``LKFIRMWARE_MIRRORS``), else the ``kernel.org`` preset.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote, urlsplit

from lkfirmware.errors import UsageError

PRESETS: dict[str, str] = {
    "kernel.org": (
        "https://git.kernel.org/pub/scm/linux/kernel/git/firmware/linux-firmware.git"
        "/plain/{path}?h={ref}"
    ),
    "gitlab": "https://gitlab.com/kernel-firmware/linux-firmware/-/raw/{ref}/{path}",
}
"""Known mirrors by name; ``kernel.org`` is the default."""

DEFAULT_MIRROR = "kernel.org"
ENV_MIRRORS = "LKFIRMWARE_MIRRORS"

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def mirror_templates(given: Sequence[str] | None, env: Mapping[str, str] = os.environ) -> list[str]:
    """The mirror URL templates to try, in order.

    ``given`` (``--mirror`` values) wins; when it is empty, ``LKFIRMWARE_MIRRORS`` in
    ``env`` (names or templates separated by commas or whitespace); when that is unset,
    the ``kernel.org`` preset.  Preset names are expanded; every template must be an
    ``http(s)`` URL with a ``{path}`` placeholder and may have ``{ref}``.  Duplicates are
    dropped, keeping the first.

    >>> mirror_templates(["gitlab"], env={})
    ['https://gitlab.com/kernel-firmware/linux-firmware/-/raw/{ref}/{path}']
    """
    names: list[str] = [item.strip() for item in given or () if item.strip()]
    origin = "--mirror"
    if not names:
        names = [item for item in re.split(r"[\s,]+", env.get(ENV_MIRRORS, "")) if item]
        origin = ENV_MIRRORS
    if not names:
        names = [DEFAULT_MIRROR]
        origin = "the default"
    templates: list[str] = []
    for name in names:
        template = PRESETS.get(name, name)
        check_template(template, origin=origin)
        if template not in templates:
            templates.append(template)
    return templates


def check_template(template: str, *, origin: str = "--mirror") -> None:
    """Raise :class:`UsageError` unless ``template`` is a usable mirror URL template."""
    presets = ", ".join(sorted(PRESETS))
    hint = (
        f"A mirror is a preset name ({presets}) or a URL template such as "
        f"{PRESETS['gitlab']!r}; for a local folder use --source dir."
    )
    scheme = urlsplit(template).scheme.lower()
    if scheme not in ("http", "https"):
        raise UsageError(f"mirror {template!r} (from {origin}) is not an http(s) URL. {hint}")
    fields = _PLACEHOLDER.findall(template)
    unknown = sorted(set(fields) - {"path", "ref"})
    if unknown:
        raise UsageError(
            f"mirror {template!r} (from {origin}) has unknown placeholder(s) "
            f"{', '.join('{' + u + '}' for u in unknown)}; only {{path}} and {{ref}} exist. {hint}"
        )
    if "path" not in fields:
        raise UsageError(f"mirror {template!r} (from {origin}) has no {{path}} placeholder. {hint}")


def blob_url(template: str, path: str, ref: str) -> str:
    """The URL of firmware file ``path`` at ``ref`` on the mirror ``template``.

    Every path segment is percent-encoded on its own (spaces, commas, ``#``, ``?``,
    ``%``, ``+``, non-ASCII as UTF-8); the slashes between segments stay.  The ref is
    encoded the same way, keeping ``/`` (branch names such as ``topic/x``).

    >>> blob_url(PRESETS["gitlab"], "brcm/a b,c.txt", "20251215")
    'https://gitlab.com/kernel-firmware/linux-firmware/-/raw/20251215/brcm/a%20b%2Cc.txt'
    """
    segments = path.split("/")
    if not path or path.startswith("/") or any(s in ("", ".", "..") for s in segments):
        raise UsageError(f"firmware path {path!r} is not a plain relative path")
    if not ref or any(s in ("", ".", "..") for s in ref.split("/")):
        raise UsageError(f"ref {ref!r} is not a valid git ref")
    encoded_path = "/".join(quote(segment, safe="") for segment in segments)
    encoded_ref = quote(ref, safe="/")
    return template.replace("{ref}", encoded_ref).replace("{path}", encoded_path)
