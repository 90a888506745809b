"""Test media shaped like YouTube's audio streams, with content that says what time it is.

Owns: the deterministic test signal, the ffmpeg recipes that encode it into YouTube-like
containers, an on-disk cache of the results, and the helpers a test uses to check that a cut
really holds the time range it claims to (decode, coarse time from the chirp, sample-exact
position by cross-correlation with the lossless master).

The signal is a slow linear chirp (its frequency says, to ~0.1 s, where in the file a window
lies) plus seeded white noise (sharp autocorrelation, so cross-correlating a decoded cut with
the master gives its position to the sample; a chirp alone would be ambiguous by a carrier
cycle). Shapes:

- ``DASH_M4A``: fragmented MP4, AAC-LC 44.1 kHz, one global ``sidx`` right after ``moov``
  listing each fragment's byte size and duration (like YouTube's itag 140).
- ``DASH_WEBM``: WebM, Opus 48 kHz, ``Cues`` moved in front of the first ``Cluster``, a
  cluster every ``fragment_s`` (like YouTube's itag 251).
- ``PLAIN_M4A``: ordinary MP4 with ``moov`` first (faststart), no fragments.
- ``MP3``: CBR MP3, no container index.

HLS audio (`HlsSpec`, `MediaLibrary.hls`): a media playlist and its segment files in one folder,
as ffmpeg's HLS muxer writes them: AAC-LC in fMP4 segments (``#EXT-X-MAP`` init segment, like
YouTube's HLS audio) or in MPEG-TS segments, optionally one file with ``#EXT-X-BYTERANGE``.

ffmpeg is always called with an argument list, never through a shell.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import struct
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
_FFMPEG_QUIET = ("-nostdin", "-hide_banner", "-loglevel", "error", "-y")


# --------------------------------------------------------------------------------------------
# The signal


@dataclass(frozen=True)
class SignalSpec:
    """A deterministic mono test signal: linear chirp + seeded white noise."""

    duration_s: float = 60.0
    sample_rate: int = 48_000
    chirp_start_hz: float = 200.0
    chirp_end_hz: float = 4_000.0  # stays under 8 kHz so a 16 kHz decode keeps it
    chirp_amplitude: float = 0.4
    noise_std: float = 0.1
    seed: int = 20170305

    @property
    def chirp_rate_hz_per_s(self) -> float:
        return (self.chirp_end_hz - self.chirp_start_hz) / self.duration_s

    def frequency_at(self, t: float | np.ndarray) -> float | np.ndarray:
        return self.chirp_start_hz + self.chirp_rate_hz_per_s * t

    def time_at_frequency(self, hz: float | np.ndarray) -> float | np.ndarray:
        return (hz - self.chirp_start_hz) / self.chirp_rate_hz_per_s

    def render(self) -> np.ndarray:
        """The whole signal as float32 samples in [-1, 1]."""
        n = int(round(self.duration_s * self.sample_rate))
        t = np.arange(n, dtype=np.float64) / self.sample_rate
        # Cycles as a float64, reduced mod 1 before sin: keeps the phase exact for long files.
        cycles = self.chirp_start_hz * t + 0.5 * self.chirp_rate_hz_per_s * t * t
        chirp = self.chirp_amplitude * np.sin(2 * np.pi * (cycles - np.floor(cycles)))
        samples = chirp.astype(np.float32)
        samples += np.random.default_rng(self.seed).standard_normal(n, dtype=np.float32) * np.float32(self.noise_std)
        return np.clip(samples, -1.0, 1.0, out=samples)

    def key(self) -> str:
        return _stable_key(asdict(self))


def _stable_key(fields: dict) -> str:
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Shapes and recipes


class Shape(str, enum.Enum):
    DASH_M4A = "dash_m4a"
    DASH_WEBM = "dash_webm"
    PLAIN_M4A = "plain_m4a"
    MP3 = "mp3"

    @property
    def ext(self) -> str:
        return {"dash_m4a": "m4a", "dash_webm": "webm", "plain_m4a": "m4a", "mp3": "mp3"}[self.value]

    @property
    def content_type(self) -> str:
        return {"m4a": "audio/mp4", "webm": "audio/webm", "mp3": "audio/mpeg"}[self.ext]

    @property
    def sample_rate(self) -> int:
        """The stream's rate, as YouTube serves it (AAC 44.1 kHz, Opus 48 kHz)."""
        return 48_000 if self is Shape.DASH_WEBM else 44_100

    @property
    def is_fragmented(self) -> bool:
        return self in (Shape.DASH_M4A, Shape.DASH_WEBM)


