"""Which ffmpeg binary audiosetdl runs to decode: one answer for the download and extract stages.

`$AUDIOSETDL_FFMPEG` when set; else imageio-ffmpeg's static build (a dependency: ffmpeg 9 with
libsoxr), which starts in ~0.02 CPU-s where Debian's shared build of ffmpeg 5.1 takes ~0.13 — the
largest cost of a clip, which runs one ffmpeg; else `ffmpeg` on PATH. The clips are the same
sample for sample with either (the fetcher's exactness tests pass on both). yt-dlp's own
downloader (method "ytdlp") and ffprobe use the system's ffmpeg.

`audiosetdl.pcm` reproduces the static build's conversions of PCM files in process; other builds
convert 16-bit files differently (Debian's 5.1 resamples them in the integer domain), so that
shortcut is taken only when `is_static_build()`.
"""

from __future__ import annotations

import functools
import os
import shutil

ENV_VAR = "AUDIOSETDL_FFMPEG"


@functools.cache
def ffmpeg() -> str:
    given = os.environ.get(ENV_VAR)
    if given:
        return given
    return _static_build() or shutil.which("ffmpeg") or "ffmpeg"


def _static_build() -> str | None:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):  # not installed, or no binary for this platform
        return None


@functools.cache
def is_static_build() -> bool:
    """Whether `ffmpeg()` is imageio-ffmpeg's static build (the one `audiosetdl.pcm` is checked against)."""
    return ffmpeg() == _static_build()
