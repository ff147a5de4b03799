"""Coral Edge TPU: which ops it cannot run, compiling with ``edgetpu_compiler``, reading its log.

The Edge TPU runs only 8-bit quantised versions of a fixed list of operators. The compiler
maps ops to the TPU up to the first one it cannot take; that op and everything after it
run on the (slow) CPU, so an unsupported op near the input costs nearly all the speed-up.

Usage:
    from converter.edgetpu import precheck, compile_model
    for problem in precheck(list_ops(model_bytes)):
        print(problem)
    compiled, info = compile_model(model_bytes)   # needs edgetpu_compiler on PATH
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from converter import ConverterError

COMPILER = "edgetpu_compiler"
MODEL_FILE = "model_edgetpu.tflite"

# coral.ai/docs/edgetpu/models-intro/#supported-operations, as TFLite builtin names.
SUPPORTED_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM",
    "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX",
    "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE",
    "STRIDED_SLICE", "SUB", "SUM", "SQUARED_DIFFERENCE", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
})
_EIGHT_BIT = {"int8", "uint8"}

HOW_TO_GET_COMPILER = """\
edgetpu_compiler is not on PATH, so only the CPU bundle was written.
The compiler runs on x86-64 Linux only (not on the Pi). On Debian/Ubuntu:
  curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo gpg --dearmor -o /usr/share/keyrings/coral.gpg
  echo "deb [signed-by=/usr/share/keyrings/coral.gpg] https://packages.cloud.google.com/apt coral-edgetpu-stable main" \\
    | sudo tee /etc/apt/sources.list.d/coral-edgetpu.list
  sudo apt-get update && sudo apt-get install edgetpu-compiler
Elsewhere run the same steps in a Docker container (docker run --platform linux/amd64 -it debian:bookworm)
or use Coral's "compile for Edge TPU" Colab notebook, then run the converter again with --edgetpu."""


def precheck(ops: list[dict]) -> list[str]:
    """Names the ops the Edge TPU cannot run, one line per op kind, in model order.

    Args:
        ops: ``converter.litert.list_ops`` output.
    """
    problems: Counter[tuple[str, str]] = Counter()
    for op in ops:
        name = op["op_name"]
        tensor_types = set(op.get("operand_types", [])) | set(op.get("result_types", []))
        if name not in SUPPORTED_OPS:
            reason = "not an Edge TPU operation"
        elif "float32" in tensor_types or "float16" in tensor_types:
            reason = "float tensors (the Edge TPU runs only 8-bit quantised ops)"
        elif name != "QUANTIZE" and not (tensor_types & _EIGHT_BIT):
            reason = "no 8-bit tensors"
        else:
            continue
        problems[(name, reason)] += 1
    return [f"{name} x{count}: {reason}" for (name, reason), count in problems.items()]


def find_compiler() -> str | None:
    return shutil.which(COMPILER)


def compile_model(model_bytes: bytes, compiler: str | None = None, timeout: float = 600) -> tuple[bytes, dict]:
    """Compiles a full-integer model for the Edge TPU.

    Returns:
        ``(compiled model bytes, info)`` where info has ``compiler_version``, ``ops_on_tpu``,
        ``ops_on_cpu``, ``ops_total`` and ``cpu_ops`` from the compiler's log.

    Raises:
        ConverterError: the compiler is missing, fails, or writes no model.
    """
    compiler = compiler or find_compiler()
    if not compiler:
        raise ConverterError(f"{COMPILER} not found on PATH")
    with tempfile.TemporaryDirectory(prefix="smartbin-edgetpu-") as workdir:
        source = Path(workdir) / "model.tflite"
        source.write_bytes(model_bytes)
        try:
            done = subprocess.run([compiler, "-s", "-o", workdir, str(source)], capture_output=True,
                                  text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ConverterError(f"{COMPILER}: {err}") from None
        output = done.stdout + "\n" + done.stderr
        compiled = Path(workdir) / MODEL_FILE
        if done.returncode != 0 or not compiled.is_file():
            last = next((line for line in reversed(output.splitlines()) if line.strip()), "no output")
            raise ConverterError(f"{COMPILER} failed (exit {done.returncode}): {last.strip()}")
        log_file = Path(workdir) / "model_edgetpu.log"
        if log_file.is_file():
            output += "\n" + log_file.read_text(encoding="utf-8", errors="replace")
        return compiled.read_bytes(), parse_compiler_log(output)


_ROW = re.compile(r"^([A-Z][A-Z0-9_]+)\s+(\d+)\s+(\S.*?)\s*$")


def parse_compiler_log(text: str) -> dict:
    """Reads ``edgetpu_compiler -s`` output (and/or its ``.log`` file).

    The compiler prints "Number of operations that will run on Edge TPU/CPU" only when
    some ops stay on the CPU; otherwise the per-operator table (or, without it, the total)
    tells that everything is mapped.
    """
    version = _search(r"Edge TPU Compiler version\s+(\S+)", text)
    total = _search(r"Total number of operations:\s*(\d+)", text)
    on_tpu = _search(r"Number of operations that will run on Edge TPU:\s*(\d+)", text)
    on_cpu = _search(r"Number of operations that will run on CPU:\s*(\d+)", text)
    rows = _operator_rows(text)
    mapped = sum(count for _, count, status in rows if status.startswith("Mapped to Edge TPU"))
    cpu_ops: Counter[tuple[str, str]] = Counter()
    for name, count, status in rows:
        if not status.startswith("Mapped to Edge TPU"):
            cpu_ops[(name, status)] += count
    if on_tpu is None and rows:
        on_tpu, on_cpu = mapped, sum(cpu_ops.values())
    elif on_tpu is None and total is not None:
        on_tpu, on_cpu = int(total), 0
    return {
        "compiler_version": version or "unknown",
        "ops_on_tpu": int(on_tpu) if on_tpu is not None else None,
        "ops_on_cpu": int(on_cpu) if on_cpu is not None else None,
        "ops_total": int(total) if total is not None else None,
        "cpu_ops": [{"op": name, "count": count, "status": status} for (name, status), count in cpu_ops.items()],
    }


def _search(pattern: str, text: str):
    match = re.search(pattern, text)
    return match.group(1) if match else None


def _operator_rows(text: str) -> list[tuple[str, int, str]]:
    # The table appears in stdout (-s) and again in the .log file; read only its first copy.
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"^Operator\s+Count\s+Status", line)]
    if not starts:
        return []
    rows = []
    for line in lines[starts[0] + 1:]:
        if not line.strip():
            if rows:
                break
            continue
        match = _ROW.match(line.strip())
        if not match:
            break
        rows.append((match.group(1), int(match.group(2)), match.group(3)))
    return rows
