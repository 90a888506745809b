"""`audiosetdl status --plot`: the report as a PNG (outcomes, throughput, clips by player client)."""

from __future__ import annotations

from pathlib import Path

from audiosetdl.attempts import clips_by_client
from audiosetdl.ledger import OK, ledger_frame
from audiosetdl.rundir import RunDir


def plot(run: RunDir, doc: dict, path: str | Path, bins: int = 48) -> Path:
    """A PNG: outcomes by reason (bars) and clips per hour over time, from the ledgers' timestamps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    frames = [ledger_frame(run.ledger_path(t["index"])) for t in doc["tasks"]]
    times = np.sort(np.concatenate([f.timestamp[(f.outcome == OK) & (f.message != "clip found on disk")].to_numpy(float)
                                    for f in frames] or [np.zeros(0)]))
    fig, (bars, rate, clients) = plt.subplots(1, 3, figsize=(17, 4.5))
    names = ["ok", *doc["failed"], "pending"]
    counts = [doc["ok"], *doc["failed"].values(), doc["pending"]]
    bars.bar(names, counts, color=["tab:green"] + ["tab:red"] * len(doc["failed"]) + ["tab:gray"])
    bars.set_title(f"{doc['segments']} segments by outcome")
    bars.set_ylabel("segments")
    bars.tick_params(axis="x", rotation=45)
    if len(times) > 1 and times[-1] > times[0]:
        edges = np.linspace(times[0], times[-1], min(bins, len(times)) + 1)
        counts_per_bin, _ = np.histogram(times, edges)
        hours = (edges - times[0]) / 3600
        rate.stairs(counts_per_bin / np.diff(hours), hours, color="tab:blue")
        total = rate.twinx()
        total.plot((times - times[0]) / 3600, np.arange(1, len(times) + 1), color="tab:orange")
        total.set_ylabel("clips downloaded (orange)")
    rate.set_title("throughput")
    rate.set_xlabel("hours since the first clip")
    rate.set_ylabel("clips per hour (blue)")
    _plot_clients(clients, clips_by_client(frames), times[0] if len(times) else 0.0)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_clients(axes, series: dict[str, list[float]], origin: float, most: int = 6) -> None:
    """Clips made by each player client over time: a client that stops working goes flat."""
    for client, stamps in list(series.items())[:most]:
        axes.step([(t - origin) / 3600 for t in stamps], range(1, len(stamps) + 1), where="post", label=client,
                  marker="." if len(stamps) < 50 else None)
    if series:
        axes.legend(loc="upper left", fontsize="small")
    axes.set_title("clips by player client")
    axes.set_xlabel("hours since the first clip")
    axes.set_ylabel("clips made")
