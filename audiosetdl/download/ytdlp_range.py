"""The last resort (method "ytdlp"): yt-dlp's own downloader for just the segment, cut by the same
sample-exact decode as the other paths.

Owns: `decode_with_ytdlp`. yt-dlp's ``download_ranges`` hands a section to its FFmpegFD, which runs
``ffmpeg -ss A -t D -i URL -c copy``: ffmpeg's own reading of the URL (its HTTP, HLS or DASH
demuxers, with the YoutubeDL's headers and cookies), so formats of any protocol ffmpeg reads, and
URLs our bounded requests were refused on. Its requests are ffmpeg's, not bounded ones: this is
a last resort.

What makes it exact: ``-copyts`` (``external_downloader_args`` ``ffmpeg_i1``) keeps the input's own
timestamps instead of shifting them by the seek, and the output is NUT (``ffmpeg_o1`` ``-f nut``,
after yt-dlp's ``-f``), which stores each packet's timestamp in the input stream's own time base,
so nothing is rounded (NUT refuses negative timestamps, which a stream's priming frame has: every
timestamp is moved by a whole `OUTPUT_TS_OFFSET_S` with ``-output_ts_offset``, and back). Decoded sample 0 of the output lies at its first packet's timestamp on
ffmpeg's timeline for the input (ffprobe reads it), and `timeline_delay` maps that timeline to
source time:

- an MP4 with an edit list, a DASH manifest (ffmpeg's dash demuxer), MP3 with its LAME tag:
  ffmpeg's timeline is source time (delay 0, measured against the lossless master);
- a fragmented MP4 read directly (DASH m4a over http(s): ``container`` ``*_dash``): ffmpeg's
  timeline is the ``tfdt`` media time, one AAC-LC frame (1024 samples) after source time, as in
  `cut.AudioTiming` without an edit list;
- WebM/Opus: ffmpeg's timeline is source time, in Matroska's whole milliseconds; the packet
  grid (packets of constant length from minus the OpusHead pre-skip, as in `cut.AudioTiming`)
  gives the sample;
- anything else: not established to the sample, so `ytdlp_format` prefers the formats above.
  HLS is refused here (FORMAT_UNAVAILABLE, client_fixable): through ffmpeg's HLS demuxer MPEG-TS
  keeps its raw PTS, which start wherever the muxer put them (1.4 s for ffmpeg's), so the clip
  could come out shifted by that much.

The section is widened by `YTDLP_MARGIN_S` on each side (decoder preroll, resampler margins, a seek
that lands on an earlier packet), and the clip is trimmed by sample index in `cut.decode_cut`.
yt-dlp's params are set for the one download and restored after it; its messages go to the
YoutubeDL's logger, ffmpeg runs with ``-loglevel quiet`` (the YoutubeDL is quiet).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import yt_dlp
from yt_dlp.utils import download_range_func

from audiosetdl.download.cut import AAC_FRAME_SAMPLES, DECODE_TIMEOUT_S, OPUS_RATE, decode_cut, run_ffmpeg, trim_plan
from audiosetdl.download.classify import classify
from audiosetdl.download.errors import ClipError, Reason
from audiosetdl.download.resolve import HLS_PROTOCOLS
from audiosetdl.download.webm_clusters import opus_packet_samples

FFPROBE = "ffprobe"
YTDLP_MARGIN_S = Fraction(1)  # audio downloaded on each side of the segment
OUTPUT_TS_OFFSET_S = 10  # added to every output timestamp: NUT refuses negative ones (priming at a stream's start)
_MATROSKA_TICK_S = Fraction(1, 1000)  # WebM timestamps are whole milliseconds
_HEXDUMP_COLUMNS = 40  # ffprobe's -show_data: 8 groups of 4 hex digits, a space after each
_SECTION_DIGITS = 3  # the section's bounds in whole milliseconds (FFmpegFD passes str(float))


def _is_http(fmt: dict) -> bool:
    return (fmt.get("protocol") or "https") in ("http", "https")


def _is_aac(fmt: dict) -> bool:
    return str(fmt.get("acodec") or "").startswith(("mp4a.40.2", "aac")) or fmt.get("acodec") == "mp4a"


def timeline_established(fmt: dict) -> bool:
    """Whether the section's first sample is placed to the sample for this format: AAC-LC in MP4
    over http(s) (fragmented or not) or in a DASH manifest, MP3 and WebM/Opus over http(s)."""
    if _is_http(fmt) and fmt.get("ext") == "webm" and str(fmt.get("acodec") or "") == "opus":
        return True
    if _is_aac(fmt):
        return (_is_http(fmt) and fmt.get("ext") in ("m4a", "mp4")) or fmt.get("protocol") == "http_dash_segments"
    return _is_http(fmt) and (fmt.get("ext") == "mp3" or str(fmt.get("acodec") or "").startswith("mp3"))


def timeline_delay(fmt: dict, sample_rate: int) -> Fraction:
    """ffmpeg's timeline for this format minus source time (see the module docstring)."""
    fragmented_mp4 = _is_http(fmt) and str(fmt.get("container") or "").endswith("_dash") and _is_aac(fmt)
    return Fraction(AAC_FRAME_SAMPLES, sample_rate) if fragmented_mp4 else Fraction(0)


