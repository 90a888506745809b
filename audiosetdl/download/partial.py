"""The cut: the bytes a stretch of an indexed stream needs, read in a few bounded reads, and the
small file made of them that ffmpeg decodes like that stretch of the original.

Owns: `Cut` (header + fragments, and where its first fragment starts: what `cut.AudioTiming`
reads), `whole_fragments` (the header and every covering fragment whole: video, and fragments
`partial_cut` cannot cut inside) and `partial_cut`, which takes of the covering fragments only
what the decode needs:

- fMP4: the first covering fragment's ``moof`` (one bounded head, sized for its samples), then
  one read from the first sample needed through the last covering fragment's ``moof`` and on into
  its samples as far as its average bitrate says the stretch goes, then (when that fell short)
  the rest of the samples needed; each fragment rebuilt around its run of samples
  (`mp4_fragments.FragmentSamples.rebuild`). Two reads after the index (a third when the
  estimate fell short, or a moof outgrew its head), about the stretch's own bytes plus the moofs
  at any fragment length.
- WebM: from the first covering Cluster's start to the first block at or after the stretch's
  end, the last Cluster ended there (`webm_clusters`). One read sized from that cluster's
  average bitrate, a larger one if that fell short, and the cluster's end last: one to three
  reads. The blocks before the stretch's start are kept: finding where a block starts inside a
  cluster takes reading the blocks before it, so skipping them saves no bytes without guessing
  (at 10-s clusters this costs at most ~2x the stretch's bytes, ~1.5x on average).

Every read goes through the caller's `ReadBytes`; reads overlap (a moof's head, then the run
that contains it), and the fetcher's `http.MediaSource` keeps what it fetched, so each byte is
requested once and the reads above are the requests made.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

from audiosetdl.download.cut import AAC_FRAME_SAMPLES
from audiosetdl.download.index import (
    MAX_REQUEST_BYTES,
    Container,
    FragmentIndex,
    FragmentUnsupported,
    IndexNotFound,
    ReadBytes,
    byte_ranges,
)
from audiosetdl.download.mp4_fragments import relocate_mp4_fragments
from audiosetdl.download.mp4_fragments import FragmentSamples, SampleDefaults, moof_head_bytes, moof_size
from audiosetdl.download.webm_clusters import NEED_MORE, cluster_cut, truncated_cluster

log = logging.getLogger(__name__)

# How far into the last covering fragment a read goes, from that fragment's average bitrate (x factor
# + margin; VBR runs a few percent either side of the average over seconds). fMP4 takes the first
# step and then reads exactly what its moof says is missing; WebM takes the steps in turn, then the
# cluster's end, until the read holds the first block past the stretch.
READ_AHEAD_STEPS = ((1.05, 4096), (1.3, 32 * 1024))
UNKNOWN_FRAGMENT_S = 20.0  # a fragment's duration when the index does not say (the last one, no total)


@dataclass(frozen=True)
class Cut:
    """A decodable file: the stream's header, then its (possibly rebuilt) fragments."""

    data: bytes
    header_size: int

    @property
    def first_fragment(self) -> bytes:
        return self.data[self.header_size:]


def whole_fragments(read: ReadBytes, index: FragmentIndex, from_s: float, to_s: float,
                    max_request_bytes: int = MAX_REQUEST_BYTES) -> Cut:
    """The header, then every fragment covering container times [from_s, to_s] as it is."""
    spans = byte_ranges(index, from_s, to_s, max_request_bytes=max_request_bytes)
    data = b"".join(read(span.start, span.stop) for span in spans)
    header_size = sum(len(span) for span in index.header)
    if index.container is Container.MP4:
        media = index.media_span(index.covering(from_s, to_s))
        data = data[:header_size] + relocate_mp4_fragments(data[header_size:], media.start - header_size)
    return Cut(data, header_size)


def partial_cut(read: ReadBytes, index: FragmentIndex, from_s: float, to_s: float,
                max_request_bytes: int = MAX_REQUEST_BYTES) -> Cut:
    """What decoding container times [from_s, to_s] needs: the samples (fMP4) or blocks (WebM)
    of the covering fragments that overlap them; whole fragments where they cannot be cut."""
    try:
        if index.container is Container.MP4:
            return _mp4_cut(read, index, from_s, to_s)
        return _webm_cut(read, index, from_s, to_s)
    except (FragmentUnsupported, IndexNotFound, struct.error) as why:
        log.debug("fragments taken whole: %s", why)
        return whole_fragments(read, index, from_s, to_s, max_request_bytes)


