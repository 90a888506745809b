"""Why a clip could not be made: the failure taxonomy.

Owns: the `Reason` codes the ledger records, which reasons are permanent (never retried on
resume), which pause the whole download pool and which can exhaust a segment's retries across
runs, the `Failure` value and the `ClipError` the fetcher raises, and the delay before retrying
a transient failure. Turning exceptions and YouTube's texts into a `Failure` is
`audiosetdl.download.classify`.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass


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
