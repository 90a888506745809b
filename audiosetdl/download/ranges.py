"""Container indexes of DASH media: which bytes hold which seconds, and what to fetch for a segment.

Owns: parsing the head of a fragmented MP4 (``ftyp`` + ``moov`` as the init segment, and the
``sidx`` that lists every fragment's byte size and duration) and of a WebM file (EBML header,
Segment ``Info``/``Tracks``, and the ``Cues`` that give each ``Cluster``'s time and position,
found through the ``SeekHead`` when they are not in front of the clusters) into a
`FragmentIndex`: a list of (time, byte offset) points plus the header bytes a decoder needs in
front of any run of fragments; the track facts in those headers that decide where decoded audio
lies in time (MP4 edit list, AAC object type, Opus pre-skip, Matroska CodecDelay and
SeekPreRoll); the exact start time of a fetched fragment (``tfdt``, or a cluster's first block);
and `byte_ranges`, which turns [start, end] seconds into the header bytes plus the covering
fragments, split into bounded requests.

Pure functions over bytes: every read goes through a `ReadBytes` callable the caller supplies
(the fetcher's is a bounded HTTP range request), so nothing here does I/O by itself.

YouTube's DASH audio (itag 140 m4a, 251 webm) carries one global ``sidx`` / front ``Cues``
within the first 64 KiB (`INDEX_PROBE_BYTES`); `index_probe_bytes` sizes the first request from
the video's duration so that it usually holds both header and index. Anything this module cannot
index raises `IndexNotFound`, and the caller falls back.
"""

from __future__ import annotations

import bisect
import enum
import struct
from dataclasses import dataclass
from typing import Callable, Iterator

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
    head = read(0, 12)
    try:
        if len(head) >= 8 and head[4:8] in (b"ftyp", b"styp", b"moov", b"sidx", b"free", b"skip"):
            return read_mp4_index(read, file_size)
        if head[:4] == b"\x1a\x45\xdf\xa3":
            return read_webm_index(read, file_size)
    except (struct.error, IndexError, ValueError, TypeError, OverflowError) as exc:
        if isinstance(exc, IndexNotFound):
            raise
        raise IndexNotFound(f"malformed container header: {exc}") from None
    raise IndexNotFound("neither an MP4 nor a WebM/Matroska file")


# ============================================================================================
# MP4 (ISO BMFF)

_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"moof", b"traf", b"dinf", b"mvex"}
_MP4_CODECS = {"mp4a": "aac", "Opus": "opus", "avc1": "h264", "avc3": "h264", "vp09": "vp9", "av01": "av1",
               "hvc1": "hevc", "hev1": "hevc", "fLaC": "flac", "ac-3": "ac3", "ec-3": "eac3"}


@dataclass(frozen=True)
class _Box:
    kind: bytes
    offset: int  # of the box header
    header_size: int
    size: int  # whole box

    @property
    def body(self) -> ByteSpan:
        return ByteSpan(self.offset + self.header_size, self.offset + self.size)


def _box_at(data: bytes, pos: int, end: int) -> _Box | None:
    if pos + 8 > end:
        return None
    size, kind = struct.unpack_from(">I4s", data, pos)
    header = 8
    if size == 1:
        if pos + 16 > end:
            return None
        size = struct.unpack_from(">Q", data, pos + 8)[0]
        header = 16
    elif size == 0:
        size = end - pos
    if size < header:
        raise IndexNotFound(f"MP4 box {kind!r} at {pos} has an impossible size {size}")
    return _Box(kind, pos, header, size)


def _children(data: bytes, start: int, stop: int) -> Iterator[_Box]:
    pos = start
    while (box := _box_at(data, pos, stop)) is not None:
        yield box
        pos += box.size


def _child(data: bytes, parent: _Box, kind: bytes) -> _Box | None:
    return next((b for b in _children(data, parent.body.start, min(parent.body.stop, len(data))) if b.kind == kind), None)


def _path(data: bytes, parent: _Box, *kinds: bytes) -> _Box | None:
    box: _Box | None = parent
    for kind in kinds:
        box = _child(data, box, kind) if box is not None else None
    return box


