"""Cutting inside fragments: fMP4 moof samples and rebuilt fragments, WebM cluster cuts, the
partial cut's reads and the head probe's size, checked against ffprobe's packet list (an
independent oracle: every packet's time, byte position and size) and against ffmpeg decodes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiosetdl.download import partial as partial_module
from audiosetdl.download.index import FragmentIndex, FragmentUnsupported, index_probe_bytes, read_index
from audiosetdl.download.mp4_fragments import mp4_fragment_decode_ticks
from audiosetdl.download.mp4_fragments import FragmentSamples, SampleDefaults, moof_size
from audiosetdl.download.partial import partial_cut, whole_fragments
from audiosetdl.download.webm_clusters import NEED_MORE, cluster_cut, truncated_cluster
from tests.media import MediaFile, Shape, head_before_media, mp4_boxes, mp4_sidx_references
from tests.media_fixtures import SIGNAL_60S
from tests.test_ranges import absolute_offset_m4a


def packets(path: Path) -> list[tuple[int, int, int]]:
    """(pts, byte position, size) of every packet, as ffprobe lists them (time base: the stream's)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                          "packet=pts,pos,size", "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                         check=True).stdout
    rows = [[int(x) for x in line.split(",")[:3]] for line in out.split()]  # the last may carry side data
    return [(pts, pos, size) for pts, size, pos in rows]  # ffprobe's own order: pts, size, pos


def index_of(data: bytes) -> FragmentIndex:
    return read_index(lambda a, b: data[a:b], len(data))


def pcm(path: Path) -> np.ndarray:
    """Every decoded sample (nothing dropped), interleaved 16-bit."""
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-flags2", "+skip_manual", "-i", str(path),
                          "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype="<i2")


def fragments_of(media: MediaFile) -> list[FragmentSamples]:
    data = media.path.read_bytes()
    index = index_of(data)
    defaults = SampleDefaults.of_init(b"".join(data[s.start:s.stop] for s in index.header))
    parsed = []
    for point in index.points:
        size = moof_size(data[point.offset:point.offset + 16])
        parsed.append(FragmentSamples.parse(data[point.offset:point.offset + size], point.offset, defaults))
    return parsed


# --------------------------------------------------------------------------------------------
# fMP4


@pytest.fixture(scope="module", params=[5.0, 10.0], ids=["5s", "10s"])
def m4a(request, media_60s, media_60s_10s_fragments) -> MediaFile:
    return (media_60s if request.param == 5.0 else media_60s_10s_fragments)[Shape.DASH_M4A]


def test_moof_samples_are_ffprobes_packets(m4a):
    """Every sample's decode time, offset and size, from moof + tfhd defaults, is the packet ffprobe lists."""
    listed = [(f.sample_ticks(i), f.offset(i), f.sizes[i]) for f in fragments_of(m4a) for i in range(len(f))]
    assert listed == packets(m4a.path)
    first_offset, refs = mp4_sidx_references(m4a.path)
    assert len(fragments_of(m4a)) == len(refs)


def test_a_rebuilt_fragment_decodes_like_those_samples_of_the_original(m4a, tmp_path):
    data = m4a.path.read_bytes()
    index = index_of(data)
    header = b"".join(data[s.start:s.stop] for s in index.header)
    fragment = fragments_of(m4a)[2]
    run = range(57, len(fragment) - 30)
    rebuilt = fragment.rebuild(run, data[fragment.offset(run.start):fragment.offset(run.stop)])
    assert mp4_fragment_decode_ticks(rebuilt) == fragment.sample_ticks(run.start)  # tfdt advanced
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(header + rebuilt)
    assert [(p[0], p[2]) for p in packets(cut)] == [(fragment.sample_ticks(i), fragment.sizes[i]) for i in run]
    channels, frame = 2, 1024
    decoded, whole = pcm(cut), pcm(m4a.path)
    assert len(decoded) == len(run) * frame * channels
    # After the first frame (the decoder's preroll: it lacks the frame before) the samples are the
    # original's, bit for bit, at their own times.
    at = fragment.sample_ticks(run.start) * channels
    assert np.array_equal(decoded[frame * channels:], whole[at + frame * channels:at + len(decoded)])
    assert not np.array_equal(decoded[:frame * channels], whole[at:at + frame * channels])


def test_fragments_with_absolute_base_offsets_are_rebuilt_from_the_moof(media_library, tmp_path):
    path = absolute_offset_m4a(media_library.master(SIGNAL_60S), tmp_path / "absolute.m4a")
    data = path.read_bytes()
    index = index_of(data)
    defaults = SampleDefaults.of_init(b"".join(data[s.start:s.stop] for s in index.header))
    point = index.points[1]
    fragment = FragmentSamples.parse(data[point.offset:point.offset + moof_size(data[point.offset:])],
                                     point.offset, defaults)
    mdat = next(b for b in mp4_boxes(path) if b.kind == "mdat" and b.offset > point.offset)
    assert fragment.data_start == mdat.offset + 8
    rebuilt = fragment.rebuild(range(3, 10), data[fragment.offset(3):fragment.offset(10)])
    assert b"tfhd" in rebuilt and rebuilt[rebuilt.index(b"tfhd") + 5] & 0x02  # default-base-is-moof now
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(b"".join(data[s.start:s.stop] for s in index.header) + rebuilt)
    assert [p[2] for p in packets(cut)] == list(fragment.sizes[3:10])


def with_traf_box(moof: bytes, kind: bytes, body: bytes) -> bytes:
    """`moof` (ffmpeg's layout: one traf, last) with a box appended to its traf; the sizes and the
    trun's data offset moved to match (the fragment's data now starts that much later)."""
    box = (8 + len(body)).to_bytes(4, "big") + kind + body
    out = bytearray(moof + box)
    for at in (0, moof.index(b"traf") - 4):
        out[at:at + 4] = (int.from_bytes(out[at:at + 4], "big") + len(box)).to_bytes(4, "big")
    offset_at = moof.index(b"trun") - 4 + 16  # size, type, version/flags, sample count, then the data offset
    out[offset_at:offset_at + 4] = (int.from_bytes(out[offset_at:offset_at + 4], "big") + len(box)).to_bytes(4, "big")
    return bytes(out)


def test_other_traf_boxes_are_left_out_and_encrypted_samples_refused(media_60s):
    data = media_60s[Shape.DASH_M4A].path.read_bytes()
    index = index_of(data)
    defaults = SampleDefaults.of_init(b"".join(data[s.start:s.stop] for s in index.header))
    point = index.points[3]
    moof = data[point.offset:point.offset + moof_size(data[point.offset:point.offset + 16])]
    original = FragmentSamples.parse(moof, point.offset, defaults)
    noted = with_traf_box(moof, b"sdtp", bytes(4 + len(original)))
    parsed = FragmentSamples.parse(noted, point.offset, defaults)
    assert parsed.sizes == original.sizes and parsed.data_start == original.data_start + len(noted) - len(moof)
    run = range(5, 9)
    rebuilt = parsed.rebuild(run, data[original.offset(5):original.offset(9)])
    assert b"sdtp" not in rebuilt
    assert rebuilt == original.rebuild(run, data[original.offset(5):original.offset(9)])
    with pytest.raises(FragmentUnsupported):
        FragmentSamples.parse(with_traf_box(moof, b"senc", bytes(8)), point.offset, defaults)


# --------------------------------------------------------------------------------------------
# WebM


@pytest.fixture(scope="module", params=[5.0, 10.0], ids=["5s", "10s"])
def webm(request, media_60s, media_60s_10s_fragments) -> MediaFile:
    return (media_60s if request.param == 5.0 else media_60s_10s_fragments)[Shape.DASH_WEBM]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(end_s=st.floats(0.0, 61.0), short_by=st.integers(0, 200_000))
def test_a_cluster_ends_at_the_first_block_past_the_end(webm, webm_packets, end_s, short_by):
    data = webm.path.read_bytes()
    index = index_of(data)
    i = index.covering(end_s, end_s)[-1]
    span = index.fragment_span(i)
    cluster = data[span.start:span.stop]
    at = cluster_cut(cluster, index.track, end_s * 1000)
    first_pts = webm_packets[0][0]  # blocks' stored times are ffprobe's pts less the codec delay
    after = [pos for pts, pos, _ in webm_packets if span.start <= pos < span.stop and pts - first_pts >= end_s * 1000]
    if after:
        assert 0 < after[0] - (span.start + at) <= 12  # the block element right before that payload
    else:
        assert at == len(cluster)
    # Fewer bytes: the same answer, or a request for more; never a different cut.
    assert cluster_cut(cluster[:max(len(cluster) - short_by, 0)], index.track, end_s * 1000) in (at, NEED_MORE)


@pytest.fixture(scope="module")
def webm_packets(webm) -> list[tuple[int, int, int]]:
    return packets(webm.path)


def test_a_truncated_cluster_decodes_its_blocks(webm, webm_packets, tmp_path):
    data = webm.path.read_bytes()
    index = index_of(data)
    span = index.fragment_span(1)
    cluster = data[span.start:span.stop]
    at = cluster_cut(cluster, index.track, index.points[1].time_s * 1000 + 2_500)
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[:index.header[0].stop] + truncated_cluster(cluster, at))
    kept = [p for p in webm_packets if span.start <= p[1] < span.start + at]
    assert len(kept) == 125  # 2.5 s of 20-ms packets
    assert [p[1:] for p in packets(cut)] == [(pos - span.start + index.header[0].stop, size) for _, pos, size in kept]