def _header(read: ReadBytes, index: FragmentIndex) -> bytes:
    return b"".join(read(span.start, span.stop) for span in index.header)


def _fragment_s(index: FragmentIndex, i: int) -> float:
    if i + 1 < len(index.points):
        return index.points[i + 1].time_s - index.points[i].time_s
    if index.duration_s is not None and index.duration_s > index.points[i].time_s:
        return index.duration_s - index.points[i].time_s
    return UNKNOWN_FRAGMENT_S


def _read_ahead(index: FragmentIndex, i: int, to_s: float, factor: float, margin: int) -> int:
    """Where a read that holds fragment `i`'s bytes up to container time `to_s` should stop,
    judged from the fragment's average bitrate (never past the fragment's end)."""
    span = index.fragment_span(i)
    share = min(max((to_s - index.points[i].time_s) / _fragment_s(index, i), 0.0), 1.0)
    return min(span.stop, span.start + int(share * factor * len(span)) + margin)


# ---------------------------------------------------------------------------------- fMP4


def _mp4_cut(read: ReadBytes, index: FragmentIndex, from_s: float, to_s: float) -> Cut:
    header = _header(read, index)
    defaults = SampleDefaults.of_init(header)
    if not index.track.sample_rate:
        raise FragmentUnsupported("no sample rate: cannot size a moof's head")
    frames_per_s = index.track.sample_rate / AAC_FRAME_SAMPLES
    lo, hi = from_s * index.track.timescale, to_s * index.track.timescale
    fragments = index.covering(from_s, to_s)
    first, last = fragments[0], fragments[-1]
    parsed = [_moof(read, index, first, frames_per_s, defaults)]
    if last != first:
        # The first fragment's samples from the first one needed, every fragment between, the last
        # one's moof and (by its bitrate) the samples needed after it: one read.
        lead_in = parsed[0].offset(parsed[0].run(lo, hi).start)
        read(lead_in, max(index.points[last].offset + _moof_head(index, last, frames_per_s),
                          _read_ahead(index, last, to_s, *READ_AHEAD_STEPS[0])))
        parsed += [_moof(read, index, i, frames_per_s, defaults) for i in fragments[1:]]
    pieces = [header]
    for fragment in parsed:
        run = fragment.run(lo, hi)
        if len(run):
            pieces.append(fragment.rebuild(run, read(fragment.offset(run.start), fragment.offset(run.stop))))
    if len(pieces) == 1:
        raise FragmentUnsupported("no sample of the covering fragments overlaps the stretch")
    return Cut(b"".join(pieces), len(header))


def _moof_head(index: FragmentIndex, i: int, frames_per_s: float) -> int:
    return min(len(index.fragment_span(i)), moof_head_bytes(_fragment_s(index, i), frames_per_s))


def _moof(read: ReadBytes, index: FragmentIndex, i: int, frames_per_s: float,
          defaults: SampleDefaults) -> FragmentSamples:
    """Fragment `i`'s samples, from a bounded head of it (and the rest of its moof if larger)."""
    start = index.points[i].offset
    head = read(start, start + _moof_head(index, i, frames_per_s))
    size = moof_size(head)
    if size > len(head):
        head = read(start, start + size)
    return FragmentSamples.parse(head[:size], start, defaults)


# ---------------------------------------------------------------------------------- WebM


def _webm_cut(read: ReadBytes, index: FragmentIndex, from_s: float, to_s: float) -> Cut:
    header = _header(read, index)
    fragments = index.covering(from_s, to_s)
    first, last = index.fragment_span(fragments[0]), index.fragment_span(fragments[-1])
    end_ticks = to_s * index.track.timescale
    at, data = NEED_MORE, b""
    for step in (*READ_AHEAD_STEPS, None):
        stop = last.stop if step is None else _read_ahead(index, fragments[-1], to_s, *step)
        if stop <= first.start + len(data):
            continue
        data = read(first.start, stop)
        at = cluster_cut(data[last.start - first.start:], index.track, end_ticks)
        if at != NEED_MORE:
            break
    if at == NEED_MORE:
        raise FragmentUnsupported("the last cluster ends before its bytes do")
    tail = truncated_cluster(data[last.start - first.start:], at)
    return Cut(header + data[:last.start - first.start] + tail, len(header))
