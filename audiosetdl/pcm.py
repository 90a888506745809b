"""Lossless PCM files (WAV, FLAC, AIFF, ...) decoded and resampled to 16 kHz in this process, sample
for sample what ffmpeg's command in `audiosetdl.audio` gives, without starting ffmpeg.

Why: for a 10-s file, starting ffmpeg and setting up its streams costs ~0.05 CPU-s (ffmpeg 9,
even with several files per process), five times the decoding and resampling itself; on a
2-core machine that is a fifth of VGGish's own time per file.

The rule, checked against ffmpeg 9 (imageio-ffmpeg's static build, the default) on WAV, FLAC and
AIFF at 8-96 kHz (16 kHz too), 16-, 24-, 32-bit and float samples, mono and stereo, noise, clipping
and near-silence, whole and in chunks (tests/test_pcm.py):

    samples as float32 (libsndfile's scaling, x / 2^(bits-1))
    -> stereo mixed as 0.5 L + 0.5 R, in float32 (the command's first filter: aresample=ochl=mono:
       osf=flt:rematrix_maxval=1)
    -> resampled by soxr, in float32, quality HQ (its second: aresample=16000:resampler=soxr, at
       ffmpeg's default 20-bit precision); nothing at 16 kHz
    -> int16 by rounding to nearest (ties to even) and clipping -> / 32768

Mixing comes first, as in the VGGish reference (vggish_input averages the channels, then
resamples), and it halves the resampling: 10 s of 44.1 kHz stereo costs 2 ms, not 4.5. ffmpeg's
`-ac 1` alone would choose the other order, and integer arithmetic for 16 kHz files.

`stream` takes only files that rule covers (`covered`); 16 kHz mono 16-bit files need no
conversion at all and are read as they are (`audio.stream_audio`). Files with more than two
channels, 8-bit or double samples, or lossy codecs (MP3, Vorbis, Opus: libsndfile's decoders are
not ffmpeg's) go to ffmpeg, and so does every file when `$AUDIOSETDL_FFMPEG` picks another ffmpeg
(`ffmpeg_exe.is_static_build`): Debian's ffmpeg 5.1 gives this rule's samples with this command
too, but nothing checks other builds.
"""

from __future__ import annotations

import threading
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
    return info.subtype in COVERED_SUBTYPES and info.channels in (1, 2) and info.frames > 0


def to_int16_scale(samples: np.ndarray) -> np.ndarray:
    """float32 samples -> the int16 values ffmpeg writes, as float32 in [-1, 1) (int16 / 32768).
    Scaling by 2^15 and back is exact, so it is done in place on one copy."""
    scaled = np.multiply(samples, np.float32(32768.0), dtype=np.float32)
    np.rint(scaled, out=scaled)
    np.clip(scaled, -32768.0, 32767.0, out=scaled)
    scaled *= np.float32(1.0 / 32768.0)
    return scaled


def _mono(samples: np.ndarray, exact_sum: bool) -> np.ndarray:
    """0.5 L + 0.5 R in float32, as ffmpeg mixes; (L + R) * 0.5 when `exact_sum` (samples of integer
    files): then it is the same number (no sum can overflow or fall among the subnormals), in half the time."""
    if samples.ndim == 1 or samples.shape[1] == 1:
        return samples.reshape(-1)
    if exact_sum:
        mixed = np.add(samples[:, 0], samples[:, 1])
        mixed *= np.float32(0.5)
        return mixed
    half = np.float32(0.5)
    mixed = half * samples[:, 0]
    mixed += half * samples[:, 1]
    return mixed


class _Resamplers:
    """Mono soxr streams kept per thread and rate, reused (`clear`ed) from file to file: a fresh one
    spends 0.5 ms of a 10-s 44.1 kHz file's 2 warming up, and a cleared one gives the same samples."""

    def __init__(self):
        self.local = threading.local()

    def take(self, rate: int):
        import soxr

        idle = getattr(self.local, "idle", None)
        if idle is None:
            idle = self.local.idle = {}
        kept = idle.pop(rate, None)
        if kept is not None:
            kept.clear()
            return kept
        return soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality=SOXR_QUALITY)

    def give_back(self, rate: int, resampler) -> None:
        self.local.idle[rate] = resampler


_RESAMPLERS = _Resamplers()


def stream(path: Path, info, chunk_samples: int) -> Iterator[np.ndarray]:
    """16 kHz mono float32 chunks of a `covered` file, about `chunk_samples` each (the last may be
    shorter); raises ValueError naming the file when it cannot be read."""
    exact_sum = info.subtype != "FLOAT"
    if info.samplerate == SAMPLE_RATE:
        for samples in float_blocks(path, info, chunk_samples):
            yield to_int16_scale(_mono(samples, exact_sum))
        return
    resampler = _RESAMPLERS.take(info.samplerate)
    block = max(1, round(chunk_samples * info.samplerate / SAMPLE_RATE))
    left = info.frames
    for samples in float_blocks(path, info, block):
        samples = samples[:left]
        left -= len(samples)
        out = resampler.resample_chunk(_mono(samples, exact_sum), last=left <= 0)
        if len(out):
            yield to_int16_scale(out)
        if left <= 0:
            break
    else:
        # the header promised more frames than the file holds: end here, as ffmpeg does, with what soxr holds
        out = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        if len(out):
            yield to_int16_scale(out)
    _RESAMPLERS.give_back(info.samplerate, resampler)  # not after an error: that one is dropped


def float_blocks(path: Path, info, frames: int) -> Iterator[np.ndarray]:
    """A file's samples as float32 (n, channels) blocks of about `frames` frames, scaled as libsndfile
    scales them (x / 2^(bits-1)); 16-bit FLAC by dr_flac (`audiosetdl.flac`), the rest by libsndfile.
    Raises ValueError naming the file when it cannot be read."""
    if flac.is_fast(info):
        yield from flac.blocks(path, info, frames)
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