# --------------------------------------------------------------------------------------------
# The cut as a whole


def test_a_partial_cut_falls_back_to_whole_fragments(media_60s, monkeypatch):
    data = media_60s[Shape.DASH_M4A].path.read_bytes()
    index = index_of(data)

    def unsupported(*args, **kwargs):
        raise FragmentUnsupported("as if the moof held two trafs")

    monkeypatch.setattr(partial_module.FragmentSamples, "parse", unsupported)
    read = lambda a, b: data[a:b]  # noqa: E731
    assert partial_cut(read, index, 21.0, 31.0) == whole_fragments(read, index, 21.0, 31.0)


@pytest.mark.parametrize("shape", [Shape.DASH_M4A, Shape.DASH_WEBM])
def test_the_head_probe_holds_header_and_index_and_little_else(media_60s, media_60s_10s_fragments, media_300s, shape):
    for media in (media_60s[shape], media_60s_10s_fragments[shape], media_300s[shape]):
        head = head_before_media(media.path)
        probe = index_probe_bytes(media.duration_s)
        assert head <= probe <= head + 6 * 1024, (media.path.name, head, probe)
    assert index_probe_bytes(60.0) == 4096
    assert index_probe_bytes(None) == 64 * 1024  # unknown duration: what YouTube's heads fit in
