"""Why a clip could not be made: the failure taxonomy, and classifying exceptions into it.

Owns: the `Reason` codes the ledger records, which reasons are permanent (never retried on
resume) and which should pause the whole download pool, the `Failure` value and the
`ClipError` the fetcher raises, `classify()` from whatever was raised (yt-dlp's
DownloadError / ExtractorError / GeoRestrictedError, yt-dlp and urllib HTTP errors, socket
errors, or YouTube's own message texts), and the delay before retrying a transient failure.

YouTube's refusals reach us as text (its playabilityStatus reason, passed through by
yt-dlp), so most of the classification is substring matching on that text; the substrings
are the ones in the project's field notes. Their order matters: the rate-limit and captcha
messages also begin with "Video unavailable", and "blocked it in your country on copyright
grounds" is a geo block, not a copyright takedown.
"""

from __future__ import annotations

import enum
import http.client
import random
import re
import socket
import ssl
import urllib.error
from dataclasses import dataclass
from typing import Iterator


class Reason(str, enum.Enum):
    UNAVAILABLE = "unavailable"
    PRIVATE = "private"
    REMOVED = "removed"
    ACCOUNT_TERMINATED = "account_terminated"
    COPYRIGHT = "copyright"
    GEO_BLOCKED = "geo_blocked"
    AGE_RESTRICTED = "age_restricted"
    MEMBERS_ONLY = "members_only"
    LIVE_OR_PREMIERE = "live_or_premiere"
    DRM = "drm"
    BOT_CHECK = "bot_check"
    RATE_LIMITED = "rate_limited"
    FORMAT_UNAVAILABLE = "format_unavailable"
    NETWORK = "network"
    HTTP_ERROR = "http_error"
    TOO_SHORT = "too_short"
    DECODE_ERROR = "decode_error"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value

    @property
    def permanent(self) -> bool:
        """Retrying from this machine will not help (resume skips it)."""
        return self in PERMANENT_REASONS

    @property
    def pauses_pool(self) -> bool:
        """YouTube is refusing this client, not this video: every worker should stop for a while."""
        return self in POOL_PAUSE_REASONS


PERMANENT_REASONS: frozenset[Reason] = frozenset({
    Reason.UNAVAILABLE,
    Reason.PRIVATE,
    Reason.REMOVED,
    Reason.ACCOUNT_TERMINATED,
    Reason.COPYRIGHT,
    Reason.GEO_BLOCKED,  # for this egress IP
    Reason.AGE_RESTRICTED,  # without age-verified cookies
    Reason.MEMBERS_ONLY,
    Reason.DRM,
    Reason.TOO_SHORT,  # the video ends before the segment starts
})
# Not permanent: live_or_premiere (later), bot_check / rate_limited (hours), format_unavailable
# (usually a missing JS runtime or PO token, not a dead video), network, http_error (an expired
# media URL answers 403), decode_error (a damaged download), unknown.

POOL_PAUSE_REASONS: frozenset[Reason] = frozenset({Reason.BOT_CHECK, Reason.RATE_LIMITED})

# Transient failures that say something about the video (or what is served for it), so that the
# same one run after run means retrying is wasted: a segment they settle in two runs is
# "exhausted" (resume skips it unless --retry-failed). Never: the pool-wide pauses, network
# (outages), live_or_premiere (later), format_unavailable (usually a missing JS runtime or PO
# token on this machine: fixing that must not find the whole run written off).
EXHAUSTIBLE_REASONS: frozenset[str] = frozenset({Reason.DECODE_ERROR.value, Reason.HTTP_ERROR.value,
                                                 Reason.UNKNOWN.value})


@dataclass(frozen=True)
class Failure:
    """One classified failure. `message` is the source's text without the ``ERROR: [ie] <id>:``
    prefix, other mentions of the ID replaced by ``<id>`` (so messages group across videos)."""

    reason: Reason
    permanent: bool
    message: str

    @classmethod
    def of(cls, reason: Reason, message: str = "") -> Failure:
        return cls(reason=reason, permanent=reason.permanent, message=message)


class ClipError(Exception):
    """Raised by the fetcher for a clip that could not be made; carries its Failure, what the
    attempt cost before it failed (media bytes and HTTP requests, when the fetcher counted them),
    whether another player client might not meet it (`client_fixable`: a media URL refused
    part-way, formats skipped or missing, SABR-only), and where it was met (`client`,
    `format_id`, `method`, filled in by the fetcher as it learns them)."""

    def __init__(self, failure: Failure, *, bytes_fetched: int = 0, requests: int = 0,
                 client_fixable: bool = False) -> None:
        super().__init__(f"{failure.reason.value}: {failure.message}" if failure.message else failure.reason.value)
        self.failure = failure
        self.bytes_fetched = bytes_fetched
        self.requests = requests
        self.client_fixable = client_fixable
        self.client = ""
        self.format_id = ""
        self.method = ""
        self.notes: tuple[str, ...] = ()  # yt-dlp's words on the formats it skipped

    @classmethod
    def of(cls, reason: Reason, message: str = "", *, bytes_fetched: int = 0, requests: int = 0,
           client_fixable: bool = False) -> ClipError:
        return cls(Failure.of(reason, message), bytes_fetched=bytes_fetched, requests=requests,
                   client_fixable=client_fixable)

    def noting(self, **where: str) -> ClipError:
        """Record where the failure was met (client, format_id, method) unless already known."""
        for name, value in where.items():
            if value and not getattr(self, name):
                setattr(self, name, value)
        return self


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


# --------------------------------------------------------------------------------------------
# Retrying transient failures


def retry_delay_s(attempt: int, *, base_s: float = 1.0, cap_s: float = 60.0,
                  rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (0 = the first retry).

    Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)], so
    workers that failed together do not retry together.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    ceiling = cap_s if attempt >= 63 else min(cap_s, base_s * (2 ** attempt))
    return (rng or random).uniform(0.0, ceiling)
