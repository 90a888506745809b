"""16-bit FLAC files decoded by dr_flac (the `miniaudio` package) instead of libsndfile.

Why: FLAC is lossless, so every correct decoder gives the same samples, and dr_flac gives them
in about two thirds of libsndfile's time (10 s of 44.1 kHz stereo: 7.2 ms against 9.6; a 16 kHz
mono clip: 1.4 against 2.1). For `embed` on a 2-core machine that is CPU taken from the model.
Both the downloaded clips (16 kHz mono 16-bit FLAC) and users' FLAC files come this way.

Only 16-bit files (`is_fast`): others keep libsndfile, whose scaling of 24- and 32-bit samples
to float is what `audiosetdl.pcm` is checked against. Samples are int16 (frames, channels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np


def is_fast(info) -> bool:
    """Whether a file (its `soundfile.info`) is 16-bit FLAC, which `blocks` decodes."""
    return info.format == "FLAC" and info.subtype == "PCM_16"


def blocks(path: Path, info, frames: int) -> Iterator[np.ndarray]:
    """int16 (n, channels) blocks of about `frames` frames each, to the end of the file (`info`: its
    `soundfile.info`). Raises ValueError naming the file when dr_flac cannot open it, or when it ends
    before the frame count of its header: dr_flac, like ffmpeg, stops quietly at a damaged frame,
    and a file cut short is reported, not embedded in part."""
    import miniaudio

    decoded = 0
    try:
        for block in miniaudio.flac_stream_file(str(path), frames_to_read=max(1, frames)):
            samples = np.frombuffer(block, dtype=np.int16).reshape(-1, info.channels)
            decoded += len(samples)
            yield samples
    except miniaudio.DecodeError as exc:
        raise ValueError(f"{path}: could not decode it: {exc}") from None
    if decoded < info.frames:
        raise ValueError(f"{path}: could not decode it: damaged or cut short, it ends at frame {decoded:,} "
                         f"of the {info.frames:,} its header gives")


def read(path: Path, info) -> np.ndarray:
    """The whole file's int16 (frames, channels) samples."""
    parts = list(blocks(path, info, info.frames))
    return np.concatenate(parts) if parts else np.zeros((0, info.channels), np.int16)
