"""Clips from YouTube: resolve a video with one long-lived YoutubeDL, fetch only the bytes that
hold the segment, in bounded range requests, and decode them sample-exact to 16 kHz mono FLAC.

Owns: `ClipFetcher` (a worker process holds one, and with it one `yt_dlp.YoutubeDL` for its
whole life), `FetchSettings` and `ClipResult`; choosing the audio (and, with `video`, the video)
format; media HTTP through the YoutubeDL's own opener (`ydl.urlopen`, so its cookies, proxy and
headers apply, plus each format's `http_headers`), always as a bounded ``Range: bytes=a-b`` of
at most `max_request_bytes` (YouTube throttles open-ended requests to ~32 KiB/s); the timeline
arithmetic that makes a cut sample-exact; the ffmpeg invocations; the fallback for formats
without a readable index; writing outputs atomically and checking the clip.

How a clip is made (method "index"):

1. ``extract_info(url, download=False)``; the best audio-only http(s) format, DASH m4a/webm first.
2. One bounded request for the file's head (16-64 KiB, sized from the duration): the init
   segment and the ``sidx`` / ``Cues`` (`audiosetdl.download.ranges`).
3. The fragments covering [start - decoder preroll - resampler margin, end + margin], fetched in
   bounded requests (bytes already in the probe are not fetched again) and written after the init
   segment: a small file that ffmpeg decodes like the original.
4. ffmpeg decodes every sample of it (``-flags2 +skip_manual``: the decoder drops nothing), numbers
   the samples from 0 (``asetpts=N/SR/TB``) and trims by sample index, so the cut does not lean on
   container timestamps (WebM's are rounded to 1 ms, 16 samples at 16 kHz). Where decoded sample 0
   lies in the source's time comes from the container and the codec (`_AudioTiming`):
   AAC in MP4: the fragment's ``tfdt`` minus the edit list's media time, or, without an edit list
   (ffmpeg 5.1's fMP4 has none), minus AAC-LC's encoder delay of one 1024-sample frame; Opus in
   WebM: the first block's time snapped to the packet grid (timestamps are whole milliseconds,
   packets whole samples) minus the OpusHead pre-skip. soxr then resamples to 16 kHz, with margins
   chosen so that the 16 kHz grid lands exactly on `start`, and the clip is exactly
   ``round((end - start) * 16000)`` samples, padded with silence at the end only where the video
   ends first.

Method "fallback" (no readable index: plain m4a with ``moov``, mp3, codecs without an exact rule
above): ffmpeg reads the media through a loopback proxy (`_RangeChunkingProxy`) that turns each of
ffmpeg's open-ended requests into bounded upstream requests of growing size; in MP4 it seeks
coarsely (input ``-ss`` half a second early) and trims on its timeline, anything else it decodes
from the start. More bytes and time, still no open-ended request upstream.

Failures raise `ClipError` (`errors.classify` for yt-dlp, HTTP and socket errors; `decode_error`
for ffmpeg), carrying the media bytes and requests spent. Nothing is retried here: the caller owns
retries and back-off. Outputs are written under temporary names and renamed only once all of them
are complete and the clip has been checked.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import soundfile
import yt_dlp
from yt_dlp.networking import Request

from audiosetdl.download.errors import ClipError, Reason, classify
from audiosetdl.download.ranges import (
    INDEX_PROBE_BYTES,
    MAX_REQUEST_BYTES,
    ByteSpan,
    Container,
    FragmentIndex,
    IndexNotFound,
    TrackInfo,
    byte_ranges,
    index_probe_bytes,
    mp4_fragment_decode_ticks,
    opus_packet_samples,
    read_index,
    relocate_mp4_fragments,
    webm_cluster_first_block,
)
from audiosetdl.rundir import TEMP_MARK, atomic_path

log = logging.getLogger(__name__)

FFMPEG = "ffmpeg"
OUTPUT_CHANNELS = 1
AAC_FRAME_SAMPLES = 1024  # AAC-LC: samples per frame; its encoder delay and its decoder's preroll
OPUS_RATE = 48_000  # Opus always decodes at 48 kHz
OPUS_DEFAULT_PREROLL_S = 0.080  # RFC 7845 5.1.1: decode at least 80 ms before a seek target
RESAMPLER_MARGIN_S = 0.010  # decoded audio kept on each side of the clip so soxr's edges fall outside it
FALLBACK_SEEK_EARLY_S = 0.5  # fallback: ffmpeg's input seek lands this far before the start (decoder preroll)
FALLBACK_FIRST_CHUNK_BYTES = 64 * 1024  # fallback: first upstream request per ffmpeg request; doubles after
FALLBACK_MAX_CHUNK_BYTES = 512 * 1024  # fallback: ... up to this (what ffmpeg leaves unread is at most one chunk)
PROXY_SOCKET_BUFFER_BYTES = 64 * 1024  # both ends: keeps the proxy from fetching far ahead of ffmpeg
READ_BLOCK_BYTES = 64 * 1024
SOURCE_CACHE_BYTES = 16 * 1024 * 1024  # per fetch: media bytes kept in memory for re-reads
FRAGMENT_HEAD_BYTES = 64 * 1024  # holds a moof's tfdt, or a cluster's timecode and first block
DECODE_TIMEOUT_S = 120.0
AVAILABLE_AT_MAX_WAIT_S = 60.0  # a format YouTube releases later than this is reported unavailable, not waited for
VIDEO_MAX_HEIGHT = 480  # with `video`: the best video-only format up to this height (else the smallest)
_HTTP_FORMAT_PROTOCOLS = ("http", "https")
_DASH_EXTS = ("m4a", "webm", "mp4")


@dataclass(frozen=True)
class FetchSettings:
    ydl_params: dict = field(default_factory=dict)  # extra yt-dlp params (cookies, proxy, js runtimes, sleep...)
    sample_rate: int = 16000
    max_request_bytes: int = MAX_REQUEST_BYTES
    timeout: float = 30.0
    keep_original: bool = False  # also keep the untranscoded stream cut (e.g. .m4a/.webm) beside the flac
    video: bool = False  # also keep an mp4 of the segment (video+audio), like marl/audiosetdl could


@dataclass(frozen=True)
class ClipResult:
    path: Path
    bytes_fetched: int  # media bytes read from the source (index, fragments; video too with `video`)
    requests: int  # media HTTP requests made (yt-dlp's own extraction requests not included)
    padded_seconds: float  # silence appended because the video ends before `end`
    format_id: str  # the audio format used
    method: str  # "index" | "fallback"


# ============================================================================================
# Media over HTTP, in bounded ranges


class _Counter:
    """Media bytes and requests of one fetch (the fallback proxy adds to it from its threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.bytes = 0
        self.requests = 0

    def add(self, nbytes: int = 0, requests: int = 0) -> None:
        with self._lock:
            self.bytes += nbytes
            self.requests += requests


_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


class _MediaSource:
    """One format's media URL, read only in bounded ranges through the YoutubeDL's opener.

    Keeps what it fetched (up to SOURCE_CACHE_BYTES), so no byte is fetched twice in one fetch:
    the probe's head serves the index and the first fragment, and the fallback's ffmpeg may jump
    back over bytes it already read.
    """

    def __init__(self, ydl: yt_dlp.YoutubeDL, fmt: dict, ytid: str, settings: FetchSettings,
                 counter: _Counter) -> None:
        self._ydl = ydl
        self.url: str = fmt["url"]
        # Cookies come from the YoutubeDL's jar (scoped to the URL), never from a stale header.
        self._headers = {k: v for k, v in (fmt.get("http_headers") or {}).items()
                         if k.lower() not in ("cookie", "range")}
        self._headers["Accept-Encoding"] = "identity"
        self.ytid = ytid
        self.size: int | None = fmt.get("filesize")
        self._timeout = settings.timeout
        self._max_request = settings.max_request_bytes
        self._counter = counter
        # One read at a time: the fallback's ffmpeg may open a connection before its last one is
        # done, and the second should find the first one's bytes kept rather than fetch them again.
        self._read_lock = threading.RLock()
        self._lock = threading.Lock()
        self._cache: dict[int, bytes] = {}  # start offset -> bytes fetched from there
        self._cached_bytes = 0

    def probe(self, duration_s: float | None) -> bytes:
        """The file's head, sized for the header and index of a video this long (`index_probe_bytes`)."""
        stop = min(index_probe_bytes(duration_s), self._max_request, self.size or INDEX_PROBE_BYTES)
        head = self._get(ByteSpan(0, stop), allow_short=True)
        self._keep(0, head)
        return head

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
                part = self._get(ByteSpan(position, min(gap_end, position + self._max_request)))
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
        assert 0 < len(span) <= self._max_request, span
        self._counter.add(requests=1)
        request = Request(self.url, headers={**self._headers, "Range": span.range_header},
                          extensions={"timeout": self._timeout})
        try:
            response = self._ydl.urlopen(request)
        except Exception as exc:  # noqa: BLE001 - every transport failure is classified
            raise _clip_error(exc, self.ytid, self._counter) from exc
        try:
            expected = len(span)
            if response.status == 206:
                m = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range") or "")
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
                raise ClipError.of(Reason.HTTP_ERROR, f"HTTP {response.status} to {span.range_header}")
            data = self._read_exactly(response, expected)
        except ClipError as exc:
            raise _with_counts(exc, self._counter) from None
        except Exception as exc:  # noqa: BLE001
            raise _clip_error(exc, self.ytid, self._counter) from exc
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


def _with_counts(exc: ClipError, counter: _Counter) -> ClipError:
    return ClipError(exc.failure, bytes_fetched=counter.bytes, requests=counter.requests)


def _clip_error(exc: BaseException, ytid: str, counter: _Counter) -> ClipError:
    return ClipError(classify(exc, ytid), bytes_fetched=counter.bytes, requests=counter.requests)


# ============================================================================================
# Where decoded samples lie in time


@dataclass(frozen=True)
class _AudioTiming:
    """How an indexed audio track's container times and decoded samples relate to source time
    (source time 0 = the first sample the encoder was given)."""

    track: TrackInfo
    container: Container
    decoded_rate: int  # samples per second the decoder puts out
    container_offset: Fraction  # container time - source time (encoder delay, as the container has it)
    preroll_s: float  # after a cold start, the decoder's output is right only after this long

    @classmethod
    def of(cls, index: FragmentIndex) -> _AudioTiming:
        """Raises IndexNotFound for tracks without an exact rule here (they take the fallback)."""
        track = index.track
        if track.kind != "audio":
            raise IndexNotFound("not an audio track")
        if index.container is Container.MP4 and track.codec == "aac":
            if track.aac_object_type != 2 or not track.sample_rate:
                raise IndexNotFound(f"AAC object type {track.aac_object_type}: exact timing known for AAC-LC only")
            if track.edit_media_time is not None:
                offset = Fraction(track.edit_media_time, track.timescale)
            else:
                offset = Fraction(AAC_FRAME_SAMPLES, track.sample_rate)
            return cls(track, index.container, track.sample_rate, offset, AAC_FRAME_SAMPLES / track.sample_rate)
        if index.container is Container.WEBM and track.codec == "opus" and track.opus_pre_skip is not None:
            # Matroska block times are source time + CodecDelay (= the pre-skip).
            return cls(track, index.container, OPUS_RATE, Fraction(track.opus_pre_skip, OPUS_RATE),
                       track.seek_preroll_s or OPUS_DEFAULT_PREROLL_S)
        raise IndexNotFound(f"{track.codec} in {index.container.value}: no exact timing rule")

    def decoded_start(self, first_fragment: bytes, fallback_ticks: Fraction) -> Fraction:
        """Source time of the first sample ffmpeg decodes from a cut that starts with `first_fragment`."""
        timescale = self.track.timescale
        if self.container is Container.MP4:
            ticks = mp4_fragment_decode_ticks(first_fragment)
            first = Fraction(ticks, timescale) if ticks is not None else fallback_ticks
            return first - self.container_offset
        block = webm_cluster_first_block(first_fragment, self.track)
        if block is None:
            raise ClipError.of(Reason.DECODE_ERROR, "the first fetched cluster holds no block of the track")
        stream_samples = Fraction(block.time_ticks * OPUS_RATE, timescale)
        if block.first_payload_byte is not None and block.first_payload_byte & 0x03 != 0x03:
            # Timestamps are whole ticks (1 ms), packets whole samples: with constant packets (as
            # YouTube's encoder writes) the packet grid gives the exact sample.
            packet = opus_packet_samples(block.first_payload_byte)
            snapped = round(stream_samples / packet) * packet
            if abs(snapped - stream_samples) <= Fraction(3 * OPUS_RATE, 2 * timescale):
                stream_samples = Fraction(snapped)
        return stream_samples / OPUS_RATE - self.container_offset


@dataclass(frozen=True)
class _TrimPlan:
    """Which decoded samples to keep, and which resampled ones make the clip."""

    first_decoded: int  # decoded samples dropped before resampling
    end_decoded: int  # decoded samples [first_decoded, end_decoded) go to the resampler
    margin_out: int  # resampled samples dropped before the clip's first sample
    clip_samples: int


def _grid_period(decoded_rate: int, out_rate: int) -> int:
    """Output samples after which both rates' sample grids line up again (160 for 44.1 -> 16 kHz)."""
    return out_rate // math.gcd(decoded_rate, out_rate)


def _lead_s(decoded_rate: int, out_rate: int) -> float:
    """The most audio `_trim_plan` may keep before the clip's start."""
    return (round(RESAMPLER_MARGIN_S * out_rate) + _grid_period(decoded_rate, out_rate)) / out_rate


def _trim_plan(start: Fraction, clip_samples: int, decoded_start: Fraction, decoded_rate: int,
               out_rate: int) -> _TrimPlan:
    """Choose the decoded sample to start resampling at so that resampled sample `margin_out`
    falls on `start` (to a fraction of a decoded sample: the margin is picked from one period of
    the two rates' common grid)."""
    lead = (start - decoded_start) * out_rate  # resampled samples available before `start`
    if lead < 0:
        raise ClipError.of(Reason.DECODE_ERROR, f"the fetched audio begins {float(-lead / out_rate):.3f} s "
                                                "after the segment start")
    margin_min = round(RESAMPLER_MARGIN_S * out_rate)
    period = _grid_period(decoded_rate, out_rate)
    highest = math.floor(lead)
    lowest = min(margin_min, highest)
    candidates = range(lowest, min(lowest + period, highest + 1))

    lead_decoded = float((start - decoded_start) * decoded_rate)
    step = decoded_rate / out_rate

    def misalignment(margin: int) -> float:  # of the 16 kHz grid against `start`, in decoded samples
        x = lead_decoded - margin * step
        return abs(x - round(x))

    margin = min(candidates, key=misalignment)
    first = round((start - decoded_start) * decoded_rate - Fraction(margin * decoded_rate, out_rate))
    needed = math.ceil(Fraction((margin + clip_samples + margin_min) * decoded_rate, out_rate)) + 1
    return _TrimPlan(first_decoded=max(first, 0), end_decoded=max(first, 0) + needed, margin_out=margin,
                     clip_samples=clip_samples)


# ============================================================================================
# ffmpeg


def _resample_chain(out_rate: int) -> str:
    return f"asetpts=N/SR/TB,aresample=osr={out_rate}:resampler=soxr:ochl=mono,asetpts=N/SR/TB"


def _run_ffmpeg(args: list[str], timeout: float, what: str) -> bytes:
    try:
        done = subprocess.run([FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", *args],
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ClipError.of(Reason.DECODE_ERROR, f"ffmpeg {what} took longer than {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip()[-1000:]
        raise ClipError.of(Reason.DECODE_ERROR, f"ffmpeg {what} failed ({done.returncode}): {tail}")
    return done.stdout


def _pcm(stdout: bytes) -> np.ndarray:
    return np.frombuffer(stdout[:len(stdout) // 2 * 2], dtype="<i2")


def _decode_cut(cut: Path, plan: _TrimPlan, out_rate: int) -> np.ndarray:
    """Decode the whole cut, keep decoded samples by index, resample, keep the clip's samples."""
    chain = (f"asetpts=N/SR/TB,atrim=start_sample={plan.first_decoded}:end_sample={plan.end_decoded},"
             f"{_resample_chain(out_rate)},"
             f"atrim=start_sample={plan.margin_out}:end_sample={plan.margin_out + plan.clip_samples}")
    return _pcm(_run_ffmpeg(["-flags2", "+skip_manual", "-i", str(cut), "-map", "0:a:0", "-af", chain,
                             "-f", "s16le", "-c:a", "pcm_s16le", "pipe:1"], DECODE_TIMEOUT_S, "decode"))


def _write_clip(samples: np.ndarray, clip_samples: int, out_rate: int, tmp: Path) -> float:
    """Pad at the end to `clip_samples`, write 16-bit FLAC, check it; returns the padded seconds."""
    if len(samples) > clip_samples:
        raise ClipError.of(Reason.DECODE_ERROR, f"decoded {len(samples)} samples for a {clip_samples}-sample clip")
    padded = clip_samples - len(samples)
    if padded:
        samples = np.concatenate([samples, np.zeros(padded, dtype=np.int16)])
    soundfile.write(str(tmp), samples, out_rate, subtype="PCM_16", format="FLAC")
    info = soundfile.info(str(tmp))
    if (info.samplerate, info.channels, info.frames, info.subtype) != (out_rate, OUTPUT_CHANNELS, clip_samples,
                                                                      "PCM_16"):
        raise ClipError.of(Reason.DECODE_ERROR, f"written clip is {info.samplerate} Hz, {info.channels} ch, "
                                                f"{info.frames} frames, {info.subtype}; expected {out_rate} Hz mono "
                                                f"{clip_samples} frames PCM_16")
    return padded / out_rate


# ============================================================================================
# Fallback: a loopback proxy that turns ffmpeg's open-ended requests into bounded ones


_PROXY_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d+)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class _RangeChunkingProxy:
    """Serves registered media sources on 127.0.0.1 with Range support. Every byte comes from the
    source's bounded requests: per ffmpeg request 64 KiB first, doubling up to 512 KiB (or the
    request limit), and small socket buffers keep it from running far ahead of what ffmpeg reads,
    so what ffmpeg leaves unread when it has its samples is about one chunk."""

    def __init__(self, max_request_bytes: int) -> None:
        self._max_chunk = min(max_request_bytes, FALLBACK_MAX_CHUNK_BYTES)
        self._sources: dict[str, _MediaSource] = {}
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
    def serving(self, source: _MediaSource) -> Iterator[str]:
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


# ============================================================================================
# Format choice


def _is_http(fmt: dict) -> bool:
    return bool(fmt.get("url")) and (fmt.get("protocol") or "https") in _HTTP_FORMAT_PROTOCOLS \
        and not fmt.get("has_drm")


def _audio_candidates(info: dict) -> list[dict]:
    """Audio-only http(s) formats, those whose index we can read first, else yt-dlp's order
    (best last in its list, so best first here)."""
    formats = [f for f in (info.get("formats") or [info]) if _is_http(f)]
    audio_only = [f for f in formats if f.get("vcodec") == "none" and f.get("acodec") != "none"]
    pool = audio_only or [f for f in formats if f.get("acodec") not in ("none", None)] or formats
    best_first = list(reversed(pool))
    return sorted(best_first, key=lambda f: not _looks_indexed(f))  # stable: keeps quality order


def _looks_indexed(fmt: dict) -> bool:
    container = fmt.get("container") or ""
    return container.endswith("_dash") or (fmt.get("ext") in _DASH_EXTS and not container)


def _video_format(info: dict) -> dict:
    videos = [f for f in reversed(info.get("formats") or []) if _is_http(f)
              and f.get("vcodec") not in ("none", None) and f.get("acodec") in ("none", None)]
    if not videos:
        raise ClipError.of(Reason.FORMAT_UNAVAILABLE, "no video-only http format")
    small = [f for f in videos if (f.get("height") or 0) <= VIDEO_MAX_HEIGHT]
    return small[0] if small else min(videos, key=lambda f: f.get("height") or 0)


# ============================================================================================
# The fetcher


class _YtDlpLogger:
    """yt-dlp's messages into logging (it prints errors to stderr even when quiet)."""

    _log = logging.getLogger("audiosetdl.yt_dlp")

    def debug(self, msg: str) -> None:
        self._log.debug("%s", msg)

    def info(self, msg: str) -> None:
        self._log.debug("%s", msg)

    def warning(self, msg: str) -> None:
        self._log.info("%s", msg)

    def error(self, msg: str) -> None:
        self._log.info("%s", msg)


@dataclass
class _Outputs:
    """Temporary paths of one fetch's outputs; renamed into place together on success."""

    clip: Path
    original: Path | None = None
    video: Path | None = None


class ClipFetcher:
    """Makes clips, one `fetch` at a time, with one YoutubeDL for its whole life.

    Not thread-safe: a worker holds one. `close()` releases the YoutubeDL (if it made it) and the
    fallback proxy.
    """

    def __init__(self, settings: FetchSettings, ydl: yt_dlp.YoutubeDL | None = None) -> None:
        self.settings = settings
        self._owns_ydl = ydl is None
        if ydl is None:
            params = {"quiet": True, "no_warnings": True, "noprogress": True, "noplaylist": True,
                      "format": "bestaudio/best", "socket_timeout": settings.timeout, "logger": _YtDlpLogger(),
                      **settings.ydl_params,
                      # A refusal must reach us as an exception (yt-dlp's CLI default only logs it).
                      "ignoreerrors": False}
            ydl = yt_dlp.YoutubeDL(params)
        self._ydl = ydl
        self._proxy: _RangeChunkingProxy | None = None

    def close(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None
        if self._owns_ydl:
            self._ydl.close()

    def __enter__(self) -> ClipFetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -----------------------------------------------------------------------------------

    def fetch(self, url: str, ytid: str, start: float, end: float, dest: Path) -> ClipResult:
        """Make `dest` (FLAC) from [start, end] seconds of `url`; raises ClipError."""
        if not 0 <= start < end:
            raise ValueError(f"not a segment: [{start}, {end}]")
        counter = _Counter()
        try:
            info = self._extract(url, ytid)
            fmt = self._audio_format(info)
            source = _MediaSource(self._ydl, fmt, ytid, self.settings, counter)
            # Absolute: a relative name starting with '-' (as YouTube IDs may) would read as an option.
            with self._outputs(Path(dest).absolute(), fmt) as outputs:
                padded, method = self._make_clip(source, info.get("duration"), Fraction(repr(float(start))),
                                                 Fraction(repr(float(end))), outputs)
                if outputs.video is not None:
                    self._make_video(info, ytid, start, end, outputs, counter)
        except ClipError as exc:
            raise _with_counts(exc, counter) from exc.__cause__
        except (OSError, RuntimeError, soundfile.LibsndfileError) as exc:
            raise _clip_error(exc, ytid, counter) from exc
        return ClipResult(path=Path(dest), bytes_fetched=counter.bytes, requests=counter.requests,
                          padded_seconds=padded, format_id=str(fmt.get("format_id")), method=method)

    def _extract(self, url: str, ytid: str) -> dict:
        try:
            info = self._ydl.extract_info(url, download=False)
        except Exception as exc:  # noqa: BLE001 - DownloadError and anything under it
            raise ClipError(classify(exc, ytid)) from exc
        if not isinstance(info, dict):
            raise ClipError.of(Reason.UNKNOWN, "yt-dlp returned no information")
        return info

    def _audio_format(self, info: dict) -> dict:
        candidates = _audio_candidates(info)
        if not candidates:
            raise ClipError.of(Reason.FORMAT_UNAVAILABLE, "no audio format reachable over http(s)")
        fmt = candidates[0]
        wait = (fmt.get("available_at") or 0) - time.time()
        if wait > AVAILABLE_AT_MAX_WAIT_S:
            raise ClipError.of(Reason.FORMAT_UNAVAILABLE, f"YouTube releases the format only in {wait:.0f} s")
        if wait > 0:
            time.sleep(wait)
        return fmt

    @contextlib.contextmanager
    def _outputs(self, dest: Path, fmt: dict) -> Iterator[_Outputs]:
        with contextlib.ExitStack() as stack:
            outputs = _Outputs(clip=stack.enter_context(atomic_path(dest)))
            if self.settings.keep_original:
                outputs.original = stack.enter_context(atomic_path(dest.with_suffix(f".{fmt.get('ext') or 'bin'}")))
            if self.settings.video:
                outputs.video = stack.enter_context(atomic_path(dest.with_suffix(".mp4")))
            yield outputs

    def _make_clip(self, source: _MediaSource, duration_s: float | None, start: Fraction, end: Fraction,
                   outputs: _Outputs) -> tuple[float, str]:
        out_rate = self.settings.sample_rate
        clip_samples = round((end - start) * out_rate)
        source.probe(duration_s)
        try:
            index = read_index(source.read, source.size)
            timing = _AudioTiming.of(index)
        except IndexNotFound as why:
            log.debug("%s: %s; using the fallback", source.ytid, why)
            samples = self._decode_through_proxy(source, start, clip_samples, outputs)
            return _write_clip(samples, clip_samples, out_rate, outputs.clip), "fallback"
        samples = self._decode_indexed(source, index, timing, start, end, clip_samples, outputs)
        return _write_clip(samples, clip_samples, out_rate, outputs.clip), "index"

    def _decode_indexed(self, source: _MediaSource, index: FragmentIndex, timing: _AudioTiming,
                        start: Fraction, end: Fraction, clip_samples: int, outputs: _Outputs) -> np.ndarray:
        out_rate = self.settings.sample_rate
        offset = float(timing.container_offset)
        from_s = float(start) - _lead_s(timing.decoded_rate, out_rate) - timing.preroll_s + offset
        to_s = float(end) + RESAMPLER_MARGIN_S + offset
        if index.duration_s is not None and float(start) + offset >= index.duration_s:
            return np.zeros(0, dtype=np.int16)  # the video ends before the segment starts: all padding
        from_s, to_s = max(from_s, 0.0), max(to_s, 0.0)
        fragments = index.covering(from_s, to_s)
        media = index.media_span(fragments)
        cut = outputs.original or self._scratch(outputs.clip, index.container.value)
        try:
            self._write_cut(source, index, from_s, to_s, cut)
            first_fragment = source.read(media.start, min(media.stop, media.start + FRAGMENT_HEAD_BYTES))
            fallback_time = Fraction(repr(index.points[fragments[0]].time_s))
            decoded_start = timing.decoded_start(first_fragment, fallback_time)
            plan = _trim_plan(start, clip_samples, decoded_start, timing.decoded_rate, out_rate)
            samples = _decode_cut(cut, plan, out_rate)
        finally:
            if cut != outputs.original:
                cut.unlink(missing_ok=True)
        if len(samples) < clip_samples and fragments[-1] < len(index.points) - 1:
            raise ClipError.of(Reason.DECODE_ERROR, f"decoded {len(samples)} of {clip_samples} samples, "
                                                    "but the stream goes on")
        return samples

    def _decode_through_proxy(self, source: _MediaSource, start: Fraction, clip_samples: int,
                              outputs: _Outputs) -> np.ndarray:
        """ffmpeg reads the media through the loopback proxy; ffmpeg applies the container's own
        delay information (MP4 edit list, LAME tag, Ogg pre-skip) itself here.

        MP4: its sample table gives exact timestamps after a seek, so ffmpeg seeks (input ``-ss``,
        early by the decoder's preroll) and the clip is trimmed on its timeline.
        Anything else is decoded from its first byte and trimmed by sample count: ffmpeg drops the
        encoder delay only at a file's start (after an mp3 seek its timestamps are 1105 samples off).
        """
        out_rate = self.settings.sample_rate
        if source.size is None:
            raise ClipError.of(Reason.HTTP_ERROR, "the media size is unknown (no Content-Range)")
        if self._proxy is None:
            self._proxy = _RangeChunkingProxy(self.settings.max_request_bytes)
        seek = round(start - Fraction(FALLBACK_SEEK_EARLY_S), 6) if source.read(4, 8) == b"ftyp" else Fraction(0)
        if seek > 0:
            # ffmpeg shifts the timeline by exactly the -ss value given (whole microseconds here),
            # whatever packet the seek landed on; trimming on that timeline keeps the cut exact.
            margin = round(RESAMPLER_MARGIN_S * out_rate)
            input_args = ["-ss", f"{float(seek):.6f}", "-noaccurate_seek"]
            trim_from = start - seek - Fraction(margin, out_rate)
            chain = (f"atrim=start={float(trim_from):.9f},{_resample_chain(out_rate)},"
                     f"atrim=start_sample={margin}:end_sample={margin + clip_samples}")
        else:
            first = round(start * out_rate)
            input_args = []
            chain = f"{_resample_chain(out_rate)},atrim=start_sample={first}:end_sample={first + clip_samples}"
        with self._proxy.serving(source) as url:
            args = [*input_args, "-rw_timeout", str(int(self.settings.timeout * 1e6)),
                    "-recv_buffer_size", str(PROXY_SOCKET_BUFFER_BYTES), "-i", url,
                    "-map", "0:a:0", "-af", chain, "-f", "s16le", "-c:a", "pcm_s16le", "pipe:1"]
            if outputs.original is not None:
                stop = float(start - seek) + clip_samples / out_rate + 1.0
                args += ["-map", "0:a:0", "-c:a", "copy", "-to", f"{stop:.6f}", "-y",
                         "-f", _muxer_for(outputs.original), str(outputs.original)]
            try:
                stdout = _run_ffmpeg(args, DECODE_TIMEOUT_S + self.settings.timeout, "decode (fallback)")
            finally:
                upstream = self._proxy.error_for(url)
            if upstream is not None:  # the source failed: that, not ffmpeg's view of it, is the reason
                raise upstream
        return _pcm(stdout)

    def _make_video(self, info: dict, ytid: str, start: float, end: float, outputs: _Outputs,
                    counter: _Counter) -> None:
        """An mp4 of the segment: the video-only format's covering fragments re-encoded (H.264),
        with the clip itself as its audio (so the two agree to the sample)."""
        assert outputs.video is not None
        fmt = _video_format(info)
        source = _MediaSource(self._ydl, fmt, ytid, self.settings, counter)
        source.probe(info.get("duration"))
        try:
            index = read_index(source.read, source.size)
        except IndexNotFound as why:
            raise ClipError.of(Reason.FORMAT_UNAVAILABLE, f"video format {fmt.get('format_id')}: {why}") from None
        cut = self._scratch(outputs.clip, f"video.{index.container.value}")
        try:
            self._write_cut(source, index, start, end, cut)
            _run_ffmpeg(["-copyts", "-i", str(cut), "-i", str(outputs.clip), "-filter_complex",
                         f"[0:v:0]trim=start={start:.6f}:end={end:.6f},setpts=PTS-STARTPTS[v]",
                         "-map", "[v]", "-map", "1:a:0", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
                         "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-shortest", "-movflags", "+faststart",
                         "-f", "mp4", "-y", str(outputs.video)], DECODE_TIMEOUT_S, "video encode")
        finally:
            cut.unlink(missing_ok=True)

    def _write_cut(self, source: _MediaSource, index: FragmentIndex, from_s: float, to_s: float,
                   path: Path) -> None:
        """The header, then the fragments covering container times [from_s, to_s]: a small file
        that decodes like that stretch of the original."""
        spans = byte_ranges(index, from_s, to_s, max_request_bytes=self.settings.max_request_bytes)
        data = b"".join(source.read(span.start, span.stop) for span in spans)  # the probe's bytes are kept
        if index.container is Container.MP4:
            header_bytes = sum(len(span) for span in index.header)
            media = index.media_span(index.covering(from_s, to_s))
            data = data[:header_bytes] + relocate_mp4_fragments(data[header_bytes:], media.start - header_bytes)
        path.write_bytes(data)

    @staticmethod
    def _scratch(beside: Path, suffix: str) -> Path:
        """A temporary file beside the outputs (named so `rundir.sweep_temp` finds leftovers)."""
        fd, name = tempfile.mkstemp(prefix=f"{beside.stem.split(TEMP_MARK)[0]}{TEMP_MARK}cut-",
                                    suffix=f".{suffix}", dir=beside.parent)
        os.close(fd)
        return Path(name)


def _muxer_for(path: Path) -> str:
    return {".m4a": "ipod", ".mp4": "mp4", ".webm": "webm", ".mp3": "mp3", ".ogg": "ogg"}.get(path.suffix, "matroska")
