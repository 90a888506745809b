"""The timeline and the ffmpeg cut: where decoded samples lie in time, and the decode that makes a
clip sample-exact at 16 kHz.

Owns: `AudioTiming` (how an indexed track's container times and decoded samples relate to source
time: AAC in MP4 through the fragment's ``tfdt`` minus the edit list's media time, or AAC-LC's
one-frame encoder delay without one; Opus in WebM through the first block's time snapped to the
packet grid, minus the OpusHead pre-skip), `TrimPlan` (which decoded samples go to the resampler
so that the 16 kHz grid lands exactly on the segment's start), the ffmpeg invocations (always an
argument list; ``-flags2 +skip_manual`` so the decoder drops nothing, samples numbered from 0 and
trimmed by index, soxr resampling), and writing the checked 16-bit FLAC clip, padded with silence
at the end only.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile

from audiosetdl.download.errors import ClipError, Reason
from audiosetdl.ffmpeg_exe import ffmpeg
from audiosetdl.download.index import Container, FragmentIndex, IndexNotFound, TrackInfo
from audiosetdl.download.mp4_fragments import mp4_fragment_decode_ticks
from audiosetdl.download.webm_clusters import opus_packet_samples, webm_cluster_first_block

OUTPUT_CHANNELS = 1
AAC_FRAME_SAMPLES = 1024  # AAC-LC: samples per frame; its encoder delay and its decoder's preroll
OPUS_RATE = 48_000  # Opus always decodes at 48 kHz
OPUS_DEFAULT_PREROLL_S = 0.080  # RFC 7845 5.1.1: decode at least 80 ms before a seek target
RESAMPLER_MARGIN_S = 0.010  # decoded audio kept on each side of the clip so soxr's edges fall outside it
DECODE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class AudioTiming:
    """How an indexed audio track's container times and decoded samples relate to source time
    (source time 0 = the first sample the encoder was given)."""

    track: TrackInfo
    container: Container
    decoded_rate: int  # samples per second the decoder puts out
    container_offset: Fraction  # container time - source time (encoder delay, as the container has it)
    preroll_s: float  # after a cold start, the decoder's output is right only after this long

    @classmethod
    def of(cls, index: FragmentIndex) -> AudioTiming:
        """Raises IndexNotFound for tracks without an exact rule here (they take the fallback)."""
        return cls.for_track(index.track, index.container)

    @classmethod
    def for_track(cls, track: TrackInfo, container: Container) -> AudioTiming:
        """As `of`, from the track's facts and its container alone (an HLS init segment has no index)."""
        if track.kind != "audio":
            raise IndexNotFound("not an audio track")
        if container is Container.MP4 and track.codec == "aac":
            if track.aac_object_type != 2 or not track.sample_rate:
                raise IndexNotFound(f"AAC object type {track.aac_object_type}: exact timing known for AAC-LC only")
            if track.edit_media_time is not None:
                offset = Fraction(track.edit_media_time, track.timescale)
            else:
                offset = Fraction(AAC_FRAME_SAMPLES, track.sample_rate)
            return cls(track, container, track.sample_rate, offset, AAC_FRAME_SAMPLES / track.sample_rate)
        if container is Container.WEBM and track.codec == "opus" and track.opus_pre_skip is not None:
            # Matroska block times are source time + CodecDelay (= the pre-skip).
            return cls(track, container, OPUS_RATE, Fraction(track.opus_pre_skip, OPUS_RATE),
                       track.seek_preroll_s or OPUS_DEFAULT_PREROLL_S)
        raise IndexNotFound(f"{track.codec} in {container.value}: no exact timing rule")

    def decoded_start(self, first_fragment: bytes, fallback_ticks: Fraction) -> Fraction:
        """Source time of the first sample ffmpeg decodes from a cut that starts with `first_fragment`."""
        timescale = self.track.timescale
        if self.container is Container.MP4:
            ticks = mp4_fragment_decode_ticks(first_fragment)
            first = Fraction(ticks, timescale) if ticks is not None else fallback_ticks
            return first - self.container_offset
        block = webm_cluster_first_block(first_fragment, self.track)
        if block is None:
            raise ClipError.of(Reason.DECODE_ERROR, "the first fetched cluster holds no block of the track")
        stream_samples = Fraction(block.time_ticks * OPUS_RATE, timescale)
        if block.first_payload_byte is not None and block.first_payload_byte & 0x03 != 0x03:
            # Timestamps are whole ticks (1 ms), packets whole samples: with constant packets (as
            # YouTube's encoder writes) the packet grid gives the exact sample.
            packet = opus_packet_samples(block.first_payload_byte)
            snapped = round(stream_samples / packet) * packet
            if abs(snapped - stream_samples) <= Fraction(3 * OPUS_RATE, 2 * timescale):
                stream_samples = Fraction(snapped)
        return stream_samples / OPUS_RATE - self.container_offset


