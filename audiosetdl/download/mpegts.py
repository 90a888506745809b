"""MPEG-TS, as far as an HLS audio segment needs: the audio stream's first PTS and its codec.

Owns: `first_audio_pes` (from the head of a TS segment: PAT -> PMT -> the first audio
elementary stream -> its first PES header's PTS, and the ADTS header of AAC behind it) and
`pts_delta` (PTS differences across the 33-bit wrap). Pure functions over bytes.

PTS counts a 90 kHz clock; an AAC frame (1024 samples at 44.1 or 48 kHz) lasts a non-whole number
of ticks, so muxers round each frame's PTS to the tick: the frame a PTS stands for is found by
snapping to the frame grid (`hls_cut`).
"""

from __future__ import annotations

from dataclasses import dataclass

TS_PACKET_BYTES = 188
TS_SYNC = 0x47
PTS_HZ = 90_000
PTS_WRAP = 1 << 33
TS_HEAD_BYTES = 16 * TS_PACKET_BYTES  # PAT, PMT and the first audio PES header lie in the first few packets
_STREAM_TYPES = {0x0F: "aac", 0x11: "aac_latm", 0x03: "mp3", 0x04: "mp3", 0x81: "ac3", 0x87: "eac3"}
_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


@dataclass(frozen=True)
class TsAudio:
    pid: int
    codec: str  # "aac", "mp3", ... from the PMT's stream type
    pts: int  # of the first PES of the stream in these bytes (90 kHz ticks)
    aac_object_type: int | None = None  # from the ADTS header (2: AAC-LC)
    sample_rate: int | None = None  # from the ADTS header


class TsUnreadable(ValueError):
    """The bytes hold no audio PES header this module can read."""


def _packets(data: bytes):
    for pos in range(0, len(data) - TS_PACKET_BYTES + 1, TS_PACKET_BYTES):
        if data[pos] != TS_SYNC:
            raise TsUnreadable(f"no TS sync byte at {pos}")
        pid = ((data[pos + 1] & 0x1F) << 8) | data[pos + 2]
        unit_start = bool(data[pos + 1] & 0x40)
        control = (data[pos + 3] >> 4) & 0x3
        payload = pos + 4
        if control & 0x2:
            payload += 1 + data[pos + 4]
        if control & 0x1 and payload < pos + TS_PACKET_BYTES:
            yield pid, unit_start, data[payload:pos + TS_PACKET_BYTES]


def _section(payload: bytes) -> bytes:
    """A PSI section from a packet that starts one (after its pointer field)."""
    return payload[1 + payload[0]:]


def first_audio_pes(data: bytes) -> TsAudio:
    """The first audio elementary stream's PTS (and ADTS facts) in the head of a TS segment."""
    pmt_pid = audio_pid = codec = None
    for pid, unit_start, payload in _packets(data):
        if pid == 0 and unit_start and pmt_pid is None:
            section = _section(payload)
            for i in range(8, 3 + ((section[1] & 0x0F) << 8 | section[2]) - 4, 4):
                program = section[i] << 8 | section[i + 1]
                if program != 0:
                    pmt_pid = (section[i + 2] & 0x1F) << 8 | section[i + 3]
                    break
        elif pid == pmt_pid and unit_start and audio_pid is None:
            audio_pid, codec = _pmt_audio(_section(payload))
        elif pid == audio_pid and unit_start:
            return _pes(payload, audio_pid, codec or "")
    raise TsUnreadable("no audio PES header in the segment's head")


def _pmt_audio(section: bytes) -> tuple[int, str]:
    end = 3 + ((section[1] & 0x0F) << 8 | section[2]) - 4  # before the CRC
    pos = 12 + ((section[10] & 0x0F) << 8 | section[11])
    while pos + 5 <= end:
        stream_type = section[pos]
        pid = (section[pos + 1] & 0x1F) << 8 | section[pos + 2]
        if stream_type in _STREAM_TYPES:
            return pid, _STREAM_TYPES[stream_type]
        pos += 5 + ((section[pos + 3] & 0x0F) << 8 | section[pos + 4])
    raise TsUnreadable("the PMT lists no audio stream")


def _pes(payload: bytes, pid: int, codec: str) -> TsAudio:
    if payload[:3] != b"\x00\x00\x01" or not payload[7] & 0x80:
        raise TsUnreadable("the audio PES carries no PTS")
    p = payload[9:14]
    pts = ((p[0] >> 1) & 0x07) << 30 | p[1] << 22 | (p[2] >> 1) << 15 | p[3] << 7 | p[4] >> 1
    es = payload[9 + payload[8]:]
    if codec == "aac" and len(es) >= 4 and es[0] == 0xFF and es[1] & 0xF0 == 0xF0:
        rate_index = (es[2] >> 2) & 0x0F
        return TsAudio(pid, codec, pts, aac_object_type=(es[2] >> 6) + 1,
                       sample_rate=_ADTS_RATES[rate_index] if rate_index < len(_ADTS_RATES) else None)
    return TsAudio(pid, codec, pts)


def pts_delta(later: int, earlier: int) -> int:
    """Ticks from `earlier` to `later` (the PTS counter wraps at 2**33, every ~26.5 h)."""
    return (later - earlier) % PTS_WRAP
