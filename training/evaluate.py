"""Re-evaluate a saved run: its own test split, or every image of another class-folder dataset.

Writes ``eval-metrics.json``, ``eval-confusion_matrix.png`` and ``eval-report.md`` into the run
folder (or ``--out``), so the run's original figures are never overwritten. ``--split val``
scores the run's validation list instead (to choose settings there, never on test); ``--views``
averages the probabilities of several views of each photo, as the bin's ``model.views`` does.

Usage:
    python -m training.evaluate runs/trashnet-lite0
    python -m training.evaluate runs/trashnet-lite0 --split val --views original,mirrored,flipped
    python -m training.evaluate runs/trashnet-lite0 --data my_bin_photos/ --out runs/trashnet-lite0/on-my-bin
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from training.errors import DataError, TrainingError, first_line
from training.options import file_in_the_way, positive_int


def load_run(run_dir: Path):
    """The run's model, labels, config and split; raises TrainingError when something is missing."""
    import yaml

    for name in ("model.keras", "labels.txt", "config.yaml", "split.json"):
        if not (run_dir / name).is_file():
            raise TrainingError(f"{run_dir}: not a run folder ({name} missing)")
    import keras
    import keras_hub  # noqa: F401  registers keras-hub layers for deserialisation

    import training.losses  # noqa: F401  registers the focal loss
    import training.schedules  # noqa: F401

    from edge.bundle import normal_label

    def read(name: str, parse):
        try:
            # utf-8-sig: a file saved by a Windows editor starts with a BOM (the converter reads it so too).
            return parse((run_dir / name).read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
            raise TrainingError(f"{run_dir / name}: a damaged run file ({first_line(err)})") from None

    # In NFC like the labels training gives data folders now (a run from before may hold a decomposed "ü").
    labels = read("labels.txt", lambda text: [normal_label(line.strip()) for line in text.splitlines() if line.strip()])
    config = read("config.yaml", yaml.safe_load)
    split = read("split.json", json.loads)
    if not isinstance(config, dict) or not isinstance(split, dict) or not isinstance(split.get("splits"), dict):
        raise TrainingError(f"{run_dir}: config.yaml or split.json is not what training.fit writes")
    if not labels or len(set(labels)) != len(labels):
        raise TrainingError(f"{run_dir}: labels.txt must name each class once (it names {', '.join(labels) or 'none'})")
    try:
        model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    except Exception as err:  # noqa: BLE001 -- Keras says "File not found" for a truncated file, among others
        import zipfile

        why = "truncated or corrupt" if not zipfile.is_zipfile(run_dir / "model.keras") else first_line(err)
        raise TrainingError(f"{run_dir / 'model.keras'}: not a loadable Keras model ({why})") from None
    if int(model.output_shape[-1]) != len(labels):
        raise TrainingError(f"{run_dir}: the model has {model.output_shape[-1]} outputs but labels.txt names "
                            f"{len(labels)} classes")
    return model, labels, config, split


def evaluation_items(run_dir: Path, split: dict, labels: list[str], data: str | None, label_map: str | None = None,
                     explicit_map: bool = False, split_name: str = "test"):
    """(root, items, skipped): the run's ``split_name`` list, or all images of ``data`` with ``label_map``
    applied (the run's own map by default; its labels must be among the run's) and the unreadable
    files skipped there."""
    from training.data import discover, load_label_map
    from training.split import first_names

    if data:
        dataset = discover(data, label_map=load_label_map(label_map), verify=True)
        if dataset.unreadable:
            print(f"skipped {len(dataset.unreadable)} unreadable or corrupt files: {first_names(dataset.unreadable)}",
                  file=sys.stderr)
        for key in dataset.unused_map_keys if explicit_map else ():  # the run's own map may name other folders
            print(f"warning: label map: {key!r} names no folder of {data}", file=sys.stderr)
        unknown = sorted({label for _, label in dataset.items} - set(labels))
        if unknown:
            # A label map renames the data's folders, not the run's labels: its targets must be those labels.
            hint = "the label map must map folders onto them" if label_map else "a --label-map can map folders onto them"
            raise DataError(f"{data}: classes {', '.join(unknown)} are not among the run's labels "
                            f"({', '.join(labels)}); {hint}")
        return dataset.root, dataset.items, dataset.unreadable
    # Its absolute form, then as given to training.fit (relative to where that ran), then beside the run
    # folder, then where $SMARTBIN_DATA says it is now (a data folder that moved).
    candidates = [Path(split.get("data_resolved") or split["data"]), Path(split["data"]), run_dir.parent / split["data"]]
    if os.environ.get("SMARTBIN_DATA"):
        candidates.append(Path(os.environ["SMARTBIN_DATA"]))
    root = next((folder for folder in candidates if folder.is_dir()), None)
    if root is None:
        raise DataError(f"{split['data']}: the run's data folder is not here: set SMARTBIN_DATA to where it is "
                        f"now to score the run's own {split_name} list (--data scores every photo of a folder)")
    from tqdm import tqdm

    from edge.bundle import normal_label
    from training.data import is_readable
    from training.split import first_names

    label_of = split.get("labels", {})
    items = [(rel, normal_label(label_of.get(rel, rel.split("/")[0]))) for rel in split["splits"][split_name]]
    if not items:
        raise DataError(f"{run_dir}: the run's {split_name} list is empty")
    unknown = sorted({label for _, label in items} - set(labels))
    if unknown:  # labels.txt edited by hand, or another run's split.json
        raise DataError(f"{run_dir}: split.json has classes {', '.join(unknown)} that labels.txt does not name")
    # Checked now, not found by TensorFlow halfway through the predictions: gone since training, or damaged.
    unreadable = [rel for rel, _ in tqdm(items, desc=f"checking the {split_name} photos", unit="photo",
                                         file=sys.stderr, mininterval=10) if not is_readable(root / rel)]
    if unreadable:
        print(f"skipped {len(unreadable)} missing, unreadable or corrupt files: {first_names(unreadable)}",
              file=sys.stderr)
    if len(unreadable) == len(items):
        raise DataError(f"{root}: none of the {split_name} list's {len(items)} photos can be read")
    skipped = set(unreadable)
    return root, [item for item in items if item[0] not in skipped], unreadable


def parse_views(text: str) -> list[str]:
    """``original,mirrored`` -> the view names, each one of ``edge.imaging.VIEWS`` (an argparse type)."""
    from edge import imaging

    try:
        return imaging.parse_views(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run folder written by python -m training.fit")
    parser.add_argument("--data", help="evaluate on every image of this class-folder dataset instead")
    parser.add_argument("--label-map", help="YAML {source_class: bin_class} for --data (default: the run's own)")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="the run's list to score without --data (default: test; choose settings on val)")
    parser.add_argument("--views", type=parse_views, default=["original"], metavar="V,V,...",
                        help="views of each photo whose probabilities are averaged: original, mirrored, flipped, "
                             "turned (default: original; the bin's default is original,mirrored,flipped)")
    parser.add_argument("--out", help="folder for the evaluation files (default: the run folder)")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    args = parser.parse_args(argv)
    if args.data and args.split != "test":
        parser.error("--split chooses one of the run's own lists; with --data every image of that folder is scored")
    if args.label_map and not args.data:  # the run's own lists carry the labels it trained with
        parser.error("--label-map maps the folders of --data; the run's own lists keep the labels it trained with")
    run_dir = Path(args.run_dir)
    try:
        out = Path(args.out) if args.out else run_dir
        blocking = file_in_the_way(out)
        if blocking is not None:  # found now, not after every photo was scored
            raise TrainingError(f"--out {out}: {blocking} is a file (choose a folder)")
        model, labels, config, split = load_run(run_dir)
        from training.data import LABEL_MAP_FILE

        own_map = run_dir / LABEL_MAP_FILE  # training.fit's copy of the run's --label-map
        label_map = args.label_map or (str(own_map) if own_map.is_file() else config.get("label_map"))
        root, items, skipped = evaluation_items(run_dir, split, labels, args.data, label_map,
                                                explicit_map=bool(args.label_map), split_name=args.split)
        from training.callbacks import predict
        from training.metrics import classification_metrics
        from training.pipeline import make_dataset
        from training.report import write_evaluation

        # The model's own input size, as the converter takes it: config.yaml is only a record of the run.
        size = model.input_shape[1] or config.get("image_size")
        dataset = make_dataset(root, items, labels, int(size), args.batch_size, cache=False)
        index = {label: i for i, label in enumerate(labels)}
        metrics = classification_metrics([index[label] for _, label in items],
                                         predict(model, dataset, "evaluating", views=args.views), labels)
        metrics["data"] = str(args.data or split["data"])
        metrics["split"] = "all" if args.data else args.split  # every image of --data, or one of the run's lists
        metrics["views"] = args.views
        metrics["skipped"] = skipped
        # A final fit trained on its val photos: scoring them measures nothing a choice could rest on.
        metrics["seen_in_training"] = bool(config.get("final_fit")) and not args.data and args.split == "val"
        if metrics["seen_in_training"]:
            print(f"warning: {run_dir} is a final fit, which trained on its val photos: these figures score "
                  f"photos it has seen", file=sys.stderr)
        out.mkdir(parents=True, exist_ok=True)
        what = "every readable image of" if args.data else f"the {args.split} split of"
        notes = [f"Run `{run_dir}` on {what} `{metrics['data']}` ({metrics['n']} images)."]
        if metrics["seen_in_training"]:
            notes.append("The run is a final fit: it trained on these val photos, so these are training figures.")
        if args.views != ["original"]:
            notes.append(f"Probabilities averaged over the views {', '.join(args.views)} of each photo.")
        if skipped:
            from training.split import first_names

            notes.append(f"Skipped {len(skipped)} unreadable or corrupt files: {first_names(skipped)}.")
        write_evaluation(out, metrics, "Re-evaluation", notes, prefix="eval-",
                         split_name=Path(args.data).name if args.data else args.split)
        print(json.dumps({k: metrics[k] for k in ("accuracy", "macro_f1", "micro_f1", "n")}))
        return 0
    except TrainingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
