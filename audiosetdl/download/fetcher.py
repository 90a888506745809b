"""Clips from YouTube: resolve a video with one long-lived YoutubeDL, fetch only the bytes that
hold the segment, in bounded range requests, and decode them sample-exact to 16 kHz mono FLAC.

Owns: `ClipFetcher` (a worker process holds one, and with it one `yt_dlp.YoutubeDL` for its
whole life), `FetchSettings` and `ClipResult`; trying the player clients in turn; writing
outputs atomically. The pieces live beside it: `methods` (the format -> the clip's samples, by
the method the format allows), `resolve` (yt-dlp, clients, format choice), `http` (bounded ranges),
`index`/`mp4`/`webm` (container indexes), `cut` (the timeline and the ffmpeg decode),
`fallback` (the range-chunking proxy), `hls`/`hls_cut`/`mpegts` (HLS) and `ytdlp_range`
(yt-dlp's own downloader).

How a clip is made from the chosen format (methods "index", "fallback", "hls", "ytdlp"): see
`methods`.

Client fallback: a failure another player client might not meet (`ClipError.client_fixable`: a
403/416 on a media range, formats skipped for a missing PO token or SABR-only, no usable audio
format) makes the fetcher resolve the video again with the next client of
`FetchSettings.player_clients` before the attempt counts as failed. Once every client has failed
so, one last attempt hands the first client's formats (no second resolve) to yt-dlp's downloader;
a video is given up only after that. Other sites than YouTube (e.g. yt-dlp's generic extractor)
get one try.

Failures raise `ClipError` carrying the media bytes and requests spent and where they were met
(client, format, method). Nothing is retried here beyond the clients: the caller owns retries
and back-off. Outputs are written under temporary names and renamed only once all of them are
complete and the clip has been checked.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import soundfile
import yt_dlp

from audiosetdl.config import DEFAULT_PLAYER_CLIENTS
from audiosetdl.download.errors import ClipError
from audiosetdl.download.http import FetchCounter, MediaSource, clip_error, with_counts
from audiosetdl.download.index import MAX_REQUEST_BYTES
from audiosetdl.download.methods import YTDLP_METHOD, ClipMaker, Outputs
from audiosetdl.download.resolve import (
    Resolved,
    audio_candidates,
    audio_format,
    install_logger,
    is_downloadable,
    resolve,
    video_format,
)
from audiosetdl.download.video import make_video
from audiosetdl.download.ytdlp_range import ytdlp_format
from audiosetdl.rundir import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchSettings:
    ydl_params: dict = field(default_factory=dict)  # extra yt-dlp params (cookies, proxy, js runtimes, sleep...)
    sample_rate: int = 16000
    max_request_bytes: int = MAX_REQUEST_BYTES
    timeout: float = 30.0
    keep_original: bool = False  # also keep the untranscoded stream cut (e.g. .m4a/.webm) beside the flac
    video: bool = False  # also keep an mp4 of the segment (video+audio), like marl/audiosetdl could
    player_clients: tuple[str, ...] = DEFAULT_PLAYER_CLIENTS  # YouTube player clients, tried in this order
    charge: Callable[[], None] | None = None  # blocks until the egress budget allows one more request (re-resolves)


@dataclass(frozen=True)
class ClipResult:
    path: Path
    bytes_fetched: int  # media bytes read from the source (index, fragments; video too with `video`)
    requests: int  # media HTTP requests made (yt-dlp's own extraction requests not included; nor, for
    # method "ytdlp", the requests its downloader's ffmpeg made, which nothing here can count)
    padded_seconds: float  # silence appended because the video ends before `end`
    format_id: str  # the audio format used
    method: str  # "index" | "hls" | "fallback" | "ytdlp"
    client: str = ""  # the player client whose formats made the clip ("" for other sites)
    notes: tuple[str, ...] = ()  # yt-dlp's words on the formats it skipped, every client tried
    message: str = ""  # what the clients tried before this one met


class ClipFetcher:
    """Makes clips, one `fetch` at a time, with one YoutubeDL for its whole life.

    Not thread-safe: a worker holds one. `close()` releases the YoutubeDL (if it made it) and the
    fallback proxy.
    """

    def __init__(self, settings: FetchSettings, ydl: yt_dlp.YoutubeDL | None = None) -> None:
        self.settings = settings
        self._owns_ydl = ydl is None
        if ydl is None:
            params = {"quiet": True, "no_warnings": True, "noprogress": True, "noplaylist": True,
                      "format": "bestaudio/best", "socket_timeout": settings.timeout,
                      **settings.ydl_params,
                      # A refusal must reach us as an exception (yt-dlp's CLI default only logs it).
                      "ignoreerrors": False}
            ydl = yt_dlp.YoutubeDL(params)
        self._ydl = ydl
        self._logger = install_logger(ydl)
        self._maker = ClipMaker(ydl, settings.sample_rate, settings.max_request_bytes, settings.timeout)

    def close(self) -> None:
        self._maker.close()
        if self._owns_ydl:
            self._ydl.close()

    def __enter__(self) -> ClipFetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -----------------------------------------------------------------------------------

    def fetch(self, url: str, ytid: str, start: float, end: float, dest: Path) -> ClipResult:
        """Make `dest` (FLAC) from [start, end] seconds of `url`; raises ClipError.

        Tries the player clients in turn while the failure is one another client might not meet;
        the error raised at the end names every client's failure."""
        if not 0 <= start < end:
            raise ValueError(f"not a segment: [{start}, {end}]")
        counter = FetchCounter()
        failures: list[ClipError] = []
        resolved: list[Resolved] = []  # each client's formats, in the order asked
        segment = (Fraction(repr(float(start))), Fraction(repr(float(end))))
        for client in self.settings.player_clients or DEFAULT_PLAYER_CLIENTS:
            if failures and self.settings.charge is not None:
                self.settings.charge()  # another request to YouTube for this video: the budget counts it
            try:
                clip = self._fetch_with(client, url, ytid, *segment, Path(dest), counter, resolved)
            except ClipError as exc:
                failures.append(with_counts(exc, counter))
                if not exc.client_fixable or not exc.client:  # no client: not YouTube, clients don't apply
                    break
                log.info("%s: %s with client %s; trying the next client", ytid, exc, client)
            else:
                return _after(clip, failures, counter)
        else:
            # Every client failed in a way another might not have: yt-dlp's own downloader, once,
            # with the first client's formats that had an audio format at all.
            last_resort = next((r for r in resolved if audio_candidates(r.info, is_downloadable)), None)
            if last_resort is not None:
                log.info("%s: every player client failed; trying yt-dlp's downloader", ytid)
                try:
                    clip = self._fetch_with(last_resort.client, url, ytid, *segment, Path(dest), counter,
                                            [last_resort], method=YTDLP_METHOD)
                except ClipError as exc:
                    failures.append(with_counts(exc, counter))
                else:
                    return _after(clip, failures, counter)
        raise _all_clients_failed(failures)

    def _fetch_with(self, client: str, url: str, ytid: str, start: Fraction, end: Fraction, dest: Path,
                    counter: FetchCounter, resolved_by: list[Resolved], method: str = "") -> ClipResult:
        """One attempt with one client's formats (`resolved_by` collects them; given one, it is
        reused rather than resolved again). `method` "ytdlp" skips our own paths."""
        if resolved_by and resolved_by[-1].client == client:
            resolved = resolved_by[-1]
        else:
            resolved = resolve(self._ydl, self._logger, url, ytid, client)
            resolved_by.append(resolved)
        fmt: dict = {}
        try:
            if method == YTDLP_METHOD:
                fmt = ytdlp_format(audio_candidates(resolved.info, is_downloadable))
            else:
                fmt = audio_format(resolved)
            source = MediaSource(self._ydl, fmt, ytid, counter, timeout=self.settings.timeout,
                                 max_request_bytes=self.settings.max_request_bytes)
            # Absolute: a relative name starting with '-' (as YouTube IDs may) would read as an option.
            with self._outputs(dest.absolute(), fmt) as outputs:
                padded, method = self._maker.make_clip(source, resolved, fmt, start, end, outputs, method)
                if outputs.video is not None:
                    make_video(MediaSource(self._ydl, video_format(resolved.info), ytid, counter,
                                           timeout=self.settings.timeout,
                                           max_request_bytes=self.settings.max_request_bytes),
                               resolved.info.get("duration"), float(start), float(end), outputs.clip, outputs.video)
        except ClipError as exc:
            exc.notes = exc.notes or resolved.notes
            raise exc.noting(client=resolved.client, format_id=str(fmt.get("format_id") or ""), method=method)
        except (OSError, RuntimeError, soundfile.LibsndfileError) as exc:
            raise clip_error(exc, ytid, counter).noting(client=resolved.client,
                                                         format_id=str(fmt.get("format_id") or "")) from exc
        return ClipResult(path=dest, bytes_fetched=counter.bytes, requests=counter.requests, padded_seconds=padded,
                          format_id=str(fmt.get("format_id")), method=method, client=resolved.client,
                          notes=resolved.notes)

    @contextlib.contextmanager
    def _outputs(self, dest: Path, fmt: dict) -> Iterator[Outputs]:
        with contextlib.ExitStack() as stack:
            outputs = Outputs(clip=stack.enter_context(atomic_path(dest)))
            if self.settings.keep_original:
                outputs.original = stack.enter_context(atomic_path(dest.with_suffix(f".{fmt.get('ext') or 'bin'}")))
            if self.settings.video:
                outputs.video = stack.enter_context(atomic_path(dest.with_suffix(".mp4")))
            yield outputs

def _after(clip: ClipResult, failures: list[ClipError], counter: FetchCounter) -> ClipResult:
    """A clip made after `failures`: charged with the whole fetch, and saying what came first."""
    notes = tuple(dict.fromkeys(n for e in failures for n in e.notes)) + clip.notes
    return replace(clip, bytes_fetched=counter.bytes, requests=counter.requests, notes=notes,
                   message=_failures_text(failures))


def _all_clients_failed(failures: list[ClipError]) -> ClipError:
    """The first client's failure (yt-dlp's own clients: the main road), its message listing what
    every client met when there were several."""
    first = failures[0]
    if len(failures) > 1:
        first.failure = replace(first.failure, message=f"every player client failed: {_failures_text(failures)}")
        first.client = ",".join(dict.fromkeys(e.client for e in failures))
        first.notes = tuple(dict.fromkeys(n for e in failures for n in e.notes))
    return first


def _failures_text(failures: list[ClipError]) -> str:
    return "; ".join(f"{e.client or '?'}{'/' + e.method if e.method else ''}: {e.failure.reason.value} "
                     f"({e.failure.message})" for e in failures)
