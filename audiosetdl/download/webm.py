"""WebM / Matroska (EBML): the header and the ``Cues`` cluster index.

Owns: EBML element parsing, the Segment's ``SeekHead``, ``Info`` (timestamp scale, duration),
``Tracks`` (codec, Opus pre-skip, CodecDelay, SeekPreRoll) and ``Cues`` (found through the
SeekHead when they are not in front of the clusters) as a `FragmentIndex`. What is inside a
Cluster is `webm_clusters`'s. Pure functions over bytes (reads go through `ReadBytes`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterator

from audiosetdl.download.index import (
    ByteSpan,
    Container,
    FragmentIndex,
    IndexNotFound,
    IndexPoint,
    ReadBytes,
    TrackInfo,
)

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

    head = _segment_head(read, segment_data, segment_end)
    first_cluster, track, cues = head.first_cluster, head.track, head.cues
    timestamp_scale_ns, duration_ticks = head.timestamp_scale_ns, head.duration_ticks
    if first_cluster is None:
        raise IndexNotFound("no Cluster found")
    if track is None:
        raise IndexNotFound("no audio or video track")
    if cues is None and _CUES in head.seek_positions:
        cues = _read_element(read, segment_data + head.seek_positions[_CUES])
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


@dataclass
class _SegmentHead:
    """What the Segment holds before its first Cluster."""

    first_cluster: int | None = None
    track: TrackInfo | None = None
    cues: tuple[_Element, bytes] | None = None
    seek_positions: dict[int, int] = field(default_factory=dict)
    timestamp_scale_ns: int = 1_000_000
    duration_ticks: float | None = None


def _segment_head(read: ReadBytes, pos: int, segment_end: int | None) -> _SegmentHead:
    """The SeekHead, Info, Tracks and Cues met from `pos` up to the first Cluster."""
    head = _SegmentHead()
    while segment_end is None or pos < segment_end:
        element = _element_at(read(pos, pos + _MAX_ELEMENT_HEADER), 0, base=pos)
        if element.ident == _CLUSTER:
            head.first_cluster = pos
            break
        if element.size is None:
            raise IndexNotFound(f"element {element.ident:#x} at {pos} has an unknown size")
        if element.ident in (_SEEKHEAD, _INFO, _TRACKS, _CUES):
            body = read(element.body_start, element.end)  # type: ignore[arg-type]
            if element.ident == _SEEKHEAD:
                head.seek_positions.update(_seek_entries(body, element.body_start))
            elif element.ident == _INFO:
                head.timestamp_scale_ns, head.duration_ticks = _info(body, element.body_start)
            elif element.ident == _TRACKS:
                head.track = _webm_track(body, element.body_start)
            else:
                head.cues = (element, body)
        pos = element.end  # type: ignore[assignment]
    return head


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
