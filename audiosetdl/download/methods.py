"""The chosen audio format -> the clip's samples, by the method the format allows, and the clip
written: `ClipMaker.make_clip` (one per `ClipFetcher`, sharing its YoutubeDL; it holds the
fallback proxy, started on first need).

How a clip is made (method "index"):

1. The format `fetcher` chose (`resolve`: the best audio-only http(s) format, DASH m4a/webm
   first).
2. One bounded request for the file's head (4-64 KiB, sized from the duration): the init
   segment and the ``sidx`` / ``Cues``.
3. Of the fragments covering [start - decoder preroll - resampler margin, end + margin], only
   what that stretch needs (`partial`: the fMP4 samples, each fragment rebuilt around them; the
   WebM blocks up to its end), fetched in bounded requests (bytes already in the probe are not
   fetched again) and written after the init segment: a small file that ffmpeg decodes like the
   original.
4. `cut` decodes every sample of it, places decoded sample 0 in source time from the container
   and codec, and resamples with soxr so that the clip is exactly ``round((end - start) * 16000)``
   samples starting exactly at `start`, padded with silence at the end only where the video ends
   first.

Method "fallback" (no readable index): ffmpeg reads the media through the range-chunking proxy.

Method "hls" (an m3u8 format, e.g. web_safari's, which need no PO token): the media playlist, and
only the segments covering the same stretch, each in bounded requests, placed in source time by
the fMP4 ``tfdt`` or the MPEG-TS PTS (`hls_cut`), decoded by the same `cut` machinery.

Method "ytdlp" (`ytdlp_range`): yt-dlp's own downloader for the section (``download_ranges``),
trimmed sample-exact here, for protocols without a path of ours (DASH manifests, ...), for HLS
that "hls" cannot place exactly, and as `fetcher`'s last resort once every player client failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import yt_dlp

from audiosetdl.download.cut import RESAMPLER_MARGIN_S, AudioTiming, decode_cut, lead_s, trim_plan, write_clip
from audiosetdl.download.errors import ClipError, Reason
from audiosetdl.download.fallback import RangeChunkingProxy, decode_through_proxy
from audiosetdl.download.hls import HlsUnsupported
from audiosetdl.download.hls_cut import decode_hls
from audiosetdl.download.http import MediaSource
from audiosetdl.download.index import FragmentIndex, IndexNotFound, read_index
from audiosetdl.download.partial import partial_cut
from audiosetdl.download.resolve import Resolved, is_hls, is_http
from audiosetdl.download.ytdlp_range import decode_with_ytdlp
from audiosetdl.rundir import scratch_beside

log = logging.getLogger(__name__)

YTDLP_METHOD = "ytdlp"


@dataclass
class Outputs:
    """Temporary paths of one fetch's outputs; renamed into place together on success."""

    clip: Path
    original: Path | None = None
    video: Path | None = None


class ClipMaker:
    """Makes one clip at a time from a resolved format (not thread-safe, like its `ClipFetcher`)."""

    def __init__(self, ydl: yt_dlp.YoutubeDL, sample_rate: int, max_request_bytes: int, timeout: float) -> None:
        self.ydl, self.sample_rate = ydl, sample_rate
        self.max_request_bytes, self.timeout = max_request_bytes, timeout
        self._proxy: RangeChunkingProxy | None = None

    def close(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None

    def make_clip(self, source: MediaSource, resolved: Resolved, fmt: dict, start: Fraction, end: Fraction,
                  outputs: Outputs, method: str = "") -> tuple[float, str]:
        """Write the clip by the method the format allows (or `method` "ytdlp"); returns (padded
        seconds, method)."""
        out_rate = self.sample_rate
        clip_samples = round((end - start) * out_rate)
        if method == YTDLP_METHOD or not is_http(fmt):  # HLS, and protocols without a path of ours
            samples, method = self._decode_streamed(source, resolved, fmt, start, end, clip_samples, outputs, method)
            return write_clip(samples, clip_samples, out_rate, outputs.clip), method
        method = "index"
        try:
            source.probe(resolved.info.get("duration"))
            try:
                index = read_index(source.read, source.size)
                timing = AudioTiming.of(index)
            except IndexNotFound as why:
                log.debug("%s: %s; using the fallback", source.ytid, why)
                method = "fallback"
                if self._proxy is None:
                    self._proxy = RangeChunkingProxy(self.max_request_bytes)
                samples = decode_through_proxy(self._proxy, source, start, clip_samples, out_rate,
                                               self.timeout, outputs.original)
            else:
                samples = self._decode_indexed(source, index, timing, start, end, clip_samples, outputs)
            return write_clip(samples, clip_samples, out_rate, outputs.clip), method
        except ClipError as exc:
            raise exc.noting(method=method)

    def _decode_streamed(self, source: MediaSource, resolved: Resolved, fmt: dict, start: Fraction, end: Fraction,
                         clip_samples: int, outputs: Outputs, method: str) -> tuple[np.ndarray, str]:
        """Method "hls": the playlist and its covering segments (siblings of `source`); method
        "ytdlp": yt-dlp's own downloader for the section, for what "hls" cannot cut, other
        protocols, and the last resort."""
        out_rate = self.sample_rate

        def scratch(suffix: str) -> Path:
            return scratch_beside(outputs.clip, suffix)

        if is_hls(fmt) and method != YTDLP_METHOD:
            try:
                return decode_hls(source, str(fmt.get("acodec") or ""), start, end, clip_samples, out_rate, scratch,
                                  outputs.original), "hls"
            except HlsUnsupported as why:
                log.debug("%s: %s; using yt-dlp's downloader", source.ytid, why)
            except ClipError as exc:
                raise exc.noting(method="hls")
        try:
            return decode_with_ytdlp(self.ydl, resolved.info, fmt, source.ytid, start, end, clip_samples, out_rate,
                                     scratch, outputs.original), YTDLP_METHOD
        except ClipError as exc:
            raise exc.noting(method=YTDLP_METHOD)

    def _decode_indexed(self, source: MediaSource, index: FragmentIndex, timing: AudioTiming,
                        start: Fraction, end: Fraction, clip_samples: int, outputs: Outputs) -> np.ndarray:
        out_rate = self.sample_rate
        offset = float(timing.container_offset)
        from_s = float(start) - lead_s(timing.decoded_rate, out_rate) - timing.preroll_s + offset
        to_s = float(end) + RESAMPLER_MARGIN_S + offset
        if index.duration_s is not None and float(start) + offset >= index.duration_s:
            return np.zeros(0, dtype=np.int16)  # the video ends before the segment starts: all padding
        from_s, to_s = max(from_s, 0.0), max(to_s, 0.0)
        fragments = index.covering(from_s, to_s)
        cut = outputs.original or scratch_beside(outputs.clip, index.container.value)
        try:
            made = partial_cut(source.read, index, from_s, to_s, self.max_request_bytes)  # the probe's bytes are kept
            cut.write_bytes(made.data)
            first_fragment = made.first_fragment
            fallback_time = Fraction(repr(index.points[fragments[0]].time_s))
            decoded_start = timing.decoded_start(first_fragment, fallback_time)
            plan = trim_plan(start, clip_samples, decoded_start, timing.decoded_rate, out_rate)
            samples = decode_cut(cut, plan, out_rate)
        finally:
            if cut != outputs.original:
                cut.unlink(missing_ok=True)
        if len(samples) < clip_samples and fragments[-1] < len(index.points) - 1:
            raise ClipError.of(Reason.DECODE_ERROR, f"decoded {len(samples)} of {clip_samples} samples, "
                                                    "but the stream goes on")
        return samples
