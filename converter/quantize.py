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

Usage:
    from converter.quantize import convert
    model_bytes = convert(model, "int8", calibration_images)
"""

from __future__ import annotations

import contextlib
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
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # TF warns that uint8 input "statistics" were not given; with raw RGB there are none to give.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            return bytes(converter.convert())
    except Exception as err:  # the converter raises ConverterError, RuntimeError, ValueError...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConverterError(f"{mode} conversion failed: {first}") from None
