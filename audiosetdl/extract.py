"""The extract stage: one task's clips -> VGGish or YAMNet embeddings -> one TFRecord per key.

`run_task(run, index, options)` is the one callable per shard. For each (subset, prefix) key
of the task it writes `RUN/embeddings/<subset>/<XX>.tfrecord` (VGGish: records sorted by ID
and start, in the released AudioSet schema) or `RUN/yamnet/<subset>/<XX>.tfrecord` (YAMNet:
`audiosetdl.yamnet_tfrecords`), and then its marker `<XX>.done.json`, which names the set of
clips the file was made from: a rerun skips keys whose clips are unchanged and rewrites the
others. Threads decode clips and compute log-mel inputs while the model runs on full batches
assembled across clips; what is model-specific lives in `audiosetdl.extract_models`. A clip
too short for one 0.96 s VGGish example is recorded in the task's ledger as `too_short`
(YAMNet pads every clip to at least one patch, as its reference does).

`audiosetdl.embed` runs the same pipeline (`audiosetdl.pipeline`) over a user's files.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from audiosetdl.audio import clip_is_valid, read_clip
from audiosetdl.config import ExtractOptions
from audiosetdl.download.errors import Reason
from audiosetdl.extract_models import ADAPTERS, check_model_files, make_adapter  # noqa: F401 (check_model_files: cli's)
from audiosetdl.ledger import FAILED, Attempt, LedgerWriter
from audiosetdl.metadata.ontology import ClassIndex
from audiosetdl.metadata.segments import Segment
from audiosetdl.pipeline import run_batched
from audiosetdl.plan import Plan, PlanError, load_plan, load_task
from audiosetdl.rundir import RunDir, clip_stem, write_json_atomic

log = logging.getLogger(__name__)

PREFETCH_CLIPS = 64  # decoded clips waiting for the model, at most


@dataclass
class ExtractSummary:
    index: int
    keys: int
    keys_written: int = 0
    keys_unchanged: int = 0
    clips: int = 0
    examples: int = 0
    too_short: int = 0
    seconds: float = 0.0


@dataclass
class _Item:
    """One clip on its way through the pipeline."""

    segment: Segment
    path: Path
    examples: np.ndarray | None = None
    embedding: np.ndarray | None = None  # the model's output rows once done (VGGish: uint8 (N, 128))


def _fingerprint(items: list[_Item], signature: str = "") -> str:
    stems = [clip_stem(i.segment.ytid, i.segment.start, i.segment.end) for i in items]
    return hashlib.sha256("\n".join(stems + ([signature] if signature else [])).encode()).hexdigest()


def _load_labels(run: RunDir, plan: Plan) -> dict[str, int] | None:
    """MID -> label index for the records; None when the plan was made with --no-labels."""
    if plan.options.get("labels", True) is False:
        return None
    if not run.labels_path.exists():
        raise PlanError(f"{run.labels_path} is missing, so labels cannot be written: run `audiosetdl fetch-metadata "
                        "DIR` and plan again with --metadata DIR (or with --no-labels, for records without labels)")
    return ClassIndex.load(run.labels_path).index_of


def check_extractable(run: RunDir, options: ExtractOptions, model: str | None = None) -> None:
    """What `extract` will need, checked before anything starts (`run`, `submit`): a plan, its class index
    (unless planned with --no-labels) and the chosen model's files (`model`, else `options.model`)."""
    _load_labels(run, load_plan(run))
    check_model_files(options, model)


