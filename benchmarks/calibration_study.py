"""How the INT8 calibration sample changes the quantisation loss, measured on the VAL split.

Calibration settings are chosen on val, never on test. This study converts one run with several
calibration sample sizes (and seeds, and optionally the views the bin shows: each calibration
photo also mirrored and flipped) and compares each INT8 model with the float model on ``val``
only, one view each, as the converter's gate does.

Usage:
    python benchmarks/calibration_study.py runs/try-cut-block4c --data ../shared/data/trashnet \
        --samples 100,300,1000 --seeds 0,1
    python benchmarks/calibration_study.py runs/mine --data DATA --samples 300 \
        --calibration-views original,mirrored,flipped
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import cpu_model  # noqa: E402  (benchmarks run as scripts from this folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--data", required=True)
    parser.add_argument("--samples", default="100,300,1000")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--calibration-views", default="original",
                        help="views of each calibration photo given to the quantiser (edge.imaging.VIEWS; "
                             "default: original): the bin shows the model mirrored and flipped frames too")
    args = parser.parse_args(argv)

    from converter import keras_model, quantize
    from converter.dataset import load_images, stratified_sample
    from converter.litert import LiteModel
    from converter.runfolder import load_run
    from converter.verify import compare
    from edge.bundle import InputSpec

    from edge import imaging

    views = imaging.parse_views(args.calibration_views)
    run = load_run(args.run_dir)
    data_dir = Path(args.data)
    model = keras_model.load_keras_model(run.model_path, run.labels)
    size = keras_model.input_size(model)
    pixels = InputSpec(height=size, width=size)
    val_images, targets, _ = load_images(run.items("val", data_dir), pixels, desc="val photos")
    float_probabilities = keras_model.predict(model, val_images)
    train_items = run.items("train", data_dir)

    print(f"# {args.run_dir}, val split ({len(targets)} photos); {date.today()}, "
          f"{cpu_model()} ({os.cpu_count()} cores); calibration views: {', '.join(views)}")
    print("| calibration photos | seed | float acc | INT8 acc | INT8 macro-F1 | agreement | drop (points) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for count in (int(n) for n in args.samples.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            sample = stratified_sample(train_items, count, seed)
            calibration, _, _ = load_images(sample, pixels, desc=f"calibration {count}")
            calibration = np.concatenate([np.stack([imaging.view(image, name) for image in calibration])
                                          for name in views])
            lite = LiteModel(quantize.convert(model, "int8", calibration), threads=2)
            metrics = compare(targets, float_probabilities, lite.predict(val_images, progress=False),
                              run.labels, split="val")
            print(f"| {len(calibration)} | {seed} | {metrics['float']['accuracy']:.4f} | "
                  f"{metrics['model']['accuracy']:.4f} | {metrics['model']['macro_f1']:.4f} | "
                  f"{metrics['agreement']:.4f} | {metrics['drop_points']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
