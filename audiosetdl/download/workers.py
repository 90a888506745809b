"""The download workers: processes that each hold one long-lived clip fetcher and fetch the clips
they are handed, reporting every outcome to the task's parent.

Owns: the yt-dlp parameters of a worker (`ydl_params`, parsed by yt-dlp itself), the default
fetcher factory (a `ClipFetcher` per worker, whose re-resolves with another player client take a
ticket of the run's egress budget), the messages between parent and worker (`Job`, `JobResult`,
`WorkerReady`), and `worker_main`. A worker ignores SIGINT and SIGTERM: the parent decides when
to stop, so a Ctrl-C or SLURM's SIGTERM never kills a clip mid-write.
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from audiosetdl.config import DownloadOptions
from audiosetdl.download.classify import classify
from audiosetdl.download.errors import ClipError, Failure, Reason
from audiosetdl.download.pacing import Charger
from audiosetdl.metadata.segments import Segment

log = logging.getLogger(__name__)


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


def worker_main(worker_index: int, factory: FetcherFactory, jobs, results) -> None:
    # The parent decides when to stop: a Ctrl-C or SLURM's SIGTERM must not kill a clip mid-write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGCONT, signal.SIG_DFL)  # not an inherited handler that logs (see stage._StopRequest)
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