def _top_level_mp4_boxes(read: ReadBytes, file_size: int | None) -> Iterator[_Box]:
    """Top-level box headers from offset 0, reading 16 bytes per box; stops at the first
    fragment or media data (the index, if any, comes before them)."""
    pos = 0
    while file_size is None or pos < file_size:
        head = read(pos, pos + 16)
        if len(head) < 8:
            return
        if struct.unpack_from(">I", head, 0)[0] == 0:  # size 0: the box runs to the end of the file
            if file_size is None:
                return
            box = _Box(head[4:8], 0, 8, file_size - pos)
        else:
            box = _box_at(head, 0, len(head))
            if box is None:
                return
        yield _Box(box.kind, pos, box.header_size, box.size)
        if box.kind in (b"moof", b"mdat"):
            return
        pos += box.size


def read_mp4_index(read: ReadBytes, file_size: int | None = None) -> FragmentIndex:
    """A fragmented MP4's init segment and its (first, global) sidx."""
    ftyp = moov = sidx = None
    for box in _top_level_mp4_boxes(read, file_size):
        if box.kind == b"ftyp" and ftyp is None:
            ftyp = box
        elif box.kind == b"moov":
            moov = box
        elif box.kind == b"sidx" and sidx is None:
            sidx = box
        elif box.kind == b"mdat":
            raise IndexNotFound("media data before any fragment index (not a fragmented MP4 with a sidx)")
        if moov is not None and sidx is not None:
            break
    if moov is None:
        raise IndexNotFound("no moov box before the media")
    if sidx is None:
        raise IndexNotFound("no sidx box: the fragments are not indexed")
    moov_data = read(moov.offset, moov.offset + moov.size)
    track = _mp4_track(moov_data, _Box(moov.kind, 0, moov.header_size, moov.size))
    sidx_data = read(sidx.offset, sidx.offset + sidx.size)
    points, media_end, duration_s = _parse_sidx(sidx_data[sidx.header_size:], sidx.offset + sidx.size)
    header = tuple(b for b in (ftyp, moov) if b is not None)
    return FragmentIndex(container=Container.MP4,
                         header=tuple(ByteSpan(b.offset, b.offset + b.size) for b in header),
                         index_span=ByteSpan(sidx.offset, sidx.offset + sidx.size),
                         points=points, media_end=media_end, track=track, duration_s=duration_s)


def _parse_sidx(body: bytes, anchor: int) -> tuple[tuple[IndexPoint, ...], int, float]:
    """(points, media end, indexed duration) of a sidx whose box ends at `anchor`."""
    try:
        version = body[0]
        timescale = struct.unpack_from(">I", body, 8)[0]
        if version == 0:
            earliest, first_offset = struct.unpack_from(">II", body, 12)
            pos = 20
        else:
            earliest, first_offset = struct.unpack_from(">QQ", body, 12)
            pos = 28
        count = struct.unpack_from(">H", body, pos + 2)[0]
        pos += 4
        if timescale == 0 or len(body) < pos + 12 * count:
            raise IndexNotFound("truncated or invalid sidx")
        points = []
        offset, ticks = anchor + first_offset, earliest
        for i in range(count):
            word, duration, _sap = struct.unpack_from(">III", body, pos + 12 * i)
            if word >> 31:
                raise IndexNotFound("hierarchical sidx (references to other sidx boxes) is not supported")
            points.append(IndexPoint(time_s=ticks / timescale, offset=offset))
            offset += word & 0x7FFFFFFF
            ticks += duration
    except struct.error as exc:
        raise IndexNotFound(f"truncated sidx: {exc}") from None
    return tuple(points), offset, ticks / timescale


def _full_box_version(data: bytes, box: _Box) -> int:
    return data[box.body.start]


def _mp4_track(data: bytes, moov: _Box) -> TrackInfo:
    """The first sound track of the moov (else the first video track)."""
    traks = [b for b in _children(data, moov.body.start, moov.body.stop) if b.kind == b"trak"]
    tracks = [t for t in (_mp4_trak(data, trak) for trak in traks) if t is not None]
    if not tracks:
        raise IndexNotFound("no audio or video track in the moov")
    return next((t for t in tracks if t.kind == "audio"), tracks[0])


