"""A clip fetcher whose outcome per video is scripted: it drives the download stage's scheduling
(retries, pool-wide pauses, pacing, resume, kills) deterministically, across worker processes.

It writes real FLAC clips (atomically, like the real fetcher) and logs every call to a file so a
test can see what was fetched and when. The real fetcher is exercised end to end elsewhere.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from audiosetdl.download.errors import ClipError, Reason
from audiosetdl.rundir import atomic_path


@dataclass(frozen=True)
class ClipDone:
    path: Path
    bytes_fetched: int = 1000
    requests: int = 1
    padded_seconds: float = 0.0
    format_id: str = "scripted"
    method: str = "scripted"


class ScriptedFetcher:
    def __init__(self, log_dir: Path, script: dict[str, list[str]], delay: float = 0.0):
        self.log_dir, self.script, self.delay = Path(log_dir), script, delay

    def fetch(self, url: str, ytid: str, start: float, end: float, dest: Path) -> ClipDone:
        calls = self.log_dir / "calls.jsonl"
        n = sum(1 for line in calls.read_text().splitlines() if json.loads(line)["ytid"] == ytid) \
            if calls.exists() else 0
        steps = self.script.get(ytid, ["ok"])
        outcome = steps[min(n, len(steps) - 1)]
        with open(calls, "a") as fh:
            fh.write(json.dumps({"ytid": ytid, "t": time.time(), "pid": os.getpid(), "outcome": outcome}) + "\n")
        time.sleep(self.delay)
        if outcome != "ok":
            raise ClipError.of(Reason(outcome), f"scripted {outcome}")
        with atomic_path(dest) as tmp:
            samples = round((end - start) * 16000)
            soundfile.write(str(tmp), np.zeros(samples, dtype=np.int16), 16000, subtype="PCM_16", format="FLAC")
        return ClipDone(dest)

    def close(self) -> None:
        pass


def calls(log_dir: Path) -> list[dict]:
    path = Path(log_dir) / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def factory(log_dir: Path, script: dict[str, list[str]] | None = None, delay: float = 0.0):
    return lambda worker_index: ScriptedFetcher(log_dir, script or {}, delay)
