"""A real single-node SLURM cluster for tests, started with ``slurm/local-cluster.sh``.

Use it from a test module with::

    from tests.slurm_fixtures import slurm_cluster  # noqa: F401  (pytest finds it by name)

    @pytest.mark.slow
    def test_something(slurm_cluster, tmp_path):
        job_id = slurm_cluster.sbatch("--array=0-3", "--wrap", "true", cwd=tmp_path)
        states = slurm_cluster.wait(job_id, timeout=60)   # {"12_0": "COMPLETED", ...}

The fixture is session scoped.  It starts the cluster (installing SLURM, munge and MariaDB with
apt-get when they are missing, which needs root), puts ``SLURM_CONF`` and a PATH with the
SLURM binaries into ``os.environ`` for the session (so submitit, ``subprocess`` and jobs find
the cluster), and stops the cluster again at the end of the session.

It skips, with the reason, when the cluster cannot be had: not root, no apt-get with packages
missing, or ``start`` failing (the tail of the script's output is in the reason).  Set
``AUDIOSETDL_SLURM_REQUIRED=1`` (CI) to turn those skips into failures.  Set
``AUDIOSETDL_SLURM_KEEP=1`` to leave the cluster running after the session.  The cluster's
prefix comes from ``AUDIOSETDL_SLURM_PREFIX`` as for the script.

Several pytest processes may share one cluster: each registers itself under
``$PREFIX/users/`` and only the last one to leave stops it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "slurm" / "local-cluster.sh"
START_TIMEOUT_S = 1200  # a first start installs packages
SYSTEM_PATH_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

# sacct states after which a job (or array task) will not change any more by itself.
# PREEMPTED and REQUEUED are not final: the job may come back.
FINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "BOOT_FAIL",
        "DEADLINE",
        "REVOKED",
    }
)

_SCONTROL_FIELD = re.compile(r"(?:^|\s)(JobId|ArrayJobId|ArrayTaskId|JobState)=(\S+)")


def default_prefix() -> Path:
    env = os.environ.get("AUDIOSETDL_SLURM_PREFIX")
    if env:
        return Path(env)
    return Path(os.environ.get("TMPDIR") or "/tmp") / "audiosetdl-slurm"


@dataclass
class SlurmCluster:
    """Handle on the running local cluster (what the ``slurm_cluster`` fixture yields)."""

    prefix: Path
    conf: Path  # the slurm.conf, also in os.environ["SLURM_CONF"]
    partitions: tuple[str, ...]  # e.g. ("cpu", "debug")
    default_partition: str  # e.g. "cpu"
    script: Path = SCRIPT
    start_output: str = field(default="", repr=False)

    # -- plain commands -------------------------------------------------------------
    def run(self, *cmd: str, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        """Run a SLURM client command (sbatch, squeue, ...) against this cluster; text output."""
        return subprocess.run(
            list(cmd), check=check, timeout=timeout, capture_output=True, text=True, **kw
        )

    def sbatch(self, *args: str, cwd: str | os.PathLike | None = None) -> str:
        """``sbatch --parsable ARGS...``; returns the job id (array jobs: the array's id)."""
        out = self.run("sbatch", "--parsable", *args, cwd=cwd).stdout.strip()
        return out.split(";")[0]  # --parsable prints "id" or "id;cluster"

    def scancel(self, *job_ids: str) -> None:
        self.run("scancel", *job_ids)

    # -- states ---------------------------------------------------------------------
    def states(self, *job_ids: str) -> dict[str, str]:
        """sacct's view: {"12": "COMPLETED"} or, for arrays, {"13_0": ..., "13_[2-3%2]": "PENDING"}.

        One row per job or array task (no steps); "CANCELLED by 0" is reported as "CANCELLED".
        Rows for tasks that have not started yet keep their bracketed range id.
        """
        if not job_ids:
            return {}
        cmd = ["sacct", "-n", "-P", "-X", "-o", "JobID,State"]
        for j in job_ids:
            cmd += ["-j", str(j)]
        res = self.run(*cmd, check=False)
        out: dict[str, str] = {}
        for line in res.stdout.splitlines():
            if "|" not in line:
                continue
            jid, state = line.split("|", 1)
            out[jid.strip()] = state.split()[0] if state.strip() else "UNKNOWN"
        return out

    def ctld_states(self, *job_ids: str) -> dict[str, str]:
        """slurmctld's view (``scontrol show job``), same keys as :meth:`states`.

        Authoritative and immediate, but only for jobs that finished less than MinJobAge
        (300 s) ago; unknown ids are left out.
        """
        out: dict[str, str] = {}
        for j in job_ids:
            res = self.run("scontrol", "-o", "show", "job", str(j), check=False)
            for line in res.stdout.splitlines():
                f = dict(_SCONTROL_FIELD.findall(line))
                if "JobId" not in f:
                    continue
                if f.get("ArrayTaskId"):
                    task = f["ArrayTaskId"]
                    key = f"{f['ArrayJobId']}_{task}" if task.isdigit() else f"{f['ArrayJobId']}_[{task}]"
                else:
                    key = f["JobId"]
                out[key] = f.get("JobState", "UNKNOWN")
        return out

    def queued(self, *job_ids: str) -> dict[str, str]:
        """The given jobs' tasks that are not finished yet: {"13_1": "RUNNING", "13_[2-3%2]": "PENDING"}."""
        return {k: v for k, v in self.ctld_states(*job_ids).items() if v not in FINAL_STATES}

    def wait(self, *job_ids: str, timeout: float = 120, poll: float = 0.5) -> dict[str, str]:
        """Wait until every given job (all tasks of arrays) has finished and sacct has recorded it.

        Returns ``states(*job_ids)`` (sacct), e.g. {"13_0": "COMPLETED", "13_1": "FAILED"};
        raises TimeoutError (with both views) after ``timeout`` seconds.  A job that can never
        run (e.g. DependencyNeverSatisfied) times out.

        sacct lags slurmctld by a second or more and, meanwhile, may show an array as a single
        row with the array's id: the tasks slurmctld knows must all be in sacct, final.
        """
        deadline = time.monotonic() + timeout
        ctld: dict[str, str] = {}
        acct: dict[str, str] = {}
        while True:
            ctld = self.ctld_states(*job_ids)
            if all(s in FINAL_STATES for s in ctld.values()):
                acct = self.states(*job_ids)
                known = set(ctld) if ctld else set(acct)
                if (
                    acct
                    and known <= set(acct)
                    and all(acct[k] in FINAL_STATES for k in known)
                    and not any("[" in k for k in acct)
                    and all(any(k == str(j) or k.startswith(f"{j}_") for k in acct) for j in job_ids)
                ):
                    return acct
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"jobs {', '.join(map(str, job_ids))} not finished after {timeout} s; "
                    f"slurmctld: {ctld or '-'}; sacct: {self.states(*job_ids) or '-'}"
                )
            time.sleep(poll)

    def wait_for_state(self, job_id: str, wanted: Iterable[str], timeout: float = 60, poll: float = 0.3) -> str:
        """Wait until slurmctld (or, once it forgot the job, sacct) shows job_id in one of ``wanted``."""
        wanted = set(wanted)
        deadline = time.monotonic() + timeout
        while True:
            state = self.ctld_states(job_id).get(str(job_id)) or self.states(job_id).get(str(job_id), "")
            if state in wanted:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is {state or 'unknown'}, not {sorted(wanted)}, after {timeout} s")
            time.sleep(poll)

    def log_tail(self, name: str = "slurmctld", lines: int = 30) -> str:
        """Last lines of a daemon log (slurmctld, slurmd, slurmdbd), for assertion messages."""
        path = self.prefix / "log" / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"({path}: {e})"


