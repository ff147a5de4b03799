"""Builds small run folders like ``training.fit`` writes, for the converter's tests.

``write_run_folder`` needs no TensorFlow (it can write a placeholder ``model.keras`` for
tests that fail before the model is loaded); ``train_tiny_model`` trains the real tiny CNN.

Usage:
    from tests.converter_run_factory import write_run_folder
    run = write_run_folder(tmp_path, model=train_tiny_model())
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from tests.conftest import TINY_LABELS, TINY_SIZE, write_class_folders

PER_CLASS = 8
TRAIN, VAL = 5, 1  # per class; the remaining 2 per class are test photos


def split_entries(labels=TINY_LABELS, per_class: int = PER_CLASS) -> dict[str, list[str]]:
    splits = {"train": [], "val": [], "test": []}
    for label in labels:
        for i in range(per_class):
            name = "train" if i < TRAIN else "val" if i < TRAIN + VAL else "test"
            splits[name].append(f"{label}/{label}_{i}.jpg")
    return splits


def write_run_folder(root: Path, model=None, labels=TINY_LABELS, run_name: str = "run",
                     data_name: str = "photos") -> Path:
    """Writes ``root/<data_name>/`` photos and ``root/<run_name>/`` with labels, split, config, metrics.

    Args:
        model: a Keras model to save as ``model.keras``; ``None`` writes a placeholder file.

    Returns:
        The run folder (its split.json names the data folder relatively, as ``data_name``).
    """
    write_class_folders(root / data_name, labels=labels, per_class=PER_CLASS)
    run = root / run_name
    run.mkdir(parents=True)
    if model is None:
        # A zip, as a .keras file is, holding no model: for tests that stop before loading it.
        with zipfile.ZipFile(run / "model.keras", "w") as placeholder:
            placeholder.writestr("placeholder.txt", "tests that stop before loading the model")
    else:
        model.save(run / "model.keras")
    (run / "labels.txt").write_text("\n".join(labels) + "\n")
    splits = split_entries(labels)
    # training.fit always records each file's label (after label mapping) beside the lists.
    file_labels = {name: name.split("/", 1)[0] for names in splits.values() for name in names}
    (run / "split.json").write_text(json.dumps({"data": data_name, "splits": splits, "labels": file_labels}))
    (run / "config.yaml").write_text(f"backbone: tiny_cnn\nimage_size: {TINY_SIZE}\ndata: {data_name}\n")
    (run / "metrics.json").write_text(json.dumps({"accuracy": 1.0, "macro_f1": 1.0, "micro_f1": 1.0}))
    return run


def train_tiny_model(num_classes: int = len(TINY_LABELS), size: int = TINY_SIZE):
    """The tiny raw-RGB CNN of ``tests.model_factory``, trained a few quick steps on colour photos."""
    import keras

    from tests.model_factory import colour_samples, tiny_keras_model

    keras.utils.set_random_seed(0)
    model = tiny_keras_model(num_classes, size)
    images, targets = colour_samples(num_classes, size, per_class=8)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(images, targets, epochs=8, batch_size=24, verbose=0)
    return model
