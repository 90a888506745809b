"""Container index parsing (fMP4 sidx, WebM Cues) and the byte ranges a segment needs, checked
against the independent layout oracle in tests.media and against files ffmpeg wrote."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiosetdl.download.index import (
    INDEX_PROBE_BYTES,
    ByteSpan,
    Container,
    FragmentIndex,
    IndexNotFound,
    byte_ranges,
    read_index,
)
from audiosetdl.download.mp4_fragments import mp4_fragment_decode_ticks, relocate_mp4_fragments
from audiosetdl.download.webm_clusters import opus_packet_samples, webm_cluster_first_block
from tests.media import MediaFile, MediaLibrary, Shape, mp4_boxes, mp4_sidx_references, webm_elements
from tests.media_fixtures import SIGNAL_60S


def reader(data: bytes, log: list[tuple[int, int]] | None = None):
    def read(start: int, stop: int) -> bytes:
        if log is not None:
            log.append((start, stop))
        return data[start:stop]
    return read


def index_of(media: MediaFile) -> FragmentIndex:
    data = media.path.read_bytes()
    return read_index(reader(data), len(data))


# --------------------------------------------------------------------------------------------
# fMP4


def test_mp4_index_matches_the_sidx_oracle(media_60s):
    media = media_60s[Shape.DASH_M4A]
    index = index_of(media)
    first_offset, refs = mp4_sidx_references(media.path)
    assert index.container is Container.MP4
    assert [p.offset for p in index.points] == [first_offset + sum(r.size_bytes for r in refs[:i])
                                               for i in range(len(refs))]
    assert [p.time_s for p in index.points] == pytest.approx([sum(r.duration_s for r in refs[:i])
                                                              for i in range(len(refs))])
    assert index.media_end == media.size_bytes
    assert index.duration_s == pytest.approx(sum(r.duration_s for r in refs))
    boxes = {b.kind: b for b in mp4_boxes(media.path)}
    # The init segment is ftyp + moov; the sidx stays out (ffmpeg would map its offsets onto the cut).
    assert index.header == (ByteSpan(0, boxes["ftyp"].size), ByteSpan(boxes["moov"].offset,
                                                                      boxes["moov"].offset + boxes["moov"].size))
    assert index.index_span == ByteSpan(boxes["sidx"].offset, boxes["sidx"].offset + boxes["sidx"].size)
    track = index.track
    assert (track.kind, track.codec, track.sample_rate, track.channels, track.aac_object_type) == \
        ("audio", "aac", 44100, 2, 2)
    assert track.timescale == 44100
    assert track.edit_media_time is None  # ffmpeg 5.1 writes no edit list into fMP4


def test_mp4_fragment_decode_time_agrees_with_the_index(media_60s):
    media = media_60s[Shape.DASH_M4A]
    data = media.path.read_bytes()
    index = index_of(media)
    for i in range(len(index.points)):
        span = index.fragment_span(i)
        ticks = mp4_fragment_decode_ticks(data[span.start:span.stop])
        assert ticks / index.track.timescale == pytest.approx(index.points[i].time_s, abs=1e-9)


def test_mp4_without_sidx_or_with_moov_only_is_not_indexed(media_60s):
    for shape in (Shape.PLAIN_M4A, Shape.MP3):
        with pytest.raises(IndexNotFound):
            index_of(media_60s[shape])


def test_mp4_edit_list_is_read(media_60s, tmp_path):
    path = with_edit_list(media_60s[Shape.DASH_M4A].path, tmp_path / "elst.m4a", media_time=2048)
    data = path.read_bytes()
    assert read_index(reader(data), len(data)).track.edit_media_time == 2048


def with_edit_list(source: Path, dest: Path, media_time: int) -> Path:
    """A copy of a DASH m4a with an edit list (edts/elst) inserted into its trak.

    Fragments address their data from their own moof and the sidx counts from its own end, so
    shifting everything after the moov by the new box keeps the file valid.
    """
    data = source.read_bytes()
    moov = next(b for b in mp4_boxes(source) if b.kind == "moov")
    pos = moov.offset + 8  # moov's children, up to the trak; its first child is the tkhd
    while data[pos + 4:pos + 8] != b"trak":
        pos += int.from_bytes(data[pos:pos + 4], "big")
    trak = pos
    tkhd_end = trak + 8 + int.from_bytes(data[trak + 8:trak + 12], "big")
    movie_duration = 0xFFFFFFFF  # "the whole media", as far as this test needs
    elst = (b"\x00\x00\x00\x1celst" + b"\x00\x00\x00\x00" + (1).to_bytes(4, "big")
            + movie_duration.to_bytes(4, "big") + media_time.to_bytes(4, "big") + b"\x00\x01\x00\x00")
    edts = (8 + len(elst)).to_bytes(4, "big") + b"edts" + elst
    grow = len(edts)

    def bump(buf: bytearray, at: int) -> None:
        buf[at:at + 4] = (int.from_bytes(buf[at:at + 4], "big") + grow).to_bytes(4, "big")

    out = bytearray(data[:tkhd_end]) + edts + data[tkhd_end:]
    bump(out, moov.offset)
    bump(out, trak)
    dest.write_bytes(bytes(out))
    return dest


def absolute_offset_m4a(master: Path, dest: Path, seconds: float = 30.0) -> Path:
    """Fragmented AAC whose tfhd boxes carry absolute base data offsets (ffmpeg's default without
    +dash), with a global sidx: valid DASH-like input that must not be concatenated naively.

    ffmpeg 5.1 computes those offsets before it inserts the global sidx and never corrects them
    (its own demuxer then fails on the file); they are set right here, to each moof's offset,
    which is what the trun data offsets it wrote count from.
    """
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(master), "-t", str(seconds), "-c:a", "aac",
                    "-aac_coder", "fast", "-b:a", "128k", "-movflags", "+frag_keyframe+empty_moov+global_sidx"
                    "+skip_trailer", "-frag_duration", "5000000", "-f", "mp4", str(dest)], check=True)
    data = bytearray(dest.read_bytes())
    for moof in tfhd_base_offsets(bytes(data)):
        at = data.index(b"tfhd", moof) + 12
        data[at:at + 8] = moof.to_bytes(8, "big")
    dest.write_bytes(bytes(data))
    decoded = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(dest), "-f", "null", "-"],
                             capture_output=True, text=True, check=True)
    assert not decoded.stderr, decoded.stderr  # a valid file before it is used as one
    return dest


def tfhd_base_offsets(data: bytes) -> dict[int, int]:
    """{moof offset: its tfhd's base data offset} for every moof with one."""
    found, pos = {}, 0
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        if kind == b"moof":
            at = data.index(b"tfhd", pos)
            if int.from_bytes(data[at + 5:at + 8], "big") & 1:
                found[pos] = int.from_bytes(data[at + 12:at + 20], "big")
        pos += size
    return found


def test_absolute_data_offsets_are_relocated(media_library: MediaLibrary, media_60s, tmp_path):
    path = absolute_offset_m4a(media_library.master(SIGNAL_60S), tmp_path / "absolute.m4a")
    data = path.read_bytes()
    index = read_index(reader(data), len(data))
    original = tfhd_base_offsets(data)
    assert original and all(base == moof for moof, base in original.items())  # absolute, as written
    header = b"".join(data[s.start:s.stop] for s in index.header)
    media = index.media_span(range(2, 4))
    moved = relocate_mp4_fragments(data[media.start:media.stop], media.start - len(header))
    cut = header + moved
    assert len(moved) == len(media)
    assert tfhd_base_offsets(cut) and all(base == moof for moof, base in tfhd_base_offsets(cut).items())
    # Fragments that address their data from their own moof (DASH mode) are left as they are.
    dash = media_60s[Shape.DASH_M4A]
    dash_data, dash_index = dash.path.read_bytes(), index_of(dash)
    span = dash_index.media_span(range(3, 6))
    assert relocate_mp4_fragments(dash_data[span.start:span.stop], 12345) == dash_data[span.start:span.stop]


# --------------------------------------------------------------------------------------------
# WebM


def test_webm_index_matches_the_cluster_oracle(media_60s):
    media = media_60s[Shape.DASH_WEBM]
    index = index_of(media)
    elements = webm_elements(media.path)
    clusters = [e for e in elements if e.kind == "Cluster"]
    cues = next(e for e in elements if e.kind == "Cues")
    assert index.container is Container.WEBM
    assert [p.offset for p in index.points] == [c.offset for c in clusters]
    assert index.header == (ByteSpan(0, clusters[0].offset),)
    assert index.index_span == ByteSpan(cues.offset, cues.offset + cues.size)
    assert index.media_end == media.size_bytes
    assert index.points[0].time_s == 0.0
    assert all(b.time_s - a.time_s == pytest.approx(5.0, abs=0.03) for a, b in zip(index.points, index.points[1:]))
    track = index.track
    assert (track.kind, track.codec, track.sample_rate, track.channels) == ("audio", "opus", 48000, 2)
    assert track.opus_pre_skip == 312 and track.codec_delay_s == pytest.approx(0.0065)
    assert track.seek_preroll_s == pytest.approx(0.080)
    assert track.timescale == 1000


def test_webm_first_block_of_each_cluster(media_60s):
    media = media_60s[Shape.DASH_WEBM]
    data = media.path.read_bytes()
    index = index_of(media)
    for i, point in enumerate(index.points):
        span = index.fragment_span(i)
        block = webm_cluster_first_block(data[span.start:span.stop], index.track)
        assert block is not None
        assert block.time_ticks / 1000 == pytest.approx(point.time_s, abs=0.001)
        assert opus_packet_samples(block.first_payload_byte) == 960  # 20 ms packets


def test_webm_cues_after_the_clusters_are_found_through_the_seekhead(media_library: MediaLibrary, tmp_path):
    """Without -cues_to_front the Cues follow the clusters; the SeekHead says where."""
    master = media_library.master(SIGNAL_60S)
    path = tmp_path / "cues_at_end.webm"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(master), "-t", "20", "-c:a", "libopus",
                    "-b:a", "64k", "-f", "webm", "-dash", "1", "-cluster_time_limit", "5000", str(path)], check=True)
    data = path.read_bytes()
    elements = webm_elements(path)
    cues = next(e for e in elements if e.kind == "Cues")
    clusters = [e for e in elements if e.kind == "Cluster"]
    assert cues.offset > clusters[-1].offset  # the layout this test is about
    reads: list[tuple[int, int]] = []
    index = read_index(reader(data, reads), len(data))
    assert [p.offset for p in index.points] == [c.offset for c in clusters]
    assert index.media_end == cues.offset  # the last cluster ends where the Cues begin
    assert any(start >= cues.offset for start, _ in reads)  # fetched from where the SeekHead pointed
    assert all(stop - start <= INDEX_PROBE_BYTES for start, stop in reads)