def _mp4_trak(data: bytes, trak: _Box) -> TrackInfo | None:
    mdhd, hdlr = _path(data, trak, b"mdia", b"mdhd"), _path(data, trak, b"mdia", b"hdlr")
    stsd = _path(data, trak, b"mdia", b"minf", b"stbl", b"stsd")
    if mdhd is None or hdlr is None or stsd is None:
        return None
    handler = data[hdlr.body.start + 8:hdlr.body.start + 12]
    kind = {b"soun": "audio", b"vide": "video"}.get(handler)
    if kind is None:
        return None
    v = _full_box_version(data, mdhd)
    timescale = struct.unpack_from(">I", data, mdhd.body.start + (20 if v == 1 else 12))[0]
    entry = _box_at(data, stsd.body.start + 8, stsd.body.stop)  # after version/flags and entry count
    fourcc = entry.kind.decode("latin-1") if entry is not None else "?"
    info: dict = {"kind": kind, "codec": _MP4_CODECS.get(fourcc, fourcc), "timescale": timescale,
                  "edit_media_time": _edit_media_time(data, trak)}
    if entry is not None and kind == "audio":
        body = entry.body.start  # SampleEntry (8) + AudioSampleEntry fields
        info["channels"] = struct.unpack_from(">H", data, body + 16)[0]
        info["sample_rate"] = struct.unpack_from(">I", data, body + 24)[0] >> 16
        children_start = body + 28
        if fourcc == "mp4a":
            esds = next((b for b in _children(data, children_start, entry.body.stop) if b.kind == b"esds"), None)
            if esds is not None:
                info["aac_object_type"] = _aac_object_type(data[esds.body.start + 4:esds.body.stop])
        elif fourcc == "Opus":
            dops = next((b for b in _children(data, children_start, entry.body.stop) if b.kind == b"dOps"), None)
            if dops is not None:
                info["opus_pre_skip"] = struct.unpack_from(">H", data, dops.body.start + 2)[0]
    elif entry is not None and kind == "video":
        info["width"], info["height"] = struct.unpack_from(">HH", data, entry.body.start + 24)
    return TrackInfo(**info)


def _edit_media_time(data: bytes, trak: _Box) -> int | None:
    """The media time the first non-empty edit starts at (ticks), if the track has an edit list."""
    elst = _path(data, trak, b"edts", b"elst")
    if elst is None:
        return None
    v = _full_box_version(data, elst)
    count = struct.unpack_from(">I", data, elst.body.start + 4)[0]
    pos = elst.body.start + 8
    for _ in range(count):
        if v == 1:
            _duration, media_time = struct.unpack_from(">Qq", data, pos)
            pos += 20
        else:
            _duration, media_time = struct.unpack_from(">Ii", data, pos)
            pos += 12
        if media_time >= 0:  # -1 marks an empty edit (a delay before the media starts)
            return media_time
    return None