@dataclass(frozen=True)
class MediaSpec:
    """One encoded file: which signal, which shape, how it is encoded."""

    signal: SignalSpec = field(default_factory=SignalSpec)
    shape: Shape = Shape.DASH_M4A
    bitrate_kbps: int = 128
    channels: int = 2  # YouTube's audio is stereo; both channels carry the same signal
    fragment_s: float = 5.0  # fMP4 fragment / WebM cluster duration (DASH shapes only)

    def key(self) -> str:
        fields = asdict(self)
        fields["shape"] = self.shape.value
        return _stable_key(fields)

    def file_name(self) -> str:
        return (f"{self.shape.value}-{self.bitrate_kbps}k-{self.channels}ch-{self.fragment_s:g}s-"
                f"{self.key()}.{self.shape.ext}")


def encode_args(spec: MediaSpec, master: Path, dest: Path) -> list[str]:
    """The ffmpeg argument list that turns the lossless master into `spec`'s shape."""
    args = [FFMPEG, *_FFMPEG_QUIET, "-i", str(master), "-map", "0:a", "-map_metadata", "-1",
            "-fflags", "+bitexact", "-flags:a", "+bitexact",
            "-ac", str(spec.channels), "-ar", str(spec.shape.sample_rate)]
    bitrate = f"{spec.bitrate_kbps}k"
    if spec.shape is Shape.DASH_M4A:
        args += ["-c:a", "aac", "-aac_coder", "fast", "-b:a", bitrate,  # fast: half the time of twoloop
                 # dash: fragmented with a sidx; global_sidx: one sidx for all fragments,
                 # right after moov; skip_trailer: no mfra at the end (YouTube has none).
                 "-movflags", "+dash+global_sidx+skip_trailer",
                 "-frag_duration", str(int(spec.fragment_s * 1_000_000)), "-f", "mp4"]
    elif spec.shape is Shape.DASH_WEBM:
        args += ["-c:a", "libopus", "-b:a", bitrate, "-f", "webm", "-dash", "1",
                 "-cluster_time_limit", str(int(spec.fragment_s * 1000)),
                 # Rewrites the file once at the end to put Cues before the first Cluster.
                 "-cues_to_front", "1"]
    elif spec.shape is Shape.PLAIN_M4A:
        args += ["-c:a", "aac", "-aac_coder", "fast", "-b:a", bitrate, "-movflags", "+faststart", "-f", "mp4"]
    elif spec.shape is Shape.MP3:
        args += ["-c:a", "libmp3lame", "-b:a", bitrate, "-f", "mp3"]
    else:  # pragma: no cover - exhaustive over Shape
        raise ValueError(spec.shape)
    return [*args, str(dest)]


def write_master(signal: SignalSpec, dest: Path) -> Path:
    """Render `signal` to a 16-bit WAV at its own rate (the reference every check uses)."""
    tmp = dest.with_name(f".part-{os.getpid()}-{dest.name}")
    soundfile.write(tmp, signal.render(), signal.sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, dest)
    return dest


def resample_wav(source: Path, sample_rate: int, dest: Path) -> Path:
    tmp = dest.with_name(f".part-{os.getpid()}-{dest.name}")
    _run([FFMPEG, *_FFMPEG_QUIET, "-i", str(source), "-ar", str(sample_rate),
          "-c:a", "pcm_s16le", "-f", "wav", str(tmp)])
    os.replace(tmp, dest)
    return dest


