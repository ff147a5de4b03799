"""Starting a run from a finished run's weights (``init_from`` / ``--init-from``).

The earlier run must be of the same model (backbone, image size, dropout, classes) and must not
have trained on this run's val or test photos, or this run's figures would be inflated. Everything
that can be checked is checked before TensorFlow loads, so a wrong folder fails in a second.

Usage:
    check_finished(config)                        # after the config is resolved
    check_against(config, labels, split)          # after the data scan and split
    load_weights(model, Path(config.init_from))   # once the model is built
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from training.config import TrainConfig
from training.errors import ModelError, first_line

# What a run folder holds once training.fit has finished it (model.keras is rewritten during a run).
FINISHED_FILES = ("model.keras", "config.yaml", "labels.txt", "split.json", "metrics.json")
SAME_MODEL_KEYS = ("backbone", "image_size", "dropout")


def check_finished(config: TrainConfig) -> None:
    """Refuses a folder that is no finished run, or a run of another model."""
    run = Path(config.init_from)
    missing = [name for name in FINISHED_FILES if not (run / name).is_file()]
    if missing:
        raise ModelError(f"--init-from {run}: not a finished run folder ({', '.join(missing)} missing; "
                         f"a run still training has no metrics.json yet)")
    if not zipfile.is_zipfile(run / "model.keras"):
        raise ModelError(f"--init-from {run}: model.keras is not a saved Keras model (damaged or cut short)")
    earlier = TrainConfig.from_yaml(run / "config.yaml")
    for key in SAME_MODEL_KEYS:
        if getattr(earlier, key) != getattr(config, key):
            raise ModelError(f"--init-from {run}: its {key} is {getattr(earlier, key)!r}, this run's "
                             f"{getattr(config, key)!r}; start from a run of the same model")


def check_against(config: TrainConfig, labels: list[str], split: dict[str, list[tuple[str, str]]]) -> None:
    """Refuses an earlier run with other classes, or one that trained on this run's val or test photos."""
    from edge.bundle import normal_label

    run = Path(config.init_from)
    try:
        text = (run / "labels.txt").read_text(encoding="utf-8")
        earlier_split = json.loads((run / "split.json").read_text(encoding="utf-8"))
        trained_on = set(earlier_split["splits"]["train"])
        # A final fit learnt from its val photos too.
        also_val = set(earlier_split["splits"]["val"]) if TrainConfig.from_yaml(run / "config.yaml").final_fit else set()
        trained_on |= also_val
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise ModelError(f"--init-from {run}: cannot read its labels.txt or split.json ({err})") from None
    earlier_labels = [normal_label(line.strip()) for line in text.splitlines() if line.strip()]
    if earlier_labels != list(labels):
        raise ModelError(f"--init-from {run}: its classes {', '.join(earlier_labels)} are not this run's "
                         f"{', '.join(labels)} (in this order)")
    # A final fit trains on its own val photos anyway: only its test photos must be unseen.
    held_out = [rel for name in (("test",) if config.final_fit else ("val", "test")) for rel, _ in split[name]]
    seen = [rel for rel in held_out if rel in trained_on]
    if seen and set(seen) <= also_val and not config.final_fit:
        raise ModelError(f"--init-from {run}: it is a final fit, which trained on its val photos too, and "
                         f"{len(seen)} of them are in this run's val/test (e.g. {seen[0]}); start from the "
                         f"val-chosen run it repeats, or make this run a final fit too (--final-fit)")
    if seen:
        what = "test" if config.final_fit else "val/test"
        raise ModelError(f"--init-from {run}: it trained on {len(seen)} of this run's {what} photos "
                         f"(e.g. {seen[0]}); use its split (--split-file {run / 'split.json'})")


def load_weights(model, run: Path) -> None:
    """Loads the earlier run's weights into the freshly built ``model``."""
    try:
        model.load_weights(run / "model.keras")
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise ModelError(f"--init-from {run}: its model.keras does not fit this model ({first_line(err)})") from None


def earlier_val_macro_f1(run: Path) -> float | None:
    """The earlier run's best val macro-F1, as its metrics.json records it (None if unreadable)."""
    try:
        value = json.loads((run / "metrics.json").read_text(encoding="utf-8")).get("val_macro_f1")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None
