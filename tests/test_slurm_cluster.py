"""The local SLURM cluster (slurm/local-cluster.sh) does what the project relies on.

Array jobs with throttling, submitit job arrays, cancellation seen through sacct, and
``aftercorr`` dependencies between arrays.  Needs root; see tests/slurm_fixtures.py.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.slurm_fixtures import REPO, SCRIPT, SlurmCluster

submitit = pytest.importorskip("submitit")

pytestmark = pytest.mark.slow


def _read_floats(path: Path) -> list[float]:
    return [float(x) for x in path.read_text().split()]


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = cur = 0
    for _, delta in events:  # at equal times, ends (-1) sort before starts (+1)
        cur += delta
        best = max(best, cur)
    return best


def _executor(tmp_path: Path, **params) -> "submitit.AutoExecutor":
    ex = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    ex.update_parameters(
        slurm_partition="debug",
        timeout_min=5,
        cpus_per_task=1,
        # the job unpickles functions of this module: make `tests` importable wherever it runs
        slurm_setup=[f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}"],
        **params,
    )
    return ex


def square_and_where(x: int) -> tuple[int, str, str]:
    return x * x, os.environ.get("SLURM_ARRAY_TASK_ID", ""), os.environ.get("SLURM_JOB_PARTITION", "")


def touch_and_sleep(marker: str, seconds: float) -> None:
    Path(marker).write_text(os.environ.get("SLURM_JOB_ID", ""))
    time.sleep(seconds)


def test_cluster_basics(slurm_cluster: SlurmCluster) -> None:
    assert {"cpu", "debug"} <= set(slurm_cluster.partitions)
    assert slurm_cluster.default_partition == "cpu"
    assert os.environ["SLURM_CONF"] == str(slurm_cluster.conf) and slurm_cluster.conf.is_file()
    # a second start while running is harmless: same daemons, exit 0
    pids = sorted(p.read_text() for p in (slurm_cluster.prefix / "run").glob("*.pid"))
    res = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "already running" in res.stderr
    assert sorted(p.read_text() for p in (slurm_cluster.prefix / "run").glob("*.pid")) == pids
    res = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run(["bash", str(SCRIPT), "env"], capture_output=True, text=True, timeout=60)
    assert f"export SLURM_CONF={slurm_cluster.conf}" in res.stdout.splitlines()


def test_sbatch_array_throttled(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    script = (
        'date +%s.%N > "t_$SLURM_ARRAY_TASK_ID"; sleep 1; '
        'echo "$SLURM_ARRAY_TASK_ID" > "task_$SLURM_ARRAY_TASK_ID.txt"; date +%s.%N >> "t_$SLURM_ARRAY_TASK_ID"'
    )
    job = slurm_cluster.sbatch(
        "--array=0-3%2", "-J", "tiny-array", "-o", str(tmp_path / "out_%A_%a.txt"), "--wrap", script, cwd=tmp_path
    )
    states = slurm_cluster.wait(job, timeout=60)
    assert states == {f"{job}_{i}": "COMPLETED" for i in range(4)}, states
    for i in range(4):
        assert (tmp_path / f"task_{i}.txt").read_text().strip() == str(i)
    spans = [tuple(_read_floats(tmp_path / f"t_{i}")) for i in range(4)]
    assert _max_overlap(spans) <= 2, f"%2 throttle not honoured: {spans}"


def test_submitit_job_array(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    ex = _executor(tmp_path, slurm_array_parallelism=4)
    jobs = ex.map_array(square_and_where, [0, 1, 2, 3])
    assert len({j.job_id.split("_")[0] for j in jobs}) == 1, "expected one job array"
    results = [j.result() for j in jobs]
    assert [r[0] for r in results] == [0, 1, 4, 9]
    assert sorted(r[1] for r in results) == ["0", "1", "2", "3"]
    assert {r[2] for r in results} == {"debug"}
    assert set(slurm_cluster.wait(jobs[0].job_id.split("_")[0], timeout=30).values()) == {"COMPLETED"}


def test_cancel_seen_by_submitit_and_sacct(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    marker = tmp_path / "running"
    job = _executor(tmp_path).submit(touch_and_sleep, str(marker), 300)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, f"job never started: {slurm_cluster.states(job.job_id)}"
        time.sleep(0.2)
    job.cancel()  # scancel
    states = slurm_cluster.wait(job.job_id, timeout=60)
    assert states == {job.job_id: "CANCELLED"}, states
    # submitit asks sacct: without accounting this would stay UNKNOWN
    assert job.get_info(mode="force").get("State", "").startswith("CANCELLED")
    assert job.done()
    # result() raises; submitit first waits _results_timeout_s (15 s) for a result file
    if hasattr(job, "_results_timeout_s"):
        job._results_timeout_s = 1
    with pytest.raises(submitit.core.utils.UncompletedJobError):
        job.result()


def test_aftercorr_dependency(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    # first array: task 0 is short, task 1 long; each notes when it ends
    first = slurm_cluster.sbatch(
        "--array=0-1", "-p", "debug", "-o", "/dev/null",
        "--wrap", 'sleep $(( 1 + 5 * SLURM_ARRAY_TASK_ID )); date +%s.%N > "a_end_$SLURM_ARRAY_TASK_ID"',
        cwd=tmp_path,
    )  # fmt: skip
    second = slurm_cluster.sbatch(
        "--array=0-1", "-p", "debug", "-o", "/dev/null", f"--dependency=aftercorr:{first}",
        "--wrap", 'date +%s.%N > "b_start_$SLURM_ARRAY_TASK_ID"',
        cwd=tmp_path,
    )  # fmt: skip
    states = slurm_cluster.wait(first, second, timeout=60)
    assert set(states.values()) == {"COMPLETED"} and len(states) == 4, states
    a_end = [_read_floats(tmp_path / f"a_end_{i}")[0] for i in range(2)]
    b_start = [_read_floats(tmp_path / f"b_start_{i}")[0] for i in range(2)]
    assert b_start[0] >= a_end[0] and b_start[1] >= a_end[1], (a_end, b_start)
    # task 0 of the second array did not wait for the whole first array (that would be afterok)
    assert b_start[0] < a_end[1], (a_end, b_start)
