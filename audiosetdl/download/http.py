"""Media over HTTP, in bounded ranges: one format's URL read through the YoutubeDL's own opener.

Owns: `MediaSource` (every request a bounded ``Range: bytes=a-b`` of at most the request limit,
through ``ydl.urlopen`` so the YoutubeDL's cookies, proxy and headers apply, plus the format's
own ``http_headers``; answers checked against what was asked; bytes kept for re-reads within
one fetch), and `FetchCounter`, the media bytes and requests one fetch spent. YouTube throttles
open-ended requests to ~32 KiB/s, so none is ever made.

A 403 or 416 on a media range is marked `client_fixable`: YouTube's partial PO-token enforcement
serves the first ~1 MiB of a URL and then refuses it, which says nothing about the video (another
player client's URL may serve it).
"""

from __future__ import annotations

import copy
import re
import threading
from typing import Any

import yt_dlp
from yt_dlp.networking import Request

from audiosetdl.download.classify import classify, http_status
from audiosetdl.download.errors import ClipError, Reason
from audiosetdl.download.index import INDEX_PROBE_BYTES, ByteSpan, index_probe_bytes

READ_BLOCK_BYTES = 64 * 1024
SOURCE_CACHE_BYTES = 16 * 1024 * 1024  # per fetch: media bytes kept in memory for re-reads
CLIENT_FIXABLE_STATUSES = (403, 416)  # a URL refused part-way (PO token), or a range it suddenly won't serve