def ytdlp_format(formats: list[dict]) -> dict:
    """The format to hand yt-dlp's downloader: the first of `formats` (best first) whose timeline
    is established to the sample, else the first."""
    return next((f for f in formats if timeline_established(f)), formats[0])


def decode_with_ytdlp(ydl: yt_dlp.YoutubeDL, info: dict, fmt: dict, ytid: str, start: Fraction, end: Fraction,
                      clip_samples: int, out_rate: int, scratch: Callable[[str], Path],
                      original: Path | None = None) -> np.ndarray:
    """The clip's samples from `fmt` of `info`, downloaded by yt-dlp's FFmpegFD (with
    `original`, the section's stream is also copied there, in the container its suffix names)."""
    if fmt.get("protocol") in HLS_PROTOCOLS:
        raise ClipError.of(Reason.FORMAT_UNAVAILABLE, f"HLS format {fmt.get('format_id')} ({fmt.get('acodec')}): "
                           "no exact timing through yt-dlp's downloader", client_fixable=True)
    section = (max(round(start - YTDLP_MARGIN_S, _SECTION_DIGITS), Fraction(0)),
               round(end + YTDLP_MARGIN_S, _SECTION_DIGITS))
    path = scratch("nut")
    path.unlink()  # yt-dlp skips a download whose file exists
    try:
        with _section_params(ydl, fmt, section, path):
            try:
                ydl.process_ie_result(dict(info), download=True)
            except Exception as exc:  # noqa: BLE001 - DownloadError and anything under it
                raise ClipError(classify(exc, ytid)) from exc
        if not path.exists() or not path.stat().st_size:
            raise ClipError.of(Reason.DECODE_ERROR, "yt-dlp's downloader wrote no media for the section")
        first = _first_packet(path)
        first = replace(first, time=first.time - OUTPUT_TS_OFFSET_S)
        plan = trim_plan(start, clip_samples, _source_time(first, fmt), first.sample_rate, out_rate)
        samples = decode_cut(path, plan, out_rate)
        if original is not None:
            run_ffmpeg(["-i", str(path), "-map", "0:a:0", "-c", "copy", "-y", str(original)], DECODE_TIMEOUT_S,
                       "copy of the original")
        return samples
    finally:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".part").unlink(missing_ok=True)


