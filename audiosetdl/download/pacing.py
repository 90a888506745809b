"""The run-wide egress budget: at most `max_rate` video requests per `rate_window` seconds per
egress identity (the direct address, or each `--proxy`), across every task of a run, on one
machine or on SLURM nodes that share the run directory. No server: the shared filesystem is
the only coordination.

Owns the identities (worker w uses `--proxy` w % len(proxies); each has its own directory
RUN/pacing/direct or RUN/pacing/proxy-<hash>, and its own budget), one task's pacing of its
workers (`Pacer`: it holds at most one reservation per identity and marks it used just before
a worker gets the clip, so a clip attempt, a retry included, is one request), a blocking
`Charger` for a further request of the same clip (a fetcher re-resolving the video with another
player client), and the figures `submit` prints (`describe_budget`). The tickets themselves,
and why the budget holds in every window, are in `audiosetdl.download.tickets`.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

from audiosetdl.config import DownloadOptions
from audiosetdl.download.tickets import Ticket, Tickets

DIRECT = "direct"  # the identity of workers without a proxy
CLIP_WORKER_S = 10.0  # rough time one worker spends on one clip (for submit's idle-allocation warning)
IDLE_FACTOR = 4  # submit warns when this many times more workers run than the budget keeps busy


def identities(options: DownloadOptions) -> tuple[str, ...]:
    """Egress identities in worker order: worker w uses `identities[w % len(identities)]`."""
    return tuple(options.proxy) or (DIRECT,)


def identity_dir(root: Path, identity: str) -> Path:
    """RUN/pacing/direct, or RUN/pacing/proxy-<sha256 prefix> (the URL may hold credentials)."""
    name = DIRECT if identity == DIRECT else "proxy-" + hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path(root) / name


def tickets_for(root: Path, options: DownloadOptions, worker_index: int) -> Tickets:
    """The ticket directory of a worker's identity, with N = max_rate slots per window (a fractional
    max_rate stretches the window: 2.5 per hour is 2 per 48 minutes)."""
    names = identities(options)
    slots = max(1, math.floor(options.max_rate))
    return Tickets(identity_dir(root, names[worker_index % len(names)]), slots,
                   options.rate_window * slots / options.max_rate)


class Pacer:
    """One task's side of the budget: which idle worker may start a request now. It holds at most
    one reservation per identity, made only while a worker of that identity is idle with work."""

    def __init__(self, root: Path, options: DownloadOptions) -> None:
        self.enabled = options.max_rate > 0
        count = len(identities(options)) if self.enabled else 0
        self.tickets = [tickets_for(root, options, i) for i in range(count)] or [None]
        self.held: list[Ticket | None] = [None] * len(self.tickets)
        self.next_claim = [0.0] * len(self.tickets)

    def take(self, idle: list[int]) -> int | None:
        """An idle worker (from the end of `idle`) whose identity's request may go out now, its ticket
        marked used; None when every idle worker's identity must wait (see `wake_in`)."""
        if not self.enabled:
            return idle[-1] if idle else None
        seen = set()
        for worker in reversed(idle):
            identity = worker % len(self.tickets)
            if identity not in seen:
                seen.add(identity)
                if self._ready(identity, time.time()):
                    return worker
        return None

    def _ready(self, identity: int, now: float) -> bool:
        ticket, tickets = self.held[identity], self.tickets[identity]
        if ticket is None and now >= self.next_claim[identity]:
            ticket, wait = tickets.claim(now)
            self.held[identity] = ticket
            self.next_claim[identity] = now + wait
        if ticket is None or ticket.not_before > now:
            return False
        self.held[identity] = None
        return tickets.use(ticket) is not None

    def wake_in(self, idle: list[int]) -> float | None:
        """Seconds until an idle worker's identity has a ticket due or should claim again; None: no wait."""
        if not self.enabled or not idle:
            return None
        waiting = {w % len(self.tickets) for w in idle}
        times = [t.not_before if t else self.next_claim[i] for i, t in enumerate(self.held) if i in waiting]
        return max(0.01, min(times) - time.time())

    def release(self) -> None:
        """Give back every reservation held (a pause, a stop, nothing left to dispatch)."""
        for identity, ticket in enumerate(self.held):
            if ticket is not None:
                self.tickets[identity].release(ticket)
                self.held[identity] = None


class Charger:
    """`charge()` blocks until one more request of a worker's identity may go out, and takes its
    ticket. For a fetcher that makes a second request for the same clip (e.g. re-resolving the
    video with another player client); picklable, so a worker process can hold one."""

    def __init__(self, root: Path, options: DownloadOptions, worker_index: int) -> None:
        self.root, self.options, self.worker_index = Path(root), options, worker_index

    def __call__(self) -> None:
        if self.options.max_rate <= 0:
            return
        tickets = tickets_for(self.root, self.options, self.worker_index)
        while True:
            ticket, wait = tickets.claim()
            if ticket is None:
                time.sleep(wait)
                continue
            time.sleep(max(0.0, ticket.not_before - time.time()))
            if tickets.use(ticket) is not None:
                return


def describe_budget(segments: int, options: DownloadOptions, parallel_tasks: int) -> list[str]:
    """What `submit` prints: the wall-clock time the plan needs at this budget, and a warning when
    far more workers would run than the budget can keep busy (allocations that sit idle)."""
    if segments <= 0:
        return []
    if options.max_rate <= 0:
        return [f"download: {segments:,} segments, no --max-rate: no egress budget (YouTube may block the address)"]
    n_ids = len(identities(options))
    per_hour = options.max_rate * n_ids * 3600.0 / options.rate_window
    hours = segments / per_hour
    lines = [f"download: {segments:,} segments at {options.max_rate:g} videos per {options.rate_window:g} s per "
             f"egress identity x {n_ids} identit{'y' if n_ids == 1 else 'ies'} ({per_hour:,.0f}/h): about "
             f"{hours:,.1f} h ({hours / 24:,.1f} days) of wall-clock time (retries take more)"]
    busy = max(1.0, per_hour * CLIP_WORKER_S / 3600.0)  # workers the budget keeps busy
    running = parallel_tasks * options.workers
    if running > IDLE_FACTOR * busy:
        useful = max(1, math.ceil(busy / max(1, options.workers)))
        lines.append(f"warning: {parallel_tasks} tasks at once x {options.workers} workers = {running} workers, but "
                     f"the budget keeps about {busy:.0f} busy: most allocations would sit idle waiting for the budget; "
                     f"--array-parallelism {useful} would do the same work (or add --proxy identities)")
    return lines
