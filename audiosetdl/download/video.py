"""With `--video`: an mp4 of the segment beside its clip, as marl/audiosetdl could make.

Owns: `make_video`: the video-only format's covering fragments, fetched whole (a decoder needs
their keyframes) in bounded requests, re-encoded to H.264 and muxed with the clip itself as the
audio, so that picture and clip agree to the sample.
"""

from __future__ import annotations

from pathlib import Path

from audiosetdl.download.cut import DECODE_TIMEOUT_S, run_ffmpeg
from audiosetdl.download.errors import ClipError, Reason
from audiosetdl.download.http import MediaSource
from audiosetdl.download.index import IndexNotFound, read_index
from audiosetdl.download.partial import whole_fragments
from audiosetdl.rundir import scratch_beside


def make_video(source: MediaSource, duration_s: float | None, start: float, end: float, clip: Path,
               dest: Path) -> None:
    """Write `dest` (mp4): [start, end] of the video that `source` reads, with `clip` as its audio."""
    source.probe(duration_s)
    try:
        index = read_index(source.read, source.size)
    except IndexNotFound as why:
        raise ClipError.of(Reason.FORMAT_UNAVAILABLE, f"video format: {why}") from None
    cut = scratch_beside(clip, f"video.{index.container.value}")
    try:
        cut.write_bytes(whole_fragments(source.read, index, start, end, source.max_request_bytes).data)
        run_ffmpeg(["-copyts", "-i", str(cut), "-i", str(clip), "-filter_complex",
                    f"[0:v:0]trim=start={start:.6f}:end={end:.6f},setpts=PTS-STARTPTS[v]",
                    "-map", "[v]", "-map", "1:a:0", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-shortest", "-movflags", "+faststart",
                    "-f", "mp4", "-y", str(dest)], DECODE_TIMEOUT_S, "video encode")
    finally:
        cut.unlink(missing_ok=True)
