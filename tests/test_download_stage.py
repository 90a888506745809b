"""The download stage's decisions: resume, retries, permanent failures, pool-wide pauses, pacing,
stopping, and surviving SIGKILL. Fetching itself is scripted here (tests/scripted_fetcher.py);
the real fetcher runs end to end in tests/test_download_e2e.py."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from audiosetdl.config import DownloadOptions, PlanOptions
from audiosetdl.audio import clip_is_valid
from audiosetdl.download.stage import run_task
from audiosetdl.ledger import read_ledger
from audiosetdl.metadata.segments import Segment, render_csv
from audiosetdl.plan import load_plan, load_task, write_plan
from audiosetdl.planner import build_plan
from audiosetdl.rundir import TEMP_MARK, RunDir
from tests.scripted_fetcher import calls, factory

IDS = ["-aaaaaaaaaa", "-bbbbbbbbbb", "cccccccccc1", "ddddddddddd", "eeeeeeeeeee", "fffffffffff"]
FAST = DownloadOptions(workers=2, max_rate=0, cooldown=0.5, retries=3)


def make_run(tmp_path: Path, ids=IDS, tasks: int = 1) -> RunDir:
    csv = tmp_path / "eval_segments.csv"
    csv.write_text(render_csv([Segment(y, 0.0, 2.5 if i % 2 else 10.0, ("/m/09x0r",)) for i, y in enumerate(ids)],
                              "t"))
    run = RunDir(tmp_path / "run")
    write_plan(run, build_plan([csv], PlanOptions(tasks=tasks, labels=False)))
    return run


def outcomes(run: RunDir, index: int = 0) -> list[tuple[str, str, str, int]]:
    return [(r.ytid, r.outcome, r.reason, r.attempt) for r in read_ledger(run.ledger_path(index))]


def test_all_ok_then_rerun_does_nothing(tmp_path):
    run = make_run(tmp_path)
    summary = run_task(run, 0, FAST, fetcher_factory=factory(tmp_path), progress=False)
    assert (summary.ok, summary.done_before, summary.finished) == (6, 0, True)
    plan = load_plan(run)
    for segment in load_task(run, plan, 0):
        assert clip_is_valid(run.clip_path(segment.subset, segment.ytid, segment.start, segment.end), segment)
    assert sorted(o[:2] for o in outcomes(run)) == sorted((y, "ok") for y in IDS)
    again = run_task(run, 0, FAST, fetcher_factory=factory(tmp_path), progress=False)
    assert (again.ok, again.done_before) == (0, 6)
    assert len(calls(tmp_path)) == 6  # the rerun fetched nothing
    assert json.loads(run.task_state_path(0).read_text())["state"] == "finished"


def test_transient_failures_retry_then_succeed(tmp_path):
    run = make_run(tmp_path, IDS[:2])
    script = {IDS[0]: ["network", "network", "ok"], IDS[1]: ["network"]}
    summary = run_task(run, 0, DownloadOptions(workers=1, max_rate=0, retries=2), progress=False,
                       fetcher_factory=factory(tmp_path, script))
    assert summary.ok == 1 and summary.failed == {"network": 1}
    records = outcomes(run)
    assert [r for r in records if r[0] == IDS[0]] == [(IDS[0], "failed", "network", 1),
                                                      (IDS[0], "failed", "network", 2), (IDS[0], "ok", "", 3)]
    assert [r[3] for r in records if r[0] == IDS[1]] == [1, 2, 3]  # 1 try + 2 retries, then given up
    # A rerun tries the transient failure again, and only that one.
    run_task(run, 0, DownloadOptions(workers=1, max_rate=0, retries=0), progress=False,
             fetcher_factory=factory(tmp_path, script))
    assert [c["ytid"] for c in calls(tmp_path)][-1] == IDS[1] and len(calls(tmp_path)) == 7


def test_permanent_failures_are_not_retried_unless_asked(tmp_path):
    run = make_run(tmp_path, IDS[:3])
    script = {IDS[0]: ["private"], IDS[1]: ["removed", "ok"]}
    summary = run_task(run, 0, FAST, fetcher_factory=factory(tmp_path, script), progress=False)
    assert summary.failed == {"private": 1, "removed": 1} and summary.ok == 1
    assert len(calls(tmp_path)) == 3
    ledger = {r.ytid: r for r in read_ledger(run.ledger_path(0))}
    assert ledger[IDS[0]].permanent and ledger[IDS[0]].message == "scripted private"
    summary = run_task(run, 0, FAST, fetcher_factory=factory(tmp_path, script), progress=False)
    assert summary.skipped_permanent == 2 and len(calls(tmp_path)) == 3
    summary = run_task(run, 0, DownloadOptions(workers=2, max_rate=0, retry_permanent=True), progress=False,
                       fetcher_factory=factory(tmp_path, script))
    assert summary.ok == 1 and summary.failed == {"private": 1}


def test_rate_limit_pauses_the_whole_pool(tmp_path):
    run = make_run(tmp_path)
    script = {IDS[0]: ["rate_limited", "ok"]}
    options = DownloadOptions(workers=2, max_rate=0, cooldown=1.5, retries=0)
    summary = run_task(run, 0, options, fetcher_factory=factory(tmp_path, script, delay=0.2), progress=False)
    assert summary.ok == 6 and summary.cooldowns == 1 and summary.finished  # retried although retries=0
    log = calls(tmp_path)
    refused = next(c for c in log if c["outcome"] == "rate_limited")
    started_later = [c["t"] for c in log if c["t"] > refused["t"] + 0.21]  # after the refusal came back
    assert started_later and min(started_later) >= refused["t"] + 0.2 + 1.5 - 0.05  # nobody fetched during the pause


def test_repeated_bot_checks_stop_the_task_resumably(tmp_path):
    run = make_run(tmp_path)
    script = {y: ["bot_check"] for y in IDS}
    options = DownloadOptions(workers=1, max_rate=0, cooldown=0.1, max_cooldowns=2)
    summary = run_task(run, 0, options, fetcher_factory=factory(tmp_path, script), progress=False)
    assert summary.stopped == "rate_limited" and summary.cooldowns == 3
    assert json.loads(run.task_state_path(0).read_text())["state"] == "rate_limited"
    assert len(calls(tmp_path)) == 3
    assert all(r[1:3] == ("failed", "bot_check") for r in outcomes(run))
    assert all(not r.permanent for r in read_ledger(run.ledger_path(0)))
    summary = run_task(run, 0, options, fetcher_factory=factory(tmp_path), progress=False)  # YouTube relents
    assert summary.finished and summary.ok == 6


def test_max_rate_paces_dispatch(tmp_path):
    """The run-wide budget (audiosetdl/download/pacing.py; across tasks in tests/test_pacing*.py), here
    5 per 1 s window: requests spread 0.2 s apart, never 6 in a window."""
    run = make_run(tmp_path)
    run_task(run, 0, DownloadOptions(workers=3, max_rate=5, rate_window=1.0), fetcher_factory=factory(tmp_path),
             progress=False)
    starts = sorted(c["t"] for c in calls(tmp_path))
    assert starts[5] - starts[0] >= 1.0 - 0.05  # the 6th video waits for the window
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert sorted(gaps)[len(gaps) // 2] >= 0.19 and min(gaps) >= 0.1, gaps  # spread out, not a burst of 5
    assert sorted(p.name for p in (run.root / "pacing").iterdir()) == ["direct"]


KILL_SCRIPT = """
import sys
from pathlib import Path
from audiosetdl.config import DownloadOptions
from audiosetdl.download.stage import run_task
from audiosetdl.rundir import RunDir
from tests.scripted_fetcher import factory
run_task(RunDir(sys.argv[1]), 0, DownloadOptions(workers=2, max_rate=0), progress=False,
         fetcher_factory=factory(Path(sys.argv[2]), delay=0.3))
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_task_loses_nothing(tmp_path, sig):
    ids = [f"{c}{c}{i:09d}" for c in "abcdefgh" for i in range(3)]
    run = make_run(tmp_path, ids)
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(run.root), str(tmp_path)],
                            cwd=Path(__file__).resolve().parents[1], start_new_session=True)
    deadline = time.time() + 30
    while len(calls(tmp_path)) < 6 and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, sig) if sig == signal.SIGKILL else proc.send_signal(sig)
    proc.wait(timeout=30)
    assert len(calls(tmp_path)) < len(ids), "the task finished before it was killed"
    audio = list((run.root / "audio").rglob("*"))
    assert not [p for p in audio if TEMP_MARK in p.name and sig == signal.SIGTERM]  # SIGTERM: clean stop
    finished = {p.name for p in audio if p.suffix == ".flac" and TEMP_MARK not in p.name}
    plan = load_plan(run)
    segments = load_task(run, plan, 0)
    for segment in segments:
        path = run.clip_path(segment.subset, segment.ytid, segment.start, segment.end)
        if path.name in finished:
            assert clip_is_valid(path, segment)  # nothing half-written under a final name
    summary = run_task(run, 0, DownloadOptions(workers=2, max_rate=0), progress=False, fetcher_factory=factory(tmp_path))
    assert summary.finished and summary.done_before + summary.ok == len(ids)
    assert not [p for p in (run.root / "audio").rglob("*") if TEMP_MARK in p.name]
    ok = {r.ytid for r in read_ledger(run.ledger_path(0)) if r.outcome == "ok"}
    assert ok == set(ids)
