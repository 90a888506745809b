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
- anything else (MPEG-TS through ffmpeg's HLS demuxer, Matroska/WebM): ffmpeg's timeline, taken as
  source time but not established to the sample.

The section is widened by `YTDLP_MARGIN_S` on each side (decoder preroll, resampler margins, a seek
that lands on an earlier packet), and the clip is trimmed by sample index in `cut.decode_cut`.
yt-dlp's params are set for the one download and restored after it; its messages go to the
YoutubeDL's logger, ffmpeg runs with ``-loglevel quiet`` (the YoutubeDL is quiet).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import yt_dlp
from yt_dlp.utils import download_range_func

from audiosetdl.download.cut import AAC_FRAME_SAMPLES, DECODE_TIMEOUT_S, decode_cut, trim_plan
from audiosetdl.download.errors import ClipError, Reason, classify

FFPROBE = "ffprobe"
YTDLP_MARGIN_S = Fraction(1)  # audio downloaded on each side of the segment
OUTPUT_TS_OFFSET_S = 10  # added to every output timestamp: NUT refuses negative ones (priming at a stream's start)
_SECTION_DIGITS = 3  # the section's bounds in whole milliseconds (FFmpegFD passes str(float))


def timeline_delay(fmt: dict, sample_rate: int) -> Fraction:
    """ffmpeg's timeline for this format minus source time (see the module docstring)."""
    fragmented_mp4 = (fmt.get("protocol") or "https") in ("http", "https") and \
        str(fmt.get("container") or "").endswith("_dash") and str(fmt.get("acodec") or "").startswith("mp4a")
    return Fraction(AAC_FRAME_SAMPLES, sample_rate) if fragmented_mp4 else Fraction(0)


def decode_with_ytdlp(ydl: yt_dlp.YoutubeDL, info: dict, fmt: dict, ytid: str, start: Fraction, end: Fraction,
                      clip_samples: int, out_rate: int, scratch: Callable[[str], Path]) -> np.ndarray:
    """The clip's samples from `fmt` of `info`, downloaded by yt-dlp's FFmpegFD."""
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
        first_pts, sample_rate = _first_packet(path)
        decoded_start = first_pts - OUTPUT_TS_OFFSET_S - timeline_delay(fmt, sample_rate)
        return decode_cut(path, trim_plan(start, clip_samples, decoded_start, sample_rate, out_rate), out_rate)
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


def _first_packet(path: Path) -> tuple[Fraction, int]:
    """(timestamp of the first audio packet in seconds, exact; the stream's sample rate)."""
    args = [FFPROBE, "-v", "error", "-select_streams", "a:0", "-show_entries",
            "packet=pts:stream=time_base,sample_rate", "-read_intervals", "%+#1", "-of", "json", str(path)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=DECODE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ClipError.of(Reason.DECODE_ERROR, "ffprobe of the section took too long") from None
    try:
        probe = json.loads(done.stdout)
        stream, packet = probe["streams"][0], probe["packets"][0]
        return Fraction(int(packet["pts"])) * Fraction(stream["time_base"]), int(stream["sample_rate"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise ClipError.of(Reason.DECODE_ERROR, f"no audio packet in the section: {done.stderr.strip()[-300:]}") from None
