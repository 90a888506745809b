"""Lossless PCM files (WAV, FLAC, AIFF, ...) decoded and resampled to 16 kHz in this process, sample
for sample what ffmpeg's command in `audiosetdl.audio` gives, without starting ffmpeg.

Why: for a 10-s file, starting ffmpeg and setting up its streams costs ~0.05 CPU-s (ffmpeg 9,
even with several files per process), five times the decoding and resampling itself; on a
2-core machine that is a fifth of VGGish's own time per file.

The rule, checked against ffmpeg 9 (imageio-ffmpeg's static build, the default) on WAV, FLAC and
AIFF at 8-96 kHz, 16-, 24-, 32-bit and float samples, mono and stereo, noise, clipping and
near-silence, whole and in chunks (tests/test_pcm.py):

    samples as float32 (libsndfile's scaling, x / 2^(bits-1))
    -> each channel resampled by soxr, in float32, quality HQ (ffmpeg's aresample=16000:
       resampler=soxr at its default 20-bit precision)
    -> stereo mixed as 0.5 L + 0.5 R, in float32
    -> int16 by rounding to nearest (ties to even) and clipping -> / 32768

`stream` takes only files that rule covers (`covered`). Files already at 16 kHz are not: ffmpeg
converts them in the integer domain (it truncates 24-bit samples, and mixes 16-bit stereo in
fixed point); 16 kHz mono 16-bit files need no conversion at all and are read as they are
(`audio.stream_audio`). Nor are files with more than two channels, 8-bit samples, or lossy codecs
(MP3, Vorbis, Opus: libsndfile's decoders are not ffmpeg's). All of those go to ffmpeg, and so
does every file when `$AUDIOSETDL_FFMPEG` picks another ffmpeg (`ffmpeg_exe.is_static_build`):
Debian's ffmpeg 5.1 resamples 16-bit files in the integer domain, one LSB away from this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile

from audiosetdl import flac
from audiosetdl.vggish.params import SAMPLE_RATE

COVERED_SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "FLOAT")  # not DOUBLE: ffmpeg mixes its stereo in double
SOXR_QUALITY = "HQ"  # ffmpeg's soxr precision 20 -> soxr's 20-bit recipe, which python-soxr calls HQ


def covered(info) -> bool:
    """Whether a file (its `soundfile.info`) decodes here exactly as ffmpeg would (see the module docstring)."""
    return (info.subtype in COVERED_SUBTYPES and info.channels in (1, 2) and info.samplerate != SAMPLE_RATE
            and info.frames > 0)


def to_int16_scale(samples: np.ndarray) -> np.ndarray:
    """float32 samples -> the int16 values ffmpeg writes, as float32 in [-1, 1) (int16 / 32768)."""
    rounded = np.rint(np.asarray(samples, np.float32) * np.float32(32768.0))
    return (np.clip(rounded, -32768.0, 32767.0) / np.float32(32768.0)).astype(np.float32)


def _mono(resampled: np.ndarray) -> np.ndarray:
    if resampled.ndim == 1 or resampled.shape[1] == 1:
        return resampled.reshape(-1)
    half = np.float32(0.5)
    return half * resampled[:, 0] + half * resampled[:, 1]


def stream(path: Path, info, chunk_samples: int) -> Iterator[np.ndarray]:
    """16 kHz mono float32 chunks of a `covered` file, about `chunk_samples` each (the last may be
    shorter); raises ValueError naming the file when it cannot be read."""
    import soxr

    resampler = soxr.ResampleStream(info.samplerate, SAMPLE_RATE, info.channels, dtype="float32",
                                    quality=SOXR_QUALITY)
    block = max(1, round(chunk_samples * info.samplerate / SAMPLE_RATE))
    left = info.frames
    for samples in float_blocks(path, info, block):
        samples = samples[:left]
        left -= len(samples)
        out = resampler.resample_chunk(samples, last=left <= 0)
        if len(out):
            yield to_int16_scale(_mono(out))
        if left <= 0:
            return
    # the header promised more frames than the file holds: end here, as ffmpeg does, with what soxr holds
    out = resampler.resample_chunk(np.zeros((0, info.channels), np.float32), last=True)
    if len(out):
        yield to_int16_scale(_mono(out))


def float_blocks(path: Path, info, frames: int) -> Iterator[np.ndarray]:
    """A file's samples as float32 (n, channels) blocks of about `frames` frames, scaled as libsndfile
    scales them (x / 2^(bits-1)); 16-bit FLAC by dr_flac (`audiosetdl.flac`), the rest by libsndfile.
    Raises ValueError naming the file when it cannot be read."""
    if flac.is_fast(info):
        for samples in flac.blocks(path, info, frames):
            yield samples.astype(np.float32) / np.float32(32768.0)
        return
    try:
        with soundfile.SoundFile(str(path)) as sound:
            while True:
                samples = sound.read(frames, dtype="float32", always_2d=True)
                if not len(samples):
                    return
                yield samples
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise ValueError(f"{path}: could not decode it: {exc}") from None
