"""`label --plot FILE.png`: one file's scores as a time x class heat map.

Rows are the file's best classes (by file score, best at the top, named), columns its frames
drawn over the time each covers (frame i from i x hop seconds); colour is the score, 0 to 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audiosetdl.rundir import atomic_path

PLOT_CLASSES = 10  # rows of the heat map, at most (at least --top)
FRAME_SECONDS = 0.96  # what one VGGish example or YAMNet patch covers


def plot_file(labels, item, path: str | Path) -> None:
    """Draw `item` (a `label.FileLabels` of `labels`) into the PNG `path`, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = np.argsort(-item.clip, kind="stable")[: max(PLOT_CLASSES, labels.options.top)]
    scores = item.frames[:, rows].T  # (classes, frames)
    end = max(item.duration, (len(item.frames) - 1) * labels.hop_seconds + FRAME_SECONDS)
    edges = np.append(np.arange(len(item.frames)) * labels.hop_seconds, end)
    figure, axes = plt.subplots(figsize=(min(16, 6 + 0.15 * len(item.frames)), 1.5 + 0.35 * len(rows)),
                                constrained_layout=True)
    mesh = axes.pcolormesh(edges, np.arange(len(rows) + 1), scores, vmin=0, vmax=1, cmap="magma", shading="flat")
    axes.set_yticks(np.arange(len(rows)) + 0.5,
                    [f"{labels.names[i]} ({item.clip[i]:.2f})" for i in rows])
    axes.invert_yaxis()  # the best class on top
    axes.set_xlabel("time (s)")
    axes.set_title(f"{item.id}: {labels.model} scores, frames every {labels.hop_seconds:g} s")
    figure.colorbar(mesh, ax=axes, label="score", fraction=0.04)
    with atomic_path(Path(path)) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)
