"""Fine-tune an ImageNet backbone on class-folder photos and evaluate it on a held-out test split.

Phase 1 trains a new softmax head on the frozen backbone; phase 2 unfreezes the backbone
(or its top N layers) at a lower learning rate. The best epoch by validation macro-F1 is kept;
the test split is only used once, at the end. A final fit (``--final-fit``) trains a recipe already
chosen on val once more on train + val together and keeps its last epoch.

Usage:
    python -m training.fit --data ../shared/data/trashnet --split-file ../shared/data/trashnet-split.json \
        --weights ../shared/weights/efficientnet_lite0_imagenet --out runs/lite0
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from training.config import TrainConfig
from training.errors import DataError, ModelError, TrainingError
from training.options import check_out_folder, parse_seeds, positive_int

RUN_FILES = ("model.keras", "labels.txt", "split.json", "config.yaml", "metrics.json", "history.csv",
             "confusion_matrix.png", "curves.png", "report.md")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.fit",
        description="Fine-tune a backbone on ROOT/<class>/<image> photos and write a run folder "
                    f"({', '.join(RUN_FILES)}).",
        epilog="Settings come from defaults, then --config YAML, then these options. "
               "Example: python -m training.fit --data photos/ --weights none --image-size 96 --out runs/try",
    )
    parser.add_argument("--data", help="dataset folder: DATA/<class>/<image> (env SMARTBIN_DATA)")
    parser.add_argument("--out", required=True, help="run folder to write (created; must be empty or new)")
    parser.add_argument("--config", help="YAML file with any TrainConfig keys (see training/config.py)")
    parser.add_argument("--split-file", help="JSON with train/val/test lists (paths relative to --data); "
                                             "default: a stratified, seeded split")
    parser.add_argument("--unlisted", choices=("ignore", "train"),
                        help="photos of --data the split file does not name (e.g. your bin's own, added to "
                             "the class folders): left out (ignore, the default) or added to train; val and "
                             "test stay as the file says")
    parser.add_argument("--labels", help="comma-separated class order (default: sorted folder names)")
    parser.add_argument("--label-map", help="YAML mapping source_folder: class (merges or renames classes)")
    parser.add_argument("--backbone", help="efficientnet_lite0 (default), efficientnet_lite1, "
                                           "efficientnet_lite2 (these two need --weights PRESET_FOLDER or none), "
                                           "mobilenet_v3_small, mobilenet_v3_large, efficientnet_b0, resnet50")
    parser.add_argument("--weights", help="keras-hub preset name, local preset folder, 'imagenet', "
                                          "'none' (random init) or 'default'")
    parser.add_argument("--image-size", type=int, help="square input size in pixels (default 224)")
    parser.add_argument("--head-epochs", type=int, help="phase 1 epochs (frozen backbone)")
    parser.add_argument("--finetune-epochs", type=int, help="phase 2 epochs (0 = linear head only)")
    parser.add_argument("--finetune-layers", type=int, help="unfreeze only the top N backbone layers (0 = all)")
    parser.add_argument("--cache-views", type=int, help="CPU speed-up: cache the frozen lower backbone for K "
                                                        "augmented views per image and train the top on them")
    parser.add_argument("--cache-cut", help="layer where the cached frozen part ends (default per backbone)")
    parser.add_argument("--init-from", help="a finished run folder: start from its model's weights (same "
                                            "backbone, image size, dropout and classes; it must not have "
                                            "trained on this run's val/test photos)")
    parser.add_argument("--final-fit", action=argparse.BooleanOptionalAction, default=None,
                        help="train on the train and val photos together and keep the last epoch (no early "
                             "stopping): for a recipe and epoch count already chosen on val")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--seeds", help="comma-separated seeds: repeat the run, report mean ± std")
    parser.add_argument("--max-train-steps", type=positive_int, help="cap steps per epoch (smoke tests)")
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    config = config.override(
        data=args.data or (None if config.data else os.environ.get("SMARTBIN_DATA")),
        split_file=args.split_file, unlisted=args.unlisted, label_map=args.label_map, backbone=args.backbone,
        weights=args.weights, image_size=args.image_size, head_epochs=args.head_epochs,
        finetune_epochs=args.finetune_epochs, finetune_layers=args.finetune_layers, batch_size=args.batch_size,
        seed=args.seed, cache_views=args.cache_views, cache_cut=args.cache_cut, init_from=args.init_from,
        final_fit=args.final_fit,
        labels=args.labels,  # "a, b,c": split and trimmed by the config, as in YAML
    )
    if not config.data:
        raise TrainingError("--data is required (or set SMARTBIN_DATA)")
    # Checked before TensorFlow is imported (8 s) and before any image is read, so a typo fails at once.
    if not Path(config.data).is_dir():
        found = "is a file, not a data folder" if Path(config.data).exists() else "data folder not found"
        raise TrainingError(f"{config.data}: {found}")
    weights = str(config.weights)
    if ("/" in weights or weights.startswith(".")) and not Path(weights).exists():
        # Keras applications (MobileNetV3, ResNet50) take a weights file, keras-hub models a preset folder.
        kind = "weights file" if weights.endswith(".h5") else "preset folder"
        raise ModelError(f"--weights {weights}: {kind} not found")
    if config.init_from:
        from training.init_run import check_finished

        check_finished(config)
    return config


def prepare_data(config: TrainConfig):
    """Dataset discovery (unreadable files listed and skipped) and the split.

    Returns:
        the dataset, the split, and the notes printed about how it was split (photos the split file
        does not name, an --unlisted without a split file), for report.md.
    """
    from training.data import discover, invalid_labels, load_label_map, one_class_problem
    from training.split import copies_across_splits, load_split, make_split, place_unlisted

    label_map = load_label_map(config.label_map)
    dataset = discover(config.data, labels=config.labels, label_map=label_map, verify=True)
    single = one_class_problem(config.data, dataset.labels, label_map)
    if single:
        raise DataError(single)
    invalid = invalid_labels(dataset.labels)
    if invalid:
        raise DataError(f"{config.data}: {', '.join(map(repr, invalid))}: not a class name a model can carry "
                        f"(spaces at either end, or a line break): rename the folder or map it with --label-map")
    from edge.imaging import MAX_DECODED_PIXELS

    for rel in dataset.unreadable:
        print(f"warning: skipping unreadable image {rel} (missing, corrupt, or over the bin's "
              f"{MAX_DECODED_PIXELS // 1_000_000} megapixels)", file=sys.stderr)
    if dataset.other_formats:
        from edge.imaging import other_format_summary

        print(f"warning: leaving out {other_format_summary(dataset.other_formats)} in formats training does "
              f"not read, e.g. {dataset.other_formats[0]} (convert them to JPEG or PNG)", file=sys.stderr)
    for key in dataset.unused_map_keys:  # "PET: plastic" beside a folder named pet/ would train a class "pet"
        print(f"warning: label map: {key!r} names no folder of {config.data}", file=sys.stderr)
    if config.split_file:
        split = load_split(config.split_file, dataset)
        split, notes = place_unlisted(split, dataset, config.unlisted)
    else:
        notes = ["warning: --unlisted has no effect without --split-file (every photo is in the generated "
                 "split)"] if config.unlisted == "train" else []
        split_seed = config.seed if config.split_seed is None else config.split_seed
        split = make_split(dataset, config.val_fraction, config.test_fraction, split_seed)
    for name in ("train", "val", "test"):
        if not split[name]:
            fraction = {"val": config.val_fraction, "test": config.test_fraction}.get(name)
            why = f"{name}_fraction is {fraction:g}" if fraction == 0 and not config.split_file else \
                "too few images?"
            raise TrainingError(f"split: the {name} list is empty ({why})")
    untrained = sorted(set(dataset.labels) - {label for _, label in split["train"]})
    if untrained:
        raise TrainingError(f"split: no training images for {', '.join(untrained)}")
    for line in notes:  # after the errors: a split that cannot train is one line
        print(line, file=sys.stderr)
    for name, use in (("val", "choosing the best epoch by val macro-F1 ignores them"),
                      ("test", "the test figures say nothing about them")):
        unseen = sorted(set(dataset.labels) - {label for _, label in split[name]})
        if unseen:
            print(f"warning: split: no {name} images for {', '.join(unseen)} ({use}; add photos)", file=sys.stderr)
    if config.split_file:
        for group in copies_across_splits(dataset.root, split):
            print(f"warning: identical files in different splits (a leak): {', '.join(group)}", file=sys.stderr)
    return dataset, split, notes


def train_one(config: TrainConfig, run_dir: Path, max_train_steps: int | None = None) -> dict:
    """Trains and evaluates one seeded run into ``run_dir``; returns the test metrics."""
    # The data scan and split come before TensorFlow is imported: a bad folder or split file fails in
    # a second. They draw their own seeded random numbers, untouched by Keras' global seed.
    scan_started = time.time()
    dataset, split, split_notes = prepare_data(config)
    if config.init_from:
        from training.init_run import check_against

        check_against(config, dataset.labels, split)
    scan_seconds = time.time() - scan_started
    import keras
    import tensorflow as tf

    from training.augment import Augmenter
    from training.callbacks import BestMacroF1, StopOnNaN, TqdmProgress, epoch_callbacks, predict
    from training.losses import FocalLoss, class_weights
    from training.metrics import classification_metrics
    from training.model import build_classifier, set_phase
    from training.pipeline import make_dataset
    from training.report import plot_curves, write_evaluation, write_history
    from training.schedules import make_optimizer, make_schedule

    started = time.time() - scan_seconds  # train_seconds: the scan and the training, not TensorFlow's import
    keras.utils.set_random_seed(config.seed)
    labels = dataset.labels

    # Built before any mixed-precision policy: augmentation must compute in float32 (float16 would
    # round pixels near 255 to steps of 0.25 and run colour maths in half precision on the CPU).
    keras.mixed_precision.set_global_policy("float32")  # also after an earlier seed's mixed run
    augmenter = Augmenter(config.augment, seed=config.seed)
    gpus = tf.config.list_physical_devices("GPU")
    if config.mixed_precision == "on" or (config.mixed_precision == "auto" and gpus):
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()

    # A final fit learns from the val photos too; its val figures are then scores on seen photos.
    trained = split["train"] + split["val"] if config.final_fit else split["train"]
    counts = [sum(1 for _, label in trained if label == name) for name in labels]
    weights = class_weights(counts, config.class_weights, config.effective_beta) \
        if config.class_weights != "none" else None
    index = {label: i for i, label in enumerate(labels)}
    common = dict(root=dataset.root, labels=labels, size=config.image_size, batch_size=config.batch_size,
                  cache=config.cache)
    train_ds = make_dataset(items=trained, training=True, augmenter=augmenter,
                            class_weights=weights if config.loss != "focal" else None, seed=config.seed, **common)
    val_ds = make_dataset(items=split["val"], **common)
    test_ds = make_dataset(items=split["test"], **common)
    if max_train_steps:
        train_ds = train_ds.take(max_train_steps)
    # Counted, not read from the dataset: skipping unreadable photos makes its length unknown to tf.data.
    batches = len(trained) // config.batch_size if len(trained) >= config.batch_size else 1
    steps = min(batches, max_train_steps) if max_train_steps else batches

    with strategy.scope():
        model, backbone = build_classifier(config.backbone, config.weights, config.image_size, len(labels),
                                           config.dropout)
        if config.init_from:
            from training.init_run import load_weights

            load_weights(model, Path(config.init_from))
            print(f"starting from the weights of {Path(config.init_from) / 'model.keras'}", file=sys.stderr)
    if config.loss == "focal":
        # The class weights as they are (their mean over the training samples is 1), not scaled to sum 1:
        # the loss keeps cross-entropy's scale, so clipnorm and SGD's step size mean the same.
        alpha = weights.tolist() if weights is not None else None
        loss = FocalLoss(alpha=alpha, gamma=config.focal_gamma, label_smoothing=config.label_smoothing)
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    val_targets = [index[label] for _, label in split["val"]]
    # Repeated and cut into epochs of `steps` batches: a pipeline that may skip photos has no known
    # length, and Keras then counted one empty step into each epoch's mean loss (too low by 1/steps).
    trainer, train_data, val_data, fit_steps = model, train_ds.repeat(), val_ds, steps
    if config.cache_views > 0:
        with strategy.scope():  # the head-on-features model trains the same (mirrored) variables
            trainer, train_data, val_data, steps = cached_training_data(config, model, backbone, train_ds, val_ds)
        fit_steps = None  # arrays of a known length
    # The run folder is written only now that the model and its data are built: a bad preset or
    # setting leaves no half-written folder that would refuse the corrected command.
    write_run_header(config, run_dir, labels, split)
    best = BestMacroF1(val_data, val_targets, labels, run_dir / "model.keras", to_save=model,
                       patience=0 if config.final_fit else config.early_stopping_patience, keep_last=config.final_fit)
    rows: list[dict] = []
    recorder = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: rows.append({"phase": best.phase, "epoch": epoch + 1,
                                                      **{k: float(v) for k, v in (logs or {}).items()}}))
    phases = [("head", config.head_epochs, config.head_lr), ("finetune", config.finetune_epochs, config.finetune_lr)]
    for phase, epochs, peak in phases:
        if epochs <= 0:
            continue
        set_phase(backbone, phase, config.finetune_layers)
        # Counted on what is trained: with feature caching, only the layers above the cut.
        tensors = len(trainer.trainable_weights)
        print(f"phase {phase}: {epochs} epochs, {tensors} trainable weight tensors, peak lr {peak}",
              file=sys.stderr)
        best.phase = phase
        schedule = make_schedule(config.schedule, peak, epochs * steps, int(config.warmup_epochs * steps))
        with strategy.scope():
            trainer.compile(optimizer=make_optimizer(config.optimizer, schedule, config.weight_decay,
                                                     config.clipnorm, config.ema), loss=loss)
        # shuffle=False: the tf.data pipelines shuffle themselves (Keras would ignore True and warn each run).
        watch = StopOnNaN(phase)
        trainer.fit(train_data, epochs=epochs, steps_per_epoch=fit_steps, verbose=0, shuffle=False,
                    callbacks=[watch, *epoch_callbacks(config.ema, best, TqdmProgress(phase, steps), recorder)])
        if watch.diverged:
            raise TrainingError(f"training diverged: {watch.diverged} (lower {phase}_lr, keep clipnorm on); the "
                                f"unfinished run is left in {run_dir}")

    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    test_targets = [index[label] for _, label in split["test"]]
    test_probabilities = predict(model, test_ds, "testing")
    metrics = classification_metrics(test_targets, test_probabilities, labels)
    metrics.update(split="test", best_epoch=best.best_epoch, val_macro_f1=None if config.final_fit else best.best_f1,
                   final_fit=config.final_fit,
                   backbone=config.backbone, image_size=config.image_size,
                   train_seconds=round(time.time() - started, 1))
    # Reported beside the one-view figures, never used to choose: the test photos as the bin classifies
    # them by default (each shown as every view of model.views, the probabilities averaged).
    from edge.imaging import DEFAULT_VIEWS

    others = [name for name in DEFAULT_VIEWS if name != "original"]  # the original view is the one above
    mean_of_others = predict(model, test_ds, "testing, views", views=others)
    as_the_bin = classification_metrics(
        test_targets, (test_probabilities + len(others) * mean_of_others) / len(DEFAULT_VIEWS), labels)
    metrics.update(bin_views=list(DEFAULT_VIEWS), bin_views_accuracy=as_the_bin["accuracy"],
                   bin_views_macro_f1=as_the_bin["macro_f1"])
    write_history(rows, run_dir / "history.csv")
    plot_curves(rows, run_dir / "curves.png", val_seen=config.final_fit)
    kept = (f"final fit on train + val ({len(trained)} images): the last epoch kept ({best.best_epoch}); the val "
            f"figures in history.csv score photos it trained on" if config.final_fit else
            f"best epoch by val macro-F1: {best.best_epoch} (val macro-F1 {best.best_f1:.4f})")
    notes = [f"Backbone `{config.backbone}` ({config.weights}), {config.image_size} px, seed {config.seed}; "
             f"data `{config.data}`; {kept}; {len(split['train'])}/{len(split['val'])}/{len(split['test'])} "
             f"train/val/test images; {metrics['train_seconds']:.0f} s.",
             f"As the bin classifies by default (each photo {', '.join(DEFAULT_VIEWS)}, averaged): test accuracy "
             f"{metrics['bin_views_accuracy']:.4f}, macro-F1 {metrics['bin_views_macro_f1']:.4f} (reported only)."]
    if config.init_from:
        from training.init_run import earlier_val_macro_f1

        earlier = earlier_val_macro_f1(Path(config.init_from))
        notes.append(f"Started from the weights of `{config.init_from}`"
                     + (f" (its val macro-F1 {earlier:.4f})." if earlier is not None else "."))
        if earlier is not None and best.best_f1 < earlier and not config.final_fit:
            print(f"note: no epoch beat the val macro-F1 of {config.init_from} ({best.best_f1:.4f} < {earlier:.4f}): "
                  f"that run's model is the better one on val", file=sys.stderr)
    for line in split_notes:  # e.g. how many photos beyond the split file's lists trained (or were left out)
        notes.append(f"Split: {line.partition(': ')[2] or line}.")
    if dataset.unreadable:
        from training.split import first_names

        notes.append(f"Skipped {len(dataset.unreadable)} unreadable or corrupt files: {first_names(dataset.unreadable)}.")
    write_evaluation(run_dir, metrics, "Test evaluation", notes)
    print(f"wrote {run_dir}: model.keras, report.md, metrics.json, confusion_matrix.png, curves.png "
          f"(test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f})", file=sys.stderr)
    return metrics


def write_run_header(config: TrainConfig, run_dir: Path, labels: list[str], split) -> None:
    """config.yaml, labels.txt, split.json (and the label map) before the first epoch."""
    from training.split import save_split

    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / "config.yaml")
    if config.label_map:  # kept with the run: training.evaluate applies it from any folder, and edits later do not count
        from training.data import LABEL_MAP_FILE

        shutil.copyfile(config.label_map, run_dir / LABEL_MAP_FILE)
    (run_dir / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    save_split(split, run_dir / "split.json", config.data)


def cached_training_data(config: TrainConfig, model, backbone, train_ds, val_ds):
    """Caches the frozen lower backbone for ``cache_views`` augmented views; returns what to fit on."""
    import tensorflow as tf

    from training.feature_cache import DEFAULT_CUTS, cache_views, head_on_features, split_backbone
    from training.model import learnable

    cut = config.cache_cut or DEFAULT_CUTS[config.backbone]
    try:
        lower, upper = split_backbone(backbone, cut)
    except ValueError as err:
        raise ModelError(str(err)) from None
    above = [layer for layer in upper.layers if learnable(layer)]
    if config.finetune_layers <= 0 or config.finetune_layers > len(above):
        # The cached part is fixed, whatever finetune_layers says: say so rather than let config.yaml mislead.
        print(f"note: with cache_views {config.cache_views}, fine-tuning trains the {len(above)} weighted layers "
              f"above {cut} at most (finetune_layers {config.finetune_layers} asks for "
              f"{'all' if config.finetune_layers <= 0 else config.finetune_layers}); "
              f"cache_views: 0 fine-tunes below it", file=sys.stderr)
    features, targets, weights = cache_views(lower, train_ds, config.cache_views, "caching train views")
    val_features, _, _ = cache_views(lower, val_ds, 1, "caching val")
    arrays = (features, targets) if weights is None else (features, targets, weights)
    train_data = (tf.data.Dataset.from_tensor_slices(arrays).shuffle(len(features), seed=config.seed)
                  .batch(config.batch_size).prefetch(tf.data.AUTOTUNE))
    val_data = tf.data.Dataset.from_tensor_slices((val_features,)).batch(config.batch_size)
    steps = -(-len(features) // config.batch_size)
    print(f"cached {len(features)} train views of shape {features.shape[1:]} at {cut}",
          file=sys.stderr)
    return head_on_features(upper, model), train_data, val_data, steps


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = resolve_config(args)
        out = Path(args.out)
        check_out_folder(out)
        seeds = parse_seeds(args.seeds) if args.seeds is not None else None
        if not seeds:
            metrics = train_one(config, out, args.max_train_steps)
            print(json.dumps({k: metrics[k] for k in ("accuracy", "macro_f1", "micro_f1")}))
            return 0
        from training.metrics import summarize_runs

        # One split for every seed, so the spread measures training, not different test sets.
        config = config.override(split_seed=seeds[0] if config.split_seed is None else config.split_seed)
        reports = [train_one(config.override(seed=seed), out / f"seed-{seed}", args.max_train_steps)
                   for seed in seeds]
        summary = {"seeds": seeds, "metrics": summarize_runs(reports)}
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        for key, value in summary["metrics"].items():
            spread = "(one seed: no spread)" if value["std"] is None else f"± {value['std']:.4f}"
            print(f"{key}: {value['mean']:.4f} {spread}", file=sys.stderr)
        # One JSON line on stdout, as for one run; here each figure is {"mean", "std"}
        print(json.dumps({k: summary["metrics"][k] for k in ("accuracy", "macro_f1", "micro_f1")}))
        return 0
    except TrainingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        left = f"; the unfinished run is left in {args.out} (delete it or choose another --out)" \
            if Path(args.out).is_dir() and any(Path(args.out).iterdir()) else ""
        print(f"interrupted{left}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
