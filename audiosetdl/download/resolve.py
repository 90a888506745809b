"""Resolving a video with yt-dlp: which player client asks, which audio format to use, and what
yt-dlp said about the formats it skipped.

Owns: `resolve` (one
``extract_info`` with ``extractor_args`` ``youtube:player_client=<client>``), `YtDlpLogger`
(yt-dlp's messages into logging, and the notes on skipped formats it gathers per resolve),
choosing the audio format (and, with `video`, the video format), and `Resolved`.

YouTube in 2026 (see the field notes): yt-dlp's default clients change every few months; a
client may get only SABR formats (no URL), formats that need a GVS PO token are skipped (logged
at debug level for the default clients), and some URLs serve the first ~1 MiB and then 403. A
failure that another client could avoid is raised `client_fixable`; the fetcher then resolves the
video again with the next client.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, replace

import yt_dlp

from audiosetdl.download.classify import classify
from audiosetdl.download.errors import ClipError, Failure, Reason

log = logging.getLogger(__name__)

YOUTUBE_EXTRACTOR_KEY = "Youtube"  # info["extractor_key"] of YouTube videos: the only ones clients apply to
AVAILABLE_AT_MAX_WAIT_S = 60.0  # a format YouTube releases later than this is reported unavailable, not waited for
VIDEO_MAX_HEIGHT = 480  # with `video`: the best video-only format up to this height (else the smallest)
HTTP_PROTOCOLS = ("http", "https")
HLS_PROTOCOLS = ("m3u8", "m3u8_native")
_DASH_EXTS = ("m4a", "webm", "mp4")

# yt-dlp's texts about formats it left out (extractor/youtube/_video.py), as (pattern, note).
_SKIP_NOTES = (
    (re.compile(r"(\S+) client (\S+) formats require a GVS PO Token which was not provided"),
     "{0} {1} formats skipped: they need a GVS PO Token"),
    (re.compile(r"Some (\S+) client https formats have been skipped as they are missing a URL"),
     "{0} https formats skipped: SABR only (no URL)"),
)


class YtDlpLogger:
    """yt-dlp's messages into logging (it prints errors to stderr even when quiet), and the notes
    on skipped formats since the last `take_notes()` (one YoutubeDL per worker: one thread)."""

    _log = logging.getLogger("audiosetdl.yt_dlp")

    def __init__(self) -> None:
        self._notes: list[str] = []
        self._lock = threading.Lock()

    def take_notes(self) -> tuple[str, ...]:
        with self._lock:
            notes, self._notes = tuple(dict.fromkeys(self._notes)), []
        return notes

    def _note(self, msg: str) -> None:
        for pattern, note in _SKIP_NOTES:
            m = pattern.search(msg)
            if m:
                with self._lock:
                    self._notes.append(note.format(*m.groups()))

    def debug(self, msg: str) -> None:
        self._note(msg)
        self._log.debug("%s", msg)

    def info(self, msg: str) -> None:
        self._log.debug("%s", msg)

    def warning(self, msg: str) -> None:
        self._note(msg)
        self._log.info("%s", msg)

    def error(self, msg: str) -> None:
        self._log.info("%s", msg)


def install_logger(ydl: yt_dlp.YoutubeDL) -> YtDlpLogger:
    """Route `ydl`'s messages through a YtDlpLogger. yt-dlp writes the PO-token notes of its
    default clients only when verbose; verbose is set after construction, so yt-dlp's start-up
    debug header is not produced, and it only costs debug records that logging filters out."""
    logger = YtDlpLogger()
    ydl.params["logger"] = logger
    ydl.params["verbose"] = True
    return logger


@dataclass(frozen=True)
class Resolved:
    info: dict
    client: str  # the player client asked for ("default": yt-dlp's own), or "" for other sites
    notes: tuple[str, ...]  # formats yt-dlp skipped, and why

    @property
    def is_youtube(self) -> bool:
        return self.info.get("extractor_key") == YOUTUBE_EXTRACTOR_KEY


def resolve(ydl: yt_dlp.YoutubeDL, logger: YtDlpLogger, url: str, ytid: str, client: str) -> Resolved:
    """``extract_info`` with the player client `client`; raises ClipError (client_fixable for a
    missing format, with yt-dlp's notes on what it skipped)."""
    extractor_args = dict(ydl.params.get("extractor_args") or {})
    extractor_args["youtube"] = {**extractor_args.get("youtube", {}), "player_client": [client]}
    ydl.params["extractor_args"] = extractor_args
    logger.take_notes()
    try:
        info = ydl.extract_info(url, download=False)
    except Exception as exc:  # noqa: BLE001 - DownloadError and anything under it
        failure, notes = classify(exc, ytid), logger.take_notes()
        error = ClipError(_with_notes(failure, notes), client_fixable=failure.reason is Reason.FORMAT_UNAVAILABLE)
        error.notes = notes
        raise error.noting(client=client) from exc
    if not isinstance(info, dict):
        raise ClipError.of(Reason.UNKNOWN, "yt-dlp returned no information").noting(client=client)
    resolved = Resolved(info, client, logger.take_notes())
    return resolved if resolved.is_youtube else Resolved(info, "", resolved.notes)


def _with_notes(failure: Failure, notes: tuple[str, ...]) -> Failure:
    return replace(failure, message=f"{failure.message} [{'; '.join(notes)}]") if notes else failure


# ------------------------------------------------------------------------- format choice --

def is_http(fmt: dict) -> bool:
    return bool(fmt.get("url")) and (fmt.get("protocol") or "https") in HTTP_PROTOCOLS and not fmt.get("has_drm")


def is_hls(fmt: dict) -> bool:
    return bool(fmt.get("url")) and fmt.get("protocol") in HLS_PROTOCOLS and not fmt.get("has_drm")


def is_downloadable(fmt: dict) -> bool:
    """A format yt-dlp's own downloader may fetch (any protocol with a URL)."""
    return bool(fmt.get("url")) and not fmt.get("has_drm")


def audio_candidates(info: dict, protocols=is_http) -> list[dict]:
    """Audio-only formats that `protocols` accepts, those whose index we can read first, else
    yt-dlp's order (best last in its list, so best first here)."""
    formats = [f for f in (info.get("formats") or [info]) if protocols(f)]
    audio_only = [f for f in formats if f.get("vcodec") == "none" and f.get("acodec") != "none"]
    pool = audio_only or [f for f in formats if f.get("acodec") not in ("none", None)] or formats
    best_first = list(reversed(pool))
    return sorted(best_first, key=lambda f: not _looks_indexed(f))  # stable: keeps quality order


def _looks_indexed(fmt: dict) -> bool:
    container = fmt.get("container") or ""
    return container.endswith("_dash") or (fmt.get("ext") in _DASH_EXTS and not container)


def audio_format(resolved: Resolved) -> dict:
    """The format to cut the clip from: an http(s) DASH format when there is one, else HLS, else
    any other format with a URL (for yt-dlp's own downloader). Waits for a format's
    `available_at` (early requests 403) when that is soon."""
    candidates = (audio_candidates(resolved.info) or audio_candidates(resolved.info, is_hls)
                  or audio_candidates(resolved.info, is_downloadable))
    if not candidates:
        message = "no audio format with a URL"
        if resolved.notes:
            message += f" [{'; '.join(resolved.notes)}]"
        raise ClipError.of(Reason.FORMAT_UNAVAILABLE, message, client_fixable=True)
    fmt = candidates[0]
    wait = (fmt.get("available_at") or 0) - time.time()
    if wait > AVAILABLE_AT_MAX_WAIT_S:
        raise ClipError.of(Reason.FORMAT_UNAVAILABLE, f"YouTube releases the format only in {wait:.0f} s",
                           client_fixable=True)
    if wait > 0:
        time.sleep(wait)
    return fmt


def video_format(info: dict) -> dict:
    videos = [f for f in reversed(info.get("formats") or []) if is_http(f)
              and f.get("vcodec") not in ("none", None) and f.get("acodec") in ("none", None)]
    if not videos:
        raise ClipError.of(Reason.FORMAT_UNAVAILABLE, "no video-only http format")
    small = [f for f in videos if (f.get("height") or 0) <= VIDEO_MAX_HEIGHT]
    return small[0] if small else min(videos, key=lambda f: f.get("height") or 0)
