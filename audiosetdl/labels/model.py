"""The classifier networks on VGGish frame embeddings (Keras 3), and the saved model directory.

Networks (`ModelConfig.pooling`), all per-frame fully connected layers followed by pooling over
the clip's real frames only (padded frames get zero weight; the pooling layers are in `layers.py`):

- `attention`: Kong et al. 2018 decision-level attention: BN over the 128 inputs; per frame
  `hidden_layers` x [dense `hidden_units` without bias, BN, ReLU, dropout]; then a per-class
  sigmoid classifier times a sigmoid attention clamped to [1e-7, 1 - 1e-7] and normalised over
  time.
- `multi`: Yu et al. 2018 multi-level attention: one such attention module on each of the last
  `attention_levels` hidden layers, their outputs concatenated into a sigmoid classifier.
- `feature`: Kong et al. 2019 feature-level attention: the same attention, but over the hidden
  features (a linear projection of `hidden_units` per frame, weighted by a sigmoid attention
  normalised over time), then BN, ReLU, dropout and a sigmoid classifier on the pooled vector.
- `recurrent`: `attention` whose first hidden layer is a bidirectional GRU (`hidden_units` / 2
  each way) over the real frames, so that each frame sees its neighbours.
- `average`: the same per-frame layers, masked mean over time, sigmoid classifier (a baseline).

Inputs are the released uint8 bytes, dequantized inside the network the YouTube-8M way
(`vggish.postprocess.dequantize`), plus a (batch, frames) mask; any number of frames works.
`build(..., compute_dtype="bfloat16")` is the network `train --precision bf16` trains: the
per-frame layers in bfloat16, the dequantization, sigmoids, attention and output in float32.

An ensemble may mix networks (each member has its own `ModelConfig`): members that pool
differently make different errors, so their average gains more than seeds of one network do.
A memory of the training clips (`neighbours.py`) errs differently again; its scores are blended in,
and so are those of a second memory, of what the first `feature` member learned (`learned_vectors`).

A model directory holds `config.json` (each member's network, the neighbour parameters, the
training options and figures), `class_labels_indices.csv`, one `member-NN.weights.h5` per ensemble
member (their scores are averaged), `neighbours.npz`, `learned_neighbours.npz` and `README.md`, the
model card. `load_classifier(dir).scores(embeddings)` is the API for anything that labels audio.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from audiosetdl.config import POOLINGS
from audiosetdl.labels import ModelDirError
from audiosetdl.labels.data import pad_frames
from audiosetdl.labels.layers import AttentionPooling, Dequantize, MaskedMean
from audiosetdl.labels.neighbours import LEARNED_NEIGHBOURS_FILENAME, NeighbourMemory, NeighbourParams
from audiosetdl.metadata.ontology import LABELS_FILENAME, ClassIndex
from audiosetdl.tfenv import import_tensorflow
from audiosetdl.vggish.params import EMBEDDING_SIZE

import_tensorflow()  # quietly: Keras's TensorFlow backend would otherwise load it with its C++ log lines
import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

CONFIG_FILENAME = "config.json"
CARD_FILENAME = "README.md"
MEMBER_PATTERN = "member-{:02d}.weights.h5"
SCORE_BATCH = 1024  # clips per forward pass when scoring


@dataclass(frozen=True)
class ModelConfig:
    num_classes: int
    pooling: str = "attention"
    hidden_units: int = 1024
    hidden_layers: int = 3
    dropout: float = 0.5
    attention_levels: int = 2

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.pooling == "multi" and not 1 <= self.attention_levels <= self.hidden_layers:
            raise ValueError(f"attention_levels must be 1..{self.hidden_layers}, got {self.attention_levels}")


def _output_bias(prior: float):
    """Start every class at probability `prior` (its share of labels), not 0.5: otherwise the first
    thousands of steps only pull the outputs down (Lin et al. 2017's prior initialisation)."""
    return keras.initializers.Constant(float(np.log(prior / (1.0 - prior))))


def build(config: ModelConfig, prior: float = 0.5, compute_dtype: str = "float32") -> keras.Model:
    """The network: inputs `frames` (batch, T, 128), the bytes as float32 (so that mixup can blend
    them), and `mask` (batch, T); output (batch, classes) float32 probabilities, starting near
    `prior`. `compute_dtype` "bfloat16" builds it under Keras's mixed_bfloat16 policy (float32
    weights, bfloat16 arithmetic) for faster training; the same weights load into a float32 build."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if compute_dtype == "bfloat16" else compute_dtype)
    try:
        return _build(config, prior)
    finally:
        keras.config.set_dtype_policy(previous)


def _build(config: ModelConfig, prior: float) -> keras.Model:
    frames = keras.Input((None, EMBEDDING_SIZE), dtype="float32", name="frames")  # byte values 0..255
    frame_mask = keras.Input((None,), dtype="float32", name="mask")
    dequantized = Dequantize(name="dequantize", dtype="float32")(frames)  # bytes: exact in float32 whatever the policy
    x = layers.BatchNormalization(name="input_bn", dtype="float32")(dequantized)
    hidden = []
    if config.pooling == "recurrent":  # the first layer sees its neighbours: a bidirectional GRU over real frames
        gru = layers.GRU(config.hidden_units // 2, return_sequences=True)
        x = layers.Bidirectional(gru, name="bigru")(x, mask=ops.cast(frame_mask, "bool"))
        x = layers.Dropout(config.dropout)(x)
        hidden.append(x)
    for index in range(len(hidden), config.hidden_layers):
        x = layers.Dense(config.hidden_units, use_bias=False, name=f"fc{index + 1}")(x)
        x = layers.BatchNormalization(name=f"bn{index + 1}")(x)
        x = layers.Activation("relu")(x)
        x = layers.Dropout(config.dropout)(x)
        hidden.append(x)
    if config.pooling in ("attention", "recurrent"):
        output = AttentionPooling(config.num_classes, _output_bias(prior), name="attention")(x, frame_mask)
    elif config.pooling == "multi":
        pooled = [AttentionPooling(config.num_classes, name=f"attention{len(hidden) - level}")(h, frame_mask)
                  for level, h in enumerate(hidden[-config.attention_levels:][::-1])]
        joined = layers.Concatenate(dtype="float32")(pooled) if len(pooled) > 1 else pooled[0]
        output = layers.Dense(config.num_classes, activation="sigmoid", bias_initializer=_output_bias(prior),
                              dtype="float32", name="classifier")(joined)
    else:
        if config.pooling == "feature":
            pooled = AttentionPooling(config.hidden_units, activation=None, name="feature_attention")(x, frame_mask)
            pooled = layers.Activation("relu")(layers.BatchNormalization(name="bn_pooled")(pooled))
            pooled = layers.Dropout(config.dropout)(pooled)
        else:
            pooled = MaskedMean(name="mean")(x, frame_mask)
        output = layers.Dense(config.num_classes, activation="sigmoid", bias_initializer=_output_bias(prior),
                              dtype="float32", name="classifier")(pooled)
    return keras.Model({"frames": frames, "mask": frame_mask}, output, name=f"audioset_{config.pooling}")


def as_batch(embeddings: np.ndarray | Sequence[np.ndarray], lengths: np.ndarray | None = None):
    """(frames uint8 (N, T, 128), mask float32 (N, T)) from padded arrays + lengths, or from a list
    of variable-length (frames, 128) uint8 arrays (padded to the longest)."""
    if lengths is None and not (isinstance(embeddings, np.ndarray) and embeddings.ndim == 3):
        longest = max((len(e) for e in embeddings), default=1)
        embeddings, lengths = pad_frames(embeddings, max(longest, 1))
    embeddings = np.asarray(embeddings)
    if embeddings.dtype != np.uint8 or embeddings.ndim != 3 or embeddings.shape[2] != EMBEDDING_SIZE:
        raise ValueError(f"expected uint8 embeddings (N, frames, {EMBEDDING_SIZE}), got {embeddings.dtype} "
                         f"{embeddings.shape}")
    lengths = np.full(len(embeddings), embeddings.shape[1]) if lengths is None else np.asarray(lengths)
    if (lengths < 1).any():
        raise ValueError("every clip needs at least one frame")
    mask = (np.arange(embeddings.shape[1])[None, :] < lengths[:, None]).astype(np.float32)
    return embeddings, mask


def predict(model: keras.Model, frames: np.ndarray, mask: np.ndarray, batch: int = SCORE_BATCH) -> np.ndarray:
    out = [np.asarray(model({"frames": frames[i:i + batch].astype(np.float32), "mask": mask[i:i + batch]},
                            training=False))
           for i in range(0, len(frames), batch)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def first_feature_member(configs: Sequence[ModelConfig]) -> int | None:
    """The index of the first `feature` network among an ensemble's members (whose pooled vectors the
    learned neighbour memory keeps), or None."""
    return next((index for index, config in enumerate(configs) if config.pooling == "feature"), None)


def vector_model(member: keras.Model) -> keras.Model:
    """A `feature` network cut before its classifier: each clip's pooled vector (hidden_units numbers,
    after the pooled batch norm and ReLU; no dropout at inference), sharing the member's weights."""
    return keras.Model(member.inputs, member.get_layer("classifier").input, name=f"{member.name}_vectors")


