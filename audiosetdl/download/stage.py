"""The download stage: one task's segments -> clips, with a ledger line for every attempt.

`run_task(run, index, options)` is the one callable per shard that every backend runs. The
parent process owns the task's ledger and all decisions (what is left to do, pacing, retries,
pool-wide cool-downs, stopping); W forked worker processes each hold one long-lived
`ClipFetcher` (one `YoutubeDL`) and fetch the clips they are handed. Clip files are written
atomically by the fetcher, the ledger is appended and flushed per attempt, so a killed task
loses at most the clips in flight, and a rerun resumes from the ledger:

- done (clip file present and valid) -> skipped, even when the ledger missed the record;
- last failure permanent (private, removed, ...) -> skipped unless `retry_permanent`;
- exhausted (the same kind of transient failure settled the segment in `EXHAUSTED_AFTER_RUNS`
  runs, each after its retries) -> skipped unless `retry_failed`;
- anything else -> tried again. A rerun over a finished task starts no worker at all.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import multiprocessing_logging
from tqdm import tqdm

from audiosetdl.audio import clip_is_valid
from audiosetdl.config import DownloadOptions
from audiosetdl.download.classify import classify
from audiosetdl.download.errors import EXHAUSTIBLE_REASONS, ClipError, Failure, Reason, retry_delay_s
from audiosetdl.download.pacing import Charger, Pacer
from audiosetdl.ledger import FAILED, OK, Attempt, LedgerWriter, latest, read_ledger
from audiosetdl.metadata.segments import Segment
from audiosetdl.plan import load_plan, load_task
from audiosetdl.rundir import RunDir, sweep_temp, write_json_atomic

log = logging.getLogger(__name__)

STOP_GRACE_S = 20.0  # after a stop request, how long in-flight clips may still finish
EXHAUSTED_AFTER_RUNS = 2  # runs whose retries all ended in the same kind of transient failure
MAX_FAILED_STARTS = 3  # workers dying before they are ready this many times: the task cannot run here


# ----------------------------------------------------------------------------- fetchers --

FetcherFactory = Callable[[int], object]  # worker index -> an object with fetch(url, ytid, start, end, dest), close()


def ydl_params(options: DownloadOptions, worker_index: int) -> dict:
    """yt-dlp parameters for one worker, parsed by yt-dlp itself from command-line form."""
    import yt_dlp

    argv = ["--quiet", "--no-warnings", "--socket-timeout", str(options.timeout)]
    if options.js_runtime:
        argv += ["--js-runtimes", options.js_runtime]
    if options.cookies:
        argv += ["--cookies", options.cookies]
    if options.proxy:
        argv += ["--proxy", options.proxy[worker_index % len(options.proxy)]]
    if options.sleep_requests:
        argv += ["--sleep-requests", str(options.sleep_requests)]
    argv += list(options.yt_dlp_arg)
    try:
        return yt_dlp.parse_options(argv).ydl_opts
    except SystemExit:  # yt-dlp's parser exits on a bad option
        raise ValueError(f"yt-dlp rejected the options {argv!r} (check --yt-dlp-arg)") from None


def default_fetcher_factory(options: DownloadOptions, pacing_dir: Path | None = None) -> FetcherFactory:
    """Real fetchers; with `pacing_dir`, a re-resolve with another player client takes a ticket of
    the run's egress budget too (the pool charges the first request of each clip)."""
    def make(worker_index: int):
        from audiosetdl.download.fetcher import ClipFetcher, FetchSettings

        clients = tuple(c.strip() for item in options.player_clients for c in item.split(",") if c.strip())
        fetcher = ClipFetcher(FetchSettings(ydl_params=ydl_params(options, worker_index), timeout=options.timeout,
                                            keep_original=options.keep_original, video=options.video,
                                            player_clients=clients,
                                            charge=Charger(pacing_dir, options, worker_index) if pacing_dir else None))
        warm_extractors(options.url_template)
        return fetcher
    return make


def warm_extractors(url_template: str) -> None:
    """yt-dlp matches a URL against its extractors' patterns (~1,800, in order, up to the first that
    fits), compiled on first use: seconds on a busy machine. Done before the worker reports ready, so
    that a clip handed to it is requested at once (the egress budget counts it when handed over)."""
    from yt_dlp.extractor import gen_extractor_classes

    url = url_template.format(ytid="-" * 11)
    for extractor in gen_extractor_classes():
        if extractor.suitable(url):
            return


# ------------------------------------------------------------------------------ workers --

@dataclass(frozen=True)
class Job:
    seq: int
    segment: Segment
    url: str
    dest: Path
    attempt: int


@dataclass(frozen=True)
class JobResult:
    worker: int
    seq: int
    ok: bool
    failure: Failure | None
    bytes_fetched: int
    seconds: float
    padded: float = 0.0
    client: str = ""
    format_id: str = ""
    method: str = ""
    notes: str = ""
    message: str = ""  # for a clip made: what went wrong on the way (other clients tried first)


