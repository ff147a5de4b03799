"""Edge TPU support: the op pre-check and the compiler log parser (no compiler needed)."""

from __future__ import annotations

import pytest

from converter.edgetpu import parse_compiler_log, precheck

# What `edgetpu_compiler -s` prints for a MobileNetV3-style model whose hard-swish stays on the CPU.
PARTLY_MAPPED = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 912 ms.

Input model: /tmp/smartbin-edgetpu-x/model.tflite
Input size: 1.71MiB
Output model: /tmp/smartbin-edgetpu-x/model_edgetpu.tflite
Output size: 1.93MiB
On-chip memory used for caching model parameters: 1.02MiB
On-chip memory remaining for caching model parameters: 6.53MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 120
Operation log: /tmp/smartbin-edgetpu-x/model_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 3
Number of operations that will run on CPU: 117

Operator                       Count      Status

QUANTIZE                       1          Mapped to Edge TPU
CONV_2D                        2          Mapped to Edge TPU
HARD_SWISH                     1          Operation not supported
CONV_2D                        40         More than one subgraph is not supported
DEPTHWISE_CONV_2D              11         More than one subgraph is not supported
HARD_SWISH                     18         More than one subgraph is not supported
ADD                            6          More than one subgraph is not supported
MUL                            20         More than one subgraph is not supported
MEAN                           9          More than one subgraph is not supported
FULLY_CONNECTED                1          More than one subgraph is not supported
SOFTMAX                        1          More than one subgraph is not supported
QUANTIZE                       10         More than one subgraph is not supported
Compilation child process completed within timeout period.
Compilation succeeded!
"""

# An EfficientNet-Lite0 classifier maps completely: the compiler then omits the per-device counts.
FULLY_MAPPED = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 1402 ms.

Input model: model.tflite
Input size: 3.97MiB
Output model: model_edgetpu.tflite
Output size: 4.31MiB
On-chip memory used for caching model parameters: 3.88MiB
On-chip memory remaining for caching model parameters: 3.67MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 66
Operation log: model_edgetpu.log
See the operation log file for individual operation details.
Compilation child process completed within timeout period.
Compilation succeeded!
"""

LOG_FILE_ONLY = """\
Edge TPU Compiler version 16.0.384591198
Input: model.tflite
Output: model_edgetpu.tflite

Operator                       Count      Status

QUANTIZE                       2          Mapped to Edge TPU
CONV_2D                        33         Mapped to Edge TPU
DEPTHWISE_CONV_2D              16         Mapped to Edge TPU
ADD                            9          Mapped to Edge TPU
MEAN                           1          Mapped to Edge TPU
FULLY_CONNECTED                1          Mapped to Edge TPU
SOFTMAX                        1          Mapped to Edge TPU
DEQUANTIZE                     1          Operation is working on an unsupported data type
"""


class TestCompilerLog:
    def test_partly_mapped_model(self):
        info = parse_compiler_log(PARTLY_MAPPED)
        assert info["compiler_version"] == "16.0.384591198"
        assert (info["ops_on_tpu"], info["ops_on_cpu"], info["ops_total"]) == (3, 117, 120)
        cpu = {(row["op"], row["status"]): row["count"] for row in info["cpu_ops"]}
        assert cpu[("HARD_SWISH", "Operation not supported")] == 1
        assert cpu[("HARD_SWISH", "More than one subgraph is not supported")] == 18
        assert sum(cpu.values()) == 117

    def test_fully_mapped_model_without_per_device_counts(self):
        info = parse_compiler_log(FULLY_MAPPED)
        assert (info["ops_on_tpu"], info["ops_on_cpu"], info["ops_total"]) == (66, 0, 66)
        assert info["cpu_ops"] == []

    def test_counts_from_the_operator_table_alone(self):
        info = parse_compiler_log(LOG_FILE_ONLY)
        assert (info["ops_on_tpu"], info["ops_on_cpu"]) == (63, 1)
        assert info["cpu_ops"] == [{"op": "DEQUANTIZE", "count": 1,
                                    "status": "Operation is working on an unsupported data type"}]

    def test_stdout_and_log_file_together_count_the_table_once(self):
        info = parse_compiler_log(PARTLY_MAPPED + "\n" + PARTLY_MAPPED.split("\n\n", 1)[1])
        assert (info["ops_on_tpu"], info["ops_on_cpu"]) == (3, 117)
        assert sum(row["count"] for row in info["cpu_ops"]) == 117

    def test_garbage_gives_unknowns_not_a_crash(self):
        info = parse_compiler_log("segmentation fault\n")
        assert info["compiler_version"] == "unknown"
        assert info["ops_on_tpu"] is None and info["ops_on_cpu"] is None


def op(name, *types):
    return {"op_name": name, "operand_types": list(types), "result_types": list(types)}


class TestPrecheck:
    def test_full_integer_efficientnet_lite_ops_pass(self):
        ops = [op("QUANTIZE", "uint8", "int8"), op("CONV_2D", "int8", "int32"), op("DEPTHWISE_CONV_2D", "int8"),
               op("ADD", "int8"), op("MEAN", "int8", "int32"), op("FULLY_CONNECTED", "int8", "int32"),
               op("SOFTMAX", "int8")]
        assert precheck(ops) == []

    def test_names_hard_swish_dequantize_and_float_ops(self):
        ops = [op("CONV_2D", "int8"), op("HARD_SWISH", "int8"), op("HARD_SWISH", "int8"),
               op("DEQUANTIZE", "int8", "float32"), op("CONV_2D", "float32")]
        assert precheck(ops) == [
            "HARD_SWISH x2: not an Edge TPU operation",
            "DEQUANTIZE x1: not an Edge TPU operation",
            "CONV_2D x1: float tensors (the Edge TPU runs only 8-bit quantised ops)",
        ]

    @pytest.mark.slow
    def test_real_int8_bundle_is_all_edge_tpu_ops(self, tiny_bundle):
        from converter.litert import list_ops

        ops = list_ops(tiny_bundle / "model.tflite")
        assert [o["op_name"] for o in ops][:2] == ["QUANTIZE", "CONV_2D"]
        assert "DELEGATE" not in {o["op_name"] for o in ops}
        assert precheck(ops) == []
