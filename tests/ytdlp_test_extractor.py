"""A test-only yt-dlp extractor that plays YouTube: real refusal texts, or formats on loopback.

Owns: `FakeYoutubeIE`, an InfoExtractor registered under the name "youtube" (so yt-dlp's
messages read ``ERROR: [youtube] <id>: ...`` exactly as in production) that answers YouTube
watch URLs (and ``ytfake:<id>``) from a per-ID script: raise one of YouTube's refusals as
yt-dlp 2026.10.26 words it (ExtractorError(expected=True), or GeoRestrictedError with
countries), or return audio formats whose URLs point at a `tests.mediaserver.MediaServer`;
per player client (``extractor_args`` ``youtube:player_client``, as the real extractor reads
it), formats, a refusal, or formats yt-dlp "skipped" with its own words for why (a missing GVS PO
token at debug level, SABR-only as a warning); `REFUSALS`, the catalogue of those texts with the
Reason each should classify as; and
`youtubedl_with_fake()`, a YoutubeDL holding only this extractor and the generic one, so no
request can leave the machine through any other extractor.

The refusal texts are rebuilt from yt-dlp's YouTube extractor (playabilityStatus reason +
". " + subreason, the login hint appended to "sign in" reasons, the rate-limit and captcha
wording added by yt-dlp) and from YouTube's own reason strings in the field notes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

from yt_dlp import YoutubeDL
from yt_dlp.extractor.common import InfoExtractor
from yt_dlp.extractor.generic import GenericIE
from yt_dlp.utils import ExtractorError

# yt-dlp's `_youtube_login_hint` (cookies method), appended to reasons that say "sign in".
LOGIN_HINT = (
    "Use --cookies-from-browser or --cookies for the authentication. See  "
    "https://github.com/yt-dlp/yt-dlp/wiki/FAQ#how-do-i-pass-cookies-to-yt-dlp  for how to manually "
    "pass cookies. Also see  https://github.com/yt-dlp/yt-dlp/wiki/Extractors#exporting-youtube-cookies  "
    "for tips on effectively exporting YouTube cookies")

RATE_LIMIT_ADVICE = (
    "The current session has been rate-limited by YouTube for up to an hour. It is recommended to "
    "use `-t sleep` to add a delay between video requests to avoid exceeding the rate limit. For more "
    "information, refer to  https://github.com/yt-dlp/yt-dlp/wiki/Extractors"
    "#this-content-isnt-available-try-again-later")


@dataclass(frozen=True)
class Refusal:
    """One way YouTube says no: the text yt-dlp raises, and the Reason code it means."""

    message: str
    reason: str  # an audiosetdl.download.errors.Reason value
    geo_countries: tuple[str, ...] | None = None  # set: raised as GeoRestrictedError


REFUSALS: dict[str, Refusal] = {
    "unavailable": Refusal("Video unavailable", "unavailable"),
    "unavailable_not_available": Refusal("Video unavailable. This video is not available", "unavailable"),
    "private": Refusal(
        f"Private video. Sign in if you've been granted access to this video. {LOGIN_HINT}", "private"),
    "removed_by_uploader": Refusal("Video unavailable. This video has been removed by the uploader", "removed"),
    "removed_guidelines": Refusal(
        "Video unavailable. This video has been removed for violating YouTube's Community Guidelines", "removed"),
    "removed_terms": Refusal(
        "Video unavailable. This video has been removed for violating YouTube's Terms of Service", "removed"),
    "account_terminated": Refusal(
        "Video unavailable. This video is no longer available because the YouTube account associated "
        "with this video has been terminated.", "account_terminated"),
    "copyright_claim": Refusal(
        "Video unavailable. This video is no longer available due to a copyright claim by Example Records",
        "copyright"),
    "copyright_blocked": Refusal(
        "Video unavailable. This video contains content from Example Music, who has blocked it on "
        "copyright grounds", "copyright"),
    # Not in the field notes' table: a rights holder's per-country block is a geo block.
    "copyright_blocked_in_country": Refusal(
        "Video unavailable. This video contains content from Example Music, who has blocked it in your "
        "country on copyright grounds", "geo_blocked"),
    "geo_blocked": Refusal(
        "The uploader has not made this video available in your country", "geo_blocked",
        geo_countries=("US", "CA")),
    "age_restricted": Refusal(
        f"Sign in to confirm your age. This video may be inappropriate for some users. {LOGIN_HINT}",
        "age_restricted"),
    "members_only": Refusal(
        "Join this channel to get access to members-only content like this video, and other exclusive "
        "perks.", "members_only"),
    "live_event": Refusal("This live event will begin in 3 hours.", "live_or_premiere"),
    "premiere": Refusal("Premieres in 14 hours", "live_or_premiere"),
    "drm": Refusal("This video is DRM protected", "drm"),
    # The curly apostrophe is YouTube's.
    "bot_check": Refusal(f"Sign in to confirm you\u2019re not a bot. {LOGIN_HINT}", "bot_check"),
    "bot_check_app": Refusal(
        "The following content is not available on this app.. Watch this content on the latest version "
        "of YouTube.", "bot_check"),
    "rate_limited": Refusal(
        f"Video unavailable. This content isn't available, try again later. {RATE_LIMIT_ADVICE}",
        "rate_limited"),
    "captcha": Refusal(
        "Video unavailable. YouTube is requiring a captcha challenge before playback", "rate_limited"),
    "http_429": Refusal(
        "Unable to download API page: HTTP Error 429: Too Many Requests", "rate_limited"),
    "ip_blocked": Refusal(
        "All player responses are invalid. Your IP is likely being blocked by Youtube", "network"),
    "no_formats": Refusal("No video formats found!", "format_unavailable"),
}


# itag-like formats as YouTube lists its DASH audio
_FORMATS_BY_EXT: dict[str, dict[str, Any]] = {
    "m4a": {"format_id": "140", "acodec": "mp4a.40.2", "asr": 44100, "container": "m4a_dash", "abr": 129.5},
    "webm": {"format_id": "251", "acodec": "opus", "asr": 48000, "container": "webm_dash", "abr": 135.0},
    "mp3": {"format_id": "mp3", "acodec": "mp3", "asr": 44100, "abr": 128.0},
}


def audio_format(url: str, ext: str, *, filesize: int | None = None, **overrides: Any) -> dict[str, Any]:
    """A YouTube-like audio-only format dict for `url` (itag 140 for m4a, 251 for webm)."""
    fmt: dict[str, Any] = {"url": url, "ext": ext, "vcodec": "none", "audio_channels": 2,
                           "protocol": "https" if url.startswith("https:") else "http",
                           **_FORMATS_BY_EXT.get(ext, {"format_id": ext})}
    if filesize is not None:
        fmt["filesize"] = filesize
    fmt.update(overrides)
    return fmt


def hls_audio_format(playlist_url: str, **overrides: Any) -> dict[str, Any]:
    """An audio-only HLS format as yt-dlp lists YouTube's (itag 234: AAC-LC, ext mp4, protocol
    m3u8_native, `url` = the media playlist)."""
    fmt: dict[str, Any] = {"format_id": "234", "url": playlist_url, "manifest_url": playlist_url, "ext": "mp4",
                           "protocol": "m3u8_native", "vcodec": "none", "acodec": "mp4a.40.2", "abr": 128.0,
                           "audio_channels": 2}
    fmt.update(overrides)
    return fmt


@dataclass
class _Served:
    formats: list[dict[str, Any]]
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    """A client whose formats yt-dlp leaves out, saying why as yt-dlp 2026.10.26 does:
    "pot" (they need a GVS PO token; debug level, as for yt-dlp's default clients) or "sabr"
    (no URL: SABR-only; a warning)."""

    why: str  # "pot" | "sabr"

    def report(self, ie: InfoExtractor, ytid: str, client: str) -> None:
        if self.why == "pot":
            ie.write_debug(f"{ytid}: {client} client https formats require a GVS PO Token which was not provided. "
                           "They will be skipped as they may yield HTTP Error 403. You can manually pass a GVS PO "
                           f"Token for this client with --extractor-args \"youtube:po_token={client}.gvs+XXX\". "
                           "For more information, refer to  https://github.com/yt-dlp/yt-dlp/wiki/PO-Token-Guide")
        else:
            ie.report_warning(f"Some {client} client https formats have been skipped as they are missing a URL. "
                              "YouTube may have enabled the SABR-only streaming experiment for the current session. "
                              "See  https://github.com/yt-dlp/yt-dlp/issues/12482  for more details", ytid)


class FakeYoutubeIE(InfoExtractor):
    """Answers YouTube URLs from a script; an ID with no script is "Video unavailable"."""

    IE_NAME = "youtube"  # messages read "[youtube] <id>: ..." as they do in production
    IE_DESC = False  # keep it out of listings
    _VALID_URL = (r"(?:https?://(?:www\.|m\.)?youtube\.com/(?:watch\?(?:.*&)?v=|shorts/|embed/)"
                  r"|https?://youtu\.be/|ytfake:)(?P<id>[0-9A-Za-z_-]+)")
    _GEO_BYPASS = False  # like YoutubeIE: no X-Forwarded-For retry on a geo block
    _NETRC_MACHINE = "youtube"

    def __init__(self, downloader: YoutubeDL | None = None) -> None:
        super().__init__(downloader)
        self._lock = threading.Lock()
        self._script: dict[str, Refusal | _Served] = {}
        self._by_client: dict[str, dict[str, Refusal | _Served | Skipped]] = {}
        self.extractions: list[str] = []  # IDs in the order they were asked for
        self.clients_asked: list[tuple[str, str]] = []  # (ID, player client) per extraction

    @classmethod
    def ie_key(cls) -> str:
        return "Youtube"  # info["extractor_key"] and extractor_args "youtube:..." as for the real one

    @classmethod
    def watch_url(cls, ytid: str) -> str:
        return f"https://www.youtube.com/watch?v={ytid}"

    def refuse(self, ytid: str, refusal: Refusal | str) -> None:
        """Make `ytid` fail with a Refusal, a REFUSALS key, or a free text (ExtractorError)."""
        if isinstance(refusal, str):
            refusal = REFUSALS.get(refusal) or Refusal(refusal, "unknown")
        with self._lock:
            self._script[ytid] = refusal

    def serve(self, ytid: str, formats: list[dict[str, Any]], **info_fields: Any) -> None:
        """Make `ytid` resolve to `formats` (see audio_format) plus extra info fields
        (duration, title, ...)."""
        with self._lock:
            self._script[ytid] = _Served(formats=[dict(f) for f in formats], fields=dict(info_fields))

    def serve_clients(self, ytid: str, by_client: Mapping[str, list[dict[str, Any]] | Refusal | str | Skipped],
                      **info_fields: Any) -> None:
        """Per player client asked for (``extractor_args`` ``youtube:player_client``, "default" when
        none is): formats, a refusal (a Refusal or REFUSALS key), or Skipped("pot"/"sabr"). A client
        not named gets no formats (yt-dlp then says "No video formats found!")."""
        table: dict[str, Refusal | _Served | Skipped] = {}
        for client, entry in by_client.items():
            if isinstance(entry, str):
                entry = REFUSALS[entry]
            table[client] = _Served([dict(f) for f in entry], dict(info_fields)) if isinstance(entry, list) else entry
        with self._lock:
            self._by_client[ytid] = table

    def serve_url(self, ytid: str, url: str, ext: str, *, duration: float | None = None,
                  filesize: int | None = None) -> None:
        self.serve(ytid, [audio_format(url, ext, filesize=filesize)], duration=duration)

    def _real_extract(self, url: str) -> dict[str, Any]:
        ytid = self._match_id(url)
        client = (self._configuration_arg("player_client", ie_key="youtube") or ["default"])[0]
        with self._lock:
            self.extractions.append(ytid)
            self.clients_asked.append((ytid, client))
            by_client = self._by_client.get(ytid)
            entry = (by_client.get(client, _Served(formats=[])) if by_client is not None
                     else self._script.get(ytid, REFUSALS["unavailable"]))
        if isinstance(entry, Skipped):
            entry.report(self, ytid, client)
            entry = _Served(formats=[])
        if isinstance(entry, Refusal):
            if entry.geo_countries is not None:
                self.raise_geo_restricted(entry.message, list(entry.geo_countries), metadata_available=True)
            raise ExtractorError(entry.message, expected=True, video_id=ytid)
        return {
            "id": ytid,
            "title": f"test video {ytid}",
            "formats": [dict(f) for f in entry.formats],
            "webpage_url": self.watch_url(ytid),
            **entry.fields,
        }


class SilentLogger:
    """yt-dlp prints errors to stderr even when quiet; this swallows them (the exception
    still carries the text)."""

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        pass

    def error(self, msg: str) -> None:
        pass


def youtubedl_with_fake(fake: FakeYoutubeIE, params: Mapping[str, Any] | None = None) -> YoutubeDL:
    """A YoutubeDL with only `fake` and the generic extractor (in that order), silent by default."""
    ydl = YoutubeDL({"quiet": True, "no_warnings": True, "noprogress": True, "logger": SilentLogger(),
                     **(params or {})}, auto_init=False)
    ydl.add_info_extractor(fake)
    ydl.add_info_extractor(GenericIE())
    return ydl