# --------------------------------------------------------------------------------------------
# Byte ranges


def test_byte_ranges_are_header_plus_covering_fragments(media_60s):
    index = index_of(media_60s[Shape.DASH_M4A])
    fragments = index.covering(12.0, 22.0)
    assert list(fragments) == [2, 3, 4]  # fragments of ~5.0155 s: [10.03, 15.05), ... [20.06, 25.08)
    ranges = byte_ranges(index, 12.0, 22.0)
    assert ranges == [*index.header, ByteSpan(index.points[2].offset, index.points[5].offset)]
    # The head of the file, already fetched, is not asked for again.
    have = index.points[0].offset + 10
    assert byte_ranges(index, 0.0, 3.0, have_prefix=have) == [ByteSpan(have, index.points[1].offset)]


def test_byte_ranges_are_split_into_bounded_requests(media_60s):
    index = index_of(media_60s[Shape.DASH_WEBM])
    ranges = byte_ranges(index, 30.0, 40.0, max_request_bytes=20_000)
    assert all(0 < len(r) <= 20_000 for r in ranges)
    media = [r for r in ranges if r.start >= index.points[0].offset]
    assert all(a.stop == b.start for a, b in zip(media, media[1:]))  # one contiguous run
    fragments = index.covering(30.0, 40.0)
    assert media[0].start == index.points[fragments[0]].offset
    assert media[-1].stop == index.fragment_span(fragments[-1]).stop