@dataclass(frozen=True)
class TrimPlan:
    """Which decoded samples to keep, and which resampled ones make the clip."""

    first_decoded: int  # decoded samples dropped before resampling
    end_decoded: int  # decoded samples [first_decoded, end_decoded) go to the resampler
    margin_out: int  # resampled samples dropped before the clip's first sample
    clip_samples: int


def grid_period(decoded_rate: int, out_rate: int) -> int:
    """Output samples after which both rates' sample grids line up again (160 for 44.1 -> 16 kHz)."""
    return out_rate // math.gcd(decoded_rate, out_rate)


def lead_s(decoded_rate: int, out_rate: int) -> float:
    """The most audio `_trim_plan` may keep before the clip's start."""
    return (round(RESAMPLER_MARGIN_S * out_rate) + grid_period(decoded_rate, out_rate)) / out_rate


def trim_plan(start: Fraction, clip_samples: int, decoded_start: Fraction, decoded_rate: int,
               out_rate: int) -> TrimPlan:
    """Choose the decoded sample to start resampling at so that resampled sample `margin_out`
    falls on `start` (to a fraction of a decoded sample: the margin is picked from one period of
    the two rates' common grid)."""
    lead = (start - decoded_start) * out_rate  # resampled samples available before `start`
    if lead < 0:
        raise ClipError.of(Reason.DECODE_ERROR, f"the fetched audio begins {float(-lead / out_rate):.3f} s "
                                                "after the segment start")
    margin_min = round(RESAMPLER_MARGIN_S * out_rate)
    period = grid_period(decoded_rate, out_rate)
    highest = math.floor(lead)
    lowest = min(margin_min, highest)
    candidates = range(lowest, min(lowest + period, highest + 1))

    lead_decoded = float((start - decoded_start) * decoded_rate)
    step = decoded_rate / out_rate

    def misalignment(margin: int) -> float:  # of the 16 kHz grid against `start`, in decoded samples
        x = lead_decoded - margin * step
        return abs(x - round(x))

    margin = min(candidates, key=misalignment)
    first = round((start - decoded_start) * decoded_rate - Fraction(margin * decoded_rate, out_rate))
    needed = math.ceil(Fraction((margin + clip_samples + margin_min) * decoded_rate, out_rate)) + 1
    return TrimPlan(first_decoded=max(first, 0), end_decoded=max(first, 0) + needed, margin_out=margin,
                     clip_samples=clip_samples)


# ============================================================================================
# ffmpeg


def resample_chain(out_rate: int) -> str:
    return f"asetpts=N/SR/TB,aresample=osr={out_rate}:resampler=soxr:ochl=mono,asetpts=N/SR/TB"


def run_ffmpeg(args: list[str], timeout: float, what: str) -> bytes:
    try:
        done = subprocess.run([ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", *args],
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ClipError.of(Reason.DECODE_ERROR, f"ffmpeg {what} took longer than {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip()[-1000:]
        raise ClipError.of(Reason.DECODE_ERROR, f"ffmpeg {what} failed ({done.returncode}): {tail}")
    return done.stdout


def pcm(stdout: bytes) -> np.ndarray:
    return np.frombuffer(stdout[:len(stdout) // 2 * 2], dtype="<i2")


def decode_cut(cut: Path, plan: TrimPlan, out_rate: int) -> np.ndarray:
    """Decode the whole cut, keep decoded samples by index, resample, keep the clip's samples."""
    chain = (f"asetpts=N/SR/TB,atrim=start_sample={plan.first_decoded}:end_sample={plan.end_decoded},"
             f"{resample_chain(out_rate)},"
             f"atrim=start_sample={plan.margin_out}:end_sample={plan.margin_out + plan.clip_samples}")
    return pcm(run_ffmpeg(["-flags2", "+skip_manual", "-i", str(cut), "-map", "0:a:0", "-af", chain,
                             "-f", "s16le", "-c:a", "pcm_s16le", "pipe:1"], DECODE_TIMEOUT_S, "decode"))


def write_clip(samples: np.ndarray, clip_samples: int, out_rate: int, tmp: Path) -> float:
    """Pad at the end to `clip_samples`, write 16-bit FLAC, check it; returns the padded seconds."""
    if len(samples) > clip_samples:
        raise ClipError.of(Reason.DECODE_ERROR, f"decoded {len(samples)} samples for a {clip_samples}-sample clip")
    padded = clip_samples - len(samples)
    if padded:
        samples = np.concatenate([samples, np.zeros(padded, dtype=np.int16)])
    soundfile.write(str(tmp), samples, out_rate, subtype="PCM_16", format="FLAC")
    info = soundfile.info(str(tmp))
    if (info.samplerate, info.channels, info.frames, info.subtype) != (out_rate, OUTPUT_CHANNELS, clip_samples,
                                                                      "PCM_16"):
        raise ClipError.of(Reason.DECODE_ERROR, f"written clip is {info.samplerate} Hz, {info.channels} ch, "
                                                f"{info.frames} frames, {info.subtype}; expected {out_rate} Hz mono "
                                                f"{clip_samples} frames PCM_16")
    return padded / out_rate

