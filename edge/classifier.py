"""LiteRT classifier for a model bundle: the only edge module that imports ai_edge_litert.

The interpreter is built once per bundle. Input and output quantisation are read from
the interpreter itself (as pycoral's ``adapters/classify.py`` does) and checked against
the manifest, so a bundle whose manifest lies about its model is refused at load time
rather than classifying garbage all day.

Usage:
    from edge.classifier import Classifier
    classifier = Classifier.from_path("models/trashnet-efflite0-int8", threads=2)
    prediction = classifier.classify(rgb)
    print(prediction.label, prediction.confidence)
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import time
import traceback
from dataclasses import dataclass

import numpy as np

from edge import imaging
from edge.bundle import Bundle, load_bundle
from edge.errors import BundleError, ClassifierError
from edge.priority_lock import PriorityLock

log = logging.getLogger(__name__)

EDGETPU_LIBRARY = "libedgetpu.so.1"
_NUMPY_DTYPES = {"uint8": np.uint8, "int8": np.int8, "float32": np.float32}


@dataclass(frozen=True)
class Prediction:
    """The classifier's answer for one item (one image or the mean over K frames)."""

    label: str
    confidence: float
    probabilities: dict[str, float]
    top3: list[tuple[str, float]]
    latency_ms: float
    invoke_ms: float


