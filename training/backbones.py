"""Backbone registry: each entry builds an ImageNet-style feature extractor that takes raw RGB 0..255.

Every backbone's own input normalisation is part of the returned model, so the exported
model takes raw RGB on the device.

Usage:
    backbone = build_backbone("efficientnet_lite0", weights="../shared/weights/efficientnet_lite0_imagenet",
                              image_size=224)
    features = backbone(images)   # (batch, h, w, channels)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from training.config import no_online_preset
from training.errors import ModelError, first_line


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone."""

    build: Callable[[str | None, int], keras.Model]
    default_weights: str            # what ``--weights default`` means
    description: str


# EfficientNet-Lite0 as keras-hub's preset "efficientnet_lite0_ra_imagenet" defines it, for weights=none.
LITE0_ARGS = dict(
    stackwise_width_coefficients=[1.0] * 7, stackwise_depth_coefficients=[1.0] * 7, dropout=0,
    depth_divisor=8, min_depth=None, activation="relu6",
    stackwise_kernel_sizes=[3, 3, 5, 3, 5, 5, 3], stackwise_num_repeats=[1, 2, 2, 3, 3, 4, 1],
    stackwise_input_filters=[32, 16, 24, 40, 80, 112, 192],
    stackwise_output_filters=[16, 24, 40, 80, 112, 192, 320],
    stackwise_expansion_ratios=[1, 6, 6, 6, 6, 6, 6], stackwise_squeeze_and_excite_ratios=[0] * 7,
    stackwise_strides=[1, 2, 2, 2, 1, 2, 1], stackwise_block_types=["v1"] * 7,
    stackwise_force_input_filters=[0] * 7, include_stem_padding=False, use_depth_divisor_as_min_depth=True,
    cap_round_filter_decrease=True, stem_conv_padding="same", batch_norm_momentum=0.9,
    batch_norm_epsilon=0.001, projection_activation=None, num_features=1280,
)


def _wrap(name: str, image_size: int, preprocess: list[keras.layers.Layer], core) -> keras.Model:
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    for layer in preprocess:
        x = layer(x)
    return keras.Model(inputs, core(x), name=name)


# The Lite family differs only in these scalings (EfficientNet-Lite's compound scaling). The Lite
# models keep a 1280-channel top conv at every width, but keras-hub multiplies ``num_features`` by
# the width: Lite2's 1164 x 1.1 rounds back to 1280.
LITE_VARIANTS = {
    "efficientnet_lite0": dict(stackwise_width_coefficients=[1.0] * 7,
                               stackwise_depth_coefficients=[1.0] * 7, num_features=1280),
    "efficientnet_lite1": dict(stackwise_width_coefficients=[1.0] * 7,
                               stackwise_depth_coefficients=[1.0] + [1.1] * 5 + [1.0], num_features=1280),
    "efficientnet_lite2": dict(stackwise_width_coefficients=[1.1] * 7,
                               stackwise_depth_coefficients=[1.0] + [1.2] * 5 + [1.0], num_features=1164),
}