@contextlib.contextmanager
def _section_params(ydl: yt_dlp.YoutubeDL, fmt: dict, section: tuple[Fraction, Fraction],
                    path: Path) -> Iterator[None]:
    """The YoutubeDL's params for one section download of `fmt` to `path`, restored after it."""
    changes = {
        "format": str(fmt["format_id"]),
        "download_ranges": download_range_func(None, [(float(section[0]), float(section[1]))]),
        "force_keyframes_at_cuts": False,
        "outtmpl": {"default": str(path).replace("%", "%%")},
        "paths": {},
        "overwrites": True,
        "fixup": "never",  # a fixup would remux the NUT file into the format's own container
        "postprocessors": [],
        "noprogress": True,
        "quiet": True,
        # Nothing but the one media file: no archive, filters, side files or simulation from the user's params.
        "simulate": False, "skip_download": False, "download_archive": None, "match_filter": None,
        "writeinfojson": False, "writethumbnail": False, "writesubtitles": False, "writeautomaticsub": False,
        "writedescription": False, "getcomments": False,
        # -copyts: the input's timestamps, not shifted by the seek; NUT keeps them in the input's time base.
        "external_downloader_args": {"ffmpeg_i1": ["-copyts"],
                                     "ffmpeg_o1": ["-output_ts_offset", str(OUTPUT_TS_OFFSET_S), "-f", "nut"]},
    }
    saved = {key: ydl.params[key] for key in changes if key in ydl.params}
    ydl.params.update(changes)
    try:
        yield
    finally:
        for key in changes:
            if key in saved:
                ydl.params[key] = saved[key]
            else:
                ydl.params.pop(key, None)


@dataclass(frozen=True)
class _FirstPacket:
    time: Fraction  # its timestamp, seconds (exact in the NUT file's time base)
    sample_rate: int
    codec: str
    data: bytes  # the packet's first bytes
    extradata: bytes


def _first_packet(path: Path) -> _FirstPacket:
    """The first audio packet of the section (ffprobe), with the stream's facts."""
    args = [FFPROBE, "-v", "error", "-select_streams", "a:0", "-show_data", "-show_entries",
            "packet=pts,data:stream=time_base,sample_rate,codec_name,extradata", "-read_intervals", "%+#1",
            "-of", "json", str(path)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=DECODE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ClipError.of(Reason.DECODE_ERROR, "ffprobe of the section took too long") from None
    try:
        probe = json.loads(done.stdout)
        stream, packet = probe["streams"][0], probe["packets"][0]
        return _FirstPacket(Fraction(int(packet["pts"])) * Fraction(stream["time_base"]), int(stream["sample_rate"]),
                            str(stream.get("codec_name") or ""), _hexdump_bytes(packet.get("data") or ""),
                            _hexdump_bytes(stream.get("extradata") or ""))
    except (ValueError, KeyError, IndexError, TypeError):
        raise ClipError.of(Reason.DECODE_ERROR, f"no audio packet in the section: {done.stderr.strip()[-300:]}") from None


def _hexdump_bytes(dump: str) -> bytes:
    """The bytes of ffprobe's -show_data dump ("00000000: 4f70 7573 ...  OpusHead")."""
    out = bytearray()
    for line in dump.splitlines():
        if ": " in line:
            out += bytes.fromhex(line.split(": ", 1)[1][:_HEXDUMP_COLUMNS].replace(" ", ""))
    return bytes(out)


def _source_time(first: _FirstPacket, fmt: dict) -> Fraction:
    """Source time of the section's first decoded sample."""
    if first.codec == "opus" and first.extradata[:8] == b"OpusHead" and first.data and first.data[0] & 0x03 != 3:
        # Matroska's millisecond timestamps: snapped to the packet grid (constant packets, as
        # YouTube's encoder writes), which starts at minus the pre-skip on ffmpeg's timeline.
        pre_skip = Fraction(int.from_bytes(first.extradata[10:12], "little"), OPUS_RATE)
        packet = Fraction(opus_packet_samples(first.data[0]), OPUS_RATE)
        snapped = round((first.time + pre_skip) / packet) * packet - pre_skip
        if abs(snapped - first.time) <= _MATROSKA_TICK_S:
            return snapped
    return first.time - timeline_delay(fmt, first.sample_rate)