def _aac_object_type(es_descriptor: bytes) -> int | None:
    """The audio object type from the AudioSpecificConfig inside an ES_Descriptor."""
    pos, end = 0, len(es_descriptor)

    def descriptor(p: int) -> tuple[int, int, int]:  # tag, body start, body length
        tag = es_descriptor[p]
        length, p = 0, p + 1
        for _ in range(4):
            byte = es_descriptor[p]
            p += 1
            length = (length << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        return tag, p, length

    try:
        tag, pos, _ = descriptor(pos)
        if tag != 0x03:
            return None
        flags = es_descriptor[pos + 2]
        pos += 3 + (2 if flags & 0x80 else 0)
        if flags & 0x40:
            pos += 1 + es_descriptor[pos]
        if flags & 0x20:
            pos += 2
        while pos < end:
            tag, body, length = descriptor(pos)
            if tag == 0x04:  # DecoderConfigDescriptor: 13 bytes, then its DecoderSpecificInfo
                pos = body + 13
                continue
            if tag == 0x05:  # DecoderSpecificInfo = AudioSpecificConfig
                aot = es_descriptor[body] >> 3
                if aot == 31:
                    aot = 32 + (((es_descriptor[body] & 0x07) << 3) | (es_descriptor[body + 1] >> 5))
                return aot
            pos = body + length
    except IndexError:
        return None
    return None


def mp4_fragment_decode_ticks(fragment: bytes) -> int | None:
    """The decode time (track timescale ticks) of a fragment's first sample, from its moof's tfdt."""
    for box in _children(fragment, 0, len(fragment)):
        if box.kind != b"moof":
            continue
        for traf in _children(fragment, box.body.start, min(box.body.stop, len(fragment))):
            if traf.kind != b"traf":
                continue
            tfdt = _child(fragment, traf, b"tfdt")
            if tfdt is not None:
                v = _full_box_version(fragment, tfdt)
                return struct.unpack_from(">Q" if v == 1 else ">I", fragment, tfdt.body.start + 4)[0]
        return None
    return None


_TFHD_BASE_DATA_OFFSET_PRESENT = 0x000001


def relocate_mp4_fragments(fragments: bytes, moved_by: int) -> bytes:
    """`fragments` (whole top-level boxes: moof, mdat, ...) as they read when placed `moved_by`
    bytes before their original offset: a ``tfhd`` that carries an absolute base data offset
    (ffmpeg's default outside DASH mode) gets it moved too; data addressed from its own ``moof``
    (default-base-is-moof, or no base offset at all) needs nothing."""
    out = bytearray(fragments)
    for box in _children(out, 0, len(out)):  # type: ignore[arg-type]
        if box.kind != b"moof":
            continue
        for traf in _children(out, box.body.start, min(box.body.stop, len(out))):  # type: ignore[arg-type]
            tfhd = _child(out, traf, b"tfhd") if traf.kind == b"traf" else None  # type: ignore[arg-type]
            if tfhd is None:
                continue
            flags = int.from_bytes(out[tfhd.body.start + 1:tfhd.body.start + 4], "big")
            if flags & _TFHD_BASE_DATA_OFFSET_PRESENT:
                at = tfhd.body.start + 8  # after version/flags and track_ID
                struct.pack_into(">Q", out, at, struct.unpack_from(">Q", out, at)[0] - moved_by)
    return bytes(out)


# ============================================================================================
# WebM / Matroska (EBML)

_EBML = 0x1A45DFA3
_DOCTYPE = 0x4282
_SEGMENT = 0x18538067
_SEEKHEAD, _SEEK, _SEEK_ID, _SEEK_POSITION = 0x114D9B74, 0x4DBB, 0x53AB, 0x53AC
_INFO, _TIMESTAMP_SCALE, _DURATION = 0x1549A966, 0x2AD7B1, 0x4489
_TRACKS, _TRACK_ENTRY, _TRACK_NUMBER, _TRACK_TYPE = 0x1654AE6B, 0xAE, 0xD7, 0x83
_CODEC_ID, _CODEC_PRIVATE, _CODEC_DELAY, _SEEK_PREROLL = 0x86, 0x63A2, 0x56AA, 0x56BB
_AUDIO, _SAMPLING_FREQUENCY, _CHANNELS = 0xE1, 0xB5, 0x9F
_VIDEO, _PIXEL_WIDTH, _PIXEL_HEIGHT = 0xE0, 0xB0, 0xBA
_CUES, _CUE_POINT, _CUE_TIME, _CUE_TRACK_POSITIONS, _CUE_TRACK, _CUE_CLUSTER_POSITION = (
    0x1C53BB6B, 0xBB, 0xB3, 0xB7, 0xF7, 0xF1)
_CLUSTER, _CLUSTER_TIMECODE, _SIMPLE_BLOCK, _BLOCK_GROUP, _BLOCK = 0x1F43B675, 0xE7, 0xA3, 0xA0, 0xA1
_WEBM_CODECS = {"A_OPUS": "opus", "A_VORBIS": "vorbis", "A_AAC": "aac", "V_VP9": "vp9", "V_VP8": "vp8",
                "V_AV1": "av1", "V_MPEG4/ISO/AVC": "h264"}
_MAX_ELEMENT_HEADER = 12  # 4-byte ID + 8-byte size


@dataclass(frozen=True)
class _Element:
    ident: int
    offset: int  # of the element's ID
    header_size: int
    size: int | None  # of the body; None: unknown size (streamed)

    @property
    def body_start(self) -> int:
        return self.offset + self.header_size

    @property
    def end(self) -> int | None:
        return None if self.size is None else self.body_start + self.size


def _vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int | None, int]:
    """(value, length) of an EBML variable-size integer; value None for an all-ones size."""
    first = data[pos]
    if first == 0:
        raise IndexNotFound(f"invalid EBML number at {pos}")
    length = 8 - first.bit_length() + 1
    value = first if keep_marker else first & (0xFF >> length)
    for i in range(1, length):
        value = (value << 8) | data[pos + i]
    if not keep_marker and value == (1 << (7 * length)) - 1:
        return None, length
    return value, length


