"""Plain-blob mirrors over HTTP: one GET per file, streamed to disk, resumable.

Network behaviour lives here: one :class:`requests.Session` (shared by every mirror of
a fetch) whose adapter retries connect and read errors, 429 and 5xx answers with
exponential backoff and jitter; timeouts on every request; bodies streamed in 64 KiB
chunks; an interrupted body resumed with an HTTP ``Range`` request when the server
allows it.  What cannot be the firmware (an HTML page served with status 200, a body of
the wrong length) is refused here; the fetcher checks hashes.
"""

from __future__ import annotations

import inspect
import itertools
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lkfirmware.cache import is_immutable_ref
from lkfirmware.errors import UsageError
from lkfirmware.mirrors import blob_url, check_template
from lkfirmware.plan import FirmwareFile
from lkfirmware.sources.base import BlobMissing, SourceFailure

if TYPE_CHECKING:
    import requests

CHUNK = 1 << 16
RETRY_STATUSES = frozenset({429, *range(500, 600)} - {501, 505})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_HTML_STARTS = (b"<!doctype html", b"<html")


@dataclass(frozen=True)
class HttpSettings:
    """Retries, backoff and timeouts for plain mirrors.

    ``from_env`` reads ``LKFIRMWARE_HTTP_RETRIES``, ``LKFIRMWARE_HTTP_BACKOFF`` (seconds,
    the backoff factor) and ``LKFIRMWARE_HTTP_TIMEOUT`` (seconds to wait for bytes).
    """

    retries: int = 4
    """Retries of one request on connect/read errors, 429 and 5xx."""
    backoff: float = 0.5
    """Backoff factor: waits of about backoff * 2**n seconds between retries."""
    jitter: float = 0.5
    """Random seconds (up to) added to each backoff wait (urllib3 >= 2)."""
    backoff_max: float = 30.0
    retry_after_max: float = 60.0
    """Longest ``Retry-After`` honoured (urllib3 >= 2.x where supported)."""
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    resume_attempts: int = 3
    """How often an interrupted body is resumed (with ``Range``) before giving up."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> HttpSettings:
        """Defaults, overridden by the ``LKFIRMWARE_HTTP_*`` variables in ``env``."""
        settings = cls()
        retries = _number(env, "LKFIRMWARE_HTTP_RETRIES")
        backoff = _number(env, "LKFIRMWARE_HTTP_BACKOFF")
        timeout = _number(env, "LKFIRMWARE_HTTP_TIMEOUT")
        if retries is not None:
            settings = replace(settings, retries=int(retries))
        if backoff is not None:
            settings = replace(settings, backoff=backoff, jitter=backoff)
        if timeout is not None:
            settings = replace(settings, read_timeout=timeout, connect_timeout=min(timeout, 10.0))
        return settings


def _number(env: Mapping[str, str], name: str) -> float | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0 or (name.endswith("RETRIES") and not value.is_integer()):
        raise UsageError(f"{name}={text!r} is not a valid number; unset it or give e.g. 3")
    return value


def make_session(settings: HttpSettings | None = None, *, pool_size: int = 8) -> requests.Session:
    """A :class:`requests.Session` with retries for every ``http(s)`` URL.

    Proxy variables (``HTTPS_PROXY``, ``NO_PROXY``...) apply, as requests reads them.
    """
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    settings = settings or HttpSettings.from_env()
    options: dict[str, object] = {
        "total": settings.retries,
        "connect": settings.retries,
        "read": settings.retries,
        "status": settings.retries,
        "redirect": 10,
        "allowed_methods": frozenset({"GET", "HEAD"}),
        "status_forcelist": RETRY_STATUSES,
        "backoff_factor": settings.backoff,
        "raise_on_status": False,
        "respect_retry_after_header": True,
    }
    accepted = inspect.signature(Retry.__init__).parameters
    # backoff_jitter and backoff_max arrived in urllib3 2.0, retry_after_max later;
    # older versions retry without jitter and honour any Retry-After.
    for name, value in (
        ("backoff_jitter", settings.jitter),
        ("backoff_max", settings.backoff_max),
        ("retry_after_max", settings.retry_after_max),
    ):
        if name in accepted:
            options[name] = value
    retry = Retry(**options)  # type: ignore[arg-type]
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=max(pool_size, 4))
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"lkfirmware/{_version()} (+python-requests)"
    return session


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("lkfirmware")
    except metadata.PackageNotFoundError:
        return "dev"


def looks_like_html(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a body) starts an HTML document."""
    return head[:1024].lstrip().lower().startswith(_HTML_STARTS)


