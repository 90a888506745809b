"""The run-wide egress budget: at most `max_rate` video requests per `rate_window` seconds per
egress identity (the direct address, or each `--proxy`), across every task of a run, on one
machine or on SLURM nodes that share the run directory. No server: the shared filesystem is
the only coordination.

Owns the ticket files under RUN/pacing/<identity>/, one task's pacing of its workers
(`Pacer`), a blocking `Charger` for extra requests of the same clip, and the figures `submit`
prints (`describe_budget`).

Tickets. An identity's requests take tickets 0, 1, 2, ... in order; ticket k is the file
`RUN/pacing/<identity>/<k>` (12 digits), created by `link()` of a fully written temporary file,
which is atomic on local filesystems and NFS alike: exactly one claimant gets each number. A
ticket carries its owner (host, pid, token), `not_before` (the earliest time its request may go
out), `lease_until` and a state:

- `reserved`: claimed, request not sent yet. The owner marks it `used` (atomic rename) just
  before handing the clip to a worker, and never uses it after `lease_until`;
- `used`: the request went out (or may have: a task killed after marking still counts it);
- `released`: given back unused (pause, stop). A `reserved` ticket whose owner is dead (same
  host, pid gone) or whose lease ran out is stale: like a released one it counts as unused.
  So a killed task frees its reservations at once, but not the requests it made.

The rule (N = max_rate slots per window): a reserved ticket is used at most a lease (window/N,
1-10 s) after its not_before; a new ticket goes out no earlier than the N-th most recent
counted (used or live reserved) ticket's request + window + lease. Counted tickets' not_before
grow with their numbers, so any window holds at most N requests, however late within its lease
each goes out; if that N-th ticket is still reserved, the claimant waits until it is used. Requests are also spread evenly: one window/N after the most recent counted ticket
(best effort). Whoever claims a ticket deletes those older than the N-th most recent used
ticket (minus KEEP_EXTRA): each identity keeps about N files, never an hour's worth of windows.
Clocks: `time.time()` of every node (NTP-synchronised, as SLURM needs anyway).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from audiosetdl.config import DownloadOptions

DIRECT = "direct"  # the identity of workers without a proxy
LEASE_MIN_S, LEASE_MAX_S = 0.5, 10.0  # a reservation's use may be this late (window/N, clamped); then it is free
CLOCK_MARGIN_S = 0.25  # an owner stops using a reservation this long before others may take it back
KEEP_EXTRA = 2  # tickets kept beyond the N a claimant reads (a reader listing mid-cleanup still sees them)
SCAN_BACKOFF_MAX_S = 30.0  # longest wait before looking again when the next ticket cannot be had
TEMP_PREFIX = ".tmp-"
TEMP_MAX_AGE_S = 600.0  # a temporary ticket file this old was left by a killed process
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


@dataclass(frozen=True)
class Ticket:
    number: int
    state: str  # reserved | used | released
    not_before: float
    lease_until: float
    used_at: float | None
    host: str
    pid: int
    token: str

    @property
    def at(self) -> float:
        """The request's time: when it went out, or (reserved) the earliest it will."""
        return self.used_at if self.used_at is not None else self.not_before