def probe_duration_s(path: Path | str) -> float:
    out = _run([FFPROBE, "-v", "error", "-show_entries", "format=duration",
                "-of", "default=nw=1:nk=1", str(path)])
    return float(out.strip())


def _run(args: Sequence[str]) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


# --------------------------------------------------------------------------------------------
# Encoded files and their cache


@dataclass(frozen=True)
class MediaFile:
    """An encoded test file and what a test needs to know about it."""

    spec: MediaSpec
    path: Path
    master: Path  # the lossless WAV it was encoded from (at signal.sample_rate)
    size_bytes: int
    duration_s: float  # as ffprobe reports it (includes codec padding)

    @property
    def ext(self) -> str:
        return self.spec.shape.ext

    @property
    def content_type(self) -> str:
        return self.spec.shape.content_type

    @property
    def signal(self) -> SignalSpec:
        return self.spec.signal

    @property
    def average_bytes_per_second(self) -> float:
        return self.size_bytes / self.duration_s

    def bytes_for_seconds(self, seconds: float = 10.0) -> int:
        """What `seconds` of this stream weigh at its average bitrate (container included)."""
        return int(round(self.average_bytes_per_second * seconds))


def clip_byte_budget(media: MediaFile, clip_s: float = 10.0) -> int:
    """Bytes of one clip at the stream's average bitrate: the unit for bytes-per-clip bounds."""
    return media.bytes_for_seconds(clip_s)


