"""16-bit FLAC through dr_flac (`audiosetdl.flac`): libsndfile's samples exactly, in any block size,
on the paths that use it (clips for `extract`, users' files for `embed`), and damage reported."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from audiosetdl import audio, flac, pcm


def write(path, seconds: float, rate: int, channels: int, subtype: str = "PCM_16", seed: int = 0):
    rng = np.random.default_rng(seed)
    count = max(1, int(seconds * rate))
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(count) / rate)
    samples = np.clip(tone[:, None] + 0.3 * rng.standard_normal((count, channels)), -1, 1)  # clipped peaks too
    soundfile.write(str(path), samples.astype(np.float32), rate, subtype=subtype)
    return path


@pytest.mark.parametrize("rate,channels,seconds", [(16000, 1, 10.0), (44100, 2, 3.3), (48000, 1, 0.01),
                                                   (8000, 2, 61.0)])
@pytest.mark.parametrize("frames", [1000, 4096, 10 ** 7])
def test_dr_flac_gives_libsndfiles_samples_in_any_block_size(tmp_path, rate, channels, seconds, frames):
    path = write(tmp_path / "a.flac", seconds, rate, channels)
    info = soundfile.info(str(path))
    assert flac.is_fast(info)
    expected = soundfile.read(str(path), dtype="float32", always_2d=True)[0]
    got = list(flac.blocks(path, info, frames))
    assert all(len(block) <= frames and block.dtype == np.float32 for block in got)
    assert np.array_equal(np.concatenate(got), expected)
    assert np.array_equal(flac.read(path, info), expected)
    assert np.array_equal(np.concatenate(list(pcm.float_blocks(path, info, frames))), expected)


@pytest.mark.parametrize("suffix,subtype", [(".flac", "PCM_24"), (".wav", "PCM_16"), (".flac", "PCM_S8")])
def test_other_files_stay_with_libsndfile(tmp_path, suffix, subtype):
    assert not flac.is_fast(soundfile.info(str(write(tmp_path / f"a{suffix}", 0.5, 16000, 1, subtype))))


def refuse_libsndfile_reads(monkeypatch):
    """libsndfile may still read headers, never samples: what follows must decode with dr_flac."""
    def refuse(*args, **kwargs):
        raise AssertionError("libsndfile asked for samples")

    monkeypatch.setattr(soundfile.SoundFile, "read", refuse)  # soundfile.read reads through it too


def test_clips_and_users_flac_files_decode_with_dr_flac(tmp_path, monkeypatch):
    clip = write(tmp_path / "clip.flac", 10.0, 16000, 1)
    stereo = write(tmp_path / "song.flac", 2.0, 44100, 2)
    refuse_libsndfile_reads(monkeypatch)
    expected_clip = flac.read(clip, soundfile.info(str(clip))).reshape(-1)
    assert np.array_equal(audio.read_clip(clip), expected_clip)
    assert np.array_equal(np.concatenate(list(audio.stream_audio(clip, 16000))), expected_clip)
    streamed = np.concatenate(list(pcm.stream(stereo, soundfile.info(str(stereo)), 16000)))
    assert len(streamed) == 32000


def test_a_cut_short_file_is_an_error_naming_it_and_where_it_ends(tmp_path):
    path = write(tmp_path / "cut.flac", 4.0, 16000, 1)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    info = soundfile.info(str(path))  # the header still says 64,000 frames
    with pytest.raises(ValueError, match=r"cut\.flac: could not decode it: damaged or cut short, it ends at "
                                         r"frame [\d,]+ of the 64,000"):
        audio.read_clip(path)
    with pytest.raises(ValueError, match="cut.flac"):
        list(flac.blocks(path, info, 1000))


def test_a_file_that_is_not_flac_inside_is_an_error_naming_it(tmp_path):
    path = write(tmp_path / "real.flac", 1.0, 16000, 1)
    info = soundfile.info(str(path))
    path.write_bytes(b"not a flac stream at all" * 100)
    with pytest.raises(ValueError, match="real.flac: could not decode it"):
        list(flac.blocks(path, info, 1000))


@pytest.mark.parametrize("channels", [1, 2])
def test_dr_flacs_samples_are_int16_over_32768_for_every_value(tmp_path, channels):
    every = np.arange(-32768, 32768, dtype=np.int16)
    rng = np.random.default_rng(1)
    # stereo: the right channel close to the left, so the encoder picks its mid/side modes too
    right = np.clip(every.astype(np.int32) + rng.integers(-3, 4, len(every)), -32768, 32767).astype(np.int16)
    samples = np.stack([every, right], axis=1)[:, :channels]
    path = tmp_path / "every.flac"
    soundfile.write(str(path), samples, 16000, subtype="PCM_16")
    info = soundfile.info(str(path))
    as_float = np.concatenate(list(flac.blocks(path, info, 5000)))
    assert as_float.dtype == np.float32
    assert np.array_equal(as_float, samples.astype(np.float32) / np.float32(32768))