def _element_at(data: bytes, pos: int, base: int = 0) -> _Element:
    """The element whose header is at `pos` in `data`; its offset is reported as base + pos."""
    try:
        ident, n = _vint(data, pos, keep_marker=True)
        size, m = _vint(data, pos + n, keep_marker=False)
    except IndexError:
        raise IndexNotFound(f"truncated EBML element header at {base + pos}") from None
    assert ident is not None
    return _Element(ident, base + pos, n + m, size)


def _elements(data: bytes, start: int, stop: int, base: int = 0) -> Iterator[_Element]:
    pos = start
    while pos < stop:
        element = _element_at(data, pos, base)
        yield element
        if element.size is None:
            return
        pos += element.header_size + element.size


def _uint(data: bytes, e: _Element, base: int = 0) -> int:
    start = e.body_start - base
    return int.from_bytes(data[start:start + (e.size or 0)], "big")


def _child_uints(data: bytes, parent: _Element, base: int, wanted: tuple[int, ...]) -> dict[int, int]:
    """The unsigned-integer children of `parent` whose IDs are in `wanted`, by ID (the last one wins)."""
    values = {}
    for e in _elements(data, parent.body_start - base, parent.end - base, base):  # type: ignore[operator]
        if e.ident in wanted:
            values[e.ident] = _uint(data, e, base)
    return values


def _float(data: bytes, e: _Element, base: int = 0) -> float:
    start = e.body_start - base
    raw = data[start:start + (e.size or 0)]
    return struct.unpack(">f" if len(raw) == 4 else ">d", raw)[0] if raw else 0.0


def _body(data: bytes, e: _Element, base: int = 0) -> bytes:
    start = e.body_start - base
    return data[start:start + (e.size or 0)]


def _read_element(read: ReadBytes, pos: int) -> tuple[_Element, bytes]:
    """The element at file offset `pos` and its whole body (read in one go)."""
    head = read(pos, pos + _MAX_ELEMENT_HEADER)
    element = _element_at(head, 0, base=pos)
    if element.size is None:
        raise IndexNotFound(f"element {element.ident:#x} at {pos} has an unknown size")
    return element, read(element.body_start, element.body_start + element.size)


def read_webm_index(read: ReadBytes, file_size: int | None = None) -> FragmentIndex:
    """A WebM file's header (everything before the first Cluster) and its Cues."""
    ebml, ebml_body = _read_element(read, 0)
    if ebml.ident != _EBML:
        raise IndexNotFound("not an EBML file")
    doctype = next((_body(ebml_body, e, ebml.body_start).decode("ascii", "replace")
                    for e in _elements(ebml_body, 0, len(ebml_body), ebml.body_start) if e.ident == _DOCTYPE), "")
    if doctype not in ("webm", "matroska"):
        raise IndexNotFound(f"EBML document type {doctype!r} is not WebM/Matroska")
    segment = _element_at(read(ebml.end, ebml.end + _MAX_ELEMENT_HEADER), 0, base=ebml.end)  # type: ignore[arg-type]
    if segment.ident != _SEGMENT:
        raise IndexNotFound("no Segment after the EBML header")
    segment_data = segment.body_start
    segment_end = segment.end if segment.end is not None else file_size

    timestamp_scale_ns, duration_ticks = 1_000_000, None
    track: TrackInfo | None = None
    cues: tuple[_Element, bytes] | None = None
    seek_positions: dict[int, int] = {}
    pos = segment_data
    first_cluster = None
    while segment_end is None or pos < segment_end:
        element = _element_at(read(pos, pos + _MAX_ELEMENT_HEADER), 0, base=pos)
        if element.ident == _CLUSTER:
            first_cluster = pos
            break
        if element.size is None:
            raise IndexNotFound(f"element {element.ident:#x} at {pos} has an unknown size")
        if element.ident in (_SEEKHEAD, _INFO, _TRACKS, _CUES):
            body = read(element.body_start, element.end)  # type: ignore[arg-type]
            if element.ident == _SEEKHEAD:
                seek_positions.update(_seek_entries(body, element.body_start))
            elif element.ident == _INFO:
                timestamp_scale_ns, duration_ticks = _info(body, element.body_start)
            elif element.ident == _TRACKS:
                track = _webm_track(body, element.body_start)
            else:
                cues = (element, body)
        pos = element.end  # type: ignore[assignment]
    if first_cluster is None:
        raise IndexNotFound("no Cluster found")
    if track is None:
        raise IndexNotFound("no audio or video track")
    if cues is None and _CUES in seek_positions:
        cues = _read_element(read, segment_data + seek_positions[_CUES])
        if cues[0].ident != _CUES:
            raise IndexNotFound("the SeekHead's Cues position holds no Cues")
    if cues is None:
        raise IndexNotFound("no Cues: the clusters are not indexed")

    ticks_per_second = 1_000_000_000 / timestamp_scale_ns
    track = TrackInfo(**{**track.__dict__, "timescale": round(ticks_per_second)})
    cue_element, cue_body = cues
    by_offset: dict[int, int] = {}
    for time_ticks, relative in _cue_points(cue_body, cue_element.body_start, track.track_number):
        offset = segment_data + relative
        by_offset[offset] = min(time_ticks, by_offset.get(offset, time_ticks))
    if not by_offset:
        raise IndexNotFound("the Cues list no cluster of the track")
    points = tuple(IndexPoint(time_s=t / ticks_per_second, offset=o) for o, t in sorted(by_offset.items()))
    if any(b.time_s < a.time_s for a, b in zip(points, points[1:])):
        raise IndexNotFound("the Cues' times do not grow with their positions")
    if points[0].offset != first_cluster:
        # The first cluster is not indexed: index it at time 0 so the start of the file is covered.
        points = (IndexPoint(0.0, first_cluster), *points) if points[0].offset > first_cluster else points
    media_end = segment_end if segment_end is not None else file_size
    if media_end is None:
        raise IndexNotFound("the Segment's size is unknown and so is the file's")
    cue_span = ByteSpan(cue_element.offset, cue_element.end)  # type: ignore[arg-type]
    if cue_span.start > points[-1].offset:  # Cues after the clusters: the last cluster ends before them
        media_end = min(media_end, cue_span.start)
    return FragmentIndex(container=Container.WEBM, header=(ByteSpan(0, first_cluster),), index_span=cue_span,
                         points=points, media_end=media_end, track=track,
                         duration_s=None if duration_ticks is None else duration_ticks / ticks_per_second)


