"""The run-wide egress budget end to end: several download tasks at once (separate processes, and
a SLURM array), real yt-dlp and the real fetcher against the loopback media server, whose own
request log is the judge: every video request (yt-dlp's generic extractor opens each video with
one GET without a Range header) must keep within the budget in every window.

A short test-only window (`--rate-window`) keeps each test to seconds; production's is an hour.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from audiosetdl.backends.slurm import submit
from audiosetdl.config import DownloadOptions, PlanOptions, SlurmOptions
from audiosetdl.ledger import OK, read_ledger
from audiosetdl.metadata.segments import Segment, render_csv
from audiosetdl.plan import load_plan, write_plan
from audiosetdl.planner import build_plan
from audiosetdl.rundir import RunDir
from tests.media import Shape
from tests.mediaserver import MediaServer
from tests.test_pacing import max_in_window

REPO = Path(__file__).resolve().parents[1]
# A request counts when handed to a worker; it reaches the server up to this much later than another one
# (a fresh worker's first request: yt-dlp sets up its HTTP handlers lazily; seconds on a loaded machine).
TOLERANCE_S = 1.0


def make_run(tmp_path: Path, per_task: int, tasks: int) -> tuple[RunDir, list[str]]:
    """`tasks` keys of `per_task` videos each (one key per task), 10 s segments."""
    ids = [f"{c}{c}pace{i:05d}" for c in "abcdefgh"[:tasks] for i in range(per_task)]
    csv = tmp_path / "eval_segments.csv"
    csv.write_text(render_csv([Segment(y, 10.0 * (i % 3), 10.0 * (i % 3) + 10, ("/m/09x0r",))
                               for i, y in enumerate(ids)], "t"))
    run = RunDir(tmp_path / "run")
    write_plan(run, build_plan([csv], PlanOptions(tasks=tasks, labels=False)))
    return run, ids


def video_requests(server: MediaServer) -> list[tuple[float, str]]:
    """(time, ytid) of each video request: the extractor's GET without a Range header."""
    return sorted((r.started_at, r.ytid) for r in server.requests() if r.method == "GET" and r.range_header is None)


def download(run: RunDir, task: int, template: str, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "audiosetdl", "download", str(run.root), "--task", str(task), "--url-template",
               template, "--retries", "0", "--log-level", "WARNING", *extra]
    return subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, timeout: float = 120) -> None:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-2000:]


def all_ok(run: RunDir) -> set[str]:
    return {r.ytid for t in load_plan(run).tasks for r in read_ledger(run.ledger_path(t.index)) if r.outcome == OK}


def test_four_tasks_at_once_share_one_budget(tmp_path, media_60s):
    run, ids = make_run(tmp_path, per_task=3, tasks=4)
    with MediaServer() as server:
        for ytid in ids:
            server.add(ytid, media_60s[Shape.DASH_M4A].path)
        budget = ("--max-rate", "3", "--rate-window", "4", "--workers", "2")
        procs = [download(run, i, server.url_template("m4a"), *budget) for i in range(4)]
        for proc in procs:
            finish(proc)
        requests = video_requests(server)
    assert all_ok(run) == set(ids) and sorted(y for _, y in requests) == sorted(ids)  # one request per video
    times = [t for t, _ in requests]
    assert max_in_window(times, 4 - TOLERANCE_S) <= 3, [round(t - times[0], 2) for t in times]
    assert len({y[:2] for _, y in requests[:6]}) >= 2  # the tasks really ran at once, taking turns
    # Not merely slow: 12 videos at 3 per 4 s need 3 windows (and get little more than their budget).
    assert 3 * 4 - TOLERANCE_S <= times[-1] - times[0] < 3 * (4 + 4 / 3) + 10


