"""16-bit FLAC files decoded by dr_flac (the `miniaudio` package) instead of libsndfile.

Why: FLAC is lossless, so every correct decoder gives the same samples, and dr_flac gives them
in about two thirds of libsndfile's time (10 s of 44.1 kHz stereo: 5.3 ms against 8.8; a 16 kHz
mono clip: 1.4 against 2.1). For `embed` on a 2-core machine that is CPU taken from the model.
Both the downloaded clips (16 kHz mono 16-bit FLAC) and users' FLAC files come this way.

Only 16-bit files (`is_fast`): others keep libsndfile, whose scaling of 24- and 32-bit samples
to float is what `audiosetdl.pcm` is checked against. Samples are float32 (frames, channels),
scaled by dr_flac itself: exactly int16 / 32768 (x << 16 times 2^-31, both exact), the scaling
libsndfile and the VGGish reference use, without a second pass over the samples.

dr_flac's functions are called through miniaudio's own cffi bindings (`miniaudio.lib`), reading
straight into numpy arrays: its `flac_stream_file` zero-fills a buffer of the whole block size and
copies every block once more, 1.5 ms of a 10-s stereo file's 7.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

def is_fast(info) -> bool:
    """Whether a file (its `soundfile.info`) is 16-bit FLAC, which `blocks` decodes."""
    return info.format == "FLAC" and info.subtype == "PCM_16"


def blocks(path: Path, info, frames: int) -> Iterator[np.ndarray]:
    """float32 (n, channels) blocks (int16 / 32768) of at most `frames` frames each, to the end of the
    file (`info`: its `soundfile.info`). Raises ValueError naming the file when dr_flac cannot open
    it, or when it ends before the frame count of its header: dr_flac, like ffmpeg, stops quietly at
    a damaged frame, and a file cut short is reported, not embedded in part."""
    from miniaudio import ffi, lib

    handle = lib.ma_dr_flac_open_file(os.fsencode(str(path)), ffi.NULL)
    if not handle:
        raise ValueError(f"{path}: could not decode it: dr_flac could not open it as FLAC")
    decoded = 0
    try:
        while decoded < info.frames:
            block = np.empty((min(max(1, frames), info.frames - decoded), info.channels), np.float32)
            got = lib.ma_dr_flac_read_pcm_frames_f32(handle, len(block), ffi.cast("float *", ffi.from_buffer(block)))
            if got <= 0:
                break
            decoded += got
            yield block[:got]
    finally:
        lib.ma_dr_flac_close(handle)
    if decoded < info.frames:
        raise ValueError(f"{path}: could not decode it: damaged or cut short, it ends at frame {decoded:,} "
                         f"of the {info.frames:,} its header gives")


def read(path: Path, info) -> np.ndarray:
    """The whole file's float32 (frames, channels) samples (int16 / 32768)."""
    parts = list(blocks(path, info, info.frames))
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.zeros((0, info.channels), np.float32)
