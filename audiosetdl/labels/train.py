"""`audiosetdl train`: a classifier on VGGish embeddings, from AudioSet-schema TFRecords to a model
directory (`model.py`), with its model card (`card.py`).

Owns the training loop: every record loaded once into numpy (`data.py`), a seeded data order
(class-balanced sampling as Kong et al. 2018, or seeded shuffles), mixup and label smoothing,
AdamW with a cosine or constant learning rate, one XLA-compiled step (with `--precision bf16`:
bfloat16 through TensorFlow's own kernels, the trained weights then put in a float32 twin), an
ensemble of members (networks from `--pooling` in turn, consecutive seeds) whose scores are
averaged, and the training clips' two neighbour memories (`neighbours.py`: of their mean frames,
and of the first `feature` member's pooled hidden vectors) blended in. An optional seeded
held-out slice of the training records gives figures for model selection; `--eval` data
is scored once, at the end.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from audiosetdl import precision
from audiosetdl.config import TrainOptions
from audiosetdl.labels import DataError, card, data, metrics
from audiosetdl.labels.model import (Classifier, ModelConfig, as_batch, build, first_feature_member, learned_vectors,
                                     predict)
from audiosetdl.labels.neighbours import NeighbourMemory, NeighbourParams
from audiosetdl.metadata.ontology import LABELS_FILENAME, ClassIndex

log = logging.getLogger(__name__)


def find_class_index(explicit: str | None, sources: Sequence[str | Path]) -> Path:
    """The label index: `explicit`, else class_labels_indices.csv in or above the first source."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise DataError(f"{path}: class index not found")
        return path
    first = Path(sources[0]).resolve()
    for directory in [first if first.is_dir() else first.parent, *first.parents][:3]:
        if (directory / LABELS_FILENAME).is_file():
            return directory / LABELS_FILENAME
    raise DataError(f"no {LABELS_FILENAME} in or above {sources[0]}: give it with --class-index")


def configure_threads(threads: int) -> None:
    """Limit TensorFlow's CPU threads (before any op runs); 0 leaves TensorFlow's default."""
    import tensorflow as tf

    if threads > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already started: keep what it has
            log.debug("TensorFlow threads already configured")


class BalancedSampler:
    """Kong's balanced order: classes in shuffled rounds, each giving the next record of its own
    shuffled queue, so rare classes are seen as often as common ones."""

    def __init__(self, labels: np.ndarray, rng: np.random.Generator):
        self.rng = rng
        self.members = [np.flatnonzero(labels[:, c]) for c in range(labels.shape[1]) if labels[:, c].any()]
        self.queues = [self.rng.permutation(m) for m in self.members]
        self.cursors = [0] * len(self.members)
        self.classes = self.rng.permutation(len(self.members))
        self.class_cursor = 0

    def _next_class(self) -> int:
        if self.class_cursor == len(self.classes):
            self.classes, self.class_cursor = self.rng.permutation(len(self.members)), 0
        self.class_cursor += 1
        return int(self.classes[self.class_cursor - 1])

    def batch(self, size: int) -> np.ndarray:
        out = np.empty(size, np.int64)
        for slot in range(size):
            c = self._next_class()
            if self.cursors[c] == len(self.queues[c]):
                self.queues[c], self.cursors[c] = self.rng.permutation(self.members[c]), 0
            out[slot] = self.queues[c][self.cursors[c]]
            self.cursors[c] += 1
        return out


class ShuffledSampler:
    """Seeded epochs: a fresh permutation of all records each pass."""

    def __init__(self, count: int, rng: np.random.Generator):
        self.rng, self.count, self.order, self.cursor = rng, count, rng.permutation(count), 0

    def batch(self, size: int) -> np.ndarray:
        out = []
        while len(out) < size:
            if self.cursor == self.count:
                self.order, self.cursor = self.rng.permutation(self.count), 0
            take = min(size - len(out), self.count - self.cursor)
            out.extend(self.order[self.cursor:self.cursor + take])
            self.cursor += take
        return np.asarray(out, np.int64)


def member_configs(options: TrainOptions, num_classes: int) -> list[ModelConfig]:
    """The network of each ensemble member: `options.pooling` in turn (checked before any training)."""
    if options.ensemble < 1 or not options.pooling:
        raise DataError(f"an ensemble needs at least one member and one pooling (ensemble {options.ensemble}, "
                        f"pooling {list(options.pooling)})")
    try:
        return [ModelConfig(num_classes=num_classes, pooling=options.pooling[index % len(options.pooling)],
                            hidden_units=options.hidden_units, hidden_layers=options.hidden_layers,
                            dropout=options.dropout, attention_levels=options.attention_levels)
                for index in range(options.ensemble)]
    except ValueError as exc:
        raise DataError(f"train options: {exc}") from None


