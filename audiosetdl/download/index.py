"""Container indexes of DASH media: which bytes hold which seconds, and what to fetch for a segment.

Owns: the container-neutral index types (`ByteSpan`, `IndexPoint`, `TrackInfo`,
`FragmentIndex`), sizing the first request for a file's head (`index_probe_bytes`), `byte_ranges`
(header bytes plus the covering fragments, split into bounded requests), and `read_index`, which
hands the head of a file to the parser of its container: `audiosetdl.download.mp4` (``ftyp`` +
``moov`` + the ``sidx``) or `audiosetdl.download.webm` (EBML header, ``Tracks`` and ``Cues``).

Pure functions over bytes: every read goes through a `ReadBytes` callable the caller supplies
(the fetcher's is a bounded HTTP range request), so nothing here does I/O by itself.

YouTube's DASH audio (itag 140 m4a, 251 webm) carries one global ``sidx`` / front ``Cues``
within the first 64 KiB (`INDEX_PROBE_BYTES`); `index_probe_bytes` sizes the first request from
the video's duration so that it usually holds both header and index. Anything the parsers cannot
index raises `IndexNotFound`, and the caller falls back.
"""

from __future__ import annotations

import bisect
import enum
import struct
from dataclasses import dataclass
from typing import Callable

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # yt-dlp's http_chunk_size for YouTube: larger requests get throttled
INDEX_PROBE_BYTES = 64 * 1024  # YouTube's DASH audio header and index sit in the first 64 KiB
MIN_INDEX_PROBE_BYTES = 16 * 1024
HEADER_ALLOWANCE_BYTES = 8 * 1024  # ftyp + moov, or EBML header + Info + Tracks (+ Tags): ~1 KiB on YouTube
INDEX_BYTES_PER_SECOND = 8  # a sidx entry is 12 bytes, a Cues point ~20; fragments come every 2.5-10 s

ReadBytes = Callable[[int, int], bytes]
"""`read(start, stop)` returns the file's bytes [start, stop) (fewer only at the end of the file)."""


class IndexNotFound(ValueError):
    """The bytes are not a container whose index this module can read (the caller falls back)."""


@dataclass(frozen=True, order=True)
class ByteSpan:
    """Bytes [start, stop) of a file."""

    start: int
    stop: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.stop:
            raise ValueError(f"not a byte span: [{self.start}, {self.stop})")

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def range_header(self) -> str:
        """The bounded HTTP Range for these bytes (never open-ended)."""
        if not len(self):
            raise ValueError("an empty span has no Range header")
        return f"bytes={self.start}-{self.stop - 1}"

    def split(self, max_bytes: int) -> list[ByteSpan]:
        """This span as consecutive pieces of at most `max_bytes`."""
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        return [ByteSpan(a, min(a + max_bytes, self.stop)) for a in range(self.start, self.stop, max_bytes)]

    def without_prefix(self, have: int) -> ByteSpan | None:
        """What remains of this span once the file's bytes [0, have) are already at hand."""
        if have >= self.stop:
            return None
        return ByteSpan(max(self.start, have), self.stop)


class Container(str, enum.Enum):
    MP4 = "mp4"
    WEBM = "webm"


@dataclass(frozen=True)
class IndexPoint:
    """A fragment (MP4) or cluster (WebM) start: its time on the container's timeline, and its
    byte offset in the file."""

    time_s: float
    offset: int