class MediaLibrary:
    """Encodes test media on demand and keeps it under `root` (one folder per signal).

    Files are written under a temporary name and renamed, so a cache shared between runs
    (e.g. ``AUDIOSETDL_TEST_MEDIA_CACHE``) never holds a half-written file.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def signal_dir(self, signal: SignalSpec) -> Path:
        d = self.root / f"signal-{signal.duration_s:g}s-{signal.key()}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def master(self, signal: SignalSpec) -> Path:
        path = self.signal_dir(signal) / "master.wav"
        return path if path.exists() else write_master(signal, path)

    def master_at(self, signal: SignalSpec, sample_rate: int) -> Path:
        """The master resampled to `sample_rate` by ffmpeg (as a decode to that rate would be)."""
        if sample_rate == signal.sample_rate:
            return self.master(signal)
        path = self.signal_dir(signal) / f"master-{sample_rate}.wav"
        return path if path.exists() else resample_wav(self.master(signal), sample_rate, path)

    def get(self, spec: MediaSpec) -> MediaFile:
        master = self.master(spec.signal)
        path = self.signal_dir(spec.signal) / spec.file_name()
        if not path.exists():
            tmp = path.with_name(f".part-{os.getpid()}-{threading.get_ident()}-{path.name}")
            _run(encode_args(spec, master, tmp))
            os.replace(tmp, path)
        return MediaFile(spec=spec, path=path, master=master,
                         size_bytes=path.stat().st_size, duration_s=probe_duration_s(path))

    def get_many(self, specs: Iterable[MediaSpec]) -> list[MediaFile]:
        """Encode several files in parallel (ffmpeg's audio encoders use one core each)."""
        specs = list(specs)
        for signal in {s.signal for s in specs}:
            self.master(signal)  # once, before the encoders race for it
        with ThreadPoolExecutor(max_workers=max(1, min(len(specs), os.cpu_count() or 1))) as pool:
            return list(pool.map(self.get, specs))

    def hls(self, spec: HlsSpec) -> HlsMedia:
        """`spec`'s playlist and segments, encoded once into their own folder."""
        master = self.master(spec.signal)
        folder = self.signal_dir(spec.signal) / f"hls-{spec.segment_type}-{spec.key()}"
        if not folder.exists():
            tmp = folder.with_name(f".part-{os.getpid()}-{threading.get_ident()}-{folder.name}")
            tmp.mkdir()
            _run(hls_encode_args(spec, master, tmp))
            os.replace(tmp, folder)
        return HlsMedia(spec=spec, folder=folder, master=master)

    def dash_manifest(self, signal: SignalSpec, segment_s: float = 5.0) -> Path:
        """A DASH manifest (``audio.mpd``, SegmentTemplate + SegmentTimeline) beside its AAC-LC
        fMP4 init and media segments, as ffmpeg's dash muxer writes them; returns the manifest."""
        master = self.master(signal)
        folder = self.signal_dir(signal) / f"mpd-{segment_s:g}s"
        if not folder.exists():
            tmp = folder.with_name(f".part-{os.getpid()}-{threading.get_ident()}-{folder.name}")
            tmp.mkdir()
            _run([FFMPEG, *_FFMPEG_QUIET, "-i", str(master), "-map", "0:a", "-map_metadata", "-1",
                  "-ac", "2", "-ar", "44100", "-c:a", "aac", "-aac_coder", "fast", "-b:a", "128k",
                  "-f", "dash", "-seg_duration", f"{segment_s:g}", "-use_template", "1", "-use_timeline", "1",
                  str(tmp / "audio.mpd")])
            os.replace(tmp, folder)
        return folder / "audio.mpd"

    def shapes(self, signal: SignalSpec, shapes: Iterable[Shape] = tuple(Shape),
               **encoding: object) -> dict[Shape, MediaFile]:
        """Every shape of one signal, keyed by shape. `encoding` goes to MediaSpec."""
        specs = [MediaSpec(signal=signal, shape=s, **encoding) for s in shapes]  # type: ignore[arg-type]
        return {m.spec.shape: m for m in self.get_many(specs)}


# --------------------------------------------------------------------------------------------
# HLS: a playlist and its segments


HLS_SEGMENT_TYPES = ("fmp4", "mpegts")
HLS_PLAYLIST = "audio.m3u8"


@dataclass(frozen=True)
class HlsSpec:
    """An audio-only HLS rendition of a signal: AAC-LC in fMP4 or MPEG-TS segments."""

    signal: SignalSpec = field(default_factory=SignalSpec)
    segment_type: str = "fmp4"  # one of HLS_SEGMENT_TYPES
    segment_s: float = 6.0  # ffmpeg's -hls_time (segments end on the next packet after it)
    single_file: bool = False  # one media file, segments addressed by #EXT-X-BYTERANGE
    bitrate_kbps: int = 128
    sample_rate: int = 44_100

    def key(self) -> str:
        return _stable_key(asdict(self))


@dataclass(frozen=True)
class HlsMedia:
    """An HLS rendition on disk: `folder` holds the playlist and every file it names."""

    spec: HlsSpec
    folder: Path
    master: Path

    @property
    def playlist(self) -> Path:
        return self.folder / HLS_PLAYLIST

    @property
    def files(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())

    @property
    def media_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files if p.name != HLS_PLAYLIST)

    def segment_names(self) -> list[str]:
        """The media files the playlist names, in order (one name per segment)."""
        return [line for line in self.playlist.read_text().splitlines() if line and not line.startswith("#")]


def hls_encode_args(spec: HlsSpec, master: Path, folder: Path) -> list[str]:
    """ffmpeg's HLS muxer: the lossless master as a VOD audio playlist in `folder`."""
    if spec.segment_type not in HLS_SEGMENT_TYPES:
        raise ValueError(spec.segment_type)
    ext = "m4s" if spec.segment_type == "fmp4" else "ts"
    args = [FFMPEG, *_FFMPEG_QUIET, "-i", str(master), "-map", "0:a", "-map_metadata", "-1",
            "-fflags", "+bitexact", "-flags:a", "+bitexact", "-ac", "2", "-ar", str(spec.sample_rate),
            "-c:a", "aac", "-aac_coder", "fast", "-b:a", f"{spec.bitrate_kbps}k",
            "-f", "hls", "-hls_time", f"{spec.segment_s:g}", "-hls_playlist_type", "vod",
            "-hls_segment_type", spec.segment_type]
    if spec.segment_type == "fmp4":
        args += ["-hls_fmp4_init_filename", "init.mp4"]
    if spec.single_file:
        args += ["-hls_flags", "single_file", "-hls_segment_filename", str(folder / f"media.{ext}")]
    else:
        args += ["-hls_segment_filename", str(folder / f"seg%03d.{ext}")]
    return [*args, str(folder / HLS_PLAYLIST)]