def test_covering_at_exact_fragment_boundaries(media_60s):
    index = index_of(media_60s[Shape.DASH_WEBM])
    t1, t2 = index.points[1].time_s, index.points[2].time_s
    assert list(index.covering(t1, t2)) == [1]  # [t1, t2) lies in fragment 1 alone
    assert list(index.covering(0.0, 0.0)) == [0]
    assert list(index.covering(1000.0, 1010.0)) == [len(index.points) - 1]  # past the end: the last one


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.floats(0, 59.5), length=st.floats(0.01, 10.0), limit=st.integers(1_000, 200_000),
       shape=st.sampled_from([Shape.DASH_M4A, Shape.DASH_WEBM]))
def test_ranges_cover_the_time_and_stay_bounded(media_60s, start, length, limit, shape):
    index = index_of(media_60s[shape])
    end = start + length
    fragments = index.covering(start, end)
    assert index.points[fragments[0]].time_s <= start or fragments[0] == 0
    following = fragments[-1] + 1
    assert following == len(index.points) or index.points[following].time_s >= end
    ranges = byte_ranges(index, start, end, max_request_bytes=limit)
    assert all(0 < len(r) <= limit for r in ranges)
    assert all(a.stop <= b.start for a, b in zip(ranges, ranges[1:]))  # ascending, no overlap
    assert sum(map(len, ranges)) == sum(map(len, index.header)) + len(index.media_span(fragments))


