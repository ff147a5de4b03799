"""The training configuration: defaults, YAML file, CLI overrides, saved with every run.

Usage:
    config = TrainConfig.from_yaml("recipe.yaml").override(backbone="mobilenet_v3_small")
    config.save(run_dir / "config.yaml")
"""

from __future__ import annotations

from pathlib import Path
import re
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.yaml_unique import DuplicateKeyError, load_unique, syntax_error_text
from training.errors import TrainingError

# The backbone registry's names (training.backbones.REGISTRY, which needs Keras), here so that a typo
# is refused before TensorFlow is imported; a test keeps the two in step.
BACKBONE_NAMES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v3_small",
                  "mobilenet_v3_large", "efficientnet_b0", "resnet50")
_EXPONENT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")  # 1e-3, which PyYAML reads as text
NO_ONLINE_PRESET = ("efficientnet_lite1", "efficientnet_lite2")  # keras-hub publishes Lite0 only


def no_online_preset(backbone: str) -> str:
    """Why ``weights: default`` cannot work for ``backbone`` (one wording for the config and the builder)."""
    return (f"{backbone} has no online preset; give a local preset folder "
            f"(e.g. ../shared/weights/{backbone}_imagenet) or none")


class _Settings(BaseModel):
    # Unknown keys are typos; a setting assigned later is checked like one read from a file. Strict:
    # "head_epochs: true" or "batch_size: '8'" is a mistake to name, not to read as 1 or 8; and no
    # learning rate or factor may be infinite.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _exponent_numbers(cls, value: Any, info) -> Any:
        # PyYAML reads "1e-3" (no dot) as text; the recipes write rates that way.
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, str) and float in (annotation, *get_args(annotation)) and _EXPONENT.match(value.strip()):
            return float(value)
        return value


class AugmentConfig(_Settings):
    """Which augmentations run on training batches (all Keras 3 core layers); 0 or false turns one off."""

    flip: bool = True                                    # horizontal and vertical flips
    rotate90: bool = True                                # random 0/90/180/270 degree turns: some TrashNet photos are upside down
    rotation: float = Field(0.05, ge=0.0, le=0.5)        # extra small rotation, fraction of a full turn
    zoom: float = Field(0.15, ge=0.0, lt=1.0)            # random zoom in/out (crop-like)
    translation: float = Field(0.1, ge=0.0, lt=1.0)      # random shift, fraction of the size
    brightness: float = Field(0.2, ge=0.0, le=1.0)       # shift by up to +-20 % of the value range
    contrast: float = Field(0.2, ge=0.0, le=1.0)         # scale contrast by 1 +- 0.2
    saturation: float = Field(0.2, ge=0.0, lt=1.0)       # scale saturation by 1 +- 0.2 (below 1)
    hue: float = Field(0.03, ge=0.0, le=1.0)             # turn the hue by up to +-1.5 % of the colour circle
    blur: float = Field(0.0, ge=0.0, le=1.0)             # probability of Gaussian blur
    erasing: float = Field(0.25, ge=0.0, le=1.0)         # probability of random erasing (Cutout)
    rand_augment: bool = False                           # RandAugment (2 ops) instead of the hand-set colour jitter
    mixup: float = Field(0.0, ge=0.0, le=1.0)            # probability that a batch gets MixUp
    cutmix: float = Field(0.0, ge=0.0, le=1.0)           # probability that a batch gets CutMix


