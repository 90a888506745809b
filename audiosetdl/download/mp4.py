"""Fragmented MP4 (ISO BMFF): the init segment, the ``sidx`` fragment index, and per-fragment facts.

Owns: reading top-level boxes from a file's head, the ``moov``'s track facts that decide where
decoded audio lies in time (timescale, edit list, AAC object type, Opus pre-skip), the global
``sidx`` as a `FragmentIndex`, and the box reader that `mp4_fragments` (inside one fragment)
builds on. Pure functions over bytes (reads go through `ReadBytes`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
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


def init_segment_track(init: bytes) -> TrackInfo:
    """The track facts of a standalone init segment (ftyp + moov, e.g. an HLS EXT-X-MAP)."""
    moov = next((b for b in _children(init, 0, len(init)) if b.kind == b"moov"), None)
    if moov is None or moov.offset + moov.size > len(init):
        raise IndexNotFound("the init segment holds no whole moov box")
    return _mp4_track(init, moov)


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
