"""Inside one WebM Cluster: its first block, where it may be cut short, and the cut cluster.

Owns: a cluster's first block of the track (its time and first payload byte) and Opus packet
durations from a TOC byte (`webm_cluster_first_block`, `opus_packet_samples`); walking a Cluster's elements from its head (Timecode, SimpleBlocks, BlockGroups, in time
order) to find the first block of the track at or after a time (`cluster_cut`), and the cluster
ended there (`truncated_cluster`: its size field rewritten in place, same length), which ffmpeg
decodes like the blocks before that point. Pure functions over bytes (on `webm`'s EBML reader),
which may end anywhere: a walk that runs out of bytes says so (`NEED_MORE`) rather than guess.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from audiosetdl.download.index import FragmentUnsupported, TrackInfo
from audiosetdl.download.webm import (
    _BLOCK,
    _BLOCK_GROUP,
    _CLUSTER,
    _CLUSTER_TIMECODE,
    _MAX_ELEMENT_HEADER,
    _SIMPLE_BLOCK,
    _element_at,
    _elements,
    _uint,
    _vint,
)

NEED_MORE = -1  # `cluster_cut`: the bytes end before the answer


def cluster_cut(data: bytes, track: TrackInfo, end_ticks: float) -> int:
    """Where the Cluster at the start of `data` can end so that it keeps every block of `track`
    that starts before `end_ticks` (container ticks): the offset (in `data`) of the first block
    at or after it, the cluster's end when there is none, or `NEED_MORE`."""
    if len(data) < _MAX_ELEMENT_HEADER:
        return NEED_MORE
    cluster = _element_at(data, 0)
    if cluster.ident != _CLUSTER or cluster.size is None:
        raise FragmentUnsupported("not a Cluster of known size")
    end = cluster.end
    assert end is not None
    cluster_time, pos = 0, cluster.body_start
    while pos < end:
        if len(data) < min(pos + _MAX_ELEMENT_HEADER, end):
            return NEED_MORE
        element = _element_at(data, pos)
        if element.end is None or element.end > end:
            raise FragmentUnsupported(f"element {element.ident:#x} at {pos} runs past its cluster")
        if element.ident == _CLUSTER_TIMECODE:
            if element.end > len(data):
                return NEED_MORE
            cluster_time = _uint(data, element)
        elif element.ident in (_SIMPLE_BLOCK, _BLOCK_GROUP):
            timed = _block_time(data, element, track)
            if timed is NEED_MORE:
                return NEED_MORE
            if timed is not None and cluster_time + timed >= end_ticks:
                return pos
        pos = element.end
    return end


def _block_time(data: bytes, element, track: TrackInfo) -> int | None:
    """A block's time relative to its cluster; None for another track's block; NEED_MORE."""
    block = element
    if element.ident == _BLOCK_GROUP:
        if element.end > len(data):
            return NEED_MORE
        block = next((b for b in _elements(data, element.body_start, element.end) if b.ident == _BLOCK), None)
        if block is None:
            return None
    if block.body_start + 11 > len(data):  # track number (up to 8 bytes), then the 16-bit time
        return NEED_MORE if block.end > len(data) else _relative_time(data, block.body_start, track)
    return _relative_time(data, block.body_start, track)


def _relative_time(data: bytes, at: int, track: TrackInfo) -> int | None:
    track_number, n = _vint(data, at, keep_marker=False)
    if track.track_number is not None and track_number != track.track_number:
        return None
    return struct.unpack_from(">h", data, at + n)[0]


def truncated_cluster(data: bytes, stop: int) -> bytes:
    """The Cluster at the start of `data`, ended at offset `stop` (an element boundary), its size
    field rewritten in the length it had."""
    cluster = _element_at(data, 0)
    id_length = _vint(data, 0, keep_marker=True)[1]
    size_length = cluster.header_size - id_length
    body = stop - cluster.body_start
    if not 0 <= body < (1 << (7 * size_length)) - 1:
        raise FragmentUnsupported(f"a {body}-byte cluster body does not fit a {size_length}-byte size")
    size_field = ((1 << (7 * size_length)) | body).to_bytes(size_length, "big")
    return data[:id_length] + size_field + data[cluster.body_start:stop]


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
