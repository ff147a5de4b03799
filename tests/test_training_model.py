"""Backbones build with random init; phase 1 freezes the backbone, phase 2 unfreezes it (BatchNorm stays frozen)."""

import pytest

pytest.importorskip("tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from training.backbones import REGISTRY, build_backbone, resolve_weights  # noqa: E402
from training.errors import ModelError  # noqa: E402
from training.model import _leaf_layers, build_classifier, set_phase  # noqa: E402


def test_the_registry_and_the_names_checked_before_tensorflow_agree():
    from training.config import BACKBONE_NAMES, NO_ONLINE_PRESET

    assert tuple(REGISTRY) == BACKBONE_NAMES
    assert set(NO_ONLINE_PRESET) == {name for name, spec in REGISTRY.items() if not spec.default_weights}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_backbone_builds_with_random_weights_and_takes_raw_rgb(name):
    model, _ = build_classifier(name, "none", 32, num_classes=4)
    probs = np.asarray(model(np.full((1, 32, 32, 3), 200.0, np.float32)))
    assert probs.shape == (1, 4)
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_backbone_splits_at_its_default_feature_cache_cut(name):
    from training.feature_cache import DEFAULT_CUTS, split_backbone

    _, backbone = build_classifier(name, "none", 64, num_classes=4)
    lower, upper = split_backbone(backbone, DEFAULT_CUTS[name])
    features = lower(np.zeros((1, 64, 64, 3), np.float32))
    assert upper(features).shape[0] == 1


def test_phases_set_trainable_flags():
    model, backbone = build_classifier("efficientnet_lite0", "none", 32, num_classes=3)
    assert set_phase(backbone, "head") == 0
    assert not backbone.trainable_weights
    assert model.trainable_weights  # the head
    all_layers = set_phase(backbone, "finetune", 0)
    batchnorms = [l for l in _leaf_layers(backbone) if isinstance(l, keras.layers.BatchNormalization)]
    assert all_layers > 0 and all(not bn.trainable for bn in batchnorms)
    top = set_phase(backbone, "finetune", 10)
    assert top == 10 < all_layers  # ten layers with weights, BatchNorm not counted
    trained = [layer for layer in _leaf_layers(backbone) if layer.trainable]
    assert len(trained) == 10 and not any(isinstance(l, keras.layers.BatchNormalization) for l in trained)
    leaves = _leaf_layers(backbone)
    assert not leaves[0].trainable and leaves[-2].trainable  # stem frozen, top conv trainable


def test_unknown_backbone_and_bad_weights_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="unknown backbone"):
        build_backbone("vgg99", None, 32)
    with pytest.raises(ModelError, match="not found"):
        build_backbone("efficientnet_lite0", str(tmp_path / "missing" / "preset"), 32)


def test_weights_default_means_each_backbones_imagenet_weights():
    assert resolve_weights("efficientnet_lite0", "default") == "efficientnet_lite0_ra_imagenet"
    assert resolve_weights("mobilenet_v3_small", "default") == "imagenet"
    assert resolve_weights("resnet50", "none") is None


def test_lite0_preset_loads_when_shared_weights_exist(shared_dir):
    preset = shared_dir / "weights" / "efficientnet_lite0_imagenet"
    backbone = build_backbone("efficientnet_lite0", str(preset), 64)
    assert backbone.count_params() == 3_413_024


def test_lite1_and_lite2_have_no_online_preset_so_default_weights_is_refused():
    with pytest.raises(ModelError, match="no online preset"):
        resolve_weights("efficientnet_lite1", "default")


@pytest.fixture(scope="module")
def lite1_preset(tmp_path_factory):
    """A random-init Lite1 saved the way keras-hub saves any preset folder."""
    import keras_hub

    from training.backbones import LITE0_ARGS, LITE_VARIANTS

    folder = tmp_path_factory.mktemp("presets") / "lite1"
    core = keras_hub.models.EfficientNetBackbone(input_shape=(None, None, 3),
                                                 **{**LITE0_ARGS, **LITE_VARIANTS["efficientnet_lite1"]})
    core.save_to_preset(str(folder))
    return folder


