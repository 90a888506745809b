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
- `used`: the request went out (or may have: a task killed after marking counts it);
- `released`: given back unused (pause, stop), or found stale: a `reserved` ticket whose owner
  is dead (same host, pid gone) or whose lease ran out. A stale or released ticket counts as
  never used, so a killed task frees its reservations but not the requests it made.

Ticket k+1 may not go out before `not_before(k) + window/N` (requests spread evenly), nor
before ticket k+1-N's request time + window (its "lane": the ring of N lanes is the hard
guarantee: uses in one lane are a window apart, so any window holds at most N requests, however
late some go out). While ticket k+1-N is reserved and live, k+1 waits. Tickets older than
k-N-KEEP_EXTRA are deleted by whoever claims k+1, so each identity keeps about N files.
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
LEASE_S = 60.0  # a reservation not used this long after its not_before is free for others
KEEP_EXTRA = 2  # tickets kept beyond the N a claimant reads (a reader listing mid-cleanup still sees them)
SCAN_BACKOFF_MAX_S = 30.0  # longest wait before looking again when the next ticket cannot be had
TEMP_PREFIX = ".tmp-"
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
    lane_free: float  # inherited: when this ticket's lane was free (for a ticket that ends up unused)
    host: str
    pid: int
    token: str

    def free_at(self, window: float) -> float:
        """When the ticket N later may go out, at the earliest."""
        return self.used_at + window if self.state == "used" else self.lane_free


class Tickets:
    """One identity's ticket directory: claim, use and release tickets."""

    def __init__(self, directory: Path, slots: int, window: float, lease: float = LEASE_S) -> None:
        self.directory, self.slots, self.window, self.lease = Path(directory), slots, window, lease
        self.spacing = window / slots
        self.host, self.token = socket.gethostname(), uuid.uuid4().hex[:12]

    def path(self, number: int) -> Path:
        return self.directory / f"{number:012d}"

    def read(self, number: int) -> Ticket | None:
        try:
            return Ticket(number, **json.loads(self.path(number).read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):  # unreadable: count it as used just now (conservative)
            now = time.time()
            return Ticket(number, "used", now, now, now, now, "", 0, "")

    def stale(self, ticket: Ticket, now: float) -> bool:
        """A reserved ticket nobody will use: lease over, or its owner's process is gone."""
        return ticket.state == "reserved" and (
            now > ticket.lease_until or (ticket.host == self.host and not _alive(ticket.pid)))

    def numbers(self) -> list[int]:
        with contextlib.suppress(FileNotFoundError):
            return sorted(int(p.name) for p in self.directory.iterdir() if p.name.isdigit())
        return []

    def claim(self, now: float | None = None) -> tuple[Ticket | None, float]:
        """Claim the next ticket: (ticket, 0.0), or (None, seconds to wait before trying again)."""
        now = time.time() if now is None else now
        numbers = self.numbers()
        head = numbers[-1] if numbers else -1
        previous = self.read(head) if head >= 0 else None
        lane = self.read(head + 1 - self.slots) if head + 1 - self.slots >= 0 else None
        if head >= 0 and previous is None:
            return None, 0.05  # changed under us: look again
        if lane is not None and lane.state == "reserved" and not self.stale(lane, now):
            # Its owner uses it at its not_before (or it goes stale): look again then, spread out.
            jitter = random.uniform(0.1, 1.0) * min(max(self.spacing, 0.1), SCAN_BACKOFF_MAX_S)
            return None, min(max(0.0, lane.not_before - now), SCAN_BACKOFF_MAX_S) + jitter
        lane_free = lane.free_at(self.window) if lane else 0.0
        spaced = (max(previous.not_before, previous.used_at or 0.0) + self.spacing) if previous else 0.0
        not_before = max(now, lane_free, spaced)
        ticket = Ticket(head + 1, "reserved", not_before, not_before + self.lease, None, lane_free,
                        self.host, os.getpid(), self.token)
        if not self._create(ticket):
            return None, random.uniform(0.0, min(self.spacing, 0.2))  # someone else got it
        for number in numbers:
            if number < head + 1 - self.slots - KEEP_EXTRA:
                with contextlib.suppress(FileNotFoundError):
                    self.path(number).unlink()
        self._sweep_temp(now)
        return ticket, 0.0

    def use(self, ticket: Ticket) -> Ticket | None:
        """Mark a held ticket used, now; None when it can no longer be used (lease over)."""
        now = time.time()
        if now > ticket.lease_until - min(1.0, self.lease / 10):  # keep clear of a reclaimer's clock
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
                if now - temp.stat().st_mtime > self.lease:
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
