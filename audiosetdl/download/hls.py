"""HLS playlists: which media segments hold which seconds of an audio rendition.

Owns: parsing a media playlist (``#EXTINF`` durations, ``#EXT-X-MAP`` init section,
``#EXT-X-BYTERANGE`` sub-ranges, ``#EXT-X-KEY``, ``#EXT-X-DISCONTINUITY``, ``#EXT-X-ENDLIST``) into
`MediaPlaylist`, choosing the media playlist of an audio rendition from a master playlist
(`audio_rendition_url`), and which segments cover a stretch of the playlist's timeline
(`MediaPlaylist.covering`). Pure functions over text; the fetch and the decode are in `hls_cut`.

The playlist's timeline (the sum of ``#EXTINF`` durations) is only a guide: durations are rounded
(ffmpeg writes microseconds, other packagers milliseconds or whole seconds), so the segments are
chosen with `SELECT_SLACK_S` to spare and the clip is placed by the media's own timestamps (fMP4
``tfdt``, MPEG-TS PTS). Anything this path cannot place exactly (encrypted segments, live
playlists, discontinuities, no ``#EXTINF``) raises `HlsUnsupported`, and the fetcher hands the
format to yt-dlp's own downloader instead.
"""

from __future__ import annotations

import bisect
import re
import urllib.parse
from dataclasses import dataclass

from audiosetdl.download.index import ByteSpan

SELECT_SLACK_S = 0.1  # playlist time vs the media's own timestamps (rounded EXTINF, priming)
_ATTRIBUTE_RE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')
_AUDIO_CODECS = ("mp4a", "opus", "ac-3", "ec-3", "mp3", "flac")


class HlsUnsupported(ValueError):
    """A playlist this path cannot cut exactly (the fetcher uses yt-dlp's downloader instead)."""


@dataclass(frozen=True)
class Resource:
    """A URL, and the bytes of it meant (None: the whole resource)."""

    url: str
    span: ByteSpan | None = None


@dataclass(frozen=True)
class Segment:
    resource: Resource
    start_s: float  # on the playlist's timeline (the sum of the EXTINF before it)
    duration_s: float


@dataclass(frozen=True)
class MediaPlaylist:
    segments: tuple[Segment, ...]
    init: Resource | None  # the EXT-X-MAP init section (fMP4), None for MPEG-TS

    @property
    def duration_s(self) -> float:
        last = self.segments[-1]
        return last.start_s + last.duration_s

    def covering(self, start_s: float, end_s: float) -> range:
        """The segments that hold playlist times [start_s, end_s], `SELECT_SLACK_S` to spare on
        each side (a segment boundary in the playlist may lie that far from the media's own)."""
        starts = [s.start_s for s in self.segments]
        first = max(bisect.bisect_right(starts, start_s - SELECT_SLACK_S) - 1, 0)
        last = max(bisect.bisect_left(starts, end_s + SELECT_SLACK_S) - 1, first)
        return range(first, last + 1)


def is_master(text: str) -> bool:
    return "#EXT-X-STREAM-INF" in text or ("#EXT-X-MEDIA:" in text and "#EXTINF" not in text)


def audio_rendition_url(text: str, url: str) -> str:
    """The media playlist of the audio in a master playlist: an ``#EXT-X-MEDIA`` audio rendition
    (DEFAULT=YES first), else the audio-only variant of highest bandwidth, else the variant of
    lowest bandwidth (the audio costs the same in each)."""
    renditions, variants = [], []
    lines = [line.strip() for line in text.splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-MEDIA:"):
            attrs = _attributes(line)
            if attrs.get("TYPE") == "AUDIO" and attrs.get("URI"):
                renditions.append((attrs.get("DEFAULT") != "YES", attrs["URI"]))
        elif line.startswith("#EXT-X-STREAM-INF:"):
            uri = next((u for u in lines[i + 1:] if u and not u.startswith("#")), None)
            if uri is not None:
                attrs = _attributes(line)
                codecs = [c.strip() for c in attrs.get("CODECS", "").split(",") if c.strip()]
                audio_only = bool(codecs) and all(c.startswith(_AUDIO_CODECS) for c in codecs)
                variants.append((not audio_only, int(attrs.get("BANDWIDTH") or 0), uri))
    if renditions:
        return urllib.parse.urljoin(url, min(renditions)[1])
    if not variants:
        raise HlsUnsupported("a master playlist without any variant")
    audio = [v for v in variants if not v[0]]
    chosen = max(audio, key=lambda v: v[1]) if audio else min(variants, key=lambda v: v[1])
    return urllib.parse.urljoin(url, chosen[2])


def parse_media_playlist(text: str, url: str) -> MediaPlaylist:
    """A VOD media playlist's segments; raises HlsUnsupported for what this path cannot cut."""
    lines = [line.strip() for line in text.splitlines()]
    if not lines or lines[0] != "#EXTM3U":
        raise HlsUnsupported("not an M3U8 playlist")
    segments: list[Segment] = []
    init: Resource | None = None
    duration: float | None = None
    byterange: str | None = None
    ends: dict[str, int] = {}  # URL -> where its last sub-range ended (a BYTERANGE without @offset follows it)
    clock = 0.0
    ended = False
    for line in lines[1:]:
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:"):].split(",", 1)[0])
        elif line.startswith("#EXT-X-BYTERANGE:"):
            byterange = line[len("#EXT-X-BYTERANGE:"):]
        elif line.startswith("#EXT-X-MAP:"):
            attrs = _attributes(line)
            map_url = urllib.parse.urljoin(url, attrs.get("URI", ""))
            init = Resource(map_url, _byte_span(attrs["BYTERANGE"], map_url, ends) if "BYTERANGE" in attrs else None)
        elif line.startswith("#EXT-X-KEY:"):
            method = _attributes(line).get("METHOD", "NONE")
            if method != "NONE":
                raise HlsUnsupported(f"encrypted segments (EXT-X-KEY METHOD={method})")
        elif line.startswith("#EXT-X-DISCONTINUITY") and not line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE"):
            if segments:
                raise HlsUnsupported("a discontinuity: the media timeline restarts")
        elif line == "#EXT-X-ENDLIST":
            ended = True
        elif line and not line.startswith("#"):
            if duration is None:
                raise HlsUnsupported(f"segment {line!r} without #EXTINF")
            segment_url = urllib.parse.urljoin(url, line)
            span = _byte_span(byterange, segment_url, ends) if byterange is not None else None
            segments.append(Segment(Resource(segment_url, span), clock, duration))
            clock += duration
            duration, byterange = None, None
    if not ended:
        raise HlsUnsupported("no #EXT-X-ENDLIST: a live or unfinished playlist")
    if not segments:
        raise HlsUnsupported("a playlist without segments")
    return MediaPlaylist(tuple(segments), init)


def _byte_span(value: str, url: str, ends: dict[str, int]) -> ByteSpan:
    """``n[@o]``: n bytes from o, or from where the previous sub-range of the same URL ended."""
    length, _, offset = value.strip().partition("@")
    first = int(offset) if offset else ends.get(url, 0)
    span = ByteSpan(first, first + int(length))
    ends[url] = span.stop
    return span


def _attributes(line: str) -> dict[str, str]:
    _, _, rest = line.partition(":")
    return {k: v[1:-1] if v.startswith('"') else v for k, v in _ATTRIBUTE_RE.findall(rest)}