def _result_of(worker: int, job: Job, clip, seconds: float) -> JobResult:
    return JobResult(worker, job.seq, True, None, clip.bytes_fetched, seconds, clip.padded_seconds,
                     client=getattr(clip, "client", ""), format_id=str(getattr(clip, "format_id", "")),
                     method=getattr(clip, "method", ""), notes="; ".join(getattr(clip, "notes", ())),
                     message=getattr(clip, "message", ""))


def _failure_of(worker: int, job: Job, exc: Exception, seconds: float) -> JobResult:
    failure = exc.failure if isinstance(exc, ClipError) else classify(exc, job.segment.ytid)
    if failure.reason == Reason.UNKNOWN:
        log.exception("unexpected failure on %s", job.segment.ytid)
    return JobResult(worker, job.seq, False, failure, getattr(exc, "bytes_fetched", 0) or 0, seconds,
                     client=getattr(exc, "client", ""), format_id=getattr(exc, "format_id", ""),
                     method=getattr(exc, "method", ""), notes="; ".join(getattr(exc, "notes", ())))


@dataclass(frozen=True)
class WorkerReady:
    """A worker holds its fetcher: a clip handed to it is requested at once (what the budget counts)."""
    worker: int


def _worker_main(worker_index: int, factory: FetcherFactory, jobs, results) -> None:
    # The parent decides when to stop: a Ctrl-C or SLURM's SIGTERM must not kill a clip mid-write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGCONT, signal.SIG_DFL)  # not an inherited handler that logs (see _StopRequest)
    fetcher = factory(worker_index)
    results.put(WorkerReady(worker_index))
    try:
        while (job := jobs.get()) is not None:
            began = time.monotonic()
            try:
                clip = fetcher.fetch(job.url, job.segment.ytid, job.segment.start, job.segment.end, job.dest)
                results.put(_result_of(worker_index, job, clip, time.monotonic() - began))
            except Exception as exc:  # every failure is recorded, none stops the task
                results.put(_failure_of(worker_index, job, exc, time.monotonic() - began))
    finally:
        fetcher.close()


# ------------------------------------------------------------------------------- the task --

@dataclass
class TaskSummary:
    index: int
    segments: int
    done_before: int = 0  # already finished when the task started
    skipped_permanent: int = 0
    skipped_exhausted: int = 0
    ok: int = 0  # finished in this run
    failed: Counter = field(default_factory=Counter)  # final failures in this run, by reason
    cooldowns: int = 0
    stopped: str | None = None  # None: nothing left to try; "rate_limited" or "interrupted": resumable

    @property
    def finished(self) -> bool:
        return self.stopped is None

    def to_json(self) -> dict:
        """The task's state file: `state` is "finished", "rate_limited" or "interrupted"."""
        return {"state": self.stopped or "finished", "at": time.time(), "segments": self.segments,
                "done_before": self.done_before, "skipped_permanent": self.skipped_permanent,
                "skipped_exhausted": self.skipped_exhausted, "ok": self.ok,
                "failed": dict(self.failed), "cooldowns": self.cooldowns}


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


def plan_resume(run: RunDir, index: int, segments: list[Segment], options: DownloadOptions,
                ledger: LedgerWriter) -> tuple[list[tuple[Segment, int]], TaskSummary]:
    """Which segments still need an attempt (with their attempt number), from files and ledger."""
    summary = TaskSummary(index, len(segments))
    history = list(read_ledger(run.ledger_path(index)))
    records = latest(history)
    attempts = Counter(r.key for r in history)
    exhausted = _exhausted_runs(history)
    todo = []
    for segment in segments:
        record = records.get(segment.key)
        if run.clip_path(segment.subset, segment.ytid, segment.start, segment.end).exists() and clip_is_valid(
                run.clip_path(segment.subset, segment.ytid, segment.start, segment.end), segment):
            summary.done_before += 1
            # Killed between the clip's rename and its ledger line; (extract's too_short verdict stands.)
            if record is None or (record.outcome != OK and record.reason != Reason.TOO_SHORT.value):
                ledger.append(Attempt(segment.ytid, segment.subset, segment.start, segment.end, OK,
                                      message="clip found on disk", attempt=attempts[segment.key]))
        elif record is not None and record.outcome == FAILED and record.permanent and not options.retry_permanent:
            summary.skipped_permanent += 1
        elif (record is not None and record.outcome == FAILED and exhausted[segment.key] >= EXHAUSTED_AFTER_RUNS
              and not options.retry_failed):
            summary.skipped_exhausted += 1
        else:
            todo.append((segment, attempts[segment.key] + 1))
    return todo, summary


def _exhausted_runs(history: list[Attempt]) -> Counter:
    """Per segment: the runs that ended in an exhaustible transient failure (their retries spent),
    counted since its last success and since its last failure of another kind."""
    runs: Counter = Counter()
    for record in history:
        if record.outcome == FAILED and record.final and record.reason in EXHAUSTIBLE_REASONS:
            runs[record.key] += 1
        elif record.outcome == OK or record.final:
            runs.pop(record.key, None)
    return runs


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
            proc = context.Process(target=_worker_main, args=(w, self.factory, inbox, results), daemon=True,
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
            workers[w] = context.Process(target=_worker_main, args=(w, self.factory, inboxes[w], results),
                                         daemon=True, name=proc.name)
            workers[w].start()
            self.starting.add(w)
