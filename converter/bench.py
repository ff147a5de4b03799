"""``python -m converter bench``: LiteRT invoke latency of a bundle against its run's float32 model.

Both models are timed in the same process, interleaved run by run (so background load
hits both alike), with a fresh random input before every invoke and warm-up invokes first.
Only ``invoke()`` is timed.

Usage:
    from converter.bench import bench, format_table
    result = bench("models/trashnet-efflite0-int8", threads=[1, 2, 4], runs=50)
    print(format_table(result))
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from converter import ConverterError
from converter.litert import build_interpreter
from converter.runfolder import FLOAT_REFERENCE_FILE
from edge.bundle import Bundle, load_bundle
from edge.config_schema import MAX_THREADS
from edge.errors import BundleError


def resolve_target(path: str | os.PathLike) -> tuple[Path, Bundle | None]:
    """The model file to time: a bundle folder's model, or a bare ``.tflite`` file.

    Raises:
        ConverterError: the path is neither, or the bundle does not validate.
    """
    target = Path(path)
    if target.is_file():
        return target, None
    try:
        bundle = load_bundle(target)
    except BundleError as err:
        raise ConverterError(str(err)) from None
    return bundle.model_path, bundle


def find_float_reference(bundle: Bundle | None) -> Path | None:
    """The float32 ``.tflite`` of the bundle's run, if it can be found.

    Looks at ``<source_run>/model_float32.tflite`` (the run the converter just wrote it into;
    a relative ``source_run`` is tried from the working directory, the bundle's parent and the
    bundle's grandparent, i.e. from the folder that holds ``models/`` and ``runs/``), then at
    ``<bundle>/../<bundle name>-float32.tflite`` (``--keep-float``).
    """
    if bundle is None:
        return None
    candidates = []
    source = bundle.manifest.source_run
    if source:
        run = Path(source)
        candidates += [run / FLOAT_REFERENCE_FILE] if run.is_absolute() else [
            run / FLOAT_REFERENCE_FILE, bundle.path.parent / run / FLOAT_REFERENCE_FILE,
            bundle.path.resolve().parent.parent / run / FLOAT_REFERENCE_FILE]
    candidates.append(bundle.path.parent / f"{bundle.name}-float32.tflite")
    for candidate in candidates:
        if candidate.is_file() and candidate.resolve() != bundle.model_path.resolve():
            return candidate
    return None


def _random_input(details: dict, rng: np.random.Generator) -> np.ndarray:
    shape = tuple(int(n) for n in details["shape"])
    dtype = details["dtype"]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
    return rng.uniform(0, 255, size=shape).astype(dtype)


class _Timed:
    def __init__(self, path: Path, threads: int):
        self.path = path
        self.interpreter = build_interpreter(path, threads)
        self.input = self.interpreter.get_input_details()[0]
        self.samples: list[float] = []

    def invoke(self, rng: np.random.Generator, record: bool) -> None:
        self.interpreter.set_tensor(self.input["index"], _random_input(self.input, rng))
        start = time.perf_counter()
        self.interpreter.invoke()
        elapsed = time.perf_counter() - start
        if record:
            self.samples.append(elapsed * 1000)

    def stats(self) -> dict[str, float]:
        values = np.asarray(self.samples)
        return {"median_ms": round(float(np.median(values)), 3),
                "p90_ms": round(float(np.percentile(values, 90)), 3),
                "mean_ms": round(float(values.mean()), 3)}


def bench(path: str | os.PathLike, threads: list[int], runs: int = 50, warmup: int = 5,
          reference: str | os.PathLike | None = None, seed: int = 0) -> dict[str, Any]:
    """Times the model (and the float32 reference when found) per thread count.

    Returns:
        JSON-ready ``{"model", "quantization", "reference", "runs", "warmup", "results": [...]}``;
        each result has ``threads``, ``model`` stats, and when a reference is there
        ``float32`` stats and ``ratio`` (model median / float32 median).
    """
    if runs < 1 or warmup < 0 or not threads or min(threads) < 1 or max(threads) > MAX_THREADS:
        raise ConverterError(f"bench: --runs must be >= 1, --warmup >= 0 and --threads integers from 1 to {MAX_THREADS}")
    model_path, bundle = resolve_target(path)
    reference_path = Path(reference) if reference else find_float_reference(bundle)
    if reference and not reference_path.is_file():
        raise ConverterError(f"--float {reference_path}: file not found")
    rng = np.random.default_rng(seed)
    results = []
    for count in threads:
        timed = [_Timed(model_path, count)]
        if reference_path:
            timed.append(_Timed(reference_path, count))
        for run in range(warmup + runs):
            # Alternate which model goes first so neither always runs on a warmer cache.
            for model in (timed if run % 2 == 0 else timed[::-1]):
                model.invoke(rng, record=run >= warmup)
        row: dict[str, Any] = {"threads": count, "model": timed[0].stats()}
        if reference_path:
            row["float32"] = timed[1].stats()
            row["ratio"] = round(row["model"]["median_ms"] / row["float32"]["median_ms"], 3)
        results.append(row)
    return {
        "model": str(model_path),
        "quantization": bundle.manifest.quantization if bundle else "unknown",
        "reference": str(reference_path) if reference_path else None,
        "runs": runs,
        "warmup": warmup,
        "results": results,
    }


def format_table(result: dict[str, Any]) -> str:
    """The human table ``bench`` prints."""
    has_reference = result["reference"] is not None
    header = ["threads", f"{result['quantization']} median ms", "p90 ms"]
    if has_reference:
        header += ["float32 median ms", "p90 ms", "ratio"]
    rows = [header]
    for row in result["results"]:
        cells = [str(row["threads"]), f"{row['model']['median_ms']:.2f}", f"{row['model']['p90_ms']:.2f}"]
        if has_reference:
            cells += [f"{row['float32']['median_ms']:.2f}", f"{row['float32']['p90_ms']:.2f}", f"{row['ratio']:.2f}"]
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"model: {result['model']}",
             f"float32 reference: {result['reference'] or 'not found (ratio not measured)'}",
             f"{result['runs']} runs after {result['warmup']} warm-up, fresh random input each run", ""]
    lines += ["  ".join(cell.rjust(width) for cell, width in zip(r, widths)) for r in rows]
    return "\n".join(lines)
