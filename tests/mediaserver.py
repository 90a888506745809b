"""A loopback HTTP media server for tests and benchmarks: YouTube's media URLs, minus YouTube.

Owns: serving registered files at ``/media/<ytid>.<ext>`` (or a folder of files, an HLS playlist
and its segments, at ``/media/<ytid>/<name>``) on 127.0.0.1 with real byte-range
semantics (206 + Content-Range, 416, HEAD, Accept-Ranges), a per-request log (method, Range
header as sent, status, body bytes sent) so tests can bound bytes per clip and forbid
open-ended requests, YouTube-like throttling of open-ended requests, added latency, and
injected failures per ID (HTTP statuses, connection resets, truncated bodies, slow starts), and
YouTube's partial PO-token enforcement: a URL that answers its first bytes and then 403s
(`forbid_past`).

Python's ``http.server`` ignores Range, hence this. Every wait in a handler is bounded: sockets
carry a timeout, sleeps wake on close(), and close() shuts the open connections and joins the
handler threads.

yt-dlp's generic extractor recognises ``url_for(ytid)`` as a direct media link by the
Content-Type it answers with (audio/*); it probes with one GET without a Range header and does
not read the body, so that GET shows up in the log as an open-ended request.
"""

from __future__ import annotations

import io
import mimetypes
import re
import socket
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

STATUS_FAULTS = {"404": 404, "410": 410, "403": 403, "429": 429, "500": 500, "503": 503}
CONNECTION_FAULTS = ("reset", "truncate", "slow_start")
FAULT_MODES = (*STATUS_FAULTS, *CONNECTION_FAULTS)

_FOLDER_CONTENT_TYPES = {"m3u8": "application/vnd.apple.mpegurl", "ts": "video/mp2t", "m4s": "video/iso.segment",
                         "mp4": "audio/mp4"}