class TrainConfig(_Settings):
    """Every setting of a training run; see ``python -m training.fit --help`` and docs/training.md."""

    data: str = ""
    split_file: str | None = None
    unlisted: Literal["ignore", "train"] = "ignore"     # photos of --data the split file does not name
    labels: list[str] | None = None                      # class order; default: sorted folder names
    label_map: str | None = None                         # YAML {source_class: bin_class}
    backbone: str = "efficientnet_lite0"                  # one of BACKBONE_NAMES
    weights: str = "default"                             # preset name, local preset folder, "none", or "default"
    image_size: int = Field(224, ge=32, le=1024)         # the smallest input every backbone takes
    batch_size: int = Field(32, ge=1)
    seed: int = Field(0, ge=0)
    split_seed: int | None = Field(None, ge=0)           # seed of the generated split; default: seed (--seeds: the first)
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    head_epochs: int = Field(3, ge=0)
    finetune_epochs: int = Field(12, ge=0)
    finetune_layers: int = Field(0, ge=0)                # 0 = unfreeze the whole backbone, N = the top N layers
    head_lr: float = Field(1e-3, gt=0.0)
    finetune_lr: float = Field(2e-4, gt=0.0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    weight_decay: float = Field(1e-4, ge=0.0)
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"  # cosine has a linear warm-up
    warmup_epochs: float = Field(1.0, ge=0.0)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    clipnorm: float | None = Field(1.0, gt=0.0)
    ema: float = Field(0.0, ge=0.0, lt=1.0)               # >0: keep and judge the weights' moving average (momentum per step)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    loss: Literal["crossentropy", "focal"] = "crossentropy"
    focal_gamma: float = Field(2.0, ge=0.0)
    class_weights: Literal["none", "inverse", "effective"] = "none"
    effective_beta: float = Field(0.999, gt=0.0, lt=1.0)
    early_stopping_patience: int = Field(5, ge=0)        # 0: no early stopping
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    mixed_precision: Literal["auto", "on", "off"] = "auto"  # auto: float16 only when a GPU is present
    cache: bool = True
    cache_views: int = Field(0, ge=0)                    # >0: cache the frozen lower backbone for K augmented views (CPU)
    cache_cut: str = ""                                  # layer where the frozen part ends (default per backbone)
    init_from: str = ""                                  # a finished run folder whose model.keras the weights start from
    final_fit: bool = False                              # train on train + val, keep the last epoch (settings chosen before, on val)

    @field_validator("labels", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        # "glass,metal" in YAML is one string, as on the command line; a list of one string is wrong.
        if isinstance(value, str):
            return [label.strip() for label in value.split(",") if label.strip()]
        return value

    @field_validator("labels")
    @classmethod
    def _distinct(cls, labels: list[str] | None) -> list[str] | None:
        repeated = sorted({label for label in labels or [] if labels.count(label) > 1})
        if repeated:  # a model output no photo can ever be: found now, not by the converter after training
            raise ValueError(f"{', '.join(repeated)} named twice")
        return labels

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        if value not in BACKBONE_NAMES:
            raise ValueError(f"unknown backbone {value!r}; choose one of {', '.join(BACKBONE_NAMES)}")
        return value

    @field_validator("weights", mode="before")
    @classmethod
    def _weights_none(cls, value: Any) -> Any:
        return "none" if value is None else value  # YAML "weights: null"

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_on_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare on/off as true/false: "mixed_precision: on" means "on".
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    @field_validator("data", "cache_cut", "init_from", mode="before")
    @classmethod
    def _empty_text(cls, value: Any) -> Any:
        return "" if value is None else value  # a key left empty in YAML means its default

    @field_validator("augment", mode="before")
    @classmethod
    def _empty_block(cls, value: Any) -> Any:
        return {} if value is None else value  # "augment:" with every line commented out

    @model_validator(mode="after")
    def _something_to_train(self) -> TrainConfig:
        if self.head_epochs == 0 and self.finetune_epochs == 0:
            raise ValueError("head_epochs and finetune_epochs are both 0: nothing would be trained")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must stay below 1 (the rest is the train split)")
        return self

    @model_validator(mode="after")
    def _weights_for_backbone(self) -> TrainConfig:
        if self.weights == "default" and self.backbone in NO_ONLINE_PRESET:
            raise ValueError(f"weights: {no_online_preset(self.backbone)}")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> TrainConfig:
        """A validated config; ``TrainingError`` lists every ``key: problem`` on one line after ``where``."""
        if not isinstance(data, dict):
            raise TrainingError(f"{where}: expected a mapping of settings")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise TrainingError(f"{where}: {problems(err)}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        try:
            data = load_unique(Path(path).read_text(encoding="utf-8")) or {}
        except DuplicateKeyError as err:
            raise TrainingError(f"{path}: {err}; YAML would silently keep only the last one") from None
        except OSError as err:
            raise TrainingError(f"{path}: cannot read config: {err.strerror}") from None
        except UnicodeDecodeError as err:
            raise TrainingError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
        except yaml.YAMLError as err:
            raise TrainingError(f"{path}: {syntax_error_text(err)}") from None
        return cls.from_dict(data, where=str(path))

    def override(self, **changes: Any) -> TrainConfig:
        """Returns a copy with the non-None changes applied (``augment.x`` keys reach the augment block),
        validated as a whole like a config file (errors begin ``options:``)."""
        data = self.to_dict()
        for key, value in changes.items():
            if value is None:
                continue
            if key.startswith("augment."):
                data["augment"][key.split(".", 1)[1]] = value
            else:
                data[key] = value
        return self.from_dict(data, where="options")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def problems(err: ValidationError) -> str:
    """``key: problem; key: problem`` from a pydantic error, in the words a config file's reader needs."""
    found = []
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"] if not str(part).startswith(("function-", "literal[")))
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"].removeprefix("Value error, ")
        if item["type"] not in ("extra_forbidden", "missing", "value_error") and not isinstance(item.get("input"), dict):
            message += f" (got {item.get('input')!r})"
        found.append(f"{key}: {message}" if key else message)
    return "; ".join(found)