# --------------------------------------------------------------------------------------------
# Checking what a cut holds


def decode(source: Path | str, sample_rate: int = 16_000, start_s: float | None = None,
           duration_s: float | None = None) -> np.ndarray:
    """Decode to mono float32 at `sample_rate` with ffmpeg (a path or a URL)."""
    args = [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error"]
    if start_s is not None:
        args += ["-ss", f"{start_s:.6f}"]
    args += ["-i", str(source)]
    if duration_s is not None:
        args += ["-t", f"{duration_s:.6f}"]
    args += ["-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-c:a", "pcm_f32le", "-"]
    done = subprocess.run(args, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg decode of {source} failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return np.frombuffer(done.stdout, dtype="<f4").copy()


def estimate_time_s(samples: np.ndarray, sample_rate: int, signal: SignalSpec,
                    window_s: float = 0.25) -> float:
    """Where `samples[0]` lies in the signal, from the chirp's frequency alone (about ±0.1 s).

    Needs no master: each window's spectral peak gives the time of its centre; the median
    over windows of (that time - the window's offset) is the start.
    """
    n = int(window_s * sample_rate)
    if len(samples) < n:
        raise ValueError(f"need at least {window_s} s of samples, got {len(samples) / sample_rate:.3f} s")
    window = np.hanning(n)
    n_fft = 8 * n  # zero-padding: finer peak position
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    band = (freqs >= signal.chirp_start_hz - 20) & (freqs <= signal.chirp_end_hz + 20)
    starts = []
    for offset in range(0, len(samples) - n + 1, n):
        spectrum = np.abs(np.fft.rfft(samples[offset:offset + n] * window, n_fft))
        peak_hz = freqs[band][np.argmax(spectrum[band])]
        centre_s = (offset + n / 2) / sample_rate
        starts.append(float(signal.time_at_frequency(peak_hz)) - centre_s)
    return float(np.median(starts))


def locate_s(samples: np.ndarray, sample_rate: int, master_at_rate: Path, approx_start_s: float,
             search_s: float = 0.5) -> float:
    """Where `samples[0]` lies in the master, to the sample, by cross-correlation.

    `master_at_rate` is the master at `sample_rate` (MediaLibrary.master_at). The answer may be
    negative (a decode that starts with codec priming the master never had).
    """
    info = soundfile.info(str(master_at_rate))
    if info.samplerate != sample_rate:
        raise ValueError(f"master is {info.samplerate} Hz, samples are {sample_rate} Hz")
    n = len(samples)
    lo = int(round((approx_start_s - search_s) * sample_rate))
    hi = int(round((approx_start_s + search_s) * sample_rate)) + n
    read_lo, read_hi = max(lo, 0), min(hi, info.frames)
    ref = np.zeros(hi - lo, dtype=np.float64)
    if read_hi > read_lo:
        part, _ = soundfile.read(str(master_at_rate), start=read_lo, stop=read_hi, dtype="float64",
                                 always_2d=True)
        ref[read_lo - lo:read_hi - lo] = part.mean(axis=1)
    size = 1 << int(np.ceil(np.log2(len(ref) + n)))
    corr = np.fft.irfft(np.fft.rfft(ref, size) * np.conj(np.fft.rfft(samples.astype(np.float64), size)), size)
    lag = int(np.argmax(corr[:len(ref) - n + 1]))
    return (lo + lag) / sample_rate


def similarity(samples: np.ndarray, sample_rate: int, master_at_rate: Path, start_s: float) -> float:
    """Normalised correlation (1.0 = identical) of `samples` with the master from `start_s`."""
    start = int(round(start_s * sample_rate))
    ref, _ = soundfile.read(str(master_at_rate), start=max(start, 0), stop=max(start, 0) + len(samples),
                            dtype="float64", always_2d=True)
    ref = ref.mean(axis=1)
    x = samples[:len(ref)].astype(np.float64)
    denom = np.linalg.norm(x) * np.linalg.norm(ref)
    return float(np.dot(x, ref) / denom) if denom else 0.0


# --------------------------------------------------------------------------------------------
# Container layout (an independent oracle for the shapes above; top level only)


@dataclass(frozen=True)
class TopLevelItem:
    offset: int
    kind: str  # MP4 box type or WebM element name
    size: int  # whole item, header included


@dataclass(frozen=True)
class SidxReference:
    size_bytes: int
    duration_s: float


def mp4_boxes(path: Path) -> list[TopLevelItem]:
    data = Path(path).read_bytes()
    items, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8:offset + 16])[0]
        elif size == 0:
            size = len(data) - offset
        items.append(TopLevelItem(offset, kind.decode("latin-1"), size))
        offset += size
    return items


