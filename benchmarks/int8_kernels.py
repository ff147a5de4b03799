"""Which layers of EfficientNet-Lite0 gain from INT8 on this CPU: each kind timed alone, INT8 against float32.

``python -m converter bench`` compares whole models; this splits the comparison by layer kind, to
show where the INT8/float32 ratio of the shipped model comes from. Each layer is a one-layer Keras
model at a shape it has inside Lite0 at 288 px (convolution + ReLU6, as after BatchNorm folding),
converted twice with TensorFlow's converter (float32, and full-integer INT8 with
``TFLITE_BUILTINS_INT8`` and per-channel weights, as the converter does), then timed with
ai-edge-litert (XNNPACK, one thread) alternating INT8 and float32 invokes in one process.
Needs the ``[train]`` extras (TensorFlow) for the conversion.

Usage:
    python benchmarks/int8_kernels.py --runs 200
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import datetime, timezone

import numpy as np

from machine import cpu_model

# (name, input shape H x W x C, layer builder arguments): shapes of Lite0's layers at 288 px input.
LAYERS = [
    ("stem conv 3x3 s2, 3->32", (288, 288, 3), ("conv", 32, 3, 2)),
    ("1x1 expand, 40->240", (36, 36, 40), ("conv", 240, 1, 1)),
    ("depthwise 3x3, 240", (36, 36, 240), ("depthwise", None, 3, 1)),
    ("depthwise 5x5, 480", (18, 18, 480), ("depthwise", None, 5, 1)),
    ("1x1 project, 480->80", (18, 18, 480), ("conv", 80, 1, 1)),
    ("1x1 expand, 192->1152", (9, 9, 192), ("conv", 1152, 1, 1)),
    ("head 1x1, 320->1280", (9, 9, 320), ("conv", 1280, 1, 1)),
]


def build(shape, spec):
    import keras

    kind, filters, kernel, stride = spec
    inputs = keras.Input(shape, batch_size=1)
    if kind == "conv":
        layer = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", activation="relu6")
    else:
        layer = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", activation="relu6")
    return keras.Model(inputs, layer(inputs))


def convert(model, shape, int8: bool) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)
        samples = [rng.uniform(-1, 1, (1, *shape)).astype(np.float32) for _ in range(16)]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([sample] for sample in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def time_pair(int8_bytes: bytes, float_bytes: bytes, runs: int, threads: int) -> tuple[float, float]:
    from ai_edge_litert.interpreter import Interpreter

    interpreters = []
    for data in (int8_bytes, float_bytes):
        interpreter = Interpreter(model_content=data, num_threads=threads)
        interpreter.allocate_tensors()
        details = interpreter.get_input_details()[0]
        rng = np.random.default_rng(1)
        if details["dtype"] == np.float32:
            tensor = rng.uniform(-1, 1, details["shape"]).astype(np.float32)
        else:
            tensor = rng.integers(-128, 128, details["shape"], dtype=np.int8)
        interpreter.set_tensor(details["index"], tensor)
        for _ in range(5):
            interpreter.invoke()
        interpreters.append(interpreter)
    timings: list[list[float]] = [[], []]
    for _ in range(runs):
        for index, interpreter in enumerate(interpreters):
            start = time.perf_counter()
            interpreter.invoke()
            timings[index].append((time.perf_counter() - start) * 1000)
    return statistics.median(timings[0]), statistics.median(timings[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed invokes of each model (default 200)")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT threads (default 1, as the target)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}  {platform.machine()}  {cpu_model()} "
          f"({os.cpu_count()} cores), {args.threads} thread(s), {args.runs} runs each, medians")
    print(f"{'layer':28s} {'int8 ms':>9s} {'float32 ms':>11s} {'ratio':>6s}")
    for name, shape, spec in LAYERS:
        model = build(shape, spec)
        int8_ms, float_ms = time_pair(convert(model, shape, True), convert(model, shape, False),
                                      args.runs, args.threads)
        print(f"{name:28s} {int8_ms:9.3f} {float_ms:11.3f} {int8_ms / float_ms:6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
