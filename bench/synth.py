"""Synthetic AudioSet segment CSVs in the real released format, for benchmarks."""

from __future__ import annotations

import random
import string
from pathlib import Path

ID_ALPHABET = string.ascii_letters + string.digits + "-_"
UNBALANCED_ROWS = 2_042_985  # rows of the released unbalanced_train_segments.csv


def write_synthetic_csv(path: Path, rows: int, mids: list[str], seed: int = 0) -> Path:
    """`rows` segments with random 11-character IDs and 1-4 labels drawn from `mids`."""
    rng = random.Random(seed)
    lines = [
        "# Segments csv created Sun Mar  5 10:54:25 2017",
        f"# num_ytids={rows}, num_segs={rows}, num_unique_labels={len(mids)}, num_positive_labels=0",
        "# YTID, start_seconds, end_seconds, positive_labels",
    ]
    for _ in range(rows):
        ytid = "".join(rng.choices(ID_ALPHABET, k=11))
        start = rng.randrange(0, 600) * 10
        labels = ",".join(rng.sample(mids, rng.randint(1, 4)))
        lines.append(f'{ytid}, {start}.000, {start + 10}.000, "{labels}"')
    path.write_text("\n".join(lines) + "\n")
    return path
