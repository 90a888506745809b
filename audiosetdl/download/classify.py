"""Classifying whatever was raised into the failure taxonomy (`audiosetdl.download.errors`).

Owns: `classify()` from yt-dlp's DownloadError / ExtractorError / GeoRestrictedError, yt-dlp and
urllib HTTP errors, socket errors, or YouTube's own message texts; `http_status` anywhere in an
exception chain; `clean_message`, the source's text without yt-dlp's prefix and boilerplate.

YouTube's refusals reach us as text (its playabilityStatus reason, passed through by
yt-dlp), so most of the classification is substring matching on that text; the substrings
are the ones in the project's field notes. Their order matters: the rate-limit and captcha
messages also begin with "Video unavailable", and "blocked it in your country on copyright
grounds" is a geo block, not a copyright takedown.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import urllib.error
from typing import Iterator

from audiosetdl.download.errors import ClipError, Failure, Reason

# --------------------------------------------------------------------------------------------
# Classification

# Checked top to bottom against the case-folded message with curly apostrophes straightened;
# the first rule with a matching substring wins.
_TEXT_RULES: tuple[tuple[Reason, tuple[str, ...]], ...] = (
    # Before "video unavailable": these messages begin with it.
    (Reason.RATE_LIMITED, (
        "has been rate-limited by youtube",
        "this content isn't available, try again later",
        "requiring a captcha challenge",
        "http error 429",
        "too many requests",
    )),
    (Reason.BOT_CHECK, (
        "sign in to confirm you're not a bot",
        "the following content is not available on this app",
    )),
    # The IP, not the video: treated as a (transient) network failure.
    (Reason.NETWORK, ("your ip is likely being blocked",)),
    # Before copyright: "who has blocked it in your country on copyright grounds".
    (Reason.GEO_BLOCKED, (
        "not made this video available in your country",
        "blocked it in your country",
        "not available from your location",
        "not available in your country",
    )),
    (Reason.AGE_RESTRICTED, ("sign in to confirm your age", "age-restricted")),
    (Reason.MEMBERS_ONLY, (
        "join this channel to get access to members-only content",
        "members-only content",
        "available to this channel's members",
    )),
    (Reason.LIVE_OR_PREMIERE, ("this live event will begin in", "premieres in", "premiere will begin")),
    (Reason.DRM, ("this video is drm protected",)),
    (Reason.ACCOUNT_TERMINATED, ("account associated with this video has been terminated",)),
    (Reason.COPYRIGHT, ("due to a copyright claim", "who has blocked it on copyright grounds")),
    (Reason.REMOVED, (
        "removed by the uploader",
        "removed for violating youtube's community guidelines",
        "removed for violating youtube's terms of service",
    )),
    (Reason.PRIVATE, ("private video", "this video is private")),
    (Reason.FORMAT_UNAVAILABLE, ("requested format is not available", "no video formats found")),
    # The generic refusal, last.
    (Reason.UNAVAILABLE, ("video unavailable", "this video is unavailable", "this video is not available")),
)

# Text-only fallbacks, used when no exception in the chain says more.
_HTTP_STATUS_RE = re.compile(r"\bhttp error (\d{3})\b")  # on normalised (case-folded) text
_NETWORK_TEXTS = (
    "timed out", "connection reset", "connection refused", "connection aborted",
    "remote end closed connection", "incompleteread", "bytes read", "a network error has occurred",
    "temporary failure in name resolution", "name or service not known", "network is unreachable",
    "broken pipe", "unable to connect", "content too short", "connection broken",
    "connectionreseterror", "remotedisconnected", "timeouterror",
)
_DOWNLOADED_SHORT_RE = re.compile(r"downloaded \d+ bytes, expected \d+ bytes")
_DECODE_TEXTS = ("invalid data found when processing input", "error while decoding", "could not find codec",
                 "postprocessing:")


def reason_for_http_status(status: int) -> Reason:
    """Direct HTTP answers: 404/410 gone, 429 slow down, 5xx try again, other 4xx an HTTP error."""
    if status in (404, 410):
        return Reason.UNAVAILABLE
    if status == 429:
        return Reason.RATE_LIMITED
    if 500 <= status <= 599:
        return Reason.NETWORK
    return Reason.HTTP_ERROR


def classify(exc: BaseException, ytid: str | None = None) -> Failure:
    """The Failure behind `exc`: from its text (YouTube's refusals), then its exception chain.

    `ytid`, when given, is removed from the message; otherwise the ID in yt-dlp's
    ``[ie] <id>:`` prefix is.
    """
    if isinstance(exc, ClipError):
        return exc.failure
    chain = list(_exception_chain(exc))
    message = clean_message(_first_text(chain), ytid)
    reason = _classify_chain(chain)
    return Failure.of(reason, message)


def _classify_chain(chain: list[BaseException]) -> Reason:
    # yt-dlp is imported where needed: importing it costs ~0.2 s, this module is imported widely.
    from yt_dlp.utils import GeoRestrictedError, PostProcessingError, UserNotLive

    for e in chain:
        if isinstance(e, ClipError):
            return e.failure.reason
    if any(isinstance(e, GeoRestrictedError) for e in chain):
        return Reason.GEO_BLOCKED
    texts = [_normalise(str(e)) for e in chain]
    for reason, needles in _TEXT_RULES:
        if any(needle in text for text in texts for needle in needles):
            return reason
    if any(isinstance(e, UserNotLive) for e in chain):
        return Reason.LIVE_OR_PREMIERE
    status = next((s for s in map(_http_status, chain) if s is not None), None)
    if status is not None:
        return reason_for_http_status(status)
    if any(_is_network_exception(e) for e in chain):
        return Reason.NETWORK
    for text in texts:
        m = _HTTP_STATUS_RE.search(text)
        if m:
            return reason_for_http_status(int(m.group(1)))
    if any(needle in text for text in texts for needle in _NETWORK_TEXTS) or any(
            _DOWNLOADED_SHORT_RE.search(text) for text in texts):
        return Reason.NETWORK
    if any(isinstance(e, PostProcessingError) for e in chain) or any(
            needle in text for text in texts for needle in _DECODE_TEXTS):
        return Reason.DECODE_ERROR
    return Reason.UNKNOWN


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what it wraps: DownloadError.exc_info[1], ExtractorError/RequestError.cause,
    URLError.reason, __cause__, __context__ (each once, breadth first)."""
    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    while queue:
        e = queue.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        exc_info = getattr(e, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) == 3 and isinstance(exc_info[1], BaseException):
            queue.append(exc_info[1])
        for attr in ("cause", "reason"):
            inner = getattr(e, attr, None)
            if isinstance(inner, BaseException):
                queue.append(inner)
        if e.__cause__ is not None:
            queue.append(e.__cause__)
        if e.__context__ is not None:
            queue.append(e.__context__)


def _first_text(chain: list[BaseException]) -> str:
    for e in chain:
        text = str(e).strip()
        if text:
            return text
    return type(chain[0]).__name__


def http_status(exc: BaseException) -> int | None:
    """The HTTP status anywhere in `exc`'s chain (yt-dlp's or urllib's HTTPError), if any."""
    return next((s for s in map(_http_status, _exception_chain(exc)) if s is not None), None)


def _http_status(e: BaseException) -> int | None:
    from yt_dlp.networking.exceptions import HTTPError as YtDlpHTTPError

    if isinstance(e, YtDlpHTTPError):
        return int(e.status)
    if isinstance(e, urllib.error.HTTPError):
        return int(e.code)
    return None


def _is_network_exception(e: BaseException) -> bool:
    from yt_dlp.networking.exceptions import TransportError
    from yt_dlp.utils import ContentTooShortError

    return isinstance(e, (
        TransportError,  # includes yt-dlp's IncompleteRead
        ContentTooShortError,
        http.client.HTTPException,  # IncompleteRead, RemoteDisconnected's base among others
        ConnectionError,  # reset, refused, aborted, broken pipe
        TimeoutError,  # socket.timeout is an alias
        socket.gaierror,
        ssl.SSLError,
        urllib.error.URLError,  # HTTPError (a subclass) was handled before
    ))


def _normalise(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'").casefold()


# --------------------------------------------------------------------------------------------
# Messages

_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PREFIX_RE = re.compile(r"^(?:ERROR:\s*)?(?:\[(?P<ie>[^\]\s]+)\]\s+)?(?:(?P<id>[^\s:\[\]]+):\s+)?")
_BUG_REPORT_RE = re.compile(
    r"[;.]?\s*please report this issue on\s+https://github\.com/\S+/issues\?q=\s*,\s*filling out the "
    r"appropriate issue template\.\s*Confirm you are on the latest version using\s+yt-dlp -U", re.IGNORECASE)
_MIN_ID_LENGTH_TO_REPLACE = 6  # shorter "IDs" would eat ordinary words


def clean_message(text: str, ytid: str | None = None) -> str:
    """The source's text without ``ERROR: [ie] <id>: ``, yt-dlp's bug-report boilerplate, or
    terminal colours; any other mention of the ID becomes ``<id>``."""
    text = _ANSI_RE.sub("", text).strip()
    m = _PREFIX_RE.match(text)
    # yt-dlp's "[ie] <id>: " slot always holds the video ID; without "[ie]" an "x: " is text.
    prefix_id = m.group("id") if m and m.group("ie") else None
    if m and m.group("ie"):
        text = text[m.end():]
    elif text.startswith("ERROR:"):
        text = text[len("ERROR:"):].lstrip()
    text = _BUG_REPORT_RE.sub("", text).strip()
    target = ytid or prefix_id
    if target and len(target) >= _MIN_ID_LENGTH_TO_REPLACE:
        text = text.replace(target, "<id>")
    return text
