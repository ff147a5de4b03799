"""The classifier: backbone -> global average pool -> dropout -> softmax; and its two training phases.

Phase 1 trains the head on a frozen backbone; phase 2 unfreezes the backbone (all of it or
its top N layers). BatchNorm layers stay frozen and in inference mode in both phases: with
small batches their statistics would otherwise drift away from ImageNet's.

Usage:
    model, backbone = build_classifier("efficientnet_lite0", "none", 224, num_classes=6)
    set_phase(backbone, "head")        # then "finetune", finetune_layers=0
"""

from __future__ import annotations

import keras

from training.backbones import build_backbone

FIXED_LAYERS = {"caffe_preprocess", "rescale"}


def build_classifier(backbone_name: str, weights: str | None, image_size: int, num_classes: int,
                     dropout: float = 0.2) -> tuple[keras.Model, keras.Model]:
    """Returns ``(model, backbone)``; the model takes raw RGB and outputs probabilities."""
    backbone = build_backbone(backbone_name, weights, image_size)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    # BatchNorm stays in inference mode because set_phase() freezes every BatchNormalization layer
    # (a frozen BN layer always uses its moving statistics in Keras 3). The training=False here does
    # not do it: Keras 3 passes the outer call's training flag down to nested models regardless.
    features = backbone(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"smartbin_{backbone_name}"), backbone


def learnable(layer: keras.layers.Layer) -> bool:
    """A layer fine-tuning can train: one with weights, except BatchNorm and the fixed input normalisation."""
    fixed = isinstance(layer, keras.layers.BatchNormalization) or layer.name in FIXED_LAYERS
    return bool(layer.weights) and not fixed


def _leaf_layers(model: keras.Model) -> list[keras.layers.Layer]:
    leaves = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            leaves.extend(_leaf_layers(layer))
        elif layer.weights:
            leaves.append(layer)
    return leaves


def set_phase(backbone: keras.Model, phase: str, finetune_layers: int = 0) -> int:
    """Sets trainable flags for ``head`` or ``finetune``; returns the number of trainable backbone layers.

    Args:
        finetune_layers: in phase ``finetune``, 0 unfreezes every layer with weights, N the top N
            of them (BatchNorm and the fixed input normalisation never count: they stay frozen).
    """
    leaves = _leaf_layers(backbone)
    backbone.trainable = phase == "finetune"
    if phase == "head":
        return 0
    if phase != "finetune":
        raise ValueError(f"unknown phase {phase!r}")

    candidates = [layer for layer in leaves if learnable(layer)]
    chosen = set(map(id, candidates if finetune_layers <= 0 else candidates[-finetune_layers:]))
    for layer in leaves:
        layer.trainable = id(layer) in chosen
    return len(chosen)