def neighbour_params(options: TrainOptions) -> NeighbourParams | None:
    """The neighbour memory's parameters (checked before any training); None when `neighbours` is 0."""
    return _memory_params(options.neighbours, options.neighbour_temperature, options.neighbour_weight)


def learned_memory_plan(options: TrainOptions, configs: list[ModelConfig]) -> tuple[NeighbourParams | None, int]:
    """The learned memory's parameters and the member whose vectors it keeps (the first `feature` one),
    checked before any training; None when `learned_neighbours` is 0 or no member is a `feature` network."""
    params = _memory_params(options.learned_neighbours, options.neighbour_temperature, options.learned_neighbour_weight)
    weights = (options.neighbour_weight if options.neighbours else 0) + (params.weight if params else 0)
    if weights > 1:
        raise DataError(f"train options: the neighbour weights add up to {weights:g}, more than 1")
    if options.learned_neighbour_dims < 0:
        raise DataError(f"train options: learned_neighbour_dims must be >= 0, got {options.learned_neighbour_dims}")
    member = first_feature_member(configs)
    if params is not None and member is None:
        log.warning("no feature member in the ensemble: no learned neighbour memory")
        return None, 0
    return params, member or 0


def _memory_params(k: int, temperature: float, weight: float) -> NeighbourParams | None:
    if k == 0:
        return None
    try:
        return NeighbourParams(k, temperature, weight)
    except ValueError as exc:
        raise DataError(f"train options: {exc}") from None