def learned_vectors(member: keras.Model, frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(N, hidden_units) float32: `vector_model(member)` of each clip."""
    return predict(vector_model(member), frames, mask)


@dataclass
class Classifier:
    """A trained model directory: `scores` averages its members' clip-level class probabilities
    (blended with the training clips' labels when it has a `neighbours` memory); `configs[i]` is
    the network of `members[i]`."""

    configs: list[ModelConfig]
    classes: ClassIndex
    members: list[keras.Model]
    info: dict = dataclasses.field(default_factory=dict)
    neighbours: NeighbourMemory | None = None
    learned: NeighbourMemory | None = None  # of the `learned_vectors` of members[learned_member]
    learned_member: int = 0
    _vectors: keras.Model | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.configs) != len(self.members):
            raise ValueError(f"{len(self.configs)} configs for {len(self.members)} members")
        if self.learned is not None and not (0 <= self.learned_member < len(self.configs)
                                             and self.configs[self.learned_member].pooling == "feature"):
            raise ValueError(f"the learned memory needs a feature member, not member {self.learned_member}")

    def scores(self, embeddings: np.ndarray | Sequence[np.ndarray], lengths: np.ndarray | None = None) -> np.ndarray:
        """(N, classes) float32 probabilities of N clips of per-frame uint8 embeddings."""
        frames, mask = as_batch(embeddings, lengths)
        networks = np.mean([predict(member, frames, mask) for member in self.members], axis=0)
        blend, left = np.zeros_like(networks, dtype=np.float64), 1.0
        if self.neighbours is not None:
            blend += self.neighbours.params.weight * self.neighbours.scores(frames, mask)
            left -= self.neighbours.params.weight
        if self.learned is not None:
            blend += self.learned.params.weight * self.learned_scores(frames, mask)
            left -= self.learned.params.weight
        return (left * networks + blend).astype(np.float32)

    def learned_scores(self, frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The learned memory's own (N, classes) scores of clips (`as_batch`'s frames and mask)."""
        if self._vectors is None:
            self._vectors = vector_model(self.members[self.learned_member])
        return self.learned.vector_scores(predict(self._vectors, frames, mask))

    def save(self, directory: str | Path, class_index_file: str | Path, card: str) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for index, member in enumerate(self.members):
            member.save_weights(directory / MEMBER_PATTERN.format(index))
        (directory / LABELS_FILENAME).write_bytes(Path(class_index_file).read_bytes())
        document = {"members": [dataclasses.asdict(config) for config in self.configs], **self.info}
        if self.neighbours is not None:
            self.neighbours.save(directory)
            document["neighbours"] = dataclasses.asdict(self.neighbours.params)
        if self.learned is not None:
            self.learned.save(directory, LEARNED_NEIGHBOURS_FILENAME)
            document["learned_neighbours"] = {**dataclasses.asdict(self.learned.params), "member": self.learned_member}
        (directory / CONFIG_FILENAME).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        (directory / CARD_FILENAME).write_text(card, encoding="utf-8")
        return directory


def load_classifier(directory: str | Path) -> Classifier:
    """The classifier saved in `directory` by `audiosetdl train`."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILENAME
    if not config_path.is_file():
        raise ModelDirError(f"{config_path}: not found (not a model directory made by `audiosetdl train`)")
    try:
        document = json.loads(config_path.read_text(encoding="utf-8"))
        if isinstance(document["members"], int):  # written before ensembles could mix networks
            configs = [ModelConfig(**document["model"])] * document["members"]
        else:
            configs = [ModelConfig(**member) for member in document["members"]]
        neighbour_params = NeighbourParams(**document["neighbours"]) if document.get("neighbours") else None
        learned = dict(document.get("learned_neighbours") or {})
        learned_member = int(learned.pop("member", 0))
        learned_params = NeighbourParams(**learned) if learned else None
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelDirError(f"{config_path}: unreadable model config ({exc})") from None
    try:
        classes = ClassIndex.load(directory / LABELS_FILENAME)
    except (OSError, ValueError) as exc:
        raise ModelDirError(f"{directory / LABELS_FILENAME}: {exc}") from None
    members = []
    for index, config in enumerate(configs):
        path = directory / MEMBER_PATTERN.format(index)
        model = build(config)
        try:
            model.load_weights(path)
        except (OSError, ValueError) as exc:
            raise ModelDirError(f"{path}: cannot load weights ({exc})") from None
        members.append(model)
    try:
        neighbours = NeighbourMemory.load(directory, neighbour_params) if neighbour_params else None
        learned_memory = NeighbourMemory.load(directory, learned_params, LEARNED_NEIGHBOURS_FILENAME) \
            if learned_params else None
    except (OSError, ValueError, KeyError) as exc:
        raise ModelDirError(f"{directory}: cannot load the neighbour memory ({exc})") from None
    return Classifier(configs, classes, members, document, neighbours, learned_memory, learned_member)
