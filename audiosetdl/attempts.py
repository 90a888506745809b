"""How the download attempts went, by YouTube player client and method: the table that shows the day
a client stops working, and what yt-dlp said about the formats it skipped (PO tokens, SABR).

Owns: `by_client` (attempts per (client, method): ok, failed, the reasons of the failures, when
each last made a clip), `note_counts` and `clips_by_client` (when each client made its clips, for
the plot), all from ledger frames (`ledger.ledger_frame`), and their text form for `status`. Attempts are counted, not segments: a client that fails and is
followed by one that works shows up under both.
"""

from __future__ import annotations

from collections import Counter

from audiosetdl.ledger import OK

NOTE_SEPARATOR = "; "


def by_client(frames) -> list[dict]:
    """[{client, method, ok, failed, reasons: {reason: n}, last_ok}], most attempts first."""
    rows: dict[tuple[str, str], dict] = {}
    for frame in frames:
        if not len(frame):
            continue
        for (client, method, outcome, reason), group in frame.fillna({"client": "", "method": "", "reason": ""}) \
                .groupby(["client", "method", "outcome", "reason"]):
            if group.message.eq("clip found on disk").all():
                continue  # not an attempt: a clip the ledger had missed
            row = rows.setdefault((client, method), {"client": client, "method": method, "ok": 0, "failed": 0,
                                                     "reasons": Counter(), "last_ok": None})
            if outcome == OK:
                row["ok"] += len(group)
                last = float(group.timestamp.max())
                row["last_ok"] = max(row["last_ok"] or last, last)
            else:
                row["failed"] += len(group)
                row["reasons"][reason or "unknown"] += len(group)
    ordered = sorted(rows.values(), key=lambda r: (-(r["ok"] + r["failed"]), r["client"], r["method"]))
    return [{**r, "reasons": dict(r["reasons"].most_common())} for r in ordered]


def note_counts(frames) -> dict[str, int]:
    """How many attempts each note on skipped formats came with, most frequent first."""
    counts: Counter = Counter()
    for frame in frames:
        if len(frame):
            for notes in frame.notes.dropna():
                counts.update(n for n in notes.split(NOTE_SEPARATOR) if n)
    return dict(counts.most_common())


def clips_by_client(frames) -> dict[str, list[float]]:
    """Per client (the biggest first): the sorted timestamps of the clips it made."""
    times: dict[str, list[float]] = {}
    for frame in frames:
        if len(frame):
            made = frame[(frame.outcome == OK) & (frame.message != "clip found on disk")]
            for client, group in made.fillna({"client": ""}).groupby("client"):
                times.setdefault(client or "-", []).extend(group.timestamp.tolist())
    return {c: sorted(t) for c, t in sorted(times.items(), key=lambda kv: -len(kv[1]))}


def client_lines(rows: list[dict], notes: dict[str, int], max_rows: int = 12) -> list[str]:
    """The by-client table and the notes, as text lines (nothing when no attempt named a client)."""
    if not any(r["client"] or r["method"] for r in rows):
        return []
    width = max(len("client"), *(len(r["client"] or "-") for r in rows[:max_rows]))
    lines = ["", f"{'client':<{width}}  {'method':<8}  {'ok':>7}  {'failed':>7}  top failure"]
    for r in rows[:max_rows]:
        top = next(iter(r["reasons"].items()), None)
        lines.append(f"{r['client'] or '-':<{width}}  {r['method'] or '-':<8}  {r['ok']:>7}  {r['failed']:>7}  "
                     f"{f'{top[0]} ({top[1]})' if top else ''}")
    if notes:
        lines += ["", "formats yt-dlp skipped (attempts):"]
        lines += [f"  {count:>7}  {note}" for note, count in list(notes.items())[:max_rows]]
    return lines