def _seek_entries(body: bytes, base: int) -> Iterator[tuple[int, int]]:
    for seek in _elements(body, 0, len(body), base):
        if seek.ident != _SEEK:
            continue
        values = _child_uints(body, seek, base, (_SEEK_ID, _SEEK_POSITION))
        ident, position = values.get(_SEEK_ID), values.get(_SEEK_POSITION)
        if ident is not None and position is not None:
            yield ident, position


def _info(body: bytes, base: int) -> tuple[int, float | None]:
    scale, duration = 1_000_000, None
    for e in _elements(body, 0, len(body), base):
        if e.ident == _TIMESTAMP_SCALE:
            scale = _uint(body, e, base) or 1_000_000
        elif e.ident == _DURATION:
            duration = _float(body, e, base)
    return scale, duration


def _webm_track(body: bytes, base: int) -> TrackInfo | None:
    """The first audio track (else the first video track)."""
    tracks = []
    for entry in _elements(body, 0, len(body), base):
        if entry.ident != _TRACK_ENTRY:
            continue
        fields: dict = {}
        for e in _elements(body, entry.body_start - base, entry.end - base, base):  # type: ignore[operator]
            if e.ident == _TRACK_NUMBER:
                fields["track_number"] = _uint(body, e, base)
            elif e.ident == _TRACK_TYPE:
                fields["kind"] = {1: "video", 2: "audio"}.get(_uint(body, e, base))
            elif e.ident == _CODEC_ID:
                codec_id = _body(body, e, base).decode("ascii", "replace").rstrip("\0")
                fields["codec"] = _WEBM_CODECS.get(codec_id, codec_id)
            elif e.ident == _CODEC_PRIVATE:
                private = _body(body, e, base)
                if private[:8] == b"OpusHead" and len(private) >= 12:
                    fields["opus_pre_skip"] = struct.unpack_from("<H", private, 10)[0]
            elif e.ident == _CODEC_DELAY:
                fields["codec_delay_s"] = _uint(body, e, base) / 1e9
            elif e.ident == _SEEK_PREROLL:
                fields["seek_preroll_s"] = _uint(body, e, base) / 1e9
            elif e.ident in (_AUDIO, _VIDEO):
                for a in _elements(body, e.body_start - base, e.end - base, base):  # type: ignore[operator]
                    if a.ident == _SAMPLING_FREQUENCY:
                        fields["sample_rate"] = round(_float(body, a, base))
                    elif a.ident == _CHANNELS:
                        fields["channels"] = _uint(body, a, base)
                    elif a.ident == _PIXEL_WIDTH:
                        fields["width"] = _uint(body, a, base)
                    elif a.ident == _PIXEL_HEIGHT:
                        fields["height"] = _uint(body, a, base)
        if fields.get("kind") in ("audio", "video") and "codec" in fields:
            tracks.append(TrackInfo(timescale=1000, **fields))
    return next((t for t in tracks if t.kind == "audio"), tracks[0] if tracks else None)