# ---------------------------------------------------------------------------------------
# One cluster per process however many modules import the fixture (pytest makes a separate
# session fixture for each module that imports it), plus a cross-process user registry.

_state: dict = {"users": 0, "cluster": None, "skip": None, "token": None, "env": None}


def _script(cmd: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), cmd], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def _users_dir(prefix: Path) -> Path:
    return prefix / "users"


def _other_live_users(prefix: Path, token: str) -> list[str]:
    live = []
    for f in _users_dir(prefix).glob("*"):
        if f.name == token:
            continue
        try:
            os.kill(int(f.name.split("-")[0]), 0)
        except (ValueError, ProcessLookupError):
            f.unlink(missing_ok=True)  # left by a process that is gone
            continue
        except PermissionError:
            pass
        live.append(f.name)
    return live


def _unavailable(reason: str) -> None:
    """Skip (or, with AUDIOSETDL_SLURM_REQUIRED=1, fail) every test needing the cluster."""
    _state["skip"] = reason
    if os.environ.get("AUDIOSETDL_SLURM_REQUIRED") == "1":
        pytest.fail(f"local SLURM cluster required but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def _acquire() -> SlurmCluster:
    if _state["cluster"] is not None:
        _state["users"] += 1
        return _state["cluster"]
    if _state["skip"] is not None:
        _unavailable(_state["skip"])

    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        _unavailable("local SLURM cluster needs root (slurm/local-cluster.sh installs packages and runs daemons as root)")
    if shutil.which("bash") is None:
        _unavailable("local SLURM cluster needs bash")
    prefix = default_prefix()
    if not prefix.is_absolute():
        _unavailable(f"AUDIOSETDL_SLURM_PREFIX must be an absolute path, got {str(prefix)!r}")
    missing = [b for b in ("slurmctld", "slurmd", "sbatch", "munged") if not _which_system(b)]
    if missing and shutil.which("apt-get") is None:
        _unavailable(f"SLURM not installed ({', '.join(missing)} missing) and no apt-get to install it")

    # Register before starting, so that a concurrent session's teardown does not stop the
    # cluster between our start and our first job.
    token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    _users_dir(prefix).mkdir(parents=True, exist_ok=True)
    (_users_dir(prefix) / token).touch()
    _state["token"] = token

    try:
        res = _script("start", timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        (_users_dir(prefix) / token).unlink(missing_ok=True)
        _unavailable(f"slurm/local-cluster.sh start took more than {START_TIMEOUT_S} s")
    output = (res.stdout + res.stderr).strip()
    if res.returncode != 0:
        (_users_dir(prefix) / token).unlink(missing_ok=True)
        if res.returncode == 1 and not _other_live_users(prefix, token):
            _script("stop", timeout=180)  # a daemon failed: stop those that did start
        tail = "\n".join(output.splitlines()[-15:])
        _unavailable(f"slurm/local-cluster.sh start failed (exit {res.returncode}):\n{tail}")

    # the environment for this session: SLURM_CONF, and the SLURM binaries on PATH
    env_lines = _script("env", timeout=30).stdout.splitlines()
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PATH", "AUDIOSETDL_SLURM_PREFIX")}
    _state["env"] = saved
    for line in env_lines:
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export ") :].split("=", 1)
            os.environ[key] = value
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(path + [d for d in SYSTEM_PATH_DIRS if d not in path])
    conf = Path(os.environ["SLURM_CONF"])

    sinfo = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30)
    names = [p.strip() for p in sinfo.stdout.split() if p.strip()]
    partitions = tuple(p.rstrip("*") for p in names)
    default = next((p.rstrip("*") for p in names if p.endswith("*")), partitions[0] if partitions else "")
    cluster = SlurmCluster(
        prefix=prefix, conf=conf, partitions=partitions, default_partition=default, start_output=output
    )
    _state["cluster"] = cluster
    _state["users"] = 1
    return cluster


def _release() -> None:
    _state["users"] -= 1
    if _state["users"] > 0 or _state["cluster"] is None:
        return
    cluster: SlurmCluster = _state["cluster"]
    _state["cluster"] = None
    token = _state["token"]
    (_users_dir(cluster.prefix) / token).unlink(missing_ok=True)
    try:
        others = _other_live_users(cluster.prefix, token)
        if os.environ.get("AUDIOSETDL_SLURM_KEEP") == "1" or others:
            return
        res = _script("stop", timeout=180)
        if res.returncode != 0:
            # teardown must not hide test results, but leftovers must be visible
            print(f"slurm/local-cluster.sh stop failed (exit {res.returncode}):\n{res.stdout}{res.stderr}")
    finally:
        for key, value in (_state["env"] or {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _which_system(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *SYSTEM_PATH_DIRS])
    return shutil.which(name, path=path)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The local SLURM cluster (session scoped); see the module docstring."""
    cluster = _acquire()
    try:
        yield cluster
    finally:
        _release()
