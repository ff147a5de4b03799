"""Photos of a run's splits, decoded and resized exactly as the bin does it.

Calibration and evaluation both go through ``edge.imaging`` (OpenCV decode, whole-image
stretch, bilinear), so the converted model is calibrated and judged on the same pixels it
will see on the device, not on TensorFlow's slightly different bilinear resize.

Usage:
    from converter.dataset import load_images, stratified_sample
    sample = stratified_sample(run.items("train", data), 300)
    images, targets, skipped = load_images(sample, input_spec)
"""

from __future__ import annotations

import sys
from collections import defaultdict

import numpy as np

from converter.runfolder import Item
from edge import imaging
from edge.bundle import InputSpec


def stratified_sample(items: list[Item], count: int, seed: int = 0) -> list[Item]:
    """Draws ``count`` items keeping each class's share (largest remainder), at least one per class.

    Returns every item when ``count`` is not smaller than the list. The order is shuffled
    (seeded) so that a truncated calibration still sees every class.
    """
    if count >= len(items):
        chosen = list(items)
    else:
        by_class: dict[int, list[Item]] = defaultdict(list)
        for item in items:
            by_class[item.label_index].append(item)
        quotas = _quotas({label: len(group) for label, group in by_class.items()}, count)
        rng = np.random.default_rng(seed)
        chosen = []
        for label in sorted(by_class):
            group = by_class[label]
            picks = rng.choice(len(group), size=quotas[label], replace=False)
            chosen.extend(group[i] for i in sorted(picks))
    order = np.random.default_rng(seed + 1).permutation(len(chosen))
    return [chosen[i] for i in order]


def _quotas(sizes: dict[int, int], count: int) -> dict[int, int]:
    total = sum(sizes.values())
    floor_share = {label: max(1, int(count * size / total)) for label, size in sizes.items()}
    floor_share = {label: min(share, sizes[label]) for label, share in floor_share.items()}
    remainders = sorted(sizes, key=lambda label: (count * sizes[label] / total) % 1, reverse=True)
    left = count - sum(floor_share.values())
    for label in remainders:
        if left <= 0:
            break
        if floor_share[label] < sizes[label]:
            floor_share[label] += 1
            left -= 1
    return floor_share


def load_images(items: list[Item], spec: InputSpec, desc: str = "images",
                progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decodes and resizes photos to the model input.

    Unreadable photos are skipped (and named in the returned list) rather than stopping a
    long conversion; the caller reports them.

    Returns:
        ``(images uint8 [N, H, W, 3], class indices [N], skipped messages)``.
    """
    images, targets, skipped = [], [], []
    for item in _progress(items, desc, progress):
        try:
            rgb = imaging.read_image(item.path)
        except ValueError as err:
            skipped.append(str(err))
            continue
        images.append(imaging.resize_for_model(rgb, spec))
        targets.append(item.label_index)
    if not images:
        return np.zeros((0, spec.height, spec.width, 3), np.uint8), np.zeros(0, np.int64), skipped
    return np.stack(images), np.asarray(targets, np.int64), skipped


def _progress(iterable, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit="img", file=sys.stderr, leave=False, dynamic_ncols=True, disable=None)