class Classifier:
    """A LiteRT interpreter for one bundle, safe to share between threads.

    Callers that can wait (the web page's uploads) pass ``background=True``: while a foreground
    ``classify_frames`` (the sorting loop's item) is under way their invokes wait, so an item on the
    tray is delayed by at most the one background invoke already running.

    Usage:
        classifier = Classifier(load_bundle(path), threads=2)
        prediction = classifier.classify_frames([frame.image for frame in frames])
    """

    def __init__(self, bundle: Bundle, threads: int = 2, use_edgetpu: bool = False,
                 views: tuple[str, ...] | list[str] = ("original",)):
        from ai_edge_litert.interpreter import Interpreter

        unknown = [name for name in views if name not in imaging.VIEWS]
        if not views or unknown:
            raise ValueError(f"views must name one or more of {', '.join(imaging.VIEWS)}, got {list(views)}")
        self.views: tuple[str, ...] = tuple(views)
        self.bundle = bundle
        self.labels: tuple[str, ...] = bundle.labels
        self.threads = threads
        self.delegate = "cpu"
        self._lock = PriorityLock()
        self._interpreter = None
        if use_edgetpu:
            self._interpreter = self._edgetpu_interpreter(Interpreter)
        if self._interpreter is None:
            self._interpreter = _build(Interpreter, bundle.model_path, num_threads=threads)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._check_against_manifest()
        self._input_dtype = self._input["dtype"]
        in_scale, in_zero = self._input["quantization"]
        # Raw RGB goes straight in when the input tensor is uint8 with the identity quantisation.
        self._input_identity = self._input_dtype == np.uint8 and in_scale in (0.0, 1.0) and in_zero == 0
        self._input_quant = (in_scale, in_zero)
        self._output_quant = self._output["quantization"]
        spec = bundle.manifest.input
        self._scratch = np.empty((spec.height, spec.width, 3), np.uint8) if self._input_identity else None

    @classmethod
    def from_path(cls, path: str | os.PathLike, **kwargs) -> Classifier:
        """Loads and validates a bundle folder, then builds its interpreter.

        Raises:
            BundleError: the bundle is missing, incomplete or does not match its model.
            ClassifierError: the model file cannot be loaded by LiteRT.
        """
        return cls(load_bundle(path), **kwargs)

    def _edgetpu_interpreter(self, interpreter_class):
        from ai_edge_litert.interpreter import load_delegate

        try:
            model = self.bundle.edgetpu_model_path()
        except BundleError as err:
            log.warning("%s; using the CPU model", err)
            return None
        if model is None:
            log.warning("%s: no Edge TPU model in the bundle; using the CPU model", self.bundle.path)
            return None
        try:
            # Probing with ctypes first: a failed load_delegate() leaves a half-built Delegate
            # whose __del__ raises, which would print a confusing traceback at exit.
            ctypes.CDLL(EDGETPU_LIBRARY)
            delegate = load_delegate(EDGETPU_LIBRARY)
            interpreter = interpreter_class(model_path=str(model), experimental_delegates=[delegate])
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError, OSError) as err:
            log.warning("Edge TPU unavailable (%s); using the CPU model", str(err).splitlines()[0] if str(err) else err)
            return None
        self.delegate = "edgetpu"
        return interpreter

    def _check_against_manifest(self) -> None:
        spec, out_spec = self.bundle.manifest.input, self.bundle.manifest.output
        where = self.bundle.path
        shape = tuple(int(n) for n in self._input["shape"])
        if len(shape) != 4 or shape[1:] != (spec.height, spec.width, 3):
            raise BundleError(f"{where}: model input shape {shape} does not match the manifest's "
                              f"{spec.height}x{spec.width}x3")
        for name, details, declared in (("input", self._input, spec), ("output", self._output, out_spec)):
            actual = np.dtype(details["dtype"]).name
            if actual != declared.dtype:
                raise BundleError(f"{where}: model {name} dtype is {actual} but the manifest says {declared.dtype}")
            scale, zero_point = details["quantization"]
            if scale and (not np.isclose(scale, declared.scale, rtol=1e-5) or zero_point != declared.zero_point):
                raise BundleError(f"{where}: model {name} quantisation (scale {scale:g}, zero point {zero_point}) "
                                  f"does not match the manifest's (scale {declared.scale:g}, "
                                  f"zero point {declared.zero_point})")
        self.bundle.check_output_size(int(self._output["shape"][-1]))

    def _to_input(self, rgb: np.ndarray, view: str) -> np.ndarray:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image (H x W x 3), got {rgb.dtype} {rgb.shape}")
        # Turned after resizing: what turning first would give (bilinear is symmetric, up to rounding), cheaper.
        resized = imaging.view(imaging.resize_for_model(rgb, self.bundle.manifest.input), view)
        if self._input_identity:
            return resized[None]
        if self._input_dtype == np.float32:
            return resized[None].astype(np.float32)
        scale, zero_point = self._input_quant
        info = np.iinfo(self._input_dtype)
        quantised = np.round(resized.astype(np.float32) / scale + zero_point)
        return np.clip(quantised, info.min, info.max).astype(self._input_dtype)[None]

    def _from_output(self, raw: np.ndarray) -> np.ndarray:
        scale, zero_point = self._output_quant
        values = raw.reshape(-1).astype(np.float32)
        if scale:
            values = scale * (values - zero_point)
        return values

    def _write_input(self, rgb: np.ndarray, view: str) -> None:
        if not self._input_identity:
            self._interpreter.set_tensor(self._input["index"], self._to_input(rgb, view))
            return
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or not rgb.size:
            raise ValueError(f"expected an RGB uint8 image (H x W x 3), got {rgb.dtype} {rgb.shape}")
        # Resized (and turned) straight into the interpreter's input buffer: saves a frame's
        # allocation and copy per invoke. No array may still point into that buffer when invoke()
        # runs (it refuses to): not ours, and not one held by a failed call's traceback either.
        buffer = self._interpreter.tensor(self._input["index"])()
        try:
            imaging.view_into(rgb, view, buffer[0], self._scratch)
        except BaseException as err:
            traceback.clear_frames(err.__traceback__)
            raise
        finally:
            del buffer

    def _run(self, rgb: np.ndarray, view: str = "original", background: bool = False) -> tuple[np.ndarray, float]:
        with self._lock.hold(background):
            self._write_input(rgb, view)
            start = time.perf_counter()
            try:
                self._interpreter.invoke()
            except (RuntimeError, ValueError) as err:
                raise ClassifierError(f"{self.bundle.model_path}: inference failed: {err}") from None
            invoke_ms = (time.perf_counter() - start) * 1000.0
            raw = self._interpreter.get_tensor(self._output["index"])
        return self._from_output(raw), invoke_ms

    def probabilities(self, rgb: np.ndarray, view: str = "original") -> np.ndarray:
        """Returns the class probabilities (float32, bundle label order) for one RGB uint8 image,
        shown to the model as ``view`` (one of ``imaging.VIEWS``)."""
        return self._run(rgb, view)[0]

    def classify(self, rgb: np.ndarray, background: bool = False) -> Prediction:
        """Classifies one RGB uint8 image of any size: every one of ``views`` of it, averaged
        (one invoke per view), which is what the bin does with the same photo as K still frames."""
        if rgb.ndim == 3 and rgb.dtype == np.uint8:  # anything else is refused by classify_frames as it is
            rgb = imaging.resize_for_model(rgb, self.bundle.manifest.input)  # once, not once per view
        return self.classify_frames([rgb] * len(self.views), background=background)

    def classify_frames(self, images: list[np.ndarray], background: bool = False) -> Prediction:
        """Classifies K frames of one item by averaging their probabilities (one invoke each).

        Frame ``i`` is shown to the model as ``views[i % len(views)]``: with the three default
        views, the second frame mirrored and the third upside down, so K still frames that are
        nearly the same picture still give the model three different looks at the item. With
        ``background``, each invoke waits for foreground work on this classifier (class docstring).
        """
        if not images:
            raise ValueError("classify_frames needs at least one image")
        start = time.perf_counter()
        total = np.zeros(len(self.labels), np.float32)
        invoke_ms = 0.0
        with contextlib.nullcontext() if background else self._lock.priority():
            for i, image in enumerate(images):
                probabilities, spent = self._run(image, self.views[i % len(self.views)], background)
                total += probabilities
                invoke_ms += spent
        mean = total / len(images)
        order = np.argsort(-mean, kind="stable")
        probabilities = {label: float(mean[i]) for i, label in enumerate(self.labels)}
        top3 = [(self.labels[i], float(mean[i])) for i in order[:3]]
        best = int(order[0])
        latency_ms = (time.perf_counter() - start) * 1000.0
        return Prediction(self.labels[best], float(mean[best]), probabilities, top3, latency_ms, invoke_ms)


def _build(interpreter_class, model_path, num_threads: int):
    try:
        interpreter = interpreter_class(model_path=str(model_path), num_threads=num_threads)
        interpreter.allocate_tensors()
    except Exception as err:  # LiteRT raises ValueError/RuntimeError with multi-line C++ text
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ClassifierError(f"{model_path}: not a loadable LiteRT model ({first_line})") from None
    return interpreter
