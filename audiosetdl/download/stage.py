"""The download stage: one task's segments -> clips, with a ledger line for every attempt.

`run_task(run, index, options)` is the one callable per shard that every backend runs. The
parent process owns the task's ledger and all decisions (what is left to do, pacing, retries,
pool-wide cool-downs, stopping); W forked worker processes each hold one long-lived
`ClipFetcher` (one `YoutubeDL`) and fetch the clips they are handed. Clip files are written
atomically by the fetcher, the ledger is appended and flushed per attempt, so a killed task
loses at most the clips in flight, and a rerun resumes from the ledger:

done, permanently failed and exhausted segments are skipped (`audiosetdl.download.resume`), the
rest tried again; a rerun over a finished task starts no worker at all. The workers are
`audiosetdl.download.workers`; the run-wide egress budget `audiosetdl.download.pacing`.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import multiprocessing
import os
import queue
import signal
import time
from collections import Counter

import multiprocessing_logging
from tqdm import tqdm

from audiosetdl.config import DownloadOptions
from audiosetdl.download.errors import Failure, Reason, retry_delay_s
from audiosetdl.download.pacing import Pacer
from audiosetdl.download.resume import TaskSummary, plan_resume
from audiosetdl.download.workers import (
    FetcherFactory,
    Job,
    JobResult,
    WorkerReady,
    default_fetcher_factory,
    worker_main,
)
from audiosetdl.ledger import FAILED, OK, Attempt, LedgerWriter
from audiosetdl.metadata.segments import Segment
from audiosetdl.plan import load_plan, load_task
from audiosetdl.rundir import RunDir, sweep_temp, write_json_atomic

log = logging.getLogger(__name__)

STOP_GRACE_S = 20.0  # after a stop request, how long in-flight clips may still finish
MAX_FAILED_STARTS = 3  # workers dying before they are ready this many times: the task cannot run here


class _StopRequest:
    """The SIGINT/SIGTERM handler. It only sets flags: logging from a signal handler can deadlock
    (the handler may interrupt the main thread inside a logging or queue lock, e.g. while another
    handler logs SLURM's SIGCONT, which scancel sends just before SIGTERM)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.requested_at = 0.0
        self.signal: int | None = None
        self.announced = False

    def __call__(self, signum, frame) -> None:
        if self.reason is None:
            self.signal, self.reason, self.requested_at = signum, "interrupted", time.monotonic()

    def announce(self) -> None:
        if self.signal is not None and not self.announced:
            self.announced = True
            log.warning("received %s: finishing the clips in flight, then stopping (resumable)",
                        signal.Signals(self.signal).name)



def run_task(run: RunDir, index: int, options: DownloadOptions, *,
             fetcher_factory: FetcherFactory | None = None, progress: bool = True) -> TaskSummary:
    """Download one task's segments; returns what happened. Never raises for a clip's failure."""
    plan = load_plan(run)
    segments = load_task(run, plan, index)
    for subset, prefix in plan.tasks[index].keys:  # this task is the only writer of its keys
        sweep_temp(run.audio_dir(subset, prefix))
    with LedgerWriter(run.ledger_path(index)) as ledger:
        todo, summary = plan_resume(run, index, segments, options, ledger)
        if not todo:
            log.info("task %05d: nothing to do (%d done, %d permanently failed, %d exhausted)", index,
                     summary.done_before, summary.skipped_permanent, summary.skipped_exhausted)
        else:
            factory = fetcher_factory or default_fetcher_factory(options, run.pacing_dir)
            with _task_log(run, index):
                _Pool(run, index, options, factory, ledger, summary, progress).run(todo)
    write_json_atomic(run.task_state_path(index), summary.to_json())
    return summary


@contextlib.contextmanager
def _task_log(run: RunDir, index: int):
    """Every worker's log records into RUN/logs/download-NNNNN.log, through the parent."""
    run.logs_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run.logs_dir / f"download-{index:05d}.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    multiprocessing_logging.install_mp_handler()
    try:
        yield
    finally:
        multiprocessing_logging.uninstall_mp_handler()
        root.removeHandler(handler)
        handler.close()


class _Pool:
    """The parent's side: dispatch, pacing, retries, pool-wide pauses, stopping."""

    def __init__(self, run: RunDir, index: int, options: DownloadOptions, factory: FetcherFactory,
                 ledger: LedgerWriter, summary: TaskSummary, progress: bool):
        self.rundir, self.index, self.options, self.factory = run, index, options, factory
        self.ledger, self.summary, self.progress = ledger, summary, progress
        self.stop = _StopRequest()
        self.paused_until = 0.0
        self.pacer = Pacer(run.pacing_dir, options)  # the run-wide budget, per egress identity
        self.starting: set[int] = set()  # workers started, not ready yet
        self.failed_starts = 0
        self.retried: Counter = Counter()  # failures per job seq in this run (pool-wide pauses not counted)

    def run(self, todo: list[tuple[Segment, int]]) -> None:
        context = multiprocessing.get_context("fork")  # fork: workers inherit the multiprocessing-logging handler
        results = context.Queue()
        n_workers = max(1, min(self.options.workers, len(todo)))
        inboxes, workers = [], []
        for w in range(n_workers):
            inbox = context.Queue()
            proc = context.Process(target=worker_main, args=(w, self.factory, inbox, results), daemon=True,
                                   name=f"download-{self.index:05d}-{w}")
            proc.start()
            self.starting.add(w)
            inboxes.append(inbox)
            workers.append(proc)
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        # SLURM sends SIGCONT before SIGTERM; a handler that logs it (submitit's) could deadlock
        # against our own logging, so SIGCONT keeps its harmless default while the pool runs.
        previous[signal.SIGCONT] = signal.signal(signal.SIGCONT, signal.SIG_DFL)
        bar = tqdm(total=self.summary.segments,
                   initial=self.summary.done_before + self.summary.skipped_permanent + self.summary.skipped_exhausted,
                   desc=f"task {self.index:05d}", unit="clip", disable=not self.progress, dynamic_ncols=True,
                   mininterval=1.0 if os.isatty(2) else 30.0)
        started = time.monotonic()
        try:
            self._loop(todo, inboxes, workers, results, bar, started)
        finally:
            self.pacer.release()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for inbox in inboxes:
                inbox.put(None)
            for proc in workers:
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
            bar.close()
        self.summary.stopped = self.stop.reason

    def _loop(self, todo, inboxes, workers, results, bar, started) -> None:
        ready: list[tuple[int, Segment, int]] = [(seq, seg, attempt) for seq, (seg, attempt) in enumerate(todo)]
        ready.reverse()  # pop() from the end keeps the task's order
        delayed: list[tuple[float, int, Segment, int]] = []  # (ready at, seq, segment, attempt)
        busy: dict[int, Job] = {}
        idle: list[int] = []  # ready workers without a clip (see WorkerReady)
        while ready or delayed or busy:
            now = time.monotonic()
            if self.stop.reason is not None:
                self.stop.announce()
                if not busy or now - self.stop.requested_at > STOP_GRACE_S:
                    break
            while delayed and delayed[0][0] <= now:
                _, seq, segment, attempt = heapq.heappop(delayed)
                ready.append((seq, segment, attempt))
            while idle and ready and self.stop.reason is None and now >= self.paused_until:
                worker = self.pacer.take(idle)  # its identity's ticket is marked used: the request counts
                if worker is None:
                    break
                idle.remove(worker)
                seq, segment, attempt = ready.pop()
                job = Job(seq, segment, self.options.url_template.format(ytid=segment.ytid),
                          self.rundir.clip_path(segment.subset, segment.ytid, segment.start, segment.end), attempt)
                busy[worker] = job
                inboxes[worker].put(job)
            if not ready or self.stop.reason is not None or now < self.paused_until:
                self.pacer.release()  # a reservation nobody here can use now is free for other tasks
            pace = self.pacer.wake_in(idle) if ready else None
            wake = [now + 1.0, self.paused_until] + ([delayed[0][0]] if delayed else []) + (
                [now + pace] if pace is not None else [])
            timeout = max(0.01, min(t for t in wake if t > now) - now) if any(t > now for t in wake) else 0.01
            try:
                result: JobResult | WorkerReady = results.get(timeout=timeout)
            except queue.Empty:
                self._replace_dead_workers(workers, busy, idle, results, delayed, inboxes)
                continue
            if isinstance(result, WorkerReady):
                self.starting.discard(result.worker)
                if result.worker not in idle and result.worker not in busy:  # (once, even from a dead predecessor)
                    idle.append(result.worker)
                continue
            job = busy.pop(result.worker)
            idle.append(result.worker)
            bar.update(1 if self._record(job, result, delayed) else 0)
            hours = max(time.monotonic() - started, 1.0) / 3600
            bar.set_postfix(ok=self.summary.ok, failed=sum(self.summary.failed.values()),
                            per_hour=f"{(self.summary.ok + sum(self.summary.failed.values())) / hours:.0f}",
                            refresh=False)

    def _record(self, job: Job, result: JobResult, delayed) -> bool:
        """Decide what follows the attempt and append it to the ledger; True when the segment is settled."""
        segment, failure = job.segment, result.failure
        settled = result.ok or self._after_failure(job, failure, delayed)
        self.ledger.append(Attempt(
            segment.ytid, segment.subset, segment.start, segment.end, OK if result.ok else FAILED,
            reason=failure.reason.value if failure else "", permanent=failure.permanent if failure else False,
            message=failure.message if failure else result.message, attempt=job.attempt, bytes=result.bytes_fetched,
            seconds=round(result.seconds, 3), padded=round(result.padded, 3), client=result.client,
            format_id=result.format_id, method=result.method, notes=result.notes,
            final=settled and not result.ok))
        if result.ok:
            self.summary.ok += 1
        elif settled:
            self.summary.failed[failure.reason.value] += 1
        return settled

    def _after_failure(self, job: Job, failure: Failure, delayed) -> bool:
        """Schedule what follows a failure (a pool-wide pause, a retry, a stop); True when it is final."""
        now = time.monotonic()
        if failure.reason.pauses_pool:
            self.summary.cooldowns += 1
            if self.summary.cooldowns > self.options.max_cooldowns:
                log.error("task %05d: YouTube keeps refusing (%s: %s) after %d cool-downs; stopping. The ledger is "
                          "up to date: run the same command later (or from other IPs) to resume",
                          self.index, failure.reason.value, failure.message, self.options.max_cooldowns)
                self.stop.reason, self.stop.requested_at = "rate_limited", now
                return False
            pause = self.options.cooldown * 2 ** (self.summary.cooldowns - 1)
            log.warning("task %05d: %s (%s): pausing all workers for %.0f s (cool-down %d of %d)", self.index,
                        failure.reason.value, failure.message, pause, self.summary.cooldowns, self.options.max_cooldowns)
            self.paused_until = max(self.paused_until, now + pause)
            heapq.heappush(delayed, (self.paused_until, job.seq, job.segment, job.attempt + 1))
            return False
        self.retried[job.seq] += 1  # retries are counted per run: each rerun has the whole budget again
        if not failure.permanent and self.retried[job.seq] <= self.options.retries:
            heapq.heappush(delayed, (now + retry_delay_s(job.attempt), job.seq, job.segment, job.attempt + 1))
            return False
        return True

    def _replace_dead_workers(self, workers, busy, idle, results, delayed, inboxes) -> None:
        for w, proc in enumerate(workers):
            if proc.is_alive():
                continue
            job = busy.pop(w, None)
            log.error("worker %d died (exit code %s)%s; starting a new one", w, proc.exitcode,
                      f" while fetching {job.segment.ytid}" if job else "")
            if job is not None:
                died = Failure.of(Reason.UNKNOWN, f"worker died (exit code {proc.exitcode})")
                self._record(job, JobResult(w, job.seq, False, died, 0, 0.0), delayed)
            if w in idle:
                idle.remove(w)  # back once its successor is ready
            if w in self.starting:
                self.failed_starts += 1
                if self.failed_starts >= MAX_FAILED_STARTS:
                    raise RuntimeError(f"download workers die before they are ready (exit code {proc.exitcode}): "
                                       f"see RUN/logs/download-{self.index:05d}.log")
            context = multiprocessing.get_context("fork")
            inboxes[w] = context.Queue()
            workers[w] = context.Process(target=worker_main, args=(w, self.factory, inboxes[w], results),
                                         daemon=True, name=proc.name)
            workers[w].start()
            self.starting.add(w)