def test_a_preset_of_another_lite_variant_is_refused_with_the_backbone_to_use(lite1_preset):
    with pytest.raises(ModelError, match="efficientnet_lite0 needs its own preset, and this is an "
                                         "efficientnet_lite1 preset; use --backbone efficientnet_lite1"):
        build_backbone("efficientnet_lite0", str(lite1_preset), 32)


def test_a_preset_loads_under_its_own_variant_name(lite1_preset):
    backbone = build_backbone("efficientnet_lite1", str(lite1_preset), 32)
    assert backbone.name == "efficientnet_lite1"
    assert backbone.count_params() == 4_189_344


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_a_saved_lite_model_loads_back_as_it_was_trained(name, tmp_path):
    import keras_hub  # noqa: F401  (registers EfficientNetBackbone for loading, as the converter does)

    model, _ = build_classifier(name, "none", 32, num_classes=3)
    model.save(tmp_path / "model.keras")
    # Lite2's top conv came back with 1408 channels instead of 1280: keras-hub saves no num_features.
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    image = np.full((1, 32, 32, 3), 90.0, np.float32)
    assert loaded.count_params() == model.count_params()
    np.testing.assert_allclose(loaded(image), model(image), atol=1e-6)


@pytest.mark.parametrize("variant, params", [("lite1", 4_189_344), ("lite2", 4_869_168)])
def test_the_larger_shared_lite_presets_load_under_their_names(shared_dir, variant, params):
    preset = shared_dir / "weights" / f"efficientnet_{variant}_imagenet"
    assert build_backbone(f"efficientnet_{variant}", str(preset), 64).count_params() == params


def test_an_unknown_preset_name_says_which_name_keras_hub_knows():
    with pytest.raises(ModelError, match=r"^--weights lite0_typo: cannot load keras-hub preset: no such preset name "
                                         r"or folder \(keras-hub's efficientnet_lite0 preset is "
                                         r"efficientnet_lite0_ra_imagenet\)$"):
        build_backbone("efficientnet_lite0", "lite0_typo", 32)


@pytest.mark.parametrize("config, variant", [
    # keras-hub's online Lite0 preset (converted from timm): every stage scaled alike.
    (dict(activation="relu6", stackwise_squeeze_and_excite_ratios=[0] * 7,
          stackwise_width_coefficients=[1.0] * 7, stackwise_depth_coefficients=[1.0] * 7), "efficientnet_lite0"),
    # The TF Lite models leave the first and last stage's depth alone.
    (dict(activation="relu6", stackwise_squeeze_and_excite_ratios=[0] * 7,
          stackwise_width_coefficients=[1.1] * 7, stackwise_depth_coefficients=[1.0] + [1.2] * 5 + [1.0]),
     "efficientnet_lite2"),
    (dict(activation="relu6", stackwise_squeeze_and_excite_ratios=[0] * 7,
          stackwise_width_coefficients=[1.0] * 7, stackwise_depth_coefficients=[1.1] * 7), "efficientnet_lite1"),
    # EfficientNet-B0 has Lite0's scalings, but squeeze-excite and swish: either one rules a Lite out.
    (dict(activation="swish", stackwise_squeeze_and_excite_ratios=[0.25] * 7,
          stackwise_width_coefficients=[1.0] * 7, stackwise_depth_coefficients=[1.0] * 7), None),
    (dict(activation="relu6", stackwise_squeeze_and_excite_ratios=[0.25] * 7,
          stackwise_width_coefficients=[1.0] * 7, stackwise_depth_coefficients=[1.0] * 7), None),
    (dict(activation="swish", stackwise_squeeze_and_excite_ratios=[0] * 7,
          stackwise_width_coefficients=[1.0] * 7, stackwise_depth_coefficients=[1.0] * 7), None),
    (dict(activation="relu6", stackwise_squeeze_and_excite_ratios=[0] * 7,
          stackwise_width_coefficients=[1.4] * 7, stackwise_depth_coefficients=[1.8] * 7), None),  # Lite4
])
def test_a_preset_config_is_recognised_as_its_lite_variant(config, variant):
    from training.backbones import lite_variant_of

    assert lite_variant_of(config) == variant
