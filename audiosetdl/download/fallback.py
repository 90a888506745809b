"""The fallback for formats without a readable index: ffmpeg reads the media through a loopback
proxy that turns each of its open-ended requests into bounded upstream requests.

Owns: `RangeChunkingProxy` (serves registered `MediaSource`s on 127.0.0.1 with Range support;
per ffmpeg request 64 KiB first, doubling up to 512 KiB, with small socket buffers so it does not
run far ahead of ffmpeg) and `decode_through_proxy` (plain m4a with ``moov``, mp3, codecs without
an exact timing rule): in MP4 ffmpeg seeks coarsely (input ``-ss`` half a second early) and trims
on its timeline, anything else it decodes from the start. More bytes and time than the indexed
path, still no open-ended request upstream.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import uuid
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np

from audiosetdl.download.cut import DECODE_TIMEOUT_S, RESAMPLER_MARGIN_S, pcm, resample_chain, run_ffmpeg
from audiosetdl.download.errors import ClipError, Reason
from audiosetdl.download.http import MediaSource

FALLBACK_SEEK_EARLY_S = 0.5  # ffmpeg's input seek lands this far before the start (decoder preroll)
FALLBACK_FIRST_CHUNK_BYTES = 64 * 1024  # first upstream request per ffmpeg request; doubles after
FALLBACK_MAX_CHUNK_BYTES = 512 * 1024  # ... up to this (what ffmpeg leaves unread is at most one chunk)
PROXY_SOCKET_BUFFER_BYTES = 64 * 1024  # both ends: keeps the proxy from fetching far ahead of ffmpeg
_MUXERS = {".m4a": "ipod", ".mp4": "mp4", ".webm": "webm", ".mp3": "mp3", ".ogg": "ogg"}


_PROXY_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d+)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class RangeChunkingProxy:
    """Serves registered media sources on 127.0.0.1 with Range support. Every byte comes from the
    source's bounded requests: per ffmpeg request 64 KiB first, doubling up to 512 KiB (or the
    request limit), and small socket buffers keep it from running far ahead of what ffmpeg reads,
    so what ffmpeg leaves unread when it has its samples is about one chunk."""

    def __init__(self, max_request_bytes: int) -> None:
        self._max_chunk = min(max_request_bytes, FALLBACK_MAX_CHUNK_BYTES)
        self._sources: dict[str, MediaSource] = {}
        self._errors: dict[str, ClipError] = {}
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PROXY_SOCKET_BUFFER_BYTES)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                proxy._answer(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="audiosetdl-range-proxy", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def serving(self, source: MediaSource) -> Iterator[str]:
        """The URL ffmpeg reads `source` at, while the block runs."""
        token = uuid.uuid4().hex
        with self._lock:
            self._sources[token] = source
        try:
            yield f"http://127.0.0.1:{self._server.server_address[1]}/{token}"
        finally:
            with self._lock:
                self._sources.pop(token, None)
                self._errors.pop(token, None)

    def error_for(self, url: str) -> ClipError | None:
        with self._lock:
            return self._errors.get(url.rsplit("/", 1)[-1])

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        token = handler.path.lstrip("/")
        with self._lock:
            source = self._sources.get(token)
        handler.close_connection = True
        if source is None or source.size is None:
            handler.send_error(404)
            return
        m = _PROXY_RANGE_RE.match(handler.headers.get("Range") or "bytes=0-")
        first = int(m.group(1)) if m else 0
        last = min(int(m.group(2)), source.size - 1) if m and m.group(2) else source.size - 1
        if first >= source.size:
            handler.send_response(416)
            handler.send_header("Content-Range", f"bytes */{source.size}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        handler.send_response(206)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Range", f"bytes {first}-{last}/{source.size}")
        handler.send_header("Content-Length", str(last - first + 1))
        handler.end_headers()
        position, chunk = first, min(FALLBACK_FIRST_CHUNK_BYTES, self._max_chunk)
        try:
            while position <= last:
                stop = min(position + chunk, last + 1)
                data = source.read(position, stop)
                if not data:
                    break
                handler.wfile.write(data)
                position += len(data)
                chunk = min(chunk * 2, self._max_chunk)
        except ClipError as exc:
            with self._lock:
                self._errors[token] = exc
        except OSError:  # ffmpeg has what it wanted and closed the connection
            pass

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)



def looks_like_media(head: bytes) -> bool:
    """Whether a file's first bytes could be something ffmpeg decodes as audio (MP4, Matroska/WebM,
    MP3 or ADTS AAC, Ogg, FLAC, WAV, MPEG-TS); an HTML error page or other garbage is not, and is
    then not read to its end."""
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"styp", b"moov", b"sidx", b"free", b"skip", b"mdat", b"moof"):
        return True
    if head[:4] in (b"\x1a\x45\xdf\xa3", b"OggS", b"fLaC", b"RIFF") or head[:3] == b"ID3" or head[:1] == b"\x47":
        return True
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0  # MPEG audio / ADTS frame sync


def decode_through_proxy(proxy: RangeChunkingProxy, source: MediaSource, start: Fraction, clip_samples: int,
                         out_rate: int, timeout: float, original: Path | None) -> np.ndarray:
    """The clip's samples (16-bit, `out_rate`), ffmpeg reading `source` through `proxy`; ffmpeg
    applies the container's own delay information (MP4 edit list, LAME tag, Ogg pre-skip) here.

    MP4: its sample table gives exact timestamps after a seek, so ffmpeg seeks (input ``-ss``,
    early by the decoder's preroll) and the clip is trimmed on its timeline. Anything else is
    decoded from its first byte and trimmed by sample count: ffmpeg drops the encoder delay only
    at a file's start (after an mp3 seek its timestamps are 1105 samples off). With `original`,
    the untranscoded stream cut is written there too.
    """
    if source.size is None:
        raise ClipError.of(Reason.HTTP_ERROR, "the media size is unknown (no Content-Range)")
    head = source.read(0, 16)
    if not looks_like_media(head):
        raise ClipError.of(Reason.DECODE_ERROR, f"the server answered with something that is not audio: {head!r}")
    seek = round(start - Fraction(FALLBACK_SEEK_EARLY_S), 6) if source.read(4, 8) == b"ftyp" else Fraction(0)
    if seek > 0:
        # ffmpeg shifts the timeline by exactly the -ss value given (whole microseconds here),
        # whatever packet the seek landed on; trimming on that timeline keeps the cut exact.
        margin = round(RESAMPLER_MARGIN_S * out_rate)
        input_args = ["-ss", f"{float(seek):.6f}", "-noaccurate_seek"]
        trim_from = start - seek - Fraction(margin, out_rate)
        chain = (f"atrim=start={float(trim_from):.9f},{resample_chain(out_rate)},"
                 f"atrim=start_sample={margin}:end_sample={margin + clip_samples}")
    else:
        first = round(start * out_rate)
        input_args = []
        chain = f"{resample_chain(out_rate)},atrim=start_sample={first}:end_sample={first + clip_samples}"
    with proxy.serving(source) as url:
        args = [*input_args, "-rw_timeout", str(int(timeout * 1e6)),
                "-recv_buffer_size", str(PROXY_SOCKET_BUFFER_BYTES), "-i", url,
                "-map", "0:a:0", "-af", chain, "-f", "s16le", "-c:a", "pcm_s16le", "pipe:1"]
        if original is not None:
            stop = float(start - seek) + clip_samples / out_rate + 1.0
            args += ["-map", "0:a:0", "-c:a", "copy", "-to", f"{stop:.6f}", "-y",
                     "-f", _MUXERS.get(original.suffix, "matroska"), str(original)]
        try:
            stdout = run_ffmpeg(args, DECODE_TIMEOUT_S + timeout, "decode (fallback)")
        finally:
            upstream = proxy.error_for(url)
        if upstream is not None:  # the source failed: that, not ffmpeg's view of it, is the reason
            raise upstream
    return pcm(stdout)