_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_UNSATISFIABLE = "unsatisfiable"


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it.

    `bytes_sent` counts body bytes handed to the socket. A client that stops reading and
    closes (yt-dlp's generic probe does) may be charged for up to the socket buffers' worth
    more than it read: on loopback that can be a whole small file.
    """

    ytid: str | None  # as named in /media/<ytid>[.<ext>] or /media/<ytid>/<name>, registered or not; None for other paths
    method: str
    path: str
    range_header: str | None  # exactly as sent
    status: int | None  # None until the status line went out (or if it never did)
    bytes_sent: int
    fault: str | None  # the injected fault that shaped this response, if any
    completed: bool  # the whole announced body went out
    finished: bool  # the handler is done with this request
    started_at: float  # time.monotonic()
    elapsed_s: float

    @property
    def is_open_ended(self) -> bool:
        """A GET that asked for everything from some offset on (no Range, or ``bytes=N-``)."""
        return self.method == "GET" and is_open_ended_range(self.range_header)


def is_open_ended_range(range_header: str | None) -> bool:
    if range_header is None:
        return True
    m = _RANGE_RE.match(range_header)
    return bool(m and m.group(1) and not m.group(2))


def parse_range(range_header: str | None, size: int) -> tuple[int, int] | str | None:
    """(first, last) inclusive; None to serve the whole file; _UNSATISFIABLE for a 416.

    Per RFC 9110 a Range the server does not understand (bad syntax, several ranges) is
    ignored, and a last byte past the end is clamped.
    """
    if range_header is None:
        return None
    m = _RANGE_RE.match(range_header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first_s, last_s = m.group(1), m.group(2)
    if not first_s:  # suffix range: the last N bytes
        suffix = int(last_s)
        if suffix == 0 or size == 0:
            return _UNSATISFIABLE
        return max(size - suffix, 0), size - 1
    first = int(first_s)
    if last_s and int(last_s) < first:  # syntactically invalid: ignored
        return None
    if first >= size:
        return _UNSATISFIABLE
    return first, min(int(last_s), size - 1) if last_s else size - 1


@dataclass(frozen=True)
class _Media:
    path: Path
    ext: str
    content_type: str
    size: int


@dataclass
class _Fault:
    mode: str
    remaining: int | None  # None: every request
    slow_start_s: float


class _LiveRecord:
    """The mutable record a handler fills in; snapshots go out as RequestRecord."""

    def __init__(self, ytid: str | None, method: str, path: str, range_header: str | None) -> None:
        self.record = RequestRecord(ytid=ytid, method=method, path=path, range_header=range_header,
                                    status=None, bytes_sent=0, fault=None, completed=False,
                                    finished=False, started_at=time.monotonic(), elapsed_s=0.0)

    def update(self, **changes: object) -> None:
        self.record = replace(self.record, **changes)  # type: ignore[arg-type]


class MediaServer:
    """Serve files by YouTube ID on 127.0.0.1, count what was asked for, fail on demand.

    >>> with MediaServer(open_ended_rate=32 * 1024) as server:
    ...     url = server.add("-abcdefghij", Path("clip.m4a"), "audio/mp4")
    """

    def __init__(self, *, latency: float = 0.0, open_ended_rate: float | None = None,
                 request_timeout: float = 10.0, chunk_size: int = 64 * 1024) -> None:
        self.latency = latency  # seconds added before answering each request
        self.open_ended_rate = open_ended_rate  # bytes/s for open-ended GETs; None: unthrottled
        self.request_timeout = request_timeout  # socket timeout per connection
        self.chunk_size = chunk_size
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._media: dict[str, _Media] = {}
        self._folders: dict[str, dict[str, _Media]] = {}  # ytid -> file name -> file
        self._faults: dict[str, _Fault] = {}
        self._forbidden_past: dict[str, int] = {}
        self._records: list[_LiveRecord] = []
        self._in_flight = 0
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> MediaServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _Server(("127.0.0.1", 0), _Handler, owner=self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"MediaServer:{self.port}", daemon=True)
        self._thread.start()
        return self

    def close(self, join_timeout: float = 5.0) -> None:
        """Stop accepting, wake every sleeping handler, cut open connections, join threads."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        deadline = time.monotonic() + join_timeout
        # Repeat: a connection accepted just before shutdown() may register a moment later.
        while time.monotonic() < deadline:
            with self._lock:
                connections = list(self._connections.items())
            if not connections:
                break
            for conn, _ in connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            for _, thread in connections:
                thread.join(max(0.0, deadline - time.monotonic()))
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(join_timeout)
        self._httpd = None

    def __enter__(self) -> MediaServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("MediaServer is not started")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- content ---------------------------------------------------------------------------

    def add(self, ytid: str, path: Path, content_type: str | None = None) -> str:
        """Serve `path` as `ytid` (its extension kept); returns its URL."""
        path = Path(path)
        if not ytid or "/" in ytid or "." in ytid:
            raise ValueError(f"not a usable ID: {ytid!r}")
        ext = path.suffix.lstrip(".")
        content_type = content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        with self._lock:
            self._media[ytid] = _Media(path=path, ext=ext, content_type=content_type,
                                       size=path.stat().st_size)
        return self.url_for(ytid)

    def add_folder(self, ytid: str, folder: Path, content_types: dict[str, str] | None = None) -> str:
        """Serve every file directly in `folder` at ``/media/<ytid>/<name>`` (an HLS playlist and its
        segments: one ID, many resources, one log); returns the folder's URL, ending in '/'.
        `content_types` maps a file extension to its Content-Type (else guessed)."""
        if not ytid or "/" in ytid or "." in ytid:
            raise ValueError(f"not a usable ID: {ytid!r}")
        types = {**_FOLDER_CONTENT_TYPES, **(content_types or {})}
        files = {}
        for path in sorted(Path(folder).iterdir()):
            if path.is_file():
                ext = path.suffix.lstrip(".")
                content_type = types.get(ext) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                files[path.name] = _Media(path=path, ext=ext, content_type=content_type, size=path.stat().st_size)
        with self._lock:
            self._folders[ytid] = files
        return f"{self.base_url}/media/{urllib.parse.quote(ytid)}/"

    def url_for(self, ytid: str) -> str:
        with self._lock:
            media = self._media.get(ytid)
        suffix = f".{media.ext}" if media and media.ext else ""
        return f"{self.base_url}/media/{urllib.parse.quote(ytid)}{suffix}"

    def url_template(self, ext: str = "m4a") -> str:
        """``http://127.0.0.1:PORT/media/{ytid}.<ext>``, for code that formats URLs itself."""
        return f"{self.base_url}/media/{{ytid}}.{ext}"

    # -- faults ----------------------------------------------------------------------------

    def fail(self, ytid: str, mode: str | int, times: int | None = None, *,
             slow_start_s: float = 1.0) -> None:
        """Make requests for `ytid` fail with `mode` (one of FAULT_MODES).

        times=None fails every request; times=N fails the first N (any method) and then
        serves normally. slow_start_s is how long `slow_start` waits before the first byte.
        """
        mode = str(mode)
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {FAULT_MODES}")
        if times is not None and times < 0:
            raise ValueError("times must be >= 0")
        with self._lock:
            self._faults[ytid] = _Fault(mode=mode, remaining=times, slow_start_s=slow_start_s)

    def forbid_past(self, ytid: str, limit_bytes: int) -> None:
        """Answer 403 to every request for `ytid` that reaches byte `limit_bytes` or beyond, as
        YouTube does for a URL without a valid PO token: ``bytes=0-1048575`` 206, ``bytes=0-2097151``
        403 (cobalt #1565); a request without Range asks for everything, so it is refused too."""
        with self._lock:
            self._forbidden_past[ytid] = limit_bytes

    def clear_failures(self, ytid: str | None = None) -> None:
        with self._lock:
            if ytid is None:
                self._faults.clear()
                self._forbidden_past.clear()
            else:
                self._faults.pop(ytid, None)
                self._forbidden_past.pop(ytid, None)

    def _forbids(self, ytid: str, span: tuple[int, int] | str | None, size: int) -> bool:
        with self._lock:
            limit = self._forbidden_past.get(ytid)
        if limit is None:
            return False
        last = span[1] if isinstance(span, tuple) else size - 1
        return last >= limit

    def _take_fault(self, ytid: str) -> _Fault | None:
        with self._lock:
            fault = self._faults.get(ytid)
            if fault is None:
                return None
            if fault.remaining is not None:
                if fault.remaining <= 0:
                    del self._faults[ytid]
                    return None
                fault.remaining -= 1
            return fault

    # -- counters --------------------------------------------------------------------------

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is being answered; False if `timeout` ran out first."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def requests(self, ytid: str | None = None, *, settle_s: float = 1.0) -> list[RequestRecord]:
        """Snapshots of the requests so far (for one ID, or all), oldest first.

        Waits up to `settle_s` for requests in flight, so a test that has just read a
        response sees that response's record complete.
        """
        if settle_s:
            self.wait_idle(settle_s)
        with self._lock:
            records = [live.record for live in self._records]
        return [r for r in records if ytid is None or r.ytid == ytid]

    def bytes_sent(self, ytid: str | None = None, *, settle_s: float = 1.0) -> int:
        return sum(r.bytes_sent for r in self.requests(ytid, settle_s=settle_s))

    def open_ended_requests(self, ytid: str | None = None, *, settle_s: float = 1.0) -> list[RequestRecord]:
        return [r for r in self.requests(ytid, settle_s=settle_s) if r.is_open_ended]

    def reset_counters(self) -> None:
        with self._lock:
            self._records = [live for live in self._records if not live.record.finished]

    # -- used by the handler ---------------------------------------------------------------

    def _begin(self, live: _LiveRecord) -> None:
        with self._lock:
            self._records.append(live)
            self._in_flight += 1

    def _end(self, live: _LiveRecord) -> None:
        with self._idle:
            live.update(finished=True, elapsed_s=time.monotonic() - live.record.started_at)
            self._in_flight -= 1
            self._idle.notify_all()

    def _lookup(self, ytid: str, name: str | None = None) -> _Media | None:
        with self._lock:
            if name is not None:
                return self._folders.get(ytid, {}).get(name)
            return self._media.get(ytid)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless closing; False if the server is closing."""
        if seconds > 0:
            return not self._stopping.wait(seconds)
        return not self._stopping.is_set()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections[conn] = threading.current_thread()
            else:
                self._connections.pop(conn, None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # MediaServer.close joins the handler threads itself
    request_queue_size = 128  # socketserver's 5 drops concurrent connects (1 s SYN retry)

    def __init__(self, address: tuple[str, int], handler: type, owner: MediaServer) -> None:
        self.owner = owner
        super().__init__(address, handler)


class _ConnectionAborted(Exception):
    """The connection is gone (or was cut on purpose); stop answering."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.owner.request_timeout  # bounds every read and write
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle + delayed ACK can
        # add ~40 ms to a small response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._track(self.connection, add=True)

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:  # the client reset or dropped a keep-alive connection: nothing to answer
            self.close_connection = True

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        pass

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    # -----------------------------------------------------------------------------------

    def _answer(self, head: bool) -> None:
        owner = self.server.owner
        path = urllib.parse.urlsplit(self.path).path
        ytid, media = self._resolve(path)
        live = _LiveRecord(ytid=ytid, method=self.command, path=path,
                           range_header=self.headers.get("Range"))
        owner._begin(live)
        try:
            self._respond(live, media, head)
        except (_ConnectionAborted, OSError):
            self.close_connection = True
        finally:
            owner._end(live)

    def _resolve(self, path: str) -> tuple[str | None, _Media | None]:
        if not path.startswith("/media/"):
            return None, None
        name = urllib.parse.unquote(path[len("/media/"):])
        ytid, slash, file_name = name.partition("/")
        if slash:
            return ytid, self.server.owner._lookup(ytid, file_name)
        ytid, dot, ext = name.partition(".")
        media = self.server.owner._lookup(ytid)
        if media is None or (dot and ext != media.ext):
            return ytid, None
        return ytid, media

    def _respond(self, live: _LiveRecord, media: _Media | None, head: bool) -> None:
        owner = self.server.owner
        if not owner._sleep(owner.latency):
            raise _ConnectionAborted
        if media is None:
            self._send_status_only(live, 404)
            return
        fault = owner._take_fault(live.record.ytid or "")
        if fault is not None:
            live.update(fault=fault.mode)
            if fault.mode in STATUS_FAULTS:
                self._send_status_only(live, STATUS_FAULTS[fault.mode])
                return
            if fault.mode == "slow_start" and not owner._sleep(fault.slow_start_s):
                raise _ConnectionAborted

        span = parse_range(live.record.range_header, media.size)
        if owner._forbids(live.record.ytid or "", span, media.size):
            live.update(fault="forbidden_past")
            self._send_status_only(live, 403)
            return
        if span == _UNSATISFIABLE:
            self._send_status_only(live, 416, {"Content-Range": f"bytes */{media.size}"})
            return
        first, last = span if isinstance(span, tuple) else (0, media.size - 1)
        length = last - first + 1
        status = 206 if isinstance(span, tuple) else 200
        self.send_response(status)
        self.send_header("Content-Type", media.content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{media.size}")
        self.end_headers()
        live.update(status=status)
        if head:
            self.wfile.flush()
            live.update(completed=True)
            return

        cut_after = length // 2 if fault is not None and fault.mode in ("reset", "truncate") else None
        sent = self._send_body(live, media.path, first, length if cut_after is None else cut_after)
        if cut_after is None:
            live.update(completed=sent == length)
            return
        self.close_connection = True
        if fault is not None and fault.mode == "reset":
            self._reset_connection()
        else:  # truncate: a clean FIN after fewer bytes than Content-Length announced
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)

    def _send_body(self, live: _LiveRecord, path: Path, first: int, count: int) -> int:
        owner = self.server.owner
        rate = owner.open_ended_rate if live.record.is_open_ended else None
        # Throttled: small chunks so the pacing is smooth; otherwise big ones.
        chunk = max(1024, int(rate / 16)) if rate else owner.chunk_size
        sent = 0
        began = time.monotonic()
        with open(path, "rb") as f:
            f.seek(first)
            while sent < count:
                if owner._stopping.is_set():
                    raise _ConnectionAborted
                data = f.read(min(chunk, count - sent))
                if not data:
                    break
                if rate:  # each chunk leaves no earlier than the rate allows, the first included
                    ahead = (sent + len(data)) / rate - (time.monotonic() - began)
                    if ahead > 0 and not owner._sleep(ahead):
                        raise _ConnectionAborted
                self.wfile.write(data)
                sent += len(data)
                live.update(bytes_sent=sent)
        self.wfile.flush()
        return sent

    def _send_status_only(self, live: _LiveRecord, status: int, headers: dict[str, str] | None = None) -> None:
        body = f"{status} {self.responses.get(status, ('',))[0]}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        live.update(status=status)
        if self.command != "HEAD":
            self.wfile.write(body)
            live.update(bytes_sent=len(body))
        self.wfile.flush()
        live.update(completed=True)

    def _reset_connection(self) -> None:
        """Close with SO_LINGER 0, so the peer gets a TCP RST instead of a FIN."""
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The socket only really closes (and sends the RST) once its file objects are closed;
        # the base class flushes wfile after we return, so it gets a harmless stand-in.
        self.rfile.close()
        self.wfile.close()
        self.connection.close()
        self.wfile = io.BytesIO()
