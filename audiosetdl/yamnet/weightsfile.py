"""Reading `yamnet.h5`, the released YAMNet weights, by layer name, with h5py alone (no Keras).

Owns the file's layout, which is Keras 2's HDF5 weights format (`Model.save_weights`):

    /                      attribute layer_names: every layer of the model, weights or not
    /<layer>               one group per layer (a '/' in a name nests groups: layer1/conv/bn)
                           attribute weight_names: e.g. layer1/conv/bn/moving_mean:0
    /<layer>/<weight name> one dataset per weight, so layer1/conv/layer1/conv/kernel:0

(a whole-model file keeps the same tree under /model_weights; an attribute too large for an
HDF5 header is split into name0, name1, ...; both are read). The reference rebuilds the
Keras model and loads the weights in layer order, which needs Keras 2 (`tf-keras`); this
module instead picks each weight by layer and weight name and checks all 110 shapes against
`expected_weights()` before any value is read. The 110 are, per layer of `params.LAYERS`:

    layer1/conv               kernel (3, 3, 1, 32)
    layer1/conv/bn            beta, moving_mean, moving_variance (32,)
    layerN/depthwise_conv     depthwise_kernel (3, 3, C_in, 1)
    layerN/depthwise_conv/bn  beta, moving_mean, moving_variance (C_in,)
    layerN/pointwise_conv     kernel (1, 1, C_in, C_out)
    layerN/pointwise_conv/bn  beta, moving_mean, moving_variance (C_out,)
    logits                    kernel (1024, 521), bias (521,)

and `read_weights` returns them as float32 arrays keyed `<layer>/<weight>` (no `:0`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from audiosetdl.yamnet import params

BN_WEIGHTS = ("beta", "moving_mean", "moving_variance")  # center=True, scale=False: no gamma
FETCH_HINT = ("Run `audiosetdl fetch-models DIR --model yamnet` to download the official YAMNet files "
              "(then pass --models DIR or set AUDIOSETDL_MODELS)")


class WeightsError(ValueError):
    """yamnet.h5 is missing, unreadable, or lacks a layer or weight of the right shape."""


def _bn(layer: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{layer}/bn/{name}": (channels,) for name in BN_WEIGHTS}


def expected_weights() -> dict[str, tuple[int, ...]]:
    """`<layer>/<weight>` -> shape, for the 110 weights of the released file, in network order."""
    k = params.KERNEL_SIZE
    shapes: dict[str, tuple[int, ...]] = {}
    channels = 1
    for name, kind, _stride, filters in params.LAYERS:
        if kind == params.CONV:
            shapes[f"{name}/conv/kernel"] = (k, k, channels, filters)
            shapes.update(_bn(f"{name}/conv", filters))
        else:
            shapes[f"{name}/depthwise_conv/depthwise_kernel"] = (k, k, channels, 1)
            shapes.update(_bn(f"{name}/depthwise_conv", channels))
            shapes[f"{name}/pointwise_conv/kernel"] = (1, 1, channels, filters)
            shapes.update(_bn(f"{name}/pointwise_conv", filters))
        channels = filters
    shapes[f"{params.CLASSIFIER_LAYER}/kernel"] = (params.EMBEDDING_SIZE, params.NUM_CLASSES)
    shapes[f"{params.CLASSIFIER_LAYER}/bias"] = (params.NUM_CLASSES,)
    return shapes


def _attribute_list(node, name: str) -> list[str]:
    """A Keras string-list attribute, joined from its name0, name1, ... chunks when split."""
    if name in node.attrs:
        values = list(node.attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in node.attrs:
            values += list(node.attrs[f"{name}{chunk}"])
            chunk += 1
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _short_name(weight_name: str) -> str:
    """layer1/conv/bn/moving_mean:0 -> moving_mean."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _index_datasets(root, path: Path) -> dict[str, object]:
    """`<layer>/<weight>` -> h5py dataset, for every weight of every layer the file lists."""
    layers = _attribute_list(root, "layer_names")
    if not layers:
        raise WeightsError(f"{path}: not a Keras HDF5 weights file (no layer_names attribute). {FETCH_HINT}")
    found: dict[str, object] = {}
    for layer in layers:
        if layer not in root:
            raise WeightsError(f"{path}: layer {layer} is listed but has no group. {FETCH_HINT}")
        group = root[layer]
        for weight_name in _attribute_list(group, "weight_names"):
            if weight_name not in group:
                raise WeightsError(f"{path}: weight {weight_name} of layer {layer} is listed but missing")
            found[f"{layer}/{_short_name(weight_name)}"] = group[weight_name]
    return found


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """The 110 YAMNet weights of a Keras HDF5 weights file, as float32, after checking every shape.

    Extra layers (Reshape, ReLU, pooling, an optimizer's state) are ignored; a missing weight
    or a wrong shape raises `WeightsError` naming it (all problems at once).
    """
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read YAMNet weights {path}: {exc}. {FETCH_HINT}") from None
    with handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        datasets = _index_datasets(root, path)
        problems = []
        for name, shape in expected_weights().items():
            if name not in datasets:
                problems.append(f"{name} is missing (expected shape {list(shape)})")
            elif tuple(datasets[name].shape) != shape:
                problems.append(f"{name} has shape {list(datasets[name].shape)}, expected {list(shape)}")
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise WeightsError(f"{path}: " + "; ".join(problems[:5]) + more + f". {FETCH_HINT}")
        return {name: np.asarray(datasets[name][()], dtype=np.float32) for name in expected_weights()}
