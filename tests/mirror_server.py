"""A loopback plain-blob mirror for the tests and benchmarks, with injected faults.

It serves the files of a :class:`~tests.fwrepo.FirmwareRepo` (or any ``{path: bytes}``)
at its commit, its tag and ``main`` in both URL shapes of upstream:

* cgit:   ``/plain/<path>?h=<ref>`` (also ``?id=<ref>``)
* GitLab: ``/-/raw/<ref>/<path>``

WHENCE links are not files, so a link path answers 404, as upstream does.  Every
request is recorded (path, ref, status, body bytes sent), ``Range`` requests are
honoured, and faults can be queued per path::

    with MirrorServer.from_repo(repo) as server:
        server.fail("rtl_nic/rtl8168h-1.fw", status=500, times=2)
        server.drop("amdgpu/big_blob.bin", after=100_000)
        fetch_plan(plan, mirrors=[server.cgit])
        assert server.count("rtl_nic/rtl8168h-1.fw") == 3
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from tests.fwrepo import FirmwareRepo

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
    b"<body><p>Please sign in to continue.</p></body></html>\n"
)


@dataclass
class Fault:
    """One kind of misbehaviour for one path, for ``times`` requests (None: forever)."""

    kind: str
    """``status``, ``drop``, ``corrupt``, ``html``, ``slow`` or ``no_range``."""
    times: int | None = 1
    status: int = 500
    after: int = 0
    """``drop``: body bytes sent before the connection is cut."""
    delay: float = 0.0
    """``slow``: seconds before the answer (or, with ``in_body``, in the middle of it)."""
    in_body: bool = False
    content_type: str = "text/html; charset=utf-8"
    then: Callable[[], None] | None = None
    """``drop``: called after the connection is cut (e.g. to move a branch)."""


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    path: str | None
    ref: str | None
    shape: str
    range: str | None
    status: int
    sent: int
    """Body bytes written (before any dropped connection)."""
    header_bytes: int


@dataclass
class _State:
    refs: dict[str, Mapping[str, bytes]]
    latency: float = 0.0
    allow_range: bool = True
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    etags: bool = True
    """Send ``ETag`` (the sha1 of the bytes) and honour ``If-Range``."""
    _etag_cache: dict[int, tuple[bytes, str]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    most_in_flight: int = 0
    """The most requests the server was answering at one time."""

    def etag(self, data: bytes) -> str:
        with self.lock:
            known = self._etag_cache.get(id(data))
            if known is not None and known[0] is data:
                return known[1]
        tag = f'"{hashlib.sha1(data).hexdigest()}"'
        with self.lock:
            self._etag_cache[id(data)] = (data, tag)
        return tag

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            queue = self.faults.get(path) or []
            while queue:
                fault = queue[0]
                if fault.times is None:
                    return fault
                if fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        queue.pop(0)
                    return fault
                queue.pop(0)
            return None


def _split(target: str, refs: Mapping[str, Mapping[str, bytes]]) -> tuple[str, str | None, str]:
    """(shape, ref, path) of a request target; path and ref percent-decoded."""
    parts = urlsplit(target)
    if parts.path.startswith("/plain/"):
        query = parse_qs(parts.query)
        refs_given = query.get("h") or query.get("id") or []
        ref = refs_given[0] if refs_given else None
        return "cgit", ref, unquote(parts.path[len("/plain/") :])
    if parts.path.startswith("/-/raw/"):
        rest = unquote(parts.path[len("/-/raw/") :])
        # A ref may contain slashes: take the longest known ref that prefixes the rest.
        for ref in sorted(refs, key=len, reverse=True):
            if rest.startswith(ref + "/"):
                return "gitlab", ref, rest[len(ref) + 1 :]
        ref, _, path = rest.partition("/")
        return "gitlab", ref, path
    return "other", None, unquote(parts.path.lstrip("/"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as real servers do; avoids delayed-ACK stalls
    server_version = "lkfirmware-test-mirror"
    state: _State

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._counted(head=True)

    def do_GET(self) -> None:
        self._counted(head=False)

    def _counted(self, *, head: bool) -> None:
        state = self.state
        with state.lock:
            state.in_flight += 1
            state.most_in_flight = max(state.most_in_flight, state.in_flight)
        try:
            self._answer(head=head)
        finally:
            with state.lock:
                state.in_flight -= 1

    def _answer(self, *, head: bool) -> None:
        state = self.state
        if state.latency:
            time.sleep(state.latency)
        shape, ref, path = _split(self.path, state.refs)
        files = state.refs.get(ref or "") if shape != "other" else None
        data = files.get(path) if files is not None else None
        range_header = self.headers.get("Range")
        if data is None:
            self._send(404, b"Not found\n", "text/plain", ref, path, shape, range_header, head)
            return
        fault = state.take_fault(path)
        content_type = "application/octet-stream"
        if fault is not None and fault.kind == "status":
            self._send(fault.status, b"Server error\n", "text/plain", ref, path, shape, None, head)
            return
        if fault is not None and fault.kind == "html":
            self._send(200, HTML_PAGE, fault.content_type, ref, path, shape, None, head)
            return
        if fault is not None and fault.kind == "slow" and not fault.in_body:
            time.sleep(fault.delay)
        if fault is not None and fault.kind == "corrupt":
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]
        status, start = 200, 0
        extra: dict[str, str] = {"Accept-Ranges": "bytes"} if state.allow_range else {}
        etag = state.etag(data)
        if state.etags:
            extra["ETag"] = etag
        no_range = fault is not None and fault.kind == "no_range"
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range != etag:
            no_range = True  # the file changed: RFC 9110 says send all of it
        if range_header and state.allow_range and not no_range:
            spec = range_header.removeprefix("bytes=")
            first, _, last = spec.partition("-")
            start = int(first)
            end = int(last) if last else len(data) - 1
            if start >= len(data):
                extra["Content-Range"] = f"bytes */{len(data)}"
                self._send(416, b"", "text/plain", ref, path, shape, range_header, head, extra)
                return
            status = 206
            extra["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data = data[start : end + 1]
        self._send(status, data, content_type, ref, path, shape, range_header, head, extra, fault)

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        ref: str | None,
        path: str | None,
        shape: str,
        range_header: str | None,
        head: bool,
        extra: Mapping[str, str] | None = None,
        fault: Fault | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        buffered = getattr(self, "_headers_buffer", [])
        header_bytes = sum(len(line) for line in buffered) + 2
        self.end_headers()
        sent = 0
        dropped = False
        if not head:
            view = memoryview(body)
            limit = len(body)
            if fault is not None and fault.kind == "drop":
                limit = min(fault.after, len(body))
                dropped = True
            pause = None
            if fault is not None and fault.kind == "slow" and fault.in_body:
                pause = limit // 2
            try:
                while sent < limit:
                    step = min(1 << 20, limit - sent)
                    if pause is not None and sent + step > pause:
                        if sent == pause:
                            self.wfile.flush()
                            time.sleep(fault.delay if fault is not None else 0.0)
                            pause = None
                            continue
                        step = pause - sent
                    self.wfile.write(view[sent : sent + step])
                    sent += step
                self.wfile.flush()
            except OSError:
                dropped = True
        with self.state.lock:
            self.state.requests.append(
                Request(path, ref, shape, range_header, status, sent, header_bytes)
            )
        if dropped:
            if fault is not None and fault.then is not None:
                fault.then()  # before the client can notice the cut and ask again
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    """The listen backlog: the default 5 drops simultaneous connects (1 s SYN retries)."""


class MirrorServer:
    """A threaded HTTP server on 127.0.0.1 serving firmware files at some refs."""

    def __init__(self, refs: Mapping[str, Mapping[str, bytes]], *, latency: float = 0.0):
        self._state = _State(refs=dict(refs), latency=latency)
        handler = type("Handler", (_Handler,), {"state": self._state})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread: threading.Thread | None = None

    @classmethod
    def from_repo(cls, repo: FirmwareRepo, *, latency: float = 0.0) -> MirrorServer:
        """Serve ``repo``'s files at its commit, its tag and ``main``."""
        refs = {repo.commit: repo.files, repo.tag: repo.files, "main": repo.files}
        return cls(refs, latency=latency)

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> MirrorServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------

    @property
    def base(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def cgit(self) -> str:
        """The cgit-shaped template: ``.../plain/{path}?h={ref}``."""
        return f"{self.base}/plain/{{path}}?h={{ref}}"

    @property
    def gitlab(self) -> str:
        """The GitLab-shaped template: ``.../-/raw/{ref}/{path}``."""
        return f"{self.base}/-/raw/{{ref}}/{{path}}"

    # -- configuration ----------------------------------------------------------------

    @property
    def latency(self) -> float:
        return self._state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        self._state.latency = seconds

    @property
    def etags(self) -> bool:
        return self._state.etags

    @etags.setter
    def etags(self, enabled: bool) -> None:
        self._state.etags = enabled

    @property
    def allow_range(self) -> bool:
        return self._state.allow_range

    @allow_range.setter
    def allow_range(self, allowed: bool) -> None:
        self._state.allow_range = allowed

    def set_files(self, ref: str, files: Mapping[str, bytes]) -> None:
        """Serve ``files`` at ``ref`` (replacing what was there)."""
        with self._state.lock:
            self._state.refs[ref] = files

    def add_fault(self, path: str, fault: Fault) -> None:
        with self._state.lock:
            self._state.faults.setdefault(path, []).append(fault)

    def fail(self, path: str, *, status: int = 500, times: int | None = 1) -> None:
        """Answer ``status`` (no body worth reading) instead of the file."""
        self.add_fault(path, Fault("status", times=times, status=status))

    def drop(
        self,
        path: str,
        *,
        after: int,
        times: int | None = 1,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Send the full headers, ``after`` body bytes, then cut the connection.

        ``then`` runs after the cut, before the client can ask again.
        """
        self.add_fault(path, Fault("drop", times=times, after=after, then=then))

    def corrupt(self, path: str, *, times: int | None = None) -> None:
        """Serve the file with one byte flipped (same length)."""
        self.add_fault(path, Fault("corrupt", times=times))

    def html(
        self,
        path: str,
        *,
        times: int | None = None,
        content_type: str = "text/html; charset=utf-8",
    ) -> None:
        """Serve an HTML sign-in page with status 200 instead of the file."""
        self.add_fault(path, Fault("html", times=times, content_type=content_type))

    def slow(
        self, path: str, *, delay: float, times: int | None = 1, in_body: bool = False
    ) -> None:
        """Wait ``delay`` seconds before answering (or halfway through the body)."""
        self.add_fault(path, Fault("slow", times=times, delay=delay, in_body=in_body))

    def ignore_range(self, path: str, *, times: int | None = None) -> None:
        """Answer a Range request for ``path`` with the whole file (status 200)."""
        self.add_fault(path, Fault("no_range", times=times))

    def clear_faults(self) -> None:
        with self._state.lock:
            self._state.faults.clear()

    # -- what happened ----------------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        with self._state.lock:
            return list(self._state.requests)

    def reset_counts(self) -> None:
        with self._state.lock:
            self._state.requests.clear()
            self._state.most_in_flight = 0

    @property
    def most_in_flight(self) -> int:
        """The most requests answered at one time since the start (or reset_counts)."""
        with self._state.lock:
            return self._state.most_in_flight

    def count(self, path: str, *, status: int | None = None) -> int:
        """Requests for ``path`` (optionally only those answered with ``status``)."""
        return sum(
            1 for r in self.requests if r.path == path and (status is None or r.status == status)
        )

    def bytes_sent(self, path: str | None = None) -> int:
        """Body bytes sent, for ``path`` or in all."""
        return sum(r.sent for r in self.requests if path is None or r.path == path)

    def wire_bytes(self) -> int:
        """Body plus (approximate) header bytes of every answer."""
        return sum(r.sent + r.header_bytes for r in self.requests)

    def paths_requested(self) -> set[str]:
        return {r.path for r in self.requests if r.path is not None}