def _is_html_name(path: str) -> bool:
    return path.lower().endswith((".html", ".htm", ".xhtml"))


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and what it wraps (requests -> urllib3 -> socket), outermost first."""
    chain = [error]
    for _ in range(6):
        current = chain[-1]
        inner = getattr(current, "reason", None) or (current.args[0] if current.args else None)
        if not isinstance(inner, BaseException) or inner in chain:
            break
        chain.append(inner)
    return chain


def is_unreachable(error: BaseException) -> bool:
    """True when the server could not be reached at all (DNS, refused, connect timeout)."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    return any(isinstance(c, NewConnectionError | ConnectTimeoutError) for c in _causes(error))


def describe_error(error: BaseException) -> str:
    """A one-line reason for a requests/urllib3 failure, without the noise."""
    import requests

    if isinstance(error, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if isinstance(error, requests.exceptions.ReadTimeout):
        return "timed out waiting for data"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "connection dropped mid-body"
    reason = _causes(error)[-1]
    text = str(reason).strip() or type(reason).__name__
    for marker in ("Failed to establish a new connection: ", "Failed to resolve "):
        if marker in text:
            prefix = "cannot connect: " if marker.startswith("Failed to e") else "cannot resolve "
            text = prefix + text.split(marker, 1)[1]
            break
    if len(text) > 160:
        text = text[:157] + "..."
    return text


class PlainMirrorSource:
    """A :class:`~lkfirmware.sources.base.BlobSource` for one mirror URL template.

    Several sources can share one ``session`` (the fetcher creates one per fetch).
    ``retrieve`` resumes a partial ``into`` file left by an earlier attempt.
    """

    resumable = True
    """``retrieve`` continues a partial ``into`` file instead of starting again."""
    reports_progress = True
    """``retrieve`` accepts a ``progress`` callback receiving byte counts."""

    def __init__(
        self,
        template: str,
        *,
        session: requests.Session | None = None,
        settings: HttpSettings | None = None,
    ) -> None:
        check_template(template)
        self.template = template
        self.label = template
        self.settings = settings or HttpSettings.from_env()
        self._session = session
        self._owns_session = session is None
        self._session_lock = threading.Lock()
        self._unreachable: str | None = None
        """Why the server could not be reached; later files skip it (a circuit breaker)."""

    def __repr__(self) -> str:
        return f"PlainMirrorSource({self.template!r})"

    @property
    def session(self) -> requests.Session:
        """The session used for requests (created on first use when none was given)."""
        with self._session_lock:
            if self._session is None:
                self._session = make_session(self.settings)
            return self._session

    def close(self) -> None:
        """Close the session if this source created it."""
        if self._owns_session and self._session is not None:
            self._session.close()
            self._session = None

    def url(self, path: str, ref: str) -> str:
        """The URL of ``path`` at ``ref`` on this mirror."""
        return blob_url(self.template, path, ref)

    def prepare(self, files: Sequence[FirmwareFile], ref: str) -> None:
        """Nothing to do in advance: every file is one request."""

    def known_ids(self, ref: str) -> dict[str, tuple[int, str]] | None:
        """A plain mirror knows no blob ids."""
        return None

    def retrieve(
        self,
        file: FirmwareFile,
        ref: str,
        into: Path,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Download ``file`` at ``ref`` into ``into``, resuming what ``into`` already holds.

        Raises :class:`BlobMissing` on 404/410 and :class:`SourceFailure` on anything
        else that is not the complete body: connection errors and 429/5xx after the
        session's retries, an HTML page, a length other than ``file.size``, or a body
        still cut short after ``resume_attempts`` resumptions (the partial file stays).
        """
        import requests

        url = self.url(file.path, ref)
        if self._unreachable is not None:
            raise SourceFailure(
                f"{url}: not tried, the mirror was unreachable ({self._unreachable})"
            )
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        attempts = self.settings.resume_attempts + 1
        last_problem = ""
        validator: str | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(self.settings.backoff * 2 ** (attempt - 1), 5.0))
            have = into.stat().st_size if into.exists() else 0
            if have and file.size is not None and have >= file.size:
                if have == file.size:
                    return
                into.unlink()
                have = 0
            headers = {"Accept-Encoding": "identity"}
            if have:
                headers["Range"] = f"bytes={have}-"
                if validator:
                    # The rest only if it is still the same file; else the server sends it all.
                    headers["If-Range"] = validator
            try:
                response = self.session.get(url, headers=headers, stream=True, timeout=timeout)
            except requests.RequestException as error:
                problem = describe_error(error)
                if is_unreachable(error):
                    self._unreachable = problem
                raise SourceFailure(f"{url}: {problem}") from error
            with response:
                status = response.status_code
                if status in (404, 410):
                    raise BlobMissing(f"{url}: HTTP {status} (not on this mirror)")
                if status == 416 and have:
                    into.unlink()
                    last_problem = "the server refused to resume (HTTP 416)"
                    continue
                if status not in (200, 206):
                    reason = f" {response.reason}" if response.reason else ""
                    count = self.settings.retries
                    retried = (
                        f" (after {count} {'retry' if count == 1 else 'retries'})"
                        if status in RETRY_STATUSES and count
                        else ""
                    )
                    raise SourceFailure(f"{url}: HTTP {status}{reason}{retried}")
                content_type = response.headers.get("Content-Type", "").lower()
                if "html" in content_type and not _is_html_name(file.path):
                    raise SourceFailure(
                        f"{url}: served an HTML page ({content_type}), not firmware"
                    )
                etag = response.headers.get("ETag", "")
                if status == 200:
                    strong = etag and not etag.startswith("W/")
                    validator = etag if strong else response.headers.get("Last-Modified")
                encoding = response.headers.get("Content-Encoding", "identity").lower()
                encoded = encoding not in ("", "identity")
                offset, total = 0, None
                if status == 206:
                    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
                    if match is None or int(match.group(1)) != have or encoded:
                        into.unlink(missing_ok=True)
                        last_problem = "the server answered the Range request wrongly"
                        continue
                    offset = have
                    if match.group(3) != "*":
                        total = int(match.group(3))
                elif not encoded and response.headers.get("Content-Length", "").isdigit():
                    total = int(response.headers["Content-Length"])
                try:
                    chunks = response.iter_content(CHUNK)
                    first = next(chunks, b"")
                except requests.RequestException as error:
                    last_problem = describe_error(error)
                    continue
                if offset == 0 and not _is_html_name(file.path) and looks_like_html(first):
                    raise SourceFailure(f"{url}: served an HTML page, not firmware")
                if total is not None and file.size is not None and total != file.size:
                    raise SourceFailure(f"{url}: serves {total} bytes, expected {file.size}")
                try:
                    with into.open("r+b" if offset else "wb") as out:
                        out.seek(offset)
                        out.truncate()
                        for chunk in itertools.chain((first,), chunks):
                            out.write(chunk)
                            if progress is not None:
                                progress(len(chunk))
                except requests.RequestException as error:
                    last_problem = describe_error(error)
                else:
                    written = into.stat().st_size
                    if total is None or written == total:
                        return
                    last_problem = f"the body ended after {written} of {total} bytes"
                if encoded or not (validator or file.git_id or is_immutable_ref(ref)):
                    # Nothing could tell whether the file changes before the rest arrives
                    # (a branch that moves): start again rather than mix two versions.
                    into.unlink(missing_ok=True)
        kept = " the partial download is kept to resume;" if into.exists() else ""
        raise SourceFailure(f"{url}: {last_problem} (after {attempts} attempts;{kept} try again)")
