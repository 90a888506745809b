"""Clips from HLS audio (method "hls"): the playlist, the media segments that cover the segment
(each one bounded request, or a few), and the same sample-exact decode as the indexed path.

Owns: `decode_hls` and the two timing rules that place decoded sample 0 in source time (source
time 0 = the first sample the encoder was given):

- fMP4 segments (``#EXT-X-MAP``): the first fetched segment's ``tfdt`` on the init segment's
  track timescale, minus the encoder delay, as for DASH (`cut.AudioTiming`). An edit list whose
  media time is 0 is read as "not stated": ffmpeg's HLS muxer shifts AAC's priming frame to
  time 0 and then writes exactly that, so the one-frame (1024-sample) AAC-LC delay applies.
- MPEG-TS segments: PTS is a 90 kHz clock, and nothing in the stream states the encoder delay.
  The stream's first AAC frame (segment 0's first PES) is the encoder's priming frame: a
  segment's first decoded sample lies at ``n * 1024 / rate - 1024 / rate`` with ``n`` the
  frames between the two PTS (``(pts - pts0) * rate / (90000 * 1024)``, snapped to the frame
  grid: muxers round each frame's PTS to the tick). When segment 0 is not among the covering
  segments, its first 16 TS packets are fetched (one bounded request) for ``pts0``.

Requests: the playlist, the init section and every segment are read through `MediaSource`s of
the format (its headers, the YoutubeDL's cookies), in bounded ranges only. An ``EXT-X-BYTERANGE``
names the exact range. A segment without one is a resource of its own whose size nothing states:
it is asked for as ``bytes=0-(request limit - 1)``, bounded, which a server answers with the
whole (small) file, and a larger file goes on in bounded requests up to the size its
``Content-Range`` states. Only segment 0's head, when it is needed for ``pts0``, is a partial read
(`mpegts.TS_HEAD_BYTES`).

AAC-LC only (HE-AAC's SBR delay has no rule here): anything else raises `HlsUnsupported`, as
does any playlist `hls` cannot cut, and the fetcher falls back to yt-dlp's downloader.
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from audiosetdl.download.cut import (
    AAC_FRAME_SAMPLES,
    DECODE_TIMEOUT_S,
    RESAMPLER_MARGIN_S,
    AudioTiming,
    decode_cut,
    lead_s,
    run_ffmpeg,
    trim_plan,
)
from audiosetdl.download.errors import ClipError, Reason
from audiosetdl.download.hls import (
    HlsUnsupported,
    MediaPlaylist,
    Resource,
    audio_rendition_url,
    is_master,
    parse_media_playlist,
)
from audiosetdl.download.http import MediaSource
from audiosetdl.download.index import Container, IndexNotFound
from audiosetdl.download.mp4 import init_segment_track
from audiosetdl.download.mp4_fragments import relocate_mp4_fragments
from audiosetdl.download.mpegts import PTS_HZ, TS_HEAD_BYTES, TsAudio, TsUnreadable, first_audio_pes, pts_delta

PLAYLIST_ENCODING = "utf-8"
ASSUMED_RATE = 44_100  # before the first segment says otherwise: only sizes the margins
PTS_SNAP_TICKS = 2  # a PTS this close to the AAC frame grid is taken as that frame's
_SBR_CODECS = ("mp4a.40.5", "mp4a.40.29")  # HE-AAC: the ADTS / esds may say LC, the decoder doubles the rate

SourceFor = Callable[[str], MediaSource]
"""`sources(url)`: the MediaSource that reads `url` (the same one for the same URL)."""


def load_playlist(sources: SourceFor, url: str) -> MediaPlaylist:
    """The media playlist at `url` (through the audio rendition, for a master playlist)."""
    text = sources(url).read_all().decode(PLAYLIST_ENCODING, "replace")
    if is_master(text):
        url = audio_rendition_url(text, url)
        text = sources(url).read_all().decode(PLAYLIST_ENCODING, "replace")
    return parse_media_playlist(text, url)


def read_resource(sources: SourceFor, resource: Resource, limit: int | None = None) -> bytes:
    """A segment's bytes (or the first `limit` of them), each request bounded."""
    source = sources(resource.url)
    if resource.span is None:
        return source.read(0, limit) if limit is not None else source.read_all()
    stop = resource.span.stop if limit is None else min(resource.span.stop, resource.span.start + limit)
    data = source.read(resource.span.start, stop)
    if len(data) != stop - resource.span.start:
        raise ClipError.of(Reason.HTTP_ERROR, f"{resource.url}: {len(data)} of the {stop - resource.span.start} "
                                              "bytes its EXT-X-BYTERANGE names")
    return data


def source_pool(playlist: MediaSource) -> SourceFor:
    """One MediaSource per URL: the playlist's own, and a sibling of it for every other URL."""
    pool = {playlist.url: playlist}

    def source_for(url: str) -> MediaSource:
        if url not in pool:
            pool[url] = playlist.sibling(url)
        return pool[url]

    return source_for