def _train_step(model, optimizer, label_smoothing: float, jit_compile: bool):
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def step(frames, mask, targets):
        with tf.GradientTape() as tape:
            loss = loss_fn(targets, model({"frames": frames, "mask": mask}, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return step


def _mixup(frames: np.ndarray, mask: np.ndarray, targets: np.ndarray, alpha: float, rng: np.random.Generator):
    """Mix each clip with another of the batch: lam ~ Beta(alpha, alpha), frames in byte units (the
    dequantization is affine, so this is the same mix of dequantized values)."""
    lam = rng.beta(alpha, alpha, size=len(frames)).astype(np.float32)
    partner = rng.permutation(len(frames))
    mixed = lam[:, None, None] * frames + (1 - lam[:, None, None]) * frames[partner]
    return mixed, np.maximum(mask, mask[partner]), lam[:, None] * targets + (1 - lam[:, None]) * targets[partner]


def _drop_frames(mask: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Hide each real frame from the pooling with probability `rate`; a clip left with none keeps all."""
    kept = mask * (rng.random(mask.shape) >= rate)
    empty = kept.sum(axis=1) == 0
    kept[empty] = mask[empty]
    return kept


def train_member(train_set: data.LabelledSet, options: TrainOptions, seed: int, config: ModelConfig,
                 monitor=None, bar=None):
    """The network `config` trained from `seed`, as a float32 model whatever `options.precision`;
    `monitor(step, model)` is called every `log_every` steps, and `bar` (a tqdm) advanced by one each step."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    prior = float(np.clip(train_set.labels.mean(), 1e-4, 0.5))
    mixed = options.precision == "bf16"
    model = build(config, prior, compute_dtype="bfloat16" if mixed else "float32")
    schedule = options.learning_rate
    if options.lr_schedule == "cosine":
        schedule = keras.optimizers.schedules.CosineDecay(options.learning_rate, options.steps,
                                                          warmup_target=None, alpha=0.0)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=options.weight_decay, epsilon=1e-7)
    # bfloat16 runs faster through TensorFlow's oneDNN kernels (AMX, AVX512-BF16) than through XLA's CPU code
    step = _train_step(model, optimizer, options.label_smoothing, jit_compile=not mixed)
    sampler = BalancedSampler(train_set.labels, rng) if options.balanced else ShuffledSampler(len(train_set), rng)
    frames_all = train_set.frames
    mask_all = train_set.mask
    for index in range(1, options.steps + 1):
        batch = sampler.batch(options.batch_size)
        frames = frames_all[batch].astype(np.float32)
        mask, targets = mask_all[batch], train_set.labels[batch].astype(np.float32)
        if options.frame_dropout > 0:
            mask = _drop_frames(mask, options.frame_dropout, rng)
        if options.mixup > 0:
            frames, mask, targets = _mixup(frames, mask, targets, options.mixup, rng)
        loss = float(step(frames, mask, targets))
        if bar is not None:
            bar.update(1)
            if index % 20 == 0:
                bar.set_postfix_str(f"{config.pooling} loss {loss:.4f}", refresh=False)
        if monitor is not None and options.log_every and (index % options.log_every == 0 or index == options.steps):
            monitor(index, model, loss)
    return float32_twin(model, config) if mixed else model


def float32_twin(model, config: ModelConfig):
    """A float32 build of `config` holding `model`'s weights (a mixed-precision model keeps float32
    weights, so they carry over exactly): what is scored and saved."""
    twin = build(config)
    twin.set_weights(model.get_weights())
    return twin


def score_set(classifier_or_models, dataset: data.LabelledSet) -> np.ndarray:
    if isinstance(classifier_or_models, Classifier):
        return classifier_or_models.scores(dataset.frames, dataset.lengths)
    frames, mask = as_batch(dataset.frames, dataset.lengths)
    return np.mean([predict(m, frames, mask) for m in classifier_or_models], axis=0)


@dataclass
class TrainResult:
    directory: Path
    seconds: float
    holdout: metrics.Metrics | None
    evaluation: metrics.Metrics | None


def train(sources: Sequence[str | Path], out: str | Path, options: TrainOptions,
          eval_sources: Sequence[str | Path] = (), progress: bool = False) -> TrainResult:
    """Train on the records of `sources`, save the model directory `out`, return its figures;
    `progress` draws a bar over every member's steps."""
    configure_threads(options.threads)
    precision.apply(options.precision)  # TensorFloat-32 on only for tf32
    data.tfrecord_files(list(sources) + list(eval_sources))  # a missing input fails before anything else
    index_path = find_class_index(options.class_index, sources)
    classes = ClassIndex.load(index_path)
    configs = member_configs(options, len(classes))
    memory_params = neighbour_params(options)
    learned_params, learned_member = learned_memory_plan(options, configs)
    started = time.monotonic()
    everything = data.load(sources, len(classes))
    train_set, holdout = data.split_holdout(everything, options.holdout, options.seed)
    eval_set = data.load(eval_sources, len(classes)) if eval_sources else None
    log.info("training on %d records (%d held out), %d classes", len(train_set), len(holdout or ()), len(classes))

    def monitor(step_index, model, loss):
        line = f"member {len(members) + 1}/{len(configs)} ({model_config.pooling}, seed {seed}) step " \
               f"{step_index}/{options.steps} loss {loss:.4f}"
        if holdout is not None:
            line += f" held-out mAP {metrics.compute(holdout.labels, score_set([model], holdout)).mean_ap:.4f}"
        log.info(line)

    members = []
    with tqdm(total=len(configs) * options.steps, desc="train", unit="step", disable=not progress) as bar:
        for seed, model_config in enumerate(configs, start=options.seed):
            members.append(train_member(train_set, options, seed, model_config, monitor, bar))
    neighbours = NeighbourMemory.build(train_set.frames, train_set.mask, train_set.labels, memory_params) \
        if memory_params else None
    learned = None
    if learned_params:
        vectors = learned_vectors(members[learned_member], train_set.frames, train_set.mask)
        learned = NeighbourMemory.from_vectors(vectors, train_set.labels, learned_params,
                                               options.learned_neighbour_dims)
    seconds = time.monotonic() - started
    classifier = Classifier(configs, classes, members, neighbours=neighbours, learned=learned,
                            learned_member=learned_member)
    held = metrics.compute(holdout.labels, classifier.scores(holdout.frames, holdout.lengths)) if holdout else None
    evaluated = metrics.compute(eval_set.labels, classifier.scores(eval_set.frames, eval_set.lengths)) \
        if eval_set is not None else None
    classifier.info = {
        "training": {"options": asdict(options), "sources": [str(s) for s in sources], "records": len(train_set),
                     "held_out": len(holdout or ()), "seconds": round(seconds, 1),
                     "skipped_empty": everything.skipped_empty, "truncated": everything.truncated},
        "held_out": held.summary() if held else None,
        "evaluation": ({**evaluated.summary(), "records": len(eval_set),
                        "sources": [str(s) for s in eval_sources]} if evaluated else None),
    }
    directory = classifier.save(out, index_path, card.render(classifier.info, configs, classes))
    return TrainResult(Path(directory), seconds, held, evaluated)