def _cue_points(body: bytes, base: int, track_number: int | None) -> Iterator[tuple[int, int]]:
    """(cue time in ticks, cluster position relative to the Segment's data) per cue of the track."""
    for point in _elements(body, 0, len(body), base):
        if point.ident != _CUE_POINT:
            continue
        time_ticks, positions = None, []
        for e in _elements(body, point.body_start - base, point.end - base, base):  # type: ignore[operator]
            if e.ident == _CUE_TIME:
                time_ticks = _uint(body, e, base)
            elif e.ident == _CUE_TRACK_POSITIONS:
                values = _child_uints(body, e, base, (_CUE_TRACK, _CUE_CLUSTER_POSITION))
                cue_track, position = values.get(_CUE_TRACK), values.get(_CUE_CLUSTER_POSITION)
                if position is not None and (track_number is None or cue_track in (None, track_number)):
                    positions.append(position)
        if time_ticks is not None:
            for position in positions:
                yield time_ticks, position


@dataclass(frozen=True)
class FirstBlock:
    """A cluster's first block of the track: its stored time (container ticks) and the first
    byte of its payload (an Opus packet's TOC byte; None when the block is laced)."""

    time_ticks: int
    first_payload_byte: int | None


def webm_cluster_first_block(cluster: bytes, track: TrackInfo) -> FirstBlock | None:
    """The first block of `track` in the Cluster at the start of `cluster`."""
    element = _element_at(cluster, 0)
    if element.ident != _CLUSTER:
        return None
    stop = min(element.end or len(cluster), len(cluster))
    cluster_time = 0
    for e in _elements(cluster, element.body_start, stop):
        if e.ident == _CLUSTER_TIMECODE:
            cluster_time = _uint(cluster, e)
        elif e.ident in (_SIMPLE_BLOCK, _BLOCK_GROUP):
            block = e if e.ident == _SIMPLE_BLOCK else next(
                (b for b in _elements(cluster, e.body_start, e.end or stop) if b.ident == _BLOCK), None)
            if block is None:
                continue
            track_number, n = _vint(cluster, block.body_start, keep_marker=False)
            if track.track_number is not None and track_number != track.track_number:
                continue
            relative = struct.unpack_from(">h", cluster, block.body_start + n)[0]
            flags = cluster[block.body_start + n + 2]
            laced = bool(flags & 0x06)
            payload = block.body_start + n + 3
            first = None if laced or payload >= len(cluster) else cluster[payload]
            return FirstBlock(time_ticks=cluster_time + relative, first_payload_byte=first)
        if e.size is None:
            break
    return None


def opus_packet_samples(toc: int) -> int:
    """Samples (at 48 kHz) in an Opus packet with this TOC byte (RFC 6716 3.1), for codes 0-2."""
    config, code = toc >> 3, toc & 0x03
    if config < 12:  # SILK: 10, 20, 40, 60 ms
        frame = (480, 960, 1920, 2880)[config % 4]
    elif config < 16:  # hybrid: 10, 20 ms
        frame = (480, 960)[config % 2]
    else:  # CELT: 2.5, 5, 10, 20 ms
        frame = (120, 240, 480, 960)[config % 4]
    if code == 3:
        raise ValueError("code 3 packets carry their frame count in the next byte")
    return frame * (1 if code == 0 else 2)


__all__ = [
    "MAX_REQUEST_BYTES", "INDEX_PROBE_BYTES", "index_probe_bytes", "ReadBytes", "IndexNotFound", "ByteSpan", "Container",
    "IndexPoint", "TrackInfo", "FragmentIndex", "FirstBlock", "byte_ranges", "read_index", "read_mp4_index",
    "read_webm_index", "mp4_fragment_decode_ticks", "relocate_mp4_fragments", "webm_cluster_first_block", "opus_packet_samples",
]
