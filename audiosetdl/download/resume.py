"""Resume decisions: what a download task still has to do, from the clip files and its ledger.

Owns: `plan_resume` and the `TaskSummary` it starts (done, permanently failed, exhausted), and
the rule for exhausted segments: the same kind of transient failure (`EXHAUSTIBLE_REASONS`)
settled the segment in `EXHAUSTED_AFTER_RUNS` runs, each after its retries.

- done (clip file present and valid) -> skipped, even when the ledger missed the record (the
  record is added);
- last failure permanent (private, removed, ...) -> skipped unless `retry_permanent`;
- exhausted -> skipped unless `retry_failed`;
- anything else -> tried again, with the attempt number the ledger gives.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from audiosetdl.audio import clip_is_valid
from audiosetdl.config import DownloadOptions
from audiosetdl.download.errors import EXHAUSTIBLE_REASONS, Reason
from audiosetdl.ledger import FAILED, OK, Attempt, LedgerWriter, latest, read_ledger
from audiosetdl.metadata.segments import Segment
from audiosetdl.rundir import RunDir

EXHAUSTED_AFTER_RUNS = 2  # runs whose retries all ended in the same kind of transient failure


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