class Tickets:
    """One identity's ticket directory: claim, use and release tickets."""

    def __init__(self, directory: Path, slots: int, window: float, lease: float | None = None) -> None:
        self.directory, self.slots, self.window = Path(directory), slots, window
        self.spacing = window / slots
        self.lease = lease if lease is not None else min(LEASE_MAX_S, max(LEASE_MIN_S, self.spacing))
        self.host, self.token = socket.gethostname(), uuid.uuid4().hex[:12]
        self._final: dict[int, Ticket] = {}  # used and released tickets never change again

    def path(self, number: int) -> Path:
        return self.directory / f"{number:012d}"

    def read(self, number: int) -> Ticket | None:
        if number in self._final:
            return self._final[number]
        try:
            ticket = Ticket(number, **json.loads(self.path(number).read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):  # unreadable: count it as used just now (conservative)
            now = time.time()
            ticket = Ticket(number, "used", now, now, now, "", 0, "")
        if ticket.state != "reserved":
            self._final[number] = ticket
        return ticket

    def counts(self, ticket: Ticket, now: float) -> bool:
        """Used, or reserved by a live owner within its lease (a stale reservation counts as unused)."""
        if ticket.state == "used":
            return True
        return ticket.state == "reserved" and now <= ticket.lease_until and (
            ticket.host != self.host or _alive(ticket.pid))

    def numbers(self) -> list[int]:
        with contextlib.suppress(FileNotFoundError):
            numbers = sorted(int(p.name) for p in self.directory.iterdir() if p.name.isdigit())
            self._final = {n: t for n, t in self._final.items() if n >= (numbers[0] if numbers else 0)}
            return numbers
        return []

    def claim(self, now: float | None = None) -> tuple[Ticket | None, float]:
        """Claim the next ticket: (ticket, 0.0), or (None, seconds to wait before trying again)."""
        now = time.time() if now is None else now
        numbers = self.numbers()
        counted, used = [], []  # the most recent first
        # By number, not by listing: a listing may miss a ticket created meanwhile.
        for number in range(numbers[-1], numbers[0] - 1, -1) if numbers else ():
            ticket = self.read(number)
            if ticket is not None and self.counts(ticket, now):
                counted.append(ticket)
                used += [ticket] if ticket.state == "used" else []
            if len(counted) >= self.slots and len(used) >= self.slots:
                break
        not_before = max(now, counted[0].at + self.spacing) if counted else now
        if len(counted) >= self.slots:
            oldest = counted[self.slots - 1]  # with the new one, N+1 requests: more than a window apart
            if oldest.state == "reserved":  # its time is not known yet: look again once it is due
                jitter = random.uniform(0.1, 1.0) * min(self.spacing, self.lease)  # waiters spread out
                return None, min(max(0.0, oldest.not_before - now), SCAN_BACKOFF_MAX_S) + jitter
            # + lease: a lower-numbered ticket may go out up to a lease after its not_before
            not_before = max(not_before, oldest.used_at + self.window + self.lease)
        head = numbers[-1] if numbers else -1
        ticket = Ticket(head + 1, "reserved", not_before, not_before + self.lease, None, self.host, os.getpid(),
                        self.token)
        if not self._create(ticket):
            return None, random.uniform(0.0, min(self.spacing, 0.2))  # someone else got it: look again
        if len(used) >= self.slots:  # used tickets never stop counting: older ones are never needed
            for number in numbers:
                if number < used[self.slots - 1].number - KEEP_EXTRA:
                    with contextlib.suppress(FileNotFoundError):
                        self.path(number).unlink()
        self._sweep_temp(now)
        return ticket, 0.0

    def use(self, ticket: Ticket) -> Ticket | None:
        """Mark a held ticket used, now; None when it can no longer be used (lease over)."""
        now = time.time()
        if now > ticket.lease_until - min(CLOCK_MARGIN_S, self.lease / 4):  # keep clear of a reclaimer's clock
            self.release(ticket)
            return None
        used = dataclasses.replace(ticket, state="used", used_at=max(now, ticket.not_before))
        self._write(used)
        return used

    def release(self, ticket: Ticket) -> None:
        """Give a reserved ticket back: it counts as never used."""
        current = self.read(ticket.number)
        if current is not None and current.state == "reserved" and current.token == self.token:
            self._write(dataclasses.replace(ticket, state="released"))

    def _payload(self, ticket: Ticket) -> bytes:
        fields = {k: v for k, v in dataclasses.asdict(ticket).items() if k != "number"}
        return json.dumps(fields, sort_keys=True).encode()

    def _temp(self, ticket: Ticket) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        temp = self.directory / f"{TEMP_PREFIX}{self.host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with open(temp, "wb") as fh:
            fh.write(self._payload(ticket))
            fh.flush()
            os.fsync(fh.fileno())
        return temp

    def _create(self, ticket: Ticket) -> bool:
        temp = self._temp(ticket)
        try:
            os.link(temp, self.path(ticket.number))
            return True
        except FileExistsError:
            return False
        finally:
            temp.unlink()

    def _write(self, ticket: Ticket) -> None:
        os.replace(self._temp(ticket), self.path(ticket.number))

    def _sweep_temp(self, now: float) -> None:
        """Temporary files of processes killed between writing and linking them."""
        for temp in self.directory.glob(TEMP_PREFIX + "*"):
            with contextlib.suppress(FileNotFoundError):
                if now - temp.stat().st_mtime > TEMP_MAX_AGE_S:
                    temp.unlink()


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

    def wake_in(self) -> float | None:
        """Seconds until a held ticket comes due or a claim should be retried; None: nothing pending."""
        if not self.enabled:
            return None
        now = time.time()
        times = [t.not_before if t else self.next_claim[i] for i, t in enumerate(self.held)]
        return max(0.01, min(times) - now) if times else None

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
    if options.max_rate <= 0 or segments <= 0:
        return [f"download: {segments:,} segments, no --max-rate: no egress budget (YouTube may block the address)"]
    n_ids = len(identities(options))
    per_hour = options.max_rate * n_ids * 3600.0 / options.rate_window
    hours = segments / per_hour
    lines = [f"download: {segments:,} segments at {options.max_rate:g} videos per {options.rate_window:g} s per "
             f"egress identity x {n_ids} identit{'y' if n_ids == 1 else 'ies'} ({per_hour:,.0f}/h): at least "
             f"{hours:,.1f} h ({hours / 24:,.1f} days) of wall-clock time (retries take more)"]
    busy = max(1.0, per_hour * CLIP_WORKER_S / 3600.0)  # workers the budget keeps busy
    running = parallel_tasks * options.workers
    if running > IDLE_FACTOR * busy:
        useful = max(1, math.ceil(busy / max(1, options.workers)))
        lines.append(f"warning: {parallel_tasks} tasks at once x {options.workers} workers = {running} workers, but "
                     f"the budget keeps about {busy:.0f} busy: most allocations would sit idle waiting for the budget; "
                     f"--array-parallelism {useful} would do the same work (or add --proxy identities)")
    return lines
