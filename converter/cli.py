"""Command line of ``python -m converter``: ``RUN_DIR --out BUNDLE`` converts, ``bench BUNDLE`` times.

Exit codes: 0 done, 1 the accuracy gate refused the model, 2 bad input (one ``error:`` line).

Usage:
    python -m converter runs/efflite0 --out models/trashnet-efflite0-int8
    python -m converter bench models/trashnet-efflite0-int8 --threads 1,2,4 --json
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from converter import ConverterError, GateError
from edge.config_schema import MAX_THREADS
from edge.errors import BundleError

EXIT_GATE = 1
EXIT_BAD_INPUT = 2

CONVERT_EPILOG = """\
examples:
  python -m converter runs/efflite0 --out models/trashnet-efflite0-int8
  python -m converter runs/efflite0 --quantize float16 --out /tmp/efflite0-f16
  python -m converter runs/efflite0 --out models/efflite0-int8 --edgetpu
  python -m converter bench models/trashnet-efflite0-int8 --threads 1,2,4

The INT8 model takes raw uint8 RGB (scale 1, zero point 0) and outputs uint8 probabilities.
Calibration photos come from the run's train split only; the gate evaluates both the float
Keras model and the converted model on the val split (every choice is made on val) and
refuses (exit 1, no bundle) when accuracy drops by more than --max-drop points, or when the
converted model loses more photos than it gains and McNemar's exact test puts that below
--significance (a loss too one-sided to be chance, even within --max-drop; a drop of a few close
calls going both ways is noise and passes). A model that
passes is then measured on the test split for the manifest. The float32 .tflite of the run is
always written to RUN_DIR/model_float32.tflite for `bench`.
"""


class _Parser(argparse.ArgumentParser):
    # argparse exits with 2 already; this keeps its message to one line like the converter's own errors.
    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see --help)\n")


def _checked(convert, is_ok, problem: str):
    """An argparse ``type`` that converts, then checks: one line naming the bad value either way."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if convert is int else 'a number'}") from None
        if not is_ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} {problem}")
        return value
    return parse


_positive_int = _checked(int, lambda value: value >= 1, "must be at least 1")
_non_negative_int = _checked(int, lambda value: value >= 0, "must be 0 or more")
# As model.threads: LiteRT itself takes any count, and a huge one crashes the process.
_thread_count = _checked(int, lambda value: 1 <= value <= MAX_THREADS, f"must be between 1 and {MAX_THREADS}")
# drop > nan is always False: a NaN --max-drop would let the gate pass everything.
_drop_points = _checked(float, lambda value: math.isfinite(value) and value >= 0, "must be a finite number of 0 or more")
_probability = _checked(float, lambda value: 0 <= value <= 1, "must be between 0 and 1")


def _bundle_name(text: str) -> str:
    # A name, not a path: "--name ../x" or "a/b" would put the bundle outside models/ (use --out for that).
    if not text.strip() or text in (".", "..") or "/" in text or "\\" in text or text.startswith("."):
        raise argparse.ArgumentTypeError(f"{text!r} is not a plain folder name (use --out for a path)")
    return text


def _thread_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1 or max(values) > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"{text!r}: thread counts must be between 1 and {MAX_THREADS}")
    return values


def convert_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m converter",
        description="Convert a training run folder into a verified LiteRT model bundle "
                    "(or `python -m converter bench BUNDLE` to time one).",
        epilog=CONVERT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by `python -m training.fit`")
    parser.add_argument("--out", metavar="BUNDLE_DIR",
                        help="bundle folder to write (default: models/NAME); replaced atomically")
    parser.add_argument("--name", type=_bundle_name,
                        help="bundle name when --out is not given (default: <run folder>-<mode>)")
    parser.add_argument("--quantize", default="int8", choices=("int8", "float16", "dynamic", "float32"),
                        help="int8 = full-integer, uint8 in/out (default); float16 weights; "
                             "dynamic = int8 weights, float activations; float32 = no quantisation")
    parser.add_argument("--calibration-samples", type=_positive_int, default=300, metavar="N",
                        help="train photos for INT8 calibration, stratified by class (default: 300)")
    parser.add_argument("--max-drop", type=_drop_points, default=1.0, metavar="POINTS",
                        help="largest allowed val-accuracy drop against the float model, in points (default: 1.0)")
    parser.add_argument("--significance", type=_probability, default=0.05, metavar="P",
                        help="refuse a one-sided loss (more val photos lost than gained) whose McNemar "
                             "exact p-value is below P, even within --max-drop (default: 0.05; 0 turns it off)")
    parser.add_argument("--data", metavar="DIR",
                        help="data folder of the run's split (default: the folder training resolved, "
                             "recorded in split.json, then its \"data\" as given, then $SMARTBIN_DATA)")
    parser.add_argument("--edgetpu", action="store_true",
                        help="pre-check Edge TPU ops and compile model_edgetpu.tflite when edgetpu_compiler is on PATH")
    parser.add_argument("--keep-float", action="store_true",
                        help="also write the float32 .tflite beside the bundle as <bundle>-float32.tflite")
    parser.add_argument("--threads", type=_thread_count, default=2,
                        help=f"LiteRT threads for evaluation, 1 to {MAX_THREADS} (default: 2)")
    parser.add_argument("--seed", type=_non_negative_int, default=0,
                        help="seed of the calibration sample (default: 0)")
    return parser


def bench_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m converter bench",
        description="Time LiteRT invoke() of a bundle (or a .tflite file) against the float32 model of "
                    "the same run, side by side in one process.",
    )
    parser.add_argument("target", metavar="BUNDLE", help="bundle folder or .tflite file")
    parser.add_argument("--threads", type=_thread_list, default=[1, 2, 4], metavar="1,2,4",
                        help=f"thread counts to time, each 1 to {MAX_THREADS} (default: 1,2,4)")
    parser.add_argument("--runs", type=_positive_int, default=50, metavar="N", help="timed invokes (default: 50)")
    parser.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed invokes first (default: 5)")
    parser.add_argument("--float", dest="reference", metavar="TFLITE",
                        help="float32 .tflite to compare with (default: found via manifest.source_run)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    bench = bool(argv) and argv[0] == "bench"
    try:
        args = bench_parser().parse_args(argv[1:]) if bench else convert_parser().parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already printed
        return stop.code if isinstance(stop.code, int) else EXIT_BAD_INPUT
    try:
        return _bench(args) if bench else _convert(args)
    except ConverterError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except GateError as err:
        print(f"refused: {err}", file=sys.stderr)
        return EXIT_GATE
    except (OSError, BundleError) as err:  # writing the bundle or reading a model file
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _convert(args: argparse.Namespace) -> int:
    from converter.build import ConvertOptions, convert_run

    options = ConvertOptions(
        run_dir=args.run_dir, out=args.out, quantize=args.quantize,
        calibration_samples=args.calibration_samples, max_drop=args.max_drop,
        significance=args.significance, edgetpu=args.edgetpu,
        data=args.data, name=args.name, keep_float=args.keep_float, threads=args.threads, seed=args.seed,
    )
    bundle = convert_run(options)
    print(bundle.path)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from converter.bench import bench, format_table

    result = bench(args.target, threads=args.threads, runs=args.runs, warmup=args.warmup, reference=args.reference)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0