@dataclass(frozen=True)
class TrackInfo:
    """The facts of the indexed track that decoding needs. Times here are container ticks."""

    kind: str  # "audio" or "video"
    codec: str  # "aac", "opus", "vorbis", "h264", "vp9", "av1", ... or the container's own name
    timescale: int  # ticks per second of the container's timestamps (MP4 mdhd; WebM 1e9 / TimestampScale)
    track_number: int | None = None  # WebM: the number its blocks carry
    sample_rate: int | None = None
    channels: int | None = None
    aac_object_type: int | None = None  # 2: AAC-LC, 5: HE-AAC (SBR), 29: HE-AAC v2
    edit_media_time: int | None = None  # MP4 edit list: the media time (ticks) presentation starts at
    opus_pre_skip: int | None = None  # samples at 48 kHz the decoder drops at the stream's start
    codec_delay_s: float | None = None  # Matroska CodecDelay
    seek_preroll_s: float | None = None  # Matroska SeekPreRoll
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class FragmentIndex:
    """Where each fragment of one track lies in time and in bytes.

    A decodable file for any run of fragments is the `header` spans followed by the fragments'
    bytes: Matroska clusters carry their own timecodes, and fMP4 fragments address their data
    from their own ``moof`` (after `relocate_mp4_fragments` where they used absolute offsets).
    """

    container: Container
    header: tuple[ByteSpan, ...]  # init bytes to put in front of the fragments (MP4: ftyp + moov)
    index_span: ByteSpan  # where the sidx / Cues themselves lie
    points: tuple[IndexPoint, ...]  # ascending in offset and time
    media_end: int  # where the last fragment ends
    track: TrackInfo
    duration_s: float | None = None  # the container's own figure, if it states one

    def __post_init__(self) -> None:
        if not self.points:
            raise IndexNotFound("the index lists no fragments")

    def fragment_span(self, i: int) -> ByteSpan:
        stop = self.points[i + 1].offset if i + 1 < len(self.points) else self.media_end
        return ByteSpan(self.points[i].offset, stop)

    def covering(self, start_s: float, end_s: float) -> range:
        """The fragments that hold container times [start_s, end_s): from the last one that starts
        at or before `start_s` to the last one that starts before `end_s`."""
        if end_s < start_s:
            raise ValueError(f"end {end_s} before start {start_s}")
        times = [p.time_s for p in self.points]
        first = max(bisect.bisect_right(times, start_s) - 1, 0)
        last = max(bisect.bisect_left(times, end_s) - 1, first)
        return range(first, last + 1)

    def media_span(self, fragments: range) -> ByteSpan:
        return ByteSpan(self.fragment_span(fragments[0]).start, self.fragment_span(fragments[-1]).stop)


def index_probe_bytes(duration_s: float | None) -> int:
    """How much of the file's head the first request asks for: the header and the index of a
    video this long, so that one request usually does (a larger index costs one more)."""
    if not duration_s or duration_s <= 0:
        return INDEX_PROBE_BYTES
    expected = HEADER_ALLOWANCE_BYTES + duration_s * INDEX_BYTES_PER_SECOND
    return int(min(INDEX_PROBE_BYTES, max(MIN_INDEX_PROBE_BYTES, expected)))


def byte_ranges(index: FragmentIndex, start_s: float, end_s: float, *,
                max_request_bytes: int = MAX_REQUEST_BYTES, have_prefix: int = 0) -> list[ByteSpan]:
    """The requests that fetch what a decoder needs for container times [start_s, end_s]: the
    header spans, then the covering fragments as one run, each split into bounded pieces.
    Bytes below `have_prefix` (the head of the file, already fetched) are left out."""
    spans = [*index.header, index.media_span(index.covering(start_s, end_s))]
    out: list[ByteSpan] = []
    for span in spans:
        rest = span.without_prefix(have_prefix)
        if rest is not None and len(rest):
            out += rest.split(max_request_bytes)
    return out


def read_index(read: ReadBytes, file_size: int | None = None) -> FragmentIndex:
    """Parse the container at the start of the file that `read` reads (MP4 or WebM).

    Raises IndexNotFound for anything it cannot index, truncated or malformed input included.
    """
    from audiosetdl.download import mp4, webm  # they build on the types above

    head = read(0, 12)
    try:
        if len(head) >= 8 and head[4:8] in (b"ftyp", b"styp", b"moov", b"sidx", b"free", b"skip"):
            return mp4.read_mp4_index(read, file_size)
        if head[:4] == b"\x1a\x45\xdf\xa3":
            return webm.read_webm_index(read, file_size)
    except (struct.error, IndexError, ValueError, TypeError, OverflowError) as exc:
        if isinstance(exc, IndexNotFound):
            raise
        raise IndexNotFound(f"malformed container header: {exc}") from None
    raise IndexNotFound("neither an MP4 nor a WebM/Matroska file")

