"""The converter's one door to ai-edge-litert: build interpreters, read quantisation, run, list ops.

Usage:
    from converter.litert import LiteModel
    model = LiteModel(model_bytes, threads=2)
    probabilities = model.predict(images)
    input_spec, output_spec = model.specs()
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from converter import ConverterError
from edge.bundle import InputSpec, OutputSpec


def _interpreter_class():
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter


def build_interpreter(model: bytes | Path, threads: int | None = None, default_delegates: bool = True):
    """An allocated interpreter for a model given as bytes or a file.

    Args:
        model: flatbuffer bytes or a ``.tflite`` path.
        threads: CPU threads for the kernels (``None``: LiteRT's default).
        default_delegates: ``False`` keeps XNNPACK out, so ops are listed as written in the file.

    Raises:
        ConverterError: the file is missing or not a valid LiteRT model.
    """
    from ai_edge_litert.interpreter import OpResolverType

    kwargs = {"num_threads": threads}
    if not default_delegates:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    where = str(model) if isinstance(model, Path) else "converted model"
    try:
        if isinstance(model, Path):
            interpreter = _interpreter_class()(model_path=str(model), **kwargs)
        else:
            interpreter = _interpreter_class()(model_content=bytes(model), **kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or ["invalid model"])[0]
        raise ConverterError(f"{where}: not a valid LiteRT model ({first})") from None
    return interpreter


class LiteModel:
    """A converted model ready to classify uint8 RGB images the way the bin does.

    Usage:
        model = LiteModel(path_or_bytes)
        probabilities = model.predict(images)   # [N, classes], dequantised
    """

    def __init__(self, model: bytes | Path, threads: int | None = None):
        self.interpreter = build_interpreter(model, threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.input["shape"])

    def specs(self) -> tuple[InputSpec, OutputSpec]:
        """The manifest's input and output specs, read from the model's tensors."""
        _, height, width, _ = self.input_shape
        in_dtype = np.dtype(self.input["dtype"]).name
        in_scale, in_zero = self.input["quantization"]
        out_dtype = np.dtype(self.output["dtype"]).name
        out_scale, out_zero = self.output["quantization"]
        input_spec = InputSpec(height=height, width=width, dtype=in_dtype,
                               scale=float(in_scale) if in_scale else 1.0, zero_point=int(in_zero))
        output_spec = OutputSpec(dtype=out_dtype, scale=float(out_scale) if out_scale else 1.0,
                                 zero_point=int(out_zero))
        return input_spec, output_spec

    def to_input(self, image: np.ndarray) -> np.ndarray:
        """One uint8 RGB image (already at model size) as the model's input tensor."""
        dtype = self.input["dtype"]
        scale, zero_point = self.input["quantization"]
        if dtype == np.float32:
            return image[None].astype(np.float32)
        if dtype == np.uint8 and scale in (0.0, 1.0) and zero_point == 0:
            return image[None]
        info = np.iinfo(dtype)
        quantised = np.round(image.astype(np.float32) / scale + zero_point)
        return np.clip(quantised, info.min, info.max).astype(dtype)[None]

    def from_output(self, raw: np.ndarray) -> np.ndarray:
        scale, zero_point = self.output["quantization"]
        values = raw.reshape(-1).astype(np.float32)
        return scale * (values - zero_point) if scale else values

    def predict_one(self, image: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], self.to_input(image))
        self.interpreter.invoke()
        return self.from_output(self.interpreter.get_tensor(self.output["index"]))

    def predict(self, images: np.ndarray, progress: bool = True, desc: str = "converted model") -> np.ndarray:
        """Dequantised probabilities ``[N, classes]``, one invoke per image (batch 1, as on the bin)."""
        rows = images
        if progress:
            from tqdm import tqdm

            rows = tqdm(images, desc=desc, unit="img", file=sys.stderr, leave=False, disable=None)
        outputs = [self.predict_one(image) for image in rows]
        classes = int(self.output["shape"][-1])
        return np.stack(outputs) if outputs else np.zeros((0, classes), np.float32)


def list_ops(model: bytes | Path) -> list[dict]:
    """The model's operators in execution order: ``{"op_name", "operand_types", "result_types"}``.

    Dtypes are numpy dtype names; the default XNNPACK delegate is kept out so that every
    operator of the file shows up under its own name.
    """
    interpreter = build_interpreter(model, default_delegates=False)
    return [
        {
            "op_name": op["op_name"],
            "operand_types": [np.dtype(t).name for t in op.get("operand_types", [])],
            "result_types": [np.dtype(t).name for t in op.get("result_types", [])],
        }
        for op in interpreter._get_ops_details()
    ]
