"""The egress budget's tickets: one directory of small files per identity, shared by every task
of a run through the filesystem alone (see `audiosetdl.download.pacing` for who uses them).

An identity's requests take tickets 0, 1, 2, ... in order; ticket k is the file
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
0.5-10 s) after its not_before; a new ticket goes out no earlier than the N-th most recent
counted (used or live reserved) ticket's request + window + lease. Counted tickets' not_before
grow with their numbers, so any window holds at most N requests, however late within its lease
each goes out; while that N-th ticket is still reserved, the claimant waits. Requests are also
spread evenly (best effort): window/N after the most recent counted one. Whoever claims a ticket
deletes those older than the N-th most recent used one (minus KEEP_EXTRA): an identity keeps
about N files. Clocks: every node's `time.time()` (NTP, as SLURM needs anyway); nodes are told
apart by host name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

LEASE_MIN_S, LEASE_MAX_S = 0.5, 10.0  # a reservation's use may be this late (window/N, clamped); then it is free
CLOCK_MARGIN_S = 0.25  # an owner stops using a reservation this long before others may take it back
KEEP_EXTRA = 2  # tickets kept beyond the N a claimant reads (a reader listing mid-cleanup still sees them)
SCAN_BACKOFF_MAX_S = 30.0  # longest wait before looking again when the next ticket cannot be had
TEMP_PREFIX = ".tmp-"
TEMP_MAX_AGE_S = 600.0  # a temporary ticket file this old was left by a killed process


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