def lite_variant_of(config: dict) -> str | None:
    """Names the Lite variant a keras-hub ``EfficientNetBackbone`` config describes, else None.

    Lite models have no squeeze-excite and ReLU6 (EfficientNet-B0 shares Lite0's scalings but not
    these); the variant is read from the scalings of the middle stages, which every Lite scales.

    Usage:
        lite_variant_of(core.get_config())   # -> "efficientnet_lite1"
    """
    if config.get("activation") != "relu6" or any(config.get("stackwise_squeeze_and_excite_ratios") or [1]):
        return None
    try:
        width = float(config["stackwise_width_coefficients"][1])
        depth = float(config["stackwise_depth_coefficients"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    for name, scalings in LITE_VARIANTS.items():
        wanted = (scalings["stackwise_width_coefficients"][1], scalings["stackwise_depth_coefficients"][1])
        if abs(width - wanted[0]) < 1e-6 and abs(depth - wanted[1]) < 1e-6:
            return name
    return None


def _efficientnet_lite(name: str):
    def build(weights: str | None, image_size: int) -> keras.Model:
        import keras_hub

        if weights:
            try:
                core = keras_hub.models.Backbone.from_preset(weights)
            except Exception as err:  # keras-hub raises several kinds for a bad preset
                # keras-hub's message goes on to list every preset form it knows; its first line says what failed.
                reason = first_line(err)
                if reason.startswith("Unknown preset identifier"):  # the rest of keras-hub's line is a list
                    known = REGISTRY[name].default_weights
                    reason = "no such preset name or folder (" + (
                        f"keras-hub's {name} preset is {known})" if known
                        else f"keras-hub has no {name} preset: give a local preset folder)")
                raise ModelError(f"--weights {weights}: cannot load keras-hub preset: {reason}") from None
            # A Lite1 preset loads fine under --backbone efficientnet_lite0 and would be recorded (and
            # cached, cut, converted) as Lite0; refuse the mismatch instead.
            found = lite_variant_of(core.get_config())
            if found != name:
                what = f"an {found} preset; use --backbone {found}" if found else \
                    f"no EfficientNet-Lite preset (a {type(core).__name__} with squeeze-excite or another activation)"
                raise ModelError(f"--weights {weights}: {name} needs its own preset, and this is {what}")
            num_features = _preset_num_features(weights, name)
        else:
            num_features = LITE_VARIANTS[name]["num_features"]
            core = keras_hub.models.EfficientNetBackbone(input_shape=(None, None, 3),
                                                         **{**LITE0_ARGS, **LITE_VARIANTS[name]})
        _keep_num_features(core, num_features)
        # (pixel - 127) / 128: the presets' image_converter.json (scale 1/128, offset -127/128)
        rescale = keras.layers.Rescaling(1 / 128.0, offset=-127 / 128.0, name="rescale")
        return _wrap(name, image_size, [rescale], core)
    return build


def _preset_num_features(weights: str, name: str) -> int:
    """``num_features`` as a preset folder's config.json gives it (online presets are Lite0: 1280)."""
    import json

    config_file = Path(weights) / "config.json"
    try:
        return int(json.loads(config_file.read_text())["config"]["num_features"])
    except (OSError, ValueError, KeyError, TypeError):
        return LITE_VARIANTS[name]["num_features"]


def _keep_num_features(core: keras.Model, num_features: int) -> None:
    # keras-hub's get_config leaves num_features out: model.keras would reload Lite2 at the default
    # 1280 (x 1.1 = 1408 channels) and fail on its own weights. Saved with the model's config instead.
    saved_config = core.get_config
    core.get_config = lambda: {**saved_config(), "num_features": num_features}


def _keras_app(factory_name: str, **extra):
    def build(weights: str | None, image_size: int) -> keras.Model:
        factory = getattr(keras.applications, factory_name)
        if weights not in (None, "imagenet") and not Path(weights).is_file():
            raise ModelError(f"--weights {weights}: use imagenet, none, or a .weights.h5 file for {factory_name}")
        core = factory(include_top=False, weights="imagenet" if weights == "imagenet" else None,
                       input_shape=(image_size, image_size, 3), **extra)
        if weights not in (None, "imagenet"):
            core.load_weights(weights)
        return core
    return build


def _resnet50(weights: str | None, image_size: int) -> keras.Model:
    core = _keras_app("ResNet50")(weights, image_size)
    # "caffe" preprocessing (RGB -> BGR, minus the ImageNet mean) as a fixed 1x1 convolution,
    # so the saved model needs no custom layer.
    caffe = keras.layers.Conv2D(3, 1, name="caffe_preprocess", trainable=False)
    caffe.build((None, image_size, image_size, 3))
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    for rgb, bgr in ((0, 2), (1, 1), (2, 0)):
        kernel[0, 0, rgb, bgr] = 1.0
    caffe.set_weights([kernel, -np.array([103.939, 116.779, 123.68], np.float32)])
    return _wrap("resnet50", image_size, [caffe], core)


REGISTRY: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec(_efficientnet_lite("efficientnet_lite0"), "efficientnet_lite0_ra_imagenet",
                                       "EfficientNet-Lite0 (keras-hub), ReLU6, no SE: INT8 and Edge TPU friendly"),
    # keras-hub publishes no Lite1/Lite2 presets: --weights names a local preset folder (or none).
    "efficientnet_lite1": BackboneSpec(_efficientnet_lite("efficientnet_lite1"), "",
                                       "EfficientNet-Lite1 (keras-hub architecture), native 240 px"),
    "efficientnet_lite2": BackboneSpec(_efficientnet_lite("efficientnet_lite2"), "",
                                       "EfficientNet-Lite2 (keras-hub architecture), native 260 px"),
    # MobileNetV3 and EfficientNetB0 in keras.applications rescale inside (include_preprocessing).
    "mobilenet_v3_small": BackboneSpec(_keras_app("MobileNetV3Small", include_preprocessing=True),
                                       "imagenet", "MobileNetV3-Small (keras.applications)"),
    "mobilenet_v3_large": BackboneSpec(_keras_app("MobileNetV3Large", include_preprocessing=True),
                                       "imagenet", "MobileNetV3-Large (keras.applications)"),
    "efficientnet_b0": BackboneSpec(_keras_app("EfficientNetB0"), "imagenet",
                                    "EfficientNet-B0 (keras.applications), for comparison"),
    "resnet50": BackboneSpec(_resnet50, "imagenet", "ResNet-50 (keras.applications), for comparison"),
}


def resolve_weights(backbone: str, weights: str | None) -> str | None:
    """``none`` -> None; ``default`` -> the backbone's usual ImageNet weights; anything else as given."""
    if weights is None or str(weights).lower() == "none":
        return None
    if weights == "default":
        if not REGISTRY[backbone].default_weights:
            raise ModelError(f"--weights default: {no_online_preset(backbone)}")
        return REGISTRY[backbone].default_weights
    return str(weights)


def build_backbone(name: str, weights: str | None, image_size: int) -> keras.Model:
    """Builds a registered backbone that maps raw RGB images to a feature map.

    Raises:
        ModelError: unknown backbone, or weights that cannot be loaded.
    """
    if name not in REGISTRY:
        raise ModelError(f"unknown backbone {name!r}; choose one of {', '.join(REGISTRY)}")
    resolved = resolve_weights(name, weights)
    if resolved and name in LITE_VARIANTS and "/" in resolved and not Path(resolved).is_dir():
        raise ModelError(f"--weights {resolved}: preset folder not found")
    try:
        return REGISTRY[name].build(resolved, image_size)
    except ModelError:
        raise
    except Exception as err:  # a download that fails offline, a shape mismatch in a weights file, ...
        raise ModelError(f"backbone {name} with weights {resolved}: {err}") from None
