"""`audiosetdl embed`: a user's audio or video files -> VGGish or YAMNet embeddings in shards.

Inputs (`audiosetdl.inputs`) are decoded (`audio.stream_audio`: ffmpeg's samples, in process where
that gives the same ones) a window at a time (`--chunk-seconds`) in
`--decode-threads` threads, framed exactly as if whole (`pipeline.stream_inputs`), and embedded
on batches that span files (`pipeline.run_batched`, the pipeline `extract` uses). Records (one
per file, `video_id` = the input's ID, start 0, end = its duration, no labels) are written as
they come, `--shard-size` per shard (sorted by ID within a shard), into the output directory
(`embed_output`: the shards, the inputs each holds, the manifest). A rerun over the same inputs
skips those already embedded, and a shard holding an input that changed since is deleted and its
inputs embedded again; a kill loses at most the shard being filled. A file that cannot be
decoded is listed under `failed` with the reason and retried by the next run; one too short for
a VGGish example is listed under `too_short`. A run holds OUT/.lock (`rundir.exclusive`) while it
writes, so a second run on the same OUT stops at once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from audiosetdl.audio import stream_audio
from audiosetdl.config import EmbedOptions, ExtractOptions
from audiosetdl.embed_output import ShardDirectory, check_output
from audiosetdl.extract_models import check_model_files, make_adapter
from audiosetdl.inputs import EmbedError, Input, resolve_inputs
from audiosetdl.pipeline import run_batched, stream_inputs
from audiosetdl.precision import DEFAULT_PRECISION
from audiosetdl.rundir import DirectoryBusy, exclusive
from audiosetdl.vggish.params import SAMPLE_RATE

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


@dataclass
class EmbedSummary:
    inputs: int = 0
    unchanged: int = 0  # already embedded by an earlier run
    records: int = 0
    frames: int = 0
    shards: int = 0
    failed: list[dict] = field(default_factory=list)  # {"path", "id", "reason"}
    too_short: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        """0, or 1 when some file could not be embedded."""
        return 1 if self.failed else 0


def file_inputs(adapter, embed: EmbedOptions, samples: dict, decoded: "AudioProgress | None" = None):
    """`inputs(source)` for `run_batched`: one file's model inputs, streamed from ffmpeg in chunks;
    each file's decoded sample count goes to `samples[path]`, and every chunk to `decoded`."""
    chunk = max(adapter.window_samples, round(embed.chunk_seconds * SAMPLE_RATE))

    def counted(item: Input):
        samples[item.path] = 0
        for part in stream_audio(item.path, chunk):
            samples[item.path] += len(part)
            if decoded is not None:
                decoded.add(len(part))
            yield part

    return lambda item: stream_inputs(counted(item), adapter)


class AudioProgress:
    """The hours of audio decoded so far, shown beside a bar that counts files (so that an hour-long
    file shows progress before it ends); called from the decoding threads, redrawn every few seconds."""

    REDRAW_S = 2.0

    def __init__(self, bar: tqdm):
        self.bar, self.samples, self.drawn = bar, 0, 0.0
        self.lock = threading.Lock()

    def add(self, count: int) -> None:
        with self.lock:
            self.samples += count
            now = time.monotonic()
            if now - self.drawn >= self.REDRAW_S:
                self.drawn = now
                seconds = self.samples // SAMPLE_RATE
                self.bar.set_postfix_str(f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d} of audio decoded")


def _entry(item: Input, stat: dict) -> dict:
    return {"path": str(item.path), "id": item.id, **stat}


def _signature(options: ExtractOptions, embed: EmbedOptions) -> dict:
    """What the records depend on besides the inputs: a rerun must match it."""
    signature = {"model": options.model, "format": embed.format, "yt8m_id": options.yt8m_id}
    if options.model == "yamnet":
        signature["yamnet_dtype"] = options.yamnet_dtype
    if options.precision != DEFAULT_PRECISION:  # fp32 outputs made before --precision existed stay valid
        signature["precision"] = options.precision
    return signature


def embed_paths(paths, out: str | Path, options: ExtractOptions, embed: EmbedOptions = EmbedOptions(), *,
                embedder=None, progress: bool = True) -> EmbedSummary:
    """Embed every input (files, directories, `embed.from_list`) into shards in `out` (see the module docstring)."""
    began = time.monotonic()
    inputs = resolve_inputs(paths, embed.glob, embed.from_list)
    if not inputs:
        raise EmbedError("no input files (give files, directories or --from-list FILE; see --glob)")
    check_output(Path(out), _signature(options, embed))
    if embedder is None:
        check_model_files(options)  # before anything is written, and before TensorFlow loads
    Path(out).mkdir(parents=True, exist_ok=True)
    try:
        with exclusive(Path(out) / LOCK_FILE):
            summary = _embed_into(inputs, ShardDirectory(Path(out), _signature(options, embed), embed), options, embed,
                                  embedder, progress)
    except DirectoryBusy as exc:
        raise EmbedError(f"{exc}: two runs cannot share one --out") from None
    summary.seconds = time.monotonic() - began
    return summary


def _embed_into(inputs: list[Input], output: ShardDirectory, options: ExtractOptions, embed: EmbedOptions, embedder,
                progress: bool) -> EmbedSummary:
    output.adapter = adapter = make_adapter(options, embedder)
    stats = {str(item.path): item.stat_key() for item in inputs}
    done = output.prune(stats)
    todo = [item for item in inputs if str(item.path) not in done]
    summary = EmbedSummary(inputs=len(inputs), unchanged=len(inputs) - len(todo))
    output.manifest["failed"] = []
    samples: dict[Path, int] = {}
    with tqdm(total=len(todo), desc="embed", unit="file", disable=not progress) as bar:
        file_chunks = file_inputs(adapter, embed, samples, AudioProgress(bar))
        for result in run_batched(todo, file_chunks, adapter.run, batch_size=options.batch_size,
                                  threads=options.decode_threads, width=adapter.width, dtype=adapter.dtype):
            item, entry = result.source, _entry(result.source, stats[str(result.source.path)])
            bar.update(1)
            if result.error is not None:
                reason = str(result.error)
                log.warning("%s", reason)
                summary.failed.append({"path": str(item.path), "id": item.id, "reason": reason})
                output.manifest["failed"].append(summary.failed[-1])
            elif len(result.rows) == 0:
                log.warning("%s: %s; skipped", item.path, adapter.too_short)
                summary.too_short.append(item.id)
                output.manifest["too_short"].append(entry)
            else:
                duration = samples.pop(item.path) / SAMPLE_RATE
                output.add(adapter.record(item.id, 0.0, duration, (), result.rows), entry)
                summary.records += 1
                summary.frames += len(result.rows)
    output.flush()
    summary.shards = len(output.counts)
    return summary


def summary_lines(summary: EmbedSummary, out: str | Path) -> list[str]:
    """What `audiosetdl embed` prints at the end."""
    lines = [f"{summary.records} files embedded ({summary.frames} frames) into {out} ({summary.shards} shards in all); "
             f"{summary.unchanged} already there, {len(summary.too_short)} too short, {len(summary.failed)} failed"]
    lines += [f"failed: {f['path']}: {f['reason']}" for f in summary.failed]
    return lines