def decode_hls(playlist_source: MediaSource, acodec: str, start: Fraction, end: Fraction, clip_samples: int,
               out_rate: int, scratch: Callable[[str], Path], original: Path | None = None) -> np.ndarray:
    """The clip's samples from the HLS rendition `playlist_source` reads; `scratch(suffix)` makes
    the temporary file the cut is written to. Raises HlsUnsupported for what this path cannot cut
    exactly."""
    if acodec.startswith(_SBR_CODECS):
        raise HlsUnsupported(f"{acodec}: HE-AAC has no exact timing rule here")
    sources = source_pool(playlist_source)
    playlist = load_playlist(sources, playlist_source.url)
    if float(start) >= playlist.duration_s:
        return np.zeros(0, dtype=np.int16)  # the video ends before the segment starts: all padding
    cutter = _Fmp4Cutter(sources, playlist) if playlist.init is not None else _TsCutter(sources, playlist)
    lead = Fraction(repr(lead_s(cutter.rate, out_rate)))
    wanted_from = start - lead - Fraction(repr(cutter.preroll_s))
    segments = playlist.covering(float(wanted_from + cutter.offset), float(end + cutter.offset) + RESAMPLER_MARGIN_S)
    data = {i: read_resource(sources, playlist.segments[i].resource) for i in segments}
    first = segments[0]
    decoded_start = cutter.decoded_start(first, data[first])
    while decoded_start > wanted_from and first > 0:  # the playlist's times were off: one more segment
        first -= 1
        data[first] = read_resource(sources, playlist.segments[first].resource)
        decoded_start = cutter.decoded_start(first, data[first])
    path = scratch(cutter.suffix)
    try:
        path.write_bytes(cutter.assemble([data[i] for i in range(first, segments[-1] + 1)],
                                         [playlist.segments[i].resource for i in range(first, segments[-1] + 1)]))
        plan = trim_plan(start, clip_samples, decoded_start, cutter.rate, out_rate)
        samples = decode_cut(path, plan, out_rate)
        if original is not None:
            run_ffmpeg(["-i", str(path), "-map", "0:a:0", "-c", "copy", "-y", str(original)], DECODE_TIMEOUT_S,
                       "copy of the original")
    finally:
        path.unlink(missing_ok=True)
    if len(samples) < clip_samples and segments[-1] < len(playlist.segments) - 1:
        raise ClipError.of(Reason.DECODE_ERROR, f"decoded {len(samples)} of {clip_samples} samples, "
                                                "but the playlist goes on")
    return samples


class _Fmp4Cutter:
    """fMP4 segments: the init segment's track, each segment's tfdt."""

    suffix = "mp4"

    def __init__(self, sources: SourceFor, playlist: MediaPlaylist) -> None:
        assert playlist.init is not None
        self._playlist = playlist
        self._init = read_resource(sources, playlist.init)
        try:
            track = init_segment_track(self._init)
            if track.edit_media_time == 0:  # ffmpeg's HLS muxer: "0" after shifting the priming frame to 0
                track = replace(track, edit_media_time=None)
            self._timing = AudioTiming.for_track(track, Container.MP4)
        except IndexNotFound as why:
            raise HlsUnsupported(f"fMP4 init segment: {why}") from None
        self.rate = self._timing.decoded_rate
        self.preroll_s = self._timing.preroll_s
        self.offset = self._timing.container_offset

    def decoded_start(self, index: int, data: bytes) -> Fraction:
        return self._timing.decoded_start(data, Fraction(repr(self._playlist.segments[index].start_s)))

    def assemble(self, parts: list[bytes], resources: list[Resource]) -> bytes:
        out = bytearray(self._init)
        for part, resource in zip(parts, resources):
            # Fragments that address their data absolutely move with their new place in the cut.
            out += relocate_mp4_fragments(part, (resource.span.start if resource.span else 0) - len(out))
        return bytes(out)


class _TsCutter:
    """MPEG-TS segments: each segment's first PTS against the stream's first (segment 0's)."""

    suffix = "ts"
    preroll_s = AAC_FRAME_SAMPLES / ASSUMED_RATE

    def __init__(self, sources: SourceFor, playlist: MediaPlaylist) -> None:
        self._sources = sources
        self._playlist = playlist
        self._first: TsAudio | None = None  # segment 0's first audio PES
        self.rate = ASSUMED_RATE
        self.offset = Fraction(AAC_FRAME_SAMPLES, ASSUMED_RATE)

    def _audio(self, data: bytes) -> TsAudio:
        try:
            audio = first_audio_pes(data[:TS_HEAD_BYTES])
        except (TsUnreadable, IndexError) as why:
            raise HlsUnsupported(f"MPEG-TS segment: {why}") from None
        if audio.codec != "aac" or audio.aac_object_type != 2 or not audio.sample_rate:
            raise HlsUnsupported(f"{audio.codec} (object type {audio.aac_object_type}) in MPEG-TS: "
                                 "exact timing known for AAC-LC only")
        return audio

    def decoded_start(self, index: int, data: bytes) -> Fraction:
        audio = self._audio(data)
        if self._first is None:
            head = data if index == 0 else read_resource(self._sources, self._playlist.segments[0].resource,
                                                         TS_HEAD_BYTES)
            self._first = self._audio(head)
        rate = audio.sample_rate
        assert rate is not None
        self.rate, self.preroll_s = rate, AAC_FRAME_SAMPLES / rate
        ticks = pts_delta(audio.pts, self._first.pts)
        frames = round(Fraction(ticks * rate, PTS_HZ * AAC_FRAME_SAMPLES))
        if abs(ticks - Fraction(frames * AAC_FRAME_SAMPLES * PTS_HZ, rate)) <= PTS_SNAP_TICKS:
            stream_time = Fraction(frames * AAC_FRAME_SAMPLES, rate)
        else:  # not on the frame grid (a gap in the stream): the PTS itself, to the tick
            stream_time = Fraction(ticks, PTS_HZ)
        return stream_time - Fraction(AAC_FRAME_SAMPLES, rate)

    def assemble(self, parts: list[bytes], resources: list[Resource]) -> bytes:
        return b"".join(parts)
