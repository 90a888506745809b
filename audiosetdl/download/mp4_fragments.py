"""Inside one fMP4 fragment: every sample's decode time, size and file offset from the ``moof``,
and a fragment rebuilt around a run of those samples.

Owns: the ``trex`` sample defaults of the init segment (`SampleDefaults`), parsing a ``moof``
(``mfhd``, one ``traf`` with ``tfhd``, ``tfdt`` and one ``trun``; sizes and durations from the
``trun``, else the ``tfhd`` defaults, else the ``trex`` ones) into `FragmentSamples`, the run of
samples that overlaps a stretch of decode time, how many bytes a moof's head may take
(`moof_head_bytes`), and `FragmentSamples.rebuild`: a ``moof`` whose ``trun`` lists only the run,
whose ``tfdt`` is advanced to the run's first sample, whose data is addressed from the ``moof``
itself (default-base-is-moof), followed by an ``mdat`` with only the run's bytes: ffmpeg decodes
it like those samples of the original. Also a fragment's first decode time
(`mp4_fragment_decode_ticks`, from its ``tfdt``) and fragments moved to another offset
(`relocate_mp4_fragments`, for a ``tfhd`` that addresses its data absolutely). Pure functions
over bytes, on `mp4`'s box reader.

The rebuilt ``traf`` holds only ``tfhd``, ``tfdt`` and ``trun`` (sample dependency and grouping
notes are left out). Layouts outside that (several tracks or runs in one fragment, no ``tfdt``,
encryption boxes, a ``trun`` without a data offset) raise `FragmentUnsupported`; the caller then
takes whole fragments.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from audiosetdl.download.index import FragmentUnsupported
from audiosetdl.download.mp4 import _box_at, _Box, _child, _children, _full_box_version, _path

# tfhd flags (ISO/IEC 14496-12 8.8.7)
_TFHD_BASE_DATA_OFFSET = 0x000001
_TFHD_SAMPLE_DESCRIPTION_INDEX = 0x000002
_TFHD_DEFAULT_DURATION = 0x000008
_TFHD_DEFAULT_SIZE = 0x000010
_TFHD_DEFAULT_FLAGS = 0x000020
_TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
# trun flags (8.8.8)
_TRUN_DATA_OFFSET = 0x000001
_TRUN_FIRST_SAMPLE_FLAGS = 0x000004
_TRUN_DURATION = 0x000100
_TRUN_SIZE = 0x000200
_TRUN_FLAGS = 0x000400
_TRUN_CTO = 0x000800
_TRUN_FIELDS = (_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS, _TRUN_CTO)  # per-sample fields, in this order
# A rebuilt traf keeps tfhd, tfdt and trun; other boxes (sdtp, sbgp, sgpd, ...: sample dependency and
# grouping notes an audio decode does not use) are left out, but encrypted samples cannot go without theirs.
_UNSUPPORTED_TRAF_BOXES = {b"senc", b"saiz", b"saio"}

MOOF_FIXED_BYTES = 512  # mfhd, traf, tfhd, tfdt, trun headers: ~100 bytes in practice
TRUN_ENTRY_MAX_BYTES = 16  # duration, size, flags, composition offset


@dataclass(frozen=True)
class SampleDefaults:
    """A track's ``trex`` defaults (what a fragment's samples have unless it says otherwise)."""

    duration: int | None = None
    size: int | None = None
    flags: int = 0

    @classmethod
    def of_init(cls, init: bytes) -> SampleDefaults:
        """From the init segment (``ftyp`` + ``moov``): the first ``trex`` of the moov's ``mvex``."""
        moov = next((b for b in _children(init, 0, len(init)) if b.kind == b"moov"), None)
        trex = _path(init, moov, b"mvex", b"trex") if moov is not None else None
        if trex is None:
            return cls()
        _track, _description, duration, size, flags = struct.unpack_from(">5I", init, trex.body.start + 4)
        return cls(duration, size, flags)


def moof_head_bytes(duration_s: float, samples_per_second: float) -> int:
    """Bytes that hold a moof listing `duration_s` of samples (at most 16 bytes per sample)."""
    return MOOF_FIXED_BYTES + TRUN_ENTRY_MAX_BYTES * int(duration_s * samples_per_second + 1)


def moof_size(head: bytes) -> int:
    """The size of the ``moof`` box at the start of `head` (a fragment's first bytes)."""
    box = _box_at(head, 0, len(head))
    if box is None or box.kind != b"moof":
        raise FragmentUnsupported("the fragment does not start with a moof")
    return box.size


