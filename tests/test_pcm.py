"""PCM files decoded in process (`audiosetdl.pcm`) give ffmpeg's samples exactly, and never start ffmpeg.

Every comparison is against the real ffmpeg command (`audio.decode_any`), on files written with
libsndfile: rates, sample formats, containers, channel counts, loud (clipping), noisy and
near-silent signals, whole files and chunks of several sizes.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiosetdl import audio, ffmpeg_exe, pcm

LEVELS = {"noise": 0.3, "clipping": 1.5, "near_silence": 0.001}


def write(path: Path, seconds: float, rate: int, channels: int, subtype: str, level: float, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    samples = np.clip(level * rng.standard_normal((int(seconds * rate), channels)), -1, 1).astype(np.float32)
    soundfile.write(str(path), samples, rate, subtype=subtype, format=path.suffix[1:].upper())
    # (not PCM_U8: ffmpeg 9 decodes 8-bit files differently from one run to the next)
    return path


def streamed(path: Path, chunk: int) -> np.ndarray:
    parts = list(audio.stream_audio(path, chunk))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


@pytest.fixture
def no_ffmpeg(monkeypatch):
    """Fail the test if the in-process path starts ffmpeg after all."""
    def refuse(path, chunk_samples):
        raise AssertionError(f"ffmpeg was started for {path}")
        yield  # a generator, as stream_any is

    monkeypatch.setattr(audio, "stream_any", refuse)


CASES = list(itertools.product([11025, 16000, 44100, 48000], [1, 2],
                               [("wav", "PCM_16"), ("wav", "PCM_24"), ("wav", "PCM_32"), ("wav", "FLOAT"),
                                ("flac", "PCM_16"), ("flac", "PCM_24"), ("aiff", "PCM_16")]))


@pytest.mark.skipif(not ffmpeg_exe.is_static_build(), reason="the rule is checked against the static ffmpeg")
@pytest.mark.parametrize("rate,channels,container", CASES,
                         ids=[f"{r}-{c}ch-{f}-{s}" for r, c, (f, s) in CASES])
def test_in_process_decoding_equals_ffmpeg_sample_for_sample(tmp_path, rate, channels, container, no_ffmpeg):
    suffix, subtype = container
    for index, (name, level) in enumerate(LEVELS.items()):
        path = write(tmp_path / f"{name}.{suffix}", 0.73, rate, channels, subtype, level, seed=index)
        assert pcm.covered(soundfile.info(str(path)))
        reference = audio.decode_any(path)  # the ffmpeg command itself
        for chunk in (997, 16000):
            got = streamed(path, chunk)
            assert len(got) == len(reference) == round(0.73 * 16000)
            assert np.array_equal(got, reference), f"{name}, chunks of {chunk}"


@pytest.mark.skipif(not ffmpeg_exe.is_static_build(), reason="the rule is checked against the static ffmpeg")
@pytest.mark.parametrize("seconds", [0.001, 0.02, 61.3])
def test_very_short_and_long_files_match_too(tmp_path, no_ffmpeg, seconds):
    path = write(tmp_path / "x.flac", seconds, 48000, 2, "PCM_24", 0.3)
    chunks = list(audio.stream_audio(path, 16000 * 10))
    assert max(len(c) for c in chunks) <= 16000 * 11  # a long file comes in pieces, never whole
    got = np.concatenate(chunks)
    assert len(got) == round(seconds * 16000) and np.array_equal(got, audio.decode_any(path))


@pytest.mark.parametrize("rate,channels,subtype,suffix", [
    (44100, 2, "DOUBLE", "wav"),  # ffmpeg mixes in double
    (44100, 3, "PCM_16", "wav"),  # more than stereo: ffmpeg's own downmix matrix
    (44100, 1, "VORBIS", "ogg"),  # lossy: libsndfile's decoder is not ffmpeg's
])
def test_what_the_rule_does_not_cover_goes_to_ffmpeg(tmp_path, rate, channels, subtype, suffix):
    path = write(tmp_path / f"x.{suffix}", 0.5, rate, channels, subtype, 0.3)
    assert not pcm.covered(soundfile.info(str(path)))
    assert np.array_equal(streamed(path, 4000), audio.decode_any(path))


def test_another_ffmpeg_gets_every_file(tmp_path, monkeypatch):
    """With $AUDIOSETDL_FFMPEG (a build whose conversions may differ), ffmpeg decodes even covered files."""
    path = write(tmp_path / "x.wav", 0.5, 44100, 1, "PCM_16", 0.3)
    started = []
    monkeypatch.setattr(audio, "stream_any", lambda p, c: started.append(p) or iter([np.zeros(8000, np.float32)]))
    monkeypatch.setenv(ffmpeg_exe.ENV_VAR, "/usr/bin/ffmpeg")
    for cached in (ffmpeg_exe.ffmpeg, ffmpeg_exe.is_static_build):
        cached.cache_clear()
    try:
        streamed(path, 4000)
        assert started == [path]
    finally:
        monkeypatch.delenv(ffmpeg_exe.ENV_VAR)
        for cached in (ffmpeg_exe.ffmpeg, ffmpeg_exe.is_static_build):
            cached.cache_clear()


@pytest.mark.skipif(not ffmpeg_exe.is_static_build(), reason="the rule is checked against the static ffmpeg")
def test_a_damaged_file_is_an_error_naming_it(tmp_path, no_ffmpeg):
    path = write(tmp_path / "broken.flac", 2.0, 44100, 2, "PCM_16", 0.3)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    with pytest.raises(ValueError, match="broken.flac: could not decode it"):
        streamed(path, 16000)
