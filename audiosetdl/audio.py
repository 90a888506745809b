"""Clip files: the format every downloaded clip has (16 kHz, mono, 16-bit FLAC, exactly
round((end - start) * 16000) samples), checking it, and decoding audio for the model.

Arbitrary audio (for `audiosetdl embed`) is decoded by ffmpeg, mixed to mono, then resampled with
soxr, the resampler the download stage uses, so embeddings of the same sound agree (to 1 LSB on
about 0.05% of samples for a stereo source: the download stage's single `aresample` resamples each
channel before it mixes). `stream_audio` does it a window at a time, reading files already in the
clip format (16 kHz mono 16-bit) as they are, and other lossless PCM files in this process with the
same result (`audiosetdl.pcm`).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile

from audiosetdl import flac, pcm
from audiosetdl.ffmpeg_exe import ffmpeg, is_static_build
from audiosetdl.metadata.segments import Segment
from audiosetdl.vggish.params import SAMPLE_RATE


def expected_samples(segment: Segment) -> int:
    return round((segment.end - segment.start) * SAMPLE_RATE)


def clip_is_valid(path: Path, segment: Segment) -> bool:
    """A finished clip: 16 kHz mono with exactly the segment's sample count (reads the header only)."""
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, OSError, soundfile.LibsndfileError):
        return False
    return info.samplerate == SAMPLE_RATE and info.channels == 1 and info.frames == expected_samples(segment)


def read_clip(path: Path) -> np.ndarray:
    """A clip's samples as float32 in [-1, 1) (int16 / 32768, as the VGGish reference scales WAV)."""
    info = soundfile.info(str(path))
    if info.samplerate != SAMPLE_RATE or info.channels != 1:
        raise ValueError(f"{path}: expected 16 kHz mono, found {info.samplerate} Hz with {info.channels} channels")
    if flac.is_fast(info):
        return flac.read(path, info).reshape(-1)
    samples = soundfile.read(str(path), dtype="int16", always_2d=False)[0]
    return samples.astype(np.float32) / 32768.0


def decode_any(path: Path) -> np.ndarray:
    """Any audio or video file ffmpeg reads -> 16 kHz mono float32 (soxr resampling)."""
    result = subprocess.run(_ffmpeg_command(path), capture_output=True)
    if result.returncode != 0:
        raise ValueError(f"{path}: ffmpeg could not decode it: {result.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(result.stdout, dtype="<i2").astype(np.float32) / 32768.0


def _ffmpeg_command(path: Path) -> list[str]:
    # Mixed to mono first, in float (maxval 1: 0.5 L + 0.5 R, not 0.71 each), then resampled once: see pcm.py.
    return [ffmpeg(), "-nostdin", "-v", "error", "-i", str(Path(path).resolve()), "-vn", "-ac", "1",
            "-af", f"aresample=ochl=mono:osf=flt:rematrix_maxval=1,aresample={SAMPLE_RATE}:resampler=soxr",
            "-f", "s16le", "-acodec", "pcm_s16le", "pipe:1"]


def stream_any(path: Path, chunk_samples: int) -> Iterator[np.ndarray]:
    """`decode_any` a window at a time: float32 chunks of `chunk_samples` (the last may be shorter), from one
    ffmpeg process, so an hours-long file is never held whole. Raises ValueError naming the file when
    ffmpeg fails (after the chunks it gave)."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(_ffmpeg_command(path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=errors)
        try:
            while True:
                data = _read_exactly(process.stdout, 2 * chunk_samples)
                if data:
                    yield np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
                if len(data) < 2 * chunk_samples:
                    break
            if process.wait() != 0:
                errors.seek(0)
                message = errors.read().decode(errors="replace").strip() or f"exit status {process.returncode}"
                raise ValueError(f"{path}: ffmpeg could not decode it: {message}")
        finally:
            if process.poll() is None:
                process.kill()
            process.stdout.close()
            process.wait()


def _read_exactly(stream, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        data = stream.read(size - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _info(path: Path):
    """libsndfile's view of a file's header, or None when libsndfile cannot read it (ffmpeg may)."""
    try:
        return soundfile.info(str(path))
    except (RuntimeError, OSError, soundfile.LibsndfileError):
        return None


def _is_clip_format(info) -> bool:
    """16 kHz mono 16-bit PCM (WAV, FLAC, ...), which ffmpeg would pass through unchanged."""
    return info.samplerate == SAMPLE_RATE and info.channels == 1 and info.subtype == "PCM_16"


def stream_audio(path: Path, chunk_samples: int) -> Iterator[np.ndarray]:
    """`stream_any`'s samples, without starting ffmpeg where that gives the same ones: files already in
    the clip format are read as they are (`pcm.float_blocks`), and the other lossless PCM files
    `pcm.covered` names are converted in this process by `pcm.stream`, sample for sample as the static
    ffmpeg would."""
    info = _info(path)
    if info is not None and _is_clip_format(info):
        for block in pcm.float_blocks(path, info, chunk_samples):
            yield block.reshape(-1)
    elif info is not None and pcm.covered(info) and is_static_build():
        yield from pcm.stream(path, info, chunk_samples)
    else:
        yield from stream_any(path, chunk_samples)