class FetchCounter:
    """Media bytes and requests of one fetch (the fallback proxy adds to it from its threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes = 0
        self.requests = 0

    def add(self, nbytes: int = 0, requests: int = 0) -> None:
        with self._lock:
            self.bytes += nbytes
            self.requests += requests


CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


class MediaSource:
    """One format's media URL, read only in bounded ranges through the YoutubeDL's opener.

    Keeps what it fetched (up to SOURCE_CACHE_BYTES), so no byte is fetched twice in one fetch:
    the probe's head serves the index and the first fragment, and the fallback's ffmpeg may jump
    back over bytes it already read.
    """

    def __init__(self, ydl: yt_dlp.YoutubeDL, fmt: dict, ytid: str, counter: FetchCounter, *,
                 timeout: float, max_request_bytes: int) -> None:
        self._ydl = ydl
        self.url: str = fmt["url"]
        # Cookies come from the YoutubeDL's jar (scoped to the URL), never from a stale header.
        self._headers = {k: v for k, v in (fmt.get("http_headers") or {}).items()
                         if k.lower() not in ("cookie", "range")}
        self._headers["Accept-Encoding"] = "identity"
        self.ytid = ytid
        self.size: int | None = fmt.get("filesize")
        self._timeout = timeout
        self.max_request_bytes = max_request_bytes
        self._counter = counter
        # One read at a time: the fallback's ffmpeg may open a connection before its last one is
        # done, and the second should find the first one's bytes kept rather than fetch them again.
        self._read_lock = threading.RLock()
        self._lock = threading.Lock()
        self._cache: dict[int, bytes] = {}  # start offset -> bytes fetched from there
        self._cached_bytes = 0

    def sibling(self, url: str) -> MediaSource:
        """Another resource of the same format (an HLS playlist's segments): its headers, limits
        and counter, its own bytes."""
        other = copy.copy(self)
        other.url, other.size = url, None
        other._read_lock, other._lock = threading.RLock(), threading.Lock()
        other._cache, other._cached_bytes = {}, 0
        return other

    def probe(self, duration_s: float | None) -> bytes:
        """The file's head, sized for the header and index of a video this long (`index_probe_bytes`)."""
        stop = min(index_probe_bytes(duration_s), self.max_request_bytes, self.size or INDEX_PROBE_BYTES)
        head = self._get(ByteSpan(0, stop), allow_short=True)
        self._keep(0, head)
        return head

    def read_all(self) -> bytes:
        """The whole resource (a playlist, an HLS segment) in bounded requests: the first asks for
        up to the request limit, and the size its answer states bounds the rest."""
        with self._read_lock:
            head = self._get(ByteSpan(0, self.max_request_bytes), allow_short=True)
            self._keep(0, head)
            if self.size is None or self.size <= len(head):
                return head
            return head + self._read(len(head), self.size)

    def read(self, start: int, stop: int) -> bytes:
        """Bytes [start, stop) (clamped to the file's end): kept ones, the rest in bounded requests."""
        with self._read_lock:
            return self._read(start, stop)

    def _read(self, start: int, stop: int) -> bytes:
        if self.size is not None:
            stop = min(stop, self.size)
        parts, position = [], start
        while position < stop:
            kept = self._kept_at(position)
            if kept:
                part = kept[:stop - position]
            else:
                gap_end = min([stop, *(o for o in self._cache if position < o < stop)])
                part = self._get(ByteSpan(position, min(gap_end, position + self.max_request_bytes)))
                self._keep(position, part)
            parts.append(part)
            position += len(part)
        return b"".join(parts)

    def _kept_at(self, position: int) -> bytes:
        with self._lock:
            for offset, data in self._cache.items():
                if offset <= position < offset + len(data):
                    return data[position - offset:]
        return b""

    def _keep(self, offset: int, data: bytes) -> None:
        with self._lock:
            if data and self._cached_bytes + len(data) <= SOURCE_CACHE_BYTES:
                self._cache[offset] = data
                self._cached_bytes += len(data)

    def _get(self, span: ByteSpan, allow_short: bool = False) -> bytes:
        """One request for exactly `span` (`allow_short`: the file may end inside it)."""
        assert 0 < len(span) <= self.max_request_bytes, span
        self._counter.add(requests=1)
        request = Request(self.url, headers={**self._headers, "Range": span.range_header},
                          extensions={"timeout": self._timeout})
        try:
            response = self._ydl.urlopen(request)
        except Exception as exc:  # noqa: BLE001 - every transport failure is classified
            error = clip_error(exc, self.ytid, self._counter)
            error.client_fixable = http_status(exc) in CLIENT_FIXABLE_STATUSES
            raise error from exc
        try:
            expected = len(span)
            if response.status == 206:
                m = CONTENT_RANGE_RE.match(response.headers.get("Content-Range") or "")
                if not m or int(m.group(1)) != span.start:
                    raise ClipError.of(Reason.HTTP_ERROR, f"answer to {span.range_header} has Content-Range "
                                                          f"{response.headers.get('Content-Range')!r}")
                if m.group(3) != "*":
                    self.size = int(m.group(3))
                expected = int(m.group(2)) - span.start + 1
                if expected > len(span) or (expected < len(span) and not (allow_short or self._ends_at(m))):
                    raise ClipError.of(Reason.HTTP_ERROR, f"asked {span.range_header}, got {m.group(0)}")
            elif response.status == 200 and span.start == 0:
                # The server ignored Range: read only what was asked for, then drop the connection.
                length = response.headers.get("Content-Length")
                if length is not None:
                    self.size = int(length)
                    expected = min(expected, self.size)
            else:
                raise ClipError.of(Reason.HTTP_ERROR, f"HTTP {response.status} to {span.range_header}",
                                   client_fixable=response.status in CLIENT_FIXABLE_STATUSES)
            data = self._read_exactly(response, expected)
        except ClipError as exc:
            raise with_counts(exc, self._counter) from None
        except Exception as exc:  # noqa: BLE001
            raise clip_error(exc, self.ytid, self._counter) from exc
        finally:
            response.close()
        return data

    def _ends_at(self, m: re.Match) -> bool:
        return m.group(3) != "*" and int(m.group(2)) == int(m.group(3)) - 1

    def _read_exactly(self, response: Any, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            block = response.read(min(READ_BLOCK_BYTES, n - got))
            if not block:
                break
            chunks.append(block)
            got += len(block)
            self._counter.add(nbytes=len(block))
        if got < n:
            raise ClipError.of(Reason.NETWORK, f"connection closed after {got} of {n} bytes")
        return b"".join(chunks)


def with_counts(exc: ClipError, counter: FetchCounter) -> ClipError:
    """`exc`, charged with what the fetch spent so far."""
    exc.bytes_fetched, exc.requests = counter.bytes, counter.requests
    return exc


def clip_error(exc: BaseException, ytid: str, counter: FetchCounter) -> ClipError:
    return ClipError(classify(exc, ytid), bytes_fetched=counter.bytes, requests=counter.requests)