@dataclass(frozen=True)
class FragmentSamples:
    """One fragment's samples, as its ``moof`` lists them (times in track ticks, offsets in the file)."""

    mfhd: bytes  # the whole mfhd box, kept as it is
    track_id: int
    tfhd_flags: int
    tfhd_fields: tuple[int, ...]  # the optional tfhd fields after the base data offset, as written
    decode_ticks: int  # of the first sample (tfdt)
    trun_version: int
    trun_flags: int
    first_sample_flags: int | None
    entries: tuple[tuple[int, ...], ...]  # per sample: the trun fields its flags say are present
    durations: tuple[int, ...]
    sizes: tuple[int, ...]
    sample_flags: tuple[int, ...]
    data_start: int  # file offset of the first sample's bytes

    @classmethod
    def parse(cls, moof: bytes, moof_offset: int, defaults: SampleDefaults) -> FragmentSamples:
        """`moof` is the whole moof box, found at file offset `moof_offset`."""
        box = _box_at(moof, 0, len(moof))
        if box is None or box.kind != b"moof" or box.size > len(moof):
            raise FragmentUnsupported("not a whole moof box")
        mfhd = _child(moof, box, b"mfhd")
        trafs = [b for b in _children(moof, box.body.start, box.size) if b.kind == b"traf"]
        if mfhd is None or len(trafs) != 1:
            raise FragmentUnsupported(f"a moof with {len(trafs)} track fragments")
        traf = trafs[0]
        kinds = [b.kind for b in _children(moof, traf.body.start, traf.body.stop)]
        if kinds.count(b"trun") != 1 or b"tfhd" not in kinds or b"tfdt" not in kinds:
            raise FragmentUnsupported(f"a traf holding {b' '.join(kinds)!r}: one tfhd, tfdt and trun expected")
        if _UNSUPPORTED_TRAF_BOXES.intersection(kinds):
            raise FragmentUnsupported(f"a traf with per-sample side data: {b' '.join(kinds)!r}")
        track_id, tfhd_flags, base, fields, tf_defaults = _tfhd(moof, _child(moof, traf, b"tfhd"), defaults)
        tfdt = _child(moof, traf, b"tfdt")
        assert tfdt is not None
        decode_ticks = struct.unpack_from(">Q" if moof[tfdt.body.start] == 1 else ">I", moof, tfdt.body.start + 4)[0]
        trun = _child(moof, traf, b"trun")
        assert trun is not None
        version, trun_flags, data_offset, first_flags, entries = _trun(moof, trun)
        if data_offset is None:
            raise FragmentUnsupported("a trun without a data offset")
        columns = _columns(trun_flags, entries, tf_defaults, first_flags)
        return cls(mfhd=moof[mfhd.offset:mfhd.offset + mfhd.size], track_id=track_id, tfhd_flags=tfhd_flags,
                   tfhd_fields=fields, decode_ticks=decode_ticks, trun_version=version, trun_flags=trun_flags,
                   first_sample_flags=first_flags, entries=entries, durations=columns[0], sizes=columns[1],
                   sample_flags=columns[2], data_start=(moof_offset if base is None else base) + data_offset)

    def __len__(self) -> int:
        return len(self.sizes)

    def sample_ticks(self, i: int) -> int:
        return self.decode_ticks + sum(self.durations[:i])

    def run(self, start_ticks: float, end_ticks: float) -> range:
        """The samples that overlap decode times [start_ticks, end_ticks)."""
        first, t = len(self), self.decode_ticks
        for i, duration in enumerate(self.durations):
            if t + duration > start_ticks:
                first = i
                break
            t += duration
        stop = first
        while stop < len(self) and t < end_ticks:
            t += self.durations[stop]
            stop += 1
        return range(first, stop)

    def offset(self, i: int) -> int:
        """File offset of sample `i`'s bytes (`len(self)`: where the last one ends)."""
        return self.data_start + sum(self.sizes[:i])

    def rebuild(self, run: range, data: bytes) -> bytes:
        """A moof + mdat holding only the samples `run` (`data`: their bytes, as in the file)."""
        if len(data) != self.offset(run.stop) - self.offset(run.start) or not len(run):
            raise ValueError("the bytes do not match the run")
        tfhd_flags = (self.tfhd_flags & ~_TFHD_BASE_DATA_OFFSET) | _TFHD_DEFAULT_BASE_IS_MOOF
        tfhd = _full_box(b"tfhd", 0, tfhd_flags, struct.pack(f">{1 + len(self.tfhd_fields)}I", self.track_id,
                                                                  *self.tfhd_fields))
        tfdt = _full_box(b"tfdt", 1, 0, struct.pack(">Q", self.sample_ticks(run.start)))
        trun_flags = self.trun_flags | _TRUN_DATA_OFFSET
        head_fields = b""
        if trun_flags & _TRUN_FIRST_SAMPLE_FLAGS:
            head_fields = struct.pack(">I", self.sample_flags[run.start])  # the new first sample's own flags
        signed = "i" if self.trun_version == 1 else "I"
        entry_format = "".join(signed if f == _TRUN_CTO else "I" for f in _TRUN_FIELDS if trun_flags & f)
        body = b"".join(struct.pack(f">{entry_format}", *self.entries[i]) for i in run)
        trun_size = 12 + 8 + len(head_fields) + len(body)  # header, count, data offset, first flags, entries
        moof_size = 8 + len(self.mfhd) + 8 + len(tfhd) + len(tfdt) + trun_size
        trun = _full_box(b"trun", self.trun_version, trun_flags,
                         struct.pack(">Ii", len(run), moof_size + 8) + head_fields + body)
        traf = _box(b"traf", tfhd + tfdt + trun)
        moof = _box(b"moof", self.mfhd + traf)
        assert len(moof) == moof_size
        return moof + _box(b"mdat", data)