def test_each_proxy_has_its_own_budget(tmp_path, media_60s):
    run, ids = make_run(tmp_path, per_task=4, tasks=2)
    with ExitStack() as stack:
        proxies = [stack.enter_context(MediaServer()) for _ in range(2)]  # each answers as an HTTP proxy would
        for proxy in proxies:
            for ytid in ids:
                proxy.add(ytid, media_60s[Shape.DASH_M4A].path)
        unreachable = "http://127.0.0.1:9/media/{ytid}.m4a"  # only the proxies can fetch it
        budget = ("--max-rate", "2", "--rate-window", "4", "--workers", "2",
                  "--proxy", proxies[0].base_url, "--proxy", proxies[1].base_url)
        procs = [download(run, i, unreachable, *budget) for i in range(2)]
        for proc in procs:
            finish(proc)
        per_proxy = [[t for t, _ in video_requests(proxy)] for proxy in proxies]
    # Worker w goes through proxy w % 2; which worker takes which clip is the pool's choice.
    assert all_ok(run) == set(ids) and sum(map(len, per_proxy)) == len(ids) and all(per_proxy)
    for times in per_proxy:
        assert max_in_window(times, 4 - TOLERANCE_S) <= 2, [round(t - times[0], 2) for t in times]
    assert max_in_window(per_proxy[0] + per_proxy[1], 4 - TOLERANCE_S) > 2  # two budgets, spent side by side


def reserved_by(run: RunDir, pid: int) -> bool:
    for path in (run.pacing_dir / "direct").glob("0*"):
        try:
            ticket = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if ticket["state"] == "reserved" and ticket["pid"] == pid:
            return True
    return False


def test_a_killed_task_frees_its_reservation_but_its_request_counts(tmp_path, media_60s):
    """2 per 12 s: requests 6 s apart (window/N); a reservation is used within 6 s (its lease)."""
    run, ids = make_run(tmp_path, per_task=2, tasks=2)
    budget = ("--max-rate", "2", "--rate-window", "12", "--workers", "2")
    with MediaServer() as server:
        for ytid in ids:
            server.add(ytid, media_60s[Shape.DASH_M4A].path)
        first = download(run, 0, server.url_template("m4a"), *budget)
        deadline = time.monotonic() + 60
        while not (video_requests(server) and reserved_by(run, first.pid)):  # one request out, the next waiting
            assert time.monotonic() < deadline and first.poll() is None, "task 0 never reserved its next request"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        t0 = video_requests(server)[0][0]
        second = download(run, 1, server.url_template("m4a"), *budget, "--workers", "1")
        finish(second)
        requests = video_requests(server)
    task1 = [t for t, y in requests if y.startswith("bb")]
    assert len(task1) == 2 and len([y for _, y in requests if y.startswith("aa")]) == 1
    # Freed: task 1 took task 0's reservation (due at t0 + 6) instead of waiting for the window and
    # a lease (t0 + 18), as it must while that reservation's owner lives.
    assert t0 + 6 - TOLERANCE_S <= task1[0] < t0 + 18 - TOLERANCE_S, [round(t - t0, 2) for t in task1]
    # Counted: task 0's request still holds its place for a window (+ a lease): task 1's second waits for it.
    assert task1[1] >= t0 + 18 - TOLERANCE_S, [round(t - t0, 2) for t in task1]
    assert max_in_window([t for t, _ in requests], 12 - TOLERANCE_S) <= 2


@pytest.mark.slow
def test_slurm_array_shares_one_budget(slurm_cluster, tmp_path, media_server, media_60s, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the jobs run this checkout
    run, ids = make_run(tmp_path, per_task=3, tasks=4)
    for ytid in ids:
        media_server.add(ytid, media_60s[Shape.DASH_M4A].path)
    options = DownloadOptions(url_template=media_server.url_template("m4a"), max_rate=3, rate_window=4, workers=2,
                              retries=0)
    slurm = SlurmOptions(partition="debug", cpus_per_task=1, mem="1G", time="10")
    printed: list[str] = []
    (job,) = submit(run, ["download"], slurm, options, None, out=printed.append)
    assert [line for line in printed if line.startswith("download: 12 segments at 3 videos per 4 s")]
    states = slurm_cluster.wait(job["job_id"], timeout=300)
    assert set(states.values()) == {"COMPLETED"} and len(states) == 4, states
    requests = video_requests(media_server)
    assert all_ok(run) == set(ids) and sorted(y for _, y in requests) == sorted(ids)
    times = [t for t, _ in requests]
    assert max_in_window(times, 4 - TOLERANCE_S) <= 3, [round(t - times[0], 2) for t in times]
    assert len({y[:2] for _, y in requests[:6]}) >= 2  # array tasks ran at once, taking turns