def run_task(run: RunDir, index: int, options: ExtractOptions, *, embedder=None, progress: bool = True) -> ExtractSummary:
    """Embed one task's downloaded clips into its keys' TFRecords (skipping keys already done).

    `embedder`, when given, is the loaded model of `options.model` (a `vggish` or `yamnet`
    `Embedder`); otherwise it is loaded from `options.models`.
    """
    began = time.monotonic()
    plan = load_plan(run)
    segments = load_task(run, plan, index)
    label_index = _load_labels(run, plan)
    by_key: dict[tuple[str, str], list[_Item]] = collections.defaultdict(list)
    for segment in sorted(segments, key=lambda s: (s.ytid, s.start, s.end)):
        path = run.clip_path(segment.subset, segment.ytid, segment.start, segment.end)
        if clip_is_valid(path, segment):
            by_key[(segment.subset, segment.prefix)].append(_Item(segment, path))
    summary = ExtractSummary(index, len(plan.tasks[index].keys))
    todo: list[tuple[tuple[str, str], list[_Item]]] = []
    for key in plan.tasks[index].keys:
        items = by_key.get(key, [])
        marker = run.embeddings_marker(*key, model=options.model)
        signature = ADAPTERS[options.model].signature(options)
        if marker.exists() and json.loads(marker.read_text()).get("fingerprint") == _fingerprint(items, signature):
            summary.keys_unchanged += 1
        else:
            todo.append((key, items))
    if todo:
        adapter = make_adapter(options, embedder)
        total = sum(len(items) for _, items in todo)
        with LedgerWriter(run.ledger_path(index)) as ledger, \
                tqdm(total=total, desc=f"extract {index:05d}", unit="clip", disable=not progress) as bar:
            for key, items in _embed_keys(todo, adapter, options, bar):
                _write_key(run, key, items, label_index, adapter, ledger, summary)
    summary.seconds = time.monotonic() - began
    return summary


def _write_key(run: RunDir, key, items: list[_Item], label_index: dict[str, int] | None, adapter,
               ledger: LedgerWriter, summary: ExtractSummary) -> None:
    records, too_short = [], []
    for item in items:
        segment = item.segment
        if len(item.embedding) == 0:
            too_short.append(segment.ytid)
            ledger.append(Attempt(segment.ytid, segment.subset, segment.start, segment.end, FAILED,
                                  reason=Reason.TOO_SHORT.value, permanent=True,
                                  message=adapter.too_short))
            continue
        labels = [] if label_index is None else sorted({label_index[m] for m in segment.labels if m in label_index})
        records.append(adapter.record(segment.ytid, segment.start, segment.end, labels, item.embedding))
    path = run.embeddings_path(*key, model=adapter.name)
    if records:
        adapter.write(path, records)
    elif path.exists():
        path.unlink()  # the key's clips changed and none is left
    fingerprint = _fingerprint(items, adapter.signature(adapter.options))
    write_json_atomic(run.embeddings_marker(*key, model=adapter.name), {
        "fingerprint": fingerprint, "clips": len(items), "records": len(records),
        "examples": int(sum(len(r.embedding) for r in records)), "too_short": too_short,
    })
    summary.keys_written += 1
    summary.clips += len(records)
    summary.examples += int(sum(len(r.embedding) for r in records))
    summary.too_short += len(too_short)


def _embed_keys(todo, adapter, options: ExtractOptions, bar) -> Iterator[tuple[tuple[str, str], list[_Item]]]:
    """Yield each key with its items' model outputs as soon as the key is complete.

    The shared pipeline (`audiosetdl.pipeline`) decodes clips in threads and runs the model on
    full batches assembled across clips: far faster than one call per clip.
    """
    left = {key: len(items) for key, items in todo}
    for key, items in todo:
        if not items:
            yield key, items
    keys = {id(item): key for key, items in todo for item in items}
    groups = dict(todo)
    flat = [item for _, items in todo for item in items]
    for done in run_batched(flat, lambda item: [adapter.features(read_clip(item.path))], adapter.run,
                            batch_size=options.batch_size, threads=options.decode_threads,
                            width=adapter.width, dtype=adapter.dtype, prefetch=PREFETCH_CLIPS):
        if done.error is not None:
            raise done.error  # a clip checked valid that cannot be read: the run directory is damaged
        done.source.embedding = done.rows
        bar.update(1)
        key = keys[id(done.source)]
        left[key] -= 1
        if left[key] == 0:
            yield key, groups[key]