def test_byte_span():
    assert ByteSpan(0, 10).range_header == "bytes=0-9"
    assert ByteSpan(5, 25).split(10) == [ByteSpan(5, 15), ByteSpan(15, 25)]
    assert ByteSpan(5, 25).without_prefix(30) is None
    assert ByteSpan(5, 25).without_prefix(10) == ByteSpan(10, 25)
    with pytest.raises(ValueError):
        ByteSpan(0, 0).range_header  # an empty span has no bounded Range  # noqa: B018
    with pytest.raises(ValueError):
        ByteSpan(10, 5)


# --------------------------------------------------------------------------------------------
# Robustness


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 3000), shape=st.sampled_from([Shape.DASH_M4A, Shape.DASH_WEBM]))
def test_truncated_headers_raise_index_not_found(media_60s, cut, shape):
    data = media_60s[shape].path.read_bytes()[:cut]
    try:
        index = read_index(reader(data), None)
    except IndexNotFound:
        return
    # Whatever it does read from a truncated head must still describe the real file.
    assert index.points[0].offset == index_of(media_60s[shape]).points[0].offset


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=0, max_size=400), prefix=st.sampled_from([b"", b"\x1a\x45\xdf\xa3",
                                                                          b"\x00\x00\x00\x18ftyp"]))
def test_garbage_raises_index_not_found(data, prefix):
    blob = prefix + data
    with pytest.raises(IndexNotFound):
        read_index(reader(blob), len(blob))


def test_opus_packet_durations():
    assert opus_packet_samples(0xFC) == 960  # CELT fullband 20 ms, one frame (YouTube's)
    assert opus_packet_samples(0xFD) == 1920  # two frames
    assert opus_packet_samples(0x08) == 960  # SILK NB 20 ms
    assert opus_packet_samples(0xE0) == 120  # CELT 2.5 ms