def mp4_sidx_references(path: Path) -> tuple[int, list[SidxReference]]:
    """(offset of the first fragment, the references) from the first top-level sidx."""
    data = Path(path).read_bytes()
    box = next(b for b in mp4_boxes(path) if b.kind == "sidx")
    body = data[box.offset + 8:box.offset + box.size]
    version = body[0]
    timescale = struct.unpack(">I", body[8:12])[0]
    if version == 0:
        _, first_offset = struct.unpack(">II", body[12:20])
        pos = 20
    else:
        _, first_offset = struct.unpack(">QQ", body[12:28])
        pos = 28
    count = struct.unpack(">H", body[pos + 2:pos + 4])[0]
    pos += 4
    refs = []
    for i in range(count):
        word, duration, _ = struct.unpack(">III", body[pos + 12 * i:pos + 12 * i + 12])
        refs.append(SidxReference(size_bytes=word & 0x7FFFFFFF, duration_s=duration / timescale))
    # first_offset counts from the byte after the sidx box
    return box.offset + box.size + first_offset, refs


_EBML_NAMES = {0x1A45DFA3: "EBML", 0x18538067: "Segment", 0x114D9B74: "SeekHead", 0x1549A966: "Info",
               0x1654AE6B: "Tracks", 0x1C53BB6B: "Cues", 0x1F43B675: "Cluster", 0xEC: "Void",
               0x1254C367: "Tags", 0x1043A770: "Chapters"}


def _ebml_vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int]:
    first = data[pos]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    value = first if keep_marker else first & (0xFF >> length)
    for i in range(1, length):
        value = (value << 8) | data[pos + i]
    return value, length


def webm_elements(path: Path) -> list[TopLevelItem]:
    """The EBML header, the Segment, then the Segment's children in file order."""
    data = Path(path).read_bytes()
    items, pos = [], 0
    for expect_children in (False, True):
        start = pos
        ident, n = _ebml_vint(data, pos, keep_marker=True)
        size, m = _ebml_vint(data, pos + n, keep_marker=False)
        items.append(TopLevelItem(start, _EBML_NAMES.get(ident, hex(ident)), n + m + size))
        pos = start + n + m + (0 if expect_children else size)
    while pos < len(data):
        start = pos
        ident, n = _ebml_vint(data, pos, keep_marker=True)
        size, m = _ebml_vint(data, pos + n, keep_marker=False)
        items.append(TopLevelItem(start, _EBML_NAMES.get(ident, hex(ident)), n + m + size))
        pos = start + n + m + size
    return items
