"""`audiosetdl split`: marl/audiosetdl's older sharding, one segment CSV cut into N contiguous parts.

Parts are runs of rows, not of keys: two parts may hold IDs of the same (subset, prefix), so they
are not a run directory's tasks (`audiosetdl plan` makes those).
"""

from __future__ import annotations

from pathlib import Path

from audiosetdl.plan import PlanError
from audiosetdl.rundir import write_text_atomic


def split_csv(path: str | Path, parts: int, out_dir: str | Path | None = None) -> list[Path]:
    """marl/audiosetdl's `--split N`: N files `NAME.01`, `NAME.02`, ... (1-based, the SLURM array
    index of that script), contiguous runs of rows, each with the original `#` header lines."""
    path = Path(path)
    if parts < 1:
        raise PlanError(f"--split must be at least 1, got {parts}")
    out_dir = Path(out_dir) if out_dir else path.parent
    header, rows = [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            (header if line.startswith("#") and not rows else rows).append(line if line.endswith("\n") else line + "\n")
    width = max(2, len(str(parts)))
    outputs = []
    for i in range(parts):
        chunk = rows[len(rows) * i // parts: len(rows) * (i + 1) // parts]
        target = out_dir / f"{path.name}.{i + 1:0{width}d}"
        write_text_atomic(target, "".join(header + chunk))
        outputs.append(target)
    return outputs
