"""Keras model → LiteRT flatbuffer in one of four modes, with a fixed batch of 1.

``int8`` is full-integer: only ``TFLITE_BUILTINS_INT8`` kernels, uint8 input taking raw RGB
(scale 1, zero point 0) and uint8 probabilities (scale 1/256). ``float16`` stores float16
weights, ``dynamic`` int8 weights with float activations, ``float32`` is the plain model.

Why the raw-RGB input needs care: the converter quantises the input tensor from the
min/max it sees in the calibration photos. Photos without a pure black or pure white
pixel give a range like [0, 230] and so an input scale of 230/255 instead of 1, which
would make every device pre-scale its pixels. ``anchor_input_range`` marks one pixel of
one calibration photo 0 and one 255: the range is then exactly [0, 255] and the input
quantisation is the identity, while the activations' ranges barely move.

Why the model's own rescaling needs care too: Keras' ``Rescaling(1/128, offset=-127/128)``
(EfficientNet-Lite's ``(pixel - 127) / 128``) computes ``x * 1/128 - 127/128``, and the converter
gives the product ``x / 128`` an int8 tensor of its own, calibrated to a range wide enough for
both steps (scale 0.0117 > 1/128): 256 pixel values land on about 170 levels before the first
convolution, so every photo loses colour detail the float model sees. Computed the other way
round, ``(x - 127) * 1/128``, the sum ``x - 127`` is an int8 tensor of scale 1 that holds every
pixel value exactly, and the converter folds the ``* 1/128`` into the stem's weights.
``exact_input_rescaling`` makes the conversion trace it that way; the float model
is not changed. On session 11's seed-1 320 px run this cut the val loss of INT8 from 8 photos
(2.12 points) to 5 (1.32) (benchmarks/converter.md).

Usage:
    from converter.quantize import convert
    model_bytes = convert(model, "int8", calibration_images)
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings

import numpy as np

from converter import ConverterError

QUANTIZATION_MODES = ("int8", "float16", "dynamic", "float32")


def anchor_input_range(images: np.ndarray) -> np.ndarray:
    """A copy of ``images`` whose first photo holds one 0 pixel and one 255 pixel."""
    anchored = np.array(images, dtype=np.uint8, copy=True)
    if len(anchored):
        anchored[0, 0, 0, :] = 0
        anchored[0, 0, -1, :] = 255
    return anchored


@contextlib.contextmanager
def exact_input_rescaling(model):
    """While active, ``Rescaling`` layers whose offset is a whole number of steps subtract first.

    ``x * s + o`` becomes ``(x + o / s) * s``: the same values, but for raw pixels and a whole
    ``o / s`` in -255..0 the sum is exact in int8 at scale 1, and the converter folds the product
    into the next convolution's weights (see the module docstring). Other layers are left as they are.

    Usage:
        with exact_input_rescaling(model):
            flatbuffer = converter.convert()
    """
    import keras

    patched = {}  # id -> (layer, the instance's own call if it had one): each layer once, however often it is reached
    for layer in _all_layers(model):
        shift = _whole_shift(layer) if isinstance(layer, keras.layers.Rescaling) else None
        if shift is None or id(layer) in patched:
            continue
        patched[id(layer)] = layer, vars(layer).get("call")
        layer.call = functools.partial(_shift_then_scale, layer, float(shift))
    try:
        yield len(patched)
    finally:
        for layer, own_call in patched.values():
            if own_call is None:
                vars(layer).pop("call", None)  # the class's call again
            else:
                layer.call = own_call


def _all_layers(model) -> list:
    layers = []
    for layer in getattr(model, "layers", []):
        layers.append(layer)
        layers += _all_layers(layer)
    return layers


def _whole_shift(layer) -> int | None:
    """``offset / scale`` when both are single numbers and it is a whole number in -255..0.

    Raw pixels plus such a shift span 256 whole values that include 0: one int8 tensor of scale 1.
    """
    if np.ndim(layer.scale) or np.ndim(layer.offset):
        return None  # per-channel values: left as they are
    scale, offset = float(layer.scale), float(layer.offset)
    if not scale:
        return None
    shift = offset / scale
    return int(shift) if shift.is_integer() and -255 <= shift <= 0 else None


def _shift_then_scale(layer, shift: float, inputs):
    from keras import ops

    dtype = layer.compute_dtype
    return (ops.cast(inputs, dtype) + ops.cast(shift, dtype)) * ops.cast(layer.scale, dtype)


def convert(model, mode: str, calibration: np.ndarray | None = None) -> bytes:
    """Converts a Keras model taking ``(None, S, S, 3)`` raw RGB to a LiteRT flatbuffer.

    Args:
        model: the float Keras model.
        mode: one of ``QUANTIZATION_MODES``.
        calibration: uint8 images ``[N, S, S, 3]`` for ``int8`` (ignored otherwise).

    Raises:
        ConverterError: an unknown mode, missing calibration photos, or a converter failure.
    """
    import keras
    import tensorflow as tf

    if mode not in QUANTIZATION_MODES:
        raise ConverterError(f"--quantize {mode!r}: choose one of {', '.join(QUANTIZATION_MODES)}")
    size = int(model.input_shape[1])
    # A fixed batch of 1 gives the device static shapes (no resize_tensor_input needed).
    image = keras.Input((size, size, 3), batch_size=1, name="image")
    fixed = keras.Model(image, model(image), name="smartbin_classifier")
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    if mode == "int8":
        if calibration is None or not len(calibration):
            raise ConverterError("int8 conversion needs calibration photos from the train split")
        samples = anchor_input_range(calibration).astype(np.float32)

        def representative():
            for sample in samples:
                yield [sample[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    elif mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        # Keras prints the temporary SavedModel's signature on stdout; keep stdout for results.
        exact = exact_input_rescaling(fixed) if mode == "int8" else contextlib.nullcontext()
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), exact:
            # TF warns that uint8 input "statistics" were not given; with raw RGB there are none to give.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            return bytes(converter.convert())
    except Exception as err:  # the converter raises ConverterError, RuntimeError, ValueError...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConverterError(f"{mode} conversion failed: {first}") from None
