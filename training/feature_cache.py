"""Feature caching for CPU training: run the frozen lower backbone once per augmented view.

With BatchNorm in inference mode, the frozen layers below the cut are a fixed function of
the (augmented) pixels. So instead of recomputing them every epoch, we compute them for K
augmented views of each training image (MixUp/CutMix included, at pixel level) and train
the head and the unfrozen top of the backbone on those cached tensors for many epochs. On a
2-core CPU this is what makes fine-tuning affordable; on a GPU, plain training is simpler
(``cache_views: 0``). The final model is the ordinary full model: the top layers are shared.

Usage:
    lower, upper = split_backbone(backbone, "block5c_add")
    features, targets, weights = cache_views(lower, train_ds, views=6)
"""

from __future__ import annotations

import sys

import keras
import numpy as np
from tqdm import tqdm

DEFAULT_CUTS = {
    "efficientnet_lite0": "block5c_add",      # 14x14x112; blocks 6-7 and the top conv stay trainable
    "efficientnet_lite1": "block5d_add",      # Lite1/Lite2 repeat stage 5 four times
    "efficientnet_lite2": "block5d_add",
    "efficientnet_b0": "block5c_add",
    "mobilenet_v3_small": "expanded_conv_7_add",  # the last residual add at stride 16 (block 8 has none)
    "mobilenet_v3_large": "expanded_conv_11_add",
    "resnet50": "conv4_block6_out",
}


def _core(backbone: keras.Model) -> tuple[list[keras.layers.Layer], keras.Model]:
    """The fixed preprocessing layers in front of the nested feature extractor, and the extractor."""
    nested = [layer for layer in backbone.layers if isinstance(layer, keras.Model)]
    if not nested:
        return [], backbone
    pre = [layer for layer in backbone.layers
           if not isinstance(layer, (keras.Model, keras.layers.InputLayer))]
    return pre, nested[0]


def split_backbone(backbone: keras.Model, cut: str) -> tuple[keras.Model, keras.Model]:
    """Splits a backbone at layer ``cut`` into ``lower`` (raw RGB -> cut tensor) and ``upper``.

    Both share their layers with ``backbone``: training ``upper`` trains the full model.
    """
    pre, core = _core(backbone)
    try:
        cut_tensor = core.get_layer(cut).output
    except ValueError:
        raise ValueError(f"cache_cut: {cut!r} is not a layer of {core.name}") from None
    inputs = keras.Input(backbone.input_shape[1:])
    x = inputs
    for layer in pre:
        x = layer(x)
    lower = keras.Model(inputs, keras.Model(core.input, cut_tensor)(x), name="frozen_lower")
    upper = keras.Model(cut_tensor, core.output, name="trainable_upper")
    return lower, upper


def head_on_features(upper: keras.Model, model: keras.Model) -> keras.Model:
    """``upper`` followed by the classifier's own head layers (pool, dropout, softmax), shared."""
    inputs = keras.Input(upper.input_shape[1:], name="cached_features")
    x = upper(inputs, training=False)
    for name in ("pool", "dropout", "probabilities"):
        try:
            x = model.get_layer(name)(x)
        except ValueError:
            continue
    return keras.Model(inputs, x, name="cached_classifier")


def cache_views(lower: keras.Model, dataset, views: int = 1, desc: str = "caching features"):
    """Runs ``lower`` over ``views`` passes of ``dataset``; returns (features float16, targets, weights|None).

    Each pass of an augmented dataset draws fresh augmentations, so the views differ.
    """
    features, targets, weights = [], [], []
    for view in range(views):
        label = f"{desc} (view {view + 1}/{views})" if views > 1 else desc
        for batch in tqdm(dataset, desc=label, unit="batch", file=sys.stderr, mininterval=10):
            features.append(np.asarray(lower(batch[0], training=False), np.float16))
            targets.append(np.asarray(batch[1], np.float32))
            if len(batch) > 2:
                weights.append(np.asarray(batch[2], np.float32))
    return (np.concatenate(features), np.concatenate(targets),
            np.concatenate(weights) if weights else None)
