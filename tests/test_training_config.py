"""The training settings: typed, range-checked, one ``key: problem`` line per mistake, before TensorFlow."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import TrainConfig
from training.errors import TrainingError

RECIPES = sorted((Path(__file__).resolve().parents[1] / "training" / "recipes").glob("*.yaml"))


def test_every_shipped_recipe_is_a_valid_config():
    assert RECIPES
    for recipe in RECIPES:
        TrainConfig.from_yaml(recipe)


def test_numbers_written_like_1e_3_are_numbers(tmp_path):
    # PyYAML reads "1e-3" (no dot) as a string; the docs and recipes write rates this way.
    (tmp_path / "recipe.yaml").write_text("head_lr: 1e-3\nweight_decay: 1e-4\n")
    config = TrainConfig.from_yaml(tmp_path / "recipe.yaml")
    assert (config.head_lr, config.weight_decay) == (0.001, 0.0001)


@pytest.mark.parametrize("setting, problem", [
    ({"image_size": "big"}, "image_size: Input should be a valid integer"),
    ({"image_size": 32.5}, "image_size: Input should be a valid integer"),
    ({"batch_size": 0}, "batch_size: Input should be greater than or equal to 1"),
    ({"optimizer": "adam"}, "optimizer: Input should be 'adamw' or 'sgd'"),
    ({"schedule": "linear"}, "schedule: Input should be 'cosine', 'onecycle' or 'constant'"),
    ({"augment": True}, "augment: Input should be a valid dictionary"),
    ({"augment": {"mixup": 2}}, "augment.mixup: Input should be less than or equal to 1"),
    ({"augment": {"sharpen": 0.1}}, "augment.sharpen: unknown key"),
    ({"learning_rate": 0.1}, "learning_rate: unknown key"),
    ({"backbone": "vgg99"}, "backbone: unknown backbone 'vgg99'; choose one of efficientnet_lite0"),
    ({"head_epochs": 0, "finetune_epochs": 0}, "head_epochs and finetune_epochs are both 0"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction + test_fraction must stay below 1"),
    ({"backbone": "efficientnet_lite2"}, "weights: efficientnet_lite2 has no online preset; give a local preset"),
    ({"head_epochs": True}, "head_epochs: Input should be a valid integer"),  # not 1
    ({"batch_size": "8"}, "batch_size: Input should be a valid integer"),
    ({"image_size": 64.0}, "image_size: Input should be a valid integer"),
    ({"cache": "yes"}, "cache: Input should be a valid boolean"),
    ({"head_lr": float("inf")}, "head_lr: Input should be a finite number"),
])
def test_a_bad_setting_is_named_with_its_problem_on_one_line(tmp_path, setting, problem):
    import yaml

    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(setting))
    with pytest.raises(TrainingError) as caught:
        TrainConfig.from_yaml(tmp_path / "recipe.yaml")
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'recipe.yaml'}: ") and problem in message
    assert len(message.splitlines()) == 1


def test_a_yaml_syntax_error_is_one_line_saying_where(tmp_path):
    (tmp_path / "recipe.yaml").write_text("augment:\n  flip: true\n mixup: 0.2\n")
    with pytest.raises(TrainingError) as caught:
        TrainConfig.from_yaml(tmp_path / "recipe.yaml")
    assert str(caught.value).startswith(f"{tmp_path / 'recipe.yaml'}: YAML syntax error at line 3, column 2: ")
    assert len(str(caught.value).splitlines()) == 1


def test_command_line_overrides_meet_the_same_rules():
    with pytest.raises(TrainingError, match=r"^options: image_size: Input should be greater than or equal to 32"):
        TrainConfig().override(image_size=0)
    assert TrainConfig().override(**{"augment.mixup": 0.5}).augment.mixup == 0.5


def test_a_key_left_empty_in_yaml_means_its_default(tmp_path):
    (tmp_path / "recipe.yaml").write_text("data:\ncache_cut:\naugment:\nweights:\nclipnorm:\n")
    config = TrainConfig.from_yaml(tmp_path / "recipe.yaml")
    assert (config.data, config.cache_cut, config.augment, config.weights, config.clipnorm) == \
        ("", "", TrainConfig().augment, "none", None)


@pytest.mark.parametrize("written, meant", [("on", "on"), ("off", "off"), ("'on'", "on"), ("auto", "auto")])
def test_mixed_precision_written_bare_as_the_docs_write_it_means_what_it_says(tmp_path, written, meant):
    # YAML 1.1 reads a bare on/off as true/false.
    (tmp_path / "recipe.yaml").write_text(f"mixed_precision: {written}\n")
    assert TrainConfig.from_yaml(tmp_path / "recipe.yaml").mixed_precision == meant


def test_a_setting_given_twice_is_an_error_not_a_silent_last_wins(tmp_path):
    (tmp_path / "recipe.yaml").write_text("image_size: 320\nseed: 0\nimage_size: 224\n")
    with pytest.raises(TrainingError, match=r"recipe.yaml: image_size: line 3: appears again \(first on line 1\)"):
        TrainConfig.from_yaml(tmp_path / "recipe.yaml")


def test_a_saturation_strength_of_1_is_refused_as_augment_refuses_it():
    with pytest.raises(TrainingError, match="augment.saturation: Input should be less than 1"):
        TrainConfig.from_dict({"augment": {"saturation": 1.0}})


def test_labels_may_be_one_comma_separated_string_as_on_the_command_line():
    assert TrainConfig.from_dict({"labels": "glass, paper,metal"}).labels == ["glass", "paper", "metal"]


def test_the_saved_config_loads_back_unchanged(tmp_path):
    config = TrainConfig.from_dict({"image_size": 96, "augment": {"mixup": 0.25}, "labels": ["a", "b"]})
    config.save(tmp_path / "config.yaml")
    assert TrainConfig.from_yaml(tmp_path / "config.yaml") == config
