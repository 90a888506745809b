"""The run-wide egress budget (audiosetdl/download/pacing.py, tickets.py): ticket files under RUN/pacing/
shared by processes, dead owners' reservations freed, requests counted, files bounded, and what
`submit` prints. End to end (real tasks, real yt-dlp, the media server's request log) in
tests/test_pacing_e2e.py."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audiosetdl.backends.slurm import submit
from audiosetdl.config import DownloadOptions, PlanOptions, SlurmOptions
from audiosetdl.download.stage import run_task
from audiosetdl.download.pacing import Charger, Pacer, describe_budget, identity_dir
from audiosetdl.download.tickets import KEEP_EXTRA, Tickets
from audiosetdl.ledger import OK, Attempt, LedgerWriter
from audiosetdl.metadata.segments import Segment, render_csv
from audiosetdl.plan import load_plan, load_task, write_plan
from audiosetdl.planner import build_plan
from audiosetdl.rundir import RunDir


def max_in_window(times: list[float], length: float) -> int:
    """The most of `times` inside any half-open window [t, t + length)."""
    times = sorted(times)
    return max((sum(1 for u in times[i:] if u < t + length) for i, t in enumerate(times)), default=0)


def test_max_in_window():
    assert max_in_window([0, 0.5, 1.0, 1.4, 3], 1.0) == 3 and max_in_window([], 1.0) == 0
    assert max_in_window([0, 1, 2], 1.0) == 1


def _charge(root: str, options: DownloadOptions, n: int, out) -> None:
    charge = Charger(Path(root), options, worker_index=0)
    for _ in range(n):
        charge()
        out.put(time.time())


def test_four_processes_share_one_budget(tmp_path):
    options = DownloadOptions(max_rate=4, rate_window=1.0)
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    began = time.time()
    procs = [context.Process(target=_charge, args=(str(tmp_path), options, 4, out)) for _ in range(4)]
    for proc in procs:
        proc.start()
    times = [out.get(timeout=60) for _ in range(16)]
    for proc in procs:
        proc.join(timeout=10)
    assert max_in_window(times, 1.0 - 0.05) <= 4, sorted(t - began for t in times)
    # Spread out: one request every window/N (best effort) rather than bursts of N.
    assert max_in_window(times, 0.25 - 0.05) <= 2
    # 16 requests at 4 per window take at least 3 windows; and not absurdly more.
    assert 3.0 - 0.05 <= max(times) - min(times) and max(times) - began < 15
    files = [p for p in identity_dir(tmp_path, "direct").iterdir()]
    # Old tickets are removed: N, the reservations still held (one per process) and KEEP_EXTRA remain.
    assert len(files) <= 4 + 4 + KEEP_EXTRA < 16, sorted(p.name for p in files)


def write_ticket(tickets: Tickets, number: int, **fields) -> None:
    """A ticket as another process (or host) would have left it."""
    tickets.directory.mkdir(parents=True, exist_ok=True)
    now = time.time()
    data = {"state": "reserved", "not_before": now, "lease_until": now + 5, "used_at": None,
            "host": socket.gethostname(), "pid": os.getpid(), "token": "other"} | fields
    tickets.path(number).write_text(json.dumps(data))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_owners_reservation_is_free_at_once_but_its_requests_count(tmp_path):
    tickets = Tickets(tmp_path, slots=1, window=30.0)
    now = time.time()
    write_ticket(tickets, 0, pid=dead_pid(), not_before=now + 20, lease_until=now + 25)  # killed while waiting
    ticket, _ = tickets.claim()
    assert ticket.number == 1 and ticket.not_before - time.time() < 1  # not 20 s later: freed
    assert tickets.use(ticket).state == "used"
    write_ticket(tickets, 2, pid=dead_pid(), state="used", used_at=time.time())  # killed after requesting
    ticket, _ = tickets.claim()
    assert ticket.number == 3 and ticket.not_before >= time.time() + 29  # its request still counts


def test_live_and_foreign_reservations(tmp_path):
    tickets = Tickets(tmp_path, slots=1, window=30.0, lease=2.0)
    now = time.time()
    write_ticket(tickets, 0, not_before=now + 1, lease_until=now + 3)  # this (live) process, another pool
    ticket, wait = tickets.claim()
    assert ticket is None and 1 <= wait <= 4  # wait until it is due, then look again
    write_ticket(tickets, 0, host="node-elsewhere", pid=1, not_before=now - 5, lease_until=now - 3)
    ticket, _ = tickets.claim()  # a foreign owner's lease ran out: free
    assert ticket.number == 1 and ticket.not_before - time.time() < 1
    tickets.release(ticket)  # given back unused: counts as never used
    again, _ = tickets.claim()
    assert again.number == 2 and again.not_before - time.time() < 1
    late = Tickets(tmp_path, slots=5, window=1.0, lease=0.5)
    ticket, _ = late.claim()
    time.sleep(0.6)
    assert late.use(ticket) is None  # past its lease: not used (someone may have taken it back)
    assert json.loads(late.path(ticket.number).read_text())["state"] == "released"


def test_pacer_takes_workers_of_each_identity_separately(tmp_path):
    options = DownloadOptions(max_rate=1, rate_window=30.0, proxy=("http://a:1", "http://user:secret@b:2"))
    pacer = Pacer(tmp_path, options)
    assert pacer.take([0, 1, 2, 3]) == 3  # worker 3: proxy b
    assert pacer.take([0, 1, 2]) == 2  # proxy b is spent; worker 2 uses proxy a
    assert pacer.take([0, 1]) is None and 30 < pacer.wake_in([0, 1]) <= 30 + 10.1  # the next window (+ a lease)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and all(n.startswith("proxy-") for n in names) and "secret" not in "".join(names)
    pacer.release()  # the reservations made while waiting go back
    other = Pacer(tmp_path, options)
    assert other.take([0]) is None and other.take([1]) is None  # the budget is the run's, not the pacer's
    assert Pacer(tmp_path, DownloadOptions(max_rate=0)).take([0, 1]) == 1  # no limit


def make_run(tmp_path: Path, n: int, tasks: int) -> RunDir:
    csv = tmp_path / "eval_segments.csv"
    csv.write_text(render_csv([Segment(f"{c}{c}{i:09d}", 0.0, 10.0, ("/m/09x0r",)) for c in "abcdefgh"[:tasks]
                               for i in range(n // tasks)], "t"))
    run = RunDir(tmp_path / "run")
    write_plan(run, build_plan([csv], PlanOptions(tasks=tasks, labels=False)))
    return run


def test_submit_prints_the_time_the_budget_needs_and_warns_of_idle_allocations(tmp_path):
    run = make_run(tmp_path, 3000, tasks=4)
    printed: list[str] = []
    slurm = SlurmOptions(array_parallelism=0)
    submit(run, ["download"], slurm, DownloadOptions(workers=4), None, dry_run=True, out=printed.append)
    budget = [line for line in printed if line.startswith(("download: 3,000", "warning"))]
    assert budget[0].startswith("download: 3,000 segments at 300 videos per 3600 s per egress identity x 1 identity")
    assert "about 10.0 h (0.4 days)" in budget[0]
    assert "4 tasks at once x 4 workers = 16 workers" in budget[1] and "--array-parallelism 1" in budget[1]
    printed.clear()
    two = DownloadOptions(workers=1, proxy=("http://a:1", "http://b:2"))
    submit(run, ["download"], SlurmOptions(array_parallelism=2), two, None, dry_run=True, out=printed.append)
    assert [line for line in printed if "about 5.0 h" in line and "x 2 identities" in line]
    assert not [line for line in printed if line.startswith("warning")]  # 2 workers: about what 600/h keeps busy
    assert describe_budget(10, DownloadOptions(max_rate=0), 4)[0].endswith("(YouTube may block the address)")
    plan = load_plan(run)  # a resumed run needs only what is not done yet
    with LedgerWriter(run.ledger_path(0)) as ledger:
        for segment in load_task(run, plan, 0):
            ledger.append(Attempt(segment.ytid, segment.subset, segment.start, segment.end, OK))
    printed.clear()
    submit(run, ["download"], slurm, DownloadOptions(workers=1), None, dry_run=True, out=printed.append)
    assert [line for line in printed if line.startswith("download: 2,250 segments") and "about 7.5 h" in line]


def _broken_factory(worker_index: int):
    raise RuntimeError("this fetcher cannot start")


def test_workers_that_never_get_ready_stop_the_task(tmp_path):
    """Clips go only to ready workers (so a clip the budget counts is requested at once); workers that
    die before they are ready stop the task instead of being restarted forever."""
    run = make_run(tmp_path, 4, tasks=1)
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="die before they are ready"):
        run_task(run, 0, DownloadOptions(workers=1, max_rate=0), fetcher_factory=_broken_factory, progress=False)
    assert time.monotonic() - began < 30
    assert not run.ledger_path(0).read_text()  # no clip was handed to them, none is recorded as failed
