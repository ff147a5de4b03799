"""The training configuration: defaults, YAML file, CLI overrides, saved with every run.

Usage:
    config = TrainConfig.from_yaml("recipe.yaml").override(backbone="mobilenet_v3_small")
    config.save(run_dir / "config.yaml")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training.errors import TrainingError

# The backbone registry's names (training.backbones.REGISTRY, which needs Keras), here so that a typo
# is refused before TensorFlow is imported; a test keeps the two in step.
BACKBONE_NAMES = ("efficientnet_lite0", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "resnet50")


@dataclass
class AugmentConfig:
    """Which augmentations run on training batches (all Keras 3 core layers); 0 or false turns one off."""

    flip: bool = True                 # horizontal and vertical flips
    rotate90: bool = True             # random 0/90/180/270 degree turns: some TrashNet photos are upside down
    rotation: float = 0.05            # extra small rotation, fraction of a full turn
    zoom: float = 0.15                # random zoom in/out (crop-like)
    translation: float = 0.1          # random shift, fraction of the size
    brightness: float = 0.2           # shift by up to +-20 % of the value range
    contrast: float = 0.2             # scale contrast by 1 +- 0.2
    saturation: float = 0.2           # scale saturation by 1 +- 0.2 (below 1)
    hue: float = 0.03                 # turn the hue by up to +-1.5 % of the colour circle
    blur: float = 0.0                 # probability of Gaussian blur
    erasing: float = 0.25             # probability of random erasing (Cutout)
    rand_augment: bool = False        # RandAugment (2 ops) instead of the hand-set colour jitter
    mixup: float = 0.0                # probability that a batch gets MixUp
    cutmix: float = 0.0               # probability that a batch gets CutMix


@dataclass
class TrainConfig:
    """Every setting of a training run; see ``python -m training.fit --help``."""

    data: str = ""
    split_file: str | None = None
    labels: list[str] | None = None          # class order; default: sorted folder names
    label_map: str | None = None             # YAML {source_class: bin_class}
    backbone: str = "efficientnet_lite0"
    weights: str = "default"                 # preset name, local preset folder, "none", or "default"
    image_size: int = 224
    batch_size: int = 32
    seed: int = 0
    split_seed: int | None = None            # seed of the generated split; default: seed (--seeds: the first)
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    head_epochs: int = 3
    finetune_epochs: int = 12
    finetune_layers: int = 0                 # 0 = unfreeze the whole backbone, N = the top N layers
    head_lr: float = 1e-3
    finetune_lr: float = 2e-4
    optimizer: str = "adamw"                 # adamw | sgd
    weight_decay: float = 1e-4
    schedule: str = "cosine"                 # cosine (with warm-up) | onecycle | constant
    warmup_epochs: float = 1.0
    dropout: float = 0.2
    clipnorm: float | None = 1.0
    label_smoothing: float = 0.1
    loss: str = "crossentropy"               # crossentropy | focal
    focal_gamma: float = 2.0
    class_weights: str = "none"              # none | inverse | effective
    effective_beta: float = 0.999
    early_stopping_patience: int = 5
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    mixed_precision: str = "auto"            # auto (GPU only) | on | off
    cache: bool = True
    cache_views: int = 0                     # >0: cache the frozen lower backbone for K augmented views (CPU)
    cache_cut: str = ""                      # layer where the frozen part ends (default per backbone)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingError(f"config: unknown keys {', '.join(unknown)}")
        values = dict(data)
        augment = values.pop("augment", None) or {}
        aug_known = {f.name for f in dataclasses.fields(AugmentConfig)}
        bad = sorted(set(augment) - aug_known)
        if bad:
            raise TrainingError(f"config: unknown keys {', '.join('augment.' + b for b in bad)}")
        return cls(**values, augment=AugmentConfig(**augment))

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as err:
            raise TrainingError(f"{path}: cannot read config: {err.strerror}") from None
        except yaml.YAMLError as err:
            raise TrainingError(f"{path}: not valid YAML: {err}") from None
        return cls.from_dict(data)

    def override(self, **changes: Any) -> TrainConfig:
        """Returns a copy with the non-None changes applied; ``augment.x`` keys reach the augment block."""
        config = dataclasses.replace(self, augment=dataclasses.replace(self.augment))
        for key, value in changes.items():
            if value is None:
                continue
            if key.startswith("augment."):
                setattr(config.augment, key.split(".", 1)[1], value)
            else:
                setattr(config, key, value)
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
