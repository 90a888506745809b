"""Measurement: bytes per clip over the ideal for three ways to cut WebM clusters, at 5-s and 10-s
clusters, over seeded random 10 s segments of a 300 s DASH webm (Opus, Cues); no server.

- whole: every covering cluster whole (the fetcher before partial fragments);
- tail: from the first covering cluster's start to the first block past the stretch's end (what
  `audiosetdl.download.partial` does);
- both ends: as tail, and also skipping the blocks before the stretch's start (its first block at
  or before from_s, Opus preroll included): a lower bound, since finding that block inside a
  cluster takes either reading the blocks before it or guessing where one starts.

The stretch is the fetcher's own: [start - resampler lead - Opus preroll, end + resampler margin]
in container time. "Ideal" is 10 s at the file's average bitrate; the probe and the read-ahead
overshoot are not counted here (bench/download.py counts what the server really sent).

    .venv/bin/python bench/webm_cut.py [--clips 400]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from audiosetdl.download.cut import RESAMPLER_MARGIN_S, AudioTiming, lead_s  # noqa: E402
from audiosetdl.download.index import read_index  # noqa: E402
from audiosetdl.download.partial import partial_cut, whole_fragments  # noqa: E402
from tests.media import MediaLibrary, MediaSpec, Shape, SignalSpec  # noqa: E402

MEDIA_S = 300.0
CLIP_S = 10.0


def packet_starts(path: Path) -> list[tuple[int, int]]:
    """(stored time in ms, byte position of the payload) per packet; ffprobe's pts less the first's."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "packet=pts,pos", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout
    rows = [[int(x) for x in line.split(",")[:2]] for line in out.split()]
    return [(pts - rows[0][0], pos) for pts, pos in rows]


def measure(path: Path, clips: int, seed: int) -> dict[str, tuple[float, float]]:
    data = path.read_bytes()
    index = read_index(lambda a, b: data[a:b], len(data))
    timing = AudioTiming.of(index)
    ideal = len(data) / MEDIA_S * CLIP_S
    packets = packet_starts(path)
    rng = random.Random(seed)
    ratios: dict[str, list[float]] = {"whole": [], "tail": [], "both ends": []}
    for _ in range(clips):
        start = rng.randrange(0, int((MEDIA_S - CLIP_S - 1) * 1000)) / 1000
        offset = float(timing.container_offset)
        from_s = max(start - lead_s(timing.decoded_rate, 16_000) - timing.preroll_s + offset, 0.0)
        to_s = start + CLIP_S + RESAMPLER_MARGIN_S + offset
        read = lambda a, b: data[a:b]  # noqa: E731
        whole, tail = whole_fragments(read, index, from_s, to_s), partial_cut(read, index, from_s, to_s)
        tail_bytes = len(tail.data) - tail.header_size
        first_cluster = index.points[index.covering(from_s, to_s)[0]].offset
        # The last packet that starts at or before from_s: the cluster would start there instead.
        skip_to = max(pos for ms, pos in packets if ms <= from_s * 1000 and pos >= first_cluster) - 4
        ratios["whole"].append((len(whole.data) - whole.header_size) / ideal)
        ratios["tail"].append(tail_bytes / ideal)
        ratios["both ends"].append((tail_bytes - max(skip_to - first_cluster, 0)) / ideal)
    return {k: (sum(v) / len(v), max(v)) for k, v in ratios.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--seed", type=int, default=2017)
    parser.add_argument("--media-cache", default=os.environ.get("AUDIOSETDL_TEST_MEDIA_CACHE")
                        or str(Path(tempfile.gettempdir()) / "audiosetdl-bench-media"))
    args = parser.parse_args(argv)
    library = MediaLibrary(Path(args.media_cache))
    print(f"{'clusters':<10}{'option':<12}{'mean x ideal':>14}{'max x ideal':>13}")
    for fragment_s in (5.0, 10.0):
        media = library.get(MediaSpec(signal=SignalSpec(duration_s=MEDIA_S), shape=Shape.DASH_WEBM,
                                      fragment_s=fragment_s))
        for option, (mean, worst) in measure(media.path, args.clips, args.seed).items():
            print(f"{fragment_s:<10g}{option:<12}{mean:>14.2f}{worst:>13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