def _tfhd(moof: bytes, tfhd: _Box | None, defaults: SampleDefaults) -> tuple:
    """(track ID, flags, base data offset or None, the fields after it, (duration, size, flags) defaults)."""
    assert tfhd is not None
    flags = int.from_bytes(moof[tfhd.body.start + 1:tfhd.body.start + 4], "big")
    pos = tfhd.body.start + 4
    track_id = struct.unpack_from(">I", moof, pos)[0]
    pos += 4
    base = None
    if flags & _TFHD_BASE_DATA_OFFSET:
        base = struct.unpack_from(">Q", moof, pos)[0]
        pos += 8
    fields, values = [], {}
    for flag in (_TFHD_SAMPLE_DESCRIPTION_INDEX, _TFHD_DEFAULT_DURATION, _TFHD_DEFAULT_SIZE, _TFHD_DEFAULT_FLAGS):
        if flags & flag:
            values[flag] = struct.unpack_from(">I", moof, pos)[0]
            fields.append(values[flag])
            pos += 4
    sample_defaults = (values.get(_TFHD_DEFAULT_DURATION, defaults.duration),
                       values.get(_TFHD_DEFAULT_SIZE, defaults.size),
                       values.get(_TFHD_DEFAULT_FLAGS, defaults.flags))
    return track_id, flags, base, tuple(fields), sample_defaults


def _trun(moof: bytes, trun: _Box) -> tuple:
    """(version, flags, data offset or None, first sample flags or None, per-sample entries)."""
    version = moof[trun.body.start]
    flags = int.from_bytes(moof[trun.body.start + 1:trun.body.start + 4], "big")
    count = struct.unpack_from(">I", moof, trun.body.start + 4)[0]
    pos = trun.body.start + 8
    data_offset = first_flags = None
    if flags & _TRUN_DATA_OFFSET:
        data_offset = struct.unpack_from(">i", moof, pos)[0]
        pos += 4
    if flags & _TRUN_FIRST_SAMPLE_FLAGS:
        first_flags = struct.unpack_from(">I", moof, pos)[0]
        pos += 4
    signed = "i" if version == 1 else "I"
    entry_format = ">" + "".join(signed if f == _TRUN_CTO else "I" for f in _TRUN_FIELDS if flags & f)
    step = struct.calcsize(entry_format)
    if pos + step * count > trun.body.stop:
        raise FragmentUnsupported(f"a trun of {count} samples that does not fit its box")
    entries = tuple(struct.unpack_from(entry_format, moof, pos + step * i) for i in range(count))
    return version, flags, data_offset, first_flags, entries


def _columns(trun_flags: int, entries: tuple, defaults: tuple, first_flags: int | None) -> tuple:
    """(durations, sizes, flags) per sample, from the entries or else the defaults."""
    present = [f for f in _TRUN_FIELDS if trun_flags & f]
    columns = []
    for field, default in zip((_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS), defaults):
        if field in present:
            columns.append(tuple(e[present.index(field)] for e in entries))
        elif default is None:
            raise FragmentUnsupported("sample durations or sizes given nowhere (trun, tfhd, trex)")
        else:
            columns.append((default,) * len(entries))
    if first_flags is not None and entries:
        columns[2] = (first_flags, *columns[2][1:])
    return tuple(columns)


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full_box(kind: bytes, version: int, flags: int, body: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags) + body)


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
            if flags & _TFHD_BASE_DATA_OFFSET:
                at = tfhd.body.start + 8  # after version/flags and track_ID
                struct.pack_into(">Q", out, at, struct.unpack_from(">Q", out, at)[0] - moved_by)
    return bytes(out)

